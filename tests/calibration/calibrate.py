"""Measure the detector's family-wise false-positive rate on real human posts, for every seeding variant.

For each seeding variant and context width, every post of tests/calibration/corpus.py is scored under
several keys with the detector's full family (both text forms, whole text and windows). A post is flagged
at target t when its family-adjusted p-value is at most t, i.e. exactly when a scheme with
false_positive_rate = t flags it (the shares of the family do not depend on t), so one run gives every
target. Trials are (post, key): for a fixed text, flags under independent keys are independent, each with
probability at most t if the guarantee holds, so the count is dominated by Binomial(trials, t) and the
exact one-sided binomial test applies.

    python -m tests.calibration.calibrate                      # the default counting ("pairs")
    python -m tests.calibration.calibrate --counting ngrams    # the compatibility mode: inflated
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import binomtest

from moderation.config import RepeatCounting, parse_settings
from moderation.watermark import WatermarkDetector
from tests.calibration.corpus import Post, calibration_posts


@dataclass(frozen=True)
class Variant:
    name: str
    fields: dict[str, Any]
    contexts: tuple[int, ...]


VARIANTS = (
    Variant("transformers lefthash", {"seeding_scheme": "lefthash"}, (1, 2, 4)),
    Variant("transformers selfhash", {"seeding_scheme": "selfhash"}, (1, 2, 4)),
    Variant("lm-watermarking simple_1", {"generator": "lm-watermarking", "seeding_scheme": "simple_1"}, (1,)),
    Variant(
        "lm-watermarking lefthash (additive)", {"generator": "lm-watermarking", "seeding_scheme": "lefthash"}, (3,)
    ),
    Variant("lm-watermarking selfhash", {"generator": "lm-watermarking", "seeding_scheme": "selfhash"}, (2, 4)),
)
TARGETS = (1e-2, 1e-3, 1e-4)
# transformers' default, a 31-bit prime, a 40-bit key and a 62-bit one (whose products overflow int64).
KEYS = (15485863, 2_147_483_647, 987_654_321_987, 4_611_686_018_427_387_847)
# Each cell's one-sided exact binomial test is made at this level (so a correct detector fails a run of
# the 36 cells with probability at most 36 x 0.001 = 3.6%; the corpus and keys are fixed, so the outcome
# is the same on every run).
LEVEL = 1e-3


@dataclass(frozen=True)
class Cell:
    variant: str
    context: int
    target: float
    flagged: int
    trials: int
    flagged_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.flagged / self.trials

    @property
    def p_value(self) -> float:
        """One-sided exact binomial test of H0 "rate <= target"."""
        return float(binomtest(self.flagged, self.trials, self.target, alternative="greater").pvalue)

    @property
    def interval(self) -> tuple[float, float]:
        ci = binomtest(self.flagged, self.trials).proportion_ci(0.95, method="exact")
        return float(ci.low), float(ci.high)

    @property
    def significantly_above(self) -> bool:
        return self.p_value < LEVEL


def measure(
    posts: Sequence[Post],
    counting: RepeatCounting,
    variants: Sequence[Variant] = VARIANTS,
    keys: Sequence[int] = KEYS,
    batch: int = 256,
) -> list[Cell]:
    texts = [p.text for p in posts]
    cells = []
    for variant in variants:
        for context in variant.contexts:
            schemes = [
                {
                    "name": f"key{i}",
                    "vocab_size": 30522,
                    **variant.fields,
                    "context_width": context,
                    "hashing_key": key,
                    "repeat_counting": counting,
                    "false_positive_rate": max(TARGETS),
                }
                for i, key in enumerate(keys)
            ]
            settings = parse_settings(
                {
                    "detector": {"device": "cpu", "greenlist_cache_mib": 64},
                    "watermark": {"false_positive_rate": 0.49, "schemes": schemes},
                }
            )
            detector = WatermarkDetector(settings)
            adjusted: list[tuple[float, str]] = []
            for start in range(0, len(texts), batch):
                rows = detector.detect(texts[start : start + batch], evidence="none")
                for post, row in zip(posts[start : start + batch], rows, strict=True):
                    adjusted += [
                        (s.p_value_adjusted if s.p_value_adjusted is not None else 1.0, post.kind) for s in row
                    ]
            for target in TARGETS:
                hits = [kind for p, kind in adjusted if p <= target]
                cells.append(Cell(variant.name, context, target, len(hits), len(adjusted), Counter(hits)))
    return cells


def markdown_table(cells: Sequence[Cell]) -> str:
    lines = [
        "| scheme | context | target | flagged / trials | measured rate | 95% CI | p (rate > target) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        low, high = c.interval
        mark = " **above**" if c.significantly_above else ""
        lines.append(
            f"| {c.variant} | {c.context} | {c.target:g} | {c.flagged} / {c.trials} | {c.rate:.2g} | "
            f"[{low:.2g}, {high:.2g}] | {c.p_value:.2g}{mark} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--counting", choices=("pairs", "ngrams", "all"), default="pairs")
    args = parser.parse_args()
    posts = calibration_posts()
    kinds = Counter(p.kind for p in posts)
    print(f"{len(posts)} human posts of >= 300 tokens: {dict(kinds)}; {len(KEYS)} keys; counting {args.counting!r}\n")
    started = time.perf_counter()
    cells = measure(posts, args.counting)
    print(markdown_table(cells))
    print(
        f"\nflagged kinds at the loosest target: {sum((c.flagged_kinds for c in cells if c.target == max(TARGETS)), Counter())}"
    )
    print(f"measured in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
