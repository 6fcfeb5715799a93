"""`moderation scan` end to end, as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.watermark.conftest import human_words, make_scheme, watermarked_words

SECRET = 777000111222333444

CONFIG = f"""
[detector]
device = "cpu"
batch_size = 3

[[watermark.schemes]]
name = "provider-a"
vocab_size = 30522
hashing_key = {SECRET}
"""


def run_scan(tmp_path: Path, input_bytes: bytes, config: str = CONFIG) -> subprocess.CompletedProcess[bytes]:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config)
    src = tmp_path / "in.jsonl"
    src.write_bytes(input_bytes)
    return subprocess.run(
        [sys.executable, "-m", "moderation.cli", "scan", "--config", str(cfg), "--input", str(src)],
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def marked() -> str:
    return watermarked_words(100, make_scheme(name="provider-a", vocab_size=30522, hashing_key=SECRET), seed=4)


def test_one_line_out_per_line_in_order_with_errors_inline(tmp_path: Path, marked: str) -> None:
    lines = [
        json.dumps({"id": "wm", "text": marked, "tenant": "t1", "author": "bot"}).encode(),
        b"{not json",
        json.dumps({"id": "human", "text": human_words(100, 1)}).encode(),
        json.dumps({"id": "no-text"}).encode(),
        b'{"id": "latin1", "text": "caf\xe9"}',
        json.dumps({"id": 5, "text": "id must be a string"}).encode(),
        json.dumps({"id": "short", "text": "hi"}).encode(),
        json.dumps(["not", "an", "object"]).encode(),
    ]
    done = run_scan(tmp_path, b"\n".join(lines) + b"\n")
    assert done.returncode == 0, done.stderr.decode()
    out = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(out) == len(lines)
    wm, bad_json, human, no_text, latin1, int_id, short, array = out

    [signal] = wm["signals"]
    assert wm["id"] == "wm" and wm["tenant"] == "t1"
    assert signal["plugin"] == "watermark" and signal["scheme"] == "provider-a"
    assert signal["watermarked"] is True and signal["z_score"] > 6 and 0 < signal["p_value"] < 1e-8
    assert signal["num_green_tokens"] <= signal["num_tokens_scored"] == 99
    assert wm["action"] == "review"  # a watermark alone never blocks
    assert len(signal["evidence"]["tokens"]) == 99

    assert human["signals"][0]["watermarked"] is False and human["action"] == "allow"
    assert short["signals"][0]["watermarked"] is None and short["signals"][0]["reason"] == "too_short"
    assert bad_json == {
        "line": 2,
        "error": {"reason": "invalid_json", "detail": "Expecting property name enclosed in double quotes"},
    }
    assert no_text["line"] == 4 and no_text["id"] == "no-text" and no_text["error"]["reason"] == "missing_field"
    assert latin1["line"] == 5 and latin1["error"]["reason"] == "invalid_utf8"
    assert int_id["error"]["reason"] == "wrong_type"
    assert array["error"]["reason"] == "not_an_object"
    assert b"scanned 3 posts, 5 error lines" in done.stderr
    assert str(SECRET).encode() not in done.stdout + done.stderr


def test_stdin_to_stdout(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "moderation.cli", "scan", "--config", str(cfg)],
        input=b'{"id": "a", "text": "hello"}\n',
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["id"] == "a"


def test_bad_config_stops_with_exit_2_and_a_clear_message(tmp_path: Path) -> None:
    done = run_scan(tmp_path, b"", config=CONFIG.replace("vocab_size = 30522", "vocab_size = 100"))
    assert done.returncode == 2
    assert b"vocab_size: 100 is smaller than the tokenizer's 30522" in done.stderr
    assert str(SECRET).encode() not in done.stderr


def test_unreadable_input_stops_with_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "moderation.cli", "scan", "--config", str(cfg), "--input", str(tmp_path / "missing")],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert b"cannot read input file" in done.stderr
