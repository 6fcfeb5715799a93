"""Find plugins through the `moderation.plugins` entry-point group (built-ins included) and hold them to the
contract in moderation/plugins/base.py: the class when it loads, its options when it is built, and every
signal it returns. A plugin that breaks the contract fails loudly with a PluginError naming it and the field.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from moderation.config import Settings
from moderation.errors import ModerationError, PluginError, format_validation_error
from moderation.plugins.base import Plugin, PluginOptions, SignalDetails
from moderation.signals import Signal

GROUP = "moderation.plugins"


def available_plugins() -> dict[str, EntryPoint]:
    """Entry-point name -> entry point, for every installed plugin."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def check_plugin_class(name: str, cls: Any) -> type[Plugin]:
    """Check a class against the contract, the way pluggy checks hook implementations against their specs."""
    if not (inspect.isclass(cls) and issubclass(cls, Plugin)):
        raise PluginError(name, f"{cls!r} is not a subclass of moderation.plugins.Plugin")
    for attr in ("name", "version"):
        if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr):
            raise PluginError(name, f"class {cls.__name__} must define a non-empty string class attribute {attr!r}")
    if cls.name != name:
        raise PluginError(name, f"class {cls.__name__} says its name is {cls.name!r}, registered as {name!r}")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise PluginError(name, f"class {cls.__name__} does not implement {missing}")
    for attr, base in (("Options", PluginOptions), ("Details", SignalDetails), ("AbstainDetails", SignalDetails)):
        model = getattr(cls, attr, None)
        if not (inspect.isclass(model) and issubclass(model, base)):
            raise PluginError(
                name, f"class {cls.__name__}.{attr} must be a subclass of moderation.plugins.{base.__name__}"
            )
    labels = getattr(cls, "labels", None)
    if not isinstance(labels, Mapping) or not labels:
        raise PluginError(name, f"class {cls.__name__}.labels must map each label it emits to whether it is a finding")
    bad = sorted(str(k) for k, v in labels.items() if not isinstance(k, str) or not k or not isinstance(v, bool))
    if bad:
        raise PluginError(name, f"class {cls.__name__}.labels: each label must be a string mapped to true/false: {bad}")
    for attr, top in (("default_weight", 10.0), ("default_cap", 1.0)):
        value = getattr(cls, attr, None)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= top:
            raise PluginError(name, f"class {cls.__name__}.{attr} must be a number in [0, {top:g}], got {value!r}")
    return cls


@functools.cache
def load_plugin_class(name: str) -> type[Plugin]:
    """Import the plugin registered as `name` and check it honours the contract; fail loudly otherwise."""
    known = available_plugins()
    if name not in known:
        raise PluginError(name, f"no such plugin; installed plugins: {sorted(known)}")
    try:
        cls = known[name].load()
    except Exception as exc:  # any import failure of third-party code is that plugin's fault
        raise PluginError(name, f"failed to import {known[name].value}: {exc}") from exc
    return check_plugin_class(name, cls)


def parse_options(cls: type[Plugin], raw: Mapping[str, Any], where: str) -> PluginOptions:
    """Validate an options table against the plugin's `Options` model; `where` names the table in messages."""
    try:
        return cls.Options.model_validate(dict(raw))
    except ValidationError as err:
        raise PluginError(cls.name, format_validation_error(f"invalid options in {where}:", err, f"{where}.")) from None


def build_plugin(name: str, settings: Settings, raw_options: Mapping[str, Any], where: str | None = None) -> Plugin:
    cls = load_plugin_class(name)
    options = parse_options(cls, raw_options, where or f"plugins.{name}")
    try:
        return cls(settings, options)
    except ModerationError:  # already says what is wrong (a bad tokenizer path, no CUDA device, ...)
        raise
    except Exception as exc:  # a constructor that cannot start (a bad tokenizer path, ...) names its plugin
        raise PluginError(name, f"could not start: {exc}") from exc


def check_signals(plugin: Plugin, results: Sequence[Any], expected: int) -> None:
    """Refuse a batch's results that break the contract: wrong count, wrong type, a label the plugin never
    declared, a finding flag that disagrees with the declaration, or details that do not fit `Details`."""
    name = plugin.name
    if not isinstance(results, Sequence) or len(results) != expected:
        got = len(results) if isinstance(results, Sequence) else type(results).__name__
        raise PluginError(name, f"evaluate() returned {got} results for {expected} posts")
    for signals in results:
        if not isinstance(signals, Sequence):
            raise PluginError(name, f"evaluate() must return a list of Signal lists, got a {type(signals).__name__}")
        for s in signals:
            _check_signal(plugin, s)


def _check_signal(plugin: Plugin, s: Any) -> None:
    name = plugin.name
    if not isinstance(s, Signal):
        raise PluginError(name, f"returned a {type(s).__name__} where a moderation.Signal was expected")
    if s.plugin != name:
        raise PluginError(name, f"returned a signal that says it comes from plugin {s.plugin!r}")
    if s.abstained:
        if s.score is not None or s.label is not None or s.finding:
            raise PluginError(name, "an abstaining signal must have no score, no label and finding=false")
        _check_details(plugin, s.details, plugin.AbstainDetails)
        return
    if s.score is None or not 0.0 <= s.score <= 1.0:
        raise PluginError(name, f"signal.score must be a number in [0, 1] unless it abstains, got {s.score!r}")
    declared = plugin.labels.get(s.label) if s.label is not None else None
    if declared is None:
        raise PluginError(name, f"signal.label {s.label!r} is not one it declares: {sorted(plugin.labels)}")
    if s.finding != declared:
        raise PluginError(name, f"signal.finding is {s.finding} but label {s.label!r} is declared {declared}")
    _check_details(plugin, s.details, plugin.Details)


def _check_details(plugin: Plugin, details: Mapping[str, Any], model: type[SignalDetails]) -> None:
    try:
        model.model_validate(dict(details))
    except ValidationError as err:
        raise PluginError(
            plugin.name, format_validation_error(f"signal.details do not fit {model.__name__}:", err, "details.")
        ) from None


def describe(cls: type[Plugin]) -> dict[str, Any]:
    """What a plugin declares, for `moderation plugins` and the docs: options with defaults, labels, details."""
    return {
        "name": cls.name,
        "version": cls.version,
        "labels": dict(cls.labels),
        "default_weight": cls.default_weight,
        "default_cap": cls.default_cap,
        "options": _fields(cls.Options),
        "details": _fields(cls.Details),
    }


def _fields(model: type[BaseModel]) -> dict[str, str]:
    return {
        k: (f.annotation.__name__ if isinstance(f.annotation, type) else str(f.annotation))
        for k, f in model.model_fields.items()
    }
