"""Token format: generation, parsing and digests.

A token is ``<prefix><body><checksum>``:

* ``prefix`` is ``ACCESS_TOKEN_PREFIX`` (``pat_``) or ``REFRESH_TOKEN_PREFIX`` (``patr_``);
* ``body`` is 256 bits from :mod:`secrets`, written as 43 base62 digits (``0-9A-Za-z``);
* ``checksum`` is the CRC32 of ``prefix + body``, written as 6 base62 digits.

With the default prefixes an access token matches ``^pat_[0-9A-Za-z]{49}$`` and a refresh token
``^patr_[0-9A-Za-z]{49}$``. The checksum lets :func:`parse` reject a truncated or mistyped token
without a database query, and lets secret scanners tell a real token from random text. The
database keeps only :func:`digest` of a token.
"""

import enum
import hashlib
import re
import secrets
import zlib

from .conf import pat_settings

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 43  # 62**43 > 2**256, so 43 digits hold 256 random bits.
CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so 6 digits hold a CRC32.
RANDOM_BITS = 256

# The body and checksum. Explicit ranges match ASCII only, unlike \w or str.isalnum().
_DIGITS = re.compile(rf"[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}")


class TokenKind(enum.Enum):
    ACCESS = "access"
    REFRESH = "refresh"

    @property
    def prefix(self):
        if self is TokenKind.ACCESS:
            return pat_settings.ACCESS_TOKEN_PREFIX
        return pat_settings.REFRESH_TOKEN_PREFIX


class MalformedToken(ValueError):
    """A string that is not a well-formed token of the expected kind.

    The message names the problem but never contains the string itself.
    """


def _encode_base62(number, length):
    digits = []
    for _ in range(length):
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    if number:
        raise ValueError("number does not fit in the requested number of digits")
    return "".join(reversed(digits))


def _checksum(text):
    return _encode_base62(zlib.crc32(text.encode("ascii")), CHECKSUM_LENGTH)


def generate(kind):
    """Return a new random token of ``kind`` in plaintext."""
    prefix = kind.prefix
    body = _encode_base62(secrets.randbits(RANDOM_BITS), BODY_LENGTH)
    return prefix + body + _checksum(prefix + body)


def token_length(kind):
    return len(kind.prefix) + BODY_LENGTH + CHECKSUM_LENGTH


def parse(token, kind):
    """Check the format and checksum of ``token`` and return its digest.

    Raise :class:`MalformedToken` for anything that cannot be a token of ``kind``: a non-string,
    the wrong prefix or length, a character outside the alphabet, or a checksum that does not
    match. No database query is made either way.
    """
    if not isinstance(token, str):
        raise MalformedToken("A token must be a string.")

    prefix = kind.prefix
    if len(token) != len(prefix) + BODY_LENGTH + CHECKSUM_LENGTH or not token.startswith(prefix):
        raise MalformedToken(f"Not a {kind.value} token: wrong prefix or length.")

    rest = token[len(prefix) :]
    if not _DIGITS.fullmatch(rest):
        raise MalformedToken(f"Not a {kind.value} token: character outside the token alphabet.")

    body, checksum = rest[:BODY_LENGTH], rest[BODY_LENGTH:]
    if not secrets.compare_digest(_checksum(prefix + body), checksum):
        raise MalformedToken(f"Not a {kind.value} token: the checksum does not match.")

    return digest(token)


def digest(token):
    """Return the SHA-256 digest of ``token`` as 64 lowercase hexadecimal characters."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def regex(kind):
    """Return a regular expression that matches a whole token of ``kind`` under current settings."""
    return rf"^{kind.prefix}[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}$"
