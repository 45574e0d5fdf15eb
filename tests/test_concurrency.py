"""Concurrent requests on one session, on MySQL/MariaDB and PostgreSQL.

Every request runs in its own thread, through its own test client and its own database
connection, and all threads of a round start together behind a ``threading.Barrier``. On MySQL and
MariaDB each test runs twice: under the backend's default isolation level (Django sets READ
COMMITTED) and under REPEATABLE READ, by changing ``OPTIONS["isolation_level"]`` of the connection
settings that the threads' new connections read. Each thread reports the level its connection
uses, so a run under the wrong level fails.
"""

import hashlib
import logging
import threading
import time
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.db import connection, connections, transaction
from rest_framework.test import APIClient

from pat_tokens import services
from pat_tokens.authentication import authenticate_token
from pat_tokens.exceptions import TokenInvalid
from pat_tokens.models import PersonalAccessToken
from pat_tokens.signals import token_refreshed

from .conftest import bearer

REFRESH_URL = "/auth/token/refresh/"
REVOKE_URL = "/auth/token/revoke/"
OBTAIN_URL = "/auth/token/"
ME_URL = "/api/me/"
ROUNDS = 50
THREADS = 8
BARRIER_TIMEOUT = 60
LOCK_WAIT_POLLS = 1000
LOCK_WAIT_POLL_SECONDS = 0.01
# Words in the messages of MySQL/MariaDB lock errors 1205 (lock wait timeout) and 1213 (deadlock).
LOCK_ERROR_MARKERS = ("1205", "1213", "deadlock", "lock wait timeout")

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]


@pytest.fixture(
    params=[None, pytest.param("repeatable read", marks=pytest.mark.mysql_only)],
    ids=["default-isolation", "repeatable-read"],
)
def isolation(request, monkeypatch):
    """Set the isolation level of new connections; return the level their sessions must report."""
    options = connection.settings_dict.setdefault("OPTIONS", {})
    if request.param is not None:
        monkeypatch.setitem(options, "isolation_level", request.param)
        # This thread's connection may open under the level too; the next test needs a new one.
        request.addfinalizer(connection.close)
    if request.param is not None:
        return request.param
    return "serializable" if connection.vendor == "sqlite" else "read committed"


@pytest.fixture(autouse=True)
def unthrottled(settings):
    settings.PAT_TOKENS = {"THROTTLE_RATES": {"obtain": None, "refresh": None}}


@pytest.fixture
def refreshed_calls():
    """Every ``token_refreshed`` sent during the test, from any thread."""
    calls = []
    lock = threading.Lock()

    def receiver(sender, **kwargs):
        with lock:
            calls.append(kwargs)

    token_refreshed.connect(receiver)
    yield calls
    token_refreshed.disconnect(receiver)


@pytest.fixture
def lock_errors(caplog):
    """Log records that mention a MySQL lock wait timeout or deadlock."""
    caplog.set_level(logging.INFO)

    def find():
        return [
            record.getMessage()
            for record in caplog.records
            if any(marker in record.getMessage().lower() for marker in LOCK_ERROR_MARKERS)
            or record.levelno >= logging.ERROR
        ]

    return find


def session_isolation_level():
    """Return the isolation level of this thread's connection, as "read committed" etc."""
    if connection.vendor == "sqlite":
        # SQLite has one level: its transactions are serializable.
        return "serializable"
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            variable = "tx_isolation" if connection.mysql_is_mariadb else "transaction_isolation"
            cursor.execute(f"SELECT @@SESSION.{variable}")
        else:
            cursor.execute("SHOW transaction_isolation")
        return cursor.fetchone()[0].lower().replace("-", " ")


class Outcome:
    """What one thread got: a response, or the exception that escaped the view."""

    def __init__(self, response=None, error=None, isolation=None):
        self.response = response
        self.error = error
        self.isolation = isolation

    @property
    def status(self):
        return None if self.response is None else self.response.status_code

    @property
    def code(self):
        if self.response is None or self.status == 204:
            return None
        return self.response.json().get("code")


def run_together(requests):
    """Run each callable with its own client and connection, released at once; return outcomes.

    A callable takes a client and returns a response. Each thread opens its connection before the
    barrier, so that the requests race each other rather than the connection handshakes.
    """
    barrier = threading.Barrier(len(requests))
    outcomes = [None] * len(requests)

    def run(index, send):
        isolation = None
        try:
            isolation = session_isolation_level()
            client = APIClient()
            barrier.wait(timeout=BARRIER_TIMEOUT)
            outcomes[index] = Outcome(response=send(client), isolation=isolation)
        except Exception as error:
            outcomes[index] = Outcome(error=error, isolation=isolation)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=BARRIER_TIMEOUT * 2)
        assert not thread.is_alive(), "a request thread did not finish"
    return outcomes


def refresh_request(refresh_token):
    def send(client):
        return client.post(REFRESH_URL, {"refresh_token": refresh_token}, format="json")

    return send


def revoke_request(access_token):
    def send(client):
        return client.post(REVOKE_URL, **bearer(access_token))

    return send


def obtain_request(username, password):
    def send(client):
        return client.post(OBTAIN_URL, {"username": username, "password": password}, format="json")

    return send


def sha256(text):
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def assert_no_server_errors(outcomes, isolation):
    errors = [repr(outcome.error) for outcome in outcomes if outcome.error is not None]
    assert errors == []
    assert [outcome.status for outcome in outcomes if outcome.status >= 500] == []
    assert {outcome.isolation for outcome in outcomes} == {isolation}


def race_refreshes(alice, isolation, refreshed_calls, lock_errors, rounds, threads):
    """Refresh one session from ``threads`` threads at once, ``rounds`` times in a row."""
    client = APIClient()
    current = services.issue_pair(alice)
    session_id = current.token.pk
    access_token, refresh_token = current.access_token, current.refresh_token
    updated_at = current.token.updated_at
    expires_access = current.token.expires_access_token
    expires_refresh = current.token.expires_refresh_token

    for round_number in range(1, rounds + 1):
        outcomes = run_together([refresh_request(refresh_token)] * threads)

        assert_no_server_errors(outcomes, isolation)
        winners = [outcome for outcome in outcomes if outcome.status == 200]
        losers = [(outcome.status, outcome.code) for outcome in outcomes if outcome.status != 200]
        assert len(winners) == 1, f"round {round_number}: {len(winners)} refreshes succeeded"
        assert losers == [(401, "token_invalid")] * (threads - 1)

        body = winners[0].response.json()
        rows = PersonalAccessToken.objects.filter(user=alice)
        assert rows.count() == 1
        row = rows.get()
        assert row.pk == session_id
        assert row.access_token == sha256(body["access_token"])
        assert row.refresh_token == sha256(body["refresh_token"])
        assert row.updated_at > updated_at
        assert row.expires_access_token > expires_access
        assert row.expires_refresh_token > expires_refresh
        assert len(refreshed_calls) == round_number

        assert client.get(ME_URL, **bearer(access_token)).json()["code"] == "token_invalid"
        assert client.get(ME_URL, **bearer(body["access_token"])).status_code == 200
        access_token, refresh_token = body["access_token"], body["refresh_token"]
        updated_at = row.updated_at
        expires_access = row.expires_access_token
        expires_refresh = row.expires_refresh_token

    assert lock_errors() == []


def test_concurrent_refresh_single_winner(alice, isolation, refreshed_calls, lock_errors):
    race_refreshes(alice, isolation, refreshed_calls, lock_errors, rounds=ROUNDS, threads=THREADS)


def test_twenty_concurrent_refreshes(alice, isolation, refreshed_calls, lock_errors):
    race_refreshes(alice, isolation, refreshed_calls, lock_errors, rounds=1, threads=20)


def test_concurrent_refresh_rotation_off(alice, settings, isolation, refreshed_calls):
    settings.PAT_TOKENS = {**settings.PAT_TOKENS, "ROTATE_REFRESH_TOKENS": False}
    pair = services.issue_pair(alice)
    client = APIClient()

    outcomes = run_together([refresh_request(pair.refresh_token)] * THREADS)

    assert_no_server_errors(outcomes, isolation)
    assert [outcome.status for outcome in outcomes] == [200] * THREADS
    bodies = [outcome.response.json() for outcome in outcomes]
    assert {body["refresh_token"] for body in bodies} == {pair.refresh_token}
    row = PersonalAccessToken.objects.get(user=alice)
    assert row.pk == pair.token.pk
    assert row.refresh_token == sha256(pair.refresh_token)
    # Each refresh replaced the access token in turn, so only the last one written still works.
    working = [
        body["access_token"]
        for body in bodies
        if client.get(ME_URL, **bearer(body["access_token"])).status_code == 200
    ]
    assert [sha256(token) for token in working] == [row.access_token]
    assert len(refreshed_calls) == THREADS
    assert client.post(REFRESH_URL, {"refresh_token": pair.refresh_token}).status_code == 200


def test_revoke_racing_refresh(alice, isolation, lock_errors):
    client = APIClient()
    tally = Counter()

    for _ in range(20):
        pair = services.issue_pair(alice)

        revoked, refreshed = run_together(
            [revoke_request(pair.access_token), refresh_request(pair.refresh_token)]
        )

        assert_no_server_errors([revoked, refreshed], isolation)
        rows = PersonalAccessToken.objects.filter(user=alice)
        if revoked.status == 204:
            assert (refreshed.status, refreshed.code) == (401, "token_invalid")
            assert rows.count() == 0
            tally["revoke first"] += 1
        else:
            assert (revoked.status, revoked.code) == (401, "token_invalid")
            assert refreshed.status == 200
            assert rows.count() == 1
            new_access = refreshed.response.json()["access_token"]
            assert client.get(ME_URL, **bearer(new_access)).status_code == 200
            tally["refresh first"] += 1
        rows.delete()

    assert sum(tally.values()) == 20
    assert lock_errors() == []


def test_concurrent_logins_session_limit(alice, password, settings, isolation, lock_errors):
    settings.PAT_TOKENS = {**settings.PAT_TOKENS, "MAX_SESSIONS_PER_USER": 1}

    for _ in range(5):
        outcomes = run_together([obtain_request("alice", password)] * 10)

        assert_no_server_errors(outcomes, isolation)
        assert [outcome.status for outcome in outcomes] == [200] * 10
        rows = PersonalAccessToken.objects.filter(user=alice)
        assert rows.count() == 1
        issued = {sha256(outcome.response.json()["access_token"]) for outcome in outcomes}
        assert rows.get().access_token in issued

    assert lock_errors() == []


def pause_after_first_read(before_continuing):
    """Return an execute wrapper that calls ``before_continuing`` after the first SELECT.

    The pause comes before the rows are fetched. A server database does not mind, but SQLite keeps
    its shared lock meanwhile and so blocks the other thread's write: this needs a server database.
    """
    paused = []

    def wrapper(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not paused and sql.lstrip().upper().startswith("SELECT"):
            paused.append(sql)
            before_continuing()
        return result

    return wrapper


def test_rotation_off_race_ends_cached_access(alice, settings):
    """Two refreshes both read the session, then write one after the other.

    The access token of the first write is cached before the second write replaces it, and must
    stop working once it is replaced, as it would after two refreshes one after the other.
    """
    settings.PAT_TOKENS = {
        **settings.PAT_TOKENS,
        "ROTATE_REFRESH_TOKENS": False,
        "CACHE_ALIAS": "tokens",
    }
    caches["tokens"].clear()
    pair = services.issue_pair(alice)
    both_read = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    first_access_cached = threading.Event()
    results = {}

    def first():
        try:
            with connection.execute_wrapper(pause_after_first_read(both_read.wait)):
                results["first"] = services.refresh_pair(pair.refresh_token)
        finally:
            connections.close_all()

    def second():
        def wait_for_first():
            both_read.wait()
            assert first_access_cached.wait(timeout=BARRIER_TIMEOUT)

        try:
            with connection.execute_wrapper(pause_after_first_read(wait_for_first)):
                results["second"] = services.refresh_pair(pair.refresh_token)
        finally:
            connections.close_all()

    first_thread = threading.Thread(target=first)
    second_thread = threading.Thread(target=second)
    first_thread.start()
    second_thread.start()
    first_thread.join(timeout=BARRIER_TIMEOUT)
    first_access = results["first"].access_token
    assert authenticate_token(first_access)[0] == alice
    first_access_cached.set()
    second_thread.join(timeout=BARRIER_TIMEOUT)

    second_access = results["second"].access_token
    assert PersonalAccessToken.objects.get().access_token == sha256(second_access)
    with pytest.raises(TokenInvalid):
        authenticate_token(first_access)
    assert authenticate_token(second_access)[0] == alice

    services.revoke_all(alice)

    for access_token in (first_access, second_access):
        with pytest.raises(TokenInvalid):
            authenticate_token(access_token)


def wait_until_blocked_on_lock():
    """Poll until another connection to the test database waits for a row lock.

    Polling is the only way to know that a thread is blocked in the database. The wait itself is
    not asserted on, only its end within ``LOCK_WAIT_POLLS`` polls.
    """
    if connection.vendor == "postgresql":
        sql = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    else:
        # MariaDB lists a locking read of a row by primary key in the processlist while it waits,
        # but not always in information_schema.innodb_trx.
        sql = (
            "SELECT count(*) FROM information_schema.processlist "
            "WHERE db = DATABASE() AND id <> CONNECTION_ID() AND command = 'Query' "
            "AND info LIKE '%%FOR UPDATE%%'"
        )
    for _ in range(LOCK_WAIT_POLLS):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Within a transaction PostgreSQL keeps returning its first statistics snapshot.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(sql)
            if cursor.fetchone()[0]:
                return
        time.sleep(LOCK_WAIT_POLL_SECONDS)
    raise AssertionError("the other connection never waited for the lock")


def test_session_limit_keeps_login_that_waited(alice, settings):
    """A login that waited for the user lock keeps its new session; an older one is evicted."""
    settings.PAT_TOKENS = {**settings.PAT_TOKENS, "MAX_SESSIONS_PER_USER": 1}
    waiting = {}

    def log_in_while_locked():
        try:
            waiting["pair"] = services.issue_pair(alice)
        finally:
            connections.close_all()

    with transaction.atomic():
        # Hold the user lock that issue_pair takes, so the thread's login waits for it.
        get_user_model().objects.select_for_update().filter(pk=alice.pk).get()
        thread = threading.Thread(target=log_in_while_locked)
        thread.start()
        wait_until_blocked_on_lock()
        services.issue_pair(alice)
    thread.join(timeout=BARRIER_TIMEOUT)

    later = waiting["pair"]
    assert list(PersonalAccessToken.objects.values_list("pk", flat=True)) == [later.token.pk]
