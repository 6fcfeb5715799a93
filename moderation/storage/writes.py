"""The one write the pipeline makes: a whole batch of posts with their verdicts and signals, in one
transaction, idempotent on (tenant, post id).

A redelivered post (worker killed, consumer restarted, batch resent after a timeout) finds its verdict
already there: ON CONFLICT DO NOTHING leaves the stored row untouched and no second verdict is made.
Only verdicts inserted by THIS call get signal rows, so signals are never duplicated either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, tuple_
from sqlalchemy.dialects.postgresql import insert

from moderation.posts import Post
from moderation.signals import Verdict
from moderation.storage.models import PostRow, SignalRow, VerdictRow


@dataclass(frozen=True)
class Source:
    """Where a post came from, kept with it for tracing."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class StoredBatch:
    inserted: frozenset[tuple[str, str]]  # (tenant, post_id) whose verdict this call created
    existing: frozenset[tuple[str, str]]  # already had a verdict (redelivery): left unchanged


def store_batch(
    conn: Connection,
    posts: Sequence[Post],
    verdicts: Sequence[Verdict],
    sources: Sequence[Source | None] | None = None,
) -> StoredBatch:
    """Insert posts, verdicts and signals. The caller owns the transaction (`with engine.begin() as conn`)."""
    if len(posts) != len(verdicts):
        raise ValueError(f"{len(posts)} posts but {len(verdicts)} verdicts")
    if not posts:
        return StoredBatch(frozenset(), frozenset())
    srcs = list(sources) if sources is not None else [None] * len(posts)
    # A batch may hold the same post twice (the platform sent it twice): the first occurrence wins.
    unique: dict[tuple[str, str], int] = {}
    for i, post in enumerate(posts):
        unique.setdefault((post.tenant, post.id), i)
    order = list(unique.values())

    def post_row(i: int) -> dict[str, Any]:
        src = srcs[i]
        return {
            "tenant": posts[i].tenant,
            "post_id": posts[i].id,
            "author": posts[i].author,
            "text": posts[i].text,
            "created_at": posts[i].created_at,
            "metadata_": posts[i].metadata,
            "source_topic": src.topic if src else None,
            "source_partition": src.partition if src else None,
            "source_offset": src.offset if src else None,
        }

    conn.execute(
        insert(PostRow).on_conflict_do_nothing(index_elements=["tenant", "post_id"]), [post_row(i) for i in order]
    )
    returned = conn.execute(
        insert(VerdictRow)
        .on_conflict_do_nothing(index_elements=["tenant", "post_id"])
        .returning(VerdictRow.id, VerdictRow.tenant, VerdictRow.post_id),
        [
            {
                "tenant": verdicts[i].tenant,
                "post_id": verdicts[i].post_id,
                "action": verdicts[i].action.value,
                "score": verdicts[i].score,
                "policy_version": verdicts[i].policy_version,
                "reasons": list(verdicts[i].reasons),
            }
            for i in order
        ],
    ).all()
    new_ids = {(row.tenant, row.post_id): row.id for row in returned}
    signal_rows = [
        {
            "verdict_id": new_ids[key],
            "plugin": s.plugin,
            "plugin_version": s.version,
            "label": s.label,
            "score": s.score,
            "abstained": s.abstained,
            "reason": s.reason,
            "details": json_safe(s.details),
            "evidence": json_safe(s.evidence),
        }
        for key, i in unique.items()
        if key in new_ids
        for s in verdicts[i].signals
    ]
    if signal_rows:
        conn.execute(insert(SignalRow), signal_rows)
    inserted = frozenset(new_ids)
    return StoredBatch(inserted, frozenset(unique) - inserted)


def json_safe(value: Any) -> Any:
    """JSONB refuses NaN and infinities: store them as null rather than failing the batch."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def keys_with_verdicts(conn: Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (tenant, post_id) already have a verdict."""
    if not keys:
        return set()
    rows = conn.execute(
        VerdictRow.__table__.select()
        .with_only_columns(VerdictRow.tenant, VerdictRow.post_id)
        .where(tuple_(VerdictRow.tenant, VerdictRow.post_id).in_(list(keys)))
    )
    return {(r.tenant, r.post_id) for r in rows}
