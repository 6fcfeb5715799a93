"""The one result type every plugin returns (`Signal`) and the one decision the policy makes (`Verdict`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Action(enum.StrEnum):
    """What the platform should do with a post, from mildest to strongest."""

    ALLOW = "allow"
    LABEL = "label"
    REVIEW = "review"
    QUARANTINE = "quarantine"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return list(Action).index(self)


@dataclass(frozen=True)
class Signal:
    """One plugin's finding about one post.

    `score` is the plugin's strength of evidence in [0, 1] (1 = certainly a problem) or None when it
    abstained; `label` is one of the labels the plugin declares, and `finding` whether that label counts
    against the post (the policy scores findings only); `abstained` with `reason` says the plugin could not
    decide ("too_short") — an abstention is not a clean bill, and a `degraded` one means the plugin could
    not run at all (its shared state was down), which the verdict records.
    `details` holds the plugin's numbers (its `Details` model, dumped to JSON); `evidence` what a
    moderator is shown. `force_action` lets a plugin demand an action regardless of the weighted total.
    Plugins build signals through `Plugin.signal` / `Plugin.abstain` (moderation/plugins/base.py).
    """

    plugin: str
    version: str
    score: float | None
    label: str | None = None
    finding: bool = False
    abstained: bool = False
    reason: str | None = None
    degraded: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    force_action: Action | None = None

    def to_json(self, *, with_evidence: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"plugin": self.plugin, "version": self.version}
        out.update(self.details)
        out.update({"score": self.score, "label": self.label, "finding": self.finding, "abstained": self.abstained})
        if self.reason is not None:
            out["reason"] = self.reason
        if self.degraded:
            out["degraded"] = True
        if self.force_action is not None:
            out["force_action"] = self.force_action.value
        if with_evidence and self.evidence:
            out["evidence"] = self.evidence
        return out


@dataclass(frozen=True)
class Verdict:
    """The policy's decision for one post, with the signals it was made from."""

    post_id: str
    tenant: str
    action: Action
    score: float
    policy_version: str
    signals: tuple[Signal, ...]
    reasons: tuple[str, ...] = ()

    @property
    def degraded(self) -> tuple[str, ...]:
        """Plugins that could not run for this post: the verdict was made without them."""
        return tuple(sorted({s.plugin for s in self.signals if s.degraded}))

    def to_json(self, *, with_evidence: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.post_id,
            "tenant": self.tenant,
            "action": self.action.value,
            "score": self.score,
            "policy_version": self.policy_version,
            "reasons": list(self.reasons),
            "signals": [s.to_json(with_evidence=with_evidence) for s in self.signals],
        }
        if self.degraded:
            out["degraded"] = list(self.degraded)
        return out
