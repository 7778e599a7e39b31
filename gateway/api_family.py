"""The family page's routes (issue 7), under `/api/v1/family`: a relative sees how their elder is
doing, read-only, and no other elder ever.

- `GET /api/v1/family/elders`: the elders of the caller's family links that count now
  (approved, confirmed, not expired, not revoked: gateway/care_store.py `scope_for`).
- `GET /api/v1/family/elders/{elder_id}`: one of those elders' status: the devices (working or
  not, battery, last heard), water use today, the open alerts and those of the last 30 days with
  how they ended (outcome, who took it, who came, how long it took), and the service visits of
  the last 30 days and those to come (the service module's orders).
- `GET /api/v1/family/elders/{elder_id}/live`: Server-Sent Events (`changed`) whenever an alert
  of that elder changes, so the page reloads its snapshot (gateway/live.py's feed, filtered).

Access: the router takes family principals only (`allow(Role.FAMILY)`: 401 without a caller,
403 for every other role). An elder who is not one of the caller's answers 404 with the same
detail as an elder who does not exist (as the care API does), so existence does not leak.
There is no route that changes anything.

Audit: every read writes a care audit row (gateway/care_store.py `audit`, through
gateway/api_care.py's `Caller`) in the read's own transaction, like the care API's reads: a
family member reading their parent's alerts is reading personal data.

What is shown is what the gateway knows, never a guess: water use comes from the water rule's
state (the exact time of the last use) and the hourly telemetry rollups (gateway/api_history.py's
query); with neither, it is "unknown". A device's condition comes from its row, the device
health rule's state and its active alerts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Row, or_, select

from alerts import health as health_rule
from alerts import water as water_rule
from alerts.model import AlertKind
from devices.kinds import DeviceKind
from gateway.alerting import ACTIVE
from gateway.api import RuntimeDep, _ms, _ms_req, _usable_path_id, allow, still_authenticated

# Private helpers of the care API, reused so that a family read is scoped and audited exactly
# as a care read is: `Caller` (who, from where, the audit call) and `_tx` (the transaction and
# the caller's scope), `_not_found` (the same 404 as an elder that does not exist).
from gateway.api_care import Caller, _not_found, _tx

# The water-use query of the history API (flow_l and total_l rollups), called as a function.
from gateway.api_history import Step, water_use
from gateway.auth import Principal, Role
from gateway.care_store import Scope, scope_for
from gateway.clock import from_ms, to_ms
from gateway.live import RESYNC, LiveEvent, last_event_id, sse_message, sse_response
from gateway.ruling import HEALTH, WATER, health_key
from gateway.runtime import Runtime
from gateway.tables import alert_events, alerts, devices, elders, responders, rule_states
from gateway.tables_care import elder_profiles
from gateway.tables_services import svc_orders, svc_providers, svc_workers
from gateway.tables_web import users

TAG = "family"
RECENT_DAYS = 30
UPCOMING_DAYS = 14
MAX_RECENT_ALERTS = 50
MAX_VISITS = 20
# Service orders still to happen (care.services.OrderState): applied, agreed (awaiting
# dispatch), dispatched, accepted by the worker.
_TO_COME = ("applied", "agreed", "dispatched", "accepted")
_ENDED_ORDERS = ("closed", "cancelled")

_family = allow(Role.FAMILY)
FamilyDep = Annotated[Principal, Depends(_family)]

router = APIRouter(prefix="/api/v1/family", tags=[TAG], dependencies=[Depends(_family)])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such elder, or not one of the caller's (the same answer)"}
}


# --- shapes -------------------------------------------------------------------------------------


class FamilyElder(BaseModel):
    id: str
    name: str


class ElderHeader(FamilyElder):
    status: str | None = Field(
        description="the registry's status (active, away, in_hospital, moved, deceased); "
        "null when the station has not registered the elder's record"
    )
    status_until: str | None = Field(description="away or in hospital: expected back (a date)")


Condition = Literal["ok", "battery_low", "offline", "never_heard"]


class DeviceStatus(BaseModel):
    id: str
    kind: str = Field(description="call_button, gas_sensor or water_sensor")
    condition: Condition = Field(
        description="ok; battery_low (works, battery to change); offline (silent past its "
        "report interval, or said it is offline); never_heard (installed, nothing heard yet)"
    )
    online: bool | None = Field(description="what the device last said (null: nothing yet)")
    battery_pct: float | None
    last_heard_at: str | None


WaterStatus = Literal["used", "not_used_yet", "unknown", "no_sensor"]


class WaterToday(BaseModel):
    status: WaterStatus = Field(
        description="used: water was used today; not_used_yet: the meter reported today and "
        "no use yet; unknown: no report today (no data is not no water); no_sensor"
    )
    last_use_at: str | None = Field(
        description="the last use today, to the minute (the water rule's use: at least 0.5 L)"
    )
    last_use_hour: str | None = Field(
        description="when the exact time is not known: the start of the last hour of today "
        "with water used (hourly rollups)"
    )
    litres_today: float | None = Field(description="litres since local midnight; null: unknown")
    last_report_at: str | None = Field(description="the meter's last reading")


class Person(BaseModel):
    name: str | None = Field(description="null for the station or when not known")
    role: str = Field(
        description="watcher, volunteer, staff or family (a responder), station (through the "
        "station's screens or API), elder (the elder cancelled it), unknown"
    )


Ended = Literal["open", "resolved", "cancelled_by_elder", "cancelled"]


class AlertSummary(BaseModel):
    id: str
    kind: str
    priority: str
    state: str
    device_id: str
    device_kind: str | None
    created_at: str
    acknowledged_at: str | None
    on_site_at: str | None
    closed_at: str | None
    ended: Ended = Field(description="how it ended (open: not yet)")
    outcome: str | None = Field(description="real, false_alarm, test or device_fault")
    taken_by: Person | None = Field(description="who answered first")
    came: list[Person] = Field(description="who arrived at the elder's home, first first")
    answered_after_s: int | None
    arrived_after_s: int | None
    closed_after_s: int | None


class VisitSummary(BaseModel):
    order_id: str
    state: str = Field(description="the order's state (care.services.OrderState)")
    service_zh: str | None
    service_en: str | None
    category: str
    scheduled_at: str | None
    started_at: str | None = Field(description="the worker's check-in")
    ended_at: str | None = Field(description="the worker's check-out (null: still there)")
    minutes: int | None
    worker: str | None
    provider: str | None


class RegularService(BaseModel):
    order_id: str
    service_zh: str | None
    service_en: str | None
    category: str
    weekdays: list[int] = Field(description="0 = Monday")
    at: str = Field(description="local time, HH:MM")
    start: str
    end: str | None


class FamilyStatus(BaseModel):
    elder: ElderHeader
    as_of: str = Field(description="now, RFC 3339 with the station's offset")
    today: str = Field(description="the station's date (SHOUWANG_TIMEZONE)")
    timezone: str
    devices: list[DeviceStatus]
    water: WaterToday
    open_alerts: list[AlertSummary]
    recent_alerts: list[AlertSummary] = Field(
        description=f"closed alerts opened in the last {RECENT_DAYS} days, newest first"
    )
    recent_visits: list[VisitSummary] = Field(
        description=f"visits begun in the last {RECENT_DAYS} days, newest first"
    )
    upcoming_visits: list[VisitSummary] = Field(
        description=f"visits from today to {UPCOMING_DAYS} days ahead, soonest first; "
        "applications not yet scheduled last"
    )
    regular_services: list[RegularService]


# --- helpers ------------------------------------------------------------------------------------


def _caller(rt: RuntimeDep, principal: FamilyDep, request: Request) -> Caller:
    return Caller(rt, principal, request.client.host if request.client else None)


CallerDep = Annotated[Caller, Depends(_caller)]


def _elder_row(conn: Connection, scope: Scope, elder_id: str) -> Row[Any]:
    """The elder if they are one of the caller's; 404 otherwise, worded as for an unknown id."""
    row = None
    if _usable_path_id(elder_id) and scope.visible(None, elder_id):
        row = conn.execute(select(elders).where(elders.c.id == elder_id)).first()
    if row is None:
        raise _not_found("elder", elder_id)
    return row


def _local_midnight(rt: Runtime, now_ms: int) -> datetime:
    local = from_ms(now_ms, rt.tz)
    return datetime(local.year, local.month, local.day, tzinfo=rt.tz)


def _states(conn: Connection, rule: str, keys: Iterable[str]) -> dict[str, Any]:
    """Stored rule states by key, decoded; a state that cannot be read is left out (unknown)."""
    decode = {WATER: water_rule.WaterState.from_json, HEALTH: health_rule.BuildingHealth.from_json}
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    out: dict[str, Any] = {}
    rows = conn.execute(
        select(rule_states.c.key, rule_states.c.state).where(
            rule_states.c.rule == rule, rule_states.c.key.in_(wanted)
        )
    )
    for r in rows:
        try:
            out[r.key] = decode[rule](r.state)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _devices(
    c: Caller, conn: Connection, devs: Sequence[Row[Any]], active: Sequence[Row[Any]]
) -> list[DeviceStatus]:
    rt, now_ms = c.rt, c.now_ms()
    cfg = rt.rules.cfg.health if rt.rules is not None else health_rule.HealthConfig()
    states = _states(conn, HEALTH, (health_key(d) for d in devs))
    alerted: dict[str, set[str]] = {}
    for a in active:
        alerted.setdefault(a.device_id, set()).add(a.kind)
    out = []
    for d in devs:
        building = states.get(health_key(d))
        seen = None if building is None else building.devices.get(d.id)
        kinds = alerted.get(d.id, set())
        heard = d.last_seen_at
        if seen is not None and seen.last_heard is not None:
            heard = max(heard or 0, to_ms(seen.last_heard))
        # Silent past the health rule's deadline counts as offline even before its tick says so.
        interval = (
            seen.interval(cfg)
            if seen is not None
            else cfg.intervals.get(DeviceKind(d.kind), timedelta(hours=1))
        )
        deadline_ms = cfg.missed * interval.total_seconds() * 1000
        silent = heard is not None and now_ms - heard >= deadline_ms
        offline = (
            d.online is False
            or (seen is not None and not seen.online)
            or AlertKind.DEVICE_OFFLINE.value in kinds
            or silent
        )
        battery_low = (
            (d.battery_pct is not None and d.battery_pct < cfg.battery_low_pct)
            or (seen is not None and seen.battery_low)
            or AlertKind.LOW_BATTERY.value in kinds
        )
        condition: Condition
        if heard is None and d.online is None:
            condition = "offline" if AlertKind.DEVICE_OFFLINE.value in kinds else "never_heard"
        elif offline:
            condition = "offline"
        elif battery_low:
            condition = "battery_low"
        else:
            condition = "ok"
        out.append(
            DeviceStatus(
                id=d.id,
                kind=d.kind,
                condition=condition,
                online=d.online,
                battery_pct=d.battery_pct,
                last_heard_at=_ms(rt, heard),
            )
        )
    return out


def _water(c: Caller, conn: Connection, elder_id: str, devs: Sequence[Row[Any]]) -> WaterToday:
    rt = c.rt
    meters = [d.id for d in devs if d.kind == DeviceKind.WATER_SENSOR.value]
    if not meters:
        return WaterToday(
            status="no_sensor",
            last_use_at=None,
            last_use_hour=None,
            litres_today=None,
            last_report_at=None,
        )
    now_ms = c.now_ms()
    midnight = _local_midnight(rt, now_ms)
    start_ms = to_ms(midnight)
    states = list(_states(conn, WATER, meters).values())
    uses = [to_ms(s.last_use) for s in states if s.last_use is not None]
    reports = [to_ms(s.last_ts) for s in states if s.last_ts is not None]
    last_use = max(uses) if uses else None
    last_report = max(reports) if reports else None
    # Litres per hour today over the elder's meters, as the history API computes them (flow_l,
    # else the rise of total_l); an hour with no reading is absent: unknown, not zero.
    # On this transaction's connection: its snapshot holds the rule states read above too, so a
    # reading committed in between cannot show litres beside no report (CI, 2026-11-26).
    hourly = water_use(
        conn,
        elder_id,
        rt,
        from_=midnight.isoformat(),
        to=from_ms(now_ms + 1, rt.tz).isoformat(),
        step=Step.HOUR,
    ).points
    litres = round(sum(p.litres for p in hourly), 1) if hourly else None
    min_use = rt.rules.cfg.water.use_min_l if rt.rules is not None else 0.5
    used_hours = [p.start for p in hourly if p.litres >= min_use]
    reported_today = bool(hourly) or (last_report is not None and last_report >= start_ms)
    if last_use is not None and last_use >= start_ms:
        status: WaterStatus = "used"
        hour = None
    elif used_hours and (last_use is None or last_use < start_ms) and not states:
        # No rule state to say when (a meter the rules have not seen): the hour is known.
        status, hour = "used", used_hours[-1]
    elif reported_today:
        status, hour = "not_used_yet", None
    else:
        status, hour, litres = "unknown", None, None
    return WaterToday(
        status=status,
        last_use_at=_ms(rt, last_use) if status == "used" and hour is None else None,
        last_use_hour=hour,
        litres_today=litres,
        last_report_at=_ms(rt, last_report),
    )


def _people(conn: Connection, labels: Iterable[str | None]) -> dict[str, Person]:
    """Timeline actors as people a relative can read: a responder's name and role (a pager or
    phone answer: `responder:<id>`; a signed-in user of the station's screens who acts for a
    person: `user:<username>`); otherwise the station (a token at the API), or the elder (who
    cancelled a press: `elder:<device>`)."""
    known: set[str] = {lb for lb in labels if lb}
    responder_ids = {lb.split(":", 1)[1] for lb in known if lb.startswith("responder:")}
    usernames = sorted({lb.split(":", 1)[1] for lb in known if lb.startswith("user:")})
    person_of_user: dict[str, str] = {}
    if usernames:
        for u in conn.execute(
            select(users.c.username, users.c.person_id).where(users.c.username.in_(usernames))
        ):
            if u.person_id:
                person_of_user[u.username] = u.person_id
    found: dict[str, Person] = {}
    ids = sorted(responder_ids | set(person_of_user.values()))
    if ids:
        for r in conn.execute(
            select(responders.c.id, responders.c.name, responders.c.role).where(
                responders.c.id.in_(ids)
            )
        ):
            found[r.id] = Person(name=r.name, role=r.role)
    out: dict[str, Person] = {}
    for lb in known:
        kind, _, rest = lb.partition(":")
        if kind == "responder":
            out[lb] = found.get(rest, Person(name=None, role="unknown"))
        elif kind == "user" and person_of_user.get(rest) in found:
            out[lb] = found[person_of_user[rest]]
        elif kind in ("api", "user"):
            out[lb] = Person(name=None, role="station")
        elif kind == "elder":
            out[lb] = Person(name=None, role="elder")
        else:
            out[lb] = Person(name=None, role="unknown")
    return out


def _after_s(start: int, end: int | None) -> int | None:
    return None if end is None else max(0, round((end - start) / 1000))


def _alerts(c: Caller, conn: Connection, rows: Sequence[Row[Any]]) -> list[AlertSummary]:
    rt = c.rt
    kinds = dict(
        conn.execute(
            select(devices.c.id, devices.c.kind).where(
                devices.c.id.in_(sorted({r.device_id for r in rows}))
            )
        ).all()
    )
    came: dict[str, list[str]] = {}
    cancelled_by: dict[str, str | None] = {}
    if rows:
        for e in conn.execute(
            select(alert_events.c.alert_id, alert_events.c.type, alert_events.c.actor)
            .where(
                alert_events.c.alert_id.in_([r.id for r in rows]),
                alert_events.c.type.in_(("on_site", "arrive_again", "cancelled")),
            )
            .order_by(alert_events.c.id)
        ):
            if e.type == "cancelled":
                cancelled_by[e.alert_id] = e.actor
            elif e.actor and e.actor not in came.setdefault(e.alert_id, []):
                came[e.alert_id].append(e.actor)
    people = _people(
        conn, [r.acknowledged_by for r in rows] + [a for v in came.values() for a in v]
    )
    out = []
    for r in rows:
        ended: Ended
        if r.state == "resolved":
            ended = "resolved"
        elif r.state == "cancelled":
            # A press cancelled by the elder is recorded with the actor "elder:<device>".
            who = cancelled_by.get(r.id) or ""
            ended = "cancelled_by_elder" if who.startswith("elder:") else "cancelled"
        else:
            ended = "open"
        out.append(
            AlertSummary(
                id=r.id,
                kind=r.kind,
                priority=r.priority,
                state=r.state,
                device_id=r.device_id,
                device_kind=kinds.get(r.device_id),
                created_at=_ms_req(rt, r.created_at),
                acknowledged_at=_ms(rt, r.acknowledged_at),
                on_site_at=_ms(rt, r.on_site_at),
                closed_at=_ms(rt, r.closed_at),
                ended=ended,
                outcome=r.outcome,
                taken_by=people.get(r.acknowledged_by) if r.acknowledged_by else None,
                came=[people[a] for a in came.get(r.id, [])],
                answered_after_s=_after_s(r.created_at, r.acknowledged_at),
                arrived_after_s=_after_s(r.created_at, r.on_site_at),
                closed_after_s=_after_s(r.created_at, r.closed_at),
            )
        )
    return out


def _visit(rt: Runtime, r: Row[Any]) -> VisitSummary:
    minutes = None
    if r.check_in_at is not None and r.check_out_at is not None:
        minutes = max(0, round((r.check_out_at - r.check_in_at) / 60_000))
    return VisitSummary(
        order_id=r.id,
        state=r.state,
        service_zh=r.service_name_zh,
        service_en=r.service_name_en,
        category=r.category,
        scheduled_at=_ms(rt, r.scheduled_at),
        started_at=_ms(rt, r.check_in_at),
        ended_at=_ms(rt, r.check_out_at),
        minutes=minutes,
        worker=r.worker_name,
        provider=r.provider_name,
    )


def _orders_query() -> Any:
    o = svc_orders
    return (
        select(
            o.c.id,
            o.c.state,
            o.c.category,
            o.c.service_name_zh,
            o.c.service_name_en,
            o.c.scheduled_at,
            o.c.check_in_at,
            o.c.check_out_at,
            o.c.recurrence,
            svc_workers.c.name.label("worker_name"),
            svc_providers.c.name.label("provider_name"),
        )
        .select_from(o)
        .outerjoin(svc_workers, svc_workers.c.id == o.c.worker_id)
        .outerjoin(svc_providers, svc_providers.c.id == o.c.provider_id)
    )


def _services(
    c: Caller, conn: Connection, elder_id: str
) -> tuple[list[VisitSummary], list[VisitSummary], list[RegularService]]:
    rt, now_ms = c.rt, c.now_ms()
    o = svc_orders
    today_ms = to_ms(_local_midnight(rt, now_ms))
    recent = conn.execute(
        _orders_query()
        .where(
            o.c.elder_id == elder_id,
            o.c.check_in_at.is_not(None),
            o.c.check_in_at >= now_ms - RECENT_DAYS * 86_400_000,
        )
        .order_by(o.c.check_in_at.desc(), o.c.id)
        .limit(MAX_VISITS)
    ).all()
    # A recurring agreement is a parent order; its visits are child orders with their own time.
    upcoming = conn.execute(
        _orders_query()
        .where(
            o.c.elder_id == elder_id,
            o.c.state.in_(_TO_COME),
            o.c.recurrence.is_(None),
            or_(
                o.c.scheduled_at.is_(None),
                o.c.scheduled_at.between(today_ms, now_ms + UPCOMING_DAYS * 86_400_000),
            ),
        )
        .order_by(o.c.scheduled_at.is_(None), o.c.scheduled_at, o.c.id)
        .limit(MAX_VISITS)
    ).all()
    today = from_ms(now_ms, rt.tz).date().isoformat()
    regular = [
        RegularService(
            order_id=r.id,
            service_zh=r.service_name_zh,
            service_en=r.service_name_en,
            category=r.category,
            weekdays=list(r.recurrence.get("weekdays") or []),
            at=str(r.recurrence.get("at") or ""),
            start=str(r.recurrence.get("start") or ""),
            end=r.recurrence.get("end"),
        )
        for r in conn.execute(
            _orders_query()
            .where(
                o.c.elder_id == elder_id,
                o.c.recurrence.is_not(None),
                o.c.state.not_in(_ENDED_ORDERS),
            )
            .order_by(o.c.created_at, o.c.id)
        )
        if isinstance(r.recurrence, dict) and (r.recurrence.get("end") or today) >= today
    ]
    return [_visit(rt, r) for r in recent], [_visit(rt, r) for r in upcoming], regular


# --- routes -------------------------------------------------------------------------------------


@router.get("/elders")
def my_elders(c: CallerDep) -> list[FamilyElder]:
    """The elders the caller follows now (their family links that count), by name."""
    with _tx(c) as (conn, scope):
        ids = sorted(scope.elder_ids or ())
        rows = (
            conn.execute(
                select(elders.c.id, elders.c.name)
                .where(elders.c.id.in_(ids))
                .order_by(elders.c.name, elders.c.id)
            ).all()
            if ids
            else []
        )
        c.audit(conn, "list", "family_status", detail={"count": len(rows)})
    return [FamilyElder(id=r.id, name=r.name) for r in rows]


@router.get("/elders/{elder_id}", responses=_NOT_FOUND)
def elder_status(elder_id: str, c: CallerDep) -> FamilyStatus:
    """How the elder is doing: devices, water today, alerts and how they ended, service visits.
    老人近况：设备、今天用水、报警及处理结果、上门服务。"""
    rt, now_ms = c.rt, c.now_ms()
    with _tx(c, snapshot=True) as (conn, scope):
        elder = _elder_row(conn, scope, elder_id)
        profile = conn.execute(
            select(elder_profiles.c.status, elder_profiles.c.status_until).where(
                elder_profiles.c.elder_id == elder_id
            )
        ).first()
        devs = conn.execute(
            select(devices)
            .where(devices.c.elder_id == elder_id, devices.c.status == "active")
            .order_by(devices.c.kind, devices.c.id)
        ).all()
        open_rows = conn.execute(
            select(alerts)
            .where(alerts.c.elder_id == elder_id, alerts.c.state.in_(ACTIVE))
            .order_by(alerts.c.created_at.desc(), alerts.c.id.desc())
        ).all()
        recent_rows = conn.execute(
            select(alerts)
            .where(
                alerts.c.elder_id == elder_id,
                alerts.c.state.not_in(ACTIVE),
                alerts.c.created_at >= now_ms - RECENT_DAYS * 86_400_000,
            )
            .order_by(alerts.c.created_at.desc(), alerts.c.id.desc())
            .limit(MAX_RECENT_ALERTS)
        ).all()
        device_list = _devices(c, conn, devs, open_rows)
        water = _water(c, conn, elder_id, devs)
        open_alerts = _alerts(c, conn, open_rows)
        recent_alerts = _alerts(c, conn, recent_rows)
        recent_visits, upcoming, regular = _services(c, conn, elder_id)
        # Audited last, after every read. (On SQLite this transaction has held the write lock
        # since its BEGIN IMMEDIATE, so a reading lands after the page, never in between.)
        c.audit(conn, "read", "family_status", elder_id=elder_id, record_id=elder_id)
    return FamilyStatus(
        elder=ElderHeader(
            id=elder.id,
            name=elder.name,
            status=profile.status if profile else None,
            status_until=(
                profile.status_until.isoformat() if profile and profile.status_until else None
            ),
        ),
        as_of=_ms_req(rt, now_ms),
        today=from_ms(now_ms, rt.tz).date().isoformat(),
        timezone=rt.settings.timezone,
        devices=device_list,
        water=water,
        open_alerts=open_alerts,
        recent_alerts=recent_alerts,
        recent_visits=recent_visits,
        upcoming_visits=upcoming,
        regular_services=regular,
    )


def _still_theirs(rt: Runtime, principal: Principal, elder_id: str) -> bool:
    with rt.engine.connect().execution_options(readonly=True) as conn, conn.begin():
        return scope_for(conn, principal, rt.now_ms()).visible(None, elder_id)


def _alert_elder(rt: Runtime, alert_id: str) -> str | None:
    with rt.engine.connect().execution_options(readonly=True) as conn, conn.begin():
        return conn.execute(select(alerts.c.elder_id).where(alerts.c.id == alert_id)).scalar()


@router.get(
    "/elders/{elder_id}/live",
    responses={
        **_NOT_FOUND,
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
    },
)
def elder_live(elder_id: str, c: CallerDep, request: Request) -> Any:
    """`changed` whenever an alert of this elder changes (load the status again); `resync` when
    the page fell behind. The stream ends when the caller's link to the elder ends."""
    rt, principal = c.rt, c.principal
    with _tx(c) as (conn, scope):
        _elder_row(conn, scope, elder_id)
        c.audit(conn, "read", "family_live", elder_id=elder_id, record_id=elder_id)
    feed = rt.live
    since = last_event_id(request.headers.get("last-event-id"))

    async def messages() -> AsyncIterator[str]:
        if feed is None:  # no live feed in this process: the page keeps its reload button
            return
        theirs: dict[str, bool] = {}  # alert id -> of this elder (alerts never change elder)
        async for ev in feed.events(since=since):
            if ev == RESYNC or not isinstance(ev, LiveEvent):
                yield sse_message("resync", {})
                return
            mine = theirs.get(ev.alert_id)
            if mine is None:
                owner = await asyncio.to_thread(_alert_elder, rt, ev.alert_id)
                mine = theirs[ev.alert_id] = owner == elder_id
            if not mine:
                continue
            # A link revoked or expired while the page is open ends the stream at once.
            if not await asyncio.to_thread(_still_theirs, rt, principal, elder_id):
                return
            yield sse_message("changed", {"alert_id": ev.alert_id, "type": ev.type}, id=ev.id)

    # A relative signed out or disabled stops seeing the elder's alerts within seconds.
    return sse_response(messages, allowed=still_authenticated(request, rt))


__all__ = ["router"]
