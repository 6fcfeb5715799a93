"""The moderation step itself: run every enabled plugin over a batch of posts, then the policy.

Both `moderation scan` and the Celery workers call `Engine.moderate`, so a post gets the same verdict
whichever way it arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from moderation.config import Settings
from moderation.errors import PluginError
from moderation.plugins.registry import load_plugin_class
from moderation.policy import Policy
from moderation.posts import Post
from moderation.signals import Signal, Verdict

DEFAULT_PLUGINS = ("watermark",)
PluginTimer = Callable[[str, float], None]


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

    def signals(self, posts: Sequence[Post], timer: PluginTimer | None = None) -> list[list[Signal]]:
        """Every enabled plugin's signals for each post. `timer(plugin_name, seconds)` sees each plugin's time."""
        per_post: list[list[Signal]] = [[] for _ in posts]
        for plugin in self.plugins:
            started = time.perf_counter()
            results = plugin.evaluate(posts)
            if timer is not None:
                timer(plugin.name, time.perf_counter() - started)
            if len(results) != len(posts):
                raise PluginError(plugin.name, f"returned {len(results)} results for {len(posts)} posts")
            for acc, signals in zip(per_post, results, strict=True):
                acc.extend(signals)
        return per_post

    def moderate(self, posts: Sequence[Post], timer: PluginTimer | None = None) -> list[Verdict]:
        if not posts:
            return []
        return [self.policy.decide(p, s) for p, s in zip(posts, self.signals(posts, timer), strict=True)]
