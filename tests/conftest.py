import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from pat_tokens import services
from pat_tokens.signals import token_revoked

from .factories import PASSWORD, UserFactory

# The keys of every token response, shaped after RFC 6749 section 5.1.
TOKEN_RESPONSE_KEYS = {
    "token_type",
    "access_token",
    "expires_in",
    "refresh_token",
    "refresh_expires_in",
    "access_token_expires_at",
    "refresh_token_expires_at",
}


def pytest_report_header(config):
    return (
        f"pat_tokens test database: {settings.DATABASES['default']['ENGINE']}; "
        f"user model: {settings.AUTH_USER_MODEL}"
    )


def pytest_collection_modifyitems(config, items):
    vendor = connection.vendor
    reasons = {
        "mysql_only": (vendor != "mysql", "needs MySQL or MariaDB"),
        "postgres_only": (vendor != "postgresql", "needs PostgreSQL"),
        "server_db": (vendor == "sqlite", "needs a database server"),
    }
    for item in items:
        for marker, (skip, reason) in reasons.items():
            if skip and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=f"{reason}; this run uses {vendor}"))


@pytest.fixture(autouse=True)
def _clear_default_cache():
    """Start every test with an empty default cache, where DRF keeps throttle history."""
    from django.core.cache import caches

    caches["default"].clear()


@pytest.fixture
def revoked_calls():
    """The keyword arguments of every ``token_revoked`` sent during the test."""
    calls = []

    def receiver(sender, **kwargs):
        calls.append({"sender": sender, **kwargs})

    token_revoked.connect(receiver)
    yield calls
    token_revoked.disconnect(receiver)


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def password():
    return PASSWORD


@pytest.fixture
def alice(db):
    return UserFactory(username="alice", email="alice@example.com")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob", email="bob@example.com")


@pytest.fixture
def pair(alice):
    """A session of alice's, with its plaintext tokens (A0 and R0)."""
    return services.issue_pair(alice)


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


class Clock:
    """Move time-machine's clock with the datetimes Django uses, naive ones included."""

    def __init__(self, traveller):
        self.traveller = traveller

    def move_to(self, moment):
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        self.traveller.move_to(moment, tick=False)

    def shift(self, delta):
        self.move_to(timezone.now() + delta)


@pytest.fixture
def clock(time_machine):
    """A frozen clock that works with USE_TZ on and off."""
    current = Clock(time_machine)
    current.move_to(timezone.now())
    return current
