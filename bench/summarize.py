"""Collect the raw results of one ``bench/run.sh`` into ``bench/results/summary.json`` and Markdown.

The summary keeps the per-scheme figures, the machine and the versions; the raw samples stay in
``bench/results/raw/``, which git ignores.
"""

import json
import os
import platform
import subprocess
from importlib import metadata

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import caches  # noqa: E402

from bench import auth_overhead  # noqa: E402

RESULTS_DIR = settings.BENCH_DIR / "results"
PACKAGES = (
    "Django",
    "djangorestframework",
    "django-rest-knox",
    "djangorestframework-simplejwt",
    "gunicorn",
    "mysqlclient",
    "redis",
    "django-pat-tokens",
)


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(total_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
    }


def versions():
    found = {"Python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    try:
        found["Redis server"] = caches["tokens-redis"]._cache.get_client().info()["redis_version"]
    except Exception:
        found["Redis server"] = None
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        found["wrk"] = (wrk.stdout or wrk.stderr).split()[1]
    except (OSError, IndexError):
        found["wrk"] = None
    return found


def read(name):
    path = settings.RAW_DIR / name
    return json.loads(path.read_text()) if path.exists() else None


def compact_auth(report):
    if report is None:
        return None
    keep = (
        "label",
        "requests",
        "median_us",
        "p95_us",
        "overhead_us",
        "overhead_round_q1_us",
        "overhead_round_q3_us",
        "overhead_vs_drf",
        "queries_per_request",
    )
    return {
        **{key: report[key] for key in ("db", "db_version", "rounds", "batch", "table_rows")},
        "results": {
            name: {key: _round(result[key]) for key in keep}
            for name, result in report["results"].items()
        },
    }


def _round(value):
    return round(value, 2) if isinstance(value, float) else value


def main():
    summary = {
        "machine": machine(),
        "versions": versions(),
        "auth_overhead": {db: compact_auth(read(f"auth-{db}.json")) for db in ("mysql", "sqlite")},
        "refresh": read("refresh-mysql.json"),
        "load": read("load-mysql.json"),
        "cleanup": read("cleanup-mysql.json"),
        "loadavg_at_start": read("loadavg-start.json"),
    }
    if summary["cleanup"]:
        summary["cleanup"]["command"].pop("output", None)
    (RESULTS_DIR / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    print(json.dumps({"machine": summary["machine"], "versions": summary["versions"]}, indent=1))
    for db in ("mysql", "sqlite"):
        report = read(f"auth-{db}.json")
        if report:
            print(f"\n{db} ({report['db_version']}):\n")
            print(auth_overhead.table(report["results"]))


if __name__ == "__main__":
    main()
