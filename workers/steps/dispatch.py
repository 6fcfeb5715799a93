"""Dispatch: batches go to the workers as Celery tasks; the consumer learns that a batch is durable only from
its receipt in PostgreSQL (`completed_batches`), never from Celery's result backend.

- One query per `check_interval_s` asks which of all sent batches have a receipt: the cost does not grow
  with the number of batches, and "queued" and "running" need no telling apart.
- A batch with no receipt `resend_after_s` after its send goes out again under the same `batch_id` (the
  worker's receipt makes a second run a no-op), at most `max_attempts` sends; then `poll()` returns it as
  given up and the consumer dead-letters its posts. `resend_after_s` is longer than the worker's hard time
  limit, so a batch that is merely running is not sent twice; a message the Celery broker lost does not
  block commits forever.
- When the Celery broker is down, a send fails fast; the batch waits, unsent, and is tried again after a
  backoff (0.1 s doubling to `max_backoff_s`), with every other unsent batch. Nothing sleeps: unsent batches
  count as in flight, so the flow step pauses consumption and the open batch never grows past its limit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from moderation import metrics
from workers.steps import PartitionKey
from workers.steps.decode import Item

log = logging.getLogger(__name__)

BATCH_FORMAT_VERSION = 1

SendTask = Callable[[str, dict[str, Any]], None]  # (batch_id, payload); raises when the broker is unreachable
CompletedBatches = Callable[[Sequence[str]], set[str]]  # which of these batch ids have a receipt


@dataclass
class Batch:
    batch_id: str
    items: list[Item]
    created_at: float
    sends: int = 0  # sends that reached the Celery broker
    sent_at: float | None = None  # of the last successful send; None while it waits to be sent
    # The original messages' bytes, summed once: flow control reads the bytes in flight at every step, and
    # summing every item of every batch each time was a tenth of the consumer's CPU (py-spy).
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(i.size for i in self.items)

    def drop_partitions(self, keys: set[PartitionKey]) -> int:
        """Forget the items of these partitions; returns how many were dropped."""
        kept = [i for i in self.items if i.partition not in keys]
        dropped = len(self.items) - len(kept)
        self.items, self.size = kept, sum(i.size for i in kept)
        return dropped

    @property
    def partitions(self) -> set[PartitionKey]:
        return {i.partition for i in self.items}

    def payload(self) -> dict[str, Any]:
        return {"v": BATCH_FORMAT_VERSION, "batch_id": self.batch_id, "posts": [i.post for i in self.items]}


class Dispatcher:
    def __init__(
        self,
        send: SendTask,
        completed: CompletedBatches,
        *,
        resend_after_s: float,
        max_attempts: int,
        check_interval_s: float = 0.05,
        max_backoff_s: float = 5.0,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._send = send
        self._completed = completed
        self.resend_after_s = resend_after_s
        self.max_attempts = max_attempts
        self.check_interval_s = check_interval_s
        self.max_backoff_s = max_backoff_s
        self._new_id = new_id
        self.batches: dict[str, Batch] = {}  # insertion order = send order
        self._last_check = float("-inf")
        self._broker_failures = 0
        self._broker_retry_at = float("-inf")

    # ---- what flow control reads -------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self.batches)

    @property
    def bytes(self) -> int:
        return sum(b.size for b in self.batches.values())

    @property
    def unsent(self) -> int:
        return sum(1 for b in self.batches.values() if b.sent_at is None)

    # ---- the step ----------------------------------------------------------------------------------
    def submit(self, items: list[Item], now: float) -> Batch:
        batch = Batch(self._new_id(), items, now)
        self.batches[batch.batch_id] = batch
        if now >= self._broker_retry_at:
            self._try_send(batch, now)
        self._gauge()
        return batch

    def poll(self, now: float) -> tuple[list[Batch], list[Batch]]:
        """(batches now durable, batches given up after `max_attempts` sends). Cheap between checks."""
        self._send_waiting(now)
        if now - self._last_check < self.check_interval_s:
            return [], []
        self._last_check = now
        durable: list[Batch] = []
        given_up: list[Batch] = []
        ids = [b.batch_id for b in self.batches.values() if b.sends > 0]
        if ids:
            try:
                done = self._completed(ids)
            except Exception as exc:  # PostgreSQL down: nothing is known durable; ask again later
                metrics.ERRORS.labels("consumer", "receipts").inc()
                log.warning("cannot read batch receipts (%s); trying again", type(exc).__name__)
                done = set()
            for batch_id in done:
                batch = self.batches.pop(batch_id, None)
                if batch is not None:
                    durable.append(batch)
        for batch in list(self.batches.values()):
            if batch.sent_at is None or now - batch.sent_at < self.resend_after_s:
                continue
            if batch.sends >= self.max_attempts:
                del self.batches[batch.batch_id]
                given_up.append(batch)
                log.error(
                    "batch %s: no receipt after %d sends; dead-lettering its %d posts",
                    batch.batch_id,
                    batch.sends,
                    len(batch.items),
                )
                continue
            metrics.BATCH_RESENDS.labels("timeout").inc()
            log.warning(
                "batch %s: no receipt %.0f s after its send; sending it again", batch.batch_id, now - batch.sent_at
            )
            batch.sent_at = None
            self._send_waiting(now)
        self._gauge()
        return durable, given_up

    def forget_partitions(self, keys: set[PartitionKey]) -> int:
        """Stop tracking the posts of revoked partitions (their new owner reads them again). Returns how many."""
        dropped = 0
        for batch in list(self.batches.values()):
            dropped += batch.drop_partitions(keys)
            if not batch.items:
                del self.batches[batch.batch_id]
        self._gauge()
        return dropped

    # ---- sending -----------------------------------------------------------------------------------
    def _send_waiting(self, now: float) -> None:
        if now < self._broker_retry_at:
            return
        for batch in list(self.batches.values()):
            if batch.sent_at is None and not self._try_send(batch, now):
                return  # the broker is down: the others wait for the same backoff

    def _try_send(self, batch: Batch, now: float) -> bool:
        try:
            self._send(batch.batch_id, batch.payload())
        except Exception as exc:  # any failure of the Celery broker's client
            self._broker_failures += 1
            delay = min(self.max_backoff_s, 0.1 * 2 ** min(self._broker_failures, 20))
            self._broker_retry_at = now + delay
            metrics.ERRORS.labels("consumer", "celery_broker").inc()
            log.warning(
                "cannot send batches to the workers (%s); %d waiting, next try in %.1f s",
                type(exc).__name__,
                self.unsent,
                delay,
            )
            return False
        self._broker_failures = 0
        batch.sends += 1
        batch.sent_at = now
        metrics.BATCHES_SENT.inc()
        return True

    def _gauge(self) -> None:
        metrics.BATCHES_IN_FLIGHT.set(len(self.batches))
