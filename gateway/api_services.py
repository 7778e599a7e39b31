"""HTTP API for the service module (issue 5). Included by gateway/api.py's create_app.

Same conventions as gateway/api.py, whose auth dependency and helpers it uses: a bearer token on
every call, bodies checked before the database (unknown fields refused), 4xx with a JSON
`detail` and never a 500, 404 for unknown ids, 409 for duplicates and impossible moves, RFC 3339
times with an offset in and out, money in integer fen.

- Catalogue `/services`, providers `/providers` with their outlets, agreements and workers.
- Orders `/service-orders`: application -> agree -> dispatch -> accept | refuse -> check-in ->
  check-out -> feedback -> sign-off -> close (or cancel before check-in), each step a POST on
  the order; recurring orders generate their visits (`/service-orders/{id}/generate`,
  `/service-orders/generate`). A move the state machine (care.services) refuses is a 409 whose
  `detail` is `{"code", "zh", "en"}`.
- Vouchers `/voucher-sources`, `/voucher-wallets` (an elder enrolled with a source, with the tier
  and its funding basis), the monthly run `/vouchers/allot`, month end `/vouchers/close`,
  reversals `/vouchers/reversals`, the journal `/vouchers/transactions`, balances per elder.
  The elder's sign-off consumes the vouchers in the same transaction (see gateway/services_store).
- Statements per elder, provider and funding source (JSON or `format=xlsx`), the
  reconciliation `/vouchers/reconciliation`, supervision figures `/service-supervision`.

POSTs that move money (sign-off, settle, allot, close, reversals; cancel, which refunds the
points an order was paid with) take an optional `Idempotency-Key` header: the first answer is
stored with the effect, in the same transaction, and a retry with the same key and body gets
the same answer without doing it twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Callable, Coroutine
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.styles import Font  # type: ignore[import-untyped]
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import Connection, Row, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from care._common import CareError, Labelled
from care.elders import ServiceTier
from care.services import (
    SHANGHAI,
    Accept,
    Actor,
    ActorRole,
    Agree,
    Apply,
    Cancel,
    CheckIn,
    CheckOut,
    Close,
    Dispatch,
    Feedback,
    GeoPoint,
    OrderState,
    Recurrence,
    Refuse,
    ServiceCategory,
    ServiceUnit,
    SignOff,
    SignOffMethod,
    generate_occurrences,
    make_agreement,
    open_order,
    visit_charge,
)
from care.vouchers import (
    Allot,
    CloseMonth,
    Consume,
    Reverse,
    Transaction,
    elder_statement,
    provider_statement,
    reconcile,
    source_statement,
)
from gateway import services_store as store
from gateway.api import (
    MAX_BODY_BYTES,
    Address,
    Name,
    Phone,
    PrincipalAnyDep,
    PrincipalDep,
    RefId,
    RuntimeDep,
    _elder_seen,
    _In,
    _ms,
    _ms_req,
    _one_line,
    _reading,
    _usable_path_id,
    allow,
    authenticate,
    caller_scope,
    in_scope,
)
from gateway.api_time import MONTH_RANGE, Instant, Month, day_in_range, month_in_range
from gateway.auth import Principal, Role
from gateway.care_store import GONE, gone_since
from gateway.care_store import Scope as CareScope
from gateway.clock import from_ms, new_id, to_ms
from gateway.points_store import PointsStore
from gateway.runtime import Runtime
from gateway.tables import elders, responders
from gateway.tables_care import elder_profiles
from gateway.tables_services import (
    svc_feedback,
    svc_idempotency,
    svc_ledger_accounts,
    svc_ledger_txns,
    svc_order_log,
    svc_orders,
    svc_outlets,
    svc_provider_agreements,
    svc_providers,
    svc_services,
    svc_sign_offs,
    svc_supervision,
    svc_visits,
    svc_voucher_rules,
    svc_voucher_sources,
    svc_voucher_wallets,
    svc_workers,
)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_SIGNATURE_BYTES = 32 * 1024  # a signature pad's PNG is a few KB; the body limit is 64 KB
MAX_GENERATE_DAYS = 62
FUTURE_SKEW_MS = 5 * 60_000  # a check-in time this far ahead of the gateway's clock is refused
MAX_FEN = 100_000_000  # one million yuan: anything above is a typing slip
TAG_CATALOGUE, TAG_PROVIDERS, TAG_ORDERS = (
    "services: catalogue",
    "services: providers",
    "services: orders",
)
TAG_VOUCHERS, TAG_STATEMENTS = "services: vouchers", "services: statements"
TAG_SUPERVISION = "services: supervision"


# --- refusals as HTTP -------------------------------------------------------------------------


class _Route(APIRoute):
    """Turns a `Refusal` (or a domain `CareError`) raised by a handler into its 4xx answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except store.Refusal as refusal:
                return _refusal(refusal)
            except CareError as err:
                return _refusal(store.Refusal.of(err))
            except IntegrityError:
                # Checked before writing; this is a race with another writer: nothing was kept.
                return _refusal(
                    store.conflict(
                        "conflict",
                        "the request conflicts with data written meanwhile; read again and retry",
                        "请求与刚写入的数据冲突，请刷新后重试",
                    )
                )

        return route


def _refusal(r: store.Refusal) -> JSONResponse:
    return JSONResponse({"detail": r.detail()}, status_code=r.status)


def _not_found(what: str, ident: str) -> store.Refusal:
    return store.Refusal(
        404, "not_found", f"no {what} {ident!r}", f"没有该{_WHAT_ZH.get(what, what)}：{ident}"
    )


_WHAT_ZH = {
    "service": "服务项目",
    "provider": "服务商",
    "outlet": "服务网点",
    "worker": "服务人员",
    "order": "工单",
    "elder": "老人",
    "source": "资金来源",
    "wallet": "服务券账户",
    "transaction": "交易",
    "responder": "人员",
    "agreement": "服务协议",
    "signature of order": "工单签名",
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown id; `detail` = {code, zh, en}"},
    409: {"description": "impossible move or conflict with stored data; `detail` = {code, zh, en}"},
    422: {"description": "bad input; `detail` lists the problems, or {code, zh, en}"},
}


def _require(conn: Connection, table: Any, ident: str, what: str, col: str = "id") -> Row[Any]:
    row = None
    if _usable_path_id(ident):
        row = conn.execute(select(table).where(table.c[col] == ident)).first()
    if row is None:
        raise _not_found(what, ident)
    return row


def _ref(conn: Connection, table: Any, ident: str, what: str, col: str = "id") -> Row[Any]:
    """A row named in a body: a 422 (the body is wrong), not a 404 (the path is right)."""
    row = conn.execute(select(table).where(table.c[col] == ident)).first()
    if row is None:
        raise store.invalid(
            f"{what}_unknown", f"no {what} {ident!r}", f"没有该{_WHAT_ZH.get(what, what)}：{ident}"
        )
    return row


def _elder_ref(conn: Connection, rt: Runtime, principal: Principal, elder_id: str) -> None:
    """An elder named in a body, as `_ref`: also `elder_unknown` for a station's staff when
    the elder is another station's, so that the answer does not tell it from none."""
    if not _elder_seen(conn, rt, principal, elder_id):
        raise store.invalid("elder_unknown", f"no elder {elder_id!r}", f"没有该老人：{elder_id}")


def _gone_refusal(elder_id: str, status: str, since: date) -> store.Refusal:
    zh, en = GONE[status]
    return store.conflict(
        f"elder_{status}",
        f"elder {elder_id} {en} (since {since}): no new service, visit or vouchers",
        f"该老人{zh}（{since}起），不能再安排服务、上门或发放服务券",
    )


def _check_not_gone(conn: Connection, elder_id: str) -> None:
    gone = gone_since(conn, elder_id)
    if gone is not None:
        raise _gone_refusal(elder_id, *gone)


def _person_ref(conn: Connection, rt: Runtime, principal: Principal, responder_id: str) -> Row[Any]:
    """A responder named in a body, as `_ref`: also `responder_unknown` for a station's staff
    when the person is another station's (gateway/care_store.py `Scope.sees_person`)."""
    row = _ref(conn, responders, responder_id, "responder")
    if not caller_scope(conn, rt, principal).sees_person(conn, responder_id):
        raise store.invalid(
            "responder_unknown", f"no responder {responder_id!r}", f"没有该人员：{responder_id}"
        )
    return row


# --- input types ------------------------------------------------------------------------------


def _labelled(cls: type[Labelled]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return cls.parse(value)
            except CareError as err:
                raise err.pydantic() from None
        return value

    return parse


Category = Annotated[
    ServiceCategory,
    BeforeValidator(_labelled(ServiceCategory)),
    Field(description="meals 助餐, cleaning 助洁, ... (the code, or its Chinese name)"),
]
Unit = Annotated[ServiceUnit, BeforeValidator(_labelled(ServiceUnit))]
Tier = Annotated[
    ServiceTier,
    BeforeValidator(_labelled(ServiceTier)),
    Field(description="free 无偿, low_cost 低偿, paid 有偿"),
]
Code = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.\-]+$"),
    Field(description="a code: 1-40 of A-Z a-z 0-9 _ . -", examples=["meal-lunch"]),
]
Fen = Annotated[StrictInt, Field(ge=0, le=MAX_FEN, description="integer fen (分)")]
Text100 = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_one_line),
]
Text500 = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_one_line),
]
Reason = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=1000),
    AfterValidator(_one_line),
]
Lat = Annotated[StrictFloat, Field(ge=-90, le=90, description="WGS-84 latitude, degrees")]
Lon = Annotated[StrictFloat, Field(ge=-180, le=180, description="WGS-84 longitude, degrees")]
Rating = Annotated[StrictInt, Field(ge=1, le=5, description="1 (poor) to 5 (excellent)")]
QId = Annotated[str | None, Query(max_length=80, pattern=r"^[A-Za-z0-9_.\-@]+$")]
IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=100,
        pattern=r"^[\x21-\x7e]+$",
        description="retry-safe: the same key and body get the first answer again",
    ),
]


def _iso_date_only(value: Any) -> Any:
    if not isinstance(value, str) or len(value) != 10:
        raise PydanticCustomError("date_format", "a date is YYYY-MM-DD")
    return value


# Bounded: a recurrence's days and the days to generate become the visits' times.
Day = Annotated[
    date,
    BeforeValidator(_iso_date_only),
    AfterValidator(day_in_range),
    Field(examples=["2026-11-01"]),
]


def _month_query(value: str | None, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if (
        value is None
        or len(value) != 7
        or value[4] != "-"
        or not (value[:4].isdigit() and value[5:].isdigit() and 1 <= int(value[5:]) <= 12)
    ):
        raise store.invalid("month_invalid", "month is YYYY-MM", "月份格式应为YYYY-MM")
    if not month_in_range(value):
        raise store.invalid("month_range", *MONTH_RANGE)
    return value


MonthQ = Annotated[
    str, Query(max_length=7, description="YYYY-MM (Asia/Shanghai), 1970-01 to 2099-12")
]
FormatQ = Annotated[Literal["json", "xlsx"], Query(description="json, or an Excel workbook")]


class ShareIn(_In):
    """The elder's own share per unit, by tier (free is always 0)."""

    free: Fen = 0
    low_cost: Fen
    paid: Fen


class ServiceIn(_In):
    code: Code
    name_zh: Text100
    name_en: Text100
    category: Category
    unit: Unit
    unit_price_fen: Fen = Field(description="what the provider earns per unit, in fen")
    share_fen: ShareIn


class ServicePatch(_In):
    name_zh: Text100 | None = None
    name_en: Text100 | None = None
    unit_price_fen: Fen | None = None
    share_fen: ShareIn | None = None
    active: StrictBool | None = None


class SharePublic(BaseModel):
    free: int
    low_cost: int
    paid: int


class ServicePublic(BaseModel):
    code: str
    name_zh: str
    name_en: str
    category: str
    category_zh: str
    unit: str
    unit_price_fen: int
    share_fen: SharePublic
    active: bool
    created_at: str
    updated_at: str


ProviderKind = Literal["station", "clinic", "canteen", "housekeeping", "volunteer", "other"]


class ProviderIn(_In):
    name: Name
    kind: ProviderKind = Field(description="the station's own team, a clinic, a canteen, ...")
    phone: Phone | None = None
    address: Address | None = None


class ProviderPatch(_In):
    name: Name | None = None
    phone: Phone | None = None
    address: Address | None = None
    active: StrictBool | None = None


class ProviderPublic(BaseModel):
    id: str
    name: str
    kind: str
    phone: str | None
    address: str | None
    active: bool
    created_at: str
    updated_at: str


class OutletIn(_In):
    name: Name
    address: Address
    lat: Lat | None = None
    lon: Lon | None = None
    phone: Phone | None = None


class OutletPublic(BaseModel):
    id: str
    provider_id: str
    name: str
    address: str
    lat: float | None
    lon: float | None
    phone: str | None
    created_at: str


class ProviderAgreementIn(_In):
    service_code: Code
    unit_price_fen: Fen
    valid_from: Day
    valid_until: Day | None = Field(None, description="inclusive; none: open-ended")


class ProviderAgreementPublic(BaseModel):
    id: str
    provider_id: str
    service_code: str
    unit_price_fen: int
    valid_from: date
    valid_until: date | None
    created_by: str
    created_at: str


class WorkerIn(_In):
    name: Name
    phone: Phone | None = None
    outlet_id: RefId | None = None
    responder_id: RefId | None = Field(None, description="the same person as a responder, if so")


class WorkerPublic(BaseModel):
    id: str
    provider_id: str
    outlet_id: str | None
    responder_id: str | None
    name: str
    phone: str | None
    active: bool
    created_at: str


class Point(_In):
    lat: Lat
    lon: Lon


class ApplicantIn(_In):
    role: Literal["elder", "family", "staff", "system"]
    id: Text100 | None = Field(None, description="who; default the API caller")


class OrderApply(_In):
    elder_id: RefId
    category: Category
    request: Text500 = Field(description="what is asked for, in the applicant's words")
    applied_by: ApplicantIn
    home: Point = Field(
        description="the elder's home (EVV compares check-ins with it); from the elder "
        "registry once it holds locations"
    )


class RecurrenceIn(_In):
    weekdays: Annotated[
        list[Annotated[StrictInt, Field(ge=0, le=6)]], Field(min_length=1, max_length=7)
    ] = Field(description="0 = Monday ... 6 = Sunday")
    at: Annotated[str, StringConstraints(strict=True, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = (
        Field(description="local time HH:MM (Asia/Shanghai)")
    )
    start: Day
    end: Day | None = None


class OrderAgree(_In):
    service_code: Code
    quantity: StrictInt = Field(1, ge=1, le=100, description="units per visit")
    tier: Tier | None = Field(
        None, description="default: the elder's tier with the funding source (voucher wallet)"
    )
    basis: Text100 | None = Field(None, description="the funding basis: 三无, 75+ 优抚, ...")
    funding_source: Code | None = Field(
        None, description="the voucher source paying the subsidy; none: the elder pays all"
    )
    scheduled_at: Instant | None = Field(None, description="a one-off visit's time")
    recurrence: RecurrenceIn | None = Field(
        None, description="a recurring order: its visits are generated per due day"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> OrderAgree:
        if self.scheduled_at is not None and self.recurrence is not None:
            raise PydanticCustomError(
                "agreement_shape", "either scheduled_at (one visit) or recurrence, not both"
            )
        return self


class DispatchIn(_In):
    provider_id: RefId
    worker_id: RefId


class WorkerAct(_In):
    worker_id: RefId = Field(description="the dispatched worker (only they may answer)")


class RefuseIn(WorkerAct):
    reason: Reason


class PresenceIn(WorkerAct):
    at: Instant
    lat: Lat
    lon: Lon


class FeedbackIn(_In):
    rating: Rating
    on_time: StrictBool | None = None
    attitude: Rating | None = None
    quality: Rating | None = None
    note: Reason | None = None
    by_role: Literal["elder", "family", "staff"] = "elder"
    by_id: Text100 | None = Field(None, description="default: the elder (or the API caller)")


class SignOffIn(_In):
    method: SignOffMethod
    signature_base64: Annotated[str, StringConstraints(strict=True, max_length=48_000)] | None = (
        Field(None, description=f"signature: a PNG or JPEG, at most {MAX_SIGNATURE_BYTES} bytes")
    )
    pin: Annotated[str, StringConstraints(strict=True, pattern=r"^\d{4,6}$")] | None = Field(
        None, description="pin: the elder's 4-6 digit PIN (checked against its hash)"
    )
    witness_id: RefId | None = Field(None, description="witnessed: the staff responder's id")


class NoteBody(_In):
    note: Reason | None = None


class CancelIn(_In):
    reason: Reason


class GenerateIn(_In):
    from_: Day = Field(alias="from")
    to: Day


class PinIn(_In):
    pin: Annotated[str, StringConstraints(strict=True, pattern=r"^\d{4,6}$")] = Field(
        description="4-6 digits; stored only as a salted scrypt hash"
    )


class FollowUpIn(_In):
    outcome: Literal["satisfied", "unsatisfied", "unreachable"]
    rating: Rating | None = None
    note: Reason | None = None


class ComplaintIn(_In):
    note: Reason


class AllotmentRuleIn(_In):
    tier: Tier
    category: Category
    monthly_fen: Fen


class SourceIn(_In):
    id: Code
    name_zh: Text100
    name_en: Text100
    carry_over: Annotated[list[Category], Field(max_length=20)] = Field(
        default_factory=list, description="categories whose leftovers carry to the next month"
    )
    allotments: Annotated[list[AllotmentRuleIn], Field(max_length=200)]


class AllotmentRulePublic(BaseModel):
    tier: str
    category: str
    monthly_fen: int


class SourcePublic(BaseModel):
    id: str
    name_zh: str
    name_en: str
    carry_over: list[str]
    allotments: list[AllotmentRulePublic]
    created_at: str


class WalletIn(_In):
    source_id: Code
    elder_id: RefId
    tier: Tier
    basis: Text100 = Field(description="why: 三无, 75+ 优抚, 低保 ... (the funding basis)")
    from_month: Month
    until_month: Month | None = None


class WalletPublic(BaseModel):
    source_id: str
    elder_id: str
    tier: str
    basis: str
    from_month: str
    until_month: str | None
    created_by: str
    created_at: str


class RunIn(_In):
    month: Month
    source_id: Code | None = Field(None, description="default: every source")
    elder_id: RefId | None = Field(None, description="default: every enrolled elder")


class ReverseIn(_In):
    txn_id: Annotated[
        str,
        StringConstraints(strict=True, min_length=1, max_length=240),
        AfterValidator(_one_line),
    ] = Field(description="the id of the transaction to reverse (from /vouchers/transactions)")
    reason: Reason


class LinePublic(BaseModel):
    account: str
    fen: int


class TxnPublic(BaseModel):
    seq: int
    id: str
    kind: str
    at: str
    month: str
    source_id: str
    elder_id: str | None
    provider_id: str | None
    visit_id: str | None
    elder_share_fen: int
    reverses: str | None
    reason: str
    actor: str
    lines: list[LinePublic]


class RunResult(BaseModel):
    month: str
    done: list[TxnPublic]
    skipped: list[dict[str, str]] = Field(description="{source_id, elder_id, code, zh, en}")


class AccountPublic(BaseModel):
    key: str
    source_id: str
    month: str | None
    category: str | None
    balance_fen: int


class BalancePublic(BaseModel):
    elder_id: str
    month: str | None
    total_fen: int
    accounts: list[AccountPublic]


class LogPublic(BaseModel):
    at: str
    actor_role: str
    actor_id: str
    action: str
    detail: str
    recorded_by: str


class EvvPublic(BaseModel):
    service_code: str
    elder_id: str
    date: date
    lat: float
    lon: float
    worker_id: str
    provider_id: str
    start_at: str
    end_at: str
    far_check_in: bool
    far_check_out: bool


class FeedbackPublic(BaseModel):
    rating: int
    on_time: bool | None
    attitude: int | None
    quality: int | None
    note: str | None
    by_role: str
    by_id: str
    at: str


class SignOffPublic(BaseModel):
    method: str
    signature_bytes: int | None
    signature_sha256: str | None
    witness_id: str | None
    at: str
    recorded_by: str


class OrderPublic(BaseModel):
    id: str
    elder_id: str
    state: str
    category: str
    request: str
    applied_by: str = Field(description="role:id")
    parent_id: str | None
    scheduled_at: str | None
    service_code: str | None
    unit: str | None
    tier: str | None
    basis: str | None
    quantity: int | None
    funding_source: str | None
    recurrence: dict[str, Any] | None
    unit_price_fen: int | None
    total_fen: int | None
    subsidy_fen: int | None = Field(description="paid by vouchers")
    elder_share_fen: int | None = Field(description="the elder's own share")
    provider_id: str | None
    worker_id: str | None
    check_in_at: str | None
    check_in_distance_m: float | None
    check_in_far: bool | None
    check_out_at: str | None
    check_out_distance_m: float | None
    check_out_far: bool | None
    rating: int | None
    sign_off_method: str | None
    signed_off_at: str | None
    cancel_reason: str | None
    created_at: str
    updated_at: str


class OrderDetail(OrderPublic):
    log: list[LogPublic]
    evv: EvvPublic | None
    feedback_form: FeedbackPublic | None
    sign_off: SignOffPublic | None
    ledger: list[TxnPublic]


class SignOffResult(BaseModel):
    order: OrderPublic
    ledger: list[TxnPublic] = Field(description="what the sign-off consumed (empty: unfunded)")


class SupervisionPublic(BaseModel):
    id: str
    order_id: str
    provider_id: str | None
    kind: str
    due_at: str | None
    done_at: str | None
    rating: int | None
    outcome: str | None
    note: str | None
    by: str | None
    created_at: str


# --- helpers ----------------------------------------------------------------------------------


def _now(rt: Runtime) -> tuple[int, datetime]:
    ms = rt.now_ms()
    return ms, from_ms(ms, SHANGHAI)


def _service_out(rt: Runtime, r: Row[Any]) -> ServicePublic:
    return ServicePublic(
        code=r.code,
        name_zh=r.name_zh,
        name_en=r.name_en,
        category=r.category,
        category_zh=ServiceCategory(r.category).zh,
        unit=r.unit,
        unit_price_fen=r.unit_price_fen,
        share_fen=SharePublic(
            free=r.share_free_fen, low_cost=r.share_low_cost_fen, paid=r.share_paid_fen
        ),
        active=r.active,
        created_at=_ms_req(rt, r.created_at),
        updated_at=_ms_req(rt, r.updated_at),
    )


def _provider_out(rt: Runtime, r: Row[Any]) -> ProviderPublic:
    return ProviderPublic(
        id=r.id,
        name=r.name,
        kind=r.kind,
        phone=r.phone,
        address=r.address,
        active=r.active,
        created_at=_ms_req(rt, r.created_at),
        updated_at=_ms_req(rt, r.updated_at),
    )


def _order_out(rt: Runtime, r: Row[Any]) -> OrderPublic:
    return OrderPublic(
        id=r.id,
        elder_id=r.elder_id,
        state=r.state,
        category=r.category,
        request=r.request,
        applied_by=f"{r.applied_by_role}:{r.applied_by_id}",
        parent_id=r.parent_id,
        scheduled_at=_ms(rt, r.scheduled_at),
        service_code=r.service_code,
        unit=r.unit,
        tier=r.tier,
        basis=r.basis,
        quantity=r.quantity,
        funding_source=r.funding_source,
        recurrence=r.recurrence,
        unit_price_fen=r.unit_price_fen,
        total_fen=r.total_fen,
        subsidy_fen=r.subsidy_fen,
        elder_share_fen=r.elder_share_fen,
        provider_id=r.provider_id,
        worker_id=r.worker_id,
        check_in_at=_ms(rt, r.check_in_at),
        check_in_distance_m=r.check_in_distance_m,
        check_in_far=r.check_in_far,
        check_out_at=_ms(rt, r.check_out_at),
        check_out_distance_m=r.check_out_distance_m,
        check_out_far=r.check_out_far,
        rating=r.rating,
        sign_off_method=r.sign_off_method,
        signed_off_at=_ms(rt, r.signed_off_at),
        cancel_reason=r.cancel_reason,
        created_at=_ms_req(rt, r.created_at),
        updated_at=_ms_req(rt, r.updated_at),
    )


def _txn_out(rt: Runtime, seq: int, t: Transaction) -> TxnPublic:
    return TxnPublic(
        seq=seq,
        id=t.id,
        kind=t.kind.value,
        at=_ms_req(rt, to_ms(t.at)),
        month=t.month,
        source_id=t.source,
        elder_id=t.elder_id or None,
        provider_id=t.provider_id or None,
        visit_id=t.visit_id or None,
        elder_share_fen=t.elder_share_fen,
        reverses=t.reverses,
        reason=t.reason,
        actor=t.actor,
        lines=[LinePublic(account=ln.account.key, fen=ln.fen) for ln in t.lines],
    )


def _txns_out(rt: Runtime, conn: Connection, txns: list[Transaction]) -> list[TxnPublic]:
    if not txns:
        return []
    seqs = dict(
        conn.execute(
            select(svc_ledger_txns.c.id, svc_ledger_txns.c.seq).where(
                svc_ledger_txns.c.id.in_([t.id for t in txns])
            )
        ).all()
    )
    return [_txn_out(rt, seqs[t.id], t) for t in txns]


def _actor(principal: Any) -> Actor:
    return Actor(ActorRole.STAFF, principal.label)


def _worker_actor(body: WorkerAct) -> Actor:
    return Actor(ActorRole.WORKER, body.worker_id)


def _oid(order_id: str) -> str:
    """A path order id, or 404 (a generated visit's id has an @ besides the id alphabet)."""
    if not _usable_path_id(order_id.replace("@", "-", 1)):
        raise _not_found("order", order_id)
    return order_id


def _lock(conn: Connection, order_id: str) -> Row[Any]:
    row = store.lock_order(conn, _oid(order_id))
    if row is None:
        raise _not_found("order", order_id)
    return row


def _fresh(conn: Connection, order_id: str) -> Row[Any]:
    return conn.execute(select(svc_orders).where(svc_orders.c.id == order_id)).one()


def _check_time(rt: Runtime, at: datetime, field: str) -> None:
    if to_ms(at) > rt.now_ms() + FUTURE_SKEW_MS:
        raise store.invalid(
            "time_in_future",
            f"{field} is in the future (more than 5 minutes ahead of the gateway's clock)",
            f"{field}晚于当前时间（超过5分钟）",
        )


# Fields never hashed into a stored request hash: an unsalted SHA-256 of a 4-6 digit PIN is
# undone by trying a million PINs (the PIN itself is kept only as a salted scrypt hash).
_SECRET_FIELDS = frozenset({"pin"})


def _body_hash(body: BaseModel | None, path: str) -> str:
    data = (
        body.model_dump(mode="json", by_alias=True, exclude=set(_SECRET_FIELDS))
        if body is not None
        else None
    )
    return hashlib.sha256(json.dumps([path, data], sort_keys=True).encode()).hexdigest()


def _idempotent(
    rt: Runtime,
    principal: Any,
    key: str | None,
    request_hash: str,
    work: Callable[[Connection], tuple[int, BaseModel]],
) -> JSONResponse:
    """Run `work` in one transaction; with a key, store its answer in that same transaction and
    answer a retry with it (a different body under the same key is a 409)."""

    def replay(conn: Connection) -> JSONResponse | None:
        if key is None:
            return None
        row = conn.execute(
            select(svc_idempotency).where(
                svc_idempotency.c.principal == principal.label, svc_idempotency.c.key == key
            )
        ).first()
        if row is None:
            return None
        if row.request_sha256 != request_hash:
            raise store.conflict(
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
                "该幂等键已用于另一个请求",
            )
        return JSONResponse(row.response, status_code=row.status_code)

    for _attempt in range(2):
        try:
            with rt.engine.begin() as conn:
                done = replay(conn)
                if done is not None:
                    return done
                if key is not None:
                    # Claimed first: on PostgreSQL a concurrent request with the same key waits
                    # here on the primary key until this one commits, then gets its answer.
                    conn.execute(
                        insert(svc_idempotency).values(
                            principal=principal.label,
                            key=key,
                            request_sha256=request_hash,
                            status_code=0,
                            response={},
                            created_at=rt.now_ms(),
                        )
                    )
                code, model = work(conn)
                body = model.model_dump(mode="json")
                if key is not None:
                    conn.execute(
                        update(svc_idempotency)
                        .where(
                            svc_idempotency.c.principal == principal.label,
                            svc_idempotency.c.key == key,
                        )
                        .values(status_code=code, response=body)
                    )
            return JSONResponse(body, status_code=code)
        except IntegrityError:
            if key is None or _attempt:
                raise
            # The same key committed by a concurrent request: answer with what it stored.
    raise AssertionError("unreachable")


router = APIRouter(
    prefix="/api/v1",
    # A station's staff: another station's elder or order answers 404, in our {code, zh, en}
    # shape (gateway/api.py `in_scope`); lists and bodies are scoped by the routes below.
    dependencies=[Depends(authenticate), Depends(in_scope(_not_found))],
    max_body_size=MAX_BODY_BYTES,
    route_class=_Route,
    responses=_ERRORS,
)
# The dispatched worker's own steps (accept, refuse, check-in, check-out) are open to staff and
# admin and to a service worker's token (Role.SERVICE_WORKER, person_id: a svc_workers id) for
# the orders dispatched to that worker only (`_worker_step`). A router's dependency applies to
# every route made on it, so these have a router of their own; see the end of this module.
worker_router = APIRouter(
    prefix="/api/v1",
    dependencies=[
        Depends(allow(Role.ADMIN, Role.STAFF, Role.SERVICE_WORKER)),
        Depends(in_scope(_not_found)),
    ],
    max_body_size=MAX_BODY_BYTES,
    route_class=_Route,
    responses=_ERRORS,
)


# --- catalogue --------------------------------------------------------------------------------


def _check_service(body: ServiceIn | ServicePatch, price: int, share: ShareIn) -> None:
    if share.free != 0:
        raise store.invalid(
            "service_free_not_free", "the free tier's share must be 0", "无偿档个人支付须为0"
        )
    for tier, fen in (("low_cost", share.low_cost), ("paid", share.paid)):
        if fen > price:
            raise store.invalid(
                "service_share_above_price",
                f"the {tier} share is above the unit price",
                f"{tier}档个人支付高于单价",
            )


@router.post("/services", status_code=status.HTTP_201_CREATED, tags=[TAG_CATALOGUE])
def create_service(body: ServiceIn, rt: RuntimeDep) -> ServicePublic:
    """Add a service to the catalogue: its category, unit, price per unit and the elder's own
    share per unit for each tier (the rest is what a voucher pays)."""
    _check_service(body, body.unit_price_fen, body.share_fen)
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        if store.service_exists(conn, body.code):
            raise store.conflict(
                "service_exists", f"service {body.code!r} exists", f"服务编号{body.code}已存在"
            )
        conn.execute(
            insert(svc_services).values(
                code=body.code,
                name_zh=body.name_zh,
                name_en=body.name_en,
                category=body.category.value,
                unit=body.unit.value,
                unit_price_fen=body.unit_price_fen,
                share_free_fen=0,
                share_low_cost_fen=body.share_fen.low_cost,
                share_paid_fen=body.share_fen.paid,
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        row = _require(conn, svc_services, body.code, "service", "code")
    return _service_out(rt, row)


@router.get("/services", tags=[TAG_CATALOGUE])
def list_services(
    rt: RuntimeDep,
    category: Annotated[str | None, Query(max_length=20)] = None,
    active: bool | None = None,
) -> list[ServicePublic]:
    """The catalogue, by category and code."""
    q = select(svc_services).order_by(svc_services.c.category, svc_services.c.code)
    if category is not None:
        try:
            cat = ServiceCategory.parse(category)
        except CareError as err:
            raise store.Refusal.of(err) from None
        q = q.where(svc_services.c.category == cat.value)
    if active is not None:
        q = q.where(svc_services.c.active == active)
    with _reading(rt) as conn:
        return [_service_out(rt, r) for r in conn.execute(q)]


@router.get("/services/{code}", tags=[TAG_CATALOGUE])
def get_service(code: str, rt: RuntimeDep) -> ServicePublic:
    with _reading(rt) as conn:
        return _service_out(rt, _require(conn, svc_services, code, "service", "code"))


@router.patch("/services/{code}", tags=[TAG_CATALOGUE])
def patch_service(code: str, body: ServicePatch, rt: RuntimeDep) -> ServicePublic:
    """Change names, prices or shares (agreed orders keep the prices they were agreed at), or
    retire a service (`active: false`: no new agreements)."""
    with rt.engine.begin() as conn:
        row = _require(conn, svc_services, code, "service", "code")
        price = body.unit_price_fen if body.unit_price_fen is not None else row.unit_price_fen
        share = body.share_fen or ShareIn(
            free=row.share_free_fen, low_cost=row.share_low_cost_fen, paid=row.share_paid_fen
        )
        _check_service(body, price, share)
        values: dict[str, Any] = {
            k: v
            for k, v in {
                "name_zh": body.name_zh,
                "name_en": body.name_en,
                "unit_price_fen": body.unit_price_fen,
                "active": body.active,
            }.items()
            if v is not None
        }
        values |= {
            "share_low_cost_fen": share.low_cost,
            "share_paid_fen": share.paid,
            "updated_at": rt.now_ms(),
        }
        conn.execute(update(svc_services).where(svc_services.c.code == code).values(**values))
        row = _require(conn, svc_services, code, "service", "code")
    return _service_out(rt, row)


@router.delete("/services/{code}", status_code=status.HTTP_204_NO_CONTENT, tags=[TAG_CATALOGUE])
def retire_service(code: str, rt: RuntimeDep) -> Response:
    """Retire a service (kept for the orders that name it; no new agreements)."""
    with rt.engine.begin() as conn:
        _require(conn, svc_services, code, "service", "code")
        conn.execute(
            update(svc_services)
            .where(svc_services.c.code == code)
            .values(active=False, updated_at=rt.now_ms())
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- providers --------------------------------------------------------------------------------


@router.post("/providers", status_code=status.HTTP_201_CREATED, tags=[TAG_PROVIDERS])
def create_provider(body: ProviderIn, rt: RuntimeDep) -> ProviderPublic:
    """A provider: the station's own team, a clinic, a canteen, a housekeeping firm, volunteers."""
    now = rt.now_ms()
    pid = new_id("pv")
    with rt.engine.begin() as conn:
        conn.execute(
            insert(svc_providers).values(
                id=pid, **body.model_dump(), active=True, created_at=now, updated_at=now
            )
        )
        row = _require(conn, svc_providers, pid, "provider")
    return _provider_out(rt, row)


@router.get("/providers", tags=[TAG_PROVIDERS])
def list_providers(rt: RuntimeDep, active: bool | None = None) -> list[ProviderPublic]:
    q = select(svc_providers).order_by(svc_providers.c.created_at, svc_providers.c.id)
    if active is not None:
        q = q.where(svc_providers.c.active == active)
    with _reading(rt) as conn:
        return [_provider_out(rt, r) for r in conn.execute(q)]


@router.get("/providers/{provider_id}", tags=[TAG_PROVIDERS])
def get_provider(provider_id: str, rt: RuntimeDep) -> ProviderPublic:
    with _reading(rt) as conn:
        return _provider_out(rt, _require(conn, svc_providers, provider_id, "provider"))


@router.patch("/providers/{provider_id}", tags=[TAG_PROVIDERS])
def patch_provider(provider_id: str, body: ProviderPatch, rt: RuntimeDep) -> ProviderPublic:
    values = body.model_dump(exclude_unset=True)
    if values.get("name", "") is None or values.get("active", False) is None:
        raise store.invalid("value_missing", "name and active cannot be null", "名称和状态不能为空")
    with rt.engine.begin() as conn:
        _require(conn, svc_providers, provider_id, "provider")
        conn.execute(
            update(svc_providers)
            .where(svc_providers.c.id == provider_id)
            .values(**values, updated_at=rt.now_ms())
        )
        row = _require(conn, svc_providers, provider_id, "provider")
    return _provider_out(rt, row)


@router.delete(
    "/providers/{provider_id}", status_code=status.HTTP_204_NO_CONTENT, tags=[TAG_PROVIDERS]
)
def retire_provider(provider_id: str, rt: RuntimeDep) -> Response:
    """Retire a provider (kept for its orders and statements; no new dispatch)."""
    with rt.engine.begin() as conn:
        _require(conn, svc_providers, provider_id, "provider")
        conn.execute(
            update(svc_providers)
            .where(svc_providers.c.id == provider_id)
            .values(active=False, updated_at=rt.now_ms())
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/providers/{provider_id}/outlets", status_code=status.HTTP_201_CREATED, tags=[TAG_PROVIDERS]
)
def create_outlet(provider_id: str, body: OutletIn, rt: RuntimeDep) -> OutletPublic:
    """An outlet (服务网点) of the provider."""
    oid = new_id("ou")
    with rt.engine.begin() as conn:
        _require(conn, svc_providers, provider_id, "provider")
        conn.execute(
            insert(svc_outlets).values(
                id=oid, provider_id=provider_id, **body.model_dump(), created_at=rt.now_ms()
            )
        )
        row = _require(conn, svc_outlets, oid, "outlet")
    return OutletPublic(**{**row._asdict(), "created_at": _ms_req(rt, row.created_at)})


@router.get("/providers/{provider_id}/outlets", tags=[TAG_PROVIDERS])
def list_outlets(provider_id: str, rt: RuntimeDep) -> list[OutletPublic]:
    with _reading(rt) as conn:
        _require(conn, svc_providers, provider_id, "provider")
        rows = conn.execute(
            select(svc_outlets)
            .where(svc_outlets.c.provider_id == provider_id)
            .order_by(svc_outlets.c.created_at, svc_outlets.c.id)
        ).all()
    return [OutletPublic(**{**r._asdict(), "created_at": _ms_req(rt, r.created_at)}) for r in rows]


@router.post(
    "/providers/{provider_id}/agreements",
    status_code=status.HTTP_201_CREATED,
    tags=[TAG_PROVIDERS],
)
def create_provider_agreement(
    provider_id: str, body: ProviderAgreementIn, rt: RuntimeDep, principal: PrincipalDep
) -> ProviderAgreementPublic:
    """What the provider delivers and at what price, from-to. A provider is dispatched only for
    a service it has an agreement for on the visit's day, at the order's agreed unit price."""
    if body.valid_until is not None and body.valid_until < body.valid_from:
        raise store.invalid(
            "agreement_range", "valid_until is before valid_from", "结束日期早于开始日期"
        )
    aid = new_id("pa")
    with rt.engine.begin() as conn:
        _require(conn, svc_providers, provider_id, "provider")
        _ref(conn, svc_services, body.service_code, "service", "code")
        for other in conn.execute(
            select(svc_provider_agreements).where(
                svc_provider_agreements.c.provider_id == provider_id,
                svc_provider_agreements.c.service_code == body.service_code,
            )
        ):
            if _days_overlap(
                body.valid_from, body.valid_until, other.valid_from, other.valid_until
            ):
                raise store.conflict(
                    "agreement_overlap",
                    f"an agreement for {body.service_code} overlaps ({other.id})",
                    f"该服务已有重叠期间的协议（{other.id}）",
                )
        conn.execute(
            insert(svc_provider_agreements).values(
                id=aid,
                provider_id=provider_id,
                **body.model_dump(),
                created_by=principal.label,
                created_at=rt.now_ms(),
            )
        )
        row = _require(conn, svc_provider_agreements, aid, "agreement")
    return ProviderAgreementPublic(**{**row._asdict(), "created_at": _ms_req(rt, row.created_at)})


def _days_overlap(a0: date, a1: date | None, b0: date, b1: date | None) -> bool:
    return (a1 is None or b0 <= a1) and (b1 is None or a0 <= b1)


@router.get("/providers/{provider_id}/agreements", tags=[TAG_PROVIDERS])
def list_provider_agreements(provider_id: str, rt: RuntimeDep) -> list[ProviderAgreementPublic]:
    with _reading(rt) as conn:
        _require(conn, svc_providers, provider_id, "provider")
        rows = conn.execute(
            select(svc_provider_agreements)
            .where(svc_provider_agreements.c.provider_id == provider_id)
            .order_by(svc_provider_agreements.c.service_code, svc_provider_agreements.c.valid_from)
        ).all()
    return [
        ProviderAgreementPublic(**{**r._asdict(), "created_at": _ms_req(rt, r.created_at)})
        for r in rows
    ]


@router.post(
    "/providers/{provider_id}/workers", status_code=status.HTTP_201_CREATED, tags=[TAG_PROVIDERS]
)
def create_worker(
    provider_id: str, body: WorkerIn, rt: RuntimeDep, principal: PrincipalDep
) -> WorkerPublic:
    wid = new_id("wk")
    with rt.engine.begin() as conn:
        _require(conn, svc_providers, provider_id, "provider")
        if body.outlet_id is not None:
            outlet = _ref(conn, svc_outlets, body.outlet_id, "outlet")
            if outlet.provider_id != provider_id:
                raise store.invalid(
                    "outlet_other_provider",
                    "the outlet belongs to another provider",
                    "该网点属于其他服务商",
                )
        if body.responder_id is not None:
            _person_ref(conn, rt, principal, body.responder_id)
        conn.execute(
            insert(svc_workers).values(
                id=wid,
                provider_id=provider_id,
                **body.model_dump(),
                active=True,
                created_at=rt.now_ms(),
            )
        )
        row = _require(conn, svc_workers, wid, "worker")
    return WorkerPublic(**{**row._asdict(), "created_at": _ms_req(rt, row.created_at)})


@router.get("/providers/{provider_id}/workers", tags=[TAG_PROVIDERS])
def list_workers(provider_id: str, rt: RuntimeDep) -> list[WorkerPublic]:
    with _reading(rt) as conn:
        _require(conn, svc_providers, provider_id, "provider")
        rows = conn.execute(
            select(svc_workers)
            .where(svc_workers.c.provider_id == provider_id)
            .order_by(svc_workers.c.created_at, svc_workers.c.id)
        ).all()
    return [WorkerPublic(**{**r._asdict(), "created_at": _ms_req(rt, r.created_at)}) for r in rows]


# --- orders -----------------------------------------------------------------------------------


def _applicant(body: OrderApply, principal: Principal) -> str:
    """Who applied, when `applied_by.id` is not given: the elder for `elder`; for `family` the
    relative a family member's token acts for, else an unnamed relative of the elder (a desk
    entering a phone call: the caller is in the log as who entered it, never as the relative);
    the caller for staff and the system."""
    role = body.applied_by.role
    if body.applied_by.id is not None:
        return body.applied_by.id
    if role == "elder":
        return body.elder_id
    if role == "family":
        if principal.role is Role.FAMILY and principal.person_id:
            return principal.person_id
        return f"family-of:{body.elder_id}"
    return principal.label


@router.post("/service-orders", status_code=status.HTTP_201_CREATED, tags=[TAG_ORDERS])
def apply_for_service(
    body: OrderApply, rt: RuntimeDep, principal: PrincipalDep, idempotency_key: IdemKey = None
) -> OrderPublic:
    """受理申请: an application by the elder, family, staff or the system (e.g. a welfare visit
    after a no-water-use alarm). The order starts `applied`, its handling log with this step.
    A retry with the same `Idempotency-Key` (a double click, a lost answer) gets the first
    order back instead of a second one."""
    who = _applicant(body, principal)

    def work(conn: Connection) -> tuple[int, BaseModel]:
        now_ms, now = _now(rt)
        oid = new_id("so")
        command = Apply(
            Actor(ActorRole(body.applied_by.role), who),
            oid,
            body.elder_id,
            GeoPoint(body.home.lat, body.home.lon),
            body.category,
            body.request,
        )
        order = open_order(command, now)
        _elder_ref(conn, rt, principal, body.elder_id)
        _check_not_gone(conn, body.elder_id)
        store.insert_order(conn, order, now_ms, principal.label)
        return 201, _order_out(rt, _fresh(conn, oid))

    return _idempotent(  # type: ignore[return-value]
        rt, principal, idempotency_key, _body_hash(body, "apply"), work
    )


@router.get("/service-orders", tags=[TAG_ORDERS])
def list_orders(
    rt: RuntimeDep,
    principal: PrincipalDep,
    elder_id: QId = None,
    provider_id: QId = None,
    state: OrderState | None = None,
    parent_id: QId = None,
    month: Annotated[str | None, Query(max_length=7, description="scheduled in YYYY-MM")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[OrderPublic]:
    """Orders, by scheduled time then creation; filters combine. A station's staff: the
    orders of their station's elders and of those no station has taken yet."""
    q = select(svc_orders)
    for col, value in (
        (svc_orders.c.elder_id, elder_id),
        (svc_orders.c.provider_id, provider_id),
        (svc_orders.c.parent_id, parent_id),
        (svc_orders.c.state, state.value if state else None),
    ):
        if value is not None:
            q = q.where(col == value)
    if month is not None:
        lo, hi = store.month_bounds_ms(_month_query(month) or "")
        q = q.where(svc_orders.c.scheduled_at >= lo, svc_orders.c.scheduled_at < hi)
    q = q.order_by(svc_orders.c.scheduled_at, svc_orders.c.created_at, svc_orders.c.id)
    with _reading(rt) as conn:
        q = q.where(caller_scope(conn, rt, principal).on_board_filter(svc_orders.c.elder_id))
        rows = conn.execute(q.limit(limit).offset(offset)).all()
    return [_order_out(rt, r) for r in rows]


@router.get("/service-orders/{order_id}", tags=[TAG_ORDERS])
def get_order(order_id: str, rt: RuntimeDep) -> OrderDetail:
    """The order with its handling log (who, when, what), its EVV record, feedback form,
    sign-off and the ledger transactions of the visit."""
    with _reading(rt) as conn:
        row = conn.execute(select(svc_orders).where(svc_orders.c.id == _oid(order_id))).first()
        if row is None:
            raise _not_found("order", order_id)
        log = conn.execute(
            select(svc_order_log)
            .where(svc_order_log.c.order_id == order_id)
            .order_by(svc_order_log.c.id)
        ).all()
        evv = conn.execute(select(svc_visits).where(svc_visits.c.order_id == order_id)).first()
        fb = conn.execute(select(svc_feedback).where(svc_feedback.c.order_id == order_id)).first()
        so = conn.execute(
            select(
                svc_sign_offs.c.method,
                func.length(svc_sign_offs.c.signature).label("size"),
                svc_sign_offs.c.signature_sha256,
                svc_sign_offs.c.witness_id,
                svc_sign_offs.c.at,
                svc_sign_offs.c.recorded_by,
            ).where(svc_sign_offs.c.order_id == order_id)
        ).first()
        txns = store.journal(conn, svc_ledger_txns.c.visit_id == order_id)
        ledger = _txns_out(rt, conn, txns)
    return OrderDetail(
        **_order_out(rt, row).model_dump(),
        log=[
            LogPublic(
                at=_ms_req(rt, e.at),
                actor_role=e.actor_role,
                actor_id=e.actor_id,
                action=e.action,
                detail=e.detail,
                recorded_by=e.recorded_by,
            )
            for e in log
        ],
        evv=None
        if evv is None
        else EvvPublic(
            **{
                **evv._asdict(),
                "start_at": _ms_req(rt, evv.start_at),
                "end_at": _ms_req(rt, evv.end_at),
            }
        ),
        feedback_form=None
        if fb is None
        else FeedbackPublic(
            **{k: v for k, v in fb._asdict().items() if k != "order_id"}
            | {"at": _ms_req(rt, fb.at)}
        ),
        sign_off=None
        if so is None
        else SignOffPublic(
            method=so.method,
            signature_bytes=so.size,
            signature_sha256=so.signature_sha256,
            witness_id=so.witness_id,
            at=_ms_req(rt, so.at),
            recorded_by=so.recorded_by,
        ),
        ledger=ledger,
    )


@router.post("/service-orders/{order_id}/agree", tags=[TAG_ORDERS])
def agree(order_id: str, body: OrderAgree, rt: RuntimeDep, principal: PrincipalDep) -> OrderPublic:
    """签订协议: what, how much per visit, the price (the catalogue's, fixed now), who pays
    (a voucher source, or the elder), and either one visit's time or a weekly recurrence."""
    _now_ms, now = _now(rt)
    with rt.engine.begin() as conn:
        row = _lock(conn, order_id)
        _check_not_gone(conn, row.elder_id)
        svc = _ref(conn, svc_services, body.service_code, "service", "code")
        if not svc.active:
            raise store.conflict(
                "service_retired", f"service {svc.code} is retired", f"服务{svc.code}已停用"
            )
        tier, basis = body.tier, body.basis
        if body.funding_source is not None:
            _ref(conn, svc_voucher_sources, body.funding_source, "source")
            wallet = conn.execute(
                select(svc_voucher_wallets).where(
                    svc_voucher_wallets.c.source_id == body.funding_source,
                    svc_voucher_wallets.c.elder_id == row.elder_id,
                )
            ).first()
            if wallet is None:
                raise store.invalid(
                    "not_enrolled",
                    f"elder {row.elder_id} has no vouchers from {body.funding_source}",
                    f"该老人未享受{body.funding_source}服务券",
                )
            if tier is not None and tier.value != wallet.tier:
                raise store.invalid(
                    "tier_mismatch",
                    f"the elder's tier with {body.funding_source} is {wallet.tier}, not {tier}",
                    f"该老人在{body.funding_source}的档次为{wallet.tier}，不是{tier}",
                )
            tier, basis = ServiceTier(wallet.tier), basis or wallet.basis
        if tier is None:
            raise store.invalid(
                "tier_missing",
                "the tier is needed when no funding source gives it",
                "须注明服务档次",
            )
        rec = None
        if body.recurrence is not None:
            r = body.recurrence
            rec = Recurrence(frozenset(r.weekdays), time.fromisoformat(r.at), r.start, r.end)
        agreement = make_agreement(
            store.service_from_row(svc), tier, body.quantity, body.funding_source, rec
        )
        extra: dict[str, Any] = {"basis": basis}
        if body.scheduled_at is not None:
            extra["scheduled_at"] = to_ms(body.scheduled_at)
        store.transition(
            conn, row, Agree(_actor(principal), agreement), now, principal.label, extra
        )
        row = _fresh(conn, order_id)
    return _order_out(rt, row)


@router.post("/service-orders/{order_id}/dispatch", tags=[TAG_ORDERS])
def dispatch(
    order_id: str, body: DispatchIn, rt: RuntimeDep, principal: PrincipalDep
) -> OrderPublic:
    """派工: to a provider and one of its workers. The provider needs an agreement in force for
    the service on the visit's day, at the order's unit price."""
    now_ms, now = _now(rt)
    with rt.engine.begin() as conn:
        row = _lock(conn, order_id)
        _check_not_gone(conn, row.elder_id)
        prov = _ref(conn, svc_providers, body.provider_id, "provider")
        worker = _ref(conn, svc_workers, body.worker_id, "worker")
        if not prov.active or not worker.active:
            raise store.conflict(
                "retired", "the provider or worker is retired", "服务商或服务人员已停用"
            )
        if worker.provider_id != prov.id:
            raise store.invalid(
                "worker_other_provider",
                "the worker works for another provider",
                "该服务人员不属于该服务商",
            )
        if row.service_code is not None:
            day = from_ms(row.scheduled_at or now_ms, SHANGHAI).date()
            pa = conn.execute(
                select(svc_provider_agreements).where(
                    svc_provider_agreements.c.provider_id == prov.id,
                    svc_provider_agreements.c.service_code == row.service_code,
                    svc_provider_agreements.c.valid_from <= day,
                    or_(
                        svc_provider_agreements.c.valid_until.is_(None),
                        svc_provider_agreements.c.valid_until >= day,
                    ),
                )
            ).first()
            if pa is None:
                raise store.conflict(
                    "provider_no_agreement",
                    f"{prov.id} has no agreement for {row.service_code} on {day}",
                    f"该服务商{day}没有{row.service_code}服务协议",
                )
            if pa.unit_price_fen != row.unit_price_fen:
                # What the provider is paid must be what the order charges: else the
                # statements would not add up.
                raise store.conflict(
                    "provider_price_differs",
                    f"{prov.id} is contracted at {pa.unit_price_fen} fen, the order at "
                    f"{row.unit_price_fen}",
                    f"服务商协议单价{pa.unit_price_fen}分与工单单价{row.unit_price_fen}分不符",
                )
        store.transition(
            conn, row, Dispatch(_actor(principal), prov.id, worker.id), now, principal.label
        )
        row = _fresh(conn, order_id)
    return _order_out(rt, row)


def own_worker(principal: Principal) -> str | None:
    """The svc_workers id a service worker's token acts for; None for staff and admin (who may
    enter any worker's step). 403 for a service worker's token that names no worker."""
    if principal.role is not Role.SERVICE_WORKER:
        return None
    if not principal.person_id:
        raise store.Refusal(
            403,
            "no_worker",
            "this service worker token acts for no worker",
            "该服务人员令牌未关联服务人员",
        )
    return principal.person_id


def _worker_step(
    rt: Runtime,
    principal: Principal,
    body: WorkerAct,
    order_id: str,
    make: Callable[[Row[Any], datetime], Any],
) -> OrderPublic:
    _ms_now, now = _now(rt)
    me = own_worker(principal)
    if me is not None and body.worker_id != me:
        raise store.Refusal(
            403,
            "not_yourself",
            "a service worker answers as themselves only (worker_id)",
            "服务人员只能以本人身份操作（worker_id）",
        )
    with rt.engine.begin() as conn:
        row = _lock(conn, order_id)
        if me is not None and row.worker_id != me:
            raise _not_found("order", order_id)  # not theirs: as if it did not exist
        command = make(row, now)
        if isinstance(command, CheckIn):
            # A visit dispatched before the death or move was recorded: none after that day
            # (that day itself may have had one, before).
            gone = gone_since(conn, row.elder_id)
            if gone is not None and command.at.astimezone(SHANGHAI).date() > gone[1]:
                raise _gone_refusal(row.elder_id, *gone)
        after = store.transition(conn, row, command, now, principal.label)
        if after.state is OrderState.SERVED:
            store.record_visit(conn, after)
        row = _fresh(conn, order_id)
    return _order_out(rt, row)


@worker_router.post("/service-orders/{order_id}/accept", tags=[TAG_ORDERS])
def accept(
    order_id: str, body: WorkerAct, rt: RuntimeDep, principal: PrincipalAnyDep
) -> OrderPublic:
    """The dispatched worker accepts (接单)."""
    return _worker_step(rt, principal, body, order_id, lambda r, n: Accept(_worker_actor(body)))


@worker_router.post("/service-orders/{order_id}/refuse", tags=[TAG_ORDERS])
def refuse(
    order_id: str, body: RefuseIn, rt: RuntimeDep, principal: PrincipalAnyDep
) -> OrderPublic:
    """The dispatched worker refuses, with a reason: the order awaits dispatch again."""
    return _worker_step(
        rt, principal, body, order_id, lambda r, n: Refuse(_worker_actor(body), body.reason)
    )


@worker_router.post("/service-orders/{order_id}/check-in", tags=[TAG_ORDERS])
def check_in(
    order_id: str, body: PresenceIn, rt: RuntimeDep, principal: PrincipalAnyDep
) -> OrderPublic:
    """签到 with time and place; farther than 300 m from the elder's home is flagged (kept)."""
    _check_time(rt, body.at, "at")
    where = GeoPoint(body.lat, body.lon)
    return _worker_step(
        rt, principal, body, order_id, lambda r, n: CheckIn(_worker_actor(body), body.at, where)
    )


@worker_router.post("/service-orders/{order_id}/check-out", tags=[TAG_ORDERS])
def check_out(
    order_id: str, body: PresenceIn, rt: RuntimeDep, principal: PrincipalAnyDep
) -> OrderPublic:
    """签退: the visit is served and its EVV record (the six facts) is written."""
    _check_time(rt, body.at, "at")
    where = GeoPoint(body.lat, body.lon)
    return _worker_step(
        rt, principal, body, order_id, lambda r, n: CheckOut(_worker_actor(body), body.at, where)
    )


@router.post("/service-orders/{order_id}/feedback", tags=[TAG_ORDERS])
def feedback(
    order_id: str, body: FeedbackIn, rt: RuntimeDep, principal: PrincipalDep
) -> OrderPublic:
    """服务情况反馈表: rating 1-5, on time, attitude, quality, a note."""
    now_ms, now = _now(rt)
    with rt.engine.begin() as conn:
        row = _lock(conn, order_id)
        by = body.by_id or (row.elder_id if body.by_role == "elder" else principal.label)
        actor = Actor(ActorRole(body.by_role), by)
        store.transition(
            conn, row, Feedback(actor, body.rating, body.note or ""), now, principal.label
        )
        conn.execute(
            insert(svc_feedback).values(
                order_id=order_id,
                rating=body.rating,
                on_time=body.on_time,
                attitude=body.attitude,
                quality=body.quality,
                note=body.note,
                by_role=body.by_role,
                by_id=by,
                at=now_ms,
            )
        )
        row = _fresh(conn, order_id)
    return _order_out(rt, row)


def _signature(b64: str | None) -> tuple[bytes, str] | None:
    if b64 is None:
        return None
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise store.invalid(
            "signature_base64", "the signature is not base64", "签名不是有效的base64"
        ) from None
    if len(data) > MAX_SIGNATURE_BYTES:
        raise store.invalid(
            "signature_too_large",
            f"the signature image is over {MAX_SIGNATURE_BYTES} bytes",
            f"签名图片超过{MAX_SIGNATURE_BYTES}字节",
        )
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data, "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return data, "image/jpeg"
    raise store.invalid(
        "signature_format", "the signature must be a PNG or JPEG image", "签名须为PNG或JPEG图片"
    )


def _check_pin(rt: Runtime, elder_id: str, pin: str | None) -> None:
    """The PIN against its hash; a wrong one is counted (committed even though refused)."""
    if pin is None:
        raise store.invalid("pin_missing", "the PIN is missing", "缺少密码")
    with rt.engine.begin() as conn:
        row = store.pin_row(conn, elder_id)
        if row is None:
            raise store.conflict("pin_not_set", "the elder has no PIN", "该老人未设置密码")
        if row.failures >= store.PIN_MAX_FAILURES:
            raise store.conflict(
                "pin_locked",
                "too many wrong PINs: sign off with a staff witness and set a new PIN",
                "密码错误次数过多已锁定：请由工作人员见证签收并重设密码",
            )
        ok = store.verify_pin(pin, row.pin_hash)
        conn.execute(
            update(store.svc_elder_pins)
            .where(store.svc_elder_pins.c.elder_id == elder_id)
            .values(failures=0 if ok else row.failures + 1)
        )
    if not ok:
        raise store.invalid("sign_off_pin_wrong", "the PIN is wrong", "密码错误")


def _consume(conn: Connection, order: Any, now: datetime, actor: str) -> list[Transaction]:
    charge = visit_charge(order)
    if charge.funding_source is None:
        return []
    policy = store.policy_of(conn, charge.funding_source)
    return store.move_vouchers(conn, Consume(charge, actor), policy, now)


@router.post("/service-orders/{order_id}/sign-off", tags=[TAG_ORDERS])
def sign_off(
    order_id: str,
    body: SignOffIn,
    rt: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdemKey = None,
) -> SignOffResult:
    """签字认证: a signature image, the elder's PIN, or a staff witness (not the worker). In the
    same transaction the visit's subsidy is consumed from the elder's vouchers (locked): when
    they do not cover it the sign-off is refused (409 voucher_insufficient) and nothing changes."""
    sig = _signature(body.signature_base64) if body.method is SignOffMethod.SIGNATURE else None
    if body.method is SignOffMethod.SIGNATURE and sig is None:
        raise store.invalid(
            "sign_off_no_signature", "the signature image is missing", "缺少签名图片"
        )
    if body.method is SignOffMethod.WITNESSED and body.witness_id is None:
        raise store.invalid("sign_off_witness_invalid", "witness_id is needed", "须注明见证人")
    pin_ok = False  # set only once the PIN has been checked against its hash, below
    if body.method is SignOffMethod.PIN:
        with _reading(rt) as conn:
            order_row = conn.execute(
                select(svc_orders).where(svc_orders.c.id == _oid(order_id))
            ).first()
        if order_row is None:
            raise _not_found("order", order_id)
        # The order's state before the PIN: the other way round, an order not ready for its
        # sign-off answered a right PIN 409 and a wrong one 422 (an oracle for the PIN), and
        # wrong tries on it locked the elder's PIN. Not ready: the PIN is not looked at, and
        # `work` refuses under the order's lock with the same 409 as any method (a retry
        # with its Idempotency-Key still gets its first answer). Ready by then after all (a
        # race): the domain refuses an unchecked PIN, so nothing is signed off unverified.
        probe = SignOff(_actor(principal), SignOffMethod.PIN, None, pin_ok=True)
        if store.can_move(order_row, probe, _now(rt)[1]):
            _check_pin(rt, order_row.elder_id, body.pin)
            pin_ok = True

    def work(conn: Connection) -> tuple[int, BaseModel]:
        now_ms, now = _now(rt)
        row = _lock(conn, order_id)
        ref: str | None = None
        if sig is not None:
            ref = hashlib.sha256(sig[0]).hexdigest()
        if body.method is SignOffMethod.WITNESSED:
            assert body.witness_id is not None
            w = _person_ref(conn, rt, principal, body.witness_id)
            if w.role != "staff":
                raise store.invalid(
                    "sign_off_witness_invalid",
                    "the witness must be station staff",
                    "见证人须为工作人员",
                )
            # The witness vouches for the visit to the elder's station: its own staff (or staff
            # of no station, the sub-district's), whoever enters the sign-off (an admin too).
            elder_station = conn.execute(
                select(elder_profiles.c.station).where(elder_profiles.c.elder_id == row.elder_id)
            ).scalar()
            home = CareScope(principal, elder_station, None)
            if elder_station is not None and not home.sees_person(conn, body.witness_id):
                raise store.invalid(
                    "sign_off_witness_other_station",
                    f"the witness must be staff of the elder's station ({elder_station})",
                    f"见证人须为该老人所属服务站（{elder_station}）的工作人员",
                )
            worker = conn.execute(
                select(svc_workers.c.responder_id).where(svc_workers.c.id == row.worker_id)
            ).scalar()
            # The domain refuses a witness who is the worker: the worker's own responder
            # identity counts as the worker.
            ref = body.witness_id if worker != body.witness_id else (row.worker_id or "")
        command = SignOff(_actor(principal), body.method, ref, pin_ok=pin_ok)
        after = store.transition(
            conn, row, command, now, principal.label, {"signed_off_at": now_ms}
        )
        conn.execute(
            insert(svc_sign_offs).values(
                order_id=order_id,
                method=body.method.value,
                signature=sig[0] if sig else None,
                signature_type=sig[1] if sig else None,
                signature_sha256=ref if sig else None,
                witness_id=body.witness_id if body.method is SignOffMethod.WITNESSED else None,
                at=now_ms,
                recorded_by=principal.label,
            )
        )
        txns = _consume(conn, after, now, principal.label)
        store.add_follow_up(conn, after, now_ms, new_id("sv"))
        return 200, SignOffResult(
            order=_order_out(rt, _fresh(conn, order_id)), ledger=_txns_out(rt, conn, txns)
        )

    return _idempotent(  # type: ignore[return-value]
        rt, principal, idempotency_key, _body_hash(body, f"sign-off:{order_id}"), work
    )


@router.post("/service-orders/{order_id}/settle", tags=[TAG_ORDERS])
def settle(
    order_id: str, rt: RuntimeDep, principal: PrincipalDep, idempotency_key: IdemKey = None
) -> SignOffResult:
    """Consume the vouchers of a signed-off visit again after its consumption was reversed (a
    correction): 409 when the visit is consumed already or the vouchers do not cover it."""

    def work(conn: Connection) -> tuple[int, BaseModel]:
        _ms_now, now = _now(rt)
        row = _lock(conn, order_id)
        order = store.order_from_row(row)
        txns = _consume(conn, order, now, principal.label)
        if not txns:
            raise store.conflict(
                "no_funding_source", "the visit is not voucher-funded", "该服务不使用服务券"
            )
        return 200, SignOffResult(order=_order_out(rt, row), ledger=_txns_out(rt, conn, txns))

    return _idempotent(  # type: ignore[return-value]
        rt, principal, idempotency_key, _body_hash(None, f"settle:{order_id}"), work
    )


@router.post("/service-orders/{order_id}/close", tags=[TAG_ORDERS])
def close(order_id: str, body: NoteBody, rt: RuntimeDep, principal: PrincipalDep) -> OrderPublic:
    """Close a signed-off visit, or end a recurring agreement (no more visits generated)."""
    _ms_now, now = _now(rt)
    with rt.engine.begin() as conn:
        row = _lock(conn, order_id)
        store.transition(conn, row, Close(_actor(principal), body.note or ""), now, principal.label)
        row = _fresh(conn, order_id)
    return _order_out(rt, row)


@router.post("/service-orders/{order_id}/cancel", tags=[TAG_ORDERS])
def cancel(
    order_id: str,
    body: CancelIn,
    rt: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdemKey = None,
) -> OrderPublic:
    """Cancel, with a reason, before the worker checks in (a begun visit is finished). Points
    that paid the order go back to whoever paid them (a `refund` in the points ledger) in the
    same transaction, once: a second cancel is refused, a retry with the same
    `Idempotency-Key` gets the first answer. Vouchers are consumed only at sign-off, after
    check-in, so a cancellable order has spent none."""

    def work(conn: Connection) -> tuple[int, BaseModel]:
        _ms_now, now = _now(rt)
        row = _lock(conn, order_id)
        store.transition(conn, row, Cancel(_actor(principal), body.reason), now, principal.label)
        # Under the order's lock, which a redemption of this order takes first too.
        PointsStore(rt.engine, rt.tz, rt.clock).refund_order(
            conn, row.id, body.reason, principal.label, now
        )
        return 200, _order_out(rt, _fresh(conn, row.id))

    return _idempotent(  # type: ignore[return-value]
        rt, principal, idempotency_key, _body_hash(body, f"cancel:{order_id}"), work
    )


def _check_range(body: GenerateIn) -> None:
    if body.to < body.from_:
        raise store.invalid("range_invalid", "`to` is before `from`", "结束日期早于开始日期")
    if (body.to - body.from_).days >= MAX_GENERATE_DAYS:
        raise store.invalid(
            "range_too_long",
            f"at most {MAX_GENERATE_DAYS} days at a time",
            f"一次最多生成{MAX_GENERATE_DAYS}天",
        )


def _generate(
    conn: Connection, parent_row: Row[Any], body: GenerateIn, now_ms: int, who: str
) -> list[str]:
    parent = store.order_from_row(parent_row)
    end = body.to
    gone = gone_since(conn, parent_row.elder_id)
    if gone is not None:
        # No visit from the day of the death or move on (the agreement itself is the
        # station's to close).
        end = min(end, gone[1] - timedelta(days=1))
        if end < body.from_:
            return []
    existing = {
        r.id
        for r in conn.execute(
            select(svc_orders.c.id).where(svc_orders.c.parent_id == parent_row.id)
        )
    }
    children = generate_occurrences(parent, body.from_, end, existing, from_ms(now_ms, SHANGHAI))
    for child in children:
        store.insert_order(conn, child, now_ms, who)
        conn.execute(
            update(svc_orders).where(svc_orders.c.id == child.id).values(basis=parent_row.basis)
        )
    return [c.id for c in children]


@router.post(
    "/service-orders/{order_id}/generate", status_code=status.HTTP_201_CREATED, tags=[TAG_ORDERS]
)
def generate(
    order_id: str, body: GenerateIn, rt: RuntimeDep, principal: PrincipalDep
) -> list[OrderPublic]:
    """The visits of a recurring order for its due days in [from, to] (inclusive), each an
    agreed order `<id>@YYYY-MM-DD`; days already generated are skipped, so running it twice
    creates nothing new."""
    _check_range(body)
    now_ms = rt.now_ms()
    with rt.engine.begin() as conn:
        row = _lock(conn, order_id)
        ids = _generate(conn, row, body, now_ms, principal.label)
        rows = conn.execute(
            select(svc_orders).where(svc_orders.c.id.in_(ids)).order_by(svc_orders.c.id)
        ).all()
    return [_order_out(rt, r) for r in rows]


class GeneratedPublic(BaseModel):
    parents: int
    created: int
    ids: list[str]


@router.post("/service-orders/generate", tags=[TAG_ORDERS])
def generate_all(body: GenerateIn, rt: RuntimeDep, principal: PrincipalDep) -> GeneratedPublic:
    """The visits of every agreed recurring order for [from, to] (the daily scheduler's call)."""
    _check_range(body)
    now_ms = rt.now_ms()
    ids: list[str] = []
    with rt.engine.begin() as conn:
        parents = conn.execute(
            select(svc_orders.c.id)
            .where(
                svc_orders.c.state == OrderState.AGREED.value,
                svc_orders.c.recurrence.is_not(None),
                svc_orders.c.parent_id.is_(None),
            )
            .order_by(svc_orders.c.id)
        ).all()
        for p in parents:
            row = store.lock_order(conn, p.id)
            assert row is not None
            if row.recurrence is not None:  # a JSON null reads as None
                ids += _generate(conn, row, body, now_ms, principal.label)
    return GeneratedPublic(parents=len(parents), created=len(ids), ids=ids)


@router.get(
    "/service-orders/{order_id}/signature",
    tags=[TAG_ORDERS],
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
def get_signature(order_id: str, rt: RuntimeDep) -> Response:
    """The elder's signature image of a signed-off visit."""
    with _reading(rt) as conn:
        row = conn.execute(
            select(svc_sign_offs.c.signature, svc_sign_offs.c.signature_type).where(
                svc_sign_offs.c.order_id == _oid(order_id)
            )
        ).first()
    if row is None or row.signature is None:
        raise _not_found("signature of order", order_id)
    return Response(content=bytes(row.signature), media_type=row.signature_type)


@router.put(
    "/elders/{elder_id}/service-pin", status_code=status.HTTP_204_NO_CONTENT, tags=[TAG_ORDERS]
)
def set_pin(elder_id: str, body: PinIn, rt: RuntimeDep) -> Response:
    """Set (or reset, unlocking) the elder's sign-off PIN; only its salted hash is kept."""
    hashed = store.hash_pin(body.pin)
    with rt.engine.begin() as conn:
        _require(conn, elders, elder_id, "elder")
        ins = store._insert(conn)
        stmt = ins(store.svc_elder_pins).values(
            elder_id=elder_id, pin_hash=hashed, failures=0, set_at=rt.now_ms()
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[store.svc_elder_pins.c.elder_id],
                set_={
                    "pin_hash": stmt.excluded.pin_hash,
                    "failures": 0,
                    "set_at": stmt.excluded.set_at,
                },
            )
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- supervision ------------------------------------------------------------------------------


def _supervision_out(rt: Runtime, r: Row[Any]) -> SupervisionPublic:
    return SupervisionPublic(
        **{
            **r._asdict(),
            "due_at": _ms(rt, r.due_at),
            "done_at": _ms(rt, r.done_at),
            "created_at": _ms_req(rt, r.created_at),
        }
    )


@router.post("/service-orders/{order_id}/follow-ups", tags=[TAG_SUPERVISION])
def follow_up(
    order_id: str, body: FollowUpIn, rt: RuntimeDep, principal: PrincipalDep
) -> SupervisionPublic:
    """回访: the follow-up call after a signed-off visit was made (closes the one due)."""
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        row = _lock(conn, order_id)
        due = conn.execute(
            select(svc_supervision)
            .where(
                svc_supervision.c.order_id == order_id,
                svc_supervision.c.kind == "follow_up",
                svc_supervision.c.done_at.is_(None),
            )
            .with_for_update()
        ).first()
        values = {
            "done_at": now,
            "rating": body.rating,
            "outcome": body.outcome,
            "note": body.note,
            "by": principal.label,
        }
        if due is not None:
            sid = due.id
            conn.execute(
                update(svc_supervision).where(svc_supervision.c.id == sid).values(**values)
            )
        else:
            sid = new_id("sv")
            conn.execute(
                insert(svc_supervision).values(
                    id=sid,
                    order_id=order_id,
                    provider_id=row.provider_id,
                    kind="follow_up",
                    created_at=now,
                    **values,
                )
            )
        out = conn.execute(select(svc_supervision).where(svc_supervision.c.id == sid)).one()
    return _supervision_out(rt, out)


@router.post(
    "/service-orders/{order_id}/complaints",
    status_code=status.HTTP_201_CREATED,
    tags=[TAG_SUPERVISION],
)
def complaint(
    order_id: str, body: ComplaintIn, rt: RuntimeDep, principal: PrincipalDep
) -> SupervisionPublic:
    """A complaint about a visit (投诉), for supervision."""
    now = rt.now_ms()
    sid = new_id("sv")
    with rt.engine.begin() as conn:
        row = _lock(conn, order_id)
        conn.execute(
            insert(svc_supervision).values(
                id=sid,
                order_id=order_id,
                provider_id=row.provider_id,
                kind="complaint",
                note=body.note,
                by=principal.label,
                created_at=now,
            )
        )
        out = conn.execute(select(svc_supervision).where(svc_supervision.c.id == sid)).one()
    return _supervision_out(rt, out)


@router.get("/service-supervision/follow-ups", tags=[TAG_SUPERVISION])
def follow_ups_due(
    rt: RuntimeDep, principal: PrincipalDep, provider_id: QId = None
) -> list[SupervisionPublic]:
    """Follow-up calls not yet made, the most overdue first (a station's staff: those of the
    orders they see)."""
    q = select(svc_supervision).where(
        svc_supervision.c.kind == "follow_up", svc_supervision.c.done_at.is_(None)
    )
    if provider_id is not None:
        q = q.where(svc_supervision.c.provider_id == provider_id)
    with _reading(rt) as conn:
        seen = caller_scope(conn, rt, principal).on_board_filter(svc_orders.c.elder_id)
        q = q.where(svc_supervision.c.order_id.in_(select(svc_orders.c.id).where(seen)))
        rows = conn.execute(q.order_by(svc_supervision.c.due_at, svc_supervision.c.id)).all()
    return [_supervision_out(rt, r) for r in rows]


class SupervisionFigures(BaseModel):
    provider_id: str
    service_code: str
    scheduled: int = Field(description="visits scheduled in the month")
    done: int = Field(description="visits checked out in the month")
    late: int = Field(description="checked in more than 30 minutes after the scheduled time")
    missed: int = Field(description="scheduled, not cancelled, no check-in a day later")
    far_check_ins: int = Field(description="checked in or out more than 300 m from home")
    ratings: int
    rating_avg: float | None
    complaints: int
    follow_ups_due: int = Field(description="calls not yet made whose due time has passed")
    follow_ups_open: int = Field(description="calls not yet made")


@router.get("/service-supervision", tags=[TAG_SUPERVISION])
def supervision(
    rt: RuntimeDep,
    principal: PrincipalDep,
    month: MonthQ,
    provider_id: QId = None,
) -> list[SupervisionFigures]:
    """Per provider and service, for the month: visits done, late, missed, ratings,
    complaints, follow-up calls due. A station's staff: of their station's elders' orders (and
    those of elders no station has taken yet), as the order list."""
    month = _month_query(month) or ""
    lo, hi = store.month_bounds_ms(month)
    now = rt.now_ms()
    o = svc_orders.c
    with _reading(rt) as conn:
        seen = caller_scope(conn, rt, principal).on_board_filter(o.elder_id)
        q = select(svc_orders).where(
            seen,
            o.provider_id.is_not(None),
            o.service_code.is_not(None),
            or_(
                and_(o.scheduled_at >= lo, o.scheduled_at < hi),
                and_(o.check_out_at >= lo, o.check_out_at < hi),
            ),
        )
        if provider_id is not None:
            q = q.where(o.provider_id == provider_id)
        orders = conn.execute(q).all()
        # A visit never (re)dispatched has no provider: it is not counted here but shows in
        # the order list as `agreed`.
        sup = conn.execute(
            select(svc_supervision, svc_orders.c.service_code)
            .join(svc_orders, svc_orders.c.id == svc_supervision.c.order_id)
            .where(
                seen,
                or_(
                    and_(svc_supervision.c.created_at >= lo, svc_supervision.c.created_at < hi),
                    and_(
                        svc_supervision.c.kind == "follow_up", svc_supervision.c.done_at.is_(None)
                    ),
                ),
            )
        ).all()
    fig: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in orders:
        f = fig[(r.provider_id, r.service_code)]
        sched = r.scheduled_at is not None and lo <= r.scheduled_at < hi
        if sched and r.state != OrderState.CANCELLED.value:
            f["scheduled"] += 1
            if r.check_in_at is None and r.scheduled_at + store.MISSED_AFTER_MS < now:
                f["missed"] += 1
            elif r.check_in_at is not None and r.check_in_at > r.scheduled_at + store.LATE_AFTER_MS:
                f["late"] += 1
        if r.check_out_at is not None and lo <= r.check_out_at < hi:
            f["done"] += 1
            f["far"] += int(bool(r.check_in_far or r.check_out_far))
            if r.rating is not None:
                f["ratings"] += 1
                f["rating_sum"] += r.rating
    for s in sup:
        if s.provider_id is None or (provider_id is not None and s.provider_id != provider_id):
            continue
        f = fig[(s.provider_id, s.service_code)]
        if s.kind == "complaint" and lo <= s.created_at < hi:
            f["complaints"] += 1
        if s.kind == "follow_up" and s.done_at is None:
            f["follow_ups_open"] += 1
            f["follow_ups_due"] += int(s.due_at is not None and s.due_at <= now)
    return [
        SupervisionFigures(
            provider_id=p,
            service_code=c,
            scheduled=f["scheduled"],
            done=f["done"],
            late=f["late"],
            missed=f["missed"],
            far_check_ins=f["far"],
            ratings=f["ratings"],
            rating_avg=round(f["rating_sum"] / f["ratings"], 2) if f["ratings"] else None,
            complaints=f["complaints"],
            follow_ups_due=f["follow_ups_due"],
            follow_ups_open=f["follow_ups_open"],
        )
        for (p, c), f in sorted(fig.items())
    ]


# --- vouchers ---------------------------------------------------------------------------------


def _source_out(rt: Runtime, conn: Connection, r: Row[Any]) -> SourcePublic:
    rules = conn.execute(
        select(svc_voucher_rules)
        .where(svc_voucher_rules.c.source_id == r.id)
        .order_by(svc_voucher_rules.c.tier, svc_voucher_rules.c.category)
    ).all()
    return SourcePublic(
        id=r.id,
        name_zh=r.name_zh,
        name_en=r.name_en,
        carry_over=list(r.carry_over),
        allotments=[
            AllotmentRulePublic(tier=x.tier, category=x.category, monthly_fen=x.monthly_fen)
            for x in rules
        ],
        created_at=_ms_req(rt, r.created_at),
    )


@router.post("/voucher-sources", status_code=status.HTTP_201_CREATED, tags=[TAG_VOUCHERS])
def create_source(body: SourceIn, rt: RuntimeDep) -> SourcePublic:
    """A funding source (a civil-affairs budget line, a charity): the monthly allotment per
    tier and category, and which categories carry their leftovers to the next month (the rest
    expire back to the source at month end)."""
    seen: set[tuple[str, str]] = set()
    for i, a in enumerate(body.allotments):
        if (a.tier.value, a.category.value) in seen:
            raise store.invalid(
                "allotment_repeated",
                f"allotments[{i}]: {a.tier}/{a.category} is given twice",
                f"第{i + 1}项额度重复：{a.tier.zh}/{a.category.zh}",
            )
        seen.add((a.tier.value, a.category.value))
    with rt.engine.begin() as conn:
        if conn.execute(
            select(svc_voucher_sources.c.id).where(svc_voucher_sources.c.id == body.id)
        ).first():
            raise store.conflict(
                "source_exists", f"source {body.id!r} exists", f"资金来源{body.id}已存在"
            )
        conn.execute(
            insert(svc_voucher_sources).values(
                id=body.id,
                name_zh=body.name_zh,
                name_en=body.name_en,
                carry_over=[c.value for c in dict.fromkeys(body.carry_over)],
                created_at=rt.now_ms(),
            )
        )
        for a in body.allotments:
            conn.execute(
                insert(svc_voucher_rules).values(
                    source_id=body.id,
                    tier=a.tier.value,
                    category=a.category.value,
                    monthly_fen=a.monthly_fen,
                )
            )
        row = _require(conn, svc_voucher_sources, body.id, "source")
        return _source_out(rt, conn, row)


@router.get("/voucher-sources", tags=[TAG_VOUCHERS])
def list_sources(rt: RuntimeDep) -> list[SourcePublic]:
    with _reading(rt) as conn:
        rows = conn.execute(select(svc_voucher_sources).order_by(svc_voucher_sources.c.id)).all()
        return [_source_out(rt, conn, r) for r in rows]


@router.get("/voucher-sources/{source_id}", tags=[TAG_VOUCHERS])
def get_source(source_id: str, rt: RuntimeDep) -> SourcePublic:
    with _reading(rt) as conn:
        return _source_out(rt, conn, _require(conn, svc_voucher_sources, source_id, "source"))


def _wallet_out(rt: Runtime, r: Row[Any]) -> WalletPublic:
    return WalletPublic(**{**r._asdict(), "created_at": _ms_req(rt, r.created_at)})


@router.put("/voucher-wallets", tags=[TAG_VOUCHERS])
def put_wallet(body: WalletIn, rt: RuntimeDep, principal: PrincipalDep) -> WalletPublic:
    """Enrol an elder with a funding source (or change the enrolment): the tier and its
    funding basis (三无, 75+ 优抚 ...), from which month, until which. The monthly run allots
    by it; a tier change applies from the next allotment."""
    if body.until_month is not None and body.until_month < body.from_month:
        raise store.invalid(
            "month_range", "until_month is before from_month", "结束月份早于开始月份"
        )
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        _ref(conn, svc_voucher_sources, body.source_id, "source")
        _elder_ref(conn, rt, principal, body.elder_id)
        locked = store.lock_wallets(conn, [(body.source_id, body.elder_id)])
        values = body.model_dump(mode="json")
        values["tier"] = body.tier.value
        if locked:
            conn.execute(
                update(svc_voucher_wallets)
                .where(
                    svc_voucher_wallets.c.source_id == body.source_id,
                    svc_voucher_wallets.c.elder_id == body.elder_id,
                )
                .values(**values, updated_at=now)
            )
        else:
            conn.execute(
                insert(svc_voucher_wallets).values(
                    **values, created_by=principal.label, created_at=now, updated_at=now
                )
            )
        row = conn.execute(
            select(svc_voucher_wallets).where(
                svc_voucher_wallets.c.source_id == body.source_id,
                svc_voucher_wallets.c.elder_id == body.elder_id,
            )
        ).one()
    return _wallet_out(rt, row)


@router.get("/voucher-wallets", tags=[TAG_VOUCHERS])
def list_wallets(
    rt: RuntimeDep,
    principal: PrincipalDep,
    source_id: QId = None,
    elder_id: QId = None,
) -> list[WalletPublic]:
    """Enrolments (a station's staff: of the elders they see)."""
    q = select(svc_voucher_wallets).order_by(
        svc_voucher_wallets.c.source_id, svc_voucher_wallets.c.elder_id
    )
    if source_id is not None:
        q = q.where(svc_voucher_wallets.c.source_id == source_id)
    if elder_id is not None:
        q = q.where(svc_voucher_wallets.c.elder_id == elder_id)
    with _reading(rt) as conn:
        q = q.where(
            caller_scope(conn, rt, principal).on_board_filter(svc_voucher_wallets.c.elder_id)
        )
        return [_wallet_out(rt, r) for r in conn.execute(q)]


def _wallets_for(
    conn: Connection, rt: Runtime, principal: Principal, body: RunIn
) -> list[Row[Any]]:
    """The wallets of a run; a station's staff run it for the elders they see only (an admin,
    or staff of no station, for all)."""
    w = svc_voucher_wallets.c
    q = select(svc_voucher_wallets).where(
        w.from_month <= body.month, or_(w.until_month.is_(None), w.until_month >= body.month)
    )
    if body.source_id is not None:
        _ref(conn, svc_voucher_sources, body.source_id, "source")
        q = q.where(w.source_id == body.source_id)
    if body.elder_id is not None:
        _elder_ref(conn, rt, principal, body.elder_id)
        q = q.where(w.elder_id == body.elder_id)
    q = q.where(caller_scope(conn, rt, principal).on_board_filter(w.elder_id))
    return list(conn.execute(q.order_by(w.source_id, w.elder_id)).all())


def _run(
    rt: Runtime,
    principal: Any,
    body: RunIn,
    key: str | None,
    path: str,
    make: Callable[[Row[Any]], Any],
    allotting: bool = False,
) -> JSONResponse:
    """The monthly run over the wallets in force: every wallet locked up front in sorted
    order, one transaction; a wallet the command refuses (already allotted, closed...) is
    reported in `skipped` and the others go on. `allotting`: an elder deceased or moved by the
    month's first day gets no allotment (skipped); a month end still closes theirs."""

    def work(conn: Connection) -> tuple[int, BaseModel]:
        _ms_now, now = _now(rt)
        wallets = _wallets_for(conn, rt, principal, body)
        store.lock_wallets(conn, [(w.source_id, w.elder_id) for w in wallets])
        policies: dict[str, Any] = {}
        done: list[Transaction] = []
        skipped: list[dict[str, str]] = []
        for w in wallets:
            if w.source_id not in policies:
                policies[w.source_id] = store.policy_of(conn, w.source_id)
            try:
                gone = gone_since(conn, w.elder_id) if allotting else None
                if gone is not None and gone[1] <= date.fromisoformat(f"{body.month}-01"):
                    raise _gone_refusal(w.elder_id, *gone)
                # A savepoint per wallet: a refusal undoes that wallet's writes only.
                with conn.begin_nested():
                    done += store.move_vouchers(
                        conn, make(w), policies[w.source_id], now, locked=True
                    )
            except store.Refusal as r:
                if r.status != 409 and r.code != "no_allotment":
                    raise
                skipped.append({"source_id": w.source_id, "elder_id": w.elder_id, **r.detail()})
        return 200, RunResult(month=body.month, done=_txns_out(rt, conn, done), skipped=skipped)

    return _idempotent(rt, principal, key, _body_hash(body, path), work)


@router.post("/vouchers/allot", tags=[TAG_VOUCHERS])
def allot(
    body: RunIn, rt: RuntimeDep, principal: PrincipalDep, idempotency_key: IdemKey = None
) -> RunResult:
    """The monthly allotment run: each enrolled elder's vouchers for the month, by tier and
    category. Running it again allots nothing twice (those are listed in `skipped`)."""
    actor = principal.label
    return _run(  # type: ignore[return-value]
        rt,
        principal,
        body,
        idempotency_key,
        "allot",
        lambda w: Allot(w.source_id, w.elder_id, ServiceTier(w.tier), body.month, actor),
        allotting=True,
    )


@router.post("/vouchers/close", tags=[TAG_VOUCHERS])
def close_month(
    body: RunIn, rt: RuntimeDep, principal: PrincipalDep, idempotency_key: IdemKey = None
) -> RunResult:
    """Month end (after the month is over): leftovers expire back to their source, or carry to
    next month for the categories so configured; a closed month takes no more consumption."""
    actor = principal.label
    return _run(  # type: ignore[return-value]
        rt,
        principal,
        body,
        idempotency_key,
        "close",
        lambda w: CloseMonth(w.source_id, w.elder_id, body.month, actor),
    )


@router.post("/vouchers/reversals", status_code=status.HTTP_201_CREATED, tags=[TAG_VOUCHERS])
def reverse(
    body: ReverseIn, rt: RuntimeDep, principal: PrincipalDep, idempotency_key: IdemKey = None
) -> TxnPublic:
    """A correction: the negated lines of an earlier transaction, with a reason; nothing is
    ever edited or deleted. Refused (409) when it would take an account below zero (reverse
    what spent it first). A reversed consumption frees its visit to be settled again."""

    def work(conn: Connection) -> tuple[int, BaseModel]:
        _ms_now, now = _now(rt)
        orig = conn.execute(
            select(svc_ledger_txns.c.source_id, svc_ledger_txns.c.elder_id).where(
                svc_ledger_txns.c.id == body.txn_id
            )
        ).first()
        seen = orig is not None and (
            orig.elder_id is None
            or caller_scope(conn, rt, principal).sees_on_board(conn, orig.elder_id)
        )
        if orig is None or not seen:  # another station's elder's: as if there were none
            raise _not_found("transaction", body.txn_id)
        policy = store.policy_of(conn, orig.source_id)
        txns = store.move_vouchers(
            conn, Reverse(body.txn_id, body.reason, principal.label), policy, now
        )
        return 201, _txns_out(rt, conn, txns)[0]

    return _idempotent(  # type: ignore[return-value]
        rt, principal, idempotency_key, _body_hash(body, "reverse"), work
    )


@router.get("/vouchers/transactions", tags=[TAG_VOUCHERS])
def list_transactions(
    rt: RuntimeDep,
    principal: PrincipalDep,
    elder_id: QId = None,
    provider_id: QId = None,
    source_id: QId = None,
    visit_id: QId = None,
    month: Annotated[str | None, Query(max_length=7)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    # le: a BIGINT's largest (larger is no seq, and the drivers refuse it with an error)
    after_seq: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="page on: the last seq seen")
    ] = 0,
) -> list[TxnPublic]:
    """The journal (ledger entries with their lines), in append order. A station's staff: the
    entries of the elders they see, and those of no elder."""
    t = svc_ledger_txns.c
    conds = [t.seq > after_seq]
    for col, value in (
        (t.elder_id, elder_id),
        (t.provider_id, provider_id),
        (t.source_id, source_id),
        (t.visit_id, visit_id),
        (t.month, _month_query(month, required=False)),
    ):
        if value is not None:
            conds.append(col == value)
    with _reading(rt) as conn:
        conds.append(caller_scope(conn, rt, principal).on_board_filter(t.elder_id))
        seqs = [
            r.seq for r in conn.execute(select(t.seq).where(*conds).order_by(t.seq).limit(limit))
        ]
        txns = store.journal(conn, t.seq.in_(seqs)) if seqs else []
        return _txns_out(rt, conn, txns)


@router.get("/elders/{elder_id}/vouchers", tags=[TAG_VOUCHERS])
def elder_balance(
    elder_id: str,
    rt: RuntimeDep,
    month: Annotated[str | None, Query(max_length=7, description="YYYY-MM; default all")] = None,
) -> BalancePublic:
    """The elder's voucher balances per source, month and category."""
    a = svc_ledger_accounts.c
    with _reading(rt) as conn:
        _require(conn, elders, elder_id, "elder")
        q = select(svc_ledger_accounts).where(a.kind == "allot", a.elder_id == elder_id)
        m = _month_query(month, required=False)
        if m is not None:
            q = q.where(a.month == m)
        rows = conn.execute(q.order_by(a.month, a.source_id, a.category)).all()
    accounts = [
        AccountPublic(
            key=r.key,
            source_id=r.source_id,
            month=r.month,
            category=r.category,
            balance_fen=r.balance_fen,
        )
        for r in rows
    ]
    return BalancePublic(
        elder_id=elder_id,
        month=m,
        total_fen=sum(x.balance_fen for x in accounts),
        accounts=accounts,
    )


# --- statements and reconciliation ------------------------------------------------------------


class VisitLine(BaseModel):
    order_id: str
    date: date
    elder_id: str
    provider_id: str
    worker_id: str
    service_code: str
    service_name_zh: str
    start_at: str
    end_at: str
    quantity: int
    total_fen: int
    subsidy_fen: int
    elder_share_fen: int
    funding_source: str | None
    far: bool
    consumed: bool = Field(description="its subsidy is consumed in the ledger (live)")


class ElderStatementPublic(BaseModel):
    elder_id: str
    elder_name: str
    month: str
    allotted_fen: int
    carried_in_fen: int
    consumed_fen: int
    expired_fen: int
    carried_out_fen: int
    closing_fen: int = Field(description="left in the month's allotments")
    elder_share_ledger_fen: int = Field(description="own share of voucher-funded visits")
    elder_paid_unfunded_fen: int = Field(description="visits without vouchers: all the elder's")
    visits: list[VisitLine]


class ProviderStatementPublic(BaseModel):
    provider_id: str
    provider_name: str
    month: str
    payable_by_source_fen: dict[str, int] = Field(description="what each source owes them")
    total_payable_fen: int
    elder_share_fen: int = Field(description="collected from elders by the provider")
    unfunded_fen: int = Field(description="visits without vouchers, paid by the elder")
    visits: list[VisitLine]


class SourceStatementPublic(BaseModel):
    source_id: str
    name_zh: str
    month: str
    allotted_fen: int
    returned_fen: int = Field(description="expired allotments flowing back")
    net_out_fen: int
    payable_by_provider_fen: dict[str, int]
    total_payable_fen: int


class ReconciliationPublic(BaseModel):
    ok: bool
    problems: list[str] = Field(description="exactly what differs; empty when all agree")
    transactions: int
    visits: int
    ledger_payable_fen: int
    visit_subsidy_fen: int
    ledger_elder_share_fen: int
    visit_elder_share_fen: int
    month: str | None
    month_ledger_payable_fen: int | None
    month_visit_subsidy_fen: int | None


def _visit_lines(conn: Connection, month: str, where: Any) -> list[VisitLine]:
    lo, hi = store.month_bounds_ms(month)
    o = svc_orders.c
    rows = conn.execute(
        select(svc_orders)
        .where(
            o.state.in_([OrderState.SIGNED_OFF.value, OrderState.CLOSED.value]),
            o.check_in_at >= lo,
            o.check_in_at < hi,
            where,
        )
        .order_by(o.check_in_at, o.id)
    ).all()
    if not rows:
        return []
    live = store.journal(conn, svc_ledger_txns.c.visit_id.in_([r.id for r in rows]))
    reversed_ids = {t.reverses for t in live if t.reverses}
    live_visits = {
        t.visit_id for t in live if t.kind.value == "consume" and t.id not in reversed_ids
    }
    return [
        VisitLine(
            order_id=r.id,
            date=from_ms(r.check_in_at, SHANGHAI).date(),
            elder_id=r.elder_id,
            provider_id=r.provider_id,
            worker_id=r.worker_id,
            service_code=r.service_code,
            service_name_zh=r.service_name_zh,
            start_at=from_ms(r.check_in_at, SHANGHAI).isoformat(timespec="minutes"),
            end_at=from_ms(r.check_out_at, SHANGHAI).isoformat(timespec="minutes"),
            quantity=r.quantity,
            total_fen=r.total_fen,
            subsidy_fen=r.subsidy_fen if r.funding_source else 0,
            elder_share_fen=r.elder_share_fen,
            funding_source=r.funding_source,
            far=bool(r.check_in_far or r.check_out_far),
            consumed=r.id in live_visits,
        )
        for r in rows
    ]


def _xlsx(filename: str, summary: list[tuple[str, Any]], visits: list[VisitLine]) -> Response:
    """A workbook: 汇总 Summary (label, value) and 明细 Visits (one row per visit)."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "汇总 Summary"
    bold = Font(bold=True)
    ws.append(["项目 Item", "数值 Value"])
    for cell in ws[1]:
        cell.font = bold
    for label, value in summary:
        ws.append([label, value])
    ws.column_dimensions["A"].width = 44
    ws.column_dimensions["B"].width = 24
    vs = wb.create_sheet("明细 Visits")
    heads = [
        "工单 Order", "日期 Date", "老人 Elder", "服务商 Provider", "服务人员 Worker",
        "服务 Service", "开始 Start", "结束 End", "数量 Qty", "总价(分) Total fen",
        "补贴(分) Subsidy fen", "个人支付(分) Own share fen", "资金来源 Source",
        "距离异常 Far", "已核销 Consumed",
    ]  # fmt: skip
    vs.append(heads)
    for cell in vs[1]:
        cell.font = bold
    for v in visits:
        vs.append(
            [
                v.order_id, v.date, v.elder_id, v.provider_id, v.worker_id,
                f"{v.service_code} {v.service_name_zh}", v.start_at, v.end_at, v.quantity,
                v.total_fen, v.subsidy_fen, v.elder_share_fen, v.funding_source or "",
                "是" if v.far else "", "是" if v.consumed else "否",
            ]
        )  # fmt: skip
    for col in "ABCDEF":
        vs.column_dimensions[col].width = 22
    buf = io.BytesIO()
    wb.save(buf)
    return Response(
        content=buf.getvalue(),
        media_type=XLSX,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )


_XLSX_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {XLSX: {}}, "description": "JSON, or with format=xlsx an Excel workbook"}
}


@router.get(
    "/service-statements/elders/{elder_id}", tags=[TAG_STATEMENTS], responses=_XLSX_RESPONSE
)
def elder_statement_of(
    elder_id: str, rt: RuntimeDep, month: MonthQ, format: FormatQ = "json"
) -> ElderStatementPublic:
    """One elder's month: allotted, carried in, used, expired, carried out, left; their own
    share; every visit."""
    month = _month_query(month) or ""
    with _reading(rt) as conn:
        elder = _require(conn, elders, elder_id, "elder")
        txns = store.journal(conn, svc_ledger_txns.c.elder_id == elder_id)
        visits = _visit_lines(conn, month, svc_orders.c.elder_id == elder_id)
    st = elder_statement(txns, elder_id, month)
    unfunded = sum(v.elder_share_fen for v in visits if v.funding_source is None)
    out = ElderStatementPublic(
        elder_id=elder_id,
        elder_name=elder.name,
        month=month,
        allotted_fen=st.allotted,
        carried_in_fen=st.carried_in,
        consumed_fen=st.consumed,
        expired_fen=st.expired,
        carried_out_fen=st.carried_out,
        closing_fen=st.closing,
        elder_share_ledger_fen=st.elder_share,
        elder_paid_unfunded_fen=unfunded,
        visits=visits,
    )
    if format == "xlsx":
        return _xlsx(  # type: ignore[return-value]
            f"老人服务结算单-{elder.name}-{month}.xlsx",
            [
                ("老人 Elder", f"{elder.name} ({elder_id})"),
                ("月份 Month", month),
                ("发放(分) Allotted fen", st.allotted),
                ("上月结转(分) Carried in fen", st.carried_in),
                ("使用(分) Used fen", st.consumed),
                ("过期(分) Expired fen", st.expired),
                ("结转下月(分) Carried out fen", st.carried_out),
                ("余额(分) Left fen", st.closing),
                ("个人支付-服务券服务(分) Own share fen", st.elder_share),
                ("个人支付-自费服务(分) Paid in full fen", unfunded),
                ("服务次数 Visits", len(visits)),
            ],
            visits,
        )
    return out


@router.get(
    "/service-statements/providers/{provider_id}",
    tags=[TAG_STATEMENTS],
    responses=_XLSX_RESPONSE,
)
def provider_statement_of(
    provider_id: str,
    rt: RuntimeDep,
    principal: PrincipalDep,
    month: MonthQ,
    format: FormatQ = "json",
) -> ProviderStatementPublic:
    """What to pay a provider for the month, by funding source, with every visit. A station's
    staff get their station's part: its elders' visits and those of no station yet."""
    month = _month_query(month) or ""
    with _reading(rt) as conn:
        prov = _require(conn, svc_providers, provider_id, "provider")
        scope = caller_scope(conn, rt, principal)
        txns = store.journal(
            conn,
            and_(
                svc_ledger_txns.c.provider_id == provider_id,
                scope.on_board_filter(svc_ledger_txns.c.elder_id),
            ),
        )
        visits = _visit_lines(
            conn,
            month,
            and_(
                svc_orders.c.provider_id == provider_id,
                scope.on_board_filter(svc_orders.c.elder_id),
            ),
        )
    st = provider_statement(txns, provider_id, month)
    unfunded = sum(v.total_fen for v in visits if v.funding_source is None)
    out = ProviderStatementPublic(
        provider_id=provider_id,
        provider_name=prov.name,
        month=month,
        payable_by_source_fen=dict(st.payable_by_source),
        total_payable_fen=st.total_payable,
        elder_share_fen=st.elder_share,
        unfunded_fen=unfunded,
        visits=visits,
    )
    if format == "xlsx":
        rows: list[tuple[str, Any]] = [
            ("服务商 Provider", f"{prov.name} ({provider_id})"),
            ("月份 Month", month),
            ("应付合计(分) Total payable fen", st.total_payable),
        ]
        rows += [
            (f"应付-{src}(分) Payable by {src} fen", fen)
            for src, fen in sorted(st.payable_by_source.items())
        ]
        rows += [
            ("老人自付-服务券服务(分) Elders' share fen", st.elder_share),
            ("老人自费服务(分) Unfunded visits fen", unfunded),
            ("服务次数 Visits", len(visits)),
        ]
        return _xlsx(f"服务商结算单-{prov.name}-{month}.xlsx", rows, visits)  # type: ignore[return-value]
    return out


@router.get(
    "/service-statements/sources/{source_id}", tags=[TAG_STATEMENTS], responses=_XLSX_RESPONSE
)
def source_statement_of(
    source_id: str,
    rt: RuntimeDep,
    principal: PrincipalDep,
    month: MonthQ,
    format: FormatQ = "json",
) -> SourceStatementPublic:
    """A funding source's month: allotted, returned (expired), the net draw, and what it owes
    each provider. A station's staff get their station's part, as for a provider's."""
    month = _month_query(month) or ""
    with _reading(rt) as conn:
        src = _require(conn, svc_voucher_sources, source_id, "source")
        scope = caller_scope(conn, rt, principal)
        txns = store.journal(
            conn,
            and_(
                svc_ledger_txns.c.source_id == source_id,
                scope.on_board_filter(svc_ledger_txns.c.elder_id),
            ),
        )
        visits = _visit_lines(
            conn,
            month,
            and_(
                svc_orders.c.funding_source == source_id,
                scope.on_board_filter(svc_orders.c.elder_id),
            ),
        )
    st = source_statement(txns, source_id, month)
    out = SourceStatementPublic(
        source_id=source_id,
        name_zh=src.name_zh,
        month=month,
        allotted_fen=st.allotted,
        returned_fen=st.returned,
        net_out_fen=st.net_out,
        payable_by_provider_fen=dict(st.payable_by_provider),
        total_payable_fen=sum(st.payable_by_provider.values()),
    )
    if format == "xlsx":
        rows: list[tuple[str, Any]] = [
            ("资金来源 Source", f"{src.name_zh} ({source_id})"),
            ("月份 Month", month),
            ("发放(分) Allotted fen", st.allotted),
            ("退回(分) Returned fen", st.returned),
            ("净支出(分) Net out fen", st.net_out),
            ("应付服务商合计(分) Payable to providers fen", out.total_payable_fen),
        ]
        rows += [
            (f"应付-{p}(分) Payable to {p} fen", fen)
            for p, fen in sorted(st.payable_by_provider.items())
        ]
        return _xlsx(f"资金来源结算单-{source_id}-{month}.xlsx", rows, visits)  # type: ignore[return-value]
    return out


@router.get("/vouchers/reconciliation", tags=[TAG_STATEMENTS])
def reconciliation(
    rt: RuntimeDep,
    principal: PrincipalDep,
    month: Annotated[str | None, Query(max_length=7, description="also the month's totals")] = None,
) -> ReconciliationPublic:
    """Proves the ledger agrees with the visits: every transaction balances, no account dips
    below zero in journal order, every stored balance equals the sum of its legs, each
    voucher-funded signed-off visit is consumed exactly once for its subsidy and own share,
    nothing is consumed for an unknown visit, and the payable total equals the visits'
    subsidy total. `problems` says exactly what differs. A station's staff reconcile their
    station's part (its elders and those of no station yet): every transaction is one elder's,
    so the part balances on its own and names no other station's elder, visit or account."""
    m = _month_query(month, required=False)
    with _reading(rt) as conn:
        scope = caller_scope(conn, rt, principal)
        txns = store.journal(conn, scope.on_board_filter(svc_ledger_txns.c.elder_id))
        others = set(
            conn.execute(select(elders.c.id).where(~scope.on_board_filter(elders.c.id))).scalars()
        )
        all_charges = [c for c in store.charges(conn) if c.elder_id not in others]
        problems_accounts = store.account_check(
            conn, scope.on_board_filter(svc_ledger_accounts.c.elder_id)
        )
    rec = reconcile(txns, all_charges)
    month_ledger = month_visits = None
    if m is not None:
        month_ledger = sum(
            ln.fen
            for t in txns
            if t.effective_kind.value == "consume" and t.month == m
            for ln in t.lines
            if ln.account.kind.value == "payable"
        )
        month_visits = sum(
            c.subsidy_fen for c in all_charges if c.month == m and c.funding_source is not None
        )
    problems = list(rec.problems) + problems_accounts
    if m is not None and month_ledger != month_visits:
        problems.append(f"{m}: payable {month_ledger} != visit subsidy {month_visits}")
    return ReconciliationPublic(
        ok=not problems,
        problems=problems,
        transactions=len(txns),
        visits=sum(1 for c in all_charges if c.funding_source is not None),
        ledger_payable_fen=rec.ledger_payable,
        visit_subsidy_fen=rec.visit_subsidy,
        ledger_elder_share_fen=rec.ledger_elder_share,
        visit_elder_share_fen=rec.visit_elder_share,
        month=m,
        month_ledger_payable_fen=month_ledger,
        month_visit_subsidy_fen=month_visits,
    )


# create_app includes this module's `router`: the staff's routes and the worker's steps, each
# router with its own access dependency, under one that adds none.
_staff_router, router = router, APIRouter()
router.include_router(_staff_router)
router.include_router(worker_router)
