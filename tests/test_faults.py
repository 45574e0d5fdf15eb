"""Faults of the servers the app depends on: lost database connections, restarts, Redis outages.

Requests go through Django's real WSGI handler, not the test client, because only the handler
closes a broken database connection at the end of a request (the test client leaves connections
alone). That is what lets the request after a fault reconnect, as it would behind a WSGI server.

A database connection is lost by killing its server session from a second connection, just
before a chosen statement of the request runs: ``KILL <id>`` on MariaDB and MySQL,
``pg_terminate_backend(pid)`` on PostgreSQL. A whole database server restart runs only with
``PAT_TEST_RESTART_DB=1`` (see ``test_database_restart``), because it interrupts every other client
of the server.
"""

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection, connections
from django.db.utils import DatabaseError

from pat_tokens import cache as token_cache_module
from pat_tokens import services, tokens
from pat_tokens.models import PersonalAccessToken

from .factories import PASSWORD, UserFactory

# Seconds to wait for a server to stop or to accept connections again.
SERVER_WAIT_SECONDS = 60


@pytest.fixture(autouse=True)
def fresh_throttle_history():
    """Start from an empty default cache, where the token views count requests for throttling."""
    caches["default"].clear()


class WSGIResponse:
    def __init__(self, status, headers, body):
        self.status_code = status
        self.headers = headers
        self.content = body

    def json(self):
        return json.loads(self.content)


def wsgi_call(method, path, data=None, token=None, content_type="application/json"):
    """Send one request through Django's WSGI handler, as a WSGI server would.

    Closing the response fires ``request_finished``, whose receiver closes a database connection
    that failed during the request.
    """
    body = b"" if data is None else json.dumps(data).encode()
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = dict(headers)

    result = WSGIHandler()(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        result.close()
    return WSGIResponse(started["status"], started["headers"], content)


def login(username):
    response = wsgi_call("POST", "/auth/token/", {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()


def server_session_id():
    """Return the database server's id of the default connection's session."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_backend_pid()")
        else:
            cursor.execute("SELECT CONNECTION_ID()")
        return cursor.fetchone()[0]


def kill_session(session_id):
    """End a server session from a connection of its own, and wait until it is gone."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            if other.vendor == "postgresql":
                cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [session_id])
            else:
                cursor.execute("KILL %s", [session_id])
    finally:
        other.close()


class KillBefore:
    """An execute wrapper that kills its own connection's server session before a statement.

    ``verb`` and ``table`` select the statement: the first one that starts with ``verb`` and
    names ``table``. The statement then runs on the dead connection and fails as it would after a
    crash or a network cut.
    """

    def __init__(self, verb, table="refresh_tokens"):
        self.verb = verb
        self.table = table
        self.fired = False

    def __call__(self, execute, sql, params, many, context):
        if not self.fired and sql.lstrip().upper().startswith(self.verb) and self.table in sql:
            self.fired = True
            kill_session(server_session_id())
        return execute(sql, params, many, context)


@pytest.fixture
def quiet_request_log(caplog):
    """Keep the expected server error tracebacks out of the output; return the captured log."""
    caplog.set_level(logging.CRITICAL, logger="django.request")
    return caplog


def row_state(pk):
    return PersonalAccessToken.objects.filter(pk=pk).values().first()


# A lost database connection in the middle of a request.


@pytest.mark.server_db
def test_connection_lost_before_refresh_update(transactional_db, quiet_request_log):
    UserFactory(username="alice")
    session = login("alice")
    pk = PersonalAccessToken.objects.get().pk
    before = row_state(pk)

    killer = KillBefore("UPDATE")
    with connection.execute_wrapper(killer):
        response = wsgi_call(
            "POST", "/auth/token/refresh/", {"refresh_token": session["refresh_token"]}
        )

    assert killer.fired
    assert response.status_code == 500
    assert row_state(pk) == before
    retried = wsgi_call("POST", "/auth/token/refresh/", {"refresh_token": session["refresh_token"]})
    assert retried.status_code == 200
    assert wsgi_call("GET", "/api/me/", token=retried.json()["access_token"]).status_code == 200


@pytest.mark.server_db
def test_connection_lost_before_obtain_insert(transactional_db, quiet_request_log):
    UserFactory(username="alice")

    killer = KillBefore("INSERT")
    with connection.execute_wrapper(killer):
        response = wsgi_call("POST", "/auth/token/", {"username": "alice", "password": PASSWORD})

    assert killer.fired
    assert response.status_code == 500
    assert PersonalAccessToken.objects.count() == 0
    session = login("alice")
    assert wsgi_call("GET", "/api/me/", token=session["access_token"]).status_code == 200
    assert PersonalAccessToken.objects.count() == 1


@pytest.mark.server_db
def test_connection_lost_during_eviction(transactional_db, settings, quiet_request_log):
    """A login that dies after its INSERT and before evicting the oldest session changes nothing."""
    settings.PAT_TOKENS = {"MAX_SESSIONS_PER_USER": 1}
    UserFactory(username="alice")
    first = login("alice")
    before = list(PersonalAccessToken.objects.values())

    killer = KillBefore("DELETE")
    with connection.execute_wrapper(killer):
        response = wsgi_call("POST", "/auth/token/", {"username": "alice", "password": PASSWORD})

    assert killer.fired
    assert response.status_code == 500
    assert list(PersonalAccessToken.objects.values()) == before
    assert wsgi_call("GET", "/api/me/", token=first["access_token"]).status_code == 200
    second = login("alice")
    assert wsgi_call("GET", "/api/me/", token=first["access_token"]).status_code == 401
    assert wsgi_call("GET", "/api/me/", token=second["access_token"]).status_code == 200


@pytest.mark.server_db
@pytest.mark.parametrize("path", ["/api/me/", "/plain/me/"])
def test_connection_lost_before_authentication(transactional_db, path, quiet_request_log):
    """A failed lookup is a server error, never a 401 that would make a client drop its token."""
    UserFactory(username="alice")
    session = login("alice")

    killer = KillBefore("SELECT")
    with connection.execute_wrapper(killer):
        response = wsgi_call("GET", path, token=session["access_token"])

    assert killer.fired
    assert response.status_code == 500
    assert "WWW-Authenticate" not in response.headers
    assert wsgi_call("GET", path, token=session["access_token"]).status_code == 200


@pytest.mark.server_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/token/revoke/"),
        ("POST", "/auth/token/revoke-all/"),
        ("DELETE", "/auth/sessions/{pk}/"),
    ],
)
def test_connection_lost_before_revoke_delete(transactional_db, method, path, quiet_request_log):
    UserFactory(username="alice")
    session = login("alice")
    login("alice")
    before = list(PersonalAccessToken.objects.order_by("pk").values())
    path = path.format(pk=before[0]["id"])

    killer = KillBefore("DELETE")
    with connection.execute_wrapper(killer):
        response = wsgi_call(method, path, token=session["access_token"])

    assert killer.fired
    assert response.status_code == 500
    assert list(PersonalAccessToken.objects.order_by("pk").values()) == before
    assert wsgi_call(method, path, token=session["access_token"]).status_code == 204
    assert wsgi_call("GET", "/api/me/", token=session["access_token"]).status_code == 401


@pytest.mark.server_db
def test_connection_lost_between_requests(transactional_db, quiet_request_log):
    """A connection killed while idle (a server timeout or restart) fails one request at most."""
    UserFactory(username="alice")
    session = login("alice")
    pair = services.refresh_pair(session["refresh_token"])

    kill_session(server_session_id())
    first = wsgi_call("GET", "/api/me/", token=pair.access_token)
    second = wsgi_call("GET", "/api/me/", token=pair.access_token)

    assert first.status_code in (200, 500)
    assert second.status_code == 200
    assert PersonalAccessToken.objects.get().access_token == tokens.digest(pair.access_token)


# Redis, as CACHE_ALIAS, going away and coming back.


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own on a free loopback port, started and stopped by pid."""

    def __init__(self, directory, persistent=False):
        self.port = free_port()
        self.directory = directory
        self.persistent = persistent
        self.process = None

    def start(self):
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", str(self.directory),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.persistent:
            # Every write reaches the append-only file before Redis replies to it.
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command line on loopback
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + SERVER_WAIT_SECONDS
        while not self.is_up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def is_up(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self):
        """Stop the server at once, as a crash or a lost host would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=SERVER_WAIT_SECONDS)
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def redis_factory(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    servers = []

    def make(persistent=False):
        server = RedisServer(tmp_path / f"redis-{len(servers)}", persistent=persistent)
        server.directory.mkdir()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()


def use_redis(settings, url):
    settings.CACHES = {
        **settings.CACHES,
        "faults": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            # Without timeouts a Redis that stops responding would hang every request.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        },
    }
    settings.PAT_TOKENS = {"CACHE_ALIAS": "faults"}


def cache_log(caplog, level):
    return [
        record
        for record in caplog.records
        if record.name.startswith("pat_tokens") and record.levelno == level
    ]


def cached_entries(server):
    import redis

    client = redis.Redis(port=server.port, socket_timeout=5)
    try:
        return [key for key in client.scan_iter(match="*pat_tokens:session:*")]
    finally:
        client.close()


def test_redis_never_listening(transactional_db, settings, caplog):
    use_redis(settings, f"redis://127.0.0.1:{free_port()}/0")
    UserFactory(username="alice")
    caplog.set_level(logging.DEBUG)

    session = login("alice")
    me = wsgi_call("GET", "/api/me/", token=session["access_token"])
    revoked = wsgi_call("POST", "/auth/token/revoke/", token=session["access_token"])
    after = wsgi_call("GET", "/api/me/", token=session["access_token"])

    assert me.status_code == 200
    assert revoked.status_code == 204
    assert after.status_code == 401
    assert after.json()["code"] == "token_invalid"
    assert cache_log(caplog, logging.WARNING)


def test_redis_killed_mid_session(transactional_db, settings, caplog, redis_factory):
    server = redis_factory()
    server.start()
    use_redis(settings, server.url)
    UserFactory(username="alice")
    caplog.set_level(logging.DEBUG)
    session = login("alice")
    other = login("alice")
    assert wsgi_call("GET", "/api/me/", token=session["access_token"]).status_code == 200
    assert wsgi_call("GET", "/api/me/", token=other["access_token"]).status_code == 200
    assert len(cached_entries(server)) == 2

    server.kill()
    caplog.clear()
    me = wsgi_call("GET", "/api/me/", token=session["access_token"])
    revoked = wsgi_call("POST", "/auth/token/revoke/", token=session["access_token"])
    refreshed = wsgi_call("POST", "/auth/token/refresh/", {"refresh_token": other["refresh_token"]})
    down_log = list(caplog.records)

    assert me.status_code == 200
    assert revoked.status_code == 204
    assert refreshed.status_code == 200
    assert any(
        record.name.startswith("pat_tokens") and record.levelno == logging.WARNING
        for record in down_log
    )

    server.start()
    for token in (session["access_token"], other["access_token"]):
        response = wsgi_call("GET", "/api/me/", token=token)
        assert response.status_code == 401
        assert response.json()["code"] == "token_invalid"
    new_access = refreshed.json()["access_token"]
    assert wsgi_call("GET", "/api/me/", token=new_access).status_code == 200
    assert len(cached_entries(server)) == 1


def test_redis_back_with_its_data(transactional_db, settings, caplog, redis_factory):
    """Sessions ended while Redis was away stay ended when it comes back with its old entries."""
    server = redis_factory(persistent=True)
    server.start()
    use_redis(settings, server.url)
    UserFactory(username="alice")
    caplog.set_level(logging.DEBUG)
    session = login("alice")
    other = login("alice")
    assert wsgi_call("GET", "/api/me/", token=session["access_token"]).status_code == 200
    assert wsgi_call("GET", "/api/me/", token=other["access_token"]).status_code == 200

    server.kill()
    revoked = wsgi_call("POST", "/auth/token/revoke/", token=session["access_token"])
    refreshed = wsgi_call("POST", "/auth/token/refresh/", {"refresh_token": other["refresh_token"]})
    assert revoked.status_code == 204
    assert refreshed.status_code == 200

    server.start()
    assert len(cached_entries(server)) == 2
    ended = (session["access_token"], other["access_token"])
    for token in ended:
        response = wsgi_call("GET", "/api/me/", token=token)
        assert response.status_code == 401
        assert response.json()["code"] == "token_invalid"

    # The next lookup that reaches Redis sends the failed invalidations again, so a process that
    # never saw the failure does not find the old entries either.
    third = login("alice")
    assert wsgi_call("GET", "/api/me/", token=third["access_token"]).status_code == 200
    assert len(cached_entries(server)) == 1
    token_cache_module._unforgotten.clear()
    for token in ended:
        assert wsgi_call("GET", "/api/me/", token=token).status_code == 401


# A whole database server restart (opt-in).

RESTART_OPT_IN = os.environ.get("PAT_TEST_RESTART_DB") == "1"


class DatabaseServer:
    """Stop and start the server of the test database, whichever process or cluster it is.

    PostgreSQL: the Debian cluster listening on the connection's port, through ``pg_ctlcluster``.
    MariaDB or MySQL: the server process named by ``@@pid_file``, stopped with ``SHUTDOWN`` and
    started again with the same command line.
    """

    def __init__(self):
        self.vendor = connection.vendor
        self.host = connection.settings_dict["HOST"] or "127.0.0.1"
        self.port = int(connection.settings_dict["PORT"] or (5432 if self.is_postgres else 3306))
        if self.is_postgres:
            self.cluster = self._find_cluster()
        else:
            self.pid_file, self.command = self._find_process()

    @property
    def is_postgres(self):
        return self.vendor == "postgresql"

    def _find_cluster(self):
        command = [shutil.which("pg_lsclusters") or "pg_lsclusters", "--no-header"]
        listing = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
        for line in listing.stdout.splitlines():
            version, name, port, *_ = line.split()
            if int(port) == self.port:
                return version, name
        pytest.fail(f"no PostgreSQL cluster listens on port {self.port}")

    def _find_process(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@pid_file")
            pid_file = cursor.fetchone()[0]
        self.pid = Path(pid_file).read_text().strip()
        command = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        return pid_file, [part.decode() for part in command]

    def is_up(self):
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                pass
        except OSError:
            return False
        probe = connections.create_connection("default")
        try:
            probe.ensure_connection()
            return True
        except DatabaseError:
            return False
        finally:
            probe.close()

    def stop(self):
        if self.is_postgres:
            version, name = self.cluster
            self._pg_ctlcluster(version, name, "stop", "-m", "fast")
        else:
            with connection.cursor() as cursor:
                cursor.execute("SHUTDOWN")
            # The server stops listening before its process ends and removes its pid file.
            self._wait(lambda: not Path(f"/proc/{self.pid}").exists(), "exit")
        self._wait(lambda: not self.is_up(), "stop")

    def start(self):
        if self.is_postgres:
            version, name = self.cluster
            self._pg_ctlcluster(version, name, "start")
        else:
            daemon = shutil.which("start-stop-daemon")
            started = False
            if daemon:
                starter = [daemon, "--start", "--background", "--pidfile", self.pid_file]
                starter += ["--exec", self.command[0], "--", *self.command[1:]]
                # The server's own command line, read from /proc.
                started = subprocess.run(starter, check=False).returncode == 0  # noqa: S603
            if not started:
                subprocess.Popen(  # noqa: S603 - the server's own command line
                    self.command,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
        self._wait(self.is_up, "start")

    def _pg_ctlcluster(self, version, name, *action):
        program = shutil.which("pg_ctlcluster") or "pg_ctlcluster"
        command = [program, "--skip-systemctl-redirect", version, name, *action]
        subprocess.run(command, check=True, capture_output=True)  # noqa: S603

    def _wait(self, condition, what):
        deadline = time.monotonic() + SERVER_WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"the database server did not {what} within {SERVER_WAIT_SECONDS} s")
            time.sleep(0.2)


@pytest.mark.server_db
@pytest.mark.slow
@pytest.mark.skipif(
    not RESTART_OPT_IN,
    reason="restarts the database server; set PAT_TEST_RESTART_DB=1 when no one else uses it",
)
def test_database_restart(transactional_db, quiet_request_log):
    """Requests fail with 500 while the server is down and work again once it is back."""
    UserFactory(username="alice")
    session = login("alice")
    server = DatabaseServer()
    before = list(PersonalAccessToken.objects.values())

    try:
        server.stop()
        connection.close()
        down = [
            wsgi_call("GET", "/api/me/", token=session["access_token"]),
            wsgi_call("POST", "/auth/token/refresh/", {"refresh_token": session["refresh_token"]}),
            wsgi_call("POST", "/auth/token/", {"username": "alice", "password": PASSWORD}),
            wsgi_call("POST", "/auth/token/revoke/", token=session["access_token"]),
        ]
    finally:
        if not server.is_up():
            server.start()

    assert [response.status_code for response in down] == [500, 500, 500, 500]
    assert all("WWW-Authenticate" not in response.headers for response in down)
    assert list(PersonalAccessToken.objects.values()) == before
    assert wsgi_call("GET", "/api/me/", token=session["access_token"]).status_code == 200
    refreshed = wsgi_call(
        "POST", "/auth/token/refresh/", {"refresh_token": session["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert wsgi_call("GET", "/api/me/", token=refreshed.json()["access_token"]).status_code == 200
