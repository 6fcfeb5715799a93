"""The tables. Alembic migrations (migrations/versions/) create them; a test checks both agree.

Keys: a post is identified by (tenant, post_id) everywhere — ids are the platform's own and only unique
within one tenant. Exactly one automatic verdict per post (a unique constraint, so a redelivered post
can never make a second one); a verdict has one row per plugin signal with its evidence.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ACTIONS = ("allow", "label", "review", "quarantine", "block")

# Deterministic constraint names, so migrations can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PostRow(Base):
    __tablename__ = "posts"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    post_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    author: Mapped[str | None] = mapped_column(String(256))
    # Erased (NULL) by `moderation db prune` after the retention period; text_erased_at says when.
    text: Mapped[str | None] = mapped_column(Text)
    text_erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default="{}")
    # Where the post came from (Kafka topic, partition, offset), for tracing a verdict back to its message.
    source_topic: Mapped[str | None] = mapped_column(String(255))
    source_partition: Mapped[int | None] = mapped_column(Integer)
    source_offset: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # The author's other posts, newest first (review page) and per-author queries.
        Index("ix_posts_tenant_author_created_at", "tenant", "author", "created_at"),
        Index("ix_posts_received_at", "received_at"),
    )


class VerdictRow(Base):
    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    post_id: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    policy_version: Mapped[str] = mapped_column(String(64))
    reasons: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("tenant", "post_id", name="uq_verdicts_tenant_post_id"),
        ForeignKeyConstraint(
            ["tenant", "post_id"], ["posts.tenant", "posts.post_id"], name="fk_verdicts_post", ondelete="CASCADE"
        ),
        CheckConstraint(f"action IN {ACTIONS!r}", name="action_known"),
        # The review queue and `moderation verdicts`: by tenant, action, newest first.
        Index("ix_verdicts_tenant_action_decided_at", "tenant", "action", "decided_at"),
        Index("ix_verdicts_decided_at", "decided_at"),
    )


class SignalRow(Base):
    __tablename__ = "signals"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    verdict_id: Mapped[int] = mapped_column(ForeignKey("verdicts.id", ondelete="CASCADE"), index=True)
    plugin: Mapped[str] = mapped_column(String(64))
    plugin_version: Mapped[str] = mapped_column(String(32))
    label: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    abstained: Mapped[bool] = mapped_column(Boolean, server_default="false")
    reason: Mapped[str | None] = mapped_column(String(128))
    # The plugin's numbers (z_score, p_value, scheme, ...) and what a moderator is shown (token spans ...).
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")

    __table_args__ = (Index("ix_signals_plugin_label", "plugin", "label"),)
