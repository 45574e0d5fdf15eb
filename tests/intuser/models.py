from django.contrib.auth.models import AbstractUser
from django.db import models


class IntUser(AbstractUser):
    """A user whose integer primary key is named ``uid`` rather than ``id``."""

    uid = models.AutoField(primary_key=True)

    class Meta(AbstractUser.Meta):
        db_table = "int_users"
        swappable = "AUTH_USER_MODEL"
