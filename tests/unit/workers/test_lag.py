"""Committed lag, as measured from outside the consumers: end offset minus the group's committed offset."""

from __future__ import annotations

from kafka.structs import TopicPartition

from moderation import metrics
from workers.lag import export, measure


class Client:
    """What `measure` reads of a KafkaConsumer that never joins the group."""

    def __init__(self, ends: dict[int, int], starts: dict[int, int], committed: dict[int, int | None]) -> None:
        self.ends, self.starts, self._committed = ends, starts, committed

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.ends)

    def end_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp.partition] for tp in parts}

    def beginning_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.starts[tp.partition] for tp in parts}

    def committed(self, tp: TopicPartition) -> int | None:
        return self._committed[tp.partition]


def test_lag_counts_from_the_commit_and_from_the_log_start_when_never_committed() -> None:
    # Partition 0: a consumer that read far ahead but whose commit is stuck at 100 — its lag stays 900.
    # Partition 1: nobody ever committed (dead or absent consumers): everything since the log start counts.
    client = Client(ends={0: 1000, 1: 50}, starts={0: 0, 1: 10}, committed={0: 100, 1: None})
    readings = measure(client, "g", ["posts"])
    assert {(r.partition, r.lag) for r in readings} == {(0, 900), (1, 40)}
    export(readings)
    assert metrics.CONSUMER_GROUP_LAG.labels("g", "posts", "0")._value.get() == 900
