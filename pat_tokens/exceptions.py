"""Errors raised by the app, each with a stable ``code``.

The response body of every error below is ``{"detail": <message>, "code": <code>}``, also on a
host's own views under DRF's default exception handler: the detail is passed to DRF as a dict, and
DRF renders a dict detail as the body.
"""

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status


class _CodedErrorMixin:
    """Put ``code`` beside ``detail`` in the response body."""

    def __init__(self, detail=None, code=None):
        detail = self.default_detail if detail is None else detail
        code = self.default_code if code is None else code
        super().__init__({"detail": detail, "code": code}, code)


class BearerAuthenticationFailed(_CodedErrorMixin, exceptions.AuthenticationFailed):
    """A bearer credential was sent but cannot authenticate the request.

    ``bearer_error`` is the RFC 6750 section 3.1 error code for the ``WWW-Authenticate`` header.
    """

    bearer_error = "invalid_token"


class InvalidHeader(BearerAuthenticationFailed):
    default_detail = _(
        "Invalid Authorization header. Expected the scheme, one or more spaces and one token."
    )
    default_code = "invalid_header"
    bearer_error = "invalid_request"


class TokenInvalid(BearerAuthenticationFailed):
    default_detail = _("The token is invalid or has been revoked.")
    default_code = "token_invalid"


class TokenExpired(BearerAuthenticationFailed):
    default_detail = _("The token has expired.")
    default_code = "token_expired"


class UserInactive(BearerAuthenticationFailed):
    default_detail = _("The user account is disabled.")
    default_code = "user_inactive"


class InvalidCredentials(_CodedErrorMixin, exceptions.AuthenticationFailed):
    default_detail = _("Unable to log in with the provided credentials.")
    default_code = "invalid_credentials"


class UnsupportedGrantType(_CodedErrorMixin, exceptions.ValidationError):
    default_detail = _("This endpoint does not support the requested grant_type.")
    default_code = "unsupported_grant_type"


class RequestTooLarge(_CodedErrorMixin, exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "request_too_large"


class SessionNotFound(_CodedErrorMixin, exceptions.NotFound):
    default_detail = _("No session with this id belongs to you.")
    default_code = "not_found"
