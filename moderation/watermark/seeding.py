"""The pseudo-random function of each supported generator: which seed a scored token's green list uses.

Every generator ends with `generator.manual_seed(seed % (2**64 - 1))` and then `torch.randperm`. This
module computes that seed for every scored n-gram of a batch at once, bit for bit as the generator does:

transformers (`WatermarkLogitsProcessor`):
  lefthash  seed = hashing_key * previous_token              Python int; only the last token counts,
                                                             whatever context_width says
  selfhash  seed = min over the last context_width tokens x of (prefix + target) of
                   hashing_key * (T[x % 1_000_003] + 1) * (T[target % 1_000_003] + 1)
            in int64 tensor arithmetic, which WRAPS on overflow, and a signed min. T = randperm(1_000_003)
            drawn by a generator seeded with hashing_key on the processor's device.
lm-watermarking (`extended_watermark_processor.py`):
  simple_1 / lefthash  seed = hashing_key * sum(last context_width tokens)   (additive_prf)
  selfhash  anchored_minhash_prf: as transformers' selfhash, but T is key-independent: randperm(1_000_003)
            from a CPU generator seeded 2971215073; published default context_width 4.

A CPU generator keeps only the low 32 bits of the seed (mt19937 takes a 32-bit seed), so CPU schemes are
keyed by those 32 bits; CUDA schemes keep the whole 64-bit seed.

Everything here is numpy. The selfhash tables of CPU generators come from the compiled randperm of
mt19937.py, so CPU schemes never import torch; only a CUDA generator's table is drawn by torch, on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from moderation.config import WatermarkScheme
from moderation.watermark import kernels, mt19937
from moderation.watermark.greenlists import check_cuda_device

TABLE_SIZE = 1_000_003
LM_WATERMARKING_TABLE_SEED = 2971215073
_MOD = 2**64 - 1


@cache
def _permutation_table(seed: int, cuda: bool) -> npt.NDArray[np.int64]:
    """randperm(TABLE_SIZE) of a generator seeded with `seed`: on the CPU by the compiled kernel (checked
    against the installed torch once, see mt19937.check_permutation_against_torch), on a GPU by torch."""
    if not cuda:
        mt19937.check_permutation_against_torch(TABLE_SIZE)
        return mt19937.full_permutation(seed, TABLE_SIZE)
    import torch

    generator = torch.Generator(device="cuda")
    generator.manual_seed(seed)
    table: npt.NDArray[np.int64] = torch.randperm(TABLE_SIZE, generator=generator, device="cuda").cpu().numpy()
    return table


def _as_int64(value: int) -> np.int64:
    """`value` mod 2**64 as a signed 64-bit integer: multiplying by it wraps exactly as torch's int64 tensors do."""
    return np.uint64(value & 0xFFFFFFFFFFFFFFFF).view(np.int64)


@dataclass(frozen=True)
class Seeder:
    """Seeds for the scored n-grams of one scheme. `ngram_size` tokens make one scored n-gram, target last."""

    kind: str  # "left" (seed from the tokens before the target) or "self" (the target takes part)
    context_width: int
    key: int
    additive: bool  # lm-watermarking sums the context; transformers uses the last token only
    table: npt.NDArray[np.int64] | None
    cuda: bool

    @property
    def ngram_size(self) -> int:
        return self.context_width + 1 if self.kind == "left" else self.context_width

    def seeds(self, ngrams: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Seed keys for each row of `ngrams` (int64 [N, ngram_size], target in the last column).

        For CPU generators: the low 32 bits of the seed (all a CPU generator uses), as int64.
        For CUDA generators: the full 64-bit seed's bit pattern, as int64 (reinterpret as unsigned).
        """
        if ngrams.shape[0] == 0:
            return np.empty(0, np.int64)
        if self.kind == "left":
            return self._left_seeds(ngrams)
        return self._self_seeds(ngrams)

    def _left_seeds(self, ngrams: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        distinct, inverse = self.left_seeds_grouped(ngrams)
        return distinct[inverse]

    def left_seeds_grouped(self, ngrams: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Lefthash seeds as (one seed per distinct context value, index of each row's seed)."""
        context = ngrams[:, :-1]
        base = np.ascontiguousarray(context.sum(axis=1) if self.additive else context[:, -1], dtype=np.int64)
        bound = int(base.max()) + 1 if base.shape[0] else 0
        if bound <= 1 << 26:
            # Context values are token ids (or small sums of them): count instead of sorting.
            values, inverse = kernels.dense_distinct(base, bound)
        else:
            values, inverse = np.unique(base, return_inverse=True)
        # The product can exceed 64 bits with a large key, and the generators take it as a Python int:
        # do the arithmetic exactly, once per distinct context value.
        mask = (1 << 64) - 1 if self.cuda else 0xFFFFFFFF
        keyed = [(self.key * v) % _MOD & mask for v in values.tolist()]
        return np.array(keyed, dtype=np.uint64).view(np.int64), inverse.astype(np.int64)

    def _self_seeds(self, ngrams: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        assert self.table is not None
        hashed = self.table[ngrams % TABLE_SIZE] + 1  # [N, k]
        # int64 products wrap exactly as in the generators' tensors (two's complement; numpy does not check
        # array products for overflow), and min is signed.
        products = _as_int64(self.key) * hashed * hashed[:, -1:]
        signed = products.min(axis=1)
        if self.cuda:
            # seed % (2**64 - 1) of a signed value, kept as a uint64 bit pattern in an int64.
            unsigned = signed.view(np.uint64).copy()
            unsigned[signed < 0] -= np.uint64(1)  # v + 2**64 - 1 == (v as uint64) - 1 for v < 0
            return unsigned.view(np.int64)
        # Low 32 bits of (v mod 2**64 - 1): for v < 0 that is (v - 1) mod 2**32.
        low: npt.NDArray[np.int64] = (signed - (signed < 0).astype(np.int64)) & 0xFFFFFFFF
        return low


def seeder_for(scheme: WatermarkScheme) -> Seeder:
    lm = scheme.generator.startswith("lm-watermarking")
    cuda = scheme.needs_cuda
    if cuda:
        # Before any CUDA draw (selfhash's table below, green lists later): a GPU of the recorded model.
        check_cuda_device(scheme.name, scheme.cuda_device_name)
    kind = "self" if scheme.seeding_scheme == "selfhash" else "left"
    table = None
    if kind == "self":
        # lm-watermarking draws its key-independent table from a CPU generator whatever the scheme's device.
        table = _permutation_table(LM_WATERMARKING_TABLE_SEED, False) if lm else _permutation_table(scheme.key, cuda)
    return Seeder(kind, scheme.effective_context_width, scheme.key, additive=lm, table=table, cuda=cuda)
