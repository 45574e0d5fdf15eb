"""The compiled access-token lookup agrees with the ORM and falls back to it."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pat_tokens import lookup, tokens
from pat_tokens.models import PersonalAccessToken


@pytest.fixture(autouse=True)
def fresh_compiled_queries():
    lookup._compiled.clear()
    yield
    lookup._compiled.clear()


def field_values(instance):
    return {
        field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields
    }


def test_compiled_lookup_matches_orm(pair):
    digest = tokens.digest(pair.access_token)
    expected = PersonalAccessToken.objects.select_related("user").get(access_token=digest)

    row = lookup.fetch(digest)

    assert isinstance(lookup._compiled["default"], lookup.CompiledLookup)
    assert field_values(row) == field_values(expected)
    assert field_values(row.user) == field_values(expected.user)
    for name, value in field_values(row).items():
        assert type(value) is type(getattr(expected, name)), name
    assert row._state.db == "default"
    assert not row._state.adding
    assert PersonalAccessToken.user.is_cached(row)


def test_compiled_lookup_is_one_query(pair):
    digest = tokens.digest(pair.access_token)
    lookup.fetch(digest)

    with CaptureQueriesContext(connection) as queries:
        row = lookup.fetch(digest)
        _ = row.user.get_username()

    assert len(queries) == 1
    assert digest in queries[0]["sql"] or connection.vendor == "postgresql"


def test_unknown_digest_is_none(db):
    assert lookup.fetch("f" * 64) is None


def test_unexpected_query_shape_falls_back_to_orm(pair, monkeypatch):
    def reject_shape(self, using):
        raise lookup.UnsupportedQuery("a shape this module does not read")

    monkeypatch.setattr(lookup.CompiledLookup, "__init__", reject_shape)
    digest = tokens.digest(pair.access_token)

    row = lookup.fetch(digest)

    assert lookup._compiled["default"] is False
    assert row.pk == pair.token.pk
    assert row.user.pk == pair.token.user_id


def test_setting_change_recompiles(pair, settings):
    digest = tokens.digest(pair.access_token)
    lookup.fetch(digest)
    assert "default" in lookup._compiled

    settings.TIME_ZONE = "Europe/Paris"

    assert lookup._compiled == {}
    assert lookup.fetch(digest).pk == pair.token.pk
