import importlib.util

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PatTokensConfig(AppConfig):
    name = "pat_tokens"
    verbose_name = _("Personal access tokens")
    default_auto_field = "django.db.models.AutoField"

    def ready(self):
        from . import checks, receivers  # noqa: F401  (checks register themselves)

        receivers.connect()
        if importlib.util.find_spec("drf_spectacular") is not None:
            from . import schema  # noqa: F401  (the OpenAPI extensions register themselves)
