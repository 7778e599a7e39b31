"""MQTT credentials of devices and pagers (issue 7)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 02:40:00

Keep in step with gateway/tables_broker.py.
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
