"""Many clients obtaining, refreshing, revoking and authenticating at once.

Each worker thread has its own test client and its own database connection (closed when the thread
ends). The workers share one pool of sessions, so they race each other on the same rows. A ledger
records every token handed out and every response. When the threads are done, the test checks
these invariants against the database and the API:

- no response is a 5xx and no request raises (no MySQL 1205 lock wait timeout or 1213 deadlock);
- the rows left are exactly the sessions issued and not revoked or evicted, with the digests of the
  last pair each session was given;
- a token already retired (rotated away, revoked or evicted) when a request is sent is rejected;
- a rejection is explained: the token it rejected was retired by the end of the run;
- every surviving access token authenticates and every surviving refresh token refreshes, and every
  retired one is rejected.

The run is bounded by a fixed number of operations per thread and uses a seeded random generator, so
a failure can be replayed with the same seed.
"""

import dataclasses
import os
import random
import threading

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.db import connection
from rest_framework.test import APIClient

from pat_tokens import services, tokens
from pat_tokens.models import PersonalAccessToken
from pat_tokens.signals import token_issued, token_revoked

from .conftest import bearer
from .factories import PASSWORD, UserFactory

pytestmark = pytest.mark.slow

THREADS = 10
OPERATIONS_PER_THREAD = 40
USERS = 3
SEED = int(os.environ.get("PAT_TEST_STRESS_SEED", "20240521"))
# Codes a racing client may legitimately get: its session was rotated or revoked meanwhile.
EXPECTED_FAILURE_CODES = {"token_invalid", "not_found"}


@dataclasses.dataclass
class Session:
    """The client's view of one session: its current pair and every token it has retired."""

    pk: int
    username: str
    access: str
    refresh: str
    alive: bool = True
    retired: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Entry:
    """One request of the run: which operation, with which token, and what came back."""

    thread: int
    operation: str
    token: str | None
    status: int | None
    code: str | None
    retired_before: bool = False
    error: str | None = None


class Ledger:
    """Everything the workers did and saw, updated under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sessions = {}
        self.retired = set()
        self.entries = []
        self.issued = 0
        self.revoked = 0
        self.evicted = 0
        self.issued_pks = {}
        self.evicted_early = set()
        self.anomalies = []
        self.operation = threading.local()

    def retire(self, *retired_tokens):
        self.retired.update(retired_tokens)

    def end_session(self, session):
        if not session.alive:
            return False
        session.alive = False
        session.retired += [session.access, session.refresh]
        self.retire(session.access, session.refresh)
        return True

    def pick_session(self, rng):
        with self.lock:
            sessions = [session for session in self.sessions.values() if session.alive]
            if not sessions:
                return None
            session = rng.choice(sessions)
            return session, session.access, session.refresh

    def is_retired(self, token):
        with self.lock:
            return token in self.retired


class Worker:
    """One client thread: a random mix of the API's operations over the shared sessions."""

    def __init__(self, number, ledger, usernames):
        self.number = number
        self.ledger = ledger
        self.usernames = usernames
        self.rng = random.Random(SEED + number)
        self.client = APIClient(raise_request_exception=True)

    def run(self):
        try:
            for _ in range(OPERATIONS_PER_THREAD):
                operation = self.rng.choices(
                    ["obtain", "refresh", "authenticate", "plain", "revoke", "delete"],
                    weights=[3, 4, 6, 2, 2, 1],
                )[0]
                picked = None if operation == "obtain" else self.ledger.pick_session(self.rng)
                if picked is None:
                    self.obtain()
                else:
                    getattr(self, operation)(*picked)
        finally:
            connection.close()

    def request(self, operation, token, method, path, **kwargs):
        retired_before = token is not None and self.ledger.is_retired(token)
        entry = Entry(self.number, operation, token, None, None, retired_before)
        # Lets the token_revoked receiver tell evictions (made by an obtain) from revokes.
        self.ledger.operation.name = operation
        try:
            response = getattr(self.client, method)(path, **kwargs)
        except Exception as error:
            entry.error = f"{type(error).__name__}: {error}"
            response = None
        else:
            entry.status = response.status_code
            body = response.json() if response.content else None
            entry.code = body.get("code") if isinstance(body, dict) else None
        with self.ledger.lock:
            self.ledger.entries.append(entry)
        return entry, response

    def obtain(self):
        username = self.rng.choice(self.usernames)
        data = {"username": username, "password": PASSWORD}
        entry, response = self.request(
            "obtain", None, "post", "/auth/token/", data=data, format="json"
        )
        if entry.status != 200:
            return
        body = response.json()
        with self.ledger.lock:
            pk = self.ledger.issued_pks[tokens.digest(body["access_token"])]
            self.ledger.sessions[pk] = Session(
                pk, username, body["access_token"], body["refresh_token"]
            )
            self.ledger.issued += 1
            # An eviction made by this obtain may name a session registered just now.
            if pk in self.ledger.evicted_early:
                self.ledger.evicted_early.discard(pk)
                self.ledger.evicted += self.ledger.end_session(self.ledger.sessions[pk])

    def refresh(self, session, access, refresh):
        data = {"refresh_token": refresh}
        entry, response = self.request(
            "refresh", refresh, "post", "/auth/token/refresh/", data=data, format="json"
        )
        if entry.status != 200:
            return
        body = response.json()
        with self.ledger.lock:
            # Only the holder of the current refresh token can win, so updates arrive in order.
            if session.refresh != refresh:
                self.ledger.anomalies.append(("refresh out of order", session.pk))
            if session.alive:
                session.retired += [session.access, session.refresh]
                self.ledger.retire(session.access, session.refresh)
                session.access, session.refresh = body["access_token"], body["refresh_token"]
            else:
                # Revoked or evicted after this refresh won but before it was recorded here.
                session.retired += [body["access_token"], body["refresh_token"]]
                self.ledger.retire(body["access_token"], body["refresh_token"])

    def authenticate(self, session, access, refresh):
        self.request("authenticate", access, "get", "/api/me/", **bearer(access))

    def plain(self, session, access, refresh):
        self.request("plain", access, "get", "/plain/me/", **bearer(access))

    def revoke(self, session, access, refresh):
        entry, _ = self.request("revoke", access, "post", "/auth/token/revoke/", **bearer(access))
        if entry.status == 204:
            with self.ledger.lock:
                self.ledger.revoked += self.ledger.end_session(session)

    def delete(self, session, access, refresh):
        # Revoke the session through the sessions endpoint, with another session of the same user
        # when there is one alive.
        with self.ledger.lock:
            others = [
                other
                for other in self.ledger.sessions.values()
                if other.alive and other.username == session.username
            ]
        caller = self.rng.choice(others) if others else session
        entry, _ = self.request(
            "delete",
            caller.access,
            "delete",
            f"/auth/sessions/{session.pk}/",
            **bearer(caller.access),
        )
        if entry.status == 204:
            with self.ledger.lock:
                self.ledger.revoked += self.ledger.end_session(session)


@pytest.fixture
def ledger():
    """A ledger fed by the app's signals as well: session ids by digest, and evictions."""
    current = Ledger()

    def issued(sender, token, **kwargs):
        with current.lock:
            current.issued_pks[token.access_token] = token.pk

    def revoked(sender, tokens, **kwargs):
        if getattr(current.operation, "name", None) != "obtain":
            return
        with current.lock:
            for row in tokens:
                session = current.sessions.get(row.pk)
                if session is None:
                    current.evicted_early.add(row.pk)
                else:
                    current.evicted += current.end_session(session)

    token_issued.connect(issued, dispatch_uid="stress-ledger")
    token_revoked.connect(revoked, dispatch_uid="stress-ledger")
    yield current
    token_issued.disconnect(dispatch_uid="stress-ledger")
    token_revoked.disconnect(dispatch_uid="stress-ledger")


@pytest.fixture
def redis_cache(settings):
    """A Redis cache alias of this test's own, on the shared Redis server (database 15)."""
    prefix = f"pat-stress-{os.getpid()}"
    settings.CACHES = {
        **settings.CACHES,
        "stress": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("PAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
            "KEY_PREFIX": prefix,
        },
    }
    yield "stress"
    _delete_redis_keys(prefix)


def _delete_redis_keys(prefix):
    import redis

    client = redis.Redis.from_url(os.environ.get("PAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["no-cache", "redis-cache"])
def cache_alias(request):
    if request.param == "no-cache":
        return None
    return request.getfixturevalue("redis_cache")


def run_workers(ledger, usernames):
    workers = [Worker(number, ledger, usernames) for number in range(THREADS)]
    threads = [threading.Thread(target=worker.run) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def check_run(ledger, users):
    """Check the ledger of a finished run against the database and the API."""
    errors = [entry for entry in ledger.entries if entry.error is not None]
    assert errors == [], errors[:5]
    assert ledger.anomalies == []
    server_errors = [entry for entry in ledger.entries if entry.status >= 500]
    assert server_errors == []

    # A token retired before its request was sent must never be accepted.
    accepted_retired = [
        entry for entry in ledger.entries if entry.retired_before and entry.status in (200, 204)
    ]
    assert accepted_retired == []

    # Every rejection names a token that some other client retired.
    failures = [entry for entry in ledger.entries if entry.status not in (200, 204)]
    unexplained = [
        entry
        for entry in failures
        if entry.status not in (401, 404)
        or entry.code not in EXPECTED_FAILURE_CODES
        or (entry.status == 401 and entry.token not in ledger.retired)
    ]
    assert unexplained == []

    alive = {pk: session for pk, session in ledger.sessions.items() if session.alive}
    rows = {
        row.pk: row for row in PersonalAccessToken.objects.filter(user__in=users).order_by("pk")
    }
    assert ledger.issued == len(ledger.sessions)
    assert len(rows) == ledger.issued - ledger.revoked - ledger.evicted
    assert sorted(rows) == sorted(alive)
    for pk, session in alive.items():
        assert rows[pk].access_token == tokens.digest(session.access)
        assert rows[pk].refresh_token == tokens.digest(session.refresh)

    check_tokens_afterwards(ledger, alive)


def is_access_token(token):
    try:
        tokens.parse(token, tokens.TokenKind.ACCESS)
    except tokens.MalformedToken:
        return False
    return True


def check_tokens_afterwards(ledger, alive):
    client = APIClient()
    all_retired = [token for session in ledger.sessions.values() for token in session.retired]
    assert set(all_retired) == ledger.retired

    accepted = []
    for session in ledger.sessions.values():
        for position, token in enumerate(session.retired):
            if is_access_token(token):
                kind, response = "access", client.get("/api/me/", **bearer(token))
            else:
                kind = "refresh"
                response = client.post(
                    "/auth/token/refresh/", {"refresh_token": token}, format="json"
                )
            if response.status_code != 401 or response.json()["code"] != "token_invalid":
                row_exists = PersonalAccessToken.objects.filter(pk=session.pk).exists()
                accepted.append((session.pk, kind, position, response.status_code, row_exists))
    # (session id, token kind, position among the session's retired tokens, status, row exists)
    assert accepted == []

    for session in alive.values():
        assert client.get("/api/me/", **bearer(session.access)).status_code == 200
        refreshed = client.post(
            "/auth/token/refresh/", {"refresh_token": session.refresh}, format="json"
        )
        assert refreshed.status_code == 200
        assert client.get("/api/me/", **bearer(session.access)).status_code == 401
        new_access = refreshed.json()["access_token"]
        assert client.get("/api/me/", **bearer(new_access)).status_code == 200


@pytest.fixture
def users(transactional_db):
    """The users of a run, in a database that many connections can share."""
    name = django_settings.DATABASES["default"]["TEST"].get("NAME")
    if connection.vendor == "sqlite" and (not name or ":memory:" in name or "mode=memory" in name):
        # Shared-cache in-memory SQLite locks whole tables; a file database takes turns instead.
        pytest.skip("needs a database server or a SQLite file (PAT_TEST_SQLITE_NAME)")
    return [UserFactory(username=f"stress-{number}") for number in range(USERS)]


@pytest.fixture
def unthrottled(settings):
    return {"THROTTLE_RATES": {"obtain": None, "refresh": None}}


def test_stress_mixed_operations(settings, ledger, users, unthrottled, cache_alias):
    settings.PAT_TOKENS = {**unthrottled, "CACHE_ALIAS": cache_alias}

    run_workers(ledger, [user.username for user in users])

    assert len(ledger.entries) == THREADS * OPERATIONS_PER_THREAD
    check_run(ledger, users)


def test_stress_with_session_limit(settings, ledger, users, unthrottled, redis_cache):
    settings.PAT_TOKENS = {**unthrottled, "CACHE_ALIAS": redis_cache, "MAX_SESSIONS_PER_USER": 3}

    run_workers(ledger, [user.username for user in users])

    assert ledger.evicted > 0
    check_run(ledger, users)
    for user in users:
        assert PersonalAccessToken.objects.filter(user=user).count() <= 3


@pytest.mark.server_db
def test_eviction_racing_refresh_ends_cached_access(settings, transactional_db, api_client):
    """A session evicted by a login right after a refresh cannot stay cached with its new token.

    The login reads the sessions to evict; before it deletes them, another client refreshes the
    oldest one and authenticates with the new access token, which caches it. The eviction must
    end the cache entry of the digest the row has when it is deleted, not of the one first read.
    """
    settings.PAT_TOKENS = {"CACHE_ALIAS": "tokens", "MAX_SESSIONS_PER_USER": 1}
    caches["tokens"].clear()
    user = UserFactory(username="evicted")
    oldest = services.issue_pair(user)
    racing = {}

    def refresh_and_authenticate():
        try:
            client = APIClient()
            data = {"refresh_token": oldest.refresh_token}
            refreshed = client.post("/auth/token/refresh/", data, format="json")
            racing["refresh"] = refreshed.status_code
            racing["access"] = refreshed.json().get("access_token")
            racing["me"] = client.get("/api/me/", **bearer(racing["access"])).status_code
        finally:
            connection.close()

    def race_after_eviction_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not racing and "refresh_tokens" in sql and "OFFSET" in sql:
            thread = threading.Thread(target=refresh_and_authenticate)
            thread.start()
            thread.join()
        return result

    data = {"username": "evicted", "password": PASSWORD}
    with connection.execute_wrapper(race_after_eviction_read):
        login = api_client.post("/auth/token/", data, format="json")

    assert login.status_code == 200
    assert racing == {"refresh": 200, "access": racing["access"], "me": 200}
    assert PersonalAccessToken.objects.filter(user=user).count() == 1
    response = api_client.get("/api/me/", **bearer(racing["access"]))
    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"
