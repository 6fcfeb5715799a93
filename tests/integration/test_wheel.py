"""The package as a platform installs it: a wheel built from this tree, installed into a folder of its own
with no checkout on the path, migrates a database given a plain `postgresql://` URL (the form every hosting
service hands out) and scans posts. The wheel must carry the migrations, the bundled config and the
templates; nothing may be read from the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from moderation.storage.database import drop_database

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        capture_output=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr.decode()[-2000:]
    (wheel,) = out.glob("moderation-*.whl")
    target = out / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr.decode()[-2000:]
    return target


@pytest.fixture
def plain_url() -> Iterator[str]:
    url = f"postgresql://root@127.0.0.1:5432/wheel_{uuid.uuid4().hex[:12]}"
    yield url
    drop_database(url)


def _run(target: Path, cwd: Path, url: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    # The wheel's folder first; the virtualenv's site-packages only for the dependencies. The editable
    # install of this checkout is a meta-path finder that comes after every sys.path entry, so the wheel's
    # `moderation` wins, and the test checks that it did.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(target),
        "MODERATION_DATABASE_URL": url,
        "HOME": str(cwd),
    }
    return subprocess.run(
        [sys.executable, "-m", "moderation.cli", *args], cwd=cwd, env=env, input=stdin, capture_output=True, timeout=600
    )


def test_the_installed_wheel_migrates_a_plain_postgresql_url_and_scans(
    installed: Path, plain_url: str, tmp_path: Path
) -> None:
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import moderation, moderation.storage.migrate as m; print(moderation.__file__, m.MIGRATIONS_DIR)",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(installed), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        check=True,
    ).stdout.decode()
    module_file, migrations = where.split()
    assert module_file.startswith(str(installed)) and migrations.startswith(str(installed))
    assert not module_file.startswith(str(ROOT / "moderation"))

    up = _run(installed, tmp_path, plain_url, "db", "upgrade")
    assert up.returncode == 0, up.stderr.decode()
    revisions = sorted(p.stem for p in (ROOT / "migrations" / "versions").glob("0*.py"))
    assert up.stdout.decode().strip() == f"at revision {revisions[-1]}"

    texts = [
        "The bus was late again this morning, so I walked the last mile in the rain.",
        "Does anyone know a good recipe for sourdough that does not take two days?",
        "Our team finally shipped the release after three weeks of testing.",
        "I planted tomatoes and basil on the balcony; fingers crossed for sunshine.",
        "The library extended its opening hours on weekends, which is great news.",
    ]
    posts = b"".join(json.dumps({"id": f"p{i}", "text": t}).encode() + b"\n" for i, t in enumerate(texts))
    scan = _run(installed, tmp_path, plain_url, "scan", stdin=posts)
    assert scan.returncode == 0, scan.stderr.decode()
    verdicts = [json.loads(line) for line in scan.stdout.decode().splitlines()]
    assert [v["id"] for v in verdicts] == [f"p{i}" for i in range(5)]
    assert [v["action"] for v in verdicts] == ["allow"] * 5
    assert all({"watermark", "spam"} <= {s["plugin"] for s in v["signals"]} for v in verdicts)
