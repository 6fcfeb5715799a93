"""Revisions, the outbox and batch receipts.

- An edit (same tenant and post id, different text) is a new revision: `post_revisions` keeps every one,
  `posts.revision` points at the current one, verdicts are unique per revision, and a review decision
  records the revision the moderator saw.
- `outbox`: Kafka messages written in the same transaction as the verdicts, published by a relay.
- `batch_receipts`: one row per stored batch, so the consumer knows what it may commit.

Existing posts become revision 1 (their text is copied into post_revisions, their hash computed).

Revision ID: 0004_revisions
Revises: 0003_review_security
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_revisions"
down_revision = "0003_review_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("posts", sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
    op.add_column("posts", sa.Column("revision_count", sa.Integer(), server_default="1", nullable=False))
    op.add_column("posts", sa.Column("content_hash", sa.String(64), nullable=True))
    op.add_column("posts", sa.Column("seen_topic", sa.String(255), nullable=True))
    op.add_column("posts", sa.Column("seen_partition", sa.Integer(), nullable=True))
    op.add_column("posts", sa.Column("seen_offset", sa.BigInteger(), nullable=True))
    op.execute("UPDATE posts SET content_hash = encode(sha256(convert_to(text, 'UTF8')), 'hex') WHERE text IS NOT NULL")
    op.execute(
        "UPDATE posts SET seen_topic = source_topic, seen_partition = source_partition, seen_offset = source_offset"
    )

    op.create_table(
        "post_revisions",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("post_id", sa.String(256), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("author", sa.String(256), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("text_erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("source_topic", sa.String(255), nullable=True),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "post_id", "revision", name="pk_post_revisions"),
        sa.ForeignKeyConstraint(
            ["tenant", "post_id"], ["posts.tenant", "posts.post_id"], name="fk_post_revisions_post", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_post_revisions_received_at", "post_revisions", ["received_at"])
    op.execute(
        "INSERT INTO post_revisions (tenant, post_id, revision, content_hash, author, text, text_erased_at, created_at,"
        " received_at, source_topic, source_partition, source_offset)"
        " SELECT tenant, post_id, 1, content_hash, author, text, text_erased_at, created_at, received_at,"
        " source_topic, source_partition, source_offset FROM posts"
    )

    op.add_column("verdicts", sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
    op.drop_constraint("uq_verdicts_tenant_post_id", "verdicts", type_="unique")
    op.drop_constraint("fk_verdicts_post", "verdicts", type_="foreignkey")
    op.create_unique_constraint("uq_verdicts_tenant_post_id_revision", "verdicts", ["tenant", "post_id", "revision"])
    op.create_foreign_key(
        "fk_verdicts_revision",
        "verdicts",
        "post_revisions",
        ["tenant", "post_id", "revision"],
        ["tenant", "post_id", "revision"],
        ondelete="CASCADE",
    )

    op.add_column("review_events", sa.Column("revision", sa.Integer(), nullable=True))
    op.execute("UPDATE review_events SET revision = 1")

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL"))
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])

    op.create_table(
        "batch_receipts",
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("posts", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("redelivered", sa.Integer(), nullable=False),
        sa.Column("dead_lettered", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name="pk_batch_receipts"),
    )
    op.create_index("ix_batch_receipts_stored_at", "batch_receipts", ["stored_at"])


def downgrade() -> None:
    op.drop_table("batch_receipts")
    op.drop_table("outbox")
    op.drop_column("review_events", "revision")
    # Back to one verdict per post: keep only the current revision's verdict.
    op.drop_constraint("fk_verdicts_revision", "verdicts", type_="foreignkey")
    op.drop_constraint("uq_verdicts_tenant_post_id_revision", "verdicts", type_="unique")
    op.execute(
        "DELETE FROM verdicts v USING posts p WHERE p.tenant = v.tenant AND p.post_id = v.post_id"
        " AND v.revision <> p.revision"
    )
    op.drop_column("verdicts", "revision")
    op.create_unique_constraint("uq_verdicts_tenant_post_id", "verdicts", ["tenant", "post_id"])
    op.create_foreign_key(
        "fk_verdicts_post", "verdicts", "posts", ["tenant", "post_id"], ["tenant", "post_id"], ondelete="CASCADE"
    )
    op.drop_table("post_revisions")
    op.drop_column("posts", "seen_offset")
    op.drop_column("posts", "seen_partition")
    op.drop_column("posts", "seen_topic")
    op.drop_column("posts", "content_hash")
    op.drop_column("posts", "revision_count")
    op.drop_column("posts", "revision")
