"""The optional cache of authenticated sessions (``CACHE_ALIAS``).

An entry maps an access token digest to its row, with the user joined, for at most
``CACHE_TIMEOUT`` and never past the access token's expiry. A hit costs one cache read and no
query.

Ending a session's cached access (revoke, refresh, a change to or deletion of its user) writes a
*tombstone* for its digest and then deletes the entry. A lookup that missed the cache stores the
row it read from the database and then reads the tombstone. When there is one, it deletes the entry
it just stored. Whichever order the two sides run in, a session ended after the lookup's query
cannot stay cached: either the deletion removes the new entry or the lookup reads the tombstone.

Every cache call is guarded: when the backend fails, the error is logged and the caller carries on
as if the cache were empty, so authentication falls back to the database.
"""

import logging
import threading
import time

from django.core.cache import caches
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone

from .conf import pat_settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "pat_tokens"
# A tombstone must outlive any entry stored by a lookup that began before it was written.
TOMBSTONE_EXTRA_SECONDS = 60

# (cache alias, digest) pairs whose invalidation failed, each with the time.monotonic() instant
# after which no entry stored before the failure can remain. This process reads none of them from
# that cache, and it sends their invalidation again once the cache responds: a cache that was
# unreachable, not empty, may come back with the entries of sessions ended meanwhile.
_unforgotten = {}
_unforgotten_lock = threading.Lock()


@receiver(setting_changed)
def _forget_unforgotten_on_change(*, setting, **kwargs):
    # Other caches or settings (as in tests): the pending invalidations no longer apply.
    if setting in ("CACHES", "PAT_TOKENS"):
        with _unforgotten_lock:
            _unforgotten.clear()


def get_cache():
    """Return the configured cache, or ``None`` when ``CACHE_ALIAS`` is not set."""
    alias = pat_settings.CACHE_ALIAS
    if alias is None:
        return None
    return caches[alias]


def _entry_key(digest):
    return f"{KEY_PREFIX}:session:{digest}"


def _tombstone_key(digest):
    return f"{KEY_PREFIX}:ended:{digest}"


def _describe(error, digests):
    """Return ``error`` as text for a log line, with any of ``digests`` (keys name them) cut out."""
    text = str(error)
    for digest in digests:
        text = text.replace(digest, "<digest>")
    return f"{type(error).__name__}: {text}"


def _warn(action, error, digests):
    logger.warning(
        "Token cache %s failed, using the database instead: %s",
        action,
        _describe(error, digests),
    )


def read(digest):
    """Return the cached row for an access digest, or ``None`` (also when the backend fails)."""
    alias = pat_settings.CACHE_ALIAS
    if alias is None or _is_unforgotten(alias, digest):
        return None
    try:
        cache = get_cache()
        row = cache.get(_entry_key(digest))
    except Exception as error:
        # Any backend, any error: a cache must never be the reason a request fails.
        _warn("read", error, [digest])
        return None
    _retry_invalidation(alias, cache)
    return row


def store(token):
    """Cache ``token``, a row read from the database with its user joined."""
    if pat_settings.CACHE_ALIAS is None:
        return

    remaining = (token.expires_access_token - timezone.now()).total_seconds()
    timeout = min(pat_settings.CACHE_TIMEOUT.total_seconds(), remaining)
    if timeout <= 0:
        return

    digest = token.access_token
    key = _entry_key(digest)
    try:
        cache = get_cache()
        cache.set(key, token, timeout=timeout)
        if cache.get(_tombstone_key(digest)) is not None:
            cache.delete(key)
    except Exception as error:
        _warn("write", error, [digest])
        _delete_quietly(key, digest)


def forget(digests):
    """End cached access for the given access digests, in every process sharing the cache."""
    if pat_settings.CACHE_ALIAS is None or not digests:
        return

    try:
        _invalidate(get_cache(), digests)
    except Exception as error:
        _remember_unforgotten(pat_settings.CACHE_ALIAS, digests)
        logger.error(
            "Token cache invalidation of %d session(s) failed; this process skips their entries "
            "and retries when the cache responds, other processes may read them for up to %s: %s",
            len(digests),
            pat_settings.CACHE_TIMEOUT,
            _describe(error, digests),
        )


def _invalidate(cache, digests):
    timeout = pat_settings.CACHE_TIMEOUT.total_seconds() * 2 + TOMBSTONE_EXTRA_SECONDS
    cache.set_many({_tombstone_key(digest): True for digest in digests}, timeout=timeout)
    cache.delete_many([_entry_key(digest) for digest in digests])


def _remember_unforgotten(alias, digests):
    now = time.monotonic()
    deadline = now + pat_settings.CACHE_TIMEOUT.total_seconds()
    with _unforgotten_lock:
        for key in [key for key, until in _unforgotten.items() if until <= now]:
            del _unforgotten[key]
        _unforgotten.update(dict.fromkeys(((alias, digest) for digest in digests), deadline))


def _is_unforgotten(alias, digest):
    with _unforgotten_lock:
        deadline = _unforgotten.get((alias, digest))
        if deadline is not None and deadline <= time.monotonic():
            del _unforgotten[alias, digest]
            return False
        return deadline is not None


def _retry_invalidation(alias, cache):
    """Send the failed invalidations for ``alias`` again, now that its cache read succeeded."""
    if not _unforgotten:
        return
    with _unforgotten_lock:
        pending = [digest for pending_alias, digest in _unforgotten if pending_alias == alias]
    if not pending:
        return
    try:
        _invalidate(cache, pending)
    except Exception as error:
        _warn("invalidation retry", error, pending)
        return
    with _unforgotten_lock:
        for digest in pending:
            _unforgotten.pop((alias, digest), None)
    logger.info("Token cache invalidation of %d session(s) sent again", len(pending))


def forget_user(user_pk):
    """End cached access for every session of a user."""
    from .models import PersonalAccessToken

    if pat_settings.CACHE_ALIAS is None:
        return
    digests = list(
        PersonalAccessToken.objects.filter(user_id=user_pk).values_list("access_token", flat=True)
    )
    forget(digests)


def _delete_quietly(key, digest):
    try:
        get_cache().delete(key)
    except Exception as error:
        _warn("delete", error, [digest])
