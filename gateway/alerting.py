"""Alert commands applied inside one database transaction: open, join, page, escalate, answer.

The MQTT worker (device events, pager replies), the escalation scheduler and the HTTP routes all
come through here, so an acknowledgement means the same thing whichever door it came in by.
Every function takes a `Tx` (the connection inside a transaction, `now`, and the list of outbox
messages to publish once the transaction has committed).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Row, and_, insert, select, update

from alerts.escalation import Plan, PlanError, Step
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
from alerts.rules import ActiveAlert
from alerts.text import notice_text, page_text
from devices.payloads import Notice, Page, PageElder
from devices.topics import Channel, pager_topic
from gateway.clock import from_ms, new_id, rfc3339
from gateway.tables import (
    alert_events,
    alerts,
    elders,
    escalation_plans,
    outbox,
    pages,
    responders,
)

log = logging.getLogger(__name__)

ACTIVE = (State.OPEN.value, State.ACKNOWLEDGED.value, State.ON_SITE.value)


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


class NotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a responder (with a pager) or a person at the API."""

    label: str
    responder_id: str | None = None
    name: str | None = None
    pager_id: str | None = None


class AlertService:
    def __init__(self, base: str, tz: ZoneInfo, default_ack_timeout_s: int) -> None:
        self.base = base
        self.tz = tz
        self.default_ack_timeout_s = default_ack_timeout_s

    # --- reading ---------------------------------------------------------------------------

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

    def plan_for(self, conn: Connection, elder_id: str) -> Plan | None:
        row = conn.execute(
            select(escalation_plans.c.steps).where(escalation_plans.c.elder_id == elder_id)
        ).first()
        if row is not None:
            return Plan.from_json(row.steps)
        # No plan set: page the station's staff, so an alarm never goes to nobody.
        staff = [
            r.id
            for r in conn.execute(
                select(responders.c.id)
                .where(responders.c.role == "staff", responders.c.pager_id.is_not(None))
                .order_by(responders.c.created_at)
            )
        ]
        if not staff:
            return None
        try:
            return Plan((Step(tuple(staff), self.default_ack_timeout_s),))
        except PlanError:
            return None

    # --- timeline --------------------------------------------------------------------------

    def record(
        self,
        tx: Tx,
        alert_id: str,
        type_: str,
        actor: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        tx.conn.execute(
            insert(alert_events).values(
                alert_id=alert_id, at=tx.now_ms, type=type_, actor=actor, detail=detail
            )
        )

    # --- opening and joining ---------------------------------------------------------------

    def open(
        self,
        tx: Tx,
        device: Row[Any],
        kind: AlertKind,
        priority: Priority,
        msg_id: str | None,
        detail: dict[str, Any],
    ) -> str:
        """Open an alert for `device` and page the first step of the elder's plan."""
        plan = self.plan_for(tx.conn, device.elder_id)
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
                plan=plan.to_json() if plan else [],
                step=0,
                trigger_msg_id=msg_id,
            )
        )
        tx.opened[kind.value] += 1
        self.record(tx, alert_id, "opened", f"device:{device.id}", detail)
        if plan is None:
            log.error(
                "alert %s for elder %s: no escalation plan and no staff", alert_id, device.elder_id
            )
            self.record(tx, alert_id, "unpaged", None, {"why": "no escalation plan and no staff"})
            return alert_id
        self._page_step(tx, self.load(tx.conn, alert_id), 1, reason="opened")
        return alert_id

    def join(self, tx: Tx, alert_id: str, msg_id: str | None, detail: dict[str, Any]) -> None:
        self.record(tx, alert_id, "repeated", None, {"msg_id": msg_id, **detail})

    # --- paging ----------------------------------------------------------------------------

    def _elder(self, conn: Connection, elder_id: str) -> Row[Any]:
        row = conn.execute(select(elders).where(elders.c.id == elder_id)).first()
        assert row is not None, elder_id  # a foreign key guarantees it
        return row

    def _page_step(self, tx: Tx, alert: Row[Any], step_no: int, reason: str) -> None:
        """Page every reachable responder of step `step_no`; set the next deadline.

        A step with nobody reachable (no pager) is passed over at once, so an empty step never
        holds up the ladder; if no step can be reached the alert is retried at the timeout.
        """
        plan = Plan.from_json(alert.plan)
        elder = self._elder(tx.conn, alert.elder_id)
        tried: set[int] = set()
        while True:
            step = plan.step(step_no)
            sent = self._page_responders(tx, alert, elder, step, step_no, reason)
            if sent or step_no == plan.last or step_no in tried:
                break
            tried.add(step_no)
            self.record(tx, alert.id, "step_unreachable", None, {"step": step_no})
            step_no = plan.after(step_no)
            reason = "previous_step_unreachable"
        if not sent:
            self.record(tx, alert.id, "step_unreachable", None, {"step": step_no})
        deadline = tx.now_ms + step.ack_timeout_s * 1000
        tx.conn.execute(
            update(alerts)
            .where(alerts.c.id == alert.id)
            .values(step=step_no, next_escalation_at=deadline, updated_at=tx.now_ms)
        )

    def _page_responders(
        self, tx: Tx, alert: Row[Any], elder: Row[Any], step: Step, step_no: int, reason: str
    ) -> int:
        people = {
            r.id: r
            for r in tx.conn.execute(
                select(responders).where(responders.c.id.in_(step.responder_ids))
            )
        }
        repeat = alert.step >= step_no and alert.step > 0
        reply_by = tx.now_ms + step.ack_timeout_s * 1000
        sent = 0
        paged: list[dict[str, Any]] = []
        for rid in step.responder_ids:
            person = people.get(rid)
            if person is None or not person.pager_id:
                continue
            page_id = new_id("pg")
            payload = Page(
                page_id=page_id,
                alert_id=alert.id,
                ts=from_ms(tx.now_ms, self.tz),
                priority=alert.priority,
                kind=alert.kind,
                elder=PageElder(name=elder.name, address=elder.address, phone=elder.phone),
                text=page_text(
                    person.language,
                    AlertKind(alert.kind),
                    Priority(alert.priority),
                    elder.name,
                    elder.address,
                    elder.phone,
                    step_no,
                    repeat=repeat,
                ),
                step=step_no,
                reply_by=from_ms(reply_by, self.tz),
            ).model_dump_json()
            tx.conn.execute(
                insert(pages).values(
                    id=page_id,
                    alert_id=alert.id,
                    responder_id=person.id,
                    pager_id=person.pager_id,
                    type="page",
                    step=step_no,
                    created_at=tx.now_ms,
                    reply_by=reply_by,
                )
            )
            self._enqueue(
                tx,
                pager_topic(self.base, person.pager_id, Channel.PAGES),
                payload,
                alert.id,
                page_id,
                "page",
            )
            paged.append({"responder_id": person.id, "name": person.name, "page_id": page_id})
            sent += 1
        if sent:
            self.record(
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

    def _enqueue(
        self, tx: Tx, topic: str, payload: str, alert_id: str | None, page_id: str | None, kind: str
    ) -> None:
        out_id = tx.conn.execute(
            insert(outbox)
            .values(
                topic=topic,
                payload=payload,
                qos=1,
                alert_id=alert_id,
                page_id=page_id,
                created_at=tx.now_ms,
            )
            .returning(outbox.c.id)
        ).scalar_one()
        tx.out.append(OutMsg(out_id, topic, payload, 1, alert_id, kind, tx.received_mono))

    def _notify_paged(
        self, tx: Tx, alert: Row[Any], state: State, by: str | None, skip_pager: str | None
    ) -> None:
        """Tell every pager paged for this alert (except the one who acted) that it needn't go."""
        elder = self._elder(tx.conn, alert.elder_id)
        rows = tx.conn.execute(
            select(pages.c.pager_id, pages.c.responder_id, responders.c.language)
            .join(responders, responders.c.id == pages.c.responder_id)
            .where(pages.c.alert_id == alert.id, pages.c.type == "page")
            .distinct()
        ).all()
        told: set[str] = set()
        for r in rows:
            if r.pager_id == skip_pager or r.pager_id in told:
                continue
            told.add(r.pager_id)
            page_id = new_id("nt")
            payload = Notice(
                page_id=page_id,
                alert_id=alert.id,
                ts=from_ms(tx.now_ms, self.tz),
                state=state.value,
                text=notice_text(r.language, state, elder.name, by),
            ).model_dump_json()
            tx.conn.execute(
                insert(pages).values(
                    id=page_id,
                    alert_id=alert.id,
                    responder_id=r.responder_id,
                    pager_id=r.pager_id,
                    type="notice",
                    created_at=tx.now_ms,
                )
            )
            self._enqueue(
                tx,
                pager_topic(self.base, r.pager_id, Channel.PAGES),
                payload,
                alert.id,
                page_id,
                "notice",
            )
        if told:
            self.record(
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
            alert = self.load(tx.conn, alert_id)
            if alert.state != State.OPEN.value or alert.next_escalation_at is None:
                continue
            self._advance(tx, alert, "timeout")
        return len(ids)

    def next_due_ms(self, conn: Connection) -> int | None:
        return conn.execute(
            select(alerts.c.next_escalation_at)
            .where(alerts.c.state == State.OPEN.value, alerts.c.next_escalation_at.is_not(None))
            .order_by(alerts.c.next_escalation_at)
            .limit(1)
        ).scalar()

    def _advance(self, tx: Tx, alert: Row[Any], reason: str) -> None:
        plan = Plan.from_json(alert.plan)
        if not plan.steps:
            return
        nxt = plan.after(alert.step)
        tx.escalations += 1
        self.record(
            tx, alert.id, "escalated", None, {"from": alert.step, "to": nxt, "reason": reason}
        )
        self._page_step(tx, alert, nxt, reason)

    # --- answers ---------------------------------------------------------------------------

    def act(
        self,
        tx: Tx,
        alert_id: str,
        action: Action,
        actor: Actor,
        outcome: Outcome | None = None,
        note: str | None = None,
    ) -> Transition:
        """Acknowledge, mark on site, resolve or cancel; raises IllegalTransition or NotFound."""
        alert = self.load(tx.conn, alert_id)
        t = transition(State(alert.state), action)
        detail: dict[str, Any] = {}
        if note:
            detail["note"] = note
        if outcome:
            detail["outcome"] = outcome.value
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
            if note:
                values["note"] = note
        if stops_paging(t.after):
            values["next_escalation_at"] = None
        tx.conn.execute(update(alerts).where(alerts.c.id == alert.id).values(**values))
        self.record(tx, alert.id, t.after.value, actor.label, detail or None)
        if t.before == State.OPEN:
            self._cancel_pending(tx, alert.id)
            if t.after in (State.ACKNOWLEDGED, State.ON_SITE):
                self._notify_paged(tx, alert, State.ACKNOWLEDGED, actor.name, actor.pager_id)
        if t.after in (State.RESOLVED, State.CANCELLED):
            self._notify_paged(tx, alert, t.after, actor.name, actor.pager_id)
        return t

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
            self.record(tx, alert_id, "pending_pages_cancelled", None, {"count": res.rowcount})
        tx.out = [m for m in tx.out if not (m.alert_id == alert_id and m.kind == "page")]

    def decline(self, tx: Tx, alert: Row[Any], actor: Actor, note: str | None) -> None:
        """A decline pages the next step at once (at the last step, it repeats on time)."""
        self.record(tx, alert.id, "declined", actor.label, {"note": note} if note else None)
        if alert.state != State.OPEN.value:
            return
        plan = Plan.from_json(alert.plan)
        if plan.steps and alert.step < plan.last:
            self._advance(tx, alert, "declined")

    def was_paged(self, conn: Connection, alert_id: str, pager_id: str) -> bool:
        return (
            conn.execute(
                select(pages.c.id)
                .where(
                    and_(
                        pages.c.alert_id == alert_id,
                        pages.c.pager_id == pager_id,
                        pages.c.type == "page",
                    )
                )
                .limit(1)
            ).first()
            is not None
        )

    def tell_closed(self, tx: Tx, alert: Row[Any], pager_id: str, language: str | None) -> None:
        """A late answer to a closed alert: tell that pager how it ended."""
        elder = self._elder(tx.conn, alert.elder_id)
        state = State(alert.state)
        page_id = new_id("nt")
        payload = Notice(
            page_id=page_id,
            alert_id=alert.id,
            ts=from_ms(tx.now_ms, self.tz),
            state=state.value,
            text=notice_text(language, state, elder.name, None),
        ).model_dump_json()
        self._enqueue(
            tx,
            pager_topic(self.base, pager_id, Channel.PAGES),
            payload,
            alert.id,
            page_id,
            "notice",
        )


__all__ = ["Actor", "AlertService", "IllegalTransition", "NotFound", "OutMsg", "Tx"]
