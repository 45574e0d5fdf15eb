"""clear_expired_tokens against a backlog of 200,000 expired sessions on a database server.

The rows are inserted with raw multi-row INSERTs. The command runs with ``--batch-size 5000``
while ten threads keep refreshing the live sessions, and ``tracemalloc`` records the peak of
Python memory for a backlog of 20,000 and of 200,000 rows. Run with ``--log-cli-level=INFO`` to
see the peaks.
"""

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
LIVE_SESSIONS = 1_000
USERS = 300
BATCH_SIZE = 5_000
INSERT_CHUNK = 5_000
REFRESH_THREADS = 10
REFRESH_PAUSE_SECONDS = 0.005
MAX_PEAK_BYTES = 50 * 1024 * 1024
# Extra Python memory allowed for the larger backlog: the refresh threads run during that run
# only, and tracemalloc counts their allocations too.
PEAK_GROWTH_ALLOWANCE_BYTES = 2 * 1024 * 1024

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
    """Insert ``rows``, tuples of database values in ``COLUMNS`` order, in multi-row INSERTs."""
    table = connection.ops.quote_name(PersonalAccessToken._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(column) for column in COLUMNS)
    row_placeholders = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"

    chunk = []
    with connection.cursor() as cursor:
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
    """Refresh a share of the live sessions in rounds until told to stop.

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


@pytest.mark.django_db(transaction=True)
def test_cleanup_scale(caplog):
    # pytest keeps every captured log record in memory, which tracemalloc would count.
    caplog.set_level(logging.WARNING, logger="pat_tokens.services")
    started = time.perf_counter()
    now = timezone.now()
    user_pks = create_users(USERS)
    refresh_tokens = insert_live_sessions(user_pks, now)
    live_pks = set(PersonalAccessToken.objects.values_list("pk", flat=True))
    assert len(live_pks) == LIVE_SESSIONS

    insert_rows(expired_rows("small", SMALL_BACKLOG, user_pks, now))
    timings = {"insert small": time.perf_counter() - started}
    small_output, small_peak = run_cleanup("--batch-size", str(BATCH_SIZE))
    timings["cleanup small"] = time.perf_counter() - started - sum(timings.values())

    assert small_output == f"Deleted {SMALL_BACKLOG} expired sessions.\n"
    assert set(PersonalAccessToken.objects.values_list("pk", flat=True)) == live_pks

    insert_rows(expired_rows("large", LARGE_BACKLOG, user_pks, now))
    timings["insert large"] = time.perf_counter() - started - sum(timings.values())
    dry_output, _ = run_cleanup("--dry-run")
    assert dry_output == f"Would delete {LARGE_BACKLOG} expired sessions (dry run).\n"
    assert PersonalAccessToken.objects.count() == LARGE_BACKLOG + LIVE_SESSIONS

    stop = threading.Event()
    workers = [
        RefreshWorker(refresh_tokens[number::REFRESH_THREADS], stop)
        for number in range(REFRESH_THREADS)
    ]
    recorder = DeleteRecorder()
    for worker in workers:
        worker.start()
    try:
        with connection.execute_wrapper(recorder):
            large_output, large_peak = run_cleanup("--batch-size", str(BATCH_SIZE))
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    timings["cleanup large"] = time.perf_counter() - started - sum(timings.values())

    logger.info(
        "tracemalloc peak: %d bytes for %d rows, %d bytes for %d rows; %d refreshes meanwhile",
        small_peak,
        SMALL_BACKLOG,
        large_peak,
        LARGE_BACKLOG,
        sum(worker.refreshed for worker in workers),
    )
    logger.info("seconds: %s", ", ".join(f"{step} {value:.1f}" for step, value in timings.items()))

    assert large_output == f"Deleted {LARGE_BACKLOG} expired sessions.\n"
    assert set(PersonalAccessToken.objects.values_list("pk", flat=True)) == live_pks

    assert [error for worker in workers for error in worker.errors] == []
    assert all(worker.refreshed >= len(worker.refresh_tokens) for worker in workers)
    current_digests = set(PersonalAccessToken.objects.values_list("refresh_token", flat=True))
    last_tokens = [token for worker in workers for token in worker.refresh_tokens]
    assert current_digests == {tokens.digest(token) for token in last_tokens}

    assert len(recorder.deleted) == LARGE_BACKLOG // BATCH_SIZE
    assert max(recorder.deleted) <= BATCH_SIZE
    assert sum(recorder.deleted) == LARGE_BACKLOG

    assert small_peak < MAX_PEAK_BYTES
    assert large_peak < MAX_PEAK_BYTES
    assert large_peak < small_peak * 1.5 + PEAK_GROWTH_ALLOWANCE_BYTES
