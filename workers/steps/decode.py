"""Decode: one Kafka message to a valid post (`Item`) or a `Rejected` with its reason.

Never raises: anything a message can do to the parser (invalid UTF-8, JSON nested deep enough to exhaust
the recursion limit, wrong types, over-long fields) becomes a rejection that is dead-lettered, so no
input can stop a consumer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from moderation.errors import InvalidPost
from moderation.posts import post_from_bytes
from workers.steps import PartitionKey, Position


class Message(Protocol):
    """What the steps read of a Kafka message (kafka-python's ConsumerRecord has these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None


@dataclass(frozen=True)
class Item:
    """A valid post on its way to a worker, and what the consumer must remember of it."""

    post: dict[str, Any]  # the batch message's body of this post (see workers/processing.py)
    position: Position
    size: int  # bytes of the original message: what "bytes in flight" counts
    raw: bytes  # kept to dead-letter the post if its batch fails for good
    timestamp_ms: int

    @property
    def partition(self) -> PartitionKey:
        return (self.position[0], self.position[1])


@dataclass(frozen=True)
class Rejected:
    """A message that cannot be processed: it goes to the dead-letter topic with its reason."""

    position: Position
    raw: bytes
    key: bytes | None
    timestamp_ms: int
    reason: str
    detail: str

    @property
    def partition(self) -> PartitionKey:
        return (self.position[0], self.position[1])


def decode(message: Message, max_text_chars: int) -> Item | Rejected:
    position: Position = (message.topic, message.partition, message.offset)
    raw = message.value
    timestamp_ms = int(message.timestamp or 0)
    if raw is None:
        return Rejected(position, b"", message.key, timestamp_ms, "empty_message", "the message has no value")
    try:
        post = post_from_bytes(raw, require_envelope=True, max_text_chars=max_text_chars)
        body = post.to_json()
    except InvalidPost as exc:
        return Rejected(position, raw, message.key, timestamp_ms, exc.reason, exc.detail)
    except RecursionError:
        return Rejected(position, raw, message.key, timestamp_ms, "invalid_json", "JSON nested too deeply")
    except Exception as exc:  # a parser bug must cost one message, not the consumer
        return Rejected(position, raw, message.key, timestamp_ms, "undecodable", f"{type(exc).__name__}: {exc}"[:500])
    body["_source"] = list(position)
    return Item(body, position, len(raw), raw, timestamp_ms)
