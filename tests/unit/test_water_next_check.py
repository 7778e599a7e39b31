"""`water.next_check`: the tick waits for it, so it must never be later than the first moment
`check` raises. Each example builds an elder's history of reports (random days, uses, gaps,
pauses, configurations, a zone with clock changes), then tries `check` every minute from the
last report to the end of the data (`stale_after`) and compares."""

from __future__ import annotations

import json
import random
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import water
from alerts.decisions import Raise
from alerts.model import AlertKind
from devices.payloads import Telemetry

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")  # clocks change: 2026-03-29 and 2026-10-25
EXAMPLES = settings(max_examples=120, deadline=None, database=None)
CONFIGS = [
    water.WaterConfig(),
    water.WaterConfig(learn=False),
    water.WaterConfig(fixed_backstop=False),
    water.WaterConfig(fixed_window=timedelta(hours=2), fixed_min_l=30.0),
    water.WaterConfig(day_start=time(8, 0), day_end=time(20, 30), min_history_days=3),
    water.WaterConfig(stale_after=timedelta(hours=30), max_report_gap=timedelta(hours=30)),
    water.WaterConfig(tz="Europe/Berlin", stale_after=timedelta(hours=8)),
]


def _reading(n: int, t: datetime, litres: float, total: float) -> Telemetry:
    body = {
        "id": f"m{n}",
        "ts": t.isoformat(),
        "flow_l": litres,
        "interval_s": 900.0,
        "total_l": round(total, 3),
    }
    return Telemetry.model_validate_json(json.dumps(body))


def _history(
    seed: int, cfg: water.WaterConfig, start: datetime, days: int
) -> tuple[water.WaterState, datetime]:
    """Reports every 15 minutes for `days` days of an elder with a random rhythm (some days
    away, some quiet, some with a long nap), with checks between, as the gateway makes them."""
    rng = random.Random(seed)
    s = water.new_state("wm-1")
    wake = rng.uniform(4.5, 9.5)
    total = 1000.0
    n = 0
    t = start
    end = start + timedelta(days=days, hours=rng.uniform(0, 24))
    paused_until: datetime | None = None
    while t < end:
        local = t.astimezone(cfg.zone)
        hour = local.hour + local.minute / 60
        if rng.random() < 0.002:  # away for a while
            paused_until = t + timedelta(hours=rng.uniform(1, 30))
        p = paused_until if paused_until is not None and paused_until > t else None
        awake = wake <= hour < 21.5 + rng.uniform(-1, 1)
        litres = 0.0
        if p is None and awake and rng.random() < rng.choice((0.15, 0.35, 0.6)):
            litres = rng.choice((0.3, 1.0, 2.5, 6.0, 12.0))
        if rng.random() < 0.03:  # a report lost
            t += timedelta(minutes=15)
            continue
        n += 1
        total += litres
        s, _ = water.observe(s, _reading(n, t, litres, total), t, cfg, p)
        if rng.random() < 0.3:
            s, _ = water.check(s, t + timedelta(minutes=5), cfg, p)
        t += timedelta(minutes=15)
    return s, t - timedelta(minutes=15)


@EXAMPLES
@given(
    seed=st.integers(0, 10**9),
    which=st.integers(0, len(CONFIGS) - 1),
    days=st.integers(0, 12),
    offset=st.integers(0, 20),
    start_day=st.sampled_from(
        [datetime(2026, 11, 2), datetime(2026, 3, 20), datetime(2026, 10, 17)]
    ),
)
def test_next_check_is_never_after_the_first_alert(
    seed: int, which: int, days: int, offset: int, start_day: datetime
) -> None:
    cfg = CONFIGS[which]
    start = start_day.replace(tzinfo=cfg.zone)
    s, last = _history(seed, cfg, start, days)
    now = last + timedelta(minutes=offset)
    if s.no_use_alerted is not None:  # an open episode: nothing until the next use
        assert water.next_check(s, last, cfg) is None
        # ... or until people close its alert while still dry: counted again from then
        s = water.rearm(s, AlertKind.NO_WATER_USE, now)
    bound = water.next_check(s, now, cfg)
    assert s.last_ts is not None
    horizon = s.last_ts + cfg.stale_after
    t = now
    while t <= horizon + timedelta(minutes=1):
        _, ds = water.check(s, t, cfg)
        if any(isinstance(d, Raise) and d.kind == AlertKind.NO_WATER_USE for d in ds):
            assert bound is not None, f"raised at {t}, no check planned"
            assert bound <= t, f"raised at {t}, first check planned at {bound}"
            break
        t += timedelta(minutes=1)
    if bound is not None:
        assert now <= bound <= horizon


def test_after_the_last_use_it_waits_for_the_quarter_hours_limit() -> None:
    # learned: a silence of 2 h is usual at any hour, so the limit is 2 h x 1.75 = 3 h 30
    rhythm = water.Rhythm(days=20, first_use_median=7 * 60, first_use_mad=10, silence=(120,) * 96)
    now = datetime(2026, 11, 2, 10, 0, tzinfo=SHANGHAI)
    used = now - timedelta(minutes=30)
    s = water.WaterState(
        "wm-1",
        since=now - timedelta(days=20),
        last_ts=now,
        last_use=used,
        recent=((used.timestamp(), 40.0),),
        today=water.DayLog(now.date(), (7 * 60, 7 * 60 + 20, 9 * 60 + 30), covered_s=0),
        rhythm=rhythm,
    )
    cfg = water.WaterConfig(stale_after=timedelta(hours=6))
    bound = water.next_check(s, now, cfg)
    assert bound == used + timedelta(hours=3, minutes=30, milliseconds=1)
    assert not water.check(s, bound - timedelta(seconds=1), cfg)[1]
    assert water.check(s, bound, cfg)[1]
    # with the default `stale_after` (45 min) the data ends first: not before the next report
    assert water.next_check(s, now, water.WaterConfig()) is None


def test_the_fixed_window_is_counted_in_daytime() -> None:
    cfg = water.WaterConfig(learn=False, stale_after=timedelta(hours=30))
    used = datetime(2026, 11, 2, 18, 0, tzinfo=SHANGHAI)  # 4 h of daytime left that day
    s = water.WaterState(
        "wm-1",
        since=used - timedelta(days=3),
        last_ts=used + timedelta(hours=1),
        last_use=used,
        recent=((used.timestamp(), 15.0),),
        today=water.DayLog(used.date(), (), covered_s=0),
    )
    bound = water.next_check(s, used + timedelta(hours=1), cfg)
    # 12 h of daytime from 18:00: 4 h that evening, 8 h from 06:00 the next morning
    assert bound == datetime(2026, 11, 3, 14, 0, tzinfo=SHANGHAI)
    assert not water.check(s, bound - timedelta(minutes=1), cfg)[1]
    assert water.check(s, bound, cfg)[1]


def test_an_open_episode_or_stale_data_needs_no_check() -> None:
    now = datetime(2026, 11, 2, 10, 0, tzinfo=SHANGHAI)
    s = water.WaterState("wm-1", since=now - timedelta(days=1), last_ts=now, last_use=now)
    assert water.next_check(s, now + timedelta(minutes=46), water.WaterConfig()) is None
    alerted = water.WaterState(
        "wm-1", since=now, last_ts=now, last_use=now, no_use_alerted="fixed_window"
    )
    assert water.next_check(alerted, now, water.WaterConfig()) is None
    assert water.next_check(water.new_state("wm-1"), now, water.WaterConfig()) is None
