"""The compiled green-list kernels must agree with torch.randperm itself, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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


def test_a_torch_that_draws_differently_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a torch upgrade changed randperm, every green list would be wrong, silently: the check must say so."""
    import torch

    from moderation.errors import TorchMismatch

    mt19937.check_against_torch.cache_clear()
    mt19937.check_against_torch(30522, 7630)  # the installed torch agrees with the kernels
    real = torch.randperm

    def shifted(n: int, *args: object, **kwargs: object) -> torch.Tensor:
        return (real(n, *args, **kwargs) + 1) % n  # type: ignore[call-overload]

    monkeypatch.setattr(torch, "randperm", shifted)
    mt19937.check_against_torch.cache_clear()
    with pytest.raises(TorchMismatch, match=r"torch .* draws CPU green lists differently"):
        mt19937.check_against_torch(30522, 7630)
    mt19937.check_against_torch.cache_clear()
