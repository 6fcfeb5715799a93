"""Text in, one WatermarkScore per post and scheme out.

For each scheme, each post is scored in up to two forms: the text as submitted and, when normalizing
changes its tokens, the text after the scheme's normalizers (so neither an attacked nor a clean text is
missed). Each form gets the whole-text test and, for posts long enough, the best-window test. All those
tests form one family per scheme, controlled by a weighted Bonferroni rule: each test gets a share of
the scheme's false-positive target (itself an equal share of the post-level target across schemes),
the shares add up to 1, and the post is flagged when some test's p-value is within its share. That
holds the chance that a human post is flagged by ANY scheme at or below
[watermark].false_positive_rate, whatever the dependence between the tests.

The shares follow where a watermark is expected. When normalizing changed the tokens, the normalized
form gets most of the budget (NORMALIZED_FORM_SHARE): an attack is what usually changes them, and for a
model that emitted such characters itself the normalized form still carries the watermark but for the
tokens next to them. Within a form, the whole-text test and the best-window test share equally.

A post that is not flagged is called "not_watermarked" only when its test had the power to see a
watermark of the scheme's expected strength; otherwise its outcome is "insufficient_evidence" (a short
post is no evidence of a human author). Counted tokens are (seed, target) pairs by default: see scoring.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from moderation.config import Settings, WatermarkScheme
from moderation.errors import ConfigError, DeviceUnavailable
from moderation.watermark.greenlists import GreenLists
from moderation.watermark.normalize import NormalizedText, normalize
from moderation.watermark.scoring import ScoredTokens, score_tokens
from moderation.watermark.seeding import Seeder, seeder_for
from moderation.watermark.stats import (
    LN10,
    bonferroni_log,
    detection_threshold,
    log_binomial_tail,
    p_value_from_log,
    power,
    z_scores,
)
from moderation.watermark.tokenization import EncodedBatch, encode_batch, tokenizer_vocab_size
from moderation.watermark.windows import BestWindows, best_windows

RAW, NORMALIZED = "raw", "normalized"
# What a score concludes. "insufficient_evidence": not flagged, but the test could not have seen a watermark
# of the scheme's expected strength (power below min_power): too few counted tokens to call it human.
WATERMARKED, NOT_WATERMARKED, INSUFFICIENT, ABSTAINED = (
    "watermarked",
    "not_watermarked",
    "insufficient_evidence",
    "abstained",
)
# A scheme's false-positive budget for a post whose normalized form tokenizes differently: most goes to the
# normalized form, the rest to the submitted one.
NORMALIZED_FORM_SHARE = 0.9


@dataclass(frozen=True)
class WindowMatch:
    """The most significant window of a post: where a pasted watermarked passage is."""

    start_char: int
    end_char: int
    num_tokens_scored: int
    num_green_tokens: int
    z_score: float
    p_value: float
    log10_p_value: float
    windows_searched: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class WatermarkScore:
    """The detector's result for one post under one scheme. `watermarked` is None when it abstained."""

    scheme: str
    num_tokens_scored: int
    num_green_tokens: int
    green_fraction: float | None
    z_score: float | None
    p_value: float | None
    log10_p_value: float | None
    p_value_adjusted: float | None  # min over the family of p / share (weighted Bonferroni); flag at <= alpha
    watermarked: bool | None
    reason: str | None  # why it abstained: "too_short" (fewer than min_scored_tokens counted)
    form: str  # "raw" or "normalized": which form of the text the numbers describe
    tests: int  # size of the family behind p_value_adjusted
    alpha: float  # this scheme's false-positive target
    truncated: bool
    window: WindowMatch | None
    # "watermarked", "not_watermarked" (not flagged, and the test had at least min_power against a watermark
    # of expected strength), "insufficient_evidence" (not flagged, power below that) or "abstained".
    outcome: str
    # The chance that this post's whole-text test flags text of this length whose tokens are green at the
    # scheme's expected green fraction; and the smallest green fraction it flags (None: none would).
    power: float | None
    min_detectable_green_fraction: float | None
    # Evidence, for flagged posts (or all with evidence="all"): the best window, and per scored token of
    # `form`, (start_char, end_char, green, counted) in the ORIGINAL text.
    tokens: tuple[tuple[int, int, bool, bool], ...] | None = None

    @property
    def strength(self) -> float:
        """0..1: how far towards the flag threshold the evidence goes (1 = at or beyond it)."""
        if self.p_value_adjusted is None or self.p_value_adjusted >= 1.0:
            return 0.0
        return float(min(1.0, math.log(self.p_value_adjusted) / math.log(self.alpha)))

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("window", "tokens")}
        out["window"] = self.window.to_json() if self.window else None
        return out


@dataclass(frozen=True)
class _FormResult:
    scored: npt.NDArray[np.int64]
    green: npt.NDArray[np.int64]
    log_p: npt.NDArray[np.float64]
    z: npt.NDArray[np.float64]
    windows: BestWindows | None
    tokens: ScoredTokens
    encoded: EncodedBatch
    truncated: npt.NDArray[np.bool_]


class _Test(NamedTuple):
    """One test of a post's family: its log p-value and the log of its share of the scheme's alpha."""

    log_p: float
    log_share: float
    window: bool
    form: str
    result: _FormResult
    row: int

    @property
    def adjusted(self) -> float:
        """log of min(1, p / share): at or below log(alpha) means this test flags the post."""
        return min(0.0, self.log_p - self.log_share)


# Files that exist wherever a GPU driver torch could use is installed: NVIDIA's (Linux), the WSL2 GPU bridge, and
# AMD's ROCm (which torch also reports as "cuda"). Without any of them torch.cuda.is_available() is False.
GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")


def _gpu_driver_present() -> bool:
    return any(os.path.exists(path) for path in GPU_DRIVER_FILES)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(requested: str) -> str:
    """The detector's device, "cpu" or "cuda", for [detector].device ("auto", "cpu" or "cuda").

    Only a GPU needs torch: "cpu" never imports it, nor does "auto" on a machine without a GPU driver, where
    no CUDA device can exist and asking torch would only cost its import (about a second of start-up)."""
    if requested == "cpu":
        return "cpu"
    if requested == "cuda":
        if not _cuda_available():
            raise DeviceUnavailable("[detector].device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
        return "cuda"
    if requested == "auto":
        return "cuda" if _gpu_driver_present() and _cuda_available() else "cpu"
    raise ConfigError(f"[detector].device must be 'auto', 'cpu' or 'cuda'; got {requested!r}")


class _SchemeRuntime:
    """What one scheme needs at detection time, built once per process."""

    def __init__(self, scheme: WatermarkScheme, alpha: float, device: str, cache_bytes: int) -> None:
        tokenizer_size = tokenizer_vocab_size(scheme.tokenizer)
        if scheme.vocab_size < tokenizer_size:
            raise ConfigError(
                f"watermark.schemes[{scheme.name}].vocab_size: {scheme.vocab_size} is smaller than the tokenizer's "
                f"{tokenizer_size} tokens; use the MODEL's vocab_size (config.vocab_size), which is never smaller"
            )
        self.scheme = scheme
        self.alpha = alpha
        self.seeder: Seeder = seeder_for(scheme)
        self.greenlists = GreenLists(
            scheme.vocab_size,
            scheme.greenlist_ratio,
            cuda_generator=scheme.needs_cuda,
            device=device,
            cache_bytes=cache_bytes,
        )


class WatermarkDetector:
    """Batched detector for every configured scheme. Build once per process; call `detect` per batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.detector.device)
        cache_bytes = settings.detector.greenlist_cache_mib * 2**20
        self.schemes = [
            _SchemeRuntime(s, settings.watermark.alpha_for(s), self.device, cache_bytes)
            for s in settings.watermark.schemes
        ]

    def detect(self, texts: Sequence[str], *, evidence: str = "flagged") -> list[list[WatermarkScore]]:
        """Scores per text, one per scheme in config order. `evidence`: "none", "flagged" or "all"."""
        if not texts or not self.schemes:
            return [[] for _ in texts]
        normalized: dict[tuple[str, ...], list[NormalizedText]] = {}
        encoded: dict[tuple[str, tuple[str, ...] | None], EncodedBatch] = {}
        per_scheme: list[list[WatermarkScore]] = []
        for runtime in self.schemes:
            steps = tuple(runtime.scheme.normalizers)
            if steps not in normalized:
                normalized[steps] = [normalize(t, steps) for t in texts]
            forms = normalized[steps]
            changed = [i for i, f in enumerate(forms) if f.changed]
            raw_key = (runtime.scheme.tokenizer, None)
            if raw_key not in encoded:
                encoded[raw_key] = encode_batch(runtime.scheme.tokenizer, texts)
            norm_key = (runtime.scheme.tokenizer, steps)
            if changed and norm_key not in encoded:
                encoded[norm_key] = encode_batch(runtime.scheme.tokenizer, [forms[i].text for i in changed])
            # A normalized form is a test of its own only where its tokens differ from the submitted ones.
            norm_row: dict[int, int] = {}
            if changed:
                raw_ids, norm_ids = encoded[raw_key].ids, encoded[norm_key].ids
                norm_row = {p: r for r, p in enumerate(changed) if not np.array_equal(norm_ids[r], raw_ids[p])}
            raw = self._score_form(runtime, encoded[raw_key])
            norm = self._score_form(runtime, encoded[norm_key]) if norm_row else None
            per_scheme.append(
                [self._decide(runtime, i, raw, norm, norm_row, forms, evidence) for i in range(len(texts))]
            )
        return [[scores[i] for scores in per_scheme] for i in range(len(texts))]

    # -- internals ----------------------------------------------------------------------------------

    def _score_form(self, runtime: _SchemeRuntime, encoded: EncodedBatch) -> _FormResult:
        limit = self.settings.detector.max_tokens_per_post
        ids = [x[:limit] for x in encoded.ids]
        truncated = np.array([len(x) > limit for x in encoded.ids], dtype=np.bool_)
        scheme = runtime.scheme
        tokens = score_tokens(ids, runtime.seeder, runtime.greenlists, counting=scheme.repeat_counting)
        scored, green = tokens.counts()
        log_p = log_binomial_tail(green, scored, scheme.greenlist_ratio)
        windows = best_windows(tokens, scheme.window_sizes, scheme.greenlist_ratio) if scheme.windowed else None
        return _FormResult(
            scored=scored,
            green=green,
            log_p=log_p,
            z=z_scores(green, scored, scheme.greenlist_ratio),
            windows=windows,
            tokens=tokens,
            encoded=encoded,
            truncated=truncated,
        )

    def _decide(
        self,
        runtime: _SchemeRuntime,
        index: int,
        raw: _FormResult,
        norm: _FormResult | None,
        norm_row: dict[int, int],
        forms: list[NormalizedText],
        evidence: str,
    ) -> WatermarkScore:
        scheme = runtime.scheme
        candidates: list[tuple[str, _FormResult, int]] = [(RAW, raw, index)]
        if norm is not None and index in norm_row:
            candidates.append((NORMALIZED, norm, norm_row[index]))
        usable = [c for c in candidates if c[1].scored[c[2]] >= scheme.min_scored_tokens]
        if not usable:
            name, result, row = max(candidates, key=lambda c: int(c[1].scored[c[2]]))
            return self._abstain(runtime, name, result, row, forms[index])

        # The family: the whole-text test of each usable form, plus its best-window test when one ran. Which
        # tests exist depends on the text alone (its tokens and their number), never on green counts, so the
        # shares are fixed before any test is seen.
        form_share = (
            {usable[0][0]: 1.0}
            if len(usable) == 1
            else {NORMALIZED: NORMALIZED_FORM_SHARE, RAW: 1 - NORMALIZED_FORM_SHARE}
        )
        tests: list[_Test] = []
        for name, result, row in usable:
            windowed = result.windows is not None and result.windows.tests[row] > 0
            log_share = math.log(form_share[name] / 2 if windowed else form_share[name])
            tests.append(_Test(float(result.log_p[row]), log_share, False, name, result, row))
            if result.windows is not None and windowed:
                window_log_p = bonferroni_log(float(result.windows.log_p[row]), int(result.windows.tests[row]))
                tests.append(_Test(window_log_p, log_share, True, name, result, row))
        best = min(tests, key=lambda t: t.adjusted)
        # A legacy z_threshold is only a way to state alpha (config.normal_tail): the exact tail decides.
        watermarked = best.adjusted <= math.log(runtime.alpha)
        name, result, row = best.form, best.result, best.row
        # Power is that of the reported form's whole-text test at its share; the family can only do better.
        whole = next(t for t in tests if t.form == name and not t.window)
        level = runtime.alpha * math.exp(whole.log_share)
        return self._score(
            runtime, name, result, row, forms[index], len(tests), best.adjusted, watermarked, evidence, level
        )

    def _score(
        self,
        runtime: _SchemeRuntime,
        form: str,
        result: _FormResult,
        row: int,
        text: NormalizedText,
        tests: int,
        adjusted_log_p: float,
        watermarked: bool,
        evidence: str,
        level: float,
    ) -> WatermarkScore:
        scored, green = int(result.scored[row]), int(result.green[row])
        gamma = runtime.scheme.greenlist_ratio
        test_power = power(scored, gamma, level, runtime.scheme.power_green_fraction)
        threshold = detection_threshold(scored, gamma, level)
        if watermarked:
            outcome = WATERMARKED
        else:
            outcome = NOT_WATERMARKED if test_power >= runtime.scheme.min_power else INSUFFICIENT
        log_p = float(result.log_p[row])
        mapping = text if form == NORMALIZED else None
        # Evidence (green tokens and the best window, with character offsets) is for posts a moderator
        # will look at; fetching offsets for every post would cost more than scoring it.
        want_evidence = evidence == "all" or (evidence == "flagged" and watermarked)
        return WatermarkScore(
            scheme=runtime.scheme.name,
            num_tokens_scored=scored,
            num_green_tokens=green,
            green_fraction=green / scored if scored else None,
            z_score=float(result.z[row]),
            p_value=p_value_from_log(log_p),
            log10_p_value=log_p / LN10,
            p_value_adjusted=p_value_from_log(adjusted_log_p),
            watermarked=watermarked,
            reason=None,
            form=form,
            tests=tests,
            alpha=runtime.alpha,
            truncated=bool(result.truncated[row]),
            window=self._window(result, row, mapping, runtime.scheme.greenlist_ratio) if want_evidence else None,
            outcome=outcome,
            power=test_power,
            min_detectable_green_fraction=threshold / scored if threshold <= scored else None,
            tokens=_token_evidence(result, row, mapping) if want_evidence else None,
        )

    def _abstain(
        self, runtime: _SchemeRuntime, form: str, result: _FormResult, row: int, text: NormalizedText
    ) -> WatermarkScore:
        scored, green = int(result.scored[row]), int(result.green[row])
        return WatermarkScore(
            scheme=runtime.scheme.name,
            num_tokens_scored=scored,
            num_green_tokens=green,
            green_fraction=green / scored if scored else None,
            z_score=float(result.z[row]) if scored else None,
            p_value=None,
            log10_p_value=None,
            p_value_adjusted=None,
            watermarked=None,
            reason="too_short",
            form=form,
            tests=0,
            alpha=runtime.alpha,
            truncated=bool(result.truncated[row]),
            window=None,
            outcome=ABSTAINED,
            power=None,
            min_detectable_green_fraction=None,
        )

    @staticmethod
    def _window(result: _FormResult, row: int, mapping: NormalizedText | None, gamma: float) -> WindowMatch | None:
        windows = result.windows
        if windows is None or windows.tests[row] == 0 or windows.size[row] == 0:
            return None
        offsets = result.encoded.offsets(row)
        start = int(offsets[windows.first_position[row], 0])
        end = int(offsets[windows.last_position[row], 1])
        if mapping is not None:
            start, end = mapping.original_span(start, end)
        size, green = int(windows.size[row]), int(windows.green[row])
        log_p = float(windows.log_p[row])
        return WindowMatch(
            start_char=start,
            end_char=end,
            num_tokens_scored=size,
            num_green_tokens=green,
            z_score=float(z_scores([green], [size], gamma)[0]),
            p_value=p_value_from_log(log_p),
            log10_p_value=log_p / LN10,
            windows_searched=int(windows.tests[row]),
        )


def _token_evidence(
    result: _FormResult, row: int, mapping: NormalizedText | None
) -> tuple[tuple[int, int, bool, bool], ...]:
    tokens = result.tokens
    # Scored positions are stored post by post, so this post's are one contiguous slice.
    lo = int(np.searchsorted(tokens.post, row, side="left"))
    hi = int(np.searchsorted(tokens.post, row, side="right"))
    positions, green, counted = tokens.position[lo:hi], tokens.green[lo:hi], tokens.counted[lo:hi]
    offsets = result.encoded.offsets(row)
    out = []
    for p, g, c in zip(positions.tolist(), green.tolist(), counted.tolist(), strict=True):
        start, end = int(offsets[p, 0]), int(offsets[p, 1])
        if mapping is not None:
            start, end = mapping.original_span(start, end)
        out.append((start, end, bool(g), bool(c)))
    return tuple(out)
