"""Failures seen in other token packages that the rest of the suite does not already pin down.

- A database failure during a refresh or a login is a server error, never a 401 that would make a
  client throw away a good refresh token or tell a user their password is wrong.
- ``override_settings`` takes effect over HTTP and is undone when the block ends.
- The migrations work with Django's own ``auth.User`` as well as with the example project's
  UUID-keyed user and the integer-keyed test user.
"""

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import caches
from django.db import InterfaceError, OperationalError, connection
from django.test import override_settings
from rest_framework.test import APIClient

from pat_tokens.models import PersonalAccessToken

from .conftest import bearer
from .factories import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_throttle_history():
    """Start from an empty default cache, where the token views count requests for throttling."""
    caches["default"].clear()


def fail_with(error_class):
    def fail(execute, sql, params, many, context):
        raise error_class("database unavailable (raised by the test)")

    return fail


# A database outage during a refresh or a login.


@pytest.mark.parametrize("error_class", [OperationalError, InterfaceError])
def test_refresh_database_error_is_500(transactional_db, pair, error_class):
    client = APIClient(raise_request_exception=False)
    before = PersonalAccessToken.objects.values().get(pk=pair.token.pk)
    data = {"refresh_token": pair.refresh_token}

    with connection.execute_wrapper(fail_with(error_class)):
        response = client.post("/auth/token/refresh/", data, format="json")

    assert response.status_code == 500
    assert isinstance(response.exc_info[1], error_class)
    assert b"token_invalid" not in response.content
    assert PersonalAccessToken.objects.values().get(pk=pair.token.pk) == before
    retried = client.post("/auth/token/refresh/", data, format="json")
    assert retried.status_code == 200
    assert client.get("/api/me/", **bearer(retried.json()["access_token"])).status_code == 200


@pytest.mark.parametrize("error_class", [OperationalError, InterfaceError])
@pytest.mark.parametrize("body", ["json", "oauth-form"])
def test_obtain_database_error_is_500(transactional_db, alice, error_class, body):
    client = APIClient(raise_request_exception=False)
    if body == "json":
        send = {"data": {"username": "alice", "password": PASSWORD}, "format": "json"}
    else:
        send = {"data": {"grant_type": "password", "username": "alice", "password": PASSWORD}}

    with connection.execute_wrapper(fail_with(error_class)):
        response = client.post("/auth/token/", **send)

    assert response.status_code == 500
    assert isinstance(response.exc_info[1], error_class)
    assert b"invalid_credentials" not in response.content
    assert b"invalid_grant" not in response.content
    assert PersonalAccessToken.objects.count() == 0
    assert client.post("/auth/token/", **send).status_code == 200


# override_settings over HTTP.


def test_lifetime_override_ends_with_block(api_client, alice):
    login = {"username": "alice", "password": PASSWORD}

    with override_settings(PAT_TOKENS={"ACCESS_TOKEN_LIFETIME": timedelta(seconds=30)}):
        inside = api_client.post("/auth/token/", login, format="json").json()
    after = api_client.post("/auth/token/", login, format="json").json()

    assert inside["expires_in"] == 30
    assert inside["refresh_expires_in"] == 14 * 24 * 3600
    assert after["expires_in"] == 3600
    assert after["refresh_expires_in"] == 14 * 24 * 3600


def test_prefix_override_ends_with_block(api_client, alice):
    login = {"username": "alice", "password": PASSWORD}

    with override_settings(PAT_TOKENS={"ACCESS_TOKEN_PREFIX": "acme_"}):
        inside = api_client.post("/auth/token/", login, format="json").json()
        assert api_client.get("/api/me/", **bearer(inside["access_token"])).status_code == 200
    after = api_client.post("/auth/token/", login, format="json").json()

    assert inside["access_token"].startswith("acme_")
    assert after["access_token"].startswith("pat_")
    # A token issued under another prefix no longer parses once the prefix changes back.
    response = api_client.get("/api/me/", **bearer(inside["access_token"]))
    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"


# Migrations with Django's own user model.

AUTH_USER_PROJECT = textwrap.dedent(
    """
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "rest_framework",
            "pat_tokens",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
    )
    django.setup()

    from django.core.management import call_command
    from django.db import connection

    call_command("makemigrations", "pat_tokens", "--check", "--dry-run", verbosity=0)
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, "refresh_tokens")
        relations = connection.introspection.get_relations(cursor, "refresh_tokens")
    user_id = next(column for column in columns if column.name == "user_id")
    print(user_id.type_code, relations["user_id"])
    """
)


@pytest.mark.slow
def test_migrations_with_auth_user():
    """``makemigrations --check`` and ``migrate`` with ``auth.User`` in a fresh process."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("DJANGO_SETTINGS_MODULE", None)

    result = subprocess.run(  # noqa: S603 - the test's own interpreter and script
        [sys.executable, "-c", AUTH_USER_PROJECT],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    type_code, relation = result.stdout.strip().split(" ", 1)
    assert type_code.lower() == "integer"
    assert "'id'" in relation
    assert "'auth_user'" in relation
