"""``POST /auth/token/revoke/`` and ``POST /auth/token/revoke-all/``."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pat_tokens import services
from pat_tokens.authentication import authenticate_token
from pat_tokens.models import PersonalAccessToken

from .conftest import bearer

REVOKE_URL = "/auth/token/revoke/"
REVOKE_ALL_URL = "/auth/token/revoke-all/"
REFRESH_URL = "/auth/token/refresh/"
ME_URL = "/api/me/"
CHALLENGE = 'Bearer realm="api"'
INVALID_TOKEN_CHALLENGE = 'Bearer realm="api", error="invalid_token"'

pytestmark = pytest.mark.django_db


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["code"] == code


def refresh(client, refresh_token):
    return client.post(REFRESH_URL, {"refresh_token": refresh_token}, format="json")


# Revoke the current session


def test_revoke_deletes_session(api_client, pair):
    response = api_client.post(REVOKE_URL, **bearer(pair.access_token))

    assert response.status_code == 204
    assert response.content == b""
    assert not PersonalAccessToken.objects.filter(pk=pair.token.pk).exists()


def test_revoke_sends_token_revoked(api_client, pair, revoked_calls):
    api_client.post(REVOKE_URL, **bearer(pair.access_token))

    assert len(revoked_calls) == 1
    call = revoked_calls[0]
    assert call["sender"] is PersonalAccessToken
    assert call["user"] == pair.token.user
    assert [row.pk for row in call["tokens"]] == [pair.token.pk]
    assert call["request"].path == REVOKE_URL


def test_revoke_ends_both_tokens(api_client, pair):
    api_client.post(REVOKE_URL, **bearer(pair.access_token))

    me = api_client.get(ME_URL, **bearer(pair.access_token))
    again = api_client.post(REVOKE_URL, **bearer(pair.access_token))

    assert_error(me, 401, "token_invalid")
    assert me["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
    assert_error(again, 401, "token_invalid")
    assert_error(refresh(api_client, pair.refresh_token), 401, "token_invalid")


def test_revoke_keeps_other_sessions(api_client, alice, bob):
    current = services.issue_pair(alice)
    other = services.issue_pair(alice)
    bobs = services.issue_pair(bob)

    api_client.post(REVOKE_URL, **bearer(current.access_token))

    assert api_client.get(ME_URL, **bearer(other.access_token)).status_code == 200
    assert api_client.get(ME_URL, **bearer(bobs.access_token)).status_code == 200
    assert PersonalAccessToken.objects.count() == 2


def test_revoke_query_count(api_client, pair):
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(REVOKE_URL, **bearer(pair.access_token))

    assert response.status_code == 204
    # Authentication, then the row locked, compared and deleted, inside a transaction that is a
    # savepoint pair within the test's own transaction.
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 5, statements
    if connection.features.has_select_for_update:
        assert "FOR UPDATE" in statements[2]


def test_revoke_after_refresh(api_client, pair, revoked_calls):
    _, request_token = authenticate_token(pair.access_token)
    services.refresh_pair(pair.refresh_token)

    assert services.revoke(request_token) is False
    assert PersonalAccessToken.objects.filter(pk=pair.token.pk).exists()
    assert revoked_calls == []


def test_revoke_ignores_body(api_client, pair):
    response = api_client.post(
        REVOKE_URL,
        '{"refresh_token": ',
        content_type="application/json",
        **bearer(pair.access_token),
    )

    assert response.status_code == 204


def test_revoke_get_not_allowed(api_client, pair):
    response = api_client.get(REVOKE_URL, **bearer(pair.access_token))

    assert_error(response, 405, "method_not_allowed")
    assert PersonalAccessToken.objects.filter(pk=pair.token.pk).exists()


@pytest.mark.parametrize("url", [REVOKE_URL, REVOKE_ALL_URL])
def test_revoke_unauthenticated(api_client, pair, url):
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(url)

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == CHALLENGE
    assert len(queries) == 0
    assert PersonalAccessToken.objects.count() == 1


@pytest.mark.parametrize("url", [REVOKE_URL, REVOKE_ALL_URL])
def test_revoke_with_refresh_token(api_client, pair, url):
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(url, **bearer(pair.refresh_token))

    assert_error(response, 401, "token_invalid")
    assert response["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
    assert len(queries) == 0
    assert PersonalAccessToken.objects.count() == 1


@pytest.mark.parametrize("url", [REVOKE_URL, REVOKE_ALL_URL])
def test_revoke_malformed_header(api_client, pair, url):
    response = api_client.post(url, HTTP_AUTHORIZATION="Bearer")

    assert_error(response, 401, "invalid_header")
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_request"'


@pytest.mark.parametrize("url", [REVOKE_URL, REVOKE_ALL_URL])
def test_revoke_expired_access_token(api_client, clock, alice, url):
    pair = services.issue_pair(alice)
    clock.move_to(pair.token.expires_access_token)

    response = api_client.post(url, **bearer(pair.access_token))

    assert_error(response, 401, "token_expired")
    assert PersonalAccessToken.objects.count() == 1


# Revoke every session of the user


def test_revoke_all_deletes_user_sessions(api_client, alice, bob, revoked_calls):
    sessions = [services.issue_pair(alice) for _ in range(3)]
    bobs = services.issue_pair(bob)

    response = api_client.post(REVOKE_ALL_URL, **bearer(sessions[0].access_token))

    assert response.status_code == 204
    assert response.content == b""
    assert not PersonalAccessToken.objects.filter(user=alice).exists()
    assert list(PersonalAccessToken.objects.values_list("pk", flat=True)) == [bobs.token.pk]
    for pair in sessions:
        assert_error(api_client.get(ME_URL, **bearer(pair.access_token)), 401, "token_invalid")
        assert_error(refresh(api_client, pair.refresh_token), 401, "token_invalid")
    assert api_client.get(ME_URL, **bearer(bobs.access_token)).status_code == 200


def test_revoke_all_sends_one_signal(api_client, alice, bob, revoked_calls):
    sessions = [services.issue_pair(alice) for _ in range(3)]
    services.issue_pair(bob)

    api_client.post(REVOKE_ALL_URL, **bearer(sessions[0].access_token))

    assert len(revoked_calls) == 1
    call = revoked_calls[0]
    assert call["user"] == alice
    assert sorted(row.pk for row in call["tokens"]) == sorted(pair.token.pk for pair in sessions)
    assert call["request"].path == REVOKE_ALL_URL


@pytest.mark.parametrize("count", [1, 10])
def test_revoke_all_query_count(api_client, alice, count):
    sessions = [services.issue_pair(alice) for _ in range(count)]

    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(REVOKE_ALL_URL, **bearer(sessions[0].access_token))

    assert response.status_code == 204
    # Authentication, the ids, the locked rows, one DELETE, and the savepoint pair of the
    # transaction inside the test's own transaction.
    assert len(queries) == 6, [query["sql"] for query in queries.captured_queries]


def test_revoke_all_ignores_body(api_client, pair):
    response = api_client.post(
        REVOKE_ALL_URL, "[1, 2]", content_type="application/json", **bearer(pair.access_token)
    )

    assert response.status_code == 204
    assert PersonalAccessToken.objects.count() == 0


def test_revoke_all_then_login_again(api_client, pair, password):
    api_client.post(REVOKE_ALL_URL, **bearer(pair.access_token))

    response = api_client.post(
        "/auth/token/", {"username": "alice", "password": password}, format="json"
    )

    assert response.status_code == 200, response.content
    assert PersonalAccessToken.objects.count() == 1
