"""Batch: valid posts grouped until the batch holds `max_posts` posts or `max_bytes` bytes, or its oldest
post has waited `linger_s`."""

from __future__ import annotations

from workers.steps import PartitionKey
from workers.steps.decode import Item


class Batcher:
    def __init__(self, max_posts: int, max_bytes: int, linger_s: float) -> None:
        self.max_posts = max_posts
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._items: list[Item] = []
        self._bytes = 0
        self._opened_at = 0.0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, item: Item, now: float) -> None:
        if not self._items:
            self._opened_at = now
        self._items.append(item)
        self._bytes += item.size

    def full(self) -> bool:
        return len(self._items) >= self.max_posts or self._bytes >= self.max_bytes

    def due(self, now: float) -> bool:
        """Whether the batch should go out now: full, or its oldest post waited long enough."""
        return bool(self._items) and (self.full() or now - self._opened_at >= self.linger_s)

    def take(self) -> list[Item]:
        items, self._items, self._bytes = self._items, [], 0
        return items

    def drop_partitions(self, keys: set[PartitionKey]) -> int:
        """Forget the posts of revoked partitions (their new owner reads them again). Returns how many."""
        kept = [i for i in self._items if i.partition not in keys]
        dropped = len(self._items) - len(kept)
        self._items = kept
        self._bytes = sum(i.size for i in kept)
        return dropped
