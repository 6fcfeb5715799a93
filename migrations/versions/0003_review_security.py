"""Review security: token expiry and revocation time, session idle time, bounded leases, the audit log of
refused logins, and the per-account meter of evidence reads.

Revision ID: 0003_review_security
Revises: 0002_review
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_review_security"
down_revision = "0002_review"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_tokens", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "sessions",
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.add_column(
        "review_leases",
        sa.Column("claimed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "auth_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_auth_events"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_auth_events_user_id_users", ondelete="SET NULL"),
        sa.CheckConstraint("kind IN ('login_failed', 'login_throttled')", name="ck_auth_events_kind_known"),
    )
    op.create_index("ix_auth_events_at", "auth_events", ["at"])
    op.create_index("ix_auth_events_username_at", "auth_events", ["username", "at"])
    op.create_table(
        "evidence_reads",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("posts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("user_id", "tenant", "day", name="pk_evidence_reads"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_evidence_reads_user_id_users", ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("evidence_reads")
    op.drop_table("auth_events")
    op.drop_column("review_leases", "claimed_at")
    op.drop_index("ix_sessions_expires_at", table_name="sessions")
    op.drop_column("sessions", "last_seen_at")
    op.drop_column("api_tokens", "revoked_at")
    op.drop_column("api_tokens", "expires_at")
