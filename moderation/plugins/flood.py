"""The flood plugin: near-duplicate posts across the stream and across authors (coordinated campaigns).

A campaign posts one template many times, from many accounts, with a few words swapped in each copy so that
no copy is an exact duplicate and each looks innocent on its own. What gives it away is the cluster: many
posts within an hour that share most of their word sequences. For every post the plugin counts the distinct
earlier posts (same tenant, within `window_seconds` of its `created_at`) whose estimated Jaccard similarity
of word shingles is at least `similarity`, and scores the cluster's size.

How, and why this way:

* Text is normalised before shingling so that the cheap evasions do not break shingles: NFKC, invisible
  format characters removed (a zero-width space inside a word would split it), lower case, punctuation
  dropped, every URL replaced by one placeholder word (campaigns give each copy its own tracking link) and
  every number by "0" ("win $500" / "win $1000").
* Shingles are `shingle_size`-word sequences, hashed to 64 bits: each word by a polynomial hash of its UTF-8
  bytes (`word_hashes`, prefix sums over the whole batch), then the sequences are combined with numpy, so there
  is no Python loop per word or shingle.
* MinHash with `num_perm` hash functions h_i(x) = splitmix64(x XOR seed_i) (seeds from a fixed `seed`, so
  every worker process computes the same signatures), vectorised as one (num_perm x shingles) array. The
  fraction of equal signature slots estimates the Jaccard similarity (standard error about
  sqrt(J(1-J)/num_perm), 0.06 at 64). Slots are kept as 32 bits: collisions at 2**-32 are negligible and
  the records in Redis are half the size.
* LSH banding (`bands` x rows = num_perm): two posts become candidates when any band of their signatures is
  identical. With 16 x 4, a pair at J = 0.6 is a candidate with probability 0.89, at 0.8 with 1.0, at 0.3
  with 0.12, so only plausible neighbours are fetched and compared exactly (on the signatures).
* Copies of a paraphrased campaign are not all pairwise similar: two copies that swapped different words may
  fall just under the threshold even though both are close to the template. So similar posts are chained
  into clusters: a post with similar earlier posts joins the oldest of their clusters (pulling those
  neighbours in, so clusters of one campaign merge), and `cluster_size` is the larger of 1 + its direct
  neighbours and the number of the cluster's posts within the window. A human post has no neighbour at the
  threshold, so it never joins a cluster; chaining only widens what a real near-duplicate is counted with
  (though a long run of overlapping excerpts of one document can chain into one cluster). `chain = false`
  turns it off: `cluster_size` is then 1 + the direct neighbours only.
* The buckets and each post's record (signature, author, time) live in the StateStore, so every worker sees
  the whole stream; a batch makes a constant number of round trips per tenant (five), not per post. Earlier
  posts of the same batch are found through an in-batch index, so a campaign arriving in one batch is caught.

Redelivery: a post id already in the store is never its own duplicate, and keeps the time it was first seen.
Posts seen so far count whichever order they arrived in, as long as their `created_at` is within the window
of this one, because partitions deliver slightly out of order. A bucket returns at most `max_candidates`
members (the newest), which bounds the work per post during a huge flood; `cluster_size` then saturates.
If the store cannot be reached, the tenant's posts abstain with reason "state_unavailable".
"""

from __future__ import annotations

import logging
import struct
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar, cast

import numpy as np
import numpy.typing as npt
from pydantic import Field, StrictBool, model_validator

from moderation.charclasses import is_invisible
from moderation.config import Settings
from moderation.errors import StateStoreError
from moderation.plugins.base import Plugin, PluginOptions, SignalDetails, StoredSignal
from moderation.plugins.state import (
    StateOptions,
    StateStore,
    event_seconds,
    key_part,
    store_from_options,
    to_ms,
)
from moderation.plugins.text import URL, lower_words, may_contain_url
from moderation.posts import Post
from moderation.signals import Signal

log = logging.getLogger(__name__)

LABEL_FLOOD = "flood"
LABEL_NEAR_DUPLICATE = "near_duplicate"
LABEL_UNIQUE = "unique"
MAX_EVIDENCE = 10

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]

_URL_WORD = "xurlx"

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)

# Record layout: format version (1 byte), has-author flag (1 byte), first-seen time in ms (int64), cluster id
# length (uint16), signature (num_perm little-endian uint32), cluster id (UTF-8), author (UTF-8, the rest).
_RECORD_HEAD = struct.Struct("<BBqH")
_RECORD_VERSION = 2


def mix64(x: U64) -> U64:
    """splitmix64's finaliser, elementwise; uint64 arithmetic wraps modulo 2**64, which is what it wants."""
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def normalise_words(text: str) -> list[str]:
    """The words shingles are made of: see the module docstring for why each step is there."""
    if not text.isascii():  # ASCII is already NFKC and holds no invisible format characters
        text = unicodedata.normalize("NFKC", text)
        text = "".join(ch for ch in text if not is_invisible(ch))  # they would split words and shingles
    if may_contain_url(text):
        text = URL.sub(f" {_URL_WORD} ", text)
    words = lower_words(text)
    if text.isascii():
        return words  # numbers become "0" when hashed (word_hashes), which is cheaper than a pass per word here
    return ["0" if w.isdigit() else w for w in words]


# Word hashes: a polynomial hash of the word's UTF-8 bytes modulo 2**64 (odd base), then mixed. Computed for
# a whole batch at once with prefix sums (below), so no Python code runs per word. Changing it changes every
# signature: bump the key namespace (FloodPlugin._ns) with it.
_BASE = np.uint64(0x9E3779B97F4A7C15)
_BASE_INVERSE = np.uint64(pow(0x9E3779B97F4A7C15, -1, 2**64))
_SPACE, _ZERO, _NINE = 0x20, 0x30, 0x39


class _Powers:
    """BASE**k and BASE**-k modulo 2**64 for k < len, grown on demand (uint64 products wrap, as wanted)."""

    def __init__(self) -> None:
        self.up: U64 = np.ones(1, dtype=np.uint64)
        self.down: U64 = np.ones(1, dtype=np.uint64)

    def ensure(self, n: int) -> None:
        if self.up.shape[0] >= n:
            return
        size = max(n, 2 * self.up.shape[0])
        self.up, self.down = np.full(size, _BASE, dtype=np.uint64), np.full(size, _BASE_INVERSE, dtype=np.uint64)
        self.up[0] = self.down[0] = 1
        np.cumprod(self.up, out=self.up)
        np.cumprod(self.down, out=self.down)


_POWERS = _Powers()
_ZERO_HASH = mix64(np.array([_ZERO ^ 1], dtype=np.uint64))[0]  # what word_hashes gives the word "0"


def word_hashes(data: bytes) -> tuple[U64, I64]:
    """(hash of each word, byte offset where it starts) for space-separated words. A word of ASCII digits
    only hashes as "0" (a number is a number: "win $500" / "win $1000")."""
    b = np.frombuffer(data, dtype=np.uint8)
    edges = np.diff(np.concatenate([[0], (b != _SPACE).view(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if starts.shape[0] == 0:
        return np.empty(0, dtype=np.uint64), starts
    _POWERS.ensure(b.shape[0] + 1)
    # sum over a word of byte_j * BASE**(end-1-j) = BASE**(end-1) * (prefix[end] - prefix[start]), where
    # prefix sums byte_j * BASE**-j.
    prefix = np.zeros(b.shape[0] + 1, dtype=np.uint64)
    np.cumsum(b.astype(np.uint64) * _POWERS.down[: b.shape[0]], out=prefix[1:])
    poly = (prefix[ends] - prefix[starts]) * _POWERS.up[ends - 1]
    hashes = mix64(poly ^ (ends - starts).astype(np.uint64))
    digits = np.zeros(b.shape[0] + 1, dtype=np.int64)
    np.cumsum((b >= _ZERO) & (b <= _NINE), out=digits[1:])
    number = (digits[ends] - digits[starts]) == ends - starts
    hashes[number] = _ZERO_HASH
    return hashes, starts


def batch_shingle_hashes(word_lists: Sequence[Sequence[str]], size: int) -> tuple[U64, I64]:
    """The distinct 64-bit hashes of each post's `size`-word shingles (order-sensitive) for a whole batch at
    once: post i's are hashes[bounds[i]:bounds[i + 1]], sorted. No Python code runs per word or shingle."""
    if not word_lists:
        return np.empty(0, dtype=np.uint64), np.zeros(1, dtype=np.int64)
    # surrogatepass: a Post built in code (not decoded from a message, which refuses them) may hold a lone surrogate
    encoded = [" ".join(words).encode("utf-8", "surrogatepass") for words in word_lists]
    hashes, word_starts = word_hashes(b" ".join(encoded))
    post_starts = np.cumsum([0] + [len(e) + 1 for e in encoded[:-1]])  # posts are joined by one space
    lengths = np.diff(np.append(np.searchsorted(word_starts, post_starts), word_starts.shape[0]))
    per_post = np.maximum(lengths - size + 1, 0)
    owner = np.repeat(np.arange(len(word_lists), dtype=np.int64), per_post)
    first_word = np.cumsum(lengths) - lengths
    first_shingle = np.cumsum(per_post) - per_post
    start = first_word[owner] + np.arange(owner.shape[0], dtype=np.int64) - first_shingle[owner]
    h = np.zeros(owner.shape[0], dtype=np.uint64)
    for j in range(size):  # a loop over the shingle's positions (3), each step vectorised over the batch
        h = mix64(h ^ hashes[start + j])
    # Distinct within each post: sort by (post, hash) and keep the first of each run.
    order = np.lexsort((h, owner))
    h, owner = h[order], owner[order]
    keep = np.ones(h.shape[0], dtype=np.bool_)
    keep[1:] = (h[1:] != h[:-1]) | (owner[1:] != owner[:-1])
    bounds = np.zeros(len(word_lists) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=len(word_lists)), out=bounds[1:])
    return h[keep], bounds


def shingle_hashes(words: Sequence[str], size: int) -> U64:
    """Distinct 64-bit hashes of one post's `size`-word shingles, or an empty array."""
    return batch_shingle_hashes([words], size)[0]


class MinHasher:
    """Deterministic MinHash signatures and LSH band hashes (the same in every process for the same seed)."""

    def __init__(self, num_perm: int, bands: int, seed: int) -> None:
        if num_perm % bands:
            raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
        self.num_perm, self.bands, self.rows = num_perm, bands, num_perm // bands
        self.seeds: U64 = np.random.default_rng(seed).integers(0, 2**64, size=num_perm, dtype=np.uint64)
        self._band_salt: U64 = mix64(np.arange(1, bands + 1, dtype=np.uint64) ^ np.uint64(seed & (2**64 - 1)))

    def signatures(self, shingles: U64, bounds: I64, chunk: int = 8192) -> U32:
        """Per post (row) and hash function, the minimum of h_i over the post's shingles
        (shingles[bounds[p]:bounds[p + 1]]), kept as its top 32 bits; a post without shingles gets all ones.
        Computed `chunk` shingles at a time across post boundaries, which bounds memory on long posts."""
        posts = bounds.shape[0] - 1
        sig = np.full((posts, self.num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
        owner = np.repeat(np.arange(posts, dtype=np.int64), np.diff(bounds))
        for lo in range(0, shingles.shape[0], chunk):
            hi = min(lo + chunk, shingles.shape[0])
            local = owner[lo:hi]
            starts = np.concatenate([[0], np.flatnonzero(local[1:] != local[:-1]) + 1])
            block = mix64(shingles[None, lo:hi] ^ self.seeds[:, None])
            mins = np.minimum.reduceat(block, starts, axis=1).T
            rows = local[starts]  # each post once per chunk, so this fancy-indexed update is exact
            sig[rows] = np.minimum(sig[rows], mins)
        return (sig >> _S32).astype(np.uint32)

    def signature(self, shingles: U64) -> U32:
        """One post's signature."""
        return self.signatures(shingles, np.array([0, shingles.shape[0]], dtype=np.int64))[0]

    def band_values(self, sigs: U32) -> U64:
        """Per post (row) and band, the hash of that band's rows, salted with the band's index."""
        rows = sigs.reshape(sigs.shape[0], self.bands, self.rows).astype(np.uint64)
        h = np.broadcast_to(self._band_salt, rows.shape[:2])
        for r in range(self.rows):
            h = mix64(h ^ rows[:, :, r])
        return h

    def band_hashes(self, sig: U32) -> list[str]:
        """One key per band of one signature: "<band>:<hash in hex>"."""
        return band_names(self.band_values(sig[None, :]))[0]


def band_names(values: U64) -> list[list[str]]:
    """ "<band>:<16 hex digits>" for each post (row) and band: one hex conversion for the whole batch, since
    formatting each value on its own costs more than computing the signatures."""
    posts, bands = values.shape
    digits = values.astype(">u8").tobytes().hex()
    labels = [f"{band}:" for band in range(bands)]
    return [
        [label + digits[(row * bands + band) * 16 : (row * bands + band + 1) * 16] for band, label in enumerate(labels)]
        for row in range(posts)
    ]


@dataclass
class _Prepared:
    index: int
    post: Post
    ts_ms: int
    sig: U32
    band_keys: list[str]
    shingles: int


@dataclass
class _Record:
    ts_ms: int
    author: str | None
    sig: U32
    cluster: str


def cluster_id(ts_ms: int, post_id: str) -> str:
    """A cluster is named after its founding post, time first, so that the oldest of two sorts first."""
    return f"{max(0, ts_ms):013d}:{post_id}"


def _encode_record(rec: _Record) -> bytes:
    author = (rec.author or "").encode("utf-8")
    cluster = rec.cluster.encode("utf-8")[:65535]
    head = _RECORD_HEAD.pack(_RECORD_VERSION, rec.author is not None, rec.ts_ms, len(cluster))
    return head + rec.sig.astype("<u4").tobytes() + cluster + author


def _decode_record(raw: bytes, num_perm: int) -> _Record | None:
    """The record, or None for one this configuration cannot read (another format or signature length)."""
    sig_end = _RECORD_HEAD.size + 4 * num_perm
    if len(raw) < sig_end:
        return None
    version, has_author, ts_ms, cluster_len = _RECORD_HEAD.unpack_from(raw)
    if version != _RECORD_VERSION or len(raw) < sig_end + cluster_len:
        return None
    sig = np.frombuffer(raw, dtype="<u4", count=num_perm, offset=_RECORD_HEAD.size).astype(np.uint32)
    cluster = raw[sig_end : sig_end + cluster_len].decode("utf-8", errors="replace")
    author = raw[sig_end + cluster_len :].decode("utf-8", errors="replace") if has_author else None
    return _Record(ts_ms=ts_ms, author=author, sig=sig, cluster=cluster)


class FloodOptions(StateOptions):
    window_seconds: Annotated[float, Field(ge=1.0)] = 3600.0
    # Estimated Jaccard similarity of word shingles at which two posts are near-duplicates.
    similarity: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    # Cluster size from which the label is "flood".
    min_cluster: Annotated[int, Field(ge=2)] = 5
    shingle_size: Annotated[int, Field(ge=1)] = 3
    num_perm: Annotated[int, Field(ge=1)] = 64
    bands: Annotated[int, Field(ge=1)] = 16
    min_shingles: Annotated[int, Field(ge=1)] = 5
    seed: Annotated[int, Field(ge=0)] = 1
    max_candidates: Annotated[int, Field(ge=1)] = 1000
    chain: StrictBool = True

    @model_validator(mode="after")
    def _bands_divide(self) -> FloodOptions:
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})")
        return self


class FloodDetails(SignalDetails):
    cluster_size: int
    similar_posts: int
    distinct_authors: int
    max_similarity: float
    candidates: int
    shingles: int


class FloodAbstainDetails(SignalDetails):
    shingles: int | None = None


class FloodPlugin(Plugin):
    name: ClassVar[str] = "flood"
    version: ClassVar[str] = "1.0"
    Options: ClassVar[type[PluginOptions]] = FloodOptions
    Details: ClassVar[type[SignalDetails]] = FloodDetails
    AbstainDetails: ClassVar[type[SignalDetails]] = FloodAbstainDetails
    labels: ClassVar[dict[str, bool]] = {LABEL_FLOOD: True, LABEL_NEAR_DUPLICATE: True, LABEL_UNIQUE: False}
    default_weight: ClassVar[float] = 0.5
    default_cap: ClassVar[float] = 0.5

    def __init__(self, settings: Settings, options: PluginOptions, store: StateStore | None = None) -> None:
        super().__init__(settings, options)
        opts = cast(FloodOptions, options)
        self.window_seconds = opts.window_seconds
        self.similarity = opts.similarity
        self.min_cluster = opts.min_cluster
        self.shingle_size = opts.shingle_size
        self.min_shingles = opts.min_shingles
        self.max_candidates = opts.max_candidates
        self.chain = opts.chain
        self.hasher = MinHasher(opts.num_perm, opts.bands, opts.seed)
        # Signatures from different parameters are incomparable: keep each configuration in its own keys.
        self._ns = f"flood:v2:{self.shingle_size}:{opts.num_perm}x{opts.bands}:{opts.seed}:"
        self.store = store if store is not None else store_from_options(opts, plugin=self.name)

    # -- keys ----------------------------------------------------------------------------------------------

    def _tenant_prefix(self, tenant: str) -> str:
        return f"{self._ns}{key_part(tenant)}"

    def _record_key(self, tenant: str, post_id: str) -> str:
        return f"{self._tenant_prefix(tenant)}:p:{key_part(post_id)}"

    # -- evaluate ------------------------------------------------------------------------------------------

    def _prepare(self, posts: Sequence[Post], now: float, first_index: int = 0) -> list[_Prepared | Signal]:
        """Shingles, signatures and bucket keys of a batch (vectorised across its posts), or the abstention of
        a post too short to judge."""
        words = [normalise_words(post.text) for post in posts]
        shingles, bounds = batch_shingle_hashes(words, self.shingle_size)
        counts = np.diff(bounds).tolist()
        sigs = self.hasher.signatures(shingles, bounds)
        bands = band_names(self.hasher.band_values(sigs))
        prefixes: dict[str, str] = {}
        out: list[_Prepared | Signal] = []
        for i, post in enumerate(posts):
            if counts[i] < self.min_shingles:
                out.append(self.abstain("too_short", FloodAbstainDetails(shingles=counts[i])))
                continue
            if post.tenant not in prefixes:
                prefixes[post.tenant] = self._tenant_prefix(post.tenant) + ":b:"
            keys = [prefixes[post.tenant] + b for b in bands[i]]
            ts_ms = to_ms(event_seconds(post, now))
            out.append(_Prepared(first_index + i, post, ts_ms, sigs[i], keys, counts[i]))
        return out

    def _prepare_each(self, posts: Sequence[Post], now: float) -> list[_Prepared | Signal]:
        """The slow path, when the batch could not be prepared: one post at a time, so that an unreadable post
        abstains alone instead of sinking the batch."""
        out: list[_Prepared | Signal] = []
        for i, post in enumerate(posts):
            try:
                out.extend(self._prepare([post], now, first_index=i))
            except Exception:
                log.exception("flood: could not prepare post %r", post.id)
                out.append(self.abstain("error"))
        return out

    def evaluate(self, posts: Sequence[Post]) -> list[list[Signal]]:
        now = time.time()
        try:
            prepared = self._prepare(posts, now)
        except Exception:
            log.exception("flood: could not prepare a batch of %d posts; preparing them one by one", len(posts))
            prepared = self._prepare_each(posts, now)
        out: list[Signal | None] = [None] * len(posts)
        by_tenant: dict[str, list[_Prepared]] = {}
        for i, item in enumerate(prepared):
            if isinstance(item, Signal):
                out[i] = item
            else:
                by_tenant.setdefault(item.post.tenant, []).append(item)
        for tenant, items in by_tenant.items():
            try:
                for item, signal in zip(items, self._evaluate_tenant(tenant, items), strict=True):
                    out[item.index] = signal
            except StateStoreError as exc:
                log.warning("flood: state store unavailable, abstaining for %d posts: %s", len(items), exc)
                for item in items:
                    out[item.index] = self.abstain("state_unavailable", degraded=True)
        return [[s if s is not None else self.abstain("error")] for s in out]

    def _cluster_key(self, tenant: str, cluster: str) -> str:
        return f"{self._tenant_prefix(tenant)}:c:{key_part(cluster)}"

    def _similar(
        self, sig: U32, ids: list[str], records: Mapping[str, _Record]
    ) -> tuple[list[tuple[float, str]], float]:
        """(similarity, id) of the candidates at or above the threshold, most similar (then newest) first, and
        the highest similarity among all candidates."""
        if not ids:
            return [], 0.0
        sims = (np.stack([records[c].sig for c in ids]) == sig[None, :]).mean(axis=1)
        similar = [(float(s), c) for s, c in zip(sims, ids, strict=True) if s >= self.similarity]
        similar.sort(key=lambda sc: (-sc[0], -records[sc[1]].ts_ms, sc[1]))
        return similar, float(sims.max())

    def _evaluate_tenant(self, tenant: str, items: list[_Prepared]) -> list[Signal]:
        window_ms = to_ms(self.window_seconds)
        all_keys = list(dict.fromkeys(k for item in items for k in item.band_keys))
        min_ts = min(item.ts_ms for item in items) - window_ms
        members = self.store.buckets_get(all_keys, min_ts / 1000.0, self.max_candidates)

        wanted = {m for ms in members.values() for m in ms} | {item.post.id for item in items}
        record_keys = {pid: self._record_key(tenant, pid) for pid in wanted}
        raw = self.store.records_get(list(record_keys.values()))
        records: dict[str, _Record] = {}
        for pid in wanted:
            blob = raw.get(record_keys[pid])
            rec = _decode_record(blob, self.hasher.num_perm) if blob is not None else None
            if rec is not None:
                records[pid] = rec

        local_buckets: dict[str, list[str]] = {}
        found: list[tuple[list[tuple[float, str]], float, int, int | None]] = []
        joins: list[tuple[str, str, float]] = []
        dirty: set[str] = set()
        bucket_entries: list[tuple[str, str, float]] = []
        for item in items:
            pid = item.post.id
            known = records.get(pid)
            # A redelivered post keeps the time it was first seen, so its window (and count) stays put.
            ts_ms = known.ts_ms if known is not None else item.ts_ms
            candidates: dict[str, None] = {}
            for key in item.band_keys:  # most buckets are empty: skip them cheaply
                if stored := members.get(key):
                    candidates.update(dict.fromkeys(stored))
                if local := local_buckets.get(key):
                    candidates.update(dict.fromkeys(local))
            candidates.pop(pid, None)  # never its own duplicate
            ids = [c for c in candidates if c in records and abs(records[c].ts_ms - ts_ms) < window_ms]
            similar, best = self._similar(item.sig, ids, records)

            cluster = known.cluster if known is not None else cluster_id(ts_ms, pid)
            join: int | None = None
            if similar and self.chain:
                # Join the oldest cluster among the neighbours' (and its own, on redelivery), and pull every
                # neighbour from another cluster into it: the clusters of a campaign merge into one.
                cluster = min({records[c].cluster for _, c in similar} | {cluster})
                ckey = self._cluster_key(tenant, cluster)
                founder = cluster.split(":", 1)[1]
                for _, c in similar:
                    if records[c].cluster != cluster or c == founder:
                        joins.append((ckey, c, records[c].ts_ms / 1000.0))
                        if records[c].cluster != cluster:
                            records[c].cluster = cluster
                            dirty.add(c)
                join = len(joins)
                joins.append((ckey, pid, ts_ms / 1000.0))
            found.append((similar, best, len(ids), join))

            if known is None:
                for key in item.band_keys:
                    local_buckets.setdefault(key, []).append(pid)
                bucket_entries.extend((key, pid, ts_ms / 1000.0) for key in item.band_keys)
            records[pid] = _Record(ts_ms=ts_ms, author=item.post.author, sig=item.sig, cluster=cluster)
            dirty.add(pid)

        # Counted in one call, in stream order, so posts of this batch count the earlier ones of this batch.
        counts = self.store.window_add(joins, self.window_seconds)
        self.store.records_put(
            {record_keys[pid]: _encode_record(records[pid]) for pid in dirty}, 2.0 * self.window_seconds
        )
        self.store.buckets_add(bucket_entries, self.window_seconds)
        return [
            self._signal(item, similar, best, n, counts[join] if join is not None else 1, records)
            for item, (similar, best, n, join) in zip(items, found, strict=True)
        ]

    def _signal(
        self,
        item: _Prepared,
        similar: list[tuple[float, str]],
        best: float,
        candidates: int,
        chained: int,
        records: Mapping[str, _Record],
    ) -> Signal:
        cluster = max(1 + len(similar), chained)
        authors = {records[c].author for _, c in similar} | {item.post.author}
        authors.discard(None)
        if cluster >= self.min_cluster:
            label = LABEL_FLOOD
        elif cluster >= 2:
            label = LABEL_NEAR_DUPLICATE
        else:
            label = LABEL_UNIQUE
        score = min(1.0, (cluster - 1) / (self.min_cluster - 1))
        return self.signal(
            score=round(score, 4),
            label=label,
            details=FloodDetails(
                cluster_size=cluster,
                similar_posts=len(similar),
                distinct_authors=len(authors),
                max_similarity=round(best, 4),
                candidates=candidates,
                shingles=item.shingles,
            ),
            evidence={
                "similar_posts": [c for _, c in similar[:MAX_EVIDENCE]],
                "similarities": [round(s, 4) for s, _ in similar[:MAX_EVIDENCE]],
            },
        )

    @classmethod
    def explain(cls, signal: StoredSignal) -> str:
        d = signal.details
        if signal.abstained or not isinstance(d, FloodDetails):
            return super().explain(signal)
        if d.cluster_size <= 1:
            return "No near-identical post in the recent window."
        kind = "a coordinated flood" if signal.label == LABEL_FLOOD else "a near-duplicate"
        return (
            f"One of {d.cluster_size} near-identical posts (similarity up to {d.max_similarity:.0%}) from "
            f"{d.distinct_authors} author(s) in the recent window: {kind}."
        )
