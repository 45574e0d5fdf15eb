"""PAT_TOKENS: defaults, validation as system checks, and reloading under override_settings."""

from datetime import timedelta

import pytest
from django.core.checks import Error, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from pat_tokens.conf import DEFAULTS, pat_settings


def pat_errors():
    return [message for message in run_checks(tags=None) if message.id.startswith("pat_tokens.E")]


def test_defaults():
    assert pat_settings.ACCESS_TOKEN_LIFETIME == timedelta(hours=1)
    assert pat_settings.REFRESH_TOKEN_LIFETIME == timedelta(days=14)
    assert pat_settings.ROTATE_REFRESH_TOKENS is True
    assert pat_settings.AUTH_HEADER_TYPES == ("Bearer",)
    assert pat_settings.ACCESS_TOKEN_PREFIX == "pat_"
    assert pat_settings.REFRESH_TOKEN_PREFIX == "patr_"
    assert pat_settings.MAX_SESSIONS_PER_USER is None
    assert pat_settings.CACHE_ALIAS is None
    assert pat_settings.CACHE_TIMEOUT == timedelta(seconds=60)
    assert pat_settings.THROTTLE_RATES == {"obtain": "20/minute", "refresh": "60/minute"}


def test_valid_settings_pass_checks():
    assert pat_errors() == []


def test_override_settings_reloads():
    with override_settings(PAT_TOKENS={"ACCESS_TOKEN_LIFETIME": timedelta(seconds=30)}):
        assert pat_settings.ACCESS_TOKEN_LIFETIME == timedelta(seconds=30)
        assert pat_settings.REFRESH_TOKEN_LIFETIME == timedelta(days=14)

    assert pat_settings.ACCESS_TOKEN_LIFETIME == timedelta(hours=1)


def test_settings_fixture_reloads(settings):
    settings.PAT_TOKENS = {"ACCESS_TOKEN_PREFIX": "acme_"}

    assert pat_settings.ACCESS_TOKEN_PREFIX == "acme_"


def test_partial_throttle_rates_keep_other_default(settings):
    settings.PAT_TOKENS = {"THROTTLE_RATES": {"obtain": None}}

    assert pat_settings.THROTTLE_RATES == {"obtain": None, "refresh": "60/minute"}


def test_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="NOPE"):
        _ = pat_settings.NOPE


INVALID = [
    ({"ACCES_TOKEN_LIFETIME": timedelta(minutes=5)}, "pat_tokens.E002", "ACCES_TOKEN_LIFETIME"),
    ({"ACCESS_TOKEN_LIFETIME": 3600}, "pat_tokens.E003", "ACCESS_TOKEN_LIFETIME"),
    ({"ACCESS_TOKEN_LIFETIME": timedelta(0)}, "pat_tokens.E003", "ACCESS_TOKEN_LIFETIME"),
    (
        {"REFRESH_TOKEN_LIFETIME": timedelta(seconds=-1)},
        "pat_tokens.E003",
        "REFRESH_TOKEN_LIFETIME",
    ),
    ({"ROTATE_REFRESH_TOKENS": "yes"}, "pat_tokens.E003", "ROTATE_REFRESH_TOKENS"),
    ({"AUTH_HEADER_TYPES": "Bearer"}, "pat_tokens.E003", "AUTH_HEADER_TYPES"),
    ({"AUTH_HEADER_TYPES": ()}, "pat_tokens.E003", "AUTH_HEADER_TYPES"),
    ({"AUTH_HEADER_TYPES": ("Bearer token",)}, "pat_tokens.E003", "AUTH_HEADER_TYPES"),
    ({"ACCESS_TOKEN_PREFIX": ""}, "pat_tokens.E003", "ACCESS_TOKEN_PREFIX"),
    ({"ACCESS_TOKEN_PREFIX": "pat/"}, "pat_tokens.E003", "ACCESS_TOKEN_PREFIX"),
    ({"REFRESH_TOKEN_PREFIX": 5}, "pat_tokens.E003", "REFRESH_TOKEN_PREFIX"),
    ({"MAX_SESSIONS_PER_USER": 0}, "pat_tokens.E003", "MAX_SESSIONS_PER_USER"),
    ({"MAX_SESSIONS_PER_USER": True}, "pat_tokens.E003", "MAX_SESSIONS_PER_USER"),
    ({"MAX_SESSIONS_PER_USER": "3"}, "pat_tokens.E003", "MAX_SESSIONS_PER_USER"),
    ({"CACHE_ALIAS": "missing"}, "pat_tokens.E003", "CACHE_ALIAS"),
    ({"CACHE_ALIAS": 1}, "pat_tokens.E003", "CACHE_ALIAS"),
    ({"CACHE_TIMEOUT": 60}, "pat_tokens.E003", "CACHE_TIMEOUT"),
    ({"CACHE_TIMEOUT": timedelta(0)}, "pat_tokens.E003", "CACHE_TIMEOUT"),
    ({"THROTTLE_RATES": ["20/minute"]}, "pat_tokens.E003", "THROTTLE_RATES"),
    ({"THROTTLE_RATES": {"login": "5/minute"}}, "pat_tokens.E003", "THROTTLE_RATES"),
    ({"THROTTLE_RATES": {"obtain": "lots"}}, "pat_tokens.E003", "THROTTLE_RATES"),
    (
        {"ACCESS_TOKEN_LIFETIME": timedelta(days=2), "REFRESH_TOKEN_LIFETIME": timedelta(days=1)},
        "pat_tokens.E004",
        "REFRESH_TOKEN_LIFETIME",
    ),
    (
        {"ACCESS_TOKEN_PREFIX": "tok_", "REFRESH_TOKEN_PREFIX": "tok_"},
        "pat_tokens.E005",
        "REFRESH_TOKEN_PREFIX",
    ),
]


@pytest.mark.parametrize(("value", "check_id", "key"), INVALID)
def test_invalid_settings_are_check_errors(settings, value, check_id, key):
    settings.PAT_TOKENS = value

    errors = pat_errors()

    assert [error.id for error in errors] == [check_id]
    assert isinstance(errors[0], Error)
    assert key in errors[0].msg
    assert errors[0].hint


@pytest.mark.parametrize(("value", "check_id", "key"), INVALID)
def test_invalid_settings_raise_on_use(settings, value, check_id, key):
    settings.PAT_TOKENS = value

    with pytest.raises(ImproperlyConfigured, match=key):
        _ = pat_settings.ACCESS_TOKEN_LIFETIME


def test_not_a_dict_is_a_check_error(settings):
    settings.PAT_TOKENS = []

    errors = pat_errors()

    assert [error.id for error in errors] == ["pat_tokens.E001"]
    assert "PAT_TOKENS must be a dict" in errors[0].msg


def test_check_command_fails_naming_the_key(settings):
    settings.PAT_TOKENS = {"ACCES_TOKEN_LIFETIME": timedelta(minutes=5)}

    with pytest.raises(SystemCheckError, match="ACCES_TOKEN_LIFETIME"):
        call_command("check")


def test_every_default_is_valid():
    from pat_tokens.conf import find_problems

    assert find_problems(dict(DEFAULTS)) == []


def test_missing_rest_framework_is_a_check_error(settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "rest_framework"]

    errors = [message for message in run_checks() if message.id == "pat_tokens.E006"]

    assert len(errors) == 1


def test_session_authentication_first_warns(settings):
    settings.REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework.authentication.SessionAuthentication",
            "pat_tokens.authentication.PersonalAccessTokenAuthentication",
        ]
    }

    warnings = [message for message in run_checks() if message.id == "pat_tokens.W001"]

    assert len(warnings) == 1
    assert "SessionAuthentication" in warnings[0].msg


def test_bearer_first_does_not_warn(settings):
    settings.REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "pat_tokens.authentication.PersonalAccessTokenAuthentication",
            "rest_framework.authentication.SessionAuthentication",
        ]
    }

    assert [message for message in run_checks() if message.id == "pat_tokens.W001"] == []


def test_middleware_before_authentication_middleware_warns(settings):
    bearer_middleware = "pat_tokens.middleware.PersonalAccessTokenMiddleware"
    others = [entry for entry in settings.MIDDLEWARE if entry != bearer_middleware]
    settings.MIDDLEWARE = [bearer_middleware, *others]

    warnings = [message for message in run_checks() if message.id == "pat_tokens.W002"]

    assert len(warnings) == 1
    assert "AuthenticationMiddleware" in warnings[0].msg


def test_middleware_after_authentication_middleware_does_not_warn():
    assert [message for message in run_checks() if message.id == "pat_tokens.W002"] == []
