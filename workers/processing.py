"""One batch, start to finish, inside a worker process: decode, skip posts already decided, moderate,
store in one transaction, publish the verdicts. Kept apart from Celery so it can be tested directly.

The batch message (version 1), as the consumer sends it:

    {"v": 1, "batch_id": str, "posts": [{...post (see moderation/posts.py)..., "_source": [topic, partition, offset]}]}
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from moderation import metrics
from moderation.posts import Post, post_from_json
from moderation.signals import Verdict
from moderation.storage.queries import stored_verdicts
from moderation.storage.writes import Source, keys_with_verdicts, store_batch
from workers.runtime import Runtime

BATCH_FORMAT_VERSION = 1


def decode_batch(payload: dict[str, Any], max_text_chars: int) -> tuple[list[Post], list[Source | None]]:
    if payload.get("v") != BATCH_FORMAT_VERSION:
        raise ValueError(f"unknown batch format version {payload.get('v')!r}")
    posts: list[Post] = []
    sources: list[Source | None] = []
    for raw in payload["posts"]:
        src = raw.get("_source")
        posts.append(post_from_json({k: v for k, v in raw.items() if k != "_source"}, max_text_chars=max_text_chars))
        sources.append(Source(str(src[0]), int(src[1]), int(src[2])) if src else None)
    return posts, sources


def verdict_message(verdict: dict[str, Any]) -> bytes:
    """The output topic's message (version 1): the verdict without the evidence, which stays in PostgreSQL."""
    return json.dumps({"v": 1, **verdict}, separators=(",", ":")).encode()


def _observe(verdicts: Sequence[Verdict]) -> None:
    for v in verdicts:
        metrics.VERDICTS.labels(v.tenant, v.action.value).inc()
        for s in v.signals:
            if s.plugin == "watermark" and not s.abstained and s.details.get("z_score") is not None:
                scheme = str(s.details.get("scheme"))
                metrics.Z_SCORE.labels(scheme).observe(float(s.details["z_score"]))
                metrics.TOKENS_SCORED.labels(scheme).inc(int(s.details.get("num_tokens_scored") or 0))


def process_batch(runtime: Runtime, payload: dict[str, Any]) -> dict[str, int]:
    """Moderate and store one batch. Safe to run any number of times for the same batch."""
    posts, sources = decode_batch(payload, runtime.settings.pipeline.max_text_chars)
    metrics.BATCH_SIZE.observe(len(posts))
    keys = [(p.tenant, p.id) for p in posts]
    with runtime.db.connect() as conn:
        already = keys_with_verdicts(conn, keys)
    todo = [i for i, k in enumerate(keys) if k not in already]
    todo_posts = [posts[i] for i in todo]

    verdicts = runtime.engine.moderate(
        todo_posts, timer=lambda name, seconds: metrics.PLUGIN_SECONDS.labels(name).observe(seconds)
    )

    started = time.perf_counter()
    with runtime.db.begin() as conn:
        stored = store_batch(conn, todo_posts, verdicts, [sources[i] for i in todo])
    metrics.STORE_SECONDS.observe(time.perf_counter() - started)
    _observe([v for v in verdicts if (v.tenant, v.post_id) in stored.inserted])
    redelivered = len(already) + len(stored.existing)
    metrics.REDELIVERED.inc(redelivered)

    if runtime.settings.pipeline.publish_verdicts:
        # At least once: a verdict stored by an earlier delivery is published again from what was stored.
        out = [v.to_json(with_evidence=False) for v in verdicts if (v.tenant, v.post_id) in stored.inserted]
        again = sorted(already | stored.existing)
        if again:
            with runtime.db.connect() as conn:
                out.extend(stored_verdicts(conn, again))
        producer = runtime.producer()
        topic = runtime.settings.pipeline.output_topic
        for v in out:
            producer.send(topic, verdict_message(v), key=f"{v['tenant']}/{v['id']}".encode())
        producer.flush(timeout=30)
    return {"posts": len(posts), "stored": len(stored.inserted), "redelivered": redelivered}
