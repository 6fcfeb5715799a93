"""Retention: post texts are personal data; after the retention period only the verdict and numbers stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, update

from moderation.storage.models import PostRow, VerdictRow


def erase_old_texts(conn: Connection, days: int, now: datetime | None = None) -> int:
    """NULL the text of posts received more than `days` ago, except posts still waiting in review."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    in_review = (
        VerdictRow.__table__.select()
        .with_only_columns(VerdictRow.post_id)
        .where(
            (VerdictRow.tenant == PostRow.tenant)
            & (VerdictRow.post_id == PostRow.post_id)
            & VerdictRow.action.in_(("review", "quarantine"))
        )
    )
    result = conn.execute(
        update(PostRow)
        .where(PostRow.received_at < cutoff, PostRow.text.is_not(None), ~in_review.exists())
        .values(text=None, text_erased_at=datetime.now(UTC))
    )
    return int(result.rowcount or 0)
