"""System checks.

Ids: E001-E005 for ``PAT_TOKENS`` values (see ``conf.find_problems``), E006 for a missing
``rest_framework``, W001 for an authentication class without a challenge listed before ours, W002
for the middleware listed before Django's ``AuthenticationMiddleware``.
"""

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from .conf import SETTING_NAME, find_problems

AUTHENTICATION_CLASS = "pat_tokens.authentication.PersonalAccessTokenAuthentication"
MIDDLEWARE = "pat_tokens.middleware.PersonalAccessTokenMiddleware"
DJANGO_AUTHENTICATION_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


@register(Tags.security, "pat_tokens")
def check_settings(app_configs=None, **kwargs):
    user_settings = getattr(settings, SETTING_NAME, {})
    return [
        Error(problem.message, hint=problem.hint, obj=SETTING_NAME, id=problem.check_id)
        for problem in find_problems(user_settings)
    ]


@register("pat_tokens")
def check_rest_framework_installed(app_configs=None, **kwargs):
    if apps.is_installed("rest_framework"):
        return []
    return [
        Error(
            "'rest_framework' is not in INSTALLED_APPS.",
            hint="pat_tokens is built on Django REST framework: add 'rest_framework' to "
            "INSTALLED_APPS.",
            id="pat_tokens.E006",
        )
    ]


@register(Tags.security, "pat_tokens")
def check_authentication_class_order(app_configs=None, **kwargs):
    """Warn when a class without a challenge comes before ours in DEFAULT_AUTHENTICATION_CLASSES.

    DRF takes the ``WWW-Authenticate`` header from the first class only. When that class returns
    none, DRF returns 403 instead of 401, and clients cannot tell that their token was rejected.
    """
    from rest_framework.settings import api_settings

    classes = list(api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    names = [f"{cls.__module__}.{cls.__qualname__}" for cls in classes]
    ours = import_string(AUTHENTICATION_CLASS)
    positions = [index for index, cls in enumerate(classes) if issubclass(cls, ours)]
    if not positions or positions[0] == 0:
        return []

    first = classes[0]
    if first.authenticate_header is not ours.authenticate_header and _has_no_challenge(first):
        return [
            Warning(
                f"{names[0]} comes before {AUTHENTICATION_CLASS} in "
                "REST_FRAMEWORK['DEFAULT_AUTHENTICATION_CLASSES'] and sends no "
                "WWW-Authenticate challenge.",
                hint="DRF takes the challenge from the first class, so rejected bearer tokens "
                "get 403 instead of 401. Put PersonalAccessTokenAuthentication first.",
                id="pat_tokens.W001",
            )
        ]
    return []


def _has_no_challenge(authentication_class):
    try:
        return not authentication_class().authenticate_header(None)
    except Exception:
        # A class whose header depends on the request cannot be judged here.
        return False


@register(Tags.security, "pat_tokens")
def check_middleware_order(app_configs=None, **kwargs):
    """Warn when the bearer middleware runs before Django's AuthenticationMiddleware.

    AuthenticationMiddleware sets ``request.user`` from the session, replacing the bearer user.
    """
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE not in middleware or DJANGO_AUTHENTICATION_MIDDLEWARE not in middleware:
        return []
    if middleware.index(MIDDLEWARE) > middleware.index(DJANGO_AUTHENTICATION_MIDDLEWARE):
        return []
    return [
        Warning(
            f"{MIDDLEWARE} comes before {DJANGO_AUTHENTICATION_MIDDLEWARE} in MIDDLEWARE.",
            hint="AuthenticationMiddleware replaces the user the bearer token authenticated. "
            "Move PersonalAccessTokenMiddleware after it.",
            id="pat_tokens.W002",
        )
    ]
