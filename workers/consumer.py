"""The Kafka consumer: the steps of workers/steps/ composed around one KafkaConsumer.

    poll -> decode -> batch -> dispatch (Celery) ... receipts in PostgreSQL -> offsets done -> commit
                 \\-> dead letter (invalid) ........ acknowledged by Kafka  ---/

An offset is committed only once every post before it is durable: stored with its receipt by a worker,
or dead-lettered with its reason. Whatever is not committed is delivered again after any crash, and the
workers' receipts make the repeat a no-op.

Threads: everything runs on the thread that calls `run()`. The rebalance listener, which kafka-python
3.x calls on its IO thread, only records what happened; the poll loop applies it at its next step. It
never commits and never waits (a commit there raises; a wait there starves the heartbeats).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from celery import Celery
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from moderation import metrics
from moderation.config import Settings
from moderation.endpoints import Endpoints
from moderation.kafka_io import make_consumer, make_producer
from workers.offsets import OffsetBook
from workers.steps import PartitionKey
from workers.steps.batch import Batcher
from workers.steps.commit import Committer
from workers.steps.dead_letter import DeadLetters, dead_letter_value
from workers.steps.decode import Item, Rejected, decode
from workers.steps.dispatch import Batch, CompletedBatches, Dispatcher, SendTask
from workers.steps.flow import Limits, Load

__all__ = ["ConsumerStats", "PostConsumer", "dead_letter_value", "resend_after"]

log = logging.getLogger(__name__)

RECEIPT_CHECK_INTERVAL_S = 0.05
# Bytes of messages the consumer holds (open batch, in flight, dead letters pending) before it pauses.
MAX_INFLIGHT_BYTES = 64 * 1024 * 1024


def max_uncommitted(settings: Settings) -> int:
    """Offsets one partition may hold behind its oldest unfinished one before it is paused: room for every
    batch in flight to come from that partition, four times over."""
    p = settings.pipeline
    return max(10_000, 4 * p.max_inflight_batches * p.batch_max_posts)


@dataclass
class ConsumerStats:
    consumed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    stored: int = 0
    given_up: int = 0
    revoked_dropped: int = 0
    committed: dict[PartitionKey, int] = field(default_factory=dict)


def resend_after(settings: Settings) -> float:
    """A batch without a receipt is sent again only after its run could not possibly still be going on."""
    p = settings.pipeline
    return max(p.batch_timeout_s, p.task_time_limit_s + 30.0)


def receipts_from_database(database_url: str) -> CompletedBatches:
    """`completed_batches` over a small connection pool of the consumer's own."""
    from moderation.storage.database import make_engine
    from moderation.storage.queries import completed_batches

    engine = make_engine(database_url, 1)

    def completed(batch_ids: Sequence[str]) -> set[str]:
        with engine.connect() as conn:
            return completed_batches(conn, batch_ids)

    return completed


def celery_sender(app: Celery, queue: str) -> Callable[[str, dict[str, Any]], None]:
    from workers.celery_app import TASK_NAME

    def send(batch_id: str, payload: dict[str, Any]) -> None:
        # retry=False: a broker that is down fails this call at once; the dispatcher owns the backoff.
        app.send_task(TASK_NAME, args=[payload], task_id=batch_id, queue=queue, retry=False, ignore_result=True)

    return send


class PostConsumer:
    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        *,
        app: Celery | None = None,
        send: SendTask | None = None,
        kafka_consumer: KafkaConsumer | None = None,
        producer: KafkaProducer | None = None,
        completed: CompletedBatches | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.cfg = cfg = settings.pipeline
        self.clock = clock
        if send is None:
            if app is None:
                from workers.celery_app import make_app

                app = make_app(settings, endpoints)
            send = celery_sender(app, cfg.celery_queue)
        self.kafka = kafka_consumer or make_consumer(
            endpoints,
            cfg.group_id,
            max_poll_records=cfg.batch_max_posts,
            # Fail over quickly when a consumer dies.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            # The poll loop never blocks for long: nothing in it waits on a worker.
            max_poll_interval_ms=60_000,
            **cooperative_assignment(endpoints.kafka_rebalance),
        )
        self.producer = producer or make_producer(endpoints)
        self.book = OffsetBook()
        self.batcher = Batcher(
            cfg.batch_max_posts, MAX_INFLIGHT_BYTES // cfg.max_inflight_batches, cfg.batch_linger_ms / 1000
        )
        self.dispatcher = Dispatcher(
            send,
            completed or receipts_from_database(endpoints.database_url),
            resend_after_s=resend_after(settings),
            max_attempts=cfg.max_batch_attempts,
            check_interval_s=RECEIPT_CHECK_INTERVAL_S,
        )
        self.dead_letters = DeadLetters(lambda value, key: self.producer.send(cfg.dead_letter_topic, value, key=key))
        self.committer = Committer(self.book, self._commit_offsets)
        self.limits = Limits(cfg.max_inflight_batches, MAX_INFLIGHT_BYTES, max_uncommitted(settings))
        self.stats = ConsumerStats()
        self._events: deque[tuple[str, set[PartitionKey]]] = deque()  # from the rebalance listener's thread
        self._paused: set[PartitionKey] = set()
        self._stop = threading.Event()

    # ---- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading, finish in-flight work (up to `drain_timeout_s`), commit, and leave the group."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: draining in-flight batches and stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, until: float | None = None) -> ConsumerStats:
        """Consume until stop() (or until the clock reads `until`, for tests)."""
        self.kafka.subscribe([self.cfg.input_topic], listener=self._listener())
        log.info("consuming %s as group %s", self.cfg.input_topic, self.cfg.group_id)
        try:
            while not self._stop.is_set() and (until is None or self.clock() < until):
                self.step()
            self._drain()
        finally:
            self._close()
        return self.stats

    def step(self, *, reading: bool = True) -> None:
        now = self.clock()
        self._apply_rebalance_events()
        for rejected in self.dead_letters.poll(now):
            self.book.done(*rejected.position)
            self.stats.dead_lettered += 1
        durable, given_up = self.dispatcher.poll(now)
        for batch in durable:
            self._durable(batch)
        for batch in given_up:
            self._give_up(batch, now)
        self._flow_control(reading)
        busy = self.dispatcher.count or len(self.batcher) or self.dead_letters.count
        records = self.kafka.poll(timeout_ms=20 if busy else 100)
        # A rebalance may have happened inside poll(): forget revoked partitions before accepting anything.
        self._apply_rebalance_events()
        now = self.clock()
        if records:
            assigned = self.kafka.assignment()
            for tp, messages in records.items():
                if tp not in assigned:
                    continue  # fetched before its revocation; its next owner reads it again
                for message in messages:
                    self._accept(message, now)
        if self.batcher.due(now):
            self._dispatch(now)
        self.committer.poll(now)
        self.stats.committed = self.committer.committed

    def _drain(self) -> None:
        """SIGTERM: send the open batch, wait for in-flight work without reading more, commit what is durable."""
        deadline = self.clock() + self.cfg.drain_timeout_s
        if len(self.batcher):
            self._dispatch(self.clock())
        while (self.dispatcher.count or self.dead_letters.count) and self.clock() < deadline:
            self.step(reading=False)
            self.producer.flush(timeout=0.05)
        if self.dispatcher.count:
            log.warning(
                "drain timed out with %d batches in flight; they will be delivered again", self.dispatcher.count
            )
        self.committer.poll(self.clock(), force=True)
        self.stats.committed = self.committer.committed

    def _close(self) -> None:
        try:
            self.producer.flush(timeout=10)
        except KafkaError as exc:
            log.warning("flushing the producer on shutdown: %s", exc)
        self.kafka.close(autocommit=False)
        self.producer.close(timeout=10)
        log.info(
            "stopped: consumed %d, stored %d, dead-lettered %d, %d batches still in flight (delivered again on restart)",
            self.stats.consumed,
            self.stats.stored,
            self.stats.dead_lettered,
            self.dispatcher.count,
        )

    def _listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self._events)

    # ---- the steps --------------------------------------------------------------------------------
    def _accept(self, message: Any, now: float) -> None:
        self.book.add(message.topic, message.partition, message.offset)
        self.stats.consumed += 1
        metrics.POSTS_CONSUMED.labels(message.topic).inc()
        decoded = decode(message, self.cfg.max_text_chars)
        if isinstance(decoded, Rejected):
            self.dead_letters.add(decoded, now)
            return
        self.batcher.add(decoded, now)
        if self.batcher.full():
            self._dispatch(now)

    def _dispatch(self, now: float) -> None:
        self.dispatcher.submit(self.batcher.take(), now)
        self.stats.batches += 1

    def _durable(self, batch: Batch) -> None:
        now_ms = time.time() * 1000
        for item in batch.items:
            self.book.done(*item.position)
            if item.timestamp_ms:
                metrics.END_TO_END_SECONDS.observe(max(0.0, (now_ms - item.timestamp_ms) / 1000))
        self.stats.stored += len(batch.items)

    def _give_up(self, batch: Batch, now: float) -> None:
        self.stats.given_up += len(batch.items)
        detail = f"batch {batch.batch_id} had no receipt after {batch.sends} sends"
        for item in batch.items:
            self.dead_letters.add(_failed(item, detail), now)

    def _flow_control(self, reading: bool) -> None:
        assigned = {(tp.topic, tp.partition) for tp in self.kafka.assignment()}
        load = Load(
            batches=self.dispatcher.count + (1 if len(self.batcher) else 0),
            dead_letters=self.dead_letters.count,
            bytes=self.dispatcher.bytes + self.batcher.bytes + self.dead_letters.bytes,
            uncommitted=self.book.uncommitted(),
        )
        to_pause, why = self.limits.to_pause(assigned, load) if reading else (assigned, "stopping")
        pause = to_pause - self._paused
        resume = (self._paused - to_pause) & assigned
        try:
            if pause:
                if why != "stopping":
                    metrics.CONSUMER_PAUSES.inc()
                self.kafka.pause(*(TopicPartition(t, p) for t, p in pause))
            if resume:
                self.kafka.resume(*(TopicPartition(t, p) for t, p in resume))
        except KafkaError as exc:  # the assignment changed under us (IO thread); the next step sees the new one
            log.debug("pause/resume skipped: %s", exc)
            return
        self._paused = to_pause

    def _commit_offsets(self, offsets: dict[PartitionKey, int]) -> None:
        self.kafka.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})

    # ---- rebalances (applied on the poll loop's thread) ----------------------------------------------
    def _apply_rebalance_events(self) -> None:
        while self._events:
            kind, keys = self._events.popleft()
            if kind == "assigned":
                log.info("partitions assigned: %s", sorted(keys))
                continue
            # Revoked: forget their posts everywhere; the new owner reads them again from the last commit.
            # Offsets already durable were committed by the last commit, or will be redone harmlessly.
            dropped = self.batcher.drop_partitions(keys) + self.dispatcher.forget_partitions(keys)
            self.book.forget(list(keys))
            self._paused -= keys
            self.stats.revoked_dropped += dropped
            log.info("partitions revoked: %s; %d posts in flight left to their next owner", sorted(keys), dropped)


def _failed(item: Item, detail: str) -> Rejected:
    return Rejected(item.position, item.raw, None, item.timestamp_ms, "processing_failed", detail)


def cooperative_assignment(mode: str = "cooperative") -> dict[str, Any]:
    """Incremental cooperative rebalancing (KIP-429) where the client has it and MODERATION_KAFKA_REBALANCE
    is not "eager": a member that joins or leaves moves only the partitions that change owner, instead of
    every member revoking everything. Eager rebalancing is just as safe here (nothing is committed or
    awaited in the listener); it costs redelivery of what was in flight."""
    if mode == "eager":
        return {}
    try:
        from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    except ImportError:  # an older kafka-python: eager rebalancing
        return {}
    return {"partition_assignment_strategy": (CooperativeStickyAssignor,)}


class _Rebalance(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread: records the event and returns at once."""

    def __init__(self, events: deque[tuple[str, set[PartitionKey]]]) -> None:
        self.events = events

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.events.append(("revoked", {(tp.topic, tp.partition) for tp in revoked}))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.events.append(("assigned", {(tp.topic, tp.partition) for tp in assigned}))
