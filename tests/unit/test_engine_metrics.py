"""Engine.observe counts a batch's stored verdicts and signals per label set (added once per set, not once
per post): the totals must equal a post-by-post count, for every label set a batch mixes."""

from __future__ import annotations

from collections import Counter

from prometheus_client import REGISTRY

from moderation.config import parse_settings
from moderation.engine import Engine
from moderation.posts import Post


def _samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == name
    }


def test_observe_adds_what_a_post_by_post_count_would() -> None:
    engine = Engine(parse_settings({"plugins": {"enabled": ["spam"]}}))
    posts = [
        Post(id=str(i), tenant=tenant, text=body)
        for i, (tenant, body) in enumerate(
            [("a", "hello there, friends")] * 3
            + [("b", "BUY NOW http://bit.ly/x http://bit.ly/y http://bit.ly/z CHEAP!!!!")] * 2
            + [("a", "")]
        )
    ]
    verdicts = engine.moderate(posts)
    expected_verdicts = Counter((("action", v.action.value), ("tenant", v.tenant)) for v in verdicts)
    expected_signals = Counter(
        (
            ("label", s.label or s.reason or "none"),
            ("outcome", "abstained" if s.abstained else ("finding" if s.finding else "clean")),
            ("plugin", s.plugin),
        )
        for v in verdicts
        for s in v.signals
    )
    assert len(expected_verdicts) >= 2 and len(expected_signals) >= 2  # the batch mixes label sets

    before_v, before_s = _samples("moderation_verdicts_total"), _samples("moderation_plugin_signals_total")
    engine.observe(verdicts)
    after_v, after_s = _samples("moderation_verdicts_total"), _samples("moderation_plugin_signals_total")
    assert {k: after_v[k] - before_v.get(k, 0.0) for k in after_v if after_v[k] != before_v.get(k)} == dict(
        expected_verdicts
    )
    assert {k: after_s[k] - before_s.get(k, 0.0) for k in after_s if after_s[k] != before_s.get(k)} == dict(
        expected_signals
    )
