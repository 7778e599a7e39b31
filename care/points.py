"""The mutual-aid time bank (互助养老积分 / 时间银行): a double-entry points ledger.

Pure domain: plain dataclasses and rules, no I/O, no clock (`now` is passed in, always
timezone-aware), nothing of ours imported but `care.points_rules`. The gateway persists what
these functions return and replays the same functions inside a database transaction.

Amounts
    Integer units of half a point (`points_rules.UNITS_PER_POINT == 2`): 1 hour of verified help
    = 1 point = 2 units; 0.5 point is the smallest unit. `parse_points` / `format_points` convert.

Accounts and transactions
    Every member has an account; the bank has an ISSUANCE account (the source of every earned
    point, so its balance is minus the points in circulation), a REDEMPTION account (the sink of
    every point spent on a service order) and pool accounts (HARDSHIP_POOL, gifts for elders in
    hardship). A `Transaction` is a set of `Entry` lines whose units sum to zero; transactions
    are only ever appended. Kinds: EARN (issuance -> member), GIFT (member -> member or pool),
    REDEEM (member or pool -> redemption, for a service order), REVERSAL (the negated lines
    of an earlier transaction, with a reason and an approver: a correction never edits) and
    REFUND (the negated lines of a redemption whose service order was cancelled: the points go
    back to whoever paid, at most once per redemption, like a reversal).
    The journal header carries the metadata the brief asks of every entry: who requested (and
    the real operator), who approved, the reason, the rounding rule, the idempotency key.

Earnings go through two approvals (seed 004: 社区核实录入, 街道审核上传)
    A `Claim` is PENDING when requested, VERIFIED by the community, then POSTED by the
    sub-district, which appends the EARN transaction; or REFUSED at either level with a reason.
    Nothing counts in a balance until posted. A reversed earning's claim becomes REVERSED, which
    frees its service reference and time span for a corrected claim. The same person never
    approves twice, nor approves points that concern themselves (four eyes, always on), counted
    by person (`person_of`: "responder:rs_1" approving is the member rs_1), not by spelling.

Balances
    A balance is the sum of posted entries (`balance`). Gifts and redemptions take effect at
    once and spend only posted balance; pending claims are shown on the statement but can be
    neither spent nor given. No account but ISSUANCE ever goes below zero: a reversal that would
    take back points already spent is refused (reverse the spending first).

Caps (PointsPolicy defaults, all configurable)
    - yearly_earn_cap = 500 points: ten hours a week for fifty weeks, more than a devoted
      volunteer gives, low enough that a bulk of invented hours stands out. Counted by the local
      calendar year of the help (Asia/Shanghai), net of reversals, checked when posting; a
      claim over this (or the balance cap) by itself is refused when requested, as it never
      could be posted.
    - balance_cap = 1500 points: the 1500-hour ceiling some cities put on a time-bank account.
      Checked on every credit to a member (posting, a gift received, a reversal refunding).
    - redeem_min_age = 60 or a condition in redeem_conditions (default {"dependent"}): the seed's
      elders are 60+; a younger member who is 失能 may need help now. A member redeems only for
      themself (give points to a relative first); a pool pays for any eligible elder with the
      approval of a second staff member.
    - rounding = FLOOR_HALF_HOUR: never credits time not given, and a minute more cannot tip it.
    - max_service_minutes = 12 h (one overnight companion shift), claim_window_days = 90 (a
      quarter, for late monthly entry), clock_tolerance_minutes = 5 (phones' clocks drift).
    - Alarm responses earn by the time from acknowledgement to resolution, capped at
      alarm_max_minutes = 4 h, at least alarm_min_units = 0.5 point: arriving is what counts.

Idempotency
    A command creating something (a claim, a gift, a redemption, a reversal) may carry an
    `idempotency_key`. The same key with the same command returns the first result and has no
    second effect; the same key with a different command is refused (`idempotency_conflict`).
    Only successes are remembered: a refused command changed nothing, so retrying it is simply
    judging it again. Verify, post and refuse are idempotent by nature (the same approver
    repeating the same step changes nothing), and a reversal or a paid order cannot repeat.

For the gateway
    Every command has a pure `decide_*` function: (the state of the accounts and claims
    involved, the command, the policy, now, the new id) -> `Decision` (a claim to store and/or a
    transaction to append), or PointsError. Lock the involved member and pool accounts' rows in
    a stable order (sorted by `Account.key`), read their `AccountState`s, decide, insert, commit.
    The bank's ISSUANCE and REDEMPTION accounts are never checked, so never locked. `Ledger` is
    the in-memory wrapper doing exactly that with dictionaries, and the model the tests check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import Enum, StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from care.points_rules import (
    UNITS_PER_POINT,
    MemberFacts,
    PointsError,
    PointsPolicy,
    RoundingRule,
    format_points,
    require_units,
)

# --- accounts and entries -----------------------------------------------------------------


class AccountKind(StrEnum):
    MEMBER = "member"  # a volunteer's, watcher's or elder's own account
    ISSUANCE = "issuance"  # where earned points come from (the only account below zero)
    REDEMPTION = "redemption"  # where redeemed points go
    POOL = "pool"  # a shared pool, e.g. for elders in hardship


@dataclass(frozen=True, slots=True, order=True)
class Account:
    kind: AccountKind
    name: str

    @property
    def key(self) -> str:
        """A stable text key ("member:42", "issuance:bank"): the lock order and the DB key."""
        return f"{self.kind.value}:{self.name}"

    def __str__(self) -> str:
        return self.key


ISSUANCE = Account(AccountKind.ISSUANCE, "bank")
REDEMPTION = Account(AccountKind.REDEMPTION, "bank")
HARDSHIP_POOL = Account(AccountKind.POOL, "hardship")


def member_account(member: str) -> Account:
    """The account of member `member` (a person id from the care records)."""
    return Account(AccountKind.MEMBER, member)


def pool_account(name: str) -> Account:
    return Account(AccountKind.POOL, name)


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a transaction: `units` added to `account` (negative: taken from it)."""

    account: Account
    units: int


class TxnKind(StrEnum):
    EARN = "earn"
    GIFT = "gift"  # 转赠
    REDEEM = "redeem"  # 兑换
    REVERSAL = "reversal"  # 冲正
    REFUND = "refund"  # 退还: a cancelled service order's points back to who paid them


class EarnSource(StrEnum):
    SERVICE = "service"  # verified service hours (a mutual-aid visit, a companion shift)
    ALARM = "alarm"  # answering an alarm: acknowledged, on site, confirmed at resolution
    AWARD = "award"  # granted by the station, with a reason (e.g. training attended)


class ApprovalLevel(StrEnum):
    COMMUNITY = "community"  # 社区核实录入
    SUBDISTRICT = "subdistrict"  # 街道审核上传
    STATION = "station"  # a second staff member (pool spending, reversals)


@dataclass(frozen=True, slots=True)
class Approval:
    by: str
    at: datetime
    level: ApprovalLevel


@dataclass(frozen=True, slots=True)
class Refusal:
    by: str
    at: datetime
    level: ApprovalLevel
    reason: str


class OperatorRole(StrEnum):
    SELF = "self"  # the member on their own phone
    STAFF = "staff"  # station staff acting at the desk
    FAMILY = "family"  # a paired relative acting for a member who cannot use a phone


@dataclass(frozen=True, slots=True)
class Operator:
    """The real person who did an operation; with the command's member, both are recorded.

    Whether a staff member or relative may act for this member (pairing, duty) is the
    gateway's check; the domain checks that the role and the person agree.
    """

    person: str
    role: OperatorRole = OperatorRole.SELF


PERSON_PREFIX = "responder:"
"""How the gateway names a person who approves or operates through a token, a session or on
paper ("responder:rs_1"), as alert timelines do; members are named by the bare id ("rs_1")."""


def person_of(name: str) -> str:
    """The person a name in the ledger stands for: four eyes count people, not spellings.

    "responder:rs_1" (a person acting through a token, or named on paper) and "rs_1" (a member,
    a relative operating) are the same person rs_1. Any other name, such as a caller acting for
    no one person ("api:admin"), stands only for itself.
    """
    return name.removeprefix(PERSON_PREFIX)


def _same_person(a: str, b: str | None) -> bool:
    return b is not None and person_of(a) == person_of(b)


@dataclass(frozen=True, slots=True)
class Transaction:
    """An append-only journal record: entries summing to zero, with who, why and how.

    `member` is the member it chiefly concerns (earner, giver, payer; the original's for a
    reversal); `beneficiary` is who a redemption's service is for.
    """

    id: str
    kind: TxnKind
    entries: tuple[Entry, ...]
    at: datetime
    community: str
    category: str
    reason: str
    requested_by: Operator
    member: str | None = None
    approvals: tuple[Approval, ...] = ()
    rounding: RoundingRule | None = None
    idempotency_key: str | None = None
    claim_id: str | None = None
    ref: str | None = None
    reverses: str | None = None
    service_date: date | None = None
    beneficiary: str | None = None

    def __post_init__(self) -> None:
        # The one place zero-sum is enforced: no code path can build an unbalanced
        # transaction, whatever a decide function gets wrong.
        if len(self.entries) < 2:
            raise ValueError("a transaction has at least two entries")
        if sum(e.units for e in self.entries) != 0:
            raise ValueError(f"transaction {self.id} does not sum to zero")
        if any(e.units == 0 for e in self.entries):
            raise ValueError(f"transaction {self.id} has a zero entry")
        if len({e.account for e in self.entries}) != len(self.entries):
            raise ValueError(f"transaction {self.id} names an account twice")

    def units_for(self, account: Account) -> int:
        """What this transaction adds to `account` (0 if it does not touch it)."""
        return sum(e.units for e in self.entries if e.account == account)

    @property
    def accounts(self) -> tuple[Account, ...]:
        return tuple(e.account for e in self.entries)


# --- claims (earnings awaiting approval) --------------------------------------------------


class ClaimStatus(StrEnum):
    PENDING = "pending"  # requested, awaiting 社区核实
    VERIFIED = "verified"  # verified by the community, awaiting 街道审核
    POSTED = "posted"  # posted: the EARN transaction exists
    REFUSED = "refused"  # refused at either level, with a reason
    REVERSED = "reversed"  # posted, then its transaction was reversed


LIVE_CLAIM_STATUSES = frozenset({ClaimStatus.PENDING, ClaimStatus.VERIFIED, ClaimStatus.POSTED})
"""Claims that hold their service reference and time span (no second claim may overlap)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A request to earn points, through 社区核实录入 and 街道审核上传 to a posted EARN."""

    id: str
    member: str
    community: str
    source: EarnSource
    category: str
    units: int
    reason: str
    requested_by: Operator
    requested_at: datetime
    service_date: date  # local date of the help: the year whose cap it counts against
    ref: str | None = None  # service record or alert id; None for an award
    started_at: datetime | None = None
    ended_at: datetime | None = None
    minutes: int | None = None  # the duration counted, before rounding
    rounding: RoundingRule | None = None
    idempotency_key: str | None = None
    status: ClaimStatus = ClaimStatus.PENDING
    verified: Approval | None = None
    posted: Approval | None = None
    refusal: Refusal | None = None
    transaction_id: str | None = None
    reversal_id: str | None = None


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestService:
    """Claim points for verified service hours (a mutual-aid visit, a companion shift)."""

    member: str
    community: str
    category: str  # one of policy.service_categories
    started_at: datetime
    ended_at: datetime
    service_ref: str  # the service record or order the help belongs to
    operator: Operator
    reason: str = ""
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RequestAlarmCredit:
    """Claim points for answering an alarm, from the responder's part of the alert timeline.

    The gateway fills the times from the alert's timeline: when this responder acknowledged,
    when they arrived, when the alert was resolved, and who confirmed their presence then.
    """

    member: str
    community: str
    alert_id: str
    acknowledged_at: datetime | None
    on_site_at: datetime | None
    resolved_at: datetime | None
    confirmed_by: str | None
    operator: Operator
    reason: str = "answered an alarm"
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RequestAward:
    """A station award (e.g. training attended), entered by staff, with its reason."""

    member: str
    community: str
    units: int
    reason: str
    operator: Operator  # must be staff
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Verify:
    """社区核实录入: the community verifies a pending claim."""

    claim_id: str
    verifier: str


@dataclass(frozen=True, slots=True)
class Post:
    """街道审核上传: the sub-district audits a verified claim and posts it."""

    claim_id: str
    auditor: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """Refuse a claim: at the community level while pending, at the sub-district once verified."""

    claim_id: str
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Gift:
    """转赠: `member` gives posted points to another member or to a pool."""

    member: str
    to: Account
    units: int
    community: str
    operator: Operator
    reason: str = ""
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Redeem:
    """兑换: pay a service order in points, from a member's own account or from a pool."""

    payer: Account
    beneficiary: str  # the member the service is for (the payer itself for a member account)
    beneficiary_facts: MemberFacts
    units: int
    order_ref: str
    category: str  # the service order's category
    community: str
    operator: Operator
    approved_by: str | None = None  # required when a pool pays
    reason: str = ""
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Reverse:
    """冲正: undo a posted transaction with reversing entries, a reason and an approver."""

    transaction_id: str
    reason: str
    requested_by: str
    approved_by: str
    level: ApprovalLevel = ApprovalLevel.STATION
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Refund:
    """退还: the service order a redemption paid was cancelled; its points go back to the payer.

    Not keyed: a redemption is refunded (or reversed) at most once, whoever asks how often; the
    gateway runs it in the cancel's own transaction, so the cancel's key covers a retry.
    """

    transaction_id: str  # the order's live REDEEM
    reason: str  # why the order was cancelled
    requested_by: Operator  # who cancelled the order


Command = (
    RequestService
    | RequestAlarmCredit
    | RequestAward
    | Verify
    | Post
    | Refuse
    | Gift
    | Redeem
    | Reverse
    | Refund
)
KeyedCommand = RequestService | RequestAlarmCredit | RequestAward | Gift | Redeem | Reverse


# --- state snapshots and decisions (the gateway's contract) -------------------------------


@dataclass(frozen=True, slots=True)
class AccountState:
    """What a decision needs to know of one account: its posted balance and, for a member,
    the units earned (net of reversals) by local calendar year of the help."""

    account: Account
    balance: int = 0
    earned_by_year: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a command does: a claim to store (new or changed) and/or a transaction to append.

    Both None never happens; `transaction` None with a claim is a claim-only step (request,
    verify, refuse) or a harmless repeat of one.
    """

    claim: Claim | None = None
    transaction: Transaction | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A remembered success: the key, the command's fingerprint and what it produced."""

    key: str
    fingerprint: str
    claim_id: str | None = None
    transaction_id: str | None = None


def fingerprint(command: Command) -> str:
    """A stable hash of a command, to tell a retry from a different request with the same key.

    Instants are compared in UTC, so a retry that spells the same time in another offset is
    still the same request.
    """
    payload = json.dumps(_canonical(command), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        body = {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$type": type(value).__name__, **body}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo("UTC")).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return sorted(_canonical(v) for v in value)
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def replay_of(command: KeyedCommand, record: IdempotencyRecord | None) -> IdempotencyRecord | None:
    """The earlier success this command repeats, None if it is new; PointsError on a key reuse."""
    if record is None or command.idempotency_key is None:
        return None
    if record.fingerprint != fingerprint(command):
        raise PointsError("idempotency_conflict", key=command.idempotency_key)
    return record


# --- checks shared by the decide functions ------------------------------------------------


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PointsError("naive_datetime", field=name)


def _required(name: str, value: str | None) -> str:
    if value is None or not value.strip():
        raise PointsError("missing_field", field=name)
    return value


def _reason(value: str) -> str:
    if not value.strip():
        raise PointsError("reason_required")
    return value.strip()


def _check_operator(member: str, operator: Operator) -> None:
    _required("operator", operator.person)
    if operator.role is OperatorRole.SELF and operator.person != member:
        raise PointsError("operator_invalid", detail=f"{operator.person} acts as self for {member}")
    if operator.role is not OperatorRole.SELF and _same_person(operator.person, member):
        raise PointsError(
            "operator_invalid", detail=f"{member} acts for themself as {operator.role}"
        )


def _check_window(ended: datetime, policy: PointsPolicy, now: datetime) -> None:
    if ended > now + timedelta(minutes=policy.clock_tolerance_minutes):
        raise PointsError("in_future")
    if ended < now - timedelta(days=policy.claim_window_days):
        raise PointsError("claim_too_old", days=policy.claim_window_days)


def _check_no_duplicate(
    member: str,
    source: EarnSource,
    ref: str,
    span: tuple[datetime, datetime],
    member_claims: Iterable[Claim],
) -> None:
    for other in member_claims:
        if other.member != member or other.status not in LIVE_CLAIM_STATUSES:
            continue
        if other.source is source and other.ref == ref:
            raise PointsError("duplicate_claim", ref=ref, other=other.id)
        # One person cannot be in two places: live claims' spans may touch but not overlap.
        if (
            other.started_at is not None
            and other.ended_at is not None
            and other.started_at < span[1]
            and span[0] < other.ended_at
        ):
            raise PointsError("overlapping_claim", other=other.id)


def _minutes(duration: timedelta) -> int:
    return duration // timedelta(minutes=1)


def _signed(units: int) -> str:
    return format_points(units)


def _state(states: Mapping[Account, AccountState], account: Account) -> AccountState:
    return states.get(account) or AccountState(account)


def _check_credit_cap(state: AccountState, units: int, policy: PointsPolicy) -> None:
    if state.account.kind is not AccountKind.MEMBER or policy.balance_cap is None:
        return
    if state.balance + units > policy.balance_cap:
        raise PointsError(
            "balance_cap_exceeded",
            member=state.account.name,
            balance=_signed(state.balance),
            amount=_signed(units),
            cap=_signed(policy.balance_cap),
        )


def _check_yearly_cap(
    member: str, year: int, earned: int, units: int, policy: PointsPolicy
) -> None:
    if policy.yearly_earn_cap is not None and earned + units > policy.yearly_earn_cap:
        raise PointsError(
            "yearly_cap_exceeded",
            member=member,
            year=year,
            earned=_signed(earned),
            amount=_signed(units),
            cap=_signed(policy.yearly_earn_cap),
        )


def _check_postable(
    member: str,
    service_date: date,
    units: int,
    state: AccountState | None,
    policy: PointsPolicy,
) -> None:
    """Refuse at once a claim that no posting could ever accept: one larger than a cap alone.

    Otherwise it would pass both approvals, show as pending on the member's phone, and only
    then be refused by `decide_post`. Only a claim over a cap by itself is refused here: what is
    earned and held now may still change (a reversal, a gift given away) before it is posted.
    The refusal is the post's, worded with the member's account now (`state`; none: empty).
    """
    account = member_account(member)
    state = state or AccountState(account)
    if state.account != account:
        raise ValueError(f"state of {state.account} passed for claim of {member}")
    year = service_date.year
    if policy.yearly_earn_cap is not None and units > policy.yearly_earn_cap:
        earned = max(0, state.earned_by_year.get(year, 0))
        _check_yearly_cap(member, year, earned, units, policy)
    if policy.balance_cap is not None and units > policy.balance_cap:
        _check_credit_cap(replace(state, balance=max(0, state.balance)), units, policy)


def _check_debit(state: AccountState, units: int) -> None:
    # The bank's own accounts need no check, and so no row lock in the gateway (they would be
    # one hot row for the whole district): ISSUANCE may go below zero by design, and REDEMPTION
    # is only debited by reversing a redemption, at most once, so it holds at least that much.
    if state.account.kind in (AccountKind.ISSUANCE, AccountKind.REDEMPTION):
        return
    if state.balance < units:
        raise PointsError(
            "insufficient_balance",
            account=state.account.key,
            balance=_signed(state.balance),
            amount=_signed(units),
        )


# --- decide: earning claims ---------------------------------------------------------------


def decide_request_service(
    command: RequestService,
    member_claims: Iterable[Claim],
    policy: PointsPolicy,
    now: datetime,
    claim_id: str,
    *,
    member: AccountState | None = None,
) -> Decision:
    """A new PENDING claim for service hours, rounded by `policy.rounding`.

    `member_claims`: the member's claims that could collide (same service_ref or overlapping
    time); passing all of the member's claims is always correct. `member`: the member's
    account now, to word a refusal of a claim over a cap by itself (`_check_postable`).
    """
    _aware("now", now)
    _aware("started_at", command.started_at)
    _aware("ended_at", command.ended_at)
    _required("member", command.member)
    _required("community", command.community)
    _required("service_ref", command.service_ref)
    _check_operator(command.member, command.operator)
    if command.category not in policy.service_categories:
        raise PointsError("unknown_category", category=command.category)
    duration = command.ended_at - command.started_at
    if duration <= timedelta(0):
        raise PointsError("duration_invalid", field="started_at/ended_at")
    _check_window(command.ended_at, policy, now)
    minutes = _minutes(duration)
    if duration > timedelta(minutes=policy.max_service_minutes):
        raise PointsError("duration_too_long", max=policy.max_service_minutes, minutes=minutes)
    rule = policy.rounding
    units = rule.units_for(duration)
    if units == 0:
        raise PointsError(
            "duration_too_short", minutes=minutes, rule=rule.name_zh, rule_en=rule.name_en
        )
    _check_no_duplicate(
        command.member,
        EarnSource.SERVICE,
        command.service_ref,
        (command.started_at, command.ended_at),
        member_claims,
    )
    service_date = command.started_at.astimezone(policy.zone).date()
    _check_postable(command.member, service_date, units, member, policy)
    return Decision(
        claim=Claim(
            id=claim_id,
            member=command.member,
            community=command.community,
            source=EarnSource.SERVICE,
            category=command.category,
            units=units,
            # Every statement line shows a reason; without one, say what the help was.
            reason=command.reason.strip()
            or f"{command.category} {command.service_ref} ({minutes} min)",
            requested_by=command.operator,
            requested_at=now,
            service_date=service_date,
            ref=command.service_ref,
            started_at=command.started_at,
            ended_at=command.ended_at,
            minutes=minutes,
            rounding=rule,
            idempotency_key=command.idempotency_key,
        )
    )


def decide_request_alarm_credit(
    command: RequestAlarmCredit,
    member_claims: Iterable[Claim],
    policy: PointsPolicy,
    now: datetime,
    claim_id: str,
    *,
    member: AccountState | None = None,
) -> Decision:
    """A new PENDING claim for answering an alarm: acknowledged, on site, confirmed at resolution.

    The time counted runs from the acknowledgement (setting out) to the resolution, capped at
    `policy.alarm_max_minutes`, rounded by `policy.rounding`, and never below
    `policy.alarm_min_units`: the response itself is what earns, however short. `member`: as
    for `decide_request_service`.
    """
    _aware("now", now)
    _required("member", command.member)
    _required("community", command.community)
    _required("alert_id", command.alert_id)
    _check_operator(command.member, command.operator)
    missing = [
        name
        for name, value in (
            ("acknowledged_at", command.acknowledged_at),
            ("on_site_at", command.on_site_at),
            ("resolved_at", command.resolved_at),
        )
        if value is None
    ]
    if missing:
        raise PointsError("alarm_incomplete", missing=", ".join(missing))
    acknowledged, on_site, resolved = (
        command.acknowledged_at,
        command.on_site_at,
        command.resolved_at,
    )
    assert acknowledged is not None and on_site is not None and resolved is not None
    _aware("acknowledged_at", acknowledged)
    _aware("on_site_at", on_site)
    _aware("resolved_at", resolved)
    if not command.confirmed_by or not command.confirmed_by.strip():
        raise PointsError("alarm_not_confirmed")
    if _same_person(command.confirmed_by, command.member):
        raise PointsError("self_approval", person=command.member)
    if not acknowledged <= on_site <= resolved:
        raise PointsError("duration_invalid", field="acknowledged_at/on_site_at/resolved_at")
    _check_window(resolved, policy, now)
    duration = min(resolved - acknowledged, timedelta(minutes=policy.alarm_max_minutes))
    rule = policy.rounding
    units = max(rule.units_for(duration), policy.alarm_min_units)
    if units == 0:  # only when a station sets alarm_min_units = 0
        raise PointsError(
            "duration_too_short",
            minutes=_minutes(duration),
            rule=rule.name_zh,
            rule_en=rule.name_en,
        )
    _check_no_duplicate(
        command.member,
        EarnSource.ALARM,
        command.alert_id,
        (acknowledged, resolved),
        member_claims,
    )
    service_date = acknowledged.astimezone(policy.zone).date()
    _check_postable(command.member, service_date, units, member, policy)
    return Decision(
        claim=Claim(
            id=claim_id,
            member=command.member,
            community=command.community,
            source=EarnSource.ALARM,
            category="emergency",  # 助急
            units=units,
            reason=command.reason.strip() or f"alert {command.alert_id}",
            requested_by=command.operator,
            requested_at=now,
            service_date=service_date,
            ref=command.alert_id,
            started_at=acknowledged,
            ended_at=resolved,
            minutes=_minutes(duration),
            rounding=rule,
            idempotency_key=command.idempotency_key,
        )
    )


def decide_request_award(
    command: RequestAward,
    policy: PointsPolicy,
    now: datetime,
    claim_id: str,
    *,
    member: AccountState | None = None,
) -> Decision:
    """A new PENDING claim for a station award; it goes through both approvals like the rest.

    An award over a cap by itself is refused now, as posting would refuse it (`member`: as for
    `decide_request_service`)."""
    _aware("now", now)
    _required("member", command.member)
    _required("community", command.community)
    units = require_units(command.units)
    if command.operator.role is not OperatorRole.STAFF:
        raise PointsError("award_needs_staff")
    _check_operator(command.member, command.operator)
    reason = _reason(command.reason)
    service_date = now.astimezone(policy.zone).date()
    _check_postable(command.member, service_date, units, member, policy)
    return Decision(
        claim=Claim(
            id=claim_id,
            member=command.member,
            community=command.community,
            source=EarnSource.AWARD,
            category="award",
            units=units,
            reason=reason,
            requested_by=command.operator,
            requested_at=now,
            service_date=service_date,
            idempotency_key=command.idempotency_key,
        )
    )


def _concerned(claim: Claim) -> set[str]:
    """People who may not approve this claim: the earner and whoever entered it (as persons,
    `person_of`: the member approving through their own token is still the member)."""
    return {person_of(claim.member), person_of(claim.requested_by.person)}


def decide_verify(claim: Claim, command: Verify, policy: PointsPolicy, now: datetime) -> Decision:
    """社区核实录入: PENDING -> VERIFIED. The same verifier repeating it changes nothing."""
    _aware("now", now)
    _required("verifier", command.verifier)
    if (
        claim.status is ClaimStatus.VERIFIED
        and claim.verified is not None
        and claim.verified.by == command.verifier
    ):
        return Decision(claim=claim)
    if claim.status is not ClaimStatus.PENDING:
        raise PointsError("claim_not_pending", claim=claim.id, status=claim.status.value)
    if person_of(command.verifier) in _concerned(claim):
        raise PointsError("self_approval", person=command.verifier)
    approval = Approval(command.verifier, now, ApprovalLevel.COMMUNITY)
    return Decision(claim=replace(claim, status=ClaimStatus.VERIFIED, verified=approval))


def decide_post(
    claim: Claim,
    member: AccountState,
    command: Post,
    policy: PointsPolicy,
    now: datetime,
    transaction_id: str,
) -> Decision:
    """街道审核上传: VERIFIED -> POSTED, appending the EARN transaction (issuance -> member).

    Caps are checked here, against posted state, because only posting changes a balance.
    A repeat by the same auditor returns the claim alone (its transaction already exists).
    """
    _aware("now", now)
    _required("auditor", command.auditor)
    if claim.status is ClaimStatus.POSTED and claim.posted and claim.posted.by == command.auditor:
        return Decision(claim=claim)
    if claim.status is ClaimStatus.PENDING:
        raise PointsError("claim_not_verified", claim=claim.id, status=claim.status.value)
    if claim.status is not ClaimStatus.VERIFIED:
        raise PointsError("claim_closed", claim=claim.id, status=claim.status.value)
    assert claim.verified is not None
    if person_of(command.auditor) in _concerned(claim):
        raise PointsError("self_approval", person=command.auditor)
    # The person, not the spelling: whoever verified through their token cannot post the same
    # claim named on paper (`approver_id`), nor the other way round.
    if _same_person(command.auditor, claim.verified.by):
        raise PointsError(
            "same_approver",
            person=command.auditor,
            first="社区核实",
            first_en="verified it",
            second="街道审核",
            second_en="post it",
        )
    account = member_account(claim.member)
    if member.account != account:
        raise ValueError(f"state of {member.account} passed for claim of {claim.member}")
    year = claim.service_date.year
    earned = member.earned_by_year.get(year, 0)
    _check_yearly_cap(claim.member, year, earned, claim.units, policy)
    _check_credit_cap(member, claim.units, policy)
    posted = Approval(command.auditor, now, ApprovalLevel.SUBDISTRICT)
    transaction = Transaction(
        id=transaction_id,
        kind=TxnKind.EARN,
        entries=(Entry(ISSUANCE, -claim.units), Entry(account, claim.units)),
        at=now,
        community=claim.community,
        category=claim.category,
        reason=claim.reason,
        requested_by=claim.requested_by,
        member=claim.member,
        approvals=(claim.verified, posted),
        rounding=claim.rounding,
        idempotency_key=claim.idempotency_key,
        claim_id=claim.id,
        ref=claim.ref,
        service_date=claim.service_date,
    )
    return Decision(
        claim=replace(
            claim, status=ClaimStatus.POSTED, posted=posted, transaction_id=transaction_id
        ),
        transaction=transaction,
    )


def decide_refuse(claim: Claim, command: Refuse, policy: PointsPolicy, now: datetime) -> Decision:
    """Refuse a claim with a reason: the community while PENDING, the sub-district once VERIFIED."""
    _aware("now", now)
    _required("by", command.by)
    reason = _reason(command.reason)
    if (
        claim.status is ClaimStatus.REFUSED
        and claim.refusal is not None
        and (claim.refusal.by, claim.refusal.reason) == (command.by, reason)
    ):
        return Decision(claim=claim)
    if claim.status is ClaimStatus.PENDING:
        level = ApprovalLevel.COMMUNITY
    elif claim.status is ClaimStatus.VERIFIED:
        level = ApprovalLevel.SUBDISTRICT
        assert claim.verified is not None
        # Refusing at the sub-district level is the second pair of eyes: not the verifier.
        if _same_person(command.by, claim.verified.by):
            raise PointsError(
                "same_approver",
                person=command.by,
                first="社区核实",
                first_en="verified it",
                second="街道审核",
                second_en="audit it",
            )
    else:
        raise PointsError("claim_closed", claim=claim.id, status=claim.status.value)
    if _same_person(command.by, claim.member):
        raise PointsError("self_approval", person=command.by)
    refusal = Refusal(command.by, now, level, reason)
    return Decision(claim=replace(claim, status=ClaimStatus.REFUSED, refusal=refusal))


# --- decide: movements --------------------------------------------------------------------


def decide_gift(
    command: Gift,
    giver: AccountState,
    recipient: AccountState,
    policy: PointsPolicy,
    now: datetime,
    transaction_id: str,
) -> Decision:
    """转赠: posted points from a member to another member or a pool, effective at once."""
    _aware("now", now)
    _required("member", command.member)
    _required("community", command.community)
    units = require_units(command.units)
    _check_operator(command.member, command.operator)
    source = member_account(command.member)
    if command.to.kind not in (AccountKind.MEMBER, AccountKind.POOL):
        raise PointsError("invalid_recipient", account=command.to.key)
    if command.to == source:
        raise PointsError("self_gift")
    if giver.account != source or recipient.account != command.to:
        raise ValueError("account states do not match the gift's accounts")
    _check_debit(giver, units)
    _check_credit_cap(recipient, units, policy)
    return Decision(
        transaction=Transaction(
            id=transaction_id,
            kind=TxnKind.GIFT,
            entries=(Entry(source, -units), Entry(command.to, units)),
            at=now,
            community=command.community,
            category="gift_to_pool" if command.to.kind is AccountKind.POOL else "gift",
            reason=command.reason.strip() or f"gift to {command.to.key}",
            requested_by=command.operator,
            member=command.member,
            idempotency_key=command.idempotency_key,
        )
    )


def decide_redeem(
    command: Redeem,
    payer: AccountState,
    paid_by: str | None,
    policy: PointsPolicy,
    now: datetime,
    transaction_id: str,
) -> Decision:
    """兑换: pay service order `order_ref` in points, effective at once.

    `paid_by`: the id of a live (unreversed) redemption of the same order, if any.
    A member pays only for themself; a pool pays for an eligible elder with a second staff
    member's approval.
    """
    _aware("now", now)
    _required("beneficiary", command.beneficiary)
    _required("community", command.community)
    _required("order_ref", command.order_ref)
    units = require_units(command.units)
    approvals: tuple[Approval, ...] = ()
    if command.payer.kind is AccountKind.MEMBER:
        _check_operator(command.payer.name, command.operator)
        if command.beneficiary != command.payer.name:
            raise PointsError("redeem_for_other", beneficiary=command.beneficiary)
    elif command.payer.kind is AccountKind.POOL:
        _required("operator", command.operator.person)
        if command.operator.role is not OperatorRole.STAFF:
            raise PointsError("operator_invalid", detail="a pool is spent by staff")
        if not command.approved_by or not command.approved_by.strip():
            raise PointsError("pool_needs_approval")
        if _same_person(command.approved_by, command.operator.person):
            raise PointsError(
                "same_approver",
                person=command.approved_by,
                first="申请",
                first_en="requested it",
                second="批准",
                second_en="approve it",
            )
        if _same_person(command.approved_by, command.beneficiary):
            raise PointsError("self_approval", person=command.approved_by)
        approvals = (Approval(command.approved_by, now, ApprovalLevel.STATION),)
    else:
        raise PointsError("invalid_payer", account=command.payer.key)
    if command.category not in policy.service_categories:
        raise PointsError("unknown_category", category=command.category)
    today = now.astimezone(policy.zone).date()
    if not policy.may_redeem(command.beneficiary_facts, today):
        raise PointsError(
            "redeem_not_eligible",
            member=command.beneficiary,
            age=policy.redeem_min_age,
            conditions=", ".join(sorted(policy.redeem_conditions)) or "-",
        )
    if paid_by is not None:
        raise PointsError("order_already_paid", order=command.order_ref, transaction=paid_by)
    if payer.account != command.payer:
        raise ValueError("account state does not match the payer")
    _check_debit(payer, units)
    return Decision(
        transaction=Transaction(
            id=transaction_id,
            kind=TxnKind.REDEEM,
            entries=(Entry(command.payer, -units), Entry(REDEMPTION, units)),
            at=now,
            community=command.community,
            category=command.category,
            reason=command.reason.strip() or f"service order {command.order_ref}",
            requested_by=command.operator,
            member=command.payer.name if command.payer.kind is AccountKind.MEMBER else None,
            approvals=approvals,
            idempotency_key=command.idempotency_key,
            ref=command.order_ref,
            beneficiary=command.beneficiary,
        )
    )


def order_price_units(order_id: str, unit: str, quantity: int, elder_share_fen: int) -> int:
    """What an agreed service order costs in points, in units: its hours, one point each.

    Seed 004: one hour of help earns one point, redeemed for future service; no money value of
    a point is set anywhere, so a point buys one hour of service, as the time bank's own
    measure. It pays the elder's own share of that hour, never the subsidy (public money
    already pays that). So: an order counted in hours (`unit == "hour"`) costs `quantity`
    points; an order counted per visit or meal has no hours to buy and a fully subsidised one
    (`elder_share_fen == 0`) nothing for points to pay: both refused (PointsError).
    """
    if elder_share_fen <= 0:
        raise PointsError("order_fully_subsidised", order=order_id)
    if unit != "hour":
        raise PointsError("order_not_in_hours", order=order_id, unit=unit)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ValueError(f"order {order_id}: quantity {quantity!r}")
    return quantity * UNITS_PER_POINT


def check_order_price(command: Redeem, price_units: int) -> None:
    """A redemption for an order pays exactly its price in points (`order_price_units`):
    more would take points for nothing, less would leave the order marked paid for less."""
    if command.units != price_units:
        raise PointsError(
            "points_not_order_price",
            order=command.order_ref,
            points=format_points(command.units),
            price=format_points(price_units),
        )


def decide_reverse(
    command: Reverse,
    original: Transaction,
    reversed_by: str | None,
    states: Mapping[Account, AccountState],
    claim: Claim | None,
    policy: PointsPolicy,
    now: datetime,
    transaction_id: str,
) -> Decision:
    """冲正: append the negated entries of `original`, with a reason and an approver.

    `reversed_by`: the id of an existing reversal of `original`, if any. `states`: the
    accounts `original` touches. `claim`: the claim an EARN came from (it becomes REVERSED).
    Refused when it would take back points already spent (no account but issuance below zero)
    or push a member past the balance cap.
    """
    _aware("now", now)
    _required("requested_by", command.requested_by)
    _required("approved_by", command.approved_by)
    reason = _reason(command.reason)
    if original.kind in (TxnKind.REVERSAL, TxnKind.REFUND):
        # Taking a refund back would charge the payer again for an order that was cancelled.
        raise PointsError("cannot_reverse_reversal")
    if reversed_by is not None:
        raise PointsError("already_reversed", transaction=original.id, reversal=reversed_by)
    if _same_person(command.approved_by, command.requested_by):
        raise PointsError(
            "same_approver",
            person=command.approved_by,
            first="申请冲正",
            first_en="requested the reversal",
            second="批准",
            second_en="approve it",
        )
    # Nobody approves a correction of their own account. Whether the approver holds the right
    # role (the sub-district for an earning, say) is the gateway's check, not a ledger rule.
    owners = {e.account.name for e in original.entries if e.account.kind is AccountKind.MEMBER}
    if any(_same_person(command.approved_by, p) for p in owners | {original.beneficiary}):
        raise PointsError("self_approval", person=command.approved_by)
    entries = tuple(Entry(e.account, -e.units) for e in original.entries)
    for entry in entries:
        state = _state(states, entry.account)
        if entry.units < 0:
            _check_debit(state, -entry.units)
        else:
            _check_credit_cap(state, entry.units, policy)
    transaction = Transaction(
        id=transaction_id,
        kind=TxnKind.REVERSAL,
        entries=entries,
        at=now,
        community=original.community,
        category=original.category,
        reason=reason,
        requested_by=Operator(command.requested_by, OperatorRole.STAFF),
        member=original.member,
        approvals=(Approval(command.approved_by, now, command.level),),
        rounding=original.rounding,
        idempotency_key=command.idempotency_key,
        claim_id=original.claim_id,
        ref=original.ref,
        reverses=original.id,
        service_date=original.service_date,
        beneficiary=original.beneficiary,
    )
    new_claim = None
    if claim is not None:
        if claim.transaction_id != original.id:
            raise ValueError(f"claim {claim.id} does not belong to {original.id}")
        new_claim = replace(claim, status=ClaimStatus.REVERSED, reversal_id=transaction_id)
    return Decision(claim=new_claim, transaction=transaction)


def decide_refund(
    command: Refund,
    original: Transaction,
    reversed_by: str | None,
    now: datetime,
    transaction_id: str,
) -> Decision:
    """退还: the negated lines of redemption `original`, whose service order was cancelled.

    `reversed_by`: the id of a refund or reversal of `original` already made, if any (then
    the points are back already: refused, so they never come back twice). Unlike a reversal it
    needs no second approver (it only returns points to where they came from) and ignores the
    balance cap: the points were the payer's, counted under the cap when earned, and refusing
    would either block the elder's cancel or lose their points.
    """
    _aware("now", now)
    _required("requested_by", command.requested_by.person)
    reason = _reason(command.reason)
    if original.kind is not TxnKind.REDEEM:
        raise ValueError(f"{original.id} is a {original.kind}, not a redemption")  # a bug
    if reversed_by is not None:
        raise PointsError("already_reversed", transaction=original.id, reversal=reversed_by)
    return Decision(
        transaction=Transaction(
            id=transaction_id,
            kind=TxnKind.REFUND,
            entries=tuple(Entry(e.account, -e.units) for e in original.entries),
            at=now,
            community=original.community,
            category=original.category,
            reason=reason,
            requested_by=command.requested_by,
            member=original.member,
            ref=original.ref,
            reverses=original.id,
            beneficiary=original.beneficiary,
        )
    )


# --- reading the ledger: balances, statements, reports ------------------------------------


def balances_from(transactions: Iterable[Transaction]) -> dict[Account, int]:
    """Every account's balance recomputed from the entries (accounts at zero left out)."""
    totals: dict[Account, int] = defaultdict(int)
    for txn in transactions:
        for entry in txn.entries:
            totals[entry.account] += entry.units
    return {a: u for a, u in totals.items() if u}


def earned_from(transactions: Iterable[Transaction]) -> dict[tuple[str, int], int]:
    """Units earned per (member, local year of the help), net of reversals."""
    totals: dict[tuple[str, int], int] = defaultdict(int)
    for txn in transactions:
        if txn.member is None or txn.service_date is None:
            continue
        units = txn.units_for(member_account(txn.member))
        # An EARN and the reversal of one carry the claim id; gifts and redemptions do not.
        if txn.claim_id is not None:
            totals[(txn.member, txn.service_date.year)] += units
    return {k: u for k, u in totals.items() if u}


@dataclass(frozen=True, slots=True)
class StatementLine:
    transaction_id: str
    at: datetime
    kind: TxnKind
    category: str
    reason: str
    units: int  # signed: what this line added to the account
    balance_after: int
    counterparties: tuple[Account, ...]
    requested_by: Operator
    approvals: tuple[Approval, ...]
    rounding: RoundingRule | None
    ref: str | None
    reverses: str | None


@dataclass(frozen=True, slots=True)
class Statement:
    """An account's posted lines with the balance after each, plus what awaits approval."""

    account: Account
    opening_balance: int
    lines: tuple[StatementLine, ...]
    closing_balance: int
    pending: tuple[Claim, ...]  # PENDING or VERIFIED: shown, not counted
    refused: tuple[Claim, ...]  # so a member can read why

    @property
    def pending_units(self) -> int:
        return sum(c.units for c in self.pending)


def statement_of(
    account: Account,
    transactions: Iterable[Transaction],
    claims: Iterable[Claim] = (),
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Statement:
    """The statement of `account` over [since, until), transactions in ledger order."""
    balance = 0
    opening = 0
    lines: list[StatementLine] = []
    for txn in transactions:
        units = txn.units_for(account)
        if not units:
            continue
        if until is not None and txn.at >= until:
            continue  # not `break`: ledger order follows `now`, which nothing forces to grow
        balance += units
        if since is not None and txn.at < since:
            opening = balance
            continue
        lines.append(
            StatementLine(
                transaction_id=txn.id,
                at=txn.at,
                kind=txn.kind,
                category=txn.category,
                reason=txn.reason,
                units=units,
                balance_after=balance,
                counterparties=tuple(a for a in txn.accounts if a != account),
                requested_by=txn.requested_by,
                approvals=txn.approvals,
                rounding=txn.rounding,
                ref=txn.ref,
                reverses=txn.reverses,
            )
        )
    mine = [c for c in claims if account.kind is AccountKind.MEMBER and c.member == account.name]
    return Statement(
        account=account,
        opening_balance=opening,
        lines=tuple(lines),
        closing_balance=balance,
        pending=tuple(c for c in mine if c.status in (ClaimStatus.PENDING, ClaimStatus.VERIFIED)),
        refused=tuple(c for c in mine if c.status is ClaimStatus.REFUSED),
    )


@dataclass(frozen=True, slots=True)
class ReportRow:
    community: str
    kind: TxnKind
    category: str
    transactions: int
    members: int  # distinct members concerned (earners, givers, payers or beneficiaries)
    units: int  # points moved, always positive (a reversal's row counts what it took back)


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    year: int
    month: int
    rows: tuple[ReportRow, ...]

    def total(self, community: str | None = None, kind: TxnKind | None = None) -> int:
        return sum(
            r.units
            for r in self.rows
            if (community is None or r.community == community) and (kind is None or r.kind == kind)
        )


def monthly_report_of(
    transactions: Iterable[Transaction], year: int, month: int, policy: PointsPolicy
) -> MonthlyReport:
    """The station's monthly report: posted movements by community, kind and category.

    A transaction belongs to the local (policy.timezone) month in which it took effect.
    """
    zone = policy.zone
    groups: dict[tuple[str, TxnKind, str], tuple[int, set[str], int]] = {}
    for txn in transactions:
        local = txn.at.astimezone(zone)
        if (local.year, local.month) != (year, month):
            continue
        key = (txn.community, txn.kind, txn.category)
        count, members, units = groups.get(key, (0, set(), 0))
        person = txn.beneficiary if txn.kind in (TxnKind.REDEEM, TxnKind.REFUND) else txn.member
        if person is not None:
            members = members | {person}
        moved = sum(e.units for e in txn.entries if e.units > 0)
        groups[key] = (count + 1, members, units + moved)
    rows = tuple(
        ReportRow(community, kind, category, count, len(members), units)
        for (community, kind, category), (count, members, units) in sorted(groups.items())
    )
    return MonthlyReport(year, month, rows)


# --- the in-memory ledger -----------------------------------------------------------------


class Ledger:
    """An in-memory time bank applying commands through the pure `decide_*` functions.

    Each method decides first (which may raise PointsError and then changes nothing) and only
    then applies the decision, which cannot fail. The gateway does the same in one DB
    transaction with the involved accounts' rows locked.
    """

    def __init__(self, policy: PointsPolicy | None = None) -> None:
        self.policy = policy or PointsPolicy()
        self._transactions: list[Transaction] = []
        self._by_id: dict[str, Transaction] = {}
        self._claims: dict[str, Claim] = {}
        self._balances: dict[Account, int] = defaultdict(int)
        self._earned: dict[tuple[str, int], int] = defaultdict(int)
        self._reversed_by: dict[str, str] = {}
        self._paid_orders: dict[str, str] = {}
        self._idempotency: dict[str, IdempotencyRecord] = {}
        self._next_claim = 1
        self._next_txn = 1

    # reading

    @property
    def transactions(self) -> tuple[Transaction, ...]:
        return tuple(self._transactions)

    @property
    def claims(self) -> tuple[Claim, ...]:
        return tuple(self._claims.values())

    def claim(self, claim_id: str) -> Claim:
        try:
            return self._claims[claim_id]
        except KeyError:
            raise PointsError("unknown_claim", claim=claim_id) from None

    def transaction(self, transaction_id: str) -> Transaction:
        try:
            return self._by_id[transaction_id]
        except KeyError:
            raise PointsError("unknown_transaction", transaction=transaction_id) from None

    def balance(self, account: Account | str) -> int:
        """Posted balance; a bare string is a member id."""
        return self._balances.get(_account(account), 0)

    def balances(self) -> dict[Account, int]:
        """The running balances (accounts at zero left out)."""
        return {a: u for a, u in self._balances.items() if u}

    def recompute(self) -> dict[Account, int]:
        """Balances recomputed from the entries alone; always equal to `balances()`."""
        return balances_from(self._transactions)

    def earned(self, member: str, year: int) -> int:
        return self._earned.get((member, year), 0)

    def account_state(self, account: Account) -> AccountState:
        earned: dict[int, int] = {}
        if account.kind is AccountKind.MEMBER:
            earned = {y: u for (m, y), u in self._earned.items() if m == account.name}
        return AccountState(account, self._balances.get(account, 0), earned)

    def problems(self) -> list[str]:
        """Broken invariants, for tests and a nightly audit: [] when all is well."""
        found: list[str] = []
        running = self.balances()
        if sum(running.values()) != 0:
            found.append(f"balances do not sum to zero: {sum(running.values())}")
        if running != self.recompute():
            found.append("running balances differ from the recomputation")
        if {k: v for k, v in self._earned.items() if v} != earned_from(self._transactions):
            found.append("running yearly earnings differ from the recomputation")
        for account, units in running.items():
            if units < 0 and account.kind is not AccountKind.ISSUANCE:
                found.append(f"{account} is negative: {units}")
        for txn in self._transactions:
            if sum(e.units for e in txn.entries) != 0:
                found.append(f"{txn.id} does not sum to zero")
        return found

    def statement(
        self,
        account: Account | str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Statement:
        return statement_of(
            _account(account), self._transactions, self._claims.values(), since=since, until=until
        )

    def monthly_report(self, year: int, month: int) -> MonthlyReport:
        return monthly_report_of(self._transactions, year, month, self.policy)

    # commands

    def execute(self, command: Command, now: datetime) -> Claim | Transaction:
        """Apply any command; the result is the claim or the transaction it concerns."""
        match command:
            case RequestService() | RequestAlarmCredit() | RequestAward():
                return self.request(command, now)
            case Verify():
                return self.verify(command, now)
            case Post():
                return self.post(command, now)
            case Refuse():
                return self.refuse(command, now)
            case Gift():
                return self.gift(command, now)
            case Redeem():
                return self.redeem(command, now)
            case Reverse():
                return self.reverse(command, now)
            case Refund():
                return self.refund(command, now)
        raise TypeError(f"not a points command: {command!r}")  # pragma: no cover

    def request(
        self, command: RequestService | RequestAlarmCredit | RequestAward, now: datetime
    ) -> Claim:
        """A new earning claim (PENDING); a retry with the same key returns the same claim."""
        record = self._replay(command)
        if record is not None:
            assert record.claim_id is not None
            return self._claims[record.claim_id]
        claim_id = f"C{self._next_claim}"
        member_claims = [c for c in self._claims.values() if c.member == command.member]
        state = self.account_state(member_account(command.member))
        if isinstance(command, RequestService):
            decision = decide_request_service(
                command, member_claims, self.policy, now, claim_id, member=state
            )
        elif isinstance(command, RequestAlarmCredit):
            decision = decide_request_alarm_credit(
                command, member_claims, self.policy, now, claim_id, member=state
            )
        else:
            decision = decide_request_award(command, self.policy, now, claim_id, member=state)
        self._next_claim += 1
        self._apply(decision, command)
        assert decision.claim is not None
        return decision.claim

    def verify(self, command: Verify, now: datetime) -> Claim:
        decision = decide_verify(self.claim(command.claim_id), command, self.policy, now)
        self._apply(decision)
        assert decision.claim is not None
        return decision.claim

    def post(self, command: Post, now: datetime) -> Transaction:
        claim = self.claim(command.claim_id)
        state = self.account_state(member_account(claim.member))
        decision = decide_post(claim, state, command, self.policy, now, self._txn_id())
        self._apply(decision)
        assert decision.claim is not None and decision.claim.transaction_id is not None
        return self._by_id[decision.claim.transaction_id]

    def refuse(self, command: Refuse, now: datetime) -> Claim:
        decision = decide_refuse(self.claim(command.claim_id), command, self.policy, now)
        self._apply(decision)
        assert decision.claim is not None
        return decision.claim

    def gift(self, command: Gift, now: datetime) -> Transaction:
        record = self._replay(command)
        if record is not None:
            assert record.transaction_id is not None
            return self._by_id[record.transaction_id]
        decision = decide_gift(
            command,
            self.account_state(member_account(command.member)),
            self.account_state(command.to),
            self.policy,
            now,
            self._txn_id(),
        )
        return self._apply_movement(decision, command)

    def redeem(self, command: Redeem, now: datetime) -> Transaction:
        record = self._replay(command)
        if record is not None:
            assert record.transaction_id is not None
            return self._by_id[record.transaction_id]
        decision = decide_redeem(
            command,
            self.account_state(command.payer),
            self._paid_orders.get(command.order_ref),
            self.policy,
            now,
            self._txn_id(),
        )
        return self._apply_movement(decision, command)

    def reverse(self, command: Reverse, now: datetime) -> Transaction:
        record = self._replay(command)
        if record is not None:
            assert record.transaction_id is not None
            return self._by_id[record.transaction_id]
        original = self.transaction(command.transaction_id)
        states = {a: self.account_state(a) for a in original.accounts}
        claim = self._claims.get(original.claim_id) if original.claim_id else None
        if original.kind is not TxnKind.EARN:
            claim = None
        decision = decide_reverse(
            command,
            original,
            self._reversed_by.get(original.id),
            states,
            claim,
            self.policy,
            now,
            self._txn_id(),
        )
        return self._apply_movement(decision, command)

    def refund(self, command: Refund, now: datetime) -> Transaction:
        original = self.transaction(command.transaction_id)
        decision = decide_refund(
            command, original, self._reversed_by.get(original.id), now, self._txn_id()
        )
        self._apply(decision)
        assert decision.transaction is not None
        return decision.transaction

    # internals

    def _txn_id(self) -> str:
        return f"T{self._next_txn}"

    def _replay(self, command: KeyedCommand) -> IdempotencyRecord | None:
        key = command.idempotency_key
        return replay_of(command, self._idempotency.get(key) if key is not None else None)

    def _apply_movement(self, decision: Decision, command: KeyedCommand) -> Transaction:
        self._apply(decision, command)
        assert decision.transaction is not None
        return decision.transaction

    def _apply(self, decision: Decision, command: KeyedCommand | None = None) -> None:
        # Nothing here may raise: every check happened in the decide function.
        if decision.claim is not None:
            self._claims[decision.claim.id] = decision.claim
        txn = decision.transaction
        if txn is not None:
            self._next_txn += 1
            self._transactions.append(txn)
            self._by_id[txn.id] = txn
            for entry in txn.entries:
                self._balances[entry.account] += entry.units
            if txn.member is not None and txn.service_date is not None and txn.claim_id:
                # Mirrors earned_from: an EARN adds, its reversal (same claim id) takes back.
                own = txn.units_for(member_account(txn.member))
                self._earned[(txn.member, txn.service_date.year)] += own
            if txn.kind is TxnKind.REDEEM and txn.ref is not None:
                self._paid_orders[txn.ref] = txn.id
            if txn.reverses is not None:
                self._reversed_by[txn.reverses] = txn.id
                original = self._by_id[txn.reverses]
                # A reversed redemption frees its order to be paid again (or otherwise).
                if original.ref is not None and self._paid_orders.get(original.ref) == original.id:
                    del self._paid_orders[original.ref]
        if command is not None and command.idempotency_key is not None:
            self._idempotency[command.idempotency_key] = IdempotencyRecord(
                key=command.idempotency_key,
                fingerprint=fingerprint(command),
                claim_id=decision.claim.id if decision.claim is not None else None,
                transaction_id=txn.id if txn is not None else None,
            )


def _account(account: Account | str) -> Account:
    return account if isinstance(account, Account) else member_account(account)
