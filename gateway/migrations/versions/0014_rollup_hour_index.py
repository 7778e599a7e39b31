"""the rollups' pruning: an index on the hour (issue 8)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26 06:45:00

Keep in step with gateway/tables_telemetry.py. The ingest worker deletes hours older than
SHOUWANG_ROLLUP_RETENTION_DAYS a few thousand rows at a time; without this each step scanned
the table.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("telemetry_rollups", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_rollups_hour_start", ["hour_start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("telemetry_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_rollups_hour_start")
