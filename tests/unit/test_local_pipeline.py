"""LocalPipeline's processes run the code of the checkout that started them, not whatever else is installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import moderation
import workers
from moderation.endpoints import Endpoints
from moderation.testing.pipeline import LocalPipeline


def test_its_processes_import_the_checkout_that_started_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another checkout's packages first on the inherited path stand for a virtual environment installed from
    # another checkout (a git worktree sharing it): the processes start in a temporary folder, so without care
    # they would import these.
    other = tmp_path / "other-checkout"
    for package in ("moderation", "workers"):
        (other / package).mkdir(parents=True)
        (other / package / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(other))
    lp = LocalPipeline(tmp_path / "run", "")
    lp.endpoints = Endpoints.from_env()

    imported = subprocess.run(
        [sys.executable, "-c", "import moderation, workers; print(moderation.__file__); print(workers.__file__)"],
        env=lp.env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    assert imported == [moderation.__file__, workers.__file__]
    assert str(other) in lp.env()["PYTHONPATH"].split(os.pathsep)  # the caller's own path is kept, after the checkout
