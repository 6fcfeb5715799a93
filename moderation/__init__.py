"""moderation: catch machine-written spam on ingest (LLM-watermark detection plus spam plugins, a per-tenant
policy, storage, review). The public surface is what `__all__` lists; everything else may change.

Importing this package is light on purpose (no torch, no prometheus_client): `moderation worker` must set
up Prometheus' multi-process mode before any metric exists. `Engine`, `WatermarkDetector` and
`WatermarkScore` are loaded on first use.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from moderation.config import Settings, WatermarkScheme, load_settings, parse_settings
from moderation.errors import (
    BrokerUnavailable,
    ConfigError,
    DeviceUnavailable,
    InvalidPost,
    ModerationError,
    PluginError,
    RetryableError,
    StorageUnavailable,
)
from moderation.plugins.base import NoDetails, Plugin, PluginOptions, SignalDetails, StoredSignal
from moderation.posts import Post
from moderation.signals import Action, Signal, Verdict

if TYPE_CHECKING:
    from moderation.engine import Engine
    from moderation.watermark import WatermarkDetector, WatermarkScore

try:
    __version__ = version("moderation")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "Engine": "moderation.engine",
    "WatermarkDetector": "moderation.watermark",
    "WatermarkScore": "moderation.watermark",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'moderation' has no attribute {name!r}")


__all__ = [
    "Action",
    "BrokerUnavailable",
    "ConfigError",
    "DeviceUnavailable",
    "Engine",
    "InvalidPost",
    "ModerationError",
    "NoDetails",
    "Plugin",
    "PluginError",
    "PluginOptions",
    "Post",
    "RetryableError",
    "Settings",
    "Signal",
    "SignalDetails",
    "StorageUnavailable",
    "StoredSignal",
    "Verdict",
    "WatermarkDetector",
    "WatermarkScheme",
    "WatermarkScore",
    "__version__",
    "load_settings",
    "parse_settings",
]
