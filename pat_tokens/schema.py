"""OpenAPI description of the token API for drf-spectacular.

``PatTokensConfig.ready()`` imports this module when drf-spectacular is installed. Defining the
extension classes registers them with drf-spectacular, which then:

* describes :class:`~pat_tokens.authentication.PersonalAccessTokenAuthentication` (and its
  subclasses) as the HTTP ``bearer`` security scheme ``personalAccessToken``;
* replaces each of the app's views, during schema generation only, by a subclass whose handler
  carries ``extend_schema`` with the request body, the responses and their error shapes.

``views.py`` stays free of drf-spectacular imports, so the app runs without it. The serializer
components are named ``PatTokens...`` to keep them apart from a host project's components.
drf-spectacular names enum components after their fields (``ErrorEnum``, ``TokenTypeEnum``) and
prefixes them with the component name when two fields of one name have different choices.
"""

from django.contrib.auth import get_user_model
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiViewExtension,
)
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers

from .conf import pat_settings
from .serializers import MAX_IDENTIFIER_LENGTH, MAX_PASSWORD_LENGTH, SessionSerializer

SECURITY_SCHEME_NAME = "personalAccessToken"
FORM_MEDIA_TYPES = ("application/json", "application/x-www-form-urlencoded")
OAUTH_ERRORS = ("invalid_request", "invalid_grant", "unsupported_grant_type")
TAG = "pat_tokens"


class PersonalAccessTokenScheme(OpenApiAuthenticationExtension):
    """The ``Authorization: Bearer <access token>`` scheme."""

    target_class = "pat_tokens.authentication.PersonalAccessTokenAuthentication"
    match_subclasses = True
    name = SECURITY_SCHEME_NAME

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                f"An access token (it starts with {pat_settings.ACCESS_TOKEN_PREFIX!r}) from the "
                "token endpoint, sent as `Authorization: Bearer <access token>`."
            ),
        }


class SessionSchema(OpenApiSerializerExtension):
    """Name the session component ``PatTokensSession``."""

    target_class = "pat_tokens.serializers.SessionSerializer"

    def get_name(self, auto_schema, direction):
        return "PatTokensSession"


class PatTokensErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="A message for people.")
    code = serializers.CharField(help_text="A stable code for programs.")


class PatTokensOAuthErrorSerializer(PatTokensErrorSerializer):
    error = serializers.ChoiceField(
        choices=OAUTH_ERRORS, help_text="The error code of RFC 6749 section 5.2."
    )


class PatTokensTokenResponseSerializer(serializers.Serializer):
    token_type = serializers.ChoiceField(choices=["Bearer"])
    access_token = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")
    refresh_token = serializers.CharField(
        help_text="Unchanged by a refresh when refresh token rotation is off."
    )
    refresh_expires_in = serializers.IntegerField(
        help_text="Seconds until the refresh token expires."
    )
    access_token_expires_at = serializers.DateTimeField()
    refresh_token_expires_at = serializers.DateTimeField()


class PatTokensRefreshRequestSerializer(serializers.Serializer):
    refresh_token = serializers.CharField()
    grant_type = serializers.ChoiceField(
        choices=["refresh_token"], required=False, help_text="RFC 6749 section 6 refresh grant."
    )


def _token_request_error_schema():
    """Return the 400 body of the token views: field errors or an unsupported grant type."""
    return {
        "type": "object",
        "description": (
            "Either field errors (each invalid field maps to a list of messages) with "
            '`"code": "invalid"`, or `detail` with the code `parse_error` or '
            "`unsupported_grant_type`. `error` is the RFC 6749 section 5.2 error code."
        ),
        "properties": {
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "error": {"type": "string", "enum": list(OAUTH_ERRORS)},
        },
        "required": ["code", "error"],
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    }


def _obtain_request_serializer():
    """Return the obtain request body, which depends on the user model's ``USERNAME_FIELD``.

    When ``USERNAME_FIELD`` is ``username`` the plain and the OAuth password-grant forms differ
    only by ``grant_type``; otherwise they are two shapes.
    """
    field = get_user_model().USERNAME_FIELD

    def identifier(**kwargs):
        return serializers.CharField(min_length=1, max_length=MAX_IDENTIFIER_LENGTH, **kwargs)

    grant_type = serializers.ChoiceField(
        choices=["password"],
        required=False,
        help_text="RFC 6749 section 4.3.2 password grant. With it, the identifier is `username`.",
    )
    password = serializers.CharField(
        min_length=1, max_length=MAX_PASSWORD_LENGTH, style={"input_type": "password"}
    )
    if field == "username":
        return inline_serializer(
            "PatTokensObtainRequest",
            {"username": identifier(), "password": password, "grant_type": grant_type},
        )

    credentials = inline_serializer(
        "PatTokensObtainRequest",
        {field: identifier(), "password": password},
    )
    password_grant = inline_serializer(
        "PatTokensPasswordGrantRequest",
        {
            "grant_type": serializers.ChoiceField(choices=["password"]),
            "username": identifier(help_text=f"The user's {field}."),
            "password": password,
        },
    )
    return PolymorphicProxySerializer(
        component_name="PatTokensObtainRequestForms",
        serializers=[credentials, password_grant],
        resource_type_field_name=None,
    )


def _header(name, codes, description):
    return OpenApiParameter(
        name,
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=codes,
        description=description,
    )


def _token_view_responses(unauthorized):
    oauth_error = PatTokensOAuthErrorSerializer
    return {
        200: OpenApiResponse(PatTokensTokenResponseSerializer, description="A new token pair."),
        400: OpenApiResponse(_token_request_error_schema(), description="Invalid request body."),
        401: OpenApiResponse(oauth_error, description=unauthorized),
        413: OpenApiResponse(oauth_error, description="`request_too_large`."),
        415: OpenApiResponse(oauth_error, description="`unsupported_media_type`."),
        429: OpenApiResponse(oauth_error, description="`throttled`: retry after `Retry-After`."),
    }


def _token_view_headers():
    return [
        _header("Cache-Control", [200, 400, 401, 413, 415, 429], "`no-store` among others."),
        _header("WWW-Authenticate", [401], '`Bearer realm="api"`.'),
        _header("Retry-After", [429], "Seconds until the next request is allowed."),
    ]


BEARER_UNAUTHORIZED = (
    "`not_authenticated` (no bearer token), `invalid_header`, `token_invalid`, `token_expired` "
    "or `user_inactive`. The `WWW-Authenticate` header carries the RFC 6750 challenge."
)


def _bearer_responses(success, not_found=None):
    responses = {
        **success,
        401: OpenApiResponse(PatTokensErrorSerializer, description=BEARER_UNAUTHORIZED),
    }
    if not_found is not None:
        responses[404] = OpenApiResponse(PatTokensErrorSerializer, description=not_found)
    return responses


def _bearer_headers():
    return [_header("WWW-Authenticate", [401], 'For example `Bearer realm="api"`.')]


def _with_schema(view_class, method_name, **schema):
    """Return a subclass of ``view_class`` whose ``method_name`` handler carries ``schema``.

    A subclass, so that the real view and its handler are never modified.
    """

    def handler(self, request, *args, **kwargs):
        return getattr(super(replacement, self), method_name)(request, *args, **kwargs)

    handler.__name__ = method_name
    annotated = extend_schema(tags=[TAG], **schema)(handler)
    replacement = type(view_class.__name__, (view_class,), {method_name: annotated})
    replacement.__doc__ = view_class.__doc__
    return replacement


class ObtainTokenViewSchema(OpenApiViewExtension):
    target_class = "pat_tokens.views.ObtainTokenView"

    def view_replacement(self):
        request = _obtain_request_serializer()
        return _with_schema(
            self.target_class,
            "post",
            operation_id="pat_tokens_obtain",
            summary="Obtain a token pair",
            description=(
                "Exchange the user's credentials for an access token and a refresh token. The "
                "body is JSON or form-encoded: the user model's USERNAME_FIELD and `password`, or "
                "the RFC 6749 password grant (`grant_type=password`, `username`, `password`)."
            ),
            request=dict.fromkeys(FORM_MEDIA_TYPES, request),
            responses=_token_view_responses(
                "`invalid_credentials`: wrong credentials or an inactive user."
            ),
            parameters=_token_view_headers(),
        )


class RefreshTokenViewSchema(OpenApiViewExtension):
    target_class = "pat_tokens.views.RefreshTokenView"

    def view_replacement(self):
        request = PatTokensRefreshRequestSerializer
        return _with_schema(
            self.target_class,
            "post",
            operation_id="pat_tokens_refresh",
            summary="Refresh a token pair",
            description=(
                "Exchange a refresh token for a new access token, and for a new refresh token "
                "when rotation is on (the old one then stops working). JSON or form-encoded; "
                "`grant_type=refresh_token` is accepted as in RFC 6749 section 6."
            ),
            request=dict.fromkeys(FORM_MEDIA_TYPES, request),
            responses=_token_view_responses(
                "`token_invalid` (unknown, rotated or revoked), `token_expired` or `user_inactive`."
            ),
            parameters=_token_view_headers(),
        )


class RevokeTokenViewSchema(OpenApiViewExtension):
    target_class = "pat_tokens.views.RevokeTokenView"

    def view_replacement(self):
        return _with_schema(
            self.target_class,
            "post",
            operation_id="pat_tokens_revoke",
            summary="Revoke the current session",
            description="Delete the session whose access token authenticates this request.",
            request=None,
            responses=_bearer_responses({204: OpenApiResponse(description="Revoked.")}),
            parameters=_bearer_headers(),
        )


class RevokeAllTokensViewSchema(OpenApiViewExtension):
    target_class = "pat_tokens.views.RevokeAllTokensView"

    def view_replacement(self):
        return _with_schema(
            self.target_class,
            "post",
            operation_id="pat_tokens_revoke_all",
            summary="Revoke all sessions",
            description="Delete every session of the authenticated user, this one included.",
            request=None,
            responses=_bearer_responses({204: OpenApiResponse(description="Revoked.")}),
            parameters=_bearer_headers(),
        )


class SessionListViewSchema(OpenApiViewExtension):
    target_class = "pat_tokens.views.SessionListView"

    def view_replacement(self):
        return _with_schema(
            self.target_class,
            "get",
            operation_id="pat_tokens_session_list",
            summary="List sessions",
            description=(
                "The authenticated user's sessions, newest first. `current` marks the session "
                "of this request's access token."
            ),
            responses=_bearer_responses(
                {200: OpenApiResponse(SessionSerializer(many=True), description="The sessions.")}
            ),
            parameters=_bearer_headers(),
        )


class SessionDetailViewSchema(OpenApiViewExtension):
    target_class = "pat_tokens.views.SessionDetailView"

    def view_replacement(self):
        return _with_schema(
            self.target_class,
            "delete",
            operation_id="pat_tokens_session_delete",
            summary="Revoke a session",
            description="Delete one of the authenticated user's sessions.",
            parameters=[
                OpenApiParameter(
                    "session_id",
                    OpenApiTypes.INT,
                    OpenApiParameter.PATH,
                    description="The session's `id` from the session list.",
                ),
                *_bearer_headers(),
            ],
            responses=_bearer_responses(
                {204: OpenApiResponse(description="Revoked.")},
                not_found="`not_found`: no session with this id belongs to the user.",
            ),
        )
