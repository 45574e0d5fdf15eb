from django.apps import AppConfig


class IntUserConfig(AppConfig):
    name = "tests.intuser"
    label = "intuser"
    default_auto_field = "django.db.models.AutoField"
