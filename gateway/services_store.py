"""Persistence of the service module (issue 5): orders and the voucher ledger in the database.

The rules live in `care.services` (the order state machine, EVV, charges) and `care.vouchers`
(the double-entry ledger); this module maps them to the tables of gateway/tables_services.py
and runs them inside the caller's transaction. It knows nothing of HTTP: a refusal is a
`Refusal` (an HTTP status, a stable code, English and Chinese), which gateway/api_services.py
turns into a 4xx.

Orders
    `lock_order` reads the order row FOR UPDATE (PostgreSQL; SQLite's write transactions are
    serialized by BEGIN IMMEDIATE, see gateway/db.py), `transition` runs `care.services.apply`,
    writes the new state with a version check and appends the handling-log entry.

The voucher ledger, safe under concurrent orders
    Every movement of an elder's vouchers first locks that elder's wallet row(s)
    (`svc_voucher_wallets`, one per funding source) with SELECT ... FOR UPDATE, in a
    deterministic order (source, elder), and only then reads the balances and the transactions
    the command concerns, asks `care.vouchers.decide`, and writes the legs, all in the same
    transaction. Two visits signed off at once for the same elder therefore run one after the
    other: the second sees the lower balance and is refused, never both spending the same fen.
    Lock order is always: order row, then wallets (sorted), then account rows (sorted by key,
    updated in place with `balance = balance + x`), so two transactions cannot wait for each
    other in a circle. Belt and braces: transaction ids are deterministic (a repeat is a unique
    key violation), one reversal per transaction is a unique key, and a CHECK on the account
    table refuses a negative balance on anything but a funding source.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Row, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from care._common import CareError
from care.elders import ServiceTier
from care.services import (
    SHANGHAI,
    Actor,
    ActorRole,
    Agreement,
    GeoPoint,
    LogEntry,
    OrderCommand,
    OrderState,
    Presence,
    Recurrence,
    Service,
    ServiceCategory,
    ServiceOrder,
    ServicePolicy,
    ServiceUnit,
    SignOffMethod,
    VisitCharge,
    apply,
    evv_record,
    visit_charge,
)
from care.vouchers import (
    Account,
    AccountKind,
    Allot,
    CloseMonth,
    Consume,
    LedgerSnapshot,
    Line,
    Reverse,
    Transaction,
    TxnKind,
    VoucherCommand,
    VoucherPolicy,
    decide,
)
from gateway.clock import from_ms, to_ms
from gateway.tables_services import (
    svc_elder_pins,
    svc_ledger_accounts,
    svc_ledger_legs,
    svc_ledger_txns,
    svc_order_log,
    svc_orders,
    svc_services,
    svc_supervision,
    svc_visits,
    svc_voucher_rules,
    svc_voucher_sources,
    svc_voucher_wallets,
)

__all__ = [
    "Refusal",
    "can_move",
    "charges",
    "hash_pin",
    "journal",
    "lock_order",
    "lock_wallets",
    "move_vouchers",
    "order_from_row",
    "policy_of",
    "service_from_row",
    "transition",
    "verify_pin",
]

SERVICE_POLICY = ServicePolicy()  # 300 m from home flags a check-in or check-out
LATE_AFTER_MS = 30 * 60_000  # a check-in this long after the scheduled time is late
MISSED_AFTER_MS = 24 * 3_600_000  # no check-in a day after the scheduled time: missed
FOLLOW_UP_AFTER_MS = 7 * 24 * 3_600_000  # a follow-up call is due within a week of sign-off
PIN_MAX_FAILURES = 5  # then the PIN is locked: sign off with a staff witness, set a new PIN

# Codes of care.* refusals that are conflicts with the stored state (409); the rest are input
# that cannot be right whatever the state (422).
CONFLICT_CODES = frozenset(
    {
        "order_bad_move",
        "order_recurring_parent",
        "order_not_recurring",
        "visit_already_consumed",
        "voucher_insufficient",
        "already_allotted",
        "month_closed",
        "month_not_over",
        "already_reversed",
        "reversal_of_reversal",
        "would_go_negative",
        "txn_duplicate",
        "no_allotment",
        "visit_not_signed_off",
        "evv_incomplete",
    }
)


@dataclass
class Refusal(Exception):
    """A refused request: the HTTP status, a stable code, English and Chinese."""

    status: int
    code: str
    en: str
    zh: str

    @classmethod
    def of(cls, err: CareError) -> Refusal:
        return cls(409 if err.code in CONFLICT_CODES else 422, err.code, err.en, err.zh)

    def detail(self) -> dict[str, str]:
        return {"code": self.code, "zh": self.zh, "en": self.en}


def conflict(code: str, en: str, zh: str) -> Refusal:
    return Refusal(409, code, en, zh)


def invalid(code: str, en: str, zh: str) -> Refusal:
    return Refusal(422, code, en, zh)


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _insert(conn: Connection) -> Any:
    return (postgresql if is_postgres(conn) else sqlite).insert


# --- catalogue ---------------------------------------------------------------------------------


def service_from_row(r: Row[Any]) -> Service:
    return Service(
        r.code,
        r.name_zh,
        r.name_en,
        ServiceCategory(r.category),
        ServiceUnit(r.unit),
        r.unit_price_fen,
        {
            ServiceTier.FREE: r.share_free_fen,
            ServiceTier.LOW_COST: r.share_low_cost_fen,
            ServiceTier.PAID: r.share_paid_fen,
        },
    )


# --- orders ------------------------------------------------------------------------------------


def lock_order(conn: Connection, order_id: str) -> Row[Any] | None:
    """The order row, locked until the end of the transaction (PostgreSQL: FOR UPDATE)."""
    return conn.execute(
        select(svc_orders).where(svc_orders.c.id == order_id).with_for_update()
    ).first()


def _aware(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms, SHANGHAI)


def _presence(at: int | None, lat: Any, lon: Any, dist: Any, far: Any) -> Presence | None:
    if at is None:
        return None
    return Presence(from_ms(at, SHANGHAI), GeoPoint(lat, lon), dist, bool(far))


def _agreement(r: Row[Any]) -> Agreement | None:
    if r.service_code is None:
        return None
    share = r.share_unit_fen
    # The order keeps the prices of the day it was agreed: rebuild that service, whatever the
    # catalogue says today. Only the agreed tier's share matters; the others mirror it.
    service = Service(
        r.service_code,
        r.service_name_zh,
        r.service_name_en,
        ServiceCategory(r.category),
        ServiceUnit(r.unit),
        r.unit_price_fen,
        {ServiceTier.FREE: 0, ServiceTier.LOW_COST: share, ServiceTier.PAID: share},
    )
    rec = None
    if r.recurrence:
        j = r.recurrence
        rec = Recurrence(
            frozenset(j["weekdays"]),
            time.fromisoformat(j["at"]),
            date.fromisoformat(j["start"]),
            date.fromisoformat(j["end"]) if j.get("end") else None,
        )
    return Agreement(service, ServiceTier(r.tier), r.quantity, r.funding_source, rec)


def order_from_row(r: Row[Any]) -> ServiceOrder:
    """The domain order of a row (its log is not needed to move it on: entries are appended)."""
    return ServiceOrder(
        id=r.id,
        elder_id=r.elder_id,
        home=GeoPoint(r.home_lat, r.home_lon),
        state=OrderState(r.state),
        applied_by=Actor(ActorRole(r.applied_by_role), r.applied_by_id),
        request=r.request,
        category=ServiceCategory(r.category),
        parent_id=r.parent_id,
        scheduled_at=_aware(r.scheduled_at),
        agreement=_agreement(r),
        provider_id=r.provider_id,
        worker_id=r.worker_id,
        check_in=_presence(
            r.check_in_at, r.check_in_lat, r.check_in_lon, r.check_in_distance_m, r.check_in_far
        ),
        check_out=_presence(
            r.check_out_at,
            r.check_out_lat,
            r.check_out_lon,
            r.check_out_distance_m,
            r.check_out_far,
        ),
        rating=r.rating,
        feedback=r.feedback,
        sign_off=SignOffMethod(r.sign_off_method) if r.sign_off_method else None,
        sign_off_ref=r.sign_off_ref,
        cancel_reason=r.cancel_reason,
    )


def recurrence_json(rec: Recurrence | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {
        "weekdays": sorted(rec.weekdays),
        "at": rec.at.isoformat(timespec="minutes"),
        "start": rec.start.isoformat(),
        "end": rec.end.isoformat() if rec.end else None,
    }


def order_values(o: ServiceOrder) -> dict[str, Any]:
    """The columns an order's state is stored in (all but id, timestamps and version)."""
    a = o.agreement
    ci, co = o.check_in, o.check_out
    return {
        "elder_id": o.elder_id,
        "home_lat": o.home.lat,
        "home_lon": o.home.lon,
        "state": o.state.value,
        "category": o.category.value,
        "request": o.request,
        "applied_by_role": o.applied_by.role.value,
        "applied_by_id": o.applied_by.id,
        "parent_id": o.parent_id,
        "scheduled_at": to_ms(o.scheduled_at) if o.scheduled_at else None,
        "service_code": a.service.code if a else None,
        "service_name_zh": a.service.name_zh if a else None,
        "service_name_en": a.service.name_en if a else None,
        "unit": a.service.unit.value if a else None,
        "unit_price_fen": a.service.unit_price_fen if a else None,
        "share_unit_fen": a.service.elder_share_fen[a.tier] if a else None,
        "tier": a.tier.value if a else None,
        "quantity": a.quantity if a else None,
        "funding_source": a.funding_source if a else None,
        "recurrence": recurrence_json(a.recurrence) if a else None,
        "total_fen": a.total_fen if a else None,
        "subsidy_fen": a.subsidy_fen if a else None,
        "elder_share_fen": a.elder_share_fen if a else None,
        "provider_id": o.provider_id,
        "worker_id": o.worker_id,
        "check_in_at": to_ms(ci.at) if ci else None,
        "check_in_lat": ci.where.lat if ci else None,
        "check_in_lon": ci.where.lon if ci else None,
        "check_in_distance_m": ci.distance_m if ci else None,
        "check_in_far": ci.far if ci else None,
        "check_out_at": to_ms(co.at) if co else None,
        "check_out_lat": co.where.lat if co else None,
        "check_out_lon": co.where.lon if co else None,
        "check_out_distance_m": co.distance_m if co else None,
        "check_out_far": co.far if co else None,
        "rating": o.rating,
        "feedback": o.feedback,
        "sign_off_method": o.sign_off.value if o.sign_off else None,
        "sign_off_ref": o.sign_off_ref,
        "cancel_reason": o.cancel_reason,
    }


def write_log(conn: Connection, order_id: str, entry: LogEntry, recorded_by: str) -> None:
    conn.execute(
        insert(svc_order_log).values(
            order_id=order_id,
            at=to_ms(entry.at),
            actor_role=entry.actor.role.value,
            actor_id=entry.actor.id,
            action=entry.action,
            detail=entry.detail[:1000],
            recorded_by=recorded_by,
        )
    )


def insert_order(conn: Connection, order: ServiceOrder, now_ms: int, recorded_by: str) -> None:
    conn.execute(
        insert(svc_orders).values(
            id=order.id, version=1, created_at=now_ms, updated_at=now_ms, **order_values(order)
        )
    )
    for entry in order.log:
        write_log(conn, order.id, entry, recorded_by)


def can_move(row: Row[Any], command: OrderCommand, now: datetime) -> bool:
    """Whether `command` would move the order of `row` at `now`: a dry run, nothing stored."""
    try:
        apply(order_from_row(row), command, now, SERVICE_POLICY)
    except CareError:
        return False
    return True


def transition(
    conn: Connection,
    row: Row[Any],
    command: OrderCommand,
    now: datetime,
    recorded_by: str,
    extra: dict[str, Any] | None = None,
) -> ServiceOrder:
    """Apply `command` to the locked order `row`: the new state, stored, with its log entry."""
    before = order_from_row(row)
    try:
        after = apply(before, command, now, SERVICE_POLICY)
    except CareError as err:
        raise Refusal.of(err) from None
    done = conn.execute(
        update(svc_orders)
        .where(svc_orders.c.id == row.id, svc_orders.c.version == row.version)
        .values(
            version=row.version + 1,
            updated_at=to_ms(now),
            **(order_values(after) | (extra or {})),
        )
    )
    if done.rowcount != 1:  # only without the row lock (never expected): say so, change nothing
        raise conflict(
            "order_changed",
            f"order {row.id} changed meanwhile; read it again",
            f"工单{row.id}已被他人修改，请刷新后重试",
        )
    write_log(conn, row.id, after.log[-1], recorded_by)
    return after


def record_visit(conn: Connection, order: ServiceOrder) -> None:
    """The EVV record of a checked-out order: the six facts, once."""
    evv = evv_record(order)
    assert order.provider_id is not None
    conn.execute(
        insert(svc_visits).values(
            order_id=order.id,
            service_code=evv.service_code,
            elder_id=evv.elder_id,
            date=evv.date,
            lat=evv.where.lat,
            lon=evv.where.lon,
            worker_id=evv.worker_id,
            provider_id=order.provider_id,
            start_at=to_ms(evv.start),
            end_at=to_ms(evv.end),
            far_check_in=evv.far_check_in,
            far_check_out=evv.far_check_out,
        )
    )


def add_follow_up(conn: Connection, order: ServiceOrder, now_ms: int, new_id: str) -> None:
    """A follow-up call (回访) due after a signed-off visit: supervision's to-do list."""
    conn.execute(
        insert(svc_supervision).values(
            id=new_id,
            order_id=order.id,
            provider_id=order.provider_id,
            kind="follow_up",
            due_at=now_ms + FOLLOW_UP_AFTER_MS,
            created_at=now_ms,
        )
    )


# --- the elder's PIN ---------------------------------------------------------------------------

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_pin(pin: str) -> str:
    """A salted scrypt hash of a PIN (the PIN itself is never stored)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def pin_row(conn: Connection, elder_id: str) -> Row[Any] | None:
    return conn.execute(
        select(svc_elder_pins).where(svc_elder_pins.c.elder_id == elder_id).with_for_update()
    ).first()


# --- the voucher ledger ------------------------------------------------------------------------


def policy_of(conn: Connection, source_id: str) -> VoucherPolicy:
    src = conn.execute(
        select(svc_voucher_sources).where(svc_voucher_sources.c.id == source_id)
    ).first()
    if src is None:
        raise invalid(
            "source_unknown", f"no funding source {source_id!r}", f"没有资金来源“{source_id}”"
        )
    rules = conn.execute(
        select(svc_voucher_rules).where(svc_voucher_rules.c.source_id == source_id)
    ).all()
    return VoucherPolicy(
        {(ServiceTier(r.tier), ServiceCategory(r.category)): r.monthly_fen for r in rules},
        frozenset(ServiceCategory(c) for c in src.carry_over),
    )


def lock_wallets(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Row]:
    """Lock the (source, elder) wallet rows, in sorted order: the ledger's concurrency guard.

    Sorted so that two transactions locking several wallets (the monthly run, a reversal) take
    them in the same order and never wait for each other in a circle.
    """
    out: dict[tuple[str, str], Row[Any]] = {}
    for source, elder in sorted(set(keys)):
        row = conn.execute(
            select(svc_voucher_wallets)
            .where(
                svc_voucher_wallets.c.source_id == source,
                svc_voucher_wallets.c.elder_id == elder,
            )
            .with_for_update()
        ).first()
        if row is not None:
            out[(source, elder)] = row
    return out


def _account(r: Any) -> Account:
    return Account(
        AccountKind(r.kind),
        r.source_id,
        elder=r.elder_id or "",
        month=r.month or "",
        category=r.category or "",
        provider=r.provider_id or "",
    )


def _balances(conn: Connection, where: Any) -> dict[Account, int]:
    rows = conn.execute(select(svc_ledger_accounts).where(where)).all()
    return {_account(r): r.balance_fen for r in rows}


def _txns_where(conn: Connection, where: Any) -> list[Transaction]:
    """Transactions (with their lines) matching `where`, in journal order."""
    rows = conn.execute(select(svc_ledger_txns).where(where).order_by(svc_ledger_txns.c.seq)).all()
    return _with_lines(conn, rows)


def _with_lines(conn: Connection, rows: Sequence[Row[Any]]) -> list[Transaction]:
    if not rows:
        return []
    seqs = [r.seq for r in rows]
    lines: dict[int, list[Line]] = {s: [] for s in seqs}
    for chunk_start in range(0, len(seqs), 500):
        chunk = seqs[chunk_start : chunk_start + 500]
        for leg in conn.execute(
            select(svc_ledger_legs.c.txn_seq, svc_ledger_legs.c.fen, svc_ledger_accounts)
            .join(svc_ledger_accounts, svc_ledger_accounts.c.key == svc_ledger_legs.c.account_key)
            .where(svc_ledger_legs.c.txn_seq.in_(chunk))
            .order_by(svc_ledger_legs.c.id)
        ):
            lines[leg.txn_seq].append(Line(_account(leg), leg.fen))
    return [_txn(r, tuple(lines[r.seq])) for r in rows]


def _txn(r: Row[Any], lines: tuple[Line, ...]) -> Transaction:
    return Transaction(
        r.id,
        TxnKind(r.kind),
        from_ms(r.at, SHANGHAI),
        r.month,
        lines,
        r.source_id,
        elder_id=r.elder_id or "",
        provider_id=r.provider_id or "",
        visit_id=r.visit_id or "",
        elder_share_fen=r.elder_share_fen,
        reverses=r.reverses,
        reverses_kind=TxnKind(r.reverses_kind) if r.reverses_kind else None,
        reason=r.reason,
        actor=r.actor,
    )


def _prefixed(prefixes: Iterable[str]) -> Any:
    """Transactions whose id starts with one of the prefixes (+ "#"), or that reverse one."""
    c = svc_ledger_txns.c.id
    conds = []
    for p in prefixes:
        conds.append(c.startswith(p + "#", autoescape=True))
        conds.append(c.startswith(f"reverse:{p}#", autoescape=True))
    return or_(*conds)


def journal(conn: Connection, where: Any = None) -> list[Transaction]:
    """The whole journal (or the transactions matching `where`), in append order."""
    return _txns_where(conn, where if where is not None else svc_ledger_txns.c.seq.is_not(None))


def _snapshot_for(conn: Connection, command: VoucherCommand) -> LedgerSnapshot:
    """What `decide` needs for `command`: the transactions it concerns and the balances."""
    A = svc_ledger_accounts.c
    match command:
        case Consume(charge=ch):
            src, elder, month = ch.funding_source or "", ch.elder_id, ch.month
            txns = _txns_where(
                conn, _prefixed([f"consume:{ch.visit_id}", f"close:{src}:{elder}:{month}"])
            )
            key = Account.allotment(src, elder, month, ch.category).key
            bal = _balances(conn, A.key == key)
        case Allot(source=src, elder_id=elder, month=month):
            txns = _txns_where(
                conn, _prefixed([f"allot:{src}:{elder}:{month}", f"close:{src}:{elder}:{month}"])
            )
            bal = _balances(
                conn,
                and_(A.kind == "allot", A.source_id == src, A.elder_id == elder, A.month == month),
            )
        case CloseMonth(source=src, elder_id=elder, month=month):
            txns = _txns_where(conn, _prefixed([f"close:{src}:{elder}:{month}"]))
            bal = _balances(
                conn,
                and_(A.kind == "allot", A.source_id == src, A.elder_id == elder, A.month == month),
            )
        case Reverse(txn_id=tid):
            txns = _txns_where(
                conn, or_(svc_ledger_txns.c.id == tid, svc_ledger_txns.c.reverses == tid)
            )
            keys = {ln.account.key for t in txns for ln in t.lines}
            bal = _balances(conn, A.key.in_(keys)) if keys else {}
    return LedgerSnapshot(bal, {t.id: t for t in txns})


def _wallet_of(conn: Connection, command: VoucherCommand) -> tuple[str, str] | None:
    match command:
        case Consume(charge=ch):
            return (ch.funding_source or "", ch.elder_id)
        case Allot(source=src, elder_id=elder) | CloseMonth(source=src, elder_id=elder):
            return (src, elder)
        case Reverse(txn_id=tid):
            row = conn.execute(
                select(svc_ledger_txns.c.source_id, svc_ledger_txns.c.elder_id).where(
                    svc_ledger_txns.c.id == tid
                )
            ).first()
            if row is None or not row.elder_id:
                return None
            return (row.source_id, row.elder_id)


def move_vouchers(
    conn: Connection,
    command: VoucherCommand,
    policy: VoucherPolicy,
    now: datetime,
    *,
    locked: bool = False,
) -> list[Transaction]:
    """Decide `command` on the stored ledger and append what it decides, in this transaction.

    Locks the elder's wallet first (unless the caller has, `locked=True`, as the monthly run
    does for all its wallets in one sorted pass), then reads, decides and writes under it.
    """
    if not locked:
        wallet = _wallet_of(conn, command)
        if wallet is not None:
            lock_wallets(conn, [wallet])
    snapshot = _snapshot_for(conn, command)
    try:
        txns = decide(snapshot, command, policy, now)
    except CareError as err:
        raise Refusal.of(err) from None
    post(conn, txns)
    return txns


def post(conn: Connection, txns: Iterable[Transaction]) -> None:
    """Append transactions: the rows, their legs, and the accounts' balances in step."""
    ins = _insert(conn)
    for t in txns:
        # No savepoints: any refusal below rolls the caller's whole transaction back.
        try:
            seq = conn.execute(
                insert(svc_ledger_txns)
                .values(
                    id=t.id,
                    kind=t.kind.value,
                    at=to_ms(t.at),
                    month=t.month,
                    source_id=t.source,
                    elder_id=t.elder_id or None,
                    provider_id=t.provider_id or None,
                    visit_id=t.visit_id or None,
                    elder_share_fen=t.elder_share_fen,
                    reverses=t.reverses,
                    reverses_kind=t.reverses_kind.value if t.reverses_kind else None,
                    reason=t.reason,
                    actor=t.actor,
                )
                .returning(svc_ledger_txns.c.seq)
            ).scalar_one()
        except IntegrityError:
            # Only reachable without the wallet lock: the id (or the reversal) exists already.
            raise conflict(
                "txn_duplicate", f"transaction {t.id} exists", f"交易{t.id}已存在"
            ) from None
        # Accounts in key order: the same order in every transaction (no lock cycles).
        for line in sorted(t.lines, key=lambda ln: ln.account.key):
            a = line.account
            conn.execute(
                ins(svc_ledger_accounts)
                .values(
                    key=a.key,
                    kind=a.kind.value,
                    source_id=a.source,
                    elder_id=a.elder or None,
                    month=a.month or None,
                    category=a.category or None,
                    provider_id=a.provider or None,
                    balance_fen=0,
                )
                .on_conflict_do_nothing(index_elements=[svc_ledger_accounts.c.key])
            )
            try:
                conn.execute(
                    update(svc_ledger_accounts)
                    .where(svc_ledger_accounts.c.key == a.key)
                    .values(balance_fen=svc_ledger_accounts.c.balance_fen + line.fen)
                )
            except IntegrityError:  # the CHECK: a non-source account would go below zero
                raise conflict(
                    "would_go_negative",
                    f"{a.key} would go below zero",
                    f"账户{a.key}余额将为负",
                ) from None
            conn.execute(
                insert(svc_ledger_legs).values(txn_seq=seq, account_key=a.key, fen=line.fen)
            )


def account_check(conn: Connection, where: Any = None) -> list[str]:
    """Accounts (matching `where`) whose stored balance differs from the sum of their legs
    (should be none)."""
    legs = dict(
        conn.execute(
            select(svc_ledger_legs.c.account_key, func.sum(svc_ledger_legs.c.fen)).group_by(
                svc_ledger_legs.c.account_key
            )
        ).all()
    )
    out = []
    accounts = select(svc_ledger_accounts.c.key, svc_ledger_accounts.c.balance_fen)
    if where is not None:
        accounts = accounts.where(where)
    for key, bal in conn.execute(accounts):
        if int(legs.get(key, 0)) != bal:
            out.append(
                f"account {key}: stored balance {bal} != sum of legs {int(legs.get(key, 0))}"
            )
    return out


# --- visits and charges ------------------------------------------------------------------------


def month_bounds_ms(month: str, tz: ZoneInfo = SHANGHAI) -> tuple[int, int]:
    """[first instant, first instant of the next month) of a 'YYYY-MM' month, epoch ms."""
    y, m = int(month[:4]), int(month[5:7])
    start = datetime(y, m, 1, tzinfo=tz)
    end = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=tz)
    return to_ms(start), to_ms(end)


def charges(conn: Connection, month: str | None = None) -> list[VisitCharge]:
    """The charge of every signed-off (or closed) visit, optionally of one month (its date)."""
    q = select(svc_orders).where(
        svc_orders.c.state.in_([OrderState.SIGNED_OFF.value, OrderState.CLOSED.value]),
        svc_orders.c.sign_off_method.is_not(None),
    )
    if month is not None:
        lo, hi = month_bounds_ms(month)
        q = q.where(svc_orders.c.check_in_at >= lo, svc_orders.c.check_in_at < hi)
    return [visit_charge(order_from_row(r)) for r in conn.execute(q.order_by(svc_orders.c.id))]


def service_exists(conn: Connection, code: str) -> Row[Any] | None:
    return conn.execute(select(svc_services).where(svc_services.c.code == code)).first()
