"""Unit tests of the stateful rules' decisions and how they map onto alert decisions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from alerts.decisions import (
    Clear,
    Escalate,
    Note,
    Raise,
    SendCommand,
    Warn,
    to_alert_decision,
)
from alerts.model import PRIORITY, AlertKind, Priority, State
from alerts.rules import ActiveAlert, Join, Nothing, Open, Record

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone(timedelta(hours=8)))


def active(kind: AlertKind, id_: str = "al-1") -> dict[AlertKind, ActiveAlert]:
    return {kind: ActiveAlert(id_, kind, State.ACKNOWLEDGED, T0)}


@pytest.mark.parametrize("kind", list(AlertKind))
def test_raise_opens_with_the_kinds_priority_or_joins(kind: AlertKind) -> None:
    r = Raise("d-1", kind, "why", "detail")
    assert r.effective_priority == PRIORITY[kind]
    assert to_alert_decision(r, {}) == Open(kind, PRIORITY[kind])
    assert to_alert_decision(r, active(kind, "al-9")) == Join("al-9")
    other = next(k for k in AlertKind if k != kind)
    assert to_alert_decision(r, active(other)) == Open(kind, PRIORITY[kind])


def test_raise_may_carry_its_own_priority() -> None:
    r = Raise("d-1", AlertKind.WATER_RUNNING, "why", "detail", Priority.P1)
    assert to_alert_decision(r, {}) == Open(AlertKind.WATER_RUNNING, Priority.P1)


@pytest.mark.parametrize("signal", [Clear, Note])
def test_clear_and_note_are_recorded_on_the_active_alert(signal: type) -> None:
    s = signal("d-1", AlertKind.NO_WATER_USE, "water_used_again", "3 L")
    assert to_alert_decision(s, active(AlertKind.NO_WATER_USE, "al-3")) == Record(
        "al-3", "water_used_again"
    )
    nothing = to_alert_decision(s, active(AlertKind.GAS))
    assert isinstance(nothing, Nothing) and "water_used_again" in nothing.why


def test_escalate_records_why_or_opens() -> None:
    e = Escalate("gs-1", AlertKind.GAS, "valve_close_failed", "stuck")
    assert to_alert_decision(e, active(AlertKind.GAS, "al-g")) == Record(
        "al-g", "valve_close_failed"
    )
    assert to_alert_decision(e, {}) == Open(AlertKind.GAS, Priority.P1)


def test_warn_and_command_change_no_alert() -> None:
    w = Warn("gs-1", AlertKind.GAS, "lel_warning", "12 %LEL")
    c = SendCommand("gs-1", "valve-close-1", "valve.close")
    assert isinstance(to_alert_decision(w, active(AlertKind.GAS)), Nothing)
    assert isinstance(to_alert_decision(c, active(AlertKind.GAS)), Nothing)
