"""Detection on the CPU never imports torch (about a second of every `moderation scan`'s start-up).

torch is needed only to draw CUDA generators' green lists, for a GPU table, and once per installed torch to
check that its CPU randperm still draws what the compiled kernels reproduce (remembered on disk afterwards:
mt19937.check_against_torch). Each test runs a fresh interpreter, since this one has imported torch long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from moderation.config import BUNDLED_TOKENIZER
from moderation.errors import DeviceUnavailable
from moderation.testing.synthetic import stdlib_prose
from moderation.testing.tokenizers import tokenizer_spec
from moderation.watermark import detector, mt19937
from moderation.watermark.tokenization import tokenizer_vocab_size

from .conftest import make_scheme, watermarked_words

ROOT = Path(__file__).resolve().parents[3]

# Scores every scheme of a config on the posts given, then reports the torch modules it has loaded.
DETECT = """
import json, sys
from moderation.config import parse_settings
from moderation.watermark import WatermarkDetector

config, posts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
scores = WatermarkDetector(parse_settings(config)).detect(posts, evidence="all")
print(json.dumps({
    "outcomes": [[s.outcome for s in row] for row in scores],
    "evidence": [[len(s.tokens or ()) for s in row] for row in scores],
    "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch"),
}))
"""


def run_python(args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, mt19937.CACHE_DIR_ENV: str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, check=True)


def detect_in_fresh_process(config: dict[str, object], posts: list[str], cache: Path) -> dict[str, Any]:
    done = run_python(["-c", DETECT, json.dumps(config), json.dumps(posts)], cache)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def scheme(name: str, tokenizer: str, **fields: object) -> dict[str, object]:
    return {"name": name, "tokenizer": tokenizer, "vocab_size": tokenizer_vocab_size(tokenizer), **fields}


@pytest.fixture(scope="module")
def mistral() -> str:
    return tokenizer_spec("mistral")


@pytest.fixture(scope="module")
def posts() -> list[str]:
    human = " ".join(stdlib_prose(max_chars=200_000).split()[:400])  # long enough for the window search
    return [human, watermarked_words(300, make_scheme()), "too short"]


def test_cpu_detection_imports_no_torch_once_the_check_is_remembered(
    tmp_path: Path, mistral: str, posts: list[str]
) -> None:
    config = {
        "detector": {"device": "cpu"},
        "watermark": {
            "schemes": [
                scheme("lefthash", mistral),
                scheme("self", mistral, seeding_scheme="selfhash"),
                scheme("lm", mistral, generator="lm-watermarking", seeding_scheme="selfhash"),
            ]
        },
    }
    first = detect_in_fresh_process(config, posts, tmp_path)
    # Nothing remembered yet: the first process checks the installed torch, so it imports it.
    assert "torch" in first["torch"]
    second = detect_in_fresh_process(config, posts, tmp_path)
    assert second["torch"] == []
    assert second["outcomes"] == first["outcomes"]
    assert second["evidence"] == first["evidence"]
    assert first["outcomes"][0] == ["not_watermarked"] * 3  # really scored: the human post has the power to tell
    assert all(n > 0 for n in second["evidence"][0])  # and evidence (windows, token spans) was built


def test_the_watermark_is_found_without_torch(tmp_path: Path, posts: list[str]) -> None:
    # "auto": this machine has no GPU driver (checked below), so the answer is "cpu" without asking torch.
    config = {"detector": {"device": "auto"}, "watermark": {"schemes": [scheme("bert", BUNDLED_TOKENIZER)]}}
    detect_in_fresh_process(config, posts, tmp_path)  # remembers the check
    result = detect_in_fresh_process(config, posts, tmp_path)
    assert result["outcomes"][1] == ["watermarked"]
    if detector._gpu_driver_present():
        return  # then "auto" must ask torch whether the GPU is usable: nothing more to show here
    assert result["torch"] == []


def test_scan_imports_no_torch(tmp_path: Path, mistral: str, posts: list[str]) -> None:
    """The whole `moderation scan` process, read from `python -X importtime` (every module it imports)."""
    config = tmp_path / "scan.toml"
    config.write_text(
        '[detector]\ndevice = "cpu"\n\n[[watermark.schemes]]\nname = "lefthash"\n'
        f"tokenizer = {json.dumps(mistral)}\nvocab_size = {tokenizer_vocab_size(mistral)}\n"
    )
    source = tmp_path / "posts.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(posts)))
    output = tmp_path / "out.jsonl"
    scan = ["-X", "importtime", "-m", "moderation.cli", "scan", "--config", str(config)]
    scan += ["--input", str(source), "--output", str(output)]

    def imported(done: subprocess.CompletedProcess[str]) -> set[str]:
        lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
        return {line.rsplit("|", 1)[-1].strip() for line in lines}

    first = imported(run_python(scan, tmp_path / "cache"))
    assert "torch" in first  # the check of the installed torch, the first time only
    second = imported(run_python(scan, tmp_path / "cache"))
    assert "moderation.watermark.detector" in second  # the import log is read right
    assert not {m for m in second if m.split(".")[0] == "torch"}
    verdicts = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(verdicts) == len(posts)


def test_auto_device_asks_torch_only_where_a_gpu_driver_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_torch() -> bool:
        raise AssertionError("torch was asked for a CUDA device")

    monkeypatch.setattr(detector, "_cuda_available", no_torch)
    monkeypatch.setattr(detector, "GPU_DRIVER_FILES", (str(tmp_path / "nvidia0"),))
    assert detector.resolve_device("auto") == "cpu"
    assert detector.resolve_device("cpu") == "cpu"

    (tmp_path / "nvidia0").touch()  # a driver: only torch can tell whether a usable device is there
    for available, expected in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(detector, "_cuda_available", lambda available=available: available)
        assert detector.resolve_device("auto") == expected
    monkeypatch.setattr(detector, "_cuda_available", lambda: True)
    assert detector.resolve_device("cuda") == "cuda"
    monkeypatch.setattr(detector, "_cuda_available", lambda: False)
    with pytest.raises(DeviceUnavailable, match="no CUDA device"):
        detector.resolve_device("cuda")
