"""The documented wire formats and small parsers of the pipeline (no services needed)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from moderation.commands.produce import message_key
from moderation.commands.verdicts import parse_since
from moderation.endpoints import Endpoints, parse_api_version, redacted
from moderation.errors import ConfigError
from workers.consumer import dead_letter_value
from workers.processing import decode_batch


def test_dead_letter_keeps_the_original_bytes_and_says_where_they_came_from() -> None:
    raw = b"\xffnot utf-8"
    letter = json.loads(dead_letter_value(raw, ("posts", 2, 41), 1700000000000, "invalid_utf8", "byte 0"))
    assert letter["v"] == 2 and letter["reason"] == "invalid_utf8" and letter["detail"] == "byte 0"
    assert letter["source"] == {"topic": "posts", "partition": 2, "offset": 41, "timestamp": 1700000000000}
    assert letter["raw"] is None and base64.b64decode(letter["raw_base64"]) == raw


def test_batch_message_decodes_posts_and_sources() -> None:
    posts, sources = decode_batch(
        {"v": 1, "batch_id": "b", "posts": [{"id": "1", "text": "hi", "tenant": "t", "_source": ["posts", 0, 9]}]},
        max_text_chars=100,
    )
    assert posts[0].tenant == "t" and sources[0] is not None and sources[0].offset == 9
    with pytest.raises(ValueError, match="version"):
        decode_batch({"v": 99, "posts": []}, max_text_chars=100)


def test_api_version_setting() -> None:
    assert parse_api_version("2.5.0") == (2, 5, 0)
    assert parse_api_version("") is None and parse_api_version(None) is None
    with pytest.raises(ConfigError, match=r"2\.5\.0"):
        parse_api_version("latest")


def test_passwords_are_redacted_from_urls() -> None:
    assert redacted("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert "s3cret" not in redacted("redis://:s3cret@cache:6379/0")
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"


def test_endpoints_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODERATION_CELERY_BROKER", "redis://cache:6379/3")
    monkeypatch.delenv("MODERATION_CELERY_BACKEND", raising=False)
    monkeypatch.setenv("MODERATION_KAFKA_API_VERSION", "2.5.0")
    e = Endpoints.from_env()
    assert e.celery_backend == "redis://cache:6379/1" and e.kafka_api_version == (2, 5, 0)


def test_since_accepts_spans_and_times() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert parse_since("2026-11-01T00:00:00", now) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="--since"):
        parse_since("last week", now)


def test_messages_are_keyed_by_tenant_and_author() -> None:
    assert message_key(b'{"tenant": "t", "author": "a", "id": "1"}') == b"t/a"
    assert message_key(b"not json") is None
