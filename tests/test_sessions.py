"""``GET /auth/sessions/`` and ``DELETE /auth/sessions/<id>/``: a user's own sessions."""

import hashlib
from datetime import datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pat_tokens import services
from pat_tokens.models import PersonalAccessToken

from .conftest import bearer

LIST_URL = "/auth/sessions/"
ME_URL = "/api/me/"
SESSION_FIELDS = {
    "id",
    "created_at",
    "updated_at",
    "expires_access_token",
    "expires_refresh_token",
    "current",
}
TIMESTAMP_FIELDS = ("created_at", "updated_at", "expires_access_token", "expires_refresh_token")

pytestmark = pytest.mark.django_db


def detail_url(session_id):
    return f"{LIST_URL}{session_id}/"


def sha256(text):
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["code"] == code


# Listing


def test_list_fields(api_client, pair):
    response = api_client.get(LIST_URL, **bearer(pair.access_token))

    assert response.status_code == 200, response.content
    sessions = response.json()
    assert len(sessions) == 1
    assert set(sessions[0]) == SESSION_FIELDS
    assert sessions[0]["id"] == pair.token.pk
    assert sessions[0]["current"] is True


def test_list_timestamps(api_client, pair):
    row = PersonalAccessToken.objects.get(pk=pair.token.pk)

    listed = api_client.get(LIST_URL, **bearer(pair.access_token)).json()[0]

    for field in TIMESTAMP_FIELDS:
        moment = datetime.fromisoformat(listed[field])
        assert moment == getattr(row, field), field
        if django_settings.USE_TZ:
            assert moment.utcoffset() is not None, field


def test_list_marks_only_current(api_client, alice, clock):
    sessions = []
    for _ in range(3):
        sessions.append(services.issue_pair(alice))
        clock.shift(timedelta(seconds=1))
    caller = sessions[1]

    listed = api_client.get(LIST_URL, **bearer(caller.access_token)).json()

    assert [item["id"] for item in listed] == [pair.token.pk for pair in reversed(sessions)]
    assert {item["id"]: item["current"] for item in listed} == {
        pair.token.pk: pair is caller for pair in sessions
    }


def test_list_only_own_sessions(api_client, alice, bob):
    own = services.issue_pair(alice)
    services.issue_pair(bob)
    services.issue_pair(bob)

    listed = api_client.get(LIST_URL, **bearer(own.access_token)).json()

    assert [item["id"] for item in listed] == [own.token.pk]


def test_list_contains_no_token_material(api_client, alice, bob):
    sessions = [services.issue_pair(alice) for _ in range(3)]
    sessions.append(services.issue_pair(bob))

    body = api_client.get(LIST_URL, **bearer(sessions[0].access_token)).content.decode()

    for pair in sessions:
        for secret in (pair.access_token, pair.refresh_token):
            assert secret not in body
            assert sha256(secret) not in body
            assert sha256(secret)[:12] not in body
    assert "pat_" not in body


def test_list_includes_expired_access(api_client, alice, clock):
    stale = services.issue_pair(alice)
    clock.shift(timedelta(hours=2))
    fresh = services.issue_pair(alice)

    listed = api_client.get(LIST_URL, **bearer(fresh.access_token)).json()

    assert {item["id"] for item in listed} == {stale.token.pk, fresh.token.pk}


@pytest.mark.parametrize("count", [1, 10])
def test_list_query_count(api_client, alice, count):
    sessions = [services.issue_pair(alice) for _ in range(count)]

    with CaptureQueriesContext(connection) as queries:
        response = api_client.get(LIST_URL, **bearer(sessions[0].access_token))

    assert len(response.json()) == count
    # Authentication (the row joined with its user) and the list.
    assert len(queries) == 2, [query["sql"] for query in queries.captured_queries]


def test_list_unauthenticated(api_client, pair):
    response = api_client.get(LIST_URL)

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_list_bad_token(api_client, pair):
    response = api_client.get(LIST_URL, **bearer(pair.refresh_token))

    assert_error(response, 401, "token_invalid")
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


def test_list_post_not_allowed(api_client, pair):
    response = api_client.post(LIST_URL, {}, format="json", **bearer(pair.access_token))

    assert_error(response, 405, "method_not_allowed")


# Revoking one session


def test_delete_own_session(api_client, alice, revoked_calls):
    caller = services.issue_pair(alice)
    other = services.issue_pair(alice)

    response = api_client.delete(detail_url(other.token.pk), **bearer(caller.access_token))

    assert response.status_code == 204
    assert response.content == b""
    assert not PersonalAccessToken.objects.filter(pk=other.token.pk).exists()
    assert api_client.get(ME_URL, **bearer(caller.access_token)).status_code == 200
    assert_error(api_client.get(ME_URL, **bearer(other.access_token)), 401, "token_invalid")
    assert len(revoked_calls) == 1
    call = revoked_calls[0]
    assert call["sender"] is PersonalAccessToken
    assert call["user"] == alice
    assert [row.pk for row in call["tokens"]] == [other.token.pk]
    assert call["request"].path == detail_url(other.token.pk)


def test_delete_current_session(api_client, pair):
    response = api_client.delete(detail_url(pair.token.pk), **bearer(pair.access_token))

    assert response.status_code == 204
    assert_error(api_client.get(ME_URL, **bearer(pair.access_token)), 401, "token_invalid")


def test_delete_other_users_session(api_client, alice, bob, revoked_calls):
    caller = services.issue_pair(alice)
    bobs = services.issue_pair(bob)

    response = api_client.delete(detail_url(bobs.token.pk), **bearer(caller.access_token))

    assert_error(response, 404, "not_found")
    assert PersonalAccessToken.objects.filter(pk=bobs.token.pk).exists()
    assert revoked_calls == []


def test_delete_twice(api_client, alice):
    caller = services.issue_pair(alice)
    other = services.issue_pair(alice)
    api_client.delete(detail_url(other.token.pk), **bearer(caller.access_token))

    response = api_client.delete(detail_url(other.token.pk), **bearer(caller.access_token))

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "session_id",
    [
        "abc",
        "1.0",
        "-1",
        "0",
        "+1",
        " 1",
        "1e3",
        "0x1",
        "99999999999999999999",
        "2147483648",
        "9" * 400,
        "%C2%B2",  # superscript two: str.isdigit() is true, int() rejects it
        "%D9%A1",  # Arabic-Indic digit one: int() reads it as 1
        "%EF%BC%91",  # fullwidth digit one
        "%00",
        "null",
    ],
)
def test_delete_invalid_id(api_client, alice, session_id, revoked_calls):
    caller = services.issue_pair(alice)
    # The caller's own session is the only row, so an id read as 1 would delete it.
    PersonalAccessToken.objects.filter(pk=caller.token.pk).update(id=1)
    caller = services.IssuedPair(
        PersonalAccessToken.objects.get(pk=1), caller.access_token, caller.refresh_token
    )

    with CaptureQueriesContext(connection) as queries:
        response = api_client.delete(detail_url(session_id), **bearer(caller.access_token))

    assert_error(response, 404, "not_found")
    assert len(queries) == 1
    assert PersonalAccessToken.objects.filter(pk=1).exists()
    assert revoked_calls == []


def test_delete_leading_zeros(api_client, pair):
    response = api_client.delete(detail_url(f"000{pair.token.pk}"), **bearer(pair.access_token))

    assert response.status_code == 204


def test_delete_largest_id(api_client, pair):
    response = api_client.delete(detail_url(2**31 - 1), **bearer(pair.access_token))

    assert_error(response, 404, "not_found")


def test_delete_query_count(api_client, alice):
    caller = services.issue_pair(alice)
    other = services.issue_pair(alice)

    with CaptureQueriesContext(connection) as queries:
        response = api_client.delete(detail_url(other.token.pk), **bearer(caller.access_token))

    assert response.status_code == 204
    # Authentication, the id, the locked row, one DELETE, and the savepoint pair of the
    # transaction inside the test's own transaction.
    assert len(queries) == 6, [query["sql"] for query in queries.captured_queries]


def test_delete_unauthenticated(api_client, pair):
    response = api_client.delete(detail_url(pair.token.pk))

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert PersonalAccessToken.objects.filter(pk=pair.token.pk).exists()


@pytest.mark.parametrize("method", ["get", "post", "put", "patch"])
def test_detail_other_methods(api_client, pair, method):
    send = getattr(api_client, method)

    response = send(detail_url(pair.token.pk), **bearer(pair.access_token))

    assert_error(response, 405, "method_not_allowed")
    assert PersonalAccessToken.objects.filter(pk=pair.token.pk).exists()


def test_delete_ignores_body(api_client, alice):
    caller = services.issue_pair(alice)
    other = services.issue_pair(alice)

    response = api_client.delete(
        detail_url(other.token.pk),
        '{"id": ',
        content_type="application/json",
        **bearer(caller.access_token),
    )

    assert response.status_code == 204
