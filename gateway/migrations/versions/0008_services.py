"""the service module: catalogue, providers, orders, visits, vouchers (issue 5)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 23:40:00

Keep in step with gateway/tables_services.py (rendered from it by Alembic's autogenerate, then
read). Only new tables: nothing of the earlier migrations is altered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "svc_idempotency",
        sa.Column("principal", sa.String(length=120), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name=op.f("pk_svc_idempotency")),
    )
    op.create_table(
        "svc_ledger_accounts",
        sa.Column("key", sa.String(length=240), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=True),
        sa.Column("month", sa.String(length=7), nullable=True),
        sa.Column("category", sa.String(length=20), nullable=True),
        sa.Column("provider_id", sa.String(length=40), nullable=True),
        sa.Column("balance_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "kind = 'source' OR balance_fen >= 0", name="ck_svc_ledger_accounts_not_negative"
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_svc_ledger_accounts")),
    )
    with op.batch_alter_table("svc_ledger_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_svc_ledger_accounts_elder_id"), ["elder_id"], unique=False
        )

    op.create_table(
        "svc_ledger_txns",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=240), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=True),
        sa.Column("provider_id", sa.String(length=40), nullable=True),
        sa.Column("visit_id", sa.String(length=80), nullable=True),
        sa.Column("elder_share_fen", sa.BigInteger(), nullable=False),
        sa.Column("reverses", sa.String(length=240), nullable=True),
        sa.Column("reverses_kind", sa.String(length=10), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_svc_ledger_txns")),
        sa.UniqueConstraint("id", name=op.f("uq_svc_ledger_txns_id")),
        sa.UniqueConstraint("reverses", name=op.f("uq_svc_ledger_txns_reverses")),
    )
    with op.batch_alter_table("svc_ledger_txns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_svc_ledger_txns_elder_id"), ["elder_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_svc_ledger_txns_month"), ["month"], unique=False)
        batch_op.create_index(batch_op.f("ix_svc_ledger_txns_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "svc_providers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("address", sa.String(length=300), nullable=True),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_svc_providers")),
    )
    op.create_table(
        "svc_services",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("unit", sa.String(length=10), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("share_free_fen", sa.BigInteger(), nullable=False),
        sa.Column("share_low_cost_fen", sa.BigInteger(), nullable=False),
        sa.Column("share_paid_fen", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_svc_services")),
    )
    with op.batch_alter_table("svc_services", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_svc_services_category"), ["category"], unique=False)

    op.create_table(
        "svc_voucher_sources",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("carry_over", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_svc_voucher_sources")),
    )
    op.create_table(
        "svc_elder_pins",
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("pin_hash", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("set_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_svc_elder_pins_elder_id_elders")
        ),
        sa.PrimaryKeyConstraint("elder_id", name=op.f("pk_svc_elder_pins")),
    )
    op.create_table(
        "svc_ledger_legs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("txn_seq", sa.BigInteger(), nullable=False),
        sa.Column("account_key", sa.String(length=240), nullable=False),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_key"],
            ["svc_ledger_accounts.key"],
            name=op.f("fk_svc_ledger_legs_account_key_svc_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["txn_seq"],
            ["svc_ledger_txns.seq"],
            name=op.f("fk_svc_ledger_legs_txn_seq_svc_ledger_txns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_svc_ledger_legs")),
    )
    with op.batch_alter_table("svc_ledger_legs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_svc_ledger_legs_account_key"), ["account_key"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_svc_ledger_legs_txn_seq"), ["txn_seq"], unique=False)

    op.create_table(
        "svc_outlets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["svc_providers.id"],
            name=op.f("fk_svc_outlets_provider_id_svc_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_svc_outlets")),
    )
    with op.batch_alter_table("svc_outlets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_svc_outlets_provider_id"), ["provider_id"], unique=False
        )

    op.create_table(
        "svc_provider_agreements",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("service_code", sa.String(length=40), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["svc_providers.id"],
            name=op.f("fk_svc_provider_agreements_provider_id_svc_providers"),
        ),
        sa.ForeignKeyConstraint(
            ["service_code"],
            ["svc_services.code"],
            name=op.f("fk_svc_provider_agreements_service_code_svc_services"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_svc_provider_agreements")),
    )
    with op.batch_alter_table("svc_provider_agreements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_svc_provider_agreements_provider_id"), ["provider_id"], unique=False
        )

    op.create_table(
        "svc_voucher_rules",
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("monthly_fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["svc_voucher_sources.id"],
            name=op.f("fk_svc_voucher_rules_source_id_svc_voucher_sources"),
        ),
        sa.PrimaryKeyConstraint("source_id", "tier", "category", name=op.f("pk_svc_voucher_rules")),
    )
    op.create_table(
        "svc_voucher_wallets",
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("basis", sa.String(length=100), nullable=False),
        sa.Column("from_month", sa.String(length=7), nullable=False),
        sa.Column("until_month", sa.String(length=7), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_svc_voucher_wallets_elder_id_elders")
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["svc_voucher_sources.id"],
            name=op.f("fk_svc_voucher_wallets_source_id_svc_voucher_sources"),
        ),
        sa.PrimaryKeyConstraint("source_id", "elder_id", name=op.f("pk_svc_voucher_wallets")),
    )
    op.create_table(
        "svc_workers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("outlet_id", sa.String(length=40), nullable=True),
        sa.Column("responder_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["outlet_id"], ["svc_outlets.id"], name=op.f("fk_svc_workers_outlet_id_svc_outlets")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["svc_providers.id"],
            name=op.f("fk_svc_workers_provider_id_svc_providers"),
        ),
        sa.ForeignKeyConstraint(
            ["responder_id"], ["responders.id"], name=op.f("fk_svc_workers_responder_id_responders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_svc_workers")),
    )
    with op.batch_alter_table("svc_workers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_svc_workers_provider_id"), ["provider_id"], unique=False
        )

    op.create_table(
        "svc_orders",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("home_lat", sa.Float(), nullable=False),
        sa.Column("home_lon", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("request", sa.String(length=500), nullable=False),
        sa.Column("applied_by_role", sa.String(length=10), nullable=False),
        sa.Column("applied_by_id", sa.String(length=120), nullable=False),
        sa.Column("parent_id", sa.String(length=80), nullable=True),
        sa.Column("scheduled_at", sa.BigInteger(), nullable=True),
        sa.Column("service_code", sa.String(length=40), nullable=True),
        sa.Column("service_name_zh", sa.String(length=100), nullable=True),
        sa.Column("service_name_en", sa.String(length=100), nullable=True),
        sa.Column("unit", sa.String(length=10), nullable=True),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=True),
        sa.Column("share_unit_fen", sa.BigInteger(), nullable=True),
        sa.Column("tier", sa.String(length=10), nullable=True),
        sa.Column("basis", sa.String(length=100), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=True),
        sa.Column("funding_source", sa.String(length=40), nullable=True),
        sa.Column("recurrence", sa.JSON(), nullable=True),
        sa.Column("total_fen", sa.BigInteger(), nullable=True),
        sa.Column("subsidy_fen", sa.BigInteger(), nullable=True),
        sa.Column("elder_share_fen", sa.BigInteger(), nullable=True),
        sa.Column("provider_id", sa.String(length=40), nullable=True),
        sa.Column("worker_id", sa.String(length=40), nullable=True),
        sa.Column("check_in_at", sa.BigInteger(), nullable=True),
        sa.Column("check_in_lat", sa.Float(), nullable=True),
        sa.Column("check_in_lon", sa.Float(), nullable=True),
        sa.Column("check_in_distance_m", sa.Float(), nullable=True),
        sa.Column("check_in_far", sa.Boolean(), nullable=True),
        sa.Column("check_out_at", sa.BigInteger(), nullable=True),
        sa.Column("check_out_lat", sa.Float(), nullable=True),
        sa.Column("check_out_lon", sa.Float(), nullable=True),
        sa.Column("check_out_distance_m", sa.Float(), nullable=True),
        sa.Column("check_out_far", sa.Boolean(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("feedback", sa.String(length=1000), nullable=True),
        sa.Column("sign_off_method", sa.String(length=10), nullable=True),
        sa.Column("sign_off_ref", sa.String(length=120), nullable=True),
        sa.Column("signed_off_at", sa.BigInteger(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=1000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_svc_orders_elder_id_elders")
        ),
        sa.ForeignKeyConstraint(
            ["funding_source"],
            ["svc_voucher_sources.id"],
            name=op.f("fk_svc_orders_funding_source_svc_voucher_sources"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["svc_orders.id"], name=op.f("fk_svc_orders_parent_id_svc_orders")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["svc_providers.id"],
            name=op.f("fk_svc_orders_provider_id_svc_providers"),
        ),
        sa.ForeignKeyConstraint(
            ["service_code"],
            ["svc_services.code"],
            name=op.f("fk_svc_orders_service_code_svc_services"),
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["svc_workers.id"], name=op.f("fk_svc_orders_worker_id_svc_workers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_svc_orders")),
    )
    with op.batch_alter_table("svc_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_svc_orders_elder_id"), ["elder_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_svc_orders_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(
            "ix_svc_orders_provider_state", ["provider_id", "state"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_svc_orders_scheduled_at"), ["scheduled_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_svc_orders_state"), ["state"], unique=False)

    op.create_table(
        "svc_feedback",
        sa.Column("order_id", sa.String(length=80), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("on_time", sa.Boolean(), nullable=True),
        sa.Column("attitude", sa.Integer(), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("by_role", sa.String(length=10), nullable=False),
        sa.Column("by_id", sa.String(length=120), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["svc_orders.id"], name=op.f("fk_svc_feedback_order_id_svc_orders")
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_svc_feedback")),
    )
    op.create_table(
        "svc_order_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("order_id", sa.String(length=80), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor_role", sa.String(length=10), nullable=False),
        sa.Column("actor_id", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.String(length=1000), nullable=False),
        sa.Column("recorded_by", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["svc_orders.id"], name=op.f("fk_svc_order_log_order_id_svc_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_svc_order_log")),
    )
    with op.batch_alter_table("svc_order_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_svc_order_log_order_id"), ["order_id"], unique=False)

    op.create_table(
        "svc_sign_offs",
        sa.Column("order_id", sa.String(length=80), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=True),
        sa.Column("signature_type", sa.String(length=20), nullable=True),
        sa.Column("signature_sha256", sa.String(length=64), nullable=True),
        sa.Column("witness_id", sa.String(length=40), nullable=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("recorded_by", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["svc_orders.id"], name=op.f("fk_svc_sign_offs_order_id_svc_orders")
        ),
        sa.ForeignKeyConstraint(
            ["witness_id"], ["responders.id"], name=op.f("fk_svc_sign_offs_witness_id_responders")
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_svc_sign_offs")),
    )
    op.create_table(
        "svc_supervision",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=80), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=True),
        sa.Column("done_at", sa.BigInteger(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("by", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["svc_orders.id"], name=op.f("fk_svc_supervision_order_id_svc_orders")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["svc_providers.id"],
            name=op.f("fk_svc_supervision_provider_id_svc_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_svc_supervision")),
    )
    with op.batch_alter_table("svc_supervision", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_svc_supervision_order_id"), ["order_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_svc_supervision_provider_id"), ["provider_id"], unique=False
        )

    op.create_table(
        "svc_visits",
        sa.Column("order_id", sa.String(length=80), nullable=False),
        sa.Column("service_code", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("worker_id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("start_at", sa.BigInteger(), nullable=False),
        sa.Column("end_at", sa.BigInteger(), nullable=False),
        sa.Column("far_check_in", sa.Boolean(), nullable=False),
        sa.Column("far_check_out", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_svc_visits_elder_id_elders")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["svc_orders.id"], name=op.f("fk_svc_visits_order_id_svc_orders")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["svc_providers.id"],
            name=op.f("fk_svc_visits_provider_id_svc_providers"),
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["svc_workers.id"], name=op.f("fk_svc_visits_worker_id_svc_workers")
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_svc_visits")),
    )
    with op.batch_alter_table("svc_visits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_svc_visits_date"), ["date"], unique=False)
        batch_op.create_index(batch_op.f("ix_svc_visits_elder_id"), ["elder_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_svc_visits_provider_id"), ["provider_id"], unique=False
        )
    _append_only_triggers()


# The journal, the handling log and the EVV records are append-only: the code never changes
# them, and the database refuses to (a correction is a reversing entry, a new log line).
APPEND_ONLY = ("svc_ledger_txns", "svc_ledger_legs", "svc_order_log", "svc_visits")


def _append_only_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION svc_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only (%)', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'integrity_constraint_violation';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION svc_append_only()"
            )
    else:
        for table in APPEND_ONLY:
            for what in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{what.lower()} BEFORE {what} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only ({what})'); END"
                )


def _drop_append_only_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS svc_append_only()")
    else:
        for table in APPEND_ONLY:
            for what in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{what}")


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table("svc_visits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_visits_provider_id"))
        batch_op.drop_index(batch_op.f("ix_svc_visits_elder_id"))
        batch_op.drop_index(batch_op.f("ix_svc_visits_date"))

    op.drop_table("svc_visits")
    with op.batch_alter_table("svc_supervision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_supervision_provider_id"))
        batch_op.drop_index(batch_op.f("ix_svc_supervision_order_id"))

    op.drop_table("svc_supervision")
    op.drop_table("svc_sign_offs")
    with op.batch_alter_table("svc_order_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_order_log_order_id"))

    op.drop_table("svc_order_log")
    op.drop_table("svc_feedback")
    with op.batch_alter_table("svc_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_orders_state"))
        batch_op.drop_index(batch_op.f("ix_svc_orders_scheduled_at"))
        batch_op.drop_index("ix_svc_orders_provider_state")
        batch_op.drop_index(batch_op.f("ix_svc_orders_parent_id"))
        batch_op.drop_index(batch_op.f("ix_svc_orders_elder_id"))

    op.drop_table("svc_orders")
    with op.batch_alter_table("svc_workers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_workers_provider_id"))

    op.drop_table("svc_workers")
    op.drop_table("svc_voucher_wallets")
    op.drop_table("svc_voucher_rules")
    with op.batch_alter_table("svc_provider_agreements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_provider_agreements_provider_id"))

    op.drop_table("svc_provider_agreements")
    with op.batch_alter_table("svc_outlets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_outlets_provider_id"))

    op.drop_table("svc_outlets")
    with op.batch_alter_table("svc_ledger_legs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_ledger_legs_txn_seq"))
        batch_op.drop_index(batch_op.f("ix_svc_ledger_legs_account_key"))

    op.drop_table("svc_ledger_legs")
    op.drop_table("svc_elder_pins")
    op.drop_table("svc_voucher_sources")
    with op.batch_alter_table("svc_services", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_services_category"))

    op.drop_table("svc_services")
    op.drop_table("svc_providers")
    with op.batch_alter_table("svc_ledger_txns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_ledger_txns_visit_id"))
        batch_op.drop_index(batch_op.f("ix_svc_ledger_txns_month"))
        batch_op.drop_index(batch_op.f("ix_svc_ledger_txns_elder_id"))

    op.drop_table("svc_ledger_txns")
    with op.batch_alter_table("svc_ledger_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_svc_ledger_accounts_elder_id"))

    op.drop_table("svc_ledger_accounts")
    op.drop_table("svc_idempotency")
