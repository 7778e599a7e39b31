"""Rules of the alarm path: what a device message means for the device's alerts.

Pure: the caller passes the message, the device's active alerts and `now`; the rule answers with
one decision. The gateway applies decisions in a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.model import PRIORITY, AlertKind, Priority, State

# Alarm event types -> the kind of alert they raise.
RAISES: dict[str, AlertKind] = {
    "button.pressed": AlertKind.CALL_BUTTON,
    "gas.alarm": AlertKind.GAS,
    "water.leak": AlertKind.WATER_LEAK,
    "tamper": AlertKind.TAMPER,
    "battery.low": AlertKind.LOW_BATTERY,
}

# "All clear" event types -> the kind of alert whose timeline records them.
CLEARS: dict[str, AlertKind] = {
    "button.cancelled": AlertKind.CALL_BUTTON,
    "gas.cleared": AlertKind.GAS,
    "water.dry": AlertKind.WATER_LEAK,
}


# Alarm events whose condition lasts until the device's own event says it ended (contract v1).
# The others are moments: a press (answered, never suppressed) and a `tamper`, which nothing in
# the contract ends (no event says the case is shut again): a mute for maintenance, whose
# technician opens the case, has dealt with it. A low battery is device health's (its state).
LASTS_UNTIL: dict[str, str] = {"water.leak": "water.dry"}

DEFAULT_CANCEL_GRACE = timedelta(seconds=120)
# How far ahead of the gateway's clock a cancel's own time may be (clocks drift a little).
# Further ahead, the device's clock is wrong, and a wrong clock never cancels a call.
CANCEL_CLOCK_SKEW = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """What a rule needs to know of an alert that is open, acknowledged or on site."""

    id: str
    kind: AlertKind
    state: State
    created_at: datetime
    # The device's own time (`ts`) of the message that opened it, when the caller knows it:
    # `created_at` is when the gateway processed that message, which can be much later (the
    # gateway down, a backlog). A cancel is weighed against it (`on_event`).
    device_ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class Open:
    kind: AlertKind
    priority: Priority


@dataclass(frozen=True, slots=True)
class Join:
    """A further alarm of the same kind while the alert is active: recorded on its timeline."""

    alert_id: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """The elder cancelled within the grace window: the alert is cancelled, pagers are told."""

    alert_id: str


@dataclass(frozen=True, slots=True)
class CancelPressed:
    """The elder cancelled within the grace window, but someone has acknowledged and may be on
    the way: the alert stays theirs, recorded as `cancel_after_ack`, and they are told the elder
    pressed cancel, to decide. As a telecare centre does, a responder is never stood down without
    a word: the elder may have been made to cancel, or pressed it by mistake after a fall."""

    alert_id: str


@dataclass(frozen=True, slots=True)
class Record:
    """Recorded on the alert's timeline, no change of state (e.g. gas.cleared, a late cancel)."""

    alert_id: str
    why: str


@dataclass(frozen=True, slots=True)
class Nothing:
    why: str


Decision = Open | Join | Cancel | CancelPressed | Record | Nothing


def _raise(kind: AlertKind, active: dict[AlertKind, ActiveAlert]) -> Decision:
    current = active.get(kind)
    if current is not None:
        return Join(current.id)
    return Open(kind, PRIORITY[kind])


def on_event(
    event_type: str,
    active: dict[AlertKind, ActiveAlert],
    now: datetime,
    cancel_grace: timedelta = DEFAULT_CANCEL_GRACE,
    sent_at: datetime | None = None,
) -> Decision:
    """The decision for an accepted event from a device whose active alerts are `active`;
    `sent_at` is the event's own time (its `ts`, the device's clock), `now` the gateway's."""
    if event_type in RAISES:
        return _raise(RAISES[event_type], active)
    if event_type in CLEARS:
        kind = CLEARS[event_type]
        current = active.get(kind)
        if current is None:
            return Nothing(f"{event_type} with no active {kind} alert")
        if event_type == "button.cancelled":
            if current.state == State.ON_SITE:  # someone is with the elder: they decide
                return Record(current.id, "cancel_after_arrival")
            refused = _cancel_refused(current, now, sent_at, cancel_grace)
            if refused is not None:
                return Record(current.id, refused)
            if current.state == State.ACKNOWLEDGED:
                return CancelPressed(current.id)
            return Cancel(current.id)
        return Record(current.id, event_type)
    return Nothing(f"{event_type} raises no alert")


# `_cancel_refused`'s reasons: the elder did press cancel, so whoever holds the alert is told.
LATE_CANCELS = frozenset({"cancel_too_late", "cancel_stale"})


def _cancel_refused(
    current: ActiveAlert, now: datetime, sent_at: datetime | None, grace: timedelta
) -> str | None:
    """Why the elder's cancel must not cancel `current` (None: it cancels).

    A cancel takes the call away from everyone paged: it is taken only when nothing is in
    doubt. Measured from the gateway's processing alone, a cancel queued behind its press (the
    gateway down, a backlog) would always look prompt, as both are processed in the same
    instant; so the cancel must also be fresh (sent within the grace before it is processed)
    and made within the grace of the press, both on the device's own clock.
    """
    if now - current.created_at > grace:
        return "cancel_too_late"  # paged for longer than the grace already
    pressed = current.device_ts
    if sent_at is None or pressed is None:
        return "cancel_stale"  # no device times to weigh it by
    if sent_at < pressed or sent_at - now > CANCEL_CLOCK_SKEW:
        return "cancel_stale"  # before the press on the same clock, or ahead of ours: wrong
    if sent_at - pressed > grace:
        return "cancel_too_late"
    if now - sent_at > grace:
        return "cancel_stale"  # sent long before it reached us
    return None


def on_status(
    online: bool, was_online: bool | None, active: dict[AlertKind, ActiveAlert]
) -> Decision:
    """A device's status (retained, and its Last Will): only a change means anything."""
    if not online:
        if was_online is False:
            return Nothing("already offline")
        return _raise(AlertKind.DEVICE_OFFLINE, active)
    current = active.get(AlertKind.DEVICE_OFFLINE)
    if current is not None and was_online is not True:
        return Record(current.id, "back_online")
    return Nothing("online")


def still_on(raised_by: str, events: Iterable[tuple[str, datetime]]) -> bool:
    """Is the condition an alarm event of type `raised_by` reported still on, by the device's
    events of that type and of its end (`LASTS_UNTIL`), in the order the gateway received
    them, each as (type, the device's own `ts`)? Asked when a suppression (a maintenance mute)
    that held its alert back ends: a leak muted for a plumber, still wet after, opens then.

    The end counts when it came after the latest alarm both as received and on the device's
    own clock: a `water.dry` delivered late, sent before the leak, does not end it. In doubt, it
    is on. An event type that has no end (a `tamper`) is a moment: False."""
    end = LASTS_UNTIL.get(raised_by)
    if end is None:
        return False
    on = False
    since: datetime | None = None  # the latest alarm on the device's clock, while on
    for type_, ts in events:
        if type_ == raised_by:
            on, since = True, ts if since is None else max(since, ts)
        elif type_ == end and on and since is not None and ts >= since:
            on, since = False, None
    return on
