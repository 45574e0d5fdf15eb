import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from pat_tokens import services

from .factories import PASSWORD, UserFactory


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
