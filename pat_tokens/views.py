"""Views of the token API: obtain, refresh, revoke, and the user's sessions."""

from django.conf import settings
from django.contrib.auth import authenticate, user_logged_in
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .authentication import PersonalAccessTokenAuthentication, challenge
from .exceptions import (
    InvalidCredentials,
    RequestTooLarge,
    SessionNotFound,
    TokenInvalid,
    UnsupportedGrantType,
)
from .models import PersonalAccessToken
from .parsers import PARSER_CLASSES
from .serializers import ObtainSerializer, RefreshSerializer, SessionSerializer, token_response_data
from .throttling import throttles_for

# RFC 6749 section 5.2 error for each code the two OAuth-compatible views can return.
OAUTH_ERRORS = {
    "invalid_credentials": "invalid_grant",
    "token_invalid": "invalid_grant",
    "token_expired": "invalid_grant",
    "user_inactive": "invalid_grant",
    "unsupported_grant_type": "unsupported_grant_type",
}

# Integer primary keys fit in a signed 32-bit column (AutoField).
MAX_SESSION_ID = 2**31 - 1


def is_decimal(text):
    """Return whether ``text`` is ASCII digits only.

    ``str.isdigit()`` alone accepts other Unicode digits: ``int()`` reads U+0661 (Arabic-Indic
    digit one) as 1 and raises ``ValueError`` for U+00B2 (superscript two).
    """
    return text.isascii() and text.isdigit()


class PatTokensAPIView(APIView):
    """Base view: every error body carries a ``code``, and an oversized body gets 413."""

    parser_classes = PARSER_CLASSES
    oauth_errors = False

    def initial(self, request, *args, **kwargs):
        # DRF's parsers read the body as a stream, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE check.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        length = request.META.get("CONTENT_LENGTH") or "0"
        if limit is not None and (not is_decimal(length) or int(length) > limit):
            raise RequestTooLarge()
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, RequestDataTooBig):
            exc = RequestTooLarge()
        elif isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
            # Django would return its own HTML 400 page for these, without a code.
            exc = ParseError(str(exc))
        response = super().handle_exception(exc)

        if isinstance(response.data, dict):
            code = response.data.get("code") or getattr(exc, "default_code", "error")
            response.data["code"] = code
            if self.oauth_errors:
                response.data["error"] = OAUTH_ERRORS.get(str(code), "invalid_request")
        return response


class TokenView(PatTokensAPIView):
    """Base of the two views that issue tokens: no authentication, throttled, never cached."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    oauth_errors = True
    grant_type = None

    def get_throttles(self):
        return throttles_for(self)

    def get_authenticate_header(self, request):
        # Without an authentication class DRF would turn the 401s of these views into 403s.
        return challenge()

    def check_grant_type(self, request):
        """Return whether the body uses the OAuth form; reject other grant types."""
        data = request.data
        grant_type = data.get("grant_type") if hasattr(data, "get") else None
        if grant_type is None:
            return False
        if grant_type != self.grant_type:
            raise UnsupportedGrantType()
        return True

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        add_never_cache_headers(response)
        response["Pragma"] = "no-cache"
        return response

    def token_response(self, pair):
        return Response(token_response_data(pair))


# Error reports (DEBUG=False) hide the credentials in the body and every local variable below
# post(): the serializer, the plaintext pair and the password all pass through them.
@method_decorator(sensitive_post_parameters("password", "refresh_token"), name="dispatch")
@method_decorator(sensitive_variables(), name="post")
class ObtainTokenView(TokenView):
    """Exchange a username (the user model's ``USERNAME_FIELD``) and password for a token pair."""

    throttle_scope = "pat_tokens.obtain"
    grant_type = "password"

    def post(self, request):
        oauth = self.check_grant_type(request)
        serializer = ObtainSerializer(data=request.data, oauth_password_grant=oauth)
        serializer.is_valid(raise_exception=True)

        # ModelBackend and most third-party backends take the identifier as ``username``.
        user = authenticate(
            request._request,
            username=serializer.identifier,
            password=serializer.validated_data["password"],
        )
        if user is None or not getattr(user, "is_active", True):
            raise InvalidCredentials()

        pair = services.issue_pair(user, request=request._request)
        # Django's own receiver of this signal updates last_login.
        user_logged_in.send(sender=user.__class__, request=request._request, user=user)
        return self.token_response(pair)


@method_decorator(sensitive_post_parameters("refresh_token"), name="dispatch")
@method_decorator(sensitive_variables(), name="post")
class RefreshTokenView(TokenView):
    """Exchange a refresh token for a new access token (and a new refresh token when rotating)."""

    throttle_scope = "pat_tokens.refresh"
    grant_type = "refresh_token"

    def post(self, request):
        self.check_grant_type(request)
        serializer = RefreshSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        pair = services.refresh_pair(
            serializer.validated_data["refresh_token"], request=request._request
        )
        return self.token_response(pair)


class BearerView(PatTokensAPIView):
    """Base of the views that act on the sessions of the user the bearer token belongs to."""

    authentication_classes = (PersonalAccessTokenAuthentication,)
    permission_classes = (IsAuthenticated,)


class RevokeTokenView(BearerView):
    """Delete the session whose access token authenticated this request."""

    def post(self, request):
        if not services.revoke(request.auth, request=request._request):
            # The session was refreshed or revoked after this request was authenticated.
            raise TokenInvalid()
        return Response(status=status.HTTP_204_NO_CONTENT)


class RevokeAllTokensView(BearerView):
    """Delete every session of the authenticated user."""

    def post(self, request):
        services.revoke_all(request.user, request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionListView(BearerView):
    """List the authenticated user's sessions, newest first."""

    def get(self, request):
        sessions = PersonalAccessToken.objects.filter(user=request.user).order_by(
            "-created_at", "-pk"
        )
        serializer = SessionSerializer(sessions, many=True, context={"request": request})
        return Response(serializer.data)


class SessionDetailView(BearerView):
    """Revoke one of the authenticated user's sessions."""

    def delete(self, request, session_id):
        if not is_decimal(session_id) or not 0 < int(session_id) <= MAX_SESSION_ID:
            raise SessionNotFound()

        sessions = PersonalAccessToken.objects.filter(pk=int(session_id), user=request.user)
        if not services.revoke_sessions(sessions, request=request._request, user=request.user):
            raise SessionNotFound()
        return Response(status=status.HTTP_204_NO_CONTENT)
