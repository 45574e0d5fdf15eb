"""The refresh_tokens table as each database sees it, and migrating it forward and back."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

TABLE = "refresh_tokens"
COLUMNS = {
    "id",
    "access_token",
    "refresh_token",
    "user_id",
    "expires_access_token",
    "expires_refresh_token",
    "created_at",
    "updated_at",
}


def describe_table():
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, TABLE)
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    return {column.name: column for column in description}, constraints


def column_types():
    """Return {column: lowercased SQL type} as the database reports it."""
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(
                "SELECT column_name, column_type FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = %s",
                [TABLE],
            )
        elif connection.vendor == "postgresql":
            cursor.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s",
                [TABLE],
            )
        else:
            cursor.execute(f"PRAGMA table_info({TABLE})")
            return {row[1]: row[2].lower() for row in cursor.fetchall()}
        return {name: kind.lower() for name, kind in cursor.fetchall()}


def user_key_type():
    user_model = get_user_model()
    key_column = user_model._meta.pk.column
    table = user_model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(
                "SELECT column_type FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = %s AND column_name = %s",
                [table, key_column],
            )
            return cursor.fetchone()[0].lower()
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = %s AND column_name = %s",
                [table, key_column],
            )
            return cursor.fetchone()[0].lower()
        cursor.execute(f"PRAGMA table_info({table})")
        return next(row[2].lower() for row in cursor.fetchall() if row[1] == key_column)


@pytest.mark.django_db
def test_table_has_exactly_the_columns():
    columns, _ = describe_table()

    assert set(columns) == COLUMNS


@pytest.mark.django_db
def test_columns_are_not_null():
    columns, _ = describe_table()

    nullable = {name for name, column in columns.items() if column.null_ok}
    assert nullable == set()


@pytest.mark.django_db
def test_column_types():
    types = column_types()

    if connection.vendor == "mysql":
        assert types["id"] == "int(11)" or types["id"] == "int"
        assert types["access_token"] == "varchar(400)"
        assert types["refresh_token"] == "varchar(255)"
        for name in ("expires_access_token", "expires_refresh_token", "created_at", "updated_at"):
            assert types[name] == "datetime(6)", name
    elif connection.vendor == "postgresql":
        assert types["id"] == "integer"
        assert types["access_token"] == "character varying"
        assert types["refresh_token"] == "character varying"
        for name in ("expires_access_token", "expires_refresh_token", "created_at", "updated_at"):
            assert types[name] == "timestamp with time zone", name
    else:
        assert types["id"] == "integer"
        assert types["access_token"] == "varchar(400)"
        assert types["refresh_token"] == "varchar(255)"
        assert types["expires_refresh_token"] == "datetime"


@pytest.mark.django_db
def test_user_id_follows_user_key_type():
    types = column_types()

    assert types["user_id"] == user_key_type()


@pytest.mark.django_db
def test_user_id_references_user_key():
    _, constraints = describe_table()
    user_model = get_user_model()

    foreign_keys = [details for details in constraints.values() if details["foreign_key"]]
    assert [(fk["columns"], fk["foreign_key"]) for fk in foreign_keys] == [
        (["user_id"], (user_model._meta.db_table, user_model._meta.pk.column))
    ]


@pytest.mark.django_db
def test_digest_columns_have_unique_indexes():
    _, constraints = describe_table()

    unique = {tuple(details["columns"]) for details in constraints.values() if details["unique"]}
    primary = [details["columns"] for details in constraints.values() if details["primary_key"]]
    assert ("access_token",) in unique
    assert ("refresh_token",) in unique
    assert primary == [["id"]]


@pytest.mark.django_db
def test_expires_refresh_token_is_indexed():
    _, constraints = describe_table()

    indexed = {tuple(details["columns"]) for details in constraints.values() if details["index"]}
    assert ("expires_refresh_token",) in indexed


@pytest.mark.mysql_only
@pytest.mark.django_db
def test_mysql_digest_columns_are_ascii_binary():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, character_set_name, collation_name "
            "FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s "
            "AND column_name IN ('access_token', 'refresh_token')",
            [TABLE],
        )
        rows = {name: (charset, collation) for name, charset, collation in cursor.fetchall()}

    assert rows == {
        "access_token": ("ascii", "ascii_bin"),
        "refresh_token": ("ascii", "ascii_bin"),
    }


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_postgres_has_no_pattern_indexes_on_digests():
    _, constraints = describe_table()

    assert not [name for name in constraints if name.endswith("_like")]


@pytest.mark.django_db(transaction=True)
def test_migrate_to_zero_and_back():
    executor = MigrationExecutor(connection)
    leaf = executor.loader.graph.leaf_nodes("pat_tokens")

    call_command("migrate", "pat_tokens", "zero", verbosity=0)
    assert TABLE not in connection.introspection.table_names()

    call_command("migrate", "pat_tokens", leaf[0][1], verbosity=0)
    assert TABLE in connection.introspection.table_names()
    test_columns_are_not_null()
    if connection.vendor == "mysql":
        test_mysql_digest_columns_are_ascii_binary()


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "pat_tokens", "--check", "--dry-run", verbosity=0)
