"""the board: alert assignment (issue 7)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 02:40:00

Keep in step with gateway/tables_board.py.
"""

from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
