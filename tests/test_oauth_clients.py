"""Standard OAuth 2.0 client libraries against a live server on the loopback interface.

Authlib and requests-oauthlib fetch a token pair with the password grant from ``/auth/token/``,
call ``/api/me/`` with it, and refresh it by themselves at ``/auth/token/refresh/`` once the
access token has expired. Both libraries work out expiry from ``expires_in`` and the client's
clock, which time-machine moves for the client and the server alike. The sessions ignore proxy
settings from the environment, so every request goes to the live server.
"""

import gc
import threading
from datetime import timedelta

import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from django.core.cache import caches
from oauthlib.oauth2 import InvalidGrantError, LegacyApplicationClient
from requests_oauthlib import OAuth2Session as OAuthlibSession

from pat_tokens import services
from pat_tokens.models import PersonalAccessToken

CLIENT_ID = "example-cli"
REQUEST_THREAD_TIMEOUT = 10
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(django_db_setup, transactional_db, live_server):
    """Return the live server's base URL, started only after the test database exists.

    On SQLite in memory the server thread shares the test's connection, so it must not take that
    connection before the test database has been created.
    """
    return live_server.url


@pytest.fixture(autouse=True)
def throttle_counts_cleared():
    """Start every test with empty throttle history; the server thread shares the default cache."""
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture(autouse=True)
def request_threads_finished():
    """Wait after each test until the live server's request threads have ended.

    An exception raised from a response (``invalid_grant``) keeps the client's keep-alive
    connection open through the reference cycle of its traceback, and the server's thread for that
    connection waits for another request. Left alone, such a thread ends when the interpreter
    collects the cycle, possibly after the live server has stopped sharing its SQLite connection,
    and then fails to close it. Collecting the cycles here closes those connections at once.
    """
    yield
    gc.collect()
    for thread in threading.enumerate():
        if thread.name.endswith("(process_request_thread)"):
            thread.join(timeout=REQUEST_THREAD_TIMEOUT)
            assert not thread.is_alive(), "a live server request thread did not finish"


@pytest.fixture
def urls(server):
    return {
        "obtain": f"{server}/auth/token/",
        "refresh": f"{server}/auth/token/refresh/",
        "revoke_all": f"{server}/auth/token/revoke-all/",
        "me": f"{server}/api/me/",
    }


@pytest.fixture
def updates():
    """Tokens that a library passed to its token-update callback."""
    return []


def direct_get(url, access_token):
    """Call ``url`` with ``access_token`` outside the libraries under test."""
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


# Authlib


def authlib_session(urls, updates, **kwargs):
    def update_token(token, refresh_token=None, access_token=None):
        updates.append(dict(token))

    session = AuthlibSession(
        client_id=CLIENT_ID,
        token_endpoint=urls["refresh"],
        token_endpoint_auth_method="none",
        update_token=update_token,
        **kwargs,
    )
    session.trust_env = False
    return session


def test_authlib_password_grant(urls, updates, alice, password):
    with authlib_session(urls, updates) as session:
        token = session.fetch_token(
            urls["obtain"], username="alice", password=password, grant_type="password"
        )
        me = session.get(urls["me"], timeout=10)

    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["refresh_token"].startswith("patr_")
    assert "expires_at" in token
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "alice"
    assert updates == []


def test_authlib_refreshes_expired_token(urls, updates, clock, alice, password):
    with authlib_session(urls, updates) as session:
        first = dict(
            session.fetch_token(
                urls["obtain"], username="alice", password=password, grant_type="password"
            )
        )
        clock.shift(timedelta(hours=2))
        me = session.get(urls["me"], timeout=10)

    assert me.status_code == 200, me.text
    assert me.json()["username"] == "alice"
    assert len(updates) == 1
    renewed = updates[0]
    assert renewed["access_token"] != first["access_token"]
    assert renewed["refresh_token"] != first["refresh_token"]
    assert PersonalAccessToken.objects.count() == 1
    assert direct_get(urls["me"], first["access_token"]).status_code == 401
    assert direct_get(urls["me"], renewed["access_token"]).status_code == 200


def test_authlib_short_access_lifetime(urls, updates, clock, settings, alice, password):
    settings.PAT_TOKENS = {"ACCESS_TOKEN_LIFETIME": timedelta(seconds=5)}

    with authlib_session(urls, updates, leeway=0) as session:
        token = session.fetch_token(
            urls["obtain"], username="alice", password=password, grant_type="password"
        )
        assert token["expires_in"] == 5
        assert session.get(urls["me"], timeout=10).status_code == 200
        assert updates == []

        for round_number in range(1, 4):
            clock.shift(timedelta(seconds=6))
            me = session.get(urls["me"], timeout=10)
            assert me.status_code == 200, me.text
            assert len(updates) == round_number

    assert PersonalAccessToken.objects.count() == 1


def test_authlib_wrong_password(urls, updates, alice):
    with authlib_session(urls, updates) as session, pytest.raises(OAuthError) as raised:
        session.fetch_token(
            urls["obtain"], username="alice", password="wrong", grant_type="password"
        )

    assert raised.value.error == "invalid_grant"
    assert PersonalAccessToken.objects.count() == 0


def test_authlib_refresh_after_revoke(urls, updates, clock, alice, password):
    with authlib_session(urls, updates) as session:
        token = session.fetch_token(
            urls["obtain"], username="alice", password=password, grant_type="password"
        )
        session.post(urls["revoke_all"], timeout=10)
        clock.shift(timedelta(hours=2))

        with pytest.raises(OAuthError) as raised:
            session.get(urls["me"], timeout=10)

    assert raised.value.error == "invalid_grant"
    assert token["access_token"]
    assert updates == []


def test_authlib_refresh_token_call(urls, updates, alice):
    pair = services.issue_pair(alice)

    with authlib_session(urls, updates) as session:
        token = session.refresh_token(urls["refresh"], refresh_token=pair.refresh_token)

    assert token["token_type"] == "Bearer"
    assert token["refresh_token"] != pair.refresh_token
    assert len(updates) == 1


# requests-oauthlib


@pytest.fixture
def insecure_transport(monkeypatch):
    """Let oauthlib use the live server's plain HTTP, which it rejects outside tests."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def oauthlib_session(urls, updates):
    session = OAuthlibSession(
        client=LegacyApplicationClient(client_id=CLIENT_ID),
        auto_refresh_url=urls["refresh"],
        token_updater=lambda token: updates.append(dict(token)),
    )
    session.trust_env = False
    return session


def test_oauthlib_password_grant(urls, updates, insecure_transport, alice, password):
    with oauthlib_session(urls, updates) as session:
        token = session.fetch_token(
            urls["obtain"], username="alice", password=password, include_client_id=True
        )
        me = session.get(urls["me"], timeout=10)

    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["refresh_token"].startswith("patr_")
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "alice"
    assert updates == []


def test_oauthlib_refreshes_expired_token(
    urls, updates, insecure_transport, clock, alice, password
):
    with oauthlib_session(urls, updates) as session:
        first = dict(
            session.fetch_token(
                urls["obtain"], username="alice", password=password, include_client_id=True
            )
        )
        clock.shift(timedelta(hours=2))
        me = session.get(urls["me"], timeout=10)

    assert me.status_code == 200, me.text
    assert me.json()["username"] == "alice"
    assert len(updates) == 1
    renewed = updates[0]
    assert renewed["access_token"] != first["access_token"]
    assert renewed["refresh_token"] != first["refresh_token"]
    assert direct_get(urls["me"], first["access_token"]).status_code == 401
    assert direct_get(urls["me"], renewed["access_token"]).status_code == 200


def test_oauthlib_rotation_off(urls, updates, insecure_transport, clock, settings, alice, password):
    settings.PAT_TOKENS = {"ROTATE_REFRESH_TOKENS": False}

    with oauthlib_session(urls, updates) as session:
        first = dict(session.fetch_token(urls["obtain"], username="alice", password=password))
        clock.shift(timedelta(hours=2))
        assert session.get(urls["me"], timeout=10).status_code == 200
        clock.shift(timedelta(hours=2))
        assert session.get(urls["me"], timeout=10).status_code == 200

    assert len(updates) == 2
    assert [token["refresh_token"] for token in updates] == [first["refresh_token"]] * 2


def test_oauthlib_wrong_password(urls, updates, insecure_transport, alice):
    with oauthlib_session(urls, updates) as session, pytest.raises(InvalidGrantError) as raised:
        session.fetch_token(urls["obtain"], username="alice", password="wrong")

    assert raised.value.error == "invalid_grant"


def test_oauthlib_rotated_refresh_token(urls, updates, insecure_transport, alice):
    pair = services.issue_pair(alice)
    services.refresh_pair(pair.refresh_token)

    with oauthlib_session(urls, updates) as session, pytest.raises(InvalidGrantError) as raised:
        session.refresh_token(urls["refresh"], refresh_token=pair.refresh_token)

    assert raised.value.error == "invalid_grant"
    assert updates == []
