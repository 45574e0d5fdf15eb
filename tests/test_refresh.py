"""``POST /auth/token/refresh/``: rotation, expiry, inactive users, body shapes, throttling.

Error bodies of this view carry ``detail``, ``code`` and the RFC 6749 section 5.2 ``error``.
"""

import hashlib
import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pat_tokens import services
from pat_tokens.models import PersonalAccessToken
from pat_tokens.signals import token_refreshed

from .conftest import TOKEN_RESPONSE_KEYS, bearer
from .factories import UserFactory

REFRESH_URL = "/auth/token/refresh/"
ME_URL = "/api/me/"
ACCESS_LIFETIME = timedelta(hours=1)
REFRESH_LIFETIME = timedelta(days=14)
FORM = "application/x-www-form-urlencoded"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def throttle_counts_cleared():
    """Start every test with empty throttle history (DRF keeps it in the default cache)."""
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def session(clock, alice):
    """A session of alice's issued at the frozen ``clock`` time."""
    return services.issue_pair(alice)


@pytest.fixture
def refreshed_calls():
    """The keyword arguments of every ``token_refreshed`` sent during the test."""
    calls = []

    def receiver(sender, **kwargs):
        calls.append({"sender": sender, **kwargs})

    token_refreshed.connect(receiver)
    yield calls
    token_refreshed.disconnect(receiver)


def sha256(text):
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def post_json(client, body):
    """POST ``body`` (a ``str`` sent as is, or anything else JSON-encoded) to the refresh view."""
    if not isinstance(body, str):
        body = json.dumps(body)
    return client.post(REFRESH_URL, body, content_type="application/json")


def post_form(client, fields):
    return client.post(REFRESH_URL, urlencode(fields), content_type=FORM)


def refresh(client, refresh_token):
    return post_json(client, {"refresh_token": refresh_token})


def to_response_time(moment):
    """Return ``moment`` as the response writes it: in UTC when aware, as is when naive."""
    if timezone.is_aware(moment):
        return moment.astimezone(dt_timezone.utc)
    return moment


def parse_timestamp(text):
    return datetime.fromisoformat(text)


def same_instant(stored, text):
    """Compare a stored datetime with a response timestamp (aware with USE_TZ, naive without)."""
    return stored == parse_timestamp(text)


def assert_error(response, status, code, error):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code
    assert body["error"] == error
    if status == 401:
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    return body


def snapshot(row_pk):
    """The stored state of a session: digests, expiries and timestamps."""
    return PersonalAccessToken.objects.filter(pk=row_pk).values().get()


# Success


def test_refresh_returns_full_token_response(api_client, clock, session):
    clock.shift(timedelta(minutes=10))
    now = timezone.now()

    response = refresh(api_client, session.refresh_token)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == TOKEN_RESPONSE_KEYS
    assert body["token_type"] == "Bearer"
    assert body["access_token"] != session.access_token
    assert body["refresh_token"] != session.refresh_token
    assert body["expires_in"] == 3600
    assert body["refresh_expires_in"] == 1209600
    assert parse_timestamp(body["access_token_expires_at"]) == to_response_time(
        now + ACCESS_LIFETIME
    )
    assert parse_timestamp(body["refresh_token_expires_at"]) == to_response_time(
        now + REFRESH_LIFETIME
    )
    assert "no-store" in response["Cache-Control"]


def test_refresh_updates_same_row(api_client, clock, session):
    issued_at = session.token.created_at
    clock.shift(timedelta(minutes=10))
    now = timezone.now()

    body = refresh(api_client, session.refresh_token).json()

    assert PersonalAccessToken.objects.count() == 1
    row = snapshot(session.token.pk)
    assert row["access_token"] == sha256(body["access_token"])
    assert row["refresh_token"] == sha256(body["refresh_token"])
    assert row["expires_access_token"] == now + ACCESS_LIFETIME
    assert row["expires_refresh_token"] == now + REFRESH_LIFETIME
    assert row["updated_at"] == now
    assert row["created_at"] == issued_at
    assert same_instant(row["expires_access_token"], body["access_token_expires_at"])
    assert same_instant(row["expires_refresh_token"], body["refresh_token_expires_at"])


def test_refresh_sends_token_refreshed_once(api_client, session, refreshed_calls):
    refresh(api_client, session.refresh_token)

    assert len(refreshed_calls) == 1
    call = refreshed_calls[0]
    assert call["sender"] is PersonalAccessToken
    assert call["user"] == session.token.user
    assert call["token"].pk == session.token.pk
    assert call["request"].path == REFRESH_URL


def test_refresh_replaces_both_tokens(api_client, session):
    body = refresh(api_client, session.refresh_token).json()

    old_access = api_client.get(ME_URL, **bearer(session.access_token))
    new_access = api_client.get(ME_URL, **bearer(body["access_token"]))
    old_refresh = refresh(api_client, session.refresh_token)

    assert old_access.status_code == 401
    assert old_access.json()["code"] == "token_invalid"
    assert new_access.status_code == 200
    assert new_access.json()["username"] == "alice"
    assert_error(old_refresh, 401, "token_invalid", "invalid_grant")


def test_refresh_chain_of_rotations(api_client, session):
    refresh_token = session.refresh_token
    for _ in range(3):
        body = refresh(api_client, refresh_token).json()
        refresh_token = body["refresh_token"]

    assert refresh(api_client, refresh_token).status_code == 200
    assert PersonalAccessToken.objects.count() == 1


def test_refresh_query_count(api_client, session):
    with CaptureQueriesContext(connection) as queries:
        response = refresh(api_client, session.refresh_token)

    assert response.status_code == 200
    # The row joined with its user, then the row locked, compared and updated, inside a
    # transaction that is a savepoint pair within the test's own transaction.
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 5, statements
    if connection.features.has_select_for_update:
        assert "FOR UPDATE" in statements[2]


# Rotation off


@pytest.fixture
def rotation_off(settings):
    settings.PAT_TOKENS = {"ROTATE_REFRESH_TOKENS": False}


def test_rotation_off_keeps_refresh_token(api_client, clock, session, rotation_off):
    refresh_expiry = session.token.expires_refresh_token
    clock.shift(timedelta(minutes=10))
    now = timezone.now()

    response = refresh(api_client, session.refresh_token)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == TOKEN_RESPONSE_KEYS
    assert body["refresh_token"] == session.refresh_token
    assert body["access_token"] != session.access_token
    assert body["expires_in"] == 3600
    assert body["refresh_expires_in"] == int((refresh_expiry - now).total_seconds())
    row = snapshot(session.token.pk)
    assert row["refresh_token"] == sha256(session.refresh_token)
    assert row["expires_refresh_token"] == refresh_expiry
    assert row["access_token"] == sha256(body["access_token"])
    assert row["expires_access_token"] == now + ACCESS_LIFETIME
    assert row["updated_at"] == now


def test_rotation_off_refresh_token_reusable(api_client, session, rotation_off):
    first = refresh(api_client, session.refresh_token).json()
    second = refresh(api_client, session.refresh_token).json()

    assert second["refresh_token"] == session.refresh_token
    assert api_client.get(ME_URL, **bearer(first["access_token"])).status_code == 401
    assert api_client.get(ME_URL, **bearer(second["access_token"])).status_code == 200
    assert PersonalAccessToken.objects.count() == 1


def test_rotation_off_expiry_does_not_slide(api_client, clock, session, rotation_off):
    refresh_expiry = session.token.expires_refresh_token
    for _ in range(3):
        clock.shift(timedelta(days=4))
        assert refresh(api_client, session.refresh_token).status_code == 200

    assert snapshot(session.token.pk)["expires_refresh_token"] == refresh_expiry


def test_rotation_off_access_capped_at_refresh(api_client, clock, session, rotation_off):
    refresh_expiry = session.token.expires_refresh_token
    clock.move_to(refresh_expiry - timedelta(minutes=20))

    body = refresh(api_client, session.refresh_token).json()

    assert snapshot(session.token.pk)["expires_access_token"] == refresh_expiry
    assert body["expires_in"] == 20 * 60
    assert body["refresh_expires_in"] == 20 * 60
    assert body["access_token_expires_at"] == body["refresh_token_expires_at"]


# Failures that leave the session as it was


def test_refresh_expired_at_exact_instant(api_client, clock, session, refreshed_calls):
    clock.move_to(session.token.expires_refresh_token)
    before = snapshot(session.token.pk)

    response = refresh(api_client, session.refresh_token)

    assert_error(response, 401, "token_expired", "invalid_grant")
    assert snapshot(session.token.pk) == before
    assert refreshed_calls == []


def test_refresh_just_before_expiry(api_client, clock, session):
    clock.move_to(session.token.expires_refresh_token - timedelta(microseconds=1))

    assert refresh(api_client, session.refresh_token).status_code == 200


def test_refresh_long_after_expiry(api_client, clock, session):
    clock.shift(REFRESH_LIFETIME + timedelta(days=30))

    assert_error(refresh(api_client, session.refresh_token), 401, "token_expired", "invalid_grant")


def test_refresh_revoked_session(api_client, session, refreshed_calls):
    services.revoke(session.token)

    assert_error(refresh(api_client, session.refresh_token), 401, "token_invalid", "invalid_grant")
    assert refreshed_calls == []


def test_refresh_unknown_token(api_client, session):
    other = services.issue_pair(UserFactory(username="carol"))
    services.revoke(other.token)

    with CaptureQueriesContext(connection) as queries:
        response = refresh(api_client, other.refresh_token)

    assert_error(response, 401, "token_invalid", "invalid_grant")
    assert len(queries) == 1


def test_refresh_inactive_user(api_client, clock, session, refreshed_calls):
    get_user_model().objects.filter(pk=session.token.user.pk).update(is_active=False)
    before = snapshot(session.token.pk)
    clock.shift(timedelta(minutes=5))

    response = refresh(api_client, session.refresh_token)

    assert_error(response, 401, "user_inactive", "invalid_grant")
    assert snapshot(session.token.pk) == before
    assert refreshed_calls == []


def test_refresh_after_reactivation(api_client, session):
    users = get_user_model().objects.filter(pk=session.token.user.pk)
    users.update(is_active=False)
    assert refresh(api_client, session.refresh_token).status_code == 401

    users.update(is_active=True)

    assert refresh(api_client, session.refresh_token).status_code == 200


@pytest.mark.parametrize("how", ["instance", "queryset"])
def test_refresh_deleted_user(api_client, alice, how):
    first = services.issue_pair(alice)
    second = services.issue_pair(alice)
    bob_session = services.issue_pair(UserFactory(username="bob"))
    if how == "instance":
        alice.delete()
    else:
        get_user_model().objects.filter(pk=alice.pk).delete()

    for pair in (first, second):
        response = refresh(api_client, pair.refresh_token)
        assert_error(response, 401, "token_invalid", "invalid_grant")
    assert PersonalAccessToken.objects.filter(pk=bob_session.token.pk).exists()


def test_refresh_after_username_reused(api_client, alice):
    pair = services.issue_pair(alice)
    alice.delete()
    UserFactory(username="alice")

    response = refresh(api_client, pair.refresh_token)

    assert_error(response, 401, "token_invalid", "invalid_grant")


# Malformed tokens: rejected by format and checksum, before any query


def flip_first_letter(token):
    """Flip the case of the first letter after the prefix, which only the checksum can catch."""
    start = len("patr_")
    index = next(
        position
        for position, character in enumerate(token)
        if position >= start and character.isalpha()
    )
    return token[:index] + token[index].swapcase() + token[index + 1 :]


MALFORMED_TOKENS = {
    "empty-prefix": "patr_",
    "truncated": lambda r0: r0[:-1],
    "one-extra": lambda r0: r0 + "A",
    "non-ascii": lambda r0: r0 + "é",
    "non-ascii-inside": lambda r0: r0[:-1] + "é",
    "checksum": flip_first_letter,
    "uppercased": lambda r0: r0.upper(),
    "access-token": None,
    "nul": lambda r0: r0[:20] + "\x01" + r0[21:],
}


@pytest.mark.parametrize("case", MALFORMED_TOKENS)
def test_refresh_malformed_token_no_query(api_client, session, case):
    make = MALFORMED_TOKENS[case]
    if case == "access-token":
        token = session.access_token
    elif callable(make):
        token = make(session.refresh_token)
    else:
        token = make

    with CaptureQueriesContext(connection) as queries:
        response = refresh(api_client, token)

    assert_error(response, 401, "token_invalid", "invalid_grant")
    assert len(queries) == 0


# Bodies of every shape: never 500, every error carries code and error


def test_refresh_truncated_json(api_client, session):
    with CaptureQueriesContext(connection) as queries:
        response = post_json(api_client, '{"refresh_token": ')

    assert_error(response, 400, "parse_error", "invalid_request")
    assert len(queries) == 0


def test_refresh_empty_body(api_client, session):
    with CaptureQueriesContext(connection) as queries:
        response = post_json(api_client, "")

    body = assert_error(response, 400, "invalid", "invalid_request")
    assert body["refresh_token"] == ["This field is required."]
    assert len(queries) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[]", "Invalid data. Expected a dictionary, but got list."),
        ('"x"', "Invalid data. Expected a dictionary, but got str."),
        ("123", "Invalid data. Expected a dictionary, but got int."),
        ("null", "No data provided"),
    ],
)
def test_refresh_body_not_object(api_client, session, body, message):
    with CaptureQueriesContext(connection) as queries:
        response = post_json(api_client, body)

    data = assert_error(response, 400, "invalid", "invalid_request")
    assert data["non_field_errors"] == [message]
    assert len(queries) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "This field is required."),
        ({"refresh_token": None}, "This field may not be null."),
        ({"refresh_token": ""}, "This field may not be blank."),
        ({"refresh_token": ["patr_x"]}, "Not a valid string."),
        ({"refresh_token": {"a": 1}}, "Not a valid string."),
        ({"refresh_token": True}, "Not a valid string."),
        ({"refresh_token": False}, "Not a valid string."),
    ],
    ids=["missing", "null", "blank", "list", "object", "true", "false"],
)
def test_refresh_field_error(api_client, session, body, message):
    with CaptureQueriesContext(connection) as queries:
        response = post_json(api_client, body)

    data = assert_error(response, 400, "invalid", "invalid_request")
    assert data["refresh_token"] == [message]
    assert len(queries) == 0


def test_refresh_list_of_real_token(api_client, session):
    response = post_json(api_client, {"refresh_token": [session.refresh_token]})

    assert_error(response, 400, "invalid", "invalid_request")
    assert snapshot(session.token.pk)["refresh_token"] == sha256(session.refresh_token)


@pytest.mark.parametrize("number", ["12345", "1.5", "-0", "1e400"])
def test_refresh_number_read_as_string(api_client, session, number):
    with CaptureQueriesContext(connection) as queries:
        response = post_json(api_client, f'{{"refresh_token": {number}}}')

    assert_error(response, 401, "token_invalid", "invalid_grant")
    assert len(queries) == 0


def test_refresh_text_plain(api_client, session):
    response = api_client.post(
        REFRESH_URL, f"refresh_token={session.refresh_token}", content_type="text/plain"
    )

    assert_error(response, 415, "unsupported_media_type", "invalid_request")


def test_refresh_form_encoded(api_client, session):
    response = post_form(api_client, {"refresh_token": session.refresh_token})

    assert response.status_code == 200, response.content
    assert set(response.json()) == TOKEN_RESPONSE_KEYS


def test_refresh_extra_keys_ignored(api_client, session):
    response = post_json(
        api_client, {"refresh_token": session.refresh_token, "extra": 1, "scope": ["a"]}
    )

    assert response.status_code == 200, response.content


def test_refresh_get_not_allowed(api_client, session):
    response = api_client.get(REFRESH_URL, {"refresh_token": session.refresh_token})

    assert_error(response, 405, "method_not_allowed", "invalid_request")


# The OAuth 2.0 refresh grant (RFC 6749 section 6)


def test_oauth_grant_form(api_client, session):
    response = post_form(
        api_client, {"grant_type": "refresh_token", "refresh_token": session.refresh_token}
    )

    assert response.status_code == 200, response.content
    assert response.json()["token_type"] == "Bearer"


def test_oauth_grant_json(api_client, session):
    response = post_json(
        api_client, {"grant_type": "refresh_token", "refresh_token": session.refresh_token}
    )

    assert response.status_code == 200, response.content


def test_oauth_grant_with_client_credentials(api_client, session):
    response = post_form(
        api_client,
        {
            "grant_type": "refresh_token",
            "refresh_token": session.refresh_token,
            "client_id": "mobile-app",
            "scope": "read",
        },
    )

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "grant_type", ["password", "authorization_code", "client_credentials", "REFRESH_TOKEN"]
)
def test_oauth_other_grant_type(api_client, session, grant_type, refreshed_calls):
    with CaptureQueriesContext(connection) as queries:
        response = post_form(
            api_client, {"grant_type": grant_type, "refresh_token": session.refresh_token}
        )

    assert_error(response, 400, "unsupported_grant_type", "unsupported_grant_type")
    assert len(queries) == 0
    assert refreshed_calls == []


def test_oauth_grant_type_not_string(api_client, session):
    response = post_json(
        api_client, {"grant_type": ["refresh_token"], "refresh_token": session.refresh_token}
    )

    assert_error(response, 400, "unsupported_grant_type", "unsupported_grant_type")


def test_oauth_grant_without_token(api_client, session):
    response = post_form(api_client, {"grant_type": "refresh_token"})

    body = assert_error(response, 400, "invalid", "invalid_request")
    assert body["refresh_token"] == ["This field is required."]


def test_oauth_grant_bad_token(api_client, session):
    response = post_form(api_client, {"grant_type": "refresh_token", "refresh_token": "patr_x"})

    assert_error(response, 401, "token_invalid", "invalid_grant")


# Throttling under the scope pat_tokens.refresh


def use_scoped_throttle(settings, rates):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
        "DEFAULT_THROTTLE_RATES": rates,
    }


def test_throttle_sixth_refresh(api_client, settings, session):
    use_scoped_throttle(settings, {"pat_tokens.refresh": "5/min"})
    for _ in range(5):
        assert refresh(api_client, "patr_unknown").status_code == 401

    response = refresh(api_client, session.refresh_token)

    assert_error(response, 429, "throttled", "invalid_request")
    assert int(response["Retry-After"]) > 0
    assert snapshot(session.token.pk)["refresh_token"] == sha256(session.refresh_token)


def test_throttle_counts_successes(api_client, settings, session):
    use_scoped_throttle(settings, {"pat_tokens.refresh": "2/min"})
    body = refresh(api_client, session.refresh_token).json()
    assert refresh(api_client, body["refresh_token"]).status_code == 200

    assert refresh(api_client, session.refresh_token).status_code == 429


def test_throttle_from_app_setting(api_client, settings, session):
    settings.PAT_TOKENS = {"THROTTLE_RATES": {"refresh": "3/min"}}
    for _ in range(3):
        assert refresh(api_client, "patr_unknown").status_code == 401

    assert refresh(api_client, "patr_unknown").status_code == 429


def test_throttle_without_rate_is_unlimited(api_client, settings, session):
    use_scoped_throttle(settings, {"pat_tokens.obtain": "1/min"})
    settings.PAT_TOKENS = {"THROTTLE_RATES": {"refresh": None}}

    statuses = {refresh(api_client, "patr_unknown").status_code for _ in range(70)}

    assert statuses == {401}
    assert refresh(api_client, session.refresh_token).status_code == 200


def test_throttle_scope_independent_of_obtain(api_client, settings, session):
    use_scoped_throttle(settings, {"pat_tokens.obtain": "1/min", "pat_tokens.refresh": "5/min"})
    api_client.post("/auth/token/", {"username": "x", "password": "y"}, format="json")

    assert refresh(api_client, session.refresh_token).status_code == 200
