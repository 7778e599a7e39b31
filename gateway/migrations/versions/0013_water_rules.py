"""per-elder water thresholds (issue 3)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26 07:00:00

Keep in step with gateway/tables_rules.py. Only adds a table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "elder_water_rules",
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("fixed_min_l", sa.Float(), nullable=True),
        sa.Column("fixed_window_min", sa.Integer(), nullable=True),
        sa.Column("day_start", sa.String(length=5), nullable=True),
        sa.Column("day_end", sa.String(length=5), nullable=True),
        sa.Column("learn", sa.Boolean(), nullable=True),
        sa.Column("running_window_min", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_elder_water_rules_elder_id_elders")
        ),
        sa.PrimaryKeyConstraint("elder_id", name=op.f("pk_elder_water_rules")),
    )


def downgrade() -> None:
    op.drop_table("elder_water_rules")
