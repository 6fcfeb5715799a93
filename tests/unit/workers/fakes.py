"""Fakes of what the consumer's steps talk to: Kafka messages and send futures, a clock, a Celery sender,
the receipts table, and an in-memory KafkaConsumer with a group coordinator that rebalances on demand."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka.structs import TopicPartition


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: int | None = 1_700_000_000_000


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Future:
    is_done: bool = False
    ok: bool = True
    exception: Any = None

    def succeeded(self) -> bool:
        return self.is_done and self.ok


@dataclass
class Celery:
    """Records sent batches; `down` makes every send raise like an unreachable broker."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    down: bool = False
    attempts: int = 0

    def send(self, batch_id: str, payload: dict[str, Any]) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        self.sent.append((batch_id, payload))


@dataclass
class Receipts:
    """The batch_receipts table: `done` holds receipted ids; every query is counted."""

    done: set[str] = field(default_factory=set)
    queries: int = 0
    down: bool = False

    def __call__(self, batch_ids: Sequence[str]) -> set[str]:
        self.queries += 1
        if self.down:
            raise ConnectionError("database down")
        return self.done & set(batch_ids)


class Producer:
    """A KafkaProducer whose sends succeed at once unless `fail` is set."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.fail = False

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> Future:
        if self.fail:
            return Future(is_done=True, ok=False, exception=RuntimeError("broker down"))
        self.sent.append((topic, value, key))
        return Future(is_done=True)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


class KafkaConsumer:
    """Partitions of one topic in memory. `rebalance(revoked=..., assigned=...)` calls the listener from
    another thread, as kafka-python 3.x does, and raises if anyone commits from inside the callback."""

    def __init__(self, topic: str, partitions: int, max_poll_records: int = 4) -> None:
        self.topic = topic
        self.max_poll_records = max_poll_records
        self.log: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        self.position: dict[int, int] = {}
        self.assigned: set[int] = set()
        self.paused_set: set[int] = set()
        self.committed: dict[int, int] = {}
        self.commits: list[dict[int, int]] = []
        self.listener: Any = None
        self._in_callback = False
        self.closed = False

    def produce(self, partition: int, value: bytes) -> None:
        self.log[partition].append(value)

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener
        self.rebalance(assigned=set(self.log))

    def rebalance(self, revoked: set[int] = frozenset(), assigned: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        def callback() -> None:
            self._in_callback = True
            try:
                if revoked:
                    self.listener.on_partitions_revoked({TopicPartition(self.topic, p) for p in revoked})
                if assigned:
                    self.listener.on_partitions_assigned({TopicPartition(self.topic, p) for p in assigned})
            finally:
                self._in_callback = False

        self.assigned = (self.assigned - set(revoked)) | set(assigned)
        for p in assigned:
            self.position[p] = self.committed.get(p, 0)
        self.paused_set -= set(revoked)
        thread = threading.Thread(target=callback)
        thread.start()
        thread.join()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(self.topic, p) for p in self.assigned}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_set |= {tp.partition for tp in tps}

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_set -= {tp.partition for tp in tps}

    def paused(self) -> set[TopicPartition]:
        return {TopicPartition(self.topic, p) for p in self.paused_set}

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Message]]:
        out: dict[TopicPartition, list[Message]] = {}
        room = self.max_poll_records
        for p in sorted(self.assigned - self.paused_set):
            start = self.position[p]
            values = self.log[p][start : start + room]
            room -= len(values)
            if values:
                out[TopicPartition(self.topic, p)] = [
                    Message(self.topic, p, start + i, v) for i, v in enumerate(values)
                ]
                self.position[p] = start + len(values)
        return out

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        if self._in_callback or threading.current_thread() is not threading.main_thread():
            raise AssertionError("commit() from the rebalance callback's thread")
        got = {tp.partition: meta.offset for tp, meta in offsets.items()}
        self.commits.append(got)
        self.committed.update(got)

    def close(self, autocommit: bool = False) -> None:
        self.closed = True
