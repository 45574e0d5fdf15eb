"""Make the unique digest indexes as small as the digests.

The columns keep Django's types (``varchar(400)`` and ``varchar(255)``), but a digest is 64 ASCII
characters:

* On MySQL and MariaDB the columns become ``ascii`` with the binary collation ``ascii_bin``. A
  utf8mb4 key reserves 4 bytes a character (1,600 bytes for ``varchar(400)``), ascii 1 byte, and a
  binary collation compares bytes, so no case-insensitive collation can equate two digests.
* On PostgreSQL the ``varchar_pattern_ops`` indexes that Django adds beside a unique ``CharField``
  serve only ``LIKE`` queries, which the app never makes; they are dropped.

Other databases are left as they are.
"""

from django.db import migrations

MYSQL_FORWARD = (
    "ALTER TABLE refresh_tokens "
    "MODIFY access_token varchar(400) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, "
    "MODIFY refresh_token varchar(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL"
)
MYSQL_BACKWARD = (
    "ALTER TABLE refresh_tokens "
    "MODIFY access_token varchar(400) CHARACTER SET utf8mb4 NOT NULL, "
    "MODIFY refresh_token varchar(255) CHARACTER SET utf8mb4 NOT NULL"
)
PATTERN_INDEX_SUFFIX = "_like"


def narrow(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "mysql":
        schema_editor.execute(MYSQL_FORWARD)
    elif connection.vendor == "postgresql":
        for name in _pattern_indexes(connection):
            schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


def widen(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "mysql":
        schema_editor.execute(MYSQL_BACKWARD)
    elif connection.vendor == "postgresql":
        model = apps.get_model("pat_tokens", "PersonalAccessToken")
        for field_name in ("access_token", "refresh_token"):
            field = model._meta.get_field(field_name)
            schema_editor.execute(schema_editor._create_like_index_sql(model, field))


def _pattern_indexes(connection):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "refresh_tokens")
    return [
        name
        for name, details in constraints.items()
        if details["index"]
        and name.endswith(PATTERN_INDEX_SUFFIX)
        and details["columns"] in (["access_token"], ["refresh_token"])
    ]


class Migration(migrations.Migration):
    # MySQL cannot roll DDL back, and Django refuses DDL inside a transaction there.
    atomic = False

    dependencies = [("pat_tokens", "0001_initial")]

    operations = [migrations.RunPython(narrow, widen, atomic=False, elidable=False)]
