"""Alert commands applied inside one database transaction: open, join, page, escalate, answer.

The MQTT worker (device events, pager replies), the escalation scheduler and the HTTP routes all
come through here, so an acknowledgement means the same thing whichever door it came in by.
Every function takes a `Tx` (the connection inside a transaction, `now`, and the list of outbox
messages to publish once the transaction has committed).

Round trips are what a page waits for, so the writes are gathered: the timeline events of an
operation are kept in the `Tx` and written in one statement before the operation returns (each
public method flushes them, so callers need not; and before anything in it reads the timeline);
the pages, outbox rows and channel-chain deliveries of one step are written with one statement
per table; a new alert is inserted whole, its first step and deadline included, and is not read
back.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    Row,
    Table,
    TextClause,
    and_,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from alerts.escalation import Plan, Step
from alerts.model import (
    Action,
    AlertKind,
    IllegalTransition,
    Outcome,
    Priority,
    State,
    Transition,
    stops_paging,
    transition,
)
from alerts.policy import DECLINED, ChannelChain, Reminder, after_all_declined
from alerts.rules import ActiveAlert
from alerts.text import (
    ABOUT_A_DEVICE,
    VALVE_AFTER,
    BuildingOutage,
    Valve,
    assigned_text,
    cancel_pressed_text,
    message_title,
    notice_text,
    outage_elder,
    page_text,
    reminder_text,
    valve_closed_text,
)
from devices.kinds import DeviceKind
from devices.payloads import Notice, Page, PageElder
from devices.topics import Channel, pager_topic
from gateway import alert_log
from gateway.alert_log import Line
from gateway.alert_log import line as alert_line
from gateway.clock import from_ms, new_id, rfc3339
from gateway.db import refused
from gateway.paging import (
    EVERY_CHANNEL_FAILED,
    RESPONDER,
    Paging,
    responder_of,
    was_paged_clause,
)
from gateway.tables import (
    alert_events,
    alerts,
    deliveries,
    devices,
    elders,
    escalation_plans,
    outbox,
    pages,
    responders,
)

log = logging.getLogger(__name__)

ACTIVE = (State.OPEN.value, State.ACKNOWLEDGED.value, State.ON_SITE.value)
ANSWERED = (State.ACKNOWLEDGED.value, State.ON_SITE.value)
# The reason on the timeline when everyone asked at the last step declined (`_if_all_declined`).
ALL_DECLINED = "all_declined"
# Answers on the timeline, for who has said what (`_if_all_declined`).
_ANSWERS = (DECLINED, State.ACKNOWLEDGED.value, "ack_again", State.ON_SITE.value)
# What each repeat of a step nobody can be reached at writes (`_said_unpaged`).
_NOBODY_AGAIN = ("escalated", "step_unreachable")
# What a page must say beyond the alert's row, read from its timeline at every page (so that
# repeats, escalations and reminders say it too): the gas valve (`_valve`) and a building's
# outage (`_outage`).
_VALVE_EVENTS = (*VALVE_AFTER, "opened")
_OUTAGE_EVENTS = ("opened", "outage", "outage_member")
# An alert whose escalation or reminder failed is due again after this (`_alone`): not at the
# next poll, where it would fail again and fill the log five times a second, yet soon enough
# that a fault that clears by itself (a lock, a row put right) costs half a minute.
DUE_RETRY_S = 30


@dataclass(slots=True)
class OutMsg:
    """An outbox row committed in this transaction, to publish once the commit is done."""

    id: int
    topic: str
    payload: str
    qos: int
    alert_id: str | None
    kind: str  # page | notice
    received_mono: float | None = None  # when the message that caused it arrived


@dataclass(slots=True)
class Tx:
    conn: Connection
    now_ms: int
    out: list[OutMsg] = field(default_factory=list)
    opened: Counter[str] = field(default_factory=Counter)
    escalations: int = 0
    received_mono: float | None = None  # set by the worker per message, for page latency
    # Timeline rows recorded and not yet written: `flush` writes them, in order.
    events: list[dict[str, Any]] = field(default_factory=list)
    # Elders read with the batch's devices (`Paging.elder` rows), so opening an alert need not
    # read its elder again; within the transaction they cannot change.
    elders: dict[str, Any] = field(default_factory=dict)
    # People read with them (`Paging.known_person`), for `Paging.reachable`'s `known`.
    people: dict[str, Any] = field(default_factory=dict)
    # The alert lifecycle's log lines (gateway/alert_log.py): whoever commits this transaction
    # writes them after the commit (`alert_log.emit`), never before, as it may roll back.
    logs: list[Line] = field(default_factory=list)

    def note(self, level: int, what: str, **fields: object) -> None:
        """Hold an `alert <what> k=v ...` log line until the commit (ids only: no names)."""
        self.logs.append((level, alert_line(what, **fields)))

    def flush(self) -> None:
        """Write the timeline events recorded so far, in the order recorded, in one statement.

        An executemany: each row is its own INSERT (psycopg pipelines them; sqlite3 loops), so
        the ids, by which a timeline is read, keep the order.
        """
        if self.events:
            rows, self.events = self.events, []
            self.conn.execute(insert(alert_events), rows)


@dataclass(slots=True)
class _Writes:
    """The pages, outbox rows and delivery rows of one paging (a step, a reminder, notices), to
    write with one statement per table once every person has been worked out."""

    pages: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # page | notice, one per outbox row


_PG = postgresql.dialect()
_SQL_CACHE: dict[tuple[Any, ...], TextClause] = {}  # parsed once: text() costs per call


def _part(table: Table, cols: tuple[str, ...], prefix: str) -> str:
    """INSERT ... SELECT FROM the rows as ONE bound JSON document (json_to_recordset), in the
    order given (WITH ORDINALITY, ORDER BY it): the statement's text depends on the columns only
    (compiled once, not per press), and PostgreSQL draws serial ids in the order of the rows
    (so a timeline read by id keeps its order, and RETURNING ids sorted match the rows). One
    JSON text instead of one array per column: psycopg escaped every element of every array
    in Python, about a fifth of a press's own CPU time."""
    defs = ", ".join(
        f"{c} {'TEXT' if _is_json(table, c) else table.c[c].type.compile(dialect=_PG)}"
        for c in cols
    )
    names = ", ".join(cols)
    values_ = ", ".join(f"CAST(v.{c} AS JSON)" if _is_json(table, c) else f"v.{c}" for c in cols)
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {values_}"
        f" FROM ROWS FROM (json_to_recordset(CAST(:{prefix} AS JSON)) AS ({defs}))"
        f" WITH ORDINALITY AS v({names}, ord_) ORDER BY v.ord_"
    )


def _is_json(table: Table, column: str) -> bool:
    return isinstance(table.c[column].type, JSON)


def _rows_json(table: Table, rows: list[dict[str, Any]]) -> str:
    """The rows as `_part` reads them: a JSON column's value as its JSON text (as SQLAlchemy
    writes them: None is JSON null), every other value as itself."""
    json_cols = [c for c in rows[0] if _is_json(table, c)]
    if json_cols:
        rows = [{**r, **{c: json.dumps(r[c], ensure_ascii=False) for c in json_cols}} for r in rows]
    return json.dumps(rows, ensure_ascii=False)


def _write_at_once(tx: Tx, w: _Writes, alert_row: dict[str, Any] | None) -> None:
    """PostgreSQL: the alert row, deliveries, pages and held timeline events as CTEs of the
    outbox INSERT (or of a bare SELECT), in ONE statement. Foreign keys are checked at the end
    of the statement, so the pages may refer to the alert inserted beside them."""
    events, tx.events = tx.events, []
    parts: list[tuple[Table, list[dict[str, Any]], str]] = [
        (t, rows, prefix)
        for t, rows, prefix in (
            (alerts, [alert_row] if alert_row is not None else [], "a"),
            (deliveries, w.deliveries, "d"),
            (pages, w.pages, "p"),
            (alert_events, events, "e"),
            (outbox, w.outbox, "o"),
        )
        if rows
    ]
    if not parts:
        return
    key = tuple((t.name, tuple(rows[0])) for t, rows, _ in parts)
    sql = _SQL_CACHE.get(key)
    if sql is None:
        main = parts[-1] if parts[-1][0] is outbox else None
        ctes = [p for p in parts if p is not main]
        with_ = ", ".join(
            f"w_{t.name} AS ({_part(t, tuple(rows[0]), prefix)})" for t, rows, prefix in ctes
        )
        body = (
            _part(outbox, tuple(main[1][0]), "o") + " RETURNING id"
            if main is not None
            else "SELECT 1"
        )
        sql = text(f"WITH {with_} {body}" if with_ else body)
        _SQL_CACHE[key] = sql
    params = {prefix: _rows_json(t, rows) for t, rows, prefix in parts}
    result = tx.conn.execute(sql, params)
    if not w.outbox:
        return
    ids = sorted(result.scalars())
    for out_id, r, kind in zip(ids, w.outbox, w.kinds, strict=True):
        tx.out.append(
            OutMsg(out_id, r["topic"], r["payload"], 1, r["alert_id"], kind, tx.received_mono)
        )


# Built once: building a select costs more than running it on a warm connection.
# The elders come too (as `Paging.elder` reads them): opening an alert needs its elder's row and
# plan, and this read saves a round trip on the way of every press.
_DEVICES_AND_ACTIVE = (
    select(
        *[c.label(f"d_{c.name}") for c in devices.c],
        *[c.label(f"e_{c.name}") for c in elders.c],
        escalation_plans.c.steps.label("e_explicit_steps"),
        alerts.c.id,
        alerts.c.kind,
        alerts.c.state,
        alerts.c.created_at,
    )
    .join(elders, elders.c.id == devices.c.elder_id)
    .outerjoin(escalation_plans, escalation_plans.c.elder_id == devices.c.elder_id)
    .outerjoin(alerts, and_(alerts.c.device_id == devices.c.id, alerts.c.state.in_(ACTIVE)))
    .where(devices.c.id.in_(bindparam("ids", expanding=True)))
)
_ELDER_FIELDS = [c.name for c in elders.c] + ["explicit_steps"]
# PostgreSQL, a batch of a few alarms (a press comes alone): also the people of each elder's
# explicit plan with their channels, as JSON, so the page needs no read of its own
# (`Paging.reachable`'s `known`). A plan that is not a list of steps with lists of ids adds
# nobody (the page then reads them, and `Paging.plan` says what is wrong with the plan).
_PG_PEOPLE = """(SELECT json_agg(json_build_object(
    'id', r.id, 'name', r.name, 'role', r.role, 'pager_id', r.pager_id, 'phone', r.phone,
    'language', r.language, 'created_at', r.created_at,
    'links', (SELECT json_agg(json_build_object(
        'channel', c.channel, 'address', c.address, 'after_s', c.after_s) ORDER BY c.position)
      FROM responder_channels AS c WHERE c.responder_id = r.id)))
  FROM responders AS r
  WHERE r.id IN (SELECT json_array_elements_text(st -> 'responder_ids')
    FROM json_array_elements(CASE WHEN json_typeof(escalation_plans.steps) = 'array'
      THEN escalation_plans.steps ELSE '[]'::json END) AS st
    WHERE json_typeof(st -> 'responder_ids') = 'array'))"""
_PG_DEVICES_AND_PEOPLE = _DEVICES_AND_ACTIVE.add_columns(
    literal_column(_PG_PEOPLE).label("e_people")
)
PEOPLE_BATCH_MAX = 8  # devices: beyond, the batch is a burst, and one more read is amortized


class NotFound(LookupError):
    pass


class NotPaged(LookupError):
    """A reply from a person who was not paged for that alert."""


# A reply's action (contract v1 `reply`) -> the alert action; `decline` is `AlertService.decline`
# (a change of state only when the acknowledger withdraws: back to open).
REPLY_ACTIONS = {"ack": Action.ACK, "arrived": Action.ARRIVE, "resolved": Action.RESOLVE}
REPLY_ACTION_NAMES = ("ack", "decline", "arrived", "resolved")


def _note_detail(note: str | None, truncated: bool = False) -> dict[str, Any] | None:
    """A note for a timeline event's detail. `truncated`: the gateway cut it to fit (a pager's
    overlong note is cut, not refused: devices/payloads.py `Reply`), which whoever reads the
    timeline must be able to tell from a note the person ended with "…" themselves."""
    if not note:
        return None
    return {"note": note, "note_truncated": True} if truncated else {"note": note}


@dataclass(frozen=True, slots=True)
class ReplyResult:
    """What a reply did: `alert` is the alert's row as it was before; `transition` the change
    (None for a late reply, and for a decline that withdrew no acknowledgement); `late` why the
    alert's state refused it."""

    alert: Row[Any]
    transition: Transition | None
    late: str | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the page of a person the station sends says (`AlertService.assign`): by whom, their
    note, and whether that person was sent for this alert before (then it is "again")."""

    by: str | None
    note: str | None
    again: bool


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a responder (with a pager) or a person at the API.

    A caller at the API who acts for a responder is that responder (`responder:<id>`, their
    name and pager), whichever door they came in by: an ack on the board and a decline from the
    pager must be one person's, or the decline would not withdraw the ack and nobody would come.
    `via` keeps the credential it came through (`api:<token id>`, `user:<user id>`) for the
    timeline's audit; `log_as` is how log lines name the actor when `label` may hold a login
    name (the log holds ids only)."""

    label: str
    responder_id: str | None = None
    name: str | None = None
    pager_id: str | None = None
    via: str | None = None
    log_as: str | None = None

    @property
    def logged(self) -> str:
        return self.log_as or self.label


class AlertService:
    def __init__(
        self, base: str, tz: ZoneInfo, default_ack_timeout_s: int, paging: Paging | None = None
    ) -> None:
        self.base = base
        self.tz = tz
        self.default_ack_timeout_s = default_ack_timeout_s
        # Who is paged, reminders and channel chains (gateway/paging.py, after alerts.policy).
        self.paging = paging or Paging(tz, default_ack_timeout_s=default_ack_timeout_s)

    # --- reading ---------------------------------------------------------------------------

    def devices_and_active(
        self,
        conn: Connection,
        device_ids: set[str],
        elders_out: dict[str, Any] | None = None,
        people_out: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, dict[AlertKind, ActiveAlert]]]:
        """The devices (plain, mutable copies) and their active alerts by kind, in ONE query:
        the alarm lane's first read, two round trips fewer before a press is paged. Their
        elders, as `Paging.elder` gives them, go to `elders_out` (for `Tx.elders`); on
        PostgreSQL, for a few devices, the people of the elders' explicit plans go to
        `people_out` (for `Tx.people`)."""
        devs: dict[str, Any] = {}
        active: dict[str, dict[AlertKind, ActiveAlert]] = {}
        people = (
            people_out is not None
            and conn.dialect.name == "postgresql"
            and len(device_ids) <= PEOPLE_BATCH_MAX
        )
        q = _PG_DEVICES_AND_PEOPLE if people else _DEVICES_AND_ACTIVE
        for r in conn.execute(q, {"ids": sorted(device_ids)}):
            m = r._mapping
            if people and m["e_people"]:
                assert people_out is not None
                for person in m["e_people"]:
                    people_out[person["id"]] = self.paging.known_person(person)
            dev_id = m["d_id"]
            if dev_id not in devs:
                devs[dev_id] = SimpleNamespace(**{c.name: m[f"d_{c.name}"] for c in devices.c})
                active[dev_id] = {}
                if elders_out is not None and m["e_id"] not in elders_out:
                    elders_out[m["e_id"]] = SimpleNamespace(
                        **{f: m[f"e_{f}"] for f in _ELDER_FIELDS}
                    )
            if r.id is not None:
                active[dev_id][AlertKind(r.kind)] = ActiveAlert(
                    r.id, AlertKind(r.kind), State(r.state), from_ms(r.created_at)
                )
        return devs, active

    def active_for_devices(
        self, conn: Connection, device_ids: list[str]
    ) -> dict[str, dict[AlertKind, ActiveAlert]]:
        """The active alerts of these devices, by device and kind (one query)."""
        found: dict[str, dict[AlertKind, ActiveAlert]] = {d: {} for d in device_ids}
        if not device_ids:
            return found
        rows = conn.execute(
            select(
                alerts.c.id, alerts.c.device_id, alerts.c.kind, alerts.c.state, alerts.c.created_at
            ).where(alerts.c.device_id.in_(device_ids), alerts.c.state.in_(ACTIVE))
        )
        for r in rows:
            found[r.device_id][AlertKind(r.kind)] = ActiveAlert(
                r.id, AlertKind(r.kind), State(r.state), from_ms(r.created_at)
            )
        return found

    def load(self, conn: Connection, alert_id: str, lock: bool = True) -> Row[Any]:
        q = select(alerts).where(alerts.c.id == alert_id)
        if lock:
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            raise NotFound(alert_id)
        return row

    # --- timeline --------------------------------------------------------------------------

    def record(
        self,
        tx: Tx,
        alert_id: str,
        type_: str,
        actor: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Add an event to the alert's timeline (written now, with any others still held)."""
        self._event(tx, alert_id, type_, actor, detail)
        tx.flush()

    @staticmethod
    def _event(
        tx: Tx,
        alert_id: str,
        type_: str,
        actor: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Hold an event for the timeline until the operation's `tx.flush()`."""
        tx.events.append(
            {"alert_id": alert_id, "at": tx.now_ms, "type": type_, "actor": actor, "detail": detail}
        )

    # --- opening and joining ---------------------------------------------------------------

    @staticmethod
    def _opening(
        tx: Tx,
        device: Any,
        kind: AlertKind,
        priority: Priority,
        msg_id: str | None,
        plan: Plan | None,
        plan_source: str,
        level: int = logging.INFO,
        **line: Any,
    ) -> dict[str, Any]:
        """The row of an alert being opened, as it will be inserted (by `_page_step` once it
        knows the step and deadline, or by the caller when nobody can be paged: never written
        twice, never read back), counted and logged (`opened`, `line` added to the log line)."""
        alert_id = new_id("al")
        tx.opened[kind.value] += 1
        tx.note(
            level,
            "opened",
            id=alert_id,
            kind=kind.value,
            priority=priority.value,
            elder=device.elder_id,
            device=device.id,
            **line,
        )
        return {
            "id": alert_id,
            "elder_id": device.elder_id,
            "device_id": device.id,
            "kind": kind.value,
            "priority": priority.value,
            "state": State.OPEN.value,
            "created_at": tx.now_ms,
            "updated_at": tx.now_ms,
            "plan": plan.to_json() if plan else [],
            "step": 0,
            "next_escalation_at": None,
            "trigger_msg_id": msg_id,
            "plan_source": plan_source,
        }

    def open(
        self,
        tx: Tx,
        device: Row[Any],
        kind: AlertKind,
        priority: Priority,
        msg_id: str | None,
        detail: dict[str, Any],
    ) -> str:
        """Open an alert for `device` and page the first step of the elder's plan.

        The plan is built now, from the elder's pairings and who is on duty (an explicit plan
        set for the elder wins), and stored with the alert: it does not change under it.
        """
        elder = tx.elders.get(device.elder_id) or self.paging.elder(tx.conn, device.elder_id)
        built = self.paging.plan(tx.conn, elder, kind, priority, tx.now_ms)
        plan = built.plan
        row = self._opening(tx, device, kind, priority, msg_id, plan, built.source)
        alert_id = row["id"]
        self._event(tx, alert_id, "opened", f"device:{device.id}", detail)
        self._event(tx, alert_id, "planned", None, self.paging.plan_detail(built))
        if plan is None:
            self._event(tx, alert_id, "unpaged", None, {"why": "the plan found nobody to page"})
            # Never to nobody: every staff member, if the policy ever finds none of them.
            last = self.paging.all_staff_plan(tx.conn, device.elder_id, tx.now_ms)
            tx.note(
                logging.ERROR,
                "unpaged",
                id=alert_id,
                elder=device.elder_id,
                why="no_plan",
                fallback="all_staff" if last is not None else "none",
            )
            if last is None:
                tx.conn.execute(insert(alerts).values(**row))
                tx.flush()
                return alert_id
            row["plan"] = last.plan.to_json()
            notes = ["staff_other_stations"] if last.other_stations else []
            self._event(tx, alert_id, "planned", None, {"source": "all_staff", "notes": notes})
        self._page_step(tx, SimpleNamespace(**row), 1, reason="opened", elder=elder, new=row)
        tx.flush()
        return alert_id

    def join(self, tx: Tx, alert_id: str, msg_id: str | None, detail: dict[str, Any]) -> None:
        self.record(tx, alert_id, "repeated", None, {"msg_id": msg_id, **detail})

    # --- paging ----------------------------------------------------------------------------

    @staticmethod
    def _device_kind(conn: Connection, alert: Row[Any]) -> DeviceKind | None:
        """The kind of the device an alert is about (None: unknown, or no device)."""
        if alert.device_id is None:
            return None
        found = conn.execute(select(devices.c.kind).where(devices.c.id == alert.device_id))
        value = found.scalar()
        return DeviceKind(value) if value in {k.value for k in DeviceKind} else None

    @staticmethod
    def _told(
        tx: Tx, alert_id: str, types: Collection[str], fresh: bool
    ) -> list[tuple[str, dict[str, Any]]]:
        """The alert's timeline events of these `types` (type, detail), oldest first: those
        written, then those still held in `tx`. `fresh`: the alert is being opened, so nothing
        of it is written yet (no read on the way of a first page)."""
        told: list[tuple[str, dict[str, Any]]] = []
        if not fresh:
            rows = tx.conn.execute(
                select(alert_events.c.type, alert_events.c.detail)
                .where(alert_events.c.alert_id == alert_id, alert_events.c.type.in_(types))
                .order_by(alert_events.c.id)
            )
            told += [(r.type, r.detail if isinstance(r.detail, dict) else {}) for r in rows]
        for e in tx.events:
            if e["alert_id"] == alert_id and e["type"] in types:
                told.append((e["type"], e["detail"] if isinstance(e["detail"], dict) else {}))
        return told

    def _valve(self, tx: Tx, alert_id: str, fresh: bool) -> Valve | None:
        """What a gas alert was last told of its valve (None: nothing, no valve or no answer
        yet). The gas rule's reason is the type of what it recorded on the alert, or, when the
        valve's news came with no gas alert active, the rule of the one it opened."""
        valve = None
        for type_, detail in self._told(tx, alert_id, _VALVE_EVENTS, fresh):
            why = type_ if type_ in VALVE_AFTER else detail.get("rule")
            if why in VALVE_AFTER:
                valve = VALVE_AFTER[why]
        return valve

    def _outage(self, tx: Tx, alert_id: str, fresh: bool) -> BuildingOutage | None:
        """The building's outage a device_offline alert stands for (gateway/ruling.py), if any:
        the building and devices of the event that made it the outage's (`opened`, or `outage`
        when the outage joined a member's own alert), with the devices that joined since; the
        homes are the devices' elders."""
        building: str | None = None
        members: set[str] = set()
        for type_, detail in self._told(tx, alert_id, _OUTAGE_EVENTS, fresh):
            if type_ == "outage_member":
                if building is not None and detail.get("change") == "joined":
                    members.add(str(detail.get("device_id")))
            elif detail.get("rule") == "outage" and detail.get("building"):
                building = str(detail["building"])
                members = {str(d) for d in detail.get("devices") or []}
        if building is None:
            return None
        homes = tx.conn.execute(
            select(func.count(devices.c.elder_id.distinct())).where(devices.c.id.in_(members))
        ).scalar()
        return BuildingOutage(building, len(members), homes or 0)

    def page_facts(
        self, conn: Connection, alert_id: str, kind: str
    ) -> tuple[Valve | None, BuildingOutage | None]:
        """What a page of the alert would say now beyond its row: the gas valve and the
        building's outage, read as `_page_step` reads them (the phone page's card says the same
        as the pager's page). Reads only: the Tx holds nothing to write."""
        tx = Tx(conn, 0)
        valve = self._valve(tx, alert_id, False) if kind == AlertKind.GAS else None
        outage = self._outage(tx, alert_id, False) if kind == AlertKind.DEVICE_OFFLINE else None
        return valve, outage

    def _elder(self, conn: Connection, elder_id: str) -> Row[Any]:
        """What a page says of the elder: their name, address and phone, nothing else of the
        row: a column our code cannot read (tags that are no JSON) must not stop a page."""
        e = elders.c
        row = conn.execute(select(e.id, e.name, e.address, e.phone).where(e.id == elder_id)).first()
        assert row is not None, elder_id  # a foreign key guarantees it
        return row

    def _page_step(
        self,
        tx: Tx,
        alert: Any,
        step_no: int,
        reason: str,
        *,
        elder: Row[Any] | None = None,
        new: dict[str, Any] | None = None,
        passed: Collection[str] = (),
    ) -> None:
        """Page every reachable responder of step `step_no` but those `passed`; set the next
        deadline.

        A step with nobody reachable (no pager, no channel) is passed over at once, so an empty
        step never holds up the ladder; if no step can be reached the alert is retried at the
        timeout. A step whose people's channels all fail afterwards is passed over once they
        have (`_step_failed`), not at its time-out.

        `alert` is the alert's row; for an alert being opened, `new` is the row to insert
        (`alert` its copy), inserted here with the step and deadline, before the pages that
        refer to it.
        """
        plan = Plan.from_json(alert.plan)
        if elder is None:
            elder = self._elder(tx.conn, alert.elder_id)
        # Everyone of the plan at once: a step passed over needs no second query.
        reach = self.paging.reachable(
            tx.conn, [r for s in plan.steps for r in s.responder_ids], known=tx.people
        )
        w = _Writes()
        tried: set[int] = set()
        while True:
            step = plan.step(step_no)
            if passed:
                step = Step(
                    tuple(r for r in step.responder_ids if r not in passed), step.ack_timeout_s
                )
            sent = self._page_responders(
                tx, w, alert, elder, reach, step, step_no, reason, fresh=new is not None
            )
            if sent or step_no == plan.last or step_no in tried:
                break
            tried.add(step_no)
            self._event(tx, alert.id, "step_unreachable", None, {"step": step_no})
            step_no = plan.after(step_no)
            reason = "previous_step_unreachable"
        if not sent:
            self._event(tx, alert.id, "step_unreachable", None, {"step": step_no})
            self._nobody_reached(tx, w, alert, elder, step_no, fresh=new is not None)
        deadline = tx.now_ms + step.ack_timeout_s * 1000
        if new is not None:
            self._write(tx, w, new | {"step": step_no, "next_escalation_at": deadline})
            return
        tx.conn.execute(
            update(alerts)
            .where(alerts.c.id == alert.id)
            .values(step=step_no, next_escalation_at=deadline, updated_at=tx.now_ms)
        )
        self._write(tx, w)

    def _nobody_reached(
        self,
        tx: Tx,
        w: _Writes,
        alert: Any,
        elder: Row[Any],
        step_no: int,
        *,
        fresh: bool = False,
        failed: bool = False,
    ) -> None:
        """Never to nobody: when no one of the plan can be reached (no pager, no channel, a
        person since removed; `failed`: every channel of the last step failed, see
        `_step_failed`), every staff member is paged, as when no plan could be made at all (the
        elder's station's, another's only when none of them can be reached); the plan is tried
        again at the deadline. With no staff either, the timeline says that nobody was paged
        (`unpaged`, `fallback` "none"): once, not at each repeat of the step while nothing else
        has happened (`_said_unpaged`). The pages go to `w`, for the caller to write."""
        why: dict[str, Any] = {
            "why": EVERY_CHANNEL_FAILED if failed else "nobody of the plan reachable"
        }
        staff = self.paging.all_staff_plan(tx.conn, alert.elder_id, tx.now_ms)
        at = len(tx.logs)  # the error goes before the fallback's own "paged" line
        staff_paged = 0
        if staff is not None:
            if staff.other_stations:
                why["other_stations"] = True  # so the board can tell why strangers came
            self._event(tx, alert.id, "unpaged", None, why)
            fallback = staff.plan.steps[0]
            staff_paged = self._page_responders(
                tx,
                w,
                alert,
                elder,
                self.paging.reachable(tx.conn, fallback.responder_ids),
                fallback,
                step_no,
                "plan_unreachable",
                fresh=fresh,
            )
        elif not self._said_unpaged(tx, alert.id, fresh):
            self._event(tx, alert.id, "unpaged", None, why | {"fallback": "none"})
        unpaged = alert_line(
            "unpaged",
            id=alert.id,
            step=step_no,
            why="every_channel_failed" if failed else "nobody_reachable",
            fallback="all_staff" if staff_paged else "none",
        )
        tx.logs.insert(at, (logging.ERROR, unpaged))

    @staticmethod
    def _said_unpaged(tx: Tx, alert_id: str, fresh: bool) -> bool:
        """Whether the alert's latest news, but for the repeats of a step nobody can be reached
        at (`escalated`, `step_unreachable`), is already that nobody was paged."""
        for e in reversed(tx.events):
            if e["alert_id"] == alert_id and e["type"] not in _NOBODY_AGAIN:
                return bool(e["type"] == "unpaged")
        if fresh:
            return False  # nothing written of it yet
        ev = alert_events.c
        latest = tx.conn.execute(
            select(ev.type)
            .where(ev.alert_id == alert_id, ev.type.not_in(_NOBODY_AGAIN))
            .order_by(ev.id.desc())
            .limit(1)
        ).scalar()
        return latest == "unpaged"

    def _step_failed(self, tx: Tx, alert: Row[Any]) -> None:
        """Every channel of everyone asked at the alert's step failed for good
        (`Paging.step_failed`): the step is passed over at once, as one with nobody reachable
        is: the next step is paged; at the last step, the staff, as when nobody of the plan is
        reachable, and the step's repeat comes a time-out from now."""
        detail = {"step": alert.step, "why": EVERY_CHANNEL_FAILED}
        self._event(tx, alert.id, "step_unreachable", None, detail)
        plan = Plan.from_json(alert.plan)
        if alert.step < plan.last:
            self._advance(tx, alert, "previous_step_unreachable")
            return
        w = _Writes()
        elder = self._elder(tx.conn, alert.elder_id)
        self._nobody_reached(tx, w, alert, elder, alert.step, failed=True)
        deadline = tx.now_ms + plan.step(alert.step).ack_timeout_s * 1000
        tx.conn.execute(
            update(alerts)
            .where(alerts.c.id == alert.id)
            .values(next_escalation_at=deadline, updated_at=tx.now_ms)
        )
        self._write(tx, w)

    def _page_responders(
        self,
        tx: Tx,
        w: _Writes,
        alert: Any,
        elder: Row[Any],
        reach: dict[str, tuple[Row[Any], ChannelChain | None]],
        step: Step,
        step_no: int,
        reason: str,
        reminder: Reminder | None = None,
        *,
        fresh: bool = False,
        reply_by: int | None = None,
        nobody_else: bool = False,
        assigned: Assignment | None = None,
        text_for: Callable[[Any], str] | None = None,
    ) -> int:
        """Page each reachable person of `step`: by pager (the outbox) and along their channel
        chain (gateway/paging.py). A person's chain begins with their first page of the alert
        (its repeats go by pager) or with each reminder; one without a pager gets a chain
        with every page, as that is their only way to get it.

        `reach` holds the people (from `Paging.reachable`) and `fresh` says the alert is being
        opened, so nobody has a chain for it yet. The rows go to `w`, for the caller to write.
        `reply_by` (ms): the deadline already running, for pages that do not restart it (the
        step's time-out from now when None). `nobody_else` (with ALL_DECLINED): everyone asked
        before has declined, so the page says that nobody else can come. `assigned`: the page of
        a person the station sends (`assign`), which says so instead of a repeat. `text_for`:
        the page's text for a person (their row), for a page that says something else than a
        call (`_tell_cancel_pressed`).
        """
        if reminder or fresh:
            begun: set[str] = set()
        else:
            begun = self.paging.with_chain(
                tx.conn, alert.id, [r for r in step.responder_ids if r in reach]
            )
        # Those paged because everyone at the last step declined are asked for the first time
        # this way, and so is a person the station sends: neither page is a repeat of the step.
        others_declined = reason == ALL_DECLINED and nobody_else
        repeat = alert.step >= step_no and alert.step > 0 and reason != ALL_DECLINED
        if assigned is not None:
            repeat = assigned.again
        if reply_by is None:
            reply_by = tx.now_ms + step.ack_timeout_s * 1000
        kind, priority = AlertKind(alert.kind), Priority(alert.priority)
        device = self._device_kind(tx.conn, alert) if kind in ABOUT_A_DEVICE else None
        valve = self._valve(tx, alert.id, fresh) if kind == AlertKind.GAS else None
        outage = self._outage(tx, alert.id, fresh) if kind == AlertKind.DEVICE_OFFLINE else None
        sent = 0
        paged: list[dict[str, Any]] = []
        unreachable: list[str] = []
        for rid in step.responder_ids:
            person, chain = reach.get(rid, (None, None))
            if person is None or chain is None:
                unreachable.append(rid)
                continue
            page_id = new_id("pg")
            if text_for is not None:
                text = text_for(person)
            elif reminder is None and assigned is not None:
                text = assigned_text(
                    person.language,
                    kind,
                    priority,
                    elder.name,
                    elder.address,
                    elder.phone,
                    State(alert.state),
                    assigned.by,
                    assigned.note,
                    again=assigned.again,
                    device=device,
                    valve=valve,
                    outage=outage,
                )
            elif reminder is None:
                text = page_text(
                    person.language,
                    kind,
                    priority,
                    elder.name,
                    elder.address,
                    elder.phone,
                    step_no,
                    repeat=repeat,
                    device=device,
                    others_declined=others_declined,
                    valve=valve,
                    outage=outage,
                )
            else:
                text = reminder_text(
                    person.language,
                    kind,
                    priority,
                    elder.name,
                    elder.address,
                    elder.phone,
                    reminder.stage,
                    device=device,
                    valve=valve,
                    outage=outage,
                )
            if reminder is not None or not person.pager_id or rid not in begun:
                w.deliveries += self.paging.chain_rows(
                    tx.now_ms,
                    alert.id,
                    State(alert.state),
                    rid,
                    page_id,
                    chain,
                    message_title(person.language),
                    text,
                    # A reminder's chain, or one of a page beside the plan to those coming
                    # (`text_for`): it goes on while the alert is taken, to a person who
                    # answered before it (a step's chain stops at their answer).
                    reminder=reminder is not None or text_for is not None,
                )
            paged.append(
                {
                    "responder_id": person.id,
                    "name": person.name,
                    "page_id": page_id,
                    "channel": chain.links[0].channel,
                }
            )
            sent += 1
            if not person.pager_id:
                continue  # their chain's channels carry the page
            about = PageElder(name=elder.name, address=elder.address, phone=elder.phone)
            if outage is not None:  # the building, not the one elder the alert is filed under
                name, address = outage_elder(person.language, outage, elder.address)
                about = PageElder(name=name, address=address, phone=None)
            payload = Page(
                page_id=page_id,
                alert_id=alert.id,
                ts=from_ms(tx.now_ms, self.tz),
                priority=alert.priority,
                kind=alert.kind,
                elder=about,
                text=text,
                step=step_no,
                reply_by=from_ms(reply_by, self.tz),
            ).model_dump_json()
            w.pages.append(
                {
                    "id": page_id,
                    "alert_id": alert.id,
                    "responder_id": person.id,
                    "pager_id": person.pager_id,
                    "type": "page",
                    "step": step_no,
                    "created_at": tx.now_ms,
                    "reply_by": reply_by,
                }
            )
            self._enqueue(
                tx,
                w,
                pager_topic(self.base, person.pager_id, Channel.PAGES),
                payload,
                alert.id,
                page_id,
                "page",
            )
        if reminder is not None:
            # Always recorded, reached or not: the next reminder counts from this one.
            detail: dict[str, Any] = {
                "number": reminder.number,
                "stage": reminder.stage.value,
                "to": paged,
                "reply_by": rfc3339(reply_by, self.tz),
            }
            if reminder.staff_fallback:
                detail["staff_fallback"] = True
            if reminder.staff_other_stations:
                detail["staff_other_stations"] = True
            if unreachable:
                detail["unreachable"] = unreachable
            self._event(tx, alert.id, "reminded", None, detail)
            tx.note(
                logging.INFO,
                "reminded",
                id=alert.id,
                number=reminder.number,
                to=[p["responder_id"] for p in paged],
                unreachable=unreachable or None,
            )
        elif sent:
            tx.note(
                logging.INFO,
                "paged",
                id=alert.id,
                step=step_no,
                to=[p["responder_id"] for p in paged],
                reason=reason,
                repeat="yes" if repeat else None,
                unreachable=unreachable or None,
            )
            self._event(
                tx,
                alert.id,
                "paged",
                None,
                {
                    "step": step_no,
                    "reason": reason,
                    "repeat": repeat,
                    "to": paged,
                    "reply_by": rfc3339(reply_by, self.tz),
                },
            )
        return sent

    @staticmethod
    def _enqueue(
        tx: Tx,
        w: _Writes,
        topic: str,
        payload: str,
        alert_id: str | None,
        page_id: str | None,
        kind: str,
    ) -> None:
        w.outbox.append(
            {
                "topic": topic,
                "payload": payload,
                "qos": 1,
                "alert_id": alert_id,
                "page_id": page_id,
                "created_at": tx.now_ms,
            }
        )
        w.kinds.append(kind)

    @staticmethod
    def _write(tx: Tx, w: _Writes, alert_row: dict[str, Any] | None = None) -> None:
        """Write a paging's rows (and `alert_row`, an alert being opened, first), and queue its
        outbox messages for after the commit, in the order they were made.

        On PostgreSQL all of it, with the timeline events held so far, goes in ONE statement
        (data-modifying CTEs): a press is paged after one round trip here, not five. Elsewhere,
        one statement per table."""
        if tx.conn.dialect.name == "postgresql":
            _write_at_once(tx, w, alert_row)
            return
        if alert_row is not None:
            tx.conn.execute(insert(alerts).values(**alert_row))
        if w.deliveries:
            tx.conn.execute(insert(deliveries), w.deliveries)
        if w.pages:
            tx.conn.execute(insert(pages), w.pages)
        if w.outbox:
            # Ids in the order of the rows (insertmanyvalues), so each message gets its own.
            ids = tx.conn.execute(
                insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True), w.outbox
            ).scalars()
            for out_id, r, kind in zip(ids, w.outbox, w.kinds, strict=True):
                tx.out.append(
                    OutMsg(
                        out_id, r["topic"], r["payload"], 1, r["alert_id"], kind, tx.received_mono
                    )
                )

    def _notice(
        self,
        tx: Tx,
        w: _Writes,
        alert: Row[Any],
        pager_id: str,
        responder_id: str | None,
        state: str,
        text: str,
    ) -> None:
        """One notice (the contract's `notice` message) to a pager, into `w`: published after
        the commit, and kept as a `pages` row of type "notice" when it is to a person paged for
        the alert (`responder_id`), so the timeline and the board can say who was told."""
        page_id = new_id("nt")
        payload = Notice(
            page_id=page_id,
            alert_id=alert.id,
            ts=from_ms(tx.now_ms, self.tz),
            state=state,
            text=text,
        ).model_dump_json()
        if responder_id is not None:
            w.pages.append(
                {
                    "id": page_id,
                    "alert_id": alert.id,
                    "responder_id": responder_id,
                    "pager_id": pager_id,
                    "type": "notice",
                    "step": None,
                    "created_at": tx.now_ms,
                    "reply_by": None,
                }
            )
        topic = pager_topic(self.base, pager_id, Channel.PAGES)
        self._enqueue(tx, w, topic, payload, alert.id, page_id, "notice")

    def _notify_paged(
        self,
        tx: Tx,
        alert: Row[Any],
        state: State,
        by: str | None,
        skip_pager: str | None,
        skip_responders: Collection[str] = (),
    ) -> None:
        """Tell every pager paged for this alert (except the one who acted) that it needn't go,
        or (`open`) that it is open again; `skip_responders` were just paged, the page says it."""
        elder = self._elder(tx.conn, alert.elder_id)
        rows = tx.conn.execute(
            select(pages.c.pager_id, pages.c.responder_id, responders.c.language)
            .join(responders, responders.c.id == pages.c.responder_id)
            .where(pages.c.alert_id == alert.id, pages.c.type == "page")
            .distinct()
        ).all()
        w = _Writes()
        told: set[str] = set()
        for r in rows:
            if r.pager_id == skip_pager or r.pager_id in told or r.responder_id in skip_responders:
                continue
            told.add(r.pager_id)
            text = notice_text(r.language, state, elder.name, by)
            self._notice(tx, w, alert, r.pager_id, r.responder_id, state.value, text)
        self._write(tx, w)
        if told:
            self._event(
                tx, alert.id, "notified", None, {"state": state.value, "pagers": sorted(told)}
            )

    # --- escalation ------------------------------------------------------------------------

    def escalate_due(self, tx: Tx, limit: int = 100) -> int:
        """Page the next step of every open alert whose deadline has passed."""
        q = (
            select(alerts.c.id)
            .where(alerts.c.state == State.OPEN.value, alerts.c.next_escalation_at <= tx.now_ms)
            .order_by(alerts.c.next_escalation_at)
            .limit(limit)
        )
        if tx.conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        ids = [r.id for r in tx.conn.execute(q)]
        for alert_id in ids:
            self._alone(tx, alert_id, "escalation", alerts.c.next_escalation_at, self._escalate)
        return len(ids)

    def _escalate(self, tx: Tx, alert_id: str) -> bool:
        alert = self.load(tx.conn, alert_id)
        if alert.state != State.OPEN.value or alert.next_escalation_at is None:
            return False
        if self.paging.step_failed(tx.conn, alert):  # made due by a channel's failure
            self._step_failed(tx, alert)
        else:
            self._advance(tx, alert, "timeout")
        return True

    def _alone(
        self,
        tx: Tx,
        alert_id: str,
        what: str,
        due: Any,
        work: Callable[[Tx, str], bool],
    ) -> bool:
        """`work(tx, alert_id)` for one due alert of a batch, in a savepoint of its own: a fault
        in one alert (a bug, a stored row this version cannot read) used to roll back the whole
        batch at every poll, so that no alert escalated any more. Now it rolls back that alert's
        writes, and what `tx` holds for after the commit since (pages to publish, log lines,
        counts) goes with them: nothing is published or logged for a step that was not kept.
        The alert's `due` column is put DUE_RETRY_S ahead (`_put_off`). Returns what `work`
        returned, False after a fault. A database error that is not a refusal of what this alert
        holds (gateway/db.py `refused`) is no fault of the alert's: a database gone away, or
        one under load (a lock or statement timeout, a deadlock, a serialization failure).
        Laid on the alert, it put a P1 escalation due now 30 s back and wrote
        `escalation_failed` on its timeline; it fails the batch instead, for the caller to
        retry whole at its next poll."""
        tx.flush()  # events held so far belong to what came before
        out, logs, opened = list(tx.out), list(tx.logs), Counter(tx.opened)
        escalations = tx.escalations
        savepoint = tx.conn.begin_nested()
        try:
            done = work(tx, alert_id)
            tx.flush()
        except Exception as exc:
            if isinstance(exc, DBAPIError) and not refused(exc):
                raise
            savepoint.rollback()  # should even this fail, the batch fails as a whole
            tx.out, tx.logs, tx.opened, tx.escalations = out, logs, opened, escalations
            tx.events.clear()
            self._put_off(tx, alert_id, what, due, exc)
            return False
        savepoint.commit()
        return done

    def _put_off(self, tx: Tx, alert_id: str, what: str, due: Any, exc: Exception) -> None:
        """After `what` failed for the alert (`_alone`): it is due again in DUE_RETRY_S, and
        its timeline (`<what>_failed`) and the log say so, each write in a savepoint of its own
        so that one failing leaves the other. The log has the exception's type and where it was
        raised, not its message: a validation error quotes the values it refused (an elder's
        name, an address), and the log leaves the station."""
        retry_at = tx.now_ms + DUE_RETRY_S * 1000
        error = type(exc).__name__
        where = "".join(traceback.format_tb(exc.__traceback__))
        log.error(
            "%s of alert %s failed (%s), retry in %d s:\n%s",
            what,
            alert_id,
            error,
            DUE_RETRY_S,
            where,
        )
        tx.note(logging.ERROR, f"{what}_failed", id=alert_id, error=error, retry_in=DUE_RETRY_S)
        detail = {"error": error, "retry_at": rfc3339(retry_at, self.tz)}
        for stmt in (
            update(alerts).where(alerts.c.id == alert_id).values({due.name: retry_at}),
            insert(alert_events).values(
                alert_id=alert_id, at=tx.now_ms, type=f"{what}_failed", actor=None, detail=detail
            ),
        ):
            try:
                with tx.conn.begin_nested():
                    tx.conn.execute(stmt)
            except DBAPIError as e:
                if e.connection_invalidated:
                    raise
                log.error(
                    "alert %s: %s failure not recorded (%s)", alert_id, what, type(e).__name__
                )

    def next_due_ms(self, conn: Connection) -> int | None:
        return conn.execute(
            select(alerts.c.next_escalation_at)
            .where(alerts.c.state == State.OPEN.value, alerts.c.next_escalation_at.is_not(None))
            .order_by(alerts.c.next_escalation_at)
            .limit(1)
        ).scalar()

    # --- reminders and channel chains ------------------------------------------------------

    def remind_due(self, tx: Tx, limit: int = 100) -> int:
        """Page a reminder for every answered, unresolved alert whose reminder is due."""
        q = (
            select(alerts.c.id)
            .where(alerts.c.state.in_(ANSWERED), alerts.c.next_reminder_at <= tx.now_ms)
            .order_by(alerts.c.next_reminder_at)
            .limit(limit)
        )
        if tx.conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        ids = [r.id for r in tx.conn.execute(q)]
        due = alerts.c.next_reminder_at
        return sum(self._alone(tx, alert_id, "reminder", due, self._remind) for alert_id in ids)

    def _remind(self, tx: Tx, alert_id: str) -> bool:
        alert = self.load(tx.conn, alert_id)
        due_at = alert.next_reminder_at
        if alert.state not in ANSWERED or due_at is None or due_at > tx.now_ms:
            return False  # answered or closed meanwhile (by another gateway)
        r = self.paging.reminder(tx.conn, alert, tx.now_ms)
        sent = r is not None and r.is_due(from_ms(tx.now_ms))
        if r is not None and sent:
            timeout = self.paging.reminder_interval_s(r.stage)
            elder = self._elder(tx.conn, alert.elder_id)
            step_no = max(alert.step, 1)
            w = _Writes()
            self._page_responders(
                tx,
                w,
                alert,
                elder,
                self.paging.reachable(tx.conn, r.to),
                Step(r.to, timeout),
                step_no,
                "reminder",
                reminder=r,
            )
            self._write(tx, w)
            tx.conn.execute(
                update(alerts)
                .where(alerts.c.id == alert.id)
                .values(reminders_sent=alerts.c.reminders_sent + 1, updated_at=tx.now_ms)
            )
        tx.flush()  # the next reminder counts from the "reminded" event: it must be there
        self.paging.set_next_reminder(tx.conn, alert.id, tx.now_ms)
        return sent

    def paging_due(
        self, engine: Engine, now_ms: int, publish: Callable[[list[OutMsg]], None]
    ) -> None:
        """Due reminders, then due channel-chain steps: called by the ingest worker's
        housekeeping after the escalations, each in its own transaction (so neither holds up
        the escalations), and only a read when nothing is due. The apprise sends go to the
        notifier pool after the commit; pager pages to the publisher."""
        try:
            with engine.connect().execution_options(readonly=True) as conn, conn.begin():
                remind = conn.execute(
                    select(alerts.c.id).where(alerts.c.next_reminder_at <= now_ms).limit(1)
                ).first()
                chains = conn.execute(
                    select(deliveries.c.id).where(deliveries.c.next_try_at <= now_ms).limit(1)
                ).first()
            if remind is not None:
                with engine.begin() as conn:
                    tx = Tx(conn, now_ms)
                    self.remind_due(tx)
                alert_log.emit(tx.logs)
                if tx.out:
                    publish(tx.out)
            if chains is not None:
                chain_logs: list[Line] = []
                with engine.begin() as conn:
                    jobs = self.paging.chains_due(conn, now_ms, logs=chain_logs)
                alert_log.emit(chain_logs)
                self.paging.dispatch(jobs)
        except DBAPIError as exc:
            log.warning("reminders and channel chains deferred: %s", exc)
        except Exception:  # a fault here must not stop the worker's escalations
            log.exception("reminders and channel chains failed; will retry")

    def _advance(self, tx: Tx, alert: Row[Any], reason: str) -> tuple[str, ...]:
        """Page the step after the alert's (the last step again at the end); returns who of the
        plan it pages (empty: nobody was, the caller's `_if_all_declined` takes over)."""
        # Before parsing: an empty plan (paged to nobody) is no Plan, it would raise PlanError.
        if not alert.plan:
            return ()
        plan = Plan.from_json(alert.plan)
        nxt = plan.after(alert.step)
        passed: set[str] = set()
        if nxt == alert.step and reason != "timeout":
            # The last step again, at once (an ack withdrawn): asking again who has just said no
            # (the withdrawer first of all) is noise on their pager, and they are not coming.
            # The time-out's repeat is different: it asks everyone again, by design.
            passed = self._declined(tx, alert.id)
            left = [r for r in plan.step(nxt).responder_ids if r not in passed]
            reach = self.paging.reachable(tx.conn, left, known=tx.people)
            if all(reach.get(r, (None, None))[1] is None for r in left):
                # Nobody left to ask at this step: what follows is the all-declined fallback
                # (the staff), not the "nobody reachable" one. The step's time-out runs from now
                # (an acknowledgement cleared it), so its repeat still comes.
                deadline = tx.now_ms + plan.step(nxt).ack_timeout_s * 1000
                tx.conn.execute(
                    update(alerts)
                    .where(alerts.c.id == alert.id)
                    .values(next_escalation_at=deadline, updated_at=tx.now_ms)
                )
                return ()
        tx.escalations += 1
        tx.note(logging.INFO, "escalated", id=alert.id, step=nxt, reason=reason)
        self._event(
            tx, alert.id, "escalated", None, {"from": alert.step, "to": nxt, "reason": reason}
        )
        self._page_step(tx, alert, nxt, reason, passed=passed)
        return tuple(r for r in plan.step(nxt).responder_ids if r not in passed)

    def _declined(self, tx: Tx, alert_id: str) -> set[str]:
        """Who has said no, by the timeline: a person's latest answer counts, as
        `alerts.policy.after_all_declined` reads it (an ack since is no decline; a withdrawn
        ack is one)."""
        tx.flush()  # the decline just recorded counts
        ev = alert_events.c
        rows = tx.conn.execute(
            select(ev.type, ev.actor)
            .where(ev.alert_id == alert_id, ev.type.in_(_ANSWERS))
            .order_by(ev.id)
        ).all()
        latest: dict[str, str] = {}
        for e in rows:
            if (rid := responder_of(e.actor)) is not None:
                latest[rid] = e.type
        return {rid for rid, answer in latest.items() if answer == DECLINED}

    # --- answers ---------------------------------------------------------------------------

    def act(
        self,
        tx: Tx,
        alert_id: str,
        action: Action,
        actor: Actor,
        outcome: Outcome | None = None,
        note: str | None = None,
        note_truncated: bool = False,
    ) -> Transition:
        """Acknowledge, mark on site, resolve or cancel; raises IllegalTransition or NotFound."""
        alert = self.load(tx.conn, alert_id)
        t = transition(State(alert.state), action)
        detail: dict[str, Any] = _note_detail(note, note_truncated) or {}
        if outcome:
            detail["outcome"] = outcome.value
        if actor.via:
            detail["via"] = actor.via
        if not t.changed:
            self.record(tx, alert.id, f"{action.value}_again", actor.label, detail or None)
            return t
        values: dict[str, Any] = {"state": t.after.value, "updated_at": tx.now_ms}
        if t.after in (State.ACKNOWLEDGED, State.ON_SITE) and alert.acknowledged_at is None:
            values["acknowledged_at"] = tx.now_ms
            values["acknowledged_by"] = actor.label
        if t.after == State.ON_SITE:
            values["on_site_at"] = tx.now_ms
        if t.after in (State.RESOLVED, State.CANCELLED):
            values["closed_at"] = tx.now_ms
            values["outcome"] = outcome.value if outcome else None
            values["next_reminder_at"] = None  # never page after resolution
            if note:
                values["note"] = note
        if stops_paging(t.after):
            values["next_escalation_at"] = None
        tx.conn.execute(update(alerts).where(alerts.c.id == alert.id).values(**values))
        # The note stays on the timeline: free text, it may name anyone.
        tx.note(
            logging.INFO,
            t.after.value,
            id=alert.id,
            by=actor.logged,
            outcome=outcome.value if outcome else None,
        )
        self._event(tx, alert.id, t.after.value, actor.label, detail or None)
        if t.after in (State.ACKNOWLEDGED, State.ON_SITE):
            tx.flush()  # the reminder reads the timeline: who arrived
            self.paging.set_next_reminder(tx.conn, alert.id, tx.now_ms)
        if t.before == State.OPEN:
            self._cancel_pending(tx, alert.id)
            if t.after in (State.ACKNOWLEDGED, State.ON_SITE):
                self._notify_paged(tx, alert, State.ACKNOWLEDGED, actor.name, actor.pager_id)
        if t.after in (State.RESOLVED, State.CANCELLED):
            if t.before != State.OPEN:
                self._cancel_pending(tx, alert.id)  # a reminder page not yet out: not sent
            self._notify_paged(tx, alert, t.after, actor.name, actor.pager_id)
        tx.flush()
        return t

    def resolve(
        self, tx: Tx, alert_id: str, actor: Actor, outcome: Outcome, note: str | None = None
    ) -> bool:
        """Staff resolve the alert with its outcome (`act`), or give the outcome of an alert
        resolved without one: a pager's `resolved` carries none, and it is given here, once,
        as a `resolve_again` event with who gave it. The resolution's time and who resolved it
        stay; so does a note already on the alert (the new one goes on the timeline, and on the
        alert when it has none). True when something changed (always, unless it raises); raises
        NotFound, or IllegalTransition for a cancelled alert and for one that has its outcome
        already (an outcome is never rewritten)."""
        alert = self.load(tx.conn, alert_id)
        if alert.state != State.RESOLVED.value or alert.outcome is not None:
            return self.act(tx, alert.id, Action.RESOLVE, actor, outcome=outcome, note=note).changed
        values: dict[str, Any] = {"outcome": outcome.value, "updated_at": tx.now_ms}
        if note and not alert.note:
            values["note"] = note
        tx.conn.execute(update(alerts).where(alerts.c.id == alert.id).values(**values))
        detail = {"outcome": outcome.value, **({"note": note} if note else {})}
        if actor.via:
            detail["via"] = actor.via
        self.record(tx, alert.id, "resolve_again", actor.label, detail)
        return True

    def _cancel_pending(self, tx: Tx, alert_id: str) -> None:
        """Pages for this alert not yet handed to the broker are not sent at all."""
        res = tx.conn.execute(
            update(outbox)
            .where(
                outbox.c.alert_id == alert_id,
                outbox.c.sent_at.is_(None),
                outbox.c.cancelled_at.is_(None),
                outbox.c.page_id.like("pg_%"),
            )
            .values(cancelled_at=tx.now_ms)
        )
        if res.rowcount:
            self._event(tx, alert_id, "pending_pages_cancelled", None, {"count": res.rowcount})
        tx.out = [m for m in tx.out if not (m.alert_id == alert_id and m.kind == "page")]

    def decline(
        self,
        tx: Tx,
        alert: Row[Any],
        actor: Actor,
        note: str | None,
        note_truncated: bool = False,
    ) -> Transition | None:
        """A decline pages the next step at once, when it answers the step the alert is at
        (`_answers_step`: the decliner was paged at it and has not declined since it began).
        At the last step it repeats on time, unless everyone asked there has declined: then the
        staff on duty are paged at once (`_if_all_declined`).

        From the person who acknowledged the alert, while it is `acknowledged`, it withdraws
        that acknowledgement (`_withdraw`): otherwise nobody would be coming while the alert
        looks handled, and nothing would page anyone again. Any other decline is recorded only:
        the alert is someone else's, who is coming, or someone is on site already (with the
        elder: what is left is theirs to resolve, or the station's). `alert` is the locked row;
        returns the change of state, None when there is none."""
        if alert.state == State.ACKNOWLEDGED.value and alert.acknowledged_by == actor.label:
            return self._withdraw(tx, alert, actor, note, note_truncated)
        is_open = alert.state == State.OPEN.value
        plan = Plan.from_json(alert.plan) if is_open and alert.plan else None
        # Read before this decline is recorded, which must not count against itself.
        answers = (
            plan is not None
            and alert.step < plan.last
            and self._answers_step(tx, alert, actor.label)
        )
        self._event(tx, alert.id, "declined", actor.label, _note_detail(note, note_truncated))
        if is_open and not alert.plan:
            self._nobody_next(tx, alert.id, actor, "declined")
        elif plan is not None:
            if answers:
                self._advance(tx, alert, "declined")
                # The step reached may be the last, of people who have all said no already (an
                # explicit plan may name the decliner in both steps).
                alert = self.load(tx.conn, alert.id)
            self._if_all_declined(tx, alert)
        tx.flush()
        return None

    def _answers_step(self, tx: Tx, alert: Row[Any], label: str) -> bool:
        """Whether a decline by `label` answers the step the alert is at: they were paged at
        it (its first page, repeats, fallbacks, reminders, an assignment while it stood: the
        `paged` and `reminded` events since its first page) and have not declined since. A reply
        names the alert, not the page: without this a double tap, the phone then the pager, or a
        late "no" to a step the alert has left on its time-out each paged a step further, past
        people still within their time to answer."""
        rid = responder_of(label)
        if rid is None:
            return False
        tx.flush()  # an earlier decline in this transaction (a batch of replies) counts too
        ev = alert_events.c
        rows = tx.conn.execute(
            select(ev.type, ev.actor, ev.detail)
            .where(ev.alert_id == alert.id, ev.type.in_(("paged", "reminded", DECLINED)))
            .order_by(ev.id)
        ).all()
        begun = asked = False
        for e in rows:
            detail = e.detail or {}
            if e.type == "paged":
                if detail.get("step") != alert.step:
                    continue
                begun = True  # steps only climb: the step stands from its first page on
            elif not begun:
                continue
            elif e.type == DECLINED:
                if e.actor == label:
                    return False
                continue
            if any(p.get("responder_id") == rid for p in detail.get("to") or ()):
                asked = True
        return asked

    def _nobody_next(self, tx: Tx, alert_id: str, actor: Actor, reason: str) -> None:
        """A decline on an open alert that was paged to nobody (its plan is empty: there was
        nobody to page, not even staff): there is no next step, no staff to fall back on and no
        deadline to repeat at, so nothing will page anyone unless the station sends someone
        again. Said on the timeline (`escalation_skipped`) and in the log (ERROR `unpaged`)."""
        why = "nobody to page: the alert has no plan; only sending someone pages anyone"
        detail = {"reason": reason, "by": actor.label, "why": why}
        self._event(tx, alert_id, "escalation_skipped", None, detail)
        tx.note(logging.ERROR, "unpaged", id=alert_id, by=actor.logged, why=reason, fallback="none")

    def _if_all_declined(self, tx: Tx, alert: Row[Any], withdrawal: bool = False) -> None:
        """After a decline at the last step of an open alert: when it leaves nobody asked there
        who has not declined (`alerts.policy.after_all_declined`; `withdrawal`: the decline
        withdrew an acknowledgement, whoever made it), nobody is coming, and the
        step's repeat would only ask the same people again once its time-out is over. So the
        staff on duty who have not declined are paged at once (every other staff member when
        none is left; the elder's station's, another's only when none of them is left, and then
        `other_stations`), as the same step: `escalated` (reason `all_declined`, to
        `staff_on_duty` or `all_staff`, who declined), then their `paged`. The step's deadline
        stays: if nobody answers, the repeat comes on time, and their pages' reply_by is that
        time. With nobody left to page, `escalation_skipped` says so and the repeat stands.
        `alert` is the locked row as it is now."""
        if alert.state != State.OPEN.value or not alert.plan:
            return
        plan = Plan.from_json(alert.plan)
        if alert.step != plan.last:
            return
        tx.flush()  # the decline just recorded is the last of the answers read here
        ev = alert_events.c
        rows = tx.conn.execute(
            select(ev.type, ev.actor, ev.detail)
            .where(ev.alert_id == alert.id, ev.type.in_(("paged", *_ANSWERS)))
            .order_by(ev.id)
        ).all()
        asked: set[str] = set()
        ever: set[str] = set()  # everyone paged for the alert, at any step or as sent
        replies: list[tuple[str, str]] = []
        for e in rows:
            if e.type == "paged":
                those = {p["responder_id"] for p in (e.detail or {}).get("to") or ()}
                ever |= those
                if (e.detail or {}).get("step") == plan.last:
                    asked |= those
            elif (rid := responder_of(e.actor)) is not None:
                replies.append((rid, e.type))
        roster, station = self.paging.roster_for(tx.conn, alert.elder_id, tx.now_ms)
        staff = roster.all_staff()
        reach = self.paging.reachable(tx.conn, staff)
        unreachable = [r for r in staff if reach.get(r, (None, None))[1] is None]
        found = after_all_declined(
            asked=asked,
            replies=replies,
            roster=roster,
            now=from_ms(tx.now_ms),
            unreachable=unreachable,
            station=station,
            withdrawal=withdrawal,
        )
        if found is None:
            return
        deadline = alert.next_escalation_at
        detail: dict[str, Any] = {
            "from": plan.last,
            "reason": ALL_DECLINED,
            "declined": list(found.declined),
        }
        if not found.to:
            detail["why"] = "nobody left to page: the last step repeats at its time-out"
            if deadline is not None:
                detail["repeat_at"] = rfc3339(deadline, self.tz)
            passed = [r for r in unreachable if r not in found.declined]
            if passed:
                detail["unreachable"] = passed
            self._event(tx, alert.id, "escalation_skipped", None, detail)
            # Nobody is coming and nobody is left to ask until the repeat: the on-call engineer
            # must see it as they see a step nobody can be reached on.
            tx.note(
                logging.ERROR,
                "unpaged",
                id=alert.id,
                step=plan.last,
                why=ALL_DECLINED,
                fallback="none",
            )
            return
        tx.escalations += 1
        to = "all_staff" if found.fallback else "staff_on_duty"
        if found.other_stations:
            detail["other_stations"] = True  # nobody of the elder's station is left
        self._event(tx, alert.id, "escalated", None, detail | {"to": to})
        tx.note(logging.INFO, "escalated", id=alert.id, step=plan.last, reason=ALL_DECLINED, to=to)
        # "Nobody else can come" only when it is so: one paged at an earlier step who merely
        # did not answer may still come (a late ack is taken).
        others = ever - set(found.to)
        nobody_else = bool(others) and others <= set(found.declined)
        w = _Writes()
        self._page_responders(
            tx,
            w,
            alert,
            self._elder(tx.conn, alert.elder_id),
            reach,
            Step(found.to, plan.step(plan.last).ack_timeout_s),
            plan.last,
            ALL_DECLINED,
            reply_by=deadline,
            nobody_else=nobody_else,
        )
        self._write(tx, w)

    def _acknowledgers(self, tx: Tx, alert_id: str) -> dict[str, int]:
        """Who is coming, by the timeline: whoever acknowledged the alert since it was last
        acknowledged from `open` (an `ack_again` is someone else coming too), and has not
        declined since; actor label -> when they acknowledged, in that order."""
        tx.flush()
        ev = alert_events.c
        rows = tx.conn.execute(
            select(ev.type, ev.actor, ev.at)
            .where(
                ev.alert_id == alert_id,
                ev.type.in_((State.ACKNOWLEDGED.value, "ack_again", "declined")),
            )
            .order_by(ev.id)
        ).all()
        coming: dict[str, int] = {}
        for e in rows:
            if e.actor is None:
                continue
            if e.type == State.ACKNOWLEDGED.value:
                coming = {e.actor: e.at}
            elif e.type == "ack_again":
                coming.setdefault(e.actor, e.at)
            else:
                coming.pop(e.actor, None)
        return coming

    def _withdraw(
        self,
        tx: Tx,
        alert: Row[Any],
        actor: Actor,
        note: str | None,
        note_truncated: bool = False,
    ) -> Transition | None:
        """The acknowledger declines after all. If someone else acknowledged it too (and has
        not declined), it is theirs now: still acknowledged, by them, from their ack. Otherwise
        it is `open` again: acknowledged_at/by cleared (a withdrawn acknowledgement is no answer,
        in the measures either), no reminder, the next step paged at once (at the last step,
        that step again: its people were told not to go; but for those who have declined, the
        withdrawer too, and when that is everyone, the staff as `_if_all_declined` pages them)
        and the others paged are told it is
        open again. On the timeline: `ack_withdrawn` (who, the ack withdrawn, the note), then
        the `declined` itself (so the person's last answer stays their decline)."""
        declined = _note_detail(note, note_truncated)
        withdrawn: dict[str, Any] = {"acknowledged_at": rfc3339(alert.acknowledged_at, self.tz)}
        withdrawn |= declined or {}
        coming = self._acknowledgers(tx, alert.id)
        coming.pop(actor.label, None)
        if coming:
            label, at = next(iter(coming.items()))
            tx.conn.execute(
                update(alerts)
                .where(alerts.c.id == alert.id)
                .values(acknowledged_by=label, acknowledged_at=at, updated_at=tx.now_ms)
            )
            self._event(
                tx, alert.id, "ack_withdrawn", actor.label, withdrawn | {"passed_to": label}
            )
            self._event(tx, alert.id, "declined", actor.label, declined)
            tx.flush()  # the reminder reads the timeline
            self.paging.set_next_reminder(tx.conn, alert.id, tx.now_ms)
            return None
        t = transition(State(alert.state), Action.WITHDRAW)
        tx.conn.execute(
            update(alerts)
            .where(alerts.c.id == alert.id)
            .values(
                state=t.after.value,
                acknowledged_at=None,
                acknowledged_by=None,
                next_reminder_at=None,  # reminders are for answered alerts: escalation pages it
                updated_at=tx.now_ms,
            )
        )
        self._event(
            tx, alert.id, "ack_withdrawn", actor.label, withdrawn | {"state": t.after.value}
        )
        self._event(tx, alert.id, "declined", actor.label, declined)
        reopened = self.load(tx.conn, alert.id)
        paged: tuple[str, ...] = ()
        if reopened.plan:  # empty only when there was nobody at all to page
            paged = self._advance(tx, reopened, "ack_withdrawn")
        else:
            self._nobody_next(tx, alert.id, actor, "ack_withdrawn")
        self._notify_paged(tx, reopened, t.after, actor.name, actor.pager_id, paged)
        # After the notices: those it pages have their page, not a notice that it is open again.
        # A withdrawal, not only one by someone asked at the last step: one paged at an earlier
        # step only may have acknowledged late, after everyone at the last step said no.
        self._if_all_declined(tx, self.load(tx.conn, alert.id), withdrawal=True)
        tx.flush()
        return t

    def assign(
        self, tx: Tx, alert: Row[Any], responder_id: str, actor: Actor, note: str | None
    ) -> int:
        """Station staff send one person (指派): an `assigned` event, then that person is paged
        at once (by pager and their channel chain, as any page), so they can answer from their
        pager or phone like anyone paged. The alert's state and escalation deadline do not
        change: only an answer stops the paging. The page says who sent them, the note, and
        what to reply as the alert stands (`assigned_text`); "again" only when they were sent
        before. `alert` is the locked, active row. Returns how many were paged (0: the person
        cannot be reached; the event says so)."""
        reach = self.paging.reachable(tx.conn, [responder_id])
        person, chain = reach.get(responder_id, (None, None))
        detail: dict[str, Any] = {"responder_id": responder_id}
        if person is not None:
            detail["name"] = person.name
        if note:
            detail["note"] = note
        if chain is None:
            detail["unreachable"] = True
        # Sent before: a page of an earlier assignment reached them (the timeline's `paged`).
        tx.flush()
        ev = alert_events.c
        before = tx.conn.execute(
            select(ev.detail).where(ev.alert_id == alert.id, ev.type == "paged")
        ).scalars()
        again = any(
            (d or {}).get("reason") == "assigned"
            and any(p.get("responder_id") == responder_id for p in (d or {}).get("to") or ())
            for d in before
        )
        tx.note(
            logging.INFO,
            "assigned",
            id=alert.id,
            to=responder_id,
            by=actor.logged,
            unreachable="yes" if chain is None else None,
        )
        self._event(tx, alert.id, "assigned", actor.label, detail)
        sent = 0
        if chain is not None:
            step_no = max(alert.step, 1)
            timeout = self._step_timeout_s(alert, step_no)
            w = _Writes()
            sent = self._page_responders(
                tx,
                w,
                alert,
                self._elder(tx.conn, alert.elder_id),
                reach,
                Step((responder_id,), timeout),
                step_no,
                "assigned",
                assigned=Assignment(actor.name, note, again),
            )
            self._write(tx, w)
        tx.flush()
        return sent

    def was_paged(self, conn: Connection, alert_id: str, responder_id: str) -> bool:
        """Whether the person was paged for the alert, by any channel (`was_paged_clause`)."""
        q = select(literal(1)).where(was_paged_clause(alert_id, responder_id))
        return conn.execute(q).first() is not None

    def reply(
        self,
        tx: Tx,
        person: Row[Any],
        alert_id: str,
        action: str,
        *,
        note: str | None = None,
        note_truncated: bool = False,
        outcome: Outcome | None = None,
        pager_id: str | None = None,
    ) -> ReplyResult:
        """A paged person's answer (`ack`, `decline`, `arrived`, `resolved`: contract v1's reply
        actions), from their MQTT pager (`pager_id`, the pager it came from) or from their phone
        page: one way for both, so that either counts exactly as the other. On the timeline the
        actor is `responder:<id>` whichever door it came in by. `note_truncated`: the gateway
        cut a pager's overlong note (marked so on each event that carries it).

        Raises NotFound (no such alert) or NotPaged (the person was not paged for it) before
        anything is written. An answer the alert's state no longer allows (an ack or a decline
        after the alert was resolved) is not an error of the person's: it is recorded as
        `late_reply`, a pager is sent a notice of how the alert ended, and the result says
        `late`."""
        alert = self.load(tx.conn, alert_id)
        if not self.was_paged(tx.conn, alert.id, person.id):
            raise NotPaged(alert.id)
        actor = Actor(
            label=f"{RESPONDER}{person.id}",
            responder_id=person.id,
            name=person.name,
            # Their own pager is not told that they took the alert, whichever way they answered.
            pager_id=pager_id or person.pager_id,
        )
        if action == "decline" and alert.state not in ACTIVE:
            # Too late like any other answer: there is no next step to page any more.
            late = f"cannot decline an alert that is {alert.state}"
        elif action == "decline":
            at = len(tx.logs)
            withdrawn = self.decline(tx, alert, actor, note, note_truncated)
            # Before the lines of the step it pages, as it happened. `state` is set when it
            # withdrew the decliner's acknowledgement and the alert is open again.
            declined = alert_line(
                "declined",
                id=alert.id,
                by=actor.label,
                state=withdrawn.after.value if withdrawn else None,
            )
            tx.logs.insert(at, (logging.INFO, declined))
            return ReplyResult(alert, withdrawn)
        else:
            try:
                t = self.act(
                    tx,
                    alert.id,
                    REPLY_ACTIONS[action],
                    actor,
                    outcome=outcome,
                    note=note,
                    note_truncated=note_truncated,
                )
            except IllegalTransition as exc:
                late = str(exc)
            else:
                return ReplyResult(alert, t)
        why = {"action": action, "why": late, **(_note_detail(note, note_truncated) or {})}
        self.record(tx, alert.id, "late_reply", actor.label, why)
        tx.note(
            logging.INFO,
            "late_reply",
            id=alert.id,
            by=actor.label,
            action=action,
            state=alert.state,
        )
        if pager_id:
            self.tell_closed(tx, alert, pager_id, person.language)
        return ReplyResult(alert, None, late=late)

    def tell_closed(self, tx: Tx, alert: Row[Any], pager_id: str, language: str | None) -> None:
        """A late answer to a closed alert: tell that pager how it ended."""
        elder = self._elder(tx.conn, alert.elder_id)
        state = State(alert.state)
        w = _Writes()
        text = notice_text(language, state, elder.name, None)
        self._notice(tx, w, alert, pager_id, None, state.value, text)
        self._write(tx, w)

    def elder_cancel(
        self, tx: Tx, alert_id: str, device_id: str, msg_id: str | None, detail: dict[str, Any]
    ) -> bool:
        """The elder's `button.cancelled` within the grace (alerts/rules.py `Cancel` or
        `CancelPressed`), weighed against the alert as it is now, locked: the rule read its
        state before this batch's answers, or the board's, were taken. An open alert is
        cancelled (`act`): True. One someone has acknowledged stays theirs: `cancel_after_ack`
        on the timeline (`told`: the pagers told), and a notice to each person coming that the
        elder pressed cancel, to check on the elder and resolve it, or go on; a cancel never
        stands a responder down by itself (the elder may have been made to cancel, or pressed
        it after a fall). Once someone is on site, only recorded (`cancel_after_arrival`); once
        it is closed (resolved or cancelled by an answer of this batch, or the board's, since
        the rule read it), only recorded too (`cancel_after_close`): no IllegalTransition to
        roll the batch back with a press in it."""
        alert = self.load(tx.conn, alert_id)
        by = f"device:{device_id}"
        event = {"msg_id": msg_id, **detail}
        if alert.state in (State.RESOLVED.value, State.CANCELLED.value):
            self.record(tx, alert.id, "cancel_after_close", by, event | {"state": alert.state})
            return False
        if alert.state == State.ACKNOWLEDGED.value:
            told = self._tell_cancel_pressed(tx, alert)
            self.record(tx, alert.id, "cancel_after_ack", by, event | {"told": told})
            tx.note(logging.INFO, "cancel_after_ack", id=alert.id, by=f"elder:{device_id}")
            return False
        if alert.state == State.ON_SITE.value:
            self.record(tx, alert.id, "cancel_after_arrival", by, event)
            return False
        self.act(tx, alert.id, Action.CANCEL, Actor(label=f"elder:{device_id}", name=None))
        return True

    def late_cancel(
        self,
        tx: Tx,
        alert_id: str,
        device_id: str,
        why: str,
        msg_id: str | None,
        detail: dict[str, Any],
    ) -> None:
        """The elder's `button.cancelled` that cancels nothing (alerts/rules.py `LATE_CANCELS`:
        after the grace, or not to be trusted): recorded as `why`. On an alert someone has
        acknowledged (the locked row), those coming are told the elder pressed cancel
        (`told`), as within the grace (`elder_cancel`): whenever the elder presses it while they
        hold the alert, they must know. Not once someone is on site, nor on a closed alert."""
        alert = self.load(tx.conn, alert_id)
        event = {"msg_id": msg_id, **detail}
        if alert.state == State.ACKNOWLEDGED.value:
            event["told"] = self._tell_cancel_pressed(tx, alert)
        self.record(tx, alert.id, why, f"device:{device_id}", event)

    def _step_timeout_s(self, alert: Row[Any], step_no: int) -> int:
        """The ack time-out of the alert's step `step_no`, for a page sent beside the plan (an
        assignment, the elder's cancel); the default for an alert paged to nobody (no plan)."""
        steps = alert.plan or []
        if step_no <= len(steps):
            return int(steps[step_no - 1]["ack_timeout_s"])
        return self.default_ack_timeout_s

    def _tell_cancel_pressed(self, tx: Tx, alert: Row[Any]) -> list[str]:
        """Page everyone coming (`_acknowledgers`) that the elder pressed cancel
        (`cancel_pressed_text`), by pager and, for one without, their channel chain: a page,
        not a notice, as it asks them to act (check on the elder, then resolve it or go on),
        and a notice's `state` (`acknowledged`) would read on a pager as "someone else took
        it" to the very person who did. The alert's state and deadlines are unchanged; the
        page's `reply_by` is its next reminder, else the step's time-out from now. Returns the
        people paged (the timeline's `paged`, reason `cancel_pressed`, names them)."""
        coming = [p for label in self._acknowledgers(tx, alert.id) if (p := responder_of(label))]
        if not coming or self._cancel_told_since_ack(tx, alert.id):
            return []
        elder = self._elder(tx.conn, alert.elder_id)
        step_no = max(alert.step, 1)
        timeout = self._step_timeout_s(alert, step_no)
        reply_by = alert.next_reminder_at or tx.now_ms + timeout * 1000
        reach = self.paging.reachable(tx.conn, coming)
        w = _Writes()
        self._page_responders(
            tx,
            w,
            alert,
            elder,
            reach,
            Step(tuple(coming), timeout),
            step_no,
            "cancel_pressed",
            reply_by=reply_by,
            text_for=lambda p: cancel_pressed_text(p.language, elder.name, elder.phone),
        )
        self._write(tx, w)
        return [p for p in coming if reach.get(p, (None, None))[1] is not None]

    def _cancel_told_since_ack(self, tx: Tx, alert_id: str) -> bool:
        """Whether those coming were paged that the elder pressed cancel since the alert was
        last acknowledged: once per acknowledgement, however often the elder presses it (each
        page would go down every channel chain again, SMS and calls included). From the
        timeline, events held in `tx` too (an ack and cancels taken in one batch)."""
        told = False
        for type_, detail in self._told(tx, alert_id, ("acknowledged", "paged"), fresh=False):
            if type_ == "acknowledged":
                told = False
            elif detail.get("reason") == "cancel_pressed":
                told = True
        return told

    # --- for the rules (gateway/ruling.py): an incident for staff, everyone at once ----------

    def open_incident(
        self,
        tx: Tx,
        device: Any,
        kind: AlertKind,
        priority: Priority,
        detail: dict[str, Any],
        staff_ids: tuple[str, ...],
        ack_timeout_s: int,
    ) -> str:
        """Open one alert about many devices (a building's mass outage) paged to `staff_ids`
        only, not to the elder's watchers. `device` names it (an alert names one device);
        `detail` lists them all. Its one step repeats until answered, like any last step."""
        plan = Plan((Step(tuple(staff_ids), ack_timeout_s),))
        alert_id = new_id("al")
        tx.conn.execute(
            insert(alerts).values(
                id=alert_id,
                elder_id=device.elder_id,
                device_id=device.id,
                kind=kind.value,
                priority=priority.value,
                state=State.OPEN.value,
                created_at=tx.now_ms,
                updated_at=tx.now_ms,
                plan=plan.to_json(),
                step=0,
                trigger_msg_id=None,
                plan_source="incident",
            )
        )
        tx.opened[kind.value] += 1
        tx.note(
            logging.INFO,
            "opened",
            id=alert_id,
            kind=kind.value,
            priority=priority.value,
            elder=device.elder_id,
            device=device.id,
            source="incident",
        )
        self.record(tx, alert_id, "opened", f"device:{device.id}", detail)
        planned = {
            "role": "staff",
            "responder_ids": list(staff_ids),
            "ack_timeout_s": ack_timeout_s,
        }
        self.record(tx, alert_id, "planned", None, {"source": "incident", "steps": [planned]})
        self._page_step(tx, self.load(tx.conn, alert_id), 1, "opened")
        tx.flush()
        return alert_id

    # --- for the ingest worker's quarantine fallback (gateway/ingest.py `_fallback`) -------

    def open_fallback(
        self,
        tx: Tx,
        device: Any,
        kind: AlertKind,
        priority: Priority,
        msg_id: str,
        detail: dict[str, Any],
    ) -> str:
        """Open an alert for an alarm event whose processing failed (quarantined), paged to
        every staff member (`Paging.all_staff_plan`): not through the rules, suppressions or
        the policy's plan, any of which may be what failed. With no staff at all, the elder's
        own plan. `detail` goes on the `opened` event; it says why."""
        staff = self.paging.all_staff_plan(tx.conn, device.elder_id, tx.now_ms)
        plan = staff.plan if staff is not None else None
        notes = ["staff_other_stations"] if staff is not None and staff.other_stations else []
        if plan is None:  # no staff anywhere: better the elder's plan than nobody
            elder = self.paging.elder(tx.conn, device.elder_id)
            plan = self.paging.plan(tx.conn, elder, kind, priority, tx.now_ms).plan
            notes.append("no_staff_elder_plan")
        row = self._opening(
            tx,
            device,
            kind,
            priority,
            msg_id,
            plan,
            "fallback",
            logging.WARNING,  # a page that came by the fallback: something upstream broke
            source="fallback",
            quarantine=detail.get("fallback", {}).get("quarantine_id"),
        )
        alert_id = row["id"]
        self._event(tx, alert_id, "opened", f"device:{device.id}", detail)
        role = "staff" if staff is not None else None
        steps = [
            {"role": role, "responder_ids": list(s.responder_ids), "ack_timeout_s": s.ack_timeout_s}
            for s in (plan.steps if plan else ())
        ]
        planned = {"source": "fallback", "notes": notes, "steps": steps}
        self._event(tx, alert_id, "planned", None, planned)
        if plan is None:
            nobody = {"why": "the fallback found nobody to page"}
            self._event(tx, alert_id, "unpaged", None, nobody)
            tx.note(logging.CRITICAL, "unpaged", id=alert_id, elder=device.elder_id, why="no_plan")
            tx.conn.execute(insert(alerts).values(**row))
            tx.flush()
            return alert_id
        self._page_step(tx, SimpleNamespace(**row), 1, reason="opened", new=row)
        tx.flush()
        return alert_id

    def escalate_all(
        self, tx: Tx, alert_id: str, why: str, detail: dict[str, Any] | None = None
    ) -> int:
        """Page every step of the alert's plan at once (a gas valve that did not close: the
        danger grew), staff and family included. An open alert then waits on its last step,
        repeated until answered; an answered one is paged all the same but keeps its state and
        gets no escalation deadline. Returns how many steps were paged."""
        alert = self.load(tx.conn, alert_id)
        if alert.state not in ACTIVE or not alert.plan:
            self.record(tx, alert_id, "escalation_skipped", None, {"reason": why})
            return 0
        plan = Plan.from_json(alert.plan)
        tx.escalations += 1
        tx.note(logging.INFO, "escalated", id=alert_id, step="all", reason=why)
        self.record(
            tx,
            alert_id,
            "escalated",
            None,
            {"from": alert.step, "to": "all", "reason": why, **(detail or {})},
        )
        step_no, paged = 1, 0
        while step_no <= plan.last:
            self._page_step(tx, alert, step_no, why)
            paged += 1
            alert = self.load(tx.conn, alert_id)
            # _page_step passes over a step nobody can be reached on: go on after the one paged
            step_no = max(step_no, alert.step) + 1
        if alert.state != State.OPEN.value:
            tx.conn.execute(
                update(alerts).where(alerts.c.id == alert_id).values(next_escalation_at=None)
            )
        tx.flush()
        return paged

    def valve_news(self, tx: Tx, alert_id: str, why: str) -> int:
        """The gas rule has just noted `why` on the alert (gateway/ruling.py). When that says
        its valve is closed: notify by pager each person whose last page or notice of it said
        the valve had not closed, as they may be on their way to shut the gas at the meter.
        Who was told what is read from the timeline, so a repeated answer tells nobody twice;
        an alert no longer active tells nobody (its notice said it ended). Returns how many
        pagers were told."""
        if VALVE_AFTER.get(why) != Valve.CLOSED:
            return 0
        alert = self.load(tx.conn, alert_id)
        if alert.state not in ACTIVE or alert.kind != AlertKind.GAS.value:
            return 0
        valve: Valve | None = None
        said: dict[str, Valve | None] = {}  # responder id -> the valve their last message said
        types = (*_VALVE_EVENTS, "paged", "reminded", "notified")
        for type_, detail in self._told(tx, alert_id, types, fresh=False):
            said_why = type_ if type_ in VALVE_AFTER else detail.get("rule")
            if said_why in VALVE_AFTER:
                valve = VALVE_AFTER[said_why]
            elif type_ in ("paged", "reminded"):
                for to in detail.get("to") or []:
                    if isinstance(to, dict):
                        said[str(to.get("responder_id"))] = valve
            elif type_ == "notified" and detail.get("valve") == Valve.CLOSED:
                said |= {str(r): Valve.CLOSED for r in detail.get("responders") or []}
        stale = sorted(r for r, v in said.items() if v == Valve.NOT_CLOSED)
        if valve != Valve.CLOSED or not stale:
            return 0
        elder = self._elder(tx.conn, alert.elder_id)
        rows = tx.conn.execute(
            select(pages.c.pager_id, pages.c.responder_id, responders.c.language)
            .join(responders, responders.c.id == pages.c.responder_id)
            .where(
                pages.c.alert_id == alert.id,
                pages.c.type == "page",
                pages.c.responder_id.in_(stale),
            )
            .distinct()
        ).all()
        w = _Writes()
        told: set[str] = set()
        reached: set[str] = set()
        for r in rows:
            if r.pager_id in told:
                continue
            told.add(r.pager_id)
            reached.add(r.responder_id)
            text = valve_closed_text(r.language, elder.name)
            self._notice(tx, w, alert, r.pager_id, r.responder_id, alert.state, text)
        self._write(tx, w)
        if told:
            detail = {
                "state": alert.state,
                "valve": Valve.CLOSED.value,
                "pagers": sorted(told),
                "responders": sorted(reached),
            }
            self._event(tx, alert.id, "notified", None, detail)
        tx.flush()
        return len(told)


__all__ = [
    "REPLY_ACTIONS",
    "REPLY_ACTION_NAMES",
    "Actor",
    "AlertService",
    "IllegalTransition",
    "NotFound",
    "NotPaged",
    "OutMsg",
    "ReplyResult",
    "Tx",
]
