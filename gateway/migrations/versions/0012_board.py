"""the board: alert assignment (issue 7)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 02:40:00

Keep in step with gateway/tables_board.py. Only adds a table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_assignments",
        sa.Column("alert_id", sa.String(length=40), nullable=False),
        sa.Column("responder_id", sa.String(length=40), nullable=False),
        sa.Column("assigned_at", sa.BigInteger(), nullable=False),
        sa.Column("assigned_by", sa.String(length=120), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_assignments_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["responder_id"],
            ["responders.id"],
            name=op.f("fk_alert_assignments_responder_id_responders"),
        ),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alert_assignments")),
    )
    with op.batch_alter_table("alert_assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_assignments_responder_id"), ["responder_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_assignments_responder_id"))
    op.drop_table("alert_assignments")
