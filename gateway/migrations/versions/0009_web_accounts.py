"""web accounts: users, sessions (issue 7)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 02:40:00

Keep in step with gateway/tables_web.py.
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
