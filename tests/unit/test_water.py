"""Unit tests of the water rules: the fixed 12-hour rule, the learned rhythm (first use, long
gap, evening), water running, meters that send totals, pauses, and the state's JSON form.

Every time is a datetime built here (Asia/Shanghai); a `Meter` reports every 15 minutes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import water
from alerts.decisions import Clear, Raise
from alerts.model import AlertKind
from devices.payloads import Telemetry

TZ = ZoneInfo("Asia/Shanghai")
MON = datetime(2026, 11, 2, tzinfo=TZ)  # a Monday, midnight
Q = timedelta(minutes=15)
H = timedelta(hours=1)
CFG = water.WaterConfig()
FIXED = water.WaterConfig(learn=False)
FAST = settings(max_examples=100, deadline=None, database=None)


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return MON + timedelta(days=day, hours=hh, minutes=mm)


class Meter:
    """A water meter reporting to the rules, with the decisions it got and when."""

    def __init__(self, cfg: water.WaterConfig = CFG) -> None:
        self.cfg = cfg
        self.s = water.new_state("wm-1")
        self.n = 0
        self.total = 1234.0
        self.log: list[tuple[datetime, object]] = []

    def report(
        self,
        t: datetime,
        litres: float,
        *,
        flow: bool = True,
        total: bool = True,
        paused: datetime | None = None,
    ) -> list[object]:
        self.n += 1
        self.total += litres
        body: dict[str, object] = {"id": f"m{self.n}", "ts": t.isoformat()}
        if flow:
            body["flow_l"] = float(litres)
            body["interval_s"] = 900.0
        if total:
            body["total_l"] = round(self.total, 3)
        r = Telemetry.model_validate_json(json.dumps(body))
        self.s, ds = water.observe(self.s, r, t, self.cfg, paused)
        self.log.extend((t, d) for d in ds)
        return list(ds)

    def run(
        self,
        start: datetime,
        end: datetime,
        litres: Callable[[datetime], float] | None = None,
        paused: datetime | None = None,
    ) -> None:
        """Reports every 15 minutes from `start` to `end`, with checks every 5 minutes between."""
        t = start
        while t <= end:
            self.report(t, litres(t) if litres else 0.0, paused=paused)
            for k in (1, 2):
                c = t + k * timedelta(minutes=5)
                if c <= end:
                    self.s, ds = water.check(self.s, c, self.cfg, paused)
                    self.log.extend((c, d) for d in ds)
            t += Q

    def raises(self, kind: AlertKind = AlertKind.NO_WATER_USE) -> list[tuple[datetime, Raise]]:
        return [(t, d) for t, d in self.log if isinstance(d, Raise) and d.kind == kind]

    def clears(self, kind: AlertKind = AlertKind.NO_WATER_USE) -> list[tuple[datetime, Clear]]:
        return [(t, d) for t, d in self.log if isinstance(d, Clear) and d.kind == kind]


def uses(*points: tuple[datetime, float]) -> Callable[[datetime], float]:
    """Litres in the 15 minutes before each report: water used at those moments."""
    return lambda t: sum(v for p, v in points if t - Q < p <= t)


def rhythm_day(
    day: int, wake: time, bed: time = time(21, 0), every: timedelta = H
) -> list[tuple[datetime, float]]:
    """A plain day: toilet and washing on waking, breakfast, then a use every `every` to bed."""
    w = at(day, wake.hour, wake.minute)
    points = [(w + timedelta(minutes=1), 8.0), (w + timedelta(minutes=40), 3.0)]
    t = w + timedelta(minutes=40) + every
    end = at(day, bed.hour, bed.minute)
    while t <= end:
        points.append((t, 6.0))
        t += every
    return points


def learned_meter(wake: time, days: int = 10, cfg: water.WaterConfig = CFG) -> Meter:
    """A meter that has seen `days` plain days (Monday on), ending at midnight."""
    m = Meter(cfg)
    points = [p for d in range(days) for p in rhythm_day(d, wake)]
    m.run(at(0, 0), at(days, 0) - Q, uses(*points))
    return m


# --- the fixed rule --------------------------------------------------------------------------


def test_fixed_rule_after_twelve_hours_of_daytime_without_ten_litres() -> None:
    m = Meter(FIXED)
    m.run(at(0, 6), at(0, 23))
    assert [t for t, _ in m.raises()] == [at(0, 18)]
    r = m.raises()[0][1]
    assert r.reason == "fixed_window" and r.device_id == "wm-1"
    assert "0.0 L" in r.detail and "12h00" in r.detail and "10 L" in r.detail
    assert r.effective_priority == "P2"


@pytest.mark.parametrize(
    ("litres", "raised_at"), [(6.0, at(0, 18)), (9.9, at(0, 18)), (12.0, at(0, 20))]
)
def test_fixed_rule_counts_litres_in_the_window(litres: float, raised_at: datetime) -> None:
    m = Meter(FIXED)
    m.run(at(0, 6), at(0, 21), uses((at(0, 8), litres)))
    assert [t for t, _ in m.raises()] == [raised_at]


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (at(1, 18), at(1, 6)),
        (at(1, 9), at(0, 13)),  # 3 h today, 9 h of yesterday's daytime
        (at(0, 23, 30), at(0, 10)),  # at night the window ends at 22:00
        (at(1, 3), at(0, 10)),
        (at(1, 6), at(0, 10)),
    ],
)
def test_the_window_is_daytime_only(now: datetime, start: datetime) -> None:
    assert water.daytime_window_start(now, CFG) == start


def test_fixed_rule_waits_for_a_whole_window_of_reports() -> None:
    m = Meter(FIXED)
    m.run(at(0, 14), at(1, 6))  # installed in the afternoon: no window yet by 22:00
    assert m.raises() == []


def test_no_data_is_not_no_water() -> None:
    m = Meter(FIXED)
    m.run(at(0, 6), at(0, 10))
    for h in range(10, 24):
        m.s, ds = water.check(m.s, at(0, h), FIXED)
        assert ds == []  # the meter is silent: device_offline's business


def test_one_alert_per_episode_and_water_used_again() -> None:
    m = Meter(FIXED)
    m.run(at(0, 6), at(1, 9))
    assert len(m.raises()) == 1
    ds = m.report(at(1, 9, 15), 3.0)
    assert ds == [Clear("wm-1", AlertKind.NO_WATER_USE, "water_used_again", ds[0].detail)]  # type: ignore[attr-defined]
    assert "3.0 L" in ds[0].detail  # type: ignore[attr-defined]
    assert m.s.no_use_alerted is None
    assert m.report(at(1, 9, 30), 5.0) == []


def test_pause_stops_the_rule_and_silence_counts_from_its_end() -> None:
    m = Meter(FIXED)
    until = at(1, 12)
    m.run(at(0, 6), at(1, 11, 45), paused=until)
    m.run(at(1, 12), at(2, 12))
    assert [t for t, _ in m.raises()] == [at(2, 8)]  # 12:00-22:00 + 06:00-08:00
    assert m.s.history[-1].excluded == "paused"


# --- the learned rhythm ----------------------------------------------------------------------


def test_history_is_learned_from_good_days() -> None:
    m = learned_meter(time(5, 30), days=10)
    assert len(m.s.history) == 9  # day 10 is still today
    r = m.s.rhythm
    assert r is not None and r.days == 9
    assert r.first_use_median == 5 * 60 + 45  # the 05:31 use, as the 05:45 report saw it
    assert r.first_use_mad == 0
    known = [v for v in r.silence if v != -1]
    assert known and max(known) <= 4 * 60


def test_an_early_riser_is_checked_hours_sooner() -> None:
    m = learned_meter(time(5, 30))
    m.run(at(10, 0), at(10, 12))  # today: nothing
    raised = m.raises()
    assert len(raised) == 1
    t, r = raised[0]
    assert r.reason == "no_first_use"
    assert t == at(10, 6, 30)  # usual 05:45 (the report after 05:31) + 45 min floor
    assert "05:45" in r.detail and "06:30" in r.detail and "learned" in r.detail
    fixed = learned_meter(time(5, 30), cfg=FIXED)
    fixed.run(at(10, 0), at(10, 12))
    assert fixed.raises() == []  # yesterday's water still fills its window


def test_a_late_riser_is_not_woken_for_nothing() -> None:
    m = learned_meter(time(9, 30))
    m.run(at(10, 0), at(10, 12), uses(*rhythm_day(10, time(10, 20))))  # up 50 min late
    assert m.raises() == []
    m = learned_meter(time(9, 30))
    m.run(at(10, 0), at(10, 12))
    assert [(t, r.reason) for t, r in m.raises()] == [(at(10, 10, 30), "no_first_use")]


def test_a_lone_night_flush_does_not_start_the_day() -> None:
    m = learned_meter(time(7, 0))
    m.run(at(10, 0), at(10, 12), uses((at(10, 4, 40), 6.0)))
    assert [(t, r.reason) for t, r in m.raises()] == [(at(10, 8, 0), "no_first_use")]
    assert "04:45" in m.raises()[0][1].detail


def test_long_gap_after_the_day_began() -> None:
    m = learned_meter(time(7, 0))
    points = [p for p in rhythm_day(10, time(7, 0)) if p[0] <= at(10, 11)]
    m.run(at(10, 0), at(10, 20), uses(*points))
    raised = m.raises()
    assert len(raised) == 1
    t, r = raised[0]
    assert r.reason == "long_gap"
    last = max(p for p, _ in points)
    assert last + 90 * timedelta(minutes=1) <= t <= last + 3 * H
    assert "usual longest silence" in r.detail
    fixed = learned_meter(time(7, 0), cfg=FIXED)
    fixed.run(at(10, 0), at(10, 20), uses(*points))
    assert fixed.raises() == [] or fixed.raises()[0][0] > t + 3 * H


def test_a_drip_does_not_hide_a_fall_from_the_learned_rhythm() -> None:
    m = learned_meter(time(7, 0))
    m.run(at(10, 0), at(10, 12), lambda t: 0.3)  # a leaking cistern: 1.2 L an hour
    assert [r.reason for _, r in m.raises()] == ["no_first_use"]
    f = learned_meter(time(7, 0), cfg=FIXED)
    f.run(at(10, 0), at(10, 22), lambda t: 0.3)
    assert f.raises() == []  # the fixed rule counts the drip's litres as use: a known blind spot


def test_too_little_history_falls_back_to_the_fixed_rule() -> None:
    m = learned_meter(time(5, 30), days=6)  # 5 good days learned
    assert m.s.rhythm is None
    m.run(at(6, 0), at(6, 21))
    assert [r.reason for _, r in m.raises()] == ["fixed_window"]


def test_the_backstop_can_be_switched_off() -> None:
    cfg = water.WaterConfig(fixed_backstop=False)
    m = learned_meter(time(7, 0), cfg=cfg)
    m.run(at(10, 0), at(10, 22), lambda t: 0.6 if t.minute == 0 else 0.0)  # sips every hour
    assert m.raises() == []  # enough uses for the rhythm; under 10 L would have been fixed's
    m = learned_meter(time(7, 0))
    m.run(at(10, 0), at(10, 22), lambda t: 0.6 if t.minute == 0 else 0.0)
    assert [r.reason for _, r in m.raises()] == ["fixed_window"]


def state_with(rhythm: water.Rhythm, now: datetime, used: list[datetime]) -> water.WaterState:
    """A state that learned `rhythm`, has reported up to `now` and used water at `used`."""
    today = water.DayLog(
        now.date(),
        tuple(sorted(u.hour * 60 + u.minute for u in used if u.date() == now.date())),
        covered_s=0,
    )
    return water.WaterState(
        "wm-1",
        since=now - timedelta(days=20),
        last_ts=now,
        last_use=max(used),
        today=today,
        rhythm=rhythm,
    )


FLAT = water.Rhythm(
    days=20,
    first_use_median=7 * 60,
    first_use_mad=10,
    silence=(12 * 60,) * water.BINS,  # long silences are usual at any hour
)


def test_learned_gap_limit_is_the_usual_silence_plus_a_margin() -> None:
    cfg = water.WaterConfig(fixed_backstop=False)
    two_hours = replace(FLAT, silence=(120,) * water.BINS)
    used = [at(5, 7, 0), at(5, 7, 30), at(5, 10, 0)]
    limit = 120 + max(0.75 * 120, 45)  # 3h30
    s = state_with(two_hours, at(5, 10) + timedelta(minutes=limit), used)
    assert water.check(s, at(5, 10) + timedelta(minutes=limit), cfg)[1] == []
    later = at(5, 10) + timedelta(minutes=limit + 1)
    _, ds = water.check(replace(s, last_ts=later), later, cfg)
    assert [d.reason for d in ds] == ["long_gap"]  # type: ignore[attr-defined]
    assert "2h00" in ds[0].detail and "3h30" in ds[0].detail  # type: ignore[attr-defined]


def test_include_day_learns_a_false_alarm_day() -> None:
    m = learned_meter(time(7, 0))
    m.run(at(10, 0), at(10, 23, 45), uses(*rhythm_day(10, time(9, 0))))  # slept in
    assert [r.reason for _, r in m.raises()] == ["no_first_use"]
    assert m.s.today is not None and m.s.today.excluded == "alerted"
    s = water.include_day(m.s, at(10, 0).date(), CFG)
    assert s.today is not None and s.today.excluded is None
    m.s = s
    m.run(at(11, 0), at(11, 1))  # the day is finished into the history, and learned from
    assert m.s.history[-1].day == date(2026, 11, 12) and m.s.history[-1].excluded is None
    assert m.s.history[-2].excluded is None  # the evening the silence began: back too
    assert m.s.rhythm is not None and m.s.rhythm.days == 11  # 10 plain days and that one
    assert water.include_day(m.s, date(2020, 1, 1), CFG) == m.s


def test_woke() -> None:
    assert water.woke((270, 420, 435), 240) == 420  # 04:30 alone is the night's
    assert water.woke((270, 300), 240) == 270  # two uses within the hour: up early
    assert water.woke((120, 420), 240) is None  # 02:00 is before the morning; 07:00 alone
    assert water.woke((120, 420), 240, now=450) == 420  # too recent to be confirmed yet


# --- water running ---------------------------------------------------------------------------


def test_tap_left_open_two_hours() -> None:
    m = Meter()
    m.run(at(0, 9), at(0, 10))
    m.run(at(0, 10, 15), at(0, 13), lambda t: 60.0)  # 4 L/min
    raised = m.raises(AlertKind.WATER_RUNNING)
    assert [t for t, _ in raised] == [at(0, 12)]
    r = raised[0][1]
    assert r.reason == "continuous_flow" and "10:00" in r.detail and "2h00" in r.detail
    ds = m.report(at(0, 13, 15), 0.0)
    clears = [d for d in ds if isinstance(d, Clear) and d.kind == AlertKind.WATER_RUNNING]
    assert len(clears) == 1 and clears[0].why == "flow_stopped"


@pytest.mark.parametrize("window_min", [15, 120])
def test_a_meter_of_totals_only_runs_from_its_first_interval_of_flow(window_min: int) -> None:
    # Found by exploratory testing: the run began at the first report with flow, one
    # interval late, and the text's litres covered an interval more than its time.
    m = Meter(replace(CFG, running_window=timedelta(minutes=window_min)))
    every = timedelta(minutes=5)
    t = at(0, 10, 12)
    m.report(t, 0.0, flow=False)
    while not m.raises(AlertKind.WATER_RUNNING) and t < at(0, 13):
        t += every
        m.report(t, 5.0, flow=False)
    [(raised_at, r)] = m.raises(AlertKind.WATER_RUNNING)
    assert raised_at == at(0, 10, 12) + timedelta(minutes=window_min)
    litres = 5 * window_min // 5
    assert f"for {window_min // 60}h{window_min % 60:02d} since 10:12 ({litres} L;" in r.detail


def test_a_pause_or_a_gap_in_reports_ends_the_run() -> None:
    m = Meter()
    m.run(at(0, 9), at(0, 10, 30), lambda t: 30.0)  # 08:45-10:30
    m.report(at(0, 10, 45), 0.0)
    m.run(at(0, 11), at(0, 12, 30), lambda t: 30.0)  # 10:45-12:30
    assert m.raises(AlertKind.WATER_RUNNING) == []
    m = Meter()
    m.run(at(0, 9), at(0, 11, 30), lambda t: 30.0)
    assert len(m.raises(AlertKind.WATER_RUNNING)) == 1
    ds = m.report(at(0, 12, 30), 30.0)  # three reports lost
    assert [d.why for d in ds if isinstance(d, Clear)] == ["reports_gap"]


def test_a_drip_is_not_a_running_tap() -> None:
    m = Meter()
    m.run(at(0, 0), at(0, 23), lambda t: 0.5)  # 0.033 L/min all day
    assert m.raises(AlertKind.WATER_RUNNING) == []


@FAST
@given(st.lists(st.booleans(), max_size=60))
def test_running_raises_exactly_for_runs_of_two_hours(flowing: list[bool]) -> None:
    m = Meter()
    m.report(at(0, 8), 0.0)
    for i, on in enumerate(flowing, 1):
        m.report(at(0, 8) + i * Q, 20.0 if on else 0.0)
    runs: list[tuple[int, bool]] = []  # (reports in the run, ended by a dry report)
    n = 0
    for on in flowing:
        if on:
            n += 1
        elif n:
            runs.append((n, True))
            n = 0
    if n:
        runs.append((n, False))
    assert len(m.raises(AlertKind.WATER_RUNNING)) == sum(k >= 8 for k, _ in runs)  # 8 x 15 min
    assert len(m.clears(AlertKind.WATER_RUNNING)) == sum(k >= 8 and e for k, e in runs)


# --- an alert closed by people while its condition goes on (water.rearm) ----------------------


def test_a_running_alert_closed_while_the_water_runs_raises_again_a_window_later() -> None:
    m = Meter()
    m.run(at(0, 9), at(0, 10))
    m.run(at(0, 10, 15), at(0, 12), lambda t: 60.0)  # running since 10:00: raised at 12:00
    assert [t for t, _ in m.raises(AlertKind.WATER_RUNNING)] == [at(0, 12)]
    closed = at(0, 12, 5)  # resolved: someone looked, and the tap still runs
    m.s = water.rearm(m.s, AlertKind.WATER_RUNNING, closed)
    assert not m.s.running_alerted and m.s.run_start == at(0, 10)
    m.run(at(0, 12, 15), at(0, 14), lambda t: 60.0)
    assert len(m.raises(AlertKind.WATER_RUNNING)) == 1  # not at once: a window from 12:05
    m.run(at(0, 14, 15), at(0, 15), lambda t: 60.0)
    raised = m.raises(AlertKind.WATER_RUNNING)
    assert [t for t, _ in raised] == [at(0, 12), at(0, 14, 15)]
    detail = raised[1][1].detail
    assert "since 10:00" in detail and "4h15" in detail and "closed at 12:05" in detail
    # the tap is closed: the run ends, said on the alert raised again
    ds = m.report(at(0, 15, 15), 0.0)
    assert [d.why for d in ds if isinstance(d, Clear)] == ["flow_stopped"]
    assert m.s.running_rearmed_at is None and m.s.run_start is None
    # the next run is a run of its own: its whole window from its own start
    m.run(at(0, 15, 30), at(0, 17, 30), lambda t: 60.0)
    assert [t for t, _ in m.raises(AlertKind.WATER_RUNNING)][2:] == [at(0, 17, 15)]


def test_rearm_leaves_an_episode_that_has_ended() -> None:
    m = Meter(FIXED)
    m.run(at(0, 9), at(0, 10))
    assert water.rearm(m.s, AlertKind.WATER_RUNNING, at(0, 10)) is m.s  # nothing was raised
    assert water.rearm(m.s, AlertKind.NO_WATER_USE, at(0, 10)) is m.s
    assert water.rearm(m.s, AlertKind.WATER_LEAK, at(0, 10)) is m.s  # not the water rules'


def test_a_no_water_alert_closed_while_still_dry_raises_again_a_window_later() -> None:
    m = Meter(FIXED)
    m.run(at(0, 6), at(0, 18, 10))
    assert [t for t, _ in m.raises()] == [at(0, 18)]
    closed = at(0, 18, 10)  # resolved: someone saw the elder; the meter still counts nothing
    m.s = water.rearm(m.s, AlertKind.NO_WATER_USE, closed)
    assert m.s.no_use_alerted is None and m.s.rearmed_at == closed
    m.run(at(0, 18, 15), at(1, 14))
    assert len(m.raises()) == 1  # not at once, nor overnight
    # 12 hours of daytime from 18:10: 18:10-22:00 and 06:00-14:10 the next day
    assert water.next_check(m.s, at(1, 14), FIXED) == at(1, 14, 10)
    assert water.check(m.s, at(1, 14, 9), FIXED)[1] == []
    _, ds = water.check(m.s, at(1, 14, 10), FIXED)
    assert [(d.kind, d.reason) for d in ds if isinstance(d, Raise)] == [
        (AlertKind.NO_WATER_USE, "fixed_window")
    ]


def test_a_learned_no_water_alert_closed_while_still_dry_counts_silence_from_the_closing() -> None:
    m = learned_meter(time(7, 0))
    points = [p for p in rhythm_day(10, time(7, 0)) if p[0] <= at(10, 11)]
    m.run(at(10, 0), at(10, 20), uses(*points))
    [(t1, r1)] = m.raises()
    assert r1.reason == "long_gap"
    last = max(p for p, _ in points)
    closed = t1 + timedelta(minutes=10)
    m = learned_meter(time(7, 0))
    m.run(at(10, 0), closed - timedelta(minutes=1), uses(*points))
    m.s = water.rearm(m.s, AlertKind.NO_WATER_USE, closed)
    m.run(closed, at(10, 21))
    [_, (t2, r2)] = m.raises()
    # silence from the closing, as long again as the first alert waited from the last use
    assert r2.reason == "long_gap" and t2 - closed >= (t1 - last) - 30 * timedelta(minutes=1)
    assert "since " + closed.strftime("%H:%M") in r2.detail


# --- meters that send totals -----------------------------------------------------------------


def test_flow_from_totals_with_a_reset_and_a_rollover() -> None:
    m = Meter(water.WaterConfig(meter_rollover_l=1000.0))
    t = at(0, 8)
    for i, total in enumerate([990.0, 995.0, 999.0, 4.0, 10.0]):  # rolls over after 999
        m.total = total
        m.report(t + i * Q, 0.0, flow=False)
        m.total = total  # the helper adds the litres; keep the meter's own reading
    assert m.s.meter_resets == 1
    litres = [v for _, v in m.s.recent]
    assert litres == [5.0, 4.0, 5.0, 6.0]
    m = Meter()
    for i, total in enumerate([500.0, 505.0, 3.0, 90_000.0, 90_004.0]):  # reset, then a swap
        m.total = total
        m.report(t + i * Q, 0.0, flow=False)
        m.total = total
    assert m.s.meter_resets == 2
    assert [v for _, v in m.s.recent] == [5.0, 3.0, 4.0]


def test_totals_count_the_water_of_lost_reports() -> None:
    m = Meter(FIXED)
    m.run(at(0, 6), at(0, 9))
    m.total += 25.0  # used while two reports were lost
    m.report(at(0, 9, 45), 0.0)
    m.run(at(0, 10), at(0, 19))
    assert m.raises() == []  # the 25 L count: nobody paged at 18:00


def test_old_or_repeated_readings_change_nothing() -> None:
    m = Meter()
    m.report(at(0, 8), 5.0)
    before = m.s
    body = {"id": "old", "ts": at(0, 7, 45).isoformat(), "flow_l": 50.0, "interval_s": 900.0}
    after, ds = water.observe(
        before, Telemetry.model_validate_json(json.dumps(body)), at(0, 8), CFG
    )
    assert ds == [] and after is before
    body = {"id": "x", "ts": at(0, 9).isoformat(), "battery_pct": 50.0}
    after, ds = water.observe(
        before, Telemetry.model_validate_json(json.dumps(body)), at(0, 9), CFG
    )
    assert ds == [] and after is before


def test_observe_never_changes_the_state_it_is_given() -> None:
    m = learned_meter(time(7, 0), days=8)
    frozen = json.dumps(m.s.to_json(), sort_keys=True)
    s = m.s
    m.run(at(8, 0), at(8, 12))
    assert json.dumps(s.to_json(), sort_keys=True) == frozen


def test_config_is_checked() -> None:
    for bad in (
        {"fixed_min_l": 0},
        {"fixed_window": timedelta(minutes=5)},
        {"day_start": time(22), "day_end": time(6)},
        {"min_history_days": 0},
        {"min_history_days": 30, "max_history_days": 10},
        {"meter_rollover_l": -1.0},
        {"gap_outlier_days": 0},
    ):
        with pytest.raises(ValueError):
            water.WaterConfig(**bad)  # type: ignore[arg-type]


# --- state as JSON ---------------------------------------------------------------------------


@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=240),  # minutes since the last report
            st.floats(min_value=0, max_value=200, allow_nan=False),
            st.sampled_from(["flow", "total", "both"]),
        ),
        max_size=60,
    ),
    st.integers(min_value=0, max_value=3),
)
def test_state_json_round_trip(readings: list[tuple[int, float, str]], pause: int) -> None:
    m = Meter()
    t = at(0, 5)
    paused = at(0, 5) + timedelta(hours=pause) if pause else None
    for minutes, litres, kind in readings:
        t += timedelta(minutes=minutes)
        m.report(t, litres, flow=kind != "total", total=kind != "flow", paused=paused)
        m.s, _ = water.check(m.s, t + timedelta(minutes=5), CFG)
    data = json.loads(json.dumps(m.s.to_json()))
    assert water.WaterState.from_json(data) == m.s


def test_state_json_round_trip_with_a_learned_rhythm() -> None:
    m = learned_meter(time(7, 0), days=9)
    assert m.s.rhythm is not None and len(m.s.history) == 8
    data = json.loads(json.dumps(m.s.to_json()))
    assert water.WaterState.from_json(data) == m.s


@pytest.mark.parametrize(
    "broken",
    [
        {"v": 99},
        {"recent": [[1, 2, 3]]},
        {"last_ts": "2026-11-02T08:00:00"},
        {"history": [{"day": "2026-13-01", "uses": [], "covered_s": 0, "excluded": None}]},
        {"rhythm": {"days": 1, "first_use_median": 1, "first_use_mad": 0, "silence": [1]}},
        {"running_alerted": 1},
    ],
)
def test_state_json_refuses_what_it_cannot_read(broken: dict[str, object]) -> None:
    data = water.new_state("wm-1").to_json()
    data.update(broken)
    with pytest.raises(ValueError):
        water.WaterState.from_json(data)


# --- an elder's own thresholds (water.with_override) ---------------------------------------------


def test_an_override_changes_only_the_fields_it_sets() -> None:
    ov = water.WaterOverride(fixed_min_l=4.0, fixed_window=timedelta(hours=6), learn=False)
    cfg = water.with_override(CFG, ov)
    assert (cfg.fixed_min_l, cfg.fixed_window, cfg.learn) == (4.0, timedelta(hours=6), False)
    assert (cfg.day_start, cfg.day_end, cfg.running_window) == (
        CFG.day_start,
        CFG.day_end,
        CFG.running_window,
    )
    assert cfg.tz == CFG.tz and cfg.zone == CFG.zone
    assert ov.changes() == {"fixed_min_l": 4.0, "fixed_window": timedelta(hours=6), "learn": False}


def test_no_override_or_an_empty_one_is_the_default_itself() -> None:
    assert water.with_override(CFG, None) is CFG
    assert water.with_override(CFG, water.WaterOverride()) is CFG


@pytest.mark.parametrize(
    "ov",
    [
        water.WaterOverride(day_end=time(5, 0)),  # before the default day_start (06:00)
        water.WaterOverride(day_start=time(9, 0), day_end=time(9, 0)),
        water.WaterOverride(fixed_window=timedelta(minutes=30)),
        water.WaterOverride(fixed_window=timedelta(hours=49)),
        water.WaterOverride(fixed_min_l=0.0),
        water.WaterOverride(fixed_min_l=-1.0),
        water.WaterOverride(fixed_min_l=1001.0),
        water.WaterOverride(running_window=timedelta(minutes=10)),
        water.WaterOverride(running_window=timedelta(hours=25)),
    ],
)
def test_an_override_that_makes_no_valid_config_is_refused(ov: water.WaterOverride) -> None:
    with pytest.raises(ValueError):
        water.with_override(CFG, ov)


def test_an_override_moves_the_fixed_rule_and_the_running_window() -> None:
    cfg = water.with_override(
        FIXED,
        water.WaterOverride(
            fixed_window=timedelta(hours=4),
            day_start=time(8, 0),
            running_window=timedelta(minutes=30),
        ),
    )
    m = Meter(cfg)
    m.run(at(0, 6), at(0, 13))
    assert [t for t, _ in m.raises()] == [at(0, 12)]  # daytime from 08:00, 4 hours of it
    run = Meter(cfg)
    run.run(at(0, 9), at(0, 10), lambda t: 15.0)
    # the first report covers 08:45-09:00: 30 minutes of flow by the report at 09:15
    assert [t for t, _ in run.raises(AlertKind.WATER_RUNNING)] == [at(0, 9, 15)]


def test_learn_false_in_an_override_leaves_the_fixed_rule_alone() -> None:
    learned = learned_meter(time(6, 0), days=10)
    assert learned.s.rhythm is not None
    plain = Meter(water.with_override(CFG, water.WaterOverride(learn=False)))
    plain.s = learned.s
    for m in (learned, plain):  # the morning after: no water at all
        m.run(at(10, 0), at(10, 14))
    [(t, r)] = learned.raises()
    assert r.reason == "no_first_use" and t < at(10, 8)
    assert plain.raises() == []  # the fixed rule waits for 12 hours of daytime


def test_the_morning_margin_is_six_robust_deviations_of_the_elders_waking() -> None:
    # Waking scatters over the week (06:30 to 07:30): the margin grows with the MAD, past the
    # 45-minute floor; six deviations (five paged an unwell elder's late morning too often,
    # tests/bench/sim_community.py --frontier).
    wakes = [time(6, 30), time(6, 45), time(7, 0), time(7, 15), time(7, 30)]
    m = Meter(CFG)
    points = [p for d in range(10) for p in rhythm_day(d, wakes[d % 5])]
    m.run(at(0, 0), at(10, 0) - Q, uses(*points))
    r = m.s.rhythm
    assert r is not None and r.first_use_mad > 0
    margin = timedelta(minutes=6 * 1.4826 * r.first_use_mad)
    assert margin > timedelta(minutes=45)
    deadline = at(10, 0) + timedelta(minutes=r.first_use_median) + margin
    m.run(at(10, 0), at(10, 12))  # today: nothing
    [(t, d)] = m.raises()
    assert d.reason == "no_first_use"
    assert deadline <= t < deadline + Q  # not at five deviations, which is 15+ minutes sooner
    assert deadline - timedelta(minutes=1.4826 * r.first_use_mad) < t - Q
