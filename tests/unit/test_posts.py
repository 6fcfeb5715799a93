"""Input validation (moderation/posts.py), attacked with hypothesis: whatever a message holds, decoding
either yields a post that the database can store, or raises InvalidPost with a reason — nothing else."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moderation.errors import InvalidPost
from moderation.posts import (
    MAX_AUTHOR_CHARS,
    MAX_ID_CHARS,
    MAX_METADATA_DEPTH,
    MAX_TENANT_CHARS,
    Post,
    post_from_bytes,
    post_from_json,
)

REASONS = {
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "text_too_long",
    "field_too_long",
    "invalid_characters",
    "metadata_invalid",
}

# Every code point, surrogates and NUL included (st.text() leaves surrogates out by default).
any_char = st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
nasty_text = st.text(any_char, max_size=40) | st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff x", "\x1b[31m"])
json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | nasty_text
json_value = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nasty_text, children, max_size=4),
    max_leaves=30,
)
field = json_value | nasty_text | st.text(min_size=120, max_size=300)


def storable(s: str | None, limit: int | None = None) -> bool:
    if s is None:
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in s and (limit is None or len(s) <= limit)


def walk(value: Any, depth: int = 1) -> int:
    """Check every string of a JSON value is storable; returns the depth."""
    if isinstance(value, dict):
        assert all(storable(k) for k in value)
        return max([depth, *(walk(v, depth + 1) for v in value.values())])
    if isinstance(value, list):
        return max([depth, *(walk(v, depth + 1) for v in value)])
    if isinstance(value, str):
        assert storable(value)
    if isinstance(value, float):
        assert math.isfinite(value)
    return depth


def assert_storable(post: Post) -> None:
    assert storable(post.id, MAX_ID_CHARS) and post.id.strip()
    assert storable(post.tenant, MAX_TENANT_CHARS)
    assert storable(post.author, MAX_AUTHOR_CHARS)
    assert storable(post.text)
    for ident in (post.id, post.tenant, post.author or ""):
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in ident)
    assert walk(post.metadata) <= MAX_METADATA_DEPTH + 1


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": field,
            "text": field,
            "tenant": field,
            "author": field,
            "created_at": field | st.sampled_from(["2026-11-23T10:00:00Z", "2026-11-23", "not a time", "9999-12-31"]),
            "metadata": json_value,
        },
    )
)
def test_any_object_is_a_storable_post_or_an_invalid_post_with_a_reason(obj: dict[str, Any]) -> None:
    for envelope in (False, True):
        try:
            post = post_from_json(obj, require_envelope=envelope)
        except InvalidPost as exc:
            assert exc.reason in REASONS and exc.detail
            continue
        assert_storable(post)


@settings(max_examples=500, deadline=None)
@given(json_value)
def test_any_json_value_decodes_or_is_refused(value: Any) -> None:
    with pytest.raises(InvalidPost) if not isinstance(value, dict) else _maybe_invalid():
        post_from_json(value)


class _maybe_invalid:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is None or (isinstance(exc, InvalidPost) and exc.reason in REASONS)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_are_refused(raw: bytes) -> None:
    try:
        assert_storable(post_from_bytes(raw))
    except InvalidPost as exc:
        assert exc.reason in REASONS


@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 5_000, 200_000])
def test_deeply_nested_json_is_refused_not_a_crash(depth: int) -> None:
    raw = b'{"id":"a","text":"t","metadata":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    with pytest.raises(InvalidPost) as info:
        post_from_bytes(raw)
    assert info.value.reason in {"invalid_json", "metadata_invalid"}
    bare = b"[" * depth + b"]" * depth
    with pytest.raises(InvalidPost):
        post_from_bytes(bare)


@pytest.mark.parametrize(
    ("name", "limit"), [("id", MAX_ID_CHARS), ("tenant", MAX_TENANT_CHARS), ("author", MAX_AUTHOR_CHARS)]
)
def test_identifier_lengths_match_the_columns(name: str, limit: int) -> None:
    base = {"id": "p1", "text": "hello", "tenant": "acme", "author": "u1"}
    # Characters outside the BMP: the column counts characters, as Python does, not bytes or UTF-16 units.
    assert getattr(post_from_json({**base, name: "😀" * limit}), "id" if name == "id" else name) == "😀" * limit
    with pytest.raises(InvalidPost) as info:
        post_from_json({**base, name: "x" * (limit + 1)})
    assert info.value.reason == "field_too_long" and str(limit) in info.value.detail


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"text": "nul \x00 inside"}, "invalid_characters"),
        ({"text": "lone \ud83d surrogate"}, "invalid_characters"),
        ({"tenant": "ac\x00me"}, "invalid_characters"),
        ({"author": "tab\there"}, "invalid_characters"),
        ({"id": "p\x85"}, "invalid_characters"),
        ({"metadata": {"k": "v\x00"}}, "metadata_invalid"),
        ({"metadata": {"k\x00": 1}}, "metadata_invalid"),
        ({"metadata": {"n": float("nan")}}, "metadata_invalid"),
        ({"metadata": {"big": "x" * 70_000}}, "metadata_invalid"),
        ({"id": 7}, "wrong_type"),
        ({"text": ["a"]}, "wrong_type"),
        ({"metadata": "x"}, "wrong_type"),
    ],
)
def test_each_refusal_names_its_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidPost) as info:
        post_from_json({"id": "p1", "text": "hello", "tenant": "acme", "author": "u1", **change})
    assert info.value.reason == reason


def test_text_may_hold_any_other_character() -> None:
    text = "tab\tnewline\n bell\x07 escape\x1b rtl\u202e zero-width\u200b emoji 😀 nbsp\u00a0"
    assert post_from_bytes(json.dumps({"id": "p", "text": text}).encode()).text == text


def test_a_ten_megabyte_text_is_refused_by_length_without_a_crash() -> None:
    raw = json.dumps({"id": "p", "text": "a" * 10_000_000}).encode()
    with pytest.raises(InvalidPost) as info:
        post_from_bytes(raw)
    assert info.value.reason == "text_too_long"
