"""Turn a post's signals into one Verdict, per tenant.

Each signal whose label its plugin declares a finding (`Signal.finding`) contributes `weight * score`,
capped at the plugin's `cap`; the total (at most 1) is compared with thresholds: at or above `block` ->
block, else `quarantine`, `review`, `label`, else allow. A plugin can force an action (e.g. a blocked
domain); the stronger of forced and scored wins. A plugin's weight and cap default to what the plugin
declares (`default_weight`, `default_cap`); `[policy] weights/caps` override them, and naming a plugin
that is not loaded is refused at start. A verdict made while a plugin could not run (a degraded
abstention, e.g. its Redis was down) says so in its reasons, and `degraded_action` can route it further.

Defaults follow the seed documents' warning about spoofing: anyone can paste watermarked text into a post
to frame it, so the watermark's cap (0.6) sits below quarantine (0.8): a watermark alone routes to
review, never straight to block; with another finding (a flood campaign, spam) it can go further.
Every verdict records `version`. Settings: `[policy]`, overridable per tenant in `[policy.tenants.NAME]`
(docs/policy.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moderation.errors import ConfigError, format_validation_error
from moderation.posts import Post
from moderation.signals import Action, Signal, Verdict

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    label: Unit = 0.3
    review: Unit = 0.5
    quarantine: Unit = 0.8
    block: Unit = 0.95

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.label <= self.review <= self.quarantine <= self.block:
            raise ValueError("thresholds must satisfy label <= review <= quarantine <= block")
        return self


class TenantPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Annotated[str, Field(min_length=1, max_length=64)] = "default-v1"
    # Per plugin; a plugin not named here gets its declared default_weight / default_cap.
    weights: dict[str, Annotated[float, Field(ge=0.0, le=10.0)]] = Field(default_factory=dict)
    caps: dict[str, Unit] = Field(default_factory=dict)
    thresholds: Thresholds = Thresholds()
    # The least action for a verdict made while a plugin could not run; "allow" keeps the scored action.
    degraded_action: Action = Action.ALLOW


class PolicySettings(TenantPolicy):
    tenants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def for_tenant(self, tenant: str) -> TenantPolicy:
        base = self.model_dump(exclude={"tenants"})
        override = self.tenants.get(tenant, {})
        merged = {**base, **override}
        for key in ("weights", "caps"):
            merged[key] = {**base[key], **override.get(key, {})}
        merged["thresholds"] = {**base["thresholds"], **override.get("thresholds", {})}
        if "version" not in override and override:
            merged["version"] = f"{base['version']}+{tenant}"
        return TenantPolicy.model_validate(merged)


@dataclass(frozen=True)
class PluginWeight:
    """A plugin's place in the policy when the config says nothing: what the plugin declares."""

    weight: float
    cap: float


def parse_policy(raw: Mapping[str, Any], plugins: Mapping[str, PluginWeight] | None = None) -> PolicySettings:
    """Validate `[policy]`. With `plugins` (the loaded plugins' names), weights or caps naming any other
    plugin are refused: a typo must not silently leave a plugin at its default weight."""
    try:
        settings = PolicySettings.model_validate(dict(raw))
        tenants = {tenant: settings.for_tenant(tenant) for tenant in settings.tenants}  # validated now, not later
    except ValidationError as err:
        raise ConfigError(format_validation_error("invalid [policy] configuration:", err, "policy.")) from None
    if plugins is not None:
        for where, p in [("policy", settings), *((f"policy.tenants.{t}", tp) for t, tp in tenants.items())]:
            for table in ("weights", "caps"):
                unknown = sorted(set(getattr(p, table)) - set(plugins))
                if unknown:
                    raise ConfigError(
                        f"{where}.{table}: no loaded plugin is called {', '.join(map(repr, unknown))};"
                        f" loaded plugins: {sorted(plugins)}"
                    )
    return settings


# A signal from a plugin the policy was not told about (a test's hand-built signal): counted, conservatively capped.
_UNKNOWN = PluginWeight(weight=0.5, cap=0.5)


class Policy:
    def __init__(self, raw: Mapping[str, Any] | None = None, plugins: Mapping[str, PluginWeight] | None = None) -> None:
        self.settings = parse_policy(raw or {}, plugins)
        self._defaults = dict(plugins or {})
        self._cache: dict[str, TenantPolicy] = {}

    @property
    def version(self) -> str:
        return self.settings.version

    def for_tenant(self, tenant: str) -> TenantPolicy:
        if tenant not in self._cache:
            self._cache[tenant] = self.settings.for_tenant(tenant)
        return self._cache[tenant]

    def decide(self, post: Post, signals: Sequence[Signal]) -> Verdict:
        p = self.for_tenant(post.tenant)
        contributions: dict[str, float] = {}
        reasons: list[str] = []
        for s in signals:
            if s.degraded:
                reasons.append(f"{s.plugin}:{s.reason or 'unavailable'}")
            if s.abstained or s.score is None or not s.finding:
                continue
            default = self._defaults.get(s.plugin, _UNKNOWN)
            value = p.weights.get(s.plugin, default.weight) * s.score
            cap = p.caps.get(s.plugin, default.cap)
            contributions[s.plugin] = min(cap, max(contributions.get(s.plugin, 0.0), value))
            detail = s.details.get("scheme") or s.label
            reasons.append(f"{s.plugin}:{detail}")
        total = min(1.0, sum(contributions.values()))
        t = p.thresholds
        action = Action.ALLOW
        for candidate, threshold in (
            (Action.BLOCK, t.block),
            (Action.QUARANTINE, t.quarantine),
            (Action.REVIEW, t.review),
            (Action.LABEL, t.label),
        ):
            if total >= threshold and total > 0:
                action = candidate
                break
        for s in signals:
            if s.force_action is not None and s.force_action.severity > action.severity:
                action = s.force_action
                reasons.append(f"{s.plugin}:forced_{s.force_action.value}")
        if p.degraded_action.severity > action.severity and any(s.degraded for s in signals):
            action = p.degraded_action
            reasons.append(f"policy:degraded_{action.value}")
        return Verdict(post.id, post.tenant, action, round(total, 6), p.version, tuple(signals), tuple(reasons))
