"""Each stored signal in plain words, for moderators who are not statisticians.

The words come from the plugin that made the signal (`Plugin.explain`, reading its own typed details), so a
third-party plugin explains itself on the review page without any change here. A signal whose plugin is no
longer installed, or whose stored details no longer fit the plugin's model, gets a generic sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moderation.errors import PluginError
from moderation.plugins.base import Plugin, StoredSignal
from moderation.plugins.registry import load_plugin_class

# Keys of a signal's JSON that are the Signal's own fields; everything else is the plugin's details.
_OWN_FIELDS = frozenset(
    {"plugin", "version", "score", "label", "finding", "abstained", "reason", "degraded", "evidence", "explanation"}
)


def plugin_class(name: str) -> type[Plugin] | None:
    try:
        return load_plugin_class(name)
    except PluginError:
        return None


def stored_signal(entry: Mapping[str, Any]) -> StoredSignal:
    """A signal's JSON (as stored, or as in a verdict) read back with its plugin's typed details."""
    name = str(entry.get("plugin"))
    cls = plugin_class(name)
    raw = {k: v for k, v in entry.items() if k not in _OWN_FIELDS}
    label = entry.get("label")
    finding = entry.get("finding")
    if finding is None:  # stored before signals carried it: the plugin's declaration decides
        finding = bool(cls is not None and label is not None and cls.labels.get(str(label), False))
    return StoredSignal(
        plugin=name,
        version=str(entry.get("version", "")),
        score=entry.get("score"),
        label=label,
        finding=bool(finding),
        abstained=bool(entry.get("abstained")),
        reason=entry.get("reason"),
        details=cls.typed_details(raw, abstained=bool(entry.get("abstained"))) if cls is not None and raw else None,
        raw=raw,
        evidence=entry.get("evidence") or {},
    )


def explain(entry: Mapping[str, Any]) -> str:
    signal = stored_signal(entry)
    cls = plugin_class(signal.plugin)
    return (cls or Plugin).explain(signal)
