from __future__ import annotations

import pytest

from moderation.config import parse_settings
from moderation.engine import Engine
from moderation.errors import ConfigError
from moderation.plugins.registry import load_plugin_class
from moderation.policy import PluginWeight
from moderation.policy import Policy as _Policy
from moderation.posts import Post
from moderation.signals import Action, Signal

POST = Post(id="p", text="t", tenant="acme")
BUILT_IN = {
    name: PluginWeight(cls.default_weight, cls.default_cap)
    for name, cls in ((n, load_plugin_class(n)) for n in ("watermark", "spam", "flood", "rate"))
}


def Policy(raw: dict[str, object] | None = None) -> _Policy:
    """The policy as the engine builds it: weights and caps default to what the built-in plugins declare."""
    return _Policy(raw, BUILT_IN)


def sig(plugin: str, score: float, label: str, force: Action | None = None) -> Signal:
    finding = load_plugin_class(plugin).labels[label]
    return Signal(plugin, "1.0", score, label, finding=finding, force_action=force)


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
        ({"weights": {"spma": 1.0}}, r"policy.weights: no loaded plugin is called 'spma'"),
        ({"tenants": {"x": {"caps": {"toxicity": 0.5}}}}, r"policy.tenants.x.caps: no loaded plugin"),
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


def test_a_plugin_that_could_not_run_is_said_in_the_verdict_and_can_route_it() -> None:
    down = Signal("rate", "1.0", None, abstained=True, reason="state_unavailable", degraded=True)
    verdict = Policy().decide(POST, [sig("spam", 0.1, "clean"), down])
    assert verdict.action == Action.ALLOW and verdict.degraded == ("rate",)
    assert "rate:state_unavailable" in verdict.reasons and verdict.to_json()["degraded"] == ["rate"]
    cautious = Policy({"degraded_action": "review"}).decide(POST, [down])
    assert cautious.action == Action.REVIEW and "policy:degraded_review" in cautious.reasons


def test_weights_come_from_what_a_plugin_declares_unless_the_tenant_overrides() -> None:
    policy = _Policy({"tenants": {"t2": {"weights": {"acme": 0.1}}}}, {"acme": PluginWeight(0.9, 0.9)})
    hit = Signal("acme", "1", 1.0, "bad", finding=True)
    assert policy.decide(POST, [hit]).score == pytest.approx(0.9)
    assert policy.decide(Post(id="p", text="t", tenant="t2"), [hit]).score == pytest.approx(0.1)
    assert policy.decide(POST, [Signal("acme", "1", 1.0, "fine", finding=False)]).score == 0.0
