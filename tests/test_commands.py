"""The issue_token and clear_expired_tokens management commands."""

import io
import json
import re
import threading
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command, execute_from_command_line
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pat_tokens import cleanup, tokens
from pat_tokens.models import PersonalAccessToken
from pat_tokens.signals import token_issued, token_revoked

from .conftest import TOKEN_RESPONSE_KEYS, bearer
from .factories import UserFactory

FROZEN_AT = datetime(2030, 5, 17, 12, 0, 0, 250000, tzinfo=dt_timezone.utc)


def run(*args, **options):
    """Run a command and return what it wrote to stdout."""
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def make_rows(user, expires_refresh, count=1):
    """Insert ``count`` sessions of ``user`` whose refresh token expires at ``expires_refresh``."""
    rows = [
        PersonalAccessToken(
            user=user,
            access_token=tokens.digest(tokens.generate(tokens.TokenKind.ACCESS)),
            refresh_token=tokens.digest(tokens.generate(tokens.TokenKind.REFRESH)),
            expires_access_token=expires_refresh - timedelta(minutes=1),
            expires_refresh_token=expires_refresh,
        )
        for _ in range(count)
    ]
    return PersonalAccessToken.objects.bulk_create(rows)


# issue_token


def iso(moment):
    """Return ``moment`` as the token response writes it: UTC with an offset, or naive."""
    if timezone.is_aware(moment):
        moment = moment.astimezone(dt_timezone.utc)
    return moment.isoformat()


@pytest.mark.django_db
def test_issue_token_prints_text(alice, frozen_now):
    output = run("issue_token", "alice")

    row = PersonalAccessToken.objects.get(user=alice)
    lines = output.splitlines()
    assert lines[0] == f"Issued session {row.pk} for alice."
    assert re.fullmatch(r"Access token:  pat_[0-9A-Za-z]{49}", lines[1])
    assert lines[2] == f"  expires at {iso(frozen_now + timedelta(hours=1))}"
    assert re.fullmatch(r"Refresh token: patr_[0-9A-Za-z]{49}", lines[3])
    assert lines[4] == f"  expires at {iso(frozen_now + timedelta(days=14))}"
    assert lines[5] == "Store both tokens now: they cannot be shown again."
    assert len(lines) == 6


@pytest.mark.django_db
def test_issue_token_prints_json(alice, frozen_now):
    data = json.loads(run("issue_token", "alice", "--json"))

    assert set(data) == TOKEN_RESPONSE_KEYS
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 3600
    assert data["refresh_expires_in"] == 14 * 24 * 3600
    assert data["access_token_expires_at"] == iso(frozen_now + timedelta(hours=1))
    assert data["refresh_token_expires_at"] == iso(frozen_now + timedelta(days=14))
    if settings.USE_TZ:
        assert data["access_token_expires_at"] == "2030-05-17T13:00:00.250000+00:00"
    row = PersonalAccessToken.objects.get(user=alice)
    assert row.access_token == tokens.digest(data["access_token"])
    assert row.refresh_token == tokens.digest(data["refresh_token"])


@pytest.mark.django_db
def test_issue_token_json_ignores_verbosity(alice):
    data = json.loads(run("issue_token", "alice", "--json", verbosity=0))

    assert set(data) == TOKEN_RESPONSE_KEYS


@pytest.mark.django_db
def test_issue_token_verbosity_zero_prints_tokens_only(alice):
    lines = run("issue_token", "alice", verbosity=0).splitlines()

    row = PersonalAccessToken.objects.get(user=alice)
    assert len(lines) == 2
    assert tokens.digest(lines[0]) == row.access_token
    assert tokens.digest(lines[1]) == row.refresh_token


@pytest.mark.django_db
def test_issued_tokens_work_against_api(api_client, alice):
    data = json.loads(run("issue_token", "alice", "--json"))

    me = api_client.get("/api/me/", **bearer(data["access_token"]))
    assert me.status_code == 200, me.content
    assert me.json()["username"] == "alice"

    refreshed = api_client.post(
        "/auth/token/refresh/", {"refresh_token": data["refresh_token"]}, format="json"
    )
    assert refreshed.status_code == 200, refreshed.content


@pytest.mark.django_db
def test_issued_text_token_works_against_api(api_client, alice):
    output = run("issue_token", "alice")

    access = re.search(r"^Access token:  (\S+)$", output, re.MULTILINE).group(1)
    me = api_client.get("/api/me/", **bearer(access))
    assert me.status_code == 200, me.content


@pytest.mark.django_db
def test_issue_token_stores_no_plaintext(alice):
    data = json.loads(run("issue_token", "alice", "--json"))

    stored = PersonalAccessToken.objects.values_list().get(user=alice)
    for plaintext in (data["access_token"], data["refresh_token"]):
        assert not any(plaintext in str(value) for value in stored)
    assert not PersonalAccessToken.objects.filter(access_token=data["access_token"]).exists()
    assert not PersonalAccessToken.objects.filter(refresh_token=data["refresh_token"]).exists()


@pytest.mark.django_db
def test_issue_token_sends_token_issued(alice):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    token_issued.connect(receiver)
    try:
        run("issue_token", "alice")
    finally:
        token_issued.disconnect(receiver)

    assert len(received) == 1
    assert received[0]["user"] == alice
    assert received[0]["request"] is None


@pytest.mark.django_db
def test_issue_token_unknown_user():
    with pytest.raises(CommandError) as raised:
        run("issue_token", "carol")

    assert str(raised.value) == "No user with username 'carol' exists."
    assert PersonalAccessToken.objects.count() == 0


@pytest.mark.django_db
def test_issue_token_unknown_user_exit_status(capsys):
    with pytest.raises(SystemExit) as raised:
        execute_from_command_line(["manage.py", "issue_token", "carol"])

    assert raised.value.code == 1
    captured = capsys.readouterr()
    assert "No user with username 'carol' exists." in captured.err
    assert captured.out == ""


@pytest.mark.django_db
def test_issue_token_inactive_user():
    UserFactory(username="dora", is_active=False)

    with pytest.raises(CommandError) as raised:
        run("issue_token", "dora")

    assert str(raised.value) == (
        "The user with username 'dora' is inactive; activate the account first."
    )
    assert PersonalAccessToken.objects.count() == 0


@pytest.mark.django_db
def test_issue_token_username_is_exact(alice):
    with pytest.raises(CommandError):
        run("issue_token", " alice")

    assert PersonalAccessToken.objects.count() == 0


# clear_expired_tokens


@pytest.fixture
def frozen_now(clock):
    clock.move_to(FROZEN_AT)
    return timezone.now()


@pytest.fixture
def mixed_rows(alice, bob, frozen_now):
    """Three expired rows (one expiring exactly now) and two live ones (one a microsecond later)."""
    expired = [
        *make_rows(alice, frozen_now - timedelta(days=3)),
        *make_rows(bob, frozen_now - timedelta(seconds=1)),
        *make_rows(alice, frozen_now),
    ]
    live = [
        *make_rows(alice, frozen_now + timedelta(microseconds=1)),
        *make_rows(bob, frozen_now + timedelta(days=1)),
    ]
    return expired, live


def remaining_ids():
    return set(PersonalAccessToken.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_clear_dry_run_counts_and_keeps(mixed_rows):
    expired, live = mixed_rows

    output = run("clear_expired_tokens", "--dry-run")

    assert output == "Would delete 3 expired sessions (dry run).\n"
    assert remaining_ids() == {row.pk for row in expired + live}


@pytest.mark.django_db
def test_clear_dry_run_is_one_count_query(mixed_rows):
    with CaptureQueriesContext(connection) as queries:
        run("clear_expired_tokens", "--dry-run")

    assert len(queries) == 1
    sql = queries[0]["sql"].upper()
    assert sql.startswith("SELECT COUNT(")
    assert "EXPIRES_REFRESH_TOKEN" in sql


@pytest.mark.django_db
def test_clear_deletes_only_expired(mixed_rows):
    expired, live = mixed_rows

    output = run("clear_expired_tokens")

    assert output == "Deleted 3 expired sessions.\n"
    assert remaining_ids() == {row.pk for row in live}
    assert not remaining_ids() & {row.pk for row in expired}


@pytest.mark.django_db
def test_clear_deletes_row_expiring_now(alice, frozen_now):
    (at_now,) = make_rows(alice, frozen_now)
    (later,) = make_rows(alice, frozen_now + timedelta(microseconds=1))

    output = run("clear_expired_tokens")

    assert output == "Deleted 1 expired session.\n"
    assert at_now.pk not in remaining_ids()
    assert remaining_ids() == {later.pk}


@pytest.mark.django_db
def test_clear_with_nothing_expired(alice, frozen_now):
    make_rows(alice, frozen_now + timedelta(days=1), count=2)

    assert run("clear_expired_tokens") == "Deleted 0 expired sessions.\n"
    assert (
        run("clear_expired_tokens", "--dry-run") == "Would delete 0 expired sessions (dry run).\n"
    )
    assert PersonalAccessToken.objects.count() == 2


@pytest.mark.django_db
def test_clear_in_small_batches(alice, frozen_now):
    make_rows(alice, frozen_now - timedelta(hours=1), count=7)
    live = make_rows(alice, frozen_now + timedelta(hours=1), count=2)

    output = run("clear_expired_tokens", "--batch-size", "3")

    assert output == "Deleted 7 expired sessions.\n"
    assert remaining_ids() == {row.pk for row in live}


@pytest.mark.django_db
def test_clear_progress_at_verbosity_two(alice, frozen_now):
    make_rows(alice, frozen_now - timedelta(hours=1), count=5)

    output = run("clear_expired_tokens", "--batch-size", "2", verbosity=2)

    assert output.splitlines() == [
        "Batch 1: deleted 2, 2 so far.",
        "Batch 2: deleted 2, 4 so far.",
        "Batch 3: deleted 1, 5 so far.",
        "Deleted 5 expired sessions.",
    ]


@pytest.mark.django_db
def test_clear_silent_at_verbosity_zero(alice, frozen_now):
    make_rows(alice, frozen_now - timedelta(hours=1), count=2)

    assert run("clear_expired_tokens", verbosity=0) == ""
    assert PersonalAccessToken.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", ["0", "-5"])
def test_clear_rejects_batch_size(mixed_rows, batch_size):
    expired, live = mixed_rows

    with pytest.raises(CommandError) as raised:
        run("clear_expired_tokens", "--batch-size", batch_size)

    assert str(raised.value) == f"--batch-size must be a positive integer, not {batch_size}."
    assert remaining_ids() == {row.pk for row in expired + live}


@pytest.mark.django_db
def test_clear_rejects_batch_size_with_dry_run(mixed_rows):
    with pytest.raises(CommandError):
        run("clear_expired_tokens", "--dry-run", "--batch-size", "0")


@pytest.mark.django_db
def test_clear_rejects_non_integer_batch_size(mixed_rows):
    with pytest.raises(CommandError, match="--batch-size"):
        run("clear_expired_tokens", "--batch-size", "ten")

    assert PersonalAccessToken.objects.count() == 5


@pytest.mark.django_db
def test_clear_sends_no_token_revoked(mixed_rows):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    token_revoked.connect(receiver)
    try:
        run("clear_expired_tokens")
    finally:
        token_revoked.disconnect(receiver)

    assert received == []


def in_list_sizes(sql):
    """Return the number of values in each ``IN (...)`` list of a statement."""
    return [len(values.split(",")) for values in re.findall(r"\bIN \(([^()]*)\)", sql)]


@pytest.mark.django_db
def test_clear_query_shapes(alice, frozen_now):
    make_rows(alice, frozen_now - timedelta(hours=1), count=7)
    make_rows(alice, frozen_now + timedelta(hours=1), count=2)

    with CaptureQueriesContext(connection) as queries:
        run("clear_expired_tokens", "--batch-size", "3")

    statements = [query["sql"] for query in queries if not is_savepoint(query["sql"])]
    deletes = [sql for sql in statements if sql.upper().startswith("DELETE")]
    batch_selects = [
        sql for sql in statements if sql.upper().startswith("SELECT") and "LIMIT" in sql.upper()
    ]
    lock_selects = [
        sql for sql in statements if sql.upper().startswith("SELECT") and "LIMIT" not in sql.upper()
    ]
    assert len(deletes) == 3
    assert len(batch_selects) == 3
    assert len(lock_selects) == 3
    assert len(statements) == 9
    for sql in deletes:
        upper = sql.upper()
        assert "SELECT" not in upper
        assert "LIMIT" not in upper
        # Deleting by primary key alone keeps MariaDB off the expiry index, where a DELETE
        # that also filtered on it deadlocked with refreshes.
        assert "EXPIRES_REFRESH_TOKEN" not in upper
        sizes = in_list_sizes(sql)
        assert len(sizes) == 1
        assert sizes[0] <= 3
    for sql in batch_selects:
        upper = sql.upper()
        assert upper.count("SELECT") == 1
        assert "LIMIT 3" in upper
        assert "ORDER BY" in upper
    for sql in lock_selects:
        assert len(in_list_sizes(sql)) == 1
        if connection.features.has_select_for_update:
            assert "FOR UPDATE" in sql.upper()


def is_savepoint(sql):
    return sql.upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))


@pytest.mark.django_db
def test_clear_sqlite_caps_batch(alice, frozen_now, monkeypatch):
    if connection.vendor != "sqlite":
        assert cleanup.max_batch_size("default") is None
        return
    # Django 5.2 assumes SQLite's old limit of 999 parameters; Django 6 reads the real one.
    monkeypatch.setattr(type(connection.features), "max_query_params", 999)
    make_rows(alice, frozen_now - timedelta(hours=1), count=1000)

    with CaptureQueriesContext(connection) as queries:
        output = run("clear_expired_tokens", "--batch-size", "5000")

    assert output == "Deleted 1000 expired sessions.\n"
    deletes = [query["sql"] for query in queries if query["sql"].startswith("DELETE")]
    assert [in_list_sizes(sql)[0] for sql in deletes] == [999, 1]


def count_from_another_connection():
    """Count the rows as a second connection sees them, that is, what has been committed."""
    counts = []

    def count():
        try:
            counts.append(PersonalAccessToken.objects.count())
        finally:
            connection.close()

    thread = threading.Thread(target=count)
    thread.start()
    thread.join()
    return counts[0]


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_clear_commits_each_batch():
    user = UserFactory(username="erin")
    now = timezone.now()
    make_rows(user, now - timedelta(hours=1), count=5)
    make_rows(user, now + timedelta(hours=1), count=1)
    seen = []

    def on_batch(deleted, total):
        seen.append((total, count_from_another_connection()))

    total = cleanup.delete_expired(batch_size=2, now=now, on_batch=on_batch)

    assert total == 5
    assert seen == [(2, 4), (4, 2), (5, 1)]


@pytest.mark.django_db
def test_delete_expired_rejects_batch_size():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        cleanup.delete_expired(batch_size=0)


def expires_index_name():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(
            cursor, PersonalAccessToken._meta.db_table
        )
    (name,) = [
        name
        for name, details in constraints.items()
        if details["index"]
        and not details["unique"]
        and details["columns"] == ["expires_refresh_token"]
    ]
    return name


@pytest.fixture
def realistic_table(frozen_now):
    """Mostly live rows and a few expired ones, with fresh planner statistics.

    MySQL's ``ANALYZE TABLE`` commits, so the tests that use this fixture run with
    ``transaction=True``, which empties the tables afterwards.
    """
    users = [UserFactory(username=f"planner{number}") for number in range(5)]
    for index, user in enumerate(users):
        make_rows(user, frozen_now - timedelta(hours=index + 1), count=20)
        make_rows(user, frozen_now + timedelta(days=index + 1), count=400)
    table = PersonalAccessToken._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"ANALYZE TABLE {table}" if connection.vendor == "mysql" else f"ANALYZE {table}"
        )
        if connection.vendor == "mysql":
            cursor.fetchall()
    return frozen_now


def explain(sql):
    """Return the plan of a captured statement (its parameters already interpolated)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(" ".join(str(value) for value in row) for row in cursor.fetchall())


def captured_sql(function):
    with CaptureQueriesContext(connection) as queries:
        function()
    (query,) = queries
    return query["sql"]


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_batch_selection_uses_expiry_index(realistic_table):
    query = cleanup.batch_keys_query(realistic_table, cleanup.DEFAULT_BATCH_SIZE, "default")

    plan = explain(captured_sql(lambda: list(query)))

    assert expires_index_name() in plan, plan
    # Neither MySQL's "Using filesort" nor PostgreSQL's "Sort" node: the index gives the order.
    assert "sort" not in plan.lower(), plan


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_dry_run_count_uses_expiry_index(realistic_table):
    plan = explain(captured_sql(cleanup.count_expired))

    assert expires_index_name() in plan, plan


@pytest.mark.mysql_only
@pytest.mark.django_db(transaction=True)
def test_batch_delete_uses_primary_key(realistic_table):
    """The batch's locking read and DELETE find rows by primary key, so InnoDB locks those rows.

    Locks taken through the expiry index (which, with the id it holds, covers a query for id
    and expiry alone) deadlocked with refreshes of live rows, error 1213.
    """
    keys = list(cleanup.batch_keys_query(realistic_table, 50, "default"))

    with CaptureQueriesContext(connection) as queries:
        assert cleanup._delete_batch(keys, realistic_table, "default") == len(keys)
    statements = [query["sql"] for query in queries]
    (lock,) = [sql for sql in statements if sql.startswith("SELECT")]
    (delete,) = [sql for sql in statements if sql.startswith("DELETE")]

    for sql in (lock, delete):
        plan = explain(sql)
        assert "PRIMARY" in plan, plan
        assert expires_index_name() not in plan, plan
