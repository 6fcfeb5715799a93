"""The shared store against a real Redis: what one worker adds, another sees."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from moderation.errors import PluginError
from moderation.plugins.flood import FloodPlugin
from moderation.plugins.state import MemoryStore, RedisStore, store_from_options
from tests.unit.plugins.conftest import settings
from tests.unit.plugins.test_flood import campaign

URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"test-{uuid.uuid4().hex[:8]}:"
    yield p
    client = redis.Redis.from_url(URL)
    keys = list(client.scan_iter(f"{p}*"))
    if keys:
        client.delete(*keys)


@pytest.mark.integration
def test_two_workers_share_one_view_of_the_stream(prefix: str) -> None:
    options = {"state": URL, "state_prefix": prefix}
    worker_a, worker_b = FloodPlugin(settings(), options), FloodPlugin(settings(), options)
    posts = campaign(10)
    for i, p in enumerate(posts):
        signal = (worker_a if i % 2 else worker_b).evaluate([p])[0][0]
    assert signal.label == "flood" and signal.details["cluster_size"] == 10


@pytest.mark.integration
def test_redis_and_memory_stores_agree(prefix: str) -> None:
    stores = [MemoryStore(), RedisStore(URL, prefix)]
    for store in stores:
        assert store.window_add("k", "p1", 100.0, 10) == 1
        assert store.window_add("k", "p1", 101.0, 10) == 1  # same member: counted once
        assert store.window_add("k", "p2", 105.0, 10) == 2
        assert store.window_add("k", "p3", 112.0, 10) == 2  # p1 (t=100) left the window
        assert store.buckets_add(["b1", "b2"], "x", 1.0, 60) == set()
        assert store.buckets_add(["b2"], "y", 2.0, 60) == {"x"}
        store.put_values({"v": b"\x00\x01"}, 60)
        assert store.get_values(["v", "missing"]) == [b"\x00\x01", None]


def test_unknown_state_option_fails_naming_the_plugin() -> None:
    with pytest.raises(PluginError, match="flood"):
        store_from_options({"state": "mysql://x"}, "flood")
