"""Refresh throughput: concurrent threads, each rotating its own session through ``refresh_pair``.

Every thread has its own session (so no two threads present the same refresh token and no refresh
loses a race) and, as Django gives each thread, its own database connection. Each thread refreshes
in a loop for ``--seconds`` and uses the refresh token it got back for the next call. The run
reports refreshes per second over all threads, latency percentiles and errors by type.

Usage: ``BENCH_DB=mysql python -m bench.refresh_throughput [--threads 8] [--seconds 10]``.
"""

import argparse
import json
import os
import threading
import time
from collections import Counter

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

from bench.stats import markdown_table, percentile  # noqa: E402
from pat_tokens import services  # noqa: E402
from pat_tokens.models import PersonalAccessToken  # noqa: E402


def refresh_loop(refresh_token, deadline, latencies_ns, errors, start_barrier):
    start_barrier.wait()
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter_ns()
            try:
                pair = services.refresh_pair(refresh_token)
            except Exception as error:
                errors[type(error).__name__] += 1
                continue
            latencies_ns.append(time.perf_counter_ns() - started)
            refresh_token = pair.refresh_token
    finally:
        connection.close()


def run(threads, seconds):
    """Return the result of one run with ``threads`` threads, each with a new session."""
    users = list(get_user_model().objects.order_by("-username")[:threads])
    pairs = [services.issue_pair(user) for user in users]
    latencies = [[] for _ in range(threads)]
    errors = Counter()
    barrier = threading.Barrier(threads + 1)
    # The threads start on the barrier; the half second covers starting them.
    deadline = time.monotonic() + seconds + 0.5

    workers = [
        threading.Thread(
            target=refresh_loop,
            args=(pair.refresh_token, deadline, thread_latencies, errors, barrier),
        )
        for pair, thread_latencies in zip(pairs, latencies, strict=True)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.monotonic()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started

    PersonalAccessToken.objects.filter(pk__in=[pair.token.pk for pair in pairs]).delete()
    every = [value for thread_latencies in latencies for value in thread_latencies]
    return {
        "threads": threads,
        "seconds": round(elapsed, 2),
        "refreshes": len(every),
        "refreshes_per_second": len(every) / elapsed,
        "per_thread": [len(thread_latencies) for thread_latencies in latencies],
        "p50_ms": percentile(every, 0.5) / 1e6,
        "p99_ms": percentile(every, 0.99) / 1e6,
        "errors": dict(errors),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    options = parser.parse_args()

    results = [run(1, options.seconds / 2), run(options.threads, options.seconds)]
    output = settings.RAW_DIR / f"refresh-{settings.BENCH_DB}.json"
    output.write_text(
        json.dumps(
            {"db": settings.BENCH_DB, "results": results, "loadavg_after": os.getloadavg()},
            indent=1,
        )
    )

    rows = [
        [
            result["threads"],
            f"{result['refreshes_per_second']:.0f}",
            result["refreshes"],
            f"{result['p50_ms']:.2f}",
            f"{result['p99_ms']:.2f}",
            sum(result["errors"].values()),
        ]
        for result in results
    ]
    print(f"\n{settings.BENCH_DB}: refresh_pair with rotation, one session per thread\n")
    print(
        markdown_table(["threads", "refreshes/s", "refreshes", "p50 ms", "p99 ms", "errors"], rows)
    )


if __name__ == "__main__":
    main()
