"""The post: the unit of work everywhere in the pipeline, and the one place input is validated.

Wire format (version 1), one JSON object per Kafka message or per `moderation scan` input line:

    {"id": str, "text": str, "tenant": str?, "author": str?, "created_at": ISO-8601 str?, "metadata": object?}

`moderation scan` needs only `id` and `text`; the Kafka input topic needs `id`, `tenant`, `author`,
`text` and `created_at` (see README, "Message format").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moderation.errors import InvalidPost

DEFAULT_TENANT = "default"
# A post longer than this is refused (dead-lettered) rather than risking a worker's memory.
DEFAULT_MAX_TEXT_CHARS = 100_000


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
    if len(post_id) > 256:
        raise InvalidPost("wrong_type", "field 'id' is longer than 256 characters")
    if len(text) > max_text_chars:
        raise InvalidPost("text_too_long", f"text has {len(text)} characters, the maximum is {max_text_chars}")
    tenant = _require_str(obj, "tenant", required=require_envelope) or DEFAULT_TENANT
    author = _require_str(obj, "author", required=require_envelope)
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
    return post_from_json(obj, **kwargs)
