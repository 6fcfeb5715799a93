"""One definition of a verdict's review state, as a view both readers use (the review service's queue and
`moderation verdicts`), instead of two that could drift apart.

A decision applies to the revision the moderator saw, so the latest `decided` event is taken per
(tenant, post, revision). PostgreSQL inlines the view, so queries that filter verdicts first stay cheap.

Revision ID: 0006_review_state
Revises: 0005_signal_contract
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0006_review_state"
down_revision = "0005_signal_contract"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW verdict_review_state AS
        SELECT v.id AS verdict_id,
               d.decision,
               d.action AS decided_action,
               d.at AS decision_at,
               d.username AS decided_by,
               CASE WHEN d.decision = 'escalate' THEN 'escalated'
                    WHEN d.decision IS NOT NULL THEN 'decided'
                    WHEN v.action IN ('review', 'quarantine') THEN 'pending'
                    ELSE 'none' END AS review_state,
               COALESCE(d.action, v.action) AS effective_action
        FROM verdicts v
        LEFT JOIN LATERAL (
            SELECT e.decision, e.action, e.at, e.username FROM review_events e
            WHERE e.tenant = v.tenant AND e.post_id = v.post_id AND e.revision = v.revision AND e.kind = 'decided'
            ORDER BY e.at DESC, e.id DESC LIMIT 1
        ) d ON true
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW verdict_review_state")
