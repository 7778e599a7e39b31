"""the phone page: presence of a person's open phone page (issue 7)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 02:40:00

Keep in step with gateway/tables_phone.py.
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
