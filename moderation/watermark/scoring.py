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

No Python loop runs per token: the batch is flattened and handled with tensor operations and compiled
kernels; green lists are derived once per distinct seed (lefthash) or (seed, token) pair (selfhash).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from moderation.config import RepeatCounting
from moderation.watermark import kernels
from moderation.watermark.greenlists import GreenLists
from moderation.watermark.seeding import Seeder


@dataclass(frozen=True)
class ScoredTokens:
    """Every scored position of a batch, flattened in post order then position order."""

    num_posts: int
    post: torch.Tensor  # int64 [N]: which post
    position: torch.Tensor  # int64 [N]: index of the scored (target) token within its post
    green: torch.Tensor  # bool [N]
    counted: torch.Tensor  # bool [N]: counts towards the test (first occurrence of its pair or n-gram)

    def counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens scored, green tokens) per post, counting only `counted` positions."""
        scored = torch.zeros(self.num_posts, dtype=torch.int64, device=self.post.device)
        green = torch.zeros_like(scored)
        scored.index_add_(0, self.post, self.counted.to(torch.int64))
        green.index_add_(0, self.post, (self.counted & self.green).to(torch.int64))
        return scored, green


def score_tokens(
    token_ids: Sequence[npt.NDArray[np.int64]],
    seeder: Seeder,
    greenlists: GreenLists,
    *,
    counting: RepeatCounting,
) -> ScoredTokens:
    device = greenlists.device
    vocab = greenlists.vocab_size
    m = seeder.ngram_size
    lengths = torch.tensor([len(ids) for ids in token_ids], dtype=torch.int64)
    flat = (
        torch.from_numpy(np.concatenate(token_ids).astype(np.int64)) if token_ids else torch.zeros(0, dtype=torch.int64)
    )
    if flat.numel() and (int(flat.max()) >= vocab or int(flat.min()) < 0):
        raise ValueError(f"token ids must lie in [0, vocab_size={vocab}); got [{int(flat.min())}, {int(flat.max())}]")

    starts = torch.cumsum(lengths, 0) - lengths
    per_post = (lengths - m + 1).clamp(min=0)
    n = int(per_post.sum())
    post = torch.repeat_interleave(torch.arange(len(token_ids)), per_post)
    first_of_post = torch.cumsum(per_post, 0) - per_post
    position = torch.arange(n) - first_of_post[post] + (m - 1)
    target = starts[post] + position
    ngrams = flat[target.unsqueeze(1) - (m - 1) + torch.arange(m)] if n else torch.zeros((0, m), dtype=torch.int64)

    targets = ngrams[:, -1] if n else torch.zeros(0, dtype=torch.int64)
    if seeder.kind == "left":
        distinct, inverse = seeder.left_seeds_grouped(ngrams) if n else (np.empty(0, np.int64), np.empty(0, np.int64))
        green = greenlists.lookup_grouped(distinct, inverse, targets)
        seed_key = distinct[inverse]
    else:
        seed_key = seeder.seeds(ngrams)
        green = _membership_deduplicated(greenlists, seed_key, targets.numpy(), vocab)

    if not n or counting == "all":
        counted = torch.ones(n, dtype=torch.bool)
    elif counting == "pairs":
        counted = torch.from_numpy(
            kernels.first_occurrence_pairs(seed_key, targets.numpy(), _bounds(post, len(token_ids)))
        )
    elif counting == "ngrams":
        counted = _first_occurrences(post, ngrams, vocab, len(token_ids))
    else:
        raise ValueError(f"counting must be 'pairs', 'ngrams' or 'all'; got {counting!r}")
    return ScoredTokens(
        num_posts=len(token_ids),
        post=post.to(device),
        position=position.to(device),
        green=green.to(device),
        counted=counted.to(device),
    )


def _bounds(post: torch.Tensor, num_posts: int) -> npt.NDArray[np.int64]:
    """Positions are stored post by post: post s's are [bounds[s], bounds[s + 1]), a segment (and a small
    hash table) of its own."""
    per_post = torch.bincount(post, minlength=num_posts)
    bounds: npt.NDArray[np.int64] = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(per_post, 0)]).numpy()
    return bounds


def _first_occurrences(post: torch.Tensor, ngrams: torch.Tensor, vocab: int, num_posts: int) -> torch.Tensor:
    """True for the first occurrence of each (post, n-gram): a hash pass when one int64 key holds it."""
    m = ngrams.shape[1]
    if num_posts * vocab**m < 2**62:
        key = post.clone()
        for column in range(m):
            key = key * vocab + ngrams[:, column]
        return torch.from_numpy(kernels.first_occurrence(key.numpy(), _bounds(post, num_posts)))
    # Too wide for one int64 key (huge vocab or long context): group identical rows by sorting instead.
    n = ngrams.shape[0]
    _, occurrence = torch.unique(torch.cat([post.unsqueeze(1), ngrams], dim=1), dim=0, return_inverse=True)
    first = torch.full((int(occurrence.max()) + 1,), n, dtype=torch.int64)
    first.scatter_reduce_(0, occurrence, torch.arange(n), reduce="amin")
    return first[occurrence] == torch.arange(n)


def _membership_deduplicated(
    greenlists: GreenLists, seeds: npt.NDArray[np.int64], targets: npt.NDArray[np.int64], vocab: int
) -> torch.Tensor:
    """Selfhash: one kernel call per distinct (seed, token) pair; repeats share the answer."""
    if seeds.shape[0] == 0 or greenlists.cuda_generator:
        return greenlists.membership(seeds, targets)
    pair = seeds * vocab + targets  # CPU seeds are < 2**32 and vocab < 2**31: exact
    distinct, inverse = np.unique(pair, return_inverse=True)
    flags = greenlists.membership(distinct // vocab, distinct % vocab)
    return flags[torch.from_numpy(inverse).to(flags.device)]
