"""Signal receivers that keep the token cache in step with changes to users."""

from django.conf import settings
from django.db.models.signals import post_save, pre_delete

from . import cache


def _user_saved(sender, instance, created=False, update_fields=None, **kwargs):
    # A new user has no sessions yet. A login saves only last_login, which cannot change whether
    # a session may authenticate.
    if created:
        return
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    cache.forget_user(instance.pk)


def _user_deleted(sender, instance, **kwargs):
    # Before the delete: afterwards the cascade has removed the rows that name the digests.
    cache.forget_user(instance.pk)


def connect():
    post_save.connect(_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="pat_tokens_user")
    pre_delete.connect(
        _user_deleted, sender=settings.AUTH_USER_MODEL, dispatch_uid="pat_tokens_user"
    )
