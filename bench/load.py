"""End-to-end load: gunicorn (2 sync workers) on 127.0.0.1 and ``wrk`` against each scheme.

One gunicorn per cache setting of this app (none, LocMemCache, RedisCache) is started on a free
loopback port, with persistent database connections. After a warm-up pass, ``wrk`` runs
``--rounds`` interleaved rounds. Each round runs every scheme once, starting at a different
scheme, and sends the scheme's sample tokens in turn (``bench/wrk_tokens.lua``). A scheme's
figures are the medians over its rounds. gunicorn and wrk share this machine's cores, so the
numbers compare schemes with each other and are no capacity figure for a real server.

Usage: ``BENCH_DB=mysql python -m bench.load [--rounds 3] [--seconds 5] [--connections 16]``.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.conf import settings  # noqa: E402

from bench import dataset  # noqa: E402
from bench.stats import markdown_table  # noqa: E402

WRK_SCRIPT = Path(__file__).with_name("wrk_tokens.lua")
GUNICORN = Path(sys.executable).with_name("gunicorn")
WORKERS = 2
# (path, label, Authorization keyword, sample key) per scheme, by the server's cache setting.
SERVERS = {
    "none": [
        ("none", "no authentication (baseline)", None, None),
        ("drf", "DRF TokenAuthentication", "Token", "drf"),
        ("knox", "knox TokenAuthentication", "Token", "knox"),
        ("jwt", "simplejwt JWTAuthentication", "Bearer", "jwt"),
        ("pat", "pat_tokens, no cache", "Bearer", "pat"),
    ],
    "locmem": [("pat", "pat_tokens, LocMemCache", "Bearer", "pat")],
    "redis": [("pat", "pat_tokens, RedisCache", "Bearer", "pat")],
}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(pat_cache, port, log_path):
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "BENCH_DB": settings.BENCH_DB,
        "BENCH_PAT_CACHE": pat_cache,
    }
    command = [
        str(GUNICORN),
        "bench.wsgi:application",
        "--workers",
        str(WORKERS),
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(settings.REPOSITORY_DIR),
        "--log-level",
        "warning",
        "--error-logfile",
        str(log_path),
    ]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
    try:
        wait_until_serving(process, port)
    except BaseException:
        stop(process)
        raise
    return process


def wait_until_serving(process, port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/none/", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # URLError, a refused connection or a timed-out read
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not respond on port {port} within {timeout} s")


def stop(process):
    """Stop gunicorn by its pid: SIGTERM, then SIGKILL if it has not exited after 15 s."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def run_wrk(url, keyword, tokens_file, seconds, threads, connections):
    environment = {
        **os.environ,
        "BENCH_AUTH_KEYWORD": keyword or "",
        "BENCH_TOKENS_FILE": str(tokens_file or ""),
    }
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    completed = subprocess.run(
        command,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure(servers, token_files, options):
    """Run the warm-up and the interleaved rounds; return the wrk summaries by scheme."""
    schemes = [
        (port, path, label, keyword, token_files.get(sample_key))
        for (port, _process), server_schemes in zip(servers, SERVERS.values(), strict=True)
        for path, label, keyword, sample_key in server_schemes
    ]
    for port, path, _label, keyword, tokens_file in schemes:
        url = f"http://127.0.0.1:{port}/{path}/"
        run_wrk(url, keyword, tokens_file, options.warmup, options.threads, options.connections)

    runs = {label: [] for _port, _path, label, _keyword, _tokens_file in schemes}
    for round_index in range(options.rounds):
        offset = round_index % len(schemes)
        for port, path, label, keyword, tokens_file in schemes[offset:] + schemes[:offset]:
            url = f"http://127.0.0.1:{port}/{path}/"
            summary = run_wrk(
                url, keyword, tokens_file, options.seconds, options.threads, options.connections
            )
            summary["requests_per_second"] = summary["requests"] / (summary["duration_us"] / 1e6)
            runs[label].append(summary)
            print(f"round {round_index + 1}, {label}: {summary['requests_per_second']:.0f}/s")
    return runs


def combine(label, summaries):
    latency = {
        key: statistics.median(summary["latency_us"][key] for summary in summaries)
        for key in summaries[0]["latency_us"]
    }
    return {
        "label": label,
        "requests_per_second": statistics.median(s["requests_per_second"] for s in summaries),
        "requests_per_second_rounds": [round(s["requests_per_second"]) for s in summaries],
        "latency_us": latency,
        "errors": sum(sum(summary["errors"].values()) for summary in summaries),
        "requests": sum(summary["requests"] for summary in summaries),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per scheme and round")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per scheme")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    options = parser.parse_args()

    sample = dataset.load_sample()
    token_files = {}
    for key in ("drf", "knox", "jwt", "pat"):
        token_files[key] = settings.RAW_DIR / f"wrk-tokens-{key}.txt"
        token_files[key].write_text("\n".join(sample[key]) + "\n")

    servers = []
    try:
        for pat_cache in SERVERS:
            port = free_port()
            log_path = settings.RAW_DIR / f"gunicorn-{pat_cache}.log"
            servers.append((port, start_gunicorn(pat_cache, port, log_path)))
        runs = measure(servers, token_files, options)
    finally:
        for _port, process in servers:
            stop(process)

    results = [combine(label, summaries) for label, summaries in runs.items()]
    report = {
        "db": settings.BENCH_DB,
        "workers": WORKERS,
        "wrk": {
            "threads": options.threads,
            "connections": options.connections,
            "seconds": options.seconds,
            "rounds": options.rounds,
        },
        "results": results,
        "loadavg_after": os.getloadavg(),
    }
    (settings.RAW_DIR / f"load-{settings.BENCH_DB}.json").write_text(json.dumps(report, indent=1))

    print(
        f"\n{settings.BENCH_DB}: gunicorn {WORKERS} workers per server, wrk {options.threads} "
        f"threads, {options.connections} connections, {options.rounds} rounds of "
        f"{options.seconds} s per scheme (medians over rounds)\n"
    )
    print(table(results))


def table(results):
    rows = []
    for result in results:
        latency = result["latency_us"]
        rows.append(
            [
                result["label"],
                f"{result['requests_per_second']:.0f}",
                ", ".join(str(value) for value in result["requests_per_second_rounds"]),
                f"{latency['p50'] / 1000:.1f}",
                f"{latency['p90'] / 1000:.1f}",
                f"{latency['p99'] / 1000:.1f}",
                result["errors"],
            ]
        )
    headers = ["scheme", "requests/s", "per round", "p50 ms", "p90 ms", "p99 ms", "errors"]
    return markdown_table(headers, rows)


if __name__ == "__main__":
    main()
