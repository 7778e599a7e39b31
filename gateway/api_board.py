"""The station staff's live alert board (issue 7): its JSON routes and its Server-Sent Events.

- `GET /api/v1/board`: the snapshot, every alert not closed, by priority then age (oldest first:
  the one waiting longest is the most urgent of its priority), each with its escalation (step,
  plan, next step's time), who was paged and when and how each page went (pager: through the
  outbox; other channels: the channel chain's deliveries), who it is assigned to, the elder and
  the device; and `last_event_id`, the newest timeline event the snapshot already shows, from
  which the page subscribes to the stream without a gap.
- `GET /api/v1/board/stream`: Server-Sent Events from the live feed (gateway/live.py): for new
  timeline events, the fresh board row of their alert (`alert`, `id` the event id), and
  `resync` when the page must load the snapshot again. `Last-Event-ID` (or `?since=`) replays
  what the page missed.
- `GET /api/v1/board/elders/{id}/card`: the elder's card for whoever goes: address, phone,
  emergency contacts and who holds a key, conditions and allergies, doctor, the paired
  watchers and volunteers with their phones, the devices, the last alerts. Reading it writes an
  audit row, like every read of a care record (gateway/api_care.py).
- `POST /api/v1/alerts/{id}/assign`: send one person (指派); they are paged at once and can
  answer like anyone paged; an `assigned` event, and the current assignee in
  `alert_assignments` (gateway/tables_board.py). Acknowledge, on site and resolve are
  gateway/api.py's routes: the board uses those.
- `GET /api/v1/board/homes`: every device's health (online, battery, last heard), grouped by
  building, with the building's open outage incident as ONE line (gateway/api_rules.py).

Administrators and station staff only. A staff member whose care profile names a station sees
only that station's elders and the elders no station has taken yet (an alarm is never on nobody's
board; gateway/care_store.py `Scope` otherwise, as the care routes do): an alert or
elder of another station answers 404, and the stream leaves its events out. But an alert of
another station that they were paged for (its station had nobody to page) is theirs to see,
assign and answer, and while it is active its elder's card too (its recent alerts only those
they were paged for, its paired people only those they see anyway): being paged is no use if
the alarm cannot be opened.

The snapshot and a stream batch cost a fixed number of queries, whatever the number of alerts:
the alerts with their elder, device and assignee in one; then their paging events, pages,
deliveries, incidents, latest events and the names in the plans, one query each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from fastapi import Path as FastApiPath
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import Connection, func, insert, or_, select, update

from alerts.health import DEFAULT_INTERVALS, HealthConfig
from alerts.model import ACTIVE_STATES
from care.elders import ElderStatus, LivingSituation, Relation, SelfCareStatus
from devices.kinds import DeviceKind
from gateway import alert_log, refused_alarms
from gateway.alerting import Actor, NotFound, Tx
from gateway.api import (
    MAX_BODY_BYTES,
    Note,
    RefId,
    RuntimeDep,
    _In,
    _invalid,
    _ms,
    _ms_req,
    _not_found,
    _reading,
    _usable_path_id,
    allow,
    still_authenticated,
)
from gateway.auth import Principal, Role
from gateway.care_store import Scope as CareScope
from gateway.care_store import audit, scope_for
from gateway.clock import from_ms
from gateway.error_texts import STATE_ZH, Bilingual
from gateway.live import RESYNC, LiveEvent, last_event_id, sse_message, sse_response
from gateway.runtime import Runtime
from gateway.tables import (
    alert_events,
    alerts,
    deliveries,
    devices,
    elders,
    incidents,
    outbox,
    pages,
    pairings,
    responders,
)
from gateway.tables_board import alert_assignments
from gateway.tables_care import elder_profiles

log = logging.getLogger(__name__)

ACTIVE = tuple(s.value for s in ACTIVE_STATES)
SNAPSHOT_MAX = 500  # alerts on one snapshot; beyond, `more` says how many were left out
PAGED_MAX = 30  # pages listed per alert (a last step repeating for an hour pages 120 times)
BATCH_MAX = 200  # stream events gathered into one round of queries
GATHER_S = 0.005  # how long the stream waits for more events of the same poll before sending
STREAM_MAX_S = 300.0  # a stream ends after this; the browser reconnects (and is checked again)
FOLLOW_S = (0.5, 1.5, 4.0)  # when the stream looks again at a page not yet handed to the broker
RECENT_ALERTS = 5  # on the elder's card
REFUSED_POLL_S = 2.0  # how often the stream looks for new (or dismissed) refused alarms
REFUSED_REFRESH_S = 60.0  # and reads them again regardless (a day-old one drops off)
_HEALTH = HealthConfig()

_staff = allow(Role.ADMIN, Role.STAFF)  # one callable: FastAPI checks the caller once a request
StaffDep = Annotated[Principal, Depends(_staff)]


# --- shapes -------------------------------------------------------------------------------------


class Label(BaseModel):
    """A value of a closed vocabulary with its Chinese and English labels."""

    value: str
    zh: str
    en: str


class PersonRef(BaseModel):
    id: str
    name: str | None = Field(description="null: the person no longer exists")
    role: str | None
    phone: str | None = None


class PlanStep(BaseModel):
    step: int = Field(description="1 first")
    ack_timeout_s: int
    responders: list[PersonRef]


class Via(BaseModel):
    channel: str = Field(description="pager, or a channel of the person's chain (sms, web ...)")
    status: str = Field(
        description="pager: queued, sent or cancelled (answered before it went); a channel: "
        "queued, sending, sent, delivered, failed or cancelled"
    )
    at: str | None


class PagedEntry(BaseModel):
    at: str
    step: int | None = Field(description="the escalation step; null for a reminder")
    reason: str = Field(description="opened, timeout, declined, assigned, reminder ...")
    responder_id: str
    name: str | None
    page_id: str
    via: list[Via]


class Assignment(BaseModel):
    responder_id: str
    name: str | None
    role: str | None
    phone: str | None
    at: str
    by: str
    note: str | None


class ElderRef(BaseModel):
    id: str
    name: str
    address: str
    phone: str | None


class DeviceRef(BaseModel):
    id: str
    kind: str
    building: str | None
    online: bool | None
    battery_pct: float | None
    last_seen_at: str | None


class EventRef(BaseModel):
    id: int
    type: str
    at: str
    actor: str | None


class IncidentRef(BaseModel):
    id: str
    building: str
    devices: int = Field(description="how many devices the outage lists")
    opened_at: str
    closed_at: str | None


class BoardAlert(BaseModel):
    id: str
    kind: str
    priority: str
    state: str
    created_at: str
    updated_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None = Field(description="as on the timeline: responder:<id>, api:<n>")
    acknowledged_by_name: str | None = Field(
        description="who that is: a responder's name, a signed-in user's or a token's name"
    )
    on_site_at: str | None
    closed_at: str | None
    outcome: str | None
    note: str | None
    step: int = Field(description="the escalation step paged last (1 first; 0 none)")
    steps: int = Field(description="how many steps the plan has")
    plan: list[PlanStep]
    plan_source: str | None
    next_escalation_at: str | None = Field(description="when the next step is paged, if open")
    next_reminder_at: str | None
    paged: list[PagedEntry] = Field(description=f"the last {PAGED_MAX} pages, oldest first")
    paged_total: int
    assigned: Assignment | None
    elder: ElderRef
    device: DeviceRef
    incident: IncidentRef | None = Field(description="a building's outage this alert stands for")
    last_event: EventRef | None


class BoardSnapshot(BaseModel):
    now: str = Field(description="the gateway's clock: timers on the page count from it")
    last_event_id: int = Field(description="subscribe to the stream from here (?since=)")
    station: str | None = Field(description="the caller's station, when limited to one")
    alerts: list[BoardAlert]
    more: int = Field(description=f"open alerts left out (only the first {SNAPSHOT_MAX} shown)")


class AssignIn(_In):
    responder_id: RefId
    note: Note | None = None


class HomeDeviceAlert(BaseModel):
    id: str
    kind: str
    priority: str
    state: str


class HomeDevice(BaseModel):
    id: str
    kind: str
    health: str = Field(
        description="offline (says so, or silent past 3 reports), low_battery, unknown "
        "(never heard) or ok"
    )
    online: bool | None
    battery_pct: float | None
    last_seen_at: str | None
    elder: ElderRef
    incident_id: str | None = Field(description="the open outage this device is part of")
    alerts: list[HomeDeviceAlert]


class HomeIncident(BaseModel):
    id: str
    alert_id: str | None
    alert_state: str | None
    devices: int
    device_ids: list[str]
    detail: str
    opened_at: str


class HomeCounts(BaseModel):
    total: int
    ok: int
    offline: int
    low_battery: int
    unknown: int


class Building(BaseModel):
    building: str | None = Field(description="null: devices not placed in a building")
    counts: HomeCounts
    incidents: list[HomeIncident] = Field(description="open outages: one line each")
    devices: list[HomeDevice]


class Homes(BaseModel):
    now: str
    buildings: list[Building]


class Contact(BaseModel):
    name: str
    relation: Label | None
    phone: str
    holds_key: bool
    note: str | None


class Doctor(BaseModel):
    name: str | None
    clinic: str | None
    phone: str | None


class Paired(BaseModel):
    responder_id: str
    name: str
    kind: str = Field(description="watcher, volunteer, family, party_member or staff")
    phone: str | None
    pager_id: str | None


class CardAlert(BaseModel):
    id: str
    kind: str
    priority: str
    state: str
    created_at: str
    outcome: str | None


class ElderCard(BaseModel):
    id: str
    name: str
    address: str
    phone: str | None
    birth_date: date | None
    age: int | None
    registered: bool = Field(description="false: no care record yet (name, address, phone only)")
    station: str | None
    status: Label | None
    living_situation: Label | None
    self_care: Label | None
    conditions: list[str]
    allergies: list[str]
    doctor: Doctor | None
    notes: str | None
    emergency_contacts: list[Contact]
    key_holders: list[Contact] = Field(description="the emergency contacts who hold a key")
    paired: list[Paired]
    devices: list[DeviceRef]
    recent_alerts: list[CardAlert]


class RefusedDevice(BaseModel):
    id: str
    kind: str
    status: str = Field(description="active or retired")


class RefusedAlarm(BaseModel):
    """A device's alarm event the gateway refused (quarantined): no alert was opened."""

    quarantine_id: int = Field(description="its row in GET /api/v1/quarantine")
    at: str = Field(description="when the gateway received it")
    type: str = Field(description="button.pressed, gas.alarm or water.leak, as the payload says")
    reason: str = Field(description="why it was refused (the quarantine's reason)")
    detail: str
    size: int = Field(description="the payload's size in bytes")
    device: RefusedDevice
    elder: ElderRef


class RefusedAlarms(BaseModel):
    now: str
    window_h: int = Field(description="how far back: older ones are no longer listed")
    alarms: list[RefusedAlarm] = Field(description="not dismissed, newest first")


class DismissIn(_In):
    note: Note | None = None


class Dismissal(BaseModel):
    quarantine_id: int
    dismissed_at: str
    dismissed_by: str = Field(description="as on a timeline: user:<name>, api:<name>")
    dismissed_by_name: str
    note: str | None


# --- helpers ------------------------------------------------------------------------------------


def _ours_or_nobodys(station: str) -> Any:
    """Elders of `station`, and elders no station has taken (no care profile, or one without a
    station): an alarm must never be on nobody's board, so an elder the registry has not
    placed yet shows on every station's board until it does."""
    return or_(elder_profiles.c.station == station, elder_profiles.c.station.is_(None))


def _station(conn: Connection, principal: Principal, now_ms: int) -> str | None:
    """The one station the caller is limited to (None: every station), as the care routes
    decide it: a staff member whose profile names a station."""
    return scope_for(conn, principal, now_ms).station


def _paged_active(conn: Connection, scope: CareScope, elder_id: str) -> str | None:
    """An active alert of the elder the caller was paged for (the oldest), or None."""
    q = (
        select(alerts.c.id)
        .where(
            alerts.c.elder_id == elder_id,
            alerts.c.state.in_(ACTIVE),
            scope.paged_filter(alerts.c.id),
        )
        .order_by(alerts.c.created_at, alerts.c.id)
        .limit(1)
    )
    found = conn.execute(q).scalar()
    return str(found) if found is not None else None


def _label(kind: Any, value: Any) -> Label | None:
    if value is None:
        return None
    try:
        member = kind(value)
    except ValueError:  # a value this version does not know: shown as it is
        return Label(value=str(value), zh=str(value), en=str(value))
    return Label(value=member.value, zh=member.zh, en=member.en)


def _responder_of(label: str | None) -> str | None:
    if label and label.startswith("responder:"):
        return label.removeprefix("responder:")
    return None


def _who(label: str | None, people: dict[str, Any]) -> str | None:
    """A timeline label as a person reads it: a responder's name, a signed-in user's or a
    token's name; None for anything else (a device, the elder)."""
    if label is None:
        return None
    if (rid := _responder_of(label)) is not None:
        p = people.get(rid)
        return str(p.name) if p is not None else None
    for prefix in ("user:", "api:"):
        if label.startswith(prefix):
            return label.removeprefix(prefix)
    return None


def _pager_status(sent_at: int | None, cancelled_at: int | None) -> str:
    if cancelled_at is not None:
        return "cancelled"
    return "sent" if sent_at is not None else "queued"


def _device_ref(rt: Runtime, r: Any, prefix: str = "") -> DeviceRef:
    m = r._mapping
    return DeviceRef(
        id=m[f"{prefix}id"],
        kind=m[f"{prefix}kind"],
        building=m[f"{prefix}building"],
        online=m[f"{prefix}online"],
        battery_pct=m[f"{prefix}battery_pct"],
        last_seen_at=_ms(rt, m[f"{prefix}last_seen_at"]),
    )


_D = [devices.c[n].label(f"d_{n}") for n in ("id", "kind", "building", "online")] + [
    devices.c[n].label(f"d_{n}") for n in ("battery_pct", "last_seen_at")
]


def _board_alerts(
    conn: Connection,
    rt: Runtime,
    station: str | None,
    ids: Sequence[str] | None,
    paged: Any = None,
) -> tuple[list[BoardAlert], int]:
    """The board rows of the open alerts (`ids` None) or of these alerts (any state), that the
    caller limited to `station` may see, and those of `paged` (a WHERE clause on the alert's
    id: another station's alerts the caller was paged for, `Scope.paged_filter`); and how many
    open ones were left out."""
    seen = None
    if station is not None:
        seen = _ours_or_nobodys(station) if paged is None else or_(_ours_or_nobodys(station), paged)
    aa = alert_assignments.c
    q = (
        select(
            alerts,
            elders.c.name.label("e_name"),
            elders.c.address.label("e_address"),
            elders.c.phone.label("e_phone"),
            *_D,
            aa.responder_id.label("as_responder_id"),
            aa.assigned_at.label("as_at"),
            aa.assigned_by.label("as_by"),
            aa.note.label("as_note"),
            responders.c.name.label("as_name"),
            responders.c.role.label("as_role"),
            responders.c.phone.label("as_phone"),
        )
        .join(elders, elders.c.id == alerts.c.elder_id)
        .join(devices, devices.c.id == alerts.c.device_id)
        .outerjoin(alert_assignments, aa.alert_id == alerts.c.id)
        .outerjoin(responders, responders.c.id == aa.responder_id)
        # P1 < P2 < P3 as text; the oldest first within a priority
        .order_by(alerts.c.priority, alerts.c.created_at, alerts.c.id)
    )
    if seen is not None:
        q = q.outerjoin(elder_profiles, elder_profiles.c.elder_id == alerts.c.elder_id).where(seen)
    if ids is None:
        q = q.where(alerts.c.state.in_(ACTIVE)).limit(SNAPSHOT_MAX + 1)
    else:
        q = q.where(alerts.c.id.in_(list(ids)))
    rows = conn.execute(q).all()
    more = 0
    if ids is None and len(rows) > SNAPSHOT_MAX:
        rows = rows[:SNAPSHOT_MAX]
        count_q = select(func.count()).select_from(alerts).where(alerts.c.state.in_(ACTIVE))
        if seen is not None:
            count_q = count_q.outerjoin(
                elder_profiles, elder_profiles.c.elder_id == alerts.c.elder_id
            ).where(seen)
        more = int(conn.execute(count_q).scalar() or 0) - SNAPSHOT_MAX
    if not rows:
        return [], more
    alert_ids = [r.id for r in rows]

    # Who was paged: the timeline's paging events name each person and their page.
    paged_by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in conn.execute(
        select(alert_events.c.alert_id, alert_events.c.at, alert_events.c.detail)
        .where(
            alert_events.c.alert_id.in_(alert_ids),
            alert_events.c.type.in_(("paged", "reminded")),
        )
        .order_by(alert_events.c.id)
    ):
        d: dict[str, Any] = e.detail or {}
        for to in d.get("to") or []:
            if isinstance(to, dict) and to.get("page_id"):
                paged_by[e.alert_id].append(
                    {
                        "at": e.at,
                        "step": d.get("step") if "stage" not in d else None,
                        "reason": d.get("reason") or ("reminder" if "stage" in d else "paged"),
                        "responder_id": str(to.get("responder_id")),
                        "name": to.get("name"),
                        "page_id": str(to["page_id"]),
                    }
                )
    # How each page went: the pager's through the outbox, other channels' as deliveries.
    pager: dict[str, tuple[int | None, int | None, int]] = {}
    for pg_row in conn.execute(
        select(pages.c.id, pages.c.created_at, outbox.c.sent_at, outbox.c.cancelled_at)
        .outerjoin(outbox, outbox.c.page_id == pages.c.id)
        .where(pages.c.alert_id.in_(alert_ids), pages.c.type == "page")
    ):
        pager[pg_row.id] = (pg_row.sent_at, pg_row.cancelled_at, pg_row.created_at)
    links: dict[str, dict[int, Any]] = defaultdict(dict)
    for dl in conn.execute(
        select(
            deliveries.c.page_id,
            deliveries.c.link,
            deliveries.c.channel,
            deliveries.c.status,
            deliveries.c.at,
        )
        .where(deliveries.c.alert_id.in_(alert_ids), deliveries.c.channel != "pager")
        .order_by(deliveries.c.id)
    ):
        links[dl.page_id][dl.link] = dl  # the newest attempt of each link wins
    # The building outage an alert stands for.
    incident_of: dict[str, IncidentRef] = {}
    for i in conn.execute(
        select(
            incidents.c.id,
            incidents.c.alert_id,
            incidents.c.building,
            incidents.c.device_ids,
            incidents.c.opened_at,
            incidents.c.closed_at,
        ).where(incidents.c.alert_id.in_(alert_ids))
    ):
        incident_of[i.alert_id] = IncidentRef(
            id=i.id,
            building=i.building,
            devices=len(i.device_ids or []),
            opened_at=_ms_req(rt, i.opened_at),
            closed_at=_ms(rt, i.closed_at),
        )
    # Each alert's newest event: what happened last.
    newest = (
        select(func.max(alert_events.c.id))
        .where(alert_events.c.alert_id.in_(alert_ids))
        .group_by(alert_events.c.alert_id)
    )
    last_of: dict[str, EventRef] = {}
    for ev in conn.execute(
        select(
            alert_events.c.id,
            alert_events.c.alert_id,
            alert_events.c.type,
            alert_events.c.at,
            alert_events.c.actor,
        ).where(alert_events.c.id.in_(newest))
    ):
        last_of[ev.alert_id] = EventRef(
            id=ev.id, type=ev.type, at=_ms_req(rt, ev.at), actor=ev.actor
        )
    # Names of the people in the plans and of those who acknowledged.
    people_ids: set[str] = set()
    for r in rows:
        for s in r.plan or []:
            people_ids.update(str(x) for x in s.get("responder_ids") or [])
        if (rid := _responder_of(r.acknowledged_by)) is not None:
            people_ids.add(rid)
    people: dict[str, Any] = {}
    if people_ids:
        for who in conn.execute(
            select(responders.c.id, responders.c.name, responders.c.role).where(
                responders.c.id.in_(sorted(people_ids))
            )
        ):
            people[who.id] = who

    def person(rid: str) -> PersonRef:
        p = people.get(rid)
        return PersonRef(id=rid, name=p.name if p else None, role=p.role if p else None)

    out: list[BoardAlert] = []
    for r in rows:
        entries = paged_by.get(r.id, [])
        paged_list: list[PagedEntry] = []
        for entry in entries[-PAGED_MAX:]:
            via: list[Via] = []
            if (pg := pager.get(entry["page_id"])) is not None:
                via.append(
                    Via(
                        channel="pager",
                        status=_pager_status(pg[0], pg[1]),
                        at=_ms(rt, pg[0] or pg[1] or pg[2]),
                    )
                )
            for _, link in sorted(links.get(entry["page_id"], {}).items()):
                via.append(Via(channel=link.channel, status=link.status, at=_ms(rt, link.at)))
            paged_list.append(
                PagedEntry(
                    at=_ms_req(rt, entry["at"]),
                    step=entry["step"] if isinstance(entry["step"], int) else None,
                    reason=str(entry["reason"]),
                    responder_id=entry["responder_id"],
                    name=entry["name"],
                    page_id=entry["page_id"],
                    via=via,
                )
            )
        plan = [
            PlanStep(
                step=n,
                ack_timeout_s=int(s.get("ack_timeout_s") or 0),
                responders=[person(str(x)) for x in s.get("responder_ids") or []],
            )
            for n, s in enumerate(r.plan or [], 1)
        ]
        out.append(
            BoardAlert(
                id=r.id,
                kind=r.kind,
                priority=r.priority,
                state=r.state,
                created_at=_ms_req(rt, r.created_at),
                updated_at=_ms_req(rt, r.updated_at),
                acknowledged_at=_ms(rt, r.acknowledged_at),
                acknowledged_by=r.acknowledged_by,
                acknowledged_by_name=_who(r.acknowledged_by, people),
                on_site_at=_ms(rt, r.on_site_at),
                closed_at=_ms(rt, r.closed_at),
                outcome=r.outcome,
                note=r.note,
                step=r.step,
                steps=len(plan),
                plan=plan,
                plan_source=r.plan_source,
                next_escalation_at=_ms(rt, r.next_escalation_at),
                next_reminder_at=_ms(rt, r.next_reminder_at),
                paged=paged_list,
                paged_total=len(entries),
                assigned=(
                    Assignment(
                        responder_id=r.as_responder_id,
                        name=r.as_name,
                        role=r.as_role,
                        phone=r.as_phone,
                        at=_ms_req(rt, r.as_at),
                        by=r.as_by,
                        note=r.as_note,
                    )
                    if r.as_responder_id is not None
                    else None
                ),
                elder=ElderRef(id=r.elder_id, name=r.e_name, address=r.e_address, phone=r.e_phone),
                device=_device_ref(rt, r, "d_"),
                incident=incident_of.get(r.id),
                last_event=last_of.get(r.id),
            )
        )
    return out, more


def _head_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(alert_events.c.id), 0))).scalar() or 0)


# --- routes -------------------------------------------------------------------------------------

router = APIRouter(
    prefix="/api/v1", dependencies=[Depends(_staff)], max_body_size=MAX_BODY_BYTES, tags=["board"]
)


@router.get("/board")
def board(rt: RuntimeDep, principal: StaffDep) -> BoardSnapshot:
    """Every alert not closed, by priority then age, as the board shows it; `last_event_id` is
    where the stream takes over."""
    now = rt.now_ms()
    with _reading(rt) as conn:
        # The newest event id FIRST: every event up to it is then in what is read after it (an
        # event written meanwhile comes again on the stream, which is harmless: a fresh row).
        head = _head_id(conn)
        scope = scope_for(conn, principal, now)
        station = scope.station
        rows, more = _board_alerts(conn, rt, station, None, scope.paged_filter(alerts.c.id))
    return BoardSnapshot(
        now=_ms_req(rt, now), last_event_id=head, station=station, alerts=rows, more=more
    )


def _rows_for(rt: Runtime, scope: CareScope, alert_ids: list[str]) -> dict[str, BoardAlert]:
    # The paged clause is read anew with each batch: a page sent after the stream opened
    # (another station's staff paged at the last step) brings that alert onto this board.
    paged = scope.paged_filter(alerts.c.id)
    with _reading(rt) as conn:
        rows, _ = _board_alerts(conn, rt, scope.station, alert_ids, paged)
    return {r.id: r for r in rows}


def _refused_update(rt: Runtime, scope: CareScope, state: dict[str, Any]) -> str | None:
    """A `refused` message when the caller's refused alarms may have changed since `state`
    (updated), else None."""
    now = time.monotonic()
    try:
        with _reading(rt) as conn:
            mark = refused_alarms.mark(conn)
            if mark == state["mark"] and now - state["read"] < REFUSED_REFRESH_S:
                return None
            found = refused_alarms.recent(conn, rt.settings.mqtt_base, rt.now_ms(), scope)
    except Exception:  # the database is down: the alerts stream on, the list waits
        log.warning("board stream: cannot read the refused alarms", exc_info=True)
        return None
    state["mark"], state["read"] = mark, now
    data = _refused_now_from(rt, found).model_dump(mode="json")
    ids = [a["quarantine_id"] for a in data["alarms"]]
    if ids == state["sent"] and now - state.get("sent_at", 0.0) < REFUSED_REFRESH_S:
        return None
    state["sent"], state["sent_at"] = ids, now
    return sse_message("refused", data)


def _scope_of(rt: Runtime, principal: Principal) -> CareScope:
    with _reading(rt) as conn:
        return scope_for(conn, principal, rt.now_ms())


@router.get(
    "/board/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def board_stream(
    request: Request,
    rt: RuntimeDep,
    principal: StaffDep,
    since: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="the snapshot's last_event_id (first connection)"),
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events: `alert` (`id` the timeline event's id; data `{"alert": <board row>,
    "events": [...]}`) whenever an alert's timeline grows, `resync` when the page must load
    the snapshot again (then the stream ends). A reconnecting browser's `Last-Event-ID` wins
    over `since`. The stream ends after a few minutes; the browser reconnects by itself."""
    live = rt.live
    if live is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no live feed here")
    header = last_event_id(request.headers.get("last-event-id"))
    start = header if header is not None else since
    scope = await asyncio.to_thread(_scope_of, rt, principal)

    async def messages() -> AsyncIterator[str]:
        it = live.events(since=start).__aiter__()
        loop = asyncio.get_running_loop()
        ends = loop.time() + STREAM_MAX_S
        nxt: asyncio.Future[LiveEvent | str] | None = None
        sent = start or 0
        # Rows sent with a page still waiting for the broker: a pager's page being handed over
        # is no timeline event, so the stream looks again by itself (alert id -> when, tries).
        follow: dict[str, tuple[float, int]] = {}

        def look_again(row: BoardAlert, tries: int) -> None:
            waiting = any(
                v.channel == "pager" and v.status == "queued" for p in row.paged for v in p.via
            )
            if waiting and tries < len(FOLLOW_S):
                follow[row.id] = (loop.time() + FOLLOW_S[tries], tries + 1)
            else:
                follow.pop(row.id, None)

        # Refused alarms are no timeline events: the stream looks at the quarantine itself
        # (its newest id and the dismissals) every REFUSED_POLL_S, and sends the list when it
        # changed, or every REFUSED_REFRESH_S (a day-old one drops off). First at once.
        refused_at = loop.time()
        refused: dict[str, Any] = {"mark": None, "sent": None, "read": 0.0}

        try:
            while True:
                if loop.time() >= refused_at:
                    refused_at = loop.time() + REFUSED_POLL_S
                    if msg := await asyncio.to_thread(_refused_update, rt, scope, refused):
                        yield msg
                if nxt is None:
                    nxt = asyncio.ensure_future(it.__anext__())
                wake = min([ends, refused_at, *(at for at, _ in follow.values())])
                done, _ = await asyncio.wait({nxt}, timeout=max(0.0, wake - loop.time()))
                if not done:
                    if loop.time() >= ends:
                        return  # time to reconnect (and to be checked again)
                    due = [aid for aid, (at, _) in follow.items() if at <= loop.time()]
                    if not due:
                        continue  # the refused alarms' turn (at the top)
                    rows = await asyncio.to_thread(_rows_for, rt, scope, due)
                    for aid in due:
                        tries = follow.pop(aid)[1]
                        if (row := rows.get(aid)) is not None:
                            # no id: not a new event, Last-Event-ID stays where it is
                            yield sse_message(
                                "alert", {"alert": row.model_dump(mode="json"), "events": []}
                            )
                            look_again(row, tries)
                    continue
                batch: list[LiveEvent | str] = [nxt.result()]
                nxt = None
                # The rest of the feed's poll is already queued: gather it, one round of
                # queries for the lot (a press writes several events at once).
                while len(batch) < BATCH_MAX and not isinstance(batch[-1], str):
                    nxt = asyncio.ensure_future(it.__anext__())
                    done, _ = await asyncio.wait({nxt}, timeout=GATHER_S)
                    if not done:
                        break
                    batch.append(nxt.result())
                    nxt = None
                events = [e for e in batch if isinstance(e, LiveEvent)]
                if events:
                    by_alert: dict[str, list[LiveEvent]] = defaultdict(list)
                    for ev in events:
                        by_alert[ev.alert_id].append(ev)
                    rows = await asyncio.to_thread(_rows_for, rt, scope, list(by_alert))
                    # One message per alert, in the order of its newest event, so that the ids
                    # the browser keeps as Last-Event-ID only grow.
                    for aid, evs in sorted(by_alert.items(), key=lambda kv: kv[1][-1].id):
                        row = rows.get(aid)
                        if row is None:
                            continue  # not this caller's station
                        sent = max(sent, evs[-1].id)
                        data = {
                            "alert": row.model_dump(mode="json"),
                            "events": [
                                {"id": e.id, "type": e.type, "at": _ms(rt, e.at), "actor": e.actor}
                                for e in evs
                            ],
                        }
                        yield sse_message("alert", data, id=sent)
                        look_again(row, 0)
                if batch and isinstance(batch[-1], str) and batch[-1] == RESYNC:
                    yield sse_message("resync", {})
                    return
        except StopAsyncIteration:
            return
        finally:
            if nxt is not None:
                nxt.cancel()
                await asyncio.wait({nxt})  # let the feed's generator finish before closing it
            with contextlib.suppress(Exception):
                await it.aclose()  # type: ignore[attr-defined]

    # Staff signed out or disabled stop seeing the elders' alerts within seconds.
    return sse_response(messages, allowed=still_authenticated(request, rt))


@router.get("/board/elders/{elder_id}/card")
def elder_card(elder_id: str, request: Request, rt: RuntimeDep, principal: StaffDep) -> ElderCard:
    """The elder's card for whoever goes to them. Reading it is audited, as every read of a
    care record is. An elder of another station answers 404."""
    if not _usable_path_id(elder_id):
        raise _not_found("elder", elder_id)
    now = rt.now_ms()
    with rt.engine.begin() as conn:  # a write: the audit row
        scope = scope_for(conn, principal, now)
        e = conn.execute(select(elders).where(elders.c.id == elder_id)).first()
        prof = conn.execute(
            select(elder_profiles).where(elder_profiles.c.elder_id == elder_id)
        ).first()
        # unplaced: as on the board
        ours = prof is None or prof.station is None or scope.visible(prof.station, elder_id)
        # Another station's elder: only for whoever is paged for an alert of theirs still
        # active, who must find them (address, phone, key holders); and then not the alerts or
        # people of that station the caller would not see otherwise.
        paged_for = None if ours else _paged_active(conn, scope, elder_id)
        if e is None or not (ours or paged_for):
            raise _not_found("elder", elder_id)
        only_alerts = [] if ours else [scope.paged_filter(alerts.c.id)]
        only_people = [] if ours else [scope.people_filter(pairings.c.responder_id)]
        paired = conn.execute(
            select(
                pairings.c.responder_id,
                pairings.c.kind,
                pairings.c.role,
                pairings.c.ord,
                responders.c.name,
                responders.c.phone,
                responders.c.pager_id,
            )
            .join(responders, responders.c.id == pairings.c.responder_id)
            .where(
                pairings.c.elder_id == elder_id,
                pairings.c.active_from <= now,
                or_(pairings.c.active_until.is_(None), pairings.c.active_until > now),
                *only_people,
            )
            .order_by(pairings.c.ord, pairings.c.created_at)
        ).all()
        devs = conn.execute(
            select(*_D)
            .where(devices.c.elder_id == elder_id, devices.c.status == "active")
            .order_by(devices.c.kind, devices.c.id)
        ).all()
        recent = conn.execute(
            select(
                alerts.c.id,
                alerts.c.kind,
                alerts.c.priority,
                alerts.c.state,
                alerts.c.created_at,
                alerts.c.outcome,
            )
            .where(alerts.c.elder_id == elder_id, *only_alerts)
            .order_by(alerts.c.created_at.desc(), alerts.c.id.desc())
            .limit(RECENT_ALERTS)
        ).all()
        client = request.client.host if request.client else None
        audit(
            conn,
            principal,
            at=now,
            action="read",
            resource="board_card",
            elder_id=elder_id,
            client_ip=client,
            # another station's elder: the audit says which page let the caller in
            detail={"paged_for": paged_for} if paged_for else None,
        )
    rec: dict[str, Any] = dict(prof.record) if prof is not None else {}
    contacts = [
        Contact(
            name=str(c.get("name", "")),
            relation=_label(Relation, c.get("relation")),
            phone=str(c.get("phone", "")),
            holds_key=bool(c.get("holds_key")),
            note=c.get("note"),
        )
        for c in rec.get("emergency_contacts") or []
        if isinstance(c, dict)
    ]
    doc = rec.get("doctor")
    today = from_ms(now, rt.tz).date()
    born: date | None = e.birth_date
    age = None
    if born is not None:
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return ElderCard(
        id=e.id,
        name=e.name,
        address=e.address,
        phone=e.phone,
        birth_date=born,
        age=age,
        registered=prof is not None,
        station=prof.station if prof else None,
        status=_label(ElderStatus, prof.status) if prof else None,
        living_situation=_label(LivingSituation, prof.living_situation) if prof else None,
        self_care=_label(SelfCareStatus, prof.self_care) if prof else None,
        conditions=[str(x) for x in rec.get("conditions") or []],
        allergies=[str(x) for x in rec.get("allergies") or []],
        doctor=(
            Doctor(name=doc.get("name"), clinic=doc.get("clinic"), phone=doc.get("phone"))
            if isinstance(doc, dict)
            else None
        ),
        notes=rec.get("notes"),
        emergency_contacts=contacts,
        key_holders=[c for c in contacts if c.holds_key],
        paired=[
            Paired(
                responder_id=p.responder_id,
                name=p.name,
                kind=p.kind or p.role,
                phone=p.phone,
                pager_id=p.pager_id,
            )
            for p in paired
        ],
        devices=[_device_ref(rt, d, "d_") for d in devs],
        recent_alerts=[
            CardAlert(
                id=a.id,
                kind=a.kind,
                priority=a.priority,
                state=a.state,
                created_at=_ms_req(rt, a.created_at),
                outcome=a.outcome,
            )
            for a in recent
        ],
    )


@router.post("/alerts/{alert_id}/assign", tags=["alerts"])
def assign_alert(alert_id: str, body: AssignIn, rt: RuntimeDep, principal: StaffDep) -> BoardAlert:
    """Send one person to the alert (指派): they become its assignee and are paged at once (by
    pager and their channels), so they can answer like anyone paged. The state and the
    escalation do not change: paging goes on until someone acknowledges. 409 for a closed
    alert; 422 for an unknown person."""
    if not _usable_path_id(alert_id):
        raise _not_found("alert", alert_id)
    now = rt.now_ms()
    with rt.engine.begin() as conn:
        scope = scope_for(conn, principal, now)
        station = scope.station
        try:
            alert = rt.service.load(conn, alert_id)  # locked: one answer or assignment at once
        except NotFound:
            raise _not_found("alert", alert_id) from None
        if station is not None:
            seen = conn.execute(
                select(elder_profiles.c.station).where(elder_profiles.c.elder_id == alert.elder_id)
            ).scalar()
            # No station: every station's alarm; another's: the caller's once they are paged.
            if seen is not None and seen != station and not scope.paged_for(conn, alert_id):
                raise _not_found("alert", alert_id)
        if alert.state not in ACTIVE:
            raise Bilingual(
                status.HTTP_409_CONFLICT,
                f"alert {alert_id!r} is {alert.state}: only an open alert is assigned",
                f"告警 {alert_id!r} 当前为“{STATE_ZH.get(alert.state, alert.state)}”："
                "只能指派未结束的告警",
            )
        who = conn.execute(
            select(responders.c.id).where(responders.c.id == body.responder_id)
        ).first()
        # Another station's person is refused as one that does not exist.
        if who is None or not scope_for(conn, principal, now).sees_person(conn, body.responder_id):
            raise _invalid(
                ("body", "responder_id"), f"no responder {body.responder_id!r}", body.responder_id
            )
        tx = Tx(conn, now)
        # Sending someone is the station's work, not the sender's own answer to a page: the
        # timeline keeps the credential (the phone page counts a `responder:` event as the
        # person's reply), and the log its id only, as a login name may be an email address.
        actor = Actor(label=principal.label, name=principal.name, log_as=principal.ref)
        rt.service.assign(tx, alert, body.responder_id, actor, body.note or None)
        values = {
            "responder_id": body.responder_id,
            "assigned_at": now,
            "assigned_by": principal.label,
            "note": body.note or None,
        }
        # The alert row is locked above, so no other assignment of it runs meanwhile: an
        # update, else an insert, is safe on both databases.
        done = conn.execute(
            update(alert_assignments)
            .where(alert_assignments.c.alert_id == alert_id)
            .values(**values)
        )
        if done.rowcount == 0:
            conn.execute(insert(alert_assignments).values(alert_id=alert_id, **values))
        rows, _ = _board_alerts(conn, rt, None, [alert_id])
    alert_log.emit(tx.logs)  # committed
    if tx.out:  # committed: the page may go
        rt.publish(tx.out)
    return rows[0]


def _health(
    kind: str, online: bool | None, last_seen: int | None, battery: float | None, now: int
) -> str:
    if online is False:
        return "offline"
    if last_seen is None:
        return "unknown"
    try:
        interval = DEFAULT_INTERVALS[DeviceKind(kind)]
    except ValueError:
        interval = None
    if interval is not None and now - last_seen > _HEALTH.missed * interval.total_seconds() * 1000:
        return "offline"  # silent past `missed` reports, as the health rule counts it
    if battery is not None and battery < _HEALTH.battery_low_pct:
        return "low_battery"
    return "ok"


@router.get("/board/homes")
def board_homes(rt: RuntimeDep, principal: StaffDep) -> Homes:
    """Every active device's health (online, battery, last heard), grouped by building, with
    each building's open outage as ONE line (its devices point to it)."""
    now = rt.now_ms()
    with _reading(rt) as conn:
        station = _station(conn, principal, now)
        q = (
            select(
                devices.c.id,
                devices.c.kind,
                devices.c.building,
                devices.c.online,
                devices.c.battery_pct,
                devices.c.last_seen_at,
                elders.c.id.label("e_id"),
                elders.c.name.label("e_name"),
                elders.c.address.label("e_address"),
                elders.c.phone.label("e_phone"),
            )
            .join(elders, elders.c.id == devices.c.elder_id)
            .where(devices.c.status == "active")
            .order_by(devices.c.building, elders.c.address, elders.c.id, devices.c.kind)
        )
        if station is not None:
            q = q.outerjoin(elder_profiles, elder_profiles.c.elder_id == elders.c.id).where(
                _ours_or_nobodys(station)
            )
        devs = conn.execute(q).all()
        active = conn.execute(
            select(
                alerts.c.id, alerts.c.device_id, alerts.c.kind, alerts.c.priority, alerts.c.state
            )
            .where(alerts.c.state.in_(ACTIVE))
            .order_by(alerts.c.priority, alerts.c.created_at)
        ).all()
        open_incidents = conn.execute(
            select(incidents, alerts.c.state.label("alert_state"))
            .outerjoin(alerts, alerts.c.id == incidents.c.alert_id)
            .where(incidents.c.closed_at.is_(None))
            .order_by(incidents.c.opened_at)
        ).all()
    alerts_of: dict[str, list[HomeDeviceAlert]] = defaultdict(list)
    for a in active:
        alerts_of[a.device_id].append(
            HomeDeviceAlert(id=a.id, kind=a.kind, priority=a.priority, state=a.state)
        )
    seen_buildings = {d.building for d in devs}
    incident_of: dict[str, str] = {}
    by_building: dict[str | None, list[HomeIncident]] = defaultdict(list)
    for i in open_incidents:
        if i.building not in seen_buildings:
            continue  # another station's building
        ids = [str(x) for x in i.device_ids or []]
        for dev_id in ids:
            incident_of[dev_id] = i.id
        by_building[i.building].append(
            HomeIncident(
                id=i.id,
                alert_id=i.alert_id,
                alert_state=i.alert_state,
                devices=len(ids),
                device_ids=ids,
                detail=i.detail,
                opened_at=_ms_req(rt, i.opened_at),
            )
        )
    groups: dict[str | None, list[HomeDevice]] = {}
    for d in devs:
        groups.setdefault(d.building, []).append(
            HomeDevice(
                id=d.id,
                kind=d.kind,
                health=_health(d.kind, d.online, d.last_seen_at, d.battery_pct, now),
                online=d.online,
                battery_pct=d.battery_pct,
                last_seen_at=_ms(rt, d.last_seen_at),
                elder=ElderRef(id=d.e_id, name=d.e_name, address=d.e_address, phone=d.e_phone),
                incident_id=incident_of.get(d.id),
                alerts=alerts_of.get(d.id, []),
            )
        )
    buildings = []
    # Named buildings by name, the unplaced devices last.
    for name in sorted(groups, key=lambda b: (b is None, b or "")):
        members = groups[name]
        health = [m.health for m in members]
        buildings.append(
            Building(
                building=name,
                counts=HomeCounts(
                    total=len(members),
                    ok=health.count("ok"),
                    offline=health.count("offline"),
                    low_battery=health.count("low_battery"),
                    unknown=health.count("unknown"),
                ),
                incidents=by_building.get(name, []),
                devices=members,
            )
        )
    return Homes(now=_ms_req(rt, now), buildings=buildings)


# --- refused alarms (gateway/refused_alarms.py) -------------------------------------------------


def _refused_alarm(rt: Runtime, r: refused_alarms.Refused) -> RefusedAlarm:
    return RefusedAlarm(
        quarantine_id=r.quarantine_id,
        at=_ms_req(rt, r.at),
        type=r.type,
        reason=r.reason,
        detail=r.detail,
        size=r.size,
        device=RefusedDevice(id=r.device_id, kind=r.device_kind, status=r.device_status),
        elder=ElderRef(
            id=r.elder_id, name=r.elder_name, address=r.elder_address, phone=r.elder_phone
        ),
    )


def _refused_now(rt: Runtime, scope: CareScope) -> RefusedAlarms:
    with _reading(rt) as conn:
        found = refused_alarms.recent(conn, rt.settings.mqtt_base, rt.now_ms(), scope)
    return _refused_now_from(rt, found)


def _refused_now_from(rt: Runtime, found: list[refused_alarms.Refused]) -> RefusedAlarms:
    return RefusedAlarms(
        now=_ms_req(rt, rt.now_ms()),
        window_h=refused_alarms.WINDOW_MS // 3_600_000,
        alarms=[_refused_alarm(rt, r) for r in found],
    )


@router.get("/board/refused")
def board_refused(rt: RuntimeDep, principal: StaffDep) -> RefusedAlarms:
    """Alarm events of the station's devices that the gateway refused as invalid (quarantined)
    in the last day and nobody has dismissed: no alert was opened for them (the contract), but
    each is likely an elder's press, to be called back. Read-only: it changes no alert."""
    return _refused_now(rt, _scope_of(rt, principal))


@router.post("/board/refused/{quarantine_id}/dismiss")
def dismiss_refused(
    quarantine_id: Annotated[int, FastApiPath(ge=1, le=2**62)],
    rt: RuntimeDep,
    principal: StaffDep,
    body: Annotated[DismissIn | None, Body()] = None,
) -> Dismissal:
    """Take a refused alarm off the banner (the elder was called, or it is known): who and when
    are kept. 404 for none the caller sees, 409 once dismissed. No alert changes."""
    now = rt.now_ms()
    note = body.note if body is not None and body.note else None
    with rt.engine.begin() as conn:
        scope = scope_for(conn, principal, now)
        try:
            refused_alarms.dismiss(
                conn, rt.settings.mqtt_base, scope, quarantine_id, principal.label, now, note
            )
        except refused_alarms.NotRefusedAlarm:
            raise Bilingual(
                status.HTTP_404_NOT_FOUND,
                f"no refused alarm {quarantine_id}",
                f"没有该被拒收的报警：{quarantine_id}",
            ) from None
        except refused_alarms.AlreadyDismissed as done:
            at = _ms_req(rt, done.at)
            raise Bilingual(
                status.HTTP_409_CONFLICT,
                f"already dismissed by {done.by} at {at}",
                f"已由 {done.by} 于 {at} 处理",
            ) from None
    return Dismissal(
        quarantine_id=quarantine_id,
        dismissed_at=_ms_req(rt, now),
        dismissed_by=principal.label,
        dismissed_by_name=principal.name,
        note=note,
    )


__all__ = ["router"]
