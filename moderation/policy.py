"""Turn a post's signals into one Verdict.

Minimal first version: a watermark match routes to review (never straight to block: a watermark can be
spoofed, see the seed documents), every other post is allowed. The plugins/policy issue replaces this with
weighted, per-tenant thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

from moderation.posts import Post
from moderation.signals import Action, Signal, Verdict

POLICY_VERSION = "watermark-review-v1"


class Policy:
    version = POLICY_VERSION

    def decide(self, post: Post, signals: Sequence[Signal]) -> Verdict:
        flagged = [s for s in signals if s.label == "watermarked"]
        action = Action.REVIEW if flagged else Action.ALLOW
        score = max((s.score or 0.0 for s in signals), default=0.0)
        reasons = tuple(f"{s.plugin}:{s.details.get('scheme', s.label)}" for s in flagged)
        return Verdict(post.id, post.tenant, action, score, self.version, tuple(signals), reasons)
