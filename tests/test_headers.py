"""The ``Authorization`` header: syntax rules, status codes, challenges and query counts.

Every case runs against ``/api/me/`` (the DRF class) and ``/plain/me/`` (the middleware in front
of a plain Django view). A malformed header or a string that cannot be a token must be rejected
without a database query. A header that is absent, empty or of another scheme is no credential.
"""

import pytest
from django.db import connection
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.request import Request

from pat_tokens import tokens
from pat_tokens.authentication import PersonalAccessTokenAuthentication
from pat_tokens.exceptions import BearerAuthenticationFailed, InvalidHeader, TokenInvalid
from pat_tokens.headers import B64TOKEN, MAX_HEADER_LENGTH, get_bearer_token

DRF_PATH = "/api/me/"
PLAIN_PATH = "/plain/me/"
NOT_PROVIDED = "Authentication credentials were not provided."
INVALID_HEADER_BODY = {"detail": str(InvalidHeader.default_detail), "code": "invalid_header"}
TOKEN_INVALID_BODY = {"detail": str(TokenInvalid.default_detail), "code": "token_invalid"}


def request_with(client, path, header):
    """GET ``path`` with ``header`` as the Authorization value (``None``: no header)."""
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, **extra)
    return response, len(queries.captured_queries)


def assert_no_credential(response, path):
    """Check the response to a request that carries no credential for this app."""
    assert response.status_code == 401
    if path == DRF_PATH:
        # DRF's own response: its body has no code, its challenge no error.
        assert response.json() == {"detail": NOT_PROVIDED}
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    else:
        # The middleware leaves the request alone; the plain view sends its own 401.
        assert response.json() == {"detail": NOT_PROVIDED}
        assert "WWW-Authenticate" not in response


def assert_invalid_header(response):
    assert response.status_code == 401
    assert response.json() == INVALID_HEADER_BODY
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_request"'


def assert_token_invalid(response):
    assert response.status_code == 401
    assert response.json() == TOKEN_INVALID_BODY
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


def assert_alice(response):
    assert response.status_code == 200, response.content
    assert response.json()["username"] == "alice"


def flip_case_in_body(token):
    """Return ``token`` with the case of the first letter after its prefix flipped."""
    prefix = tokens.TokenKind.ACCESS.prefix
    for index in range(len(prefix), len(token)):
        if token[index].isalpha():
            return token[:index] + token[index].swapcase() + token[index + 1 :]
    raise AssertionError("a 49-digit base62 body without a letter")


@pytest.fixture(params=[DRF_PATH, PLAIN_PATH])
def path(request):
    return request.param


# Empty values and schemes without a credential.


@pytest.mark.parametrize("header", [None, "", "   ", "\t", " \t "])
def test_absent_or_blank_header_is_no_credential(api_client, pair, path, header):
    response, queries = request_with(api_client, path, header)

    assert_no_credential(response, path)
    assert queries == 0


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer    ", "bearer", " Bearer "])
def test_scheme_without_token_is_invalid_header(api_client, pair, path, header):
    response, queries = request_with(api_client, path, header)

    assert_invalid_header(response)
    assert queries == 0


def test_two_tokens_are_invalid_header(api_client, pair, path):
    response, queries = request_with(
        api_client, path, f"Bearer {pair.access_token} {pair.access_token}"
    )

    assert_invalid_header(response)
    assert queries == 0


def test_valid_token_authenticates_with_one_query(api_client, pair, path):
    response, queries = request_with(api_client, path, f"Bearer {pair.access_token}")

    assert_alice(response)
    assert queries == 1


# Scheme case and spacing.


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_scheme_is_case_insensitive(api_client, pair, path, scheme):
    response, queries = request_with(api_client, path, f"{scheme} {pair.access_token}")

    assert_alice(response)
    assert queries == 1


@pytest.mark.parametrize("spaces", ["  ", "     "])
def test_several_spaces_after_scheme(api_client, pair, path, spaces):
    response, queries = request_with(api_client, path, f"Bearer{spaces}{pair.access_token}")

    assert_alice(response)
    assert queries == 1


@pytest.mark.parametrize("template", [" Bearer {}", "Bearer {} ", "\tBearer {}\t", "  Bearer {}  "])
def test_whitespace_around_value_is_ignored(api_client, pair, path, template):
    response, queries = request_with(api_client, path, template.format(pair.access_token))

    assert_alice(response)
    assert queries == 1


@pytest.mark.parametrize("separator", ["\t", " \t", "\t ", "\x0b", "\x0c", "\xa0"])
def test_separator_other_than_space_is_invalid_header(api_client, pair, path, separator):
    response, queries = request_with(api_client, path, f"Bearer{separator}{pair.access_token}")

    assert_invalid_header(response)
    assert queries == 0


def test_other_scheme_is_no_credential(api_client, pair, path):
    response, queries = request_with(api_client, path, f"Token {pair.access_token}")

    assert_no_credential(response, path)
    assert queries == 0


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Digest username=alice", "Bearerx y"])
def test_foreign_schemes_are_no_credential(api_client, pair, path, header):
    response, queries = request_with(api_client, path, header)

    assert_no_credential(response, path)
    assert queries == 0


# Strings that cannot be tokens: rejected by format and checksum, before any query.


def test_flipped_letter_case_is_token_invalid(api_client, pair, path):
    response, queries = request_with(
        api_client, path, f"Bearer {flip_case_in_body(pair.access_token)}"
    )

    assert_token_invalid(response)
    assert queries == 0


def test_uppercased_token_is_token_invalid(api_client, pair, path):
    response, queries = request_with(api_client, path, f"Bearer {pair.access_token.upper()}")

    assert_token_invalid(response)
    assert queries == 0


def test_refresh_token_in_access_slot_is_token_invalid(api_client, pair, path):
    response, queries = request_with(api_client, path, f"Bearer {pair.refresh_token}")

    assert_token_invalid(response)
    assert queries == 0


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda token: token[:-1], id="truncated"),
        pytest.param(lambda token: token + "A", id="one-too-long"),
        pytest.param(lambda token: "tap_" + token[4:], id="wrong-prefix"),
        pytest.param(lambda token: token[4:], id="no-prefix"),
        pytest.param(lambda token: token[:-6] + "000000", id="bad-checksum"),
        pytest.param(lambda token: token[:10] + "-" + token[11:], id="dash-in-body"),
        pytest.param(lambda token: token + "==", id="b64-padding"),
        pytest.param(lambda token: "x", id="one-character"),
    ],
)
def test_malformed_token_is_token_invalid(api_client, pair, path, mangle):
    response, queries = request_with(api_client, path, f"Bearer {mangle(pair.access_token)}")

    assert_token_invalid(response)
    assert queries == 0


@pytest.mark.parametrize("character", [",", '"', ";", "=", "(", "@", "\\"])
def test_character_outside_b64token_is_invalid_header(api_client, pair, path, character):
    token = pair.access_token
    response, queries = request_with(
        api_client, path, f"Bearer {token[:20]}{character}{token[20:]}"
    )

    assert_invalid_header(response)
    assert queries == 0


def test_auth_params_instead_of_token_are_invalid_header(api_client, pair, path):
    response, queries = request_with(api_client, path, 'Bearer realm="api", token="x"')

    assert_invalid_header(response)
    assert queries == 0


# Bytes outside visible ASCII. WSGI servers hand over header bytes decoded as latin-1.


def latin1(raw):
    return raw.decode("latin-1")


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda token: latin1(b"Bearer " + token.encode() + b"\xb8"), id="0xb8-at-end"),
        pytest.param(
            lambda token: latin1(
                b"Bearer " + token[:20].encode() + "é".encode() + token[20:].encode()
            ),
            id="utf8-e-acute",
        ),
        pytest.param(lambda token: f"Bearer {token[:20]}\x00{token[20:]}", id="nul"),
        pytest.param(lambda token: f"Bearer {token[:20]}\x1f{token[20:]}", id="unit-separator"),
        pytest.param(lambda token: f"Bearer {token[:20]}\x7f{token[20:]}", id="del"),
        pytest.param(lambda token: f"Bearer {token}\r\n", id="crlf-at-end"),
        pytest.param(lambda token: f"Bearer {token}\x00", id="nul-at-end"),
        pytest.param(lambda token: f"Bearer {token}€", id="euro-sign"),
        pytest.param(lambda token: f"Bearer €{token}", id="euro-sign-first"),
    ],
)
def test_non_visible_ascii_is_invalid_header(api_client, pair, path, make_header):
    response, queries = request_with(api_client, path, make_header(pair.access_token))

    assert_invalid_header(response)
    assert queries == 0


def test_non_ascii_scheme_is_no_credential(api_client, pair, path):
    # A Cyrillic "ie" (U+0435) in place of the Latin "e": not our scheme, so not our credential.
    response, queries = request_with(api_client, path, f"B\u0435arer {pair.access_token}")

    assert_no_credential(response, path)
    assert queries == 0


@pytest.mark.parametrize("raw", [b"Bearer \xff\xfe", b"\xb8", b"Bearer\xb8", b"\x80Bearer x"])
def test_latin1_bytes_through_request_factory(db, raw):
    """Call the DRF class directly on a request built by RequestFactory, as a WSGI server would."""
    request = Request(RequestFactory().get(DRF_PATH, HTTP_AUTHORIZATION=latin1(raw)))

    with CaptureQueriesContext(connection) as queries:
        try:
            result = PersonalAccessTokenAuthentication().authenticate(request)
        except InvalidHeader:
            result = "invalid_header"

    expected = "invalid_header" if raw.lower().startswith(b"bearer") else None
    assert result == expected
    assert len(queries.captured_queries) == 0


# Length limit.


def test_header_at_length_limit_is_parsed(api_client, pair, path):
    header = "Bearer " + "A" * (MAX_HEADER_LENGTH - len("Bearer "))
    assert len(header) == MAX_HEADER_LENGTH

    response, queries = request_with(api_client, path, header)

    # Well-formed, so the header passes; the value is not a token.
    assert_token_invalid(response)
    assert queries == 0


def test_header_over_length_limit_is_invalid_header(api_client, pair, path):
    header = "Bearer " + "A" * (MAX_HEADER_LENGTH + 1 - len("Bearer "))

    response, queries = request_with(api_client, path, header)

    assert_invalid_header(response)
    assert queries == 0


def test_long_header_of_other_scheme_is_no_credential(api_client, pair, path):
    response, queries = request_with(api_client, path, "Basic " + "A" * 5000)

    assert_no_credential(response, path)
    assert queries == 0


def test_surrounding_whitespace_does_not_count_toward_limit(api_client, pair, path):
    header = " " * MAX_HEADER_LENGTH + f"Bearer {pair.access_token}" + " " * MAX_HEADER_LENGTH

    response, queries = request_with(api_client, path, header)

    assert_alice(response)
    assert queries == 1


# AUTH_HEADER_TYPES, read when used.


def test_extra_header_type_with_settings_fixture(api_client, pair, path, settings):
    settings.PAT_TOKENS = {"AUTH_HEADER_TYPES": ("Bearer", "Token")}

    for scheme in ("Token", "token", "Bearer"):
        response, queries = request_with(api_client, path, f"{scheme} {pair.access_token}")
        assert_alice(response)
        assert queries == 1

    response, queries = request_with(api_client, path, "Token")
    assert_invalid_header(response)
    assert queries == 0


def test_header_types_override_is_restored(api_client, pair, path):
    with override_settings(PAT_TOKENS={"AUTH_HEADER_TYPES": ("Token",)}):
        response, _ = request_with(api_client, path, f"Token {pair.access_token}")
        assert_alice(response)
        response, queries = request_with(api_client, path, f"Bearer {pair.access_token}")
        assert_no_credential(response, path)
        assert queries == 0

    response, queries = request_with(api_client, path, f"Token {pair.access_token}")
    assert_no_credential(response, path)
    assert queries == 0
    response, _ = request_with(api_client, path, f"Bearer {pair.access_token}")
    assert_alice(response)


# get_bearer_token on its own.


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("Basic abc", None),
        ("Bearer abc", "abc"),
        ("bearer   abc", "abc"),
        (" Bearer abc\t", "abc"),
        ("Bearer a.b-c_d~e+f/g==", "a.b-c_d~e+f/g=="),
    ],
)
def test_get_bearer_token_values(header, expected):
    assert get_bearer_token(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer\tabc",
        "Bearer a b",
        "Bearer =abc",
        "Bearer a=b",
        "Bearer ab\x00",
        "Bearer é",
    ],
)
def test_get_bearer_token_rejects(header):
    with pytest.raises(InvalidHeader):
        get_bearer_token(header)


# Fuzzing: any text must end in a credential, no credential, or an AuthenticationFailed.

SCHEMES = st.sampled_from(["Bearer", "bearer", "BEARER", "Token", "Basic", "", "Bear", "Bearer,"])
SEPARATORS = st.text(alphabet=" \t\x00\x0b\xa0", max_size=4)
TOKEN_CHARACTERS = st.characters(codec="ascii") | st.sampled_from(list("éø€\xb8\x85\u2028"))


# Generated once, so that Hypothesis can replay an example within a run.
SAMPLE_TOKENS = [tokens.generate(tokens.TokenKind.ACCESS) for _ in range(4)]


@st.composite
def mutated_tokens(draw):
    """A well-formed access token, kept or changed in one place."""
    token = draw(st.sampled_from(SAMPLE_TOKENS))
    position = draw(st.integers(min_value=0, max_value=len(token)))
    action = draw(st.sampled_from(["keep", "insert", "delete", "replace", "swapcase"]))
    character = draw(TOKEN_CHARACTERS)
    if action == "insert":
        return token[:position] + character + token[position:]
    if action == "delete":
        return token[:position] + token[position + 1 :]
    if action == "replace":
        return token[:position] + character + token[position + 1 :]
    if action == "swapcase":
        return token.swapcase()
    return token


HEADERS = st.one_of(
    st.text(),
    st.text(alphabet=TOKEN_CHARACTERS, max_size=80),
    st.builds(
        lambda scheme, separator, credential, tail: scheme + separator + credential + tail,
        SCHEMES,
        SEPARATORS,
        st.one_of(mutated_tokens(), st.text(max_size=60)),
        st.one_of(st.just(""), SEPARATORS, st.text(max_size=5)),
    ),
)


@hypothesis_settings(max_examples=500, deadline=None)
@given(header=HEADERS)
def test_get_bearer_token_fuzz(header):
    try:
        token = get_bearer_token(header)
    except InvalidHeader:
        return

    if token is not None:
        assert B64TOKEN.fullmatch(token)
        assert token in header


def holds_well_formed_token(header):
    try:
        token = get_bearer_token(header)
        tokens.parse(token, tokens.TokenKind.ACCESS)
    except (InvalidHeader, tokens.MalformedToken):
        return False
    return True


@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=HEADERS)
def test_authentication_class_fuzz(db, header):
    request = Request(RequestFactory().get(DRF_PATH, HTTP_AUTHORIZATION=header))

    with CaptureQueriesContext(connection) as queries:
        try:
            PersonalAccessTokenAuthentication().authenticate(request)
        except BearerAuthenticationFailed:
            pass

    if not holds_well_formed_token(header):
        assert len(queries.captured_queries) == 0


@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=HEADERS)
def test_middleware_fuzz_never_500(client, pair, header):
    response = client.get(PLAIN_PATH, HTTP_AUTHORIZATION=header)

    assert response.status_code in (200, 401)
    if response.status_code == 401 and "WWW-Authenticate" in response:
        assert response.json()["code"] in ("invalid_header", "token_invalid")
