"""The PersonalAccessToken model: text forms, timestamps, cascades."""

from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from pat_tokens import services, tokens
from pat_tokens.models import PersonalAccessToken

from .factories import UserFactory


def insert_raw_row(user):
    """Insert a row with raw SQL, leaving created_at and updated_at to the column defaults."""
    table = PersonalAccessToken._meta.db_table
    user_key = user._meta.pk.get_db_prep_value(user.pk, connection)
    now = timezone.now()
    expires_access = PersonalAccessToken._meta.get_field("expires_access_token").get_db_prep_value(
        now + timedelta(hours=1), connection
    )
    expires_refresh = PersonalAccessToken._meta.get_field(
        "expires_refresh_token"
    ).get_db_prep_value(now + timedelta(days=1), connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (access_token, refresh_token, user_id, "
            "expires_access_token, expires_refresh_token) VALUES (%s, %s, %s, %s, %s)",
            ["a" * 64, "b" * 64, user_key, expires_access, expires_refresh],
        )
    return PersonalAccessToken.objects.get(access_token="a" * 64)


def test_str_and_repr_hold_no_token_material(pair):
    row = pair.token
    texts = [str(row), repr(row), repr(pair)]
    fresh = PersonalAccessToken.objects.get(pk=row.pk)
    texts += [str(fresh), repr(fresh)]

    for text in texts:
        assert pair.access_token not in text
        assert pair.refresh_token not in text
        assert row.access_token[:12] not in text
        assert row.refresh_token[:12] not in text
    assert str(row) == f"session {row.pk} of alice"


def test_str_makes_no_query(pair, django_assert_num_queries):
    fresh = PersonalAccessToken.objects.get(pk=pair.token.pk)

    with django_assert_num_queries(0):
        text = str(fresh)

    assert text == f"session {fresh.pk} of {fresh.user_id}"


def test_digests_are_stored_not_tokens(pair):
    row = PersonalAccessToken.objects.get(pk=pair.token.pk)

    assert row.access_token == tokens.digest(pair.access_token)
    assert row.refresh_token == tokens.digest(pair.refresh_token)
    assert len(row.access_token) == 64
    assert row.access_token == row.access_token.lower()


def test_created_and_updated_set_on_insert(alice):
    before = timezone.now()
    row = services.issue_pair(alice).token
    row.refresh_from_db()

    assert before <= row.created_at <= timezone.now()
    assert before <= row.updated_at <= timezone.now()


def test_queryset_update_sets_updated_at(pair, clock):
    row = pair.token
    clock.shift(timedelta(minutes=5))

    PersonalAccessToken.objects.filter(pk=row.pk).update(
        expires_access_token=timezone.now() + timedelta(minutes=1)
    )
    row.refresh_from_db()

    assert row.updated_at >= timezone.now() - timedelta(seconds=1)
    assert row.updated_at > row.created_at + timedelta(minutes=4)


def test_save_sets_updated_at(pair, clock):
    row = pair.token
    clock.shift(timedelta(minutes=5))

    row.save()
    row.refresh_from_db()

    assert row.updated_at > row.created_at + timedelta(minutes=4)


def test_bulk_update_sets_updated_at(pair, clock):
    row = pair.token
    clock.shift(timedelta(minutes=5))
    row.expires_access_token = timezone.now() + timedelta(minutes=1)

    PersonalAccessToken.objects.bulk_update([row], ["expires_access_token"])
    row.refresh_from_db()

    assert row.updated_at > row.created_at + timedelta(minutes=4)


@pytest.mark.django_db
def test_raw_insert_gets_database_default_times():
    # The test runs with USE_TZ on (UTC) and, in the integer-user runs, with USE_TZ off and a
    # TIME_ZONE far from UTC, where a UTC default would be hours off.
    user = UserFactory()

    before = timezone.now() - timedelta(seconds=2)
    row = insert_raw_row(user)
    after = timezone.now() + timedelta(seconds=2)

    assert isinstance(row.created_at, datetime)
    assert before <= row.created_at <= after
    assert before <= row.updated_at <= after


def test_deleting_user_deletes_their_rows(alice, bob):
    services.issue_pair(alice)
    services.issue_pair(alice)
    services.issue_pair(bob)

    alice.delete()

    assert PersonalAccessToken.objects.filter(user_id=alice.pk).count() == 0
    assert PersonalAccessToken.objects.filter(user=bob).count() == 1


def test_queryset_delete_of_users_deletes_rows(alice, bob):
    services.issue_pair(alice)
    services.issue_pair(bob)

    get_user_model().objects.filter(pk=alice.pk).delete()

    assert PersonalAccessToken.objects.count() == 1


def test_reverse_name(pair, alice):
    assert list(alice.personal_access_tokens.all()) == [pair.token]


def test_state(pair, clock):
    row = pair.token
    assert row.state == "active"

    clock.move_to(row.expires_access_token)
    assert row.state == "access_expired"

    clock.move_to(row.expires_refresh_token)
    assert row.state == "expired"


def test_expired_and_live_querysets(pair, clock):
    row = pair.token
    assert list(PersonalAccessToken.objects.live()) == [row]

    clock.move_to(row.expires_refresh_token)

    assert list(PersonalAccessToken.objects.expired()) == [row]
    assert list(PersonalAccessToken.objects.live()) == []
