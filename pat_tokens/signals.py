"""Signals sent when sessions are issued, refreshed and revoked.

Every signal is sent with ``sender=PersonalAccessToken`` and the keyword arguments ``user`` and
``request`` (``None`` outside a request). ``token_issued`` and ``token_refreshed`` add ``token``,
the row concerned; ``token_revoked`` adds ``tokens``, a list of the rows deleted (their ``pk`` is
kept). No signal carries token plaintext.

``token_revoked`` is sent by the API, the admin and ``MAX_SESSIONS_PER_USER`` eviction. It is not
sent for rows deleted by a cascade from their user or by ``clear_expired_tokens``.
"""

from django.dispatch import Signal

token_issued = Signal()
token_refreshed = Signal()
token_revoked = Signal()
