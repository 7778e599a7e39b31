"""Unit tests of the alert side: lifecycle, rules (with an injected clock), escalation plans and
pager texts. Pure and fast: every `now` is a datetime built here.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from alerts import gas
from alerts.decisions import SendCommand
from alerts.escalation import (
    MAX_ACK_TIMEOUT_S,
    MAX_STEPS,
    MIN_ACK_TIMEOUT_S,
    Plan,
    PlanError,
    Step,
)
from alerts.model import (
    ACTIVE_STATES,
    CLOSED_STATES,
    PRIORITY,
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
from alerts.rules import (
    CLEARS,
    DEFAULT_CANCEL_GRACE,
    RAISES,
    ActiveAlert,
    Cancel,
    CancelPressed,
    Join,
    Nothing,
    Open,
    Record,
    on_event,
    on_status,
)
from alerts.text import (
    ASSIGN_NOTE_MAX_CHARS,
    KIND_LABEL,
    LANGUAGES,
    VALVE_AFTER,
    BuildingOutage,
    Valve,
    assigned_text,
    cancel_pressed_text,
    language,
    notice_text,
    outage_elder,
    page_note,
    page_text,
    reminder_text,
    valve_closed_text,
)
from devices.kinds import ALL_EVENT_TYPES, DeviceKind
from devices.payloads import (
    MAX_PAYLOAD_BYTES,
    NOTE_CUT_MARK,
    REPLY_NOTE_MAX_CHARS,
    Page,
    PageElder,
    Telemetry,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 8, 15, tzinfo=CST)

FAST = settings(max_examples=200, deadline=None, database=None)

# --------------------------------------------------------------------------------------------
# kinds, states, priorities
# --------------------------------------------------------------------------------------------


def test_contract_kinds_states_outcomes() -> None:
    assert {k.value for k in AlertKind} == {
        "call_button",
        "gas",
        "water_leak",
        "no_water_use",
        "water_running",
        "device_offline",
        "low_battery",
        "tamper",
    }
    assert {s.value for s in State} == {"open", "acknowledged", "on_site", "resolved", "cancelled"}
    assert {o.value for o in Outcome} == {"real", "false_alarm", "test", "device_fault"}
    assert {State.OPEN, State.ACKNOWLEDGED, State.ON_SITE} == ACTIVE_STATES
    assert {State.RESOLVED, State.CANCELLED} == CLOSED_STATES
    assert set(State) == ACTIVE_STATES | CLOSED_STATES


CONTRACT_PRIORITY = {
    "call_button": "P1",
    "gas": "P1",
    "water_leak": "P2",
    "no_water_use": "P2",
    "water_running": "P2",
    "device_offline": "P2",
    "tamper": "P2",
    "low_battery": "P3",
}


@pytest.mark.parametrize(("kind", "priority"), sorted(CONTRACT_PRIORITY.items()))
def test_priority_per_kind(kind: str, priority: str) -> None:
    assert PRIORITY[AlertKind(kind)] == Priority(priority)


def test_every_kind_has_a_priority() -> None:
    assert set(PRIORITY) == set(AlertKind)


# --------------------------------------------------------------------------------------------
# the state machine
# --------------------------------------------------------------------------------------------

OPN, ACK, ONS, RES, CAN = (
    State.OPEN,
    State.ACKNOWLEDGED,
    State.ON_SITE,
    State.RESOLVED,
    State.CANCELLED,
)
ILLEGAL = None

# (state, action) -> resulting state, or ILLEGAL. Every pair is listed.
TABLE: dict[tuple[State, Action], State | None] = {
    (OPN, Action.ACK): ACK,
    (OPN, Action.ARRIVE): ONS,
    (OPN, Action.RESOLVE): RES,
    (OPN, Action.CANCEL): CAN,
    (OPN, Action.WITHDRAW): ILLEGAL,  # nothing to withdraw
    (ACK, Action.ACK): ACK,  # someone else acknowledges too: harmless repeat
    (ACK, Action.ARRIVE): ONS,
    (ACK, Action.RESOLVE): RES,
    (ACK, Action.CANCEL): CAN,
    (ACK, Action.WITHDRAW): OPN,  # the acknowledger cannot go after all: paged again
    (ONS, Action.ACK): ONS,  # harmless repeat
    (ONS, Action.ARRIVE): ONS,  # harmless repeat
    (ONS, Action.RESOLVE): RES,
    (ONS, Action.CANCEL): ILLEGAL,  # no cancel once someone is there
    (ONS, Action.WITHDRAW): ILLEGAL,  # someone is with the elder: not open again
    (RES, Action.ACK): ILLEGAL,
    (RES, Action.ARRIVE): ILLEGAL,
    (RES, Action.RESOLVE): ILLEGAL,
    (RES, Action.CANCEL): ILLEGAL,
    (RES, Action.WITHDRAW): ILLEGAL,
    (CAN, Action.ACK): ILLEGAL,
    (CAN, Action.ARRIVE): ILLEGAL,
    (CAN, Action.RESOLVE): ILLEGAL,
    (CAN, Action.CANCEL): ILLEGAL,
    (CAN, Action.WITHDRAW): ILLEGAL,
}
REPEATS = {(ACK, Action.ACK), (ONS, Action.ACK), (ONS, Action.ARRIVE)}


def test_table_is_exhaustive() -> None:
    assert set(TABLE) == set(itertools.product(State, Action))
    assert len(TABLE) == len(State) * len(Action) == 25


@pytest.mark.parametrize(("state", "action"), sorted(TABLE), ids=lambda v: str(v))
def test_transition_table(state: State, action: Action) -> None:
    expected = TABLE[(state, action)]
    if expected is ILLEGAL:
        with pytest.raises(IllegalTransition) as info:
            transition(state, action)
        assert info.value.state == state
        assert info.value.action == action
        assert str(state) in str(info.value) and str(action) in str(info.value)
        return
    t = transition(state, action)
    assert t == Transition(state, expected)
    assert t.before == state and t.after == expected
    assert t.changed == ((state, action) not in REPEATS)
    assert t.changed == (state != expected)


@pytest.mark.parametrize("state", sorted(CLOSED_STATES))
def test_closed_is_final(state: State) -> None:
    for action in Action:
        with pytest.raises(IllegalTransition):
            transition(state, action)


def test_stops_paging() -> None:
    assert stops_paging(OPN) is False
    for state in (ACK, ONS, RES, CAN):
        assert stops_paging(state) is True


# The lifecycle as the contract tells it: open -> acknowledged -> on_site -> resolved, with forward
# skips allowed; open or acknowledged -> cancelled. The one step back: acknowledged -> open, an
# acknowledgement withdrawn (BACK); never back from on_site, never out of a closed state.
RANK = {OPN: 0, ACK: 1, ONS: 2, RES: 3, CAN: 3}
BACK = (ACK, OPN)
LIFECYCLE_EDGES = {
    (OPN, ACK),
    (OPN, ONS),
    (OPN, RES),
    (OPN, CAN),
    (ACK, ONS),
    (ACK, RES),
    (ACK, CAN),
    (ONS, RES),
    BACK,
}


def reachable_from_open() -> set[State]:
    seen, todo = {OPN}, [OPN]
    while todo:
        here = todo.pop()
        for a, b in LIFECYCLE_EDGES:
            if a == here and b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


@FAST
@given(st.lists(st.sampled_from(list(Action)), max_size=30))
def test_random_action_sequences_follow_the_lifecycle(actions: list[Action]) -> None:
    allowed = reachable_from_open()
    state = OPN
    closed_once = False
    for action in actions:
        try:
            t = transition(state, action)
        except IllegalTransition:
            assert (state, action) in {k for k, v in TABLE.items() if v is ILLEGAL}
            continue
        assert t.before == state
        if t.changed:
            assert (state, t.after) in LIFECYCLE_EDGES
        assert RANK[t.after] >= RANK[state] or (state, t.after) == BACK  # else never backwards
        assert not closed_once, "a closed alert moved"
        state = t.after
        assert state in allowed
        closed_once = state in CLOSED_STATES
    assert state in allowed


class AlertLifecycle(RuleBasedStateMachine):
    """A stateful model: the state machine seen through many answers from many people."""

    def __init__(self) -> None:
        super().__init__()
        self.state = OPN
        self.history = [OPN]

    @rule(action=st.sampled_from(list(Action)))
    def act(self, action: Action) -> None:
        try:
            t = transition(self.state, action)
        except IllegalTransition:
            assert self.state in CLOSED_STATES or (self.state, action) in {
                (ONS, Action.CANCEL),
                (OPN, Action.WITHDRAW),
                (ONS, Action.WITHDRAW),
            }
            return
        assert self.state not in CLOSED_STATES
        self.state = t.after
        self.history.append(t.after)

    @precondition(lambda self: self.state in CLOSED_STATES)
    @rule()
    def closed_stays_closed(self) -> None:
        for action in Action:
            with pytest.raises(IllegalTransition):
                transition(self.state, action)

    @invariant()
    def monotone(self) -> None:
        for before, after in itertools.pairwise(self.history):
            assert RANK[after] >= RANK[before] or (before, after) == BACK
        assert sum(s in CLOSED_STATES for s in self.history) <= 1
        assert self.state in reachable_from_open()


TestAlertLifecycle = AlertLifecycle.TestCase
TestAlertLifecycle.settings = settings(
    max_examples=60, stateful_step_count=15, deadline=None, database=None
)


# --------------------------------------------------------------------------------------------
# rules: events
# --------------------------------------------------------------------------------------------


def alert(
    kind: AlertKind,
    state: State = OPN,
    created: datetime = T0,
    id_: str = "al-1",
    device_ts: datetime | None = None,
) -> dict[AlertKind, ActiveAlert]:
    """One active alert; `device_ts` (the opening message's own time) defaults to `created`."""
    return {kind: ActiveAlert(id_, kind, state, created, device_ts or created)}


RAISING = [
    ("button.pressed", AlertKind.CALL_BUTTON, Priority.P1),
    ("gas.alarm", AlertKind.GAS, Priority.P1),
    ("water.leak", AlertKind.WATER_LEAK, Priority.P2),
    ("tamper", AlertKind.TAMPER, Priority.P2),
    ("battery.low", AlertKind.LOW_BATTERY, Priority.P3),
]


def test_raising_and_clearing_types_are_contract_event_types() -> None:
    assert set(RAISES) == {t for t, _, _ in RAISING}
    assert set(CLEARS) == {"button.cancelled", "gas.cleared", "water.dry"}
    assert set(RAISES) | set(CLEARS) | {"command.result"} == set(ALL_EVENT_TYPES)


@pytest.mark.parametrize(("etype", "kind", "priority"), RAISING)
def test_alarm_with_no_active_alert_opens(etype: str, kind: AlertKind, priority: Priority) -> None:
    assert on_event(etype, {}, T0) == Open(kind, priority)


@pytest.mark.parametrize("state", sorted(ACTIVE_STATES))
@pytest.mark.parametrize(("etype", "kind", "priority"), RAISING)
def test_alarm_with_an_active_alert_joins(
    etype: str, kind: AlertKind, priority: Priority, state: State
) -> None:
    active = alert(kind, state, T0 - timedelta(hours=3), "al-7")
    assert on_event(etype, active, T0) == Join("al-7")


@pytest.mark.parametrize(("etype", "kind", "priority"), RAISING)
def test_alarm_of_another_kind_does_not_join(
    etype: str, kind: AlertKind, priority: Priority
) -> None:
    others = {
        k: ActiveAlert(f"al-{k}", k, ACK, T0) for k in AlertKind if k != kind
    }  # every other kind has an active alert
    assert on_event(etype, others, T0) == Open(kind, priority)


GRACE = DEFAULT_CANCEL_GRACE


def test_default_grace_is_120_s() -> None:
    assert timedelta(seconds=120) == GRACE


@pytest.mark.parametrize("state", [OPN, ACK])
@pytest.mark.parametrize(
    "after",
    [timedelta(0), timedelta(seconds=1), timedelta(seconds=119, milliseconds=999), GRACE],
    ids=["0", "1s", "119.999s", "120s-boundary"],
)
def test_cancel_within_grace(state: State, after: timedelta) -> None:
    active = alert(AlertKind.CALL_BUTTON, state, T0, "al-c")
    now = T0 + after
    assert on_event("button.cancelled", active, now, sent_at=now) == cancel_within_grace(state)


def cancel_within_grace(state: State) -> Cancel | CancelPressed:
    """An open alert is cancelled; one someone has taken stays theirs, who are told."""
    return Cancel("al-c") if state == OPN else CancelPressed("al-c")


def test_a_cancel_within_grace_after_an_ack_does_not_cancel() -> None:
    active = alert(AlertKind.CALL_BUTTON, ACK, T0, "al-c", device_ts=T0)
    now = T0 + timedelta(seconds=5)
    assert on_event("button.cancelled", active, now, sent_at=now) == CancelPressed("al-c")
    # past the grace it is only recorded, as for an open alert
    late = T0 + GRACE + timedelta(seconds=1)
    assert on_event("button.cancelled", active, late, sent_at=late) == Record(
        "al-c", "cancel_too_late"
    )


@pytest.mark.parametrize("state", [OPN, ACK, ONS])
@pytest.mark.parametrize(
    "after",
    [GRACE + timedelta(milliseconds=1), GRACE + timedelta(seconds=1), timedelta(hours=5)],
    ids=["120.001s", "121s", "5h"],
)
def test_cancel_too_late(state: State, after: timedelta) -> None:
    active = alert(AlertKind.CALL_BUTTON, state, T0, "al-c")
    decision = on_event("button.cancelled", active, T0 + after, sent_at=T0 + after)
    if state == ONS:
        # once someone is there, a cancel is recorded; either reason keeps the alert as it is
        assert isinstance(decision, Record) and decision.alert_id == "al-c"
        assert decision.why in ("cancel_too_late", "cancel_after_arrival")
    else:
        assert decision == Record("al-c", "cancel_too_late")


@pytest.mark.parametrize(
    "after", [timedelta(0), timedelta(seconds=30), GRACE], ids=["0", "30s", "120s"]
)
def test_cancel_after_arrival(after: timedelta) -> None:
    active = alert(AlertKind.CALL_BUTTON, ONS, T0, "al-c")
    assert on_event("button.cancelled", active, T0 + after, sent_at=T0 + after) == Record(
        "al-c", "cancel_after_arrival"
    )


def test_cancel_grace_is_configurable() -> None:
    active = alert(AlertKind.CALL_BUTTON, OPN, T0, "al-c")
    grace = timedelta(seconds=30)
    now = T0 + timedelta(seconds=30)
    assert on_event("button.cancelled", active, now, grace, sent_at=now) == Cancel("al-c")
    late = now + timedelta(milliseconds=1)
    assert on_event("button.cancelled", active, late, grace, sent_at=late) == Record(
        "al-c", "cancel_too_late"
    )
    assert on_event("button.cancelled", active, late, sent_at=late) == Cancel("al-c")  # 120 s


def test_cancel_compares_instants_across_offsets() -> None:
    active = alert(AlertKind.CALL_BUTTON, OPN, T0, "al-c")  # created 08:15 +08:00
    utc_now = datetime(2026, 11, 23, 0, 17, tzinfo=UTC)  # 120 s later, in UTC
    assert on_event("button.cancelled", active, utc_now, sent_at=utc_now) == Cancel("al-c")
    late = utc_now + timedelta(microseconds=1000)
    assert on_event("button.cancelled", active, late, sent_at=late) == Record(
        "al-c", "cancel_too_late"
    )


# The press and its cancel both processed late (the gateway down, a backlog): the alert opens
# at `now`, so only the device's own times tell how long after the press the elder cancelled.
LATE = T0 + timedelta(minutes=10)  # when the gateway processes both
PRESSED = T0  # the press's own ts


@pytest.mark.parametrize("state", [OPN, ACK])
@pytest.mark.parametrize(
    ("after_press", "before_now"),
    [(timedelta(seconds=5), timedelta(0)), (GRACE, GRACE), (timedelta(0), timedelta(seconds=1))],
    ids=["5s-processed-at-once", "both-at-the-grace", "at-the-press"],
)
def test_fresh_cancel_within_grace_of_the_press_cancels(
    state: State, after_press: timedelta, before_now: timedelta
) -> None:
    sent = PRESSED + after_press
    active = alert(AlertKind.CALL_BUTTON, state, sent + before_now, "al-c", device_ts=PRESSED)
    now = sent + before_now
    assert on_event("button.cancelled", active, now, sent_at=sent) == cancel_within_grace(state)


def test_cancel_queued_behind_its_press_past_the_grace_is_too_late() -> None:
    # The bug: the gateway was down; the press (T0) and the cancel (T0 + 20 s, grace 15 s) are
    # processed in the same instant, so the alert looked 0 s old to the cancel.
    grace = timedelta(seconds=15)
    sent = PRESSED + timedelta(seconds=20)
    for now in (sent, sent + timedelta(seconds=5), LATE):
        active = alert(AlertKind.CALL_BUTTON, OPN, now, "al-c", device_ts=PRESSED)
        decision = on_event("button.cancelled", active, now, grace, sent_at=sent)
        assert decision == Record("al-c", "cancel_too_late")


@pytest.mark.parametrize(
    "late", [GRACE + timedelta(milliseconds=1), timedelta(minutes=10)], ids=["120.001s", "10min"]
)
def test_stale_cancel_processed_late_does_not_cancel(late: timedelta) -> None:
    # Pressed and cancelled 3 s apart, both sent long before the gateway processed them.
    sent = PRESSED + timedelta(seconds=3)
    now = sent + late
    active = alert(AlertKind.CALL_BUTTON, OPN, now, "al-c", device_ts=PRESSED)
    assert on_event("button.cancelled", active, now, sent_at=sent) == Record("al-c", "cancel_stale")


@pytest.mark.parametrize(
    "sent",
    [
        PRESSED - timedelta(milliseconds=1),  # before the press, on the same clock
        PRESSED - timedelta(days=365),
        T0 + timedelta(seconds=5) + timedelta(seconds=11),  # beyond the 10 s skew ahead of `now`
        T0 + timedelta(days=1),
    ],
    ids=["1ms-before-press", "a-year-before", "11s-ahead", "a-day-ahead"],
)
def test_cancel_with_a_wrong_clock_does_not_cancel(sent: datetime) -> None:
    now = T0 + timedelta(seconds=5)
    active = alert(AlertKind.CALL_BUTTON, OPN, T0, "al-c", device_ts=PRESSED)
    assert on_event("button.cancelled", active, now, sent_at=sent) == Record("al-c", "cancel_stale")


def test_cancel_slightly_ahead_of_the_gateway_clock_still_cancels() -> None:
    now = T0 + timedelta(seconds=5)
    active = alert(AlertKind.CALL_BUTTON, OPN, T0, "al-c", device_ts=PRESSED)
    sent = now + timedelta(seconds=10)  # the skew allowed
    assert on_event("button.cancelled", active, now, sent_at=sent) == Cancel("al-c")


def test_cancel_without_device_times_does_not_cancel() -> None:
    no_press_ts = {
        AlertKind.CALL_BUTTON: ActiveAlert("al-c", AlertKind.CALL_BUTTON, OPN, T0)
    }  # e.g. the press's message not found
    stale = Record("al-c", "cancel_stale")
    assert on_event("button.cancelled", no_press_ts, T0, sent_at=T0) == stale
    assert on_event("button.cancelled", alert(AlertKind.CALL_BUTTON, OPN, T0, "al-c"), T0) == stale


def test_cancel_on_site_is_recorded_whatever_its_times() -> None:
    active = alert(AlertKind.CALL_BUTTON, ONS, LATE, "al-c", device_ts=PRESSED)
    for sent in (PRESSED + timedelta(seconds=1), PRESSED - timedelta(days=1), None):
        assert on_event("button.cancelled", active, LATE, sent_at=sent) == Record(
            "al-c", "cancel_after_arrival"
        )


def test_cancel_with_no_active_alert() -> None:
    assert isinstance(on_event("button.cancelled", {}, T0), Nothing)
    # an active alert of another kind does not take the cancel
    assert isinstance(on_event("button.cancelled", alert(AlertKind.TAMPER), T0), Nothing)


@pytest.mark.parametrize(
    ("etype", "kind"), [("gas.cleared", AlertKind.GAS), ("water.dry", AlertKind.WATER_LEAK)]
)
def test_all_clear_records_on_the_active_alert(etype: str, kind: AlertKind) -> None:
    for state in ACTIVE_STATES:
        decision = on_event(etype, alert(kind, state, T0, "al-g"), T0 + timedelta(hours=1))
        assert decision == Record("al-g", etype)
    nothing = on_event(etype, {}, T0)
    assert isinstance(nothing, Nothing)
    assert etype in nothing.why
    assert isinstance(on_event(etype, alert(AlertKind.CALL_BUTTON), T0), Nothing)


def test_command_result_and_unknown_types_do_nothing() -> None:
    everything = {k: ActiveAlert(f"al-{k}", k, OPN, T0) for k in AlertKind}
    for active in ({}, everything):
        assert isinstance(on_event("command.result", active, T0), Nothing)
        assert isinstance(on_event("smoke.alarm", active, T0), Nothing)


# --------------------------------------------------------------------------------------------
# rules: status
# --------------------------------------------------------------------------------------------

OFFLINE = AlertKind.DEVICE_OFFLINE


@pytest.mark.parametrize("was_online", [True, None])
def test_offline_opens_device_offline(was_online: bool | None) -> None:
    assert on_status(False, was_online, {}) == Open(OFFLINE, Priority.P2)


def test_offline_when_already_offline_does_nothing() -> None:
    # a retained {"online": false} redelivered after a restart opens no new alert
    assert isinstance(on_status(False, False, {}), Nothing)
    assert isinstance(on_status(False, False, alert(OFFLINE, OPN, T0, "al-o")), Nothing)


@pytest.mark.parametrize("was_online", [True, None])
@pytest.mark.parametrize("state", sorted(ACTIVE_STATES))
def test_offline_with_active_offline_alert_joins(was_online: bool | None, state: State) -> None:
    assert on_status(False, was_online, alert(OFFLINE, state, T0, "al-o")) == Join("al-o")


def test_offline_ignores_alerts_of_other_kinds() -> None:
    active = alert(AlertKind.CALL_BUTTON, OPN, T0, "al-b")
    assert on_status(False, True, active) == Open(OFFLINE, Priority.P2)


@pytest.mark.parametrize("was_online", [False, None])
@pytest.mark.parametrize("state", sorted(ACTIVE_STATES))
def test_back_online_records(was_online: bool | None, state: State) -> None:
    assert on_status(True, was_online, alert(OFFLINE, state, T0, "al-o")) == Record(
        "al-o", "back_online"
    )


@pytest.mark.parametrize("was_online", [True, False, None])
def test_online_with_nothing_active(was_online: bool | None) -> None:
    assert isinstance(on_status(True, was_online, {}), Nothing)
    assert isinstance(on_status(True, was_online, alert(AlertKind.GAS)), Nothing)


def test_online_repeated_does_nothing() -> None:
    # a retained {"online": true} redelivered: not a change, nothing recorded again
    assert isinstance(on_status(True, True, {}), Nothing)


# --------------------------------------------------------------------------------------------
# escalation plans
# --------------------------------------------------------------------------------------------


def plan(*timeouts: int) -> Plan:
    return Plan(tuple(Step((f"r{n}a", f"r{n}b"), t) for n, t in enumerate(timeouts, 1)))


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((), "at least one step"),
        ((Step((), 30),), "step 1 names no responder"),
        ((Step(("a",), 30), Step((), 30)), "step 2 names no responder"),
        ((Step(("a", "b", "a"), 30),), "step 1 names a responder twice"),
        ((Step(("a",), MIN_ACK_TIMEOUT_S - 1),), "ack_timeout_s"),
        ((Step(("a",), 0),), "ack_timeout_s"),
        ((Step(("a",), -30),), "ack_timeout_s"),
        ((Step(("a",), MAX_ACK_TIMEOUT_S + 1),), "ack_timeout_s"),
        ((Step(("a",), 30), Step(("b",), 4)), "step 2"),
        (tuple(Step((f"r{i}",), 30) for i in range(MAX_STEPS + 1)), "at most 10 steps"),
    ],
    ids=[
        "no-steps",
        "empty-step",
        "empty-second-step",
        "duplicate",
        "timeout-4",
        "timeout-0",
        "timeout-negative",
        "timeout-86401",
        "second-step-timeout",
        "11-steps",
    ],
)
def test_plan_errors(steps: tuple[Step, ...], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        Plan(steps)


def test_plan_error_is_a_value_error() -> None:
    assert issubclass(PlanError, ValueError)


def test_plan_limits_accepted() -> None:
    assert (MIN_ACK_TIMEOUT_S, MAX_ACK_TIMEOUT_S, MAX_STEPS) == (5, 86_400, 10)
    Plan((Step(("a",), 5),))
    Plan((Step(("a",), 86_400),))
    ten = Plan(tuple(Step((f"r{i}",), 30) for i in range(10)))
    assert ten.last == 10
    # the same responder in two different steps is fine (e.g. the warden, again, later)
    Plan((Step(("warden",), 30), Step(("son", "warden"), 60)))


def test_step_and_after() -> None:
    p = plan(30, 45, 60)
    assert p.last == 3
    assert [p.step(n).ack_timeout_s for n in (1, 2, 3)] == [30, 45, 60]
    assert p.step(1).responder_ids == ("r1a", "r1b")
    for n in (4, 5, 100):
        assert p.step(n) == p.step(3)  # past the end: the last step repeats
    assert [p.after(n) for n in (1, 2, 3, 4, 50)] == [2, 3, 3, 3, 3]
    with pytest.raises(PlanError, match="start at 1"):
        p.step(0)
    with pytest.raises(PlanError):
        p.step(-1)


def test_single_step_plan_repeats_itself() -> None:
    p = plan(60)
    assert p.after(1) == 1
    assert p.step(2) == p.step(1)


def test_responder_ids() -> None:
    p = Plan((Step(("a", "b"), 30), Step(("b", "c"), 30)))
    assert p.responder_ids() == {"a", "b", "c"}


def test_plan_json_round_trip() -> None:
    p = Plan((Step(("w-1", "w-2"), 30), Step(("v-9",), 45), Step(("staff",), 60)))
    data = p.to_json()
    assert data == [
        {"responder_ids": ["w-1", "w-2"], "ack_timeout_s": 30},
        {"responder_ids": ["v-9"], "ack_timeout_s": 45},
        {"responder_ids": ["staff"], "ack_timeout_s": 60},
    ]
    assert Plan.from_json(json.loads(json.dumps(data))) == p
    assert Plan.from_json(p.to_json()).to_json() == data


def test_plan_from_json_validates() -> None:
    with pytest.raises(PlanError):
        Plan.from_json([])
    with pytest.raises(PlanError):
        Plan.from_json([{"responder_ids": ["a"], "ack_timeout_s": 1}])
    with pytest.raises(PlanError):
        Plan.from_json([{"responder_ids": [], "ack_timeout_s": 30}])
    # Shapes no API writes, found in a stored plan: a PlanError (which the paging turns into
    # the policy's plan), never another exception that would cost a press its page.
    for bad in (
        {"responder_ids": ["a"], "ack_timeout_s": 30},
        [1, 2],
        ["a"],
        [None],
        "steps",
        [{"responder_ids": "a", "ack_timeout_s": 30}],
        [{"responder_ids": ["a"], "ack_timeout_s": "30"}],
    ):
        with pytest.raises(PlanError):
            Plan.from_json(bad)  # type: ignore[arg-type]


@FAST
@given(
    st.lists(
        st.tuples(
            st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4, unique=True),
            st.integers(MIN_ACK_TIMEOUT_S, MAX_ACK_TIMEOUT_S),
        ),
        min_size=1,
        max_size=MAX_STEPS,
    )
)
def test_plan_round_trip_property(steps: list[tuple[list[str], int]]) -> None:
    p = Plan(tuple(Step(tuple(ids), t) for ids, t in steps))
    assert Plan.from_json(json.loads(json.dumps(p.to_json()))) == p
    for n in range(1, p.last + 3):
        assert 1 <= p.after(n) <= p.last
        assert p.after(n) == min(n + 1, p.last)
        assert p.step(n) == p.steps[min(n, p.last) - 1]


def page_times(p: Plan, start: datetime, horizon: timedelta) -> list[tuple[datetime, int]]:
    """The pages sent when nobody answers: (time, step), using only Plan.step / Plan.after."""
    now, step = start, 1
    pages = [(now, step)]
    while True:
        now = now + timedelta(seconds=p.step(step).ack_timeout_s)  # reply_by passes
        if now - start > horizon:
            return pages
        step = p.after(step)
        pages.append((now, step))


def test_escalation_timeline_when_nobody_answers() -> None:
    p = plan(30, 45, 60)
    pages = page_times(p, T0, timedelta(minutes=10))
    offsets = [(int((t - T0).total_seconds()), s) for t, s in pages]
    assert offsets[:3] == [(0, 1), (30, 2), (75, 3)]
    repeats = offsets[2:]
    # after 75 s, step 3 is paged again every 60 s until the 10 minutes are out
    assert repeats == [(75 + 60 * k, 3) for k in range(len(repeats))]
    assert repeats[-1][0] <= 600 < repeats[-1][0] + 60
    assert offsets == [(0, 1), (30, 2), *((s, 3) for s in range(75, 601, 60))]
    assert len(offsets) == 11
    # each page's reply_by is the next page's time
    for (t, s), (t_next, _) in itertools.pairwise(pages):
        assert t + timedelta(seconds=p.step(s).ack_timeout_s) == t_next


def test_decline_pages_the_next_step_at_once() -> None:
    p = plan(30, 45, 60)
    # a decline of step 1 at t=5 s: step 2 now, with its own timeout
    assert p.after(1) == 2
    declined_at = T0 + timedelta(seconds=5)
    reply_by = declined_at + timedelta(seconds=p.step(p.after(1)).ack_timeout_s)
    assert reply_by - T0 == timedelta(seconds=50)


# --------------------------------------------------------------------------------------------
# pager texts
# --------------------------------------------------------------------------------------------

NAME, ADDRESS, PHONE = "张奶奶", "幸福里3号楼2单元501", "13800138000"


def test_languages() -> None:
    assert LANGUAGES == ("zh-CN", "en")
    assert language("en") == "en"
    assert language("zh-CN") == "zh-CN"
    for other in (None, "", "fr", "EN", "zh", "zh-TW", "en-US"):
        assert language(other) == "zh-CN"
    for lang in LANGUAGES:
        assert set(KIND_LABEL[lang]) == set(AlertKind)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", list(AlertKind))
def test_page_text_has_everything(lang: str, kind: AlertKind) -> None:
    priority = PRIORITY[kind]
    text = page_text(lang, kind, priority, NAME, ADDRESS, PHONE, step=1)
    for part in (str(priority), KIND_LABEL[lang][kind], NAME, ADDRESS, PHONE):
        assert part in text
    assert "\n" not in text


def test_page_text_zh() -> None:
    text = page_text("zh-CN", AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE, 1)
    assert "P1" in text and "紧急呼叫" in text and "电话" in text
    assert "再次" not in text


def test_page_text_en() -> None:
    text = page_text("en", AlertKind.GAS, Priority.P1, "Mrs Li", "3 Elm St", PHONE, 2)
    assert text.startswith("P1 GAS ALARM")
    assert "Mrs Li" in text and "3 Elm St" in text and f"tel {PHONE}" in text
    assert "AGAIN" not in text


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("phone", [None, ""])
def test_page_text_without_phone(lang: str, phone: str | None) -> None:
    text = page_text(lang, AlertKind.WATER_LEAK, Priority.P2, NAME, ADDRESS, phone, 1)
    assert "None" not in text
    assert "电话" not in text and "tel" not in text
    assert NAME in text and ADDRESS in text and "P2" in text
    assert "  " not in text and ", ." not in text and ",." not in text


@pytest.mark.parametrize("lang", [None, "fr", "de-DE", ""])
def test_page_text_unknown_language_falls_back_to_zh(lang: str | None) -> None:
    text = page_text(lang, AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE, 1)
    assert text == page_text("zh-CN", AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE, 1)
    assert "紧急呼叫" in text


def test_page_text_repeat_marks_it() -> None:
    zh = page_text("zh-CN", AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE, 3, True)
    en = page_text("en", AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE, 3, repeat=True)
    assert "再次" in zh
    assert "AGAIN" in en
    for text in (zh, en):
        assert NAME in text and ADDRESS in text and PHONE in text and "P1" in text
    assert zh != page_text("zh-CN", AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE, 3)


def test_page_text_says_when_everyone_else_declined() -> None:
    # The staff paged after every decline learn that nobody else is coming; not "again".
    args = (AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE, 4, True)
    zh = page_text("zh-CN", *args, others_declined=True)
    en = page_text("en", *args, others_declined=True)
    # declines and withdrawals alike: the words fit both
    assert "（其他人均无法前往）" in zh and "再次" not in zh and NAME in zh and PHONE in zh
    assert "(NOBODY ELSE CAN COME)" in en and "AGAIN" not in en and en.startswith("P1 CALL BUTTON")
    assert "拒绝）" not in zh and "DECLINED" not in en


def test_a_page_about_a_device_says_which_device() -> None:
    gas, button = DeviceKind.GAS_SENSOR, DeviceKind.CALL_BUTTON
    zh = page_text(
        "zh-CN", AlertKind.DEVICE_OFFLINE, Priority.P2, NAME, ADDRESS, PHONE, 1, device=gas
    )
    en = page_text("en", AlertKind.LOW_BATTERY, Priority.P3, NAME, ADDRESS, PHONE, 1, device=button)
    assert "设备离线（燃气报警器）" in zh and "LOW BATTERY (call button)" in en
    again = reminder_text(
        "zh-CN",
        AlertKind.TAMPER,
        Priority.P2,
        NAME,
        ADDRESS,
        None,
        State.ACKNOWLEDGED,
        device=DeviceKind.WATER_SENSOR,
    )
    assert "设备被拆动（水表）" in again
    # an alert about the elder names no device, even when the caller knows it
    press = page_text(
        "zh-CN", AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE, 1, device=button
    )
    assert press == page_text("zh-CN", AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE, 1)


GAS_ARGS = (AlertKind.GAS, Priority.P1, NAME, ADDRESS, PHONE)


def test_a_gas_page_says_the_valve_did_not_close_before_anything_else() -> None:
    # The one who goes must shut the gas at the meter: said right after the label, so that a
    # pager screen cut short still shows it, also on a repeat and on a reminder.
    zh = page_text("zh-CN", *GAS_ARGS, 2, repeat=True, valve=Valve.NOT_CLOSED)
    en = page_text("en", *GAS_ARGS, 2, repeat=True, valve=Valve.NOT_CLOSED)
    assert zh.startswith("【P1 燃气报警】（阀门未关闭）（再次呼叫）") and NAME in zh and PHONE in zh
    assert en.startswith("P1 GAS ALARM (VALVE NOT CLOSED) (AGAIN): ") and ADDRESS in en
    declined = page_text("en", *GAS_ARGS, 3, valve=Valve.NOT_CLOSED, others_declined=True)
    assert declined.startswith("P1 GAS ALARM (VALVE NOT CLOSED) (NOBODY ELSE CAN COME): ")
    for lang, mark in (("zh-CN", "】（阀门未关闭）仍未处理"), ("en", " (VALVE NOT CLOSED), still")):
        for stage in (State.ACKNOWLEDGED, State.ON_SITE):
            text = reminder_text(lang, *GAS_ARGS, stage, valve=Valve.NOT_CLOSED)
            assert mark in text and NAME in text


def test_a_gas_page_says_the_valve_closed_and_nothing_when_unknown() -> None:
    zh = page_text("zh-CN", *GAS_ARGS, 1, valve=Valve.CLOSED)
    en = page_text("en", *GAS_ARGS, 1, valve=Valve.CLOSED)
    assert zh.startswith("【P1 燃气报警】（阀门已关闭）") and "未关闭" not in zh
    assert en.startswith("P1 GAS ALARM (VALVE CLOSED): ") and "NOT" not in en
    for lang in LANGUAGES:
        plain = page_text(lang, *GAS_ARGS, 1)
        assert "阀门" not in plain and "VALVE" not in plain
    # a valve is a gas alert's: another kind says nothing of one, even when told
    water = page_text("en", AlertKind.WATER_LEAK, Priority.P2, NAME, ADDRESS, PHONE, 1)
    assert water == page_text(
        "en", AlertKind.WATER_LEAK, Priority.P2, NAME, ADDRESS, PHONE, 1, valve=Valve.NOT_CLOSED
    )


def test_each_valve_outcome_of_the_gas_rule_reaches_the_page() -> None:
    # The gateway finds the valve by the reason the gas rule records (alerts/gas.py): a reason
    # renamed there must not leave the page silent.
    cfg = gas.GasConfig(valve_device_id="gs-1")
    body = {"id": "t1", "ts": T0.isoformat(), "lel_pct": 25.0}
    reading = Telemetry.model_validate_json(json.dumps(body))
    s, ds = gas.observe(gas.new_state("gs-1"), reading, T0, cfg)
    [cid] = [d.command_id for d in ds if isinstance(d, SendCommand)]
    _, [closed] = gas.on_command_result(s, cid, True, T0)
    _, [failed] = gas.on_command_result(s, cid, False, T0, "motor stuck")
    s, [silent] = gas.check(s, T0 + cfg.valve_timeout, cfg)
    _, [late] = gas.on_command_result(s, cid, True, T0 + 2 * cfg.valve_timeout)
    found = [VALVE_AFTER.get(d.why) for d in (closed, failed, silent, late)]  # type: ignore[union-attr]
    assert found == [Valve.CLOSED, Valve.NOT_CLOSED, Valve.NOT_CLOSED, Valve.CLOSED]


OUTAGE = BuildingOutage("幸福里3号楼", devices=4, homes=2)
OFFLINE_ARGS = (AlertKind.DEVICE_OFFLINE, Priority.P2, NAME, ADDRESS, PHONE)


def test_an_outage_page_says_building_devices_and_homes_not_one_elder() -> None:
    button = DeviceKind.CALL_BUTTON
    zh = page_text("zh-CN", *OFFLINE_ARGS, 1, device=button, outage=OUTAGE)
    en = page_text("en", *OFFLINE_ARGS, 1, device=button, outage=OUTAGE)
    assert zh == "【P2 楼栋断电/设备离线】幸福里3号楼 4台设备（2户） 请回复接单或拒绝"
    assert en == "P2 BUILDING OUTAGE: 4 devices in 2 homes, 幸福里3号楼. Reply ACK or DECLINE"
    # the elder it is filed under is one of the homes: naming them alone would mislead
    for text in (zh, en):
        assert NAME not in text and ADDRESS not in text and "呼叫器" not in text
    again = page_text("en", *OFFLINE_ARGS, 2, repeat=True, outage=OUTAGE)
    assert again.startswith("P2 BUILDING OUTAGE (AGAIN): 4 devices in 2 homes")
    one = page_text("en", *OFFLINE_ARGS, 1, outage=BuildingOutage("B1", devices=3, homes=1))
    assert "3 devices in 1 home, B1." in one
    zh_reminder = reminder_text("zh-CN", *OFFLINE_ARGS, State.ACKNOWLEDGED, outage=OUTAGE)
    en_reminder = reminder_text("en", *OFFLINE_ARGS, State.ON_SITE, outage=OUTAGE)
    assert zh_reminder.startswith("【提醒 P2 楼栋断电/设备离线】仍未处理：幸福里3号楼 4台设备")
    assert en_reminder.startswith("REMINDER P2 BUILDING OUTAGE, still open: 4 devices in 2 homes")
    # an outage is a device_offline alert's only
    gas_page = page_text("zh-CN", *GAS_ARGS, 1, outage=OUTAGE)
    assert gas_page == page_text("zh-CN", *GAS_ARGS, 1)


def test_an_outage_pages_elder_is_the_building_and_its_homes() -> None:
    # The home's address already names the building: kept as it is.
    home = "幸福里3号楼2单元301"
    assert outage_elder("zh-CN", OUTAGE, home) == ("楼栋断电/设备离线 2户", home)
    assert outage_elder("en", OUTAGE, home) == ("BUILDING OUTAGE, 2 homes", home)
    # A building's bare tag says nowhere to go: the street comes with it.
    one = BuildingOutage("B1", devices=3, homes=1)
    assert outage_elder("en", one, "幸福路8号") == ("BUILDING OUTAGE, 1 home", "B1 · 幸福路8号")
    assert outage_elder("fr", OUTAGE, home) == outage_elder("zh-CN", OUTAGE, home)


def test_the_valve_closed_notice_says_so_and_not_that_nobody_need_go() -> None:
    zh, en = valve_closed_text("zh-CN", NAME), valve_closed_text("en", NAME)
    assert zh == "【通知】张奶奶家燃气阀门现已关闭，燃气报警仍需处理"
    assert en == "NOTICE: 张奶奶's gas valve is now CLOSED; the gas alarm still needs handling"
    # the alarm stands: unlike the notice of an alert taken by someone else
    assert "无需前往" not in zh and "no need to go" not in en
    assert valve_closed_text(None, NAME) == zh


@pytest.mark.parametrize("lang", LANGUAGES)
def test_notice_acknowledged(lang: str) -> None:
    by = notice_text(lang, State.ACKNOWLEDGED, NAME, "王阿姨")
    anyone = notice_text(lang, State.ACKNOWLEDGED, NAME, None)
    assert NAME in by and "王阿姨" in by
    assert NAME in anyone and "None" not in anyone
    assert by != anyone
    if lang == "zh-CN":
        assert "已由王阿姨接单" in by and "已有人接单" in anyone
    else:
        assert "taken by 王阿姨" in by and "someone else" in anyone


# Names of 2 to 10 characters, of people and elders, as a station enters them.
NAMES = ("王芳", "手机互助员k", "Li Wei", "欧阳娜娜的女儿小红", "Zhang Xiuy")


@pytest.mark.parametrize("by", NAMES)
@pytest.mark.parametrize("elder", NAMES)
def test_each_notice_reads_as_one_sentence_whatever_the_names(by: str, elder: str) -> None:
    # "X的呼叫Y已接单" read as "the call to Y": the taker comes after 已由, after the call.
    zh = {s: notice_text("zh-CN", s, elder, by) for s in State}
    en = {s: notice_text("en", s, elder, by) for s in State}
    assert zh[State.ACKNOWLEDGED] == f"【通知】{elder}的呼叫已由{by}接单，您无需前往"
    assert zh[State.OPEN] == f"【通知】{by}无法前往，{elder}的呼叫重新待接单，如您能去请回复接单"
    assert zh[State.CANCELLED] == f"【通知】{elder}已取消呼叫（误按），您无需前往"
    assert zh[State.RESOLVED] == f"【通知】{elder}的告警已处理完毕"
    assert en[State.ACKNOWLEDGED] == f"NOTICE: {elder}'s alert was taken by {by}; no need to go"
    assert en[State.OPEN] == (
        f"NOTICE: {by} cannot go; {elder}'s alert is open again. Reply ACK if you can"
    )
    assert en[State.CANCELLED] == (
        f"NOTICE: {elder} cancelled the call (pressed by mistake); no need to go"
    )
    assert en[State.RESOLVED] == f"NOTICE: {elder}'s alert is resolved"
    for text in (*zh.values(), *en.values()):
        assert elder in text and "\n" not in text and "  " not in text
        assert by == elder or text.count(elder) == 1
    # nobody named: said in words, never "None"
    assert notice_text("zh-CN", State.ACKNOWLEDGED, elder, None) == (
        f"【通知】{elder}的呼叫已有人接单，您无需前往"
    )
    assert notice_text("en", State.OPEN, elder, None).startswith("NOTICE: The one who took it ")


ASSIGN_ARGS = (AlertKind.CALL_BUTTON, Priority.P1, NAME, ADDRESS, PHONE)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_an_assigned_persons_page_says_who_sent_them_and_their_note_not_again(lang: str) -> None:
    # Sent to an alert a staff member has taken: not a repeat of the step, and an ACK or a
    # DECLINE means "I go" / "I cannot" there (gateway/alerting.py `reply`), as the page asks.
    text = assigned_text(lang, *ASSIGN_ARGS, State.ACKNOWLEDGED, "站长老王", "请去看看")
    for part in ("P1", NAME, ADDRESS, PHONE, "站长老王", "请去看看"):
        assert part in text
    assert "再次" not in text and "AGAIN" not in text and "\n" not in text
    if lang == "zh-CN":
        assert text == (
            f"【P1 紧急呼叫】（站长老王指派您前往）{NAME} {ADDRESS} 电话{PHONE} 留言「请去看看」"
            " 已有人接单，您前往请回复接单，不能去请回复拒绝"
        )
    else:
        assert text == (
            f"P1 CALL BUTTON (ASSIGNED to you by 站长老王): {NAME}, {ADDRESS}, tel {PHONE}."
            ' Note: "请去看看". Someone has taken it; reply ACK if you go, DECLINE if you cannot'
        )
    # on an open alert an ACK takes it; with someone there, they say so
    open_ = assigned_text(lang, *ASSIGN_ARGS, State.OPEN, "站长老王", None)
    there = assigned_text(lang, *ASSIGN_ARGS, State.ON_SITE, "站长老王", None)
    assert open_.endswith("请回复接单或拒绝" if lang == "zh-CN" else ". Reply ACK or DECLINE")
    assert ("已有人在现场" if lang == "zh-CN" else "Someone is there") in there
    assert "留言" not in open_ and "Note" not in open_ and "None" not in open_
    # the same person sent again: then it says so
    again = assigned_text(lang, *ASSIGN_ARGS, State.OPEN, "站长老王", None, again=True)
    said = "站长老王再次指派" if lang == "zh-CN" else "(ASSIGNED AGAIN to you by 站长老王)"
    assert said in again
    # nobody named: the station, never "None"
    anon = assigned_text(lang, *ASSIGN_ARGS, State.OPEN, None, None)
    assert "None" not in anon and ("服务站指派" in anon or "by the station" in anon)


def test_an_assigners_note_is_cut_and_kept_on_one_line() -> None:
    # A page's note is cut (300 characters, ending in "…"), so a 1000-character note from the
    # board leaves the page within what a pager takes, with the longest names and address too.
    assert page_note(None) == "" and page_note("  ") == ""
    assert page_note("请去\n看看\t快") == "请去 看看 快"
    exact = "好" * ASSIGN_NOTE_MAX_CHARS
    assert ASSIGN_NOTE_MAX_CHARS == 300 < REPLY_NOTE_MAX_CHARS
    assert page_note(exact) == exact
    cut = page_note("好" * 1000)
    assert len(cut) == 300 and cut.endswith(NOTE_CUT_MARK) and cut[:-1] == "好" * 299
    for lang in LANGUAGES:
        text = assigned_text(lang, *ASSIGN_ARGS, State.OPEN, "站长老王", "好" * 1000)
        assert cut in text and "好" * 300 not in text
        # the longest an elder's name (100) and address (300) and an assigner's name (100) may
        # be, too (an exploring helper's page of 4,285 bytes had a 500-character note)
        name = "名" * 100
        longest = (name, "址" * 300, PHONE, State.OPEN, "站" * 100, "好" * 1000)
        page = Page(
            page_id="pg_1",
            alert_id="al_1",
            ts=T0,
            priority="P1",
            kind="call_button",
            elder=PageElder(name=name, address="址" * 300, phone=PHONE),
            text=assigned_text(lang, *ASSIGN_ARGS[:2], *longest),
            step=1,
            reply_by=T0,
        )
        assert len(page.model_dump_json().encode()) <= MAX_PAYLOAD_BYTES


@pytest.mark.parametrize("lang", LANGUAGES)
def test_notice_cancelled_and_resolved(lang: str) -> None:
    cancelled = notice_text(lang, State.CANCELLED, NAME, None)
    resolved = notice_text(lang, State.RESOLVED, NAME, "王阿姨")
    assert NAME in cancelled and NAME in resolved
    assert cancelled != resolved
    if lang == "zh-CN":
        assert "取消" in cancelled and "处理完毕" in resolved
        assert cancelled.startswith("【通知】")
    else:
        assert "cancelled" in cancelled and "resolved" in resolved
        assert cancelled.startswith("NOTICE")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_elder_pressed_cancel_notice_leaves_the_alert_to_its_reader(lang: str) -> None:
    text = cancel_pressed_text(lang, NAME, "13800000000")
    assert NAME in text and "13800000000" in text
    assert "无需前往" not in text and "no need to go" not in text
    if lang == "zh-CN":
        assert text.startswith("【通知】") and "取消" in text and "继续前往" in text
    else:
        assert text.startswith("NOTICE") and "CANCEL" in text and "keep going" in text
    no_phone = cancel_pressed_text(lang, NAME, None)
    assert "None" not in no_phone and "电话" not in no_phone and "tel" not in no_phone
    assert cancel_pressed_text("fr", NAME, None) == cancel_pressed_text("zh-CN", NAME, None)


@pytest.mark.parametrize("lang", [None, "fr"])
def test_notice_unknown_language_falls_back_to_zh(lang: str | None) -> None:
    for state in (State.ACKNOWLEDGED, State.CANCELLED, State.RESOLVED):
        assert notice_text(lang, state, NAME, None) == notice_text("zh-CN", state, NAME, None)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_notice_open_again_when_the_acknowledger_cannot_go(lang: str) -> None:
    # Those told "someone took it, no need to go" must learn that nobody is coming now.
    by = notice_text(lang, State.OPEN, NAME, "王阿姨")
    anyone = notice_text(lang, State.OPEN, NAME, None)
    assert NAME in by and "王阿姨" in by
    assert NAME in anyone and "None" not in anyone
    if lang == "zh-CN":
        assert by.startswith("【通知】") and "无法前往" in by and "重新待接单" in by
        assert "无需前往" not in by
    else:
        assert by.startswith("NOTICE") and "cannot go" in by and "open again" in by
        assert "no need to go" not in by
    assert notice_text("fr", State.OPEN, NAME, None) == notice_text("zh-CN", State.OPEN, NAME, None)


def test_notice_other_states_name_the_state() -> None:
    assert "on_site" in notice_text("en", State.ON_SITE, NAME, None)
    assert "on_site" in notice_text("zh-CN", State.ON_SITE, NAME, None)
