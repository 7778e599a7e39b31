"""HTTP API of the mutual-aid points ledger (互助养老积分 / 时间银行, issue 6): /api/v1/points.

Included by gateway/api.py's create_app; same conventions as gateway/api.py, whose auth
dependency and helpers it uses: a bearer token on every call, bodies checked before the
database (unknown fields refused), 4xx with a JSON `detail` and never a 500, 404 for unknown
ids, 409 for conflicts, RFC 3339 times with an offset in and out. The rules are the domain's
(care/points.py), the storage and its locking gateway/points_store.py.

- Amounts: `points` in, as text ("1.5") or a JSON number (1.5, 2); stored and answered as integer
  `units` of half a point, with `points` as text beside them. Zero, negatives, anything finer
  than 0.5 and absurd sizes are refused with 422 and the domain's code.
- A refusal of the ledger's rules answers `detail: {"code", "en", "zh"}` (the code is stable,
  see care/points_rules.py ERROR_MESSAGES): 404 unknown claim/transaction/member, 409 a state
  conflict (already paid, claimed, reversed, posted...), 403 four-eyes violations, else 422.
- `Idempotency-Key` (1-100 characters) is REQUIRED on every POST that creates a claim or moves
  points (claims, post, gifts, redemptions, reversals) and accepted on verify and refuse. The
  same key and the same request answer the first result again (header `Idempotent-Replayed:
  true`), with no second effect; the same key with another request is refused (422).
- Who: the caller's token label (`api:<name>`) is the actor of every step. A member who cannot
  use a phone is acted for by staff (`operator.role = staff`, the default: the caller) or by a
  paired relative (`operator.role = family`, `operator.person_id`: a family responder paired with
  the elder); `self` is the member on their own device. Approvals are the caller's; one signed
  on paper by a staff member and entered at the desk names them (`approver_id`, a staff
  responder), and the audit log keeps the caller who entered it (GET /points/audit). A caller
  whose token or session acts for a person approves and operates as that person
  (`responder:<id>`, as `approver_id` names one): four eyes count people, so nobody approves
  their own points, nor verifies and posts one claim under two names (403).
- Redemptions name a catalogue service (`service_code`; `category` must be its category) and
  optionally the service order paid (`order_id`: the beneficiary's, agreed for that service,
  not cancelled); anything else is refused with 422 before any points move, as is a retired
  service without an order (an order agreed before the retirement is still served and paid).
  Cancelling a paid order refunds its points to the payer (`kind: refund`, once).
- A station's staff see their station's members only (and those of no station): another
  station's account, claim or transaction answers as an unknown one, lists leave them out, and
  a body naming such a member, alert, order or approver is refused as naming nobody (see
  "station scoping" below).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from pydantic import BaseModel, BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError
from sqlalchemy import Connection, case, func, or_, select
from sqlalchemy.exc import IntegrityError

from care.points import (
    PERSON_PREFIX,
    Account,
    AccountKind,
    Claim,
    Gift,
    Operator,
    OperatorRole,
    Post,
    Redeem,
    Refuse,
    RequestAlarmCredit,
    RequestAward,
    RequestService,
    Reverse,
    Statement,
    Transaction,
    TxnKind,
    Verify,
    member_account,
    pool_account,
)
from care.points_rules import (
    SERVICE_CATEGORIES,
    PointsError,
    PointsPolicy,
    RoundingRule,
    format_points,
    parse_points,
)
from gateway.api import (
    MAX_BODY_BYTES,
    PrincipalDep,
    RefId,
    RuntimeDep,
    _In,
    _invalid,
    _ms,
    _ms_req,
    _one_line,
    _reading,
    _usable_path_id,
    authenticate,
    caller_scope,
    in_scope,
)
from gateway.api_time import Instant, Month, QueryInstant, query_instant
from gateway.auth import Principal, Role
from gateway.care_store import Scope as CareScope
from gateway.care_store import scope_for
from gateway.clock import from_ms, to_ms
from gateway.points_store import Outcome, PointsStore, StoreError, account_of
from gateway.runtime import Runtime
from gateway.tables import alerts, responders
from gateway.tables_points import (
    points_accounts,
    points_audit,
    points_claims,
    points_entries,
    points_transactions,
)
from gateway.tables_services import svc_orders

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# --- errors -------------------------------------------------------------------------------------

_STATUS: dict[str, int] = {
    "unknown_claim": 404,
    "unknown_transaction": 404,
    "duplicate_claim": 409,
    "overlapping_claim": 409,
    "order_already_paid": 409,
    "already_reversed": 409,
    "claim_not_pending": 409,
    "claim_not_verified": 409,
    "claim_closed": 409,
    "self_approval": 403,
    "same_approver": 403,
    "award_needs_staff": 403,
}


def _refused(err: PointsError | StoreError) -> HTTPException:
    code = err.code
    status_code = err.status if isinstance(err, StoreError) else _STATUS.get(code, 422)
    return HTTPException(status_code, detail={"code": code, "en": err.en, "zh": err.zh})


def _refuse(code: str, en: str, zh: str, status_code: int = 422) -> HTTPException:
    return HTTPException(status_code, detail={"code": code, "en": en, "zh": zh})


# --- input types --------------------------------------------------------------------------------


def _points(value: Any) -> int:
    """Points as text or a JSON number -> integer units, refused with the domain's code."""
    if isinstance(value, float):
        # JSON has no decimals, only binary floats: every multiple of 0.5 a person means is
        # exact in one, and repr gives back the shortest text ("1.5"), which parse_points judges
        # like typed text (0.3 is refused as finer than 0.5, never rounded).
        value = repr(value)
    try:
        return parse_points(value)
    except PointsError as err:
        raise PydanticCustomError(err.code, "{en} ({zh})", {"en": err.en, "zh": err.zh}) from None


PointsIn = Annotated[
    int,
    BeforeValidator(_points),
    Field(
        description='points, as text ("1.5") or a number: positive, in steps of 0.5',
        examples=["1.5"],
    ),
]


Reason = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=500),
    BeforeValidator(lambda v: _one_line(v) if isinstance(v, str) else v),
]
OptReason = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, max_length=500),
    BeforeValidator(lambda v: _one_line(v) if isinstance(v, str) else v),
]
Community = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=100),
    BeforeValidator(lambda v: _one_line(v) if isinstance(v, str) else v),
    Field(examples=["幸福里社区"]),
]
Ref = Annotated[
    str,
    StringConstraints(
        strict=True,
        strip_whitespace=True,
        min_length=1,
        max_length=120,
        pattern=r"^[^\x00-\x1f\x7f]+$",
    ),
]
ServiceCode = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$"),
    Field(description="the catalogue service paid for", examples=["bathing-home"]),
]
Category = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=32),
    Field(description=f"one of: {', '.join(sorted(SERVICE_CATEGORIES))}", examples=["visit"]),
]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        pattern=r"^[\x21-\x7e]+$",
        description="a unique key per request (a UUID): a retry with the same key has effect "
        "once and answers the same result",
    ),
]
OptIdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        pattern=r"^[\x21-\x7e]+$",
        description="optional: verify and refuse are idempotent by nature",
    ),
]
Recipient = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.\-:]+$"),
    Field(
        description='a member id, or "pool:hardship" (the pool for elders in hardship)',
        examples=["pool:hardship"],
    ),
]


class OperatorIn(_In):
    role: OperatorRole = Field(
        OperatorRole.STAFF,
        description="self: the member on their own device; staff: the caller acts for the "
        "member; family: a paired relative (person_id) acts for the member",
    )
    person_id: RefId | None = Field(
        None, description="family only: the relative's responder id (paired with the elder)"
    )


class AccountOpen(_In):
    member_id: RefId = Field(description="a responder's or an elder's id")
    community: Community
    birth_date: date | None = Field(
        None, description="for a member who is not an elder: decides whether they may redeem"
    )
    conditions: Annotated[
        list[
            Literal[
                "dependent",
                "partly_dependent",
                "lives_alone",
                "empty_nest",
                "dibao",
                "tekun",
                "sanwu",
                "wubao",
                "special_care",
            ]
        ],
        Field(max_length=9),
    ] = Field(
        default_factory=list, description="care conditions that allow redeeming (e.g. dependent)"
    )


class ServiceClaimIn(_In):
    member_id: RefId
    category: Category
    started_at: Instant
    ended_at: Instant
    service_ref: Ref = Field(description="the service record or order the help belongs to")
    community: Community | None = Field(None, description="default: the member's community")
    reason: OptReason = ""
    operator: OperatorIn = Field(
        default_factory=lambda: OperatorIn(role=OperatorRole.STAFF, person_id=None)
    )


class AlarmClaimIn(_In):
    member_id: RefId = Field(description="the responder who answered the alarm")
    alert_id: RefId
    community: Community | None = Field(None, description="default: the member's community")
    reason: OptReason = ""
    operator: OperatorIn = Field(
        default_factory=lambda: OperatorIn(role=OperatorRole.STAFF, person_id=None)
    )


class AwardClaimIn(_In):
    member_id: RefId
    points: PointsIn
    reason: Reason = Field(examples=["参加急救培训 first-aid training attended"])
    community: Community | None = Field(None, description="default: the member's community")


class ApproveIn(_In):
    approver_id: RefId | None = Field(
        None,
        description="a staff responder who signed the approval on paper, entered by the caller; "
        "default: the caller",
    )


class RefuseIn(ApproveIn):
    reason: Reason


class GiftIn(_In):
    from_member_id: RefId
    to: Recipient
    points: PointsIn
    reason: OptReason = ""
    operator: OperatorIn = Field(
        default_factory=lambda: OperatorIn(role=OperatorRole.STAFF, person_id=None)
    )


class RedeemIn(_In):
    payer: Recipient = Field(description='the member paying, or "pool:hardship"')
    beneficiary_id: RefId | None = Field(
        None,
        description="the elder the service is for; default (and required for a member "
        "paying) the payer",
    )
    points: PointsIn
    service_code: ServiceCode
    order_id: Ref | None = Field(None, description="the service order paid, if there is one")
    category: Category
    reason: OptReason = ""
    operator: OperatorIn = Field(
        default_factory=lambda: OperatorIn(role=OperatorRole.STAFF, person_id=None)
    )
    requested_by: RefId | None = Field(
        None,
        description="pool only: the staff responder who asked; the caller approves (a second "
        "pair of eyes)",
    )


class ReverseIn(_In):
    transaction_id: RefId
    reason: Reason
    requested_by: RefId = Field(description="the staff responder who asked for the correction")


# --- output -------------------------------------------------------------------------------------


class RoundingPublic(BaseModel):
    code: str
    name_zh: str
    name_en: str
    description_zh: str
    description_en: str


class ApprovalPublic(BaseModel):
    by: str
    at: str
    level: str = Field(description="community (社区核实), subdistrict (街道审核) or station")


class ClaimPublic(BaseModel):
    id: str
    member_id: str
    community: str
    source: str = Field(description="service, alarm or award")
    category: str
    points: str
    units: int = Field(description="half-points")
    reason: str
    status: str = Field(description="pending, verified, posted, refused or reversed")
    requested_by: str
    operator_role: str
    requested_at: str
    service_date: date
    ref: str | None
    started_at: str | None
    ended_at: str | None
    minutes: int | None = Field(description="the duration counted, before rounding")
    rounding: RoundingPublic | None
    verified: ApprovalPublic | None
    posted: ApprovalPublic | None
    refused: ApprovalPublic | None
    refusal_reason: str | None
    transaction_id: str | None
    reversal_id: str | None


class EntryPublic(BaseModel):
    account: str
    units: int
    points: str


class TransactionPublic(BaseModel):
    id: str
    kind: str = Field(
        description="earn, gift, redeem, reversal or refund (a cancelled order's points back)"
    )
    at: str
    community: str
    category: str
    reason: str
    member_id: str | None
    beneficiary_id: str | None
    requested_by: str
    operator_role: str
    approvals: list[ApprovalPublic]
    rounding: RoundingPublic | None
    claim_id: str | None
    ref: str | None = Field(description="the service order, record or alert")
    service_code: str | None
    reverses: str | None
    service_date: date | None
    entries: list[EntryPublic] = Field(description="the legs; they sum to zero")


class ClaimResult(BaseModel):
    claim: ClaimPublic
    transaction: TransactionPublic | None = None


class ReversalResult(BaseModel):
    transaction: TransactionPublic
    claim: ClaimPublic | None = None


class AccountPublic(BaseModel):
    key: str
    kind: str
    member_id: str | None
    member_type: str | None = Field(description="responder or elder")
    community: str | None
    balance: str = Field(description="posted points")
    balance_units: int
    birth_date: date | None
    conditions: list[str]
    created_at: str | None


class StatementLinePublic(BaseModel):
    transaction_id: str
    at: str
    kind: str
    category: str
    reason: str
    points: str = Field(description="signed: what this line added to the account")
    units: int
    balance_after: str
    balance_after_units: int
    counterparties: list[str]
    requested_by: str
    operator_role: str
    approvals: list[ApprovalPublic]
    rounding: str | None
    ref: str | None
    reverses: str | None


class StatementPublic(BaseModel):
    account: str
    opening_balance: str
    closing_balance: str
    closing_balance_units: int
    lines: list[StatementLinePublic]
    pending_points: str = Field(description="awaiting approval: shown, not counted")
    pending: list[ClaimPublic]
    refused: list[ClaimPublic]


class ReportRowPublic(BaseModel):
    community: str
    kind: str
    category: str
    transactions: int
    members: int
    points: str
    units: int


class MonthlyReportPublic(BaseModel):
    month: str
    rows: list[ReportRowPublic]
    totals: dict[str, str] = Field(description="points moved by kind")


class AuditPublic(BaseModel):
    id: int
    at: str
    action: str
    member_id: str | None
    operator_role: str
    operator: str = Field(description="the real person who acted")
    actor: str = Field(description="the API caller it came through")
    claim_id: str | None
    transaction_id: str | None
    detail: dict[str, Any] | None


class CheckPublic(BaseModel):
    ok: bool
    problems: list[str]
    balances: dict[str, str] = Field(description="every account, recomputed from the entries")


class PolicyPublic(BaseModel):
    rounding: RoundingPublic
    yearly_earn_cap: str | None
    balance_cap: str | None
    redeem_min_age: int | None
    redeem_conditions: list[str]
    service_categories: list[str]
    max_service_minutes: int
    claim_window_days: int
    alarm_max_minutes: int
    alarm_min_points: str
    timezone: str


# --- helpers ------------------------------------------------------------------------------------


def get_store(request: Request, rt: RuntimeDep) -> PointsStore:
    """The store on the runtime's engine; `app.state.points_policy` may set other rules."""
    policy = getattr(request.app.state, "points_policy", None) or PointsPolicy(timezone=rt.tz.key)
    return PointsStore(rt.engine, rt.tz, rt.clock, policy)


StoreDep = Annotated[PointsStore, Depends(get_store)]


def _rounding(r: RoundingRule | None) -> RoundingPublic | None:
    if r is None:
        return None
    return RoundingPublic(
        code=r.code,
        name_zh=r.name_zh,
        name_en=r.name_en,
        description_zh=r.description_zh,
        description_en=r.description_en,
    )


def _approval(rt: Runtime, by: str, at: datetime, level: str) -> ApprovalPublic:
    return ApprovalPublic(by=by, at=_ms_req(rt, to_ms(at)), level=level)


def _claim_out(rt: Runtime, c: Claim) -> ClaimPublic:
    return ClaimPublic(
        id=c.id,
        member_id=c.member,
        community=c.community,
        source=c.source.value,
        category=c.category,
        points=format_points(c.units),
        units=c.units,
        reason=c.reason,
        status=c.status.value,
        requested_by=c.requested_by.person,
        operator_role=c.requested_by.role.value,
        requested_at=_ms_req(rt, to_ms(c.requested_at)),
        service_date=c.service_date,
        ref=c.ref,
        started_at=_ms(rt, to_ms(c.started_at)) if c.started_at else None,
        ended_at=_ms(rt, to_ms(c.ended_at)) if c.ended_at else None,
        minutes=c.minutes,
        rounding=_rounding(c.rounding),
        verified=_approval(rt, c.verified.by, c.verified.at, c.verified.level.value)
        if c.verified
        else None,
        posted=_approval(rt, c.posted.by, c.posted.at, c.posted.level.value) if c.posted else None,
        refused=_approval(rt, c.refusal.by, c.refusal.at, c.refusal.level.value)
        if c.refusal
        else None,
        refusal_reason=c.refusal.reason if c.refusal else None,
        transaction_id=c.transaction_id,
        reversal_id=c.reversal_id,
    )


def _service_codes(rt: Runtime, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    with _reading(rt) as conn:
        rows = conn.execute(
            select(points_transactions.c.id, points_transactions.c.service_code).where(
                points_transactions.c.id.in_(ids), points_transactions.c.service_code.is_not(None)
            )
        ).all()
    return {r.id: r.service_code for r in rows}


def _txn_out(rt: Runtime, t: Transaction, service_code: str | None = None) -> TransactionPublic:
    return TransactionPublic(
        id=t.id,
        kind=t.kind.value,
        at=_ms_req(rt, to_ms(t.at)),
        community=t.community,
        category=t.category,
        reason=t.reason,
        member_id=t.member,
        beneficiary_id=t.beneficiary,
        requested_by=t.requested_by.person,
        operator_role=t.requested_by.role.value,
        approvals=[_approval(rt, a.by, a.at, a.level.value) for a in t.approvals],
        rounding=_rounding(t.rounding),
        claim_id=t.claim_id,
        ref=t.ref,
        service_code=service_code,
        reverses=t.reverses,
        service_date=t.service_date,
        entries=[
            EntryPublic(account=e.account.key, units=e.units, points=format_points(e.units))
            for e in t.entries
        ],
    )


def _txn_public(rt: Runtime, t: Transaction) -> TransactionPublic:
    return _txn_out(rt, t, _service_codes(rt, [t.id]).get(t.id))


def _account_out(rt: Runtime, r: Any, balance: int) -> AccountPublic:
    return AccountPublic(
        key=r.key,
        kind=r.kind,
        member_id=r.name if r.kind == AccountKind.MEMBER.value else None,
        member_type=r.member_type,
        community=r.community,
        balance=format_points(balance),
        balance_units=balance,
        birth_date=r.birth_date,
        conditions=list(r.conditions or []),
        created_at=_ms(rt, r.created_at),
    )


def _account_param(value: str) -> Account:
    """A path's account: a member id, or an account key ("pool:hardship", "issuance:bank")."""
    if ":" in value:
        try:
            return account_of(value)
        except ValueError:
            raise _refuse(
                "unknown_account", f"no account {value!r}", f"找不到账户：{value}", 404
            ) from None
    if not _usable_path_id(value):
        raise _refuse("unknown_account", f"no account {value!r}", f"找不到账户：{value}", 404)
    return member_account(value)


def _recipient(value: str, field: str = "to") -> Account:
    if value.startswith("pool:"):
        return pool_account(value[len("pool:") :])
    if ":" in value:
        raise _invalid(
            ("body", field), 'a member id or "pool:<name>" (成员编号或“pool:名称”)', value
        )
    return member_account(value)


def _community(store: PointsStore, member: str, given: str | None) -> str:
    if given:
        return given
    with store.reading() as conn:
        row = store.account_row(conn, member_account(member))
    return str(row.community or "")


def _operator(store: PointsStore, principal: Principal, member: str, given: OperatorIn) -> Operator:
    """The real operator of a member's command, checked: who may act for whom."""
    if given.role is OperatorRole.SELF:
        if given.person_id not in (None, member):
            raise _invalid(("body", "operator", "person_id"), "self: the member themself")
        return Operator(member, OperatorRole.SELF)
    if given.role is OperatorRole.STAFF:
        if given.person_id is not None:
            raise _invalid(
                ("body", "operator", "person_id"), "staff act as the caller: leave it out"
            )
        return Operator(_acting(principal), OperatorRole.STAFF)
    if given.person_id is None:
        raise _invalid(("body", "operator", "person_id"), "family: the relative's responder id")
    with store.reading() as conn:
        ok = store.may_act_as_family(conn, given.person_id, member, to_ms(store.now()))
    if not ok:
        raise _refuse(
            "not_paired_family",
            f"{given.person_id!r} is not a family member paired with {member!r}",
            f"{given.person_id}不是与{member}结对的家属，不能代为操作",
            403,
        )
    return Operator(given.person_id, OperatorRole.FAMILY)


def _acting(principal: Principal) -> str:
    """The caller as the ledger names an approver or a staff operator: the person its token or
    session acts for, `responder:<id>` exactly as `approver_id` names one, else its label.

    Four eyes count people (care.points.person_of): a staff member's own token and their name
    on paper are one pair of eyes, and a member's token cannot approve the member's points. The
    token itself stays in the audit log (`actor`)."""
    if principal.person_id:
        return f"{PERSON_PREFIX}{principal.person_id}"
    return principal.label


def _approver(store: PointsStore, principal: Principal, approver_id: str | None) -> str:
    if approver_id is None:
        return _acting(principal)
    return _staff_responder(store, approver_id, ("body", "approver_id"), principal)


def _staff_responder(
    store: PointsStore, rid: str, loc: tuple[str, ...], principal: Principal
) -> str:
    with store.reading() as conn:
        row = conn.execute(select(responders.c.role).where(responders.c.id == rid)).first()
        # Another station's staff member is refused as one that is none.
        seen = row is not None and scope_for(conn, principal, to_ms(store.now())).sees_person(
            conn, rid
        )
    if row is None or row.role != "staff" or not seen:
        raise _invalid(loc, f"{rid!r} is not a staff responder", rid)
    return f"{PERSON_PREFIX}{rid}"


def _run(
    store: PointsStore,
    command: Any,
    principal: Principal,
    key: str | None = None,
    service_code: str | None = None,
    order_id: str | None = None,
) -> Outcome:
    try:
        return store.execute(
            command, principal.label, key, service_code=service_code, order_id=order_id
        )
    except (PointsError, StoreError) as err:
        raise _refused(err) from None
    except IntegrityError:
        # Judged again from the committed state several times and still racing: say so.
        raise _refuse(
            "concurrent_change",
            "the ledger changed under this request several times; retry it (same key)",
            "账目正被同时修改，请用同一幂等键重试",
            409,
        ) from None


def _replayed(response: Response, outcome: Outcome) -> None:
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"


# --- station scoping ----------------------------------------------------------------------------
# A staff member whose profile names a station sees the points of their station's members (an
# elder by the elder's station, a person by their profile's) and of those no station has taken
# yet, as gateway/api.py does for elders: another station's member, their account, claims and
# transactions answer exactly as unknown ones, lists leave them out, and a body naming one is
# refused as naming nobody. The bank's accounts and the pools are every station's.


def _station_scope(conn: Connection, rt: Runtime, principal: Principal) -> CareScope | None:
    """The caller's scope when a station limits it, else None (admins, staff of no station)."""
    scope = caller_scope(conn, rt, principal)
    return scope if scope.station is not None else None


def _no_account(member: str) -> HTTPException:
    # PointsStore.account_row's words for a member without an account: another station's
    # member is not told apart from one with none, or from nobody.
    return _refuse(
        "no_account",
        f"{member!r} has no points account (open one first)",
        f"{member}尚未开立积分账户",
        404,
    )


def _no_member(member: str) -> HTTPException:
    # PointsStore.open_account's words for nobody, likewise.
    return _refuse(
        "unknown_member", f"no responder or elder {member!r}", f"找不到人员：{member}", 404
    )


def _members_seen(
    rt: Runtime,
    principal: Principal,
    *members: str | None,
    refusal: Callable[[str], HTTPException] = _no_account,
) -> None:
    """`refusal` (404 as for a member without an account) when one of a body's `members` is
    another station's."""
    with _reading(rt) as conn:
        scope = _station_scope(conn, rt, principal)
        for m in members:
            if scope is not None and m is not None and not scope.sees_member(conn, m):
                raise refusal(m)


def _alert_seen(conn: Connection, rt: Runtime, principal: Principal, alert_id: str) -> None:
    """StoreError as for an alert that is not (PointsStore.alarm_facts' words) when it is
    another station's elder's: the timeline of another station's alarm is not read into a
    claim."""
    scope = _station_scope(conn, rt, principal)
    if scope is None:
        return
    elder_id = conn.execute(select(alerts.c.elder_id).where(alerts.c.id == alert_id)).scalar()
    if elder_id is not None and not scope.sees_on_board(conn, elder_id):
        raise StoreError("unknown_alert", f"no alert {alert_id!r}", f"找不到告警：{alert_id}", 404)


def _order_seen(conn: Connection, rt: Runtime, principal: Principal, order_id: str) -> None:
    """StoreError as for an order that is not (PointsStore's words) when it is another
    station's elder's: nor is whose it is told (`order_of_another_elder` would)."""
    scope = _station_scope(conn, rt, principal)
    if scope is None:
        return
    owner = select(svc_orders.c.elder_id).where(svc_orders.c.id == order_id)
    elder_id = conn.execute(owner).scalar()
    if elder_id is not None and not scope.sees_on_board(conn, elder_id):
        raise StoreError(
            "unknown_order", f"no service order {order_id!r}", f"找不到服务工单：{order_id}"
        )


def _txn_members(conn: Connection, transaction_id: str) -> set[str]:
    """The members a transaction names: whom it was for, and every member account it moved."""
    t = points_transactions.c
    head = conn.execute(select(t.member, t.beneficiary).where(t.id == transaction_id)).first()
    if head is None:
        return set()
    named = {m for m in (head.member, head.beneficiary) if m}
    legs = select(points_entries.c.account).where(points_entries.c.transaction_id == transaction_id)
    for key in conn.execute(legs).scalars():
        acct = account_of(key)
        if acct.kind is AccountKind.MEMBER:
            named.add(acct.name)
    return named


def _points_in_scope(request: Request, rt: RuntimeDep, principal: PrincipalDep) -> None:
    """This router's own path ids, scoped as gateway/api.py `in_scope` scopes the shared ones
    (`claim_id` among them): a member's account (`{account}` names the member) answers 404 as
    for a member without one; a transaction is read when one member it names is the caller's
    to see (it is a line of that member's statement) and is 404 as unknown otherwise."""
    account = request.path_params.get("account")
    txn = request.path_params.get("transaction_id")
    if (account is None and txn is None) or principal.role is not Role.STAFF:
        return
    with _reading(rt) as conn:
        scope = _station_scope(conn, rt, principal)
        if scope is None:
            return
        if account is not None:
            try:
                acct = _account_param(account)
            except HTTPException:
                return  # cannot exist: the route answers 404 itself
            if acct.kind is AccountKind.MEMBER and not scope.sees_member(conn, acct.name):
                raise _no_account(acct.name)
        if txn is not None and _usable_path_id(txn):
            named = _txn_members(conn, txn)
            if named and not any(scope.sees_member(conn, m) for m in named):
                raise _refused(PointsError("unknown_transaction", transaction=txn))


def _part(
    conn: Connection, rt: Runtime, principal: Principal, station: str | None
) -> CareScope | None:
    """Whose part of the ledger a report or check is: a station's staff their station's (403
    for another's), an admin or staff of no station (the sub-district) the `station` asked
    for, else the whole ledger (None)."""
    scope = _station_scope(conn, rt, principal)
    if station is None or (scope is not None and station == scope.station):
        return scope
    if scope is not None:
        raise _refuse(
            "station_not_yours",
            f"your station's ({scope.station}) figures only",
            f"只能查看本站（{scope.station}）的数据",
            403,
        )
    return CareScope(principal, station, None)


def _part_txns(scope: CareScope) -> Any:
    """A WHERE clause on points_transactions: the transactions of the scope's station's part,
    each counted for the one member it is chiefly for, as the monthly report counts its members
    (a redemption's or refund's beneficiary, else the member: the earner, the giver, a paying
    member; else the beneficiary: a reversed pool redemption). So a gift across stations is
    the giver's station's, a redemption paid by the hardship pool the elder's, and every
    transaction is one station's part only (or every station's, for a member of none)."""
    t = points_transactions.c
    whose = case(
        (t.kind.in_([TxnKind.REDEEM.value, TxnKind.REFUND.value]), t.beneficiary),
        else_=func.coalesce(t.member, t.beneficiary),
    )
    return scope.members_filter(whose)


def _points_not_found(what: str, ident: str) -> HTTPException:
    """`in_scope`'s 404 in this router's shape (its one shared path id here is a claim's)."""
    if what == "claim":
        return _refused(PointsError("unknown_claim", claim=ident))
    return _refuse(f"unknown_{what}", f"no {what} {ident!r}", f"找不到：{ident}", 404)


# --- routes -------------------------------------------------------------------------------------

router = APIRouter(
    prefix="/api/v1",
    dependencies=[
        Depends(authenticate),
        Depends(in_scope(_points_not_found)),
        Depends(_points_in_scope),
    ],
    max_body_size=MAX_BODY_BYTES,
)
TAGS: list[str | Any] = ["points"]
_REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"description": "four eyes: the same person cannot approve twice or approve their own"},
    404: {"description": "unknown member, account, claim or transaction"},
    409: {"description": "a conflict with the ledger's state (already paid, posted, reversed)"},
    422: {"description": "bad input or a rule refused it: detail {code, en, zh}"},
}


@router.get("/points/policy", tags=TAGS)
def get_policy(store: StoreDep) -> PolicyPublic:
    """The rules in force: rounding, caps, who may redeem."""
    p = store.policy
    rounding = _rounding(p.rounding)
    assert rounding is not None
    return PolicyPublic(
        rounding=rounding,
        yearly_earn_cap=format_points(p.yearly_earn_cap) if p.yearly_earn_cap else None,
        balance_cap=format_points(p.balance_cap) if p.balance_cap else None,
        redeem_min_age=p.redeem_min_age,
        redeem_conditions=sorted(p.redeem_conditions),
        service_categories=sorted(p.service_categories),
        max_service_minutes=p.max_service_minutes,
        claim_window_days=p.claim_window_days,
        alarm_max_minutes=p.alarm_max_minutes,
        alarm_min_points=format_points(p.alarm_min_units),
        timezone=p.timezone,
    )


# accounts


@router.post(
    "/points/accounts", status_code=status.HTTP_201_CREATED, tags=TAGS, responses=_REFUSALS
)
def open_account(
    body: AccountOpen, rt: RuntimeDep, store: StoreDep, principal: PrincipalDep
) -> AccountPublic:
    """Open a member's points account (a watcher, volunteer, staff, relative or elder)."""
    _members_seen(rt, principal, body.member_id, refusal=_no_member)
    try:
        row = store.open_account(
            body.member_id,
            body.community,
            principal.label,
            birth_date=body.birth_date,
            conditions=body.conditions,
        )
    except StoreError as err:
        raise _refused(err) from None
    return _account_out(rt, row, 0)


@router.get("/points/accounts", tags=TAGS)
def list_accounts(
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    kind: Literal["member", "issuance", "redemption", "pool"] | None = None,
    community: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AccountPublic]:
    """Accounts with their posted balances (the bank's summed from the entries)."""
    q = select(points_accounts).order_by(points_accounts.c.key).limit(limit).offset(offset)
    if kind is not None:
        q = q.where(points_accounts.c.kind == kind)
    if community is not None:
        q = q.where(points_accounts.c.community == community)
    with _reading(rt) as conn:
        scope = _station_scope(conn, rt, principal)
        if scope is not None:
            a = points_accounts.c
            q = q.where(or_(a.kind != AccountKind.MEMBER.value, scope.members_filter(a.name)))
        rows = conn.execute(q).all()
        summed = store.balances(conn) if any(r.balance is None for r in rows) else {}
    return [
        _account_out(rt, r, int(r.balance) if r.balance is not None else summed.get(r.key, 0))
        for r in rows
    ]


@router.get("/points/accounts/{account}", tags=TAGS, responses={404: _REFUSALS[404]})
def get_account(account: str, rt: RuntimeDep, store: StoreDep) -> AccountPublic:
    """One account: a member id, or a key such as `pool:hardship` or `issuance:bank`."""
    acct = _account_param(account)
    with _reading(rt) as conn:
        try:
            row = store.account_row(conn, acct)
        except StoreError as err:
            raise _refused(err) from None
        balance = row.balance if row.balance is not None else store.balances(conn).get(acct.key, 0)
    return _account_out(rt, row, int(balance))


# claims (earning)


def _claimed(rt: Runtime, response: Response, outcome: Outcome) -> ClaimResult:
    _replayed(response, outcome)
    assert outcome.claim is not None
    txn = _txn_public(rt, outcome.transaction) if outcome.transaction else None
    return ClaimResult(claim=_claim_out(rt, outcome.claim), transaction=txn)


@router.post(
    "/points/claims/service", status_code=status.HTTP_201_CREATED, tags=TAGS, responses=_REFUSALS
)
def claim_service(
    body: ServiceClaimIn,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    response: Response,
    key: IdempotencyKey,
) -> ClaimResult:
    """Claim points for verified service hours (a mutual-aid visit, a companion shift): the
    duration is rounded by the policy's rule, shown on the claim. The claim is PENDING until the
    community verifies it and the sub-district posts it."""
    try:
        operator = _operator(store, principal, body.member_id, body.operator)
        _members_seen(rt, principal, body.member_id)
        community = _community(store, body.member_id, body.community)
    except StoreError as err:
        raise _refused(err) from None
    command = RequestService(
        member=body.member_id,
        community=community,
        category=body.category,
        started_at=body.started_at,
        ended_at=body.ended_at,
        service_ref=body.service_ref,
        operator=operator,
        reason=body.reason,
        idempotency_key=key,
    )
    return _claimed(rt, response, _run(store, command, principal))


@router.post(
    "/points/claims/alarm", status_code=status.HTTP_201_CREATED, tags=TAGS, responses=_REFUSALS
)
def claim_alarm(
    body: AlarmClaimIn,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    response: Response,
    key: IdempotencyKey,
) -> ClaimResult:
    """Claim points for answering an alarm, from the alert's timeline: the member's
    acknowledgement (a pager reply as `responder:<id>`), their arrival on site, and the
    resolution confirmed by someone else (who resolved it or gave its outcome). Counted from the
    acknowledgement to the resolution, capped, at least the policy's minimum."""
    try:
        operator = _operator(store, principal, body.member_id, body.operator)
        _members_seen(rt, principal, body.member_id)
        community = _community(store, body.member_id, body.community)
        with store.reading() as conn:
            _alert_seen(conn, rt, principal, body.alert_id)
            facts = store.alarm_facts(conn, body.alert_id, body.member_id)
    except StoreError as err:
        raise _refused(err) from None
    reason = body.reason or f"响应告警 answered alert {facts.alert_id}" + (
        f" ({facts.outcome})" if facts.outcome else ""
    )
    command = RequestAlarmCredit(
        member=body.member_id,
        community=community,
        alert_id=facts.alert_id,
        acknowledged_at=facts.acknowledged_at,
        on_site_at=facts.on_site_at,
        resolved_at=facts.resolved_at,
        confirmed_by=facts.confirmed_by,
        operator=operator,
        reason=reason,
        idempotency_key=key,
    )
    return _claimed(rt, response, _run(store, command, principal))


@router.post(
    "/points/claims/award", status_code=status.HTTP_201_CREATED, tags=TAGS, responses=_REFUSALS
)
def claim_award(
    body: AwardClaimIn,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    response: Response,
    key: IdempotencyKey,
) -> ClaimResult:
    """A station award (e.g. training attended) with its reason, entered by staff (the
    caller); it needs both approvals like any earning."""
    _members_seen(rt, principal, body.member_id)
    try:
        community = _community(store, body.member_id, body.community)
    except StoreError as err:
        raise _refused(err) from None
    command = RequestAward(
        member=body.member_id,
        community=community,
        units=body.points,
        reason=body.reason,
        operator=Operator(_acting(principal), OperatorRole.STAFF),
        idempotency_key=key,
    )
    return _claimed(rt, response, _run(store, command, principal))


@router.get("/points/claims", tags=TAGS)
def list_claims(
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    member_id: Annotated[str | None, Query(max_length=40)] = None,
    status_: Annotated[
        Literal["pending", "verified", "posted", "refused", "reversed"] | None,
        Query(alias="status"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ClaimPublic]:
    """Claims, oldest first; `status=pending` is the community's queue, `verified` the
    sub-district's."""
    with _reading(rt) as conn:
        scope = _station_scope(conn, rt, principal)
        found = store.claims(
            conn,
            member=member_id,
            status=(status_,) if status_ else (),
            limit=limit,
            offset=offset,
            where=scope.members_filter(points_claims.c.member) if scope else None,
        )
    return [_claim_out(rt, c) for c in found]


@router.get("/points/claims/{claim_id}", tags=TAGS, responses={404: _REFUSALS[404]})
def get_claim(claim_id: str, rt: RuntimeDep, store: StoreDep) -> ClaimPublic:
    if not _usable_path_id(claim_id):
        raise _refused(PointsError("unknown_claim", claim=claim_id))
    with _reading(rt) as conn:
        try:
            return _claim_out(rt, store.claim(conn, claim_id))
        except PointsError as err:
            raise _refused(err) from None


def _claim_path(claim_id: str) -> str:
    if not _usable_path_id(claim_id):
        raise _refused(PointsError("unknown_claim", claim=claim_id))
    return claim_id


@router.post("/points/claims/{claim_id}/verify", tags=TAGS, responses=_REFUSALS)
def verify_claim(
    claim_id: str,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    response: Response,
    key: OptIdempotencyKey = None,
    body: ApproveIn | None = None,
) -> ClaimResult:
    """社区核实录入: the community verifies a pending claim (not the member, not who entered it)."""
    approver = _approver(store, principal, body.approver_id if body else None)
    outcome = _run(store, Verify(_claim_path(claim_id), approver), principal, key)
    return _claimed(rt, response, outcome)


@router.post("/points/claims/{claim_id}/post", tags=TAGS, responses=_REFUSALS)
def post_claim(
    claim_id: str,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    response: Response,
    key: IdempotencyKey,
    body: ApproveIn | None = None,
) -> ClaimResult:
    """街道审核上传: the sub-district audits a verified claim and posts it; the points count from
    now (issuance -> the member, both legs in one transaction). Caps are checked here."""
    approver = _approver(store, principal, body.approver_id if body else None)
    outcome = _run(store, Post(_claim_path(claim_id), approver), principal, key)
    return _claimed(rt, response, outcome)


@router.post("/points/claims/{claim_id}/refuse", tags=TAGS, responses=_REFUSALS)
def refuse_claim(
    claim_id: str,
    body: RefuseIn,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    response: Response,
    key: OptIdempotencyKey = None,
) -> ClaimResult:
    """Refuse a claim with a reason: the community while pending, the sub-district once
    verified. The member sees why on their statement."""
    approver = _approver(store, principal, body.approver_id)
    outcome = _run(store, Refuse(_claim_path(claim_id), approver, body.reason), principal, key)
    return _claimed(rt, response, outcome)


# movements


@router.post("/points/gifts", status_code=status.HTTP_201_CREATED, tags=TAGS, responses=_REFUSALS)
def give(
    body: GiftIn,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    response: Response,
    key: IdempotencyKey,
) -> TransactionPublic:
    """转赠: give posted points to another member (a relative) or to the hardship pool."""
    to = _recipient(body.to)
    try:
        operator = _operator(store, principal, body.from_member_id, body.operator)
        to_member = to.name if to.kind is AccountKind.MEMBER else None
        _members_seen(rt, principal, body.from_member_id, to_member)
        community = _community(store, body.from_member_id, None)
    except StoreError as err:
        raise _refused(err) from None
    command = Gift(
        member=body.from_member_id,
        to=to,
        units=body.points,
        community=community,
        operator=operator,
        reason=body.reason,
        idempotency_key=key,
    )
    outcome = _run(store, command, principal)
    _replayed(response, outcome)
    assert outcome.transaction is not None
    return _txn_out(rt, outcome.transaction)


@router.post(
    "/points/redemptions", status_code=status.HTTP_201_CREATED, tags=TAGS, responses=_REFUSALS
)
def redeem(
    body: RedeemIn,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    response: Response,
    key: IdempotencyKey,
) -> TransactionPublic:
    """兑换: pay a catalogue service in posted points. A member pays for themself (age or
    condition permitting); the hardship pool pays for an eligible elder, asked by one staff
    member (`requested_by`) and approved by the caller. An order is paid at most once."""
    payer = _recipient(body.payer, "payer")
    beneficiary = body.beneficiary_id or (payer.name if payer.kind is AccountKind.MEMBER else None)
    if beneficiary is None:
        raise _invalid(("body", "beneficiary_id"), "a pool pays for a named elder")
    try:
        if payer.kind is AccountKind.POOL:
            if body.requested_by is None:
                raise _invalid(("body", "requested_by"), "the staff member who asked")
            operator = Operator(
                _staff_responder(store, body.requested_by, ("body", "requested_by"), principal),
                OperatorRole.STAFF,
            )
            approved_by: str | None = _acting(principal)
            community = _community(store, beneficiary, None)
        else:
            operator = _operator(store, principal, payer.name, body.operator)
            approved_by = None
            community = _community(store, payer.name, None)
        paying = payer.name if payer.kind is AccountKind.MEMBER else None
        _members_seen(rt, principal, paying, beneficiary)
        with store.reading() as conn:
            if body.order_id is not None:
                _order_seen(conn, rt, principal, body.order_id)
            facts = store.member_facts(conn, beneficiary)
    except StoreError as err:
        raise _refused(err) from None
    # Without an order id the redemption is its own order: unique, so never "already paid".
    order_ref = body.order_id or f"{body.service_code}#{key}"
    command = Redeem(
        payer=payer,
        beneficiary=beneficiary,
        beneficiary_facts=facts,
        units=body.points,
        order_ref=order_ref,
        category=body.category,
        community=community,
        operator=operator,
        approved_by=approved_by,
        reason=body.reason or f"兑换服务 {body.service_code}",
        idempotency_key=key,
    )
    outcome = _run(
        store, command, principal, service_code=body.service_code, order_id=body.order_id
    )
    _replayed(response, outcome)
    assert outcome.transaction is not None
    return _txn_public(rt, outcome.transaction)


@router.post(
    "/points/reversals", status_code=status.HTTP_201_CREATED, tags=TAGS, responses=_REFUSALS
)
def reverse(
    body: ReverseIn,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    response: Response,
    key: IdempotencyKey,
) -> ReversalResult:
    """冲正: correct a posted transaction with its negated entries, a reason, who asked
    (`requested_by`, a staff responder) and who approved (the caller). Refused when the points
    were already spent (reverse the spending first); a reversed earning's claim is REVERSED."""
    requester = _staff_responder(store, body.requested_by, ("body", "requested_by"), principal)
    with _reading(rt) as conn:
        scope = _station_scope(conn, rt, principal)
        named = _txn_members(conn, body.transaction_id) if scope else set()
        # A change, unlike a read: every member the transaction moved must be the caller's.
        if scope and not all(scope.sees_member(conn, m) for m in named):
            raise _refused(PointsError("unknown_transaction", transaction=body.transaction_id))
    command = Reverse(
        transaction_id=body.transaction_id,
        reason=body.reason,
        requested_by=requester,
        approved_by=_acting(principal),
        idempotency_key=key,
    )
    outcome = _run(store, command, principal)
    _replayed(response, outcome)
    assert outcome.transaction is not None
    return ReversalResult(
        transaction=_txn_public(rt, outcome.transaction),
        claim=_claim_out(rt, outcome.claim) if outcome.claim else None,
    )


@router.get("/points/transactions/{transaction_id}", tags=TAGS, responses={404: _REFUSALS[404]})
def get_transaction(transaction_id: str, rt: RuntimeDep, store: StoreDep) -> TransactionPublic:
    if not _usable_path_id(transaction_id):
        raise _refused(PointsError("unknown_transaction", transaction=transaction_id))
    with _reading(rt) as conn:
        try:
            txn = store.transaction(conn, transaction_id)
        except PointsError as err:
            raise _refused(err) from None
    return _txn_public(rt, txn)


# statements, reports, audit


def _period(from_: str | None, to: str | None) -> tuple[datetime | None, datetime | None]:
    start, end = query_instant(from_, "from"), query_instant(to, "to")
    if start is not None and end is not None and end <= start:
        raise _invalid(("query", "to"), "`to` must be after `from`", to)
    # `is not None`: 1970-01-01T00:00Z is 0 ms, a bound all the same.
    return (
        from_ms(start) if start is not None else None,
        from_ms(end) if end is not None else None,
    )


def _statement(
    store: PointsStore,
    rt: Runtime,
    principal: Principal,
    account: str,
    from_: str | None,
    to: str | None,
) -> Statement:
    acct = _account_param(account)
    since, until = _period(from_, to)
    with _reading(rt) as conn:
        scope = _station_scope(conn, rt, principal)
        # A member's statement is all of theirs (`_points_in_scope` let the caller see the
        # member); a shared account's (the pool, the bank's) is the station's part of it.
        shared = scope is not None and acct.kind is not AccountKind.MEMBER
        where = _part_txns(scope) if shared and scope is not None else None
        try:
            return store.statement(conn, acct, since=since, until=until, where=where)
        except StoreError as err:
            raise _refused(err) from None


def _statement_out(rt: Runtime, s: Statement) -> StatementPublic:
    return StatementPublic(
        account=s.account.key,
        opening_balance=format_points(s.opening_balance),
        closing_balance=format_points(s.closing_balance),
        closing_balance_units=s.closing_balance,
        lines=[
            StatementLinePublic(
                transaction_id=ln.transaction_id,
                at=_ms_req(rt, to_ms(ln.at)),
                kind=ln.kind.value,
                category=ln.category,
                reason=ln.reason,
                points=format_points(ln.units),
                units=ln.units,
                balance_after=format_points(ln.balance_after),
                balance_after_units=ln.balance_after,
                counterparties=[a.key for a in ln.counterparties],
                requested_by=ln.requested_by.person,
                operator_role=ln.requested_by.role.value,
                approvals=[_approval(rt, a.by, a.at, a.level.value) for a in ln.approvals],
                rounding=ln.rounding.code if ln.rounding else None,
                ref=ln.ref,
                reverses=ln.reverses,
            )
            for ln in s.lines
        ],
        pending_points=format_points(s.pending_units),
        pending=[_claim_out(rt, c) for c in s.pending],
        refused=[_claim_out(rt, c) for c in s.refused],
    )


@router.get("/points/accounts/{account}/statement", tags=TAGS, responses={404: _REFUSALS[404]})
def get_statement(
    account: str,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    from_: Annotated[QueryInstant, Query(alias="from")] = None,
    to: QueryInstant = None,
) -> StatementPublic:
    """A member's (or a pool's) statement over [from, to): every posted line with its reason,
    approvals and the balance after it; the pending (unposted) claims and the refused ones.

    The hardship pool (`pool:hardship`) and the bank's accounts are one account shared by every
    station. A station's staff get their station's part of one: only the lines of their
    station's members (and of members of no station), each transaction counted for whom it is
    chiefly for (a gift into the pool: the giver; a pool redemption, its refund or reversal:
    the elder served), and the opening, closing and after-line balances of those lines alone
    (the station's net movement, which may be below zero: the pool's own balance is
    `GET /points/accounts/pool:hardship`). Admins and staff of no station (the sub-district)
    get the whole account."""
    return _statement_out(rt, _statement(store, rt, principal, account, from_, to))


def _xlsx(build: Callable[[Workbook], None], filename: str) -> Response:
    wb = Workbook()
    build(wb)
    buf = io.BytesIO()
    wb.save(buf)
    return Response(
        buf.getvalue(),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _sheet(ws: Any, title: str, header: list[str], rows: list[list[Any]]) -> None:
    ws.title = title
    ws.append(header)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append(row)
    for i, name in enumerate(header, start=1):
        width = max([len(str(name))] + [len(str(r[i - 1])) for r in rows if r[i - 1] is not None])
        ws.column_dimensions[get_column_letter(i)].width = min(60, max(10, width + 2))
    ws.freeze_panes = "A2"


def _num(units: int) -> Decimal:
    """Units as a number of points for a spreadsheet cell (exact: 3 -> 1.5)."""
    return Decimal(units) / 2


_XLSX_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {XLSX: {}}, "description": "an Excel workbook"},
    404: _REFUSALS[404],
}


@router.get(
    "/points/accounts/{account}/statement.xlsx",
    tags=TAGS,
    response_class=Response,
    responses=_XLSX_DOC,
)
def get_statement_xlsx(
    account: str,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    from_: Annotated[QueryInstant, Query(alias="from")] = None,
    to: QueryInstant = None,
) -> Response:
    """The statement as an Excel workbook: sheet 积分明细 (the lines) and 待审核 (pending); a
    station's part of a shared account as for the JSON statement."""
    s = _statement(store, rt, principal, account, from_, to)

    def build(wb: Workbook) -> None:
        lines = [
            [
                _ms_req(rt, to_ms(ln.at)),
                ln.kind.value,
                ln.category,
                ln.reason,
                _num(ln.units),
                _num(ln.balance_after),
                ", ".join(a.key for a in ln.counterparties),
                f"{ln.requested_by.person} ({ln.requested_by.role.value})",
                "; ".join(f"{a.level.value}: {a.by}" for a in ln.approvals),
                ln.rounding.name_zh if ln.rounding else None,
                ln.transaction_id,
            ]
            for ln in s.lines
        ]
        _sheet(
            wb.active,
            "积分明细 Statement",
            [
                "时间 Time",
                "类型 Kind",
                "类别 Category",
                "事由 Reason",
                "积分 Points",
                "余额 Balance after",
                "对方账户 Counterparty",
                "经办 Entered by",
                "审批 Approvals",
                "取整规则 Rounding",
                "流水号 Transaction",
            ],
            lines,
        )
        pending = [
            [c.id, c.status.value, c.service_date.isoformat(), c.category, c.reason, _num(c.units)]
            for c in (*s.pending, *s.refused)
        ]
        _sheet(
            wb.create_sheet(),
            "待审核 Pending",
            [
                "申报号 Claim",
                "状态 Status",
                "服务日期 Date",
                "类别 Category",
                "事由 Reason",
                "积分 Points",
            ],
            pending,
        )

    name = s.account.key.replace(":", "-")
    return _xlsx(build, f"points-statement-{name}.xlsx")


MonthQuery = Annotated[
    Month, Query(description="YYYY-MM, local time (1970-01 to 2099-12)", examples=["2026-11"])
]


StationQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=100,
        description="one station's part (admins and staff of no station; a station's staff "
        "always get their own)",
    ),
]


def _report(
    store: PointsStore, rt: Runtime, principal: Principal, month: str, station: str | None
) -> MonthlyReportPublic:
    year, mon = int(month[:4]), int(month[5:])  # in range: MonthQuery checked it
    with _reading(rt) as conn:
        scope = _part(conn, rt, principal, station)
        where = _part_txns(scope) if scope is not None else None
        report = store.monthly_report(conn, year, mon, where)
    return MonthlyReportPublic(
        month=month,
        rows=[
            ReportRowPublic(
                community=r.community,
                kind=r.kind.value,
                category=r.category,
                transactions=r.transactions,
                members=r.members,
                points=format_points(r.units),
                units=r.units,
            )
            for r in report.rows
        ],
        totals={k.value: format_points(report.total(kind=k)) for k in TxnKind},
    )


@router.get("/points/reports/monthly", tags=TAGS)
def monthly_report(
    month: MonthQuery,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    station: StationQuery = None,
) -> MonthlyReportPublic:
    """The station's monthly report: posted movements by community, kind and category. A
    station's staff get their station's (each transaction counted for whom it is chiefly for:
    the earner, the giver, the paying member, a redemption's elder; members of no station are
    every station's); admins and staff of no station (the sub-district) the whole, or one
    station's with `station`. Another station's: 403."""
    return _report(store, rt, principal, month, station)


@router.get("/points/reports/monthly.xlsx", tags=TAGS, response_class=Response, responses=_XLSX_DOC)
def monthly_report_xlsx(
    month: MonthQuery,
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    station: StationQuery = None,
) -> Response:
    """The monthly report as an Excel workbook (sheet 月报), of the same part as the JSON."""
    report = _report(store, rt, principal, month, station)

    def build(wb: Workbook) -> None:
        rows = [
            [r.community, r.kind, r.category, r.transactions, r.members, _num(r.units)]
            for r in report.rows
        ]
        _sheet(
            wb.active,
            f"月报 {month}",
            [
                "社区 Community",
                "类型 Kind",
                "类别 Category",
                "笔数 Count",
                "人数 Members",
                "积分 Points",
            ],
            rows,
        )

    return _xlsx(build, f"points-report-{month}.xlsx")


@router.get("/points/audit", tags=TAGS)
def list_audit(
    rt: RuntimeDep,
    store: StoreDep,
    principal: PrincipalDep,
    member_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[AuditPublic]:
    """Who did what for whom, newest first: the real operator and the API caller. A station's
    staff see what was done for their station's members and those of no station."""
    with _reading(rt) as conn:
        scope = _station_scope(conn, rt, principal)
        where = scope.members_filter(points_audit.c.member) if scope else None
        rows = store.audit(conn, member=member_id, limit=limit, where=where)
    return [
        AuditPublic(
            id=r.id,
            at=_ms_req(rt, r.at),
            action=r.action,
            member_id=r.member,
            operator_role=r.operator_role,
            operator=r.operator,
            actor=r.actor,
            claim_id=r.claim_id,
            transaction_id=r.transaction_id,
            detail=r.detail,
        )
        for r in rows
    ]


@router.get("/points/check", tags=TAGS)
def check_ledger(
    rt: RuntimeDep, store: StoreDep, principal: PrincipalDep, station: StationQuery = None
) -> CheckPublic:
    """Recompute every balance from the entries and check the ledger: zero-sum, equal to the
    cached balances, nothing negative but the bank's issuance, every transaction balanced. A
    station's staff (or `station`, for admins and staff of no station) get the balances and
    findings of their station's member accounts and transactions (as the monthly report
    counts them) and of the shared ones (the bank's, the pools: every station's, as in
    `GET /points/accounts`); a broken zero-sum is the whole ledger's, shown to everyone."""
    with _reading(rt) as conn:
        scope = _part(conn, rt, principal, station)
        if scope is None:
            problems = store.check(conn)
            balances = store.balances(conn)
        else:
            a = points_accounts.c
            seen = or_(a.kind != AccountKind.MEMBER.value, scope.members_filter(a.name))
            problems = store.check(conn, accounts=seen, transactions=_part_txns(scope))
            keys = set(conn.execute(select(a.key).where(seen)).scalars())
            balances = {k: v for k, v in store.balances(conn).items() if k in keys}
    return CheckPublic(
        ok=not problems,
        problems=problems,
        balances={k: format_points(v) for k, v in sorted(balances.items())},
    )


__all__ = ["router"]
