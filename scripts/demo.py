#!/usr/bin/env python3
"""Set up the example project on SQLite and start it on http://127.0.0.1:8000/.

Usage: ``python3 scripts/demo.py [PORT]`` (default 8000, or the ``PORT`` environment variable)

Creates ``.venv`` on first use (as ``scripts/runtests.py`` does), migrates the SQLite database in
``example_project/db.sqlite3``, creates or resets the superuser ``demo``, prints how to call the
API with curl, and runs Django's development server until you press Ctrl+C.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtests import PYTHON, ROOT, ensure_virtualenv

EXAMPLE = ROOT / "example_project"
USERNAME = "demo"
PASSWORD = "demo-password-1"  # noqa: S105 (a local demo account)

INSTRUCTIONS = """
The example project is starting at {base}/ (Ctrl+C stops it).

  Index:      {base}/
  Admin:      {base}/admin/   (user {username}, password {password})

  Get a token pair:
    curl -s -X POST {base}/auth/token/ -H 'Content-Type: application/json' \\
      -d '{{"username": "{username}", "password": "{password}"}}'

  Call the API with the access token from that response:
    curl -s {base}/api/me/ -H 'Authorization: Bearer <access_token>'

  Refresh, list sessions, revoke:
    curl -s -X POST {base}/auth/token/refresh/ -d 'refresh_token=<refresh_token>'
    curl -s {base}/auth/sessions/ -H 'Authorization: Bearer <access_token>'
    curl -s -X POST {base}/auth/token/revoke/ -H 'Authorization: Bearer <access_token>'
"""


def manage(*arguments):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    subprocess.run([str(PYTHON), "manage.py", *arguments], cwd=EXAMPLE, env=env, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "port",
        nargs="?",
        type=int,
        default=int(os.environ.get("PORT", "8000")),
        help="TCP port on 127.0.0.1 to serve on (default: %(default)s)",
    )
    port = parser.parse_args().port
    ensure_virtualenv()
    manage("migrate", "--verbosity", "0")
    manage("create_demo_user", "--username", USERNAME, "--password", PASSWORD)
    print(
        INSTRUCTIONS.format(base=f"http://127.0.0.1:{port}", username=USERNAME, password=PASSWORD)
    )
    try:
        manage("runserver", f"127.0.0.1:{port}")
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
