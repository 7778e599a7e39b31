"""Government-purchased service vouchers (服务券 / 政府购买服务): a double-entry ledger in fen.

Pure domain, like the rest of `care/`: no I/O, no clock (`now` is passed in, timezone-aware),
nothing of ours imported outside `care`.

Accounts (`Account`)
    SOURCE     a funding source (a civil-affairs budget line, a charity): value flows out of it,
               so its balance is minus what it has put in; the only kind that may go negative.
    ALLOTMENT  one elder's monthly allotment for one service category from one source
               (`allot:source:elder:YYYY-MM:category`).
    PAYABLE    what a source owes a provider for consumed service (`payable:source:provider`).

Transactions (append-only; each one's lines sum to zero)
    ALLOT      source -> the elder's allotments for the month (amounts from `VoucherPolicy`).
    CONSUME    allotment -> provider payable, for one signed-off visit's subsidy; the elder's own
               share of a low-cost or paid visit rides on the transaction (`elder_share_fen`):
               it is money between elder and provider, recorded per visit, not voucher value.
    EXPIRE     what is left in a month's allotment goes back to its source at month end.
    CARRY      ... or moves to next month's allotment, for categories configured to carry over.
    REVERSAL   the negated lines of an earlier transaction, with a reason and who approved:
               a correction never edits or deletes. A reversed consumption frees its visit to be
               consumed again (e.g. with the corrected amount).

Deciding
    `decide(snapshot, command, policy, now) -> list[Transaction]` or `CareError`. The snapshot
    holds the balances and the transactions the command touches; the gateway loads it under row
    locks (SELECT ... FOR UPDATE on the allotment rows) and runs `decide` inside the same
    transaction, so two visits at once cannot both spend the last of an allotment: the second
    waits, sees the lower balance, and is refused. Transaction ids are deterministic
    (`consume:<visit>#1`): a retried command is refused as a duplicate, and a unique key on the id
    catches anything that slipped past the lock. No non-SOURCE account ever goes below zero.

Reports
    `elder_statement`, `provider_statement`, `source_statement` (per month) and `reconcile`,
    which proves the ledger agrees with the visits (`care.services.VisitCharge`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from care._common import CareError
from care.elders import ServiceTier
from care.services import SHANGHAI, ServiceCategory, VisitCharge

__all__ = [
    "Account",
    "AccountKind",
    "Allot",
    "CloseMonth",
    "Consume",
    "ElderStatement",
    "LedgerSnapshot",
    "Line",
    "ProviderStatement",
    "Reconciliation",
    "Reverse",
    "SourceStatement",
    "Transaction",
    "TxnKind",
    "VoucherCommand",
    "VoucherPolicy",
    "balances",
    "decide",
    "elder_statement",
    "month_of",
    "next_month",
    "provider_statement",
    "reconcile",
    "snapshot_of",
    "source_statement",
]


# --- accounts and transactions ------------------------------------------------------------


class AccountKind(StrEnum):
    SOURCE = "source"
    ALLOTMENT = "allot"
    PAYABLE = "payable"


@dataclass(frozen=True, slots=True, order=True)
class Account:
    kind: AccountKind
    source: str
    elder: str = ""
    month: str = ""
    category: str = ""
    provider: str = ""

    @property
    def key(self) -> str:
        if self.kind is AccountKind.SOURCE:
            return f"source:{self.source}"
        if self.kind is AccountKind.PAYABLE:
            return f"payable:{self.source}:{self.provider}"
        return f"allot:{self.source}:{self.elder}:{self.month}:{self.category}"

    @classmethod
    def of_source(cls, source: str) -> Account:
        return cls(AccountKind.SOURCE, source)

    @classmethod
    def allotment(cls, source: str, elder: str, month: str, category: str) -> Account:
        return cls(AccountKind.ALLOTMENT, source, elder=elder, month=month, category=category)

    @classmethod
    def payable(cls, source: str, provider: str) -> Account:
        return cls(AccountKind.PAYABLE, source, provider=provider)


@dataclass(frozen=True, slots=True)
class Line:
    account: Account
    fen: int  # + credit to the account (it holds more), - debit


class TxnKind(StrEnum):
    ALLOT = "allot"
    CONSUME = "consume"
    EXPIRE = "expire"
    CARRY = "carry"
    REVERSAL = "reversal"


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str
    kind: TxnKind
    at: datetime
    month: str  # the accounting month ("YYYY-MM"), not the month of `at`
    lines: tuple[Line, ...]
    source: str
    elder_id: str = ""
    provider_id: str = ""
    visit_id: str = ""
    elder_share_fen: int = 0  # CONSUME: the elder's own share (negated on its reversal)
    reverses: str | None = None
    reverses_kind: TxnKind | None = None
    reason: str = ""
    actor: str = ""

    @property
    def effective_kind(self) -> TxnKind:
        """The kind this transaction corrects, for a reversal; else its own kind."""
        return self.reverses_kind if self.reverses_kind is not None else self.kind


# --- months -------------------------------------------------------------------------------


def month_of(day: date | datetime) -> str:
    """'YYYY-MM' of a date, or of an aware datetime on the Asia/Shanghai calendar."""
    if isinstance(day, datetime):
        day = day.astimezone(SHANGHAI).date()
    return f"{day.year:04d}-{day.month:02d}"


def next_month(month: str) -> str:
    y, m = _parse_month(month)
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


def _parse_month(month: str) -> tuple[int, int]:
    try:
        y, m = (int(p) for p in month.split("-"))
        if len(month) != 7 or not 1 <= m <= 12:
            raise ValueError
    except ValueError:
        raise CareError(
            "month_invalid", f"{month!r} is not a month (YYYY-MM)", "月份格式应为YYYY-MM"
        ) from None
    return y, m


# --- policy -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoucherPolicy:
    """Monthly allotment in fen per (tier, category); categories whose leftovers carry over to
    the next month (the rest expire back to their source)."""

    allotments: Mapping[tuple[ServiceTier, ServiceCategory], int]
    carry_over: frozenset[ServiceCategory] = frozenset()

    def __post_init__(self) -> None:
        for key, fen in self.allotments.items():
            if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0:
                raise CareError(
                    "amount_invalid",
                    f"allotment {key} must be non-negative fen",
                    "额度须为非负整数（分）",
                )


# --- snapshot -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """What `decide` needs: balances of the accounts involved, and the transactions that
    concern the command (by id), in append order."""

    balances: Mapping[Account, int] = field(default_factory=dict)
    transactions: Mapping[str, Transaction] = field(default_factory=dict)

    def balance(self, account: Account) -> int:
        return self.balances.get(account, 0)

    def with_(self, txns: Iterable[Transaction]) -> LedgerSnapshot:
        """This snapshot after appending `txns`."""
        bal = dict(self.balances)
        tx = dict(self.transactions)
        for t in txns:
            tx[t.id] = t
            for line in t.lines:
                bal[line.account] = bal.get(line.account, 0) + line.fen
        return LedgerSnapshot(bal, tx)

    def reversed_ids(self) -> set[str]:
        return {t.reverses for t in self.transactions.values() if t.reverses}


def balances(transactions: Iterable[Transaction]) -> dict[Account, int]:
    """Every account's balance, recomputed from the journal."""
    out: dict[Account, int] = defaultdict(int)
    for t in transactions:
        for line in t.lines:
            out[line.account] += line.fen
    return dict(out)


def snapshot_of(transactions: Iterable[Transaction]) -> LedgerSnapshot:
    return LedgerSnapshot().with_(transactions)


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Allot:
    source: str
    elder_id: str
    tier: ServiceTier
    month: str
    actor: str = "system"


@dataclass(frozen=True, slots=True)
class Consume:
    charge: VisitCharge
    actor: str = "system"


@dataclass(frozen=True, slots=True)
class CloseMonth:
    source: str
    elder_id: str
    month: str
    actor: str = "system"


@dataclass(frozen=True, slots=True)
class Reverse:
    txn_id: str
    reason: str
    actor: str


VoucherCommand = Allot | Consume | CloseMonth | Reverse


def decide(
    snapshot: LedgerSnapshot, command: VoucherCommand, policy: VoucherPolicy, now: datetime
) -> list[Transaction]:
    """The transactions `command` appends, or `CareError`. Never mutates the snapshot."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise CareError("naive_datetime", "now must carry a time zone", "时间须带时区")
    match command:
        case Allot():
            txns = _allot(snapshot, command, policy, now)
        case Consume():
            txns = _consume(snapshot, command, now)
        case CloseMonth():
            txns = _close(snapshot, command, policy, now)
        case Reverse():
            txns = _reverse(snapshot, command, now)
    _check(snapshot, txns)
    return txns


def _live(snapshot: LedgerSnapshot, prefix: str) -> tuple[Transaction | None, int]:
    """The live (not reversed) transaction with this id prefix, and the next sequence number."""
    reversed_ids = snapshot.reversed_ids()
    n = 0
    live = None
    for tid, t in snapshot.transactions.items():
        if tid.startswith(prefix + "#"):
            n += 1
            if tid not in reversed_ids:
                live = t
    return live, n + 1


def _closed(snapshot: LedgerSnapshot, source: str, elder: str, month: str) -> bool:
    return _live(snapshot, f"close:{source}:{elder}:{month}")[0] is not None


def _allot(
    snapshot: LedgerSnapshot, c: Allot, policy: VoucherPolicy, now: datetime
) -> list[Transaction]:
    _parse_month(c.month)
    prefix = f"allot:{c.source}:{c.elder_id}:{c.month}"
    live, seq = _live(snapshot, prefix)
    if live is not None:
        raise CareError(
            "already_allotted",
            f"{c.elder_id} already has the {c.month} allotment from {c.source}",
            f"{c.elder_id}本月（{c.month}）已发放服务券",
        )
    if _closed(snapshot, c.source, c.elder_id, c.month):
        raise CareError("month_closed", f"{c.month} is closed for {c.elder_id}", f"{c.month}已结账")
    lines: list[Line] = []
    for (tier, category), fen in sorted(policy.allotments.items()):
        if tier is c.tier and fen > 0:
            lines.append(Line(Account.allotment(c.source, c.elder_id, c.month, category), fen))
    if not lines:
        raise CareError(
            "no_allotment", f"tier {c.tier} has no voucher allotment", f"{c.tier}档无服务券额度"
        )
    lines.append(Line(Account.of_source(c.source), -sum(line.fen for line in lines)))
    return [
        Transaction(
            f"{prefix}#{seq}",
            TxnKind.ALLOT,
            now,
            c.month,
            tuple(lines),
            c.source,
            elder_id=c.elder_id,
            actor=c.actor,
        )
    ]


def _consume(snapshot: LedgerSnapshot, c: Consume, now: datetime) -> list[Transaction]:
    ch = c.charge
    if ch.funding_source is None:
        raise CareError(
            "no_funding_source", f"visit {ch.visit_id} is not voucher-funded", "该服务不使用服务券"
        )
    if (
        min(ch.subsidy_fen, ch.elder_share_fen) < 0
        or ch.subsidy_fen + ch.elder_share_fen != ch.total_fen
    ):
        raise CareError(
            "charge_inconsistent",
            f"visit {ch.visit_id}: subsidy + elder share must equal the total",
            "补贴与个人支付之和须等于服务总价",
        )
    prefix = f"consume:{ch.visit_id}"
    live, seq = _live(snapshot, prefix)
    if live is not None:
        raise CareError(
            "visit_already_consumed",
            f"visit {ch.visit_id} has already been paid by voucher",
            f"服务{ch.visit_id}已用服务券结算",
        )
    closed = _live(snapshot, f"close:{ch.funding_source}:{ch.elder_id}:{ch.month}")[0]
    if closed is not None:
        # A visit of a closed month (signed off late): its subsidy can only come from that
        # month's vouchers, so staff reopen the elder's month by reversing its close (the
        # leftovers return to the month, or come back from next month if carried and
        # unspent), sign off, and close the month again. Said in full: the order waits.
        raise CareError(
            "month_closed",
            f"{ch.month} is closed for {ch.elder_id}: visit {ch.visit_id} cannot be paid until "
            f"staff reverse the month's close (POST /vouchers/reversals txn_id={closed.id}, "
            f"with a reason), then sign it off again and close {ch.month} again",
            f"{ch.elder_id}的{ch.month}已结账，服务{ch.visit_id}暂不能结算：请工作人员先冲正该月"
            f"结账交易（POST /vouchers/reversals，txn_id={closed.id}，写明原因），"
            f"再重新签字认证，然后重新结账{ch.month}",
        )
    allot = Account.allotment(ch.funding_source, ch.elder_id, ch.month, ch.category)
    if snapshot.balance(allot) < ch.subsidy_fen:
        raise CareError(
            "voucher_insufficient",
            f"{ch.elder_id}'s {ch.category} vouchers for {ch.month}: "
            f"{snapshot.balance(allot)} fen left, {ch.subsidy_fen} needed",
            f"{ch.elder_id} {ch.month} {ch.category}服务券余额不足："
            f"剩余{snapshot.balance(allot)}分，需要{ch.subsidy_fen}分",
        )
    lines: tuple[Line, ...] = ()
    if ch.subsidy_fen:
        payable = Account.payable(ch.funding_source, ch.provider_id)
        lines = (Line(allot, -ch.subsidy_fen), Line(payable, ch.subsidy_fen))
    # A zero-subsidy visit still gets a transaction: the elder's share is recorded per visit.
    return [
        Transaction(
            f"{prefix}#{seq}",
            TxnKind.CONSUME,
            now,
            ch.month,
            lines,
            ch.funding_source,
            elder_id=ch.elder_id,
            provider_id=ch.provider_id,
            visit_id=ch.visit_id,
            elder_share_fen=ch.elder_share_fen,
            actor=c.actor,
        )
    ]


def _close(
    snapshot: LedgerSnapshot, c: CloseMonth, policy: VoucherPolicy, now: datetime
) -> list[Transaction]:
    _parse_month(c.month)
    prefix = f"close:{c.source}:{c.elder_id}:{c.month}"
    live, seq = _live(snapshot, prefix)
    if live is not None:
        raise CareError("month_closed", f"{c.month} is closed for {c.elder_id}", f"{c.month}已结账")
    if now.astimezone(SHANGHAI).date() < _first_of(next_month(c.month)):
        raise CareError(
            "month_not_over", f"{c.month} is not over yet", f"{c.month}尚未结束，不能结账"
        )
    lines: list[Line] = []
    carried = False
    for acct, bal in sorted(snapshot.balances.items()):
        if (
            acct.kind is AccountKind.ALLOTMENT
            and (acct.source, acct.elder, acct.month) == (c.source, c.elder_id, c.month)
            and bal > 0
        ):
            lines.append(Line(acct, -bal))
            if ServiceCategory(acct.category) in policy.carry_over:
                carried = True
                nxt = Account.allotment(acct.source, acct.elder, next_month(c.month), acct.category)
                lines.append(Line(nxt, bal))
            else:
                lines.append(Line(Account.of_source(c.source), bal))
    # One transaction per close (its kind says whether anything carried); an empty one still
    # marks the month closed, so a late consumption is refused rather than silently accepted.
    kind = TxnKind.CARRY if carried else TxnKind.EXPIRE
    return [
        Transaction(
            f"{prefix}#{seq}",
            kind,
            now,
            c.month,
            tuple(lines),
            c.source,
            elder_id=c.elder_id,
            actor=c.actor,
        )
    ]


def _first_of(month: str) -> date:
    y, m = _parse_month(month)
    return date(y, m, 1)


def _reverse(snapshot: LedgerSnapshot, c: Reverse, now: datetime) -> list[Transaction]:
    original = snapshot.transactions.get(c.txn_id)
    if original is None:
        raise CareError("txn_unknown", f"no transaction {c.txn_id}", f"没有交易{c.txn_id}")
    if original.kind is TxnKind.REVERSAL:
        raise CareError(
            "reversal_of_reversal",
            "a reversal is not reversed; enter the correct transaction again",
            "冲正交易不能再冲正，请重新录入正确的交易",
        )
    if c.txn_id in snapshot.reversed_ids():
        raise CareError("already_reversed", f"{c.txn_id} is already reversed", f"{c.txn_id}已冲正")
    if not c.reason.strip() or not c.actor.strip():
        raise CareError(
            "reversal_needs_reason",
            "a reversal needs a reason and who approved it",
            "冲正须写明原因和审批人",
        )
    return [
        Transaction(
            f"reverse:{c.txn_id}",
            TxnKind.REVERSAL,
            now,
            original.month,
            tuple(Line(line.account, -line.fen) for line in original.lines),
            original.source,
            elder_id=original.elder_id,
            provider_id=original.provider_id,
            visit_id=original.visit_id,
            elder_share_fen=-original.elder_share_fen,
            reverses=original.id,
            reverses_kind=original.kind,
            reason=c.reason.strip(),
            actor=c.actor,
        )
    ]


def _check(snapshot: LedgerSnapshot, txns: list[Transaction]) -> None:
    for t in txns:
        # A bug guard rather than a user error: every decision must balance.
        assert sum(line.fen for line in t.lines) == 0, f"unbalanced transaction {t.id}"
        if t.id in snapshot.transactions:
            raise CareError("txn_duplicate", f"transaction {t.id} exists", f"交易{t.id}已存在")
    after = snapshot.with_(txns)
    for t in txns:
        for line in t.lines:
            if line.account.kind is not AccountKind.SOURCE and after.balance(line.account) < 0:
                raise CareError(
                    "would_go_negative",
                    f"{line.account.key} would go below zero (reverse what spent it first)",
                    f"账户{line.account.key}余额将为负（请先冲正使用它的交易）",
                )


# --- statements ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ElderStatement:
    elder_id: str
    month: str
    allotted: int
    carried_in: int
    consumed: int
    expired: int
    carried_out: int
    closing: int
    elder_share: int
    visits: tuple[str, ...]


def elder_statement(
    transactions: Iterable[Transaction], elder_id: str, month: str
) -> ElderStatement:
    """One elder's month across all sources: opening movements, use, and what they paid."""
    b: dict[str, int] = defaultdict(int)
    visits: dict[str, int] = defaultdict(int)
    share = 0
    for t in transactions:
        if t.effective_kind is TxnKind.CONSUME and t.elder_id == elder_id and t.month == month:
            share += t.elder_share_fen
            visits[t.visit_id] += -1 if t.kind is TxnKind.REVERSAL else 1
        for line in t.lines:
            a = line.account
            if a.kind is not AccountKind.ALLOTMENT or a.elder != elder_id or a.month != month:
                continue
            # The bucket follows the original movement's direction, so a reversal lands in the
            # bucket it corrects (a reversed carry-in lowers carried_in, not raises carried_out).
            orig = -line.fen if t.kind is TxnKind.REVERSAL else line.fen
            match t.effective_kind:
                case TxnKind.ALLOT:
                    b["allotted"] += line.fen
                case TxnKind.CONSUME:
                    b["consumed"] -= line.fen
                case TxnKind.EXPIRE:
                    b["expired"] -= line.fen
                case TxnKind.CARRY if orig > 0:
                    b["carried_in"] += line.fen
                case TxnKind.CARRY if orig < 0:
                    # A CARRY close may also expire some categories: the source line tells.
                    b["carried_out" if _carried(t, a) else "expired"] -= line.fen
            b["closing"] += line.fen
    return ElderStatement(
        elder_id,
        month,
        b["allotted"],
        b["carried_in"],
        b["consumed"],
        b["expired"],
        b["carried_out"],
        b["closing"],
        share,
        tuple(sorted(v for v, n in visits.items() if n > 0)),
    )


def _carried(t: Transaction, debited: Account) -> bool:
    return any(
        line.account.kind is AccountKind.ALLOTMENT
        and line.account.category == debited.category
        and line.account.month == next_month(debited.month)
        for line in t.lines
    )


@dataclass(frozen=True, slots=True)
class ProviderStatement:
    provider_id: str
    month: str
    payable_by_source: Mapping[str, int]  # what each source owes the provider for the month
    total_payable: int
    elder_share: int  # collected from elders by the provider themselves
    visits: tuple[str, ...]


def provider_statement(
    transactions: Iterable[Transaction], provider_id: str, month: str
) -> ProviderStatement:
    by_source: dict[str, int] = defaultdict(int)
    visits: dict[str, int] = defaultdict(int)
    share = 0
    for t in transactions:
        if (
            t.effective_kind is not TxnKind.CONSUME
            or t.provider_id != provider_id
            or t.month != month
        ):
            continue
        share += t.elder_share_fen
        visits[t.visit_id] += -1 if t.kind is TxnKind.REVERSAL else 1
        for line in t.lines:
            if line.account.kind is AccountKind.PAYABLE:
                by_source[line.account.source] += line.fen
    return ProviderStatement(
        provider_id,
        month,
        dict(by_source),
        sum(by_source.values()),
        share,
        tuple(sorted(v for v, n in visits.items() if n > 0)),
    )


@dataclass(frozen=True, slots=True)
class SourceStatement:
    source: str
    month: str
    allotted: int
    returned: int  # expired allotments flowing back
    payable_by_provider: Mapping[str, int]
    net_out: int  # allotted - returned: the month's net draw on the source


def source_statement(
    transactions: Iterable[Transaction], source: str, month: str
) -> SourceStatement:
    allotted = returned = 0
    by_provider: dict[str, int] = defaultdict(int)
    for t in transactions:
        if t.source != source or t.month != month:
            continue
        for line in t.lines:
            if line.account.kind is AccountKind.SOURCE:
                if t.effective_kind is TxnKind.ALLOT:
                    allotted -= line.fen
                else:
                    returned += line.fen
            elif line.account.kind is AccountKind.PAYABLE:
                by_provider[line.account.provider] += line.fen
    return SourceStatement(
        source, month, allotted, returned, dict(by_provider), allotted - returned
    )


# --- reconciliation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reconciliation:
    ok: bool
    problems: tuple[str, ...]
    ledger_payable: int
    visit_subsidy: int
    ledger_elder_share: int
    visit_elder_share: int


def reconcile(
    transactions: Iterable[Transaction], charges: Iterable[VisitCharge]
) -> Reconciliation:
    """Prove the ledger agrees with the visits: every transaction balances, no non-source
    account ever dips below zero (in journal order), each voucher-funded visit was consumed
    exactly once for its subsidy and elder share, nothing was consumed for an unknown visit,
    and the payable total equals the visits' subsidy total."""
    txns = list(transactions)
    problems: list[str] = []
    running: dict[Account, int] = defaultdict(int)
    paid: dict[str, int] = defaultdict(int)
    shared: dict[str, int] = defaultdict(int)
    for t in txns:
        if sum(line.fen for line in t.lines) != 0:
            problems.append(f"{t.id}: lines do not sum to zero")
        for line in t.lines:
            running[line.account] += line.fen
            if line.account.kind is not AccountKind.SOURCE and running[line.account] < 0:
                problems.append(f"{t.id}: {line.account.key} below zero")
        if t.effective_kind is TxnKind.CONSUME:
            paid[t.visit_id] += sum(
                ln.fen for ln in t.lines if ln.account.kind is AccountKind.PAYABLE
            )
            shared[t.visit_id] += t.elder_share_fen
    funded = {c.visit_id: c for c in charges if c.funding_source is not None}
    reversed_ids = {t.reverses for t in txns if t.reverses}
    consumed_ids = {
        t.visit_id for t in txns if t.kind is TxnKind.CONSUME and t.id not in reversed_ids
    }
    for vid, c in funded.items():
        if vid not in consumed_ids:
            problems.append(f"visit {vid}: not consumed")
        elif paid[vid] != c.subsidy_fen or shared[vid] != c.elder_share_fen:
            problems.append(
                f"visit {vid}: ledger {paid[vid]}+{shared[vid]} != "
                f"visit {c.subsidy_fen}+{c.elder_share_fen}"
            )
    for vid in sorted(consumed_ids - funded.keys()):
        problems.append(f"visit {vid}: consumed in the ledger but no such visit")
    ledger_payable = sum(f for a, f in running.items() if a.kind is AccountKind.PAYABLE)
    visit_subsidy = sum(c.subsidy_fen for c in funded.values())
    if ledger_payable != visit_subsidy:
        problems.append(f"payable total {ledger_payable} != visit subsidy total {visit_subsidy}")
    return Reconciliation(
        not problems,
        tuple(problems),
        ledger_payable,
        visit_subsidy,
        sum(shared.values()),
        sum(c.elder_share_fen for c in funded.values()),
    )
