"""Batch deletion of sessions whose refresh token has expired.

A session is expired from the instant of its refresh token's expiry on
(``expires_refresh_token <= now``), the boundary that authentication and refresh use too. Such a
row can no longer authenticate, because an access token never outlives its refresh token, so its
cached entry (if any) cannot grant access either and nothing is removed from the cache.

Each batch is:

1. ``SELECT id ... WHERE expires_refresh_token <= %s ORDER BY expires_refresh_token LIMIT n``,
   which walks the ``expires_refresh_token`` index and returns at most ``n`` primary keys;
2. in one short transaction, ``SELECT id, expires_refresh_token ... WHERE id IN (<those keys>)
   FOR UPDATE``, then ``DELETE ... WHERE id IN (<the keys still expired>)``.

The key list is sent as literal values. A sliced queryset as the ``IN`` subquery would put
``LIMIT`` inside the subquery, which MySQL and MariaDB reject (error 1235). The expiry is checked
again under the lock, so a row refreshed between the statements (by a server whose clock runs
behind) is kept. Memory holds one batch of keys at a time, and row locks last one short
transaction, so the application keeps serving while a large backlog is cleared.

No ``token_revoked`` signal is sent. Rows are deleted with ``QuerySet.delete()``, so if the
project connects ``pre_delete`` or ``post_delete`` receivers to ``PersonalAccessToken``, Django
fetches each batch's rows to send those signals. Memory then stays bounded by the batch size too.
"""

import logging

from django.db import connections, router, transaction
from django.utils import timezone

from .models import PersonalAccessToken

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000


def max_batch_size(using):
    """Return the largest batch the database ``using`` accepts, or ``None`` for no limit.

    The locking read and the ``DELETE`` of a batch each send one parameter per key. Django 5.2
    assumes 999 parameters per statement on SQLite, the limit of SQLite releases before 3.32.
    """
    return connections[using].features.max_query_params


def database_alias():
    """Return the alias of the database that the cleanup reads and writes.

    Both statements go to the database for writes: reading the keys from a lagging replica would
    find rows that the primary has deleted already.
    """
    return router.db_for_write(PersonalAccessToken)


def expired_rows(now, using):
    """Return the rows whose refresh token expired at or before ``now``."""
    return PersonalAccessToken.objects.using(using).expired(now)


def batch_keys_query(now, batch_size, using):
    """Return the query that selects the primary keys of the next batch.

    Ordering by ``expires_refresh_token`` lets the database read the batch from that column's
    index and stop after ``batch_size`` entries, instead of scanning the table.
    """
    return (
        expired_rows(now, using)
        .order_by("expires_refresh_token")
        .values_list("pk", flat=True)[:batch_size]
    )


def count_expired(now=None, using=None):
    """Return how many rows ``delete_expired`` would delete now: one ``COUNT`` query."""
    using = using or database_alias()
    return expired_rows(now or timezone.now(), using).count()


def delete_expired(batch_size=DEFAULT_BATCH_SIZE, now=None, using=None, on_batch=None):
    """Delete the rows whose refresh token expired at or before ``now``; return the count.

    ``now`` is read once, at the start, so that rows expiring during a long run cannot keep it
    going. ``on_batch(deleted, total)`` is called after each batch that deleted rows. Call this
    outside ``transaction.atomic()``: inside one, every batch would join the outer transaction
    and hold its locks until the end.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}.")

    using = using or database_alias()
    limit = max_batch_size(using)
    if limit is not None:
        batch_size = min(batch_size, limit)
    now = now or timezone.now()

    total = 0
    while True:
        keys = list(batch_keys_query(now, batch_size, using))
        if not keys:
            break

        deleted = _delete_batch(keys, now, using)
        total += deleted
        if on_batch is not None and deleted:
            on_batch(deleted, total)
        if len(keys) < batch_size:
            break

    logger.info("Deleted %d expired session(s)", total)
    return total


def _delete_batch(keys, now, using):
    """Delete the rows of ``keys`` that are still expired; return how many were deleted.

    The rows are locked and deleted by primary key alone, as refresh and revoke lock them. A
    ``DELETE`` that also filtered on ``expires_refresh_token`` let MariaDB lock entries of that
    index first, and a refresh holding one of the rows then deadlocked with it (error 1213). The
    expiry is checked again in Python, under the lock, so a row refreshed since the ``SELECT`` is
    kept.
    """
    with transaction.atomic(using=using):
        # access_token is fetched only to keep the read on the primary key: every secondary index
        # holds the id, and (expires_refresh_token, id) alone would cover the query, so MariaDB
        # would scan and lock that index instead.
        locked = (
            PersonalAccessToken.objects.using(using)
            .select_for_update()
            .filter(pk__in=keys)
            .values_list("pk", "expires_refresh_token", "access_token")
        )
        still_expired = [pk for pk, expires_at, _ in locked if expires_at <= now]
        if not still_expired:
            return 0
        deleted, _ = PersonalAccessToken.objects.using(using).filter(pk__in=still_expired).delete()
    return deleted
