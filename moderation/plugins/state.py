"""Shared state for the stream-wide plugins (flood, rate), so that they see the whole stream, not one process's share.

A Celery deployment runs many worker processes, each moderating a slice of the stream; a flood campaign or a
posting burst is only visible in the union of those slices. The plugins therefore keep their windows in a
`StateStore`: `MemoryStore` inside one process (tests, `moderation scan`), `RedisStore` across processes.
`state = "auto"` (the default) picks for the process: memory in `moderation scan`, Redis in the workers, where
process memory is refused outright (`require_shared_state`).

The operations are the few the plugins need, each batched so that a plugin makes a constant number of round
trips per batch, not per post:

* `window_add`: add a timestamped member to a per-key sliding window and count the members inside it (rate).
* `buckets_get` / `buckets_add`: MinHash LSH band buckets, each a time-ordered set of post ids (flood).
* `records_get` / `records_put`: small opaque per-post records (flood keeps a post's signature there).

Timestamps are event times in seconds (the posts' `created_at`), kept as integer milliseconds: Redis scores are
doubles and Lua formats numbers with 14 significant digits, which would round sub-second epoch floats but keeps
13-digit millisecond integers exact. Adding a member that is already present keeps its first timestamp, so a
redelivered post (same id) is counted once, at the time it was first seen.

Windows are trimmed relative to the timestamp being added (members at or before `ts - window` are dropped).
A post that arrives much later than its neighbours (out of order by more than a window) may therefore be
compared against a trimmed window; that undercounts slightly, never overcounts. Keys also expire in wall-clock
time (twice the window by default) so that abandoned keys never accumulate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any, Protocol, runtime_checkable

from pydantic import field_validator

from moderation.endpoints import Endpoints
from moderation.errors import ConfigError, StateStoreError
from moderation.plugins.base import PluginOptions
from moderation.posts import Post

DEFAULT_PREFIX = "moderation:"

# (key, member, timestamp in seconds): one member added to one key's window.
WindowEntry = tuple[str, str, float]


def to_ms(ts: float) -> int:
    """Event time in seconds -> the integer milliseconds every store keys its windows on."""
    return round(ts * 1000.0)


def ttl_ms(window_seconds: float) -> int:
    """Wall-clock lifetime of a window's keys: two windows, so late or slow traffic still finds them."""
    return max(1000, to_ms(2.0 * window_seconds))


@runtime_checkable
class StateStore(Protocol):
    """Where the stream-wide plugins keep their windows. Keys are logical; a store may prefix them."""

    def window_add(self, entries: Sequence[WindowEntry], window_seconds: float) -> list[int]:
        """Add each (key, member, ts), in order; for each, the number of the key's members with a timestamp in
        (t - window, t], itself included, where t is the member's timestamp (its first one, if it was already
        there). Members at or before t - window are dropped."""
        ...

    def buckets_get(self, keys: Sequence[str], min_ts: float, limit: int) -> dict[str, list[str]]:
        """For each key, the members with a timestamp >= min_ts, newest first, at most `limit` of them."""
        ...

    def buckets_add(self, entries: Sequence[WindowEntry], window_seconds: float) -> None:
        """Add members to buckets (keeping a member's first timestamp) and drop those older than the window."""
        ...

    def records_get(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored records for those keys that have one (absent or expired keys are left out)."""
        ...

    def records_put(self, records: Mapping[str, bytes], ttl_seconds: float) -> None:
        """Store (overwrite) records, each expiring after ttl_seconds of wall-clock time."""
        ...

    def close(self) -> None:
        """Release connections, if any."""
        ...


class MemoryStore:
    """In-process store: thread-safe, exact, and gone when the process exits.

    Expiry is lazy: a key past its wall-clock deadline is treated as absent when touched, and a sweep over all
    keys runs at most every `sweep_seconds`, so memory stays bounded by the traffic of about two windows.
    `clock` (monotonic seconds) is injectable so tests can expire keys without sleeping.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, sweep_seconds: float = 60.0) -> None:
        self._clock = clock
        self._sweep_seconds = sweep_seconds
        self._lock = threading.Lock()
        # key -> (wall-clock deadline, {member: ts_ms})
        self._zsets: dict[str, tuple[float, dict[str, int]]] = {}
        # key -> (wall-clock deadline, record)
        self._records: dict[str, tuple[float, bytes]] = {}
        self._last_sweep = clock()

    # -- helpers, called with the lock held ---------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self._sweep_seconds:
            return
        self._last_sweep = now
        for zkey in [k for k, (deadline, _) in self._zsets.items() if deadline <= now]:
            del self._zsets[zkey]
        for rkey in [k for k, (deadline, _) in self._records.items() if deadline <= now]:
            del self._records[rkey]

    def _zset(self, key: str, now: float) -> dict[str, int] | None:
        entry = self._zsets.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._zsets[key]
            return None
        return entry[1]

    def _zadd_nx(self, key: str, member: str, ts: int, window: int, ttl: float, now: float) -> dict[str, int]:
        zset = self._zset(key, now)
        if zset is None:
            zset = {}
        first = zset.setdefault(member, ts)
        cutoff = first - window
        for old in [m for m, t in zset.items() if t <= cutoff]:
            del zset[old]
        self._zsets[key] = (now + ttl, zset)
        return zset

    # -- StateStore -------------------------------------------------------------------------------------

    def window_add(self, entries: Sequence[WindowEntry], window_seconds: float) -> list[int]:
        window, ttl = to_ms(window_seconds), ttl_ms(window_seconds) / 1000.0
        counts: list[int] = []
        with self._lock:
            now = self._clock()
            self._sweep(now)
            for key, member, ts in entries:
                zset = self._zadd_nx(key, member, to_ms(ts), window, ttl, now)
                t = zset[member]
                counts.append(sum(1 for v in zset.values() if t - window < v <= t))
        return counts

    def buckets_get(self, keys: Sequence[str], min_ts: float, limit: int) -> dict[str, list[str]]:
        low = to_ms(min_ts)
        out: dict[str, list[str]] = {}
        with self._lock:
            now = self._clock()
            for key in keys:
                zset = self._zset(key, now)
                if not zset:
                    continue
                recent = sorted(((t, m) for m, t in zset.items() if t >= low), reverse=True)[:limit]
                if recent:
                    out[key] = [m for _, m in recent]
        return out

    def buckets_add(self, entries: Sequence[WindowEntry], window_seconds: float) -> None:
        window, ttl = to_ms(window_seconds), ttl_ms(window_seconds) / 1000.0
        with self._lock:
            now = self._clock()
            self._sweep(now)
            for key, member, ts in entries:
                self._zadd_nx(key, member, to_ms(ts), window, ttl, now)

    def records_get(self, keys: Sequence[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        with self._lock:
            now = self._clock()
            for key in keys:
                entry = self._records.get(key)
                if entry is None:
                    continue
                if entry[0] <= now:
                    del self._records[key]
                    continue
                out[key] = entry[1]
        return out

    def records_put(self, records: Mapping[str, bytes], ttl_seconds: float) -> None:
        with self._lock:
            now = self._clock()
            self._sweep(now)
            for key, value in records.items():
                self._records[key] = (now + ttl_seconds, bytes(value))

    def close(self) -> None:
        with self._lock:
            self._zsets.clear()
            self._records.clear()


# KEYS[1]: the window's sorted set. ARGV: member, ts_ms, window_ms, ttl_ms. Atomic, so concurrent workers
# adding to one author's window never lose a count; ZADD NX + ZSCORE make a redelivered member count once,
# at its first timestamp. Numbers are integer milliseconds, formatted with %d so that Lua's %.14g never rounds.
_WINDOW_ADD_LUA = """
local key = KEYS[1]
local member = ARGV[1]
local window = tonumber(ARGV[3])
redis.call('ZADD', key, 'NX', ARGV[2], member)
local t = tonumber(redis.call('ZSCORE', key, member))
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', t - window))
local n = redis.call('ZCOUNT', key, string.format('(%d', t - window), string.format('%d', t))
redis.call('PEXPIRE', key, ARGV[4])
return n
"""


class RedisStore:
    """Redis store: sorted sets (score = event time in ms) for windows and buckets, plain keys for records.

    Every method is one pipeline (one round trip) whatever the number of entries. Every key is prefixed with
    `prefix` so that several deployments (or tests) can share one Redis. Redis errors become StateStoreError.
    """

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, client: Any | None = None) -> None:
        import redis  # imported here so that the memory store (and the tests using it) never need it

        self._redis_error: type[Exception] = redis.RedisError
        self.prefix = prefix
        self.client: Any = (
            client
            if client is not None
            else redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        )
        self._window_add = self.client.register_script(_WINDOW_ADD_LUA)

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _run(self, build: Callable[[Any], None]) -> list[Any]:
        """Queue commands with `build(pipeline)` and execute them in one round trip, translating errors."""
        try:
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            return list(pipe.execute())
        except self._redis_error as exc:
            raise StateStoreError(f"redis state store failed: {type(exc).__name__}: {exc}") from exc

    def window_add(self, entries: Sequence[WindowEntry], window_seconds: float) -> list[int]:
        if not entries:
            return []
        window, ttl = to_ms(window_seconds), ttl_ms(window_seconds)

        def build(pipe: Any) -> None:
            for key, member, ts in entries:
                self._window_add(keys=[self._k(key)], args=[member, to_ms(ts), window, ttl], client=pipe)

        return [int(n) for n in self._run(build)]

    def buckets_get(self, keys: Sequence[str], min_ts: float, limit: int) -> dict[str, list[str]]:
        if not keys:
            return {}
        low = to_ms(min_ts)

        def build(pipe: Any) -> None:
            for key in keys:
                pipe.zrevrangebyscore(self._k(key), "+inf", low, start=0, num=limit)

        out: dict[str, list[str]] = {}
        for key, members in zip(keys, self._run(build), strict=True):
            if members:
                out[key] = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        return out

    def buckets_add(self, entries: Sequence[WindowEntry], window_seconds: float) -> None:
        if not entries:
            return
        window, ttl = to_ms(window_seconds), ttl_ms(window_seconds)
        # Group by key so that each bucket is trimmed and re-armed once, whatever the number of new members.
        by_key: dict[str, dict[str, int]] = {}
        for key, member, ts in entries:
            by_key.setdefault(key, {}).setdefault(member, to_ms(ts))

        def build(pipe: Any) -> None:
            for key, members in by_key.items():
                rkey = self._k(key)
                pipe.zadd(rkey, members, nx=True)
                pipe.zremrangebyscore(rkey, "-inf", max(members.values()) - window)
                pipe.pexpire(rkey, ttl)

        self._run(build)

    def records_get(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        unique = list(dict.fromkeys(keys))

        def build(pipe: Any) -> None:
            pipe.mget([self._k(k) for k in unique])

        (values,) = self._run(build)
        return {k: bytes(v) for k, v in zip(unique, values, strict=True) if v is not None}

    def records_put(self, records: Mapping[str, bytes], ttl_seconds: float) -> None:
        if not records:
            return
        px = max(1, to_ms(ttl_seconds))

        def build(pipe: Any) -> None:
            for key, value in records.items():
                pipe.set(self._k(key), value, px=px)

        self._run(build)

    def close(self) -> None:
        self.client.close()


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_shared_required = False


def require_shared_state() -> None:
    """Called by every process that is one of many moderating one stream (each Celery worker process): from
    then on `state = "memory"` is refused at start, since each process would count only its own share of the
    stream, and `state = "auto"` means Redis ($MODERATION_STATE_URL, else a local Redis)."""
    global _shared_required
    _shared_required = True


class StateOptions(PluginOptions):
    """The options of every plugin that keeps windows in a StateStore."""

    # "auto": memory in a lone process (`moderation scan`), Redis in the workers; or "memory", or a redis:// URL.
    state: str = "auto"
    state_prefix: str = DEFAULT_PREFIX

    @field_validator("state")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ("auto", "memory") and not value.startswith(_REDIS_SCHEMES):
            raise ValueError('expected "auto", "memory" or a redis:// (rediss://, unix://) URL')
        return value


def store_from_options(options: StateOptions, plugin: str = "plugin") -> StateStore:
    """The store a plugin's options ask for (see StateOptions), with `state_prefix` prefixing every Redis key."""
    state = options.state
    if state == "auto":
        # In the workers: $MODERATION_STATE_URL (moderation.endpoints), else a local Redis.
        state = Endpoints.from_env().state_url if _shared_required else "memory"
    if state == "memory":
        if _shared_required:
            raise ConfigError(
                f'plugins.{plugin}.state: "memory" would count only one worker process\'s share of the stream; '
                'use "auto" or a redis:// URL'
            )
        return MemoryStore()
    return RedisStore(state, prefix=options.state_prefix)


def event_seconds(post: Post, now: float) -> float:
    """The post's created_at in epoch seconds (a naive time is taken as UTC), or `now` when it has none."""
    if post.created_at is None:
        return now
    created = post.created_at if post.created_at.tzinfo is not None else post.created_at.replace(tzinfo=UTC)
    return created.timestamp()
