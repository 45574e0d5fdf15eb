"""``clear_expired_tokens`` on 1,000,000 expired rows while another process keeps authenticating.

1. Insert ``--rows`` expired sessions (refresh token expired a day ago), spread over 1,000 users,
   beside the dataset's 100,000 live ones.
2. Start an authentication loop in a separate process: the uncached bearer view, paced at
   ``--rate`` requests per second, recording each request's latency and finishing time.
3. After ``--rest`` seconds, run ``manage.py clear_expired_tokens`` in a child process and read
   its wall time and peak RSS (``ru_maxrss`` from ``os.wait4``).
4. Stop the loop and compare its p99 while the command ran with its p99 before it started.

``--pause SECONDS`` is an experiment: in place of the command, the child process calls
``pat_tokens.cleanup.delete_expired`` with a pause after every batch, to show what spacing the
batches out does to the other process's latency.

Usage: ``BENCH_DB=mysql python -m bench.cleanup_under_load [--rows 1000000] [--batch-size N]``.
"""

import argparse
import datetime
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench import dataset, views  # noqa: E402
from bench.stats import markdown_table, percentile  # noqa: E402
from pat_tokens import cleanup  # noqa: E402
from pat_tokens.models import PersonalAccessToken  # noqa: E402

OWNERS = 1_000
INSERT_BATCH = 50_000
INSERT_SQL = (
    "INSERT INTO refresh_tokens (access_token, refresh_token, user_id, expires_access_token, "
    "expires_refresh_token, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def insert_expired(rows):
    """Insert ``rows`` sessions whose refresh token expired a day ago; return the seconds taken.

    MariaDB builds the rows itself from its SEQUENCE engine, in chunks of ``INSERT_BATCH`` rows;
    other databases get them from Python with ``executemany``.
    """
    started = time.perf_counter()
    user_model = get_user_model()
    owners = list(user_model.objects.order_by("pk").values_list("pk", flat=True)[:OWNERS])
    created = timezone.now() - timedelta(days=15)
    expired = timezone.now() - timedelta(days=1)
    # Django stores naive UTC on MySQL and MariaDB; the raw INSERT does the same.
    created, expired = (
        timezone.make_naive(value, datetime.timezone.utc) for value in (created, expired)
    )
    if connection.mysql_is_mariadb:
        _insert_with_sequence(rows, owners, created, expired)
    else:
        _insert_from_python(rows, owners, created, expired)
    return time.perf_counter() - started


def _insert_with_sequence(rows, owners, created, expired):
    with connection.cursor() as cursor:
        cursor.execute("DROP TEMPORARY TABLE IF EXISTS bench_owners")
        cursor.execute(
            "CREATE TEMPORARY TABLE bench_owners (n INT PRIMARY KEY, user_id uuid NOT NULL)"
        )
        cursor.executemany(
            "INSERT INTO bench_owners (n, user_id) VALUES (%s, %s)",
            [(index, str(pk)) for index, pk in enumerate(owners)],
        )
        for start in range(0, rows, INSERT_BATCH):
            end = min(start + INSERT_BATCH, rows) - 1
            with transaction.atomic():
                cursor.execute(
                    "INSERT INTO refresh_tokens (access_token, refresh_token, user_id, "
                    "expires_access_token, expires_refresh_token, created_at, updated_at) "
                    "SELECT SHA2(CONCAT('bench-expired-access-', seq), 256), "
                    "SHA2(CONCAT('bench-expired-refresh-', seq), 256), bench_owners.user_id, "
                    "%s, %s, %s, %s "
                    f"FROM seq_{start}_to_{end} "
                    "JOIN bench_owners ON bench_owners.n = seq %% %s",
                    [expired, expired, created, created, len(owners)],
                )
        cursor.execute("DROP TEMPORARY TABLE bench_owners")


def _insert_from_python(rows, owners, created, expired):
    owners = [str(pk) for pk in owners]
    for start in range(0, rows, INSERT_BATCH):
        batch = [
            (
                hashlib.sha256(f"bench-expired-access-{index}".encode()).hexdigest(),
                hashlib.sha256(f"bench-expired-refresh-{index}".encode()).hexdigest(),
                owners[index % len(owners)],
                expired,
                expired,
                created,
                created,
            )
            for index in range(start, min(start + INSERT_BATCH, rows))
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(INSERT_SQL, batch)


def auth_loop(output, rate, max_seconds):
    """Authenticate in a loop until SIGTERM or ``max_seconds``; write the samples to ``output``."""
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    sample = dataset.load_sample()
    view = views.PatView.as_view()
    factory = RequestFactory()
    interval = 1 / rate
    finished_ns, latencies_ns, failures = [], [], 0
    deadline = time.monotonic() + max_seconds
    next_start = time.monotonic()
    index = 0
    while not stopping and time.monotonic() < deadline:
        token = sample["pat"][index % len(sample["pat"])]
        index += 1
        started = time.perf_counter_ns()
        response = view(factory.get("/bench/", headers={"Authorization": f"Bearer {token}"}))
        response.render()
        latencies_ns.append(time.perf_counter_ns() - started)
        finished_ns.append(time.monotonic_ns())
        failures += response.status_code != 200
        next_start += interval
        pause = next_start - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            next_start = time.monotonic()
    with open(output, "w") as handle:
        json.dump(
            {"finished_ns": finished_ns, "latencies_ns": latencies_ns, "failures": failures}, handle
        )


PAUSED_CLEANUP = """
import os, sys, time
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
import django
django.setup()
from pat_tokens import cleanup
batch_size, pause = int(sys.argv[1]), float(sys.argv[2])
total = cleanup.delete_expired(batch_size=batch_size, on_batch=lambda *args: time.sleep(pause))
print(f"Deleted {total} expired sessions, pausing {pause} s after each batch.")
"""


def run_command(batch_size, pause=None):
    """Run ``clear_expired_tokens`` in a child process; return its time, peak RSS and output."""
    if pause is None:
        command = [
            sys.executable,
            "-m",
            "django",
            "clear_expired_tokens",
            "--settings=bench.settings",
        ]
        if batch_size:
            command.append(f"--batch-size={batch_size}")
    else:
        batch_size = batch_size or cleanup.DEFAULT_BATCH_SIZE
        command = [sys.executable, "-c", PAUSED_CLEANUP, str(batch_size), str(pause)]
    environment = {**os.environ, "PYTHONPATH": str(settings.REPOSITORY_DIR)}
    output_path = settings.RAW_DIR / "cleanup-command.out"
    with open(output_path, "w") as output:
        started_ns = time.monotonic_ns()
        process = subprocess.Popen(
            command, cwd=settings.REPOSITORY_DIR, env=environment, stdout=output, stderr=output
        )
        _, status, usage = os.wait4(process.pid, 0)
        finished_ns = time.monotonic_ns()
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "command": " ".join(command[1:]) if pause is None else f"delete_expired, {pause} s pauses",
        "exit_status": process.returncode,
        "started_ns": started_ns,
        "finished_ns": finished_ns,
        "wall_seconds": (finished_ns - started_ns) / 1e9,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
        "user_seconds": usage.ru_utime,
        "system_seconds": usage.ru_stime,
        "output": output_path.read_text().strip(),
    }


def p99_between(loop, start_ns, end_ns):
    latencies = [
        latency
        for finished, latency in zip(loop["finished_ns"], loop["latencies_ns"], strict=True)
        if start_ns <= finished <= end_ns
    ]
    if not latencies:
        return None, 0
    return percentile(latencies, 0.99) / 1000, len(latencies)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="expired rows to insert")
    parser.add_argument("--batch-size", type=int, help="the command's --batch-size")
    parser.add_argument("--rest", type=float, default=30, help="seconds of loop before cleanup")
    parser.add_argument("--pause", type=float, help="experiment: seconds to pause after each batch")
    parser.add_argument("--output", help="JSON file (default bench/results/raw/cleanup-<db>.json)")
    parser.add_argument("--rate", type=float, default=200, help="authentications per second")
    parser.add_argument("--auth-loop", metavar="OUTPUT", help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=900, help=argparse.SUPPRESS)
    options = parser.parse_args()

    if options.auth_loop:
        auth_loop(options.auth_loop, options.rate, options.max_seconds)
        return

    live_before = PersonalAccessToken.objects.live().count()
    insert_seconds = insert_expired(options.rows)
    expired_before = PersonalAccessToken.objects.expired().count()
    print(
        f"Inserted {options.rows} expired rows in {insert_seconds:.0f} s "
        f"({expired_before} expired, {live_before} live)",
        flush=True,
    )
    connection.close()

    loop_output = settings.RAW_DIR / "cleanup-auth-loop.json"
    loop_command = [
        sys.executable,
        "-m",
        "bench.cleanup_under_load",
        f"--auth-loop={loop_output}",
        f"--rate={options.rate}",
    ]
    loop = subprocess.Popen(loop_command, cwd=settings.REPOSITORY_DIR)
    try:
        time.sleep(options.rest)
        command = run_command(options.batch_size, options.pause)
        time.sleep(2)
    finally:
        os.kill(loop.pid, signal.SIGTERM)
        loop.wait(timeout=60)
    samples = json.loads(loop_output.read_text())

    # The first two seconds of the loop warm it up and are left out of "at rest".
    first_ns = samples["finished_ns"][0]
    rest_p99, rest_count = p99_between(samples, first_ns + 2_000_000_000, command["started_ns"])
    during_p99, during_count = p99_between(samples, command["started_ns"], command["finished_ns"])
    result = {
        "rows": options.rows,
        "insert_seconds": insert_seconds,
        "expired_before": expired_before,
        "live_before": live_before,
        "expired_after": PersonalAccessToken.objects.expired().count(),
        "live_after": PersonalAccessToken.objects.live().count(),
        "command": command,
        "pause_seconds": options.pause,
        "auth_rate": options.rate,
        "auth_failures": samples["failures"],
        "auth_p99_rest_us": rest_p99,
        "auth_requests_rest": rest_count,
        "auth_p99_during_us": during_p99,
        "auth_requests_during": during_count,
        "p99_ratio": during_p99 / rest_p99 if rest_p99 and during_p99 else None,
        "loadavg_after": os.getloadavg(),
    }
    output = options.output or settings.RAW_DIR / f"cleanup-{settings.BENCH_DB}.json"
    with open(output, "w") as handle:
        json.dump(result, handle, indent=1)

    print(
        f"\nclear_expired_tokens on {options.rows} expired rows "
        f"({settings.BENCH_DB}); authentication paced at {options.rate:.0f}/s\n"
    )
    print(
        markdown_table(
            [
                "rows deleted",
                "wall s",
                "peak RSS MB",
                "auth p99 at rest µs",
                "auth p99 during µs",
                "ratio",
                "live rows kept",
                "auth failures",
            ],
            [
                [
                    options.rows - result["expired_after"],
                    f"{command['wall_seconds']:.1f}",
                    f"{command['peak_rss_mb']:.0f}",
                    f"{rest_p99:.0f}",
                    f"{during_p99:.0f}" if during_p99 else "—",
                    f"{result['p99_ratio']:.2f}x" if result["p99_ratio"] else "—",
                    f"{result['live_after']} of {live_before}",
                    samples["failures"],
                ]
            ],
        )
    )
    print(f"\ncommand output: {command['output'].splitlines()[-1] if command['output'] else ''}")


if __name__ == "__main__":
    main()
