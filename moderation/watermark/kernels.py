"""Small compiled kernels of the scoring hot path: linear-time replacements for sorts, and a fused gather.

Each replaces a `unique`/sort (O(n log n), and the largest costs of a batch) or a chain of tensor ops with
one pass over the data; results are identical (tests/unit/watermark/test_kernels.py compares them).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

_EMPTY = np.int64(-1)


@numba.njit(cache=True)
def hash_table_size(keys: int) -> int:
    """Slots of an open-addressing table for `keys` keys: a power of two, at most half full."""
    size = 1
    while size < 2 * keys + 2:
        size *= 2
    return size


@numba.njit(cache=True)
def first_occurrence(keys: npt.NDArray[np.int64], bounds: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """True where keys[i] appears for the first time within its segment keys[bounds[s]:bounds[s + 1]]
    (open-addressing hash set, linear probing). One small table per segment (a post: a few hundred keys)
    stays in the CPU cache, where one table for a whole batch would miss it on nearly every key."""
    n = keys.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    longest = 0
    for s in range(bounds.shape[0] - 1):
        longest = max(longest, bounds[s + 1] - bounds[s])
    table = np.full(hash_table_size(longest), _EMPTY, dtype=np.int64)
    for s in range(bounds.shape[0] - 1):
        lo, hi = bounds[s], bounds[s + 1]
        size = hash_table_size(hi - lo)
        mask = size - 1
        table[:size] = _EMPTY
        for i in range(lo, hi):
            k = keys[i]
            # Fibonacci hashing spreads nearby keys (consecutive token ids) over the table.
            h = (np.uint64(k) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)
            slot = np.int64(h) & mask
            while True:
                held = table[slot]
                if held == _EMPTY:
                    # -1 itself is never a key here: keys are built from non-negative ids.
                    table[slot] = k
                    out[i] = True
                    break
                if held == k:
                    break
                slot = (slot + 1) & mask
    return out


@numba.njit(cache=True)
def first_occurrence_pairs(
    first: npt.NDArray[np.int64], second: npt.NDArray[np.int64], bounds: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """True where the pair (first[i], second[i]) appears for the first time within its segment
    [bounds[s], bounds[s + 1]). Any int64 values (a CUDA seed's bit pattern may be negative), so an
    occupied slot is marked by the segment's stamp rather than by a reserved key value."""
    n = first.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    longest = 0
    for s in range(bounds.shape[0] - 1):
        longest = max(longest, bounds[s + 1] - bounds[s])
    capacity = hash_table_size(longest)
    held_first = np.empty(capacity, dtype=np.int64)
    held_second = np.empty(capacity, dtype=np.int64)
    stamp = np.zeros(capacity, dtype=np.int64)
    for s in range(bounds.shape[0] - 1):
        lo, hi = bounds[s], bounds[s + 1]
        mask = hash_table_size(hi - lo) - 1
        mark = s + 1  # slots stamped by an earlier segment count as empty: no clearing between posts
        for i in range(lo, hi):
            a, b = first[i], second[i]
            h = (np.uint64(a) * np.uint64(0x9E3779B97F4A7C15)) ^ (np.uint64(b) * np.uint64(0xC2B2AE3D27D4EB4F))
            slot = np.int64(h >> np.uint64(20)) & mask
            while True:
                if stamp[slot] != mark:
                    stamp[slot] = mark
                    held_first[slot] = a
                    held_second[slot] = b
                    out[i] = True
                    break
                if held_first[slot] == a and held_second[slot] == b:
                    break
                slot = (slot + 1) & mask
    return out


@numba.njit(cache=True)
def dense_distinct(values: npt.NDArray[np.int64], bound: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(sorted distinct values, inverse) for values in [0, bound): a counting pass instead of a sort."""
    index = np.full(bound, _EMPTY, dtype=np.int64)
    for v in values:
        index[v] = 0
    count = 0
    for v in range(bound):
        if index[v] == 0:
            index[v] = count
            count += 1
    distinct = np.empty(count, dtype=np.int64)
    for v in range(bound):
        if index[v] >= 0:
            distinct[index[v]] = v
    inverse = np.empty(values.shape[0], dtype=np.int64)
    for i in range(values.shape[0]):
        inverse[i] = index[values[i]]
    return distinct, inverse


@numba.njit(cache=True)
def distinct_inverse(keys: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(distinct keys in order of first appearance, inverse) with distinct[inverse] == keys: np.unique's
    grouping without its sort. Any int64 keys; the table holds indices into `distinct`, so no key value is
    reserved. Selfhash batches repeat their (seed, token) pairs ~40x over, so the table stays small and hot."""
    n = keys.shape[0]
    size = hash_table_size(n)
    mask = size - 1
    bits = 0
    while (1 << bits) < size:
        bits += 1
    shift = np.uint64(64 - bits)  # the top log2(size) bits of the product: Fibonacci hashing's best bits
    slot_of = np.full(size, _EMPTY, dtype=np.int64)
    distinct = np.empty(n, dtype=np.int64)
    inverse = np.empty(n, dtype=np.int64)
    count = 0
    for i in range(n):
        k = keys[i]
        slot = np.int64((np.uint64(k) * np.uint64(0x9E3779B97F4A7C15)) >> shift) & mask
        while True:
            j = slot_of[slot]
            if j == _EMPTY:
                slot_of[slot] = count
                distinct[count] = k
                inverse[i] = count
                count += 1
                break
            if distinct[j] == k:
                inverse[i] = j
                break
            slot = (slot + 1) & mask
    return distinct[:count].copy(), inverse


@numba.njit(cache=True)
def gather_green(
    table: npt.NDArray[np.uint8],
    slots: npt.NDArray[np.int64],
    inverse: npt.NDArray[np.int64],
    tokens: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """green[i] = bit tokens[i] of the cached bitmap in row slots[inverse[i]] (one fused pass)."""
    n = tokens.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for i in range(n):
        t = tokens[i]
        out[i] = (table[slots[inverse[i]], t >> 3] >> (t & 7)) & 1
    return out
