"""Poison isolation: a batch that failed for good, or that was running when its worker died, is split in
halves until the post responsible is alone; that post is dead-lettered with its reason, the rest is stored.

Every run of a (sub-)batch first counts itself in Redis (`AttemptCounter`). A count above 1 with no receipt
means an earlier run never finished: the process died (SIGKILL, out of memory, a segfault in a native
library, the hard time limit). So the crash costs one redelivery per halving — about log2(batch size) + 1
in all — instead of an endless loop. A permanent error (anything not retryable: a row PostgreSQL refuses,
a plugin bug) splits the same way, without waiting for a redelivery.

Sub-batches are named after their place in the halving (`<batch_id>/0/1`...) and are stored like batches,
each with its own receipt, so progress survives every crash: the next delivery skips what has a receipt.
When every half is done, the parent's receipt is written, and the consumer sees the batch durable.

Transient errors (database or broker down) are not the batch's fault: they give back the attempt they
counted and propagate to the Celery task, which retries with a bounded backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from moderation import metrics
from moderation.errors import StateStoreError

log = logging.getLogger(__name__)

Process = Callable[[str, list[dict[str, Any]]], dict[str, int]]  # (batch_id, posts) -> counts, with a receipt


class AttemptCounter(Protocol):
    def start(self, batch_id: str) -> int:
        """Count one more run of this batch; return how many runs (this one included) started."""
        ...

    def give_back(self, batch_id: str) -> None:
        """Undo this run's count (it failed for a reason that is not the batch's)."""
        ...


class RedisAttempts:
    """Attempt counts in Redis, kept a day (a batch is long finished or long dead-lettered by then)."""

    def __init__(self, url: str, prefix: str = "moderation:attempts:", ttl_s: int = 86_400) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix
        self._ttl_s = ttl_s

    def start(self, batch_id: str) -> int:
        key = self._prefix + batch_id
        with _redis_errors():
            pipe = self._redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, self._ttl_s)
            count, _ = pipe.execute()
        return int(count)

    def give_back(self, batch_id: str) -> None:
        with _redis_errors():
            self._redis.decr(self._prefix + batch_id)


@contextmanager
def _redis_errors() -> Iterator[None]:
    """The one place the attempt counter's Redis errors become this package's retryable error."""
    import redis

    try:
        yield
    except redis.RedisError as exc:
        raise StateStoreError(f"attempt counter unavailable: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class Poisoned:
    """A post that failed alone: dead-lettered (with its sub-batch's receipt) instead of stored."""

    batch_id: str
    post: dict[str, Any]
    reason: str  # "worker_lost" | "processing_failed"
    detail: str


class Isolator:
    def __init__(
        self,
        process: Process,
        completed: Callable[[Sequence[str]], set[str]],
        dead_letter: Callable[[Poisoned], None],
        finish: Callable[[str, int], None],
        attempts: AttemptCounter,
        retryable: tuple[type[BaseException], ...],
    ) -> None:
        self._process = process
        self._completed = completed
        self._dead_letter = dead_letter
        self._finish = finish  # (batch_id, posts): write the receipt of a batch whose halves are all done
        self._attempts = attempts
        self._retryable = retryable

    def run(self, batch_id: str, posts: list[dict[str, Any]]) -> None:
        self._run(batch_id, posts, depth=0)

    def _run(self, batch_id: str, posts: list[dict[str, Any]], depth: int) -> None:
        """`depth`: how many larger batches holding these posts failed before (the halvings so far)."""
        if self._completed([batch_id]):
            return
        if not posts:
            self._finish(batch_id, 0)
            return
        runs = self._attempts.start(batch_id)
        if runs == 1:
            try:
                self._process(batch_id, posts)
                return
            except self._retryable:
                self._attempts.give_back(batch_id)
                raise
            except Exception as exc:  # permanent: find the post responsible
                reason, detail = "processing_failed", f"{type(exc).__name__}: {exc}"[:500]
        else:
            reason = "worker_lost"
            detail = f"its worker process died (or was killed at the time limit) {runs - 1} time(s) running it alone"
            if depth:
                detail += f", after dying in the {depth} larger batch(es) that held it (isolated by halving)"
        if len(posts) == 1:
            log.error("batch %s: isolated a poison post (%s: %s)", batch_id, reason, detail[:200])
            metrics.ERRORS.labels("worker", f"poison_{reason}").inc()
            self._dead_letter(Poisoned(batch_id, posts[0], reason, detail))
            return
        log.warning("batch %s (%d posts): %s; splitting it to isolate the cause", batch_id, len(posts), reason)
        middle = len(posts) // 2
        self._run(f"{batch_id}/0", posts[:middle], depth + 1)
        self._run(f"{batch_id}/1", posts[middle:], depth + 1)
        self._finish(batch_id, len(posts))
