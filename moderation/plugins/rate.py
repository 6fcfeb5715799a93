"""The rate plugin: how many posts one author made in a sliding window, counted across every worker.

A burst of posts from one account is a spam signal on its own (and the cheapest one to evade per post), so
the count has to cover the whole stream: in the workers (`state` = "auto" or a redis:// URL) every worker
process adds to the same per-(tenant, author) window in Redis. If Redis is down the posts abstain as
*degraded*, and their verdicts say so (moderation/policy.py). Time is the post's `created_at` (event time), falling back to the time it is
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
from collections.abc import Sequence
from typing import Annotated, ClassVar, cast

from pydantic import Field

from moderation.config import Settings
from moderation.errors import StateStoreError
from moderation.plugins.base import Plugin, PluginOptions, SignalDetails, StoredSignal
from moderation.plugins.state import StateOptions, StateStore, event_seconds, key_part, store_from_options
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


class RateOptions(StateOptions):
    # Posts per (tenant, author) allowed within window_seconds of event time before the label is rate_exceeded.
    window_seconds: Annotated[float, Field(gt=0.0)] = 60.0
    max_posts: Annotated[int, Field(ge=1)] = 10


class RateDetails(SignalDetails):
    posts_in_window: int
    max_posts: int
    window_seconds: float


class RatePlugin(Plugin):
    name: ClassVar[str] = "rate"
    version: ClassVar[str] = "1.0"
    Options: ClassVar[type[PluginOptions]] = RateOptions
    Details: ClassVar[type[SignalDetails]] = RateDetails
    labels: ClassVar[dict[str, bool]] = {LABEL_EXCEEDED: True, LABEL_OK: False}
    default_weight: ClassVar[float] = 0.3
    default_cap: ClassVar[float] = 0.3

    def __init__(self, settings: Settings, options: PluginOptions, store: StateStore | None = None) -> None:
        super().__init__(settings, options)
        opts = cast(RateOptions, options)
        self.window_seconds = opts.window_seconds
        self.max_posts = opts.max_posts
        self.store = store if store is not None else store_from_options(opts, self.name)

    def _key(self, post: Post, author: str) -> str:
        # Quoted so that a ':' in a tenant or author name cannot make two different pairs share a key.
        return f"rate:v1:{key_part(post.tenant)}:{key_part(author)}"

    def evaluate(self, posts: Sequence[Post]) -> list[list[Signal]]:
        now = time.time()
        out: list[Signal | None] = [None] * len(posts)
        entries: list[tuple[str, str, float]] = []
        indices: list[int] = []
        for i, post in enumerate(posts):
            if post.author is None or not post.author.strip():
                out[i] = self.abstain("no_author")
                continue
            try:
                entries.append((self._key(post, post.author), post.id, event_seconds(post, now)))
                indices.append(i)
            except Exception:  # e.g. a created_at out of range: this post abstains, the batch goes on
                log.exception("rate: could not read post %r", post.id)
                out[i] = self.abstain("error")
        try:
            # One call for the batch, applied in order, so posts of the same author in this batch count each other.
            counts = self.store.window_add(entries, self.window_seconds)
        except StateStoreError as exc:
            log.warning("rate: state store unavailable, abstaining for %d posts: %s", len(entries), exc)
            counts = []
            for i in indices:
                out[i] = self.abstain("state_unavailable", degraded=True)
        for i, count in zip(indices, counts, strict=False):
            out[i] = self._signal(posts[i], count)
        return [[s if s is not None else self.abstain("error")] for s in out]

    def _signal(self, post: Post, count: int) -> Signal:
        exceeded = count > self.max_posts
        return self.signal(
            score=round(rate_score(count, self.max_posts), 4),
            label=LABEL_EXCEEDED if exceeded else LABEL_OK,
            details=RateDetails(posts_in_window=count, max_posts=self.max_posts, window_seconds=self.window_seconds),
            evidence={"author": post.author, "posts_in_window": count, "window_seconds": self.window_seconds}
            if exceeded
            else {},
        )

    @classmethod
    def explain(cls, signal: StoredSignal) -> str:
        d = signal.details
        if signal.abstained or not isinstance(d, RateDetails):
            return super().explain(signal)
        return f"The author posted {d.posts_in_window} time(s) within {d.window_seconds:g} s (limit {d.max_posts})."
