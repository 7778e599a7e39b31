"""telemetry rollups (issue 8)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 23:40:00

Keep in step with gateway/tables_telemetry.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_rollups",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("hour_start", sa.BigInteger(), nullable=False),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "device_id", "hour_start", "field", name=op.f("pk_telemetry_rollups")
        ),
    )


def downgrade() -> None:
    op.drop_table("telemetry_rollups")
