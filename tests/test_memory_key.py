"""The memory `key` (SPEC 3): distinct (conversationId, blockId) pairs never share a key."""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from memory_service.services.memory import memory_key

# Ids are any Unicode; weight the characters that matter to the encoding.
ids = st.text(
    alphabet=st.one_of(st.sampled_from("%:3aA25_/ "), st.characters(codec="utf-8")),
    min_size=1,
    max_size=12,
)


def decode(key: str) -> tuple[str, str]:
    """The inverse: exactly one ':' separates the parts; '%' escapes only '%' and ':'."""
    conversation, sep, block = key.partition(":")
    assert sep and ":" not in block
    return unquote(conversation), unquote(block)


@given(ids, ids)
def test_key_decodes_back_to_its_pair(conversation: str, block: str) -> None:
    assert decode(memory_key(conversation, block)) == (conversation, block)


@given(ids, ids, ids, ids)
def test_distinct_pairs_never_share_a_key(a: str, b: str, c: str, d: str) -> None:
    if (a, b) != (c, d):
        assert memory_key(a, b) != memory_key(c, d)


def test_known_cases() -> None:
    assert memory_key("user-123", "default") == "user-123:default"
    assert memory_key("a:b", "c") == "a%3Ab:c"
    assert memory_key("a", "b:c") == "a:b%3Ac"
    assert memory_key("100%", "x") == "100%25:x"
    assert memory_key("a%3Ab", "c") == "a%253Ab:c"  # not the same key as ("a:b", "c")
