from __future__ import annotations

from moderation.plugins.rate import RatePlugin
from tests.unit.plugins.conftest import post, settings


def test_rate_limit_per_author_with_a_sliding_window() -> None:
    plugin = RatePlugin(settings(), {"window_seconds": 60, "max_posts": 3})
    burst = [post(i, "x", author="a", seconds=i) for i in range(5)]
    labels = [s[0].label for s in plugin.evaluate(burst)]
    assert labels == ["ok", "ok", "ok", "rate_exceeded", "rate_exceeded"]
    later = plugin.evaluate([post("later", "x", author="a", seconds=200)])[0][0]
    assert later.label == "ok" and later.details["posts_in_window"] == 1
    other = plugin.evaluate([post("b1", "x", author="b", seconds=4)])[0][0]
    assert other.details["posts_in_window"] == 1


def test_redelivered_posts_count_once_and_anonymous_posts_abstain() -> None:
    plugin = RatePlugin(settings(), {"max_posts": 1})
    p = post(1, "x")
    assert plugin.evaluate([p, p, p])[2][0].details["posts_in_window"] == 1
    s = plugin.evaluate([post(2, "x", author=None)])[0][0]
    assert s.abstained and s.reason == "no_author"
