"""The moderation step itself: run the enabled plugins over a batch of posts, then the policy.

Both `moderation scan` and the Celery workers call `Engine.moderate`, so a post gets the same verdict
whichever way it arrives.

Which plugins run, and with which options, comes from `[plugins]` and may differ per tenant
(`[plugins.tenants.NAME]`, docs/plugins.md). A plugin instance is built once per distinct option set
and shared by every tenant that uses it (the watermark detector's caches are built once).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from moderation.config import Settings
from moderation.errors import PluginError
from moderation.plugins.base import Plugin
from moderation.plugins.registry import build_plugin, check_signals
from moderation.policy import PluginWeight, Policy
from moderation.posts import Post
from moderation.signals import Signal, Verdict

DEFAULT_PLUGINS = ("watermark",)
PluginTimer = Callable[[str, float], None]


def _plugin_plan(raw: Mapping[str, Any], tenant: str | None) -> list[tuple[str, dict[str, Any]]]:
    """(plugin name, options) to run for a tenant: the global [plugins] table with the tenant's overrides."""
    override: Mapping[str, Any] = raw.get("tenants", {}).get(tenant, {}) if tenant else {}
    enabled = override.get("enabled", raw.get("enabled", list(DEFAULT_PLUGINS)))
    plan = []
    for name in enabled:
        options = dict(raw.get(name, {}))
        options.update(override.get(name, {}))
        plan.append((str(name), options))
    return plan


class Engine:
    def __init__(self, settings: Settings, plugins: Sequence[Plugin] | None = None) -> None:
        """Load the plugins the config enables, or use `plugins` (already built) for every tenant."""
        self.settings = settings
        self._instances: dict[tuple[str, str], Plugin] = {}
        self._fixed = list(plugins) if plugins is not None else None
        raw = settings.plugins
        not_tables = sorted(t for t, o in raw.get("tenants", {}).items() if not isinstance(o, Mapping))
        if not_tables:
            raise PluginError("config", f"[plugins.tenants] entries must be tables: {not_tables}")
        # Build every plugin any tenant may need now: a bad plugin or option fails at start, loudly.
        self.default_plugins = self._plugins_for(None)
        for tenant in raw.get("tenants", {}):
            self._plugins_for(tenant)
        declared = {p.name: PluginWeight(p.default_weight, p.default_cap) for p in self.plugins}
        self.policy = Policy(settings.policy, declared)
        self._by_name = {p.name: p for p in self.plugins}

    @property
    def plugins(self) -> list[Plugin]:
        """Every distinct plugin instance (for metrics such as the detector's device)."""
        return list(self._fixed) if self._fixed is not None else list(self._instances.values())

    def _plugins_for(self, tenant: str | None) -> list[Plugin]:
        if self._fixed is not None:
            return self._fixed
        out = []
        for name, options in _plugin_plan(self.settings.plugins, tenant):
            key = (name, json.dumps(options, sort_keys=True, default=str))
            if key not in self._instances:
                where = f"plugins.tenants.{tenant}.{name}" if tenant else f"plugins.{name}"
                self._instances[key] = build_plugin(name, self.settings, options, where)
            out.append(self._instances[key])
        return out

    def signals(self, posts: Sequence[Post], timer: PluginTimer | None = None) -> list[list[Signal]]:
        """Every enabled plugin's signals for each post. `timer(plugin_name, seconds)` sees each plugin's time."""
        per_post: list[list[Signal]] = [[] for _ in posts]
        # Group posts by the plugin instance that must see them, keeping each group in stream order.
        groups: dict[int, tuple[Plugin, list[int]]] = {}
        plans: dict[str, list[Plugin]] = {}
        for index, post in enumerate(posts):
            if post.tenant not in plans:
                plans[post.tenant] = self._plugins_for(post.tenant)
            for plugin in plans[post.tenant]:
                groups.setdefault(id(plugin), (plugin, []))[1].append(index)
        for plugin, indexes in groups.values():
            subset = [posts[i] for i in indexes]
            started = time.perf_counter()
            results = plugin.evaluate(subset)
            if timer is not None:
                timer(plugin.name, time.perf_counter() - started)
            check_signals(plugin, results, len(subset))
            for i, signals in zip(indexes, results, strict=True):
                per_post[i].extend(signals)
        return per_post

    def moderate(self, posts: Sequence[Post], timer: PluginTimer | None = None) -> list[Verdict]:
        if not posts:
            return []
        return [self.policy.decide(p, s) for p, s in zip(posts, self.signals(posts, timer), strict=True)]

    def observe(self, verdicts: Sequence[Verdict]) -> None:
        """Count stored verdicts and their signals in the metrics, the plugins' own included."""
        # Imported here, not at the top: `moderation worker` must set PROMETHEUS_MULTIPROC_DIR before
        # prometheus_client is first imported, and the CLI imports this module (via scan) before that.
        from moderation import metrics

        # Counted per batch, then added once per label set: each inc() of a multiprocess metric is a lock, a
        # pid check and a write to its memory-mapped file, and a batch repeats the same few label sets.
        verdicts_by: Counter[tuple[str, str]] = Counter()
        degraded_by: Counter[str] = Counter()
        signals_by: Counter[tuple[str, str, str]] = Counter()
        for v in verdicts:
            verdicts_by[(v.tenant, v.action.value)] += 1
            degraded_by.update(v.degraded)
            for s in v.signals:
                outcome = "abstained" if s.abstained else ("finding" if s.finding else "clean")
                signals_by[(s.plugin, s.label or s.reason or "none", outcome)] += 1
                source = self._by_name.get(s.plugin)
                if source is not None:
                    source.observe(s)
        for (tenant, action), n in verdicts_by.items():
            metrics.VERDICTS.labels(tenant, action).inc(n)
        for plugin, n in degraded_by.items():
            metrics.DEGRADED_VERDICTS.labels(plugin).inc(n)
        for labels, n in signals_by.items():
            metrics.SIGNALS.labels(*labels).inc(n)
