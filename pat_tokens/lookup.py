"""The access-token lookup, compiled to SQL once per database instead of once per request.

Django compiles a queryset to SQL on every evaluation and builds the instances through its generic
iterator. For this one query, which runs on every request, that Python work costs more than the
database round trip (see ``docs/benchmarks.md``). Here the query is compiled once per database
alias. Each lookup executes the cached SQL with the digest as its only parameter, applies the
converters that the compiler chose, and builds the row and its user with ``Model.from_db()``.

It reads ``SQLCompiler.select``, ``klass_info`` and ``get_converters()``, which are internal to
Django, so it checks the compiled query's shape and falls back to the ORM for any shape it does
not expect. Converters depend on settings (``USE_TZ`` on MySQL), so a change to one of
``RECOMPILE_ON`` drops the compiled queries.
"""

import logging

from django.contrib.auth import get_user_model
from django.core.signals import setting_changed
from django.db import connections, router

from .models import PersonalAccessToken

logger = logging.getLogger(__name__)

# A value of the digest's shape; the compiled SQL takes the real digest as its only parameter.
PLACEHOLDER = "0" * 64
# Settings that the compiled SQL or its converters depend on.
RECOMPILE_ON = frozenset(
    {"AUTH_USER_MODEL", "DATABASES", "DATABASE_ROUTERS", "TIME_ZONE", "USE_TZ"}
)


class UnsupportedQuery(Exception):
    """The compiled query does not have the shape this module can read."""


class CompiledLookup:
    """The SQL, column layout and converters of the token-with-user query for one database."""

    def __init__(self, using):
        self.using = using
        queryset = (
            PersonalAccessToken.objects.using(using)
            .select_related("user")
            .filter(access_token=PLACEHOLDER)
        )
        compiler = queryset.query.get_compiler(using=using)
        self.sql, params = compiler.as_sql()
        if list(params) != [PLACEHOLDER]:
            raise UnsupportedQuery("the query has parameters besides the digest")

        related = compiler.klass_info["related_klass_infos"]
        if len(related) != 1 or related[0]["related_klass_infos"]:
            raise UnsupportedQuery("the query selects more than the row and its user")
        token_positions = compiler.klass_info["select_fields"]
        user_positions = related[0]["select_fields"]
        columns = [expression for expression, _, _ in compiler.select]
        self.token_fields = self._field_names(PersonalAccessToken, columns, token_positions)
        self.user_fields = self._field_names(get_user_model(), columns, user_positions)
        self.token_slice = slice(token_positions[0], token_positions[-1] + 1)
        self.user_slice = slice(user_positions[0], user_positions[-1] + 1)
        self.converters = compiler.get_converters(columns)

    @staticmethod
    def _field_names(model, columns, positions):
        names = [columns[position].target.attname for position in positions]
        if names != [field.attname for field in model._meta.concrete_fields]:
            raise UnsupportedQuery(f"the columns of {model._meta.label} are not its fields")
        if positions != list(range(positions[0], positions[-1] + 1)):
            raise UnsupportedQuery(f"the columns of {model._meta.label} are not contiguous")
        return names

    def fetch(self, digest):
        """Return the row of ``digest`` with its user, or ``None``. Database errors propagate."""
        connection = connections[self.using]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [digest])
            values = cursor.fetchone()
        if values is None:
            return None

        values = list(values)
        for position, (converters, expression) in self.converters.items():
            value = values[position]
            for converter in converters:
                value = converter(value, expression, connection)
            values[position] = value

        row = PersonalAccessToken.from_db(self.using, self.token_fields, values[self.token_slice])
        row.user = get_user_model().from_db(self.using, self.user_fields, values[self.user_slice])
        return row


_compiled = {}


def fetch(digest):
    """Return the row of an access digest joined with its user, or ``None``."""
    using = router.db_for_read(PersonalAccessToken)
    lookup = _compiled.get(using)
    if lookup is None:
        try:
            lookup = CompiledLookup(using)
        except UnsupportedQuery as error:
            logger.debug("Using the ORM for token lookups on %s: %s", using, error)
            lookup = False
        _compiled[using] = lookup
    if lookup is False:
        return _fetch_with_orm(digest)
    return lookup.fetch(digest)


def _fetch_with_orm(digest):
    try:
        return PersonalAccessToken.objects.select_related("user").get(access_token=digest)
    except PersonalAccessToken.DoesNotExist:
        return None


def _forget_compiled(*, setting, **kwargs):
    if setting in RECOMPILE_ON:
        _compiled.clear()


setting_changed.connect(_forget_compiled)
