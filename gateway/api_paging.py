"""HTTP API for paging (issue 3): pairings, the duty roster, channel chains, elder tags, the
deliveries of an alert, and the alert measures report. Included by gateway/api.py's create_app.

Same conventions as gateway/api.py, whose auth dependency and helpers it uses: a bearer token on
every call, bodies checked before the database (unknown fields refused), 4xx with a JSON
`detail` and never a 500, 404 for unknown ids (and for another station's elder or alert: a
responder is never paired with an elder the caller may not see), 409 for duplicates, RFC 3339
times with an offset
in and out (in: within the range of gateway/api_time.py). An apprise URL is a secret (provider
credentials): it is stored, but only ever answered masked (scheme and a fingerprint), and never
echoed in an error.
"""

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
)
from sqlalchemy import Connection, Row, delete, func, insert, select, update

from alerts.measures import AlertRecord, Report, TimeStats, report
from alerts.model import AlertKind, Outcome, Priority, State
from alerts.policy import ChannelChain, ChannelLink
from care.people import Role as ResponderRole
from gateway.api import (
    MAX_BODY_BYTES,
    PrincipalDep,
    RefId,
    RuntimeDep,
    _conflict,
    _In,
    _invalid,
    _ms,
    _ms_req,
    _not_found,
    _one_line,
    _reading,
    _require,
    authenticate,
    caller_scope,
    in_scope,
)
from gateway.api_time import Instant, QueryInstant, query_instant
from gateway.auth import Principal
from gateway.clock import from_ms, new_id, to_ms
from gateway.notify import APPRISE, PAGER, WEB, WEB_ADDRESS, apprise_accepts, mask_address
from gateway.runtime import Runtime
from gateway.tables import (
    alert_events,
    alerts,
    deliveries,
    duty_shifts,
    elders,
    pairings,
    responder_channels,
    responders,
)

MAX_SHIFT = timedelta(days=31)
MAX_URL_CHARS = 2000
DEFAULT_REPORT_DAYS = 7


# --- input types --------------------------------------------------------------------------------


# gateway/api_rules.py imports the bounded instant under this name.
Time = Instant
Tag = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_one_line),
    Field(examples=["community:幸福里", "building:3", "station:幸福里站"]),
]
Tags = Annotated[list[Tag], Field(max_length=50)]


class PairingCreate(_In):
    responder_id: RefId
    role: ResponderRole | None = Field(
        None, description="the role in this elder's ladder; default: the responder's role"
    )
    order: StrictInt = Field(0, ge=0, le=1000, description="lower is paged first in its step")
    active_from: Instant | None = Field(None, description="default: now")
    active_until: Instant | None = Field(None, description="none: until ended")


class PairingPublic(BaseModel):
    id: str
    elder_id: str
    responder_id: str
    role: str
    order: int
    active_from: str
    active_until: str | None
    active: bool = Field(description="whether it counts now")
    created_by: str
    created_at: str


class ShiftCreate(_In):
    responder_id: RefId
    start_at: Instant
    end_at: Instant
    tags: Tags = Field(default_factory=list, description="where a volunteer is on this shift")


class ShiftPublic(BaseModel):
    id: str
    responder_id: str
    role: str
    start_at: str
    end_at: str
    tags: list[str]
    on_duty: bool = Field(description="whether the shift is on now")
    created_by: str
    created_at: str


class ChannelIn(_In):
    channel: Literal["pager", "apprise", "web"]
    address: StrictStr | None = Field(
        None,
        description="apprise: the URL (e.g. an SMS provider's), kept secret and shown masked; "
        "pager: omit (the responder's own pager_id); web: omit (the person's phone page, "
        f"{WEB_ADDRESS}: sent when they have it open, else the chain goes on)",
    )
    after_s: StrictInt = Field(0, ge=0, le=86_400, description="seconds after the page")


class ChannelsIn(_In):
    links: Annotated[list[ChannelIn], Field(max_length=10)] = Field(
        description="in order; the pager, when the person has one, is always first, at once"
    )


class ChannelPublic(BaseModel):
    position: int
    channel: str
    address: str = Field(description="a pager id, an apprise URL masked, or the phone page")
    after_s: int


class ChannelsPublic(BaseModel):
    responder_id: str
    links: list[ChannelPublic]


class TagsIn(_In):
    tags: Tags


class TagsPublic(BaseModel):
    elder_id: str
    tags: list[str]


class DeliveryPublic(BaseModel):
    id: int
    page_id: str
    responder_id: str
    reminder: bool
    channel: str
    address: str = Field(description="masked for apprise")
    link: int = Field(description="index in the person's channel chain (0 first)")
    try_no: int
    status: str = Field(description="queued, sending, sent, delivered, failed or cancelled")
    at: str
    error: str | None
    next_try_at: str | None


class TimeStatsPublic(BaseModel):
    count: int
    p50_s: float | None
    p90_s: float | None
    max_s: float | None


class SharePublic(BaseModel):
    within_s: float
    target: float
    within: int
    total: int = Field(description="alerts that could be judged")
    share: float | None
    met: bool | None


class ReportPublic(BaseModel):
    station: str | None
    start: str
    end: str
    made_at: str
    total: int
    by_kind: dict[str, int]
    by_priority: dict[str, int]
    by_outcome: dict[str, int]
    false_alarm_rate: float | None
    to_first_page: TimeStatsPublic
    to_ack: TimeStatsPublic
    to_on_site: TimeStatsPublic
    to_resolution: TimeStatsPublic
    answered_within: list[SharePublic] = Field(description="P1 alerts, the telecare standard")
    standards_met: bool | None
    unpaged: int


# --- helpers ------------------------------------------------------------------------------------


def _responder_in_body(conn: Connection, rt: Runtime, principal: Principal, rid: str) -> Row[Any]:
    """The person a body names; another station's is refused as one that does not exist (a
    station-A elder is never paired with, nor a roster given, a station-B watcher)."""
    row = conn.execute(select(responders).where(responders.c.id == rid)).first()
    if row is None or not caller_scope(conn, rt, principal).sees_person(conn, rid):
        raise _invalid(("body", "responder_id"), f"no responder {rid!r}", rid)
    return row


def _overlaps(a0: int, a1: int | None, b0: int, b1: int | None) -> bool:
    """[a0, a1) and [b0, b1) meet (None: no end)."""
    return (a1 is None or b0 < a1) and (b1 is None or a0 < b1)


def _pairing_out(rt: Runtime, r: Row[Any]) -> PairingPublic:
    now = rt.now_ms()
    return PairingPublic(
        id=r.id,
        elder_id=r.elder_id,
        responder_id=r.responder_id,
        role=r.role,
        order=r.ord,
        active_from=_ms_req(rt, r.active_from),
        active_until=_ms(rt, r.active_until),
        active=r.active_from <= now and (r.active_until is None or now < r.active_until),
        created_by=r.created_by,
        created_at=_ms_req(rt, r.created_at),
    )


def _shift_out(rt: Runtime, r: Row[Any]) -> ShiftPublic:
    now = rt.now_ms()
    return ShiftPublic(
        id=r.id,
        responder_id=r.responder_id,
        role=r.role,
        start_at=_ms_req(rt, r.start_at),
        end_at=_ms_req(rt, r.end_at),
        tags=list(r.tags or []),
        on_duty=r.start_at <= now < r.end_at,
        created_by=r.created_by,
        created_at=_ms_req(rt, r.created_at),
    )


# --- routes -------------------------------------------------------------------------------------

router = APIRouter(
    prefix="/api/v1",
    # A station's staff: another station's elder or alert answers 404 (gateway/api.py).
    dependencies=[Depends(authenticate), Depends(in_scope())],
    max_body_size=MAX_BODY_BYTES,
)


# pairings


@router.post("/elders/{elder_id}/pairings", status_code=status.HTTP_201_CREATED, tags=["paging"])
def create_pairing(
    elder_id: str, body: PairingCreate, rt: RuntimeDep, principal: PrincipalDep
) -> PairingPublic:
    """Pair a responder with the elder: their pairings make the elder's escalation plan
    (watchers, then volunteers, then staff on duty, then family), unless an explicit plan is
    set with PUT /elders/{id}/escalation."""
    now = rt.now_ms()
    start = to_ms(body.active_from) if body.active_from else now
    until = to_ms(body.active_until) if body.active_until else None
    if until is not None and until <= start:
        raise _invalid(("body", "active_until"), "active_until must be after active_from")
    with rt.engine.begin() as conn:
        _require(conn, elders, elder_id, "elder")
        person = _responder_in_body(conn, rt, principal, body.responder_id)
        for other in conn.execute(
            select(pairings).where(
                pairings.c.elder_id == elder_id, pairings.c.responder_id == body.responder_id
            )
        ):
            if _overlaps(start, until, other.active_from, other.active_until):
                raise _conflict(
                    f"responder {body.responder_id!r} is already paired with elder "
                    f"{elder_id!r} for that time (pairing {other.id!r})"
                )
        pid = new_id("pr")
        conn.execute(
            insert(pairings).values(
                id=pid,
                elder_id=elder_id,
                responder_id=body.responder_id,
                role=(body.role.value if body.role else person.role),
                ord=body.order,
                active_from=start,
                active_until=until,
                created_by=principal.label,
                created_at=now,
            )
        )
        row = conn.execute(select(pairings).where(pairings.c.id == pid)).one()
    return _pairing_out(rt, row)


@router.get("/elders/{elder_id}/pairings", tags=["paging"])
def list_pairings(elder_id: str, rt: RuntimeDep, active: bool | None = None) -> list[PairingPublic]:
    """The elder's pairings, in paging order; `active=true` only those that count now."""
    with _reading(rt) as conn:
        _require(conn, elders, elder_id, "elder")
        rows = conn.execute(
            select(pairings)
            .where(pairings.c.elder_id == elder_id)
            .order_by(pairings.c.ord, pairings.c.created_at, pairings.c.id)
        ).all()
    out = [_pairing_out(rt, r) for r in rows]
    return out if active is None else [p for p in out if p.active == active]


@router.delete(
    "/elders/{elder_id}/pairings/{pairing_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["paging"],
)
def end_pairing(elder_id: str, pairing_id: str, rt: RuntimeDep) -> Response:
    """End a pairing now (kept, end-dated, for the record); one not yet begun is removed.
    Ending one that has ended changes nothing."""
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        row = _require(conn, pairings, pairing_id, "pairing")
        if row.elder_id != elder_id:
            raise _not_found("pairing", pairing_id)
        if row.active_from > now:
            conn.execute(delete(pairings).where(pairings.c.id == pairing_id))
        elif row.active_until is None or row.active_until > now:
            end = max(now, row.active_from + 1)  # an end after the start, even the same ms
            conn.execute(
                update(pairings).where(pairings.c.id == pairing_id).values(active_until=end)
            )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# the duty roster


@router.post("/roster/shifts", status_code=status.HTTP_201_CREATED, tags=["paging"])
def create_shift(body: ShiftCreate, rt: RuntimeDep, principal: PrincipalDep) -> ShiftPublic:
    """A staff member or volunteer on duty from `start_at` until `end_at`."""
    start, end = to_ms(body.start_at), to_ms(body.end_at)
    if end <= start:
        raise _invalid(("body", "end_at"), "a shift must end after it starts")
    if end - start > MAX_SHIFT.total_seconds() * 1000:
        raise _invalid(("body", "end_at"), f"a shift is at most {MAX_SHIFT.days} days")
    with rt.engine.begin() as conn:
        person = _responder_in_body(conn, rt, principal, body.responder_id)
        if person.role not in (ResponderRole.STAFF.value, ResponderRole.VOLUNTEER.value):
            raise _invalid(
                ("body", "responder_id"),
                f"only staff and volunteers have shifts; {body.responder_id!r} is {person.role}",
                body.responder_id,
            )
        clash = conn.execute(
            select(duty_shifts.c.id).where(
                duty_shifts.c.responder_id == body.responder_id,
                duty_shifts.c.start_at < end,
                duty_shifts.c.end_at > start,
            )
        ).first()
        if clash is not None:
            raise _conflict(f"{body.responder_id!r} already has a shift then ({clash.id!r})")
        sid = new_id("sh")
        conn.execute(
            insert(duty_shifts).values(
                id=sid,
                responder_id=body.responder_id,
                start_at=start,
                end_at=end,
                tags=list(dict.fromkeys(body.tags)),
                created_by=principal.label,
                created_at=rt.now_ms(),
            )
        )
        row = conn.execute(_shift_query().where(duty_shifts.c.id == sid)).one()
    return _shift_out(rt, row)


def _shift_query() -> Any:
    return select(duty_shifts, responders.c.role).join(
        responders, responders.c.id == duty_shifts.c.responder_id
    )


@router.get("/roster/shifts", tags=["paging"])
def list_shifts(
    rt: RuntimeDep,
    principal: PrincipalDep,
    from_: Annotated[QueryInstant, Query(alias="from")] = None,
    to: QueryInstant = None,
    responder_id: Annotated[str | None, Query(max_length=40, pattern=r"^[A-Za-z0-9_.\-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[ShiftPublic]:
    """Shifts that overlap [from, to), by start; from defaults to now (on now and to come)."""
    start = query_instant(from_, "from")
    end = query_instant(to, "to")
    start = rt.now_ms() if start is None else start
    if end is not None and end <= start:
        raise _invalid(("query", "to"), "`to` must be after `from`", to)
    q = _shift_query().where(duty_shifts.c.end_at > start)
    if end is not None:
        q = q.where(duty_shifts.c.start_at < end)
    if responder_id is not None:
        q = q.where(duty_shifts.c.responder_id == responder_id)
    with _reading(rt) as conn:
        q = q.where(caller_scope(conn, rt, principal).people_filter(duty_shifts.c.responder_id))
        rows = conn.execute(q.order_by(duty_shifts.c.start_at, duty_shifts.c.id).limit(limit)).all()
    return [_shift_out(rt, r) for r in rows]


@router.delete("/roster/shifts/{shift_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["paging"])
def delete_shift(shift_id: str, rt: RuntimeDep) -> Response:
    with rt.engine.begin() as conn:
        _require(conn, duty_shifts, shift_id, "shift")
        conn.execute(delete(duty_shifts).where(duty_shifts.c.id == shift_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# channel chains


def _channels_out(responder: Row[Any], rows: list[Row[Any]]) -> ChannelsPublic:
    links: list[ChannelPublic] = []
    if responder.pager_id:
        links.append(
            ChannelPublic(position=0, channel=PAGER, address=responder.pager_id, after_s=0)
        )
    for r in rows:
        links.append(
            ChannelPublic(
                position=len(links),
                channel=r.channel,
                address=mask_address(r.channel, r.address),
                after_s=r.after_s,
            )
        )
    return ChannelsPublic(responder_id=responder.id, links=links)


def _channel_rows(conn: Connection, rid: str) -> list[Row[Any]]:
    return list(
        conn.execute(
            select(responder_channels)
            .where(responder_channels.c.responder_id == rid)
            .order_by(responder_channels.c.position)
        ).all()
    )


def _check_apprise(n: int, address: str | None) -> str:
    loc = ("body", "links", n, "address")
    # The URL is never echoed back: it may hold a provider's credentials.
    if address is None or not address.strip():
        raise _invalid(loc, "an apprise link needs its URL")
    address = address.strip()
    if len(address) > MAX_URL_CHARS or any(c.isspace() or ord(c) < 32 for c in address):
        raise _invalid(loc, f"an apprise URL is one word of at most {MAX_URL_CHARS} characters")
    if "://" not in address or not apprise_accepts(address):
        raise _invalid(loc, "apprise does not know this URL (see apprise's list of services)")
    return address


# Who may sign in to the phone page (gateway/api_me.py): a web link for anyone else would never
# be open, and only hold up their chain.
_PHONE_ROLES = (
    ResponderRole.WATCHER.value,
    ResponderRole.VOLUNTEER.value,
    ResponderRole.STAFF.value,
)


def _check_web(
    n: int, address: str | None, person: Row[Any], stored: list[tuple[str, str, int]]
) -> str:
    loc = ("body", "links", n)
    if address not in (None, WEB_ADDRESS):
        raise _invalid((*loc, "address"), "a web link is the phone page: omit the address")
    if person.role not in _PHONE_ROLES:
        raise _invalid(loc, f"a {person.role} has no phone page (watchers, volunteers, staff)")
    if any(c == WEB for c, _, _ in stored):
        raise _invalid(loc, "the phone page is one link of the chain")
    return WEB_ADDRESS


@router.put("/responders/{responder_id}/channels", tags=["paging"])
def put_channels(responder_id: str, body: ChannelsIn, rt: RuntimeDep) -> ChannelsPublic:
    """Set the person's channel chain (replacing it): their pager at once, then e.g. an SMS
    through an apprise URL after 60 s if nobody has answered, then a second provider. A person
    without a pager is paged on their first channel at once. `web`, the phone page (watchers,
    volunteers, staff), counts as sent when they have it open, and else gives way to the next
    link."""
    with rt.engine.begin() as conn:
        person = _require(conn, responders, responder_id, "responder")
        stored: list[tuple[str, str, int]] = []
        for n, link in enumerate(body.links):
            if link.channel == PAGER:
                if n != 0 or link.after_s != 0:
                    raise _invalid(
                        ("body", "links", n), "the pager is the first link, at once (after_s 0)"
                    )
                if not person.pager_id:
                    raise _invalid(("body", "links", n), f"{responder_id!r} has no pager")
                if link.address not in (None, person.pager_id):
                    raise _invalid(
                        ("body", "links", n, "address"),
                        "a pager link is the responder's own pager_id",
                        link.address,
                    )
                continue
            if link.channel == WEB:
                stored.append((WEB, _check_web(n, link.address, person, stored), link.after_s))
                continue
            stored.append((APPRISE, _check_apprise(n, link.address), link.after_s))
        chain = [ChannelLink(PAGER, person.pager_id, 0)] if person.pager_id else []
        chain += [ChannelLink(c, a, s) for c, a, s in stored]
        try:
            if chain:
                ChannelChain(tuple(chain))  # the links in order of their delays
        except ValueError as exc:
            raise _invalid(("body", "links"), str(exc)) from None
        conn.execute(
            delete(responder_channels).where(responder_channels.c.responder_id == responder_id)
        )
        if stored:
            conn.execute(
                insert(responder_channels),
                [
                    {
                        "responder_id": responder_id,
                        "position": i,
                        "channel": c,
                        "address": a,
                        "after_s": s,
                    }
                    for i, (c, a, s) in enumerate(stored)
                ],
            )
        rows = _channel_rows(conn, responder_id)
    return _channels_out(person, rows)


@router.get("/responders/{responder_id}/channels", tags=["paging"])
def get_channels(responder_id: str, rt: RuntimeDep) -> ChannelsPublic:
    """The person's channel chain as it is used: the pager first (if any), then their channels;
    apprise URLs masked."""
    with _reading(rt) as conn:
        person = _require(conn, responders, responder_id, "responder")
        rows = _channel_rows(conn, responder_id)
    return _channels_out(person, rows)


# elder tags


@router.put("/elders/{elder_id}/tags", tags=["paging"])
def put_tags(elder_id: str, body: TagsIn, rt: RuntimeDep) -> TagsPublic:
    """The elder's tags (replacing them): `community:...` and `building:...` find volunteers on
    duty nearby; `station:...` groups the alerts report."""
    tags = list(dict.fromkeys(body.tags))
    with rt.engine.begin() as conn:
        _require(conn, elders, elder_id, "elder")
        conn.execute(update(elders).where(elders.c.id == elder_id).values(tags=tags))
    return TagsPublic(elder_id=elder_id, tags=tags)


@router.get("/elders/{elder_id}/tags", tags=["paging"])
def get_tags(elder_id: str, rt: RuntimeDep) -> TagsPublic:
    with _reading(rt) as conn:
        row = _require(conn, elders, elder_id, "elder")
    return TagsPublic(elder_id=elder_id, tags=list(row.tags or []))


# deliveries


@router.get("/alerts/{alert_id}/deliveries", tags=["alerts"])
def list_deliveries(alert_id: str, rt: RuntimeDep) -> list[DeliveryPublic]:
    """Every delivery attempt for the alert's pages, by pager and by the people's channels."""
    with _reading(rt) as conn:
        _require(conn, alerts, alert_id, "alert")
        rows = conn.execute(
            select(deliveries).where(deliveries.c.alert_id == alert_id).order_by(deliveries.c.id)
        ).all()
    return [
        DeliveryPublic(
            id=r.id,
            page_id=r.page_id,
            responder_id=r.responder_id,
            reminder=r.reminder,
            channel=r.channel,
            address=r.address_masked,
            link=r.link,
            try_no=r.try_no,
            status=r.status,
            at=_ms_req(rt, r.at),
            error=r.error,
            next_try_at=_ms(rt, r.next_try_at),
        )
        for r in rows
    ]


# the measures


def _tag(tags: Any, prefix: str) -> str | None:
    for t in tags or []:
        if isinstance(t, str) and t.startswith(prefix):
            return t[len(prefix) :]
    return None


def _stats(s: TimeStats) -> TimeStatsPublic:
    def sec(v: timedelta | None) -> float | None:
        return round(v.total_seconds(), 3) if v is not None else None

    return TimeStatsPublic(count=s.count, p50_s=sec(s.p50), p90_s=sec(s.p90), max_s=sec(s.max))


def _report_out(rt: Runtime, r: Report, made_at: int) -> ReportPublic:
    return ReportPublic(
        station=r.station,
        start=_ms_req(rt, to_ms(r.start)),
        end=_ms_req(rt, to_ms(r.end)),
        made_at=_ms_req(rt, made_at),
        total=r.total,
        by_kind=r.by_kind,
        by_priority=r.by_priority,
        by_outcome=r.by_outcome,
        false_alarm_rate=r.false_alarm_rate,
        to_first_page=_stats(r.to_first_page),
        to_ack=_stats(r.to_ack),
        to_on_site=_stats(r.to_on_site),
        to_resolution=_stats(r.to_resolution),
        answered_within=[
            SharePublic(
                within_s=s.standard.within.total_seconds(),
                target=float(s.standard.target),
                within=s.within,
                total=s.total,
                share=s.share,
                met=s.met,
            )
            for s in r.answered_within
        ],
        standards_met=r.standards_met,
        unpaged=r.unpaged,
    )


@router.get("/reports/alerts", tags=["reports"])
def alerts_report(
    rt: RuntimeDep,
    principal: PrincipalDep,
    from_: Annotated[QueryInstant, Query(alias="from")] = None,
    to: QueryInstant = None,
    station: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> ReportPublic:
    """Measures of the alerts created in [from, to) (default: the last 7 days), at one station
    (an elder's `station:` tag; default all): counts by kind, priority and outcome, the false
    alarm rate, p50/p90/max of the times to first page, answer, on site and resolution (in
    seconds), and the share of P1 alerts answered within 60 s and 180 s against the telecare
    standard (97.5 %, 99 %). See alerts/measures.py for the exact rules. A station's staff
    measure the alerts of their board (their station's elders and those of none yet)."""
    now = rt.now_ms()
    end = query_instant(to, "to")
    end = now if end is None else end
    start = query_instant(from_, "from")
    start = end - DEFAULT_REPORT_DAYS * 86_400_000 if start is None else start
    if end <= start:
        raise _invalid(("query", "to"), "`to` must be after `from`", to)
    in_period = (alerts.c.created_at >= start) & (alerts.c.created_at < end)
    first_page = (
        select(alert_events.c.alert_id, func.min(alert_events.c.at).label("at"))
        .where(
            alert_events.c.type == "paged",
            alert_events.c.alert_id.in_(select(alerts.c.id).where(in_period)),
        )
        .group_by(alert_events.c.alert_id)
        .subquery()
    )
    with _reading(rt) as conn:
        seen = caller_scope(conn, rt, principal).on_board_filter(alerts.c.elder_id)
        rows = conn.execute(
            select(alerts, elders.c.tags.label("elder_tags"), first_page.c.at.label("paged_at"))
            .join(elders, elders.c.id == alerts.c.elder_id)
            .outerjoin(first_page, first_page.c.alert_id == alerts.c.id)
            .where(in_period, seen)
        ).all()
    records = [_record(r) for r in rows]
    made = report(records, from_ms(start), from_ms(end), from_ms(now), station=station)
    return _report_out(rt, made, now)


def _record(r: Row[Any]) -> AlertRecord:
    def at(ms: int | None) -> datetime | None:
        return from_ms(ms) if ms is not None else None

    return AlertRecord(
        id=r.id,
        kind=AlertKind(r.kind),
        priority=Priority(r.priority),
        state=State(r.state),
        created_at=from_ms(r.created_at),
        first_page_at=at(r.paged_at),
        acknowledged_at=at(r.acknowledged_at),
        on_site_at=at(r.on_site_at),
        closed_at=at(r.closed_at),
        outcome=Outcome(r.outcome) if r.outcome else None,
        station=_tag(r.elder_tags, "station:"),
        community=_tag(r.elder_tags, "community:"),
    )


__all__ = ["router"]
