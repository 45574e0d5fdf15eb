"""POST /auth/token/: exchanging credentials for a token pair."""

import json
import logging
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model, user_logged_in, user_login_failed
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pat_tokens import tokens
from pat_tokens.models import PersonalAccessToken
from pat_tokens.signals import token_issued

from .conftest import TOKEN_RESPONSE_KEYS, bearer
from .factories import UserFactory

URL = "/auth/token/"


def obtain(client, data, content_type="json"):
    if content_type == "json":
        return client.post(URL, data, format="json")
    if content_type == "form":
        return client.post(URL, data)
    return client.generic("POST", URL, data, content_type=content_type)


@pytest.fixture(autouse=True)
def clear_throttle_cache():
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def login(alice, password):
    return {"username": "alice", "password": password}


class Receiver:
    """Record the calls a signal makes."""

    def __init__(self, signal):
        self.calls = []
        self.signal = signal

    def __call__(self, sender, **kwargs):
        self.calls.append(kwargs)

    def __enter__(self):
        self.signal.connect(self, weak=False)
        return self

    def __exit__(self, *exc_info):
        self.signal.disconnect(self)


def test_json_login_returns_token_response(api_client, login, clock):
    response = obtain(api_client, login)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == TOKEN_RESPONSE_KEYS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_expires_in"] == 14 * 24 * 3600
    assert body["access_token"].startswith("pat_")
    assert body["refresh_token"].startswith("patr_")
    assert tokens.parse(body["access_token"], tokens.TokenKind.ACCESS)
    assert tokens.parse(body["refresh_token"], tokens.TokenKind.REFRESH)


def test_expiry_timestamps_carry_utc_offset(api_client, login, clock, settings):
    body = obtain(api_client, login).json()
    row = PersonalAccessToken.objects.get()

    if settings.USE_TZ:
        assert body["access_token_expires_at"].endswith("+00:00")
    else:
        assert "+" not in body["access_token_expires_at"]
    assert body["access_token_expires_at"] == row.expires_access_token.isoformat()
    assert body["refresh_token_expires_at"] == row.expires_refresh_token.isoformat()


def test_response_is_not_cached(api_client, login):
    response = obtain(api_client, login)

    assert "no-store" in response["Cache-Control"]
    assert response["Pragma"] == "no-cache"


def test_form_login(api_client, login):
    response = obtain(api_client, login, content_type="form")

    assert response.status_code == 200
    assert set(response.json()) == TOKEN_RESPONSE_KEYS


def test_access_token_authenticates(api_client, login):
    access = obtain(api_client, login).json()["access_token"]

    response = api_client.get("/api/me/", **bearer(access))

    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_row_and_digests(api_client, login, alice):
    body = obtain(api_client, login).json()

    row = PersonalAccessToken.objects.get()
    assert row.user == alice
    assert row.access_token == tokens.digest(body["access_token"])
    assert row.refresh_token == tokens.digest(body["refresh_token"])


def test_plaintext_is_nowhere_in_the_database(api_client, login):
    body = obtain(api_client, login).json()
    secrets = [body["access_token"], body["refresh_token"]]

    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                text = " ".join(str(value) for value in row)
                for secret in secrets:
                    assert secret not in text, table
                    assert secret[-20:] not in text, table


def test_plaintext_is_not_logged(api_client, login, caplog):
    caplog.set_level(logging.DEBUG)

    body = obtain(api_client, login).json()

    for record in caplog.records:
        text = record.getMessage()
        assert body["access_token"] not in text
        assert body["refresh_token"] not in text
        assert tokens.digest(body["access_token"]) not in text


def test_wrong_password_is_invalid_credentials(api_client, alice):
    response = obtain(api_client, {"username": "alice", "password": "wrong"})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"
    assert response.json()["error"] == "invalid_grant"
    assert PersonalAccessToken.objects.count() == 0


def test_unknown_user_looks_like_wrong_password(api_client, alice):
    wrong_password = obtain(api_client, {"username": "alice", "password": "wrong"})
    unknown_user = obtain(api_client, {"username": "nobody", "password": "wrong"})

    assert unknown_user.status_code == wrong_password.status_code == 401
    assert unknown_user.json() == wrong_password.json()


def test_inactive_user_is_invalid_credentials(api_client, login, alice):
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)

    response = obtain(api_client, login)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


def test_inactive_user_rejected_by_allow_all_backend(api_client, login, alice, settings):
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.AllowAllUsersModelBackend"]
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)

    response = obtain(api_client, login)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"
    assert PersonalAccessToken.objects.count() == 0


def test_login_failed_signal_is_sent(api_client, alice):
    with Receiver(user_login_failed) as receiver:
        obtain(api_client, {"username": "alice", "password": "wrong"})

    assert len(receiver.calls) == 1
    assert "wrong" not in json.dumps(receiver.calls[0]["credentials"], default=str)


def test_login_updates_last_login_and_sends_signals(api_client, login, alice):
    assert alice.last_login is None

    with Receiver(user_logged_in) as logged_in, Receiver(token_issued) as issued:
        obtain(api_client, login)

    alice.refresh_from_db()
    assert alice.last_login is not None
    assert [call["user"] for call in logged_in.calls] == [alice]
    assert len(issued.calls) == 1
    assert issued.calls[0]["user"] == alice
    assert issued.calls[0]["token"] == PersonalAccessToken.objects.get()
    assert issued.calls[0]["request"] is not None


def test_email_as_username_field(api_client, alice, password, monkeypatch):
    monkeypatch.setattr(get_user_model(), "USERNAME_FIELD", "email")

    by_email = obtain(api_client, {"email": "alice@example.com", "password": password})
    by_username_key = obtain(api_client, {"username": "alice@example.com", "password": password})
    wrong = obtain(api_client, {"email": "alice@example.com", "password": "wrong"})
    unknown = obtain(api_client, {"email": "nobody@example.com", "password": "wrong"})
    form = obtain(api_client, {"email": "alice@example.com", "password": password}, "form")

    assert by_email.status_code == 200
    assert by_username_key.status_code == 400
    assert "email" in by_username_key.json()
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert form.status_code == 200


def test_backend_taking_username_keyword(api_client, login, settings, monkeypatch):
    from .backends import UsernameKeywordBackend

    monkeypatch.setattr(UsernameKeywordBackend, "calls", [])
    settings.AUTHENTICATION_BACKENDS = [
        "tests.backends.UsernameKeywordBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]

    response = obtain(api_client, login)

    assert response.status_code == 200
    assert UsernameKeywordBackend.calls == ["alice"]


def test_oauth_password_grant_form(api_client, alice, password):
    body = urlencode(
        {"grant_type": "password", "username": "alice", "password": password, "scope": "read"}
    )

    response = obtain(api_client, body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"


def test_oauth_password_grant_with_email_username_field(api_client, alice, password, monkeypatch):
    monkeypatch.setattr(get_user_model(), "USERNAME_FIELD", "email")

    response = obtain(
        api_client,
        {"grant_type": "password", "username": "alice@example.com", "password": password},
        content_type="form",
    )

    assert response.status_code == 200


def test_unsupported_grant_type(api_client, login):
    response = obtain(api_client, {**login, "grant_type": "client_credentials"})

    assert response.status_code == 400
    assert response.json()["code"] == "unsupported_grant_type"
    assert response.json()["error"] == "unsupported_grant_type"


BAD_BODIES = [
    ({}, {"username", "password"}),
    ({"username": "alice"}, {"password"}),
    ({"password": "x"}, {"username"}),
    ({"username": ["alice"], "password": "x"}, {"username"}),
    ({"username": {"a": 1}, "password": "x"}, {"username"}),
    ({"username": None, "password": "x"}, {"username"}),
    ({"username": True, "password": "x"}, {"username"}),
    ({"username": "alice", "password": None}, {"password"}),
    ({"username": "alice", "password": ["x"]}, {"password"}),
    ({"username": "alice", "password": "x" * (1024 * 1024)}, {"password"}),
    ({"username": "a" * 10_000, "password": "x"}, {"username"}),
]


@pytest.mark.parametrize(("body", "fields"), BAD_BODIES)
def test_bad_fields_are_400(api_client, alice, body, fields):
    with CaptureQueriesContext(connection) as queries:
        response = obtain(api_client, body)

    assert response.status_code == 400
    assert fields <= set(response.json())
    assert response.json()["code"] == "invalid"
    assert response.json()["error"] == "invalid_request"
    assert len(queries) == 0


def test_number_password_is_read_as_string(api_client, alice):
    response = obtain(api_client, {"username": "alice", "password": 12345})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


@pytest.mark.parametrize("body", ["[]", '"x"', "123", "null", "true"])
def test_body_not_an_object_is_400(api_client, alice, body):
    response = obtain(api_client, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "non_field_errors" in response.json()


@pytest.mark.parametrize(
    "body", ['{"username": ', b"\xff\xfe\x00garbage", b'{"username": "\xe9"}', "{,}"]
)
def test_body_that_does_not_parse_is_400(api_client, alice, body):
    response = obtain(api_client, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert response.json()["error"] == "invalid_request"


def test_empty_body_is_400(api_client, alice):
    response = obtain(api_client, "", content_type="application/json")

    assert response.status_code == 400
    assert {"username", "password"} <= set(response.json())


def test_unsupported_media_type_is_415(api_client, alice):
    response = obtain(api_client, "username=alice", content_type="text/plain")

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert response.json()["error"] == "invalid_request"


def test_body_over_upload_limit_is_413(api_client, alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"username": "alice", "password": "x" * 2000})

    response = obtain(api_client, body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def test_deeply_nested_json_is_400(api_client, alice):
    body = '{"username": ' + "[" * 100_000 + "]" * 100_000 + ', "password": "x"}'

    response = obtain(api_client, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] in ("parse_error", "invalid")


def test_lifetime_override(api_client, login, settings, clock):
    settings.PAT_TOKENS = {"ACCESS_TOKEN_LIFETIME": timedelta(seconds=30)}

    body = obtain(api_client, login).json()

    assert body["expires_in"] == 30
    assert body["refresh_expires_in"] == 1209600


def test_access_expiry_capped_at_refresh_expiry(api_client, login, settings, clock):
    settings.PAT_TOKENS = {
        "ACCESS_TOKEN_LIFETIME": timedelta(hours=2),
        "REFRESH_TOKEN_LIFETIME": timedelta(hours=2),
    }

    body = obtain(api_client, login).json()

    assert body["expires_in"] == body["refresh_expires_in"] == 7200


def test_max_sessions_keeps_newest(api_client, login, settings, clock):
    settings.PAT_TOKENS = {"MAX_SESSIONS_PER_USER": 2}
    bodies = []
    for _ in range(3):
        bodies.append(obtain(api_client, login).json())
        clock.shift(timedelta(seconds=1))

    rows = PersonalAccessToken.objects.order_by("created_at")
    assert rows.count() == 2
    assert [row.access_token for row in rows] == [
        tokens.digest(body["access_token"]) for body in bodies[1:]
    ]
    assert api_client.get("/api/me/", **bearer(bodies[0]["access_token"])).status_code == 401


def test_max_sessions_eviction_sends_token_revoked(api_client, login, settings):
    from pat_tokens.signals import token_revoked

    settings.PAT_TOKENS = {"MAX_SESSIONS_PER_USER": 1}
    obtain(api_client, login)
    first = PersonalAccessToken.objects.get()

    with Receiver(token_revoked) as revoked:
        obtain(api_client, login)

    assert len(revoked.calls) == 1
    assert [row.pk for row in revoked.calls[0]["tokens"]] == [first.pk]


def test_max_sessions_is_per_user(api_client, login, bob, password, settings):
    settings.PAT_TOKENS = {"MAX_SESSIONS_PER_USER": 1}

    obtain(api_client, login)
    obtain(api_client, {"username": "bob", "password": password})
    obtain(api_client, login)

    assert PersonalAccessToken.objects.filter(user__username="alice").count() == 1
    assert PersonalAccessToken.objects.filter(user__username="bob").count() == 1


def test_scoped_throttle(api_client, login, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
        "DEFAULT_THROTTLE_RATES": {"pat_tokens.obtain": "3/min", "pat_tokens.refresh": "5/min"},
    }

    statuses = [obtain(api_client, {**login, "password": "wrong"}).status_code for _ in range(3)]
    fourth = obtain(api_client, login)

    assert statuses == [401, 401, 401]
    assert fourth.status_code == 429
    assert fourth.json()["code"] == "throttled"
    assert "error" in fourth.json()
    assert "Retry-After" in fourth


def test_default_rate_applies_without_host_rate(api_client, login, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
        "DEFAULT_THROTTLE_RATES": {},
    }
    settings.PAT_TOKENS = {"THROTTLE_RATES": {"obtain": "2/min"}}

    statuses = [obtain(api_client, login).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


def test_no_rate_anywhere_is_unlimited(api_client, login, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
        "DEFAULT_THROTTLE_RATES": {},
    }
    settings.PAT_TOKENS = {"THROTTLE_RATES": {"obtain": None}}

    statuses = [obtain(api_client, login).status_code for _ in range(25)]

    assert statuses == [200] * 25


def test_anon_rate_throttle_applies(api_client, login, settings, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle"],
        "DEFAULT_THROTTLE_RATES": {"anon": "2/min"},
    }
    # DRF copies the rates into a class attribute at import time.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "2/min"})

    statuses = [obtain(api_client, login).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


def test_default_obtain_rate_is_twenty_per_minute(api_client, login):
    statuses = [obtain(api_client, login).status_code for _ in range(21)]

    assert statuses == [200] * 20 + [429]


def test_no_authentication_needed_and_session_csrf_not_enforced(alice, password, settings):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(URL, {"username": "alice", "password": password}, format="json")

    assert response.status_code == 200


def test_expired_session_rows_do_not_block_login(api_client, login, clock):
    obtain(api_client, login)
    clock.shift(timedelta(days=15))

    response = obtain(api_client, login)

    assert response.status_code == 200


def test_users_with_same_password_get_distinct_tokens(api_client, password, db):
    UserFactory(username="u1")
    UserFactory(username="u2")

    first = obtain(api_client, {"username": "u1", "password": password}).json()
    second = obtain(api_client, {"username": "u2", "password": password}).json()

    assert first["access_token"] != second["access_token"]
