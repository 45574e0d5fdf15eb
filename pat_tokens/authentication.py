"""DRF authentication with ``Authorization: Bearer <access token>``."""

import logging

from django.utils import timezone
from rest_framework import authentication

from . import cache, tokens
from .exceptions import BearerAuthenticationFailed, TokenExpired, TokenInvalid, UserInactive
from .headers import get_bearer_token
from .models import PersonalAccessToken

logger = logging.getLogger(__name__)

REALM = "api"
# DRF's Request passes unknown attributes through to the HttpRequest, so this is set on both.
BEARER_ERROR_ATTRIBUTE = "_pat_tokens_bearer_error"


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
    try:
        return PersonalAccessToken.objects.select_related("user").get(access_token=digest)
    except PersonalAccessToken.DoesNotExist:
        return None


def _log_failure(code, row, request):
    path = getattr(request, "path", None)
    if row is None:
        logger.info("Bearer authentication failed (%s) for %s", code, path)
    else:
        logger.info(
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
        try:
            token = get_bearer_token(request.META.get("HTTP_AUTHORIZATION"))
            if token is None:
                return None
            return authenticate_token(token, request)
        except BearerAuthenticationFailed as error:
            setattr(request, BEARER_ERROR_ATTRIBUTE, error.bearer_error)
            raise

    def authenticate_header(self, request):
        return challenge(getattr(request, BEARER_ERROR_ATTRIBUTE, None))
