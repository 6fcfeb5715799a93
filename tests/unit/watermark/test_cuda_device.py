"""A CUDA-generator scheme records the GPU model its text was made on, and detection refuses another model.

No GPU is lent to this project's sessions, so these tests exercise the check's logic with a monkeypatched
torch.cuda (device present, a given name); that CUDA randperm really differs between GPU models is not
measured here (docs/detector.md#gpu).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from moderation.errors import DeviceUnavailable
from moderation.watermark import greenlists
from moderation.watermark.greenlists import GreenLists, _DeviceRows, check_cuda_device
from moderation.watermark.seeding import seeder_for

from .conftest import make_scheme

A100 = "NVIDIA A100-SXM4-80GB"
H100 = "NVIDIA H100 80GB HBM3"
KEY = 987654321987


def fake_gpu(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


def test_another_gpu_model_is_refused_naming_both() -> None:
    with pytest.raises(DeviceUnavailable) as caught:
        check_cuda_device("gpu-scheme", A100, current=H100)
    message = str(caught.value)
    assert A100 in message and H100 in message and "gpu-scheme" in message


def test_the_recorded_gpu_model_is_accepted() -> None:
    check_cuda_device("gpu-scheme", A100, current=A100)
    check_cuda_device("gpu-scheme", f" {A100} ", current=A100)  # stray blanks from a hand-edited config


def test_a_scheme_without_a_record_is_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_cuda_device("gpu-scheme", None, current=H100)
    assert any("cuda_device_name" in r.getMessage() and H100 in r.getMessage() for r in caplog.records)


def test_seeder_checks_the_gpu_at_start_without_revealing_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, H100)
    scheme = make_scheme(generator="transformers-cuda", hashing_key=KEY, cuda_device_name=A100)
    with pytest.raises(DeviceUnavailable) as caught:
        seeder_for(scheme)
    assert H100 in str(caught.value) and A100 in str(caught.value)
    assert str(KEY) not in str(caught.value)
    # Lefthash draws nothing on the GPU when the seeder is built, so the matching model passes here.
    matching = make_scheme(generator="transformers-cuda", hashing_key=KEY, cuda_device_name=H100)
    assert seeder_for(matching).cuda


def test_no_gpu_is_a_clear_error_before_any_cuda_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    scheme = make_scheme(generator="transformers-cuda", seeding_scheme="selfhash", cuda_device_name=A100)
    with pytest.raises(DeviceUnavailable, match="CUDA GPU"):
        seeder_for(scheme)  # selfhash would draw its table on the GPU: refused before torch fails obscurely


def test_cpu_schemes_never_look_at_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_gpu_calls(*args: object) -> str:
        raise AssertionError("a CPU scheme asked for the GPU model")

    monkeypatch.setattr(torch.cuda, "get_device_name", no_gpu_calls)
    assert not seeder_for(make_scheme(seeding_scheme="selfhash")).cuda


# -- the GPU table's code, run with torch on the CPU -------------------------------------------------------------
# The bitmap table lives in a torch tensor when the detector's device is a GPU (greenlists._DeviceRows). Its
# code is the same for any torch device, so it is exercised here on the CPU against the numpy table.


def tensor_table(lists: GreenLists) -> GreenLists:
    lists._table = _DeviceRows(lists.row_bytes, "cpu")
    return lists


def grouped_lookups(lists: GreenLists, rng: np.random.Generator, rounds: int) -> list[np.ndarray]:
    out = []
    for _ in range(rounds):
        distinct = np.unique(rng.integers(0, 2**32, 40)).astype(np.int64)
        inverse = rng.integers(0, len(distinct), 500).astype(np.int64)
        tokens = rng.integers(0, lists.vocab_size, 500).astype(np.int64)
        out.append(lists.lookup_grouped(distinct, inverse, tokens))
    return out


@pytest.mark.parametrize("capacity", [16, 4096])  # 16: more seeds than slots, so chunks and evictions
def test_a_tensor_table_answers_as_the_numpy_table(capacity: int) -> None:
    def lists() -> GreenLists:
        built = GreenLists(1000, 0.25, cuda_generator=False, device="cpu", cache_bytes=capacity * 125)
        assert built.capacity == capacity
        return built

    host = grouped_lookups(lists(), np.random.default_rng(5), 6)
    on_tensor = grouped_lookups(tensor_table(lists()), np.random.default_rng(5), 6)
    for a, b in zip(host, on_tensor, strict=True):
        assert a.dtype == np.bool_ and b.dtype == np.bool_
        assert np.array_equal(a, b)
    assert 0.15 < np.concatenate(host).mean() < 0.35


def test_the_numpy_table_follows_a_bound_raised_after_construction() -> None:
    """The numpy table allocates its bound up front; a bound raised later must still hold every list."""
    raised = GreenLists(1000, 0.25, cuda_generator=False, device="cpu", cache_bytes=16 * 125)
    raised.capacity = 4096
    roomy = GreenLists(1000, 0.25, cuda_generator=False, device="cpu", cache_bytes=4096 * 125)
    got = grouped_lookups(raised, np.random.default_rng(8), 3)
    expected = grouped_lookups(roomy, np.random.default_rng(8), 3)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    assert raised.derived == roomy.derived > 16  # nothing evicted: all lists fitted


def test_cuda_generator_lists_are_packed_as_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA generator's lists are drawn by torch and bit-packed on the GPU; here a CPU draw stands in."""
    vocab, size = 1003, 250  # not a multiple of 8: the last byte is partly padding

    def draw(seed: int) -> torch.Tensor:
        perm = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed))
        mask = torch.zeros(vocab, dtype=torch.bool)
        mask[perm[:size]] = True
        return mask

    monkeypatch.setattr(greenlists, "_cuda_available", lambda: True)
    monkeypatch.setattr(GreenLists, "_cuda_mask", lambda self, seed: draw(seed))
    seeds = np.array([3, 2**40 + 7, 15485863], dtype=np.int64)
    tokens = np.arange(vocab, dtype=np.int64)
    inverse = np.arange(vocab, dtype=np.int64) % 3
    expected = np.array([bool(draw(int(seeds[i]))[t]) for t, i in zip(tokens, inverse, strict=True)])
    assert 0 < expected.sum() < vocab
    for table in ("numpy", "tensor"):
        lists = GreenLists(vocab, size / vocab + 1e-9, cuda_generator=True, device="cpu", cache_bytes=1 << 20)
        assert lists.greenlist_size == size
        if table == "tensor":
            tensor_table(lists)
        assert np.array_equal(lists.lookup_grouped(seeds, inverse, tokens), expected), table
        assert np.array_equal(lists.membership(seeds[inverse], tokens), expected), table
