"""Profile the view under one scheme with cProfile and print the most expensive functions.

The requests are the ones ``bench.auth_overhead`` times: a fresh ``RequestFactory`` request per
call, cycling through the scheme's sample tokens, after a warm-up.

Usage: ``BENCH_DB=mysql python -m bench.profile_auth pat [--requests 3000] [--sort tottime]``.
"""

import argparse
import cProfile
import os
import pstats

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.test import RequestFactory  # noqa: E402

from bench import auth_overhead, dataset  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scheme", help="none, drf, knox, jwt, pat, pat-locmem, pat-redis, ...")
    parser.add_argument("--requests", type=int, default=3000, help="profiled requests")
    parser.add_argument("--sort", default="cumulative", help="pstats sort key")
    parser.add_argument("--limit", type=int, default=40, help="functions to print")
    options = parser.parse_args()

    schemes = auth_overhead.build_schemes(dataset.load_sample(), with_redis=True, experiments=True)
    scheme = next(scheme for scheme in schemes if scheme.name == options.scheme)
    factory = RequestFactory()
    auth_overhead.run_batch(scheme, factory, 500, record=False)

    profiler = cProfile.Profile()
    with scheme.configured():
        profiler.enable()
        for _ in range(options.requests):
            auth_overhead.run_one(scheme, factory)
        profiler.disable()
    pstats.Stats(profiler).sort_stats(options.sort).print_stats(options.limit)


if __name__ == "__main__":
    main()
