"""The moderation step itself: run every enabled plugin over a batch of posts, then the policy.

Both `moderation scan` and the Celery workers call `Engine.moderate`, so a post gets the same verdict
whichever way it arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moderation.config import Settings
from moderation.errors import PluginError
from moderation.plugins.registry import load_plugin_class
from moderation.policy import Policy
from moderation.posts import Post
from moderation.signals import Signal, Verdict

DEFAULT_PLUGINS = ("watermark",)


class Engine:
    def __init__(self, settings: Settings, plugins: Sequence[Any] | None = None) -> None:
        """Load the plugins the config enables, or use `plugins` (already built) as given."""
        self.settings = settings
        self.plugins: list[Any] = list(plugins) if plugins is not None else []
        enabled = [] if plugins is not None else settings.plugins.get("enabled", list(DEFAULT_PLUGINS))
        for name in enabled:
            cls = load_plugin_class(name)
            options = settings.plugins.get(name, {})
            self.plugins.append(cls(settings, options))
        self.policy = Policy()

    def signals(self, posts: Sequence[Post]) -> list[list[Signal]]:
        per_post: list[list[Signal]] = [[] for _ in posts]
        for plugin in self.plugins:
            results = plugin.evaluate(posts)
            if len(results) != len(posts):
                raise PluginError(plugin.name, f"returned {len(results)} results for {len(posts)} posts")
            for acc, signals in zip(per_post, results, strict=True):
                acc.extend(signals)
        return per_post

    def moderate(self, posts: Sequence[Post]) -> list[Verdict]:
        return [self.policy.decide(p, s) for p, s in zip(posts, self.signals(posts), strict=True)]
