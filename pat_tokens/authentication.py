"""DRF authentication with ``Authorization: Bearer <access token>``."""

import logging
from typing import NamedTuple

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from rest_framework import authentication

from . import cache, lookup, tokens
from .exceptions import BearerAuthenticationFailed, TokenExpired, TokenInvalid, UserInactive
from .headers import get_bearer_token

logger = logging.getLogger(__name__)

REALM = "api"
# The attribute of the Django HttpRequest that keeps the outcome of authenticate_request().
OUTCOME_ATTRIBUTE = "_pat_tokens_outcome"


class Outcome(NamedTuple):
    """The outcome of one request's bearer header: ``(user, row)``, nothing, or an error class."""

    result: tuple | None
    error: type[BearerAuthenticationFailed] | None


def authenticate_request(request):
    """Authenticate the bearer header of ``request``, a Django ``HttpRequest``, once per request.

    Return ``(user, row)``, or ``None`` when the request carries no credential for this app; raise
    a :class:`~pat_tokens.exceptions.BearerAuthenticationFailed` subclass for a bad one. The outcome
    is kept on the request, so the middleware and the DRF class together cost one lookup. Database
    errors propagate and are not kept.
    """
    outcome = getattr(request, OUTCOME_ATTRIBUTE, None)
    if outcome is None:
        outcome = _authenticate_header(request)
        setattr(request, OUTCOME_ATTRIBUTE, outcome)

    if outcome.error is not None:
        raise outcome.error()
    return outcome.result


def bearer_error(request):
    """Return the RFC 6750 error code of the bearer failure kept on ``request``, or ``None``."""
    outcome = getattr(request, OUTCOME_ATTRIBUTE, None)
    if outcome is None or outcome.error is None:
        return None
    return outcome.error.bearer_error


# Error reports (DEBUG=False) hide the plaintext token held by these two functions.
@sensitive_variables("token")
def _authenticate_header(request):
    try:
        token = get_bearer_token(request.META.get("HTTP_AUTHORIZATION"))
        if token is None:
            return Outcome(None, None)
        return Outcome(authenticate_token(token, request), None)
    except BearerAuthenticationFailed as error:
        return Outcome(None, type(error))


@sensitive_variables("token")
def authenticate_token(token, request=None):
    """Return ``(user, row)`` for a plaintext access token, or raise a bearer error.

    One query (the row joined with its user), or none when the format is wrong or the cache has
    the session. Database errors propagate: a database outage must not look like a bad token.
    """
    try:
        digest = tokens.parse(token, tokens.TokenKind.ACCESS)
    except tokens.MalformedToken:
        raise TokenInvalid() from None

    row = cache.read(digest)
    from_cache = row is not None
    if not from_cache:
        row = _fetch(digest)
        if row is None:
            _log_failure("token_invalid", None, request)
            raise TokenInvalid()

    if row.access_expired(timezone.now()):
        _log_failure("token_expired", row, request)
        raise TokenExpired()
    if not getattr(row.user, "is_active", True):
        _log_failure("user_inactive", row, request)
        raise UserInactive()

    if not from_cache:
        cache.store(row)
    return row.user, row


def _fetch(digest):
    return lookup.fetch(digest)


def _log_failure(code, row, request):
    # An unknown or revoked token, or a disabled user, is worth an operator's attention. An
    # expired token is the normal end of an access token's life.
    level = logging.INFO if code == "token_expired" else logging.WARNING
    path = getattr(request, "path", None)
    if row is None:
        logger.log(level, "Bearer authentication failed (%s) for %s", code, path)
    else:
        logger.log(
            level,
            "Bearer authentication failed (%s) for session %s of user %s on %s",
            code,
            row.pk,
            row.user_id,
            path,
        )


def challenge(error=None):
    """Return a ``WWW-Authenticate`` value as RFC 6750 section 3 writes it."""
    if error is None:
        return f'Bearer realm="{REALM}"'
    return f'Bearer realm="{REALM}", error="{error}"'


class PersonalAccessTokenAuthentication(authentication.BaseAuthentication):
    """Authenticate a request by the access token in its ``Authorization`` header.

    On success ``request.user`` is the token's user and ``request.auth`` its
    :class:`~pat_tokens.models.PersonalAccessToken` row. Requests without a bearer header are
    left to the view's other authentication classes.
    """

    def authenticate(self, request):
        return authenticate_request(_http_request(request))

    def authenticate_header(self, request):
        return challenge(bearer_error(_http_request(request)))


def _http_request(request):
    # DRF passes its Request, which wraps the HttpRequest the middleware saw.
    return getattr(request, "_request", request)
