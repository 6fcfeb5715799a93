"""The write side: a batch's posts, revisions, verdicts, signals and outbox messages, in the caller's transaction.

Revisions. A post is (tenant, post_id); its text can change (an edit). Each distinct text that arrives is
compared with what is stored, by SHA-256:
- the same text as the current revision: a redelivery, nothing is written (idempotent);
- a different text: a new revision, moderated; it becomes the current one and its verdict is published;
- unless the message is older than the current revision (same topic and partition, lower offset: a
  resent batch overtaken by a later edit). Then it is only history: an old message whose text is already
  stored is a redelivery; an old text never seen is stored as a revision that is not current, and nothing
  is published. Without comparable positions (no source, other partition), arrival order decides.

Concurrency: the posts rows of a batch are locked (`FOR UPDATE`, in key order, so two batches cannot
deadlock) while the revisions are decided; a new post inserted at the same time by another transaction
makes this one fail with StorageUnavailable, and the retry then sees it.

The outbox. For every post whose current revision changed, a message for the verdict topic is written in
the same transaction (`OutboxRow`); the relay (workers/outbox.py) publishes it. A redelivery writes no
message: the one written with the stored revision is in the outbox already, and the relay never drops
one, so the topic receives the current verdict without it. Messages carry the revision, so a reader can
ignore a stale one (several relays can publish out of order).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, select, update
from sqlalchemy.dialects.postgresql import insert

from moderation.errors import StorageUnavailable
from moderation.posts import Post
from moderation.signals import Verdict
from moderation.storage.bulk import insert_rows, update_rows
from moderation.storage.jsonb import dumps_bytes
from moderation.storage.keys import key_table, matches
from moderation.storage.models import BatchReceiptRow, OutboxRow, PostRevisionRow, PostRow, SignalRow, VerdictRow

Key = tuple[str, str]  # (tenant, post_id)
# The tables the batch write inserts into (storage/bulk.py inserts by column name).
POSTS, REVISIONS, VERDICTS, SIGNALS, OUTBOX = (
    cast(Table, row.__table__) for row in (PostRow, PostRevisionRow, VerdictRow, SignalRow, OutboxRow)
)
VERDICT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Source:
    """Where a post came from, kept with it for tracing (and to order edits of one post)."""

    topic: str
    partition: int
    offset: int


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- deciding revisions (pure: unit-tested without a database) ----------------------------------------


@dataclass(frozen=True)
class Current:
    """What is stored for a post: its current revision, how many there are, the current text's hash."""

    revision: int
    revision_count: int
    content_hash: str | None
    source: Source | None


@dataclass(frozen=True)
class Incoming:
    index: int  # position in the batch
    key: Key
    content_hash: str
    source: Source | None


@dataclass(frozen=True)
class NewRevision:
    index: int
    key: Key
    revision: int
    current: bool  # whether it is the post's current revision once the batch is stored


def is_older(new: Source | None, stored: Source | None) -> bool:
    """Whether a message is older than the one the stored revision came from (comparable only within a partition)."""
    if new is None or stored is None or (new.topic, new.partition) != (stored.topic, stored.partition):
        return False
    return new.offset <= stored.offset


@dataclass(frozen=True)
class Plan:
    made: list[NewRevision]  # in batch order; only each post's last current revision has current=True
    redelivered: list[int]  # batch positions of redeliveries
    final: dict[Key, Current]  # each post's state once the batch is stored


def plan_revisions(
    current: Mapping[Key, Current], known_hashes: Mapping[Key, set[str]], incoming: Sequence[Incoming]
) -> Plan:
    """Which incoming posts become new revisions (numbered, current or history) and which are redeliveries.

    `incoming` is in batch order, which is the partition's order for one post. A redelivery of the current
    text from a later message moves the stored position forward (no revision), so that an older message
    with another text, arriving after it, is recognised as older."""
    state = dict(current)
    hashes = {k: set(v) for k, v in known_hashes.items()}
    made: list[NewRevision] = []
    redelivered: list[int] = []
    for inc in incoming:
        cur = state.get(inc.key)
        seen = hashes.setdefault(inc.key, set())
        if cur is None:
            made.append(NewRevision(inc.index, inc.key, 1, True))
            state[inc.key] = Current(1, 1, inc.content_hash, inc.source)
        elif inc.content_hash == cur.content_hash:
            redelivered.append(inc.index)
            if inc.source is not None and (cur.source is None or is_older(cur.source, inc.source)):
                state[inc.key] = Current(cur.revision, cur.revision_count, cur.content_hash, inc.source)
            continue
        elif is_older(inc.source, cur.source):
            if inc.content_hash in seen:
                redelivered.append(inc.index)
                continue
            made.append(NewRevision(inc.index, inc.key, cur.revision_count + 1, False))
            state[inc.key] = Current(cur.revision, cur.revision_count + 1, cur.content_hash, cur.source)
        else:
            n = cur.revision_count + 1
            made.append(NewRevision(inc.index, inc.key, n, True))
            state[inc.key] = Current(n, n, inc.content_hash, inc.source)
        seen.add(inc.content_hash)
    made = [NewRevision(r.index, r.key, r.revision, r.current and state[r.key].revision == r.revision) for r in made]
    return Plan(made, redelivered, {inc.key: state[inc.key] for inc in incoming})


# ---- writing --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredBatch:
    inserted: frozenset[Key]  # posts that got a new revision (with its verdict) in this call
    existing: frozenset[Key]  # posts whose every occurrence was a redelivery: left unchanged
    revisions: tuple[NewRevision, ...] = ()
    redelivered: tuple[int, ...] = ()  # batch positions that were redeliveries
    published: int = 0  # outbox messages written for the verdict topic


def state_query(
    keys: Sequence[Key], *, lock: bool = False
) -> Select[str, str, int, int, str | None, str | None, int | None, int | None]:
    """The query behind `stored_state`: the posts among `keys`, in key order (locked FOR UPDATE if asked)."""
    q = (
        select(
            PostRow.tenant,
            PostRow.post_id,
            PostRow.revision,
            PostRow.revision_count,
            PostRow.content_hash,
            PostRow.seen_topic,
            PostRow.seen_partition,
            PostRow.seen_offset,
        )
        .join(wanted := key_table(keys), matches(wanted, PostRow.tenant, PostRow.post_id))
        .order_by(PostRow.tenant, PostRow.post_id)
    )
    return q.with_for_update(of=PostRow) if lock else q


def stored_state(conn: Connection, keys: Sequence[Key], *, lock: bool = False) -> dict[Key, Current]:
    """The current revision of each stored post among `keys` (locked FOR UPDATE, in key order, if asked)."""
    if not keys:
        return {}
    q = state_query(keys, lock=lock)
    out: dict[Key, Current] = {}
    for r in conn.execute(q):
        src = (
            Source(r.seen_topic, r.seen_partition, r.seen_offset)
            if r.seen_topic is not None and r.seen_partition is not None and r.seen_offset is not None
            else None
        )
        out[(r.tenant, r.post_id)] = Current(r.revision, r.revision_count, r.content_hash, src)
    return out


def _known_hashes(conn: Connection, keys: Sequence[Key]) -> dict[Key, set[str]]:
    out: dict[Key, set[str]] = {}
    if not keys:
        return out
    wanted = key_table(keys)
    rows = conn.execute(
        select(PostRevisionRow.tenant, PostRevisionRow.post_id, PostRevisionRow.content_hash).join(
            wanted, matches(wanted, PostRevisionRow.tenant, PostRevisionRow.post_id)
        )
    )
    for r in rows:
        if r.content_hash is not None:
            out.setdefault((r.tenant, r.post_id), set()).add(r.content_hash)
    return out


def verdict_message(verdict: Verdict, revision: int) -> bytes:
    """The verdict topic's message (version 1): the verdict with its revision, without the evidence."""
    body = {"v": VERDICT_FORMAT_VERSION, **verdict.to_json(with_evidence=False), "revision": revision}
    return dumps_bytes(body)


def message_key(tenant: str, post_id: str) -> bytes:
    return f"{tenant}/{post_id}".encode()


def store_batch(
    conn: Connection,
    posts: Sequence[Post],
    verdicts: Sequence[Verdict | None],
    sources: Sequence[Source | None] | None = None,
    *,
    outbox_topic: str | None = None,
) -> StoredBatch:
    """Store posts as revisions with their verdicts and signals; with `outbox_topic`, queue each post's new
    current verdict for publication. The caller owns the transaction (`with engine.begin() as conn`).

    `verdicts[i]` may be None for a post the caller expects to be a redelivery (it skipped moderating it);
    if it turns out to need a revision (a concurrent edit changed the stored state), StorageUnavailable
    asks for the batch to be run again."""
    if len(posts) != len(verdicts):
        raise ValueError(f"{len(posts)} posts but {len(verdicts)} verdicts")
    if not posts:
        return StoredBatch(frozenset(), frozenset())
    srcs = list(sources) if sources is not None else [None] * len(posts)
    keys = [(p.tenant, p.id) for p in posts]
    hashes = [content_hash(p.text) for p in posts]
    current = stored_state(conn, keys, lock=True)
    changed = [k for k, h in zip(keys, hashes, strict=True) if k in current and current[k].content_hash != h]
    known = _known_hashes(conn, changed)
    incoming = [Incoming(i, keys[i], hashes[i], srcs[i]) for i in range(len(posts))]
    plan = plan_revisions(current, known, incoming)
    made, redelivered, final = plan.made, plan.redelivered, plan.final
    for r in made:
        if verdicts[r.index] is None:
            raise StorageUnavailable(f"post {r.key[1]!r} changed while its batch ran; the batch must run again")

    def with_source(key: Key) -> dict[str, Any]:
        # The latest message seen with the post's current text: what orders later messages (posts.seen_*).
        src = final[key].source
        return {
            "seen_topic": src.topic if src else None,
            "seen_partition": src.partition if src else None,
            "seen_offset": src.offset if src else None,
        }

    def revision_row(r: NewRevision) -> dict[str, Any]:
        post, src = posts[r.index], srcs[r.index]
        return {
            "tenant": post.tenant,
            "post_id": post.id,
            "revision": r.revision,
            "content_hash": hashes[r.index],
            "author": post.author,
            "text": post.text,
            "created_at": post.created_at,
            "source_topic": src.topic if src else None,
            "source_partition": src.partition if src else None,
            "source_offset": src.offset if src else None,
        }

    counts = {key: state.revision_count for key, state in final.items()}
    now_current = {r.key: r for r in made if r.current}
    # Stored posts whose current revision stays, but that got history revisions or a later position.
    touched = [
        {"tenant": key[0], "post_id": key[1], "revision_count": counts[key]} | with_source(key)
        for key, state in final.items()
        if key in current and key not in now_current and state != current[key]
    ]
    update_rows(conn, POSTS, touched, key=("tenant", "post_id"))
    if not made:
        return StoredBatch(frozenset(), frozenset(keys), (), tuple(redelivered))

    # Posts: new ones inserted at their final state, stored ones updated to their new current revision.
    new_rows = []
    for key in dict.fromkeys(r.key for r in made):
        if key in current:
            continue
        head = now_current[key]  # a new post's latest revision in the batch is current
        new_rows.append(
            {
                **revision_row(head),
                **with_source(key),
                # Core inserts name columns, not attributes: the column is "metadata" (`metadata_` in the model).
                "metadata": posts[head.index].metadata,
                "revision_count": counts[key],
            }
        )
    if new_rows:
        got = insert_rows(
            conn, POSTS, new_rows, conflict_ignored_on=("tenant", "post_id"), returning=("tenant", "post_id")
        )
        if len(got) != len(new_rows):
            raise StorageUnavailable("another transaction stored the same new post; the batch must run again")
    moved = [
        {
            **revision_row(r),
            **with_source(key),
            "metadata": posts[r.index].metadata,  # the column's name (`metadata_` is the model's attribute)
            "revision_count": counts[key],
        }
        for key, r in now_current.items()
        if key in current
    ]
    update_rows(
        conn, POSTS, moved, key=("tenant", "post_id"), also_set={"text_erased_at": "NULL", "received_at": "now()"}
    )
    insert_rows(conn, REVISIONS, [revision_row(r) for r in made])
    returned = insert_rows(
        conn,
        VERDICTS,
        [_verdict_row(verdicts[r.index], r) for r in made],  # type: ignore[arg-type]
        returning=("id", "tenant", "post_id", "revision"),
    )
    ids = {(tenant, post_id, revision): verdict_id for verdict_id, tenant, post_id, revision in returned}
    signal_rows = [
        {
            "verdict_id": ids[(r.key[0], r.key[1], r.revision)],
            "plugin": s.plugin,
            "plugin_version": s.version,
            "label": s.label,
            "score": s.score,
            "abstained": s.abstained,
            "reason": s.reason,
            "finding": s.finding,
            "degraded": s.degraded,
            "details": s.details,  # JSONB values go through storage.jsonb (NaN as null), as the engine's do
            "evidence": s.evidence,
        }
        for r in made
        for s in verdicts[r.index].signals  # type: ignore[union-attr]
    ]
    insert_rows(conn, SIGNALS, signal_rows)
    published = 0
    if outbox_topic is not None and now_current:
        add_outbox(
            conn,
            [
                (outbox_topic, message_key(*key), verdict_message(verdicts[r.index], r.revision))  # type: ignore[arg-type]
                for key, r in now_current.items()
            ],
        )
        published = len(now_current)
    inserted = frozenset(r.key for r in made)
    return StoredBatch(inserted, frozenset(keys) - inserted, tuple(made), tuple(redelivered), published)


def _verdict_row(v: Verdict, r: NewRevision) -> dict[str, Any]:
    return {
        "tenant": v.tenant,
        "post_id": v.post_id,
        "revision": r.revision,
        "action": v.action.value,
        "score": v.score if math.isfinite(v.score) else 0.0,
        "policy_version": v.policy_version,
        "reasons": list(v.reasons),
    }


def add_outbox(conn: Connection, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None:
    """Queue Kafka messages (topic, key, value) for the relay, in this transaction."""
    insert_rows(conn, OUTBOX, [{"topic": t, "key": k, "value": v} for t, k, v in messages])


def claim_receipt(conn: Connection, batch_id: str) -> bool:
    """Start storing a batch: False if it is stored already (or a concurrent run just stored it: this
    waits for that transaction, then sees its receipt). Call first in the batch's transaction."""
    got = conn.execute(
        insert(BatchReceiptRow)
        .values(batch_id=batch_id, posts=0, stored=0, redelivered=0, dead_lettered=0)
        .on_conflict_do_nothing(index_elements=["batch_id"])
        .returning(BatchReceiptRow.batch_id)
    ).first()
    return got is not None


def finish_receipt(conn: Connection, batch_id: str, counts: Mapping[str, int]) -> None:
    conn.execute(
        update(BatchReceiptRow)
        .where(BatchReceiptRow.batch_id == batch_id)
        .values(
            posts=counts.get("posts", 0),
            stored=counts.get("stored", 0),
            redelivered=counts.get("redelivered", 0),
            dead_lettered=counts.get("dead_lettered", 0),
        )
    )


def receipt_counts(conn: Connection, batch_id: str) -> dict[str, int] | None:
    r = conn.execute(
        select(
            BatchReceiptRow.posts, BatchReceiptRow.stored, BatchReceiptRow.redelivered, BatchReceiptRow.dead_lettered
        ).where(BatchReceiptRow.batch_id == batch_id)
    ).first()
    if r is None:
        return None
    return {"posts": r.posts, "stored": r.stored, "redelivered": r.redelivered, "dead_lettered": r.dead_lettered}
