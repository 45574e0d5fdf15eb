"""Issuing, refreshing and revoking sessions.

The views, the admin and the management commands all go through these functions, so the rules
(lifetimes, rotation, session limits, signals, cache invalidation, logging) live in one place.
"""

import dataclasses
import logging
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import router, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import cache, tokens
from .conf import pat_settings
from .exceptions import TokenExpired, TokenInvalid, UserInactive
from .models import PersonalAccessToken
from .signals import token_issued, token_refreshed, token_revoked

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class IssuedPair:
    """A session row with the plaintext of its tokens, as they exist only once.

    After a refresh with ``ROTATE_REFRESH_TOKENS`` off, ``refresh_token`` is the token the client
    presented, which stays valid.
    """

    token: PersonalAccessToken
    access_token: str
    refresh_token: str

    def __repr__(self):
        return f"<IssuedPair for {self.token!r}>"

    @property
    def access_expires_at(self) -> datetime:
        return self.token.expires_access_token

    @property
    def refresh_expires_at(self) -> datetime:
        return self.token.expires_refresh_token


def _expiries(now, refresh_expires_at=None):
    if refresh_expires_at is None:
        refresh_expires_at = now + pat_settings.REFRESH_TOKEN_LIFETIME
    access_expires_at = min(now + pat_settings.ACCESS_TOKEN_LIFETIME, refresh_expires_at)
    return access_expires_at, refresh_expires_at


# Error reports (DEBUG=False) hide the plaintext tokens held by the two functions below; the
# admin and the management commands call them outside the views' own protection.
@sensitive_variables("access_token", "refresh_token")
def issue_pair(user, request=None):
    """Create a session for ``user`` and return it with its plaintext tokens.

    With ``MAX_SESSIONS_PER_USER`` set, the user's row is locked (``SELECT ... FOR UPDATE``) so that
    concurrent logins of one user take turns, and the oldest sessions beyond the limit are deleted.
    """
    access_token = tokens.generate(tokens.TokenKind.ACCESS)
    refresh_token = tokens.generate(tokens.TokenKind.REFRESH)

    limit = pat_settings.MAX_SESSIONS_PER_USER
    with transaction.atomic(using=_write_alias()):
        if limit is not None:
            _lock_user(user)
        # Read the clock after the lock: a login that waited must not look older than the one
        # it waited for, or the eviction below would delete the session it is about to return.
        now = timezone.now()
        expires_access, expires_refresh = _expiries(now)
        row = PersonalAccessToken.objects.create(
            user=user,
            access_token=tokens.digest(access_token),
            refresh_token=tokens.digest(refresh_token),
            expires_access_token=expires_access,
            expires_refresh_token=expires_refresh,
            created_at=now,
        )
        evicted = _evict_beyond(user, limit) if limit is not None else []

    logger.info("Issued session %s for user %s", row.pk, user.pk)
    if evicted:
        _after_revoke(user, evicted, request, reason="session limit")
    token_issued.send(sender=PersonalAccessToken, user=user, token=row, request=request)
    return IssuedPair(token=row, access_token=access_token, refresh_token=refresh_token)


def _write_alias():
    """Return the database alias that writes to ``refresh_tokens``, as the routers choose it."""
    return router.db_for_write(PersonalAccessToken)


def _lock_user(user):
    user_model = get_user_model()
    list(user_model._default_manager.select_for_update().filter(pk=user.pk).values_list("pk"))


def _evict_beyond(user, limit):
    newest_first = PersonalAccessToken.objects.filter(user=user).order_by("-created_at", "-pk")
    pks = list(newest_first.values_list("pk", flat=True)[limit:])
    if not pks:
        return []
    # The rows are read again under a lock, by primary key as revoking does: a refresh that
    # committed after the first read has replaced the access digest, and the cache entry to end
    # is that of the new digest.
    evicted = list(PersonalAccessToken.objects.filter(pk__in=pks).select_for_update())
    PersonalAccessToken.objects.filter(pk__in=[row.pk for row in evicted]).delete()
    return evicted


@sensitive_variables("refresh_token", "new_access", "new_refresh")
def refresh_pair(refresh_token, request=None):
    """Give the session of ``refresh_token`` a new access token and return the new pair.

    The row is updated under a row lock, and only if it still has the refresh digest that was
    presented (see :func:`_update_session`). With rotation on, of several concurrent refreshes
    with one refresh token exactly one finds it there; the others raise :class:`TokenInvalid`.
    With ``ROTATE_REFRESH_TOKENS`` off the refresh token and its expiry stay as they are, so
    concurrent refreshes all succeed one after the other, and only the access token written last
    keeps working.
    """
    try:
        old_digest = tokens.parse(refresh_token, tokens.TokenKind.REFRESH)
    except tokens.MalformedToken:
        raise TokenInvalid() from None

    row = (
        PersonalAccessToken.objects.select_related("user").filter(refresh_token=old_digest).first()
    )
    now = timezone.now()
    if row is None:
        # Reusing a rotated refresh token is the usual sign of a stolen one.
        logger.warning("Refresh failed (token_invalid)")
        raise TokenInvalid()
    if row.refresh_expired(now):
        logger.info("Refresh failed (token_expired) for session %s of user %s", row.pk, row.user_id)
        raise TokenExpired()
    if not getattr(row.user, "is_active", True):
        logger.warning(
            "Refresh failed (user_inactive) for session %s of user %s", row.pk, row.user_id
        )
        raise UserInactive()

    rotate = pat_settings.ROTATE_REFRESH_TOKENS
    new_access = tokens.generate(tokens.TokenKind.ACCESS)
    new_refresh = tokens.generate(tokens.TokenKind.REFRESH) if rotate else refresh_token
    expires_access, expires_refresh = _expiries(now, None if rotate else row.expires_refresh_token)

    changes = {
        "access_token": tokens.digest(new_access),
        "expires_access_token": expires_access,
        "updated_at": now,
    }
    if rotate:
        changes["refresh_token"] = tokens.digest(new_refresh)
        changes["expires_refresh_token"] = expires_refresh
    won, replaced_access_digest = _update_session(row.pk, old_digest, now, changes)
    if not won:
        logger.info("Refresh lost a race for session %s of user %s", row.pk, row.user_id)
        raise TokenInvalid()

    for field, value in changes.items():
        setattr(row, field, value)
    cache.forget([replaced_access_digest])

    logger.info("Refreshed session %s of user %s", row.pk, row.user_id)
    token_refreshed.send(sender=PersonalAccessToken, user=row.user, token=row, request=request)
    return IssuedPair(token=row, access_token=new_access, refresh_token=new_refresh)


def _update_session(pk, refresh_digest, now, changes):
    """Apply ``changes`` to session ``pk`` if it still has ``refresh_digest`` and has not expired.

    Return ``(updated, the access digest replaced)``. The row is locked with ``SELECT ... FOR
    UPDATE`` and compared in Python, so a refresh waiting for the lock reads what the one before it
    wrote. With rotation it finds another refresh digest and loses. Without rotation it reads the
    access digest it replaces and can end that token's cache entry.

    Every statement here finds the row by primary key alone, as :func:`revoke` does. A
    conditional ``UPDATE ... WHERE id = %s AND refresh_token = %s AND expires_refresh_token > %s``
    let MariaDB 10.11 lock entries of the ``expires_refresh_token`` index before the row, and a
    revoke holding the row then deadlocked with it (error 1213).
    """
    with transaction.atomic(using=_write_alias()):
        locked = (
            PersonalAccessToken.objects.select_for_update()
            .filter(pk=pk)
            .values_list("access_token", "refresh_token", "expires_refresh_token")
            .first()
        )
        if locked is None:
            return False, None
        access_digest, stored_refresh_digest, refresh_expires_at = locked
        if stored_refresh_digest != refresh_digest or refresh_expires_at <= now:
            return False, None
        PersonalAccessToken.objects.filter(pk=pk).update(**changes)
    return True, access_digest


def revoke(token, request=None):
    """Delete the session ``token`` (a row) if it still has the access token it was read with.

    Return ``False`` when the row was refreshed or deleted meanwhile, so that a revoke racing a
    refresh never deletes the session the refresh just renewed.
    """
    # Lock by primary key alone, as a refresh does (see _update_session): locking through the
    # expiry index as well let the two deadlock on MariaDB.
    with transaction.atomic(using=_write_alias()):
        current_access_digest = (
            PersonalAccessToken.objects.select_for_update()
            .filter(pk=token.pk)
            .values_list("access_token", flat=True)
            .first()
        )
        if current_access_digest != token.access_token:
            return False
        PersonalAccessToken.objects.filter(pk=token.pk).delete()
    _after_revoke(token.user, [token], request, reason="revoke")
    return True


def revoke_all(user, request=None):
    """Delete every session of ``user``; return how many were deleted."""
    return revoke_sessions(PersonalAccessToken.objects.filter(user=user), request, user=user)


def revoke_sessions(queryset, request=None, user=None):
    """Delete the sessions in ``queryset``; return how many were deleted.

    ``token_revoked`` is sent once per user concerned.
    """
    # The rows are locked so that a refresh cannot swap an access digest between the read and the
    # delete. The cache entries of the digests read here are then exactly the ones to end.
    pks = list(queryset.values_list("pk", flat=True))
    with transaction.atomic(using=_write_alias()):
        rows = list(PersonalAccessToken.objects.filter(pk__in=pks).select_for_update())
        PersonalAccessToken.objects.filter(pk__in=[row.pk for row in rows]).delete()

    by_user = {}
    for row in rows:
        by_user.setdefault(row.user_id, []).append(row)
    users = {user.pk: user} if user is not None else _users_by_pk(by_user)
    for user_pk, user_rows in by_user.items():
        _after_revoke(users[user_pk], user_rows, request, reason="revoke")
    return len(rows)


def _users_by_pk(pks):
    return get_user_model()._default_manager.in_bulk(list(pks))


def _after_revoke(user, rows, request, reason):
    cache.forget([row.access_token for row in rows])
    logger.info(
        "Revoked session(s) %s of user %s (%s)",
        ", ".join(str(row.pk) for row in rows),
        user.pk,
        reason,
    )
    token_revoked.send(sender=PersonalAccessToken, user=user, tokens=rows, request=request)
