"""Signals record what the plugin contract says of them: whether the label is a finding (so queries need
no list of labels) and whether the plugin could not run at all (a degraded abstention).

Existing rows: `finding` is set for the labels the built-in plugins declare findings; `degraded` for the
abstentions of flood and rate whose state store was unavailable.

Revision ID: 0005_signal_contract
Revises: 0004_revisions
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_signal_contract"
down_revision = "0004_revisions"
branch_labels = None
depends_on = None

# What the built-in plugins declared when this migration was written (moderation/plugins/*.py `labels`).
BUILT_IN_FINDINGS = {
    "watermark": ("watermarked",),
    "spam": ("spam",),
    "flood": ("flood", "near_duplicate"),
    "rate": ("rate_exceeded",),
}


def upgrade() -> None:
    op.add_column("signals", sa.Column("finding", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("signals", sa.Column("degraded", sa.Boolean(), nullable=False, server_default=sa.false()))
    signals = sa.table(
        "signals",
        sa.column("plugin"),
        sa.column("label"),
        sa.column("abstained"),
        sa.column("reason"),
        sa.column("finding"),
        sa.column("degraded"),
    )
    for plugin, labels in BUILT_IN_FINDINGS.items():
        op.execute(
            signals.update()
            .where(signals.c.plugin == plugin, signals.c.label.in_(labels), sa.not_(signals.c.abstained))
            .values(finding=True)
        )
    op.execute(
        signals.update()
        .where(signals.c.plugin.in_(("flood", "rate")), signals.c.reason == "state_unavailable")
        .values(degraded=True)
    )
    # The review queue's "flagged by plugin" filter.
    op.create_index("ix_signals_plugin_finding", "signals", ["plugin"], postgresql_where=sa.text("finding"))


def downgrade() -> None:
    op.drop_index("ix_signals_plugin_finding", table_name="signals")
    op.drop_column("signals", "degraded")
    op.drop_column("signals", "finding")
