"""The pipeline's tables: posts, one verdict per post, and each plugin's signals with evidence.

Revision ID: 0001_pipeline
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_pipeline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("post_id", sa.String(256), nullable=False),
        sa.Column("author", sa.String(256), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("text_erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("metadata", JSONB(), server_default="{}", nullable=False),
        sa.Column("source_topic", sa.String(255), nullable=True),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "post_id", name="pk_posts"),
    )
    op.create_index("ix_posts_tenant_author_created_at", "posts", ["tenant", "author", "created_at"])
    op.create_index("ix_posts_received_at", "posts", ["received_at"])

    op.create_table(
        "verdicts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("post_id", sa.String(256), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("reasons", JSONB(), server_default="[]", nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_verdicts"),
        sa.UniqueConstraint("tenant", "post_id", name="uq_verdicts_tenant_post_id"),
        sa.ForeignKeyConstraint(
            ["tenant", "post_id"], ["posts.tenant", "posts.post_id"], name="fk_verdicts_post", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "action IN ('allow', 'label', 'review', 'quarantine', 'block')", name="ck_verdicts_action_known"
        ),
    )
    op.create_index("ix_verdicts_tenant_action_decided_at", "verdicts", ["tenant", "action", "decided_at"])
    op.create_index("ix_verdicts_decided_at", "verdicts", ["decided_at"])

    op.create_table(
        "signals",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("verdict_id", sa.BigInteger(), nullable=False),
        sa.Column("plugin", sa.String(64), nullable=False),
        sa.Column("plugin_version", sa.String(32), nullable=False),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("abstained", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("reason", sa.String(128), nullable=True),
        sa.Column("details", JSONB(), server_default="{}", nullable=False),
        sa.Column("evidence", JSONB(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signals"),
        sa.ForeignKeyConstraint(
            ["verdict_id"], ["verdicts.id"], name="fk_signals_verdict_id_verdicts", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_signals_verdict_id", "signals", ["verdict_id"])
    op.create_index("ix_signals_plugin_label", "signals", ["plugin", "label"])


def downgrade() -> None:
    op.drop_table("signals")
    op.drop_table("verdicts")
    op.drop_table("posts")
