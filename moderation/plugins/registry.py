"""Find plugins through the `moderation.plugins` entry-point group, built-ins included, and check them."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from moderation.errors import PluginError

GROUP = "moderation.plugins"


def available_plugins() -> dict[str, Any]:
    """Entry-point name -> entry point, for every installed plugin."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_plugin_class(name: str) -> type:
    """Import the plugin registered as `name` and check it honours the contract; fail loudly otherwise."""
    known = available_plugins()
    if name not in known:
        raise PluginError(name, f"no such plugin; installed plugins: {sorted(known)}")
    try:
        cls = known[name].load()
    except Exception as exc:  # any import failure of third-party code is that plugin's fault
        raise PluginError(name, f"failed to import {known[name].value}: {exc}") from exc
    for attr in ("name", "version"):
        if not isinstance(getattr(cls, attr, None), str):
            raise PluginError(name, f"class {cls.__name__} must define a string class attribute {attr!r}")
    if not callable(getattr(cls, "evaluate", None)):
        raise PluginError(name, f"class {cls.__name__} has no evaluate(posts) method")
    if cls.name != name:
        raise PluginError(name, f"class {cls.__name__} says its name is {cls.name!r}, registered as {name!r}")
    return cls
