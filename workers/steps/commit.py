"""Commit: every `interval_s`, commit for each partition the first offset whose post is not yet durable
(workers/offsets.py). Only from the poll loop's thread — never from a rebalance callback, where
kafka-python 3.x refuses commits. A failed commit is logged and counted, never raised: the partition's
next owner starts from the last commit that succeeded, and the idempotent writes make the repeat harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from moderation import metrics
from workers.offsets import OffsetBook
from workers.steps import PartitionKey

log = logging.getLogger(__name__)

CommitOffsets = Callable[[dict[PartitionKey, int]], None]


class Committer:
    def __init__(self, book: OffsetBook, commit: CommitOffsets, interval_s: float = 0.5) -> None:
        self.book = book
        self._commit = commit
        self.interval_s = interval_s
        self._last = float("-inf")
        self.commits = 0
        self.committed: dict[PartitionKey, int] = {}

    def poll(self, now: float, *, force: bool = False) -> None:
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        offsets = self.book.to_commit()
        if not offsets:
            return
        try:
            self._commit(offsets)
        except Exception as exc:  # CommitFailedError after a rebalance, broker unreachable, ...
            metrics.ERRORS.labels("consumer", "commit").inc()
            log.warning("offset commit failed (%s); work since the last commit may be delivered again", exc)
            return
        self.book.mark_committed(offsets)
        self.commits += 1
        self.committed.update(offsets)
        metrics.OFFSETS_COMMITTED.inc()
