"""torch's CPU `randperm`, reproduced exactly and cut short, in numba-compiled code.

torch.randperm(n, generator=g) on the CPU (n < 2**24 or so) is a forward Fisher-Yates shuffle:

    r = arange(n); for i in 0..n-2: j = i + g.random() % (n - i); swap(r[i], r[j])

where g.random() is the next 32-bit output of an mt19937 engine seeded with the LOW 32 BITS of the
seed given to manual_seed. A KGW green list is r[:g] with g = int(n * gamma). Two facts make this
fast without changing a single bit of the result:
  * after step i, r[i] never changes again, so the green list is final after g steps (not n);
  * whether ONE token t is green needs no array at all: follow t's position through the swaps and
    stop as soon as it lands in a slot < g (green) or step g is reached (red).
The modulo by (n - i) is done with a precomputed 64-bit reciprocal per step (Lemire's fastmod),
which is exact for 32-bit dividends and divisors and avoids a hardware division per draw.

The same Fisher-Yates run to the end gives the whole permutation (selfhash's hash table), without torch.

tests/unit/watermark/test_mt19937.py checks the kernels against torch.randperm itself; at run time
check_against_torch does so once per installed torch (memoized on disk), since a torch upgrade could change
randperm.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import numpy.typing as npt

from moderation.errors import TorchMismatch

_U32 = np.uint32
_U64 = np.uint64
_N = 624  # mt19937 state words
_M = 397


@numba.njit(cache=True, inline="always")
def _seed_state(seed32: np.uint32, mt: npt.NDArray[np.uint32]) -> None:
    mt[0] = seed32
    for j in range(1, _N):
        prev = mt[j - 1]
        mt[j] = _U32(_U32(1812433253) * (prev ^ (prev >> _U32(30))) + _U32(j))


@numba.njit(cache=True, inline="always")
def _twist(mt: npt.NDArray[np.uint32]) -> None:
    # The recurrence split in three loops so no index needs a modulo.
    for k in range(_N - _M):
        y = (mt[k] & _U32(0x80000000)) | (mt[k + 1] & _U32(0x7FFFFFFF))
        mt[k] = mt[k + _M] ^ (y >> _U32(1)) ^ (_U32(0x9908B0DF) * (y & _U32(1)))
    for k in range(_N - _M, _N - 1):
        y = (mt[k] & _U32(0x80000000)) | (mt[k + 1] & _U32(0x7FFFFFFF))
        mt[k] = mt[k + _M - _N] ^ (y >> _U32(1)) ^ (_U32(0x9908B0DF) * (y & _U32(1)))
    y = (mt[_N - 1] & _U32(0x80000000)) | (mt[0] & _U32(0x7FFFFFFF))
    mt[_N - 1] = mt[_M - 1] ^ (y >> _U32(1)) ^ (_U32(0x9908B0DF) * (y & _U32(1)))


@numba.njit(cache=True, inline="always")
def _fill_block(
    mt: npt.NDArray[np.uint32],
    base: int,
    count: int,
    magic: npt.NDArray[np.uint64],
    divisors: npt.NDArray[np.uint64],
    targets: npt.NDArray[np.int64],
) -> None:
    """targets[k] = the swap partner j of Fisher-Yates step base + k, for the next `count` draws."""
    _twist(mt)
    for k in range(count):
        y = mt[k]
        y ^= y >> _U32(11)
        y ^= (y << _U32(7)) & _U32(0x9D2C5680)
        y ^= (y << _U32(15)) & _U32(0xEFC60000)
        y ^= y >> _U32(18)
        low = magic[base + k] * _U64(y)
        d = divisors[base + k]
        rem = ((low >> _U64(32)) * d + (((low & _U64(0xFFFFFFFF)) * d) >> _U64(32))) >> _U64(32)
        targets[k] = base + k + np.int64(rem)


def fastmod_tables(n: int, greenlist_size: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Divisors (n - i) and their 64-bit reciprocals for the first `greenlist_size` steps."""
    if n >= 2**32:
        raise ValueError(f"vocab_size {n} is too large for the 32-bit fast path")
    divisors = np.arange(n, n - greenlist_size, -1, dtype=np.uint64)
    magic = (np.uint64(0xFFFFFFFFFFFFFFFF) // divisors) + np.uint64(1)
    return divisors, magic


@numba.njit(cache=True, parallel=True)
def green_bits(
    seeds32: npt.NDArray[np.uint32],
    n: int,
    greenlist_size: int,
    magic: npt.NDArray[np.uint64],
    divisors: npt.NDArray[np.uint64],
    out: npt.NDArray[np.uint8],
    threads: int,
) -> None:
    """out[b] = the green list of seeds32[b] as a bitmap over the vocabulary (bit t of byte t >> 3).

    Seeds are split into `threads` interleaved chunks, each reusing one permutation buffer.
    """
    n_seeds = seeds32.shape[0]
    n_chunks = max(1, min(n_seeds, threads))
    for c in numba.prange(n_chunks):
        perm = np.arange(n).astype(np.int32)
        mt = np.empty(_N, np.uint32)
        targets = np.empty(_N, np.int64)
        swaps = np.empty(greenlist_size, np.int64)
        for b in range(c, n_seeds, n_chunks):
            _seed_state(seeds32[b], mt)
            row = out[b]
            row[:] = 0
            for base in range(0, greenlist_size, _N):
                count = min(_N, greenlist_size - base)
                _fill_block(mt, base, count, magic, divisors, targets)
                for k in range(count):
                    i = base + k
                    j = targets[k]
                    swaps[i] = j
                    picked = perm[j]
                    perm[j] = perm[i]
                    perm[i] = picked
                    row[picked >> 3] |= np.uint8(1 << (picked & 7))
            # Undo the swaps so `perm` is the identity again for the next seed (cheaper than refilling).
            for i in range(greenlist_size - 1, -1, -1):
                j = swaps[i]
                t = perm[i]
                perm[i] = perm[j]
                perm[j] = t


@numba.njit(cache=True, parallel=True)
def is_green(
    seeds32: npt.NDArray[np.uint32],
    tokens: npt.NDArray[np.int64],
    n: int,
    greenlist_size: int,
    magic: npt.NDArray[np.uint64],
    divisors: npt.NDArray[np.uint64],
    out: npt.NDArray[np.bool_],
) -> None:
    """out[b] = whether tokens[b] is in the green list of seeds32[b], following only that token."""
    for b in numba.prange(seeds32.shape[0]):
        mt = np.empty(_N, np.uint32)
        targets = np.empty(_N, np.int64)
        _seed_state(seeds32[b], mt)
        position = tokens[b]
        green = False
        base = 0
        while base < greenlist_size and not green:
            count = min(_N, greenlist_size - base)
            _fill_block(mt, base, count, magic, divisors, targets)
            for k in range(count):
                i = base + k
                j = targets[k]
                if j == position:  # the token is swapped into slot i < greenlist_size: final, green
                    green = True
                    break
                if i == position:  # the token sat in slot i and is swapped out to j > i
                    position = j
            base += _N
        out[b] = green


@numba.njit(cache=True)
def permutation(
    seed32: np.uint32, n: int, magic: npt.NDArray[np.uint64], divisors: npt.NDArray[np.uint64]
) -> npt.NDArray[np.int64]:
    """torch.randperm(n) of a CPU generator seeded with seed32, whole: selfhash's hash table (n = 1,000,003).
    `magic` and `divisors` are fastmod_tables(n, n - 1): Fisher-Yates' last step (i = n - 1) swaps nothing."""
    perm = np.arange(n).astype(np.int64)
    mt = np.empty(_N, np.uint32)
    targets = np.empty(_N, np.int64)
    _seed_state(seed32, mt)
    steps = n - 1
    for base in range(0, steps, _N):
        count = min(_N, steps - base)
        _fill_block(mt, base, count, magic, divisors, targets)
        for k in range(count):
            i = base + k
            j = targets[k]
            t = perm[i]
            perm[i] = perm[j]
            perm[j] = t
    return perm


def full_permutation(seed: int, n: int) -> npt.NDArray[np.int64]:
    """torch.randperm(n, generator=torch.Generator().manual_seed(seed)), without torch."""
    divisors, magic = fastmod_tables(n, max(0, n - 1))
    return permutation(np.uint32(seed & 0xFFFFFFFF), n, magic, divisors)


# -- the check against the installed torch, memoized on disk ---------------------------------------------------
#
# The check imports torch (about a second) and draws two permutations; its answer depends only on the installed
# torch, the list shape and these kernels. A passed check is recorded in a small file keyed by all three, so
# later processes (every `moderation scan`) skip both the import and the draws. The torch version is read from
# the package metadata, which does not import torch; the kernels are keyed by a digest of this file's source,
# so any change to them re-runs the check.

CACHE_DIR_ENV = "MODERATION_CACHE_DIR"
_MISMATCH = (
    "torch {version} draws CPU {what} differently from what this version of moderation reproduces; detection "
    "would be wrong. Install the torch version pyproject.toml admits."
)


def cache_dir() -> Path:
    """Where passed checks are recorded: $MODERATION_CACHE_DIR, else $XDG_CACHE_HOME/moderation, else
    ~/.cache/moderation."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "moderation"


@functools.cache
def _kernel_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def installed_torch_version() -> str | None:
    """The installed torch's version from its package metadata (no import), or None when it cannot be read."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def _memo_path(what: str, n: int, size: int) -> Path | None:
    version = installed_torch_version()
    if version is None:
        return None  # nothing to key a memo by: always run the check
    try:
        folder = cache_dir()
    except RuntimeError:  # no home directory to hold a cache (a service account without one)
        return None
    key = f"{what} n={n} size={size} torch={version} kernels={_kernel_digest()}"
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return folder / "torch-checks" / f"{name}.ok"


def _record_pass(path: Path) -> None:
    """Best effort: a cache folder that cannot be written only means the check runs again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text("passed\n")
        tmp.replace(path)  # atomic: a concurrent reader never sees a half-written memo
    except OSError:
        pass


def _remembered(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # an unreadable cache folder: as if nothing were remembered
        return False


def _memoized(what: str, n: int, size: int, check: Callable[[], None]) -> None:
    path = _memo_path(what, n, size)
    if path is not None and _remembered(path):
        return
    check()
    if path is not None:
        _record_pass(path)


@functools.cache
def check_against_torch(n: int, greenlist_size: int) -> None:
    """Fail clearly, once per list shape and installed torch (memoized on disk, see above), if the installed
    torch's CPU randperm no longer draws what these kernels reproduce (a torch upgrade could change the
    algorithm): wrong green lists would make every verdict of this scheme meaningless, silently. Costs the torch
    import and two randperm calls of size n when it runs."""
    _memoized("green lists", n, greenlist_size, lambda: _check_green_lists(n, greenlist_size))


@functools.cache
def check_permutation_against_torch(n: int) -> None:
    """As check_against_torch, for whole permutations (selfhash's table)."""
    _memoized("permutations", n, n, lambda: _check_permutations(n))


_CHECK_SEEDS = (15485863, 2**32 - 5)  # transformers' default key, and a large seed


def _check_green_lists(n: int, greenlist_size: int) -> None:
    import torch

    seeds = np.array(_CHECK_SEEDS, dtype=np.uint32)
    divisors, magic = fastmod_tables(n, greenlist_size)
    ours = np.zeros((len(seeds), (n + 7) // 8), dtype=np.uint8)
    green_bits(seeds, n, greenlist_size, magic, divisors, ours, 1)
    for row, seed in zip(ours, seeds, strict=True):
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        expected = np.zeros(n, dtype=np.bool_)
        expected[torch.randperm(n, generator=generator)[:greenlist_size].numpy()] = True
        if not np.array_equal(np.unpackbits(row, bitorder="little")[:n].astype(np.bool_), expected):
            raise TorchMismatch(_MISMATCH.format(version=torch.__version__, what="green lists"))


def _check_permutations(n: int) -> None:
    import torch

    for seed in _CHECK_SEEDS:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        if not np.array_equal(full_permutation(seed, n), torch.randperm(n, generator=generator).numpy()):
            raise TorchMismatch(_MISMATCH.format(version=torch.__version__, what="permutations"))
