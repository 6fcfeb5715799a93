from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from moderation.config import parse_settings
from moderation.errors import PluginError, StateStoreError
from moderation.plugins.rate import RateOptions, RatePlugin, rate_score
from moderation.plugins.registry import build_plugin
from moderation.plugins.state import WindowEntry
from moderation.posts import Post
from moderation.signals import Signal

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def at(pid: str, seconds: float, author: str | None = "alice", tenant: str = "t") -> Post:
    return Post(id=pid, text="hello", tenant=tenant, author=author, created_at=T0 + timedelta(seconds=seconds))


def plugin(**options: Any) -> RatePlugin:
    return cast(RatePlugin, build_plugin("rate", parse_settings({}), options))


def signals(p: RatePlugin, posts: Sequence[Post]) -> list[Signal]:
    out = p.evaluate(posts)
    assert [len(s) for s in out] == [1] * len(posts)
    return [s[0] for s in out]


def test_a_burst_exceeds_the_limit_and_the_window_slides() -> None:
    p = plugin(window_seconds=60, max_posts=3)
    burst = signals(p, [at(f"p{i}", i) for i in range(5)])
    assert [s.label for s in burst] == ["ok", "ok", "ok", "rate_exceeded", "rate_exceeded"]
    assert [s.details["posts_in_window"] for s in burst] == [1, 2, 3, 4, 5]
    assert all(s.score is not None and s.score < 0.5 for s in burst[:3])
    assert all(s.score is not None and s.score >= 0.5 for s in burst[3:])
    assert burst[3].evidence == {"author": "alice", "posts_in_window": 4, "window_seconds": 60.0}
    # At t=63 the window is (3, 63]: the posts at t=0..3 have left it, the one at t=4 has not.
    assert signals(p, [at("late", 63)])[0].details["posts_in_window"] == 2
    # Exactly one window after t=4 that post is out too.
    assert signals(p, [at("later", 64)])[0].details["posts_in_window"] == 2  # "late" and itself
    assert signals(p, [at("much_later", 500)])[0].details["posts_in_window"] == 1


def test_authors_and_tenants_are_counted_separately() -> None:
    p = plugin(max_posts=2)
    out = signals(p, [at("a1", 0), at("b1", 1, author="bob"), at("a2", 2), at("x1", 3, tenant="other"), at("a3", 4)])
    assert [s.details["posts_in_window"] for s in out] == [1, 1, 2, 1, 3]
    assert out[-1].label == "rate_exceeded"
    # A ':' in a name cannot make two (tenant, author) pairs share a window.
    colon = signals(p, [at("c1", 5, author="x:y", tenant="a"), at("c2", 5, author="y", tenant="a:x")])
    assert [s.details["posts_in_window"] for s in colon] == [1, 1]


def test_redelivered_posts_count_once() -> None:
    p = plugin(max_posts=2)
    first = signals(p, [at("p1", 0), at("p1", 0), at("p2", 1)])
    assert [s.details["posts_in_window"] for s in first] == [1, 1, 2]
    # Redelivered later (at-least-once delivery): the same count as before, and the next post is not inflated.
    assert signals(p, [at("p1", 0)])[0].details["posts_in_window"] == 1
    assert signals(p, [at("p2", 1)])[0].details["posts_in_window"] == 2
    assert signals(p, [at("p3", 2)])[0].details["posts_in_window"] == 3


def test_posts_without_created_at_use_the_current_time() -> None:
    p = plugin(max_posts=1)
    out = signals(p, [Post(id="n1", text="x", author="a"), Post(id="n2", text="x", author="a")])
    assert [s.label for s in out] == ["ok", "rate_exceeded"]


def test_posts_without_an_author_abstain() -> None:
    out = signals(plugin(), [at("1", 0, author=None), at("2", 0, author="  "), at("3", 0)])
    assert [(s.abstained, s.reason, s.score) for s in out[:2]] == [(True, "no_author", None)] * 2
    assert not out[2].abstained


def test_score_scale() -> None:
    assert rate_score(0, 10) == 0.0
    assert rate_score(10, 10) == pytest.approx(0.45)
    assert rate_score(11, 10) == 0.5
    assert rate_score(20, 10) == 1.0
    assert rate_score(500, 10) == 1.0
    assert rate_score(2, 1) == 0.5 and rate_score(3, 1) == 1.0


class BrokenStore:
    def window_add(self, entries: Sequence[WindowEntry], window_seconds: float) -> list[int]:
        raise StateStoreError("redis is down")

    def buckets_get(self, keys: Sequence[str], min_ts: float, limit: int) -> dict[str, list[str]]:
        raise StateStoreError("redis is down")

    def buckets_add(self, entries: Sequence[WindowEntry], window_seconds: float) -> None:
        raise StateStoreError("redis is down")

    def records_get(self, keys: Sequence[str]) -> dict[str, bytes]:
        raise StateStoreError("redis is down")

    def records_put(self, records: Mapping[str, bytes], ttl_seconds: float) -> None:
        raise StateStoreError("redis is down")

    def close(self) -> None:
        pass


def test_an_unreachable_store_makes_the_batch_abstain_instead_of_failing() -> None:
    p = RatePlugin(parse_settings({}), RateOptions(), store=BrokenStore())
    out = signals(p, [at("1", 0), at("2", 0, author=None)])
    assert [s.reason for s in out] == ["state_unavailable", "no_author"]


@pytest.mark.parametrize(
    ("options", "field"),
    [({"max_posts": 0}, "max_posts"), ({"max_posts": 2.5}, "max_posts"), ({"window_seconds": "1m"}, "window_seconds")],
)
def test_bad_options_fail_at_start(options: dict[str, Any], field: str) -> None:
    with pytest.raises(PluginError, match=f"plugins.rate.{field}"):
        plugin(**options)
