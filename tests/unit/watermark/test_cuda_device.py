"""A CUDA-generator scheme records the GPU model its text was made on, and detection refuses another model.

No GPU is lent to this project's sessions, so these tests exercise the check's logic with a monkeypatched
torch.cuda (device present, a given name); that CUDA randperm really differs between GPU models is not
measured here (docs/detector.md#gpu).
"""

from __future__ import annotations

import logging

import pytest
import torch

from moderation.errors import DeviceUnavailable
from moderation.watermark.greenlists import check_cuda_device
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
