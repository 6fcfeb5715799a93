"""The read side: verdicts with their signals, filtered the way moderators and `moderation verdicts` ask.

Every query shows each post once, at its current revision (`verdicts.revision = posts.revision`), unless
it says otherwise (`VerdictFilter.history`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, MetaData, String, Table, func, select
from sqlalchemy.orm import Session

from moderation.signals import Signal
from moderation.storage.keys import key_table, matches
from moderation.storage.models import BatchReceiptRow, PostRow, SignalRow, VerdictRow

# The join that keeps only each post's current verdict.
CURRENT = (
    (PostRow.tenant == VerdictRow.tenant)
    & (PostRow.post_id == VerdictRow.post_id)
    & (PostRow.revision == VerdictRow.revision)
)


def completed_batches(conn: Connection, batch_ids: Sequence[str]) -> set[str]:
    """Which of these batches are durably stored (have a receipt). One primary-key lookup."""
    if not batch_ids:
        return set()
    rows = conn.execute(select(BatchReceiptRow.batch_id).where(BatchReceiptRow.batch_id.in_(list(batch_ids))))
    return {r for (r,) in rows}


@dataclass(frozen=True)
class VerdictFilter:
    tenant: str | None = None
    action: str | None = None
    since: datetime | None = None
    author: str | None = None
    # pending (waiting for a moderator) | escalated | decided | none (never queued)
    review_state: str | None = None
    limit: int | None = None
    # Every revision's verdict (edits), not only the current one.
    history: bool = False


# The review state of every verdict, defined once, in the view `verdict_review_state` (migration
# 0006_review_state) that the review service reads too. Not part of the models' metadata: it is no table.
REVIEW_STATE = Table(
    "verdict_review_state",
    MetaData(),
    Column("verdict_id", BigInteger),
    Column("decision", String),
    Column("decided_action", String),
    Column("review_state", String),
    Column("effective_action", String),
)


def verdict_rows(conn: Connection, flt: VerdictFilter) -> list[dict[str, Any]]:
    """Verdicts (newest first) as JSON-ready dicts: id, tenant, author, action, score, ..., review state, signals.

    `action` is the automatic verdict; `effective_action` is what stands: a moderator's decision outranks it.
    """
    rs = REVIEW_STATE.c
    q = (
        select(
            VerdictRow.id,
            VerdictRow.tenant,
            VerdictRow.post_id,
            VerdictRow.revision,
            PostRow.revision.label("current_revision"),
            VerdictRow.action,
            VerdictRow.score,
            VerdictRow.policy_version,
            VerdictRow.reasons,
            VerdictRow.decided_at,
            PostRow.author,
            PostRow.created_at,
            rs.review_state,
            rs.effective_action,
        )
        .join(REVIEW_STATE, rs.verdict_id == VerdictRow.id)
        .join(
            PostRow,
            CURRENT
            if not flt.history
            else (PostRow.tenant == VerdictRow.tenant) & (PostRow.post_id == VerdictRow.post_id),
        )
        .order_by(VerdictRow.decided_at.desc(), VerdictRow.id.desc())
    )
    if flt.tenant is not None:
        q = q.where(VerdictRow.tenant == flt.tenant)
    if flt.action is not None:
        q = q.where(VerdictRow.action == flt.action)
    if flt.since is not None:
        q = q.where(VerdictRow.decided_at >= flt.since)
    if flt.author is not None:
        q = q.where(PostRow.author == flt.author)
    if flt.review_state is not None:
        q = q.where(rs.review_state == flt.review_state)
    if flt.limit is not None:
        q = q.limit(flt.limit)
    rows = conn.execute(q).all()
    by_verdict = signals_for(conn, [r.id for r in rows])
    return [
        {
            "id": r.post_id,
            "tenant": r.tenant,
            "revision": r.revision,
            "current": r.revision == r.current_revision,
            "author": r.author,
            "action": r.action,
            "score": r.score,
            "policy_version": r.policy_version,
            "reasons": r.reasons,
            "created_at": r.created_at.isoformat() if r.created_at else None,
            "decided_at": r.decided_at.isoformat(),
            "review_state": r.review_state,
            "effective_action": r.effective_action,
            "signals": by_verdict.get(r.id, []),
        }
        for r in rows
    ]


def signals_for(
    conn: Connection, verdict_ids: Sequence[int], *, with_evidence: bool = False
) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    if not verdict_ids:
        return out
    session = Session(bind=conn)  # ORM objects over the caller's connection (and its transaction)
    for s in session.scalars(
        select(SignalRow).where(SignalRow.verdict_id.in_(list(verdict_ids))).order_by(SignalRow.id)
    ):
        signal = Signal(
            plugin=s.plugin,
            version=s.plugin_version,
            score=s.score,
            label=s.label,
            finding=s.finding,
            abstained=s.abstained,
            reason=s.reason,
            degraded=s.degraded,
            details=s.details,
            evidence=s.evidence,
        )
        out.setdefault(s.verdict_id, []).append(signal.to_json(with_evidence=with_evidence))
    return out


def action_counts(conn: Connection, tenant: str | None = None) -> Counter[tuple[str, str]]:
    """(tenant, action) -> number of posts whose current verdict has that action."""
    q = (
        select(VerdictRow.tenant, VerdictRow.action, func.count())
        .join(PostRow, CURRENT)
        .group_by(VerdictRow.tenant, VerdictRow.action)
    )
    if tenant is not None:
        q = q.where(VerdictRow.tenant == tenant)
    return Counter({(t, a): n for t, a, n in conn.execute(q)})


def verdict_count(conn: Connection) -> int:
    """Posts that have a current verdict (each post counts once, however often it was edited)."""
    return int(conn.execute(select(func.count()).select_from(VerdictRow).join(PostRow, CURRENT)).scalar_one())


def stored_verdicts(conn: Connection, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The current verdicts of these (tenant, post_id), in the output topic's shape (no evidence)."""
    if not keys:
        return []
    rows = (
        Session(bind=conn)
        .scalars(
            select(VerdictRow)
            .join(PostRow, CURRENT)
            .join(wanted := key_table(keys), matches(wanted, VerdictRow.tenant, VerdictRow.post_id))
        )
        .all()
    )
    by_verdict = signals_for(conn, [r.id for r in rows])
    return [
        {
            "id": r.post_id,
            "tenant": r.tenant,
            "revision": r.revision,
            "action": r.action,
            "score": r.score,
            "policy_version": r.policy_version,
            "reasons": r.reasons,
            "signals": by_verdict.get(r.id, []),
        }
        for r in rows
    ]
