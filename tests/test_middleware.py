"""The middleware: bearer users for plain views, CSRF, and DRF views left to DRF."""

from datetime import timedelta

import pytest
from accounts.views import MeView
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.settings import api_settings

from pat_tokens import services, tokens
from pat_tokens.exceptions import TokenExpired, TokenInvalid, UserInactive
from pat_tokens.middleware import PersonalAccessTokenMiddleware

from .conftest import bearer

MIDDLEWARE = "pat_tokens.middleware.PersonalAccessTokenMiddleware"
AUTHENTICATION_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


@pytest.fixture(autouse=True)
def no_throttle_history():
    """Forget request counts of earlier tests: the token views throttle by client address."""
    caches["default"].clear()


def run_middleware(request):
    """Return the request the view would get from the middleware, or the middleware's response."""
    seen = []

    def get_response(request):
        seen.append(request)
        return None

    response = PersonalAccessTokenMiddleware(get_response)(request)
    return seen[0] if seen else response


def assert_error(response, error_class):
    assert response.status_code == 401
    assert response.json() == {
        "detail": str(error_class.default_detail),
        "code": error_class.default_code,
    }
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


# What the view gets.


def test_plain_view_gets_user_and_csrf_exemption(rf, pair, alice):
    request = run_middleware(rf.get("/plain/me/", **bearer(pair.access_token)))

    assert request.user == alice
    assert request.auth == pair.token
    assert request._dont_enforce_csrf_checks is True


def test_drf_view_gets_user_but_keeps_csrf_checks(rf, pair, alice):
    request = run_middleware(rf.get("/api/me/", **bearer(pair.access_token)))

    assert request.user == alice
    assert request.auth == pair.token
    assert not getattr(request, "_dont_enforce_csrf_checks", False)


@pytest.mark.parametrize("header", [None, "", "Basic YWxpY2U6cHc="])
def test_request_without_bearer_is_left_alone(rf, db, header):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}

    with CaptureQueriesContext(connection) as queries:
        request = run_middleware(rf.get("/plain/me/", **extra))

    assert not hasattr(request, "user")
    assert not hasattr(request, "auth")
    assert not hasattr(request, "_dont_enforce_csrf_checks")
    assert len(queries.captured_queries) == 0


def test_bearer_user_replaces_session_user(client, pair, bob):
    client.force_login(bob)

    response = client.get("/plain/me/", **bearer(pair.access_token))

    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_session_user_without_header(client, bob):
    client.force_login(bob)

    response = client.get("/plain/me/")

    assert response.status_code == 200
    assert response.json()["username"] == "bob"


# Failures on plain views.


def test_unknown_token_on_plain_view(client, db):
    response = client.get("/plain/me/", **bearer(tokens.generate(tokens.TokenKind.ACCESS)))

    assert_error(response, TokenInvalid)


def test_revoked_token_on_plain_view(client, pair):
    services.revoke(pair.token)

    response = client.get("/plain/me/", **bearer(pair.access_token))

    assert_error(response, TokenInvalid)


def test_expired_token_on_plain_view(client, pair, clock):
    clock.move_to(pair.access_expires_at)

    response = client.get("/plain/me/", **bearer(pair.access_token))

    assert_error(response, TokenExpired)


def test_inactive_user_on_plain_view(client, pair, alice):
    get_user_model()._default_manager.filter(pk=alice.pk).update(is_active=False)

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/plain/me/", **bearer(pair.access_token))

    assert_error(response, UserInactive)
    assert len(queries.captured_queries) == 1


def test_bad_token_on_unknown_path_is_401(client, db):
    response = client.get("/no-such-page/", **bearer(tokens.generate(tokens.TokenKind.ACCESS)))

    assert_error(response, TokenInvalid)


def test_valid_token_on_unknown_path_is_404(client, pair):
    response = client.get("/no-such-page/", **bearer(pair.access_token))

    assert response.status_code == 404


# CSRF.


@pytest.fixture
def csrf_client():
    return Client(enforce_csrf_checks=True)


def test_bearer_post_needs_no_csrf_token(csrf_client, pair):
    response = csrf_client.post("/plain/me/", **bearer(pair.access_token))

    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_session_post_to_plain_view_needs_csrf_token(csrf_client, alice):
    csrf_client.force_login(alice)

    response = csrf_client.post("/plain/me/")

    assert response.status_code == 403


def test_bad_bearer_post_is_401_not_403(csrf_client, db):
    response = csrf_client.post("/plain/me/", **bearer(tokens.generate(tokens.TokenKind.ACCESS)))

    assert_error(response, TokenInvalid)


def test_drf_session_keeps_csrf_check(csrf_client, pair, bob, settings, monkeypatch):
    """With SessionAuthentication first, a session cookie still needs its CSRF token."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework.authentication.SessionAuthentication",
            "pat_tokens.authentication.PersonalAccessTokenAuthentication",
        ],
    }
    monkeypatch.setattr(
        MeView, "authentication_classes", api_settings.DEFAULT_AUTHENTICATION_CLASSES
    )
    csrf_client.force_login(bob)

    response = csrf_client.post("/api/me/", **bearer(pair.access_token))

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


# DRF views without bearer authentication ignore the header.


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda pair: f"Bearer {pair.access_token}", id="expired"),
        pytest.param(lambda pair: "Bearer", id="malformed"),
        pytest.param(lambda pair: "Bearer pat_unknown", id="not-a-token"),
    ],
)
def test_refresh_with_stale_bearer_header(client, pair, clock, make_header):
    clock.move_to(pair.access_expires_at + timedelta(minutes=5))

    response = client.post(
        "/auth/token/refresh/",
        {"refresh_token": pair.refresh_token},
        content_type="application/json",
        HTTP_AUTHORIZATION=make_header(pair),
    )

    assert response.status_code == 200, response.content
    assert response.json()["access_token"].startswith("pat_")


def test_obtain_with_revoked_bearer_header(client, pair, password):
    services.revoke(pair.token)

    response = client.post(
        "/auth/token/",
        {"username": "alice", "password": password},
        content_type="application/json",
        **bearer(pair.access_token),
    )

    assert response.status_code == 200, response.content


# Placement.


def test_before_authentication_middleware_loses_bearer_user(client, pair, settings):
    """AuthenticationMiddleware sets request.user unconditionally, so it must come first."""
    middleware = [name for name in settings.MIDDLEWARE if name != MIDDLEWARE]
    middleware.insert(middleware.index(AUTHENTICATION_MIDDLEWARE), MIDDLEWARE)
    settings.MIDDLEWARE = middleware

    response = client.get("/plain/me/", **bearer(pair.access_token))

    assert response.status_code == 401
    assert "WWW-Authenticate" not in response
