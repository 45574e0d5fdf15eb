"""Parsing of the ``Authorization`` request header (RFC 6750 section 2.1, RFC 9110 section 11.4)."""

import re

from .conf import pat_settings
from .exceptions import InvalidHeader

MAX_HEADER_LENGTH = 1024

# RFC 9110 section 5.5: whitespace around a field value is not part of the value.
OPTIONAL_WHITESPACE = " \t"

# RFC 9110 section 11.1: an auth-scheme is a token, a run of visible ASCII characters.
SCHEME = re.compile(r"[!-~]*")

# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def get_bearer_token(header):
    """Return the credential of a bearer ``Authorization`` header value, or ``None``.

    Return ``None`` when there is no credential for this app: no header, an empty or blank one,
    or a scheme that is not in ``AUTH_HEADER_TYPES``. Schemes compare case-insensitively.

    Raise :class:`~pat_tokens.exceptions.InvalidHeader` when the scheme is ours but the rest is
    not ``1*SP b64token``. That covers a missing token, two or more tokens, a tab or other
    control character, and a character outside the b64token alphabet (non-ASCII included). A
    value over ``MAX_HEADER_LENGTH`` characters is also invalid.
    """
    if not header:
        return None
    header = header.strip(OPTIONAL_WHITESPACE)
    if not header:
        return None

    scheme, separator, rest = _split_scheme(header)
    accepted = {accepted.lower() for accepted in pat_settings.AUTH_HEADER_TYPES}
    if scheme.lower() not in accepted:
        return None

    if len(header) > MAX_HEADER_LENGTH:
        raise InvalidHeader()
    if separator != " ":
        raise InvalidHeader()

    token = rest.lstrip(" ")
    if not B64TOKEN.fullmatch(token):
        raise InvalidHeader()
    return token


def _split_scheme(header):
    """Split ``header`` at its first character that is not visible ASCII.

    Return ``(scheme, separator, rest)``; ``separator`` is ``""`` when the header is a bare scheme.
    """
    end = SCHEME.match(header).end()
    return header[:end], header[end : end + 1], header[end + 1 :]
