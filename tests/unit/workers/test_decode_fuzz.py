"""Bad input, property-based (hypothesis): whatever bytes arrive, decoding never raises, every rejection
has a known reason, and its dead letter fits a Kafka request and identifies the original exactly."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.workers.fakes import Message
from workers.steps.dead_letter import dead_letter_value
from workers.steps.decode import Item, Rejected, decode

# moderation/posts.py's reasons, and the decode step's own (empty_message); never "undecodable", which
# would mean the parser raised something other than InvalidPost.
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
    "empty_message",
}
MAX_REQUEST = 1_048_576
# The machine is shared: generation speed is not what is under test.
relaxed = settings(
    suppress_health_check=[HealthCheck.too_slow], deadline=None
)  # kafka-python's default max_request_size

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ("id", "tenant", "author", "text", "created_at", "metadata")


def envelope(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "p1",
        "tenant": "t",
        "author": "a",
        "text": "hello",
        "created_at": "2026-11-23T10:00:00Z",
    }
    base.update(over)
    return base


def check(raw: bytes | None) -> Item | Rejected:
    out = decode(Message("posts", 0, 5, raw), max_text_chars=100_000)
    if isinstance(out, Rejected):
        assert out.reason in REASONS, out.reason
        assert out.detail
        letter = dead_letter_value(out.raw, out.position, out.timestamp_ms, out.reason, out.detail)
        assert len(letter) < MAX_REQUEST
        parsed = json.loads(letter)
        assert parsed["raw_sha256"] == hashlib.sha256(raw or b"").hexdigest()
        assert parsed["raw_length"] == len(raw or b"")
    else:
        assert isinstance(out.post["text"], str) and out.post["_source"] == ["posts", 0, 5]
    return out


@given(st.binary(max_size=2_000))
@relaxed
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
@relaxed
def test_wrong_types_and_missing_fields(obj: dict[str, Any]) -> None:
    check(json.dumps(obj).encode())


@given(
    st.sampled_from(FIELDS[:5]),
    st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("\x00\x1b\u202e\ufeff\ud7ff"), max_size=300),
)
@relaxed
def test_arbitrary_unicode_and_control_characters_in_every_field(name: str, value: str) -> None:
    check(json.dumps(envelope(**{name: value})).encode())


@given(st.integers(min_value=1, max_value=200_000))
@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_deeply_nested_json(depth: int) -> None:
    assert isinstance(check(b"[" * depth + b"]" * depth), Rejected)
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    check(
        b'{"id": "x", "tenant": "t", "author": "a", "text": "t", "created_at": "2026-11-23T10:00:00Z", "metadata": '
        + nested
        + b"}"
    )


def test_ten_megabyte_texts_and_over_long_ids_are_rejected_with_a_bounded_dead_letter() -> None:
    out = check(json.dumps(envelope(text="\x00" * 10_000_000)).encode())
    assert isinstance(out, Rejected) and out.reason == "text_too_long"
    out = check(json.dumps(envelope(id="i" * 100_000)).encode())
    assert isinstance(out, Rejected)


def test_lone_surrogates_in_json_escapes() -> None:
    check(b'{"id": "\\ud800", "tenant": "t", "author": "a", "text": "\\udfff", "created_at": "2026-11-23T10:00:00Z"}')


def test_a_message_without_a_value() -> None:
    out = check(None)
    assert isinstance(out, Rejected) and out.reason == "empty_message"
