"""The sessions admin: list, filter, search, issue a pair once, revoke through the service layer."""

import logging
import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from pat_tokens import services, tokens
from pat_tokens.admin import PersonalAccessTokenAdmin
from pat_tokens.models import PersonalAccessToken
from pat_tokens.paginators import EstimatedCountPaginator, estimate_row_count
from pat_tokens.signals import token_issued, token_revoked

from .conftest import bearer
from .factories import UserFactory

CHANGELIST = "admin:pat_tokens_personalaccesstoken_changelist"
ADD = "admin:pat_tokens_personalaccesstoken_add"
CHANGE = "admin:pat_tokens_personalaccesstoken_change"
DELETE = "admin:pat_tokens_personalaccesstoken_delete"


# Fixtures and helpers


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def operator(superuser):
    """A test client logged in as a superuser."""
    client = Client()
    client.force_login(superuser)
    return client


def staff_client(*codenames):
    user = UserFactory(is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="pat_tokens",
            codename__in=[f"{name}_personalaccesstoken" for name in codenames],
        )
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def signals_sent():
    """Record the keyword arguments of every ``token_issued`` and ``token_revoked`` sent."""
    sent = {"issued": [], "revoked": []}

    def on_issued(sender, **kwargs):
        sent["issued"].append(kwargs)

    def on_revoked(sender, **kwargs):
        sent["revoked"].append(kwargs)

    token_issued.connect(on_issued)
    token_revoked.connect(on_revoked)
    yield sent
    token_issued.disconnect(on_issued)
    token_revoked.disconnect(on_revoked)


def changelist_url(query=""):
    return reverse(CHANGELIST) + query


def issue_sessions(count):
    """Issue one session for each of ``count`` new users, so that an N+1 query would show."""
    return [services.issue_pair(UserFactory()) for _ in range(count)]


def listed_ids(response):
    return [row.pk for row in response.context["cl"].result_list]


def digest_fragments(digest, length=12):
    return {digest[start : start + length] for start in range(len(digest) - length + 1)}


def contains_digest_fragment(text, digests):
    return any(fragment in text for digest in digests for fragment in digest_fragments(digest))


def unbounded_counts(queries):
    """Return the captured ``COUNT`` queries over ``refresh_tokens`` that have no LIMIT.

    Such a count reads every matching row, the whole table when it has no WHERE clause either.
    """
    counts = []
    for query in queries:
        sql = query["sql"].upper()
        if "COUNT(" in sql and "REFRESH_TOKENS" in sql and "LIMIT" not in sql:
            counts.append(query["sql"])
    return counts


def issue_through_admin(client, user):
    return client.post(reverse(ADD), {"user": str(user.pk)})


def revoke_through_action(client, session_ids, query="", select_across=False):
    """Post the revoke action and then its confirmation; return both responses."""
    selection = {
        "action": "revoke_selected",
        "_selected_action": [str(pk) for pk in session_ids],
        "select_across": "1" if select_across else "0",
    }
    confirmation = client.post(changelist_url(query), {**selection, "index": "0"})
    done = client.post(changelist_url(query), {**selection, "post": "yes"})
    return confirmation, done


def page_text(response):
    return response.content.decode()


# List page


@pytest.mark.django_db
def test_changelist_query_count_constant(operator):
    issue_sessions(3)
    with CaptureQueriesContext(connection) as few:
        response = operator.get(changelist_url())
    assert response.status_code == 200
    assert len(listed_ids(response)) == 3

    issue_sessions(27)
    with CaptureQueriesContext(connection) as many:
        response = operator.get(changelist_url())
    assert response.status_code == 200
    assert len(listed_ids(response)) == 30

    assert len(many.captured_queries) == len(few.captured_queries)
    # The login session, its user, a bounded count, the page of rows and the users of the page.
    assert len(few.captured_queries) == 5


@pytest.mark.django_db
def test_changelist_never_counts_unbounded(operator):
    issue_sessions(30)
    for query in ("", "?p=1", "?state=active", "?q=user", "?o=-4"):
        with CaptureQueriesContext(connection) as captured:
            response = operator.get(changelist_url(query))
        assert response.status_code == 200, query
        assert unbounded_counts(captured.captured_queries) == [], query


@pytest.mark.django_db
def test_changelist_small_table_counted_exactly(operator):
    issue_sessions(3)

    response = operator.get(changelist_url())

    cl = response.context["cl"]
    assert cl.result_count == 3
    assert cl.paginator.count_is_estimate is False
    assert cl.paginator.count_is_lower_bound is False
    assert "3 sessions" in page_text(response)


@pytest.mark.django_db
def test_changelist_large_filtered_result_bounded(operator, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 5)
    monkeypatch.setattr(PersonalAccessTokenAdmin, "list_per_page", 4)
    sessions = issue_sessions(12)
    newest_first = sorted((pair.token.pk for pair in sessions), reverse=True)

    with CaptureQueriesContext(connection) as captured:
        first = operator.get(changelist_url("?state=active"))
    second = operator.get(changelist_url("?state=active&p=2"))

    assert first.status_code == 200
    cl = first.context["cl"]
    assert cl.paginator.count_is_lower_bound is True
    assert cl.result_count == 5
    assert "more than 5 sessions" in page_text(first)
    assert listed_ids(first) == newest_first[:4]
    assert listed_ids(second) == newest_first[4:5]
    assert unbounded_counts(captured.captured_queries) == []


@pytest.mark.django_db
def test_changelist_large_table_estimated_or_bounded(operator, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 5)
    monkeypatch.setattr(PersonalAccessTokenAdmin, "list_per_page", 4)
    sessions = issue_sessions(12)
    newest_first = sorted((pair.token.pk for pair in sessions), reverse=True)

    with CaptureQueriesContext(connection) as captured:
        response = operator.get(changelist_url())

    assert response.status_code == 200
    paginator = response.context["cl"].paginator
    assert paginator.count_is_estimate or paginator.count_is_lower_bound
    assert listed_ids(response) == newest_first[:4]
    assert unbounded_counts(captured.captured_queries) == []


@pytest.mark.server_db
@pytest.mark.django_db
def test_changelist_uses_estimate_for_large_table(operator, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 5)
    issue_sessions(30)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE refresh_tokens")

    with CaptureQueriesContext(connection) as captured:
        response = operator.get(changelist_url())

    assert response.status_code == 200
    cl = response.context["cl"]
    assert cl.paginator.count_is_estimate is True
    assert cl.result_count > 5
    assert unbounded_counts(captured.captured_queries) == []
    assert f"about {cl.result_count} sessions" in page_text(response)


@pytest.mark.django_db
def test_estimate_row_count_per_vendor():
    issue_sessions(2)
    estimate = estimate_row_count(PersonalAccessToken, "default")
    if connection.vendor == "sqlite":
        assert estimate is None
    else:
        assert isinstance(estimate, int)
        assert estimate >= 0


@pytest.mark.django_db
def test_changelist_shows_columns_not_digests(operator, pair):
    response = operator.get(changelist_url())
    text = page_text(response)

    assert response.status_code == 200
    for heading in ("State", "Access token expires at", "Refresh token expires at", "Created at"):
        assert heading in text
    assert ">active<" in text
    assert "alice" in text
    row = pair.token
    assert not contains_digest_fragment(text, [row.access_token, row.refresh_token])
    assert pair.access_token not in text


@pytest.mark.django_db
def test_state_filter(operator, alice):
    now = timezone.now()
    active = services.issue_pair(alice).token
    access_expired = services.issue_pair(alice).token
    expired = services.issue_pair(alice).token
    PersonalAccessToken.objects.filter(pk=access_expired.pk).update(
        expires_access_token=now - timedelta(minutes=1)
    )
    PersonalAccessToken.objects.filter(pk=expired.pk).update(
        expires_access_token=now - timedelta(hours=2),
        expires_refresh_token=now - timedelta(hours=1),
    )

    assert listed_ids(operator.get(changelist_url("?state=active"))) == [active.pk]
    assert listed_ids(operator.get(changelist_url("?state=access_expired"))) == [access_expired.pk]
    assert listed_ids(operator.get(changelist_url("?state=expired"))) == [expired.pk]
    everything = operator.get(changelist_url())
    assert sorted(listed_ids(everything)) == sorted([active.pk, access_expired.pk, expired.pk])
    text = page_text(everything)
    assert ">access expired<" in text
    assert ">expired<" in text


@pytest.mark.django_db
def test_state_filter_at_expiry_instant(operator, alice, clock):
    row = services.issue_pair(alice).token
    instant = timezone.now() + timedelta(days=1)
    PersonalAccessToken.objects.filter(pk=row.pk).update(
        expires_access_token=instant, expires_refresh_token=instant
    )

    clock.move_to(instant)

    assert listed_ids(operator.get(changelist_url("?state=expired"))) == [row.pk]
    assert listed_ids(operator.get(changelist_url("?state=active"))) == []


@pytest.mark.django_db
def test_search_by_username_and_email(operator, alice, bob):
    alice_row = services.issue_pair(alice).token
    bob_row = services.issue_pair(bob).token

    assert listed_ids(operator.get(changelist_url("?q=alice"))) == [alice_row.pk]
    assert listed_ids(operator.get(changelist_url("?q=ALI"))) == [alice_row.pk]
    assert listed_ids(operator.get(changelist_url("?q=bob@example.com"))) == [bob_row.pk]
    assert listed_ids(operator.get(changelist_url("?q=lice"))) == []


@pytest.mark.django_db
def test_search_token_or_digest_finds_nothing(operator, pair):
    row = pair.token
    for text in (pair.access_token, pair.refresh_token, row.access_token, row.refresh_token):
        response = operator.get(changelist_url(f"?q={text}"))
        assert response.status_code == 200
        assert listed_ids(response) == []


# Add: issue a pair


@pytest.mark.django_db
def test_add_form_offers_one_button(operator):
    response = operator.get(reverse(ADD))
    text = page_text(response)

    assert response.status_code == 200
    assert 'value="Issue tokens"' in text
    assert 'name="_addanother"' not in text
    assert 'name="_continue"' not in text
    assert 'name="user"' in text


@pytest.mark.django_db
def test_add_shows_plaintext_once(operator, alice, api_client, signals_sent):
    response = issue_through_admin(operator, alice)

    assert response.status_code == 200
    assert response.get("Location") is None
    assert "no-store" in response["Cache-Control"]
    row = PersonalAccessToken.objects.get(user=alice)
    access_token = response.context["access_token"]
    refresh_token = response.context["refresh_token"]
    text = page_text(response)
    assert text.count(access_token) == 1
    assert text.count(refresh_token) == 1
    assert tokens.digest(access_token) == row.access_token
    assert tokens.digest(refresh_token) == row.refresh_token
    assert (
        reverse(CHANGE, args=[row.pk]) == f"/admin/pat_tokens/personalaccesstoken/{row.pk}/change/"
    )
    assert reverse(CHANGE, args=[row.pk]) in text

    me = api_client.get("/api/me/", **bearer(access_token))
    assert me.status_code == 200, me.content
    assert me.json()["username"] == "alice"

    assert len(signals_sent["issued"]) == 1
    assert signals_sent["issued"][0]["request"] is not None


@pytest.mark.django_db
def test_add_plaintext_not_shown_again(operator, alice):
    first = issue_through_admin(operator, alice)
    access_token = first.context["access_token"]
    refresh_token = first.context["refresh_token"]
    row = PersonalAccessToken.objects.get(user=alice)
    digests = [row.access_token, row.refresh_token]

    # A reload of the result page posts the form again, which issues another pair.
    again = issue_through_admin(operator, alice)
    later_pages = [
        again,
        operator.get(reverse(CHANGE, args=[row.pk])),
        operator.get(changelist_url()),
        operator.get(reverse(ADD)),
        operator.get(reverse("admin:pat_tokens_personalaccesstoken_history", args=[row.pk])),
    ]
    for response in later_pages:
        assert response.status_code == 200
        text = page_text(response)
        assert access_token not in text
        assert refresh_token not in text
        assert not contains_digest_fragment(text, digests)


@pytest.mark.django_db
def test_add_keeps_tokens_out_of_cookies_and_logs(operator, alice, caplog):
    caplog.set_level(logging.DEBUG)

    response = issue_through_admin(operator, alice)

    secrets = [response.context["access_token"], response.context["refresh_token"]]
    row = PersonalAccessToken.objects.get(user=alice)
    digests = [row.access_token, row.refresh_token]
    cookies = response.cookies.output() + operator.cookies.output()
    for secret in secrets:
        assert secret not in cookies
        assert secret not in response.get("Location", "")
        assert all(secret not in record.getMessage() for record in caplog.records)
    assert not contains_digest_fragment(cookies, digests)
    assert "messages" not in response.cookies
    assert not any(contains_digest_fragment(r.getMessage(), digests) for r in caplog.records)

    entry = LogEntry.objects.get(action_flag=ADDITION)
    assert entry.object_id == str(row.pk)
    assert entry.object_repr == f"session {row.pk} of alice"
    for secret in secrets:
        assert secret not in entry.object_repr + entry.change_message
    assert not contains_digest_fragment(entry.object_repr + entry.change_message, digests)


@pytest.mark.django_db
def test_add_rejects_inactive_user(operator, signals_sent):
    inactive = UserFactory(username="carol", is_active=False)

    response = issue_through_admin(operator, inactive)

    assert response.status_code == 200
    assert "inactive user cannot be issued tokens" in page_text(response)
    assert response.context["adminform"].form.errors["user"]
    assert not PersonalAccessToken.objects.filter(user=inactive).exists()
    assert signals_sent["issued"] == []
    assert "access_token" not in response.context


@pytest.mark.django_db
def test_add_rejects_unknown_user(operator):
    for value in ("", "not-a-key", "00000000-0000-0000-0000-000000000000", "999999"):
        response = operator.post(reverse(ADD), {"user": value})
        assert response.status_code == 200, value
        assert response.context["adminform"].form.errors["user"], value
    assert not PersonalAccessToken.objects.exists()


# Change page


@pytest.mark.django_db
def test_change_page_read_only(operator, pair):
    row = pair.token
    url = reverse(CHANGE, args=[row.pk])

    response = operator.get(url)

    assert response.status_code == 200
    text = page_text(response)
    assert f"{row.access_token[:8]}…" in text
    assert f"{row.refresh_token[:8]}…" in text
    assert not contains_digest_fragment(text, [row.access_token, row.refresh_token])
    assert list(response.context["adminform"].form.fields) == []
    assert 'name="_save"' not in text
    assert "deletelink" in text

    edit = operator.post(url, {"user": str(row.user_id), "expires_access_token": "2099-01-01"})
    assert edit.status_code == 403
    unchanged = PersonalAccessToken.objects.get(pk=row.pk)
    assert unchanged.expires_access_token == row.expires_access_token


# Permissions


@pytest.mark.django_db
def test_view_only_staff_cannot_issue(pair, alice, signals_sent):
    client = staff_client("view")

    assert client.get(changelist_url()).status_code == 200
    assert client.get(reverse(ADD)).status_code == 403
    response = client.post(reverse(ADD), {"user": str(alice.pk)})
    assert response.status_code == 403
    assert PersonalAccessToken.objects.filter(user=alice).count() == 1
    assert signals_sent["issued"] == []


@pytest.mark.django_db
def test_view_only_staff_cannot_revoke(pair, signals_sent):
    client = staff_client("view")
    row = pair.token

    listing = client.get(changelist_url())
    assert "revoke_selected" not in page_text(listing)
    for data in ({"index": "0"}, {"post": "yes"}):
        response = client.post(
            changelist_url(),
            {"action": "revoke_selected", "_selected_action": [str(row.pk)], **data},
        )
        assert response.status_code == 403
    assert client.get(reverse(DELETE, args=[row.pk])).status_code == 403
    assert client.post(reverse(DELETE, args=[row.pk]), {"post": "yes"}).status_code == 403

    assert PersonalAccessToken.objects.filter(pk=row.pk).exists()
    assert signals_sent["revoked"] == []


@pytest.mark.django_db
def test_add_permission_allows_issue(alice):
    client = staff_client("view", "add")

    response = issue_through_admin(client, alice)

    assert response.status_code == 200
    assert PersonalAccessToken.objects.filter(user=alice).count() == 1


@pytest.mark.django_db
def test_delete_permission_allows_revoke(pair):
    client = staff_client("view", "delete")

    listing = client.get(changelist_url())
    assert "revoke_selected" in page_text(listing)
    assert "delete_selected" not in page_text(listing)
    _, done = revoke_through_action(client, [pair.token.pk])

    assert done.status_code == 302
    assert not PersonalAccessToken.objects.exists()


# Revoke


@pytest.mark.django_db
def test_revoke_action_with_confirmation(operator, alice, bob, api_client, signals_sent, settings):
    settings.PAT_TOKENS = {"CACHE_ALIAS": "tokens"}
    first = services.issue_pair(alice)
    second = services.issue_pair(bob)
    untouched = services.issue_pair(alice)
    # Authenticate once so that the session sits in the cache when it is revoked.
    assert api_client.get("/api/me/", **bearer(first.access_token)).status_code == 200
    chosen = [first.token.pk, second.token.pk]

    confirmation, done = revoke_through_action(operator, chosen)

    assert confirmation.status_code == 200
    text = page_text(confirmation)
    assert "Are you sure you want to revoke 2 sessions?" in text
    assert f"session {first.token.pk} of alice" in text
    assert f"session {second.token.pk} of bob" in text
    assert done.status_code == 302
    assert done["Location"] == changelist_url()
    assert list(PersonalAccessToken.objects.values_list("pk", flat=True)) == [untouched.token.pk]

    revoked = {row.pk for sent in signals_sent["revoked"] for row in sent["tokens"]}
    assert revoked == set(chosen)
    assert {sent["user"].pk for sent in signals_sent["revoked"]} == {alice.pk, bob.pk}
    assert all(sent["request"] is not None for sent in signals_sent["revoked"])

    rejected = api_client.get("/api/me/", **bearer(first.access_token))
    assert rejected.status_code == 401
    assert rejected.json()["code"] == "token_invalid"
    assert api_client.get("/api/me/", **bearer(untouched.access_token)).status_code == 200


@pytest.mark.django_db
def test_revoke_confirmation_changes_nothing(operator, pair, signals_sent):
    response = operator.post(
        changelist_url(),
        {"action": "revoke_selected", "_selected_action": [str(pair.token.pk)], "index": "0"},
    )

    assert response.status_code == 200
    assert PersonalAccessToken.objects.filter(pk=pair.token.pk).exists()
    assert signals_sent["revoked"] == []


@pytest.mark.django_db
def test_revoke_across_filtered_selection(operator, alice):
    now = timezone.now()
    live = [services.issue_pair(alice).token.pk for _ in range(2)]
    expired = [services.issue_pair(alice).token.pk for _ in range(3)]
    PersonalAccessToken.objects.filter(pk__in=expired).update(
        expires_access_token=now - timedelta(hours=2),
        expires_refresh_token=now - timedelta(hours=1),
    )

    confirmation, done = revoke_through_action(
        operator, expired[:1], query="?state=expired", select_across=True
    )

    assert "revoke 3 sessions" in page_text(confirmation)
    assert done.status_code == 302
    assert sorted(PersonalAccessToken.objects.values_list("pk", flat=True)) == sorted(live)


@pytest.mark.django_db
def test_delete_view_revokes_session(operator, pair, api_client, signals_sent, settings):
    settings.PAT_TOKENS = {"CACHE_ALIAS": "tokens"}
    assert api_client.get("/api/me/", **bearer(pair.access_token)).status_code == 200
    url = reverse(DELETE, args=[pair.token.pk])

    assert operator.get(url).status_code == 200
    response = operator.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not PersonalAccessToken.objects.exists()
    assert [row.pk for row in signals_sent["revoked"][0]["tokens"]] == [pair.token.pk]
    rejected = api_client.get("/api/me/", **bearer(pair.access_token))
    assert rejected.status_code == 401
    assert rejected.json()["code"] == "token_invalid"


@pytest.mark.django_db
def test_log_entries_hold_no_token_material(operator, alice):
    issued = issue_through_admin(operator, alice)
    by_add = PersonalAccessToken.objects.get(user=alice)
    by_action = services.issue_pair(alice)
    by_delete = services.issue_pair(alice)
    digests = [
        value
        for row in (by_add, by_action.token, by_delete.token)
        for value in (row.access_token, row.refresh_token)
    ]
    secrets = [
        issued.context["access_token"],
        issued.context["refresh_token"],
        by_action.access_token,
        by_action.refresh_token,
        by_delete.access_token,
        by_delete.refresh_token,
    ]

    revoke_through_action(operator, [by_action.token.pk])
    operator.post(reverse(DELETE, args=[by_delete.token.pk]), {"post": "yes"})

    entries = list(LogEntry.objects.order_by("pk"))
    assert [entry.action_flag for entry in entries] == [ADDITION, DELETION, DELETION]
    for entry in entries:
        text = entry.object_repr + entry.change_message
        assert re.fullmatch(r"session \d+ of alice", entry.object_repr)
        assert not contains_digest_fragment(text, digests)
        assert all(secret not in text for secret in secrets)
