#!/usr/bin/env python3
"""Run the whole test suite: always on SQLite, and on MySQL/MariaDB and PostgreSQL when reachable.

Usage: ``python3 scripts/runtests.py [pytest arguments]``

The script creates ``.venv`` on first use and installs the package with its test extras there.
It then runs pytest once per database (and once more with an integer-keyed user model) and prints
which databases it ran and which it skipped. With ``CI=true`` in the environment, a database
server that cannot be reached is a failure, not a skip.

Environment:
  PAT_TEST_MYSQL_URL     default mysql://root@127.0.0.1:3306/pat_tokens
  PAT_TEST_POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/pat_tokens
  PAT_TEST_ONLY          comma-separated subset of: sqlite, mysql, postgres
  PAT_TEST_INSTALL_ONLY  set to 1 to create and fill .venv without running tests
"""

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import venv
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".pat-tokens-installed"

DEFAULT_URLS = {
    "mysql": "mysql://root@127.0.0.1:3306/pat_tokens",
    "postgres": "postgres://postgres@127.0.0.1:5432/pat_tokens",
}
NAMES = {"sqlite": "SQLite", "mysql": "MySQL/MariaDB", "postgres": "PostgreSQL"}


def in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def say(message):
    print(f"[runtests] {message}", flush=True)


def ensure_virtualenv():
    """Create .venv and install the package with its test extras when pyproject.toml changed."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        say(f"creating a virtualenv in {VENV}")
        try:
            venv.create(VENV, with_pip=True)
        except Exception as error:
            sys.exit(
                f"[runtests] could not create {VENV}: {error}. On Debian or Ubuntu, install the "
                "python3-venv package and run this command again."
            )

    say("installing django-pat-tokens with its test extras (first run only)")
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test,postgres]"], check=True)
    mysql = subprocess.run([*pip, "mysqlclient>=2.2"], check=False)
    if mysql.returncode != 0:
        say(
            "mysqlclient did not install (it needs a C compiler, pkg-config and the MySQL or "
            "MariaDB client headers, e.g. Debian's libmariadb-dev); the MySQL suite will be skipped"
        )
    STAMP.write_text(wanted)


def server_problem(kind, url):
    """Return why the database server at ``url`` cannot be used, or ``None`` when it can."""
    if kind == "mysql":
        check = subprocess.run(
            [str(PYTHON), "-c", "import MySQLdb"], capture_output=True, check=False
        )
        if check.returncode != 0:
            return "the mysqlclient package is not installed"

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (3306 if kind == "mysql" else 5432)
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as error:
        return f"cannot connect to {host}:{port} ({error.strerror or error})"


def run_pytest(label, env_overrides, pytest_args):
    """Run pytest with extra environment; return (exit code, counts)."""
    report = Path(tempfile.mkstemp(prefix="pat-tokens-", suffix=".xml")[1])
    env = {**os.environ, **env_overrides}
    say(f"running the {label} suite")
    command = [str(PYTHON), "-m", "pytest", f"--junitxml={report}", *pytest_args]
    returncode = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    counts = read_counts(report)
    report.unlink(missing_ok=True)
    return returncode, counts


def read_counts(report):
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    try:
        root = ElementTree.parse(report).getroot()
    except (ElementTree.ParseError, FileNotFoundError):
        return counts
    for suite in root.iter("testsuite"):
        tests = int(suite.get("tests", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        counts["failed"] += failed
        counts["skipped"] += skipped
        counts["passed"] += tests - failed - skipped
    return counts


def planned_runs(pytest_args):
    """Return (database kind, label, environment, pytest arguments) for each pytest run."""
    sqlite_file = Path(tempfile.gettempdir()) / f"pat-tokens-test-{os.getpid()}.sqlite3"
    urls = {
        "sqlite": "sqlite://:memory:",
        "mysql": os.environ.get("PAT_TEST_MYSQL_URL", DEFAULT_URLS["mysql"]),
        "postgres": os.environ.get("PAT_TEST_POSTGRES_URL", DEFAULT_URLS["postgres"]),
    }
    naive_time = {"PAT_TEST_USER_MODEL": "int", "PAT_TEST_USE_TZ": "0"}

    runs = []
    for kind, url in urls.items():
        env = {"DATABASE_URL": url, "PAT_TEST_SQLITE_NAME": str(sqlite_file)}
        runs.append((kind, NAMES[kind], env, pytest_args))
        if kind == "sqlite":
            label = "SQLite, integer-keyed user model"
            runs.append((kind, label, {**env, "PAT_TEST_USER_MODEL": "int"}, pytest_args))
        label = f"{NAMES[kind]}, integer-keyed user model, USE_TZ off"
        runs.append((kind, label, {**env, **naive_time}, pytest_args))

    return runs


def selected_kinds():
    """Return the database kinds PAT_TEST_ONLY selects (all of them when it is unset)."""
    only = {name for name in os.environ.get("PAT_TEST_ONLY", "").split(",") if name}
    return only or set(NAMES)


def main():
    pytest_args = sys.argv[1:]
    ensure_virtualenv()
    if os.environ.get("PAT_TEST_INSTALL_ONLY") == "1":
        return 0

    results, skipped, failed_servers = [], [], []
    kinds = selected_kinds()
    for kind, label, env, args in planned_runs(pytest_args):
        if kind not in kinds:
            continue
        if kind != "sqlite":
            problem = server_problem(kind, env["DATABASE_URL"])
            if problem:
                if label == NAMES[kind]:
                    message = f"the {NAMES[kind]} suites: {problem}"
                    (failed_servers if in_ci() else skipped).append(message)
                continue
        returncode, counts = run_pytest(label, env, args)
        results.append((label, returncode, counts))

    print()
    say("summary")
    for label, returncode, counts in results:
        state = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
        say(
            f"  {label}: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped: {state}"
        )
    for kind in sorted(set(NAMES) - kinds):
        say(f"  SKIPPED the {NAMES[kind]} suites: not selected by PAT_TEST_ONLY")
    for reason in skipped:
        say(f"  SKIPPED {reason}")
    for reason in failed_servers:
        say(f"  FAILED {reason} (with CI=true every database is mandatory)")

    totals = {
        key: sum(counts[key] for _, _, counts in results) for key in ("passed", "failed", "skipped")
    }
    print(
        f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped"
    )
    failed = failed_servers or any(returncode != 0 for _, returncode, _ in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
