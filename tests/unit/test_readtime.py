"""Unit tests of when the telemetry rules take a reading (alerts/readtime.py): a device clock
that cannot be right (reset to 2020, fast by decades) is judged at the reading's arrival and
warned about once; readings of one arrival are each judged; a late alarm still raises. Found by
exploratory testing of the running gateway: such readings were dropped without a trace."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts import gas, readtime, water
from alerts.decisions import Clear, Raise, Warn
from alerts.model import AlertKind
from devices.payloads import Telemetry

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
MIN = timedelta(minutes=1)
RESET = datetime(2020, 1, 1, tzinfo=TZ)  # where a sensor's clock lands after a reboot
FAST = datetime(2099, 6, 1, tzinfo=TZ)
GAS = gas.GasConfig()
FIXED = water.WaterConfig(learn=False)

_n = 0


def tm(ts: datetime, **values: float) -> Telemetry:
    global _n
    _n += 1
    return Telemetry.model_validate_json(
        json.dumps({"id": f"r{_n}", "ts": ts.isoformat(), **values})
    )


def of(ds: list[object], t: type) -> list[object]:
    return [d for d in ds if isinstance(d, t)]


# --- the time a reading is taken at -----------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "at", "off"),
    [
        (T0 - 3 * MIN, T0 - 3 * MIN, None),  # on time
        (T0 + 4 * MIN, T0, None),  # a little fast: never moves time past its arrival
        (T0 + 6 * MIN, T0, readtime.AHEAD),
        (FAST, T0, readtime.AHEAD),
        (T0 - timedelta(hours=23), T0 - timedelta(hours=23), None),  # buffered: its own time
        (T0 - timedelta(hours=25), T0, readtime.BEHIND),
        (RESET, T0, readtime.BEHIND),
    ],
)
def test_taken_at(ts: datetime, at: datetime, off: str | None) -> None:
    assert readtime.taken_at(ts, T0, readtime.LATE_MAX) == (at, off)


# --- gas ----------------------------------------------------------------------------------------


def test_a_gas_sensor_reset_to_2020_still_raises_and_its_clock_is_warned_about_once() -> None:
    s, ds = gas.observe(gas.new_state("gs-1"), tm(T0, lel_pct=2.0), T0, GAS)
    assert ds == []
    out: list[object] = []
    for i in range(1, 6):
        s, ds = gas.observe(s, tm(RESET, lel_pct=60.0), T0 + i * MIN, GAS)
        out += ds
    [r] = of(out, Raise)
    assert r.reason == "lel_alarm" and "60 %LEL" in r.detail  # type: ignore[attr-defined]
    [w] = of(out, Warn)
    assert (w.kind, w.reason) == (AlertKind.GAS, "clock_skew")  # type: ignore[attr-defined]
    assert "2020-01-01" in w.detail and "behind" in w.detail  # type: ignore[attr-defined]
    assert s.lel.last == 60.0 and s.last_ts == T0 + 5 * MIN and s.clock_off == readtime.BEHIND
    # the clock is right again, then wrong again: a new spell, a new warning
    s, ds = gas.observe(s, tm(T0 + 6 * MIN, lel_pct=60.0), T0 + 6 * MIN, GAS)
    assert ds == [] and s.clock_off is None
    s, ds = gas.observe(s, tm(RESET, lel_pct=60.0), T0 + 7 * MIN, GAS)
    assert [d.reason for d in of(ds, Warn)] == ["clock_skew"]  # type: ignore[attr-defined]
    assert gas.GasState.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_a_fast_clocks_readings_of_one_arrival_are_each_judged_in_order() -> None:
    s = gas.new_state("gs-1")
    out: list[object] = []
    for lel in (2.0, 30.0, 31.0):  # one batch: the gateway's `now` is the same for all three
        s, ds = gas.observe(s, tm(FAST, lel_pct=lel), T0, GAS)
        out += ds
    assert [type(d).__name__ for d in out] == ["Warn", "Raise"]
    assert s.lel.last == 31.0 and s.lel.level == gas.ALARM and s.clock_off == readtime.AHEAD


def test_readings_with_one_time_are_each_judged() -> None:
    s, _ = gas.observe(gas.new_state("gs-1"), tm(T0, lel_pct=2.0), T0, GAS)
    s, ds = gas.observe(s, tm(T0, lel_pct=25.0), T0, GAS)
    assert [d.reason for d in of(ds, Raise)] == ["lel_alarm"]  # type: ignore[attr-defined]


def test_a_late_alarm_reading_raises_and_a_late_low_one_changes_nothing() -> None:
    s, _ = gas.observe(gas.new_state("gs-1"), tm(T0, lel_pct=2.0), T0, GAS)
    late, ds = gas.observe(s, tm(T0 - 10 * MIN, lel_pct=12.0), T0 + MIN, GAS)
    assert ds == [] and late == s  # under the alarm: the newer reading says more of now
    s, ds = gas.observe(s, tm(T0 - 10 * MIN, lel_pct=40.0), T0 + MIN, GAS)
    [r] = of(ds, Raise)
    assert r.reason == "lel_alarm" and "arrived late" in r.detail  # type: ignore[attr-defined]
    assert s.lel.level == gas.ALARM and s.last_ts == T0 and s.clock_off is None
    # its all-clear takes readings newer than the last, not older ones
    for i in range(3):
        s, ds = gas.observe(s, tm(T0 - (20 + i) * MIN, lel_pct=1.0), T0 + 2 * MIN, GAS)
        assert ds == []
    out: list[object] = []
    for i in range(1, 4):
        s, ds = gas.observe(s, tm(T0 + i * MIN, lel_pct=1.0), T0 + i * MIN, GAS)
        out += ds
    assert [c.why for c in of(out, Clear)] == ["gas_below_alarm"]  # type: ignore[attr-defined]


def test_a_buffered_reading_keeps_its_own_time() -> None:
    s, _ = gas.observe(gas.new_state("gs-1"), tm(T0 - 5 * MIN * 60, lel_pct=2.0), T0, GAS)
    assert s.last_ts == T0 - 5 * MIN * 60 and s.clock_off is None
    s, ds = gas.observe(s, tm(T0 - 4 * MIN * 60, lel_pct=25.0), T0, GAS)
    assert [d.reason for d in of(ds, Raise)] == ["lel_alarm"]  # type: ignore[attr-defined]
    assert s.last_ts == T0 - 4 * MIN * 60 and of(ds, Warn) == []


# --- water --------------------------------------------------------------------------------------


def dry_until(
    cfg: water.WaterConfig, end: datetime, stamp: datetime | None = None
) -> tuple[water.WaterState, list[tuple[datetime, object]]]:
    """Reports of no water every 15 minutes from 06:00 to `end`, stamped `stamp` if given."""
    s = water.new_state("wm-1")
    log: list[tuple[datetime, object]] = []
    t = T0.replace(hour=6)
    while t <= end:
        r = tm(stamp or t, flow_l=0.0, interval_s=900.0, total_l=100.0)
        s, ds = water.observe(s, r, t, cfg)
        log += [(t, d) for d in ds]
        t += 15 * MIN
    return s, log


def test_a_meter_reset_to_2020_keeps_the_no_water_rule_and_its_use_clears() -> None:
    _, log = dry_until(FIXED, T0.replace(hour=19))
    reset, log2 = dry_until(FIXED, T0.replace(hour=19), stamp=RESET)
    raised = [t for t, d in log if isinstance(d, Raise)]
    assert raised == [T0.replace(hour=18)]
    assert [t for t, d in log2 if isinstance(d, Raise)] == raised  # not stale: judged on arrival
    warns = [d for _, d in log2 if isinstance(d, Warn)]
    assert [(w.kind, w.reason) for w in warns] == [(AlertKind.NO_WATER_USE, "clock_skew")]
    now = T0.replace(hour=19, minute=15)
    s, ds = water.observe(reset, tm(RESET, flow_l=50.0, interval_s=900.0), now, FIXED)
    assert [c.why for c in of(ds, Clear)] == ["water_used_again"]  # type: ignore[attr-defined]
    assert s.last_use == now and of(ds, Warn) == []  # the spell goes on: warned once
    assert water.WaterState.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_a_water_reading_with_the_time_of_the_last_is_counted() -> None:
    s, _ = dry_until(FIXED, T0.replace(hour=19))
    now = T0.replace(hour=19, minute=15)
    s, ds = water.observe(s, tm(now, total_l=100.0), now, FIXED)
    assert ds == [] and s.no_use_alerted is not None
    s, ds = water.observe(s, tm(now, total_l=106.0), now, FIXED)  # one arrival, one time
    assert [c.why for c in of(ds, Clear)] == ["water_used_again"]  # type: ignore[attr-defined]
    assert s.last_total_l == 106.0 and s.recent[-1] == (now.timestamp(), 6.0)


def test_readings_of_one_arrival_do_not_break_a_running_tap() -> None:
    cfg = water.WaterConfig(learn=False, running_window=timedelta(minutes=15))
    s = water.new_state("wm-1")
    out: list[object] = []
    for i in range(4):
        t = T0 + 5 * i * MIN
        s, ds = water.observe(s, tm(t, total_l=100.0 + 5 * i), t, cfg)
        out += ds
        s, ds = water.observe(s, tm(t, total_l=100.0 + 5 * i), t, cfg)  # again, nothing more
        out += ds
    assert [d.reason for d in of(out, Raise)] == ["continuous_flow"]  # type: ignore[attr-defined]
    assert s.run_start == T0 and s.run_litres == 15.0
