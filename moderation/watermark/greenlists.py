"""Green lists by seed: derived once, cached under a memory bound, looked up in bulk.

A green list depends only on (seed, vocab_size, greenlist_size, generator device), so one list serves
every token that shares its seed — for lefthash schemes that is every token after the same previous
token. Lists are kept as bitmaps (vocab_size / 8 bytes each) in a torch tensor on the detector's device;
the least recently used are evicted when the configured memory bound is reached.

CPU-generator lists are derived by the compiled kernels in mt19937.py (identical to torch.randperm, and
about 10x faster because they stop after greenlist_size steps). CUDA-generator lists can only be drawn by
torch on a CUDA device, since the CUDA randperm is a different algorithm.
"""

from __future__ import annotations

import logging

import numba
import numpy as np
import numpy.typing as npt
import torch

from moderation.errors import DeviceUnavailable
from moderation.watermark import kernels, mt19937

_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)
_log = logging.getLogger(__name__)

_NO_CUDA = (
    "this scheme's text was watermarked with a CUDA generator; its green lists can only be drawn on a CUDA GPU "
    "and none is available here (use generator='transformers' for CPU-made text)"
)


def check_cuda_device(scheme: str, recorded: str | None, current: str | None = None) -> None:
    """Refuse to detect a CUDA-generator scheme on another GPU model than the one its text was made on.

    torch's CUDA randperm draws its sort keys with a kernel whose grid is sized by the GPU's SM count, so for
    large enough n (vocabularies, selfhash's 1,000,003-entry table) the permutation, and with it every green
    list, can differ between GPU models. `recorded` is the scheme's cuda_device_name; `current` defaults to
    torch.cuda.get_device_name() of the current device. A scheme that records no GPU model is accepted with a
    warning, since nothing can be checked.
    """
    if current is None:
        if not torch.cuda.is_available():
            raise DeviceUnavailable(_NO_CUDA)
        current = torch.cuda.get_device_name()
    if recorded is None:
        _log.warning(
            "watermark scheme %r uses a CUDA generator but records no cuda_device_name; green lists are bit-exact "
            "only on the GPU model the text was made on (this one is %r): set cuda_device_name",
            scheme,
            current,
        )
        return
    if recorded.strip() != current.strip():
        raise DeviceUnavailable(
            f"watermark scheme {scheme!r} was made with a CUDA generator on {recorded!r}, but this GPU is "
            f"{current!r}: CUDA randperm can draw other green lists on another GPU model, so detection would not be "
            "exact. Run detection on a GPU of the recorded model (or, after checking that green lists agree, set "
            "cuda_device_name to this one)"
        )


class GreenLists:
    def __init__(
        self,
        vocab_size: int,
        greenlist_ratio: float,
        *,
        cuda_generator: bool,
        device: torch.device,
        cache_bytes: int,
    ) -> None:
        if cuda_generator and not torch.cuda.is_available():
            raise DeviceUnavailable(_NO_CUDA)
        self.vocab_size = vocab_size
        self.greenlist_size = int(vocab_size * greenlist_ratio)
        self.cuda_generator = cuda_generator
        self.device = device
        self.row_bytes = (vocab_size + 7) // 8
        self.capacity = max(16, cache_bytes // self.row_bytes)
        self._divisors, self._magic = mt19937.fastmod_tables(vocab_size, self.greenlist_size)
        if not cuda_generator:
            mt19937.check_against_torch(vocab_size, self.greenlist_size)
        self._table = torch.zeros((0, self.row_bytes), dtype=torch.uint8, device=device)
        self._used = 0  # slots filled so far; the table grows towards `capacity` rows
        self._slot_of: dict[int, int] = {}
        self._seed_in_slot = np.zeros(0, dtype=np.int64)
        self._last_used = np.zeros(0, dtype=np.int64)
        self._clock = 0
        self.derived = 0  # green lists derived so far (a cache miss each)

    # -- whole lists, cached (lefthash) ---------------------------------------------------------------

    def lookup_grouped(
        self, distinct: npt.NDArray[np.int64], inverse: npt.NDArray[np.int64], tokens: torch.Tensor
    ) -> torch.Tensor:
        """Whether tokens[i] is green under the seed distinct[inverse[i]], as a bool tensor on the device.
        Callers group their seeds first (no sort here)."""
        if inverse.shape[0] == 0:
            return torch.zeros(0, dtype=torch.bool, device=self.device)
        chunk = max(1, self.capacity // 2)
        if distinct.shape[0] <= chunk:
            cached = self._ensure(distinct)
            if self.device.type == "cpu":
                # One fused pass instead of gather, shift and mask tensors over every token.
                green = kernels.gather_green(self._table.numpy(), cached, inverse, tokens.numpy())
                return torch.from_numpy(green)
            return self._bits(torch.from_numpy(cached[inverse]).to(self.device), tokens.to(self.device))
        tokens = tokens.to(self.device)
        # More distinct seeds than the cache holds: resolve them in chunks, reading each chunk's bits
        # before the next chunk may evict its lists.
        bits = torch.empty(inverse.shape[0], dtype=torch.bool, device=self.device)
        for start in range(0, distinct.shape[0], chunk):
            part_slots = self._ensure(distinct[start : start + chunk])
            selected = np.flatnonzero((inverse >= start) & (inverse < start + part_slots.shape[0]))
            slots = torch.from_numpy(part_slots[inverse[selected] - start]).to(self.device)
            where = torch.from_numpy(selected).to(self.device)
            bits[where] = self._bits(slots, tokens[where])
        return bits

    def _bits(self, slots: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        packed = self._table[slots, tokens >> 3]
        return ((packed >> (tokens & 7).to(torch.uint8)) & 1).bool()

    def _ensure(self, seeds: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Slots holding the green lists of `seeds` (distinct), deriving the missing ones."""
        self._clock += 1
        slots = np.fromiter((self._slot_of.get(s, -1) for s in seeds.tolist()), dtype=np.int64, count=len(seeds))
        missing = np.flatnonzero(slots < 0)
        if missing.size:
            new_slots = self._free_slots(missing.size, keep=slots[slots >= 0])
            self._table[torch.from_numpy(new_slots).to(self.device)] = self._derive(seeds[missing])
            for seed, slot in zip(seeds[missing].tolist(), new_slots.tolist(), strict=True):
                old = int(self._seed_in_slot[slot])
                if self._slot_of.get(old) == slot:
                    del self._slot_of[old]
                self._slot_of[seed] = slot
                self._seed_in_slot[slot] = seed
            slots[missing] = new_slots
            self.derived += missing.size
        self._last_used[slots] = self._clock
        return slots

    def _free_slots(self, count: int, keep: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        grow = min(count, self.capacity - self._used)
        fresh = np.arange(self._used, self._used + grow, dtype=np.int64)
        if self._used + grow > self._table.shape[0]:
            # Grow geometrically up to the bound, so filling the cache copies it O(log n) times.
            rows = min(self.capacity, max(self._used + grow, 2 * self._table.shape[0], 1024))
            extra = rows - self._table.shape[0]
            self._table = torch.cat(
                [self._table, torch.zeros((extra, self.row_bytes), dtype=torch.uint8, device=self.device)]
            )
            self._seed_in_slot = np.concatenate([self._seed_in_slot, np.full(extra, -1, dtype=np.int64)])
            self._last_used = np.concatenate([self._last_used, np.zeros(extra, dtype=np.int64)])
        self._used += grow
        need = count - grow
        if need == 0:
            return fresh
        # Evict the least recently used slots, never one this call already relies on.
        age = self._last_used[: self._used].astype(np.float64)
        age[keep] = np.inf
        age[fresh] = np.inf
        victims = np.argpartition(age, need - 1)[:need]
        return np.concatenate([fresh, victims.astype(np.int64)])

    def _derive(self, seeds: npt.NDArray[np.int64]) -> torch.Tensor:
        if self.cuda_generator:
            rows = [self._pack(self._cuda_mask(int(s) & (2**64 - 1))) for s in seeds.tolist()]
            return torch.stack(rows)
        out = np.empty((seeds.shape[0], self.row_bytes), dtype=np.uint8)
        mt19937.green_bits(
            seeds.astype(np.uint32),
            self.vocab_size,
            self.greenlist_size,
            self._magic,
            self._divisors,
            out,
            numba.get_num_threads(),
        )
        return torch.from_numpy(out).to(self.device)

    def _cuda_mask(self, seed: int) -> torch.Tensor:
        generator = torch.Generator(device="cuda")
        generator.manual_seed(seed)
        perm = torch.randperm(self.vocab_size, generator=generator, device="cuda")
        mask = torch.zeros(self.vocab_size, dtype=torch.bool, device="cuda")
        mask[perm[: self.greenlist_size]] = True
        return mask

    def _pack(self, mask: torch.Tensor) -> torch.Tensor:
        padded = torch.zeros(self.row_bytes * 8, dtype=torch.uint8, device=mask.device)
        padded[: mask.shape[0]] = mask.to(torch.uint8)
        return (padded.view(-1, 8) * _BIT_WEIGHTS.to(mask.device)).sum(dim=1).to(torch.uint8).to(self.device)

    # -- one token per seed, uncached (selfhash) ------------------------------------------------------

    def membership(self, seeds: npt.NDArray[np.int64], tokens: npt.NDArray[np.int64]) -> torch.Tensor:
        """Whether tokens[i] is green under seeds[i], deriving only what that one token needs."""
        if seeds.shape[0] == 0:
            return torch.zeros(0, dtype=torch.bool, device=self.device)
        if self.cuda_generator:
            flags = [
                bool(self._cuda_mask(int(s) & (2**64 - 1))[t])
                for s, t in zip(seeds.tolist(), tokens.tolist(), strict=True)
            ]
            return torch.tensor(flags, dtype=torch.bool, device=self.device)
        out = np.empty(seeds.shape[0], dtype=np.bool_)
        mt19937.is_green(
            seeds.astype(np.uint32),
            tokens.astype(np.int64),
            self.vocab_size,
            self.greenlist_size,
            self._magic,
            self._divisors,
            out,
        )
        self.derived += seeds.shape[0]
        return torch.from_numpy(out).to(self.device)
