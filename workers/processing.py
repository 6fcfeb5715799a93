"""One batch, start to finish, inside a worker process: decode, skip what is already stored, moderate, and
store everything in ONE PostgreSQL transaction. Kept apart from Celery so it can be tested directly.

The batch message (version 1), as the consumer sends it:

    {"v": 1, "batch_id": str, "posts": [{...post (see moderation/posts.py)..., "_source": [topic, partition, offset]}]}

What the transaction holds, all or nothing:
- the batch's receipt (`batch_receipts`, keyed by `batch_id`): the consumer commits offsets once it sees it;
- each post as a revision with its verdict and signals (moderation/storage/writes.py: an edit is a new
  revision, a redelivery of the current text writes nothing);
- outbox rows: the verdict topic's message for every post whose current revision changed, and a dead
  letter for every post that is invalid here or that PostgreSQL refuses. The relay (workers/outbox.py)
  publishes them once the broker acknowledges; nothing is produced from here.

Idempotent: a batch already receipted is a no-op that returns the stored counts; two workers running the
same batch at once serialize on the receipt, and the second does nothing.

Errors: a post that PostgreSQL refuses (StorageRejected: too long, NUL, a constraint) is dead-lettered
and the rest of the batch is stored — the batch is written again with one savepoint per post to find it.
Everything else from the database (connection lost, statement timeout, deadlock) is StorageUnavailable:
the task retries the whole batch, bounded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from moderation import metrics
from moderation.errors import InvalidPost, StorageRejected, StorageUnavailable
from moderation.posts import Post, post_from_json
from moderation.signals import Verdict
from moderation.storage.database import translate_errors
from moderation.storage.statistics import analyze_unanalyzed
from moderation.storage.writes import (
    Source,
    StoredBatch,
    add_outbox,
    claim_receipt,
    content_hash,
    finish_receipt,
    message_key,
    receipt_counts,
    store_batch,
    stored_state,
)
from workers.runtime import Runtime
from workers.steps.dead_letter import dead_letter_key, dead_letter_value

log = logging.getLogger(__name__)

BATCH_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Refused:
    """A post the worker cannot store: dead-lettered with its reason, never dropped."""

    body: Any  # the post as it came in the batch (without `_source`)
    source: Source | None
    reason: str
    detail: str


@dataclass
class Decoded:
    posts: list[Post]
    sources: list[Source | None]
    bodies: list[dict[str, Any]]
    refused: list[Refused]


def _source(raw: Any) -> Source | None:
    src = raw.get("_source") if isinstance(raw, dict) else None
    try:
        return Source(str(src[0]), int(src[1]), int(src[2])) if src else None
    except (TypeError, ValueError, IndexError):
        return None


def split_batch(payload: dict[str, Any], max_text_chars: int) -> Decoded:
    """Valid posts (with their sources) and the posts refused by validation, in batch order."""
    if payload.get("v") != BATCH_FORMAT_VERSION:
        raise ValueError(f"unknown batch format version {payload.get('v')!r}")
    out = Decoded([], [], [], [])
    for raw in payload["posts"]:
        src = _source(raw)
        body = {k: v for k, v in raw.items() if k != "_source"} if isinstance(raw, dict) else raw
        try:
            out.posts.append(post_from_json(body, max_text_chars=max_text_chars))
        except InvalidPost as exc:
            out.refused.append(Refused(body, src, exc.reason, exc.detail))
            continue
        out.sources.append(src)
        out.bodies.append(body)
    return out


def decode_batch(payload: dict[str, Any], max_text_chars: int) -> tuple[list[Post], list[Source | None]]:
    """The batch's valid posts and their sources (see split_batch for the refused ones)."""
    d = split_batch(payload, max_text_chars)
    return d.posts, d.sources


def dead_letter(refused: Refused) -> tuple[bytes | None, bytes]:
    """A worker-side dead letter, in the consumer's format: the post as JSON stands for the original bytes."""
    try:
        raw = json.dumps(refused.body, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
    except (TypeError, ValueError):
        raw = repr(refused.body).encode("utf-8", errors="backslashreplace")
    src = refused.source
    position = (src.topic, src.partition, src.offset) if src else ("", -1, -1)
    body = refused.body if isinstance(refused.body, dict) else {}
    tenant, post_id = body.get("tenant"), body.get("id")
    key = message_key(str(tenant), str(post_id)) if isinstance(tenant, str) and isinstance(post_id, str) else None
    return dead_letter_key(key), dead_letter_value(raw, position, None, refused.reason, refused.detail)


def batch_id_of(payload: dict[str, Any]) -> str:
    given = payload.get("batch_id")
    if isinstance(given, str) and given:
        if len(given) > 128:  # the receipts' key column; the consumer's ids are far shorter
            raise ValueError(f"batch_id has {len(given)} characters, the maximum is 128")
        return given
    # No id at all (not from our consumer): one derived from the content keeps the write idempotent anyway.
    return "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:64]


def process_batch(runtime: Runtime, payload: dict[str, Any]) -> dict[str, int]:
    """Moderate and store one batch; returns its counts (posts, stored, redelivered, dead_lettered).

    Safe to run any number of times for the same batch_id."""
    cfg = runtime.settings.pipeline
    batch_id = batch_id_of(payload)
    batch = split_batch(payload, cfg.max_text_chars)
    metrics.BATCH_SIZE.observe(len(batch.posts) + len(batch.refused))
    keys = [(p.tenant, p.id) for p in batch.posts]
    with translate_errors(), runtime.db.connect() as conn:
        done = receipt_counts(conn, batch_id)
        state = stored_state(conn, keys) if done is None else {}
    if done is not None:
        metrics.REDELIVERED.inc(done.get("posts", 0))
        return done
    # Moderate only what is not stored as the current text already (an edit is moderated again).
    todo = [
        i
        for i, (k, p) in enumerate(zip(keys, batch.posts, strict=True))
        if k not in state or state[k].content_hash != content_hash(p.text)
    ]
    moderated = runtime.engine.moderate(
        [batch.posts[i] for i in todo],
        timer=lambda name, seconds: metrics.PLUGIN_SECONDS.labels(name).observe(seconds),
    )
    verdicts: list[Verdict | None] = [None] * len(batch.posts)
    for i, v in zip(todo, moderated, strict=True):
        verdicts[i] = v

    started = time.perf_counter()
    try:
        counts, stored = _store(runtime, batch_id, batch, verdicts, isolate=False)
    except StorageRejected as exc:
        log.warning("batch %s: PostgreSQL refused a post (%s); storing post by post", batch_id, exc.detail)
        counts, stored = _store(runtime, batch_id, batch, verdicts, isolate=True)
    metrics.STORE_SECONDS.observe(time.perf_counter() - started)
    _keep_statistics(runtime)
    runtime.engine.observe([v for r in stored for v in [verdicts[r]] if v is not None])
    metrics.REDELIVERED.inc(counts["redelivered"])
    return counts


# How often a worker process checks that the tables it writes have planner statistics: one catalog query of
# about a millisecond; often enough that a table without statistics is analyzed within seconds of holding rows.
STATISTICS_CHECK_S = 10.0


def _keep_statistics(runtime: Runtime) -> None:
    """Analyze the written tables that never were (moderation/storage/statistics.py says why), at most once
    per STATISTICS_CHECK_S per process; a failure here never fails the batch, which is stored already."""
    now = time.monotonic()
    if now - runtime.statistics_checked_at < STATISTICS_CHECK_S:
        return
    runtime.statistics_checked_at = now
    try:
        with translate_errors(), runtime.db.begin() as conn:
            analyzed = analyze_unanalyzed(conn)
    except (StorageUnavailable, StorageRejected) as exc:
        log.warning("could not check the tables' planner statistics: %s", exc)
        return
    if analyzed:
        log.info("analyzed %s: they had rows but no planner statistics (autovacuum off or not yet run)", analyzed)


def _store(
    runtime: Runtime, batch_id: str, batch: Decoded, verdicts: list[Verdict | None], *, isolate: bool
) -> tuple[dict[str, int], list[int]]:
    """One transaction: receipt, revisions, verdicts, outbox. Returns the counts and the batch positions of
    the posts that got a new revision."""
    cfg = runtime.settings.pipeline
    topic = cfg.output_topic if cfg.publish_verdicts else None
    refused = list(batch.refused)
    new: list[int] = []
    redelivered = 0
    with translate_errors(), runtime.db.begin() as conn:
        if not claim_receipt(conn, batch_id):
            return receipt_counts(conn, batch_id) or {}, []
        if not isolate:
            result = store_batch(conn, batch.posts, verdicts, batch.sources, outbox_topic=topic)
            new = [r.index for r in result.revisions]
            redelivered = len(result.redelivered)
        else:
            for i, post in enumerate(batch.posts):
                try:
                    with conn.begin_nested(), translate_errors():
                        one: StoredBatch = store_batch(
                            conn, [post], [verdicts[i]], [batch.sources[i]], outbox_topic=topic
                        )
                except StorageRejected as exc:
                    refused.append(Refused(batch.bodies[i], batch.sources[i], exc.reason, exc.detail))
                    continue
                new.extend(i for _ in one.revisions)
                redelivered += len(one.redelivered)
        letters = [dead_letter(r) for r in refused]
        add_outbox(conn, [(cfg.dead_letter_topic, key, value) for key, value in letters])
        counts = {
            "posts": len(batch.posts) + len(batch.refused),
            "stored": len(new),
            "redelivered": redelivered,
            "dead_lettered": len(refused),
        }
        finish_receipt(conn, batch_id, counts)
    for r in refused:
        metrics.DEAD_LETTERS.labels(r.reason).inc()
    return counts, new
