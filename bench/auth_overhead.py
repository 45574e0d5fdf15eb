"""Time one tiny DRF view under each authentication scheme, in one process, without a network.

Each request is a fresh ``RequestFactory`` request passed to the view function, and the rendered
response is checked to be 200. Rounds are interleaved: every round runs a batch of requests for
each scheme, starting at a different scheme each round, so slow drift of the machine hits all
schemes alike. Each request of a batch uses the next of the scheme's sample tokens, so the
lookups spread over ``SAMPLE_SIZE`` users. Queries are counted in a separate pass.

``--experiments`` adds a scheme that swaps in the plain ORM lookup the app used before its lookup
was compiled once per database, to show what the compiled lookup saves.

Usage: ``BENCH_DB=mysql python -m bench.auth_overhead [--rounds N] [--batch N]``.
"""

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import caches  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench import dataset, views  # noqa: E402
from bench.stats import markdown_table, percentile  # noqa: E402
from pat_tokens import authentication, lookup  # noqa: E402


class Scheme:
    """A view, the header scheme and tokens it takes, and the ``PAT_TOKENS`` to run it under."""

    def __init__(
        self, name, label, view_class, keyword=None, tokens=(), pat_cache=None, fetch=None
    ):
        self.name = name
        self.label = label
        self.view = view_class.as_view()
        self.keyword = keyword
        self.tokens = list(tokens)
        self.pat_tokens = {
            "CACHE_ALIAS": settings.PAT_CACHE_ALIASES[pat_cache or "none"],
            "CACHE_TIMEOUT": settings.CACHE_TIMEOUT,
        }
        self.fetch = fetch
        self.position = 0
        self.samples_ns = []

    @contextlib.contextmanager
    def configured(self):
        """Apply this scheme's ``PAT_TOKENS`` and, for an experiment, its token lookup."""
        original_fetch = authentication._fetch
        if self.fetch is not None:
            authentication._fetch = self.fetch
        try:
            with override_settings(PAT_TOKENS=self.pat_tokens):
                yield
        finally:
            authentication._fetch = original_fetch

    def next_headers(self):
        if not self.tokens:
            return {}
        token = self.tokens[self.position % len(self.tokens)]
        self.position += 1
        return {"Authorization": f"{self.keyword} {token}"}


def build_schemes(sample, with_redis, experiments):
    schemes = [
        Scheme("none", "no authentication (baseline)", views.OkView),
        Scheme("drf", "DRF TokenAuthentication", views.DrfTokenView, "Token", sample["drf"]),
        Scheme("knox", "knox TokenAuthentication", views.KnoxView, "Token", sample["knox"]),
        Scheme("jwt", "simplejwt JWTAuthentication", views.JwtView, "Bearer", sample["jwt"]),
        Scheme("pat", "pat_tokens, no cache", views.PatView, "Bearer", sample["pat"]),
        Scheme(
            "pat-locmem",
            "pat_tokens, LocMemCache hit",
            views.PatView,
            "Bearer",
            sample["pat"],
            pat_cache="locmem",
        ),
    ]
    if with_redis:
        schemes.append(
            Scheme(
                "pat-redis",
                "pat_tokens, RedisCache hit",
                views.PatView,
                "Bearer",
                sample["pat"],
                pat_cache="redis",
            )
        )
    if experiments:
        schemes.append(
            Scheme(
                "pat-orm",
                "pat_tokens, no cache, ORM lookup (comparison)",
                views.PatView,
                "Bearer",
                sample["pat"],
                fetch=lookup._fetch_with_orm,
            )
        )
    return schemes


def redis_available():
    try:
        caches["tokens-redis"].get("pat-bench-probe")
    except Exception as error:
        print(f"Redis is not reachable, leaving out the Redis scheme: {error}")
        return False
    return True


def run_one(scheme, factory):
    request = factory.get("/bench/", headers=scheme.next_headers())
    response = scheme.view(request)
    response.render()
    return response


def run_batch(scheme, factory, count, record):
    with scheme.configured():
        for _ in range(count):
            started = time.perf_counter_ns()
            response = run_one(scheme, factory)
            elapsed = time.perf_counter_ns() - started
            if response.status_code != 200:
                raise RuntimeError(f"{scheme.name}: status {response.status_code}, {response.data}")
            if record:
                scheme.samples_ns.append(elapsed)


def count_queries(scheme, factory, count):
    """Return queries per request over ``count`` warm requests, and the SQL of the first ones."""
    with scheme.configured(), CaptureQueriesContext(connection) as ctx:
        for _ in range(count):
            run_one(scheme, factory)
    per_request = len(ctx.captured_queries) / count
    first = [query["sql"] for query in ctx.captured_queries[: round(per_request) or 0]]
    return per_request, first


def measure(schemes, rounds, batch):
    factory = RequestFactory()
    for cache_alias in ("tokens-locmem", "tokens-redis"):
        try:
            caches[cache_alias].clear()
        except Exception:  # noqa: S110 (Redis may be absent; its scheme is then left out)
            pass

    # Warm-up: every sample token once per scheme, which also fills the caches.
    for scheme in schemes:
        run_batch(scheme, factory, max(len(scheme.tokens), 1) * 2, record=False)

    round_medians = {scheme.name: [] for scheme in schemes}
    started = time.perf_counter()
    for round_index in range(rounds):
        offset = round_index % len(schemes)
        for scheme in schemes[offset:] + schemes[:offset]:
            before = len(scheme.samples_ns)
            gc.collect()
            run_batch(scheme, factory, batch, record=True)
            round_medians[scheme.name].append(statistics.median(scheme.samples_ns[before:]))
    timed_seconds = time.perf_counter() - started

    queries = {}
    for scheme in schemes:
        queries[scheme.name] = count_queries(scheme, factory, 64)
    return round_medians, queries, timed_seconds


def summarize(schemes, round_medians, queries):
    baseline = next(scheme for scheme in schemes if scheme.name == "none")
    base_median = statistics.median(baseline.samples_ns)
    results = {}
    for scheme in schemes:
        median = statistics.median(scheme.samples_ns)
        # The per-round differences show how steady the overhead was from round to round.
        differences = [
            own - base
            for own, base in zip(round_medians[scheme.name], round_medians["none"], strict=True)
        ]
        results[scheme.name] = {
            "label": scheme.label,
            "requests": len(scheme.samples_ns),
            "median_us": median / 1000,
            "p95_us": percentile(scheme.samples_ns, 0.95) / 1000,
            "overhead_us": (median - base_median) / 1000,
            "overhead_round_q1_us": percentile(differences, 0.25) / 1000,
            "overhead_round_q3_us": percentile(differences, 0.75) / 1000,
            "queries_per_request": queries[scheme.name][0],
            "sql": queries[scheme.name][1],
        }
    drf_overhead = results["drf"]["overhead_us"]
    for result in results.values():
        result["overhead_vs_drf"] = result["overhead_us"] / drf_overhead if drf_overhead else None
    return results


def table(results):
    rows = []
    for name, result in results.items():
        ratio = "—" if name == "none" else f"{result['overhead_vs_drf']:.2f}x"
        overhead = (
            "—"
            if name == "none"
            else (
                f"{result['overhead_us']:.0f} "
                f"({result['overhead_round_q1_us']:.0f}-{result['overhead_round_q3_us']:.0f})"
            )
        )
        rows.append(
            [
                result["label"],
                f"{result['median_us']:.0f}",
                f"{result['p95_us']:.0f}",
                overhead,
                ratio,
                f"{result['queries_per_request']:g}",
            ]
        )
    headers = [
        "scheme",
        "median µs",
        "p95 µs",
        "overhead µs (round IQR)",
        "overhead / DRF's",
        "queries",
    ]
    return markdown_table(headers, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=50, help="requests per scheme per round")
    parser.add_argument("--no-redis", action="store_true", help="leave out the Redis cache")
    parser.add_argument(
        "--experiments", action="store_true", help="add the ORM lookup as a comparison scheme"
    )
    parser.add_argument("--output", help="JSON file (default bench/results/raw/auth-<db>.json)")
    options = parser.parse_args()

    loadavg_before = os.getloadavg()
    sample = dataset.load_sample()
    with_redis = not options.no_redis and redis_available()
    schemes = build_schemes(sample, with_redis, options.experiments)
    round_medians, queries, seconds = measure(schemes, options.rounds, options.batch)
    results = summarize(schemes, round_medians, queries)

    report = {
        "db": settings.BENCH_DB,
        "db_version": f"{connection.display_name} {_server_version()}",
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
        "python": platform.python_version(),
        "rounds": options.rounds,
        "batch": options.batch,
        "sample_tokens": len(sample["pat"]),
        "table_rows": dataset.table_counts(),
        "timed_seconds": round(seconds, 1),
        "results": results,
    }
    output = options.output or settings.RAW_DIR / f"auth-{settings.BENCH_DB}.json"
    with open(output, "w") as handle:
        json.dump(report, handle, indent=1)
    print(
        f"\n{settings.BENCH_DB}: {options.rounds} rounds x {options.batch} requests per scheme, "
        f"{seconds:.0f} s timed\n"
    )
    print(table(results))


def _server_version():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
        else:
            cursor.execute("SELECT VERSION()")
        return cursor.fetchone()[0]


if __name__ == "__main__":
    main()
