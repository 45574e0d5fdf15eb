"""Token format: generation, checksum, parsing, digests."""

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pat_tokens import tokens
from pat_tokens.tokens import ALPHABET, MalformedToken, TokenKind

ACCESS, REFRESH = TokenKind.ACCESS, TokenKind.REFRESH

# Hypothesis replays a failing example only when the data comes from its own strategies, so the
# property tests build tokens from drawn random bits instead of calling tokens.generate().
random_bits = st.integers(min_value=0, max_value=2**tokens.RANDOM_BITS - 1)


def token_from_bits(kind, bits):
    body = tokens._encode_base62(bits, tokens.BODY_LENGTH)
    return kind.prefix + body + tokens._checksum(kind.prefix + body)


def test_generate_matches_token_from_bits(monkeypatch):
    monkeypatch.setattr(tokens.secrets, "randbits", lambda count: 12345)

    assert tokens.generate(ACCESS) == token_from_bits(ACCESS, 12345)


def test_shape_matches_published_regex():
    access = tokens.generate(ACCESS)
    refresh = tokens.generate(REFRESH)

    assert re.fullmatch(r"pat_[0-9A-Za-z]{49}", access)
    assert re.fullmatch(r"patr_[0-9A-Za-z]{49}", refresh)
    assert re.fullmatch(tokens.regex(ACCESS), access)
    assert re.fullmatch(tokens.regex(REFRESH), refresh)


def test_tokens_differ():
    generated = {tokens.generate(ACCESS) for _ in range(1000)}

    assert len(generated) == 1000


def test_body_carries_256_bits():
    # 43 base62 digits can hold 62**43 > 2**256 values, so no random bit is cut off.
    assert 62**tokens.BODY_LENGTH >= 2**tokens.RANDOM_BITS
    assert tokens.RANDOM_BITS >= 256


def test_parse_returns_sha256_digest():
    token = tokens.generate(ACCESS)

    assert tokens.parse(token, ACCESS) == hashlib.sha256(token.encode()).hexdigest()


def test_wrong_kind_is_rejected():
    with pytest.raises(MalformedToken):
        tokens.parse(tokens.generate(REFRESH), ACCESS)
    with pytest.raises(MalformedToken):
        tokens.parse(tokens.generate(ACCESS), REFRESH)


@pytest.mark.parametrize("value", [None, 12345, b"pat_", ["pat_"], {"a": 1}, 1.5, True])
def test_non_strings_are_rejected(value):
    with pytest.raises(MalformedToken):
        tokens.parse(value, ACCESS)


def test_error_message_never_contains_the_token():
    token = tokens.generate(ACCESS)
    broken = token[:-1] + ("A" if token[-1] != "A" else "B")

    with pytest.raises(MalformedToken) as raised:
        tokens.parse(broken, ACCESS)

    assert broken not in str(raised.value)
    assert broken[4:20] not in str(raised.value)


def test_prefix_setting_is_used(settings):
    settings.PAT_TOKENS = {"ACCESS_TOKEN_PREFIX": "acme_"}

    token = tokens.generate(ACCESS)

    assert token.startswith("acme_")
    assert tokens.parse(token, ACCESS) == tokens.digest(token)


def test_prefix_change_invalidates_old_tokens(settings):
    old = tokens.generate(ACCESS)
    settings.PAT_TOKENS = {"ACCESS_TOKEN_PREFIX": "acme_"}

    with pytest.raises(MalformedToken):
        tokens.parse(old, ACCESS)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.sampled_from([ACCESS, REFRESH]), random_bits)
def test_every_generated_token_parses(kind, bits):
    token = token_from_bits(kind, bits)

    assert tokens.parse(token, kind) == tokens.digest(token)


@hypothesis_settings(max_examples=500, deadline=None)
@given(kind=st.sampled_from([ACCESS, REFRESH]), bits=random_bits, data=st.data())
def test_every_single_character_change_is_rejected(kind, bits, data):
    token = token_from_bits(kind, bits)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(
        st.sampled_from(ALPHABET + "_-").filter(lambda character: character != token[position])
    )
    changed = token[:position] + replacement + token[position + 1 :]

    with pytest.raises(MalformedToken):
        tokens.parse(changed, kind)


@hypothesis_settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from([ACCESS, REFRESH]), bits=random_bits, data=st.data())
def test_truncated_or_extended_tokens_are_rejected(kind, bits, data):
    token = token_from_bits(kind, bits)
    cut = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    extra = data.draw(st.text(alphabet=ALPHABET, min_size=1, max_size=5))

    with pytest.raises(MalformedToken):
        tokens.parse(token[:cut], kind)
    with pytest.raises(MalformedToken):
        tokens.parse(token + extra, kind)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_never_raises_other_errors(text):
    for kind in (ACCESS, REFRESH):
        try:
            tokens.parse(text, kind)
        except MalformedToken:
            pass


def test_case_flip_of_one_letter_is_rejected():
    token = tokens.generate(ACCESS)
    index = next(i for i in range(4, len(token)) if token[i].isalpha())
    flipped = token[:index] + token[index].swapcase() + token[index + 1 :]

    with pytest.raises(MalformedToken):
        tokens.parse(flipped, ACCESS)
    with pytest.raises(MalformedToken):
        tokens.parse(token.upper(), ACCESS)
