"""Which offset of each partition may be committed.

Posts of one partition finish out of order (batches run in parallel; a malformed message is dead-lettered
at once). Kafka stores one number per partition — "everything before this is done" — so the committable
offset is the first offset not yet done. Committing only that makes a crash at any moment safe: whatever
was not committed is delivered again, and the idempotent write turns the repeat into a no-op.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Outstanding offsets of one partition, in the order they were read."""

    def __init__(self) -> None:
        self._outstanding: deque[int] = deque()
        self._done: set[int] = set()
        self._next: int | None = None  # one past the highest offset read

    def add(self, offset: int) -> None:
        """Record a message as read and not yet done (offsets arrive in increasing order)."""
        if self._next is not None and offset < self._next:
            # Redelivered after a seek or rebalance: already tracked (or already committed).
            return
        self._outstanding.append(offset)
        self._next = offset + 1

    def done(self, offset: int) -> None:
        if not self._outstanding or not self._outstanding[0] <= offset < (self._next or 0):
            # Not ours to track: finished before a revocation forgot it, or redelivered and not read yet.
            return
        self._done.add(offset)
        # Drop the finished prefix so memory stays bounded by what is in flight.
        while self._outstanding and self._outstanding[0] in self._done:
            self._done.discard(self._outstanding.popleft())

    def committable(self) -> int | None:
        """The offset to commit (the next one to read after a restart), or None when nothing was read."""
        if self._outstanding:
            return self._outstanding[0]
        return self._next

    @property
    def pending(self) -> int:
        return len(self._outstanding)


class OffsetBook:
    """PartitionOffsets for every assigned partition, and what was last committed."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], PartitionOffsets] = {}
        self._committed: dict[tuple[str, int], int] = {}

    def add(self, topic: str, partition: int, offset: int) -> None:
        self.partitions.setdefault((topic, partition), PartitionOffsets()).add(offset)

    def done(self, topic: str, partition: int, offset: int) -> None:
        tracker = self.partitions.get((topic, partition))
        if tracker is not None:  # None: the partition was revoked meanwhile; its new owner redoes the post
            tracker.done(offset)

    def to_commit(self) -> dict[tuple[str, int], int]:
        """Partitions whose committable offset moved since the last commit."""
        out = {}
        for key, tracker in self.partitions.items():
            offset = tracker.committable()
            if offset is not None and offset != self._committed.get(key):
                out[key] = offset
        return out

    def mark_committed(self, offsets: dict[tuple[str, int], int]) -> None:
        self._committed.update(offsets)

    def forget(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            self.partitions.pop(key, None)
            self._committed.pop(key, None)

    @property
    def pending(self) -> int:
        return sum(t.pending for t in self.partitions.values())

    def uncommitted(self) -> dict[tuple[str, int], int]:
        """Per partition: offsets held since its oldest unfinished one (what a stuck offset keeps in memory)."""
        return {key: t.pending for key, t in self.partitions.items()}
