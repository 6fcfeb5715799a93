"""Detector plugins. Built-ins and third-party plugins are found the same way: entry-point group
`moderation.plugins` (registry.py), each held to the contract in base.py."""

from moderation.plugins.base import NoDetails, Plugin, PluginOptions, SignalDetails, StoredSignal
from moderation.plugins.registry import available_plugins, load_plugin_class
from moderation.plugins.state import StateOptions

__all__ = [
    "NoDetails",
    "Plugin",
    "PluginOptions",
    "SignalDetails",
    "StateOptions",
    "StoredSignal",
    "available_plugins",
    "load_plugin_class",
]
