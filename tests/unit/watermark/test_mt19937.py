"""The compiled green-list kernels must agree with torch.randperm itself, bit for bit."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from moderation.errors import TorchMismatch
from moderation.watermark import mt19937


def torch_greenlist(seed: int, n: int, size: int) -> np.ndarray:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.randperm(n, generator=generator)[:size].numpy()


@pytest.mark.parametrize("n", [4, 7, 100, 1000, 30522, 32000, 50257, 128256])
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.9])
def test_green_bits_match_randperm(n: int, ratio: float) -> None:
    size = int(n * ratio)
    seeds = np.array([0, 1, 15485863, 2**32 - 1, 123456789], dtype=np.uint32)
    divisors, magic = mt19937.fastmod_tables(n, size)
    out = np.zeros((len(seeds), (n + 7) // 8), dtype=np.uint8)
    mt19937.green_bits(seeds, n, size, magic, divisors, out, 2)
    for row, seed in enumerate(seeds.tolist()):
        expected = np.zeros(n, dtype=bool)
        expected[torch_greenlist(seed, n, size)] = True
        got = np.unpackbits(out[row], bitorder="little")[:n].astype(bool)
        assert (got == expected).all(), f"seed {seed}"


def test_cpu_generator_uses_low_32_bits_of_the_seed() -> None:
    # The fact the kernels rely on: torch's CPU mt19937 keeps only the low 32 bits of manual_seed's value.
    assert (torch_greenlist(77, 1000, 250) == torch_greenlist(77 + 5 * 2**32, 1000, 250)).all()


def test_is_green_matches_randperm_membership() -> None:
    n, size = 30522, 7630
    rng = np.random.default_rng(3)
    seeds = rng.integers(0, 2**32, 300, dtype=np.uint64).astype(np.uint32)
    tokens = rng.integers(0, n, 300).astype(np.int64)
    # Half the tokens are drawn from inside the green list so both outcomes are exercised.
    for i in range(0, 300, 2):
        tokens[i] = torch_greenlist(int(seeds[i]), n, size)[i % size]
    divisors, magic = mt19937.fastmod_tables(n, size)
    out = np.zeros(300, dtype=np.bool_)
    mt19937.is_green(seeds, tokens, n, size, magic, divisors, out)
    expected = [int(t) in set(torch_greenlist(int(s), n, size).tolist()) for s, t in zip(seeds, tokens, strict=True)]
    assert out.tolist() == expected
    assert 0.4 < out.mean() < 0.8


def test_fastmod_is_exact_for_every_step() -> None:
    n, size = 50257, 12564
    divisors, magic = mt19937.fastmod_tables(n, size)
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**32, 20000, dtype=np.uint64)
    for step in (0, 1, size // 2, size - 1):
        low = magic[step] * values  # wraps mod 2**64, as in the kernel
        d = divisors[step]
        rem = ((low >> np.uint64(32)) * d + (((low & np.uint64(0xFFFFFFFF)) * d) >> np.uint64(32))) >> np.uint64(32)
        assert (rem == values % d).all()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000, 32000, 1_000_003])
def test_full_permutation_matches_randperm(n: int) -> None:
    """selfhash's hash table (n = 1,000,003) comes from this kernel instead of torch."""
    for seed in (0, 2971215073, 15485863, 987654321987):
        generator = torch.Generator().manual_seed(seed)
        assert np.array_equal(mt19937.full_permutation(seed, n), torch.randperm(n, generator=generator).numpy())


@pytest.fixture
def fresh_memos(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty memo folder and no in-process memo, before and after the test."""
    monkeypatch.setenv(mt19937.CACHE_DIR_ENV, str(tmp_path))
    mt19937.check_against_torch.cache_clear()
    mt19937.check_permutation_against_torch.cache_clear()
    yield tmp_path
    mt19937.check_against_torch.cache_clear()
    mt19937.check_permutation_against_torch.cache_clear()


def shift_randperm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the installed torch draw other permutations, as a changed randperm would."""
    real = torch.randperm

    def shifted(n: int, *args: object, **kwargs: object) -> torch.Tensor:
        return (real(n, *args, **kwargs) + 1) % n  # type: ignore[call-overload]

    monkeypatch.setattr(torch, "randperm", shifted)


def test_a_torch_that_draws_differently_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, fresh_memos: Path) -> None:
    """If a torch upgrade changed randperm, every green list would be wrong, silently: the check must say so."""
    mt19937.check_against_torch(30522, 7630)  # the installed torch agrees with the kernels
    mt19937.check_permutation_against_torch(1000)
    shift_randperm(monkeypatch)
    monkeypatch.setenv(mt19937.CACHE_DIR_ENV, str(fresh_memos / "elsewhere"))  # the passes above are not known here
    mt19937.check_against_torch.cache_clear()
    mt19937.check_permutation_against_torch.cache_clear()
    with pytest.raises(TorchMismatch, match=r"torch .* draws CPU green lists differently"):
        mt19937.check_against_torch(30522, 7630)
    with pytest.raises(TorchMismatch, match=r"torch .* draws CPU permutations differently"):
        mt19937.check_permutation_against_torch(1000)


def test_a_passed_check_is_remembered_without_importing_torch(
    monkeypatch: pytest.MonkeyPatch, fresh_memos: Path
) -> None:
    mt19937.check_against_torch(30522, 7630)
    mt19937.check_permutation_against_torch(1000)
    assert len(list((fresh_memos / "torch-checks").iterdir())) == 2
    # A later process: its in-process memo is empty, and importing torch would fail.
    mt19937.check_against_torch.cache_clear()
    mt19937.check_permutation_against_torch.cache_clear()
    monkeypatch.setitem(sys.modules, "torch", None)
    mt19937.check_against_torch(30522, 7630)
    mt19937.check_permutation_against_torch(1000)
    # Another list shape was never checked: that one needs torch.
    with pytest.raises(ImportError):
        mt19937.check_against_torch(30522, 15261)


def test_another_torch_version_runs_the_check_again(monkeypatch: pytest.MonkeyPatch, fresh_memos: Path) -> None:
    mt19937.check_against_torch(30522, 7630)
    mt19937.check_against_torch.cache_clear()
    shift_randperm(monkeypatch)  # the upgraded torch draws differently...
    monkeypatch.setattr(mt19937, "installed_torch_version", lambda: "99.0.0")
    with pytest.raises(TorchMismatch):  # ...and the memo of the old version does not hide it
        mt19937.check_against_torch(30522, 7630)


def test_the_memo_is_keyed_by_the_kernels_source(monkeypatch: pytest.MonkeyPatch, fresh_memos: Path) -> None:
    mt19937.check_against_torch(30522, 7630)
    mt19937.check_against_torch.cache_clear()
    monkeypatch.setattr(mt19937, "_kernel_digest", lambda: "edited-kernels")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError):  # not remembered: the check runs (and here cannot import torch)
        mt19937.check_against_torch(30522, 7630)


def assert_checked_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass is not remembered: after it, a torch that draws differently is still caught by the next check."""
    mt19937.check_against_torch(30522, 7630)
    mt19937.check_against_torch.cache_clear()
    shift_randperm(monkeypatch)
    with pytest.raises(TorchMismatch):
        mt19937.check_against_torch(30522, 7630)


def test_an_unwritable_cache_only_means_checking_every_time(monkeypatch: pytest.MonkeyPatch, fresh_memos: Path) -> None:
    blocker = fresh_memos / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(mt19937.CACHE_DIR_ENV, str(blocker / "cache"))  # cannot be created under a file
    assert_checked_every_time(monkeypatch)


def test_without_a_home_directory_the_check_runs_every_time(monkeypatch: pytest.MonkeyPatch, fresh_memos: Path) -> None:
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(mt19937, "cache_dir", no_home)
    assert_checked_every_time(monkeypatch)


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(mt19937.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mt19937.cache_dir() == tmp_path / "xdg" / "moderation"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mt19937.cache_dir() == tmp_path / "home" / ".cache" / "moderation"
    monkeypatch.setenv(mt19937.CACHE_DIR_ENV, str(tmp_path / "explicit"))
    assert mt19937.cache_dir() == tmp_path / "explicit"
