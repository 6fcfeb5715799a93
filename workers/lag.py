"""Committed lag per consumer group and partition, measured from outside the consumers (as kafka-exporter
and Burrow do): log end offset minus the group's committed offset.

Measured this way a consumer that is dead, or alive with its commits stuck behind one unfinished
offset, shows a growing lag — unlike lag computed inside a consumer from its fetch position, which
vanishes with the consumer and looks healthy while commits are stuck. A partition the group never
committed counts from its log start offset (everything in it is unprocessed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from moderation import metrics
from moderation.endpoints import Endpoints
from moderation.kafka_io import make_consumer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    end: int
    committed: int | None

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


def measure(client: KafkaConsumer, group: str, topics: Sequence[str]) -> list[PartitionLag]:
    """One reading. `client` is a KafkaConsumer with `group_id=group` that never subscribes (so it never
    joins the group or moves its offsets); it only asks the coordinator for committed offsets."""
    parts = [TopicPartition(t, p) for t in topics for p in sorted(client.partitions_for_topic(t) or ())]
    if not parts:
        return []
    ends = client.end_offsets(parts)
    starts = client.beginning_offsets(parts)
    out = []
    for tp in parts:
        committed = client.committed(tp)
        base = committed if committed is not None else starts.get(tp, 0)
        out.append(PartitionLag(group, tp.topic, tp.partition, int(ends.get(tp, 0)), base))
    return out


def export(readings: Sequence[PartitionLag]) -> None:
    for r in readings:
        metrics.CONSUMER_GROUP_LAG.labels(r.group, r.topic, str(r.partition)).set(r.lag)


def run_exporter(endpoints: Endpoints, groups: dict[str, Sequence[str]], interval_s: float, stop: object) -> None:
    """Measure every `interval_s` until `stop.is_set()`. A failed reading keeps the last values and counts
    an error; the gauge is absent only until the first reading (alert on `absent()` for a dead exporter)."""
    clients = {g: make_consumer(endpoints, g, enable_auto_commit=False) for g in groups}
    try:
        while not stop.is_set():  # type: ignore[attr-defined]
            started = time.monotonic()
            for group, topics in groups.items():
                try:
                    export(measure(clients[group], group, topics))
                except Exception as exc:  # broker unreachable: keep trying, say so
                    metrics.ERRORS.labels("lag_exporter", type(exc).__name__).inc()
                    log.warning("lag of group %s not measured: %s", group, exc)
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))  # type: ignore[attr-defined]
    finally:
        for client in clients.values():
            client.close(autocommit=False)
