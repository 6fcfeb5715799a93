"""Find the best window: a watermarked passage pasted inside human text (the copy-paste attack).

A short watermarked passage inside a long human post dilutes the whole-text z-score. Scanning windows of
a few fixed sizes over the post's counted tokens and keeping the most significant one recovers it (the
"WinMax" idea of the follow-up paper). Every window is a test, so the best window's p-value is
Bonferroni-adjusted by the number of windows searched; windows advance by a quarter of their size,
which keeps that number (and so the penalty) small while any passage of at least 1.25x a window size
still contains a whole window.

A window size is searched only in posts at least twice as long: in a shorter post a passage that fills
such a window is most of the post, which the whole-text test already sees, and the window test would only
take a share of the false-positive budget from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from moderation.watermark.scoring import ScoredTokens
from moderation.watermark.stats import log_binomial_tail


@dataclass(frozen=True)
class BestWindows:
    """Per post: the most significant window, or tests == 0 where the post is too short for any window."""

    tests: npt.NDArray[np.int64]  # windows searched
    log_p: npt.NDArray[np.float64]  # unadjusted log p-value of the best window (0 where none)
    size: npt.NDArray[np.int64]  # counted tokens in the best window
    green: npt.NDArray[np.int64]
    first_position: npt.NDArray[np.int64]  # token index (within the post) of its first scored token
    last_position: npt.NDArray[np.int64]  # token index of its last scored token


def best_windows(scored: ScoredTokens, sizes: Sequence[int], gamma: float) -> BestWindows:
    keep = scored.counted
    post = scored.post[keep]
    green = scored.green[keep].astype(np.int64)
    position = scored.position[keep]
    num_posts = scored.num_posts
    length = np.bincount(post, minlength=num_posts).astype(np.int64)
    offset = np.cumsum(length) - length
    cumulative = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(green)])

    tests = np.zeros(num_posts, dtype=np.int64)
    best_log_p = np.zeros(num_posts, dtype=np.float64)
    best = {name: np.zeros(num_posts, dtype=np.int64) for name in ("size", "green", "first", "last")}

    for size in sorted(set(sizes)):
        stride = max(1, size // 4)
        per_post = np.where(length >= 2 * size, (length - size) // stride + 1, 0)
        count = int(per_post.sum())
        if count == 0:
            continue
        owner = np.repeat(np.arange(num_posts), per_post)
        first_window = np.cumsum(per_post) - per_post
        k = np.arange(count) - first_window[owner]
        start = offset[owner] + k * stride
        sums = cumulative[start + size] - cumulative[start]
        # Windows are stored post by post, so each post with windows is one segment [first_window, next): its
        # peak green count, then the first window of the segment reaching it.
        has = per_post > 0
        segments = first_window[has]
        peak = np.maximum.reduceat(sums, segments)
        at_peak = sums == np.repeat(peak, per_post[has])
        chosen = np.minimum.reduceat(np.where(at_peak, np.arange(count), count), segments)
        log_p = log_binomial_tail(peak, np.full(peak.shape[0], size), gamma)
        tests[has] += per_post[has]
        better = log_p < best_log_p[has]
        rows = np.flatnonzero(has)[better]
        chosen_start = start[chosen][better]
        best_log_p[rows] = log_p[better]
        best["size"][rows] = size
        best["green"][rows] = peak[better]
        best["first"][rows] = position[chosen_start]
        best["last"][rows] = position[chosen_start + size - 1]

    return BestWindows(
        tests=tests,
        log_p=best_log_p,
        size=best["size"],
        green=best["green"],
        first_position=best["first"],
        last_position=best["last"],
    )
