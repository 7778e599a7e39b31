"""Tables of the service module (issue 5): catalogue, providers, orders, visits, vouchers.

They share gateway.tables' metadata (imported at the end of that module), so the migrations and
their check see every table. Times are epoch milliseconds (UTC) in BIGINT columns; money is
integer fen in BIGINT columns, never a float. Elders and responders are the anchors of
gateway/tables.py, referenced by id.

- Catalogue: `svc_services` (the price per unit and the elder's own share per unit per tier).
- Providers: `svc_providers`, their outlets (网点) `svc_outlets`, their agreements with the
  station `svc_provider_agreements` (which service, at what unit price, from-to) and their
  workers `svc_workers`.
- Orders: `svc_orders` (one row per order; a recurring agreement is a parent whose generated
  visits are child orders `parent@YYYY-MM-DD`), the handling log `svc_order_log` (who, when,
  what, each step), the EVV record written at check-out `svc_visits`, the feedback form
  `svc_feedback`, the elder's sign-off `svc_sign_offs` (a signature image as bytes, or the PIN
  checked against `svc_elder_pins`, which holds only a salted scrypt hash, or a staff witness),
  supervision (follow-up calls, complaints) `svc_supervision`.
- Vouchers: funding sources and their monthly allotment per tier and category
  (`svc_voucher_sources`, `svc_voucher_rules`), the elders enrolled with a source and their tier
  and funding basis (`svc_voucher_wallets`: the row locked with SELECT ... FOR UPDATE before any
  movement of that elder's vouchers), and the double-entry journal: `svc_ledger_txns` (append
  only; deterministic ids from care.vouchers, so a repeat is a key violation), `svc_ledger_legs`
  (the lines, summing to zero per transaction) and `svc_ledger_accounts` (each account's balance,
  kept in step with the legs in the same transaction, a CHECK refusing a negative balance on
  anything but a funding source; the reconciliation proves it equals the sum of the legs).
- `svc_idempotency`: the answer to each POST that moves money, by the caller's Idempotency-Key.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
)

from gateway.tables import metadata

__all__ = [
    "metadata",
    "svc_elder_pins",
    "svc_feedback",
    "svc_idempotency",
    "svc_ledger_accounts",
    "svc_ledger_legs",
    "svc_ledger_txns",
    "svc_order_log",
    "svc_orders",
    "svc_outlets",
    "svc_provider_agreements",
    "svc_providers",
    "svc_services",
    "svc_sign_offs",
    "svc_supervision",
    "svc_visits",
    "svc_voucher_rules",
    "svc_voucher_sources",
    "svc_voucher_wallets",
    "svc_workers",
]

_SERIAL = BigInteger().with_variant(Integer, "sqlite")  # autoincrement on both databases
ORDER_ID_LEN = 80  # a generated visit is "<parent id>@YYYY-MM-DD"
LEDGER_ID_LEN = 240  # deterministic ids: "reverse:consume:<visit>#1", account keys

# --- catalogue ---------------------------------------------------------------------------------

svc_services = Table(
    "svc_services",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("name_zh", String(100), nullable=False),
    Column("name_en", String(100), nullable=False),
    Column("category", String(20), nullable=False, index=True),
    Column("unit", String(10), nullable=False),
    Column("unit_price_fen", BigInteger, nullable=False),
    # The elder's own share per unit for each tier (free is always 0: care.services checks it).
    Column("share_free_fen", BigInteger, nullable=False),
    Column("share_low_cost_fen", BigInteger, nullable=False),
    Column("share_paid_fen", BigInteger, nullable=False),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# --- providers -----------------------------------------------------------------------------------

svc_providers = Table(
    "svc_providers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("phone", String(32)),
    Column("address", String(300)),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

svc_outlets = Table(
    "svc_outlets",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("provider_id", String(40), ForeignKey("svc_providers.id"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("address", String(300), nullable=False),
    Column("lat", Float),
    Column("lon", Float),
    Column("phone", String(32)),
    Column("created_at", BigInteger, nullable=False),
)

svc_provider_agreements = Table(
    "svc_provider_agreements",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("provider_id", String(40), ForeignKey("svc_providers.id"), nullable=False, index=True),
    Column("service_code", String(40), ForeignKey("svc_services.code"), nullable=False),
    Column("unit_price_fen", BigInteger, nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_until", Date),  # inclusive; NULL: open-ended
    Column("created_by", String(120), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

svc_workers = Table(
    "svc_workers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("provider_id", String(40), ForeignKey("svc_providers.id"), nullable=False, index=True),
    Column("outlet_id", String(40), ForeignKey("svc_outlets.id")),
    Column("responder_id", String(40), ForeignKey("responders.id")),
    Column("name", String(100), nullable=False),
    Column("phone", String(32)),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at", BigInteger, nullable=False),
)

# --- orders ------------------------------------------------------------------------------------

svc_orders = Table(
    "svc_orders",
    metadata,
    Column("id", String(ORDER_ID_LEN), primary_key=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False, index=True),
    Column("home_lat", Float, nullable=False),
    Column("home_lon", Float, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("category", String(20), nullable=False),
    Column("request", String(500), nullable=False),
    Column("applied_by_role", String(10), nullable=False),
    Column("applied_by_id", String(120), nullable=False),
    Column("parent_id", String(ORDER_ID_LEN), ForeignKey("svc_orders.id"), index=True),
    Column("scheduled_at", BigInteger, index=True),
    # The agreement (签订协议), with the prices of the day it was made: a later catalogue
    # change never reprices an agreed order.
    Column("service_code", String(40), ForeignKey("svc_services.code")),
    Column("service_name_zh", String(100)),
    Column("service_name_en", String(100)),
    Column("unit", String(10)),
    Column("unit_price_fen", BigInteger),
    Column("share_unit_fen", BigInteger),
    Column("tier", String(10)),
    Column("basis", String(100)),  # why this tier (三无, 75+ 优抚 ...): the funding basis
    Column("quantity", Integer),
    Column("funding_source", String(40), ForeignKey("svc_voucher_sources.id")),
    Column("recurrence", JSON(none_as_null=True)),  # SQL NULL for a one-off order
    Column("total_fen", BigInteger),
    Column("subsidy_fen", BigInteger),
    Column("elder_share_fen", BigInteger),
    Column("provider_id", String(40), ForeignKey("svc_providers.id")),
    Column("worker_id", String(40), ForeignKey("svc_workers.id")),
    Column("check_in_at", BigInteger),
    Column("check_in_lat", Float),
    Column("check_in_lon", Float),
    Column("check_in_distance_m", Float),
    Column("check_in_far", Boolean),
    Column("check_out_at", BigInteger),
    Column("check_out_lat", Float),
    Column("check_out_lon", Float),
    Column("check_out_distance_m", Float),
    Column("check_out_far", Boolean),
    Column("rating", Integer),
    Column("feedback", String(1000)),
    Column("sign_off_method", String(10)),
    Column("sign_off_ref", String(120)),
    Column("signed_off_at", BigInteger),
    Column("cancel_reason", String(1000)),
    Column("version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

svc_order_log = Table(
    "svc_order_log",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column(
        "order_id", String(ORDER_ID_LEN), ForeignKey("svc_orders.id"), nullable=False, index=True
    ),
    Column("at", BigInteger, nullable=False),
    Column("actor_role", String(10), nullable=False),
    Column("actor_id", String(120), nullable=False),
    Column("action", String(20), nullable=False),
    Column("detail", String(1000), nullable=False),
    Column("recorded_by", String(120), nullable=False),  # the API caller who entered it
)

# The EVV record (the six facts), written once at check-out and never changed.
svc_visits = Table(
    "svc_visits",
    metadata,
    Column("order_id", String(ORDER_ID_LEN), ForeignKey("svc_orders.id"), primary_key=True),
    Column("service_code", String(40), nullable=False),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False, index=True),
    Column("date", Date, nullable=False, index=True),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("worker_id", String(40), ForeignKey("svc_workers.id"), nullable=False),
    Column("provider_id", String(40), ForeignKey("svc_providers.id"), nullable=False, index=True),
    Column("start_at", BigInteger, nullable=False),
    Column("end_at", BigInteger, nullable=False),
    Column("far_check_in", Boolean, nullable=False),
    Column("far_check_out", Boolean, nullable=False),
)

# 服务情况反馈表: the feedback form after the visit.
svc_feedback = Table(
    "svc_feedback",
    metadata,
    Column("order_id", String(ORDER_ID_LEN), ForeignKey("svc_orders.id"), primary_key=True),
    Column("rating", Integer, nullable=False),
    Column("on_time", Boolean),
    Column("attitude", Integer),
    Column("quality", Integer),
    Column("note", String(1000)),
    Column("by_role", String(10), nullable=False),
    Column("by_id", String(120), nullable=False),
    Column("at", BigInteger, nullable=False),
)

svc_sign_offs = Table(
    "svc_sign_offs",
    metadata,
    Column("order_id", String(ORDER_ID_LEN), ForeignKey("svc_orders.id"), primary_key=True),
    Column("method", String(10), nullable=False),
    Column("signature", LargeBinary),
    Column("signature_type", String(20)),
    Column("signature_sha256", String(64)),
    Column("witness_id", String(40), ForeignKey("responders.id")),
    Column("at", BigInteger, nullable=False),
    Column("recorded_by", String(120), nullable=False),
)

svc_elder_pins = Table(
    "svc_elder_pins",
    metadata,
    Column("elder_id", String(40), ForeignKey("elders.id"), primary_key=True),
    Column("pin_hash", String(200), nullable=False),  # scrypt$n$r$p$salt$hash, never the PIN
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("set_at", BigInteger, nullable=False),
)

svc_supervision = Table(
    "svc_supervision",
    metadata,
    Column("id", String(40), primary_key=True),
    Column(
        "order_id", String(ORDER_ID_LEN), ForeignKey("svc_orders.id"), nullable=False, index=True
    ),
    Column("provider_id", String(40), ForeignKey("svc_providers.id"), index=True),
    Column("kind", String(12), nullable=False),  # follow_up (a call due / made) or complaint
    Column("due_at", BigInteger),
    Column("done_at", BigInteger),
    Column("rating", Integer),
    Column("outcome", String(20)),
    Column("note", String(1000)),
    Column("by", String(120)),
    Column("created_at", BigInteger, nullable=False),
)

# --- vouchers ----------------------------------------------------------------------------------

svc_voucher_sources = Table(
    "svc_voucher_sources",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name_zh", String(100), nullable=False),
    Column("name_en", String(100), nullable=False),
    Column("carry_over", JSON, nullable=False),  # categories whose leftovers carry over
    Column("created_at", BigInteger, nullable=False),
)

svc_voucher_rules = Table(
    "svc_voucher_rules",
    metadata,
    Column("source_id", String(40), ForeignKey("svc_voucher_sources.id"), primary_key=True),
    Column("tier", String(10), primary_key=True),
    Column("category", String(20), primary_key=True),
    Column("monthly_fen", BigInteger, nullable=False),
)

# One elder enrolled with one source: the tier and its funding basis (三无, 75+ 优抚 ...), until
# the elder registry (issue 4) carries the tier. The row each movement of the elder's vouchers
# locks first.
svc_voucher_wallets = Table(
    "svc_voucher_wallets",
    metadata,
    Column("source_id", String(40), ForeignKey("svc_voucher_sources.id"), primary_key=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), primary_key=True),
    Column("tier", String(10), nullable=False),
    Column("basis", String(100), nullable=False),
    Column("from_month", String(7), nullable=False),
    Column("until_month", String(7)),
    Column("created_by", String(120), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

svc_ledger_accounts = Table(
    "svc_ledger_accounts",
    metadata,
    Column("key", String(LEDGER_ID_LEN), primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("source_id", String(40), nullable=False),
    Column("elder_id", String(40), index=True),
    Column("month", String(7)),
    Column("category", String(20)),
    Column("provider_id", String(40)),
    Column("balance_fen", BigInteger, nullable=False),
    CheckConstraint(
        "kind = 'source' OR balance_fen >= 0", name="ck_svc_ledger_accounts_not_negative"
    ),
)

svc_ledger_txns = Table(
    "svc_ledger_txns",
    metadata,
    Column("seq", _SERIAL, primary_key=True, autoincrement=True),  # the journal's order
    Column("id", String(LEDGER_ID_LEN), nullable=False, unique=True),
    Column("kind", String(10), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("month", String(7), nullable=False, index=True),
    Column("source_id", String(40), nullable=False),
    Column("elder_id", String(40), index=True),
    Column("provider_id", String(40)),
    Column("visit_id", String(ORDER_ID_LEN), index=True),
    Column("elder_share_fen", BigInteger, nullable=False),
    Column("reverses", String(LEDGER_ID_LEN), unique=True),  # one reversal per transaction
    Column("reverses_kind", String(10)),
    Column("reason", String(1000), nullable=False),
    Column("actor", String(120), nullable=False),
)

svc_ledger_legs = Table(
    "svc_ledger_legs",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("txn_seq", BigInteger, ForeignKey("svc_ledger_txns.seq"), nullable=False, index=True),
    Column(
        "account_key",
        String(LEDGER_ID_LEN),
        ForeignKey("svc_ledger_accounts.key"),
        nullable=False,
        index=True,
    ),
    Column("fen", BigInteger, nullable=False),
)

svc_idempotency = Table(
    "svc_idempotency",
    metadata,
    Column("principal", String(120), primary_key=True),
    Column("key", String(100), primary_key=True),
    Column("request_sha256", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

Index("ix_svc_orders_provider_state", svc_orders.c.provider_id, svc_orders.c.state)
