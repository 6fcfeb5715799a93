"""Dead letters: rejected messages written to the dead-letter topic, each sized to always fit a request.

The dead-letter message (version 2):

    {"v": 2, "reason": str, "detail": str (<= 2,000 chars),
     "source": {"topic", "partition", "offset", "timestamp"},
     "raw": str | null, "raw_base64": str, "raw_truncated": bool, "raw_length": int, "raw_sha256": hex}

`raw_base64` holds the original bytes, or their first `max_raw_bytes` when `raw_truncated`; `raw` is the
same prefix as text when the message was valid UTF-8. The length and SHA-256 are of the whole original,
so an operator can match a dead letter to the message that caused it. A key longer than 1 KiB is
replaced by its SHA-256. With the default 64 KiB prefix the worst case (every character JSON-escaped as
\\u0000 in `raw`, plus base64) stays far below the producer's default 1 MiB request limit.

Flow: a dead letter's offset counts as done only once the broker acknowledged it, so its source offset
is committed only then. Pending dead letters count towards back-pressure (`count`, `bytes`); a failed
send is retried with exponential backoff up to `max_backoff_s` — never dropped (that would lose the
message), never in a tight loop, and never blocking the poll loop.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moderation import metrics
from workers.steps import PartitionKey, Position
from workers.steps.decode import Rejected

log = logging.getLogger(__name__)

DLQ_FORMAT_VERSION = 2
MAX_RAW_BYTES = 64 * 1024
MAX_DETAIL_CHARS = 2_000
MAX_KEY_BYTES = 1_024


def dead_letter_value(
    raw: bytes | None,
    position: Position,
    timestamp_ms: int | None,
    reason: str,
    detail: str,
    *,
    max_raw_bytes: int = MAX_RAW_BYTES,
) -> bytes:
    """The dead-letter message: why, where from, and the original bytes (a bounded prefix, hash and length)."""
    raw = raw or b""
    kept = raw[:max_raw_bytes]
    try:
        raw.decode("utf-8")
        # A cut may split a character: drop only that partial tail.
        text: str | None = kept.decode("utf-8", errors="ignore") if len(kept) < len(raw) else kept.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return json.dumps(
        {
            "v": DLQ_FORMAT_VERSION,
            "reason": reason,
            "detail": detail[:MAX_DETAIL_CHARS],
            "source": {
                "topic": position[0],
                "partition": position[1],
                "offset": position[2],
                "timestamp": timestamp_ms,
            },
            "raw": text,
            "raw_base64": base64.b64encode(kept).decode("ascii"),
            "raw_truncated": len(kept) < len(raw),
            "raw_length": len(raw),
            "raw_sha256": hashlib.sha256(raw).hexdigest(),
        },
        separators=(",", ":"),
    ).encode()


def dead_letter_key(key: bytes | None) -> bytes | None:
    if key is None or len(key) <= MAX_KEY_BYTES:
        return key
    return b"sha256:" + hashlib.sha256(key).hexdigest().encode()


@dataclass
class _Pending:
    rejected: Rejected
    value: bytes
    key: bytes | None
    future: Any = None  # kafka-python's FutureRecordMetadata (is_done, succeeded(), exception); None: waiting for its next attempt at `retry_at`
    attempts: int = 0
    retry_at: float = 0.0


class DeadLetters:
    """Writes dead letters and reports, by `poll()`, the positions whose dead letter the broker acknowledged."""

    def __init__(
        self,
        send: Callable[[bytes, bytes | None], Any],
        *,
        max_raw_bytes: int = MAX_RAW_BYTES,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._send = send
        self._max_raw_bytes = max_raw_bytes
        self._max_backoff_s = max_backoff_s
        self._pending: list[_Pending] = []

    @property
    def count(self) -> int:
        return len(self._pending)

    @property
    def bytes(self) -> int:
        return sum(len(p.value) for p in self._pending)

    def partitions(self) -> set[PartitionKey]:
        return {p.rejected.partition for p in self._pending}

    def add(self, rejected: Rejected, now: float) -> None:
        value = dead_letter_value(
            rejected.raw,
            rejected.position,
            rejected.timestamp_ms,
            rejected.reason,
            rejected.detail,
            max_raw_bytes=self._max_raw_bytes,
        )
        log.info("dead-lettering %s[%d]@%d: %s", *rejected.position, rejected.reason)
        pending = _Pending(rejected, value, dead_letter_key(rejected.key))
        self._pending.append(pending)
        self._try(pending, now)

    def _try(self, pending: _Pending, now: float) -> None:
        pending.attempts += 1
        try:
            pending.future = self._send(pending.value, pending.key)
        except Exception as exc:  # e.g. KafkaTimeoutError when the broker is unreachable
            self._failed(pending, now, f"{type(exc).__name__}: {exc}")

    def _failed(self, pending: _Pending, now: float, why: str) -> None:
        pending.future = None
        delay = min(self._max_backoff_s, 0.1 * math.pow(2, min(pending.attempts, 20)))
        pending.retry_at = now + delay
        metrics.ERRORS.labels("consumer", "dead_letter_send").inc()
        log.warning(
            "dead letter for %s[%d]@%d not written (attempt %d: %s); next try in %.1f s",
            *pending.rejected.position,
            pending.attempts,
            why[:200],
            delay,
        )

    def poll(self, now: float) -> list[Rejected]:
        """The rejections whose dead letter is now written; failed sends are retried once their backoff ran out."""
        written: list[Rejected] = []
        still: list[_Pending] = []
        for p in self._pending:
            if p.future is None:
                if now >= p.retry_at:
                    self._try(p, now)
                still.append(p)
            elif not p.future.is_done:
                still.append(p)
            elif p.future.succeeded():
                written.append(p.rejected)
                metrics.DEAD_LETTERS.labels(p.rejected.reason).inc()
            else:
                self._failed(p, now, repr(p.future.exception))
                still.append(p)
        self._pending = still
        return written
