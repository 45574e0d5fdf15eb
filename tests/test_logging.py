"""Log records of the token API: what is logged, at which level, and that no token leaks.

Every test drives the API (or a command) and then checks two things. First, the records the app
writes under the ``pat_tokens`` logger carry the session and user ids. Second, no captured record
of any logger contains a plaintext token or its digest in its message, arguments or traceback.
"""

import io
import logging
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache.backends.base import BaseCache
from django.core.management import call_command
from django.utils import timezone

from pat_tokens import tokens
from pat_tokens.models import PersonalAccessToken

from .conftest import bearer

# The level of each kind of record. Routine events are INFO, and so, for now, are failed
# authentications and refreshes.
ISSUED = logging.INFO
REFRESHED = logging.INFO
REVOKED = logging.INFO
AUTH_TOKEN_INVALID = logging.WARNING
AUTH_TOKEN_EXPIRED = logging.INFO
AUTH_USER_INACTIVE = logging.WARNING
REFRESH_TOKEN_INVALID = logging.WARNING
REFRESH_TOKEN_EXPIRED = logging.INFO
REFRESH_USER_INACTIVE = logging.WARNING
CLEANUP = logging.INFO
CACHE_READ_FAILED = logging.WARNING
CACHE_INVALIDATION_FAILED = logging.ERROR

FORMATTER = logging.Formatter("%(levelname)s %(name)s %(message)s")


class BrokenCache(BaseCache):
    """A cache backend whose server cannot be reached, as a stopped Redis fails."""

    def __init__(self, location, params):
        super().__init__(params)

    def _fail(self, *args, **kwargs):
        raise ConnectionError("Error 111 connecting to the cache server. Connection refused.")

    add = get = set = touch = delete = clear = has_key = _fail
    get_many = set_many = delete_many = _fail


class TokenLog:
    """The records captured in a test and the tokens issued in it."""

    def __init__(self, caplog):
        self.caplog = caplog
        self.secrets = set()

    def remember(self, response):
        """Note the plaintext tokens of a token response, and their digests."""
        data = response.json()
        for key in ("access_token", "refresh_token"):
            self.secrets.add(data[key])
            self.secrets.add(tokens.digest(data[key]))
        return data

    def find(self, message, level, logger_prefix="pat_tokens."):
        return [
            record
            for record in self.caplog.records
            if record.name.startswith(logger_prefix)
            and record.getMessage() == message
            and record.levelno == level
        ]

    def assert_logged(self, message, level):
        matches = self.find(message, level)
        assert len(matches) == 1, [
            (record.levelname, record.name, record.getMessage()) for record in self.caplog.records
        ]

    def assert_no_secrets(self, *extra):
        secrets = self.secrets | set(extra)
        assert secrets
        for record in self.caplog.records:
            texts = [FORMATTER.format(record), repr(record.args), repr(record.msg)]
            for secret in secrets:
                for text in texts:
                    assert secret not in text, (record.name, record.getMessage())


@pytest.fixture
def token_log(caplog):
    caplog.set_level(logging.DEBUG)
    return TokenLog(caplog)


def obtain(api_client, token_log, password, username="alice"):
    response = api_client.post(
        "/auth/token/", {"username": username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return token_log.remember(response)


def session_of(data):
    return PersonalAccessToken.objects.get(access_token=tokens.digest(data["access_token"]))


@pytest.mark.django_db
def test_obtain_logs_issue(api_client, alice, password, token_log):
    data = obtain(api_client, token_log, password)

    row = session_of(data)
    token_log.assert_logged(f"Issued session {row.pk} for user {alice.pk}", ISSUED)
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_refresh_logs_ids(api_client, alice, password, token_log):
    data = obtain(api_client, token_log, password)

    response = api_client.post(
        "/auth/token/refresh/", {"refresh_token": data["refresh_token"]}, format="json"
    )
    assert response.status_code == 200
    refreshed = token_log.remember(response)

    row = session_of(refreshed)
    token_log.assert_logged(f"Refreshed session {row.pk} of user {alice.pk}", REFRESHED)
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_revoke_logs_ids(api_client, alice, password, token_log):
    data = obtain(api_client, token_log, password)
    row = session_of(data)

    response = api_client.post("/auth/token/revoke/", **bearer(data["access_token"]))
    assert response.status_code == 204

    token_log.assert_logged(f"Revoked session(s) {row.pk} of user {alice.pk} (revoke)", REVOKED)
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_revoke_all_logs_ids(api_client, alice, password, token_log):
    first = obtain(api_client, token_log, password)
    second = obtain(api_client, token_log, password)
    ids = sorted([session_of(first).pk, session_of(second).pk])

    response = api_client.post("/auth/token/revoke-all/", **bearer(first["access_token"]))
    assert response.status_code == 204

    (record,) = [
        record
        for record in token_log.caplog.records
        if record.getMessage().startswith("Revoked session(s)")
    ]
    assert record.name == "pat_tokens.services"
    assert record.levelno == REVOKED
    assert record.getMessage().endswith(f" of user {alice.pk} (revoke)")
    logged_ids = record.getMessage().removeprefix("Revoked session(s) ").split(" of user")[0]
    assert sorted(int(pk) for pk in logged_ids.split(", ")) == ids
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_session_delete_logs_ids(api_client, alice, password, token_log):
    current = obtain(api_client, token_log, password)
    other = session_of(obtain(api_client, token_log, password))

    response = api_client.delete(f"/auth/sessions/{other.pk}/", **bearer(current["access_token"]))
    assert response.status_code == 204

    token_log.assert_logged(f"Revoked session(s) {other.pk} of user {alice.pk} (revoke)", REVOKED)
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_unknown_token_logs_failure(api_client, token_log):
    unknown = tokens.generate(tokens.TokenKind.ACCESS)

    response = api_client.get("/api/me/", **bearer(unknown))
    assert response.status_code == 401

    token_log.assert_logged(
        "Bearer authentication failed (token_invalid) for /api/me/", AUTH_TOKEN_INVALID
    )
    token_log.assert_no_secrets(unknown, tokens.digest(unknown))


@pytest.mark.django_db
def test_expired_token_logs_ids(api_client, alice, password, token_log, clock):
    data = obtain(api_client, token_log, password)
    row = session_of(data)
    clock.shift(timedelta(hours=1))

    response = api_client.get("/api/me/", **bearer(data["access_token"]))
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"

    token_log.assert_logged(
        f"Bearer authentication failed (token_expired) for session {row.pk} of user {alice.pk} "
        "on /api/me/",
        AUTH_TOKEN_EXPIRED,
    )
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_inactive_user_logs_ids(api_client, alice, password, token_log):
    data = obtain(api_client, token_log, password)
    row = session_of(data)
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)

    response = api_client.get("/api/me/", **bearer(data["access_token"]))
    assert response.status_code == 401

    token_log.assert_logged(
        f"Bearer authentication failed (user_inactive) for session {row.pk} of user {alice.pk} "
        "on /api/me/",
        AUTH_USER_INACTIVE,
    )
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_malformed_tokens_not_logged(api_client, token_log):
    valid = tokens.generate(tokens.TokenKind.ACCESS)
    mistyped = valid[:-1] + ("A" if valid[-1] != "A" else "B")
    header_values = [f"Bearer {mistyped}", f"Bearer {valid} {valid}", f"Bearer\t{valid}"]

    for value in header_values:
        response = api_client.get("/api/me/", HTTP_AUTHORIZATION=value)
        assert response.status_code == 401

    token_log.assert_no_secrets(valid, mistyped, tokens.digest(valid), tokens.digest(mistyped))


@pytest.mark.django_db
def test_stale_refresh_logs_failure(api_client, alice, password, token_log):
    data = obtain(api_client, token_log, password)
    body = {"refresh_token": data["refresh_token"]}
    token_log.remember(api_client.post("/auth/token/refresh/", body, format="json"))

    response = api_client.post("/auth/token/refresh/", body, format="json")
    assert response.status_code == 401

    token_log.assert_logged("Refresh failed (token_invalid)", REFRESH_TOKEN_INVALID)
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_expired_refresh_logs_ids(api_client, alice, password, token_log, clock):
    data = obtain(api_client, token_log, password)
    row = session_of(data)
    clock.shift(timedelta(days=14))

    response = api_client.post(
        "/auth/token/refresh/", {"refresh_token": data["refresh_token"]}, format="json"
    )
    assert response.status_code == 401

    token_log.assert_logged(
        f"Refresh failed (token_expired) for session {row.pk} of user {alice.pk}",
        REFRESH_TOKEN_EXPIRED,
    )
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_inactive_refresh_logs_ids(api_client, alice, password, token_log):
    data = obtain(api_client, token_log, password)
    row = session_of(data)
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)

    response = api_client.post(
        "/auth/token/refresh/", {"refresh_token": data["refresh_token"]}, format="json"
    )
    assert response.status_code == 401

    token_log.assert_logged(
        f"Refresh failed (user_inactive) for session {row.pk} of user {alice.pk}",
        REFRESH_USER_INACTIVE,
    )
    token_log.assert_no_secrets()


@pytest.mark.django_db
def test_failed_login_logs_no_password(api_client, alice, token_log):
    response = api_client.post(
        "/auth/token/", {"username": "alice", "password": "wrong-horse-9"}, format="json"
    )
    assert response.status_code == 401

    token_log.assert_no_secrets("wrong-horse-9")


@pytest.mark.django_db
def test_cleanup_logs_count(alice, clock, token_log):
    token_log.secrets.add("no token was issued")
    PersonalAccessToken.objects.create(
        user=alice,
        access_token=tokens.digest("a"),
        refresh_token=tokens.digest("r"),
        expires_access_token=timezone.now() - timedelta(hours=2),
        expires_refresh_token=timezone.now() - timedelta(hours=1),
    )

    call_command("clear_expired_tokens", stdout=io.StringIO())

    token_log.assert_logged("Deleted 1 expired session(s)", CLEANUP)
    token_log.assert_no_secrets(tokens.digest("a"), tokens.digest("r"))


@pytest.fixture
def broken_cache(settings):
    settings.CACHES = {**settings.CACHES, "broken": {"BACKEND": f"{__name__}.BrokenCache"}}
    settings.PAT_TOKENS = {"CACHE_ALIAS": "broken"}


@pytest.mark.django_db
def test_cache_failures_logged(api_client, alice, password, token_log, broken_cache):
    data = obtain(api_client, token_log, password)
    row = session_of(data)

    me = api_client.get("/api/me/", **bearer(data["access_token"]))
    assert me.status_code == 200
    revoked = api_client.post("/auth/token/revoke/", **bearer(data["access_token"]))
    assert revoked.status_code == 204

    read_failures = [
        record
        for record in token_log.caplog.records
        if record.name == "pat_tokens.cache" and "read failed" in record.getMessage()
    ]
    assert read_failures
    assert all(record.levelno == CACHE_READ_FAILED for record in read_failures)
    (invalidation,) = [
        record
        for record in token_log.caplog.records
        if record.name == "pat_tokens.cache" and "invalidation" in record.getMessage()
    ]
    assert invalidation.levelno == CACHE_INVALIDATION_FAILED
    assert "ConnectionError" in invalidation.getMessage()
    token_log.assert_logged(f"Revoked session(s) {row.pk} of user {alice.pk} (revoke)", REVOKED)
    token_log.assert_no_secrets()
