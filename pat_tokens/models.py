"""The ``refresh_tokens`` table: one row per login session."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .expressions import CurrentTimestamp


class PersonalAccessTokenQuerySet(models.QuerySet):
    def update(self, **kwargs):
        """Update the rows and set ``updated_at``, which ``auto_now`` alone would leave stale."""
        kwargs.setdefault("updated_at", timezone.now())
        return super().update(**kwargs)

    def bulk_update(self, objs, fields, batch_size=None):
        """Update the given fields of ``objs`` and their ``updated_at``."""
        now = timezone.now()
        for obj in objs:
            obj.updated_at = now
        fields = [*fields, "updated_at"] if "updated_at" not in fields else fields
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def expired(self, now=None):
        """Rows whose refresh token has expired, so the whole session is over."""
        return self.filter(expires_refresh_token__lte=now or timezone.now())

    def live(self, now=None):
        """Rows whose refresh token has not expired yet."""
        return self.filter(expires_refresh_token__gt=now or timezone.now())


class PersonalAccessToken(models.Model):
    """A login session: an access token and a refresh token for one user.

    The two token columns hold SHA-256 digests (see :mod:`pat_tokens.tokens`); the plaintext
    tokens are returned once, when they are issued, and never stored.
    """

    id = models.AutoField(primary_key=True)
    access_token = models.CharField(
        _("access token digest"), max_length=400, unique=True, editable=False
    )
    refresh_token = models.CharField(
        _("refresh token digest"), max_length=255, unique=True, editable=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="personal_access_tokens",
        verbose_name=_("user"),
    )
    expires_access_token = models.DateTimeField(_("access token expires at"))
    expires_refresh_token = models.DateTimeField(_("refresh token expires at"), db_index=True)
    created_at = models.DateTimeField(
        _("created at"), default=timezone.now, db_default=CurrentTimestamp(), editable=False
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=CurrentTimestamp())

    objects = PersonalAccessTokenQuerySet.as_manager()

    class Meta:
        db_table = "refresh_tokens"
        verbose_name = _("session")
        verbose_name_plural = _("sessions")

    def __str__(self):
        # Only the id and the user: a row's text ends up in admin log entries and error reports.
        owner = self.user if PersonalAccessToken.user.is_cached(self) else self.user_id
        return gettext("session %(id)s of %(user)s") % {"id": self.pk, "user": str(owner)}

    def access_expired(self, now=None):
        return (now or timezone.now()) >= self.expires_access_token

    def refresh_expired(self, now=None):
        return (now or timezone.now()) >= self.expires_refresh_token

    @property
    def state(self):
        """``"active"``, ``"access_expired"`` or ``"expired"``, as the admin shows it."""
        now = timezone.now()
        if self.refresh_expired(now):
            return "expired"
        if self.access_expired(now):
            return "access_expired"
        return "active"
