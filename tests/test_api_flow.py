"""A whole session's life through the HTTP API, with whichever user model the run uses."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pat_tokens.models import PersonalAccessToken

from .conftest import bearer


@pytest.fixture(params=[None, "tokens"], ids=["no-cache", "locmem-cache"])
def cache_alias(request, settings):
    settings.PAT_TOKENS = {"CACHE_ALIAS": request.param}
    if request.param:
        from django.core.cache import caches

        caches[request.param].clear()
    return request.param


def login(client, password, username="alice"):
    response = client.post(
        "/auth/token/", {"username": username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_full_session_life(api_client, alice, bob, password, cache_alias):
    first = login(api_client, password)
    second = login(api_client, password)
    login(api_client, password, username="bob")

    me = api_client.get("/api/me/", **bearer(first["access_token"]))
    assert me.status_code == 200
    assert me.json()["user_id"] == str(alice.pk)

    plain = api_client.get("/plain/me/", **bearer(first["access_token"]))
    assert plain.status_code == 200
    assert plain.json()["user_id"] == str(alice.pk)

    refreshed = api_client.post(
        "/auth/token/refresh/", {"refresh_token": first["refresh_token"]}, format="json"
    )
    assert refreshed.status_code == 200
    current = refreshed.json()
    assert api_client.get("/api/me/", **bearer(first["access_token"])).status_code == 401
    assert api_client.get("/api/me/", **bearer(current["access_token"])).status_code == 200

    sessions = api_client.get("/auth/sessions/", **bearer(current["access_token"])).json()
    assert len(sessions) == 2
    assert [session["current"] for session in sessions].count(True) == 1
    other = next(session for session in sessions if not session["current"])

    bob_session = PersonalAccessToken.objects.get(user=bob)
    foreign = api_client.delete(
        f"/auth/sessions/{bob_session.pk}/", **bearer(current["access_token"])
    )
    assert foreign.status_code == 404

    deleted = api_client.delete(f"/auth/sessions/{other['id']}/", **bearer(current["access_token"]))
    assert deleted.status_code == 204
    assert api_client.get("/api/me/", **bearer(second["access_token"])).status_code == 401

    revoked_all = api_client.post("/auth/token/revoke-all/", **bearer(current["access_token"]))
    assert revoked_all.status_code == 204
    assert PersonalAccessToken.objects.filter(user=alice).count() == 0
    assert PersonalAccessToken.objects.filter(user=bob).count() == 1
    assert api_client.get("/api/me/", **bearer(current["access_token"])).status_code == 401


def test_revoke_current_session(api_client, alice, password, cache_alias):
    pair = login(api_client, password)
    api_client.get("/api/me/", **bearer(pair["access_token"]))

    response = api_client.post("/auth/token/revoke/", **bearer(pair["access_token"]))

    assert response.status_code == 204
    assert api_client.get("/api/me/", **bearer(pair["access_token"])).status_code == 401
    refresh = api_client.post(
        "/auth/token/refresh/", {"refresh_token": pair["refresh_token"]}, format="json"
    )
    assert refresh.status_code == 401
    assert refresh.json()["code"] == "token_invalid"


def test_one_query_per_authenticated_request(api_client, alice, password, settings):
    pair = login(api_client, password)

    with CaptureQueriesContext(connection) as queries:
        response = api_client.get("/api/me/", **bearer(pair["access_token"]))

    assert response.status_code == 200
    assert len(queries) == 1
    assert get_user_model()._meta.db_table in queries[0]["sql"]


def test_user_model_has_no_id_attribute_dependency(alice):
    # The example user's key is user_id and the integer variant's is uid: nothing may use .id.
    assert get_user_model()._meta.pk.name in ("user_id", "uid")
    assert not hasattr(alice, "id")


def test_deleted_user_tokens_stop_working(api_client, alice, password, cache_alias):
    pair = login(api_client, password)
    api_client.get("/api/me/", **bearer(pair["access_token"]))

    get_user_model().objects.get(pk=alice.pk).delete()

    me = api_client.get("/api/me/", **bearer(pair["access_token"]))
    refresh = api_client.post(
        "/auth/token/refresh/", {"refresh_token": pair["refresh_token"]}, format="json"
    )
    assert me.status_code == 401
    assert me.json()["code"] == "token_invalid"
    assert refresh.status_code == 401
    assert refresh.json()["code"] == "token_invalid"
