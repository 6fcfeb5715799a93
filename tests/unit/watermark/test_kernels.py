"""The compiled kernels give exactly what the sorting versions they replace give."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from moderation.watermark import kernels


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
