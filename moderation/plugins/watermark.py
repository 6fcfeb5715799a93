"""The watermark plugin: one Signal per post and configured scheme, from the batched detector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, cast

from moderation import metrics
from moderation.config import Settings
from moderation.plugins.base import Plugin, PluginOptions, SignalDetails, StoredSignal
from moderation.posts import Post
from moderation.signals import Signal
from moderation.watermark import WatermarkDetector, WatermarkScore

LABEL_WATERMARKED = "watermarked"
LABEL_NOT_WATERMARKED = "not_watermarked"
# Not flagged, but the test had too little power to call the post clean (a short post): no finding either way.
LABEL_INSUFFICIENT = "insufficient_evidence"


class WatermarkOptions(PluginOptions):
    # Per-token evidence: for flagged posts only, for every post, or never.
    evidence: Literal["flagged", "all", "none"] = "flagged"


class WindowDetails(SignalDetails):
    start_char: int
    end_char: int
    num_tokens_scored: int
    num_green_tokens: int
    z_score: float
    p_value: float
    log10_p_value: float
    windows_searched: int


class WatermarkDetails(SignalDetails):
    """One scheme's test of one post (docs/detector.md explains each number)."""

    scheme: str
    num_tokens_scored: int
    num_green_tokens: int
    green_fraction: float | None
    z_score: float | None
    p_value: float | None
    log10_p_value: float | None
    p_value_adjusted: float | None
    watermarked: bool | None
    reason: str | None = None  # the same as the signal's own reason when it abstained
    form: str
    tests: int
    alpha: float
    truncated: bool
    window: WindowDetails | None
    # "watermarked", "not_watermarked", "insufficient_evidence" or "abstained" (docs/detector.md).
    outcome: str
    power: float | None = None
    min_detectable_green_fraction: float | None = None


def _p(p: float | None) -> str:
    if p is None:
        return "unknown"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


class WatermarkPlugin(Plugin):
    """Runs every `[[watermark.schemes]]` over each batch."""

    name: ClassVar[str] = "watermark"
    version: ClassVar[str] = "1.0"
    Options: ClassVar[type[PluginOptions]] = WatermarkOptions
    Details: ClassVar[type[SignalDetails]] = WatermarkDetails
    # An abstention (too short) still reports what was counted.
    AbstainDetails: ClassVar[type[SignalDetails]] = WatermarkDetails
    labels: ClassVar[dict[str, bool]] = {
        LABEL_WATERMARKED: True,
        LABEL_NOT_WATERMARKED: False,
        LABEL_INSUFFICIENT: False,
    }
    # A watermark alone must not reach quarantine (0.8): anyone can paste watermarked text to frame a post.
    default_weight: ClassVar[float] = 1.0
    default_cap: ClassVar[float] = 0.6

    def __init__(self, settings: Settings, options: PluginOptions) -> None:
        super().__init__(settings, options)
        self.detector = WatermarkDetector(settings)
        self.batch_size = settings.detector.batch_size
        self.evidence = cast(WatermarkOptions, options).evidence

    @property
    def device(self) -> str:
        """Where detection runs ("cpu", "cuda"), for the operators' metrics."""
        return str(self.detector.device)

    def evaluate(self, posts: Sequence[Post]) -> list[list[Signal]]:
        out: list[list[Signal]] = []
        for start in range(0, len(posts), self.batch_size):
            chunk = posts[start : start + self.batch_size]
            scores = self.detector.detect([p.text for p in chunk], evidence=self.evidence)
            out.extend([self.signal_from_score(s) for s in row] for row in scores)
        return out

    def signal_from_score(self, score: WatermarkScore) -> Signal:
        details = WatermarkDetails.model_validate(score.to_json())
        evidence: dict[str, Any] = {}
        if score.tokens is not None:
            # [start_char, end_char, green, counted] per scored token, offsets into the submitted text.
            evidence["tokens"] = [[s, e, int(g), int(c)] for s, e, g, c in score.tokens]
        if score.watermarked is None:
            return self.abstain(score.reason or "abstained", details, evidence)
        if score.watermarked:
            label = LABEL_WATERMARKED
        else:
            label = LABEL_INSUFFICIENT if score.outcome == LABEL_INSUFFICIENT else LABEL_NOT_WATERMARKED
        return self.signal(score=score.strength, label=label, details=details, evidence=evidence)

    def observe(self, signal: Signal) -> None:
        z = signal.details.get("z_score")
        if signal.abstained or z is None:
            return
        scheme = str(signal.details.get("scheme"))
        metrics.Z_SCORE.labels(scheme).observe(float(z))
        metrics.TOKENS_SCORED.labels(scheme).inc(int(signal.details.get("num_tokens_scored") or 0))

    @classmethod
    def explain(cls, signal: StoredSignal) -> str:
        d = signal.details
        if not isinstance(d, WatermarkDetails):
            return super().explain(signal)
        if signal.abstained:
            if signal.reason == "too_short":
                return (
                    f"Too short to test for a watermark: {d.num_tokens_scored} tokens could be scored. "
                    "This is not evidence that a person wrote it."
                )
            return f"No watermark test ({signal.reason or 'abstained'})."
        scored, green = d.num_tokens_scored, d.num_green_tokens
        share = f"{green / scored:.0%}" if scored else "-"
        if d.watermarked:
            verdict = f"That matches the watermark of scheme {d.scheme!r}"
        elif d.outcome == LABEL_INSUFFICIENT:
            power = (
                f" (it would catch a typical watermarked post this long {d.power:.0%} of the time)" if d.power else ""
            )
            verdict = f"Not flagged, but the test is too weak to call it human-written{power}"
        else:
            verdict = "That is consistent with text written without this watermark"
        where = ""
        if d.watermarked and d.window is not None:
            where = f" The strongest evidence is the highlighted passage (characters {d.window.start_char}–{d.window.end_char})."
        return (
            f"{green} of {scored} scored tokens ({share}) are on the key's green list "
            "(by chance, about the scheme's green-list ratio would be). "
            f"Human text this green happens with probability {_p(d.p_value)} "
            f"(z = {d.z_score or 0:.1f}; after accounting for every test made: "
            f"{_p(d.p_value_adjusted)}, target {d.alpha}). {verdict}.{where} "
            "A watermark shows the text came from that model, not who posted it: anyone can paste such text."
        )
