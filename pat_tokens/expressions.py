"""Database expressions used by the model's defaults."""

from django.conf import settings
from django.db.models.functions import Now
from django.utils.deconstruct import deconstructible


@deconstructible(path="pat_tokens.expressions.CurrentTimestamp")
class CurrentTimestamp(Now):
    """``Now()`` that returns the same wall-clock time Django would store.

    Django stores UTC on MySQL and SQLite when ``USE_TZ`` is on and the local time of ``TIME_ZONE``
    when it is off, but ``Now()`` as a column default returns the database server's local time on
    MySQL and UTC on SQLite. This expression makes a row inserted by raw SQL (which gets the column
    default) agree with a row inserted by Django. PostgreSQL stores an absolute instant either way.

    The SQL is chosen when the migration runs, from ``USE_TZ`` at that time. With ``USE_TZ`` off,
    MySQL's session time zone and SQLite's process time zone must match ``TIME_ZONE``.
    """

    def as_mysql(self, compiler, connection, **extra_context):
        template = "UTC_TIMESTAMP(6)" if settings.USE_TZ else "CURRENT_TIMESTAMP(6)"
        return self.as_sql(compiler, connection, template=template, **extra_context)

    def as_sqlite(self, compiler, connection, **extra_context):
        modifier = "" if settings.USE_TZ else ", 'localtime'"
        template = f"STRFTIME('%%%%Y-%%%%m-%%%%d %%%%H:%%%%M:%%%%f', 'NOW'{modifier})"
        return self.as_sql(compiler, connection, template=template, **extra_context)
