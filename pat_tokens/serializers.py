"""Request and response shapes of the token API."""

from datetime import timezone as dt_timezone

from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework import serializers

from .models import PersonalAccessToken

MAX_PASSWORD_LENGTH = 4096
MAX_IDENTIFIER_LENGTH = 254


class ObtainSerializer(serializers.Serializer):
    """Credentials for a new session: the user model's ``USERNAME_FIELD`` and ``password``.

    With ``oauth_password_grant=True`` the identifier is read from ``username`` instead, as RFC 6749
    section 4.3.2 names it, whatever the user model calls the field.
    """

    password = serializers.CharField(
        max_length=MAX_PASSWORD_LENGTH, trim_whitespace=False, style={"input_type": "password"}
    )

    def __init__(self, *args, oauth_password_grant=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.identifier_field = (
            "username" if oauth_password_grant else get_user_model().USERNAME_FIELD
        )
        self.fields[self.identifier_field] = serializers.CharField(max_length=MAX_IDENTIFIER_LENGTH)

    @property
    def identifier(self):
        return self.validated_data[self.identifier_field]


class RefreshSerializer(serializers.Serializer):
    refresh_token = serializers.CharField()


class SessionSerializer(serializers.ModelSerializer):
    """One of the user's sessions, without any token material."""

    current = serializers.SerializerMethodField()

    class Meta:
        model = PersonalAccessToken
        fields = (
            "id",
            "created_at",
            "updated_at",
            "expires_access_token",
            "expires_refresh_token",
            "current",
        )
        read_only_fields = fields

    def get_current(self, obj) -> bool:
        auth = getattr(self.context.get("request"), "auth", None)
        return isinstance(auth, PersonalAccessToken) and auth.pk == obj.pk


def _isoformat(value):
    if timezone.is_aware(value):
        value = value.astimezone(dt_timezone.utc)
    return value.isoformat()


def _seconds_until(moment, now):
    return max(0, round((moment - now).total_seconds()))


def token_response_data(pair):
    """Return the body of a token response, shaped after RFC 6749 section 5.1."""
    now = timezone.now()
    return {
        "token_type": "Bearer",
        "access_token": pair.access_token,
        "expires_in": _seconds_until(pair.access_expires_at, now),
        "refresh_token": pair.refresh_token,
        "refresh_expires_in": _seconds_until(pair.refresh_expires_at, now),
        "access_token_expires_at": _isoformat(pair.access_expires_at),
        "refresh_token_expires_at": _isoformat(pair.refresh_expires_at),
    }
