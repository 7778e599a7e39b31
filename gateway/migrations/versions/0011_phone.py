"""the phone page: presence of a person's open phone page (issue 7)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 02:40:00

Keep in step with gateway/tables_phone.py. Only a new table: nothing earlier is altered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "phone_presence",
        sa.Column("stream_id", sa.String(length=40), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["responders.id"],
            name=op.f("fk_phone_presence_person_id_responders"),
        ),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_phone_presence")),
    )
    with op.batch_alter_table("phone_presence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_phone_presence_person_id"), ["person_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_phone_presence_seen_at"), ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("phone_presence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phone_presence_seen_at"))
        batch_op.drop_index(batch_op.f("ix_phone_presence_person_id"))
    op.drop_table("phone_presence")
