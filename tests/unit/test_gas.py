"""Unit tests of the gas telemetry rules: levels, hysteresis, CO dose, the valve and its answer,
and the state's JSON form. Every time is a datetime built here."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import gas, readtime
from alerts.decisions import Clear, Escalate, Note, Raise, SendCommand, Warn
from alerts.model import AlertKind
from devices.payloads import Telemetry

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 18, 0, tzinfo=CST)
STEP = timedelta(minutes=1)
FAST = settings(max_examples=200, deadline=None, database=None)
CFG = gas.GasConfig()
VALVE = gas.GasConfig(valve_device_id="gs-1")


def reading(i: int, lel: float | None = None, co: float | None = None) -> Telemetry:
    body: dict[str, object] = {"id": f"t{i}", "ts": (T0 + i * STEP).isoformat()}
    if lel is not None:
        body["lel_pct"] = lel
    if co is not None:
        body["co_ppm"] = co
    return Telemetry.model_validate_json(json.dumps(body))


def feed(
    values: list[tuple[float | None, float | None]],
    cfg: gas.GasConfig = CFG,
    state: gas.GasState | None = None,
    start: int = 0,
) -> tuple[gas.GasState, list[list[object]]]:
    s = state or gas.new_state("gs-1")
    out = []
    for i, (lel, co) in enumerate(values, start):
        s, d = gas.observe(s, reading(i, lel, co), T0 + i * STEP, cfg)
        out.append(d)
    return s, out


def flat(decisions: list[list[object]]) -> list[object]:
    return [d for ds in decisions for d in ds]


def kinds(decisions: list[list[object]], t: type) -> list[object]:
    return [d for d in flat(decisions) if isinstance(d, t)]


# --- levels and hysteresis -------------------------------------------------------------------


def test_defaults_documented() -> None:
    assert (gas.LEL.warn, gas.LEL.alarm, gas.LEL.alarm - gas.LEL.alarm_band) == (10, 20, 15)
    assert (gas.CO.warn, gas.CO.alarm, gas.CO.alarm - gas.CO.alarm_band) == (50, 150, 100)
    assert CFG.clear_after == 3 and CFG.co_sustained == timedelta(minutes=60)


def test_lel_warns_then_alarms_once_then_clears_after_three_low_readings() -> None:
    s, out = feed([(2, None), (12, None), (19.9, None), (20, None), (30, None)])
    assert isinstance(out[1][0], Warn) and out[1][0].reason == "lel_warning"
    assert out[2] == []
    assert len(out[3]) == 1 and isinstance(out[3][0], Raise)
    r = out[3][0]
    assert (r.kind, r.reason, r.device_id) == (AlertKind.GAS, "lel_alarm", "gs-1")
    assert "20" in r.detail and "%LEL" in r.detail
    assert out[4] == []
    # 16 is under the alarm, but not under the clearing line (15): no clear
    s, out = feed([(16, None)] * 10, state=s, start=5)
    assert flat(out) == []
    s, out = feed(
        [(14, None), (14, None), (16, None), (14, None), (14, None), (14, None)], state=s, start=15
    )
    assert flat(out[:5]) == []  # the 16 restarted the count
    assert len(out[5]) == 1 and isinstance(out[5][0], Clear)
    assert out[5][0].why == "gas_below_alarm" and out[5][0].kind == AlertKind.GAS
    assert s.lel.level == gas.WARNING and not s.alarmed


def test_a_reading_hovering_at_the_line_raises_once() -> None:
    hovering = [(v, None) for v in [19, 21, 18, 20.5, 17, 22, 19.5, 20, 16, 21] * 6]
    naive = sum(1 for a, b in pairwise(hovering) if a[0] < 20 <= b[0])  # type: ignore[operator]
    assert naive > 10
    _, out = feed(hovering)
    assert len(kinds(out, Raise)) == 1
    assert kinds(out, Clear) == []


def test_co_alarm_at_once_or_by_dose() -> None:
    _, out = feed([(None, 40), (None, 160)])
    assert [d.reason for d in kinds(out, Raise)] == ["co_alarm"]  # type: ignore[attr-defined]
    # 70 ppm for an hour: a warning, then the dose makes it an alarm
    s, out = feed([(None, 70)] * 62)
    warns, raises = kinds(out, Warn), kinds(out, Raise)
    assert len(warns) == 1 and len(raises) == 1
    assert raises[0].reason == "co_sustained"  # type: ignore[attr-defined]
    when = next(i for i, ds in enumerate(out) if any(isinstance(d, Raise) for d in ds))
    assert when == 60  # minute 60 after the warning began at minute 0
    # an alarm raised by dose clears under the warning line (35), not under 100
    s, out = feed([(None, 60)] * 5, state=s, start=62)
    assert kinds(out, Clear) == []
    s, out = feed([(None, 30)] * 3, state=s, start=67)
    assert len(kinds(out, Clear)) == 1


def test_no_dose_rule_when_switched_off() -> None:
    cfg = gas.GasConfig(co_sustained=None)
    _, out = feed([(None, 70)] * 200, cfg)
    assert kinds(out, Raise) == []


def co_at(minutes: list[tuple[int, float]]) -> list[list[object]]:
    """CO readings at the given minutes (from T0), each judged when it was taken."""
    s, out = gas.new_state("gs-1"), []
    for m, ppm in minutes:
        body = {"id": f"c{m}", "ts": (T0 + m * STEP).isoformat(), "co_ppm": ppm}
        s, ds = gas.observe(s, Telemetry.model_validate_json(json.dumps(body)), T0 + m * STEP, CFG)
        out.append(ds)
    return out


@pytest.mark.parametrize(
    "readings",
    [
        # found by exploratory testing: both paged P1 and closed the valve, CO well under 50
        [(0, 55), (30, 55), (61, 10), (65, 10)],
        [(0, 50)] + [(m, 40) for m in range(5, 120, 5)],
        # a dip into the band restarts the hour; 55 again for 59 min is not 60
        [(0, 55), (30, 45), (31, 55), (90, 55)],
    ],
)
def test_the_co_dose_needs_every_reading_of_the_hour_at_the_warning_level(
    readings: list[tuple[int, float]],
) -> None:
    assert kinds(co_at(readings), Raise) == []


def test_the_co_dose_counts_the_hour_from_the_last_dip() -> None:
    out = co_at([(0, 55), (30, 45), (31, 55), (60, 55), (91, 55)])
    [r] = kinds(out, Raise)
    assert r.reason == "co_sustained" and "now 55 ppm" in r.detail  # type: ignore[attr-defined]
    assert r in out[-1]  # at minute 91, an hour after the 55 that followed the dip


def test_two_channels_one_episode() -> None:
    s, out = feed([(25, 10), (25, 200), (25, 200)])
    assert len(kinds(out, Raise)) == 1
    notes = kinds(out, Note)
    assert [n.why for n in notes] == ["co_alarm"]  # type: ignore[attr-defined]
    # lel clears, co still in alarm: no clear yet
    s, out = feed([(5, 200)] * 4, state=s, start=3)
    assert kinds(out, Clear) == []
    s, out = feed([(5, 20)] * 3, state=s, start=7)
    assert len(kinds(out, Clear)) == 1


def test_old_or_unrelated_readings_change_nothing() -> None:
    s, _ = feed([(25, None)])
    same, out = gas.observe(s, reading(-1, 1), T0 + STEP, CFG)  # older than the last, low
    assert out == [] and same == s
    body = {"id": "x", "ts": (T0 + 5 * STEP).isoformat(), "battery_pct": 50}
    same, out = gas.observe(s, Telemetry.model_validate_json(json.dumps(body)), T0, CFG)
    assert out == [] and same == s


def test_levels_and_config_are_checked() -> None:
    with pytest.raises(ValueError):
        gas.Levels(warn=20, alarm=10, warn_band=1, alarm_band=1, unit="%LEL")
    with pytest.raises(ValueError):
        gas.Levels(warn=10, alarm=20, warn_band=0, alarm_band=1, unit="%LEL")
    with pytest.raises(ValueError):
        gas.GasConfig(clear_after=0)


@FAST
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=80))
def test_raise_and_clear_alternate(values: list[float]) -> None:
    _, out = feed([(v, None) for v in values])
    seq = [type(d).__name__ for d in flat(out) if isinstance(d, Raise | Clear)]
    assert all(a != b for a, b in pairwise(seq))
    assert not seq or seq[0] == "Raise"


@FAST
@given(
    st.lists(
        st.floats(min_value=gas.LEL.alarm - gas.LEL.alarm_band, max_value=60, allow_nan=False),
        min_size=1,
        max_size=80,
    )
)
def test_readings_within_the_band_never_flap(values: list[float]) -> None:
    # once in alarm, anything at or over the clearing line keeps it: at most one raise, no clear
    _, out = feed([(25.0, None)] + [(v, None) for v in values])
    assert len(kinds(out, Raise)) == 1
    assert kinds(out, Clear) == []


# --- the valve -------------------------------------------------------------------------------


def test_alarm_closes_the_valve_once_per_episode() -> None:
    s, out = feed([(25, None), (30, None), (28, 200)], VALVE)
    cmds = kinds(out, SendCommand)
    assert len(cmds) == 1
    cmd = cmds[0]
    assert (cmd.device_id, cmd.type) == ("gs-1", "valve.close")  # type: ignore[attr-defined]
    assert 1 <= len(cmd.command_id) <= 64  # type: ignore[attr-defined]
    assert s.valve is not None and s.valve.status == "pending"
    assert s.valve.command_id == cmd.command_id  # type: ignore[attr-defined]
    # no valve, no command
    _, out = feed([(25, None)])
    assert kinds(out, SendCommand) == []


def test_valve_closed_is_recorded() -> None:
    s, out = feed([(25, None)], VALVE)
    cid = kinds(out, SendCommand)[0].command_id  # type: ignore[attr-defined]
    s, ds = gas.on_command_result(s, cid, True, T0 + 10 * STEP)
    assert ds == [Note("gs-1", AlertKind.GAS, "valve_closed", "valve gs-1 closed")]
    assert s.valve is not None and s.valve.status == "closed"
    # a repeat of the answer changes nothing; neither does the timeout any more
    again, ds = gas.on_command_result(s, cid, True, T0 + 11 * STEP)
    assert ds == [] and again == s
    assert gas.check(s, T0 + timedelta(hours=1), VALVE)[1] == []


def test_valve_failure_escalates() -> None:
    s, out = feed([(25, None)], VALVE)
    cid = kinds(out, SendCommand)[0].command_id  # type: ignore[attr-defined]
    s, ds = gas.on_command_result(s, cid, False, T0 + 5 * STEP, "motor stuck")
    assert len(ds) == 1 and isinstance(ds[0], Escalate)
    assert (ds[0].kind, ds[0].why) == (AlertKind.GAS, "valve_close_failed")
    assert "motor stuck" in ds[0].detail
    assert gas.check(s, T0 + timedelta(hours=1), VALVE)[1] == []  # no second escalation


def test_valve_without_answer_escalates_after_the_timeout() -> None:
    s, _ = feed([(25, None)], VALVE)
    sent = T0
    assert gas.check(s, sent + VALVE.valve_timeout - timedelta(seconds=1), VALVE)[1] == []
    s, ds = gas.check(s, sent + VALVE.valve_timeout, VALVE)
    assert len(ds) == 1 and isinstance(ds[0], Escalate) and ds[0].why == "valve_close_no_answer"
    assert gas.check(s, sent + 2 * VALVE.valve_timeout, VALVE)[1] == []  # once
    assert s.valve is not None
    s, ds = gas.on_command_result(s, s.valve.command_id, True, sent + timedelta(minutes=5))
    assert len(ds) == 1 and isinstance(ds[0], Note) and ds[0].why == "valve_closed_late"


def test_a_close_that_failed_then_succeeded_is_closed_and_said_so() -> None:
    """The valve retried the close it failed and it closed: its success is the truth, told
    as a late close (those paged that it had not closed hear it); said again, nothing more."""
    s, out = feed([(25, None)], VALVE)
    cid = kinds(out, SendCommand)[0].command_id  # type: ignore[attr-defined]
    s, ds = gas.on_command_result(s, cid, False, T0 + STEP, "stuck", T0 + STEP)
    assert [type(d) for d in ds] == [Escalate]
    s, ds = gas.on_command_result(s, cid, True, T0 + 2 * STEP, "retried", T0 + 2 * STEP)
    assert ds == [Note("gs-1", AlertKind.GAS, "valve_closed_late", "valve gs-1 closed (retried)")]
    assert s.valve is not None and s.valve.status == "closed"
    assert s.alarmed  # still the gas alarm it was
    assert gas.GasState.from_json(json.loads(json.dumps(s.to_json()))) == s
    again, ds = gas.on_command_result(s, cid, True, T0 + 3 * STEP, None, T0 + 3 * STEP)
    assert ds == [] and again == s
    assert gas.check(s, T0 + timedelta(hours=1), VALVE)[1] == []


def test_a_valve_follows_its_latest_answer_by_the_valves_own_time() -> None:
    s, out = feed([(25, None)], VALVE)
    cid = kinds(out, SendCommand)[0].command_id  # type: ignore[attr-defined]
    t1, t2, t3 = T0 + STEP, T0 + 2 * STEP, T0 + 3 * STEP
    s, _ = gas.on_command_result(s, cid, False, t1, "stuck", t1)
    s, _ = gas.on_command_result(s, cid, True, t2, None, t2)
    # the first failure delivered again, late: older than the success, it is left out
    same, ds = gas.on_command_result(s, cid, False, t3, "stuck", t1)
    assert ds == [] and same == s
    # so is one stamped the same as the success (a retrying device stops at its success)
    same, ds = gas.on_command_result(s, cid, False, t3, "stuck", t2)
    assert ds == [] and same == s
    # a failure stamped after the success: the valve is not closed again, on the safe side
    s, ds = gas.on_command_result(s, cid, False, t3 + STEP, "reopened", t3)
    assert [(type(d), d.why) for d in ds] == [(Escalate, "valve_close_failed")]  # type: ignore[attr-defined]
    assert s.valve is not None and s.valve.status == "failed"
    # a success older than that failure, arriving after it, is stale too
    same, ds = gas.on_command_result(s, cid, True, t3 + 2 * STEP, None, t2 + STEP / 2)
    assert ds == [] and same == s
    # a valve whose clock cannot be right (reset to 2020) is judged by arrival
    s, ds = gas.on_command_result(s, cid, True, t3 + 3 * STEP, None, T0.replace(year=2020))
    assert [type(d) for d in ds] == [Note] and s.valve is not None
    assert (s.valve.status, s.valve.answered_at) == ("closed", t3 + 3 * STEP)


def test_a_valve_closed_in_a_state_kept_before_answered_at_is_not_reopened_by_a_failure() -> None:
    """A state stored before `answered_at` was kept: when it closed is unknown, so no failure
    (a redelivered stale one above all) can be ordered after its success."""
    s, out = feed([(25, None)], VALVE)
    cid = kinds(out, SendCommand)[0].command_id  # type: ignore[attr-defined]
    d = json.loads(json.dumps(s.to_json()))
    d["valve"]["status"] = "closed"
    del d["valve"]["answered_at"]
    old = gas.GasState.from_json(d)
    assert old.valve is not None and old.valve.answered_at is None
    t = T0 + 10 * STEP
    for stamp in (T0 + STEP, t):
        same, ds = gas.on_command_result(old, cid, False, t, "stuck", stamp)
        assert ds == [] and same == old


def test_a_failure_whose_clock_cannot_be_right_does_not_reopen_a_closed_valve() -> None:
    """A failure delivered more than `late_max` late is timed at its receipt, after the
    success: it must not reopen the valve. A success so timed still closes one (safe side)."""
    s, out = feed([(25, None)], VALVE)
    cid = kinds(out, SendCommand)[0].command_id  # type: ignore[attr-defined]
    t1, t2 = T0 + STEP, T0 + 2 * STEP
    s, _ = gas.on_command_result(s, cid, False, t1, "stuck", t1)
    s, _ = gas.on_command_result(s, cid, True, t2, None, t2)
    day_late = t1 + readtime.LATE_MAX + STEP
    same, ds = gas.on_command_result(s, cid, False, day_late, "stuck", t1)
    assert ds == [] and same == s
    failed, _ = gas.on_command_result(s, cid, False, t2 + STEP, "reopened", t2 + STEP)
    assert failed.valve is not None and failed.valve.status == "failed"
    late_ok, ds = gas.on_command_result(failed, cid, True, day_late, None, t1)
    assert [type(d) for d in ds] == [Note] and late_ok.valve is not None
    assert late_ok.valve.status == "closed"


def test_unknown_command_result_is_ignored() -> None:
    s, _ = feed([(25, None)], VALVE)
    same, ds = gas.on_command_result(s, "selftest-1", False, T0 + STEP)
    assert ds == [] and same == s


def test_device_alarm_closes_the_valve_and_telemetry_joins_the_episode() -> None:
    s = gas.new_state("gs-1")
    s, ds = gas.on_device_alarm(s, T0, VALVE)
    assert len(ds) == 1 and isinstance(ds[0], SendCommand)
    s, ds = gas.on_device_alarm(s, T0 + STEP, VALVE)
    assert ds == []  # once per episode
    s, out = feed([(30, None)], VALVE, s, start=2)
    assert kinds(out, Raise) == []  # the event opened the alert already
    assert [n.why for n in kinds(out, Note)] == ["lel_alarm"]  # type: ignore[attr-defined]
    s, out = feed([(1, None)] * 3, VALVE, s, start=3)
    assert kinds(out, Clear) == []  # the device itself has not cleared yet
    s, _ = gas.on_device_cleared(s, T0 + 10 * STEP, VALVE)
    assert not s.alarmed and not s.device_alarm
    # a new episode closes the valve again
    s, out = feed([(30, None)], VALVE, s, start=11)
    assert len(kinds(out, Raise)) == 1 and len(kinds(out, SendCommand)) == 1


def test_after_its_alert_is_closed_a_device_alarm_closes_the_valve_again() -> None:
    s, ds = gas.on_device_alarm(gas.new_state("gs-1"), T0, VALVE)
    [first] = ds
    s, _ = gas.on_command_result(s, first.command_id, True, T0 + STEP)  # type: ignore[attr-defined]
    s, ds = gas.on_device_alarm(s, T0 + 2 * STEP, VALVE)
    assert ds == []  # the same episode: its alert is still open, the valve closed
    # People resolved the alert; the sensor never sent gas.cleared. The next alarm opens a new
    # alert, and the valve (perhaps opened again by hand) is closed again.
    s = gas.new_episode(s)
    assert not s.alarmed and not s.device_alarm and s.valve is None
    s, ds = gas.on_device_alarm(s, T0 + 30 * STEP, VALVE)
    [again] = ds
    assert isinstance(again, SendCommand) and again.type == "valve.close"
    assert again.command_id != first.command_id  # type: ignore[attr-defined]


def test_a_channel_still_in_alarm_after_its_alert_is_closed_raises_again() -> None:
    s, out = feed([(25, None), (26, None)], VALVE)
    assert len(kinds(out, Raise)) == 1 and len(kinds(out, SendCommand)) == 1
    s = gas.new_episode(s)  # resolved by a person while the sensor still reads 26 %LEL
    assert s.lel.level == gas.NORMAL and s.lel.last == 26
    s2, out = feed([(25, None)], VALVE, s, start=2)
    assert len(kinds(out, Raise)) == 1 and len(kinds(out, SendCommand)) == 1
    assert s2.alarmed and s2.valve is not None
    # under the alarm level but over the warning: a warning for the board, not an alert
    _, out = feed([(17, None)], VALVE, s, start=2)
    assert kinds(out, Raise) == [] and len(kinds(out, Warn)) == 1
    # a CO channel that is not in alarm keeps its level and its dose clock
    s, _ = feed([(25, 60)], VALVE)
    assert gas.new_episode(s).co == s.co


def test_a_new_episode_of_a_quiet_sensor_changes_nothing() -> None:
    s, _ = feed([(3, 5), (12, 60)])  # a warning is not an episode
    assert gas.new_episode(s) is s


def test_sensors_sharing_a_valve_in_the_same_millisecond_each_hear_its_answer() -> None:
    """Two sensors with one valve alarm in one batch (the same `now`): each sends its own
    valve.close, and each one's answer closes that sensor's episode, not the other's."""
    cfg = gas.GasConfig(valve_device_id="gs-6")
    six, ds6 = gas.on_device_alarm(gas.new_state("gs-6"), T0, cfg)
    seven, ds7 = gas.observe(gas.new_state("gs-7"), reading(0, 45.0), T0, cfg)
    [c6] = [d for d in ds6 if isinstance(d, SendCommand)]
    [c7] = [d for d in ds7 if isinstance(d, SendCommand)]
    assert c6.device_id == c7.device_id == "gs-6"
    assert c6.command_id != c7.command_id
    six, _ = gas.on_command_result(six, c6.command_id, True, T0 + STEP)
    seven, ds = gas.on_command_result(seven, c7.command_id, True, T0 + STEP)
    assert [d.why for d in ds if isinstance(d, Note)] == ["valve_closed"]
    for s in (six, seven):
        assert s.valve is not None and s.valve.status == "closed"
        assert gas.check(s, T0 + 2 * cfg.valve_timeout, cfg)[1] == []  # no "no answer"


def test_a_valve_command_id_fits_the_contract_whatever_the_sensor_id() -> None:
    long_a, long_b = "a" * 63 + "1", "a" * 63 + "2"
    ids = {gas.valve_command_id(d, T0) for d in ("gs-1", long_a, long_b)}
    assert len(ids) == 3 and all(1 <= len(i) <= 64 for i in ids)
    assert gas.valve_command_id("gs-1", T0).endswith("-gs-1")


# --- state as JSON ---------------------------------------------------------------------------


@FAST
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(min_value=0, max_value=100, allow_nan=False)),
            st.one_of(st.none(), st.floats(min_value=0, max_value=2000, allow_nan=False)),
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_state_json_round_trip(
    values: list[tuple[float | None, float | None]], valve: bool
) -> None:
    s, _ = feed([v for v in values if v != (None, None)], VALVE if valve else CFG)
    if valve and s.valve is not None:
        s, _ = gas.check(s, T0 + timedelta(hours=5), VALVE)
    data = json.loads(json.dumps(s.to_json()))
    assert gas.GasState.from_json(data) == s


@pytest.mark.parametrize(
    "broken",
    [
        {"v": 2},
        {"lel": {"level": "panic", "below": 0}},
        {"alarmed": "yes"},
        {"last_ts": "2026-11-23T18:00:00"},
    ],
)
def test_state_json_refuses_what_it_cannot_read(broken: dict[str, object]) -> None:
    data = gas.new_state("gs-1").to_json()
    data.update(broken)
    with pytest.raises(ValueError):
        gas.GasState.from_json(data)
