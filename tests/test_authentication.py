"""The DRF authentication class: outcomes, codes, challenges, query counts and database failures."""

import logging
from datetime import timedelta

import pytest
from accounts.views import MeView
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from pat_tokens import services, tokens
from pat_tokens.authentication import PersonalAccessTokenAuthentication
from pat_tokens.exceptions import TokenExpired, TokenInvalid, UserInactive
from pat_tokens.models import PersonalAccessToken

from .conftest import bearer
from .factories import UserFactory

OURS = "pat_tokens.authentication.PersonalAccessTokenAuthentication"
SESSION = "rest_framework.authentication.SessionAuthentication"
CHALLENGE = 'Bearer realm="api"'
INVALID_TOKEN_CHALLENGE = 'Bearer realm="api", error="invalid_token"'


def get_me(client, token=None, path="/api/me/", **extra):
    headers = bearer(token) if token is not None else {}
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, **headers, **extra)
    return response, len(queries.captured_queries)


def assert_error(response, error_class, challenge=INVALID_TOKEN_CHALLENGE):
    assert response.status_code == 401
    assert response.json() == {
        "detail": str(error_class.default_detail),
        "code": error_class.default_code,
    }
    assert response["WWW-Authenticate"] == challenge


def deactivate(user):
    get_user_model()._default_manager.filter(pk=user.pk).update(is_active=False)


def reactivate(user):
    get_user_model()._default_manager.filter(pk=user.pk).update(is_active=True)


# Success.


def test_success_sets_user_and_auth_with_one_query(rf, pair, alice):
    request = Request(rf.get("/api/me/", **bearer(pair.access_token)))

    with CaptureQueriesContext(connection) as queries:
        user, row = PersonalAccessTokenAuthentication().authenticate(request)
        # The user came with the row: reading it costs nothing more.
        assert user.get_username() == "alice"

    assert len(queries.captured_queries) == 1
    assert "JOIN" in queries.captured_queries[0]["sql"].upper()
    assert user == alice
    assert isinstance(row, PersonalAccessToken)
    assert row.pk == pair.token.pk
    assert row.user is user


def test_view_sees_user_and_auth(api_client, pair, alice):
    response, queries = get_me(api_client, pair.access_token)

    assert response.status_code == 200
    assert response.json() == {
        "user_id": str(alice.pk),
        "username": "alice",
        "email": "alice@example.com",
    }
    assert queries == 1


def test_request_auth_is_the_row(api_client, pair, monkeypatch):
    seen = {}
    original_get = MeView.get

    def get(view, request):
        seen["user"], seen["auth"] = request.user, request.auth
        return original_get(view, request)

    monkeypatch.setattr(MeView, "get", get)
    response, _ = get_me(api_client, pair.access_token)

    assert response.status_code == 200
    assert seen["user"].pk == pair.token.user_id
    assert seen["auth"] == pair.token
    assert seen["auth"].access_token == tokens.digest(pair.access_token)


# Failures: codes, challenges, query counts.


def test_no_header_challenge_has_no_error(api_client, db):
    response, queries = get_me(api_client)

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == CHALLENGE
    assert queries == 0


def test_unknown_token_is_token_invalid(api_client, db):
    response, queries = get_me(api_client, tokens.generate(tokens.TokenKind.ACCESS))

    assert_error(response, TokenInvalid)
    assert queries == 1


def test_revoked_token_is_token_invalid(api_client, pair):
    pair.token.delete()

    response, queries = get_me(api_client, pair.access_token)

    assert_error(response, TokenInvalid)
    assert queries == 1


def test_expired_at_exact_expiry(api_client, pair, clock):
    clock.move_to(pair.access_expires_at - timedelta(microseconds=1))
    response, _ = get_me(api_client, pair.access_token)
    assert response.status_code == 200

    clock.move_to(pair.access_expires_at)
    response, queries = get_me(api_client, pair.access_token)
    assert_error(response, TokenExpired)
    assert queries == 1


def test_expired_long_after(api_client, pair, clock):
    clock.move_to(pair.refresh_expires_at + timedelta(days=1))

    response, _ = get_me(api_client, pair.access_token)

    assert_error(response, TokenExpired)


def test_inactive_user_is_user_inactive(api_client, pair, alice):
    deactivate(alice)

    response, queries = get_me(api_client, pair.access_token)

    assert_error(response, UserInactive)
    assert queries == 1


def test_reactivated_user_works_again(api_client, pair, alice):
    deactivate(alice)
    assert get_me(api_client, pair.access_token)[0].status_code == 401

    reactivate(alice)

    response, queries = get_me(api_client, pair.access_token)
    assert response.status_code == 200
    assert queries == 1


@pytest.mark.parametrize("how", ["instance", "queryset"])
def test_deleted_user_is_token_invalid(api_client, pair, alice, bob, how):
    other_session = services.issue_pair(alice)
    bob_session = services.issue_pair(bob)
    alice_pk = alice.pk

    if how == "instance":
        alice.delete()
    else:
        get_user_model()._default_manager.filter(pk=alice_pk).delete()

    assert not PersonalAccessToken.objects.filter(user_id=alice_pk).exists()
    for token in (pair.access_token, other_session.access_token):
        response, queries = get_me(api_client, token)
        assert_error(response, TokenInvalid)
        assert queries == 1
    assert get_me(api_client, bob_session.access_token)[0].status_code == 200


def test_same_username_gets_no_old_tokens(api_client, pair, alice):
    alice.delete()
    new_alice = UserFactory(username="alice", email="alice@example.com")

    response, _ = get_me(api_client, pair.access_token)

    assert_error(response, TokenInvalid)
    assert not new_alice.personal_access_tokens.exists()


def test_failures_log_no_token_material(api_client, pair, alice, caplog):
    caplog.set_level(logging.DEBUG, logger="pat_tokens")
    digest = tokens.digest(pair.access_token)

    deactivate(alice)
    get_me(api_client, pair.access_token)
    get_me(api_client, tokens.generate(tokens.TokenKind.ACCESS))

    assert caplog.records
    assert pair.access_token not in caplog.text
    assert digest not in caplog.text


def test_admin_only_view_is_403_without_challenge(api_client, pair):
    response = api_client.get("/api/admin-only/", **bearer(pair.access_token))

    assert response.status_code == 403
    assert "WWW-Authenticate" not in response


def test_admin_only_view_admits_staff(api_client, db):
    staff = UserFactory(username="operator", is_staff=True)
    response = api_client.get("/api/admin-only/", **bearer(services.issue_pair(staff).access_token))

    assert response.status_code == 200


# Order of the classes in DEFAULT_AUTHENTICATION_CLASSES.


@pytest.fixture
def authentication_classes(settings, monkeypatch):
    """Set DEFAULT_AUTHENTICATION_CLASSES; return a function that does it.

    DRF copies the setting into a view class when the class is defined, so the example view gets
    the new list as well.
    """

    def use(*paths):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_AUTHENTICATION_CLASSES": list(paths),
        }
        monkeypatch.setattr(
            MeView, "authentication_classes", api_settings.DEFAULT_AUTHENTICATION_CLASSES
        )

    return use


def w001_messages():
    return [message for message in run_checks() if message.id == "pat_tokens.W001"]


def test_ours_first_session_login_without_header(api_client, alice, authentication_classes):
    authentication_classes(OURS, SESSION)
    api_client.force_login(alice)

    response = api_client.get("/api/me/")

    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert w001_messages() == []


def test_ours_first_bad_token_is_401(api_client, alice, authentication_classes):
    authentication_classes(OURS, SESSION)

    response, _ = get_me(api_client, tokens.generate(tokens.TokenKind.ACCESS))

    assert_error(response, TokenInvalid)


def test_session_first_bad_token_is_403(api_client, db, authentication_classes):
    """DRF takes the challenge from the first class; SessionAuthentication has none, hence 403."""
    authentication_classes(SESSION, OURS)

    response, _ = get_me(api_client, tokens.generate(tokens.TokenKind.ACCESS))

    assert response.status_code == 403
    assert response.json()["code"] == "token_invalid"
    assert "WWW-Authenticate" not in response


def test_session_first_valid_token_works(api_client, pair, authentication_classes):
    authentication_classes(SESSION, OURS)

    response, _ = get_me(api_client, pair.access_token)

    assert response.status_code == 200


def test_session_first_emits_w001(db, authentication_classes):
    authentication_classes(SESSION, OURS)

    messages = w001_messages()

    assert len(messages) == 1
    assert SESSION in messages[0].msg
    assert "SessionAuthentication" in messages[0].msg
    assert "PersonalAccessTokenAuthentication first" in messages[0].hint


def test_session_alone_emits_no_w001(db, authentication_classes):
    authentication_classes(SESSION)

    assert w001_messages() == []


def test_check_command_reports_w001(db, authentication_classes, capsys):
    authentication_classes(SESSION, OURS)

    call_command("check")

    assert "pat_tokens.W001" in capsys.readouterr().err


def test_session_class_has_no_challenge():
    # The premise of W001, pinned against the installed DRF.
    assert SessionAuthentication().authenticate_header(None) is None


# The browsable API.


def test_browsable_api_with_token(api_client, pair):
    response = api_client.get("/api/me/", HTTP_ACCEPT="text/html", **bearer(pair.access_token))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"alice@example.com" in response.content


def test_browsable_api_with_bad_token(api_client, pair):
    response = api_client.get(
        "/api/me/", HTTP_ACCEPT="text/html", **bearer(pair.access_token[:-1] + "x")
    )

    assert response.status_code == 401
    assert response["Content-Type"].startswith("text/html")
    assert response["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
    assert b"token_invalid" in response.content


# Database failures: a server error, never a verdict on the token.

PATHS = ["/api/me/", "/plain/me/"]


def fail_with(error_class):
    def wrapper(execute, sql, params, many, context):
        raise error_class("database unavailable (raised by the test)")

    return wrapper


@pytest.mark.parametrize("error_class", [OperationalError, InterfaceError])
@pytest.mark.parametrize("path", PATHS)
def test_database_error_is_500(transactional_db, pair, path, error_class, caplog):
    client = APIClient(raise_request_exception=False)

    with connection.execute_wrapper(fail_with(error_class)):
        response = client.get(path, **bearer(pair.access_token))

    assert response.status_code == 500
    assert isinstance(response.exc_info[1], error_class)
    assert "WWW-Authenticate" not in response
    assert b"invalid_token" not in response.content
    assert [record.levelname for record in caplog.records if record.name == "django.request"] == [
        "ERROR"
    ]

    response = client.get(path, **bearer(pair.access_token))
    assert response.status_code == 200


@pytest.mark.parametrize("error_class", [OperationalError, InterfaceError])
def test_database_error_on_revoke_keeps_row(transactional_db, pair, error_class):
    client = APIClient(raise_request_exception=False)

    with connection.execute_wrapper(fail_with(error_class)):
        response = client.post("/auth/token/revoke/", **bearer(pair.access_token))

    assert response.status_code == 500
    assert PersonalAccessToken.objects.filter(pk=pair.token.pk).exists()


def open_second_connection():
    return connection.get_new_connection(connection.get_connection_params())


def kill_on_first_query(target_session_id):
    """Return an execute wrapper that ends the test's database session from another connection.

    The statement the wrapper lets through then meets a connection the server has really closed.
    """
    killed = []

    def kill():
        killer = open_second_connection()
        try:
            cursor = killer.cursor()
            if connection.vendor == "mysql":
                cursor.execute("KILL CONNECTION %s", [target_session_id])
            else:
                # Wait (up to 5 s) until the server has ended the session.
                cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [target_session_id])
                assert cursor.fetchone()[0] is True
            cursor.close()
        finally:
            killer.close()

    def wrapper(execute, sql, params, many, context):
        if not killed:
            killed.append(sql)
            kill()
        return execute(sql, params, many, context)

    return wrapper, killed


def session_id():
    query = "SELECT CONNECTION_ID()" if connection.vendor == "mysql" else "SELECT pg_backend_pid()"
    with connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchone()[0]


@pytest.mark.server_db
@pytest.mark.parametrize("path", PATHS)
def test_killed_database_session_is_500(transactional_db, pair, path):
    client = APIClient(raise_request_exception=False)
    target = session_id()
    wrapper, killed = kill_on_first_query(target)

    with connection.execute_wrapper(wrapper):
        response = client.get(path, **bearer(pair.access_token))

    assert killed, "the request made no query"
    assert "refresh_tokens" in killed[0]
    assert response.status_code == 500
    # Raised by the driver, not by the test: the server really closed the session.
    assert isinstance(response.exc_info[1], (OperationalError, InterfaceError))
    assert "WWW-Authenticate" not in response
    assert b"invalid_token" not in response.content

    # What Django does at the start of every request: drop a connection that failed.
    close_old_connections()
    assert session_id() != target

    response = client.get(path, **bearer(pair.access_token))
    assert response.status_code == 200
