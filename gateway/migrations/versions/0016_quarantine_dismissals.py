"""refused alarms dismissed on the board

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27 15:00:00

Keep in step with gateway/tables_board.py `quarantine_dismissals`. Only adds a table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantine_dismissals",
        sa.Column("quarantine_id", sa.BigInteger(), nullable=False),
        sa.Column("dismissed_at", sa.BigInteger(), nullable=False),
        sa.Column("dismissed_by", sa.String(length=120), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["quarantine_id"],
            ["quarantine.id"],
            name=op.f("fk_quarantine_dismissals_quarantine_id_quarantine"),
        ),
        sa.PrimaryKeyConstraint("quarantine_id", name=op.f("pk_quarantine_dismissals")),
    )


def downgrade() -> None:
    op.drop_table("quarantine_dismissals")
