"""The alert lifecycle: kinds, priorities, states, and a state machine that refuses
impossible moves.

open -> acknowledged -> on_site -> resolved; open or acknowledged -> cancelled (the elder's
own cancel, within the grace window). resolved and cancelled are final. The one way back:
acknowledged -> open, when the person who took the alert withdraws (declines after all).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AlertKind(StrEnum):
    CALL_BUTTON = "call_button"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    NO_WATER_USE = "no_water_use"
    WATER_RUNNING = "water_running"
    DEVICE_OFFLINE = "device_offline"
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


PRIORITY: dict[AlertKind, Priority] = {
    AlertKind.CALL_BUTTON: Priority.P1,
    AlertKind.GAS: Priority.P1,
    AlertKind.WATER_LEAK: Priority.P2,
    AlertKind.NO_WATER_USE: Priority.P2,
    AlertKind.WATER_RUNNING: Priority.P2,
    AlertKind.DEVICE_OFFLINE: Priority.P2,
    AlertKind.TAMPER: Priority.P2,
    AlertKind.LOW_BATTERY: Priority.P3,
}


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


ACTIVE_STATES: frozenset[State] = frozenset({State.OPEN, State.ACKNOWLEDGED, State.ON_SITE})
CLOSED_STATES: frozenset[State] = frozenset({State.RESOLVED, State.CANCELLED})


class Outcome(StrEnum):
    REAL = "real"
    FALSE_ALARM = "false_alarm"
    TEST = "test"
    DEVICE_FAULT = "device_fault"


class Action(StrEnum):
    ACK = "ack"
    ARRIVE = "arrive"
    RESOLVE = "resolve"
    CANCEL = "cancel"
    # The acknowledger declines after all: nobody is coming, so the alert is open (paged) again.
    # Not once on site: the person is with the elder, and only a resolution ends that.
    WITHDRAW = "withdraw"


# The moves that change state. A move not listed is either a repeat that changes nothing
# (an ack of an alert already acknowledged: someone else is coming too) or impossible.
_MOVES: dict[State, dict[Action, State]] = {
    State.OPEN: {
        Action.ACK: State.ACKNOWLEDGED,
        Action.ARRIVE: State.ON_SITE,
        Action.RESOLVE: State.RESOLVED,
        Action.CANCEL: State.CANCELLED,
    },
    State.ACKNOWLEDGED: {
        Action.ARRIVE: State.ON_SITE,
        Action.RESOLVE: State.RESOLVED,
        Action.CANCEL: State.CANCELLED,
        Action.WITHDRAW: State.OPEN,
    },
    State.ON_SITE: {Action.RESOLVE: State.RESOLVED},
    State.RESOLVED: {},
    State.CANCELLED: {},
}

# Repeats that are harmless and recorded, not refused.
_REPEATS: dict[State, frozenset[Action]] = {
    State.ACKNOWLEDGED: frozenset({Action.ACK}),
    State.ON_SITE: frozenset({Action.ACK, Action.ARRIVE}),
}


class IllegalTransition(Exception):
    """An impossible move, e.g. acknowledging a resolved alert or cancelling once on site."""

    def __init__(self, state: State, action: Action) -> None:
        super().__init__(f"cannot {action} an alert that is {state}")
        self.state = state
        self.action = action


@dataclass(frozen=True, slots=True)
class Transition:
    before: State
    after: State

    @property
    def changed(self) -> bool:
        return self.before != self.after


def transition(state: State, action: Action) -> Transition:
    """The state after `action`; raises IllegalTransition for an impossible move."""
    after = _MOVES[state].get(action)
    if after is not None:
        return Transition(state, after)
    if action in _REPEATS.get(state, frozenset()):
        return Transition(state, state)
    raise IllegalTransition(state, action)


def stops_paging(state: State) -> bool:
    """Paging goes on only while an alert is open: any answer stops every pending page."""
    return state != State.OPEN
