"""What the stateful rules (water, gas, device health) decide, for the gateway to apply.

The rules in `alerts.water`, `alerts.gas` and `alerts.health` keep a small state per device (or
per building) and know nothing of alert ids: they say *what happened* to a device. The gateway
turns that into alert changes with `to_alert_decision`, which gives the decisions of
`alerts.rules` (Open / Join / Record / Nothing), so one kind of alert is never opened twice for
a device.

- `Raise`: a condition that opens an alert began -> Open, or Join the active alert.
- `Clear`: the condition ended (water used again, gas under the line, back online) -> Record on
  the active alert; it never resolves the alert (a person does).
- `Note`: worth the alert's timeline (valve closed) -> Record on the active alert.
- `Warn`: over a warning level, under the alarm, or a device's clock wrong -> shown on the
  board; pages nobody.
- `SendCommand`: a command for a device (`valve.close`) -> publish it with this `command_id`.
- `Escalate`: the alert needs everyone now (the valve did not close) -> page every step at
  once, staff included.

`alerts.health` adds the outage decisions (`OutageOpened`, ...) of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from alerts.model import PRIORITY, AlertKind, Priority
from alerts.rules import ActiveAlert, Join, Nothing, Open, Record
from alerts.rules import Decision as AlertDecision


@dataclass(frozen=True, slots=True)
class Raise:
    """A condition that opens an alert of `kind` for `device_id` began.

    `reason` is a short code (`no_first_use`, `long_gap`, `fixed_window`, `continuous_flow`,
    `lel_alarm`, `co_alarm`, `co_sustained`, `silent`, `last_will`, `battery_pct`, ...);
    `detail` says it for a person: which rule fired, what was expected and what was seen.
    """

    device_id: str
    kind: AlertKind
    reason: str
    detail: str
    priority: Priority | None = None  # None: the kind's priority (alerts.model.PRIORITY)

    @property
    def effective_priority(self) -> Priority:
        return self.priority if self.priority is not None else PRIORITY[self.kind]


@dataclass(frozen=True, slots=True)
class Clear:
    """The condition behind an alert of `kind` ended (`why`: `water_used_again`,
    `flow_stopped`, `gas_below_alarm`, `back_online`, `battery_ok`, ...).

    Recorded on the active alert's timeline; the alert stays until a person resolves it.
    """

    device_id: str
    kind: AlertKind
    why: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Note:
    """Worth recording on the active alert of `kind`, if there is one (`valve_closed`, ...)."""

    device_id: str
    kind: AlertKind
    why: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Warn:
    """A reading over a warning level but under the alarm level, or a device whose clock cannot
    be right (`clock_skew`, alerts/readtime.py): for the board, no page."""

    device_id: str
    kind: AlertKind
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class SendCommand:
    """Publish a command to `device_id` (contract: `{"id": command_id, "ts", "type"}`).

    `command_id` is made by the rule from the device and the time, so the same decision
    applied twice names the same command; the device answers with a `command.result` event
    carrying it, which goes back to the rule (e.g. `gas.on_command_result`).
    """

    device_id: str
    command_id: str
    type: str


@dataclass(frozen=True, slots=True)
class Escalate:
    """The active alert of `kind` needs everyone now (`why`: `valve_close_failed`,
    `valve_close_no_answer`): page all its steps at once, jumping to staff, and record why.
    With no active alert of that kind, open one first (it is P1 for gas)."""

    device_id: str
    kind: AlertKind
    why: str
    detail: str = ""


Signal = Raise | Clear | Note | Warn | SendCommand | Escalate


def to_alert_decision(signal: Signal, active: Mapping[AlertKind, ActiveAlert]) -> AlertDecision:
    """The `alerts.rules` decision for a signal about a device whose active alerts are `active`.

    Raise -> Open (or Join the active alert of that kind); Clear and Note -> Record on the
    active alert (Nothing without one); Escalate -> Record `why` on the active alert (Open a
    new one when there is none; the gateway then pages all steps). Warn and SendCommand change
    no alert -> Nothing.
    """
    if isinstance(signal, Raise | Escalate):
        current = active.get(signal.kind)
        if current is not None:
            if isinstance(signal, Escalate):
                return Record(current.id, signal.why)
            return Join(current.id)
        prio = signal.effective_priority if isinstance(signal, Raise) else PRIORITY[signal.kind]
        return Open(signal.kind, prio)
    if isinstance(signal, Clear | Note):
        current = active.get(signal.kind)
        if current is None:
            return Nothing(f"{signal.why} with no active {signal.kind} alert")
        return Record(current.id, signal.why)
    if isinstance(signal, Warn):
        return Nothing(f"warning {signal.reason}: {signal.detail}")
    return Nothing(f"command {signal.type} for {signal.device_id}")
