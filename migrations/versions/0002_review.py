"""Review: users with roles per tenant, API tokens, sessions, leases and the append-only review events.

Revision ID: 0002_review
Revises: 0001_pipeline
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_review"
down_revision = "0001_pipeline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "memberships",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "tenant", name="pk_memberships"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_memberships_user_id_users", ondelete="CASCADE"),
        sa.CheckConstraint("role IN ('viewer', 'moderator', 'admin')", name="ck_memberships_role_known"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked", sa.Boolean(), server_default="false", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_tokens_user_id_users", ondelete="CASCADE"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_sessions_user_id_users", ondelete="CASCADE"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "review_leases",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("post_id", sa.String(256), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "post_id", name="pk_review_leases"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_review_leases_user_id_users", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["tenant", "post_id"], ["posts.tenant", "posts.post_id"], name="fk_review_leases_post", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "review_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("post_id", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_events"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_review_events_user_id_users", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tenant", "post_id"], ["posts.tenant", "posts.post_id"], name="fk_review_events_post", ondelete="CASCADE"
        ),
        sa.CheckConstraint("kind IN ('claimed', 'released', 'decided')", name="ck_review_events_kind_known"),
        sa.CheckConstraint(
            "decision IS NULL OR decision IN ('confirm', 'overturn', 'escalate')", name="ck_review_events_decision_known"
        ),
        sa.CheckConstraint(
            "action IS NULL OR action IN ('allow', 'label', 'review', 'quarantine', 'block')",
            name="ck_review_events_action_known",
        ),
    )
    op.create_index("ix_review_events_tenant_post_id_at", "review_events", ["tenant", "post_id", "at"])
    op.create_index("ix_review_events_tenant_at", "review_events", ["tenant", "at"])


def downgrade() -> None:
    op.drop_table("review_events")
    op.drop_table("review_leases")
    op.drop_table("sessions")
    op.drop_table("api_tokens")
    op.drop_table("memberships")
    op.drop_table("users")
