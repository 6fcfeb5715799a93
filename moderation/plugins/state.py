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

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

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


# What percent-encoding (quote with safe="") leaves as it is: names made only of these are their own key part.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def key_part(value: str) -> str:
    """A tenant, author, post id or cluster id as part of a store key: percent-encoded, so that a ":" in it
    cannot make two different names share a key. Most names need no encoding, and urllib's quote costs ~4 us a
    call, several per post."""
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="")


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


# Each method of the Redis store is one script call per chunk of keys, not one command per key: with redis-py a
# pipelined command costs ~10 us of client CPU to pack and parse, and a batch of 256 posts touches ~4,000
# flood buckets, so per-key commands made the flood plugin the most expensive part of a worker. Scripts are
# atomic, so concurrent workers never interleave inside one. Timestamps are integer milliseconds, sent as
# decimal strings and formatted back with "%d", so that Lua's %.14g number formatting never rounds one.

# KEYS: windows (a key may repeat). ARGV: window_ms, ttl_ms, then per key its (member, ts_ms), in order.
# Per entry: ZADD NX + ZSCORE make a redelivered member count once, at its first timestamp; the count is of the
# members in (t - window, t]. Returns the counts, in order.
_WINDOW_ADD_LUA = """
local window, ttl = tonumber(ARGV[1]), ARGV[2]
local counts = {}
for i, key in ipairs(KEYS) do
    local member = ARGV[1 + 2 * i]
    redis.call('ZADD', key, 'NX', ARGV[2 + 2 * i], member)
    local t = tonumber(redis.call('ZSCORE', key, member))
    redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', t - window))
    counts[i] = redis.call('ZCOUNT', key, string.format('(%d', t - window), string.format('%d', t))
    redis.call('PEXPIRE', key, ttl)
end
return counts
"""

# KEYS: buckets. ARGV: min_ts_ms, limit. Returns, for each non-empty bucket only (most are empty), its index
# in KEYS, its member count n and its n newest members: a flat list, cheap to send and to parse.
_BUCKETS_GET_LUA = """
local found = {}
for i, key in ipairs(KEYS) do
    local members = redis.call('ZREVRANGEBYSCORE', key, '+inf', ARGV[1], 'LIMIT', 0, ARGV[2])
    if #members > 0 then
        found[#found + 1] = i
        found[#found + 1] = #members
        for _, member in ipairs(members) do
            found[#found + 1] = member
        end
    end
end
return found
"""

# KEYS: buckets (distinct). ARGV: window_ms, ttl_ms, then per key: n, then n (ts_ms, member) pairs. Members
# keep their first timestamp (NX); each bucket is trimmed to the window of its newest new member and re-armed.
_BUCKETS_ADD_LUA = """
local window, ttl = tonumber(ARGV[1]), ARGV[2]
local a = 3
for _, key in ipairs(KEYS) do
    local n = tonumber(ARGV[a])
    local newest = nil
    for j = 1, n do
        local ts = ARGV[a + 2 * j - 1]
        redis.call('ZADD', key, 'NX', ts, ARGV[a + 2 * j])
        if newest == nil or tonumber(ts) > newest then
            newest = tonumber(ts)
        end
    end
    a = a + 1 + 2 * n
    redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', newest - window))
    redis.call('PEXPIRE', key, ttl)
end
return 0
"""

# KEYS: records. ARGV: ttl_ms, then one value per key.
_RECORDS_PUT_LUA = """
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[1])
end
return 0
"""

# Keys per script call: bounds how long one call holds Redis (scripts block it) and the size of one request.
SCRIPT_CHUNK = 1024


def _chunks(n: int, size: int = SCRIPT_CHUNK) -> range:
    return range(0, n, size)


class RedisStore:
    """Redis store: sorted sets (score = event time in ms) for windows and buckets, plain keys for records.

    Every method is one round trip (a pipeline of script calls, one per SCRIPT_CHUNK keys) whatever the number
    of entries. The scripts touch several keys, so the store needs one Redis server, not a cluster. Every key
    is prefixed with `prefix` so that several deployments (or tests) can share one Redis. Redis errors become
    StateStoreError.
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
        self._buckets_get = self.client.register_script(_BUCKETS_GET_LUA)
        self._buckets_add = self.client.register_script(_BUCKETS_ADD_LUA)
        self._records_put = self.client.register_script(_RECORDS_PUT_LUA)

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
        head = [to_ms(window_seconds), ttl_ms(window_seconds)]

        def build(pipe: Any) -> None:
            for lo in _chunks(len(entries)):
                part = entries[lo : lo + SCRIPT_CHUNK]
                args = head + [x for _, member, ts in part for x in (member, to_ms(ts))]
                self._window_add(keys=[self._k(key) for key, _, _ in part], args=args, client=pipe)

        return [int(n) for counts in self._run(build) for n in counts]

    def buckets_get(self, keys: Sequence[str], min_ts: float, limit: int) -> dict[str, list[str]]:
        if not keys:
            return {}
        args = [to_ms(min_ts), limit]

        def build(pipe: Any) -> None:
            for lo in _chunks(len(keys)):
                self._buckets_get(keys=[self._k(k) for k in keys[lo : lo + SCRIPT_CHUNK]], args=args, client=pipe)

        out: dict[str, list[str]] = {}
        for lo, found in zip(_chunks(len(keys)), self._run(build), strict=True):
            i = 0
            while i < len(found):
                index, count = int(found[i]), int(found[i + 1])
                members = found[i + 2 : i + 2 + count]
                out[keys[lo + index - 1]] = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
                i += 2 + count
        return out

    def buckets_add(self, entries: Sequence[WindowEntry], window_seconds: float) -> None:
        if not entries:
            return
        head = [to_ms(window_seconds), ttl_ms(window_seconds)]
        # Group by key: each bucket is trimmed and re-armed once, whatever the number of new members.
        by_key: dict[str, dict[str, int]] = {}
        for key, member, ts in entries:
            by_key.setdefault(key, {}).setdefault(member, to_ms(ts))
        grouped = list(by_key.items())

        def build(pipe: Any) -> None:
            for lo in _chunks(len(grouped)):
                part = grouped[lo : lo + SCRIPT_CHUNK]
                args: list[Any] = list(head)
                for _, members in part:
                    args.append(len(members))
                    for member, ts in members.items():
                        args += (ts, member)
                self._buckets_add(keys=[self._k(key) for key, _ in part], args=args, client=pipe)

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
        items = list(records.items())

        def build(pipe: Any) -> None:
            for lo in _chunks(len(items)):
                part = items[lo : lo + SCRIPT_CHUNK]
                keys = [self._k(key) for key, _ in part]
                self._records_put(keys=keys, args=[px, *(value for _, value in part)], client=pipe)

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
    # Prefix of this plugin's Redis keys; unset: the deployment's, $MODERATION_STATE_PREFIX ("moderation:").
    state_prefix: str | None = None

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
    prefix = options.state_prefix if options.state_prefix is not None else Endpoints.from_env().state_prefix
    return RedisStore(state, prefix=prefix)


def event_seconds(post: Post, now: float) -> float:
    """The post's created_at in epoch seconds (a naive time is taken as UTC), or `now` when it has none."""
    if post.created_at is None:
        return now
    created = post.created_at if post.created_at.tzinfo is not None else post.created_at.replace(tzinfo=UTC)
    return created.timestamp()
