"""Authentication backends that the obtain tests put in AUTHENTICATION_BACKENDS."""

from django.contrib.auth import get_user_model


class UsernameKeywordBackend:
    """A third-party style backend that takes the identifier only as ``username``."""

    calls = []

    def authenticate(self, request, username=None, password=None):
        self.calls.append(username)
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            return None
        return user if user.check_password(password) else None

    def get_user(self, user_id):
        return get_user_model()._default_manager.filter(pk=user_id).first()
