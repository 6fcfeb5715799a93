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
import torch

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
    post = scored.post[keep].cpu()
    green = scored.green[keep].cpu().to(torch.int64)
    position = scored.position[keep].cpu()
    num_posts = scored.num_posts
    length = torch.zeros(num_posts, dtype=torch.int64).index_add_(0, post, torch.ones_like(post))
    offset = torch.cumsum(length, 0) - length
    cumulative = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(green, 0)])

    tests = np.zeros(num_posts, dtype=np.int64)
    best_log_p = np.zeros(num_posts, dtype=np.float64)
    best = {name: np.zeros(num_posts, dtype=np.int64) for name in ("size", "green", "first", "last")}

    for size in sorted(set(sizes)):
        stride = max(1, size // 4)
        per_post = torch.where(length >= 2 * size, (length - size) // stride + 1, torch.zeros_like(length))
        count = int(per_post.sum())
        if count == 0:
            continue
        owner = torch.repeat_interleave(torch.arange(num_posts), per_post)
        k = torch.arange(count) - (torch.cumsum(per_post, 0) - per_post)[owner]
        start = offset[owner] + k * stride
        sums = cumulative[start + size] - cumulative[start]
        # The first window of each post reaching the post's maximum green count.
        peak = torch.full((num_posts,), -1, dtype=torch.int64).scatter_reduce(0, owner, sums, reduce="amax")
        is_peak = sums == peak[owner]
        first_peak = torch.full((num_posts,), count, dtype=torch.int64).scatter_reduce(
            0, owner[is_peak], torch.arange(count)[is_peak], reduce="amin"
        )
        has = (per_post > 0).numpy()
        chosen = first_peak[per_post > 0]
        log_p = log_binomial_tail(peak[per_post > 0].numpy(), np.full(int(has.sum()), size), gamma)
        tests[has] += per_post[per_post > 0].numpy()
        better = log_p < best_log_p[has]
        rows = np.flatnonzero(has)[better]
        chosen_start = start[chosen].numpy()[better]
        best_log_p[rows] = log_p[better]
        best["size"][rows] = size
        best["green"][rows] = peak[per_post > 0].numpy()[better]
        best["first"][rows] = position[chosen_start].numpy()
        best["last"][rows] = position[chosen_start + size - 1].numpy()

    return BestWindows(
        tests=tests,
        log_p=best_log_p,
        size=best["size"],
        green=best["green"],
        first_position=best["first"],
        last_position=best["last"],
    )
