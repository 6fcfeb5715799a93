"""The tables. Alembic migrations (migrations/versions/) create them; a test checks both agree.

Keys: a post is identified by (tenant, post_id) everywhere — ids are the platform's own and only unique
within one tenant. A post has revisions: an edit (same key, different text) is a new revision, moderated
again; `posts` holds the current one (its `revision` points at it), `post_revisions` every one. Exactly
one automatic verdict per revision (a unique constraint, so a redelivered post can never make a second
one); the current verdict is the one whose revision equals `posts.revision`. A verdict has one row per
plugin signal with its evidence.

The outbox holds the Kafka messages (verdicts, worker-side dead letters) written in the same transaction
as the verdicts; a relay publishes them (workers/outbox.py). A batch receipt says a whole batch is stored.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import text as sql_text
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
    # The current revision (what the platform shows now) and how many revisions exist (the highest number).
    revision: Mapped[int] = mapped_column(Integer, server_default="1")
    revision_count: Mapped[int] = mapped_column(Integer, server_default="1")
    # sha256 (hex) of the current revision's text; kept when retention erases the text.
    content_hash: Mapped[str | None] = mapped_column(String(64))
    # The latest message seen carrying the current text (a redelivery moves it forward): an older message
    # in the same partition is then recognised as older. source_* stay where the current revision came from.
    seen_topic: Mapped[str | None] = mapped_column(String(255))
    seen_partition: Mapped[int | None] = mapped_column(Integer)
    seen_offset: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # The author's other posts, newest first (review page) and per-author queries.
        Index("ix_posts_tenant_author_created_at", "tenant", "author", "created_at"),
        Index("ix_posts_received_at", "received_at"),
    )


class PostRevisionRow(Base):
    """Every revision of a post, oldest first: the history kept when a post is edited."""

    __tablename__ = "post_revisions"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    post_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    author: Mapped[str | None] = mapped_column(String(256))
    text: Mapped[str | None] = mapped_column(Text)
    text_erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    source_topic: Mapped[str | None] = mapped_column(String(255))
    source_partition: Mapped[int | None] = mapped_column(Integer)
    source_offset: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "post_id"], ["posts.tenant", "posts.post_id"], name="fk_post_revisions_post", ondelete="CASCADE"
        ),
        Index("ix_post_revisions_received_at", "received_at"),
    )


class VerdictRow(Base):
    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    post_id: Mapped[str] = mapped_column(String(256))
    revision: Mapped[int] = mapped_column(Integer, server_default="1")
    action: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    policy_version: Mapped[str] = mapped_column(String(64))
    reasons: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("tenant", "post_id", "revision", name="uq_verdicts_tenant_post_id_revision"),
        ForeignKeyConstraint(
            ["tenant", "post_id", "revision"],
            ["post_revisions.tenant", "post_revisions.post_id", "post_revisions.revision"],
            name="fk_verdicts_revision",
            ondelete="CASCADE",
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
    # What the plugin declares of the label (it counts against the post), and whether the plugin could not run.
    finding: Mapped[bool] = mapped_column(Boolean, server_default="false")
    degraded: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # The plugin's numbers (z_score, p_value, scheme, ...) and what a moderator is shown (token spans ...).
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")

    __table_args__ = (
        Index("ix_signals_plugin_label", "plugin", "label"),
        Index("ix_signals_plugin_finding", "plugin", postgresql_where=sql_text("finding")),
    )


# ---- review: users, roles per tenant, credentials, and the append-only event log -----------------------

ROLES = ("viewer", "moderator", "admin")
DECISIONS = ("confirm", "overturn", "escalate")


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # argon2id; never the password itself.
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MembershipRow(Base):
    """A user's role in one tenant: they see and act on that tenant's posts only."""

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))

    __table_args__ = (CheckConstraint(f"role IN {ROLES!r}", name="role_known"),)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # sha256 of the token: a stolen database does not yield usable tokens (tokens are long and random,
    # so a fast hash is enough; passwords get argon2).
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, server_default="false")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # None: until revoked


class SessionRow(Base):
    """A logged-in browser: the cookie holds a random id; only its hash is stored, with the CSRF token."""

    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # The idle timeout counts from here (refreshed at most once a minute while the session is used).
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReviewLeaseRow(Base):
    """Who is reviewing a post right now; a lease expires, so an abandoned claim frees itself."""

    __tablename__ = "review_leases"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    post_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When this holder first claimed it: renewals never extend the lease past claimed_at + lease_max_seconds.
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "post_id"], ["posts.tenant", "posts.post_id"], name="fk_review_leases_post", ondelete="CASCADE"
        ),
    )


class AuthEventRow(Base):
    """Audit log of refused logins (wrong password, unknown user, throttled): who was tried, from where, when.
    Never the password."""

    __tablename__ = "auth_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # login_failed | login_throttled
    username: Mapped[str] = mapped_column(String(64))  # as typed (cut to 64), also for unknown users
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("kind IN ('login_failed', 'login_throttled')", name="kind_known"),
        Index("ix_auth_events_username_at", "username", "at"),
    )


class EvidenceReadRow(Base):
    """How much per-token watermark evidence one account read, per tenant and day (a spoofer collects it)."""

    __tablename__ = "evidence_reads"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    posts: Mapped[int] = mapped_column(Integer, server_default="0")
    tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")


class ReviewEventRow(Base):
    """Append-only history of a post's review: claims, releases and decisions, with who and when.

    A post's review state is derived from its events (the latest decision wins); nothing is updated in place.
    """

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    post_id: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))  # claimed | released | decided
    decision: Mapped[str | None] = mapped_column(String(16))  # confirm | overturn | escalate
    action: Mapped[str | None] = mapped_column(String(16))  # the action the decision sets
    reason: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(64))  # kept even if the user is deleted
    # The revision the moderator saw: a decision applies to that revision only (an edit is reviewed afresh).
    revision: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "post_id"], ["posts.tenant", "posts.post_id"], name="fk_review_events_post", ondelete="CASCADE"
        ),
        CheckConstraint("kind IN ('claimed', 'released', 'decided')", name="kind_known"),
        CheckConstraint(f"decision IS NULL OR decision IN {DECISIONS!r}", name="decision_known"),
        CheckConstraint(f"action IS NULL OR action IN {ACTIONS!r}", name="action_known"),
        Index("ix_review_events_tenant_post_id_at", "tenant", "post_id", "at"),
        Index("ix_review_events_tenant_at", "tenant", "at"),
    )


# ---- delivery: the outbox and batch receipts ------------------------------------------------------------


class OutboxRow(Base):
    """A Kafka message to publish, written in the transaction that stored what it announces.

    The relay (workers/outbox.py) publishes unpublished rows in id order and sets `published_at` only after
    the broker acknowledged (acks=all); `moderation db prune` deletes published rows after a day.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(512))

    __table_args__ = (
        # The relay's scan: unpublished rows in order; stays small however large the table grows.
        Index("ix_outbox_unpublished", "id", postgresql_where=sql_text("published_at IS NULL")),
        Index("ix_outbox_published_at", "published_at"),
    )


class BatchReceiptRow(Base):
    """Proof that a batch is durably stored (verdicts, dead letters, outbox rows): written in that transaction.

    The consumer asks for receipts (queries.completed_batches) to know which batches it may commit.
    """

    __tablename__ = "batch_receipts"

    batch_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    posts: Mapped[int] = mapped_column(Integer)
    stored: Mapped[int] = mapped_column(Integer)
    redelivered: Mapped[int] = mapped_column(Integer)
    dead_lettered: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_batch_receipts_stored_at", "stored_at"),)
