"""paging: pairings, duty roster, channels, deliveries, reminders

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 21:10:00

Keep in step with the "paging" block at the end of gateway/tables.py. Columns are added with
batch operations, so the same migration runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pairings",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("responder_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("ord", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active_from", sa.BigInteger(), nullable=False),
        sa.Column("active_until", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_pairings_elder_id_elders")
        ),
        sa.ForeignKeyConstraint(
            ["responder_id"], ["responders.id"], name=op.f("fk_pairings_responder_id_responders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pairings")),
    )
    with op.batch_alter_table("pairings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pairings_elder_id"), ["elder_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_pairings_responder_id"), ["responder_id"], unique=False
        )

    op.create_table(
        "duty_shifts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("responder_id", sa.String(length=40), nullable=False),
        sa.Column("start_at", sa.BigInteger(), nullable=False),
        sa.Column("end_at", sa.BigInteger(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["responder_id"],
            ["responders.id"],
            name=op.f("fk_duty_shifts_responder_id_responders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duty_shifts")),
    )
    with op.batch_alter_table("duty_shifts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_shifts_end_at"), ["end_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_duty_shifts_responder_id"), ["responder_id"], unique=False
        )

    op.create_table(
        "responder_channels",
        sa.Column("responder_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("after_s", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["responder_id"],
            ["responders.id"],
            name=op.f("fk_responder_channels_responder_id_responders"),
        ),
        sa.PrimaryKeyConstraint("responder_id", "position", name=op.f("pk_responder_channels")),
    )

    op.create_table(
        "deliveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.String(length=40), nullable=False),
        sa.Column("page_id", sa.String(length=40), nullable=False),
        sa.Column("responder_id", sa.String(length=40), nullable=False),
        sa.Column("reminder", sa.Boolean(), nullable=False),
        sa.Column("paged_at", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address_masked", sa.String(length=120), nullable=False),
        sa.Column("link", sa.Integer(), nullable=False),
        sa.Column("try_no", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("next_try_at", sa.BigInteger(), nullable=True),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_deliveries_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["responder_id"],
            ["responders.id"],
            name=op.f("fk_deliveries_responder_id_responders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_alert_id"), ["alert_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_page_id"), ["page_id"], unique=False)
        batch_op.create_index(
            "ix_deliveries_due",
            ["next_try_at"],
            unique=False,
            sqlite_where=sa.text("next_try_at IS NOT NULL"),
            postgresql_where=sa.text("next_try_at IS NOT NULL"),
        )

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_reminder_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("reminders_sent", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("plan_source", sa.String(length=16), nullable=True))
        batch_op.create_index(
            "ix_alerts_reminder_due",
            ["next_reminder_at"],
            unique=False,
            sqlite_where=sa.text("next_reminder_at IS NOT NULL"),
            postgresql_where=sa.text("next_reminder_at IS NOT NULL"),
        )

    with op.batch_alter_table("elders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("elders", schema=None) as batch_op:
        batch_op.drop_column("tags")

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_alerts_reminder_due",
            sqlite_where=sa.text("next_reminder_at IS NOT NULL"),
            postgresql_where=sa.text("next_reminder_at IS NOT NULL"),
        )
        batch_op.drop_column("plan_source")
        batch_op.drop_column("reminders_sent")
        batch_op.drop_column("next_reminder_at")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_deliveries_due",
            sqlite_where=sa.text("next_try_at IS NOT NULL"),
            postgresql_where=sa.text("next_try_at IS NOT NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_deliveries_page_id"))
        batch_op.drop_index(batch_op.f("ix_deliveries_alert_id"))
    op.drop_table("deliveries")
    op.drop_table("responder_channels")
    with op.batch_alter_table("duty_shifts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_shifts_responder_id"))
        batch_op.drop_index(batch_op.f("ix_duty_shifts_end_at"))
    op.drop_table("duty_shifts")
    with op.batch_alter_table("pairings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pairings_responder_id"))
        batch_op.drop_index(batch_op.f("ix_pairings_elder_id"))
    op.drop_table("pairings")
