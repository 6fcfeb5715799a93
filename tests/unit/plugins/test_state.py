"""The StateStore contract, for the in-process store and (integration) the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from moderation.config import parse_settings
from moderation.errors import ConfigError, PluginError, StateStoreError
from moderation.plugins import state
from moderation.plugins.flood import FloodOptions, FloodPlugin
from moderation.plugins.rate import RateOptions, RatePlugin
from moderation.plugins.registry import build_plugin
from moderation.plugins.state import MemoryStore, RedisStore, StateOptions, StateStore, store_from_options
from moderation.posts import Post
from tests.unit.plugins.test_flood import SLOTS, TEMPLATE, copies

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix per test; every key under it is deleted afterwards."""
    import redis

    prefix = f"moderation-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        s: StateStore = MemoryStore()
    else:
        s = RedisStore(REDIS_URL, prefix=request.getfixturevalue("redis_prefix"))
    yield s
    s.close()


def test_window_counts_slide_and_keep_a_members_first_time(store: StateStore) -> None:
    counts = store.window_add(
        [
            ("k", "p1", 100.0),
            ("k", "p1", 101.0),  # the same member again (redelivery): counted once, at t=100
            ("k", "p2", 105.5),
            ("other", "p1", 106.0),  # another key is another window
            ("k", "p3", 110.0),  # window (100, 110]: p1 at exactly t - window has left
            ("k", "p4", 115.6),  # window (105.6, 115.6]: p2 at 105.5 has left
        ],
        window_seconds=10,
    )
    assert counts == [1, 1, 2, 1, 2, 2]
    assert store.window_add([], 10) == []
    # A redelivered member is judged at its first time, so it gets its first count back.
    assert store.window_add([("k", "p4", 200.0)], 10) == [2]


def test_buckets_return_recent_members_newest_first(store: StateStore) -> None:
    store.buckets_add([("b1", "x", 1.0), ("b1", "y", 2.0), ("b2", "y", 2.0), ("b1", "z", 3.0)], 60)
    store.buckets_add([("b1", "x", 50.0)], 60)  # already there: keeps t=1
    assert store.buckets_get(["b1", "b2", "missing"], 0.0, 10) == {"b1": ["z", "y", "x"], "b2": ["y"]}
    assert store.buckets_get(["b1"], 2.0, 10) == {"b1": ["z", "y"]}
    assert store.buckets_get(["b1"], 0.0, 2) == {"b1": ["z", "y"]}
    store.buckets_add([("b1", "w", 62.5)], 60)  # trims everything at or before t=2.5
    assert store.buckets_get(["b1"], 0.0, 10) == {"b1": ["w", "z"]}


def test_records_round_trip(store: StateStore) -> None:
    store.records_put({"r1": b"\x00\x01\xff", "r2": b""}, 60)
    assert store.records_get(["r1", "r2", "missing", "r1"]) == {"r1": b"\x00\x01\xff", "r2": b""}
    store.records_put({"r1": b"new"}, 60)
    assert store.records_get(["r1"]) == {"r1": b"new"}
    assert store.records_get([]) == {}


def test_batches_larger_than_one_script_call_keep_order_and_lose_nothing(store: StateStore) -> None:
    """The Redis store sends SCRIPT_CHUNK keys per script call: a batch spanning several calls must behave like
    one (window counts in stream order across the chunk boundary, every bucket and record found)."""
    n = 2 * state.SCRIPT_CHUNK + 37
    # One window key, every member in order: the counts grow by one across every chunk boundary.
    assert store.window_add([("w", f"m{i}", 1000.0 + i) for i in range(n)], 10_000) == list(range(1, n + 1))
    store.buckets_add([(f"b{i}", f"m{i}", 1000.0 + i) for i in range(n)] + [("b5", "extra", 1.0)], 10_000)
    got = store.buckets_get([f"b{i}" for i in range(n)] + ["missing"], 0.0, 10)
    assert len(got) == n and got["b5"] == ["m5", "extra"] and got[f"b{n - 1}"] == [f"m{n - 1}"]
    store.records_put({f"r{i}": str(i).encode() for i in range(n)}, 60)
    assert store.records_get([f"r{i}" for i in range(n)]) == {f"r{i}": str(i).encode() for i in range(n)}


def test_memory_store_expires_keys_in_wall_clock_time() -> None:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0], sweep_seconds=1)
    store.records_put({"r": b"x"}, ttl_seconds=5)
    store.window_add([("w", "m", 1000.0)], window_seconds=10)  # keys live for two windows: 20 s
    now[0] = 4.0
    assert store.records_get(["r"]) == {"r": b"x"}
    now[0] = 6.0
    assert store.records_get(["r"]) == {}
    now[0] = 21.0
    store.records_put({}, 1)  # any write sweeps
    assert store._zsets == {} and store._records == {}


@pytest.mark.integration
def test_redis_keys_are_prefixed_and_expire(redis_prefix: str) -> None:
    import redis

    store = RedisStore(REDIS_URL, prefix=redis_prefix)
    store.window_add([("w", "m", 1000.0)], window_seconds=30)
    store.records_put({"r": b"x"}, ttl_seconds=30)
    store.buckets_add([("b", "m", 1000.0)], window_seconds=30)
    client = redis.Redis.from_url(REDIS_URL)
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{redis_prefix}*"))
    assert keys == [f"{redis_prefix}b", f"{redis_prefix}r", f"{redis_prefix}w"]
    assert all(0 < client.pttl(k) <= 60_000 for k in keys)
    client.close()


@pytest.mark.integration
def test_two_workers_share_one_view_of_the_stream(redis_prefix: str) -> None:
    """Two plugin instances (two worker processes) on one Redis see each other's posts."""
    settings = parse_settings({})
    workers = [FloodPlugin(settings, FloodOptions(state=REDIS_URL, state_prefix=redis_prefix)) for _ in range(2)]
    signals = [workers[i % 2].evaluate([p])[0][0] for i, p in enumerate(copies(TEMPLATE, SLOTS, 10))]
    assert [s.label for s in signals[3:]] == ["near_duplicate"] + ["flood"] * 6
    assert signals[-1].details["cluster_size"] == 10 and signals[-1].details["distinct_authors"] == 10

    raters = [
        RatePlugin(settings, RateOptions(state=REDIS_URL, state_prefix=redis_prefix, max_posts=3)) for _ in range(2)
    ]
    t0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    posts = [Post(id=f"r{i}", text="x", author="alice", created_at=t0 + timedelta(seconds=i)) for i in range(5)]
    labels = [raters[i % 2].evaluate([p])[0][0].label for i, p in enumerate(posts)]
    assert labels == ["ok", "ok", "ok", "rate_exceeded", "rate_exceeded"]
    assert raters[0].evaluate([posts[4]])[0][0].details["posts_in_window"] == 5  # redelivered: still 5


def test_store_from_options() -> None:
    assert isinstance(store_from_options(StateOptions()), MemoryStore)  # "auto" in a lone process
    assert isinstance(store_from_options(StateOptions(state="memory")), MemoryStore)
    redis_store = store_from_options(StateOptions(state=REDIS_URL, state_prefix="x:"))  # connects lazily
    assert isinstance(redis_store, RedisStore) and redis_store.prefix == "x:"


def test_a_plugin_without_its_own_prefix_takes_the_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two deployments (or two test pipelines) on one Redis: each keeps its keys apart with its own prefix."""
    assert cast(RedisStore, store_from_options(StateOptions(state=REDIS_URL))).prefix == "moderation:"
    monkeypatch.setenv("MODERATION_STATE_PREFIX", "site-b:")
    assert cast(RedisStore, store_from_options(StateOptions(state=REDIS_URL))).prefix == "site-b:"
    assert cast(RedisStore, store_from_options(StateOptions(state=REDIS_URL, state_prefix="own:"))).prefix == "own:"


def test_bad_store_options_are_refused_without_echoing_secrets() -> None:
    settings = parse_settings({})
    with pytest.raises(PluginError, match=r"plugins\.flood\.state") as info:
        build_plugin("flood", settings, {"state": "mysql://user:secret@db"})
    assert "secret" not in str(info.value)
    with pytest.raises(PluginError, match="state_prefix"):
        build_plugin("rate", settings, {"state_prefix": 3})


def test_workers_refuse_process_memory_and_auto_means_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker process would count only its own share of the stream in memory: refused at start."""
    monkeypatch.setattr(state, "_shared_required", False)
    state.require_shared_state()
    monkeypatch.setenv("MODERATION_STATE_URL", REDIS_URL)
    with pytest.raises(ConfigError, match=r"plugins\.rate\.state"):
        store_from_options(StateOptions(state="memory"), "rate")
    auto = store_from_options(StateOptions())
    assert isinstance(auto, RedisStore)


def test_an_unreachable_redis_raises_state_store_error() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(StateStoreError):
        store.window_add([("k", "m", 1.0)], 10)
    with pytest.raises(StateStoreError):
        store.records_get(["k"])
