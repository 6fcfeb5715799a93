"""The post: the unit of work everywhere in the pipeline, and the one place input is validated.

Wire format (version 1), one JSON object per Kafka message or per `moderation scan` input line:

    {"id": str, "text": str, "tenant": str?, "author": str?, "created_at": ISO-8601 str?, "metadata": object?}

`moderation scan` needs only `id` and `text`; the Kafka input topic needs `id`, `tenant`, `author`,
`text` and `created_at` (docs/pipeline.md, "Message formats").

Whatever passes here can be stored: lengths match the database columns (tenant 128, id and author 256
characters), and no string — text, identifiers, metadata keys and values — holds a character PostgreSQL
refuses (NUL) or one that is not Unicode text at all (a lone surrogate, which JSON's \\ud800 escapes can
make). Identifiers also refuse other control characters. Metadata is bounded in depth and size.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moderation.errors import InvalidPost

DEFAULT_TENANT = "default"
# A post longer than this is refused (dead-lettered) rather than risking a worker's memory.
DEFAULT_MAX_TEXT_CHARS = 100_000
# The database columns' lengths (moderation/storage/models.py), in characters as PostgreSQL counts them.
MAX_TENANT_CHARS = 128
MAX_ID_CHARS = 256
MAX_AUTHOR_CHARS = 256
# Metadata is kept, not interpreted: bounded so that a message cannot make a huge or deeply nested document.
MAX_METADATA_DEPTH = 16
MAX_METADATA_BYTES = 65_536

# NUL (PostgreSQL text and JSONB refuse it) and lone surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# In identifiers: every C0/C1 control character as well.
_BAD_IN_IDENTIFIER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class Post:
    id: str
    text: str
    tenant: str = DEFAULT_TENANT
    author: str | None = None
    created_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "tenant": self.tenant, "text": self.text}
        if self.author is not None:
            out["author"] = self.author
        if self.created_at is not None:
            out["created_at"] = self.created_at.isoformat()
        if self.metadata:
            out["metadata"] = self.metadata
        return out


def _require_str(obj: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidPost("missing_field", f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise InvalidPost("wrong_type", f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def _describe(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def _check_identifier(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidPost("field_too_long", f"field {name!r} has {len(value)} characters, the maximum is {limit}")
    bad = _BAD_IN_IDENTIFIER.search(value)
    if bad:
        raise InvalidPost("invalid_characters", f"field {name!r} holds the control character {_describe(bad.group())}")


def _check_metadata(metadata: dict[str, Any]) -> None:
    """Depth, NUL and surrogates, non-finite numbers (JSON has none), and the encoded size."""
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:  # iterative: a deep document must not exhaust the interpreter's stack
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_METADATA_DEPTH:
                raise InvalidPost("metadata_invalid", f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if isinstance(k, str) and _UNSTORABLE.search(k):
                    raise InvalidPost("metadata_invalid", "a metadata key holds NUL or a lone surrogate")
                stack.append((v, depth + 1))
        elif isinstance(value, str):
            if _UNSTORABLE.search(value):
                raise InvalidPost("metadata_invalid", "a metadata value holds NUL or a lone surrogate")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidPost("metadata_invalid", "a metadata number is NaN or infinite")
    size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidPost("metadata_invalid", f"metadata is {size} bytes, the maximum is {MAX_METADATA_BYTES}")


def post_from_json(
    obj: Any,
    *,
    require_envelope: bool = False,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
) -> Post:
    """Validate a decoded JSON value as a post; raise InvalidPost saying why not.

    `require_envelope` demands the full Kafka message (tenant, author, created_at) rather than scan's minimum.
    """
    if not isinstance(obj, dict):
        raise InvalidPost("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    post_id = _require_str(obj, "id", required=True)
    text = _require_str(obj, "text", required=True)
    assert post_id is not None and text is not None
    if not post_id.strip():
        raise InvalidPost("missing_field", "field 'id' is empty")
    _check_identifier("id", post_id, MAX_ID_CHARS)
    if len(text) > max_text_chars:
        raise InvalidPost("text_too_long", f"text has {len(text)} characters, the maximum is {max_text_chars}")
    bad = _UNSTORABLE.search(text)
    if bad:
        raise InvalidPost("invalid_characters", f"text holds {_describe(bad.group())} at character {bad.start()}")
    tenant = _require_str(obj, "tenant", required=require_envelope) or DEFAULT_TENANT
    _check_identifier("tenant", tenant, MAX_TENANT_CHARS)
    author = _require_str(obj, "author", required=require_envelope)
    if author is not None:
        _check_identifier("author", author, MAX_AUTHOR_CHARS)
    created_raw = _require_str(obj, "created_at", required=require_envelope)
    created_at = None
    if created_raw is not None:
        try:
            created_at = datetime.fromisoformat(created_raw.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidPost("wrong_type", f"field 'created_at' is not an ISO-8601 time: {created_raw!r}") from None
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidPost("wrong_type", f"field 'metadata' must be an object, got {type(metadata).__name__}")
    _check_metadata(metadata)
    return Post(id=post_id, text=text, tenant=tenant, author=author, created_at=created_at, metadata=metadata)


def post_from_bytes(raw: bytes, **kwargs: Any) -> Post:
    """Decode one message (UTF-8 JSON) into a Post, raising InvalidPost for every way it can be bad."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPost("invalid_utf8", f"message is not valid UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(decoded)
    except json.JSONDecodeError as exc:
        raise InvalidPost(
            "invalid_json", f"message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidPost("invalid_json", "message is JSON nested too deeply to decode") from None
    return post_from_json(obj, **kwargs)
