"""The stored time bank: care/points.py's ledger persisted in gateway/tables_points.py.

The domain decides, this module reads what a decision needs and writes what it returns, in ONE
database transaction per command, so a refused command (PointsError) changes nothing and an
accepted one is whole: a transaction with both of its legs, the cached balances, the claim's new
state, the idempotency record and the audit line commit together or not at all.

Concurrency: why row locks, not SERIALIZABLE
    On PostgreSQL every command that can debit or credit a member or a pool first locks that
    account's row (`SELECT ... FOR NO KEY UPDATE`), one row at a time in the order of the
    account keys, and only then reads the balance, the yearly earnings, the claims that could
    collide and the idempotency key, all under READ COMMITTED (each statement after the lock
    sees everything committed before it). Two gifts or redemptions from one account therefore
    run one after the other and the second sees the first's debit: nothing can be spent twice,
    no balance goes below zero. Locking in one global order means two transfers between the
    same two members in opposite directions cannot deadlock. We chose locks over SERIALIZABLE
    with retries because a time bank's contention is one member's account (a family tapping
    "give" twice, a desk and a phone at once): a lock makes the second wait a few milliseconds
    and then answer with the real reason (insufficient balance, already paid), while
    SERIALIZABLE would abort it, retry a whole request and, under a burst, could give up.
    `FOR NO KEY UPDATE` rather than `FOR UPDATE`: it does not block the foreign-key checks of
    entries being written to other accounts. The bank's ISSUANCE and REDEMPTION accounts are
    never locked nor updated (they would be one hot row for a district): the domain never checks
    them (`care.points._check_debit`), and their balance is always summed from the entries.
    A redemption that names a service order locks the order's row before the payer's, the
    order a cancel takes them in (the order, then the payer for the refund, `refund_order`):
    a cancel and a payment of one order run one after the other, so a cancelled order is never
    paid and a paid one is refunded when it is cancelled.
    On SQLite the engine begins every write transaction with BEGIN IMMEDIATE (gateway/db.py): one
    writer at a time, so the same reads under the same "lock" are trivially serial.
    Belts under the braces: the unique keys on the idempotency key, on a live claim's service
    record or alert, on a reversal's (or refund's) original and on a service order's live
    payment turn a race our locks missed into an IntegrityError; the command is then judged
    once more from the committed state (a replay or a clear refusal), never half applied.

Balances
    `points_accounts.balance` caches a member's or pool's posted balance, changed only in the
    transaction that writes its entries, under its lock. `check()` recomputes every balance from
    the entries and reports any difference, a ledger that does not sum to zero, a negative
    balance and an unbalanced transaction: the API serves it and the tests assert it is empty.

Idempotency
    Keyed commands go through `care.points.replay_of` with the stored record: the same key and
    the same request return the first result (`replayed=True`); the same key with another
    request is refused (`idempotency_conflict`). Only successes are stored. The key is checked
    after the accounts are locked, so two copies of one request in flight run one after the other
    and the second is the replay.

Who acted for whom
    Every command writes a line to `points_audit`: the member acted for, the operator's role
    (self, staff, a paired family member), the real person, and the API caller it came through.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Row, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from care.points import (
    HARDSHIP_POOL,
    ISSUANCE,
    LIVE_CLAIM_STATUSES,
    REDEMPTION,
    Account,
    AccountKind,
    AccountState,
    Approval,
    ApprovalLevel,
    Claim,
    ClaimStatus,
    Command,
    Decision,
    EarnSource,
    Entry,
    Gift,
    IdempotencyRecord,
    KeyedCommand,
    MonthlyReport,
    Operator,
    OperatorRole,
    Post,
    Redeem,
    Refund,
    Refusal,
    Refuse,
    RequestAlarmCredit,
    RequestAward,
    RequestService,
    Reverse,
    Statement,
    Transaction,
    TxnKind,
    Verify,
    check_order_price,
    decide_gift,
    decide_post,
    decide_redeem,
    decide_refund,
    decide_refuse,
    decide_request_alarm_credit,
    decide_request_award,
    decide_request_service,
    decide_reverse,
    decide_verify,
    fingerprint,
    member_account,
    monthly_report_of,
    order_price_units,
    replay_of,
    statement_of,
)
from care.points_rules import ROUNDING_RULES, MemberFacts, PointsError, PointsPolicy
from care.services import OrderState
from gateway.care_store import GONE, gone_since
from gateway.clock import from_ms, new_id, to_ms
from gateway.tables import alert_events, alerts, elders, pairings, responders
from gateway.tables_points import (
    points_accounts,
    points_audit,
    points_claims,
    points_entries,
    points_idempotency,
    points_order_payments,
    points_transactions,
)
from gateway.tables_services import svc_orders, svc_services

BANK_ACCOUNTS = (ISSUANCE, REDEMPTION, HARDSHIP_POOL)
POOLS = frozenset({HARDSHIP_POOL.name})  # the pools a station may give to and pay from
LOCKED_KINDS = frozenset({AccountKind.MEMBER, AccountKind.POOL})
RETRIES = 3  # a unique-key race or a PostgreSQL serialization failure: judge again, this often
_T = TypeVar("_T")


class StoreError(Exception):
    """A refusal that needs the database to see (an unknown member, no account): code + text."""

    def __init__(self, code: str, en: str, zh: str, status: int = 422) -> None:
        super().__init__(f"{code}: {en}")
        self.code = code
        self.en = en
        self.zh = zh
        self.status = status


def _refuse_if_gone(conn: Connection, member: str, statuses: tuple[str, ...]) -> None:
    """StoreError 409 `elder_deceased` / `elder_moved` when `member` is an elder whose registry
    status is one of `statuses` (gateway/care_store.py `GONE`): points spent on them would pay
    for a service nobody gets, points given to a deceased elder would be stranded."""
    gone = gone_since(conn, member)
    if gone is not None and gone[0] in statuses:
        status, since = gone
        zh, en = GONE[status]
        raise StoreError(
            f"elder_{status}",
            f"elder {member} {en} (since {since}): points cannot go to them",
            f"该老人{zh}（{since}起），积分不能用于或转给该老人",
            409,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command produced: the claim and/or transaction, and whether it was a replay."""

    claim: Claim | None = None
    transaction: Transaction | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class AlarmFacts:
    """One responder's part of an alert's timeline, for RequestAlarmCredit."""

    alert_id: str
    elder_id: str
    state: str
    outcome: str | None
    acknowledged_at: datetime | None
    on_site_at: datetime | None
    resolved_at: datetime | None
    confirmed_by: str | None


@dataclass
class _Tx:
    conn: Connection
    now: datetime
    actor: str
    service_code: str | None = None  # a redemption's catalogue service
    audit: list[dict[str, Any]] = field(default_factory=list)


def is_member_id(value: str) -> bool:
    return bool(value) and ":" not in value


class PointsStore:
    """The time bank on a SQLAlchemy engine. Every public command is one DB transaction."""

    def __init__(
        self,
        engine: Engine,
        tz: ZoneInfo,
        clock: Callable[[], float],
        policy: PointsPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.tz = tz
        self.clock = clock
        self.policy = policy or PointsPolicy()

    # --- plumbing ---------------------------------------------------------------------------

    def now(self) -> datetime:
        # Whole milliseconds, as stored: a time read back equals the time decided on.
        return from_ms(int(self.clock() * 1000), self.tz)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(readonly=True) as conn, conn.begin():
            yield conn

    def _write(self, actor: str, work: Callable[[_Tx], _T], service_code: str | None = None) -> _T:
        """Run `work` in one write transaction; judge again after a unique-key race."""
        for attempt in range(RETRIES):
            try:
                with self.engine.begin() as conn:
                    tx = _Tx(conn, self.now(), actor, service_code)
                    result = work(tx)
                    if tx.audit:
                        conn.execute(insert(points_audit), tx.audit)
                    return result
            except IntegrityError:
                if attempt == RETRIES - 1:
                    raise
            except DBAPIError as exc:
                # 40001 serialization failure, 40P01 deadlock: PostgreSQL asks for a retry.
                code = getattr(exc.orig, "sqlstate", None)
                if code not in ("40001", "40P01") or attempt == RETRIES - 1:
                    raise
            time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    # --- accounts ---------------------------------------------------------------------------

    def open_account(
        self,
        member_id: str,
        community: str,
        actor: str,
        *,
        birth_date: date | None = None,
        conditions: Iterable[str] = (),
    ) -> Row[Any]:
        """Open the points account of a responder or an elder; StoreError if unknown or open."""

        def work(tx: _Tx) -> Row[Any]:
            kind = self._member_type(tx.conn, member_id)
            if kind is None:
                raise StoreError(
                    "unknown_member",
                    f"no responder or elder {member_id!r}",
                    f"找不到人员：{member_id}",
                    404,
                )
            account = member_account(member_id)
            if self._account_row(tx.conn, account) is not None:
                raise StoreError(
                    "account_exists",
                    f"{member_id!r} already has a points account",
                    f"{member_id}已开立积分账户",
                    409,
                )
            tx.conn.execute(
                insert(points_accounts).values(
                    key=account.key,
                    kind=account.kind.value,
                    name=account.name,
                    member_type=kind,
                    community=community,
                    balance=0,
                    birth_date=birth_date,
                    conditions=sorted(set(conditions)),
                    created_at=to_ms(tx.now),
                    created_by=actor,
                )
            )
            self._audit(tx, "account.open", member_id, Operator(actor, OperatorRole.STAFF))
            row = self._account_row(tx.conn, account)
            assert row is not None
            return row

        return self._write(actor, work)

    def _member_type(self, conn: Connection, member_id: str) -> str | None:
        if conn.execute(select(responders.c.id).where(responders.c.id == member_id)).first():
            return "responder"
        if conn.execute(select(elders.c.id).where(elders.c.id == member_id)).first():
            return "elder"
        return None

    @staticmethod
    def _account_row(conn: Connection, account: Account) -> Row[Any] | None:
        return conn.execute(
            select(points_accounts).where(points_accounts.c.key == account.key)
        ).first()

    def account_row(self, conn: Connection, account: Account) -> Row[Any]:
        """The account's row, or StoreError 404 (no such member account or pool)."""
        row = self._account_row(conn, account)
        if row is None and account in BANK_ACCOUNTS:
            return self._bank_row(account)
        if row is None:
            if account.kind is AccountKind.MEMBER:
                raise StoreError(
                    "no_account",
                    f"{account.name!r} has no points account (open one first)",
                    f"{account.name}尚未开立积分账户",
                    404,
                )
            raise StoreError(
                "unknown_account", f"no account {account.key!r}", f"找不到账户：{account.key}", 404
            )
        return row

    @staticmethod
    def _bank_row(account: Account) -> Any:
        # A bank account nobody has used yet: what its row will say once it is.
        return _Plain(
            key=account.key,
            kind=account.kind.value,
            name=account.name,
            member_type=None,
            community=None,
            balance=0 if account.kind is AccountKind.POOL else None,
            birth_date=None,
            conditions=[],
            created_at=None,
            created_by="bank",
        )

    def _ensure_bank(self, tx: _Tx, accounts: Iterable[Account]) -> None:
        """Create the bank's accounts (issuance, redemption, a pool) on first use."""
        rows: list[dict[str, Any]] = [
            {
                "key": a.key,
                "kind": a.kind.value,
                "name": a.name,
                "balance": 0 if a.kind is AccountKind.POOL else None,
                "conditions": [],
                "created_at": to_ms(tx.now),
                "created_by": "bank",
            }
            for a in sorted(set(accounts))
            if a.kind is not AccountKind.MEMBER
        ]
        if not rows:
            return
        dialect = tx.conn.dialect.name
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(points_accounts)
        tx.conn.execute(ins.on_conflict_do_nothing(index_elements=["key"]), rows)

    def _lock(self, tx: _Tx, accounts: Iterable[Account]) -> dict[Account, AccountState]:
        """Lock the member and pool accounts among `accounts` in key order; their states.

        Members must have an account (StoreError otherwise); pools are created on first use.
        """
        wanted = sorted({a for a in accounts if a.kind in LOCKED_KINDS}, key=lambda a: a.key)
        for a in wanted:
            if a.kind is AccountKind.POOL and a.name not in POOLS:
                raise StoreError(
                    "unknown_account", f"no pool {a.name!r}", f"找不到互助池：{a.name}", 404
                )
        self._ensure_bank(tx, [a for a in wanted if a.kind is AccountKind.POOL])
        states: dict[Account, AccountState] = {}
        for a in wanted:  # one at a time, in order: no two commands can wait on each other
            row = tx.conn.execute(
                select(points_accounts.c.balance)
                .where(points_accounts.c.key == a.key)
                .with_for_update(key_share=True)
            ).first()
            if row is None:
                self.account_row(tx.conn, a)  # raises the right StoreError
            assert row is not None
            states[a] = AccountState(a, int(row.balance or 0))
        return states

    def _earned(self, conn: Connection, member: str) -> dict[int, int]:
        """Units earned by `member` per year of the help, net of reversals (care.earned_from)."""
        rows = conn.execute(
            select(points_transactions.c.service_year, func.sum(points_entries.c.units))
            .join(points_entries, points_entries.c.transaction_id == points_transactions.c.id)
            .where(
                points_transactions.c.member == member,
                points_transactions.c.claim_id.is_not(None),
                points_transactions.c.service_year.is_not(None),
                points_entries.c.account == member_account(member).key,
            )
            .group_by(points_transactions.c.service_year)
        ).all()
        return {int(y): int(u) for y, u in rows if u}

    # --- commands ---------------------------------------------------------------------------

    def execute(
        self,
        command: Command,
        actor: str,
        key: str | None = None,
        *,
        service_code: str | None = None,
        order_id: str | None = None,
    ) -> Outcome:
        """Apply one command; `actor` is the API caller, `key` an Idempotency-Key for the
        commands whose domain type has no key of its own (verify, post, refuse);
        `service_code` the catalogue service a redemption pays for, `order_id` the service
        order it names, if any (both checked: `_check_redeemable`)."""
        match command:
            case RequestService() | RequestAlarmCredit() | RequestAward():
                return self._write(actor, lambda tx: self._request(tx, command))
            case Verify() | Refuse():
                return self._write(actor, lambda tx: self._judge(tx, command, key))
            case Post():
                return self._write(actor, lambda tx: self._post(tx, command, key))
            case Gift() | Redeem():
                return self._write(
                    actor, lambda tx: self._move(tx, command, order_id), service_code
                )
            case Reverse():
                return self._write(actor, lambda tx: self._reverse(tx, command))
        raise TypeError(f"not a points command: {command!r}")  # pragma: no cover

    def _replay(self, tx: _Tx, key: str | None, command: Any) -> Outcome | None:
        if key is None:
            return None
        row = tx.conn.execute(
            select(points_idempotency).where(points_idempotency.c.key == key)
        ).first()
        if row is None:
            return None
        record = IdempotencyRecord(row.key, row.fingerprint, row.claim_id, row.transaction_id)
        if isinstance(command, KeyedCommand):
            replay_of(command, record)  # PointsError on a different request
        elif record.fingerprint != fingerprint(command):
            raise PointsError("idempotency_conflict", key=key)
        claim = self.claim(tx.conn, row.claim_id) if row.claim_id else None
        txn = self.transaction(tx.conn, row.transaction_id) if row.transaction_id else None
        return Outcome(claim, txn, replayed=True)

    def _remember(self, tx: _Tx, key: str | None, command: Any, outcome: Outcome) -> None:
        if key is None:
            return
        tx.conn.execute(
            insert(points_idempotency).values(
                key=key,
                fingerprint=fingerprint(command),
                operation=type(command).__name__,
                claim_id=outcome.claim.id if outcome.claim else None,
                transaction_id=outcome.transaction.id if outcome.transaction else None,
                created_at=to_ms(tx.now),
                actor=tx.actor,
            )
        )

    def _request(
        self, tx: _Tx, command: RequestService | RequestAlarmCredit | RequestAward
    ) -> Outcome:
        account = member_account(command.member)
        states = self._lock(tx, [account])
        replay = self._replay(tx, command.idempotency_key, command)
        if replay is not None:
            return replay
        claim_id = new_id("pc")
        # What the member holds and has earned now: a claim over a cap by itself is refused
        # at once, in the words posting would use.
        member = AccountState(account, states[account].balance, self._earned(tx.conn, account.name))
        if isinstance(command, RequestAward):
            decision = decide_request_award(command, self.policy, tx.now, claim_id, member=member)
        else:
            span: tuple[datetime | None, datetime | None]
            if isinstance(command, RequestService):
                ref, span = command.service_ref, (command.started_at, command.ended_at)
                source = EarnSource.SERVICE
            else:
                ref, span = command.alert_id, (command.acknowledged_at, command.resolved_at)
                source = EarnSource.ALARM
            others = self._colliding_claims(tx.conn, command.member, source, ref, span)
            if isinstance(command, RequestService):
                decision = decide_request_service(
                    command, others, self.policy, tx.now, claim_id, member=member
                )
            else:
                decision = decide_request_alarm_credit(
                    command, others, self.policy, tx.now, claim_id, member=member
                )
        claim = decision.claim
        assert claim is not None
        tx.conn.execute(insert(points_claims).values(**self._claim_values(claim, tx.actor)))
        outcome = Outcome(claim=claim)
        self._remember(tx, command.idempotency_key, command, outcome)
        self._audit(
            tx,
            f"claim.{claim.source.value}",
            claim.member,
            command.operator,
            claim_id=claim.id,
            detail={"units": claim.units, "reason": claim.reason},
        )
        return outcome

    def _colliding_claims(
        self,
        conn: Connection,
        member: str,
        source: EarnSource,
        ref: str,
        span: tuple[datetime | None, datetime | None],
    ) -> list[Claim]:
        """The member's live claims of the same record or overlapping in time (all the domain's
        duplicate check can find), not the member's whole history."""
        c = points_claims.c
        same = and_(c.source == source.value, c.ref == ref)
        cond = same
        if span[0] is not None and span[1] is not None:
            cond = or_(
                same,
                and_(
                    c.started_at.is_not(None),
                    c.started_at < to_ms(span[1]),
                    c.ended_at > to_ms(span[0]),
                ),
            )
        rows = conn.execute(
            select(points_claims).where(
                c.member == member,
                c.status.in_([s.value for s in LIVE_CLAIM_STATUSES]),
                cond,
            )
        ).all()
        return [self._claim(r) for r in rows]

    def _locked_claim(self, tx: _Tx, claim_id: str) -> Claim:
        row = tx.conn.execute(
            select(points_claims).where(points_claims.c.id == claim_id).with_for_update()
        ).first()
        if row is None:
            raise PointsError("unknown_claim", claim=claim_id)
        return self._claim(row)

    def _judge(self, tx: _Tx, command: Verify | Refuse, key: str | None) -> Outcome:
        replay = self._replay(tx, key, command)
        if replay is not None:
            return replay
        claim = self._locked_claim(tx, command.claim_id)
        if isinstance(command, Verify):
            decision = decide_verify(claim, command, self.policy, tx.now)
            person, action = command.verifier, "claim.verify"
        else:
            decision = decide_refuse(claim, command, self.policy, tx.now)
            person, action = command.by, "claim.refuse"
        outcome = self._store_claim_step(tx, claim, decision)
        self._remember(tx, key, command, outcome)
        if decision.claim != claim:  # a repeat that changed nothing is not a new act
            detail = {"reason": command.reason} if isinstance(command, Refuse) else None
            self._audit(
                tx,
                action,
                claim.member,
                Operator(person, OperatorRole.STAFF),
                claim_id=claim.id,
                detail=detail,
            )
        return outcome

    def _post(self, tx: _Tx, command: Post, key: str | None) -> Outcome:
        replay = self._replay(tx, key, command)
        if replay is not None:
            return replay
        peek = tx.conn.execute(
            select(points_claims.c.member).where(points_claims.c.id == command.claim_id)
        ).first()
        if peek is None:
            raise PointsError("unknown_claim", claim=command.claim_id)
        account = member_account(peek.member)
        # Lock order: the member's account, then the claim (verify and refuse take the claim
        # alone, so no two commands ever wait for each other in a circle).
        states = self._lock(tx, [account])
        claim = self._locked_claim(tx, command.claim_id)
        state = AccountState(account, states[account].balance, self._earned(tx.conn, claim.member))
        decision = decide_post(claim, state, command, self.policy, tx.now, new_id("pt"))
        outcome = self._store_claim_step(tx, claim, decision)
        if decision.transaction is not None:
            self._append(tx, decision.transaction, states)
            self._audit(
                tx,
                "claim.post",
                claim.member,
                Operator(command.auditor, OperatorRole.STAFF),
                claim_id=claim.id,
                transaction_id=decision.transaction.id,
            )
        elif claim.transaction_id:  # the same auditor posting again: the same transaction
            outcome = Outcome(outcome.claim, self.transaction(tx.conn, claim.transaction_id))
        self._remember(tx, key, command, outcome)
        return outcome

    def _store_claim_step(self, tx: _Tx, before: Claim, decision: Decision) -> Outcome:
        after = decision.claim
        assert after is not None
        if after != before:
            values = self._claim_values(after, tx.actor)
            for fixed in ("id", "actor", "requested_at", "requested_by", "member"):
                values.pop(fixed)
            tx.conn.execute(
                update(points_claims).where(points_claims.c.id == after.id).values(**values)
            )
        return Outcome(claim=after, transaction=decision.transaction)

    def _move(self, tx: _Tx, command: Gift | Redeem, order_id: str | None = None) -> Outcome:
        if isinstance(command, Gift):
            giver, to = member_account(command.member), command.to
            if to.kind is AccountKind.MEMBER:
                self.account_row(tx.conn, to)  # a gift to nobody is refused before any lock
            states = self._lock(tx, [giver, to])
        else:
            if order_id is not None:
                # The order first, as a cancel locks it (then the payer, for its refund): the
                # checks below read it under this lock, so a cancel committed meanwhile is
                # seen, and a cancel waiting for it sees this payment and refunds it.
                tx.conn.execute(
                    select(svc_orders.c.id)
                    .where(svc_orders.c.id == order_id)
                    .with_for_update(key_share=True)
                )
            states = self._lock(tx, [command.payer])
        replay = self._replay(tx, command.idempotency_key, command)
        if replay is not None:
            return replay
        if isinstance(command, Gift):
            if to.kind is AccountKind.MEMBER:
                _refuse_if_gone(tx.conn, to.name, ("deceased",))
            decision = decide_gift(
                command,
                states[giver],
                states.get(to, AccountState(to)),
                self.policy,
                tx.now,
                new_id("pt"),
            )
            member = command.member
            action = "gift"
        else:
            self._check_redeemable(tx, command, order_id)
            paid = tx.conn.execute(
                select(points_order_payments.c.transaction_id).where(
                    points_order_payments.c.order_ref == command.order_ref
                )
            ).first()
            decision = decide_redeem(
                command,
                states[command.payer],
                paid.transaction_id if paid else None,
                self.policy,
                tx.now,
                new_id("pt"),
            )
            member = command.beneficiary
            action = "redeem"
        txn = decision.transaction
        assert txn is not None
        self._append(tx, txn, states)
        if isinstance(command, Redeem):
            tx.conn.execute(
                insert(points_order_payments).values(
                    order_ref=command.order_ref, transaction_id=txn.id
                )
            )
        outcome = Outcome(transaction=txn)
        self._remember(tx, command.idempotency_key, command, outcome)
        self._audit(
            tx,
            action,
            member,
            command.operator,
            transaction_id=txn.id,
            detail={"units": txn.entries[1].units, "to": txn.entries[1].account.key},
        )
        return outcome

    @staticmethod
    def _check_redeemable(tx: _Tx, command: Redeem, order_id: str | None) -> None:
        """What a redemption pays for, as the service room records it (StoreError 422).

        The service must be in the catalogue, and the redemption's category its category: the
        monthly report counts redemptions by it. A named order must exist, be the beneficiary's
        (a member pays only for themself, the pool for the elder it names: the domain's rule),
        be agreed for this very service (its price and service fixed) and not be cancelled;
        otherwise another elder's order could be marked paid, and never be paid by its elder.
        Read after the replay check, so a retry still answers its first result.
        """
        code = tx.service_code or ""
        service = tx.conn.execute(
            select(svc_services.c.category, svc_services.c.active).where(
                svc_services.c.code == code
            )
        ).first()
        if service is None:
            raise StoreError(
                "unknown_service",
                f"no service {code!r} in the catalogue",
                f"服务目录中没有该服务：{code}",
            )
        if not service.active and order_id is None:
            # A retired service takes no new agreements, and a redemption without an order is
            # its own new one. An order agreed before the retirement is still served (the
            # catalogue keeps the service for it), so it may still be paid: checked below.
            raise StoreError(
                "service_retired",
                f"service {code} is retired: it can no longer be redeemed",
                f"服务{code}已停用，不能再用积分兑换",
            )
        if service.category != command.category:
            raise StoreError(
                "category_mismatch",
                f"service {code} is in category {service.category}, not {command.category}",
                f"服务{code}属于{service.category}类，不是{command.category}类",
            )
        if order_id is None:
            # A new service for an elder who died or moved away would never be delivered.
            _refuse_if_gone(tx.conn, command.beneficiary, ("deceased", "moved"))
            return
        order = tx.conn.execute(
            select(
                svc_orders.c.elder_id,
                svc_orders.c.state,
                svc_orders.c.service_code,
                svc_orders.c.check_in_at,
                svc_orders.c.unit,
                svc_orders.c.quantity,
                svc_orders.c.elder_share_fen,
            ).where(svc_orders.c.id == order_id)
        ).first()
        if order is None:
            raise StoreError(
                "unknown_order", f"no service order {order_id!r}", f"找不到服务工单：{order_id}"
            )
        if order.elder_id != command.beneficiary:
            raise StoreError(
                "order_of_another_elder",
                f"service order {order_id} is for {order.elder_id}, not {command.beneficiary}",
                f"服务工单{order_id}属于{order.elder_id}，不是{command.beneficiary}",
            )
        if order.state == OrderState.CANCELLED.value or order.service_code is None:
            raise StoreError(
                "order_not_payable",
                f"service order {order_id} is {order.state}: only an agreed order that is not "
                "cancelled can be paid",
                f"服务工单{order_id}当前状态为{order.state}，只有已签订协议且未取消的工单可以支付",
            )
        if order.service_code != code:
            raise StoreError(
                "order_service_mismatch",
                f"service order {order_id} is for service {order.service_code}, not {code}",
                f"服务工单{order_id}的服务是{order.service_code}，不是{code}",
            )
        # Exactly the order's price in points (its hours, paying the elder's own share): the
        # price fixed when it was agreed, read under the order's lock.
        check_order_price(
            command,
            order_price_units(order_id, order.unit, order.quantity, order.elder_share_fen),
        )
        if order.check_in_at is None:
            # Not begun: no visit can follow any more (a begun one may still be paid).
            _refuse_if_gone(tx.conn, command.beneficiary, ("deceased", "moved"))

    def _reverse(self, tx: _Tx, command: Reverse) -> Outcome:
        original = self.transaction(tx.conn, command.transaction_id)
        states = self._lock(tx, original.accounts)
        replay = self._replay(tx, command.idempotency_key, command)
        if replay is not None:
            return replay
        done = tx.conn.execute(
            select(points_transactions.c.id).where(points_transactions.c.reverses == original.id)
        ).first()
        claim = None
        if original.kind is TxnKind.EARN and original.claim_id:
            claim = self._locked_claim(tx, original.claim_id)
        decision = decide_reverse(
            command,
            original,
            done.id if done else None,
            states,
            claim,
            self.policy,
            tx.now,
            new_id("pt"),
        )
        txn = decision.transaction
        assert txn is not None
        self._append(tx, txn, states)
        if decision.claim is not None and claim is not None:
            self._store_claim_step(tx, claim, decision)
        if original.kind is TxnKind.REDEEM and original.ref is not None:
            # The order is no longer paid: it may be paid again (or otherwise).
            tx.conn.execute(
                delete(points_order_payments).where(
                    points_order_payments.c.order_ref == original.ref,
                    points_order_payments.c.transaction_id == original.id,
                )
            )
        outcome = Outcome(claim=decision.claim, transaction=txn)
        self._remember(tx, command.idempotency_key, command, outcome)
        self._audit(
            tx,
            "reverse",
            original.member or original.beneficiary,
            Operator(command.approved_by, OperatorRole.STAFF),
            transaction_id=txn.id,
            detail={
                "reverses": original.id,
                "reason": txn.reason,
                "requested_by": command.requested_by,
            },
        )
        return outcome

    def refund_order(
        self, conn: Connection, order_id: str, reason: str, actor: str, now: datetime
    ) -> Transaction | None:
        """退还: give the points that paid service order `order_id` back to whoever paid them,
        as a REFUND; None when the order has no live payment (never paid, or paid back already).

        Runs inside the caller's transaction (the cancel's, so the order is cancelled and its
        points refunded together or not at all), which must hold the order's row lock: a
        redemption takes that lock first too, so it cannot pay the order behind our back.
        `actor` is the API caller who cancelled; they are the refund's operator, the same as the
        person who cancelled the order.
        """
        tx = _Tx(conn, from_ms(to_ms(now), self.tz), actor)
        paid = self._order_payment(conn, order_id)
        if paid is None:
            return None
        original = self.transaction(conn, paid.transaction_id)
        states = self._lock(tx, original.accounts)
        # Again under the payer's lock: a reversal of this payment may have committed while we
        # waited for it (it holds the payer's lock, not the order's); then nothing is left here.
        if self._order_payment(conn, order_id) is None:
            return None
        done = conn.execute(
            select(points_transactions.c.id).where(points_transactions.c.reverses == original.id)
        ).first()
        command = Refund(
            transaction_id=original.id,
            reason=f"服务工单{order_id}已取消 order cancelled: {reason}",
            requested_by=Operator(actor, OperatorRole.STAFF),
        )
        decision = decide_refund(command, original, done.id if done else None, tx.now, new_id("pt"))
        txn = decision.transaction
        assert txn is not None
        tx.service_code = conn.execute(
            select(points_transactions.c.service_code).where(
                points_transactions.c.id == original.id
            )
        ).scalar()
        self._append(tx, txn, states)
        conn.execute(
            delete(points_order_payments).where(
                points_order_payments.c.order_ref == order_id,
                points_order_payments.c.transaction_id == original.id,
            )
        )
        self._audit(
            tx,
            "refund",
            original.member or original.beneficiary,
            command.requested_by,
            transaction_id=txn.id,
            detail={"refunds": original.id, "order_id": order_id, "reason": txn.reason},
        )
        conn.execute(insert(points_audit), tx.audit)
        return txn

    @staticmethod
    def _order_payment(conn: Connection, order_id: str) -> Row[Any] | None:
        return conn.execute(
            select(points_order_payments.c.transaction_id).where(
                points_order_payments.c.order_ref == order_id
            )
        ).first()

    def _append(self, tx: _Tx, txn: Transaction, states: dict[Account, AccountState]) -> None:
        """Append a decided transaction: its header, both legs, the cached balances."""
        for entry in txn.entries:
            if entry.account.kind in LOCKED_KINDS and entry.account not in states:
                raise AssertionError(f"{entry.account} changes without its lock")  # a bug
        self._ensure_bank(tx, txn.accounts)
        values = self._txn_values(txn, tx.actor)
        if txn.kind in (TxnKind.REDEEM, TxnKind.REFUND):
            values["service_code"] = tx.service_code
        tx.conn.execute(insert(points_transactions).values(**values))
        tx.conn.execute(
            insert(points_entries),
            [
                {"transaction_id": txn.id, "account": e.account.key, "units": e.units}
                for e in txn.entries
            ],
        )
        for entry in txn.entries:
            if entry.account.kind in LOCKED_KINDS:
                tx.conn.execute(
                    update(points_accounts)
                    .where(points_accounts.c.key == entry.account.key)
                    .values(balance=points_accounts.c.balance + entry.units)
                )

    def _audit(
        self,
        tx: _Tx,
        action: str,
        member: str | None,
        operator: Operator,
        *,
        claim_id: str | None = None,
        transaction_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        tx.audit.append(
            {
                "at": to_ms(tx.now),
                "action": action,
                "member": member,
                "operator_role": operator.role.value,
                "operator": operator.person,
                "actor": tx.actor,
                "claim_id": claim_id,
                "transaction_id": transaction_id,
                "detail": detail,
            }
        )

    # --- rows <-> domain --------------------------------------------------------------------

    def _dt(self, ms: int | None) -> datetime | None:
        return from_ms(ms, self.tz) if ms is not None else None

    @staticmethod
    def _claim_values(c: Claim, actor: str) -> dict[str, Any]:
        def ms(dt: datetime | None) -> int | None:
            return to_ms(dt) if dt is not None else None

        return {
            "id": c.id,
            "member": c.member,
            "community": c.community,
            "source": c.source.value,
            "category": c.category,
            "units": c.units,
            "reason": c.reason[:500],
            "requested_by": c.requested_by.person,
            "operator_role": c.requested_by.role.value,
            "requested_at": to_ms(c.requested_at),
            "service_date": c.service_date,
            "ref": c.ref,
            "started_at": ms(c.started_at),
            "ended_at": ms(c.ended_at),
            "minutes": c.minutes,
            "rounding": c.rounding.code if c.rounding else None,
            "idempotency_key": c.idempotency_key,
            "status": c.status.value,
            "verified_by": c.verified.by if c.verified else None,
            "verified_at": ms(c.verified.at) if c.verified else None,
            "posted_by": c.posted.by if c.posted else None,
            "posted_at": ms(c.posted.at) if c.posted else None,
            "refused_by": c.refusal.by if c.refusal else None,
            "refused_at": ms(c.refusal.at) if c.refusal else None,
            "refused_level": c.refusal.level.value if c.refusal else None,
            "refusal_reason": c.refusal.reason[:500] if c.refusal else None,
            "transaction_id": c.transaction_id,
            "reversal_id": c.reversal_id,
            "actor": actor,
        }

    def _claim(self, r: Row[Any]) -> Claim:
        def at(ms: int) -> datetime:
            out = self._dt(ms)
            assert out is not None
            return out

        return Claim(
            id=r.id,
            member=r.member,
            community=r.community,
            source=EarnSource(r.source),
            category=r.category,
            units=int(r.units),
            reason=r.reason,
            requested_by=Operator(r.requested_by, OperatorRole(r.operator_role)),
            requested_at=at(r.requested_at),
            service_date=r.service_date,
            ref=r.ref,
            started_at=self._dt(r.started_at),
            ended_at=self._dt(r.ended_at),
            minutes=r.minutes,
            rounding=ROUNDING_RULES.get(r.rounding) if r.rounding else None,
            idempotency_key=r.idempotency_key,
            status=ClaimStatus(r.status),
            verified=Approval(r.verified_by, at(r.verified_at), ApprovalLevel.COMMUNITY)
            if r.verified_by
            else None,
            posted=Approval(r.posted_by, at(r.posted_at), ApprovalLevel.SUBDISTRICT)
            if r.posted_by
            else None,
            refusal=Refusal(
                r.refused_by, at(r.refused_at), ApprovalLevel(r.refused_level), r.refusal_reason
            )
            if r.refused_by
            else None,
            transaction_id=r.transaction_id,
            reversal_id=r.reversal_id,
        )

    @staticmethod
    def _txn_values(t: Transaction, actor: str) -> dict[str, Any]:
        return {
            "id": t.id,
            "kind": t.kind.value,
            "at": to_ms(t.at),
            "community": t.community,
            "category": t.category,
            "reason": t.reason[:500],
            "member": t.member,
            "beneficiary": t.beneficiary,
            "requested_by": t.requested_by.person,
            "operator_role": t.requested_by.role.value,
            "approvals": [
                {"by": a.by, "at": to_ms(a.at), "level": a.level.value} for a in t.approvals
            ],
            "rounding": t.rounding.code if t.rounding else None,
            "idempotency_key": t.idempotency_key,
            "claim_id": t.claim_id,
            "ref": t.ref,
            "reverses": t.reverses,
            "service_date": t.service_date,
            "service_year": t.service_date.year if t.service_date else None,
            "actor": actor,
        }

    def _txn(self, r: Any, entries: Sequence[tuple[str, int]]) -> Transaction:
        at = self._dt(r.at)
        assert at is not None
        return Transaction(
            id=r.id,
            kind=TxnKind(r.kind),
            entries=tuple(Entry(account_of(k), int(u)) for k, u in entries),
            at=at,
            community=r.community,
            category=r.category,
            reason=r.reason,
            requested_by=Operator(r.requested_by, OperatorRole(r.operator_role)),
            member=r.member,
            approvals=tuple(
                Approval(a["by"], from_ms(a["at"], self.tz), ApprovalLevel(a["level"]))
                for a in r.approvals or []
            ),
            rounding=ROUNDING_RULES.get(r.rounding) if r.rounding else None,
            idempotency_key=r.idempotency_key,
            claim_id=r.claim_id,
            ref=r.ref,
            reverses=r.reverses,
            service_date=r.service_date,
            beneficiary=r.beneficiary,
        )

    # --- reading ----------------------------------------------------------------------------

    def claim(self, conn: Connection, claim_id: str) -> Claim:
        row = conn.execute(select(points_claims).where(points_claims.c.id == claim_id)).first()
        if row is None:
            raise PointsError("unknown_claim", claim=claim_id)
        return self._claim(row)

    def claims(
        self,
        conn: Connection,
        *,
        member: str | None = None,
        status: Sequence[str] = (),
        limit: int = 1000,
        offset: int = 0,
        where: Any = None,
    ) -> list[Claim]:
        q = select(points_claims).order_by(points_claims.c.requested_at, points_claims.c.id)
        if member is not None:
            q = q.where(points_claims.c.member == member)
        if where is not None:  # e.g. a station's staff: the members they see (api_points)
            q = q.where(where)
        if status:
            q = q.where(points_claims.c.status.in_(list(status)))
        return [self._claim(r) for r in conn.execute(q.limit(limit).offset(offset))]

    def transaction(self, conn: Connection, transaction_id: str) -> Transaction:
        found = self._transactions(conn, points_transactions.c.id == transaction_id)
        if not found:
            raise PointsError("unknown_transaction", transaction=transaction_id)
        return found[0]

    def _transactions(self, conn: Connection, *where: Any) -> list[Transaction]:
        """Transactions matching `where`, in ledger order, each with all of its entries."""
        heads = conn.execute(
            select(points_transactions).where(*where).order_by(points_transactions.c.seq)
        ).all()
        if not heads:
            return []
        legs: dict[str, list[tuple[str, int]]] = defaultdict(list)
        ids = [h.id for h in heads]
        for chunk in range(0, len(ids), 500):
            for e in conn.execute(
                select(
                    points_entries.c.transaction_id,
                    points_entries.c.account,
                    points_entries.c.units,
                )
                .where(points_entries.c.transaction_id.in_(ids[chunk : chunk + 500]))
                .order_by(points_entries.c.id)
            ):
                legs[e.transaction_id].append((e.account, e.units))
        return [self._txn(h, legs[h.id]) for h in heads]

    def transactions_of(
        self, conn: Connection, account: Account, where: Any = None
    ) -> list[Transaction]:
        touching = select(points_entries.c.transaction_id).where(
            points_entries.c.account == account.key
        )
        extra = () if where is None else (where,)
        return self._transactions(conn, points_transactions.c.id.in_(touching), *extra)

    def all_transactions(self, conn: Connection) -> list[Transaction]:
        return self._transactions(conn)

    def statement(
        self,
        conn: Connection,
        account: Account,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Any = None,
    ) -> Statement:
        """`where` (on points_transactions) keeps some lines only, and the balances are then of
        those alone: a station's part of a shared account (gateway/api_points.py)."""
        self.account_row(conn, account)
        claims = (
            self.claims(conn, member=account.name, status=("pending", "verified", "refused"))
            if account.kind is AccountKind.MEMBER
            else []
        )
        return statement_of(
            account, self.transactions_of(conn, account, where), claims, since=since, until=until
        )

    def monthly_report(
        self, conn: Connection, year: int, month: int, where: Any = None
    ) -> MonthlyReport:
        """`where` (on points_transactions): e.g. a station's part (gateway/api_points.py)."""
        zone = self.policy.zone
        start = datetime(year, month, 1, tzinfo=zone)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
        txns = self._transactions(
            conn,
            points_transactions.c.at >= to_ms(start),
            points_transactions.c.at < to_ms(end),
            *(() if where is None else (where,)),
        )
        return monthly_report_of(txns, year, month, self.policy)

    def balances(self, conn: Connection) -> dict[str, int]:
        """Every account's balance summed from its entries (the recomputation)."""
        rows = conn.execute(
            select(points_entries.c.account, func.sum(points_entries.c.units)).group_by(
                points_entries.c.account
            )
        ).all()
        return {k: int(u) for k, u in rows}

    def check(
        self, conn: Connection, *, accounts: Any = None, transactions: Any = None
    ) -> list[str]:
        """Broken invariants of the stored ledger; [] when all is well. `accounts` (on
        points_accounts) and `transactions` (on points_transactions) limit the findings about
        one account or transaction (a station's part, gateway/api_points.py); zero-sum is
        always the whole ledger's."""
        found: list[str] = []
        recomputed = self.balances(conn)
        total = sum(recomputed.values())
        if total != 0:
            found.append(f"the ledger does not sum to zero: {total}")
        accounts_q = select(points_accounts)
        if accounts is not None:
            accounts_q = accounts_q.where(accounts)
        for r in conn.execute(accounts_q):
            units = recomputed.get(r.key, 0)
            if r.balance is not None and int(r.balance) != units:
                found.append(f"{r.key}: cached balance {r.balance} != recomputed {units}")
            if r.kind != AccountKind.ISSUANCE.value and units < 0:
                found.append(f"{r.key} is negative: {units}")
        unbalanced_q = (
            select(points_entries.c.transaction_id)
            .group_by(points_entries.c.transaction_id)
            .having(or_(func.sum(points_entries.c.units) != 0, func.count() < 2))
        )
        orphans_q = (
            select(points_transactions.c.id)
            .outerjoin(points_entries, points_entries.c.transaction_id == points_transactions.c.id)
            .where(points_entries.c.id.is_(None))
        )
        if transactions is not None:
            ids = select(points_transactions.c.id).where(transactions)
            unbalanced_q = unbalanced_q.where(points_entries.c.transaction_id.in_(ids))
            orphans_q = orphans_q.where(transactions)
        unbalanced = conn.execute(unbalanced_q).all()
        found.extend(f"{r.transaction_id} does not balance" for r in unbalanced)
        orphans = conn.execute(orphans_q).all()
        found.extend(f"{r.id} has no entries" for r in orphans)
        return found

    def audit(
        self,
        conn: Connection,
        *,
        member: str | None = None,
        limit: int = 1000,
        where: Any = None,
    ) -> list[Row[Any]]:
        q = select(points_audit).order_by(points_audit.c.id.desc()).limit(limit)
        if member is not None:
            q = q.where(points_audit.c.member == member)
        if where is not None:
            q = q.where(where)
        return list(conn.execute(q).all())

    # --- what other rooms know ---------------------------------------------------------------

    def member_facts(self, conn: Connection, member: str) -> MemberFacts:
        """Redeeming facts: an elder's birth date from the elder record, else the account's."""
        account = self.account_row(conn, member_account(member))
        birth = account.birth_date
        elder = conn.execute(select(elders.c.birth_date).where(elders.c.id == member)).first()
        if elder is not None and elder.birth_date is not None:
            birth = elder.birth_date
        return MemberFacts(birth_date=birth, conditions=frozenset(account.conditions or []))

    def may_act_as_family(self, conn: Connection, person: str, member: str, at_ms: int) -> bool:
        """Whether `person` is a family responder paired with elder `member` now."""
        row = conn.execute(
            select(pairings.c.id)
            .join(responders, responders.c.id == pairings.c.responder_id)
            .where(
                pairings.c.elder_id == member,
                pairings.c.responder_id == person,
                responders.c.role == "family",
                pairings.c.active_from <= at_ms,
                or_(pairings.c.active_until.is_(None), pairings.c.active_until > at_ms),
            )
        ).first()
        return row is not None

    def alarm_facts(self, conn: Connection, alert_id: str, member: str) -> AlarmFacts:
        """`member`'s part of the alert's timeline: when they acknowledged (or, arriving without
        one, arrived), when they arrived, when the alert was resolved and who confirmed it (the
        first one other than `member` to resolve it or to give its outcome)."""
        alert = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if alert is None:
            raise StoreError(
                "unknown_alert", f"no alert {alert_id!r}", f"找不到告警：{alert_id}", 404
            )
        label = f"responder:{member}"
        events = conn.execute(
            select(alert_events.c.at, alert_events.c.type, alert_events.c.actor)
            .where(alert_events.c.alert_id == alert_id)
            .order_by(alert_events.c.id)
        ).all()
        ack = on_site = resolved = None
        confirmed: str | None = None
        for e in events:
            mine = e.actor == label
            if mine and e.type in ("acknowledged", "ack_again", "on_site", "arrive_again"):
                ack = e.at if ack is None else min(ack, e.at)
            if mine and e.type in ("on_site", "arrive_again") and on_site is None:
                on_site = e.at
            if e.type == "resolved" and resolved is None:
                resolved = e.at
            if e.type in ("resolved", "resolve_again") and e.actor and not mine:
                confirmed = confirmed or e.actor
        return AlarmFacts(
            alert_id=alert.id,
            elder_id=alert.elder_id,
            state=alert.state,
            outcome=alert.outcome,
            acknowledged_at=self._dt(ack),
            on_site_at=self._dt(on_site),
            resolved_at=self._dt(resolved),
            confirmed_by=confirmed,
        )


class _Plain:
    """A row-like record for an account not yet stored."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def account_of(key: str) -> Account:
    """An Account from its stored key ("member:rs_1" -> Account(MEMBER, "rs_1"))."""
    kind, _, name = key.partition(":")
    return Account(AccountKind(kind), name)


__all__ = [
    "BANK_ACCOUNTS",
    "POOLS",
    "AlarmFacts",
    "Outcome",
    "PointsStore",
    "StoreError",
    "account_of",
    "is_member_id",
]
