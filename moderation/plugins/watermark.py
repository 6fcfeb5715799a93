"""The watermark plugin: one Signal per post and configured scheme, from the batched detector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from moderation.config import Settings
from moderation.posts import Post
from moderation.signals import Signal
from moderation.watermark import WatermarkDetector, WatermarkScore

LABEL_WATERMARKED = "watermarked"
LABEL_NOT_WATERMARKED = "not_watermarked"


def signal_from_score(score: WatermarkScore, version: str) -> Signal:
    details = score.to_json()
    evidence: dict[str, Any] = {}
    if score.tokens is not None:
        # [start_char, end_char, green, counted] per scored token, offsets into the submitted text.
        evidence["tokens"] = [[s, e, int(g), int(c)] for s, e, g, c in score.tokens]
    if score.watermarked is None:
        return Signal(
            plugin="watermark",
            version=version,
            score=None,
            label=None,
            abstained=True,
            reason=score.reason,
            details=details,
            evidence=evidence,
        )
    return Signal(
        plugin="watermark",
        version=version,
        score=score.strength,
        label=LABEL_WATERMARKED if score.watermarked else LABEL_NOT_WATERMARKED,
        details=details,
        evidence=evidence,
    )


class WatermarkPlugin:
    """Runs every `[[watermark.schemes]]` over each batch. Options: `evidence` = "flagged" | "all" | "none"."""

    name: ClassVar[str] = "watermark"
    version: ClassVar[str] = "1.0"

    def __init__(self, settings: Settings, options: Mapping[str, Any]) -> None:
        self.detector = WatermarkDetector(settings)
        self.batch_size = settings.detector.batch_size
        self.evidence = str(options.get("evidence", "flagged"))

    @property
    def device(self) -> str:
        """Where detection runs ("cpu", "cuda"), for the operators' metrics."""
        return str(self.detector.device)

    def evaluate(self, posts: Sequence[Post]) -> list[list[Signal]]:
        out: list[list[Signal]] = []
        for start in range(0, len(posts), self.batch_size):
            chunk = posts[start : start + self.batch_size]
            scores = self.detector.detect([p.text for p in chunk], evidence=self.evidence)
            out.extend([signal_from_score(s, self.version) for s in row] for row in scores)
        return out
