#!/usr/bin/env bash
# Re-run every benchmark and write bench/results/summary.json (about 10 minutes on 2 cores).
#
# Needs MariaDB or MySQL on 127.0.0.1:3306 (user root, no password; override with
# BENCH_MYSQL_URL), Redis on 127.0.0.1:6379 (BENCH_REDIS_URL; database 14 is used) and wrk.
# The peers are installed into a separate virtualenv, BENCH_VENV (default bench/.venv), so none
# of them becomes a dependency of the package. The datasets of an earlier run are reused while
# their sample tokens are less than 12 hours old; BENCH_FRESH=1 rebuilds them.
set -euo pipefail

cd "$(dirname "$0")/.."
venv=${BENCH_VENV:-bench/.venv}
python=${BENCH_PYTHON:-python3.11}

if [ ! -x "$venv/bin/python" ]; then
    echo "Creating the benchmark virtualenv in $venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -e ".[mysql,redis]" -r bench/requirements.txt
fi

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -q && apt-get install -y -q wrk
    else
        echo "wrk is missing: install it (Debian: apt-get install wrk) and run again." >&2
        exit 1
    fi
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
run() { "$venv/bin/python" -m "$@"; }
reuse=--reuse
if [ -n "${BENCH_FRESH:-}" ]; then reuse=; fi

mkdir -p bench/results/raw
"$venv/bin/python" -c 'import json, os; print(json.dumps(os.getloadavg()))' \
    > bench/results/raw/loadavg-start.json

BENCH_DB=mysql run bench.dataset $reuse
BENCH_DB=sqlite run bench.dataset $reuse
BENCH_DB=mysql run bench.auth_overhead --experiments
BENCH_DB=sqlite run bench.auth_overhead --experiments
BENCH_DB=mysql run bench.refresh_throughput
BENCH_DB=mysql run bench.load
BENCH_DB=mysql run bench.cleanup_under_load
BENCH_DB=mysql run bench.summarize
