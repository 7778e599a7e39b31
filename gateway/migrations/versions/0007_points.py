"""the points ledger (issue 6)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 23:40:00

Keep in step with gateway/tables_points.py. The journal (points_transactions, points_entries)
and the audit log are append-only: triggers refuse UPDATE and DELETE on them, on SQLite and
PostgreSQL alike, so not even a slip in our own code can rewrite history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LIVE = "status IN ('pending', 'verified', 'posted') AND ref IS NOT NULL"
APPEND_ONLY = ("points_transactions", "points_entries", "points_audit")


def upgrade() -> None:
    op.create_table(
        "points_accounts",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("member_type", sa.String(length=16), nullable=True),
        sa.Column("community", sa.String(length=100), nullable=True),
        sa.Column("balance", sa.BigInteger(), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("conditions", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_points_accounts")),
    )
    op.create_index(
        "ix_points_accounts_kind_name", "points_accounts", ["kind", "name"], unique=True
    )
    op.create_table(
        "points_audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("member", sa.String(length=40), nullable=True),
        sa.Column("operator_role", sa.String(length=16), nullable=False),
        sa.Column("operator", sa.String(length=120), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("claim_id", sa.String(length=40), nullable=True),
        sa.Column("transaction_id", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_audit")),
    )
    op.create_index(op.f("ix_points_audit_at"), "points_audit", ["at"], unique=False)
    op.create_index(op.f("ix_points_audit_member"), "points_audit", ["member"], unique=False)
    op.create_table(
        "points_claims",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("member", sa.String(length=40), nullable=False),
        sa.Column("community", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("operator_role", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("ref", sa.String(length=120), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("minutes", sa.Integer(), nullable=True),
        sa.Column("rounding", sa.String(length=40), nullable=True),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verified_by", sa.String(length=120), nullable=True),
        sa.Column("verified_at", sa.BigInteger(), nullable=True),
        sa.Column("posted_by", sa.String(length=120), nullable=True),
        sa.Column("posted_at", sa.BigInteger(), nullable=True),
        sa.Column("refused_by", sa.String(length=120), nullable=True),
        sa.Column("refused_at", sa.BigInteger(), nullable=True),
        sa.Column("refused_level", sa.String(length=16), nullable=True),
        sa.Column("refusal_reason", sa.String(length=500), nullable=True),
        sa.Column("transaction_id", sa.String(length=40), nullable=True),
        sa.Column("reversal_id", sa.String(length=40), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_claims")),
    )
    op.create_index(op.f("ix_points_claims_member"), "points_claims", ["member"], unique=False)
    op.create_index(op.f("ix_points_claims_status"), "points_claims", ["status"], unique=False)
    op.create_index(
        "uq_points_claims_live_ref",
        "points_claims",
        ["member", "source", "ref"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    op.create_table(
        "points_idempotency",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("claim_id", sa.String(length=40), nullable=True),
        sa.Column("transaction_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_points_idempotency")),
    )
    op.create_table(
        "points_order_payments",
        sa.Column("order_ref", sa.String(length=120), nullable=False),
        sa.Column("transaction_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("order_ref", name=op.f("pk_points_order_payments")),
    )
    op.create_table(
        "points_transactions",
        sa.Column("seq", _ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("community", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("member", sa.String(length=40), nullable=True),
        sa.Column("beneficiary", sa.String(length=40), nullable=True),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("operator_role", sa.String(length=16), nullable=False),
        sa.Column("approvals", sa.JSON(), nullable=False),
        sa.Column("rounding", sa.String(length=40), nullable=True),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("claim_id", sa.String(length=40), nullable=True),
        sa.Column("ref", sa.String(length=120), nullable=True),
        sa.Column("service_code", sa.String(length=64), nullable=True),
        sa.Column("reverses", sa.String(length=40), nullable=True),
        sa.Column("service_date", sa.Date(), nullable=True),
        sa.Column("service_year", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_points_transactions")),
        sa.UniqueConstraint("id", name=op.f("uq_points_transactions_id")),
        sa.UniqueConstraint("reverses", name=op.f("uq_points_transactions_reverses")),
    )
    op.create_index(op.f("ix_points_transactions_at"), "points_transactions", ["at"], unique=False)
    op.create_index(
        op.f("ix_points_transactions_claim_id"),
        "points_transactions",
        ["claim_id"],
        unique=False,
    )
    op.create_table(
        "points_entries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(length=40), nullable=False),
        sa.Column("account", sa.String(length=80), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account"],
            ["points_accounts.key"],
            name=op.f("fk_points_entries_account_points_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["points_transactions.id"],
            name=op.f("fk_points_entries_transaction_id_points_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_entries")),
    )
    op.create_index("ix_points_entries_account", "points_entries", ["account", "id"], unique=False)
    op.create_index(
        op.f("ix_points_entries_transaction_id"),
        "points_entries",
        ["transaction_id"],
        unique=False,
    )
    _append_only_triggers()


def _append_only_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        return
    op.execute(
        "CREATE FUNCTION points_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION points_append_only()"
        )


def downgrade() -> None:
    # Dropping a table drops its triggers; the PostgreSQL function goes after them.
    op.drop_index(op.f("ix_points_entries_transaction_id"), table_name="points_entries")
    op.drop_index("ix_points_entries_account", table_name="points_entries")
    op.drop_table("points_entries")
    op.drop_index(op.f("ix_points_transactions_claim_id"), table_name="points_transactions")
    op.drop_index(op.f("ix_points_transactions_at"), table_name="points_transactions")
    op.drop_table("points_transactions")
    op.drop_table("points_order_payments")
    op.drop_table("points_idempotency")
    op.drop_index("uq_points_claims_live_ref", table_name="points_claims")
    op.drop_index(op.f("ix_points_claims_status"), table_name="points_claims")
    op.drop_index(op.f("ix_points_claims_member"), table_name="points_claims")
    op.drop_table("points_claims")
    op.drop_index(op.f("ix_points_audit_member"), table_name="points_audit")
    op.drop_index(op.f("ix_points_audit_at"), table_name="points_audit")
    op.drop_table("points_audit")
    op.drop_index("ix_points_accounts_kind_name", table_name="points_accounts")
    op.drop_table("points_accounts")
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS points_append_only()")
