"""Turn a post's signals into one Verdict, per tenant.

Each plugin's finding contributes `weight * score` (capped at the plugin's `cap`) when its label is a
finding (watermarked, spam, flood, near_duplicate, rate_exceeded); the total (at most 1) is compared with
thresholds: at or above `block` -> block, else `quarantine`, `review`, `label`, else allow. A plugin can
force an action (e.g. a blocked domain); the stronger of forced and scored wins.

Defaults follow the seed documents' warning about spoofing: anyone can paste watermarked text into a post
to frame it, so the watermark's cap (0.6) sits below quarantine (0.8): a watermark alone routes to
review, never straight to block; with another finding (a flood campaign, spam) it can go further.
Every verdict records `version`. Settings: `[policy]`, overridable per tenant in `[policy.tenants.NAME]`
(docs/policy.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moderation.errors import ConfigError
from moderation.posts import Post
from moderation.signals import Action, Signal, Verdict

FINDINGS = frozenset({"watermarked", "spam", "flood", "near_duplicate", "rate_exceeded"})
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
    weights: dict[str, Annotated[float, Field(ge=0.0, le=10.0)]] = Field(
        default_factory=lambda: {"watermark": 1.0, "spam": 0.7, "flood": 0.5, "rate": 0.3}
    )
    caps: dict[str, Unit] = Field(default_factory=lambda: {"watermark": 0.6, "spam": 0.7, "flood": 0.5, "rate": 0.3})
    thresholds: Thresholds = Thresholds()


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


def parse_policy(raw: Mapping[str, Any]) -> PolicySettings:
    try:
        settings = PolicySettings.model_validate(dict(raw))
        for tenant in settings.tenants:
            settings.for_tenant(tenant)  # validate every override now, not at the first post of that tenant
        return settings
    except ValidationError as err:
        lines = ["invalid [policy] configuration:"]
        for e in err.errors():
            got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
            lines.append(
                f"  policy.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}{got}"
            )
        raise ConfigError("\n".join(lines)) from None


class Policy:
    def __init__(self, raw: Mapping[str, Any] | None = None) -> None:
        self.settings = parse_policy(raw or {})
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
            if s.abstained or s.score is None or s.label not in FINDINGS:
                continue
            value = p.weights.get(s.plugin, 0.5) * s.score
            contributions[s.plugin] = min(p.caps.get(s.plugin, 1.0), max(contributions.get(s.plugin, 0.0), value))
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
        return Verdict(post.id, post.tenant, action, round(total, 6), p.version, tuple(signals), tuple(reasons))
