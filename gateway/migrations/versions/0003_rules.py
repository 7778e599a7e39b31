"""rules: device rule state, suppressions, incidents, commands

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 21:10:00

Keep in step with the "rules" block at the end of gateway/tables.py. Columns are added with
batch operations, so the same migration runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_DUE = "due_at IS NOT NULL"
_PENDING = "type = 'suppressed' AND released_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("building", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("valve_device_id", sa.String(length=64), nullable=True))

    op.create_table(
        "rule_states",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", "rule", name=op.f("pk_rule_states")),
    )
    with op.batch_alter_table("rule_states", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rule_states_due",
            ["due_at"],
            unique=False,
            sqlite_where=sa.text(_DUE),
            postgresql_where=sa.text(_DUE),
        )

    op.create_table(
        "elder_away",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.Column("until", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(length=120), nullable=False),
        sa.Column("note", sa.String(length=1000), server_default="", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_elder_away_elder_id_elders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_elder_away")),
    )
    with op.batch_alter_table("elder_away", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_elder_away_elder_id"), ["elder_id"], unique=False)

    op.create_table(
        "device_mutes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("author", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.Column("until", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_mutes_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_mutes")),
    )
    with op.batch_alter_table("device_mutes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_mutes_device_id"), ["device_id"], unique=False)

    op.create_table(
        "commands",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("origin_device_id", sa.String(length=64), nullable=True),
        sa.Column("alert_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("result_ok", sa.Boolean(), nullable=True),
        sa.Column("result_detail", sa.String(length=500), nullable=True),
        sa.Column("result_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_commands_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_commands_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("device_id", "id", name=op.f("pk_commands")),
    )

    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("building", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=40), nullable=True),
        sa.Column("device_ids", sa.JSON(), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.Column("closed_why", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_incidents_alert_id_alerts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("key", name=op.f("uq_incidents_key")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incidents_building"), ["building"], unique=False)

    op.create_table(
        "rule_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("until", sa.BigInteger(), nullable=True),
        sa.Column("released_at", sa.BigInteger(), nullable=True),
        sa.Column("alert_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_events")),
    )
    with op.batch_alter_table("rule_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rule_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_rule_events_device_id"), ["device_id"], unique=False)
        batch_op.create_index(
            "ix_rule_events_pending",
            ["until"],
            unique=False,
            sqlite_where=sa.text(_PENDING),
            postgresql_where=sa.text(_PENDING),
        )


def downgrade() -> None:
    with op.batch_alter_table("rule_events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_rule_events_pending",
            sqlite_where=sa.text(_PENDING),
            postgresql_where=sa.text(_PENDING),
        )
        batch_op.drop_index(batch_op.f("ix_rule_events_device_id"))
        batch_op.drop_index(batch_op.f("ix_rule_events_at"))
    op.drop_table("rule_events")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_building"))
    op.drop_table("incidents")
    op.drop_table("commands")
    with op.batch_alter_table("device_mutes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_mutes_device_id"))
    op.drop_table("device_mutes")
    with op.batch_alter_table("elder_away", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_elder_away_elder_id"))
    op.drop_table("elder_away")
    with op.batch_alter_table("rule_states", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_rule_states_due", sqlite_where=sa.text(_DUE), postgresql_where=sa.text(_DUE)
        )
    op.drop_table("rule_states")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("valve_device_id")
        batch_op.drop_column("building")
