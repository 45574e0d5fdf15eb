"""The ``PAT_TOKENS`` settings dict, read when used.

``pat_settings.ACCESS_TOKEN_LIFETIME`` and its siblings read ``settings.PAT_TOKENS`` when first
used and again after ``override_settings`` (or pytest-django's ``settings`` fixture) changes it, so
nothing captured at import time goes stale.
"""

from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "PAT_TOKENS"

DEFAULTS = {
    "ACCESS_TOKEN_LIFETIME": timedelta(hours=1),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=14),
    "ROTATE_REFRESH_TOKENS": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "ACCESS_TOKEN_PREFIX": "pat_",
    "REFRESH_TOKEN_PREFIX": "patr_",
    "MAX_SESSIONS_PER_USER": None,
    "CACHE_ALIAS": None,
    "CACHE_TIMEOUT": timedelta(seconds=60),
    "THROTTLE_RATES": {"obtain": "20/minute", "refresh": "60/minute"},
}

THROTTLED_VIEWS = ("obtain", "refresh")

# Characters a prefix may use: the token alphabet plus "_" and "-", so a whole token stays URL-safe.
PREFIX_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MAX_PREFIX_LENGTH = 16


def _check_lifetime(key, value):
    if not isinstance(value, timedelta):
        return f"must be a datetime.timedelta, not {type(value).__name__}."
    if value <= timedelta(0):
        return "must be a positive duration."
    return None


def _check_bool(key, value):
    if not isinstance(value, bool):
        return f"must be True or False, not {type(value).__name__}."
    return None


def _check_header_types(key, value):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        return (
            f'must be a list or tuple of strings such as ("Bearer",), not {type(value).__name__}.'
        )
    if not value:
        return "must name at least one scheme."
    for scheme in value:
        if not isinstance(scheme, str) or not scheme or not scheme.isascii():
            return f"contains {scheme!r}, which is not a non-empty ASCII string."
        if not all(character.isalnum() or character in "!#$%&'*+-.^_`|~" for character in scheme):
            return f"contains {scheme!r}, which is not a valid HTTP authentication scheme name."
    return None


def _check_prefix(key, value):
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}."
    if not value or len(value) > MAX_PREFIX_LENGTH:
        return f"must be 1 to {MAX_PREFIX_LENGTH} characters long."
    if not set(value) <= PREFIX_CHARACTERS:
        return "may contain only ASCII letters, digits, '_' and '-'."
    return None


def _check_max_sessions(key, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be None or a positive integer, not {type(value).__name__}."
    if value < 1:
        return "must be None or a positive integer."
    return None


def _check_cache_alias(key, value):
    if value is None:
        return None
    if not isinstance(value, str):
        return f"must be None or the name of a cache in CACHES, not {type(value).__name__}."
    if value not in settings.CACHES:
        return f"names the cache {value!r}, which is not in CACHES."
    return None


def _check_throttle_rates(key, value):
    if not isinstance(value, dict):
        return f"must be a dict, not {type(value).__name__}."
    unknown = sorted(set(value) - set(THROTTLED_VIEWS), key=str)
    if unknown:
        return f"has unknown view names {unknown}; the known ones are {list(THROTTLED_VIEWS)}."
    for view, rate in value.items():
        if rate is None:
            continue
        if not isinstance(rate, str) or not _is_rate(rate):
            return f'has the rate {rate!r} for {view!r}, which is not a rate such as "20/minute".'
    return None


def _is_rate(rate):
    count, _, period = rate.partition("/")
    return count.isdigit() and period[:1] in ("s", "m", "h", "d")


VALIDATORS = {
    "ACCESS_TOKEN_LIFETIME": _check_lifetime,
    "REFRESH_TOKEN_LIFETIME": _check_lifetime,
    "ROTATE_REFRESH_TOKENS": _check_bool,
    "AUTH_HEADER_TYPES": _check_header_types,
    "ACCESS_TOKEN_PREFIX": _check_prefix,
    "REFRESH_TOKEN_PREFIX": _check_prefix,
    "MAX_SESSIONS_PER_USER": _check_max_sessions,
    "CACHE_ALIAS": _check_cache_alias,
    "CACHE_TIMEOUT": _check_lifetime,
    "THROTTLE_RATES": _check_throttle_rates,
}


class Problem(NamedTuple):
    """One thing wrong with ``PAT_TOKENS``, with the id of the system check that reports it."""

    check_id: str
    key: str | None
    message: str
    hint: str


def find_problems(user_settings):
    """Return a :class:`Problem` for everything wrong with a ``PAT_TOKENS`` value.

    The system checks and :class:`PatTokensSettings` share this function, so both report the same
    messages.
    """
    if not isinstance(user_settings, dict):
        message = f"{SETTING_NAME} must be a dict, not {type(user_settings).__name__}."
        return [Problem("pat_tokens.E001", None, message, "Set PAT_TOKENS = {...} or remove it.")]

    problems = []
    for key in user_settings:
        if key not in DEFAULTS:
            problems.append(
                Problem(
                    "pat_tokens.E002",
                    key,
                    f"{SETTING_NAME} has the unknown key {key!r}.",
                    f"The known keys are: {', '.join(DEFAULTS)}.",
                )
            )
    for key, validate in VALIDATORS.items():
        if key in user_settings:
            message = validate(key, user_settings[key])
            if message:
                problems.append(
                    Problem(
                        "pat_tokens.E003",
                        key,
                        f"{SETTING_NAME}[{key!r}] {message}",
                        f"The default is {DEFAULTS[key]!r}.",
                    )
                )
    if problems:
        return problems

    merged = {**DEFAULTS, **user_settings}
    if merged["REFRESH_TOKEN_LIFETIME"] < merged["ACCESS_TOKEN_LIFETIME"]:
        problems.append(
            Problem(
                "pat_tokens.E004",
                "REFRESH_TOKEN_LIFETIME",
                f"{SETTING_NAME}['REFRESH_TOKEN_LIFETIME'] is shorter than "
                f"{SETTING_NAME}['ACCESS_TOKEN_LIFETIME'].",
                "An access token never outlives its refresh token, and clear_expired_tokens "
                "deletes a session once its refresh token expires. Make REFRESH_TOKEN_LIFETIME "
                "at least as long as ACCESS_TOKEN_LIFETIME.",
            )
        )
    if merged["ACCESS_TOKEN_PREFIX"] == merged["REFRESH_TOKEN_PREFIX"]:
        problems.append(
            Problem(
                "pat_tokens.E005",
                "REFRESH_TOKEN_PREFIX",
                f"{SETTING_NAME}['ACCESS_TOKEN_PREFIX'] and "
                f"{SETTING_NAME}['REFRESH_TOKEN_PREFIX'] are the same.",
                "Give the two kinds of token different prefixes, so that neither can be "
                "presented in place of the other.",
            )
        )
    return problems


class PatTokensSettings:
    """Attribute access to ``PAT_TOKENS`` merged over :data:`DEFAULTS`."""

    def __init__(self):
        self._values = None

    def __getattr__(self, name):
        if name not in DEFAULTS:
            raise AttributeError(f"{SETTING_NAME} has no setting {name!r}.")
        if self._values is None:
            self._values = self._load()
        return self._values[name]

    def _load(self):
        user_settings = getattr(settings, SETTING_NAME, {})
        problems = find_problems(user_settings)
        if problems:
            raise ImproperlyConfigured(" ".join(problem.message for problem in problems))

        values = {**DEFAULTS, **user_settings}
        values["THROTTLE_RATES"] = {**DEFAULTS["THROTTLE_RATES"], **values["THROTTLE_RATES"]}
        values["AUTH_HEADER_TYPES"] = tuple(values["AUTH_HEADER_TYPES"])
        return values

    def reload(self):
        """Forget the values read so far; the next attribute access reads them again."""
        self._values = None


pat_settings = PatTokensSettings()


@receiver(setting_changed)
def _reload_on_change(*, setting, **kwargs):
    if setting in (SETTING_NAME, "CACHES"):
        pat_settings.reload()
