"""The outbox relay: publishes the messages that workers stored in the `outbox` table (verdicts, worker-side
dead letters) to Kafka, reliably.

One round, in one PostgreSQL transaction:
1. take up to `batch_size` unpublished rows in id order, `FOR UPDATE SKIP LOCKED` — several relays share
   the work, none publishes a row another one holds;
2. produce them (acks=all), flush, and wait for every send future;
3. mark published only the rows the broker acknowledged; a failed row gets `attempts + 1` and its error,
   and stays unpublished.
If the relay dies between 2 and 3, the transaction rolls back and the rows are sent again: publication is
at least once. Messages carry the post's revision, so a reader keeps, per key, the highest revision.

Failures are retried with exponential backoff (up to `max_backoff_s`), with a fresh producer, forever:
a row is never dropped. `moderation_outbox_oldest_unpublished_seconds` says how far behind the relay is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy
from sqlalchemy import func, select, update

from moderation import metrics
from moderation.errors import RetryableError
from moderation.storage.database import translate_errors
from moderation.storage.models import OutboxRow
from moderation.storage.retention import prune_delivery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundResult:
    published: int
    failed: int


class OutboxRelay:
    def __init__(
        self,
        db: sqlalchemy.Engine,
        make_producer: Callable[[], Any],
        *,
        batch_size: int = 500,
        send_timeout_s: float = 30.0,
        idle_s: float = 0.05,
        max_backoff_s: float = 30.0,
        prune_every_s: float = 600.0,
    ) -> None:
        self.db = db
        self._make_producer = make_producer
        self._producer: Any = None
        self.batch_size = batch_size
        self.send_timeout_s = send_timeout_s
        self.idle_s = idle_s
        self.max_backoff_s = max_backoff_s
        self.prune_every_s = prune_every_s
        self._last_prune = time.monotonic()

    def _drop_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=0)
            except Exception:  # closing a broken client: nothing more to do
                log.debug("closing the producer failed", exc_info=True)
            self._producer = None

    def publish_once(self) -> RoundResult:
        """One round (see the module docstring). Raises StorageUnavailable if the database fails."""
        with translate_errors(), self.db.begin() as conn:
            rows = conn.execute(
                select(OutboxRow.id, OutboxRow.topic, OutboxRow.key, OutboxRow.value)
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return RoundResult(0, 0)
            ok, failed = self._send(rows)
            if ok:
                conn.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id.in_(ok))
                    .values(published_at=func.now(), attempts=OutboxRow.attempts + 1)
                )
            for error, ids in failed.items():
                conn.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id.in_(ids))
                    .values(attempts=OutboxRow.attempts + 1, last_error=error[:500])
                )
        n_failed = sum(len(ids) for ids in failed.values())
        if ok:
            metrics.OUTBOX_PUBLISHED.inc(len(ok))
        if n_failed:
            metrics.OUTBOX_FAILURES.inc(n_failed)
            self._drop_producer()  # start over with a fresh connection next round
        return RoundResult(len(ok), n_failed)

    def _send(self, rows: Any) -> tuple[list[int], dict[str, list[int]]]:
        """Produce the rows; returns (acknowledged ids, {error: ids that failed})."""
        failed: dict[str, list[int]] = {}
        futures: list[tuple[int, Any]] = []
        try:
            if self._producer is None:
                self._producer = self._make_producer()
            for r in rows:
                futures.append((r.id, self._producer.send(r.topic, value=bytes(r.value), key=_bytes(r.key))))
            self._producer.flush(timeout=self.send_timeout_s)
        except Exception as exc:  # broker unreachable, metadata timeout: the rest of the rows wait for a retry
            sent = {i for i, _ in futures}
            failed.setdefault(_describe(exc), []).extend(r.id for r in rows if r.id not in sent)
        ok: list[int] = []
        for row_id, fut in futures:
            try:
                fut.get(timeout=0 if fut.is_done else self.send_timeout_s)
                ok.append(row_id)
            except Exception as exc:  # the broker refused it or never acknowledged: not published
                failed.setdefault(_describe(exc), []).append(row_id)
        return ok, failed

    def report_backlog(self) -> float:
        """Set the backlog gauge: seconds since the oldest unpublished row was written (0 when none)."""
        with translate_errors(), self.db.connect() as conn:
            age = conn.execute(
                select(func.extract("epoch", func.now() - OutboxRow.created_at))
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.id)
                .limit(1)
            ).scalar()
        seconds = float(age or 0.0)
        metrics.OUTBOX_OLDEST_SECONDS.set(seconds)
        return seconds

    def run(self, stop: threading.Event) -> None:
        """Publish until `stop` is set: rounds back to back while there is work, short naps when idle,
        exponential backoff while the broker or the database fails."""
        backoff = 0.0
        last_report = 0.0
        while not stop.is_set():
            try:
                result = self.publish_once()
                if time.monotonic() - last_report > 1.0:
                    self.report_backlog()
                    last_report = time.monotonic()
                if time.monotonic() - self._last_prune > self.prune_every_s:
                    self._prune()
            except RetryableError as exc:
                log.warning("outbox relay: %s", exc)
                result = RoundResult(0, 1)
            if result.failed:
                backoff = min(self.max_backoff_s, max(0.5, backoff * 2))
                log.warning("outbox relay: %d messages not acknowledged; retrying in %.1f s", result.failed, backoff)
                stop.wait(backoff)
            else:
                backoff = 0.0
                if result.published == 0:
                    stop.wait(self.idle_s)
        self._drop_producer()

    def _prune(self) -> None:
        self._last_prune = time.monotonic()
        with translate_errors(), self.db.begin() as conn:
            n = prune_delivery(conn, timedelta(days=1))
        if n:
            log.info("outbox relay: pruned %d published outbox rows and old batch receipts", n)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
