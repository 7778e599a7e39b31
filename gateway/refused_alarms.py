"""Refused alarms: what looks like an elder's alarm among the messages the gateway quarantined.

A device's alarm event that fails validation (a `ts` without an offset, an unknown `press`, no
`id`, too large ...) changes nothing and opens no alert (CONTRACT.md). But it is most likely an
elder's press lost to a firmware bug, so the station board shows it (read-only) for staff to
call the elder, and `/healthz` names it (`degraded`: refused_alarms) until it is dismissed or a
day old.

A quarantine row qualifies when its topic is the events channel of a registered device (which
names its elder) and its payload's `type` is an alarm type of contract v1 (`button.pressed`,
`gas.alarm`, `water.leak`). The payload is read defensively: it may be no JSON at all, or cut at
the quarantine's 512 characters (a 5 KB message); then its text is searched for the `type`
member. An `internal_error` or `unstorable` one (our fault, not the device's) is paged by the
ingest's fallback as an alert of its own (gateway/ingest.py `_fallback`), and left out when
that alert is there (an alert of the device with the message's id as its trigger); when the
fallback failed too (the same fault in its way), it is shown here, as nothing else shows it.

A dismissal (who, when, an optional note) is a row of `quarantine_dismissals`, never deleted: the
audit of that decision. It changes no alert and no quarantine row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, literal, or_, select
from sqlalchemy.exc import IntegrityError

from devices.topics import VERSION, Channel
from gateway.care_store import Scope
from gateway.ingest import FALLBACK_TYPES
from gateway.metrics import INTERNAL_ERROR, UNSTORABLE
from gateway.tables import alerts, devices, elders, quarantine
from gateway.tables_board import quarantine_dismissals

WINDOW_MS = 24 * 3600 * 1000  # shown for a day, unless dismissed earlier
SCAN_MAX = 2000  # quarantine rows of known devices' events read per look, newest first
SHOWN_MAX = 100  # refused alarms listed at most
COVERED = (INTERNAL_ERROR, UNSTORABLE)  # paged by the ingest's fallback, when it did not fail too

# `"type": "button.pressed"` in a payload that is no JSON (cut, or broken): the first `type`.
_TYPE = re.compile(r'"type"\s*:\s*"([^"\\]{1,40})"')
# Its `id`, the same way: the fallback's alert has it as its trigger (`paged_by_fallback`).
_ID = re.compile(r'"id"\s*:\s*"([^"\\]{1,64})"')


@dataclass(frozen=True, slots=True)
class Refused:
    quarantine_id: int
    at: int  # ms, when the gateway received it
    type: str
    reason: str
    detail: str
    size: int
    device_id: str
    device_kind: str
    device_status: str
    elder_id: str
    elder_name: str
    elder_address: str
    elder_phone: str | None


class NotRefusedAlarm(Exception):
    """No quarantined alarm of this id that the caller may see."""


class AlreadyDismissed(Exception):
    def __init__(self, by: str, at: int) -> None:
        super().__init__(f"dismissed by {by}")
        self.by, self.at = by, at


def alarm_type(payload: str) -> str | None:
    """The alarm type the payload claims, or None; never raises, whatever the payload."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        found = _TYPE.search(payload)
        return found.group(1) if found and found.group(1) in FALLBACK_TYPES else None
    if isinstance(data, dict):
        type_ = data.get("type")
        return type_ if isinstance(type_, str) and type_ in FALLBACK_TYPES else None
    return None


def _select(base: str, scope: Scope | None) -> Any:
    qd = quarantine_dismissals.c
    # A topic names its device exactly (contract v1): an equal match, as GET /quarantine's
    # station filter does (gateway/api.py `_others_topics`).
    topic = literal(f"{base}/{VERSION}/devices/") + devices.c.id + f"/{Channel.EVENTS.value}"
    q = select(
        quarantine.c.id,
        quarantine.c.at,
        quarantine.c.reason,
        quarantine.c.detail,
        quarantine.c.payload,
        quarantine.c.size,
        devices.c.id.label("device_id"),
        devices.c.kind.label("device_kind"),
        devices.c.status.label("device_status"),
        elders.c.id.label("elder_id"),
        elders.c.name.label("elder_name"),
        elders.c.address.label("elder_address"),
        elders.c.phone.label("elder_phone"),
        qd.dismissed_by,
        qd.dismissed_at,
    ).select_from(
        quarantine.join(devices, quarantine.c.topic == topic)
        .join(elders, elders.c.id == devices.c.elder_id)
        .outerjoin(quarantine_dismissals, qd.quarantine_id == quarantine.c.id)
    )
    if scope is not None:
        q = q.where(scope.on_board_filter(devices.c.elder_id))
    return q


def _refused(r: Any, type_: str) -> Refused:
    return Refused(
        quarantine_id=int(r.id),
        at=int(r.at),
        type=type_,
        reason=r.reason,
        detail=r.detail,
        size=int(r.size),
        device_id=r.device_id,
        device_kind=r.device_kind,
        device_status=r.device_status,
        elder_id=r.elder_id,
        elder_name=r.elder_name,
        elder_address=r.elder_address,
        elder_phone=r.elder_phone,
    )


def recent(conn: Connection, base: str, now_ms: int, scope: Scope | None) -> list[Refused]:
    """The undismissed refused alarms of the last day the scope sees (None: every station's),
    newest first."""
    q = (
        _select(base, scope)
        .where(
            quarantine.c.at >= now_ms - WINDOW_MS,
            quarantine_dismissals.c.quarantine_id.is_(None),
            # Only rows that may hold an alarm's type, before the limit: a device sending a
            # broken non-alarm event every few seconds must not push the day's refused
            # presses out of the SCAN_MAX newest (`alarm_type` then reads each one properly).
            or_(*(quarantine.c.payload.contains(t, autoescape=True) for t in FALLBACK_TYPES)),
        )
        .order_by(quarantine.c.id.desc())
        .limit(SCAN_MAX)
    )
    out: list[Refused] = []
    for r in conn.execute(q):
        if (type_ := alarm_type(r.payload)) is not None:
            if r.reason in COVERED and paged_by_fallback(conn, r.device_id, r.payload):
                continue
            out.append(_refused(r, type_))
            if len(out) >= SHOWN_MAX:
                break
    return out


def paged_by_fallback(conn: Connection, device_id: str, payload: str) -> bool:
    """Whether the ingest's fallback opened the alert of this quarantined message: an alert of
    the device whose trigger is the message's id (read as `alarm_type` reads its type)."""
    found = _ID.search(payload)
    if found is None:
        return False
    q = select(alerts.c.id).where(
        alerts.c.device_id == device_id, alerts.c.trigger_msg_id == found.group(1)
    )
    return conn.execute(q.limit(1)).first() is not None


def mark(conn: Connection) -> tuple[int, int]:
    """What changes when a message is quarantined or a refused alarm dismissed: a live page
    reads the list again only then (two index lookups)."""
    newest = conn.execute(select(func.coalesce(func.max(quarantine.c.id), 0))).scalar()
    dismissed = conn.execute(select(func.count()).select_from(quarantine_dismissals)).scalar()
    return int(newest or 0), int(dismissed or 0)


def dismiss(
    conn: Connection,
    base: str,
    scope: Scope,
    quarantine_id: int,
    by: str,
    now_ms: int,
    note: str | None,
) -> Refused:
    """Take a refused alarm off the banner, keeping who and when. Any age: an old one may still
    be dismissed. Raises NotRefusedAlarm (none the caller sees) or AlreadyDismissed."""
    r = conn.execute(_select(base, scope).where(quarantine.c.id == quarantine_id)).first()
    type_ = alarm_type(r.payload) if r is not None else None
    if r is None or type_ is None:
        raise NotRefusedAlarm(str(quarantine_id))
    if r.dismissed_by is not None:
        raise AlreadyDismissed(r.dismissed_by, int(r.dismissed_at))
    try:
        with conn.begin_nested():
            conn.execute(
                insert(quarantine_dismissals).values(
                    quarantine_id=quarantine_id, dismissed_at=now_ms, dismissed_by=by, note=note
                )
            )
    except IntegrityError:  # dismissed by someone else a moment ago
        row = conn.execute(
            select(quarantine_dismissals).where(
                quarantine_dismissals.c.quarantine_id == quarantine_id
            )
        ).first()
        if row is None:
            raise
        raise AlreadyDismissed(row.dismissed_by, int(row.dismissed_at)) from None
    return _refused(r, type_)


__all__ = [
    "WINDOW_MS",
    "AlreadyDismissed",
    "NotRefusedAlarm",
    "Refused",
    "alarm_type",
    "dismiss",
    "mark",
    "recent",
]
