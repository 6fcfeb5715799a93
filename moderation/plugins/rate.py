"""The rate plugin: how many posts one author made in a sliding window, counted across every worker.

A burst of posts from one account is a spam signal on its own (and the cheapest one to evade per post), so
the count has to cover the whole stream: with `state` = a redis:// URL every worker process adds to the same
per-(tenant, author) window. Time is the post's `created_at` (event time), falling back to the time it is
evaluated, so a backlog replayed later is judged by when it was posted, not by when it was read.

The post id is the window's member: a redelivered post (at-least-once delivery) is counted once, and at the
time it was first seen, so a redelivery gets the same count as the first delivery had (plus anything that
arrived in between with an earlier or equal time).

Score: below the limit it grows to 0.45 (count/max_posts * 0.45), so an "ok" author never reads as a finding;
above it, 0.5 at the first post past the limit rising linearly to 1.0 at twice the limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any, ClassVar
from urllib.parse import quote

from moderation.config import Settings
from moderation.errors import StateStoreError
from moderation.plugins.state import StateStore, number_option, store_from_options
from moderation.posts import Post
from moderation.signals import Signal

log = logging.getLogger(__name__)

LABEL_EXCEEDED = "rate_exceeded"
LABEL_OK = "ok"


def rate_score(count: int, max_posts: int) -> float:
    """Strength of evidence for `count` posts in the window against a limit of `max_posts`."""
    if count <= max_posts:
        return 0.45 * count / max_posts
    return min(1.0, 0.5 + 0.5 * (count - max_posts - 1) / max(1, max_posts - 1))


def event_time(post: Post, now: float) -> float:
    """The post's created_at in epoch seconds (a naive time is taken as UTC), or `now` when it has none."""
    if post.created_at is None:
        return now
    created = post.created_at if post.created_at.tzinfo is not None else post.created_at.replace(tzinfo=UTC)
    return created.timestamp()


class RatePlugin:
    """Options (defaults): `window_seconds` (60), `max_posts` (10), `state` ("memory" | redis:// URL),
    `state_prefix` ("moderation:")."""

    name: ClassVar[str] = "rate"
    version: ClassVar[str] = "1.0"

    def __init__(self, settings: Settings, options: Mapping[str, Any], store: StateStore | None = None) -> None:
        self.window_seconds = number_option(options, self.name, "window_seconds", 60, minimum=0.001)
        self.max_posts = int(number_option(options, self.name, "max_posts", 10, minimum=1, integer=True))
        self.store = store if store is not None else store_from_options(options, self.name)

    def _key(self, post: Post, author: str) -> str:
        # Quoted so that a ':' in a tenant or author name cannot make two different pairs share a key.
        return f"rate:v1:{quote(post.tenant, safe='')}:{quote(author, safe='')}"

    def evaluate(self, posts: Sequence[Post]) -> list[list[Signal]]:
        now = time.time()
        out: list[Signal | None] = [None] * len(posts)
        entries: list[tuple[str, str, float]] = []
        indices: list[int] = []
        for i, post in enumerate(posts):
            if post.author is None or not post.author.strip():
                out[i] = self._abstain("no_author")
                continue
            try:
                entries.append((self._key(post, post.author), post.id, event_time(post, now)))
                indices.append(i)
            except Exception:  # e.g. a created_at out of range: this post abstains, the batch goes on
                log.exception("rate: could not read post %r", post.id)
                out[i] = self._abstain("error")
        try:
            # One call for the batch, applied in order, so posts of the same author in this batch count each other.
            counts = self.store.window_add(entries, self.window_seconds)
        except StateStoreError as exc:
            log.warning("rate: state store unavailable, abstaining for %d posts: %s", len(entries), exc)
            counts = []
            for i in indices:
                out[i] = self._abstain("state_unavailable")
        for i, count in zip(indices, counts, strict=False):
            out[i] = self._signal(posts[i], count)
        return [[s if s is not None else self._abstain("error")] for s in out]

    def _abstain(self, reason: str) -> Signal:
        return Signal(plugin=self.name, version=self.version, score=None, abstained=True, reason=reason)

    def _signal(self, post: Post, count: int) -> Signal:
        exceeded = count > self.max_posts
        return Signal(
            plugin=self.name,
            version=self.version,
            score=round(rate_score(count, self.max_posts), 4),
            label=LABEL_EXCEEDED if exceeded else LABEL_OK,
            details={"posts_in_window": count, "max_posts": self.max_posts, "window_seconds": self.window_seconds},
            evidence={"author": post.author, "posts_in_window": count, "window_seconds": self.window_seconds}
            if exceeded
            else {},
        )
