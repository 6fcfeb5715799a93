"""Retention: post texts are personal data; after the retention period only the verdict and numbers stay.
Delivery bookkeeping (published outbox rows, batch receipts) is deleted once nobody can need it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, update

from moderation.storage.models import BatchReceiptRow, OutboxRow, PostRevisionRow, PostRow, VerdictRow


def erase_old_texts(conn: Connection, days: int, now: datetime | None = None) -> int:
    """NULL the text of posts (and of every revision) received more than `days` ago, except posts whose
    current verdict is still waiting in review. Returns how many posts lost their current text."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    in_review = (
        VerdictRow.__table__.select()
        .with_only_columns(VerdictRow.post_id)
        .where(
            (VerdictRow.tenant == PostRow.tenant)
            & (VerdictRow.post_id == PostRow.post_id)
            & (VerdictRow.revision == PostRow.revision)
            & VerdictRow.action.in_(("review", "quarantine"))
        )
    )
    result = conn.execute(
        update(PostRow)
        .where(PostRow.received_at < cutoff, PostRow.text.is_not(None), ~in_review.exists())
        .values(text=None, text_erased_at=datetime.now(UTC))
    )
    # Old revisions: erased with the same rule, judged by the post's current verdict.
    current_in_review = (
        VerdictRow.__table__.select()
        .with_only_columns(VerdictRow.post_id)
        .where(
            (VerdictRow.tenant == PostRevisionRow.tenant)
            & (VerdictRow.post_id == PostRevisionRow.post_id)
            & (VerdictRow.revision == PostRow.revision)
            & (PostRow.tenant == PostRevisionRow.tenant)
            & (PostRow.post_id == PostRevisionRow.post_id)
            & VerdictRow.action.in_(("review", "quarantine"))
        )
    )
    conn.execute(
        update(PostRevisionRow)
        .where(PostRevisionRow.received_at < cutoff, PostRevisionRow.text.is_not(None), ~current_in_review.exists())
        .values(text=None, text_erased_at=datetime.now(UTC))
    )
    return int(result.rowcount or 0)


def prune_delivery(conn: Connection, older_than: timedelta = timedelta(days=1), now: datetime | None = None) -> int:
    """Delete outbox rows published, and batch receipts written, before `older_than` ago.

    A receipt matters only while the consumer may still send its batch again (minutes); a published outbox
    row only for tracing. Unpublished rows are never deleted. Returns the number of rows deleted."""
    cutoff = (now or datetime.now(UTC)) - older_than
    a = conn.execute(delete(OutboxRow).where(OutboxRow.published_at < cutoff)).rowcount or 0
    b = conn.execute(delete(BatchReceiptRow).where(BatchReceiptRow.stored_at < cutoff)).rowcount or 0
    return int(a) + int(b)
