"""A plugin from another package, installed the way a platform would install it, changes one tenant's verdicts,
explains itself on the review page and shows in the metrics, with no change to this project; plugins that
break the contract are refused at start, naming themselves and the field.

The package is written to a temporary folder outside the project tree, built and installed by pip into its
own target folder, and found through its `moderation.plugins` entry point like the built-ins.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from moderation.config import parse_settings
from moderation.engine import Engine
from moderation.errors import PluginError
from moderation.plugins.registry import available_plugins, load_plugin_class
from moderation.posts import Post
from moderation.review import explain

PLUGIN_SOURCE = '''
"""A third party's plugin: counts words from a per-tenant list."""
from typing import ClassVar

from moderation.plugins import Plugin, PluginOptions, SignalDetails, StoredSignal


class ToxicityOptions(PluginOptions):
    banned_words: tuple[str, ...]          # required: a tenant that enables it must say which words


class ToxicityDetails(SignalDetails):
    hits: int


class ToxicityPlugin(Plugin):
    name: ClassVar[str] = "toxicity"
    version: ClassVar[str] = "0.3"
    Options = ToxicityOptions
    Details = ToxicityDetails
    labels: ClassVar[dict[str, bool]] = {"toxic": True, "fine": False}
    default_weight: ClassVar[float] = 1.0
    default_cap: ClassVar[float] = 0.85      # alone it reaches quarantine (0.8), not block

    def evaluate(self, posts):
        banned = {w.lower() for w in self.options.banned_words}
        out = []
        for post in posts:
            hits = sum(word.strip(".,!?").lower() in banned for word in post.text.split())
            out.append([self.signal(score=min(1.0, hits / 2), label="toxic" if hits else "fine",
                                    details=ToxicityDetails(hits=hits))])
        return out

    @classmethod
    def explain(cls, signal: StoredSignal) -> str:
        return f"ACME toxicity: {signal.details.hits} word(s) from this community's banned list."
'''

BROKEN_SOURCE = """
from typing import ClassVar

from pydantic import BaseModel

from moderation.plugins import NoDetails, Plugin


class Undeclared(Plugin):             # declares no Details model
    name: ClassVar[str] = "undeclared"
    version: ClassVar[str] = "1"
    labels: ClassVar[dict[str, bool]] = {"x": True}

    def evaluate(self, posts):
        return [[] for _ in posts]


class LooseDetails(Plugin):           # its Details is a plain pydantic model, not a SignalDetails
    name: ClassVar[str] = "loosedetails"
    version: ClassVar[str] = "1"
    Details = BaseModel
    labels: ClassVar[dict[str, bool]] = {"x": True}

    def evaluate(self, posts):
        return [[] for _ in posts]


class WrongType(Plugin):              # declares everything, then returns dicts, not Signals
    name: ClassVar[str] = "wrongtype"
    version: ClassVar[str] = "1"
    Details = NoDetails
    labels: ClassVar[dict[str, bool]] = {"x": True}

    def evaluate(self, posts):
        return [[{"score": 1.0}] for _ in posts]
"""


def install_packages(packages: list[Path], target: Path) -> Path:
    """pip-install package folders into a target folder of their own, as a platform installs plugins."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target"]
    subprocess.run([*command, str(target), *map(str, packages)], check=True, capture_output=True, timeout=300)
    return target


def _write_package(root: Path, name: str, module: str, source: str, entry_points: dict[str, str]) -> Path:
    pkg = root / name
    (pkg / module).mkdir(parents=True)
    (pkg / module / "__init__.py").write_text(textwrap.dedent(source))
    eps = "\n".join(f'{k} = "{v}"' for k, v in entry_points.items())
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "0.3.0"

            [project.entry-points."moderation.plugins"]
            """
        )
        + eps
        + "\n"
    )
    return pkg


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build and install two plugin packages (one good, one broken) into a folder outside the project."""
    root = tmp_path_factory.mktemp("third_party")
    good = _write_package(
        root, "acme-toxicity", "acme_toxicity", PLUGIN_SOURCE, {"toxicity": "acme_toxicity:ToxicityPlugin"}
    )
    broken = _write_package(
        root,
        "broken-plugins",
        "broken_plugins",
        BROKEN_SOURCE,
        {
            "undeclared": "broken_plugins:Undeclared",
            "loosedetails": "broken_plugins:LooseDetails",
            "wrongtype": "broken_plugins:WrongType",
        },
    )
    target = install_packages([good, broken], root / "site")
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    load_plugin_class.cache_clear()
    yield target
    sys.path.remove(str(target))
    load_plugin_class.cache_clear()
    for mod in ("acme_toxicity", "broken_plugins"):
        sys.modules.pop(mod, None)


CONFIG = """
[plugins]
enabled = ["spam"]

[plugins.tenants.acme]
enabled = ["spam", "toxicity"]
toxicity = { banned_words = ["grift", "scam"] }
"""


def test_the_installed_plugin_changes_only_its_tenants_verdicts(site: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG)
    text = "This whole grift is a scam and everyone in it knows."
    posts = [{"id": "1", "text": text, "tenant": "acme"}, {"id": "2", "text": text, "tenant": "other"}]
    done = subprocess.run(
        [sys.executable, "-m", "moderation.cli", "scan", "--config", str(cfg)],
        input="\n".join(json.dumps(p) for p in posts).encode(),
        capture_output=True,
        timeout=300,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr.decode()
    acme, other = (json.loads(line) for line in done.stdout.decode().splitlines())
    assert acme["action"] == "quarantine" and "toxicity:toxic" in acme["reasons"]
    tox = next(s for s in acme["signals"] if s["plugin"] == "toxicity")
    assert tox == {**tox, "label": "toxic", "finding": True, "hits": 2, "version": "0.3"}
    assert other["action"] == "allow" and [s["plugin"] for s in other["signals"]] == ["spam"]

    # The review page explains it in the plugin's own words, and its queue filter offers it.
    assert explain.explain(tox) == "ACME toxicity: 2 word(s) from this community's banned list."
    assert "toxicity" in available_plugins()


def test_its_signals_reach_the_metrics(site: Path) -> None:
    engine = Engine(parse_settings({"plugins": {"enabled": ["toxicity"], "toxicity": {"banned_words": ["scam"]}}}))
    before = REGISTRY.get_sample_value(
        "moderation_plugin_signals_total", {"plugin": "toxicity", "label": "toxic", "outcome": "finding"}
    )
    engine.observe(engine.moderate([Post(id="1", text="a scam"), Post(id="2", text="a cat")]))
    after = REGISTRY.get_sample_value(
        "moderation_plugin_signals_total", {"plugin": "toxicity", "label": "toxic", "outcome": "finding"}
    )
    assert (after or 0) - (before or 0) == 1


@pytest.mark.parametrize(
    ("plugins", "message"),
    [
        # The tenant enables it without its required option.
        (
            {"enabled": ["toxicity"], "tenants": {"t": {"enabled": ["toxicity"]}}},
            r"plugin 'toxicity': invalid options in plugins.toxicity:\n  plugins.toxicity.banned_words: Field required",
        ),
        ({"enabled": ["toxicity"], "toxicity": {"banned_words": [], "colour": "red"}}, r"plugins.toxicity.colour"),
        ({"enabled": ["undeclared"]}, r"plugin 'undeclared': class Undeclared.Details must be a subclass of"),
        ({"enabled": ["loosedetails"]}, r"plugin 'loosedetails': class LooseDetails.Details must be a subclass"),
        ({"enabled": ["toxicty"]}, r"plugin 'toxicty': no such plugin; installed plugins: \[.*'toxicity'"),
    ],
)
def test_a_broken_plugin_is_refused_at_start_naming_itself_and_the_field(
    site: Path, plugins: dict[str, object], message: str
) -> None:
    with pytest.raises(PluginError, match=message):
        Engine(parse_settings({"plugins": plugins}))


def test_a_signal_of_the_wrong_type_is_refused_naming_the_plugin(site: Path) -> None:
    engine = Engine(parse_settings({"plugins": {"enabled": ["wrongtype"]}}))
    with pytest.raises(PluginError, match=r"plugin 'wrongtype': returned a dict where a moderation.Signal"):
        engine.moderate([Post(id="1", text="hello")])
