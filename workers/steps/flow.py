"""Flow: which partitions to pause. Back-pressure is pausing, never sleeping: a paused consumer keeps polling
(so it keeps its place in the group) and resumes as soon as the work it holds shrinks.

Three bounds:
- work in flight: batches sent or waiting to be sent, plus the open batch and pending dead letters,
  against `max_inflight_batches` — pauses every partition;
- bytes in flight: the original messages' bytes of all of that, against `max_inflight_bytes` — pauses
  every partition;
- the uncommitted backlog of one partition: offsets read since its oldest unfinished one, finished or
  not (a stuck offset keeps everything behind it uncommitted and in memory), against
  `max_uncommitted` — pauses that partition only.
One poll can still bring up to `max_poll_records` messages past a bound; the bounds hold to within that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from workers.steps import PartitionKey


@dataclass(frozen=True)
class Load:
    batches: int  # in flight or waiting to be sent, the open one counted as one
    dead_letters: int  # written but not yet acknowledged
    bytes: int
    uncommitted: Mapping[PartitionKey, int]


@dataclass(frozen=True)
class Limits:
    max_inflight_batches: int
    max_inflight_bytes: int
    max_uncommitted: int

    def to_pause(self, assigned: set[PartitionKey], load: Load) -> tuple[set[PartitionKey], str | None]:
        """The partitions to hold paused now, and why (None when none)."""
        if load.batches + load.dead_letters >= self.max_inflight_batches:
            return set(assigned), "batches"
        if load.bytes >= self.max_inflight_bytes:
            return set(assigned), "bytes"
        stuck = {p for p in assigned if load.uncommitted.get(p, 0) >= self.max_uncommitted}
        return stuck, ("uncommitted" if stuck else None)
