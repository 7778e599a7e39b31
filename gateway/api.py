"""The HTTP API (contract v1, `/api/v1`), `/healthz` and `/metrics`, built on a running gateway.

Every `/api/v1` call carries a bearer token (gateway/auth.py) or the pages' session cookie
(gateway/accounts.py; with its CSRF token for a change). Bodies are checked before anything
touches the database: unknown fields, wrong types, overlong strings, control characters and ids
outside the contract are refused with 422, so bad input never reaches SQL as a 500. Alert
actions go through the same AlertService as pager replies, in one transaction, and their
notices leave through the outbox publisher after the commit.

A staff member whose care profile names a station sees that station's elders and those no
station has taken yet, on every router of this side as on the board (`in_scope` for a path id of
an elder, device, alert or service order: 404 as for an unknown one; `caller_scope(...)
.on_board_filter` for lists; a body naming another station's elder is refused as an unknown one).
People are scoped alike by their profile's station (`sees_person`, `people_filter`; a path's
`responder_id` or `shift_id` through `in_scope`; a body's person is refused as an unknown one).

Handlers that touch the database are plain `def`: FastAPI runs them in its threadpool, so a
slow query never blocks the event loop. Reads use read-only connections, which on SQLite begin
with a plain BEGIN and do not wait for the write lock the alarm path holds.
"""

import hmac
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import Connection, Row, and_, insert, literal, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from alerts.escalation import Plan, PlanError, Step
from alerts.model import Action, AlertKind, IllegalTransition, Outcome, Priority, State
from care.people import Language
from care.people import Role as ResponderRole
from devices.kinds import DeviceKind
from devices.parse import Reason
from devices.topics import DEVICE_CHANNELS, PAGER_CHANNELS, VERSION, valid_id
from gateway import alert_log, refused_alarms
from gateway.accounts import CSRF_HEADER, SESSION_COOKIE, lookup_session
from gateway.alerting import Actor, NotFound, Tx
from gateway.auth import Principal, Role, verify_token
from gateway.care_store import Scope as CareScope
from gateway.care_store import scope_for
from gateway.clock import new_id, rfc3339
from gateway.error_texts import (
    ROLE_ZH,
    STATE_ZH,
    Bilingual,
    not_found_zh,
    status_zh,
    validation_zh,
)
from gateway.error_texts import validation_en as _validation_en
from gateway.paging import RESPONDER
from gateway.runtime import Runtime
from gateway.tables import (
    alert_events,
    alerts,
    devices,
    duty_shifts,
    elders,
    escalation_plans,
    outbox,
    pages,
    quarantine,
    responders,
)
from gateway.tables_points import points_claims
from gateway.tables_services import svc_orders

try:
    __version__ = version("shouwang")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0"

ID_CHARS = "1-64 characters of A-Z a-z 0-9 _ . -"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # keeps \t \n \r
MAX_BODY_BYTES = 64 * 1024  # the largest plan allowed is a few kilobytes; refuse more (413)
MAX_ECHO = 200  # characters of a bad input echoed back in a 422
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


# --- input types ------------------------------------------------------------------------------


def _one_line(value: str) -> str:
    # PostgreSQL refuses NUL in text (a 500 if it got that far); other controls are never meant.
    if _CONTROL.search(value):
        raise PydanticCustomError("control_characters", "control characters are not allowed")
    return value


def _free_text(value: str) -> str:
    if _CONTROL_IN_TEXT.search(value):
        raise PydanticCustomError(
            "control_characters", "control characters other than tab and newline are not allowed"
        )
    return value


def _contract_id(value: str) -> str:
    if not valid_id(value):
        raise PydanticCustomError("id_format", f"an id is {ID_CHARS}")
    return value


def _iso_date(value: Any) -> Any:
    # Only "YYYY-MM-DD": pydantic alone would also take a number of seconds as a date.
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise PydanticCustomError("date_format", "a date is YYYY-MM-DD")
    return value


def _plausible_birth(value: date) -> date:
    if not date(1880, 1, 1) <= value <= date.today():
        raise PydanticCustomError("date_range", "a birth date is between 1880-01-01 and today")
    return value


# Lengths follow the columns in gateway/tables.py.
Name = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_one_line),
]
Address = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=300),
    AfterValidator(_one_line),
]
Phone = Annotated[
    str,
    StringConstraints(
        strict=True, strip_whitespace=True, min_length=3, max_length=32, pattern=r"^[0-9+()\- ]+$"
    ),
    Field(description="digits, spaces and + ( ) -", examples=["13800000000"]),
]
DeviceId = Annotated[
    str,
    StringConstraints(strict=True, max_length=64),
    AfterValidator(_contract_id),
    Field(description=f"the device's id in its MQTT topics: {ID_CHARS}", examples=["cb-001"]),
]
PagerId = Annotated[
    str,
    StringConstraints(strict=True, max_length=64),
    AfterValidator(_contract_id),
    Field(description=f"the pager's id in its MQTT topics: {ID_CHARS}", examples=["pager-w-01"]),
]
RefId = Annotated[  # an id the gateway gave out (elder, responder), as a reference in a body
    str, StringConstraints(strict=True, max_length=40), AfterValidator(_contract_id)
]
Note = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, max_length=1000),
    AfterValidator(_free_text),
]
BirthDate = Annotated[
    date,
    BeforeValidator(_iso_date),
    AfterValidator(_plausible_birth),
    Field(examples=["1941-03-08"]),
]
QueryId = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- resources: Create (in) and Public (out) ---------------------------------------------------


class ElderCreate(_In):
    name: Name
    address: Address
    phone: Phone | None = None
    birth_date: BirthDate | None = None


class ElderPublic(BaseModel):
    id: str
    name: str
    address: str
    phone: str | None
    birth_date: date | None
    created_at: str


class DeviceCreate(_In):
    id: DeviceId
    kind: DeviceKind
    elder_id: RefId


class DevicePublic(BaseModel):
    id: str
    kind: str
    elder_id: str
    status: str = Field(description="active or retired")
    online: bool | None = Field(description="as last reported by the device; null: never")
    last_seen_at: str | None
    battery_pct: float | None
    fw: str | None
    created_at: str


class ResponderCreate(_In):
    name: Name
    role: ResponderRole
    pager_id: PagerId | None = None
    phone: Phone | None = None
    language: Language = Language.ZH_CN


class ResponderPublic(BaseModel):
    id: str
    name: str
    role: str
    pager_id: str | None
    phone: str | None
    language: str
    created_at: str


class StepIn(_In):
    responder_ids: Annotated[list[RefId], Field(max_length=200)]
    ack_timeout_s: StrictInt = Field(description="seconds before the next step is paged")


class EscalationIn(_In):
    steps: Annotated[list[StepIn], Field(max_length=100)]


class StepPublic(BaseModel):
    responder_ids: list[str]
    ack_timeout_s: int


class EscalationPublic(BaseModel):
    elder_id: str
    steps: list[StepPublic]
    updated_at: str


class NoteIn(_In):
    note: Note | None = None


class ResolveIn(_In):
    outcome: Outcome
    note: Note | None = None


class AlertPublic(BaseModel):
    id: str
    elder_id: str
    device_id: str
    kind: AlertKind
    priority: Priority
    state: State
    created_at: str
    updated_at: str
    step: int = Field(description="the escalation step paged last (1 first; 0 none)")
    next_escalation_at: str | None = Field(description="when the next step is paged, if open")
    acknowledged_at: str | None
    acknowledged_by: str | None
    on_site_at: str | None
    closed_at: str | None
    outcome: str | None
    note: str | None


class TimelineEntry(BaseModel):
    at: str
    type: str = Field(description="opened, paged, escalated, acknowledged, declined, ...")
    actor: str | None
    detail: dict[str, Any] | None


class PagePublic(BaseModel):
    id: str
    responder_id: str
    pager_id: str
    type: str = Field(description="page or notice")
    step: int | None
    created_at: str
    reply_by: str | None
    sent_at: str | None = Field(description="when the broker took it; null: not yet")
    cancelled_at: str | None = Field(description="set when an answer made it unnecessary")


class AlertDetail(AlertPublic):
    plan: list[StepPublic]
    timeline: list[TimelineEntry]
    pages: list[PagePublic]


class QuarantinePublic(BaseModel):
    id: int
    at: str
    topic: str
    reason: str
    detail: str
    payload: str
    size: int


# --- dependencies ------------------------------------------------------------------------------


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
_bearer = HTTPBearer(auto_error=False, description="an API token or SHOUWANG_ADMIN_TOKEN")
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="the pages' session (POST /api/v1/session); a change also needs X-CSRF-Token",
)
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def authenticate_any(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_session_cookie)],
) -> Principal:
    """The caller, of any role, from `Authorization: Bearer <token>` or else from the pages'
    session cookie (gateway/accounts.py); 401 otherwise. A request with the cookie that may
    change something (POST, PUT, PATCH, DELETE) must also carry the session's CSRF token in
    `X-CSRF-Token` (403 otherwise): another site can make a browser send the cookie, but cannot
    read the token. Routes that scope every answer to the caller use this (gateway/api_care.py)."""
    if credentials is not None:  # a token: exactly as before sessions existed
        principal = verify_token(
            runtime.engine, credentials.credentials.strip(), runtime.settings.admin_token
        )
        if principal is None:
            raise _unauthorized(
                "the token is not valid (unknown or revoked)", "令牌无效（不存在或已吊销）"
            )
        return principal
    if not cookie:
        raise _unauthorized(
            "an Authorization: Bearer <token> header (or a signed-in session) is needed",
            "需要 Authorization: Bearer <令牌> 请求头（或先登录）",
        )
    session = lookup_session(
        runtime.engine, cookie, now_ms=runtime.now_ms(), idle_s=runtime.settings.session_idle_s
    )
    if session is None:
        raise _unauthorized(
            "the session has ended (signed out, expired or revoked): sign in",
            "登录已失效（已退出、已过期或已被撤销），请重新登录",
        )
    if request.method in _UNSAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8"), session.csrf_token.encode("utf-8")):
            raise Bilingual(
                status.HTTP_403_FORBIDDEN,
                f"a signed-in change needs the session's {CSRF_HEADER} header",
                f"登录后的修改须带本次登录的 {CSRF_HEADER} 请求头，请刷新页面后重试",
            )
    request.state.session = session  # for the session's own routes (gateway/api_session.py)
    return session.principal


def still_authenticated(request: Request, runtime: Runtime) -> Callable[[], bool]:
    """For a live stream (gateway/live.py `sse_response(allowed=...)`): whether the credential
    this request came with would still be taken now, chosen as `authenticate_any` chooses it
    (a bearer token first, else the session cookie). A stream outlives the one check made
    when it opened; without asking again, a signed-out session, a disabled account or a revoked
    token kept receiving pages until the stream's time ran out. It reads the database; the
    stream calls it on a worker thread."""
    scheme, param = get_authorization_scheme_param(request.headers.get("authorization"))
    token = param.strip() if scheme.lower() == "bearer" and param else None
    cookie = request.cookies.get(SESSION_COOKIE)

    def check() -> bool:
        if token is not None:
            return verify_token(runtime.engine, token, runtime.settings.admin_token) is not None
        if not cookie:
            return False
        session = lookup_session(
            runtime.engine,
            cookie,
            now_ms=runtime.now_ms(),
            idle_s=runtime.settings.session_idle_s,
        )
        return session is not None

    return check


def authenticate(principal: Annotated[Principal, Depends(authenticate_any)]) -> Principal:
    """The caller, an admin or staff token (every route); 401 without a valid token, 403 for
    the care-record roles (family, watcher, volunteer), which use only the care routes."""
    if not principal.role.full_access:
        raise Bilingual(
            status.HTTP_403_FORBIDDEN,
            f"a {principal.role} token may use only the care-record routes (/api/v1/care/...)",
            f"{ROLE_ZH.get(principal.role, principal.role)}只能使用照护档案接口"
            "（/api/v1/care/...）",
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]
PrincipalAnyDep = Annotated[Principal, Depends(authenticate_any)]


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency for a router or route that only `roles` may use: the caller, 401 when there
    is none, 403 when their role is not one of `roles`. Per-record scoping (404 for a record
    the caller may not see) is the route's own."""
    allowed = frozenset(roles)

    def check(principal: PrincipalAnyDep) -> Principal:
        if principal.role not in allowed:
            raise Bilingual(
                status.HTTP_403_FORBIDDEN,
                f"a {principal.role} may not use this route",
                f"{ROLE_ZH.get(principal.role, principal.role)}无权使用此接口",
            )
        return principal

    return check


def _unauthorized(detail: str, zh: str) -> HTTPException:
    return Bilingual(
        status.HTTP_401_UNAUTHORIZED, detail, zh, headers={"WWW-Authenticate": "Bearer"}
    )


def _not_found(what: str, ident: str) -> HTTPException:
    return Bilingual(
        status.HTTP_404_NOT_FOUND, f"no {what} {ident!r}", not_found_zh(what, repr(ident))
    )


def _conflict(detail: str, zh: str | None = None) -> HTTPException:
    """A 409; without `zh` the answer's Chinese is the generic one for a conflict."""
    if zh is None:
        return HTTPException(status.HTTP_409_CONFLICT, detail=detail)
    return Bilingual(status.HTTP_409_CONFLICT, detail, zh)


def _invalid(
    loc: tuple[str | int, ...], msg: str, input_: Any = None, zh: str | None = None
) -> RequestValidationError:
    """A 422 shaped like FastAPI's own, for checks that need the database; its Chinese is `zh`
    (else the generic one for a value error, with `msg`)."""
    err: dict[str, Any] = {"type": "value_error", "loc": loc, "msg": msg, "input": input_}
    if zh is not None:
        err["ctx"] = {"en": msg, "zh": zh}
    return RequestValidationError([err])


@contextmanager
def _reading(runtime: Runtime) -> Iterator[Connection]:
    with runtime.engine.connect().execution_options(readonly=True) as conn, conn.begin():
        yield conn


def _ms(runtime: Runtime, value: int | None) -> str | None:
    return rfc3339(value, runtime.tz)


def _ms_req(runtime: Runtime, value: int) -> str:
    out = rfc3339(value, runtime.tz)
    assert out is not None
    return out


def _usable_path_id(ident: str) -> bool:
    # A path id outside the id alphabet cannot exist; answering 404 at once also keeps NUL and
    # odd characters away from PostgreSQL, which would refuse them with an error.
    return valid_id(ident)


def _require(conn: Connection, table: Any, ident: str, what: str) -> Row[Any]:
    """The row of a path id, or 404 (an id outside the id alphabet cannot exist)."""
    row = None
    if _usable_path_id(ident):
        row = conn.execute(select(table).where(table.c.id == ident)).first()
    if row is None:
        raise _not_found(what, ident)
    return row


# --- station scoping ---------------------------------------------------------------------------

# Path parameters that name an elder or something of one elder: the table the id is looked up
# in and its column holding the elder's id. A route whose path names one of these is scoped by
# `in_scope` whatever its module, so that no such route is forgotten (nor one added later).
_ELDER_OF: dict[str, tuple[str, Any, str]] = {
    "elder_id": ("elder", elders, "id"),
    "device_id": ("device", devices, "elder_id"),
    "alert_id": ("alert", alerts, "elder_id"),
    "order_id": ("order", svc_orders, "elder_id"),
}
# Path parameters that name a person (a responder) or something of one person, alike: a
# person's station is their profile's (care_store `Scope.sees_person`).
_PERSON_OF: dict[str, tuple[str, Any, str]] = {
    "responder_id": ("responder", responders, "id"),
    "shift_id": ("shift", duty_shifts, "responder_id"),
}
# Path parameters that name something of a points member, who is an elder or a person.
_MEMBER_OF: dict[str, tuple[str, Any, str]] = {
    "claim_id": ("claim", points_claims, "member"),
}
_Sees = Callable[[CareScope, Connection, str], bool]


def caller_scope(conn: Connection, rt: Runtime, principal: Principal) -> CareScope:
    """Which elders the caller sees (gateway/care_store.py `Scope`, as the care routes decide
    it). On this side, use `on_board`/`on_board_filter`: an elder no station has taken yet is
    every station's, so that an alarm is never on nobody's board."""
    return scope_for(conn, principal, rt.now_ms())


def in_scope(
    not_found: Callable[[str, str], Exception] = _not_found,
) -> Callable[..., None]:
    """A router dependency: a staff member whose profile names a station gets 404 (`not_found`,
    the router's own shape of it) for a path id of another station's elder, their device,
    alert or service order, of another station's person or their shift, or of a points claim
    of either, exactly as for one that does not exist; and so changes nothing. Except an alert
    they were paged for (`Scope.paged_for`): the one alert, not its elder or their other alerts.
    Unknown ids are left to the route. Admins and staff acting for nobody or for a person of
    no station see every station, as before; other roles are the routers' own business (a
    service worker's steps are limited to their orders there)."""
    paths: list[tuple[dict[str, tuple[str, Any, str]], _Sees]] = [
        (_ELDER_OF, CareScope.sees_on_board),
        (_PERSON_OF, CareScope.sees_person),
        (_MEMBER_OF, CareScope.sees_member),
    ]

    def check(request: Request, rt: RuntimeDep, principal: PrincipalAnyDep) -> None:
        if principal.role is not Role.STAFF or principal.person_id is None:
            return
        named = [
            (ident, owners[param], sees)
            for param, ident in ((p, str(v)) for p, v in request.path_params.items())
            for owners, sees in paths
            if param in owners
        ]
        if not named:
            return
        with _reading(rt) as conn:
            scope = caller_scope(conn, rt, principal)
            if scope.station is None:
                return
            for ident, (what, table, column), sees in named:
                # A generated visit's order id has an @ besides the id alphabet (api_services).
                if not _usable_path_id(ident.replace("@", "-", 1)):
                    continue  # cannot exist: the route answers 404 itself
                owner = conn.execute(select(table.c[column]).where(table.c.id == ident)).scalar()
                if owner is not None and not sees(scope, conn, owner):
                    if table is alerts and scope.paged_for(conn, ident):
                        continue  # paged from another station: theirs to open and answer too
                    raise not_found(what, ident)

    return check


def _elder_seen(conn: Connection, rt: Runtime, principal: Principal, elder_id: str) -> bool:
    """An elder named in a body exists and is on the caller's board (else the route answers
    as for an unknown elder: another station's is not told apart from one that is not)."""
    if conn.execute(select(elders.c.id).where(elders.c.id == elder_id)).first() is None:
        return False
    return caller_scope(conn, rt, principal).sees_on_board(conn, elder_id)


# --- row -> public -----------------------------------------------------------------------------


def _elder_out(rt: Runtime, r: Row[Any]) -> ElderPublic:
    return ElderPublic(
        id=r.id,
        name=r.name,
        address=r.address,
        phone=r.phone,
        birth_date=r.birth_date,
        created_at=_ms_req(rt, r.created_at),
    )


def _device_out(rt: Runtime, r: Row[Any]) -> DevicePublic:
    return DevicePublic(
        id=r.id,
        kind=r.kind,
        elder_id=r.elder_id,
        status=r.status,
        online=r.online,
        last_seen_at=_ms(rt, r.last_seen_at),
        battery_pct=r.battery_pct,
        fw=r.fw,
        created_at=_ms_req(rt, r.created_at),
    )


def _responder_out(rt: Runtime, r: Row[Any]) -> ResponderPublic:
    return ResponderPublic(
        id=r.id,
        name=r.name,
        role=r.role,
        pager_id=r.pager_id,
        phone=r.phone,
        language=r.language,
        created_at=_ms_req(rt, r.created_at),
    )


def _alert_fields(rt: Runtime, r: Row[Any]) -> dict[str, Any]:
    return {
        "id": r.id,
        "elder_id": r.elder_id,
        "device_id": r.device_id,
        "kind": r.kind,
        "priority": r.priority,
        "state": r.state,
        "created_at": _ms_req(rt, r.created_at),
        "updated_at": _ms_req(rt, r.updated_at),
        "step": r.step,
        "next_escalation_at": _ms(rt, r.next_escalation_at),
        "acknowledged_at": _ms(rt, r.acknowledged_at),
        "acknowledged_by": r.acknowledged_by,
        "on_site_at": _ms(rt, r.on_site_at),
        "closed_at": _ms(rt, r.closed_at),
        "outcome": r.outcome,
        "note": r.note,
    }


def _alert_out(rt: Runtime, r: Row[Any]) -> AlertPublic:
    return AlertPublic(**_alert_fields(rt, r))


# --- /api/v1 -----------------------------------------------------------------------------------

api = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(authenticate), Depends(in_scope())],
    max_body_size=MAX_BODY_BYTES,
)


# elders


@api.post("/elders", status_code=status.HTTP_201_CREATED, tags=["elders"])
def create_elder(body: ElderCreate, rt: RuntimeDep) -> ElderPublic:
    values = body.model_dump()
    values.update(id=new_id("el"), created_at=rt.now_ms())
    with rt.engine.begin() as conn:
        conn.execute(insert(elders).values(**values))
        row = conn.execute(select(elders).where(elders.c.id == values["id"])).one()
    return _elder_out(rt, row)


@api.get("/elders", tags=["elders"])
def list_elders(
    rt: RuntimeDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ElderPublic]:
    """The elders the caller sees: a station's staff, theirs and those of no station yet."""
    with _reading(rt) as conn:
        seen = caller_scope(conn, rt, principal).on_board_filter(elders.c.id)
        rows = conn.execute(
            select(elders)
            .where(seen)
            .order_by(elders.c.created_at, elders.c.id)
            .limit(limit)
            .offset(offset)
        ).all()
    return [_elder_out(rt, r) for r in rows]


@api.get("/elders/{elder_id}", tags=["elders"])
def get_elder(elder_id: str, rt: RuntimeDep) -> ElderPublic:
    with _reading(rt) as conn:
        row = _require(conn, elders, elder_id, "elder")
    return _elder_out(rt, row)


def _plan_out(rt: Runtime, elder_id: str, steps: Any, updated_at: int) -> EscalationPublic:
    return EscalationPublic(
        elder_id=elder_id,
        steps=[StepPublic(**s) for s in steps],
        updated_at=_ms_req(rt, updated_at),
    )


@api.put("/elders/{elder_id}/escalation", tags=["elders"])
def put_escalation(
    elder_id: str, body: EscalationIn, rt: RuntimeDep, principal: PrincipalDep
) -> EscalationPublic:
    """Set the elder's escalation plan (replacing any). Open alerts keep the plan they began
    with; the new plan applies to alerts opened from now on."""
    try:
        plan = Plan(tuple(Step(tuple(s.responder_ids), s.ack_timeout_s) for s in body.steps))
    except PlanError as exc:
        raise _invalid(("body", "steps"), str(exc)) from None
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        _require(conn, elders, elder_id, "elder")
        # Another station's person is refused as one that does not exist.
        seen = caller_scope(conn, rt, principal).people_filter(responders.c.id)
        known = {
            r.id
            for r in conn.execute(
                select(responders.c.id).where(responders.c.id.in_(plan.responder_ids()), seen)
            )
        }
        for n, s in enumerate(plan.steps):
            for i, rid in enumerate(s.responder_ids):
                if rid not in known:
                    raise _invalid(
                        ("body", "steps", n, "responder_ids", i),
                        f"no responder {rid!r}",
                        rid,
                        f"没有该人员：{rid!r}",
                    )
        steps = plan.to_json()
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        # An upsert, so two PUTs at once on PostgreSQL do not collide on the primary key.
        stmt = dialect.insert(escalation_plans).values(
            elder_id=elder_id, steps=steps, updated_at=now
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[escalation_plans.c.elder_id],
                set_={"steps": stmt.excluded.steps, "updated_at": stmt.excluded.updated_at},
            )
        )
    return _plan_out(rt, elder_id, steps, now)


@api.get("/elders/{elder_id}/escalation", tags=["elders"])
def get_escalation(elder_id: str, rt: RuntimeDep) -> EscalationPublic:
    """The elder's plan; 404 when none is set (alarms then follow the paging policy: the
    elder's pairings, volunteers and staff on duty, family; see /elders/{id}/pairings)."""
    with _reading(rt) as conn:
        _require(conn, elders, elder_id, "elder")
        row = conn.execute(
            select(escalation_plans).where(escalation_plans.c.elder_id == elder_id)
        ).first()
    if row is None:
        raise Bilingual(
            status.HTTP_404_NOT_FOUND,
            f"elder {elder_id!r} has no escalation plan (alarms follow the paging policy: "
            "pairings, then volunteers and staff on duty)",
            f"老人 {elder_id!r} 没有升级方案"
            "（告警按呼叫规则：先结对人员，再值班的志愿者和工作人员）",
        )
    return _plan_out(rt, elder_id, row.steps, row.updated_at)


# devices


@api.post("/devices", status_code=status.HTTP_201_CREATED, tags=["devices"])
def create_device(body: DeviceCreate, rt: RuntimeDep, principal: PrincipalDep) -> DevicePublic:
    try:
        with rt.engine.begin() as conn:
            if conn.execute(select(devices.c.id).where(devices.c.id == body.id)).first():
                raise _conflict(f"a device {body.id!r} exists", f"设备 {body.id!r} 已存在")
            if not _elder_seen(conn, rt, principal, body.elder_id):
                raise _invalid(
                    ("body", "elder_id"),
                    f"no elder {body.elder_id!r}",
                    body.elder_id,
                    f"没有该老人：{body.elder_id!r}",
                )
            now = rt.now_ms()
            conn.execute(
                insert(devices).values(
                    id=body.id,
                    kind=body.kind.value,
                    elder_id=body.elder_id,
                    status="active",
                    created_at=now,
                )
            )
            row = conn.execute(select(devices).where(devices.c.id == body.id)).one()
            if rt.rules is not None:  # watched from now: one installed dead is found silent
                rt.rules.watch(conn, row, now)
    except IntegrityError:  # created by someone else between our check and our insert
        raise _conflict(f"a device {body.id!r} exists", f"设备 {body.id!r} 已存在") from None
    return _device_out(rt, row)


@api.get("/devices", tags=["devices"])
def list_devices(
    rt: RuntimeDep,
    principal: PrincipalDep,
    elder_id: QueryId = None,
    kind: DeviceKind | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[DevicePublic]:
    q = select(devices).order_by(devices.c.created_at, devices.c.id).limit(limit).offset(offset)
    if elder_id is not None:
        q = q.where(devices.c.elder_id == elder_id)
    if kind is not None:
        q = q.where(devices.c.kind == kind.value)
    with _reading(rt) as conn:
        q = q.where(caller_scope(conn, rt, principal).on_board_filter(devices.c.elder_id))
        rows = conn.execute(q).all()
    return [_device_out(rt, r) for r in rows]


@api.get("/devices/{device_id}", tags=["devices"])
def get_device(device_id: str, rt: RuntimeDep) -> DevicePublic:
    with _reading(rt) as conn:
        row = _require(conn, devices, device_id, "device")
    return _device_out(rt, row)


@api.post("/devices/{device_id}/retire", tags=["devices"])
def retire_device(device_id: str, rt: RuntimeDep) -> DevicePublic:
    """Retire a device: its messages are refused (quarantined) from now on. Its open alerts stay
    open until someone answers them; a gas sensor that had it as its valve has none. Retiring a
    retired device changes nothing."""
    if not _usable_path_id(device_id):
        raise _not_found("device", device_id)
    with rt.engine.begin() as conn:
        res = conn.execute(
            update(devices).where(devices.c.id == device_id).values(status="retired")
        )
        if res.rowcount == 0:
            raise _not_found("device", device_id)
        # A retired device's answers are refused: no gas sensor keeps it as its valve (a
        # valve.close to it would only escalate for want of an answer; PATCH refuses it too).
        conn.execute(
            update(devices)
            .where(devices.c.valve_device_id == device_id)
            .values(valve_device_id=None)
        )
        row = conn.execute(select(devices).where(devices.c.id == device_id)).one()
    return _device_out(rt, row)


# responders


@api.post("/responders", status_code=status.HTTP_201_CREATED, tags=["responders"])
def create_responder(body: ResponderCreate, rt: RuntimeDep) -> ResponderPublic:
    rid = new_id("rs")
    taken = f"pager {body.pager_id!r} belongs to another responder"
    taken_zh = f"呼叫器 {body.pager_id!r} 已属于另一位人员"
    try:
        with rt.engine.begin() as conn:
            if (
                body.pager_id is not None
                and conn.execute(
                    select(responders.c.id).where(responders.c.pager_id == body.pager_id)
                ).first()
            ):
                raise _conflict(taken, taken_zh)
            conn.execute(
                insert(responders).values(
                    id=rid,
                    name=body.name,
                    role=body.role.value,
                    pager_id=body.pager_id,
                    phone=body.phone,
                    language=body.language.value,
                    created_at=rt.now_ms(),
                )
            )
            row = conn.execute(select(responders).where(responders.c.id == rid)).one()
    except IntegrityError:  # the same pager registered at the same moment
        raise _conflict(taken, taken_zh) from None
    return _responder_out(rt, row)


@api.get("/responders", tags=["responders"])
def list_responders(
    rt: RuntimeDep,
    principal: PrincipalDep,
    role: ResponderRole | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ResponderPublic]:
    """The people the caller sees: a station's staff, theirs and those of no station yet."""
    q = (
        select(responders)
        .order_by(responders.c.created_at, responders.c.id)
        .limit(limit)
        .offset(offset)
    )
    if role is not None:
        q = q.where(responders.c.role == role.value)
    with _reading(rt) as conn:
        q = q.where(caller_scope(conn, rt, principal).people_filter(responders.c.id))
        rows = conn.execute(q).all()
    return [_responder_out(rt, r) for r in rows]


@api.get("/responders/{responder_id}", tags=["responders"])
def get_responder(responder_id: str, rt: RuntimeDep) -> ResponderPublic:
    with _reading(rt) as conn:
        row = _require(conn, responders, responder_id, "responder")
    return _responder_out(rt, row)


# alerts


@api.get("/alerts", tags=["alerts"])
def list_alerts(
    rt: RuntimeDep,
    principal: PrincipalDep,
    state: State | None = None,
    device_id: QueryId = None,
    elder_id: QueryId = None,
    limit: Limit = 100,
) -> list[AlertPublic]:
    q = select(alerts).order_by(alerts.c.created_at.desc(), alerts.c.id.desc()).limit(limit)
    if state is not None:
        q = q.where(alerts.c.state == state.value)
    if device_id is not None:
        q = q.where(alerts.c.device_id == device_id)
    if elder_id is not None:
        q = q.where(alerts.c.elder_id == elder_id)
    with _reading(rt) as conn:
        q = q.where(caller_scope(conn, rt, principal).on_board_filter(alerts.c.elder_id))
        rows = conn.execute(q).all()
    return [_alert_out(rt, r) for r in rows]


@api.get("/alerts/{alert_id}", tags=["alerts"])
def get_alert(alert_id: str, rt: RuntimeDep) -> AlertDetail:
    """The alert with its timeline (every change, page, reply and escalation, in order) and the
    pages and notices sent for it."""
    if not _usable_path_id(alert_id):
        raise _not_found("alert", alert_id)
    with _reading(rt) as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            raise _not_found("alert", alert_id)
        events = conn.execute(
            select(alert_events)
            .where(alert_events.c.alert_id == alert_id)
            .order_by(alert_events.c.id)
        ).all()
        sent = conn.execute(
            select(pages, outbox.c.sent_at, outbox.c.cancelled_at)
            .outerjoin(outbox, outbox.c.page_id == pages.c.id)
            .where(pages.c.alert_id == alert_id)
            .order_by(pages.c.created_at, pages.c.id)
        ).all()
    return AlertDetail(
        **_alert_fields(rt, row),
        plan=[StepPublic(**s) for s in row.plan],
        timeline=[
            TimelineEntry(at=_ms_req(rt, e.at), type=e.type, actor=e.actor, detail=e.detail)
            for e in events
        ],
        pages=[
            PagePublic(
                id=p.id,
                responder_id=p.responder_id,
                pager_id=p.pager_id,
                type=p.type,
                step=p.step,
                created_at=_ms_req(rt, p.created_at),
                reply_by=_ms(rt, p.reply_by),
                sent_at=_ms(rt, p.sent_at),
                cancelled_at=_ms(rt, p.cancelled_at),
            )
            for p in sent
        ],
    )


def actor_of(conn: Connection, principal: Principal) -> Actor:
    """The caller as the alert service sees them. One who acts for a responder is that
    responder, exactly as their pager's replies are (`responder:<id>`, their name, their pager):
    an ack here and a decline from the pager (or the other way round) are then one person's,
    so the decline withdraws the ack; the others' notice names the person, not the login; and
    their own pager is not told that they took it. The credential stays on the timeline
    (`via`). Anyone else keeps their label there; the log names them by id only."""
    if principal.person_id is not None and principal.role is not Role.SERVICE_WORKER:
        person = conn.execute(
            select(responders.c.name, responders.c.pager_id).where(
                responders.c.id == principal.person_id
            )
        ).first()
        if person is not None:
            return Actor(
                label=f"{RESPONDER}{principal.person_id}",
                responder_id=principal.person_id,
                name=person.name,
                pager_id=person.pager_id,
                via=principal.ref,
            )
    return Actor(label=principal.label, name=principal.name, log_as=principal.ref)


def _act(
    rt: Runtime,
    principal: Principal,
    alert_id: str,
    action: Action,
    outcome: Outcome | None = None,
    note: str | None = None,
) -> AlertPublic:
    """One answer to an alert, the same way a pager's reply is applied (gateway/alerting.py)."""
    if not _usable_path_id(alert_id):
        raise _not_found("alert", alert_id)
    try:
        with rt.engine.begin() as conn:
            actor = actor_of(conn, principal)
            tx = Tx(conn, rt.now_ms())
            if action is Action.RESOLVE and outcome is not None:
                # Also gives the outcome of an alert a pager resolved without one.
                changed = rt.service.resolve(tx, alert_id, actor, outcome, note or None)
            else:
                changed = rt.service.act(tx, alert_id, action, actor, note=note or None).changed
            row = rt.service.load(conn, alert_id, lock=False)
            if rt.rules is not None and changed and outcome is Outcome.FALSE_ALARM:
                rt.rules.false_alarm(tx, row)  # a no-water false alarm is learned from
    except NotFound:
        raise _not_found("alert", alert_id) from None
    except IllegalTransition as exc:
        raise _conflict(
            f"{exc} (alert {alert_id!r})",
            f"告警 {alert_id!r} 当前为“{STATE_ZH.get(exc.state, exc.state)}”，不能执行此操作",
        ) from None
    alert_log.emit(tx.logs)  # committed
    if tx.out:  # committed: now the notices may go
        rt.publish(tx.out)
    return _alert_out(rt, row)


@api.post("/alerts/{alert_id}/ack", tags=["alerts"])
def ack_alert(
    alert_id: str,
    rt: RuntimeDep,
    principal: PrincipalDep,
    body: Annotated[NoteIn | None, Body()] = None,
) -> AlertPublic:
    """Take the alert: paging stops and the others paged are told they need not go."""
    return _act(rt, principal, alert_id, Action.ACK, note=body.note if body else None)


@api.post("/alerts/{alert_id}/arrive", tags=["alerts"])
def arrive_alert(
    alert_id: str,
    rt: RuntimeDep,
    principal: PrincipalDep,
    body: Annotated[NoteIn | None, Body()] = None,
) -> AlertPublic:
    """Someone is with the elder (on site)."""
    return _act(rt, principal, alert_id, Action.ARRIVE, note=body.note if body else None)


@api.post("/alerts/{alert_id}/resolve", tags=["alerts"])
def resolve_alert(
    alert_id: str, body: ResolveIn, rt: RuntimeDep, principal: PrincipalDep
) -> AlertPublic:
    """Close the alert with its outcome; the others paged are told. An alert resolved without
    an outcome (by a pager's `resolved`) is given it here, once; 409 for one that has its
    outcome already, or is cancelled."""
    return _act(rt, principal, alert_id, Action.RESOLVE, outcome=body.outcome, note=body.note)


# quarantine


def _others_topics(scope: CareScope, base: str) -> Any:
    """Every topic of another station's devices and pagers, as a subquery: the quarantine keeps
    only the topic, and a topic names its device or pager exactly (contract v1), so an equal
    match finds them with no parsing in SQL (LIKE would read `_` in an id as a wildcard)."""
    others_devices = ~scope.on_board_filter(devices.c.elder_id)
    others_pagers = and_(responders.c.pager_id.is_not(None), ~scope.people_filter(responders.c.id))
    topics = [
        select(literal(f"{base}/{VERSION}/devices/") + devices.c.id + f"/{ch}").where(
            devices.c.elder_id.is_not(None), others_devices
        )
        for ch in sorted(DEVICE_CHANNELS)
    ] + [
        select(literal(f"{base}/{VERSION}/pagers/") + responders.c.pager_id + f"/{ch}").where(
            others_pagers
        )
        for ch in sorted(PAGER_CHANNELS)
    ]
    return union_all(*topics)


@api.get("/quarantine", tags=["quarantine"])
def list_quarantine(
    rt: RuntimeDep, principal: PrincipalDep, reason: Reason | None = None, limit: Limit = 100
) -> list[QuarantinePublic]:
    """Messages refused by the gateway, with the reason, newest first. A station's staff do not
    see those of another station's devices (by their elder) and pagers (by their person)."""
    q = select(quarantine).order_by(quarantine.c.id.desc()).limit(limit)
    if reason is not None:
        q = q.where(quarantine.c.reason == reason.value)
    with _reading(rt) as conn:
        scope = caller_scope(conn, rt, principal)
        if scope.station is not None:
            q = q.where(quarantine.c.topic.not_in(_others_topics(scope, rt.settings.mqtt_base)))
        rows = conn.execute(q).all()
    return [
        QuarantinePublic(
            id=r.id,
            at=_ms_req(rt, r.at),
            topic=r.topic,
            reason=r.reason,
            detail=r.detail,
            payload=r.payload,
            size=r.size,
        )
        for r in rows
    ]


# --- the app -----------------------------------------------------------------------------------


def _refused_summary(rt: Runtime) -> dict[str, Any] | None:
    """How many refused alarms await staff (every station's) and the newest's time; None for
    none, or when they cannot be read (/healthz answers all the same)."""
    try:
        with _reading(rt) as conn:
            found = refused_alarms.recent(conn, rt.settings.mqtt_base, rt.now_ms(), None)
    except DBAPIError:  # the database part of /healthz says why
        return None
    if not found:
        return None
    return {
        "count": len(found),
        "last_at": _ms(rt, found[0].at),
        "advice": "设备的报警消息因格式无效被拒收，未开启告警：请在值班看板查看并致电老人。 "
        "Alarm events refused as invalid opened no alert: see the station board and call the "
        "elders.",
    }


def healthz(rt: RuntimeDep) -> JSONResponse:
    """200 when the broker and the database are up, 503 naming what is down. The time-series
    store shows in the body only: alarms do not depend on it."""
    body = rt.health()
    down = [part for part in ("broker", "database") if not body.get(part, {}).get("ok")]
    body["down"] = down
    # The time-series store: "degraded" or "down" is named here, never a 503 (alarms go on).
    ts_state = body.get("timeseries", {}).get("state")
    body["degraded"] = ["timeseries"] if ts_state in ("degraded", "down") else []
    # The broker forgot our session (gateway/app.py SESSION_LOST_SHOWN_S): presses may be lost.
    if body.get("broker", {}).get("session_lost"):
        body["degraded"].append("broker_session")
    # Alarm events refused as invalid, not dismissed, under a day old (gateway/refused_alarms.py)
    if "database" not in down and (refused := _refused_summary(rt)) is not None:
        body["refused_alarms"] = refused
        body["degraded"].append("refused_alarms")
    code = status.HTTP_503_SERVICE_UNAVAILABLE if down else status.HTTP_200_OK
    return JSONResponse(body, status_code=code)


def metrics(rt: RuntimeDep) -> Response:
    """Prometheus text exposition of the gateway's metrics."""
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _echo(value: Any) -> Any:
    """A safe echo of the offending input: short scalars only, as valid UTF-8."""
    if isinstance(value, str):
        # A lone surrogate (legal in JSON as an escape such as \ud800) cannot be encoded:
        # FastAPI's own handler fails with a 500 while reporting the 422.
        return value[:MAX_ECHO].encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        # JSON's 1e400, NaN or Infinity, as Python's json reads them: JSON cannot carry them
        # back, and the 422 became a 500.
        return repr(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return None  # objects and lists: the location says enough


def _validation_failed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        out = {
            "type": err.get("type"),
            "loc": [_echo(part) for part in err.get("loc", ())],
            "msg": _echo(str(err.get("msg", ""))),
        }
        if "input" in err and (shown := _echo(err["input"])) is not None:
            out["input"] = shown
        # The pages show `zh` or `en` by locale (gateway/error_texts.py).
        out["en"] = _echo(_validation_en(err))
        out["zh"] = _echo(validation_zh(err))
        errors.append(out)
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an HTTPException, with Chinese beside the English: a string `detail`
    gets `detail_zh` and `code` (the route's own Chinese, else its status's), the items of a
    list `detail` their `zh` where a route left it out. Starlette's own 404/405 come here too."""
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    if exc.status_code < 200 or exc.status_code in (204, 205, 304):
        return Response(status_code=exc.status_code, headers=headers)  # no body allowed
    detail: Any = exc.detail
    body: dict[str, Any] = {"detail": detail}
    if isinstance(detail, str):
        code, zh = status_zh(exc.status_code)
        body["detail_zh"] = getattr(exc, "zh", None) or zh
        body["code"] = code
    elif isinstance(detail, list):
        body["detail"] = [
            {**item, "en": item.get("en") or _validation_en(item), "zh": validation_zh(item)}
            if isinstance(item, dict) and not item.get("zh")
            else item
            for item in detail
        ]
    elif isinstance(detail, dict) and not detail.get("zh"):
        body["detail"] = {**detail, "zh": status_zh(exc.status_code)[1]}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database being down is not the caller's fault and not a bug: say so, and when to retry.
    return JSONResponse(
        {
            "detail": "the database is unavailable; try again shortly",
            "detail_zh": "数据库暂时不可用，请稍后再试",
            "code": "database_unavailable",
        },
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


class _ControlCharactersInUrl:
    """Refuse a URL that holds a control character: in the path a 404 (no id has one, so the
    path names nothing, as `_usable_path_id` answers), in the query a 422 shaped like FastAPI's.

    A URL may carry one percent-encoded (%00); no id, name or filter of this API ever holds
    one, and PostgreSQL refuses NUL in text with an error (a 500 if it got that far). One check
    here covers every route's path and query parameters, those added later included.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = None
            query = QueryParams(scope.get("query_string", b"")).multi_items()
            bad = [(k, v) for k, v in query if _CONTROL.search(k) or _CONTROL.search(v)]
            if _CONTROL.search(scope.get("path", "")):
                response = JSONResponse(
                    {
                        "detail": "no such resource: no path with a control character exists",
                        "detail_zh": "找不到该资源：路径中不能含控制字符",
                        "code": "not_found",
                    },
                    status_code=status.HTTP_404_NOT_FOUND,
                )
            elif bad:
                detail = [
                    {
                        "type": "control_characters",
                        "loc": ["query", _echo(name)],
                        "msg": "control characters are not allowed",
                        "input": _echo(value),
                        "en": "control characters are not allowed",
                        "zh": "含有不允许的控制字符",
                    }
                    for name, value in bad
                ]
                response = JSONResponse(
                    {"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
                )
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _DeclaredSizeLimit:
    """Refuse a body whose Content-Length is over the limit with a JSON 413.

    The router's own limit (max_body_size) also counts bodies sent without a length, but
    Starlette answers a declared oversize body in plain text, and every answer here is JSON.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}  # path -> its own limit (a file upload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = Headers(scope=scope).get("content-length", "")
            limit = self.larger.get(scope.get("path", ""), self.max_bytes)
            if length.isdigit() and int(length) > limit:
                response = JSONResponse(
                    {
                        "detail": f"the body is larger than {limit} bytes",
                        "detail_zh": f"提交的内容过大（最多{limit}字节）",
                        "code": "too_large",
                    },
                    status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(runtime: Runtime) -> FastAPI:
    """The HTTP app for a running gateway; the caller owns the gateway's start and stop."""
    app = FastAPI(
        title="Shouwang 守望",
        version=__version__,
        description="Safety gateway for elders who live at home: elders, devices, responders, "
        "escalation plans and alerts (contract v1). Every /api/v1 call needs "
        "`Authorization: Bearer <token>`.",
    )
    app.state.runtime = runtime
    app.include_router(api)
    from gateway.api_paging import router as paging  # uses this module's auth: imported late

    app.include_router(paging)
    for name in (
        "api_rules",
        "api_history",
        "api_care",
        "api_points",
        "api_services",
        "api_session",
        "api_board",
        "api_office",
        "api_me",
        "api_family",
        "api_broker",
        "pages",
    ):
        app.include_router(import_module(f"gateway.{name}").router)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["operations"])
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    from gateway.api_care import LARGE_BODIES  # the registry import's upload

    app.add_middleware(_DeclaredSizeLimit, max_bytes=MAX_BODY_BYTES, larger=LARGE_BODIES)
    app.add_middleware(_ControlCharactersInUrl)
    from gateway.pages import SecurityHeaders  # every answer, the 413s above included

    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    return app


__all__ = ["create_app"]
