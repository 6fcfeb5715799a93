"""`moderation worker` sets PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported; if building
the CLI imported it earlier, the pool processes' metrics would silently never be served."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_cli_does_not_import_prometheus_client() -> None:
    code = (
        "import sys; from moderation.cli import build_parser; build_parser(); "
        "loaded = [m for m in sys.modules if m.startswith('prometheus_client')]; print(loaded); assert not loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
