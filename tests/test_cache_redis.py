"""The token cache on a real Redis server, in one process and shared by two.

Django's own ``RedisCache`` backend, on the server of the ``redis`` alias in the test settings
(``PAT_TEST_REDIS_URL``, by default ``redis://127.0.0.1:6379/15``). Each test uses a key prefix of
its own and deletes only its own keys. Without a reachable server the tests are skipped, unless
``CI=true``, where they fail.
"""

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pat_tokens import cache as token_cache_module
from pat_tokens import services, tokens
from pat_tokens.models import PersonalAccessToken

from .conftest import bearer

REDIS_URL = django_settings.CACHES["redis"]["LOCATION"]
CACHE_TIMEOUT = timedelta(seconds=60)
REPOSITORY = Path(__file__).resolve().parent.parent
WORKER_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="session")
def redis_server():
    """A client of the test Redis server; skip (fail under ``CI=true``) when it is unreachable."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        reason = (
            f"the Redis server at {REDIS_URL} is not reachable ({error}); start it or set "
            "PAT_TEST_REDIS_URL"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield client
    client.close()


@pytest.fixture
def redis_cache(redis_server, settings):
    """Make a Redis alias with a key prefix of its own the token cache; delete its keys after."""
    prefix = f"pat-tests-auth-{uuid.uuid4().hex}"
    config = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": prefix,
    }
    settings.CACHES = {**settings.CACHES, "redis": config}
    settings.PAT_TOKENS = {"CACHE_ALIAS": "redis", "CACHE_TIMEOUT": CACHE_TIMEOUT}

    yield SimpleNamespace(cache=caches["redis"], config=config, prefix=prefix)

    for key in redis_server.scan_iter(match=f"{prefix}:*"):
        redis_server.delete(key)


def get_me(client, token, path="/api/me/"):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, **bearer(token))
    return response, len(queries.captured_queries)


def entry_ttl(redis_server, redis_cache, token):
    """Return the seconds Redis keeps the entry of ``token`` (-2: no entry)."""
    key = redis_cache.cache.make_key(token_cache_module._entry_key(tokens.digest(token)))
    return redis_server.ttl(key)


def assert_code(response, code):
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


@pytest.fixture
def cached_pair(redis_cache, alice, api_client):
    pair = services.issue_pair(alice)
    response, queries = get_me(api_client, pair.access_token)
    assert response.status_code == 200
    assert queries == 1
    return pair


# One process.


@pytest.mark.parametrize("path", ["/api/me/", "/plain/me/"])
def test_hit_makes_no_query(api_client, cached_pair, path):
    response, queries = get_me(api_client, cached_pair.access_token, path)

    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert queries == 0


def test_entry_ttl_is_cache_timeout(redis_server, redis_cache, cached_pair):
    ttl = entry_ttl(redis_server, redis_cache, cached_pair.access_token)

    assert 0 < ttl <= CACHE_TIMEOUT.total_seconds()


def test_entry_ttl_never_past_access_expiry(
    api_client, redis_server, redis_cache, alice, clock, settings
):
    settings.PAT_TOKENS = {**settings.PAT_TOKENS, "ACCESS_TOKEN_LIFETIME": timedelta(seconds=30)}
    pair = services.issue_pair(alice)
    clock.shift(timedelta(seconds=20))

    assert get_me(api_client, pair.access_token)[0].status_code == 200

    assert 0 < entry_ttl(redis_server, redis_cache, pair.access_token) <= 10


def test_keys_hold_no_plaintext(redis_server, redis_cache, cached_pair):
    keys = list(redis_server.scan_iter(match=f"{redis_cache.prefix}:*"))

    assert keys
    for key in keys:
        assert cached_pair.access_token.encode() not in key
        assert cached_pair.access_token.encode() not in redis_server.get(key)


def test_revoke_takes_effect_at_once(api_client, cached_pair):
    services.revoke(cached_pair.token)

    response, queries = get_me(api_client, cached_pair.access_token)

    assert_code(response, "token_invalid")
    assert queries == 1


def test_revoke_endpoint_takes_effect_at_once(api_client, cached_pair):
    assert (
        api_client.post("/auth/token/revoke/", **bearer(cached_pair.access_token)).status_code
        == 204
    )

    assert_code(get_me(api_client, cached_pair.access_token)[0], "token_invalid")


def test_refresh_takes_effect_at_once(api_client, cached_pair):
    new_pair = services.refresh_pair(cached_pair.refresh_token)

    assert_code(get_me(api_client, cached_pair.access_token)[0], "token_invalid")
    assert get_me(api_client, new_pair.access_token)[0].status_code == 200


def test_deactivation_by_save_takes_effect_at_once(api_client, cached_pair, alice):
    alice.is_active = False
    alice.save()

    assert_code(get_me(api_client, cached_pair.access_token)[0], "user_inactive")


def test_user_deletion_takes_effect_at_once(api_client, cached_pair, alice):
    alice.delete()

    assert_code(get_me(api_client, cached_pair.access_token)[0], "token_invalid")


def test_queryset_update_waits_for_timeout(
    api_client, redis_server, redis_cache, cached_pair, alice
):
    """QuerySet.update() sends no signal: the entry stays until Redis expires it."""
    get_user_model()._default_manager.filter(pk=alice.pk).update(is_active=False)

    response, queries = get_me(api_client, cached_pair.access_token)

    assert response.status_code == 200
    assert queries == 0
    assert 0 < entry_ttl(redis_server, redis_cache, cached_pair.access_token) <= 60


def test_tombstone_ttl(redis_server, redis_cache, cached_pair):
    services.revoke(cached_pair.token)

    key = redis_cache.cache.make_key(
        token_cache_module._tombstone_key(tokens.digest(cached_pair.access_token))
    )
    ttl = redis_server.ttl(key)

    # Long enough to outlive any entry a concurrent lookup may still store.
    assert CACHE_TIMEOUT.total_seconds() < ttl <= 2 * CACHE_TIMEOUT.total_seconds() + 60


# Two processes sharing the cache.


class Worker:
    """The process of ``tests/cache_worker.py``, authenticating tokens on request."""

    def __init__(self, process, stderr_path):
        self.process = process
        self.stderr_path = stderr_path

    def get_me(self, token):
        self.process.stdin.write(json.dumps({"token": token}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the worker exited: {self.stderr_path.read_text()}"
        return json.loads(line)

    def stop(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=WORKER_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


def worker_environment(redis_cache):
    paths = [str(REPOSITORY), str(REPOSITORY / "example_project")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PAT_WORKER_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "PAT_WORKER_REDIS_CACHE": json.dumps(redis_cache.config),
        "PAT_WORKER_PAT_TOKENS": json.dumps(
            {"CACHE_ALIAS": "redis", "CACHE_TIMEOUT": CACHE_TIMEOUT.total_seconds()}
        ),
    }


@pytest.fixture
def worker(transactional_db, redis_cache, tmp_path):
    """A second Python process on the same test database and Redis cache."""
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip(
            "needs a test database that a second process can open: use a database server or "
            "set PAT_TEST_SQLITE_NAME to a file"
        )
    stderr_path = tmp_path / "worker-stderr.txt"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.cache_worker"],
            cwd=REPOSITORY,
            env=worker_environment(redis_cache),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    running = Worker(process, stderr_path)
    yield running
    running.stop()


@pytest.fixture
def shared_pair(worker, alice):
    """A session of alice's that the worker has authenticated, so its entry is in Redis."""
    pair = services.issue_pair(alice)
    first = worker.get_me(pair.access_token)
    assert first == {"status": 200, "code": None, "username": "alice", "queries": 1}
    assert worker.get_me(pair.access_token)["queries"] == 0
    return pair


def test_worker_uses_entry_of_this_process(worker, api_client, alice):
    pair = services.issue_pair(alice)
    assert get_me(api_client, pair.access_token)[1] == 1

    assert worker.get_me(pair.access_token) == {
        "status": 200,
        "code": None,
        "username": "alice",
        "queries": 0,
    }


def test_this_process_uses_entry_of_worker(api_client, shared_pair):
    response, queries = get_me(api_client, shared_pair.access_token)

    assert response.status_code == 200
    assert queries == 0


def test_revoke_reaches_worker_at_once(worker, shared_pair):
    services.revoke(shared_pair.token)

    result = worker.get_me(shared_pair.access_token)

    assert result["status"] == 401
    assert result["code"] == "token_invalid"
    assert result["queries"] == 1


def test_revoke_endpoint_reaches_worker_at_once(worker, api_client, shared_pair):
    response = api_client.post("/auth/token/revoke/", **bearer(shared_pair.access_token))
    assert response.status_code == 204

    assert worker.get_me(shared_pair.access_token)["code"] == "token_invalid"


def test_refresh_reaches_worker_at_once(worker, shared_pair):
    new_pair = services.refresh_pair(shared_pair.refresh_token)

    assert worker.get_me(shared_pair.access_token)["code"] == "token_invalid"
    assert worker.get_me(new_pair.access_token)["status"] == 200


def test_deactivation_by_save_reaches_worker_at_once(worker, shared_pair, alice):
    alice.is_active = False
    alice.save()

    result = worker.get_me(shared_pair.access_token)

    assert result["status"] == 401
    assert result["code"] == "user_inactive"


def test_user_deletion_reaches_worker_at_once(worker, shared_pair, alice):
    alice.delete()

    result = worker.get_me(shared_pair.access_token)

    assert result["status"] == 401
    assert result["code"] == "token_invalid"
    assert not PersonalAccessToken.objects.exists()


def test_queryset_update_reaches_worker_within_timeout(
    worker, redis_server, redis_cache, shared_pair, alice
):
    """No signal, so the worker keeps its entry until Redis expires it (at most CACHE_TIMEOUT)."""
    get_user_model()._default_manager.filter(pk=alice.pk).update(is_active=False)

    result = worker.get_me(shared_pair.access_token)

    assert result["status"] == 200
    assert result["queries"] == 0
    assert 0 < entry_ttl(redis_server, redis_cache, shared_pair.access_token) <= 60
