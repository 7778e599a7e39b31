"""HTTP API for the rules (issue 3): elders away or in hospital, device mutes, what is suppressed
now (for the board), what the rules suppressed or warned of, mass-outage incidents, a device's
rule configuration (building, valve), and an elder's own water thresholds (`water-rules`: the
no-water and water-running rules' defaults overridden per elder, each change in the audit log).
Included by gateway/api.py's create_app.

Same conventions as gateway/api.py and gateway/api_paging.py: a bearer token on every call,
bodies checked before the database (unknown fields refused), 4xx with a JSON `detail` and never a
500, 404 for unknown ids (and for another station's elder or device), 409 for a conflict, RFC 3339
times with an offset in and out. Nothing is silenced forever: an away mark and a mute need an end
time (`until`), capped by alerts/suppression.py, and may be ended early; the author is the
caller's token.
"""

from datetime import time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import AfterValidator, BaseModel, Field, StrictBool, StringConstraints
from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from alerts import water
from alerts.suppression import MAX_AWAY, AwayStatus, DeviceMute, ElderAway, SuppressionError
from devices.kinds import DeviceKind
from gateway.api import (
    MAX_BODY_BYTES,
    DeviceId,
    DevicePublic,
    Note,
    PrincipalDep,
    QueryId,
    RuntimeDep,
    _conflict,
    _device_out,
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
from gateway.api_paging import Time
from gateway.care_store import audit
from gateway.clock import from_ms, new_id, to_ms
from gateway.ruling import RuleConfig, water_override
from gateway.runtime import Runtime
from gateway.tables import alerts, device_mutes, devices, elder_away, elders, incidents, rule_events
from gateway.tables_rules import elder_water_rules

# --- input and output ---------------------------------------------------------------------------

Reason = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_one_line),
    Field(examples=["replacing the battery", "meter swap by the water company"]),
]
Building = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_one_line),
    Field(examples=["幸福里3号楼"]),
]


class AwayIn(_In):
    status: AwayStatus = Field(description="away or in_hospital")
    until: Time = Field(description="required: nothing is silenced forever (at most 90 days)")
    since: Time | None = Field(None, description="default: now")
    note: Note | None = None


class AwayPublic(BaseModel):
    id: str
    elder_id: str
    status: str
    since: str
    until: str
    author: str
    note: str
    created_at: str
    ended_at: str | None = Field(description="set when ended early")
    active: bool = Field(description="whether it pauses the no-water-use rule now")


class MuteIn(_In):
    reason: Reason
    until: Time = Field(
        description="required: at most 24 hours for call buttons and gas sensors, 30 days for "
        "water sensors (alerts/suppression.py)"
    )
    since: Time | None = Field(None, description="default: now")


class MutePublic(BaseModel):
    id: str
    device_id: str
    author: str
    reason: str
    since: str
    until: str
    created_at: str
    ended_at: str | None = Field(description="set when ended early")
    active: bool = Field(description="whether it mutes the device's alerts now")


class SuppressionsPublic(BaseModel):
    away: list[AwayPublic] = Field(description="elders away or in hospital, now or to come")
    mutes: list[MutePublic] = Field(description="devices in maintenance, now or to come")


class RuleEventPublic(BaseModel):
    id: int
    at: str
    type: str = Field(description="suppressed (no alert opened) or warning (for the board)")
    device_id: str
    elder_id: str | None
    kind: str = Field(description="the alert kind")
    reason: str = Field(description="the rule's reason code, or the event type")
    detail: dict[str, Any] | None
    until: str | None = Field(description="suppressed: until when")
    released_at: str | None = Field(description="suppressed: when the suppression had ended")
    alert_id: str | None = Field(description="the alert opened then, the condition still on")


class IncidentPublic(BaseModel):
    id: str
    building: str
    alert_id: str | None = Field(description="the one device_offline alert, paged to staff")
    alert_state: str | None
    device_ids: list[str]
    detail: str
    opened_at: str
    closed_at: str | None = Field(description="when no member was offline any more")
    closed_why: str | None


class DeviceConfigIn(_In):
    building: Building | None = Field(
        None,
        description="the building the device is in: its devices' silence is grouped into one "
        "incident for staff; null: watched alone",
    )
    valve_device_id: DeviceId | None = Field(
        None,
        description="gas sensors: the device that takes `valve.close`, an active gas sensor of "
        "the same elder (it may be the sensor itself); null: no valve",
    )


class DeviceRulesPublic(DevicePublic):
    building: str | None
    valve_device_id: str | None


ClockTime = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$"),
    Field(description="local time of day, HH:MM", examples=["07:00"]),
]


class WaterRulesIn(_In):
    """An elder's own thresholds; a field left out keeps the default. At least one is given."""

    fixed_min_l: float | None = Field(
        None, gt=0, le=1000, strict=True, description="fixed rule: at least this many litres..."
    )
    fixed_window_h: int | None = Field(
        None, ge=1, le=48, strict=True, description="...in this many hours of daytime"
    )
    day_start: ClockTime | None = Field(None, description="daytime begins (fixed rule)")
    day_end: ClockTime | None = Field(None, description="daytime ends, after day_start")
    learn: StrictBool | None = Field(
        None, description="use the learned rhythm (false: the fixed rule alone)"
    )
    running_window_min: int | None = Field(
        None, ge=15, le=1440, strict=True, description="water running: flow for this long"
    )


class WaterThresholds(BaseModel):
    fixed_min_l: float | None
    fixed_window_h: float | None
    day_start: str | None
    day_end: str | None
    learn: bool | None
    running_window_min: int | None


class WaterRulesPublic(BaseModel):
    elder_id: str
    override: WaterThresholds | None = Field(
        description="the elder's own values (null fields: the default); null: no override"
    )
    effective: WaterThresholds = Field(description="what the rules use for this elder")
    updated_at: str | None
    updated_by: str | None


# --- helpers ------------------------------------------------------------------------------------


def _away_out(rt: Runtime, r: Row[Any]) -> AwayPublic:
    now = rt.now_ms()
    return AwayPublic(
        id=r.id,
        elder_id=r.elder_id,
        status=r.status,
        since=_ms_req(rt, r.since),
        until=_ms_req(rt, r.until),
        author=r.author,
        note=r.note or "",
        created_at=_ms_req(rt, r.created_at),
        ended_at=_ms(rt, r.ended_at),
        active=r.ended_at is None and r.since <= now < r.until,
    )


def _mute_out(rt: Runtime, r: Row[Any]) -> MutePublic:
    now = rt.now_ms()
    return MutePublic(
        id=r.id,
        device_id=r.device_id,
        author=r.author,
        reason=r.reason,
        since=_ms_req(rt, r.since),
        until=_ms_req(rt, r.until),
        created_at=_ms_req(rt, r.created_at),
        ended_at=_ms(rt, r.ended_at),
        active=r.ended_at is None and r.since <= now < r.until,
    )


def _span(rt: Runtime, since: Any, until: Any) -> tuple[int, int]:
    """since (default now) and until, in ms; 422 when it would be over before it starts."""
    now = rt.now_ms()
    start = to_ms(since) if since is not None else now
    end = to_ms(until)
    if end <= now:
        raise _invalid(("body", "until"), "until must be in the future")
    if end <= start:
        raise _invalid(("body", "until"), "until must be after since")
    return start, end


def _water_devices(conn: Connection, elder_id: str) -> list[str]:
    return list(
        conn.execute(
            select(devices.c.id).where(
                devices.c.elder_id == elder_id, devices.c.kind == DeviceKind.WATER_SENSOR.value
            )
        ).scalars()
    )


def _ended(rt: Runtime, conn: Connection, device_ids: list[str], now: int) -> None:
    """A suppression ended early: the rules look again (gateway/ruling.py)."""
    if rt.rules is not None:
        rt.rules.end_pause(conn, device_ids, now)


def _look_again(rt: Runtime, conn: Connection, elder_id: str, now: int) -> None:
    """New thresholds: the elder's water states are looked at again with them."""
    if rt.rules is not None:
        rt.rules.look_again(conn, _water_devices(conn, elder_id), now)


def _changed(rt: Runtime) -> None:
    if rt.rules is not None:
        rt.rules.invalidate()


def rules_changed(rt: Runtime) -> None:
    """After a commit that changed a suppression from another module: the rules look again."""
    _changed(rt)


def _end_marks(conn: Connection, elder_id: str, now: int) -> int:
    """End the elder's away mark of now or to come; how many were ended."""
    return conn.execute(
        update(elder_away)
        .where(
            elder_away.c.elder_id == elder_id,
            elder_away.c.ended_at.is_(None),
            elder_away.c.until > now,
        )
        .values(ended_at=now)
    ).rowcount


def _new_mark(
    conn: Connection,
    elder_id: str,
    status: str,
    span: tuple[int, int],
    author: str,
    note: str,
    now: int,
) -> str:
    aid = new_id("aw")
    conn.execute(
        insert(elder_away).values(
            id=aid,
            elder_id=elder_id,
            status=status,
            since=span[0],
            until=span[1],
            author=author,
            note=note,
            created_at=now,
        )
    )
    return aid


IN_HOSPITAL_DEFAULT_MS = 14 * 86_400_000  # a hospital stay with no end date: renewed by staff
MAX_AWAY_MS = int(MAX_AWAY.total_seconds() * 1000)


def pause_for_status(
    rt: Runtime,
    conn: Connection,
    elder_id: str,
    status: str,
    since_ms: int,
    until_ms: int | None,
    author: str,
    note: str = "",
) -> None:
    """The registry's status (gateway/api_care.py) drives the no-water-use pause, so staff set
    it in one place: away or in hospital replaces the elder's away mark (an in-hospital stay
    with no end date is paused for IN_HOSPITAL_DEFAULT, to be renewed: nothing is silenced
    forever); any other status ends the mark now. Call `rules_changed(rt)` after the commit."""
    now = rt.now_ms()
    ended = _end_marks(conn, elder_id, now)
    if status in ("away", "in_hospital"):
        start = since_ms
        from_ = max(start, now)
        end = until_ms if until_ms is not None else from_ + IN_HOSPITAL_DEFAULT_MS
        end = min(end, from_ + MAX_AWAY_MS)
        if end > now and end > start:
            _new_mark(conn, elder_id, status, (start, end), author, note[:1000], now)
    if ended:
        _ended(rt, conn, _water_devices(conn, elder_id), now)


def _base_water(rt: Runtime) -> water.WaterConfig:
    return (
        rt.rules.cfg.water if rt.rules is not None else RuleConfig.from_settings(rt.settings).water
    )


def _hm(t: time | None) -> str | None:
    return None if t is None else t.strftime("%H:%M")


def _minutes(d: timedelta | None) -> int | None:
    return None if d is None else int(d.total_seconds() // 60)


def _thresholds(o: water.WaterOverride | water.WaterConfig) -> WaterThresholds:
    window = _minutes(o.fixed_window)
    return WaterThresholds(
        fixed_min_l=o.fixed_min_l,
        fixed_window_h=None if window is None else window / 60,
        day_start=_hm(o.day_start),
        day_end=_hm(o.day_end),
        learn=o.learn,
        running_window_min=_minutes(o.running_window),
    )


def _water_rules_out(rt: Runtime, elder_id: str, row: Row[Any] | None) -> WaterRulesPublic:
    base = _base_water(rt)
    override = None if row is None else water_override(row)
    try:
        effective = water.with_override(base, override)
    except ValueError:
        effective = base  # as the rules do (gateway/ruling.py): the defaults
    return WaterRulesPublic(
        elder_id=elder_id,
        override=None if override is None else _thresholds(override),
        effective=_thresholds(effective),
        updated_at=None if row is None else _ms_req(rt, row.updated_at),
        updated_by=None if row is None else row.updated_by,
    )


def _water_row(conn: Connection, elder_id: str) -> Row[Any] | None:
    return conn.execute(
        select(elder_water_rules).where(elder_water_rules.c.elder_id == elder_id)
    ).first()


# --- routes -------------------------------------------------------------------------------------

router = APIRouter(
    prefix="/api/v1",
    # A station's staff: another station's elder or device answers 404 (gateway/api.py).
    dependencies=[Depends(authenticate), Depends(in_scope())],
    max_body_size=MAX_BODY_BYTES,
)


# elders away or in hospital


@router.put("/elders/{elder_id}/away", tags=["suppression"])
def put_away(elder_id: str, body: AwayIn, rt: RuntimeDep, principal: PrincipalDep) -> AwayPublic:
    """Mark the elder away or in hospital until `until` (replacing a mark now or to come): the
    no-water-use rule pauses, and only that rule; a call button press, gas, a tap left running
    are still paged. Ends by itself at `until`, or early with DELETE."""
    start, end = _span(rt, body.since, body.until)
    try:
        ElderAway(elder_id, body.status, from_ms(start), from_ms(end), principal.label)
    except SuppressionError as exc:
        raise _invalid(("body", "until"), str(exc)) from None
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        _require(conn, elders, elder_id, "elder")
        replaced = _end_marks(conn, elder_id, now)
        aid = _new_mark(
            conn, elder_id, body.status.value, (start, end), principal.label, body.note or "", now
        )
        if replaced:
            _ended(rt, conn, _water_devices(conn, elder_id), now)
        row = conn.execute(select(elder_away).where(elder_away.c.id == aid)).one()
    _changed(rt)
    return _away_out(rt, row)


@router.get("/elders/{elder_id}/away", tags=["suppression"])
def list_away(
    elder_id: str, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AwayPublic]:
    """The elder's away marks, newest first (ended and past ones too, for the record)."""
    with _reading(rt) as conn:
        _require(conn, elders, elder_id, "elder")
        rows = conn.execute(
            select(elder_away)
            .where(elder_away.c.elder_id == elder_id)
            .order_by(elder_away.c.created_at.desc(), elder_away.c.id.desc())
            .limit(limit)
        ).all()
    return [_away_out(rt, r) for r in rows]


@router.delete(
    "/elders/{elder_id}/away", status_code=status.HTTP_204_NO_CONTENT, tags=["suppression"]
)
def end_away(elder_id: str, rt: RuntimeDep) -> Response:
    """The elder is back: end the away mark now (404 when there is none now or to come)."""
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        _require(conn, elders, elder_id, "elder")
        ended = _end_marks(conn, elder_id, now)
        if not ended:
            raise _not_found("away mark for elder", elder_id)
        _ended(rt, conn, _water_devices(conn, elder_id), now)
    _changed(rt)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# device mutes


@router.post(
    "/devices/{device_id}/mutes", status_code=status.HTTP_201_CREATED, tags=["suppression"]
)
def create_mute(
    device_id: str, body: MuteIn, rt: RuntimeDep, principal: PrincipalDep
) -> MutePublic:
    """Put a device in maintenance until `until`, with a reason: its own alerts (offline,
    battery, tamper; for a water sensor also the water rules) are recorded, not paged. A call
    button press and a gas alarm are never muted. Ends by itself, or early with DELETE."""
    start, end = _span(rt, body.since, body.until)
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        dev = _require(conn, devices, device_id, "device")
        if dev.status != "active":
            raise _conflict(f"device {device_id!r} is {dev.status}")
        try:
            DeviceMute(
                device_id,
                DeviceKind(dev.kind),
                principal.label,
                body.reason,
                from_ms(start),
                from_ms(end),
            )
        except SuppressionError as exc:
            raise _invalid(("body", "until"), str(exc)) from None
        mid = new_id("mu")
        conn.execute(
            insert(device_mutes).values(
                id=mid,
                device_id=device_id,
                author=principal.label,
                reason=body.reason,
                since=start,
                until=end,
                created_at=now,
            )
        )
        row = conn.execute(select(device_mutes).where(device_mutes.c.id == mid)).one()
    _changed(rt)
    return _mute_out(rt, row)


@router.get("/devices/{device_id}/mutes", tags=["suppression"])
def list_mutes(
    device_id: str, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[MutePublic]:
    """The device's mutes, newest first (ended and past ones too, for the record)."""
    with _reading(rt) as conn:
        _require(conn, devices, device_id, "device")
        rows = conn.execute(
            select(device_mutes)
            .where(device_mutes.c.device_id == device_id)
            .order_by(device_mutes.c.created_at.desc(), device_mutes.c.id.desc())
            .limit(limit)
        ).all()
    return [_mute_out(rt, r) for r in rows]


@router.delete(
    "/devices/{device_id}/mutes/{mute_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["suppression"],
)
def end_mute(device_id: str, mute_id: str, rt: RuntimeDep) -> Response:
    """End a mute now: what it held back is looked at again at the next tick (an alert whose
    condition is still on opens then). Ending one that is over changes nothing."""
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        row = _require(conn, device_mutes, mute_id, "mute")
        if row.device_id != device_id:
            raise _not_found("mute", mute_id)
        if row.ended_at is None and row.until > now:
            conn.execute(
                update(device_mutes).where(device_mutes.c.id == mute_id).values(ended_at=now)
            )
            _ended(rt, conn, [device_id], now)
    _changed(rt)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# for the board


@router.get("/suppressions", tags=["suppression"])
def list_suppressions(rt: RuntimeDep, principal: PrincipalDep) -> SuppressionsPublic:
    """Every away mark and mute in force now or to come, with its end: nothing is silenced
    forever, and the board shows until when. A station's staff: those of their board."""
    now = rt.now_ms()
    with _reading(rt) as conn:
        scope = caller_scope(conn, rt, principal)
        away = conn.execute(
            select(elder_away)
            .where(elder_away.c.ended_at.is_(None), elder_away.c.until > now)
            .where(scope.on_board_filter(elder_away.c.elder_id))
            .order_by(elder_away.c.until, elder_away.c.id)
        ).all()
        ours = select(devices.c.id).where(scope.on_board_filter(devices.c.elder_id))
        mutes = conn.execute(
            select(device_mutes)
            .where(device_mutes.c.ended_at.is_(None), device_mutes.c.until > now)
            .where(device_mutes.c.device_id.in_(ours))
            .order_by(device_mutes.c.until, device_mutes.c.id)
        ).all()
    return SuppressionsPublic(
        away=[_away_out(rt, r) for r in away], mutes=[_mute_out(rt, r) for r in mutes]
    )


@router.get("/rule-events", tags=["suppression"])
def list_rule_events(
    rt: RuntimeDep,
    principal: PrincipalDep,
    type: Literal["suppressed", "warning"] | None = None,
    device_id: QueryId = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RuleEventPublic]:
    """What the rules decided that opened no alert, newest first: alerts suppressed (by a mute
    or an absence: until when, by whom, and the alert opened once it ended if the condition was
    still on) and warnings: gas, devices whose rules cannot be checked (`check_failed`: a
    stored rule state this version cannot read or use, retried every minute), and gas or water
    sensors whose clock cannot be right (`clock_skew`: their readings are judged at arrival)."""
    q = select(rule_events).order_by(rule_events.c.id.desc()).limit(limit)
    if type is not None:
        q = q.where(rule_events.c.type == type)
    if device_id is not None:
        q = q.where(rule_events.c.device_id == device_id)
    with _reading(rt) as conn:
        q = q.where(caller_scope(conn, rt, principal).on_board_filter(rule_events.c.elder_id))
        rows = conn.execute(q).all()
    return [
        RuleEventPublic(
            id=r.id,
            at=_ms_req(rt, r.at),
            type=r.type,
            device_id=r.device_id,
            elder_id=r.elder_id,
            kind=r.kind,
            reason=r.reason,
            detail=r.detail,
            until=_ms(rt, r.until),
            released_at=_ms(rt, r.released_at),
            alert_id=r.alert_id,
        )
        for r in rows
    ]


@router.get("/incidents", tags=["alerts"])
def list_incidents(
    rt: RuntimeDep,
    principal: PrincipalDep,
    open: bool | None = Query(None, description="true: only those with devices still offline"),
    building: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[IncidentPublic]:
    """Mass outages (many devices of a building silent at once), newest first: each is ONE
    device_offline alert paged to staff, listing every device. A station's staff: those of the
    buildings where their board has a home (as the board's homes)."""
    q = (
        select(incidents, alerts.c.state.label("alert_state"))
        .outerjoin(alerts, alerts.c.id == incidents.c.alert_id)
        .order_by(incidents.c.opened_at.desc(), incidents.c.id.desc())
        .limit(limit)
    )
    if open is not None:
        q = q.where(incidents.c.closed_at.is_(None) if open else incidents.c.closed_at.is_not(None))
    if building is not None:
        q = q.where(incidents.c.building == building)
    with _reading(rt) as conn:
        scope = caller_scope(conn, rt, principal)
        if scope.station is not None:
            ours = select(devices.c.building).where(scope.on_board_filter(devices.c.elder_id))
            q = q.where(incidents.c.building.in_(ours))
        rows = conn.execute(q).all()
    return [
        IncidentPublic(
            id=r.id,
            building=r.building,
            alert_id=r.alert_id,
            alert_state=r.alert_state,
            device_ids=list(r.device_ids or []),
            detail=r.detail,
            opened_at=_ms_req(rt, r.opened_at),
            closed_at=_ms(rt, r.closed_at),
            closed_why=r.closed_why,
        )
        for r in rows
    ]


# an elder's own water thresholds


@router.get("/elders/{elder_id}/water-rules", tags=["rules"])
def get_water_rules(elder_id: str, rt: RuntimeDep) -> WaterRulesPublic:
    """The elder's water thresholds: their override (null when none) and what the no-water and
    water-running rules use for them."""
    with _reading(rt) as conn:
        _require(conn, elders, elder_id, "elder")
        row = _water_row(conn, elder_id)
    return _water_rules_out(rt, elder_id, row)


@router.put("/elders/{elder_id}/water-rules", tags=["rules"])
def put_water_rules(
    elder_id: str, body: WaterRulesIn, rt: RuntimeDep, principal: PrincipalDep, request: Request
) -> WaterRulesPublic:
    """Set the elder's own thresholds (replacing an override: a field left out is the default
    again). Checked with the defaults it keeps (a `day_end` before the default `day_start` is
    refused); used from the next reading or tick. In the audit log."""
    given = body.model_dump(exclude_none=True)
    if not given:
        raise _invalid(("body",), "give at least one threshold (DELETE removes the override)")
    override = water.WaterOverride(
        fixed_min_l=body.fixed_min_l,
        fixed_window=None if body.fixed_window_h is None else timedelta(hours=body.fixed_window_h),
        day_start=None if body.day_start is None else time.fromisoformat(body.day_start),
        day_end=None if body.day_end is None else time.fromisoformat(body.day_end),
        learn=body.learn,
        running_window=(
            None if body.running_window_min is None else timedelta(minutes=body.running_window_min)
        ),
    )
    try:
        water.with_override(_base_water(rt), override)
    except ValueError as exc:
        raise _invalid(("body",), str(exc), given) from None
    now = rt.now_ms()
    try:
        with rt.engine.begin() as conn:
            _require(conn, elders, elder_id, "elder")
            conn.execute(delete(elder_water_rules).where(elder_water_rules.c.elder_id == elder_id))
            conn.execute(
                insert(elder_water_rules).values(
                    elder_id=elder_id,
                    fixed_min_l=body.fixed_min_l,
                    fixed_window_min=_minutes(override.fixed_window),
                    day_start=body.day_start,
                    day_end=body.day_end,
                    learn=body.learn,
                    running_window_min=body.running_window_min,
                    updated_at=now,
                    updated_by=principal.label,
                )
            )
            _audit_water(conn, principal, request, now, "update", elder_id, given)
            _look_again(rt, conn, elder_id, now)
            row = _water_row(conn, elder_id)
    except IntegrityError:
        raise _conflict("the thresholds were changed at the same time: try again") from None
    _changed(rt)
    return _water_rules_out(rt, elder_id, row)


@router.delete(
    "/elders/{elder_id}/water-rules", status_code=status.HTTP_204_NO_CONTENT, tags=["rules"]
)
def delete_water_rules(
    elder_id: str, rt: RuntimeDep, principal: PrincipalDep, request: Request
) -> Response:
    """Remove the elder's override: the defaults again, from the next reading or tick (404 when
    there is none). In the audit log."""
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        _require(conn, elders, elder_id, "elder")
        row = _water_row(conn, elder_id)
        if row is None:
            raise _not_found("water thresholds for elder", elder_id)
        conn.execute(delete(elder_water_rules).where(elder_water_rules.c.elder_id == elder_id))
        was = _thresholds(water_override(row)).model_dump(exclude_none=True)
        _audit_water(conn, principal, request, now, "delete", elder_id, was)
        _look_again(rt, conn, elder_id, now)
    _changed(rt)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _audit_water(
    conn: Connection,
    principal: Any,
    request: Request,
    now: int,
    action: str,
    elder_id: str,
    values: dict[str, Any],
) -> None:
    audit(
        conn,
        principal,
        at=now,
        action=action,
        resource="water_rules",
        elder_id=elder_id,
        record_id=elder_id,
        client_ip=request.client.host if request.client else None,
        detail={"values": values},
    )


# a device's rule configuration


def _device_rules_out(rt: Runtime, r: Row[Any]) -> DeviceRulesPublic:
    return DeviceRulesPublic(
        **_device_out(rt, r).model_dump(), building=r.building, valve_device_id=r.valve_device_id
    )


# The kinds that can take `valve.close` (gateway/ruling.py sends it to `valve_device_id`): a gas
# sensor with a built-in shut-off valve. A call button or water sensor has no gas valve.
VALVE_KINDS = frozenset({DeviceKind.GAS_SENSOR.value})


def _check_valve(conn: Connection, sensor: Row[Any], valve: str) -> None:
    """422 unless `valve` is an active device of the sensor's elder that takes `valve.close`
    (the sensor itself included): a valve.close must never shut another home's gas, nor go to
    a retired device, whose answer would be refused."""
    q = select(devices).where(devices.c.id == valve)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()  # a retire at the same time waits, then clears it (api.py)
    target = conn.execute(q).first()
    loc = ("body", "valve_device_id")
    if target is None:
        raise _invalid(loc, f"no device {valve!r}", valve)
    if target.elder_id != sensor.elder_id:
        raise _invalid(loc, f"device {valve!r} belongs to another elder", valve)
    if target.status != "active":
        raise _invalid(loc, f"device {valve!r} is {target.status}", valve)
    if target.kind not in VALVE_KINDS:
        raise _invalid(loc, f"a {target.kind} cannot take valve.close (a gas sensor can)", valve)


@router.patch("/devices/{device_id}", tags=["devices"])
def configure_device(device_id: str, body: DeviceConfigIn, rt: RuntimeDep) -> DeviceRulesPublic:
    """Set the fields given (null clears one): the device's building, and for a gas sensor the
    device that takes its `valve.close`."""
    fields = body.model_fields_set
    with rt.engine.begin() as conn:
        dev = _require(conn, devices, device_id, "device")
        values: dict[str, Any] = {}
        if "building" in fields:
            values["building"] = body.building
        if "valve_device_id" in fields:
            valve = body.valve_device_id
            if valve is not None:
                if dev.kind != DeviceKind.GAS_SENSOR.value:
                    raise _invalid(
                        ("body", "valve_device_id"), "only a gas sensor has a valve", valve
                    )
                _check_valve(conn, dev, valve)
            values["valve_device_id"] = valve
        if values:
            conn.execute(update(devices).where(devices.c.id == device_id).values(**values))
        row = conn.execute(select(devices).where(devices.c.id == device_id)).one()
        if rt.rules is not None and row.building != dev.building:
            # Device health is per building: watched there from now, also if never heard yet.
            rt.rules.watch(conn, row, rt.now_ms())
    return _device_rules_out(rt, row)


@router.get("/devices/{device_id}/rules", tags=["devices"])
def get_device_rules(device_id: str, rt: RuntimeDep) -> DeviceRulesPublic:
    """The device with its rule configuration (building, valve)."""
    with _reading(rt) as conn:
        row = _require(conn, devices, device_id, "device")
    return _device_rules_out(rt, row)


__all__ = ["router"]
