"""The plugin contract: what a detector plugin declares, in types, and what it may return.

A plugin is a subclass of `Plugin` registered under the entry-point group `moderation.plugins` (the
built-ins are registered the same way, in pyproject.toml). It declares:

- `name` (its entry-point name) and `version` (recorded with every signal it emits);
- `Options`, a pydantic model of its options table (`[plugins.<name>]`, overridable per tenant),
  validated when the plugin loads, so a typo or a bad value stops the process naming the field;
- `Details`, a pydantic model of the numbers its signals carry (stored as JSON, read back typed), and
  `AbstainDetails`, the model of what an abstention may carry (by default nothing);
- `labels`: every label it may emit, each mapped to whether that label is a finding (counts towards
  the policy's score) or a clean bill;
- `default_weight` and `default_cap`: its place in the policy when a tenant's `[policy]` says nothing.

Built once per process and distinct option set (`__init__(settings, options)`), it is then called with
batches of posts (`evaluate`) and returns, for every post, a list of `Signal`s (usually one; the
watermark plugin returns one per scheme), built with `self.signal(...)` / `self.abstain(...)`. It must
never raise for one bad post: it abstains for that post, with a reason. It may explain its signals in
plain words for moderators (`explain`) and record its own metrics (`observe`).

`moderation.plugins.registry` checks all of this when the plugin loads, and the engine checks every
signal a plugin returns; a plugin that breaks the contract fails loudly, naming itself and the field.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from moderation.config import Settings
from moderation.posts import Post
from moderation.signals import Action, Signal


class PluginOptions(BaseModel):
    """Base of every plugin's options model: unknown keys are refused, values are frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SignalDetails(BaseModel):
    """Base of every plugin's signal-details model: the numbers a signal carries (flat, JSON-safe)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoDetails(SignalDetails):
    """For signals (abstentions, mostly) that carry no numbers."""


@dataclass(frozen=True)
class StoredSignal:
    """A signal as read back from storage or a verdict's JSON, with its details typed by its plugin.

    `details` is an instance of the plugin's `Details` model when the plugin is installed and the stored
    numbers still fit it; otherwise `None`, and `raw` keeps what was stored.
    """

    plugin: str
    version: str
    score: float | None
    label: str | None
    finding: bool
    abstained: bool
    reason: str | None
    details: SignalDetails | None
    raw: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)


class Plugin(ABC):
    """Subclass this. Class attributes are checked at load (moderation.plugins.registry)."""

    name: ClassVar[str]
    version: ClassVar[str]
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    Details: ClassVar[type[SignalDetails]]
    AbstainDetails: ClassVar[type[SignalDetails]] = NoDetails
    # label -> whether it is a finding. Abstentions carry no label.
    labels: ClassVar[Mapping[str, bool]]
    default_weight: ClassVar[float] = 0.5
    default_cap: ClassVar[float] = 0.5

    def __init__(self, settings: Settings, options: PluginOptions) -> None:
        self.settings = settings
        self.options = options

    @abstractmethod
    def evaluate(self, posts: Sequence[Post]) -> list[list[Signal]]:
        """One list of signals per post, in the order of `posts`."""

    # ---- building signals that honour the contract ---------------------------------------------------

    def signal(
        self,
        *,
        score: float,
        label: str,
        details: SignalDetails,
        evidence: Mapping[str, Any] | None = None,
        force_action: Action | None = None,
    ) -> Signal:
        return Signal(
            plugin=self.name,
            version=self.version,
            score=score,
            label=label,
            finding=self.labels[label],
            details=details.model_dump(mode="json"),
            evidence=dict(evidence or {}),
            force_action=force_action,
        )

    def abstain(
        self,
        reason: str,
        details: SignalDetails | None = None,
        evidence: Mapping[str, Any] | None = None,
        *,
        degraded: bool = False,
    ) -> Signal:
        """No opinion on this post. `degraded`: the plugin could not run (its state store was down, say), so
        the verdict was made without it and says so, rather than pass as a clean bill."""
        return Signal(
            plugin=self.name,
            version=self.version,
            score=None,
            abstained=True,
            reason=reason,
            degraded=degraded,
            details=details.model_dump(mode="json") if details is not None else {},
            evidence=dict(evidence or {}),
        )

    # ---- optional hooks ------------------------------------------------------------------------------

    @classmethod
    def explain(cls, signal: StoredSignal) -> str:
        """This signal in plain words for a moderator who is not a statistician. Override it."""
        if signal.abstained:
            return f"No opinion ({signal.reason or 'abstained'})."
        score = "-" if signal.score is None else f"{signal.score:.2f}"
        return f"{signal.plugin}: {signal.label} (score {score})."

    def observe(self, signal: Signal) -> None:
        """Record this plugin's own metrics for one signal of a stored verdict (default: nothing)."""
        return None

    # ---- reading back --------------------------------------------------------------------------------

    @classmethod
    def typed_details(cls, raw: Mapping[str, Any], *, abstained: bool = False) -> SignalDetails | None:
        """The stored details as this plugin's model (`AbstainDetails` for an abstention), or None when they no
        longer fit it (an older version)."""
        try:
            return (cls.AbstainDetails if abstained else cls.Details).model_validate(dict(raw))
        except ValidationError:
            return None
