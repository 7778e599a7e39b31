"""Tables of the mutual-aid points ledger (互助养老积分, issue 6); the domain is care/points.py.

They share gateway.tables' metadata (imported at the end of that module), so the migrations and
their check see every table. Times are epoch milliseconds (UTC) in BIGINT columns; amounts are
integer units of half a point (`care.points_rules.UNITS_PER_POINT`), never floats.

- `points_accounts`: one row per account: a member's (a responder or an elder), the bank's
  ISSUANCE and REDEMPTION accounts and the pools. `balance` is the cached posted balance of a
  member or pool account, changed only together with its entries while its row is locked; the
  bank's own accounts are never locked (they would be one hot row for the whole district) and
  keep NULL there: their balance is always summed from the entries.
- `points_claims`: earnings awaiting approval (the domain's `Claim`): PENDING -> VERIFIED by the
  community (社区核实录入) -> POSTED by the sub-district (街道审核上传), or REFUSED with a reason;
  who entered, who verified, who posted, the rounding rule applied.
- `points_transactions` and `points_entries`: the append-only double-entry journal. A
  transaction's entries sum to zero and are written with it in one database transaction. A
  correction is a REVERSAL transaction (`reverses` is unique: at most one per original) with its
  reason and approver in `approvals`.
- `points_order_payments`: the live (unreversed) redemption of each service order, keyed by the
  order, so two redemptions of one order cannot both commit whoever pays; a reversal removes
  its row (this is an index of the journal, not the journal).
- `points_idempotency`: one row per remembered success of a keyed request (Idempotency-Key):
  the key, the request's fingerprint and what it produced.
- `points_audit`: append-only log of who did what for whom: the member acted for, the operator
  role (self, staff, family), the real person and the API caller.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    text,
)

from gateway.tables import metadata

_SEQ = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys only
LIVE_CLAIM_SQL = "status IN ('pending', 'verified', 'posted') AND ref IS NOT NULL"

points_accounts = Table(
    "points_accounts",
    metadata,
    Column("key", String(80), primary_key=True),  # care.points.Account.key: "member:rs_..."
    Column("kind", String(16), nullable=False),  # member | issuance | redemption | pool
    Column("name", String(64), nullable=False),
    Column("member_type", String(16)),  # responder | elder (members only)
    Column("community", String(100)),
    Column("balance", BigInteger),  # cached for member and pool accounts; NULL for the bank's
    # What the care records do not hold yet for a member who is not an elder (a volunteer
    # banking time for later): the facts that decide whether they may redeem.
    Column("birth_date", Date),
    Column("conditions", JSON),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(120), nullable=False),
)
Index("ix_points_accounts_kind_name", points_accounts.c.kind, points_accounts.c.name, unique=True)

points_claims = Table(
    "points_claims",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("member", String(40), nullable=False, index=True),
    Column("community", String(100), nullable=False),
    Column("source", String(16), nullable=False),  # service | alarm | award
    Column("category", String(32), nullable=False),
    Column("units", BigInteger, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("requested_by", String(120), nullable=False),
    Column("operator_role", String(16), nullable=False),  # self | staff | family
    Column("requested_at", BigInteger, nullable=False),
    Column("service_date", Date, nullable=False),
    Column("ref", String(120)),  # the service record or the alert; none for an award
    Column("started_at", BigInteger),
    Column("ended_at", BigInteger),
    Column("minutes", Integer),
    Column("rounding", String(40)),  # care.points_rules.ROUNDING_RULES code
    Column("idempotency_key", String(100)),
    Column("status", String(16), nullable=False, index=True),
    Column("verified_by", String(120)),
    Column("verified_at", BigInteger),
    Column("posted_by", String(120)),
    Column("posted_at", BigInteger),
    Column("refused_by", String(120)),
    Column("refused_at", BigInteger),
    Column("refused_level", String(16)),
    Column("refusal_reason", String(500)),
    Column("transaction_id", String(40)),
    Column("reversal_id", String(40)),
    Column("actor", String(120), nullable=False),  # the API caller who entered it
)
# A second live claim of one service record or alert by the same member cannot commit, even if
# two requests raced past the domain's check (they cannot: the member's row is locked).
Index(
    "uq_points_claims_live_ref",
    points_claims.c.member,
    points_claims.c.source,
    points_claims.c.ref,
    unique=True,
    sqlite_where=text(LIVE_CLAIM_SQL),
    postgresql_where=text(LIVE_CLAIM_SQL),
)

points_transactions = Table(
    "points_transactions",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),  # ledger order
    Column("id", String(40), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # earn | gift | redeem | reversal
    Column("at", BigInteger, nullable=False, index=True),
    Column("community", String(100), nullable=False),
    Column("category", String(32), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("member", String(40)),
    Column("beneficiary", String(40)),
    Column("requested_by", String(120), nullable=False),
    Column("operator_role", String(16), nullable=False),
    Column("approvals", JSON, nullable=False),  # [{"by", "at" (ms), "level"}]
    Column("rounding", String(40)),
    Column("idempotency_key", String(100)),
    Column("claim_id", String(40), index=True),
    Column("ref", String(120)),  # the service order (redeem), record or alert (earn)
    Column("service_code", String(64)),  # the catalogue service a redemption paid for
    Column("reverses", String(40), unique=True),
    Column("service_date", Date),
    Column("service_year", Integer),  # of service_date: the yearly cap, without date functions
    Column("actor", String(120), nullable=False),  # the API caller
)

points_entries = Table(
    "points_entries",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column(
        "transaction_id",
        String(40),
        ForeignKey("points_transactions.id"),
        nullable=False,
        index=True,
    ),
    Column("account", String(80), ForeignKey("points_accounts.key"), nullable=False),
    Column("units", BigInteger, nullable=False),
)
Index("ix_points_entries_account", points_entries.c.account, points_entries.c.id)

points_order_payments = Table(
    "points_order_payments",
    metadata,
    Column("order_ref", String(120), primary_key=True),
    Column("transaction_id", String(40), nullable=False),
)

points_idempotency = Table(
    "points_idempotency",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("operation", String(32), nullable=False),
    Column("claim_id", String(40)),
    Column("transaction_id", String(40)),
    Column("created_at", BigInteger, nullable=False),
    Column("actor", String(120), nullable=False),
)

points_audit = Table(
    "points_audit",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("member", String(40), index=True),  # the member acted for (none: a bank action)
    Column("operator_role", String(16), nullable=False),  # self | staff | family
    Column("operator", String(120), nullable=False),  # the real person who acted
    Column("actor", String(120), nullable=False),  # the API caller (token) it came through
    Column("claim_id", String(40)),
    Column("transaction_id", String(40)),
    Column("detail", JSON),
)

__all__ = [
    "metadata",
    "points_accounts",
    "points_audit",
    "points_claims",
    "points_entries",
    "points_idempotency",
    "points_order_payments",
    "points_transactions",
]
