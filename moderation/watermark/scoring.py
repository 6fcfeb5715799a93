"""Token ids -> which scored tokens are green, and which count towards the test, for a whole batch of
ragged posts at once.

A post of L tokens has L - ngram_size + 1 scored positions: the first tokens only seed the green list of
the next one and cannot be scored (the generator's own detector skips them the same way).

Which positions COUNT (`counting`, the scheme's `repeat_counting`):
- "pairs" (default): each (green-list seed, target token) pair of a post counts once, at its first
  occurrence (Fernandez et al. 2023, "Three Bricks to Consolidate Watermarks for LLMs"). A position's
  green bit is a function of that pair alone, so repeats of a pair are the same draw, not new evidence;
  distinct pairs are independent draws under H0, which is what the binomial test assumes. The pair is
  finer than it looks: transformers' lefthash seeds on the previous token whatever context_width says,
  lm-watermarking's additive PRF on the SUM of its context, and both selfhash variants on the one
  context token that achieves the min (or the target itself): distinct n-grams often share a pair.
  Deduplicating on the seed VALUE covers all of these at once (and two contexts whose seeds collide are
  the same draw too).
- "ngrams": each distinct scored n-gram counts once (transformers' and lm-watermarking's
  `ignore_repeated_ngrams`), for reproducing their numbers. Distinct n-grams sharing a pair are counted
  as independent though they are one draw: this VOIDS the false-positive guarantee (measured in
  tests/unit/watermark/test_calibration.py: up to tens of times the target on human text).
- "all": every scored position counts (the detectors' default without that option); voids it too.
Repeats are still marked green or red for the evidence; they just do not count.

No Python loop runs per token: the batch is flattened and handled with numpy operations and compiled
kernels; green lists are derived once per distinct seed (lefthash) or (seed, token) pair (selfhash). This
bookkeeping is O(tokens) integer work on the host whatever the detector's device (only green-list lookups
may run on a GPU), so it is numpy: the CPU path never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from moderation.config import RepeatCounting
from moderation.watermark import kernels
from moderation.watermark.greenlists import GreenLists
from moderation.watermark.seeding import Seeder


@dataclass(frozen=True)
class ScoredTokens:
    """Every scored position of a batch, flattened in post order then position order."""

    num_posts: int
    post: npt.NDArray[np.int64]  # [N]: which post (non-decreasing)
    position: npt.NDArray[np.int64]  # [N]: index of the scored (target) token within its post
    green: npt.NDArray[np.bool_]  # [N]
    counted: npt.NDArray[np.bool_]  # [N]: counts towards the test (first occurrence of its pair or n-gram)

    def counts(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(tokens scored, green tokens) per post, counting only `counted` positions."""
        scored = np.bincount(self.post[self.counted], minlength=self.num_posts).astype(np.int64)
        green = np.bincount(self.post[self.counted & self.green], minlength=self.num_posts).astype(np.int64)
        return scored, green


def score_tokens(
    token_ids: Sequence[npt.NDArray[np.int64]],
    seeder: Seeder,
    greenlists: GreenLists,
    *,
    counting: RepeatCounting,
) -> ScoredTokens:
    vocab = greenlists.vocab_size
    m = seeder.ngram_size
    lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
    flat = np.concatenate(token_ids).astype(np.int64) if token_ids else np.zeros(0, dtype=np.int64)
    if flat.size and (int(flat.max()) >= vocab or int(flat.min()) < 0):
        raise ValueError(f"token ids must lie in [0, vocab_size={vocab}); got [{int(flat.min())}, {int(flat.max())}]")

    starts = np.cumsum(lengths) - lengths
    per_post = np.maximum(lengths - m + 1, 0)
    n = int(per_post.sum())
    post = np.repeat(np.arange(len(token_ids), dtype=np.int64), per_post)
    first_of_post = np.cumsum(per_post) - per_post
    position = np.arange(n, dtype=np.int64) - first_of_post[post] + (m - 1)
    target = starts[post] + position
    ngrams = flat[target[:, None] - (m - 1) + np.arange(m)] if n else np.zeros((0, m), dtype=np.int64)
    targets = flat[target]  # the last column of `ngrams`, contiguous

    if seeder.kind == "left":
        distinct, inverse = seeder.left_seeds_grouped(ngrams) if n else (np.empty(0, np.int64), np.empty(0, np.int64))
        green = greenlists.lookup_grouped(distinct, inverse, targets)
        seed_key = distinct[inverse]
    else:
        seed_key = seeder.seeds(ngrams)
        green = _membership_deduplicated(greenlists, seed_key, targets, vocab)

    if not n or counting == "all":
        counted = np.ones(n, dtype=np.bool_)
    elif counting == "pairs":
        counted = kernels.first_occurrence_pairs(seed_key, targets, _bounds(post, len(token_ids)))
    elif counting == "ngrams":
        counted = _first_occurrences(post, ngrams, vocab, len(token_ids))
    else:
        raise ValueError(f"counting must be 'pairs', 'ngrams' or 'all'; got {counting!r}")
    return ScoredTokens(num_posts=len(token_ids), post=post, position=position, green=green, counted=counted)


def _bounds(post: npt.NDArray[np.int64], num_posts: int) -> npt.NDArray[np.int64]:
    """Positions are stored post by post: post s's are [bounds[s], bounds[s + 1]), a segment (and a small
    hash table) of its own."""
    bounds = np.zeros(num_posts + 1, dtype=np.int64)
    np.cumsum(np.bincount(post, minlength=num_posts), out=bounds[1:])
    return bounds


def _first_occurrences(
    post: npt.NDArray[np.int64], ngrams: npt.NDArray[np.int64], vocab: int, num_posts: int
) -> npt.NDArray[np.bool_]:
    """True for the first occurrence of each (post, n-gram): a hash pass when one int64 key holds it."""
    m = ngrams.shape[1]
    if num_posts * vocab**m < 2**62:
        key = post.copy()
        for column in range(m):
            key = key * vocab + ngrams[:, column]
        first: npt.NDArray[np.bool_] = kernels.first_occurrence(key, _bounds(post, num_posts))
        return first
    # Too wide for one int64 key (huge vocab or long context): group identical rows by sorting instead.
    # np.unique's return_index is the index of each row's FIRST occurrence (it sorts stably for it).
    rows = np.concatenate([post[:, None], ngrams], axis=1)
    _, first_index = np.unique(rows, axis=0, return_index=True)
    counted = np.zeros(ngrams.shape[0], dtype=np.bool_)
    counted[first_index] = True
    return counted


def _membership_deduplicated(
    greenlists: GreenLists, seeds: npt.NDArray[np.int64], targets: npt.NDArray[np.int64], vocab: int
) -> npt.NDArray[np.bool_]:
    """Selfhash: one kernel call per distinct (seed, token) pair; repeats share the answer."""
    if seeds.shape[0] == 0 or greenlists.cuda_generator:
        return greenlists.membership(seeds, targets)
    pair = seeds * vocab + targets  # CPU seeds are < 2**32 and vocab < 2**31: exact
    distinct, inverse = kernels.distinct_inverse(pair)  # a hash pass: sorting was ~10% of a selfhash scan
    flags = greenlists.membership(distinct // vocab, distinct % vocab)
    shared: npt.NDArray[np.bool_] = flags[inverse]
    return shared
