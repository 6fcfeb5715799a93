"""The package's shape is a promise too: the library never imports the processes, every exception lives in
the one errors module, and the public surface is what `__all__` says."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import moderation
from moderation import errors

ROOT = Path(__file__).parents[2]
LIBRARY = [p for p in (ROOT / "moderation").rglob("*.py") if "migrations" not in p.parts]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_the_library_never_imports_the_processes() -> None:
    offenders = sorted(
        str(p.relative_to(ROOT)) for p in LIBRARY if any(m.split(".")[0] == "workers" for m in _imports(p))
    )
    assert offenders == []


def test_every_exception_class_lives_in_errors_py() -> None:
    exception_names = {name for name, value in vars(errors).items() if isinstance(value, type)} | {
        "Exception",
        "ValueError",
        "RuntimeError",
    }
    elsewhere = []
    for path in LIBRARY:
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & exception_names:
                    elsewhere.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert elsewhere == []


def test_the_public_surface_is_importable_and_light() -> None:
    for name in moderation.__all__:
        assert getattr(moderation, name) is not None, name
    assert moderation.__version__ and moderation.__version__ != "0+unknown"
    assert (ROOT / "moderation" / "py.typed").exists()
    importlib.import_module("moderation.errors")
