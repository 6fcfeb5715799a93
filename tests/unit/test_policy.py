from __future__ import annotations

import pytest

from moderation.config import parse_settings
from moderation.engine import Engine
from moderation.errors import ConfigError
from moderation.policy import Policy
from moderation.posts import Post
from moderation.signals import Action, Signal

POST = Post(id="p", text="t", tenant="acme")


def sig(plugin: str, score: float, label: str, force: Action | None = None) -> Signal:
    return Signal(plugin, "1.0", score, label, force_action=force)


def test_a_watermark_alone_routes_to_review_never_block() -> None:
    verdict = Policy().decide(POST, [sig("watermark", 1.0, "watermarked")])
    assert verdict.action == Action.REVIEW
    assert verdict.reasons == ("watermark:watermarked",)
    assert verdict.policy_version == "default-v1"


def test_signals_add_up_within_caps() -> None:
    policy = Policy()
    assert policy.decide(POST, [sig("spam", 0.5, "spam")]).action == Action.LABEL  # 0.7 * 0.5 = 0.35
    assert policy.decide(POST, [sig("spam", 1.0, "spam")]).action == Action.REVIEW  # capped at 0.7
    fast = policy.decide(POST, [sig("watermark", 1.0, "watermarked"), sig("rate", 1.0, "rate_exceeded")])
    assert fast.action == Action.QUARANTINE and fast.score == pytest.approx(0.9)
    campaign = policy.decide(POST, [sig("watermark", 1.0, "watermarked"), sig("flood", 1.0, "flood")])
    assert campaign.action == Action.BLOCK and campaign.score == 1.0  # 0.6 + 0.5, capped at 1


def test_non_findings_and_abstentions_do_not_count() -> None:
    quiet = [
        sig("watermark", 0.99, "not_watermarked"),
        sig("spam", 0.2, "clean"),
        Signal("flood", "1.0", None, abstained=True, reason="too_short"),
    ]
    verdict = Policy().decide(POST, quiet)
    assert verdict.action == Action.ALLOW and verdict.score == 0.0


def test_a_plugin_can_force_a_stronger_action() -> None:
    verdict = Policy().decide(POST, [sig("spam", 0.1, "clean", force=Action.BLOCK)])
    assert verdict.action == Action.BLOCK and "spam:forced_block" in verdict.reasons


def test_tenants_override_thresholds_and_record_their_version() -> None:
    policy = Policy({"version": "v7", "tenants": {"strict": {"thresholds": {"review": 0.2, "label": 0.1}}}})
    strict = Post(id="p", text="t", tenant="strict")
    assert policy.decide(strict, [sig("spam", 0.5, "spam")]).action == Action.REVIEW
    assert policy.decide(strict, []).policy_version == "v7+strict"
    assert policy.decide(POST, [sig("spam", 0.5, "spam")]).action == Action.LABEL


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"thresholds": {"review": 0.9, "quarantine": 0.5}}, "label <= review <= quarantine <= block"),
        ({"weights": {"spam": -1}}, "policy.weights.spam"),
        ({"tenants": {"x": {"thresholds": {"block": 2}}}}, "policy.thresholds.block"),
        ({"surprise": 1}, "policy.surprise"),
    ],
)
def test_bad_policy_fails_at_start_naming_the_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Policy(raw)


def test_engine_runs_each_tenants_plugins() -> None:
    settings = parse_settings(
        {
            "plugins": {
                "enabled": ["spam"],
                "tenants": {"strict": {"enabled": ["spam", "rate"], "rate": {"max_posts": 1}}},
            }
        }
    )
    engine = Engine(settings)
    posts = [
        Post(id=str(i), text="hello there friends", tenant=t, author="a")
        for i, t in enumerate(["acme", "strict", "strict"])
    ]
    signals = engine.signals(posts)
    assert [s.plugin for s in signals[0]] == ["spam"]
    assert [s.plugin for s in signals[1]] == ["spam", "rate"]
    assert signals[2][1].label == "rate_exceeded"
