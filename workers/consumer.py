"""The Kafka consumer: reads posts, validates them, sends batches to the Celery workers, and commits an
offset only once every post before it has its verdict durably stored (or its dead letter written).

Nothing accepted is lost:
- a malformed message goes to the dead-letter topic (with its reason and source position) before its
  offset can be committed;
- a batch whose worker died or which failed is sent again (bounded), then its posts are dead-lettered;
- on SIGTERM or a partition revocation, in-flight batches are given `drain_timeout_s` to finish and what
  finished is committed; anything else is simply delivered again later, and the idempotent write in the
  workers makes that repeat harmless.

Back-pressure: at `max_inflight_batches` batches in flight the consumer pauses its partitions (it keeps
polling, so it stays in the group) and resumes as batches complete.
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from moderation import metrics
from moderation.config import Settings
from moderation.endpoints import Endpoints
from moderation.errors import InvalidPost
from moderation.kafka_io import make_consumer, make_producer
from moderation.posts import post_from_bytes
from workers.celery_app import TASK_NAME, make_app
from workers.offsets import OffsetBook
from workers.processing import BATCH_FORMAT_VERSION

log = logging.getLogger(__name__)

Position = tuple[str, int, int]  # topic, partition, offset

COMMIT_INTERVAL_S = 0.5
LAG_INTERVAL_S = 5.0
RESULT_CHECK_INTERVAL_S = 0.01
DLQ_FORMAT_VERSION = 1


@dataclass
class _Item:
    """One valid post waiting in a batch: its message for the worker and what the consumer must remember."""

    post: dict[str, Any]
    position: Position
    raw: bytes
    timestamp_ms: int


@dataclass
class _Batch:
    items: list[_Item]
    result: AsyncResult
    sent_at: float
    attempts: int = 1

    @property
    def partitions(self) -> set[tuple[str, int]]:
        return {(i.position[0], i.position[1]) for i in self.items}


@dataclass
class _DeadLetter:
    future: Any
    position: Position
    value: bytes
    key: bytes | None
    reason: str
    attempts: int = 1


@dataclass
class ConsumerStats:
    consumed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    stored: int = 0
    resends: int = 0
    commits: int = 0
    committed: dict[tuple[str, int], int] = field(default_factory=dict)


def dead_letter_value(
    raw: bytes | None, position: Position, timestamp_ms: int | None, reason: str, detail: str
) -> bytes:
    """The dead-letter message (version 1): why, where from, and the original bytes, untouched."""
    raw = raw or b""
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return json.dumps(
        {
            "v": DLQ_FORMAT_VERSION,
            "reason": reason,
            "detail": detail,
            "source": {
                "topic": position[0],
                "partition": position[1],
                "offset": position[2],
                "timestamp": timestamp_ms,
            },
            "raw": text,
            "raw_base64": base64.b64encode(raw).decode("ascii"),
        },
        separators=(",", ":"),
    ).encode()


class PostConsumer:
    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        *,
        app: Celery | None = None,
        kafka_consumer: KafkaConsumer | None = None,
        producer: KafkaProducer | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.pipeline
        self.endpoints = endpoints
        self.app = app or make_app(settings, endpoints)
        self.kafka = kafka_consumer or make_consumer(
            endpoints,
            self.cfg.group_id,
            max_poll_records=self.cfg.batch_max_posts,
            # Fail over quickly when a consumer dies; join quickly on the embedded broker.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=max(30_000, int(self.cfg.drain_timeout_s * 1000) + 10_000),
        )
        self.producer = producer or make_producer(endpoints)
        self.book = OffsetBook()
        self.stats = ConsumerStats()
        self._open: list[_Item] = []
        self._open_since = 0.0
        self._inflight: dict[str, _Batch] = {}
        self._dead_letters: list[_DeadLetter] = []
        self._stop = threading.Event()
        self._paused = False
        self._last_commit = 0.0
        self._last_lag = 0.0
        self._last_check = 0.0

    # ---- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish in-flight work, commit, and leave (what SIGTERM and SIGINT do)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: draining in-flight batches and stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, until: float | None = None) -> ConsumerStats:
        """Consume until stop() (or until the monotonic time `until`, for tests)."""
        self.kafka.subscribe([self.cfg.input_topic], listener=_Rebalance(self))
        log.info("consuming %s as group %s", self.cfg.input_topic, self.cfg.group_id)
        try:
            while not self._stop.is_set() and (until is None or time.monotonic() < until):
                self.step()
        finally:
            self._shutdown()
        return self.stats

    def step(self) -> None:
        self._check_inflight()
        self._check_dead_letters()
        self._flow_control()
        timeout_ms = 10 if (self._inflight or self._open or self._dead_letters) else 100
        records = self.kafka.poll(timeout_ms=timeout_ms)
        for messages in records.values():
            for message in messages:
                self._accept(message)
        if self._open and (
            len(self._open) >= self.cfg.batch_max_posts
            or time.monotonic() - self._open_since >= self.cfg.batch_linger_ms / 1000
        ):
            self._dispatch()
        self._commit()
        self._update_lag()

    def _shutdown(self) -> None:
        if self._open:
            self._dispatch()
        self._drain(lambda _partition: True)
        self._commit(force=True)
        try:
            self.producer.flush(timeout=10)
        except KafkaError as exc:
            log.warning("flushing the producer on shutdown: %s", exc)
        self.kafka.close(autocommit=False)
        self.producer.close(timeout=10)
        log.info(
            "stopped: consumed %d, stored %d, dead-lettered %d, %d still in flight (delivered again on restart)",
            self.stats.consumed,
            self.stats.stored,
            self.stats.dead_lettered,
            sum(len(b.items) for b in self._inflight.values()),
        )

    # ---- reading ----------------------------------------------------------------------------------
    def _accept(self, message: Any) -> None:
        position: Position = (message.topic, message.partition, message.offset)
        self.book.add(*position)
        self.stats.consumed += 1
        metrics.POSTS_CONSUMED.labels(message.topic).inc()
        raw: bytes | None = message.value
        try:
            if raw is None:
                raise InvalidPost("empty_message", "the message has no value")
            post = post_from_bytes(raw, require_envelope=True, max_text_chars=self.cfg.max_text_chars)
        except InvalidPost as exc:
            self._dead_letter(raw, message.key, position, message.timestamp, exc.reason, exc.detail)
            return
        if not self._open:
            self._open_since = time.monotonic()
        body = post.to_json()
        body["_source"] = list(position)
        self._open.append(_Item(body, position, raw, int(message.timestamp or 0)))
        if len(self._open) >= self.cfg.batch_max_posts:
            self._dispatch()

    def _dead_letter(
        self,
        raw: bytes | None,
        key: bytes | None,
        position: Position,
        timestamp_ms: int | None,
        reason: str,
        detail: str,
    ) -> None:
        value = dead_letter_value(raw, position, timestamp_ms, reason, detail)
        log.info("dead-lettering %s[%d]@%d: %s", *position, reason)
        future = self.producer.send(self.cfg.dead_letter_topic, value, key=key)
        self._dead_letters.append(_DeadLetter(future, position, value, key, reason))

    def _check_dead_letters(self) -> None:
        still: list[_DeadLetter] = []
        for dl in self._dead_letters:
            if not dl.future.is_done:
                still.append(dl)
            elif dl.future.succeeded():
                self.book.done(*dl.position)
                self.stats.dead_lettered += 1
                metrics.DEAD_LETTERS.labels(dl.reason).inc()
            else:
                # Never drop it: the offset stays uncommitted until the dead letter is written.
                metrics.ERRORS.labels("consumer", "dead_letter_send").inc()
                log.warning("dead letter for %s[%d]@%d not written (%s); retrying", *dl.position, dl.future.exception)
                dl.future = self.producer.send(self.cfg.dead_letter_topic, dl.value, key=dl.key)
                dl.attempts += 1
                still.append(dl)
        self._dead_letters = still

    # ---- batches ----------------------------------------------------------------------------------
    def _send(self, items: list[_Item]) -> AsyncResult | None:
        batch_id = uuid.uuid4().hex
        payload = {"v": BATCH_FORMAT_VERSION, "batch_id": batch_id, "posts": [i.post for i in items]}
        try:
            result = self.app.send_task(TASK_NAME, args=[payload], task_id=batch_id, queue=self.cfg.celery_queue)
        except Exception as exc:  # the Celery broker is down: keep the batch and try again shortly
            metrics.ERRORS.labels("consumer", "celery_broker").inc()
            log.warning("cannot send a batch to the workers (%s); retrying", type(exc).__name__)
            return None
        metrics.BATCHES_SENT.inc()
        return result

    def _dispatch(self) -> None:
        items, self._open = self._open, []
        result = self._send(items)
        if result is None:
            self._open = items + self._open
            time.sleep(0.5)
            return
        self._inflight[result.id] = _Batch(items, result, time.monotonic())
        self.stats.batches += 1
        metrics.BATCHES_IN_FLIGHT.set(len(self._inflight))

    def _check_inflight(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_check < RESULT_CHECK_INTERVAL_S:
            return
        self._last_check = now
        for task_id, batch in list(self._inflight.items()):
            try:
                state = batch.result.state
            except Exception as exc:  # result backend unreachable: look again later
                metrics.ERRORS.labels("consumer", "result_backend").inc()
                log.warning("cannot read batch results (%s)", type(exc).__name__)
                return
            if state == "SUCCESS":
                self._complete(task_id, batch, batch.result.result or {})
            elif state == "FAILURE":
                self._retry(task_id, batch, "failure", repr(batch.result.result))
            elif state == "PENDING" and now - batch.sent_at > self.cfg.batch_timeout_s:
                # Never picked up, or its worker vanished without a trace: send it again.
                self._retry(task_id, batch, "timeout", f"no result after {self.cfg.batch_timeout_s:.0f} s")

    def _complete(self, task_id: str, batch: _Batch, result: dict[str, Any]) -> None:
        now_ms = time.time() * 1000
        for item in batch.items:
            self.book.done(*item.position)
            if item.timestamp_ms:
                metrics.END_TO_END_SECONDS.observe(max(0.0, (now_ms - item.timestamp_ms) / 1000))
        self.stats.stored += int(result.get("stored", 0))
        self._forget(task_id, batch)

    def _retry(self, task_id: str, batch: _Batch, cause: str, detail: str) -> None:
        self._forget(task_id, batch)
        if batch.attempts >= self.cfg.max_batch_attempts:
            log.error(
                "batch failed %d times (%s); dead-lettering its %d posts", batch.attempts, detail, len(batch.items)
            )
            for item in batch.items:
                self._dead_letter(item.raw, None, item.position, item.timestamp_ms, "processing_failed", detail[:2000])
            return
        metrics.BATCH_RESENDS.labels(cause).inc()
        self.stats.resends += 1
        log.warning("resending a batch of %d posts (%s: %s)", len(batch.items), cause, detail[:200])
        result = self._send(batch.items)
        if result is None:
            # Broker down: put the posts back at the front of the open batch; they go out with it.
            self._open = batch.items + self._open
            self._open_since = time.monotonic()
            return
        self._inflight[result.id] = _Batch(batch.items, result, time.monotonic(), batch.attempts + 1)
        metrics.BATCHES_IN_FLIGHT.set(len(self._inflight))

    def _forget(self, task_id: str, batch: _Batch) -> None:
        del self._inflight[task_id]
        metrics.BATCHES_IN_FLIGHT.set(len(self._inflight))
        try:
            batch.result.forget()
        except Exception:  # only housekeeping: results expire anyway
            log.debug("could not forget result %s", task_id)

    def _drain(self, concerns: Any, timeout: float | None = None) -> bool:
        """Wait until no in-flight batch or dead letter `concerns` its partitions. Returns whether it finished."""
        deadline = time.monotonic() + (self.cfg.drain_timeout_s if timeout is None else timeout)
        while True:
            self._check_inflight(force=True)
            self._check_dead_letters()
            busy = [b for b in self._inflight.values() if any(concerns(p) for p in b.partitions)]
            busy_dl = [d for d in self._dead_letters if concerns((d.position[0], d.position[1]))]
            if not busy and not busy_dl:
                return True
            if time.monotonic() >= deadline:
                log.warning("drain timed out with %d batches in flight; they will be delivered again", len(busy))
                return False
            self.producer.flush(timeout=0.05) if busy_dl else time.sleep(0.02)

    # ---- flow control, commits, lag ---------------------------------------------------------------
    def _flow_control(self) -> None:
        full = len(self._inflight) + (1 if self._open else 0) >= self.cfg.max_inflight_batches
        assignment = self.kafka.assignment()
        if full and assignment:
            if not self._paused:
                metrics.CONSUMER_PAUSES.inc()
            self.kafka.pause(*assignment)  # also pauses partitions assigned since the last pause
            self._paused = True
        elif not full and self._paused:
            self.kafka.resume(*self.kafka.paused())
            self._paused = False

    def _commit(self, force: bool = False, only: set[tuple[str, int]] | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._last_commit = now
        offsets = self.book.to_commit()
        if only is not None:
            offsets = {k: v for k, v in offsets.items() if k in only}
        if not offsets:
            return
        try:
            self.kafka.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions; the new owner starts from the last commit and redoes the rest.
            metrics.ERRORS.labels("consumer", "commit").inc()
            log.warning("offset commit failed (%s); work since the last commit will be delivered again", exc)
            return
        self.book.mark_committed(offsets)
        self.stats.commits += 1
        self.stats.committed.update(offsets)
        metrics.OFFSETS_COMMITTED.inc()

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < LAG_INTERVAL_S:
            return
        self._last_lag = now
        assignment = list(self.kafka.assignment())
        if not assignment:
            return
        try:
            ends = self.kafka.end_offsets(assignment)
            for tp in assignment:
                lag = max(0, ends.get(tp, 0) - self.kafka.position(tp))
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        except KafkaError as exc:
            log.debug("lag not updated: %s", exc)

    # ---- rebalances ---------------------------------------------------------------------------------
    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in revoked}
        if not keys:
            return
        log.info("partitions revoked: %s; finishing their in-flight batches", sorted(keys))
        if any((i.position[0], i.position[1]) in keys for i in self._open):
            self._dispatch()
        self._drain(lambda p: p in keys)
        self._commit(force=True, only=keys)
        self.book.forget(list(keys))
        for topic, partition in keys:
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(0)

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, consumer: PostConsumer) -> None:
        self.consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.consumer.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.consumer.on_assigned(set(assigned))
