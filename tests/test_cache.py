"""The token cache (``CACHE_ALIAS``) with Django's local-memory backend, and with failing backends.

The same rules run against a real Redis server in ``test_cache_redis.py``.
"""

import logging
import socket
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from rest_framework.request import Request
from rest_framework.test import APIClient

from pat_tokens import cache as token_cache_module
from pat_tokens import services, tokens
from pat_tokens.authentication import PersonalAccessTokenAuthentication, _fetch
from pat_tokens.exceptions import TokenInvalid, UserInactive
from pat_tokens.models import PersonalAccessToken

from .conftest import bearer

PATHS = ["/api/me/", "/plain/me/"]


@pytest.fixture(autouse=True)
def no_throttle_history():
    """Forget request counts of earlier tests: the token views throttle by client address."""
    caches["default"].clear()


def get_me(client, token, path="/api/me/"):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, **bearer(token))
    return response, len(queries.captured_queries)


def entry(cache, token):
    return cache.get(token_cache_module._entry_key(tokens.digest(token)))


def assert_code(response, error_class):
    assert response.status_code == 401
    assert response.json()["code"] == error_class.default_code
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


@pytest.fixture
def token_cache(settings):
    settings.PAT_TOKENS = {"CACHE_ALIAS": "tokens", "CACHE_TIMEOUT": timedelta(seconds=60)}
    cache = caches["tokens"]
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def cached_pair(token_cache, alice, api_client):
    """A session of alice's whose access token is in the cache."""
    pair = services.issue_pair(alice)
    response, queries = get_me(api_client, pair.access_token)
    assert response.status_code == 200
    assert queries == 1
    assert entry(token_cache, pair.access_token) is not None
    return pair


# Hits and timeouts.


@pytest.mark.parametrize("path", PATHS)
def test_hit_makes_no_query(api_client, cached_pair, path):
    for _ in range(3):
        response, queries = get_me(api_client, cached_pair.access_token, path)
        assert response.status_code == 200
        assert response.json()["username"] == "alice"
        assert queries == 0


def test_cached_request_auth_is_the_row(rf, cached_pair):
    request = Request(rf.get("/api/me/", **bearer(cached_pair.access_token)))

    user, row = PersonalAccessTokenAuthentication().authenticate(request)

    assert row == cached_pair.token
    assert user.pk == cached_pair.token.user_id
    assert row.user is user


def test_entry_lasts_cache_timeout(api_client, token_cache, alice, clock):
    pair = services.issue_pair(alice)
    get_me(api_client, pair.access_token)

    clock.shift(timedelta(seconds=59))
    assert get_me(api_client, pair.access_token)[1] == 0

    clock.shift(timedelta(seconds=2))
    assert entry(token_cache, pair.access_token) is None
    response, queries = get_me(api_client, pair.access_token)
    assert response.status_code == 200
    assert queries == 1


def test_entry_never_outlives_access_token(api_client, token_cache, alice, clock, settings):
    settings.PAT_TOKENS = {**settings.PAT_TOKENS, "ACCESS_TOKEN_LIFETIME": timedelta(seconds=30)}
    pair = services.issue_pair(alice)
    clock.shift(timedelta(seconds=20))
    get_me(api_client, pair.access_token)
    assert entry(token_cache, pair.access_token) is not None

    clock.shift(timedelta(seconds=9, microseconds=999_000))
    assert get_me(api_client, pair.access_token)[1] == 0

    clock.move_to(pair.access_expires_at)
    assert entry(token_cache, pair.access_token) is None
    response, _ = get_me(api_client, pair.access_token)
    assert response.json()["code"] == "token_expired"


def test_expired_token_is_not_stored(token_cache, alice, clock):
    pair = services.issue_pair(alice)
    clock.move_to(pair.access_expires_at)
    row = _fetch(tokens.digest(pair.access_token))

    token_cache_module.store(row)

    assert entry(token_cache, pair.access_token) is None


def test_cache_alias_none_after_cached_run(api_client, cached_pair, settings):
    settings.PAT_TOKENS = {"CACHE_ALIAS": None}

    response, queries = get_me(api_client, cached_pair.access_token)

    assert response.status_code == 200
    assert queries == 1


def test_failed_lookups_are_not_cached(api_client, token_cache, alice):
    pair = services.issue_pair(alice)
    get_user_model()._default_manager.filter(pk=alice.pk).update(is_active=False)

    for _ in range(2):
        response, queries = get_me(api_client, pair.access_token)
        assert_code(response, UserInactive)
        assert queries == 1
    assert entry(token_cache, pair.access_token) is None


# Changes that take effect at once.


def test_revoke_takes_effect_at_once(api_client, cached_pair):
    services.revoke(cached_pair.token)

    response, queries = get_me(api_client, cached_pair.access_token)

    assert_code(response, TokenInvalid)
    assert queries == 1


def test_revoke_endpoint_takes_effect_at_once(api_client, cached_pair):
    response = api_client.post("/auth/token/revoke/", **bearer(cached_pair.access_token))
    assert response.status_code == 204

    response, _ = get_me(api_client, cached_pair.access_token)

    assert_code(response, TokenInvalid)


def test_revoke_all_endpoint_takes_effect_at_once(api_client, cached_pair, alice):
    other = services.issue_pair(alice)
    get_me(api_client, other.access_token)

    response = api_client.post("/auth/token/revoke-all/", **bearer(cached_pair.access_token))
    assert response.status_code == 204

    for token in (cached_pair.access_token, other.access_token):
        assert_code(get_me(api_client, token)[0], TokenInvalid)


def test_session_delete_endpoint_takes_effect_at_once(api_client, cached_pair, alice):
    other = services.issue_pair(alice)
    get_me(api_client, other.access_token)

    response = api_client.delete(
        f"/auth/sessions/{other.token.pk}/", **bearer(cached_pair.access_token)
    )
    assert response.status_code == 204

    assert_code(get_me(api_client, other.access_token)[0], TokenInvalid)
    assert get_me(api_client, cached_pair.access_token)[1] == 0


def test_refresh_takes_effect_at_once(api_client, cached_pair):
    new_pair = services.refresh_pair(cached_pair.refresh_token)

    assert_code(get_me(api_client, cached_pair.access_token)[0], TokenInvalid)
    response, queries = get_me(api_client, new_pair.access_token)
    assert response.status_code == 200
    assert queries == 1


def test_refresh_endpoint_takes_effect_at_once(api_client, cached_pair):
    response = api_client.post(
        "/auth/token/refresh/", {"refresh_token": cached_pair.refresh_token}, format="json"
    )
    assert response.status_code == 200

    assert_code(get_me(api_client, cached_pair.access_token)[0], TokenInvalid)
    assert get_me(api_client, response.json()["access_token"])[0].status_code == 200


def test_deactivation_by_save_takes_effect_at_once(api_client, cached_pair, alice):
    alice.is_active = False
    alice.save()

    response, queries = get_me(api_client, cached_pair.access_token)

    assert_code(response, UserInactive)
    assert queries == 1


def test_reactivation_by_save_works(api_client, cached_pair, alice):
    alice.is_active = False
    alice.save()
    assert_code(get_me(api_client, cached_pair.access_token)[0], UserInactive)

    alice.is_active = True
    alice.save()

    assert get_me(api_client, cached_pair.access_token)[0].status_code == 200


def test_login_save_keeps_entries(api_client, cached_pair, alice):
    """Saving last_login alone, as every login does, cannot change a session's access."""
    update_last_login(None, alice)

    assert get_me(api_client, cached_pair.access_token)[1] == 0


@pytest.mark.parametrize("how", ["instance", "queryset"])
def test_user_deletion_takes_effect_at_once(api_client, cached_pair, alice, how):
    if how == "instance":
        alice.delete()
    else:
        get_user_model()._default_manager.filter(pk=alice.pk).delete()

    response, queries = get_me(api_client, cached_pair.access_token)

    assert_code(response, TokenInvalid)
    assert queries == 1


def test_queryset_update_takes_effect_within_cache_timeout(api_client, cached_pair, alice, clock):
    """QuerySet.update() sends no signal, so the cache keeps the entry until it times out."""
    get_user_model()._default_manager.filter(pk=alice.pk).update(is_active=False)

    clock.shift(timedelta(seconds=59))
    response, queries = get_me(api_client, cached_pair.access_token)
    assert response.status_code == 200
    assert queries == 0

    clock.shift(timedelta(seconds=2))
    response, queries = get_me(api_client, cached_pair.access_token)
    assert_code(response, UserInactive)
    assert queries == 1


# The tombstone: a lookup that read the row before the session ended does not cache it.


def test_lookup_stored_after_revoke_is_dropped(token_cache, alice):
    pair = services.issue_pair(alice)
    digest = tokens.digest(pair.access_token)
    row = _fetch(digest)  # a lookup reads the row ...

    services.revoke(pair.token)  # ... the session ends ...
    token_cache_module.store(row)  # ... and the lookup stores what it read.

    assert token_cache_module.read(digest) is None


def test_lookup_stored_before_revoke_is_dropped(token_cache, alice):
    pair = services.issue_pair(alice)
    digest = tokens.digest(pair.access_token)
    token_cache_module.store(_fetch(digest))
    assert token_cache_module.read(digest) is not None

    services.revoke(pair.token)

    assert token_cache_module.read(digest) is None


def test_tombstone_outlives_entries(token_cache, alice, clock):
    pair = services.issue_pair(alice)
    digest = tokens.digest(pair.access_token)
    row = _fetch(digest)
    token_cache_module.forget([digest])

    clock.shift(timedelta(seconds=60 * 2 + 59))
    token_cache_module.store(row)

    assert token_cache_module.read(digest) is None


# Failing cache backends: fall back to the database, log a warning, never 500.


class BrokenCache(LocMemCache):
    """A cache whose server cannot be reached; the error names the key, as some clients' do."""

    def _fail(self, key="", *args, **kwargs):
        raise ConnectionError(f"cache server unreachable while handling {key!r}")

    get = set = add = delete = touch = has_key = incr = _fail
    get_many = set_many = delete_many = clear = _fail


@pytest.fixture
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["exception", "closed-port"])
def failing_cache(request, settings):
    """A CACHE_ALIAS whose backend fails on every call."""
    if request.param == "exception":
        backend = {"BACKEND": "tests.test_cache.BrokenCache", "LOCATION": "broken"}
    else:
        port = request.getfixturevalue("closed_port")
        backend = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/15",
        }
    settings.CACHES = {**settings.CACHES, "failing": backend}
    settings.PAT_TOKENS = {"CACHE_ALIAS": "failing"}
    return request.param


def cache_warnings(caplog):
    return [
        record
        for record in caplog.records
        if record.name.startswith("pat_tokens") and record.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("path", PATHS)
def test_failing_cache_falls_back_to_database(api_client, failing_cache, pair, path, caplog):
    for _ in range(2):
        response, queries = get_me(api_client, pair.access_token, path)
        assert response.status_code == 200
        assert response.json()["username"] == "alice"
        assert queries == 1

    warnings = cache_warnings(caplog)
    assert warnings
    assert all("Token cache" in record.getMessage() for record in warnings)
    assert pair.access_token not in caplog.text
    assert tokens.digest(pair.access_token) not in caplog.text


def test_failing_cache_never_accepts_revoked_token(api_client, failing_cache, pair, caplog):
    response = api_client.post("/auth/token/revoke/", **bearer(pair.access_token))
    assert response.status_code == 204
    assert not PersonalAccessToken.objects.filter(pk=pair.token.pk).exists()

    response, queries = get_me(api_client, pair.access_token)

    assert_code(response, TokenInvalid)
    assert queries == 1
    assert [r for r in caplog.records if r.name == "pat_tokens.cache" and r.levelname == "ERROR"]
    assert tokens.digest(pair.access_token) not in caplog.text


def test_failing_cache_user_changes(api_client, failing_cache, pair, alice):
    alice.is_active = False
    alice.save()
    assert_code(get_me(api_client, pair.access_token)[0], UserInactive)

    alice.delete()
    assert_code(get_me(api_client, pair.access_token)[0], TokenInvalid)


def test_failing_cache_refresh(api_client, failing_cache, pair):
    response = api_client.post(
        "/auth/token/refresh/", {"refresh_token": pair.refresh_token}, format="json"
    )
    assert response.status_code == 200

    assert_code(get_me(api_client, pair.access_token)[0], TokenInvalid)
    assert get_me(api_client, response.json()["access_token"])[0].status_code == 200


def test_cache_backend_that_cannot_load(api_client, pair, settings, caplog):
    settings.CACHES = {**settings.CACHES, "failing": {"BACKEND": "tests.no_such_module.Cache"}}
    settings.PAT_TOKENS = {"CACHE_ALIAS": "failing"}

    response, queries = get_me(api_client, pair.access_token)

    assert response.status_code == 200
    assert queries == 1
    assert cache_warnings(caplog)


# The database fails, but the cache still authenticates the sessions it contains.


def fail_every_query(execute, sql, params, many, context):
    raise OperationalError("database unavailable (raised by the test)")


@pytest.mark.parametrize("path", PATHS)
def test_database_down_token_cached(transactional_db, token_cache, alice, path):
    client = APIClient(raise_request_exception=False)
    pair = services.issue_pair(alice)
    assert client.get(path, **bearer(pair.access_token)).status_code == 200

    with connection.execute_wrapper(fail_every_query):
        response = client.get(path, **bearer(pair.access_token))

    assert response.status_code == 200
    assert response.json()["username"] == "alice"


@pytest.mark.parametrize("path", PATHS)
def test_database_down_token_not_cached(transactional_db, token_cache, alice, path):
    client = APIClient(raise_request_exception=False)
    pair = services.issue_pair(alice)

    with connection.execute_wrapper(fail_every_query):
        response = client.get(path, **bearer(pair.access_token))

    assert response.status_code == 500
    assert "WWW-Authenticate" not in response


@pytest.mark.parametrize("path", PATHS)
def test_database_and_cache_down(transactional_db, failing_cache, alice, path):
    client = APIClient(raise_request_exception=False)
    pair = services.issue_pair(alice)

    with connection.execute_wrapper(fail_every_query):
        response = client.get(path, **bearer(pair.access_token))

    assert response.status_code == 500
    assert isinstance(response.exc_info[1], OperationalError)
