"""outbox: index by alert (an alert's pages; cancelling its pending pages on an answer)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:55:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_alert_id", "outbox", ["alert_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_alert_id", table_name="outbox")
