"""The service catalogue and service orders (服务目录 / 服务工单): from application to sign-off.

Pure domain, like the rest of `care/`: frozen dataclasses and rules, no I/O, no clock (every
`now` is passed in and must be timezone-aware), nothing of ours imported outside `care`.

Catalogue
    A `Service` has a category (meals, cleaning, ...), a unit (visit, hour, meal), the agreed
    `unit_price_fen` (what the provider earns per unit) and the elder's own share per unit for
    each tier (`elder_share_fen`: free must be 0, none above the unit price). The difference is
    the subsidy a voucher pays (`care.vouchers`). Money is integer fen: a float never decides
    what an elder owes.

Orders: a state machine (`ALLOWED_MOVES`), driven by `apply(order, command, now, policy)`
    APPLIED --agree--> AGREED --dispatch--> DISPATCHED --accept--> ACCEPTED --check_in-->
    IN_SERVICE --check_out--> SERVED --feedback--> FEEDBACK_GIVEN --sign_off--> SIGNED_OFF
    --close--> CLOSED. A refusal by the worker goes back to AGREED (awaiting dispatch again).
    Cancellation (with a reason) is allowed before the worker checks in; once service has begun
    it must be finished and signed off (a partial visit is still a visit to pay and verify).
    Every accepted command appends one `LogEntry` (who, when, what): the handling log.
    An impossible move raises `CareError` with code `order_bad_move`.

Recurring orders
    An agreement may carry a `Recurrence` (weekdays + time of day). Such an order is a parent:
    it is never dispatched itself; `generate_occurrences` makes one child order per due day,
    already AGREED, with a deterministic id (`parent@YYYY-MM-DD`), so running it twice over the
    same range (or overlapping ranges) yields nothing new. Days are Asia/Shanghai calendar days.

Electronic visit verification (EVV)
    `evv_record(order)` returns the six facts of a completed visit (service, for whom, date,
    where, by whom, start and end) or refuses when any is missing. A check-in or check-out
    farther than `ServicePolicy.max_check_in_distance_m` (300 m by default) from the elder's
    home is flagged (not refused: a worker meeting the elder at the clinic is real; the flag
    is for supervision to look at).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from care._common import CareError, Labelled, set_labels
from care.elders import ServiceTier

__all__ = [
    "ALLOWED_MOVES",
    "SHANGHAI",
    "Accept",
    "Actor",
    "ActorRole",
    "Agree",
    "Agreement",
    "Apply",
    "Cancel",
    "CheckIn",
    "CheckOut",
    "Close",
    "Dispatch",
    "EvvRecord",
    "Feedback",
    "GeoPoint",
    "LogEntry",
    "OrderCommand",
    "OrderState",
    "Presence",
    "Recurrence",
    "Refuse",
    "Service",
    "ServiceCategory",
    "ServiceOrder",
    "ServicePolicy",
    "ServiceUnit",
    "SignOff",
    "SignOffMethod",
    "VisitCharge",
    "apply",
    "distance_m",
    "evv_record",
    "generate_occurrences",
    "make_agreement",
    "open_order",
    "visit_charge",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")


# --- catalogue ------------------------------------------------------------------------------


class ServiceCategory(Labelled):
    MEALS = "meals"
    CLEANING = "cleaning"
    BATHING = "bathing"
    MEDICAL = "medical"
    EMERGENCY = "emergency"
    VISIT = "visit"
    COMPANIONSHIP = "companionship"
    ERRAND = "errand"
    HOUSEKEEPING = "housekeeping"
    HAIRCUT = "haircut"
    REPAIR = "repair"


class ServiceUnit(Labelled):
    VISIT = "visit"
    HOUR = "hour"
    MEAL = "meal"


set_labels(
    ServiceCategory,
    {
        ServiceCategory.MEALS: ("助餐", "meals", ("送餐", "助餐服务")),
        ServiceCategory.CLEANING: ("助洁", "cleaning", ("保洁", "打扫")),
        ServiceCategory.BATHING: ("助浴", "bathing", ("洗澡",)),
        ServiceCategory.MEDICAL: ("助医", "medical", ("陪诊", "就医")),
        ServiceCategory.EMERGENCY: ("助急", "emergency", ("急救",)),
        ServiceCategory.VISIT: ("巡访关爱", "visit", ("巡访", "探访")),
        ServiceCategory.COMPANIONSHIP: ("精神慰藉", "companionship", ("陪伴", "聊天")),
        ServiceCategory.ERRAND: ("代办", "errand", ("代购", "跑腿")),
        ServiceCategory.HOUSEKEEPING: ("家政", "housekeeping", ("家政服务",)),
        ServiceCategory.HAIRCUT: ("理发", "haircut", ("剪发", "理发服务")),
        ServiceCategory.REPAIR: ("维修", "repair", ("修理", "维修服务")),
    },
)
set_labels(
    ServiceUnit,
    {
        ServiceUnit.VISIT: ("次", "visit", ("每次",)),
        ServiceUnit.HOUR: ("小时", "hour", ("时",)),
        ServiceUnit.MEAL: ("餐", "meal", ("份",)),
    },
)


@dataclass(frozen=True, slots=True)
class Service:
    """One catalogue entry. Prices are integer fen per unit."""

    code: str
    name_zh: str
    name_en: str
    category: ServiceCategory
    unit: ServiceUnit
    unit_price_fen: int
    elder_share_fen: Mapping[ServiceTier, int]

    def __post_init__(self) -> None:
        if not self.code:
            raise CareError("service_code_missing", "a service needs a code", "服务须有编号")
        _check_fen("unit_price_fen", self.unit_price_fen)
        missing = set(ServiceTier) - set(self.elder_share_fen)
        if missing:
            raise CareError(
                "service_tier_price_missing",
                f"service {self.code}: no price for tier(s) {sorted(missing)}",
                f"服务{self.code}缺少以下档次的价格：{sorted(missing)}",
            )
        for tier, share in self.elder_share_fen.items():
            _check_fen(f"elder_share_fen[{tier}]", share)
            if share > self.unit_price_fen:
                raise CareError(
                    "service_share_above_price",
                    f"service {self.code}: the {tier} share is above the unit price",
                    f"服务{self.code}：{tier}档个人支付高于单价",
                )
        # 无偿 means the elder pays nothing; a non-zero free share is a data-entry mistake.
        if self.elder_share_fen[ServiceTier.FREE] != 0:
            raise CareError(
                "service_free_not_free",
                f"service {self.code}: the free tier's share must be 0",
                f"服务{self.code}：无偿档个人支付须为0",
            )


def _check_fen(name: str, value: int) -> None:
    # bool is an int subclass; True fen is a bug, not one fen.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CareError(
            "amount_invalid",
            f"{name} must be a non-negative integer number of fen",
            f"{name}须为非负整数（分）",
        )


# --- people, places ---------------------------------------------------------------------


class ActorRole(StrEnum):
    ELDER = "elder"
    FAMILY = "family"
    STAFF = "staff"
    WORKER = "worker"
    SYSTEM = "system"  # e.g. a welfare visit opened after a no-water-use alarm


@dataclass(frozen=True, slots=True)
class Actor:
    role: ActorRole
    id: str


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """WGS-84 latitude/longitude in degrees (the gateway converts GCJ-02/BD-09 before)."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (-90 <= self.lat <= 90 and -180 <= self.lon <= 180):
            raise CareError("geo_invalid", "latitude/longitude out of range", "经纬度超出范围")


_EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG); metres


def distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    max_check_in_distance_m: float = 300.0


# --- agreement, recurrence ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recurrence:
    """Every week on `weekdays` (0 = Monday) at `at` local time, from `start` to `end`."""

    weekdays: frozenset[int]
    at: time
    start: date
    end: date | None = None

    def __post_init__(self) -> None:
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise CareError(
                "recurrence_weekdays", "weekdays must be 0 (Mon) .. 6 (Sun)", "星期须为0（周一）至6"
            )
        if self.end is not None and self.end < self.start:
            raise CareError("recurrence_range", "the end is before the start", "结束日期早于开始")


@dataclass(frozen=True, slots=True)
class Agreement:
    """签订协议: what, how much per occurrence, the price, who pays."""

    service: Service
    tier: ServiceTier
    quantity: int  # units per occurrence (2 hours, 1 meal ...)
    funding_source: str | None  # voucher funding source paying the subsidy; None: elder pays all
    recurrence: Recurrence | None = None

    @property
    def total_fen(self) -> int:
        return self.service.unit_price_fen * self.quantity

    @property
    def elder_share_fen(self) -> int:
        # Without a funding source nobody subsidises: the elder pays the full price.
        if self.funding_source is None:
            return self.total_fen
        return self.service.elder_share_fen[self.tier] * self.quantity

    @property
    def subsidy_fen(self) -> int:
        return self.total_fen - self.elder_share_fen


def make_agreement(
    service: Service,
    tier: ServiceTier,
    quantity: int,
    funding_source: str | None,
    recurrence: Recurrence | None = None,
) -> Agreement:
    """An agreement, refusing a quantity that is not a positive integer."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise CareError("quantity_invalid", "the quantity must be at least 1", "数量须至少为1")
    return Agreement(service, tier, quantity, funding_source, recurrence)


# --- orders ---------------------------------------------------------------------------------


class OrderState(StrEnum):
    APPLIED = "applied"
    AGREED = "agreed"  # also: awaiting (re)dispatch
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    IN_SERVICE = "in_service"
    SERVED = "served"
    FEEDBACK_GIVEN = "feedback_given"
    SIGNED_OFF = "signed_off"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class SignOffMethod(StrEnum):
    SIGNATURE = "signature"
    PIN = "pin"
    WITNESSED = "witnessed"


@dataclass(frozen=True, slots=True)
class Presence:
    at: datetime
    where: GeoPoint
    distance_m: float
    far: bool


@dataclass(frozen=True, slots=True)
class LogEntry:
    at: datetime
    actor: Actor
    action: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ServiceOrder:
    id: str
    elder_id: str
    home: GeoPoint
    state: OrderState
    applied_by: Actor
    request: str
    category: ServiceCategory
    parent_id: str | None = None
    scheduled_at: datetime | None = None
    agreement: Agreement | None = None
    provider_id: str | None = None
    worker_id: str | None = None
    check_in: Presence | None = None
    check_out: Presence | None = None
    rating: int | None = None
    feedback: str | None = None
    sign_off: SignOffMethod | None = None
    sign_off_ref: str | None = None
    cancel_reason: str | None = None
    log: tuple[LogEntry, ...] = field(default=())

    @property
    def is_recurring_parent(self) -> bool:
        return self.agreement is not None and self.agreement.recurrence is not None


@dataclass(frozen=True, slots=True)
class Agree:
    actor: Actor
    agreement: Agreement


@dataclass(frozen=True, slots=True)
class Dispatch:
    actor: Actor
    provider_id: str
    worker_id: str


@dataclass(frozen=True, slots=True)
class Accept:
    actor: Actor


@dataclass(frozen=True, slots=True)
class Refuse:
    actor: Actor
    reason: str


@dataclass(frozen=True, slots=True)
class CheckIn:
    actor: Actor
    at: datetime
    where: GeoPoint


@dataclass(frozen=True, slots=True)
class CheckOut:
    actor: Actor
    at: datetime
    where: GeoPoint


@dataclass(frozen=True, slots=True)
class Feedback:
    actor: Actor
    rating: int  # 1..5
    note: str = ""


@dataclass(frozen=True, slots=True)
class SignOff:
    """签字认证. SIGNATURE needs `ref` (the stored image); PIN needs `pin_ok` (the gateway checks
    the PIN against its hash: a PIN never enters this room); WITNESSED needs `ref` = the staff
    witness's id, who must not be the worker."""

    actor: Actor
    method: SignOffMethod
    ref: str | None = None
    pin_ok: bool = False


@dataclass(frozen=True, slots=True)
class Close:
    actor: Actor
    note: str = ""


@dataclass(frozen=True, slots=True)
class Cancel:
    actor: Actor
    reason: str


@dataclass(frozen=True, slots=True)
class Apply:
    """Only for `open_order`: the application (受理申请)."""

    actor: Actor
    order_id: str
    elder_id: str
    home: GeoPoint
    category: ServiceCategory
    request: str


OrderCommand = (
    Agree | Dispatch | Accept | Refuse | CheckIn | CheckOut | Feedback | SignOff | Close | Cancel
)

_S = OrderState
# command type -> {from state: to state}. Anything not listed is refused.
ALLOWED_MOVES: dict[type, dict[OrderState, OrderState]] = {
    Agree: {_S.APPLIED: _S.AGREED},
    Dispatch: {_S.AGREED: _S.DISPATCHED},
    Accept: {_S.DISPATCHED: _S.ACCEPTED},
    Refuse: {_S.DISPATCHED: _S.AGREED},
    CheckIn: {_S.ACCEPTED: _S.IN_SERVICE},
    CheckOut: {_S.IN_SERVICE: _S.SERVED},
    Feedback: {_S.SERVED: _S.FEEDBACK_GIVEN},
    SignOff: {_S.FEEDBACK_GIVEN: _S.SIGNED_OFF},
    # A recurring parent closes from AGREED when its agreement ends (its children carry the work).
    Close: {_S.SIGNED_OFF: _S.CLOSED, _S.AGREED: _S.CLOSED},
    # Not after check-in: a begun visit is finished, verified and paid like any other.
    Cancel: {s: _S.CANCELLED for s in (_S.APPLIED, _S.AGREED, _S.DISPATCHED, _S.ACCEPTED)},
}


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise CareError("naive_datetime", f"{name} must carry a time zone", f"{name}须带时区")


def _text(name: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise CareError("reason_missing", f"{name} is required", f"{name}不能为空")
    return value


def open_order(command: Apply, now: datetime) -> ServiceOrder:
    """受理申请: a new order in APPLIED, its log starting with the application."""
    _aware("now", now)
    if command.actor.role is ActorRole.WORKER:
        raise CareError(
            "order_applicant_invalid",
            "an application comes from the elder, family, staff or the system",
            "申请须由老人、家属、工作人员或系统提出",
        )
    request = _text("request", command.request)
    return ServiceOrder(
        id=command.order_id,
        elder_id=command.elder_id,
        home=command.home,
        state=OrderState.APPLIED,
        applied_by=command.actor,
        request=request,
        category=command.category,
        log=(LogEntry(now, command.actor, "apply", request),),
    )


def apply(
    order: ServiceOrder,
    command: OrderCommand,
    now: datetime,
    policy: ServicePolicy | None = None,
) -> ServiceOrder:
    """The order after `command`, with one more handling-log entry; or `CareError`."""
    _aware("now", now)
    policy = policy or ServicePolicy()
    moves = ALLOWED_MOVES.get(type(command), {})
    action = type(command).__name__.lower()
    if order.state not in moves:
        raise CareError(
            "order_bad_move",
            f"order {order.id}: cannot {action} when {order.state}",
            f"工单{order.id}：当前状态“{order.state}”下不能执行“{action}”",
        )
    target = moves[order.state]
    changes: dict[str, object] = {}
    detail = ""
    match command:
        case Agree(agreement=agreement):
            if agreement.service.category is not order.category:
                raise CareError(
                    "agreement_category_mismatch",
                    "the agreed service is not of the requested category",
                    "协议服务与申请的服务类别不符",
                )
            changes["agreement"] = agreement
            detail = f"{agreement.service.code} x{agreement.quantity} tier={agreement.tier}"
        case Dispatch(provider_id=provider, worker_id=worker):
            if order.is_recurring_parent:
                raise CareError(
                    "order_recurring_parent",
                    "a recurring order is dispatched per occurrence, not as a whole",
                    "周期性工单按每次服务派工，不能整体派工",
                )
            changes |= {"provider_id": provider, "worker_id": worker}
            detail = f"provider={provider} worker={worker}"
        case Accept(actor=actor):
            _check_worker(order, actor)
        case Refuse(actor=actor, reason=reason):
            _check_worker(order, actor)
            detail = _text("reason", reason)
            changes |= {"provider_id": None, "worker_id": None}
        case CheckIn(actor=actor, at=at, where=where):
            _check_worker(order, actor)
            _aware("at", at)
            changes["check_in"] = _presence(order, at, where, policy)
            detail = _presence_detail(changes["check_in"])
        case CheckOut(actor=actor, at=at, where=where):
            _check_worker(order, actor)
            _aware("at", at)
            assert order.check_in is not None  # IN_SERVICE implies a check-in
            if at <= order.check_in.at:
                raise CareError(
                    "check_out_before_check_in",
                    "the check-out must come after the check-in",
                    "签退时间须晚于签到时间",
                )
            changes["check_out"] = _presence(order, at, where, policy)
            detail = _presence_detail(changes["check_out"])
        case Feedback(rating=rating, note=note):
            if isinstance(rating, bool) or rating not in range(1, 6):
                raise CareError("rating_invalid", "the rating is 1 to 5", "评分须为1至5")
            changes |= {"rating": rating, "feedback": note.strip() or None}
            detail = f"rating={rating}"
        case SignOff(method=method, ref=ref, pin_ok=pin_ok):
            _check_sign_off(order, method, ref, pin_ok)
            changes |= {"sign_off": method, "sign_off_ref": ref}
            detail = f"{method}" + (f" ref={ref}" if ref else "")
        case Close(note=note):
            detail = note
        case Cancel(reason=reason):
            detail = _text("reason", reason)
            changes["cancel_reason"] = detail
    entry = LogEntry(now, command.actor, action, detail)
    return replace(order, state=target, log=(*order.log, entry), **changes)  # type: ignore[arg-type]


def _check_worker(order: ServiceOrder, actor: Actor) -> None:
    # Only the dispatched worker answers, checks in and out: a colleague's phone must not.
    if actor.role is not ActorRole.WORKER or actor.id != order.worker_id:
        raise CareError(
            "not_the_worker",
            f"only the dispatched worker ({order.worker_id}) can do this",
            f"只有被派工的服务人员（{order.worker_id}）可以操作",
        )


def _presence(
    order: ServiceOrder, at: datetime, where: GeoPoint, policy: ServicePolicy
) -> Presence:
    d = distance_m(order.home, where)
    return Presence(at, where, round(d, 1), d > policy.max_check_in_distance_m)


def _presence_detail(p: object) -> str:
    assert isinstance(p, Presence)
    return f"{p.where.lat:.6f},{p.where.lon:.6f} {p.distance_m:.0f} m" + (" FAR" if p.far else "")


def _check_sign_off(
    order: ServiceOrder, method: SignOffMethod, ref: str | None, pin_ok: bool
) -> None:
    if method is SignOffMethod.SIGNATURE and not ref:
        raise CareError("sign_off_no_signature", "the signature image is missing", "缺少签名图片")
    if method is SignOffMethod.PIN and not pin_ok:
        raise CareError("sign_off_pin_wrong", "the PIN was not confirmed", "密码未通过验证")
    if method is SignOffMethod.WITNESSED and (not ref or ref == order.worker_id):
        # The worker witnessing their own visit proves nothing.
        raise CareError(
            "sign_off_witness_invalid",
            "a staff witness other than the worker is required",
            "须由服务人员以外的工作人员见证",
        )


# --- recurring ------------------------------------------------------------------------------


def generate_occurrences(
    parent: ServiceOrder,
    start: date,
    end: date,
    existing_ids: Collection[str],
    now: datetime | None = None,
) -> list[ServiceOrder]:
    """Child orders (AGREED) for the parent's due days in [start, end] not in `existing_ids`.

    Deterministic ids (`parent@YYYY-MM-DD`) make this idempotent: the gateway passes the ids it
    already has, and the unique key on the id catches a race between two schedulers. Each
    child's log starts with its generation, at `now` when given (else at its scheduled time).
    """
    if parent.agreement is None or parent.agreement.recurrence is None:
        raise CareError(
            "order_not_recurring", "the order has no recurrence", "该工单不是周期性工单"
        )
    if parent.state is not OrderState.AGREED:
        return []  # a closed or cancelled agreement generates nothing more
    rec = parent.agreement.recurrence
    lo = max(start, rec.start)
    hi = end if rec.end is None else min(end, rec.end)
    out: list[ServiceOrder] = []
    day = lo
    while day <= hi:
        child_id = f"{parent.id}@{day.isoformat()}"
        if day.weekday() in rec.weekdays and child_id not in existing_ids:
            at = datetime.combine(day, rec.at, tzinfo=SHANGHAI)
            out.append(
                replace(
                    parent,
                    id=child_id,
                    parent_id=parent.id,
                    scheduled_at=at,
                    agreement=replace(parent.agreement, recurrence=None),
                    log=(
                        LogEntry(
                            now or at, Actor(ActorRole.SYSTEM, "recurrence"), "generate", parent.id
                        ),
                    ),
                )
            )
        day += timedelta(days=1)
    return out


# --- EVV and charges ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvvRecord:
    """The six facts of electronic visit verification, plus the distance flags."""

    service_code: str
    elder_id: str
    date: date
    where: GeoPoint
    worker_id: str
    start: datetime
    end: datetime
    far_check_in: bool
    far_check_out: bool


def evv_record(order: ServiceOrder) -> EvvRecord:
    """The EVV record of a served order, or `CareError` (`evv_incomplete`) naming the gaps."""
    missing = [
        name
        for name, value in (
            ("service", order.agreement),
            ("worker", order.worker_id),
            ("check_in", order.check_in),
            ("check_out", order.check_out),
        )
        if value is None
    ]
    if missing or order.state in (OrderState.CANCELLED,):
        raise CareError(
            "evv_incomplete",
            f"order {order.id}: visit not verifiable, missing {missing or ['(cancelled)']}",
            f"工单{order.id}：服务记录不完整，缺少{missing or ['（已取消）']}",
        )
    assert order.agreement and order.worker_id and order.check_in and order.check_out
    return EvvRecord(
        service_code=order.agreement.service.code,
        elder_id=order.elder_id,
        date=order.check_in.at.astimezone(SHANGHAI).date(),
        where=order.check_in.where,
        worker_id=order.worker_id,
        start=order.check_in.at,
        end=order.check_out.at,
        far_check_in=order.check_in.far,
        far_check_out=order.check_out.far,
    )


@dataclass(frozen=True, slots=True)
class VisitCharge:
    """What one verified visit costs and who pays: the input of voucher consumption and of the
    reconciliation (`care.vouchers`)."""

    visit_id: str
    elder_id: str
    provider_id: str
    category: ServiceCategory
    month: str  # "YYYY-MM", Asia/Shanghai, of the visit's date
    funding_source: str | None
    total_fen: int
    subsidy_fen: int
    elder_share_fen: int


def visit_charge(order: ServiceOrder) -> VisitCharge:
    """The charge of a signed-off (or closed) visit; refused before the elder signed off."""
    if order.state not in (OrderState.SIGNED_OFF, OrderState.CLOSED) or order.sign_off is None:
        raise CareError(
            "visit_not_signed_off",
            f"order {order.id}: a visit is charged only after the elder's sign-off",
            f"工单{order.id}：老人签字认证后才能结算",
        )
    evv = evv_record(order)
    assert order.agreement is not None and order.provider_id is not None
    a = order.agreement
    return VisitCharge(
        visit_id=order.id,
        elder_id=order.elder_id,
        provider_id=order.provider_id,
        category=order.category,
        month=f"{evv.date.year:04d}-{evv.date.month:02d}",
        funding_source=a.funding_source,
        total_fen=a.total_fen,
        subsidy_fen=a.subsidy_fen,
        elder_share_fen=a.elder_share_fen,
    )
