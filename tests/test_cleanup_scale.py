"""clear_expired_tokens against large backlogs of expired sessions on a database server.

The rows are inserted in bulk (``COPY`` on PostgreSQL, multi-row INSERTs on MySQL and MariaDB),
beside 1,000 live sessions, and the command runs with ``--batch-size 5000``:

* ``tracemalloc`` records the peak of Python memory for a backlog of 20,000 and of 200,000 rows,
  which must be about the same;
* ten threads keep refreshing the live sessions while a backlog of 50,000 rows is cleared. This
  runs without ``tracemalloc``, whose bookkeeping of every thread's allocations slowed the cleanup
  two- to threefold, and on a smaller backlog, so the module stays near a minute per database.

Run with ``--log-cli-level=INFO`` to see the peaks and the time of each step.
"""

import contextlib
import hashlib
import io
import logging
import threading
import time
import tracemalloc
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from pat_tokens import services, tokens
from pat_tokens.models import PersonalAccessToken

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.server_db, pytest.mark.slow]

SMALL_BACKLOG = 20_000
LARGE_BACKLOG = 200_000
CONCURRENT_BACKLOG = 50_000
LIVE_SESSIONS = 1_000
USERS = 300
BATCH_SIZE = 5_000
INSERT_CHUNK = 5_000
REFRESH_THREADS = 10
REFRESH_PAUSE_SECONDS = 0.005
MAX_PEAK_BYTES = 50 * 1024 * 1024
# "Roughly the same" peak for ten times the rows: memory that grew with the backlog would be
# about ten times larger.
PEAK_GROWTH_FACTOR = 1.5

COLUMNS = (
    "access_token",
    "refresh_token",
    "user_id",
    "expires_access_token",
    "expires_refresh_token",
    "created_at",
    "updated_at",
)


def create_users(count):
    """Insert ``count`` active users and return their primary keys."""
    user_model = get_user_model()
    user_model.objects.bulk_create(
        user_model(username=f"scale{number}", email=f"scale{number}@example.com", password="!")
        for number in range(count)
    )
    return list(
        user_model.objects.filter(username__startswith="scale")
        .order_by("username")
        .values_list("pk", flat=True)
    )


def db_datetime(moment):
    """Return ``moment`` as the database driver takes it, as Django would convert it.

    Converting the base time once and doing arithmetic on the result is much faster than
    calling ``get_db_prep_value`` for each of the million values.
    """
    if timezone.is_aware(moment) and not connection.features.supports_timezones:
        return timezone.make_naive(moment, connection.timezone)
    return moment


def insert_rows(rows):
    """Insert ``rows``, tuples of database values in ``COLUMNS`` order.

    PostgreSQL gets ``COPY``, about four times faster than multi-row INSERTs, whose thousands of
    placeholders psycopg parses in Python. MySQL and MariaDB get multi-row INSERTs.
    """
    table = connection.ops.quote_name(PersonalAccessToken._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(column) for column in COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _copy_rows(cursor, table, columns, rows)
        else:
            _insert_rows(cursor, table, columns, rows)


def _copy_rows(cursor, table, columns, rows):
    with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _insert_rows(cursor, table, columns, rows):
    row_placeholders = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == INSERT_CHUNK:
            _insert_chunk(cursor, table, columns, row_placeholders, chunk)
            chunk = []
    if chunk:
        _insert_chunk(cursor, table, columns, row_placeholders, chunk)


def _insert_chunk(cursor, table, columns, row_placeholders, chunk):
    values = ", ".join([row_placeholders] * len(chunk))
    params = [value for row in chunk for value in row]
    cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {values}", params)


def db_user_keys(user_pks):
    user_field = PersonalAccessToken._meta.get_field("user")
    return [user_field.get_db_prep_value(pk, connection) for pk in user_pks]


def fake_digest(label, number):
    return hashlib.sha256(f"{label}-{number}".encode()).hexdigest()


def expired_rows(label, count, user_pks, now):
    """Yield ``count`` sessions whose refresh tokens expired at times spread over two weeks."""
    user_keys = db_user_keys(user_pks)
    now = db_datetime(now)
    for number in range(count):
        expires_refresh = now - timedelta(seconds=1 + number * 1_209_600 // count)
        yield (
            fake_digest(f"{label}-access", number),
            fake_digest(f"{label}-refresh", number),
            user_keys[number % len(user_keys)],
            expires_refresh - timedelta(days=13),
            expires_refresh,
            expires_refresh - timedelta(days=14),
            expires_refresh - timedelta(days=14),
        )


def insert_live_sessions(user_pks, now):
    """Insert live sessions and return their plaintext refresh tokens."""
    refresh_tokens = [tokens.generate(tokens.TokenKind.REFRESH) for _ in range(LIVE_SESSIONS)]
    user_keys = db_user_keys(user_pks)
    now = db_datetime(now)
    insert_rows(
        (
            tokens.digest(tokens.generate(tokens.TokenKind.ACCESS)),
            tokens.digest(refresh_token),
            user_keys[number % len(user_keys)],
            now + timedelta(hours=1),
            now + timedelta(days=14),
            now,
            now,
        )
        for number, refresh_token in enumerate(refresh_tokens)
    )
    return refresh_tokens


class DeleteRecorder:
    """Record the row count of each DELETE the main thread's connection runs.

    An execute wrapper keeps only numbers, so the recording adds no memory that grows with the
    SQL text, unlike ``CaptureQueriesContext``.
    """

    def __init__(self):
        self.deleted = []
        self.other_statements = 0

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("DELETE"):
            assert "SELECT" not in sql.upper()
            self.deleted.append(context["cursor"].rowcount)
        else:
            self.other_statements += 1
        return result


def run_cleanup(*args):
    """Run clear_expired_tokens; return its output and the tracemalloc peak in bytes."""
    out = io.StringIO()
    tracemalloc.start()
    try:
        call_command("clear_expired_tokens", *args, stdout=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out.getvalue(), peak


class RefreshWorker(threading.Thread):
    """Refresh a share of the live sessions in rounds until ``stop`` is set.

    Each worker completes at least one round, so every session is refreshed at least once. It
    closes its own database connection when it ends.
    """

    def __init__(self, refresh_tokens, stop):
        super().__init__()
        self.refresh_tokens = list(refresh_tokens)
        self.stop = stop
        self.refreshed = 0
        self.errors = []

    def run(self):
        try:
            while True:
                for index, refresh_token in enumerate(self.refresh_tokens):
                    pair = services.refresh_pair(refresh_token)
                    self.refresh_tokens[index] = pair.refresh_token
                    self.refreshed += 1
                    # A pause, as between real clients' requests, leaves the main thread
                    # its share of the interpreter.
                    self.stop.wait(REFRESH_PAUSE_SECONDS)
                if self.stop.is_set():
                    break
        except Exception as error:
            self.errors.append(error)
        finally:
            connection.close()


@contextlib.contextmanager
def timed(timings, step):
    """Add the seconds the block takes to ``timings[step]``, for the log, never for an assert."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = time.perf_counter() - started


def log_timings(timings):
    logger.info("seconds: %s", ", ".join(f"{step} {value:.1f}" for step, value in timings.items()))


def live_session_pks():
    return set(PersonalAccessToken.objects.values_list("pk", flat=True))


@pytest.fixture
def live_sessions(caplog):
    """Users and live sessions; return the sessions' plaintext refresh tokens."""
    # pytest keeps every captured log record in memory, which tracemalloc would count.
    caplog.set_level(logging.WARNING, logger="pat_tokens.services")
    user_pks = create_users(USERS)
    refresh_tokens = insert_live_sessions(user_pks, timezone.now())
    assert PersonalAccessToken.objects.count() == LIVE_SESSIONS
    return user_pks, refresh_tokens


@pytest.mark.django_db(transaction=True)
def test_cleanup_memory_stays_flat(live_sessions):
    user_pks, _ = live_sessions
    live_pks = live_session_pks()
    now = timezone.now()
    timings = {}

    with timed(timings, f"insert {SMALL_BACKLOG}"):
        insert_rows(expired_rows("small", SMALL_BACKLOG, user_pks, now))
    with timed(timings, f"cleanup {SMALL_BACKLOG}"):
        small_output, small_peak = run_cleanup("--batch-size", str(BATCH_SIZE))

    assert small_output == f"Deleted {SMALL_BACKLOG} expired sessions.\n"
    assert live_session_pks() == live_pks

    with timed(timings, f"insert {LARGE_BACKLOG}"):
        insert_rows(expired_rows("large", LARGE_BACKLOG, user_pks, now))
    dry_output, _ = run_cleanup("--dry-run")
    assert dry_output == f"Would delete {LARGE_BACKLOG} expired sessions (dry run).\n"
    assert PersonalAccessToken.objects.count() == LARGE_BACKLOG + LIVE_SESSIONS

    recorder = DeleteRecorder()
    with timed(timings, f"cleanup {LARGE_BACKLOG}"), connection.execute_wrapper(recorder):
        large_output, large_peak = run_cleanup("--batch-size", str(BATCH_SIZE))

    logger.info(
        "tracemalloc peak: %d bytes for %d rows, %d bytes for %d rows",
        small_peak,
        SMALL_BACKLOG,
        large_peak,
        LARGE_BACKLOG,
    )
    log_timings(timings)

    assert large_output == f"Deleted {LARGE_BACKLOG} expired sessions.\n"
    assert live_session_pks() == live_pks

    assert len(recorder.deleted) == LARGE_BACKLOG // BATCH_SIZE
    assert max(recorder.deleted) <= BATCH_SIZE
    assert sum(recorder.deleted) == LARGE_BACKLOG

    assert small_peak < MAX_PEAK_BYTES
    assert large_peak < MAX_PEAK_BYTES
    assert large_peak < small_peak * PEAK_GROWTH_FACTOR


@pytest.mark.django_db(transaction=True)
def test_cleanup_while_refreshing(live_sessions):
    user_pks, refresh_tokens = live_sessions
    live_pks = live_session_pks()
    timings = {}

    with timed(timings, f"insert {CONCURRENT_BACKLOG}"):
        insert_rows(expired_rows("busy", CONCURRENT_BACKLOG, user_pks, timezone.now()))

    stop = threading.Event()
    workers = [
        RefreshWorker(refresh_tokens[number::REFRESH_THREADS], stop)
        for number in range(REFRESH_THREADS)
    ]
    refreshes_at_delete = []

    def count_refreshes(execute, sql, params, many, context):
        if sql.startswith("DELETE"):
            refreshes_at_delete.append(sum(worker.refreshed for worker in workers))
        return execute(sql, params, many, context)

    for worker in workers:
        worker.start()
    try:
        with (
            timed(timings, f"cleanup {CONCURRENT_BACKLOG} while refreshing"),
            connection.execute_wrapper(count_refreshes),
        ):
            output = io.StringIO()
            call_command("clear_expired_tokens", "--batch-size", str(BATCH_SIZE), stdout=output)
    finally:
        stop.set()
        for worker in workers:
            worker.join()

    logger.info("%d refreshes during the cleanup", sum(worker.refreshed for worker in workers))
    log_timings(timings)

    assert output.getvalue() == f"Deleted {CONCURRENT_BACKLOG} expired sessions.\n"
    assert len(refreshes_at_delete) == CONCURRENT_BACKLOG // BATCH_SIZE
    # Refreshes completed between the first and the last DELETE, so the two overlapped.
    assert refreshes_at_delete[-1] > refreshes_at_delete[0]
    assert [error for worker in workers for error in worker.errors] == []
    assert all(worker.refreshed >= len(worker.refresh_tokens) for worker in workers)
    assert live_session_pks() == live_pks
    current_digests = set(PersonalAccessToken.objects.values_list("refresh_token", flat=True))
    last_tokens = [token for worker in workers for token in worker.refresh_tokens]
    assert current_digests == {tokens.digest(token) for token in last_tokens}
