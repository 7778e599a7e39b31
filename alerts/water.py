"""Water rules per elder, over a water meter's telemetry: `no_water_use` and `water_running`.

Pure: the caller passes the state (a plain dataclass it keeps as JSON between messages), the
reading or the tick, `now` and the elder's `WaterConfig`; the rules answer with a new state and
a list of decisions (`alerts.decisions`: Raise, Clear). The state passed in is never changed.

Readings: `flow_l` over `interval_s` (litres since the previous report), or only `total_l`, the
meter's running total, from which the flow is derived between consecutive reports. A total that
goes down is a meter reset (or, with `meter_rollover_l`, a rollover); a jump faster than any tap
(`max_plausible_lpm`) is a meter swap: neither is taken as water used. With both, `flow_l` is
the last interval and the total covers reports that were lost in between. A "use" is a report
with at least `use_min_l` (0.5 L): a dripping tap or a leaking cistern is not a sign of life.

No water used (a fall, an illness), two ways:

- Fixed rule (the pilots' default): under `fixed_min_l` (10 L) in the last `fixed_window` (12 h)
  of *daytime* (`day_start`-`day_end` local time, 06:00-22:00). Night hours are skipped, not
  counted, so a 12-hour window at 09:00 reaches back to yesterday afternoon.
- Learned rhythm, from the elder's own last `max_history_days` (28) good days (at least
  `min_history_days`, 7; days paused, alerted, half-reported or nearly without water are not
  learned from):
  - the morning: the day begins with the first use from `morning_from` (04:00) that another use
    follows within the hour (a lone flush at 04:30 is the night's). Learned: median and MAD of
    that time. Nothing used since before median - margin, and it is median + margin, where
    margin = max(`first_use_k` (6) x 1.4826 x MAD, `first_use_floor` (45 min)):
    `no_first_use`. An early riser is checked hours before the fixed rule would; a late riser is
    not woken for nothing.
  - the day: for each quarter hour, the longest silence (time since the last use) the elder had
    at that hour, within `gap_smooth_min` (60 min) either side, over the days learned (an
    afternoon nap, the weekly club, the usual errand are learned, not paged). Once the day has
    begun and until `day_end`, a silence longer than that x (1 + `gap_margin` (0.75)), and at
    least `gap_floor` (45 min) more: `long_gap`.
  Until there is enough history, the fixed rule alone is used; with it, the fixed rule stays as
  a backstop (`fixed_backstop`): an elder who only sips is still under 10 L.
  Falls in the evening are found the next morning: silences before bed vary too much to be
  told from a fall before `day_end` (measured in tests/bench/sim_community.py).

The decision says which rule fired, what was expected and what was seen. The no-water rules
never fire on stale data (no report for `stale_after`): no data is not no water, it is
`device_offline` (alerts.health). A pause (`paused_until`, from `alerts.suppression.verdict`
for `no_water_use`: the elder is away, in hospital, or the meter is in maintenance) stops the
rules; silence is measured from its end, and paused days are not learned from. One alert per
episode: after a Raise, the next use gives `Clear(no_water_use, "water_used_again")`, and the
fixed window starts again from that use. An alert closed by people while still dry re-arms the
rules (`rearm`): silence and the fixed window are counted again from its closing.

Water running (a tap left open, a burst pipe): at least `running_min_lpm` (0.2 L/min) in
*every* report for `running_window` (2 h), counted from the start of the first interval with
flow (`interval_s` before its report, or a meter of totals' previous report). A report gap or
an interval below that rate ends the run; when the run that raised ends,
`Clear(water_running, "flow_stopped" | "reports_gap")`. An alert closed by people while the
water still runs re-arms the rule (`rearm`): it raises again when the run has gone on for
another whole window from the closing.

Per elder, staff may override the fixed rule's litres, window and daytime, whether the learned
rhythm is used, and the water-running window (`WaterOverride`, applied by `with_override`, which
refuses a combination that is not a valid `WaterConfig`).

The gateway calls `observe` for each telemetry message and `check` on a tick (no water is the
absence of use, and a use is not a message); `observe` evaluates the no-water rules too. A
reading is taken at its own time, or at its arrival when the meter's clock cannot be right
(`alerts.readtime`), with a `clock_skew` warning.
`next_check` says when the tick need look next: the first moment a no-water rule could fire if
no report came before it, or None when the data would go stale first. `include_day` puts a
day back into learning when its alert was a false alarm (the gateway calls it when a
`no_water_use` alert is resolved as `false_alarm`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

from alerts import _jsonstate as js
from alerts import readtime
from alerts.decisions import Clear, Raise, Warn
from alerts.model import AlertKind
from devices.payloads import Telemetry

STATE_VERSION = 1
BIN_MIN = 15  # the learned silence profile has one value per quarter hour
BINS = 24 * 60 // BIN_MIN
WAKE_CONFIRM_MIN = 60  # the day began when a second use follows the first within this
_MAD_TO_SD = 1.4826  # MAD x this estimates a standard deviation for normal data
_UNKNOWN = -1

WaterDecision = Raise | Clear | Warn


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


@dataclass(frozen=True, slots=True)
class WaterConfig:
    """Per-elder settings of the water rules (defaults: the pilots' fixed rule, tuned rhythm)."""

    tz: str = "Asia/Shanghai"
    # fixed rule
    fixed_min_l: float = 10.0
    fixed_window: timedelta = timedelta(hours=12)
    day_start: time = time(6, 0)
    day_end: time = time(22, 0)
    # learned rhythm
    learn: bool = True
    fixed_backstop: bool = True
    min_history_days: int = 7
    max_history_days: int = 28
    morning_from: time = time(4, 0)  # uses before this are the night's, not the morning's
    first_use_k: float = 6.0  # 5 paged more late mornings (an unwell day) and found no fall sooner
    first_use_floor: timedelta = timedelta(minutes=45)
    gap_margin: float = 0.75
    gap_floor: timedelta = timedelta(minutes=45)
    gap_smooth_min: int = 60  # the usual silence at 10:00 looks at 09:00-11:15
    gap_outlier_days: int | None = None  # per this many days, ignore the longest silence
    gap_need_share: int = 50  # % of the days learned that must have begun by a quarter hour
    min_uses_per_day: int = 3
    min_day_coverage: float = 0.75
    use_min_l: float = 0.5  # a drip is not a use: a leaking cistern must not hide a fall
    stale_after: timedelta = timedelta(minutes=45)
    # water running
    running_window: timedelta = timedelta(hours=2)
    running_min_lpm: float = 0.2  # below this it is a drip, not a tap left open
    max_report_gap: timedelta = timedelta(minutes=45)
    # meter
    meter_rollover_l: float | None = None
    max_plausible_lpm: float = 100.0
    # time: later than this, the device's clock is wrong (alerts.readtime)
    late_max: timedelta = readtime.LATE_MAX
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", ZoneInfo(self.tz))
        if self.fixed_min_l <= 0 or self.use_min_l <= 0:
            raise ValueError("litre thresholds are positive")
        if not timedelta(hours=1) <= self.fixed_window <= timedelta(hours=48):
            raise ValueError("fixed_window is 1 to 48 hours")
        if self.day_end <= self.day_start:
            raise ValueError("day_end comes after day_start")
        if not 1 <= self.min_history_days <= self.max_history_days <= 90:
            raise ValueError("1 <= min_history_days <= max_history_days <= 90")
        if min(self.running_window, self.stale_after, self.late_max) <= timedelta(0):
            raise ValueError("windows are positive")
        if self.gap_outlier_days is not None and self.gap_outlier_days < 1:
            raise ValueError("gap_outlier_days is at least 1")
        if self.meter_rollover_l is not None and self.meter_rollover_l <= 0:
            raise ValueError("meter_rollover_l is positive")


@dataclass(frozen=True, slots=True)
class WaterOverride:
    """An elder's own thresholds, set by staff (a heavy or a frugal user of water, a night
    worker, an elder whose rhythm should not be trusted); None keeps the gateway's default."""

    fixed_min_l: float | None = None
    fixed_window: timedelta | None = None
    day_start: time | None = None
    day_end: time | None = None
    learn: bool | None = None
    running_window: timedelta | None = None

    def changes(self) -> dict[str, Any]:
        """The fields set, by their WaterConfig names."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


MIN_RUNNING_WINDOW = timedelta(minutes=15)  # shorter: a long shower or a washing machine
MAX_RUNNING_WINDOW = timedelta(hours=24)


def with_override(cfg: WaterConfig, override: WaterOverride | None) -> WaterConfig:
    """`cfg` with the elder's override applied field by field. ValueError (the reason, in
    English) when the result is not a valid configuration, e.g. a `day_end` before the default
    `day_start`: the override is judged together with what it keeps."""
    if override is None:
        return cfg
    changes = override.changes()
    if not changes:
        return cfg
    rw = override.running_window
    if rw is not None and not MIN_RUNNING_WINDOW <= rw <= MAX_RUNNING_WINDOW:
        raise ValueError("running_window is 15 minutes to 24 hours")
    if override.fixed_min_l is not None and override.fixed_min_l > 1000:
        raise ValueError("fixed_min_l is at most 1000 L")
    return replace(cfg, **changes)


# --------------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayLog:
    """One local day: when water was used (minutes after midnight), how much of the day the
    reports covered, and why it is not learned from (None: it is)."""

    day: date
    uses: tuple[int, ...] = ()
    covered_s: float = 0.0
    excluded: str | None = None  # paused | alerted | few_uses | poor_coverage

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "uses": list(self.uses),
            "covered_s": self.covered_s,
            "excluded": self.excluded,
        }

    @classmethod
    def from_json(cls, d: Any) -> DayLog:
        if not isinstance(d, dict):
            raise js.StateError("day: a JSON object is required")
        uses = d.get("uses")
        if not isinstance(uses, list):
            raise js.StateError("day.uses: a list is required")
        return cls(
            js.date_in(d.get("day"), "day.day"),
            tuple(sorted(js.integer(u, "day.uses") for u in uses)),
            js.num(d.get("covered_s"), "day.covered_s"),
            js.opt_text(d.get("excluded"), "day.excluded"),
        )


@dataclass(frozen=True, slots=True)
class Rhythm:
    """What was learned from `days` good days: first use in the morning (minutes after local
    midnight, median and MAD) and the usual longest silence per quarter hour (minutes; -1
    where too few days say anything)."""

    days: int
    first_use_median: float
    first_use_mad: float
    silence: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "first_use_median": self.first_use_median,
            "first_use_mad": self.first_use_mad,
            "silence": list(self.silence),
        }

    @classmethod
    def from_json(cls, d: Any) -> Rhythm:
        if not isinstance(d, dict):
            raise js.StateError("rhythm: a JSON object is required")
        silence = d.get("silence")
        if not isinstance(silence, list) or len(silence) != BINS:
            raise js.StateError(f"rhythm.silence: a list of {BINS} numbers is required")
        return cls(
            js.integer(d.get("days"), "rhythm.days"),
            js.num(d.get("first_use_median"), "rhythm.first_use_median"),
            js.num(d.get("first_use_mad"), "rhythm.first_use_mad"),
            tuple(js.integer(s, "rhythm.silence") for s in silence),
        )


@dataclass(frozen=True, slots=True)
class WaterState:
    """Everything the water rules remember about one elder's water meter."""

    device_id: str
    since: datetime | None = None  # the first report: no rule looks back before it
    last_ts: datetime | None = None
    last_total_l: float | None = None
    last_use: datetime | None = None
    recent: tuple[tuple[float, float], ...] = ()  # (epoch s, litres) with flow, last 3 days
    today: DayLog | None = None
    history: tuple[DayLog, ...] = ()
    rhythm: Rhythm | None = None
    run_start: datetime | None = None
    run_litres: float = 0.0
    running_alerted: bool = False
    # The run's alert was closed while the water still ran: its window restarts here (`rearm`).
    running_rearmed_at: datetime | None = None
    no_use_alerted: str | None = None  # the reason of the open episode
    no_use_alerted_at: datetime | None = None
    paused_until: datetime | None = None
    # Water used again after an alert, or its alert closed while still dry (`rearm`): the
    # window restarts, and silence is counted from here.
    rearmed_at: datetime | None = None
    meter_resets: int = 0
    clock_off: str | None = None  # the device's clock cannot be right: `ahead` or `behind`

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "device_id": self.device_id,
            "since": js.dt_out(self.since),
            "last_ts": js.dt_out(self.last_ts),
            "last_total_l": self.last_total_l,
            "last_use": js.dt_out(self.last_use),
            "recent": [[t, litres] for t, litres in self.recent],
            "today": None if self.today is None else self.today.to_json(),
            "history": [d.to_json() for d in self.history],
            "rhythm": None if self.rhythm is None else self.rhythm.to_json(),
            "run_start": js.dt_out(self.run_start),
            "run_litres": self.run_litres,
            "running_alerted": self.running_alerted,
            "running_rearmed_at": js.dt_out(self.running_rearmed_at),
            "no_use_alerted": self.no_use_alerted,
            "no_use_alerted_at": js.dt_out(self.no_use_alerted_at),
            "paused_until": js.dt_out(self.paused_until),
            "rearmed_at": js.dt_out(self.rearmed_at),
            "meter_resets": self.meter_resets,
            "clock_off": self.clock_off,
        }

    @classmethod
    def from_json(cls, data: Any) -> WaterState:
        d = js.check_version(data, STATE_VERSION, "water state")
        recent = d.get("recent")
        history = d.get("history")
        if not isinstance(recent, list) or not isinstance(history, list):
            raise js.StateError("water state: recent and history are lists")
        pairs = []
        for item in recent:
            if not isinstance(item, list) or len(item) != 2:
                raise js.StateError("water state.recent: [epoch s, litres] pairs")
            pairs.append((js.num(item[0], "recent"), js.num(item[1], "recent")))
        today = d.get("today")
        rhythm = d.get("rhythm")
        return cls(
            device_id=js.text(d.get("device_id"), "device_id"),
            since=js.dt_in(d.get("since"), "since"),
            last_ts=js.dt_in(d.get("last_ts"), "last_ts"),
            last_total_l=js.opt_num(d.get("last_total_l"), "last_total_l"),
            last_use=js.dt_in(d.get("last_use"), "last_use"),
            recent=tuple(pairs),
            today=None if today is None else DayLog.from_json(today),
            history=tuple(DayLog.from_json(h) for h in history),
            rhythm=None if rhythm is None else Rhythm.from_json(rhythm),
            run_start=js.dt_in(d.get("run_start"), "run_start"),
            run_litres=js.num(d.get("run_litres"), "run_litres"),
            running_alerted=js.flag(d.get("running_alerted"), "running_alerted"),
            # absent in states written before it existed
            running_rearmed_at=js.dt_in(d.get("running_rearmed_at"), "running_rearmed_at"),
            no_use_alerted=js.opt_text(d.get("no_use_alerted"), "no_use_alerted"),
            no_use_alerted_at=js.dt_in(d.get("no_use_alerted_at"), "no_use_alerted_at"),
            paused_until=js.dt_in(d.get("paused_until"), "paused_until"),
            rearmed_at=js.dt_in(d.get("rearmed_at"), "rearmed_at"),
            meter_resets=js.integer(d.get("meter_resets"), "meter_resets"),
            clock_off=js.opt_text(d.get("clock_off"), "clock_off"),  # absent in older states
        )


def new_state(device_id: str) -> WaterState:
    return WaterState(device_id)


# --------------------------------------------------------------------------------------------
# learning
# --------------------------------------------------------------------------------------------


def woke(uses: tuple[int, ...], morning: int, now: int | None = None) -> int | None:
    """When the elder's day began (minutes after midnight): the first use from `morning` on
    that another use follows within `WAKE_CONFIRM_MIN` (a lone flush at 04:30 is the night's).
    With `now` (today, so far), a use too recent to be confirmed yet counts."""
    for i, u in enumerate(uses):
        if u < morning:
            continue
        if i + 1 < len(uses) and uses[i + 1] - u <= WAKE_CONFIRM_MIN:
            return u
        if now is not None and now - u < WAKE_CONFIRM_MIN:
            return u
    return None


@lru_cache(maxsize=8192)
def _day_profile(uses: tuple[int, ...], morning: int, smooth: int) -> tuple[int, ...]:
    """For one day: per quarter hour, the longest silence (minutes since the last use) seen in
    that quarter hour widened by `smooth` minutes each side; -1 before the day began."""
    first = woke(uses, morning)
    if first is None:
        return (_UNKNOWN,) * BINS
    later = [u for u in uses if u >= first]
    # silence at each 5-minute mark from the first use to midnight, and just before each use
    marks: list[tuple[int, int]] = []
    j = 0
    last = first
    for m in range(first - first % 5, 24 * 60 + 1, 5):
        while j < len(later) and later[j] <= m:
            if later[j] > last:
                marks.append((later[j], later[j] - last))  # the silence a use ended
            last = later[j]
            j += 1
        if m >= first:
            marks.append((m, m - last))
    out = [_UNKNOWN] * BINS
    for at, s in marks:
        lo = max(0, (at - smooth) // BIN_MIN)
        hi = min(BINS - 1, (at + smooth) // BIN_MIN)
        for b in range(lo, hi + 1):
            if s > out[b]:
                out[b] = s
    return tuple(out)


def _learn(history: tuple[DayLog, ...], cfg: WaterConfig) -> Rhythm | None:
    good = [d for d in history if d.excluded is None]
    if len(good) < cfg.min_history_days:
        return None
    morning = _minutes(cfg.morning_from)
    firsts = [float(woke(d.uses, morning) or 0) for d in good]
    med = median(firsts)
    mad = median(abs(f - med) for f in firsts)
    profiles = [_day_profile(d.uses, morning, cfg.gap_smooth_min) for d in good]
    # a quarter hour of the day most days had not begun by says nothing (a late riser's 07:00
    # is known only from the odd early morning, and those are busy ones)
    need = max(3, -(-len(good) * cfg.gap_need_share // 100))
    drop = cfg.gap_outlier_days
    silence = []
    for b in range(BINS):
        values = sorted((p[b] for p in profiles if p[b] != _UNKNOWN), reverse=True)
        if len(values) < need:
            silence.append(_UNKNOWN)
            continue
        # the longest, less one outlier per `gap_outlier_days` days if set
        k = 0 if drop is None else min(len(values) - 1, len(values) // drop)
        silence.append(values[k])
    return Rhythm(len(good), med, mad, tuple(silence))


def _finish(day: DayLog, cfg: WaterConfig) -> DayLog:
    if day.excluded is not None:
        return day
    morning = _minutes(cfg.morning_from)
    if woke(day.uses, morning) is None or sum(1 for u in day.uses if u >= morning) < max(
        2, cfg.min_uses_per_day
    ):
        return replace(day, excluded="few_uses")
    if day.covered_s < cfg.min_day_coverage * 86_400:
        return replace(day, excluded="poor_coverage")
    return day


def _roll(state: WaterState, local: datetime, cfg: WaterConfig) -> WaterState:
    """Start the local day of `local`, finishing the one before into the history."""
    today = local.date()
    if state.today is None:
        return replace(state, today=DayLog(today))
    if today <= state.today.day:
        return state
    done = _finish(state.today, cfg)
    keep_from = today - timedelta(days=cfg.max_history_days)
    history = tuple(d for d in (*state.history, done) if d.day >= keep_from)
    return replace(state, today=DayLog(today), history=history, rhythm=_learn(history, cfg))


def include_day(state: WaterState, day: date, cfg: WaterConfig) -> WaterState:
    """Learn from `day` after all: its no-water alert was a false alarm (the elder was fine).

    The day before is put back too when the alert left it out (the silence began that evening).
    """
    days = {day, day - timedelta(days=1)}
    today = state.today
    if today is not None and today.day in days and today.excluded == "alerted":
        today = replace(today, excluded=None)
    history = tuple(
        _finish(replace(d, excluded=None), cfg) if d.day in days and d.excluded == "alerted" else d
        for d in state.history
    )
    if history == state.history:
        return state if today is state.today else replace(state, today=today)
    return replace(state, today=today, history=history, rhythm=_learn(history, cfg))


# --------------------------------------------------------------------------------------------
# readings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Flow:
    litres: float | None  # since the previous report (None: unknown, e.g. after a meter reset)
    rate_lpm: float | None  # in the last interval
    contiguous: bool  # the interval starts where the previous report ended
    reset: bool = False
    # When the interval of `rate_lpm` began, and the litres in it: where a run of flow starts
    # (None: not known, a total after a gap in reports).
    start: datetime | None = None
    run_l: float = 0.0


# Readings closer than this (a burst, or readings taken at one arrival) are judged as this far
# apart: a swapped meter still jumps by far more than a tap gives in a minute.
_MIN_SPAN_S = 60.0


def _flow(state: WaterState, r: Telemetry, ts: datetime, cfg: WaterConfig) -> _Flow:
    since_last = None if state.last_ts is None else (ts - state.last_ts).total_seconds()
    derived: float | None = None
    reset = False
    if r.total_l is not None and state.last_total_l is not None and since_last is not None:
        diff = r.total_l - state.last_total_l
        if diff < 0:
            reset = True
            roll = cfg.meter_rollover_l
            if roll is not None and state.last_total_l > 0.9 * roll:
                diff = roll - state.last_total_l + r.total_l
            else:
                diff = r.total_l  # counting again from zero since the reset
        if diff <= cfg.max_plausible_lpm * max(since_last, _MIN_SPAN_S) / 60:
            derived = diff
        else:
            reset = True  # a meter swapped for one with another reading: not water used
    if r.flow_l is not None and r.interval_s is not None:
        start = ts - timedelta(seconds=r.interval_s)
        tolerance = timedelta(seconds=max(60.0, 0.1 * r.interval_s))
        contiguous = state.last_ts is not None and start <= state.last_ts + tolerance
        litres = r.flow_l
        if not contiguous and derived is not None and derived > litres:
            litres = derived  # reports were lost; the total still counted the water
        rate = r.flow_l * 60 / r.interval_s
        return _Flow(litres, rate, contiguous, reset, start, r.flow_l)
    if derived is not None and since_last:
        contiguous = since_last <= cfg.max_report_gap.total_seconds()
        # The total's interval began at the last report; after a gap, when is not known.
        began = state.last_ts if contiguous else None
        run_l = derived if contiguous else 0.0
        return _Flow(derived, derived * 60 / since_last, contiguous, reset, began, run_l)
    if derived is not None:
        return _Flow(derived, None, True, reset)  # no time since the last report: no rate
    return _Flow(None, None, False, reset)


def _pause(state: WaterState, paused_until: datetime | None, now: datetime) -> WaterState:
    if paused_until is None or paused_until <= now:
        return state
    until = paused_until if state.paused_until is None else max(paused_until, state.paused_until)
    today = state.today
    if today is not None and today.excluded != "paused":
        today = replace(today, excluded="paused")
    return replace(state, paused_until=until, today=today)


def _hm(dt: datetime, cfg: WaterConfig) -> str:
    return dt.astimezone(cfg.zone).strftime("%H:%M")


def _dur(seconds: float) -> str:
    m = int(seconds // 60)
    return f"{m // 60}h{m % 60:02d}"


def observe(
    state: WaterState,
    reading: Telemetry,
    now: datetime,
    cfg: WaterConfig,
    paused_until: datetime | None = None,
) -> tuple[WaterState, list[WaterDecision]]:
    """A telemetry message from the elder's water meter; `now` is when the gateway received it.

    `paused_until`: the end of a suppression of `no_water_use` in force now (None: none).
    The reading is taken at its own time, or at `now` when the device's clock cannot be right
    (`alerts.readtime`; the first such reading of a spell gives `Warn(no_water_use,
    "clock_skew")`). Readings taken at the same time are each counted, in the order given.
    A reading without water readings changes nothing; one taken before the last (a message
    that arrived late) is left out, as the windows are built in time order and a total
    after it has its water.
    """
    if reading.flow_l is None and reading.total_l is None:
        return state, []
    ts, off = readtime.taken_at(reading.ts, now, cfg.late_max)
    decisions: list[WaterDecision] = []
    if off is not None and state.clock_off is None:
        note = readtime.clock_note(reading.ts, now, off)
        decisions.append(Warn(state.device_id, AlertKind.NO_WATER_USE, "clock_skew", note))
    if off != state.clock_off:
        state = replace(state, clock_off=off)
    if state.last_ts is not None and ts < state.last_ts:
        return state, decisions
    local = ts.astimezone(cfg.zone)
    state = _pause(_roll(state, local, cfg), paused_until, now)
    flow = _flow(state, reading, ts, cfg)
    assert state.today is not None
    today = state.today
    if state.last_ts is not None:
        span = min((ts - state.last_ts).total_seconds(), cfg.max_report_gap.total_seconds())
        today = replace(today, covered_s=today.covered_s + span)
    recent = state.recent
    cutoff = ts.timestamp() - 3 * 86_400
    if recent and recent[0][0] < cutoff:
        recent = tuple(x for x in recent if x[0] >= cutoff)
    last_use = state.last_use
    alerted, alerted_at = state.no_use_alerted, state.no_use_alerted_at
    rearmed = state.rearmed_at
    if flow.litres is not None and flow.litres > 0:
        recent = (*recent, (ts.timestamp(), flow.litres))
        if flow.litres >= cfg.use_min_l:
            last_use = ts
            minute = local.hour * 60 + local.minute
            if not today.uses or today.uses[-1] != minute:
                today = replace(today, uses=(*today.uses, minute))
            if alerted is not None:
                decisions.append(
                    Clear(
                        state.device_id,
                        AlertKind.NO_WATER_USE,
                        "water_used_again",
                        f"{flow.litres:.1f} L by {_hm(ts, cfg)} (alert was {alerted})",
                    )
                )
                alerted, alerted_at = None, None
                rearmed = ts
    state = replace(
        state,
        since=state.since or ts,
        last_ts=ts,
        last_total_l=reading.total_l if reading.total_l is not None else state.last_total_l,
        last_use=last_use,
        recent=recent,
        today=today,
        no_use_alerted=alerted,
        no_use_alerted_at=alerted_at,
        rearmed_at=rearmed,
        meter_resets=state.meter_resets + (1 if flow.reset else 0),
    )
    state, running = _running(state, flow, reading, ts, cfg)
    decisions.extend(running)
    state, no_use = _evaluate(state, now, cfg)
    decisions.extend(no_use)
    return state, decisions


def _running(
    state: WaterState, flow: _Flow, reading: Telemetry, ts: datetime, cfg: WaterConfig
) -> tuple[WaterState, list[WaterDecision]]:
    out: list[WaterDecision] = []
    flowing = flow.rate_lpm is not None and flow.rate_lpm >= cfg.running_min_lpm
    start, litres, alerted = state.run_start, state.run_litres, state.running_alerted
    rearmed = state.running_rearmed_at
    if flow.rate_lpm is None and flow.contiguous:
        # No time since the last report (readings taken at one arrival): neither flow nor a
        # pause, only its water.
        if start is None:
            return state, out
        return replace(state, run_litres=litres + (flow.litres or 0.0)), out
    if start is None and not flowing:
        return state, out
    if start is not None and not (flowing and flow.contiguous):
        if alerted:
            why = "flow_stopped" if flow.contiguous else "reports_gap"
            detail = f"after {_dur((ts - start).total_seconds())} and {litres:.0f} L"
            out.append(Clear(state.device_id, AlertKind.WATER_RUNNING, why, detail))
        start, litres, alerted, rearmed = None, 0.0, False, None
    if flowing:
        if start is None:
            # The run began with its first interval of flow, not at the report that ended it.
            start = flow.start or ts
            litres = 0.0
        litres += flow.run_l
        # Someone looked when the run's alert was closed: a whole window from then, not at once.
        counted_from = start if rearmed is None else max(start, rearmed)
        if not alerted and ts - counted_from >= cfg.running_window:
            alerted = True
            window = _dur(cfg.running_window.total_seconds())
            again = "" if rearmed is None else f"; its alert was closed at {_hm(rearmed, cfg)}"
            out.append(
                Raise(
                    state.device_id,
                    AlertKind.WATER_RUNNING,
                    "continuous_flow",
                    f"water flowing without a pause for {_dur((ts - start).total_seconds())}"
                    f" since {_hm(start, cfg)} ({litres:.0f} L; every report at least"
                    f" {cfg.running_min_lpm:g} L/min; window {window}{again})",
                )
            )
    return replace(
        state,
        run_start=start,
        run_litres=litres,
        running_alerted=alerted,
        running_rearmed_at=rearmed,
    ), out


# --------------------------------------------------------------------------------------------
# the no-water rules
# --------------------------------------------------------------------------------------------


def _at(day: date, minutes: float, cfg: WaterConfig) -> datetime:
    midnight = datetime.combine(day, time(0), tzinfo=cfg.zone)
    return midnight + timedelta(minutes=minutes)


def daytime_window_start(now: datetime, cfg: WaterConfig) -> datetime:
    """The start of the last `fixed_window` of daytime before `now` (night hours skipped)."""
    zone = cfg.zone
    left = cfg.fixed_window
    cursor = now.astimezone(zone)
    for _ in range(10):  # at most a few days back
        d = cursor.date()
        start = datetime.combine(d, cfg.day_start, tzinfo=zone)
        end = datetime.combine(d, cfg.day_end, tzinfo=zone)
        if cursor > end:
            cursor = end
        if cursor <= start:
            cursor = datetime.combine(d - timedelta(days=1), cfg.day_end, tzinfo=zone)
            continue
        take = min(left, cursor - start)
        cursor -= take
        left -= take
        if left <= timedelta(0):
            return cursor
        cursor = datetime.combine(d - timedelta(days=1), cfg.day_end, tzinfo=zone)
    return cursor


def _daytime(local: datetime, cfg: WaterConfig) -> bool:
    return cfg.day_start <= local.time() < cfg.day_end


def _anchor(state: WaterState) -> datetime:
    """Where the silence is counted from: the last use, the end of a pause, the first report,
    or a person's look at the elder (an alert closed while still dry, `rearm`)."""
    marks = (state.last_use, state.paused_until, state.since, state.rearmed_at)
    return max(t for t in marks if t is not None)


def _evaluate(
    state: WaterState, now: datetime, cfg: WaterConfig
) -> tuple[WaterState, list[WaterDecision]]:
    if state.no_use_alerted is not None or state.last_ts is None or state.since is None:
        return state, []
    if now - state.last_ts > cfg.stale_after:
        return state, []  # no data is not no water: device_offline speaks for it
    if state.paused_until is not None and now < state.paused_until:
        return state, []
    local = now.astimezone(cfg.zone)
    anchor = _anchor(state)
    silence = (now - anchor).total_seconds()
    found: tuple[str, str] | None = None
    rhythm = state.rhythm
    learned = cfg.learn and rhythm is not None and rhythm.days >= cfg.min_history_days
    if learned:
        assert rhythm is not None
        found = _learned(state, rhythm, local, anchor, silence, cfg)
    if found is None and (not learned or cfg.fixed_backstop) and _daytime(local, cfg):
        found = _fixed(state, now, cfg)
    if found is None:
        return state, []
    reason, detail = found
    state = _mark_alerted(state, anchor.astimezone(cfg.zone).date(), cfg)
    state = replace(state, no_use_alerted=reason, no_use_alerted_at=now)
    return state, [Raise(state.device_id, AlertKind.NO_WATER_USE, reason, detail)]


def _mark_alerted(state: WaterState, first: date, cfg: WaterConfig) -> WaterState:
    """Maybe a fall: the days the silence covers are not learned as normal (`include_day`
    puts one back when the alert was a false alarm)."""
    today = state.today
    if today is not None and today.excluded is None:
        today = replace(today, excluded="alerted")
    history = tuple(
        replace(d, excluded="alerted") if d.day >= first and d.excluded is None else d
        for d in state.history
    )
    if history == state.history:
        return replace(state, today=today)
    return replace(state, today=today, history=history, rhythm=_learn(history, cfg))


def _learned(
    state: WaterState,
    rhythm: Rhythm,
    local: datetime,
    anchor: datetime,
    silence: float,
    cfg: WaterConfig,
) -> tuple[str, str] | None:
    morning = datetime.combine(local.date(), cfg.morning_from, tzinfo=cfg.zone)
    if local < morning:
        return None
    now_min = local.hour * 60 + local.minute
    today = state.today if state.today is not None and state.today.day == local.date() else None
    learned_from = f"{rhythm.days} days learned"
    spread = max(cfg.first_use_k * _MAD_TO_SD * rhythm.first_use_mad, 0.0)
    margin = max(spread, cfg.first_use_floor.total_seconds() / 60)
    deadline = _at(local.date(), rhythm.first_use_median + margin, cfg)
    # Nothing used since before the usual waking window (a lone flush at 04:30 is the night's):
    # the morning rule. Any later use, or a pause that ended this morning: the gap rule.
    if anchor < _at(local.date(), rhythm.first_use_median - margin, cfg):
        if local < deadline:
            return None
        usual_at = _at(local.date(), rhythm.first_use_median, cfg)
        return (
            "no_first_use",
            f"learned rhythm: the day has not begun (last used {_when(anchor, local, cfg)});"
            f" usually first used at {usual_at:%H:%M} (MAD {rhythm.first_use_mad:.0f} min,"
            f" {learned_from}); expected by {deadline:%H:%M}",
        )
    began = woke(today.uses, _minutes(cfg.morning_from), now_min) if today else None
    if began is None and local < deadline:
        return None  # a use, then back to bed: wait for the usual morning before judging
    if local.time() >= cfg.day_end:
        return None
    b = now_min // BIN_MIN
    usual = _known(rhythm.silence, b)
    if usual == _UNKNOWN:
        return None
    limit = usual + max(cfg.gap_margin * usual, cfg.gap_floor.total_seconds() / 60)
    if silence / 60 > limit:
        return (
            "long_gap",
            f"learned rhythm: no water for {_dur(silence)} since {_when(anchor, local, cfg)};"
            f" at this hour the usual longest silence is {_dur(usual * 60)}"
            f" (limit {_dur(limit * 60)}, {learned_from})",
        )
    return None


def _known(profile: tuple[int, ...], b: int) -> int:
    """The profile at quarter hour `b`, or at the next one it knows (an early start today)."""
    for v in profile[b:]:
        if v != _UNKNOWN:
            return v
    return max(profile)


def _when(t: datetime, local: datetime, cfg: WaterConfig) -> str:
    lt = t.astimezone(cfg.zone)
    if lt.date() == local.date():
        return f"{lt:%H:%M}"
    if lt.date() == local.date() - timedelta(days=1):
        return f"{lt:%H:%M} yesterday"
    return f"{lt:%Y-%m-%d %H:%M}"


def _fixed(state: WaterState, now: datetime, cfg: WaterConfig) -> tuple[str, str] | None:
    start = daytime_window_start(now, cfg)
    data_from = max(t for t in (state.since, state.paused_until, state.rearmed_at) if t)
    if data_from > start:
        return None  # not yet a whole window of reports
    first = bisect.bisect_right(state.recent, start.timestamp(), key=lambda x: x[0])
    litres = sum(v for _, v in state.recent[first:])
    if litres >= cfg.fixed_min_l:
        return None
    local = now.astimezone(cfg.zone)
    return (
        "fixed_window",
        f"fixed rule: {litres:.1f} L in the last {_dur(cfg.fixed_window.total_seconds())} of"
        f" daytime (since {_when(start, local, cfg)}); expected at least {cfg.fixed_min_l:g} L",
    )


def check(
    state: WaterState, now: datetime, cfg: WaterConfig, paused_until: datetime | None = None
) -> tuple[WaterState, list[WaterDecision]]:
    """The periodic tick: is the silence so far already too long?"""
    state = _pause(_roll(state, now.astimezone(cfg.zone), cfg), paused_until, now)
    return _evaluate(state, now, cfg)


def rearm(state: WaterState, kind: AlertKind, at: datetime) -> WaterState:
    """The alert of the episode on (`water_running` or `no_water_use`) was closed by a person
    at `at` while its condition goes on: the water still runs, or none has been used since.

    A resolution is not a mute: the rule is armed again, and raises anew once a whole window
    has passed since `at`, not at once, since someone looked then (as a use would, for the
    no-water rules). An episode that already ended (the flow stopped, water used) is left."""
    if kind == AlertKind.WATER_RUNNING:
        if not state.running_alerted or state.run_start is None:
            return state
        return replace(state, running_alerted=False, running_rearmed_at=at)
    if kind == AlertKind.NO_WATER_USE:
        if state.no_use_alerted is None:
            return state
        rearmed = at if state.rearmed_at is None else max(at, state.rearmed_at)
        return replace(state, no_use_alerted=None, no_use_alerted_at=None, rearmed_at=rearmed)
    return state


# --------------------------------------------------------------------------------------------
# when to look again
# --------------------------------------------------------------------------------------------


def next_check(state: WaterState, now: datetime, cfg: WaterConfig) -> datetime | None:
    """The earliest time at which `check` could raise `no_water_use` if no report came before
    it: a lower bound, never later than the first such time, so a tick that waits for it finds
    every silence as soon as a tick every minute would (None: not before the next report).

    Each rule has a time before which it cannot fire: the learned morning (its deadline), the
    learned day (the last use plus that quarter hour's limit, before `day_end`), the fixed
    window (12 h of daytime past the last use of the window's litres), and the next local day
    (a new rhythm, judged from `morning_from`). Past `stale_after` since the last report no
    rule fires at all. A pause only delays: it is left out, and so is whether the elder is
    back in bed (`woke`). The caller reckons again whenever the state or `cfg` changes.
    """
    if state.no_use_alerted is not None or state.last_ts is None or state.since is None:
        return None
    horizon = state.last_ts + cfg.stale_after  # later, no data is not no water
    if now > horizon:
        return None
    zone = cfg.zone
    local = now.astimezone(zone)
    state = _roll(state, local, cfg)  # as `check` sees it: today's rhythm
    anchor = _anchor(state)
    found = [_fixed_next(state, cfg, horizon)]
    if cfg.learn:
        tomorrow = datetime.combine(local.date() + timedelta(days=1), cfg.morning_from, zone)
        found.append(tomorrow)
        rhythm = state.rhythm
        if rhythm is not None and rhythm.days >= cfg.min_history_days:
            found.append(_learned_next(rhythm, local, anchor, cfg, horizon))
    first = min((t for t in found if t is not None), default=None)
    if first is None or first > horizon:
        return None
    if first.astimezone(zone).utcoffset() != local.utcoffset():
        return now  # a clock change in between: wall times and elapsed times part; look now
    return max(first, now)


def _learned_next(
    rhythm: Rhythm, local: datetime, anchor: datetime, cfg: WaterConfig, horizon: datetime
) -> datetime | None:
    """`_learned`'s first possible alert today (its other conditions only delay it; None: not
    today, nor by `horizon`)."""
    day = local.date()
    zone = cfg.zone
    morning = datetime.combine(day, cfg.morning_from, zone)
    spread = max(cfg.first_use_k * _MAD_TO_SD * rhythm.first_use_mad, 0.0)
    margin = max(spread, cfg.first_use_floor.total_seconds() / 60)
    if anchor < _at(day, rhythm.first_use_median - margin, cfg):
        return max(morning, _at(day, rhythm.first_use_median + margin, cfg))  # no_first_use
    end = min(datetime.combine(day, cfg.day_end, zone), horizon + timedelta(milliseconds=1))
    floor = cfg.gap_floor.total_seconds() / 60
    start = max(local, morning, anchor + cfg.gap_floor).astimezone(zone)
    if start >= end:
        return None
    minute = start.hour * 60 + start.minute
    for b in range(minute // BIN_MIN, BINS):
        lo = datetime.combine(day, time(b * BIN_MIN // 60, b * BIN_MIN % 60), zone)
        if lo >= end:
            return None
        usual = _known(rhythm.silence, b)
        if usual == _UNKNOWN:
            continue
        limit = usual + max(cfg.gap_margin * usual, floor)
        # silence / 60 > limit: a millisecond past the limit
        at = max(start, lo, anchor + timedelta(minutes=limit, milliseconds=1))
        hi = lo + timedelta(minutes=BIN_MIN)
        if at < min(hi, end):
            return at
    return None


def _fixed_next(state: WaterState, cfg: WaterConfig, horizon: datetime) -> datetime | None:
    """`_fixed`'s first possible alert: once the window no longer reaches back to the start of
    the data, nor to the use that brought its litres to `fixed_min_l`, in daytime (None: not
    by `horizon`)."""
    data_from = max(t for t in (state.since, state.paused_until, state.rearmed_at) if t)
    if data_from + cfg.fixed_window > horizon:  # a window of daytime is at least that long
        return None
    total = 0.0
    for ts, litres in reversed(state.recent):
        total += litres
        if total >= cfg.fixed_min_l:
            data_from = max(data_from, datetime.fromtimestamp(ts, cfg.zone))
            break
    if data_from + cfg.fixed_window > horizon:
        return None
    return _window_after(data_from, cfg)


def _window_after(start: datetime, cfg: WaterConfig) -> datetime:
    """The first daytime moment whose last `fixed_window` of daytime begins at or after `start`
    (`daytime_window_start` turned around)."""
    zone = cfg.zone
    left = cfg.fixed_window
    cursor = start.astimezone(zone)
    for _ in range(10):  # as daytime_window_start: a few days at most; stopping early is sooner
        d = cursor.date()
        begin = datetime.combine(d, cfg.day_start, zone)
        end = datetime.combine(d, cfg.day_end, zone)
        if cursor < begin:
            cursor = begin
        if cursor < end:
            take = min(left, end - cursor)
            cursor += take
            left -= take
            if left <= timedelta(0) and cursor < end:
                return cursor
        if left <= timedelta(0):  # the window ends with the day: the rule speaks next morning
            return datetime.combine(d + timedelta(days=1), cfg.day_start, zone)
        cursor = datetime.combine(d + timedelta(days=1), cfg.day_start, zone)
    return cursor
