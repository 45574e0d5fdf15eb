"""A second process for the Redis cache tests, so that they cover two processes sharing one cache.

Run as ``python -m tests.cache_worker`` with the test settings; the environment names the test
database, the Redis cache alias and ``PAT_TOKENS`` (see ``worker_environment()`` in
``tests/test_cache_redis.py``). The worker reads one JSON object per line from stdin,
``{"token": <access token>}``, sends ``GET /api/me/`` with that bearer token through Django's test
client, and writes one JSON line back: ``{"status", "code", "username", "queries"}``. It exits at
the end of its input.
"""

import json
import os
import sys
from datetime import timedelta


def configure():
    """Point the test settings at the parent's test database and cache, then set Django up."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from tests import settings as test_settings

    test_settings.DATABASES["default"]["NAME"] = os.environ["PAT_WORKER_DATABASE_NAME"]
    test_settings.CACHES["redis"] = json.loads(os.environ["PAT_WORKER_REDIS_CACHE"])
    pat_tokens = json.loads(os.environ["PAT_WORKER_PAT_TOKENS"])
    pat_tokens["CACHE_TIMEOUT"] = timedelta(seconds=pat_tokens["CACHE_TIMEOUT"])
    test_settings.PAT_TOKENS = pat_tokens

    import django

    django.setup()


def serve(lines, output):
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(raise_request_exception=False)
    for line in lines:
        token = json.loads(line)["token"]
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {token}")
        body = response.json() if response["Content-Type"] == "application/json" else {}
        result = {
            "status": response.status_code,
            "code": body.get("code"),
            "username": body.get("username"),
            "queries": len(queries.captured_queries),
        }
        output.write(json.dumps(result) + "\n")
        output.flush()


if __name__ == "__main__":
    configure()
    serve(sys.stdin, sys.stdout)
