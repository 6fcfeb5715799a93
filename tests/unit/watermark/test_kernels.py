"""The compiled kernels give exactly what the sorting versions they replace give, and the default counting
counts each (seed, target) pair of a post once, the seed computed as the generators compute it."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import WatermarkLogitsProcessor

from moderation.watermark import kernels, scoring
from moderation.watermark.scoring import score_tokens
from moderation.watermark.seeding import LM_WATERMARKING_TABLE_SEED, TABLE_SIZE

from .conftest import make_scheme, runtime_for


def test_first_occurrence_matches_unique() -> None:
    rng = np.random.default_rng(0)
    for n, high in ((0, 5), (1, 5), (1000, 7), (50_000, 2**40)):
        keys = rng.integers(0, high, n).astype(np.int64)
        _, first_index = np.unique(keys, return_index=True)
        expected = np.zeros(n, dtype=bool)
        expected[first_index] = True
        assert np.array_equal(kernels.first_occurrence(keys, np.array([0, n], dtype=np.int64)), expected)


def test_first_occurrence_is_per_segment() -> None:
    rng = np.random.default_rng(3)
    sizes = rng.integers(0, 400, 300)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    keys = rng.integers(0, 50, int(bounds[-1])).astype(np.int64)  # many repeats within and across segments
    expected = np.zeros(keys.shape[0], dtype=bool)
    for lo, hi in itertools.pairwise(bounds):
        _, first_index = np.unique(keys[lo:hi], return_index=True)
        expected[lo + first_index] = True
    assert np.array_equal(kernels.first_occurrence(keys, bounds), expected)


def test_dense_distinct_matches_unique() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 30522, 100_000).astype(np.int64)
    distinct, inverse = kernels.dense_distinct(values, 30522)
    want_distinct, want_inverse = np.unique(values, return_inverse=True)
    assert np.array_equal(distinct, want_distinct) and np.array_equal(inverse, want_inverse)


def test_gather_green_matches_tensor_ops() -> None:
    rng = np.random.default_rng(2)
    table = rng.integers(0, 256, (50, 16), dtype=np.uint8)
    slots = rng.permutation(50)[:20].astype(np.int64)
    inverse = rng.integers(0, 20, 10_000).astype(np.int64)
    tokens = rng.integers(0, 128, 10_000).astype(np.int64)
    t = torch.from_numpy(tokens)
    packed = torch.from_numpy(table)[torch.from_numpy(slots[inverse]), t >> 3]
    expected = ((packed >> (t & 7).to(torch.uint8)) & 1).bool().numpy()
    assert np.array_equal(kernels.gather_green(table, slots, inverse, tokens), expected)


def test_first_occurrence_pairs_matches_unique_per_segment() -> None:
    rng = np.random.default_rng(4)
    sizes = rng.integers(0, 300, 200)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(bounds[-1])
    # Negative and huge first keys too: CUDA seeds are full 64-bit patterns.
    first = rng.choice(np.array([-1, -(2**63), 2**63 - 1, 0, 5, 7, 123456789012], dtype=np.int64), n)
    second = rng.integers(0, 6, n).astype(np.int64)
    expected = np.zeros(n, dtype=bool)
    for lo, hi in itertools.pairwise(bounds):
        _, first_index = np.unique(np.stack([first[lo:hi], second[lo:hi]], axis=1), axis=0, return_index=True)
        expected[lo + first_index] = True
    assert np.array_equal(kernels.first_occurrence_pairs(first, second, bounds), expected)


def _transformers_seed(processor: Any, window: torch.Tensor) -> int:
    processor.set_seed(window)
    return int(processor.rng.initial_seed())


def _lm_selfhash_seed(key: int, ngram: list[int]) -> int:
    table = torch.randperm(TABLE_SIZE, generator=torch.Generator().manual_seed(LM_WATERMARKING_TABLE_SEED))
    hashed = table[torch.tensor(ngram) % TABLE_SIZE] + 1
    return int((key * hashed * hashed[-1]).min().item()) % (2**64 - 1)


@pytest.mark.parametrize(
    "fields",
    [
        {"context_width": 3},
        {"seeding_scheme": "selfhash", "context_width": 2},
        {"seeding_scheme": "selfhash", "context_width": 4, "hashing_key": 987654321987},
        {"generator": "lm-watermarking", "seeding_scheme": "lefthash", "context_width": 2},
        {"generator": "lm-watermarking", "seeding_scheme": "selfhash"},
    ],
    ids=["lefthash-ctx3", "selfhash-ctx2", "selfhash-ctx4-key", "lm-additive-ctx2", "lm-selfhash-ctx4"],
)
def test_pairs_count_each_seed_and_target_once_as_the_generators_seed(fields: dict[str, Any]) -> None:
    """Brute force from the generators' own seeding: a position counts iff its (seed, target) pair did not
    occur earlier in the post. Posts over a 12-token alphabet repeat pairs under distinct n-grams."""
    scheme = make_scheme(vocab_size=1000, **fields)
    seeder, greenlists = runtime_for(scheme)
    rng = np.random.default_rng(5)
    posts = [rng.integers(0, 12, n).astype(np.int64) for n in (3, 40, 120, 120)]
    scored = score_tokens(posts, seeder, greenlists, counting="pairs")
    m = seeder.ngram_size
    lm = scheme.generator.startswith("lm-watermarking")
    processor = WatermarkLogitsProcessor(
        vocab_size=scheme.vocab_size,
        device="cpu",
        greenlist_ratio=scheme.greenlist_ratio,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    expected = []
    for ids in posts:
        seen: set[tuple[int, int]] = set()
        for i in range(m - 1, len(ids)):
            ngram = ids[i - m + 1 : i + 1].tolist()
            if lm and scheme.seeding_scheme == "selfhash":
                seed = _lm_selfhash_seed(scheme.key, ngram)
            elif lm:
                seed = scheme.key * sum(ngram[:-1]) % (2**64 - 1)
            else:
                window = ngram if scheme.seeding_scheme == "selfhash" else ngram[:-1]
                seed = _transformers_seed(processor, torch.tensor(window))
            pair = (seed & 0xFFFFFFFF, ngram[-1])  # a CPU generator keeps the low 32 bits of its seed
            expected.append(pair not in seen)
            seen.add(pair)
    assert scored.counted.tolist() == expected
    ngram_counted = score_tokens(posts, seeder, greenlists, counting="ngrams").counted
    assert int(scored.counted.sum()) < int(ngram_counted.sum())  # distinct n-grams really share pairs here


@pytest.mark.parametrize("vocab", [50, 2**31 - 1])  # one int64 key per n-gram, and too wide for one: sorting
def test_first_ngram_occurrences_both_ways(vocab: int) -> None:
    rng = np.random.default_rng(4)
    per_post = [0, 7, 30, 1, 25]
    post = np.repeat(np.arange(len(per_post)), per_post).astype(np.int64)
    ngrams = rng.integers(0, 3, (len(post), 3)).astype(np.int64) * (vocab // 3)  # few distinct rows: repeats
    uses_one_key = len(per_post) * vocab**3 < 2**62
    assert uses_one_key == (vocab == 50)
    seen: set[tuple[int, ...]] = set()
    expected = []
    for p, row in zip(post.tolist(), ngrams.tolist(), strict=True):
        expected.append((p, *row) not in seen)
        seen.add((p, *row))
    got = scoring._first_occurrences(post, ngrams, vocab, len(per_post))
    assert got.tolist() == expected
    assert 0 < sum(expected) < len(expected)


def test_distinct_inverse_groups_as_unique() -> None:
    rng = np.random.default_rng(6)
    for n, values in ((0, [1]), (1, [5]), (1000, [-(2**63), -1, 0, 2**63 - 1]), (200_000, None)):
        keys = (
            rng.choice(np.array(values, dtype=np.int64), n)
            if values is not None
            else rng.integers(0, 2**40, n // 40)[rng.integers(0, n // 40, n)].astype(np.int64)
        )
        distinct, inverse = kernels.distinct_inverse(keys)
        assert np.array_equal(distinct[inverse], keys)
        assert np.array_equal(np.sort(distinct), np.unique(keys))  # each value once
        if n:
            assert inverse[0] == 0 and np.all(np.diff(np.maximum.accumulate(inverse)) <= 1)  # first-seen order
