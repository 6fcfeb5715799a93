"""Green lists by seed: derived once, cached under a memory bound, looked up in bulk.

A green list depends only on (seed, vocab_size, greenlist_size, generator device), so one list serves
every token that shares its seed — for lefthash schemes that is every token after the same previous
token. Lists are kept as bitmaps (vocab_size / 8 bytes each) in a table on the detector's device (a numpy
array on the CPU, a torch tensor on a GPU); the least recently used are evicted when the configured memory
bound is reached. Answers are numpy bool arrays, wherever the table lives.

CPU-generator lists are derived by the compiled kernels in mt19937.py (identical to torch.randperm, and
about 10x faster because they stop after greenlist_size steps); this CPU path never imports torch. CUDA-generator
lists can only be drawn by torch on a CUDA device, since the CUDA randperm is a different algorithm: torch is
imported only then, or when the detector's device is a GPU.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import numpy.typing as npt

from moderation.errors import DeviceUnavailable
from moderation.watermark import kernels, mt19937

if TYPE_CHECKING:
    import torch

_log = logging.getLogger(__name__)

_NO_CUDA = (
    "this scheme's text was watermarked with a CUDA generator; its green lists can only be drawn on a CUDA GPU "
    "and none is available here (use generator='transformers' for CPU-made text)"
)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def check_cuda_device(scheme: str, recorded: str | None, current: str | None = None) -> None:
    """Refuse to detect a CUDA-generator scheme on another GPU model than the one its text was made on.

    torch's CUDA randperm draws its sort keys with a kernel whose grid is sized by the GPU's SM count, so for
    large enough n (vocabularies, selfhash's 1,000,003-entry table) the permutation, and with it every green
    list, can differ between GPU models. `recorded` is the scheme's cuda_device_name; `current` defaults to
    torch.cuda.get_device_name() of the current device. A scheme that records no GPU model is accepted with a
    warning, since nothing can be checked.
    """
    if current is None:
        if not _cuda_available():
            raise DeviceUnavailable(_NO_CUDA)
        import torch

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


class _HostRows:
    """The bitmap table in host memory (CPU detection): numpy only, no torch.

    The whole bound is allocated at once, zeroed lazily by the OS (np.zeros of this size maps fresh pages):
    only rows written take memory, and growing copies nothing. Growing a smaller array instead copied the
    table each time and cost ~0.5 s of a 20,000-post scan."""

    def __init__(self, row_bytes: int, capacity: int) -> None:
        self.data = np.zeros((capacity, row_bytes), dtype=np.uint8)
        self._rows = 0

    @property
    def rows(self) -> int:
        return self._rows

    def grow(self, extra: int) -> None:
        self._rows += extra
        if self._rows > self.data.shape[0]:  # the bound was raised after construction
            bigger = np.zeros((self._rows, self.data.shape[1]), dtype=np.uint8)
            bigger[: self.data.shape[0]] = self.data
            self.data = bigger

    def put(self, slots: npt.NDArray[np.int64], bitmaps: npt.NDArray[np.uint8] | torch.Tensor) -> None:
        # A CUDA generator's lists arrive as a tensor on the GPU that drew them.
        self.data[slots] = bitmaps if isinstance(bitmaps, np.ndarray) else bitmaps.cpu().numpy()

    def bits(
        self, slots: npt.NDArray[np.int64], inverse: npt.NDArray[np.int64], tokens: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        # One fused pass instead of gather, shift and mask arrays over every token.
        return kernels.gather_green(self.data, slots, inverse, tokens)


class _DeviceRows:
    """The bitmap table in GPU memory, as a torch tensor: lookups are gathered there, answers copied back."""

    def __init__(self, row_bytes: int, device: str) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.data = torch.zeros((0, row_bytes), dtype=torch.uint8, device=self.device)

    @property
    def rows(self) -> int:
        return int(self.data.shape[0])

    def grow(self, extra: int) -> None:
        torch = self._torch
        padding = torch.zeros((extra, self.data.shape[1]), dtype=torch.uint8, device=self.device)
        self.data = torch.cat([self.data, padding])

    def put(self, slots: npt.NDArray[np.int64], bitmaps: npt.NDArray[np.uint8] | torch.Tensor) -> None:
        torch = self._torch
        rows = bitmaps if isinstance(bitmaps, torch.Tensor) else torch.from_numpy(bitmaps)
        self.data[torch.from_numpy(slots).to(self.device)] = rows.to(self.device)

    def bits(
        self, slots: npt.NDArray[np.int64], inverse: npt.NDArray[np.int64], tokens: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        torch = self._torch
        rows = torch.from_numpy(slots[inverse]).to(self.device)
        ids = torch.from_numpy(np.ascontiguousarray(tokens)).to(self.device)
        packed = self.data[rows, ids >> 3]
        green: npt.NDArray[np.bool_] = ((packed >> (ids & 7).to(torch.uint8)) & 1).bool().cpu().numpy()
        return green


def _on_cpu(device: str) -> bool:
    return device == "cpu"


class GreenLists:
    def __init__(
        self,
        vocab_size: int,
        greenlist_ratio: float,
        *,
        cuda_generator: bool,
        device: Any,
        cache_bytes: int,
    ) -> None:
        """`device`: "cpu", "cuda" or "cuda:N" (a torch.device is accepted too, by its name)."""
        if cuda_generator and not _cuda_available():
            raise DeviceUnavailable(_NO_CUDA)
        self.vocab_size = vocab_size
        self.greenlist_size = int(vocab_size * greenlist_ratio)
        self.cuda_generator = cuda_generator
        self.device = str(device)
        self.row_bytes = (vocab_size + 7) // 8
        self.capacity = max(16, cache_bytes // self.row_bytes)
        self._divisors, self._magic = mt19937.fastmod_tables(vocab_size, self.greenlist_size)
        if not cuda_generator:
            mt19937.check_against_torch(vocab_size, self.greenlist_size)
        self._table: _HostRows | _DeviceRows = (
            _HostRows(self.row_bytes, self.capacity)
            if _on_cpu(self.device)
            else _DeviceRows(self.row_bytes, self.device)
        )
        self._used = 0  # slots filled so far; the table grows towards `capacity` rows
        self._slot_of: dict[int, int] = {}
        self._seed_in_slot = np.zeros(0, dtype=np.int64)
        self._last_used = np.zeros(0, dtype=np.int64)
        self._clock = 0
        self.derived = 0  # green lists derived so far (a cache miss each)

    # -- whole lists, cached (lefthash) ---------------------------------------------------------------

    def lookup_grouped(
        self, distinct: npt.NDArray[np.int64], inverse: npt.NDArray[np.int64], tokens: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Whether tokens[i] is green under the seed distinct[inverse[i]], as a numpy bool array.
        Callers group their seeds first (no sort here)."""
        if inverse.shape[0] == 0:
            return np.zeros(0, dtype=np.bool_)
        chunk = max(1, self.capacity // 2)
        if distinct.shape[0] <= chunk:
            return self._table.bits(self._ensure(distinct), inverse, tokens)
        # More distinct seeds than the cache holds: resolve them in chunks, reading each chunk's bits
        # before the next chunk may evict its lists.
        bits = np.empty(inverse.shape[0], dtype=np.bool_)
        for start in range(0, distinct.shape[0], chunk):
            part_slots = self._ensure(distinct[start : start + chunk])
            selected = np.flatnonzero((inverse >= start) & (inverse < start + part_slots.shape[0]))
            bits[selected] = self._table.bits(part_slots, inverse[selected] - start, tokens[selected])
        return bits

    def _ensure(self, seeds: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Slots holding the green lists of `seeds` (distinct), deriving the missing ones."""
        self._clock += 1
        slots = np.fromiter((self._slot_of.get(s, -1) for s in seeds.tolist()), dtype=np.int64, count=len(seeds))
        missing = np.flatnonzero(slots < 0)
        if missing.size:
            new_slots = self._free_slots(missing.size, keep=slots[slots >= 0])
            self._table.put(new_slots, self._derive(seeds[missing]))
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
        if self._used + grow > self._table.rows:
            # Grow geometrically up to the bound, so filling the cache copies it O(log n) times.
            rows = min(self.capacity, max(self._used + grow, 2 * self._table.rows, 1024))
            extra = rows - self._table.rows
            self._table.grow(extra)
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

    def _derive(self, seeds: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8] | torch.Tensor:
        """Bitmaps of the green lists of `seeds`: numpy for CPU generators, a torch tensor (on the GPU that
        drew them) for CUDA generators."""
        if self.cuda_generator:
            import torch

            return torch.stack([self._pack(self._cuda_mask(int(s) & (2**64 - 1))) for s in seeds.tolist()])
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
        return out

    def _cuda_mask(self, seed: int) -> torch.Tensor:
        import torch

        generator = torch.Generator(device="cuda")
        generator.manual_seed(seed)
        perm = torch.randperm(self.vocab_size, generator=generator, device="cuda")
        mask = torch.zeros(self.vocab_size, dtype=torch.bool, device="cuda")
        mask[perm[: self.greenlist_size]] = True
        return mask

    def _pack(self, mask: torch.Tensor) -> torch.Tensor:
        import torch

        weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=mask.device)
        padded = torch.zeros(self.row_bytes * 8, dtype=torch.uint8, device=mask.device)
        padded[: mask.shape[0]] = mask.to(torch.uint8)
        return (padded.view(-1, 8) * weights).sum(dim=1).to(torch.uint8)

    # -- one token per seed, uncached (selfhash) ------------------------------------------------------

    def membership(self, seeds: npt.NDArray[np.int64], tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Whether tokens[i] is green under seeds[i], deriving only what that one token needs."""
        if seeds.shape[0] == 0:
            return np.zeros(0, dtype=np.bool_)
        if self.cuda_generator:
            flags = [
                bool(self._cuda_mask(int(s) & (2**64 - 1))[t])
                for s, t in zip(seeds.tolist(), tokens.tolist(), strict=True)
            ]
            return np.array(flags, dtype=np.bool_)
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
        return out
