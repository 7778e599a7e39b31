"""A simulated community over a month, in accelerated time, to prove the alarm rules.

    .venv/bin/python -m tests.bench.sim_community [--days 30] [--elders 60] [--seed 7]
        [--warmup 21] [--frontier] [--ask]

Pure Python: it calls the rules of `alerts.water`, `alerts.gas`, `alerts.health` and
`alerts.suppression` directly with a simulated clock (a tick every 5 minutes), the way the
gateway wires them, and no broker or database. Seeded and deterministic. Not a test: it prints
figures and the targets met, and exits 0.

The world: elders in buildings of eight flats, each with a water meter (telemetry every 15
minutes: `flow_l` with `interval_s`, and `total_l`), a gas sensor (`lel_pct`, `co_ppm` every 5
minutes; mains-powered, with a Last Will) and a call button (hourly heartbeat with
`battery_pct`; behind a hub, so no Last Will). Each elder has a rhythm of their own: early
risers (~05:30), ordinary (~07:00) and late risers (~09:30), day-to-day scatter, later weekends
for some; toilet visits (fairly regular, every 70-140 min), washing, cooking and dishes, the
kettle, showers, laundry, night toilet visits, a dripping tap in some flats; naps, a weekly club
or two, errands (mostly at the elder's usual hour), now and then a long outing (3-6 h, about
monthly) or an unwell day that starts late. A quarter of the elders are frail and homebound and
rarely go out. Some go away for a few days: most are marked away (the rule pauses), some are
not (no water at home: any rule alerts, and these are counted apart, since nobody knew where
the elder was). A false alarm resolved by a responder is learned from (`water.include_day`).

Injected in the measured period (after `--warmup` days the rules learn from, as in a station
that has been running): falls that stop all water use (three in four by day; the elder is found
36 h later, then 4 days in hospital, marked), taps left open, gas leaks (rising, hovering at the
alarm line, slow and fast CO; half the homes have a valve, which sometimes fails or does not
answer), batteries draining to nothing (replaced after the offline alert), a power cut taking a
building's devices offline at once, and the odd lost report.

It prints, per rule: incidents injected, detected, detection delay (median, worst) and false
alarms per 100 elder-days; for no_water_use the learned rhythm and the fixed 12-hour rule side
by side, on the same water readings (`--frontier` adds other settings of the learned rhythm,
and the learned rhythm told of every outing as it happens, the rule paused for it; `--ask`
adds narrower settings that ask the elder first, as a check-in on the call button might, and
page only when nobody answers). It also
checks `water.next_check`, by which the gateway's tick plans its next look at a water state:
how often that lets the tick look, and that no alert would come later for waiting for it.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time as wallclock
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerts import gas, health, water
from alerts.decisions import Clear, Escalate, Note, Raise, SendCommand, Warn
from alerts.health import OutageChanged, OutageClosed, OutageOpened
from alerts.model import AlertKind
from alerts.suppression import AwayStatus, ElderAway, verdict
from devices.kinds import DeviceKind
from devices.payloads import Telemetry

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 9, 7, tzinfo=TZ)  # a Monday: the warm-up starts here
TICK = 5  # minutes
DAY = 1440
WATER_EVERY = 15
GAS_EVERY = 5
BUTTON_EVERY = 60
FLAT_PER_BUILDING = 8
FOUND_AFTER = 36 * 60  # a fallen elder is found by chance this long after the fall
HOSPITAL = 4 * DAY


# Other operating points of the learned rhythm, shown with --frontier (the trade-off between
# detection delay and false alarms).
FRONTIER = {
    "morning k 5 (before)": water.WaterConfig(first_use_k=5.0),
    "margin +50%": water.WaterConfig(gap_margin=0.5),
    "margin +100%": water.WaterConfig(gap_margin=1.0),
    "gap + 90 min": water.WaterConfig(gap_margin=0.0, gap_floor=timedelta(minutes=90)),
    "drop outliers": water.WaterConfig(gap_outlier_days=14),
    "drop outl. +50%": water.WaterConfig(gap_outlier_days=14, gap_margin=0.5),
    # Every outing known as it happens (as a door sensor might tell it), the rule paused for it:
    # what is left is the elders' own silences at home.
    "outings known": water.WaterConfig(),
    "outings known +25%": water.WaterConfig(gap_margin=0.25),
}
KNOWN_OUTINGS = {"outings known", "outings known +25%"}

# Ask the elder first (--ask): a check-in on the call button (it beeps, the elder presses to say
# all is well), which the contract does not have. Where the rule would page, the elder is asked;
# an answer within ASK_WAIT minutes restarts the silence, no answer pages then. The chance of an
# answer is assumed, not measured: ANSWER_P when up and at home, napping, asleep; never when out
# (the button stays at home), away, or fallen.
ASK = {
    "ask first +0% k3": water.WaterConfig(gap_margin=0.0, first_use_k=3.0),
    "ask first +25% k4": water.WaterConfig(gap_margin=0.25, first_use_k=4.0),
    "ask first +50% k4": water.WaterConfig(gap_margin=0.5, first_use_k=4.0),
    "ask first +0 min k3": water.WaterConfig(
        gap_margin=0.0, gap_floor=timedelta(0), first_use_k=3.0
    ),
}
ASK_WAIT = 15
ANSWER_P = {"up": 0.9, "nap": 0.6, "asleep": 0.3}


def at(m: float) -> datetime:
    return START + timedelta(minutes=m)


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt_min(m: float | None) -> str:
    if m is None:
        return "-"
    m = round(m)
    return f"{m // 60}h{m % 60:02d}"


def daytime(m: float) -> bool:
    return 6 * 60 <= m % DAY < 22 * 60


def up(e: Elder, m: float) -> bool:
    """Was the elder up (between getting up and going to bed) at minute m?"""
    day = int(m // DAY)
    return any(w <= m < b for w, b in (e.awake.get(day, (0, 0)), e.awake.get(day - 1, (0, 0))))


# --------------------------------------------------------------------------------------------
# the people
# --------------------------------------------------------------------------------------------


@dataclass
class Absence:
    start: float
    end: float
    kind: str  # trip | fallen | hospital
    marked: bool


@dataclass
class Elder:
    idx: int
    id: str
    building: str
    chronotype: str
    wake_mean: float
    wake_sd: float
    weekend_shift: float
    awake_hours: float
    flush_gap: float
    nap: tuple[float, float] | None
    activities: list[tuple[int, float, float]]  # (weekday, start minute, minutes)
    homebound: bool  # frail: short errands now and then, no clubs, no long outings
    shop_at: float  # the usual time of the errand to the market or the shops
    scale: float
    drip_lpm: float
    has_valve: bool
    co_cooking: float  # ppm a meal adds in the kitchen
    water_phase: int
    button_phase: int
    uses: list[tuple[float, float]] = field(default_factory=list)
    use_t: list[float] = field(default_factory=list)
    cooking: list[float] = field(default_factory=list)
    absences: list[Absence] = field(default_factory=list)
    aways: list[ElderAway] = field(default_factory=list)
    outings: list[tuple[float, float, str]] = field(default_factory=list)
    unwell_days: set[int] = field(default_factory=set)
    awake: dict[int, tuple[float, float]] = field(default_factory=dict)  # day -> (wake, bed)
    busy: list[tuple[float, float]] = field(default_factory=list)

    def is_busy(self, a: float, b: float) -> bool:
        return any(a < y and x < b for x, y in self.busy)

    def absent(self, m: float) -> Absence | None:
        for a in self.absences:
            if a.start <= m < a.end:
                return a
        return None


def make_elder(i: int, rng: random.Random) -> Elder:
    chronotype = rng.choices(["early", "ordinary", "late"], weights=[3, 4.5, 2.5])[0]
    wake = {"early": 5 * 60 + 30, "ordinary": 7 * 60, "late": 9 * 60 + 30}[chronotype]
    nap = None
    if rng.random() < 0.5:
        nap = (rng.uniform(12 * 60 + 40, 13 * 60 + 30), rng.uniform(50, 120))
    homebound = rng.random() < 0.25
    activities = []
    for _ in range(0 if homebound else rng.choice([0, 1, 1, 2])):
        start = max(rng.choice([8.5, 9, 9.5, 13.5, 14, 14.5, 15]) * 60, wake + 120)
        activities.append((rng.randrange(7), start, rng.uniform(120, 210)))
    return Elder(
        idx=i,
        id=f"e{i:03d}",
        building=f"b{i // FLAT_PER_BUILDING:02d}",
        chronotype=chronotype,
        wake_mean=wake + rng.gauss(0, 15),
        wake_sd=rng.uniform(8, 25),
        weekend_shift=rng.choice([0, 0, 0, 20, 40]),
        awake_hours=rng.uniform(14.5, 16.5),
        flush_gap=rng.uniform(70, 140),
        nap=nap,
        activities=activities,
        homebound=homebound,
        shop_at=rng.uniform(wake + 90, 16 * 60),
        scale=rng.uniform(0.7, 1.4),
        drip_lpm=0.03 if rng.random() < 0.1 else 0.0,
        has_valve=rng.random() < 0.5,
        co_cooking=rng.choice([8, 12, 20, 35]),
        water_phase=rng.choice([0, 5, 10]),
        button_phase=rng.randrange(12) * 5,
    )


def plan_day(e: Elder, day: int, rng: random.Random) -> None:
    """The day's water uses (minute, litres), cooking times and outings of one elder."""
    base = day * DAY
    weekday = (START + timedelta(days=day)).weekday()
    weekend = weekday >= 5
    unwell = rng.random() < 0.02
    if unwell:
        e.unwell_days.add(day)
    wake = e.wake_mean + (e.weekend_shift if weekend else 0) + rng.gauss(0, e.wake_sd)
    if unwell:
        wake += rng.uniform(30, 120)
    bed = wake + e.awake_hours * 60 + rng.gauss(0, 30)
    bed = min(bed, 23.75 * 60)
    e.awake[day] = (base + wake, base + bed)
    uses: list[tuple[float, float]] = []

    def use(m: float, litres: float) -> None:
        uses.append((base + m, litres * e.scale))

    use(wake + rng.uniform(1, 8), 6)  # toilet
    use(wake + rng.uniform(5, 15), 2)  # washing
    breakfast = wake + rng.uniform(20, 50)
    use(breakfast, 2.5)
    e.cooking.append(base + breakfast)
    use(breakfast + rng.uniform(30, 60), 5)
    lunch = 11.5 * 60 + rng.gauss(0, 20)
    if lunch > wake + 120:
        use(lunch, 4)
        use(lunch + rng.uniform(35, 60), 8)
        e.cooking.append(base + lunch)
    dinner = 17.5 * 60 + rng.gauss(0, 25)
    use(dinner, 4)
    use(dinner + rng.uniform(35, 70), 8)
    e.cooking.append(base + dinner)
    gap = e.flush_gap * (1.4 if unwell else 1.0)
    # toilet visits come as the bladder fills: fairly regular (gamma, shape 4), not memoryless
    m = wake + rng.gammavariate(4, gap / 4)
    while m < bed:
        use(m, 6)
        use(m + 1, 1)
        m += rng.gammavariate(4, gap / 4)
    m = wake + rng.expovariate(1 / 180)
    while m < bed:
        use(m, 1.5)  # the kettle, a glass of water
        m += rng.expovariate(1 / 180)
    if rng.random() < 0.5:
        use(bed - rng.uniform(30, 90), 45)  # shower
    if not weekend and rng.random() < 0.25:
        m = rng.uniform(9 * 60, 16 * 60)
        for k in range(3):
            use(m + 20 * k, 15)  # laundry fills
    next_wake = e.wake_mean + DAY
    for _ in range(rng.choice([0, 1, 1, 2])):
        use(rng.uniform(bed + 30, next_wake - 30), 6)  # at night
    # away from the taps: nap, weekly activities, shopping, now and then a long outing
    out: list[tuple[float, float, str]] = []
    if e.nap is not None:
        out.append((e.nap[0] + rng.gauss(0, 15), e.nap[1] + rng.gauss(0, 15), "nap"))
    for wd, start, dur in e.activities:
        if wd == weekday:
            out.append((start + rng.gauss(0, 10), dur + rng.gauss(0, 15), "activity"))
    if rng.random() < (0.15 if e.homebound else 0.35):
        # errands mostly at the elder's usual hour, now and then at any hour
        if rng.random() < 0.7:
            start = e.shop_at + rng.gauss(0, 40)
        else:
            start = rng.uniform(wake + 60, 17 * 60)
        dur = rng.uniform(30, 75) if e.homebound else rng.uniform(50, 150)
        out.append((start, dur, "shopping"))
    if rng.random() < (0.005 if e.homebound else 0.03):
        out.append((rng.uniform(8.5 * 60, 14 * 60), rng.uniform(180, 360), "long_outing"))
    spans = [(base + s, base + s + d) for s, d, _ in out if d > 0]
    e.outings.extend((base + s, base + s + d, k) for s, d, k in out if d > 0)
    for _, b in spans:
        if rng.random() < 0.8:
            uses.append((b + rng.uniform(2, 25), 6 * e.scale))  # home again: the toilet
    meals = {base + breakfast, base + lunch, base + dinner}
    for u in uses:
        inside = next(((a, b) for a, b in spans if a <= u[0] < b), None)
        if inside is None:
            e.uses.append(u)
        elif u[0] in meals or u[1] >= 5 * e.scale:
            # the meal, the dishes or the laundry wait until the elder is back
            e.uses.append((inside[1] + rng.uniform(10, 60), u[1]))


# --------------------------------------------------------------------------------------------
# injected incidents
# --------------------------------------------------------------------------------------------


@dataclass
class Fall:
    elder: Elder
    at: float
    found: float
    detected: dict[str, float] = field(default_factory=dict)  # variant -> minute


@dataclass
class Tap:
    elder: Elder
    start: float
    rate: float
    end: float
    detected: float | None = None


@dataclass
class Leak:
    elder: Elder
    kind: str  # rising | hover | co_slow | co_fast
    start: float
    peak: float
    duration: float
    stop: float | None = None  # when it was stopped (valve, a responder), then it decays
    detected: float | None = None
    raises: int = 0
    clears: int = 0
    naive_raises: int = 0


@dataclass
class DeadBattery:
    device: str
    kind: DeviceKind
    start: float
    drain_per_day: float
    death: float
    low_at: float | None = None
    low_raises: int = 0
    offline_at: float | None = None
    replaced: float | None = None  # a new battery, some hours after the offline alert


@dataclass
class PowerCut:
    building: str
    start: float
    end: float
    opened: float | None = None
    members: int = 0
    joined: int = 0
    singles: int = 0


def leak_level(k: Leak, m: float) -> float:
    """The leak's own contribution (%LEL or ppm) at minute m."""
    if m < k.start:
        return 0.0
    t = m - k.start
    if k.kind == "rising":
        v = min(k.peak, k.peak * t / 30)
    elif k.kind == "hover":
        v = min(k.peak, k.peak * t / 20) + 1.6 * math.sin(t / 7.0)
    elif k.kind == "co_slow":
        v = min(k.peak, k.peak * t / 40)
    else:
        v = min(k.peak, k.peak * t / 15)
    end = k.start + k.duration if k.stop is None else min(k.stop, k.start + k.duration)
    if m > end:
        v *= 0.5 ** ((m - end) / 8)  # windows open: half-life of 8 minutes
    return max(v, 0.0)


# --------------------------------------------------------------------------------------------
# the simulation
# --------------------------------------------------------------------------------------------


class Sim:
    def __init__(
        self,
        days: int,
        elders: int,
        seed: int,
        warmup: int,
        frontier: bool = False,
        ask: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.days, self.warmup = days, warmup
        self.t0 = warmup * DAY  # the measured period starts here
        self.t_end = (warmup + days) * DAY
        self.elders = [make_elder(i, self.rng) for i in range(elders)]
        self.by_id = {e.id: e for e in self.elders}
        self.buildings = sorted({e.building for e in self.elders})
        self.variants = {
            "learned": water.WaterConfig(),
            "fixed": water.WaterConfig(learn=False),
        }
        self.names = {"learned": "learned rhythm", "fixed": "fixed 12 h < 10 L"}
        if frontier:  # other settings of the learned rhythm, on the same readings
            for name, cfg in FRONTIER.items():
                self.variants[name] = cfg
                self.names[name] = name
        if ask:
            for name, cfg in ASK.items():
                self.variants[name] = cfg
                self.names[name] = name
        self.asked: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.answer_rng = random.Random(seed + 1)  # apart: the world is the same with --ask
        self.hcfg = health.HealthConfig()
        self.falls: list[Fall] = []
        self.taps: list[Tap] = []
        self.leaks: list[Leak] = []
        self.batteries: list[DeadBattery] = []
        self.cuts: list[PowerCut] = []
        self.blips: dict[str, list[tuple[float, float]]] = {}
        # (variant, elder) -> water.next_check after the last report or check
        self.plan: dict[tuple[str, str], datetime | None] = {}
        self.looks: Counter[str] = Counter()
        self.checks: Counter[str] = Counter()
        self.missed_looks: Counter[str] = Counter()
        self.check_raises: Counter[str] = Counter()
        self.nowater: dict[str, list[tuple[Elder, float, str, str]]] = {
            v: [] for v in self.variants
        }
        self.running_raises: list[tuple[Elder, float]] = []
        self.gas_raises: list[tuple[Elder, float, str]] = []
        self.gas_warns: list[tuple[Elder, float]] = []
        self.escalations: Counter[str] = Counter()
        self.valve_results: Counter[str] = Counter()
        self.offline_raises: list[tuple[str, float, str]] = []
        self.low_raises: list[tuple[str, float]] = []
        self.outages: list[tuple[str, float, int]] = []
        self.outage_joins = 0
        self.pending_results: list[tuple[float, Elder, str, bool]] = []
        self.to_include: list[tuple[float, Elder, str, datetime]] = []
        self._plan()

    # --- the world ---------------------------------------------------------------------------

    def _plan(self) -> None:
        rng = self.rng
        total_days = self.warmup + self.days
        for e in self.elders:
            e.busy = []
        self._trips(total_days)
        self._inject()
        for e in self.elders:
            for d in range(total_days + 1):
                plan_day(e, d, rng)
            e.uses.sort()
            kept = []
            for u in e.uses:
                if e.absent(u[0]) is None:
                    kept.append(u)
            e.uses = kept
            e.use_t = [u[0] for u in e.uses]
            e.cooking.sort()
        for e in self.elders:
            for dev in (f"{e.id}-btn", f"{e.id}-gas", f"{e.id}-water"):
                blips = []
                for d in range(total_days):
                    if rng.random() < 0.03:  # a Wi-Fi or NB-IoT hiccup: a report or two lost
                        s = d * DAY + rng.uniform(0, DAY)
                        blips.append((s, s + rng.uniform(4, 9)))
                self.blips[dev] = blips

    def _trips(self, total_days: int) -> None:
        rng = self.rng
        for e in self.elders:
            d = 1
            while d < total_days - 1:
                if rng.random() < 0.015:
                    leave = d * DAY + rng.uniform(8 * 60, 11 * 60)
                    back = (d + rng.randint(1, 4)) * DAY + rng.uniform(15 * 60, 19 * 60)
                    marked = rng.random() < 0.6
                    e.absences.append(Absence(leave, back, "trip", marked))
                    e.busy.append((leave - DAY, back + DAY))
                    if marked:
                        e.aways.append(
                            ElderAway(
                                e.id,
                                AwayStatus.AWAY,
                                at(leave - 30),
                                at(back + rng.uniform(60, 240)),
                                "family",
                            )
                        )
                    d += 6
                else:
                    d += 1

    def _free_elder(self, start: float, end: float, tries: int = 200) -> Elder | None:
        for _ in range(tries):
            e = self.rng.choice(self.elders)
            if not e.is_busy(start, end):
                return e
        return None

    def _inject(self) -> None:
        rng = self.rng
        elder_days = len(self.elders) * self.days
        lo, hi = self.t0 + 60, self.t_end - 40 * 60
        # a power cut in one building (no other incident of its elders near it)
        for _ in range(1):
            b = rng.choice(self.buildings)
            m = rng.uniform(lo, hi)
            cut = PowerCut(b, m, m + rng.uniform(120, 240))
            self.cuts.append(cut)
            for e in self.elders:
                if e.building == b:
                    e.busy.append((cut.start - 6 * 60, cut.end + 6 * 60))
        # dead batteries: a call button or a water meter drains to nothing
        for _ in range(max(2, elder_days // 300)):
            start = rng.uniform(lo - 3 * DAY, hi - 5 * DAY)
            drain = rng.uniform(5, 9)
            death = start + 32 / drain * DAY
            e = self._free_elder(death - DAY, death + 2 * DAY)
            if e is None:
                continue
            kind = rng.choice([DeviceKind.CALL_BUTTON, DeviceKind.WATER_SENSOR])
            dev = f"{e.id}-{'btn' if kind == DeviceKind.CALL_BUTTON else 'water'}"
            e.busy.append((death - DAY, death + 2 * DAY))  # no fall while its meter is dead
            self.batteries.append(DeadBattery(dev, kind, start, drain, death))
        # falls: one per ~60 elder-days, three in four by day
        for _ in range(max(3, elder_days // 60)):
            for _ in range(50):
                day = rng.randrange(self.warmup, self.warmup + self.days)
                if rng.random() < 0.75:
                    m = day * DAY + rng.uniform(6 * 60, 22 * 60)
                else:
                    m = day * DAY + rng.choice([rng.uniform(0, 6 * 60), rng.uniform(22 * 60, DAY)])
                if not lo <= m <= hi:
                    continue
                e = self._free_elder(m - DAY, m + FOUND_AFTER + HOSPITAL + DAY)
                if e is None or any(f.elder is e for f in self.falls):
                    continue
                found = m + FOUND_AFTER
                e.absences.append(Absence(m, found, "fallen", False))
                e.absences.append(Absence(found, found + HOSPITAL, "hospital", True))
                e.aways.append(
                    ElderAway(
                        e.id, AwayStatus.IN_HOSPITAL, at(found), at(found + HOSPITAL), "staff"
                    )
                )
                e.busy.append((m - DAY, found + HOSPITAL + DAY))
                self.falls.append(Fall(e, m, found))
                break
        # taps left open, by day
        for _ in range(max(2, elder_days // 120)):
            for _ in range(50):
                day = rng.randrange(self.warmup, self.warmup + self.days)
                m = day * DAY + rng.uniform(7 * 60, 20 * 60)
                e = self._free_elder(m - 60, m + 10 * 60)
                if e is None or not lo <= m <= hi:
                    continue
                e.busy.append((m - 60, m + 10 * 60))
                self.taps.append(Tap(e, m, rng.uniform(2, 8), m + 8 * 60))
                break
        # gas leaks of four kinds
        kinds = ["rising", "hover", "co_slow", "co_fast"]
        for n in range(max(4, elder_days // 150)):
            kind = kinds[n % 4]
            for _ in range(50):
                m = rng.uniform(lo, hi)
                e = self._free_elder(m - 60, m + 6 * 60)
                if e is None:
                    continue
                e.busy.append((m - 60, m + 6 * 60))
                peak, dur = {
                    "rising": (rng.uniform(28, 45), rng.uniform(120, 240)),
                    "hover": (20.0, rng.uniform(60, 120)),
                    "co_slow": (rng.uniform(60, 110), rng.uniform(150, 240)),
                    "co_fast": (rng.uniform(200, 400), rng.uniform(60, 120)),
                }[kind]
                self.leaks.append(Leak(e, kind, m, peak, dur))
                break

    def flow(self, e: Elder, a: float, b: float) -> float:
        """Litres through the meter in (a, b]."""
        i, j = bisect_right(e.use_t, a), bisect_right(e.use_t, b)
        litres = sum(u[1] for u in e.uses[i:j])
        if e.drip_lpm and e.absent(b) is None:
            litres += e.drip_lpm * (b - a)
        for t in self.taps:
            if t.elder is e:
                x, y = max(a, t.start), min(b, t.end)
                if y > x:
                    litres += t.rate * (y - x)
        return litres

    def battery(self, dev: str, m: float) -> float | None:
        for b in self.batteries:
            if b.device == dev and m >= b.start:
                if b.replaced is not None and m >= b.replaced:
                    return None
                return max(0.0, 32 - b.drain_per_day * (m - b.start) / DAY)
        return None

    def cut_at(self, building: str, m: float) -> PowerCut | None:
        for c in self.cuts:
            if c.building == building and c.start <= m < c.end:
                return c
        return None

    def reports(self, dev: str, building: str, m: float) -> bool:
        if self.cut_at(building, m) is not None:
            return False
        pct = self.battery(dev, m)
        if pct is not None and pct <= 0:
            return False
        return not any(a <= m < b for a, b in self.blips.get(dev, ()))

    # --- running it --------------------------------------------------------------------------

    def run(self) -> None:
        rng = self.rng
        ws = {
            v: {e.id: water.new_state(f"{e.id}-water") for e in self.elders} for v in self.variants
        }
        self.ws = ws
        gs = {e.id: gas.new_state(f"{e.id}-gas") for e in self.elders}
        gcfg = {
            e.id: gas.GasConfig(valve_device_id=f"{e.id}-gas" if e.has_valve else None)
            for e in self.elders
        }
        hs = {b: health.new_state(b) for b in self.buildings}
        for e in self.elders:
            h = hs[e.building]
            h = health.add_device(h, f"{e.id}-btn", DeviceKind.CALL_BUTTON, at(0))
            h = health.add_device(h, f"{e.id}-gas", DeviceKind.GAS_SENSOR, at(0))
            h = health.add_device(h, f"{e.id}-water", DeviceKind.WATER_SENSOR, at(0))
            hs[e.building] = h
        totals = {e.id: rng.uniform(1000, 90_000) for e in self.elders}
        last_water = {e.id: 0.0 for e in self.elders}
        lw_sent: set[str] = set()
        seq = 0
        for m in range(0, self.t_end, TICK):
            now = at(m)
            for e in self.elders:
                paused = self._paused(e, now)
                b = e.building
                # gas sensor
                gdev = f"{e.id}-gas"
                cut = self.cut_at(b, m)
                if cut is not None and gdev not in lw_sent and m >= cut.start + 1.5:
                    lw_sent.add(gdev)
                    hs[b], dec = health.heard(hs[b], gdev, now, self.hcfg, online=False)
                    self._health(dec, m)
                if cut is None and gdev in lw_sent:
                    lw_sent.discard(gdev)
                    hs[b], dec = health.heard(hs[b], gdev, now, self.hcfg, online=True)
                    self._health(dec, m)
                if m % GAS_EVERY == 0 and self.reports(gdev, b, m):
                    lel, co = self._gas_reading(e, m)
                    seq += 1
                    r = Telemetry.model_construct(
                        id=f"g{seq}", ts=now, lel_pct=round(lel, 1), co_ppm=round(co)
                    )
                    gs[e.id], gdec = gas.observe(gs[e.id], r, now, gcfg[e.id])
                    self._gas(e, gdec, m)
                    hs[b], dec = health.heard(hs[b], gdev, now, self.hcfg)
                    self._health(dec, m)
                # call button heartbeat
                bdev = f"{e.id}-btn"
                if (m - e.button_phase) % BUTTON_EVERY == 0 and self.reports(bdev, b, m):
                    pct = self.battery(bdev, m)
                    pct = 85.0 if pct is None else max(0.0, pct + rng.gauss(0, 1.0))
                    hs[b], dec = health.heard(
                        hs[b], bdev, now, self.hcfg, battery_pct=round(pct, 1)
                    )
                    self._health(dec, m)
                # water meter
                wdev = f"{e.id}-water"
                if (m - e.water_phase) % WATER_EVERY == 0 and m > 0:
                    litres = self.flow(e, m - WATER_EVERY, m)
                    totals[e.id] += litres
                    if self.reports(wdev, b, m):
                        seq += 1
                        ts = now + timedelta(seconds=rng.uniform(0, 20))
                        r = Telemetry.model_construct(
                            id=f"w{seq}",
                            ts=ts,
                            flow_l=round(litres, 2),
                            interval_s=float(WATER_EVERY * 60),
                            total_l=round(totals[e.id], 2),
                        )
                        for v, cfg in self.variants.items():
                            p = self._known(e, v, m, paused)
                            ws[v][e.id], wdec = water.observe(ws[v][e.id], r, ts, cfg, p)
                            self._water(e, v, wdec, m)
                            self.plan[(v, e.id)] = water.next_check(ws[v][e.id], ts, cfg)
                        last_water[e.id] = m
                        pct = self.battery(wdev, m)
                        pct = 70.0 if pct is None else max(0.0, pct + rng.gauss(0, 1.0))
                        hs[b], dec = health.heard(
                            hs[b], wdev, ts, self.hcfg, battery_pct=round(pct, 1)
                        )
                        self._health(dec, m)
                        continue
                for v, cfg in self.variants.items():
                    p = self._known(e, v, m, paused)
                    # The gateway's tick looks only from `water.next_check` on: count how
                    # often that is, and any alert that waiting for it would have delayed.
                    due = self.plan.get((v, e.id))
                    looks = due is not None and due <= now
                    self.looks[v] += looks
                    self.checks[v] += 1
                    ws[v][e.id], wdec = water.check(ws[v][e.id], now, cfg, p)
                    if any(isinstance(d, Raise) and d.kind == AlertKind.NO_WATER_USE for d in wdec):
                        self.check_raises[v] += 1
                        self.missed_looks[v] += not looks
                    self._water(e, v, wdec, m)
                    self.plan[(v, e.id)] = water.next_check(ws[v][e.id], now, cfg)
            # valve answers, false alarms resolved by a responder
            for item in [p for p in self.pending_results if p[0] <= m]:
                self.pending_results.remove(item)
                _, e, cid, ok = item
                gs[e.id], gdec = gas.on_command_result(gs[e.id], cid, ok, now, "sim")
                self._gas(e, gdec, m)
            for item in [p for p in self.to_include if p[0] <= m]:
                self.to_include.remove(item)
                _, e, v, when = item
                day = when.astimezone(TZ).date()
                ws[v][e.id] = water.include_day(ws[v][e.id], day, self.variants[v])
            for e in self.elders:
                gs[e.id], gdec = gas.check(gs[e.id], now, gcfg[e.id])
                self._gas(e, gdec, m)
            for b in self.buildings:
                hs[b], dec = health.check(hs[b], now, self.hcfg)
                self._health(dec, m)

    def _known(self, e: Elder, v: str, m: float, paused: datetime | None) -> datetime | None:
        if v not in KNOWN_OUTINGS:
            return paused
        for s, t, k in e.outings:
            if k != "nap" and s <= m < t:
                return at(t) if paused is None else max(paused, at(t))
        return paused

    def _paused(self, e: Elder, now: datetime) -> datetime | None:
        if not e.aways:
            return None
        v = verdict(
            AlertKind.NO_WATER_USE,
            now,
            device_id=f"{e.id}-water",
            device_kind=DeviceKind.WATER_SENSOR,
            away=e.aways,
        )
        return v.until if v.suppressed else None

    def _gas_reading(self, e: Elder, m: float) -> tuple[float, float]:
        rng = self.rng
        lel = max(0.0, rng.gauss(0.6, 0.4))
        co = max(0.0, rng.gauss(3, 2))
        i = bisect_left(e.cooking, m - 30)
        for c in e.cooking[i : i + 2]:
            if c <= m <= c + 30:  # a meal on the stove
                co += e.co_cooking * math.exp(-abs(m - c - 12) / 10)
                lel += 2.5 * math.exp(-abs(m - c - 5) / 6)
        for k in self.leaks:
            if k.elder is e and m >= k.start:
                if k.kind in ("rising", "hover"):
                    lel += leak_level(k, m)
                else:
                    co += leak_level(k, m)
                if k.kind in ("rising", "hover"):
                    value, line = lel, 20.0
                else:
                    value, line = co, 150.0
                # a threshold without hysteresis, for comparison
                was = getattr(k, "_above", False)
                above = value >= line
                if above and not was:
                    k.naive_raises += 1
                k._above = above  # type: ignore[attr-defined]
        return lel, co

    def _leak_now(self, e: Elder, m: float) -> Leak | None:
        for k in self.leaks:
            if k.elder is e and k.start <= m <= k.start + k.duration + 180:
                return k
        return None

    # --- decisions ---------------------------------------------------------------------------

    def _water(self, e: Elder, variant: str, decisions: list, m: float) -> None:
        for d in decisions:
            if isinstance(d, Raise) and d.kind == AlertKind.NO_WATER_USE:
                self._nowater(e, variant, d, m)
            elif (
                isinstance(d, Raise) and d.kind == AlertKind.WATER_RUNNING and variant == "learned"
            ):
                self.running_raises.append((e, m))
                for t in self.taps:
                    if t.elder is e and t.start <= m <= t.end and t.detected is None:
                        t.detected = m
                        t.end = min(t.end, m + self.rng.uniform(10, 40))  # someone shuts it

    def _nowater(self, e: Elder, variant: str, d: Raise, m: float) -> None:
        if variant in ASK:
            self.asked[variant] += 1
            if self._answers(e, m):
                self.answered[variant] += 1
                # The answer is a sign of life: the silence restarts from it, and the day is
                # learned from as usual (the stand-in for a rule that takes such answers).
                cfg = self.variants[variant]
                st = self.ws[variant][e.id]
                st = replace(st, no_use_alerted=None, no_use_alerted_at=None, last_use=at(m))
                self.ws[variant][e.id] = water.include_day(st, at(m).astimezone(TZ).date(), cfg)
                return
            m += ASK_WAIT  # nobody answered: paged now
        for f in self.falls:
            if f.elder is e and f.at <= m <= f.found:
                f.detected.setdefault(variant, m)
                self.nowater[variant].append((e, m, "fall", d.reason))
                return
        a = e.absent(m)
        if a is not None and a.kind == "trip" and not a.marked:
            self.nowater[variant].append((e, m, "unmarked_absence", d.reason))
            return
        day = int(m // DAY)
        cause = "an ordinary day"
        if day in e.unwell_days or (day - 1) in e.unwell_days:
            cause = "unwell, up late"
        names = {"long_outing": "a long outing", "activity": "a club", "shopping": "an errand"}
        for s, t, k in e.outings:
            if s - 30 <= m <= t + 120 and k in names:
                cause = names[k]
        if a is not None:
            cause = f"{a.kind}_{'marked' if a.marked else 'unmarked'}"
        self.nowater[variant].append((e, m, cause, d.reason))
        # a responder phones or knocks: the elder is fine; resolved as false_alarm
        self.to_include.append((m + 60, e, variant, at(m)))

    def _answers(self, e: Elder, m: float) -> bool:
        """Does the elder answer a check-in asked at minute m (ANSWER_P)?"""
        if e.absent(m) is not None:
            return False
        p = ANSWER_P["up"] if up(e, m) else ANSWER_P["asleep"]
        for s, t, k in e.outings:
            if s <= m < t:
                if k != "nap":
                    return False
                p = ANSWER_P["nap"]
        return self.answer_rng.random() < p

    def _gas(self, e: Elder, decisions: list, m: float) -> None:
        for d in decisions:
            leak = self._leak_now(e, m)
            if isinstance(d, Raise):
                self.gas_raises.append((e, m, d.reason))
                if leak is not None:
                    leak.raises += 1
                    if leak.detected is None:
                        leak.detected = m
                        leak.stop = m + 30  # a responder arrives and opens the windows
            elif isinstance(d, Clear) and leak is not None:
                leak.clears += 1
            elif isinstance(d, Warn):
                self.gas_warns.append((e, m))
            elif isinstance(d, SendCommand):
                roll = self.rng.random()
                if roll < 0.75:
                    self.pending_results.append((m + 1, e, d.command_id, True))
                    if leak is not None:
                        leak.stop = min(leak.stop or m + 2, m + 2)  # the valve shuts the gas
                elif roll < 0.9:
                    self.pending_results.append((m + 1, e, d.command_id, False))
                else:
                    pass  # no answer: the valve's timeout escalates
            elif isinstance(d, Escalate):
                self.escalations[d.why] += 1
            elif isinstance(d, Note):
                self.valve_results[d.why] += 1

    def _health(self, decisions: list, m: float) -> None:
        for d in decisions:
            if isinstance(d, Raise) and d.kind == AlertKind.DEVICE_OFFLINE:
                self.offline_raises.append((d.device_id, m, d.reason))
                for b in self.batteries:
                    if b.device == d.device_id and m >= b.death and b.offline_at is None:
                        b.offline_at = m
                        b.replaced = m + self.rng.uniform(4 * 60, 24 * 60)  # staff swap it
            elif isinstance(d, Raise) and d.kind == AlertKind.LOW_BATTERY:
                self.low_raises.append((d.device_id, m))
                for b in self.batteries:
                    if b.device == d.device_id:
                        b.low_raises += 1
                        if b.low_at is None:
                            b.low_at = m
            elif isinstance(d, OutageOpened):
                self.outages.append((d.building, m, len(d.device_ids)))
                for c in self.cuts:
                    if c.building == d.building and c.start <= m <= c.end + 60:
                        c.opened = m if c.opened is None else c.opened
                        c.members += len(d.device_ids)
            elif isinstance(d, OutageChanged) and d.change == "joined":
                for c in self.cuts:
                    if c.building == d.building:
                        c.joined += 1
            elif isinstance(d, OutageClosed):
                pass

    # --- the figures -------------------------------------------------------------------------

    def report(self, seconds: float) -> int:
        elder_days = len(self.elders) * self.days
        per100 = 100 / elder_days
        t0 = self.t0
        print(
            f"Shouwang simulated community: {len(self.elders)} elders in {len(self.buildings)}"
            f" buildings, {self.days} days measured after {self.warmup} days of warm-up,"
            f" seed {self.seed}; {elder_days} elder-days; ran in {seconds:.1f} s"
        )
        kinds = Counter(e.chronotype for e in self.elders)
        trips = [a for e in self.elders for a in e.absences if a.kind == "trip"]
        print(
            f"elders: {kinds['early']} early (~05:30), {kinds['ordinary']} ordinary (~07:00),"
            f" {kinds['late']} late (~09:30) risers, {sum(e.homebound for e in self.elders)}"
            f" of them homebound; trips away marked {sum(t.marked for t in trips)},"
            f" not marked {sum(not t.marked for t in trips)}"
        )
        print()
        print("no_water_use: falls that stop all water use (same water readings for each rule)")
        n_day = sum(daytime(f.at) for f in self.falls)
        n_up = sum(up(f.elder, f.at) for f in self.falls)
        print(
            f"  {len(self.falls)} falls: {n_day} by day (06:00-22:00), {len(self.falls) - n_day}"
            f" at night; {n_up} while the elder was up, {len(self.falls) - n_up} in the night"
            " (a trip to the toilet)"
        )
        print(
            f"  {'rule':<22}{'found':>7}{'median':>8}{'worst':>8}{'day med':>9}{'day worst':>10}"
            f"{'up med':>8}{'night med':>10}{'false /100 elder-days':>23}{'unmarked away':>15}"
        )
        summary: dict[str, tuple[int, float | None, float]] = {}
        for v in self.variants:
            delays, by_day, by_night, while_up = [], [], [], []
            for f in self.falls:
                if v in f.detected:
                    dl = f.detected[v] - f.at
                    delays.append(dl)
                    (by_day if daytime(f.at) else by_night).append(dl)
                    if up(f.elder, f.at):
                        while_up.append(dl)
            raises = [r for r in self.nowater[v] if r[1] >= t0]
            false = [r for r in raises if r[2] not in ("fall", "unmarked_absence")]
            unmarked = [r for r in raises if r[2] == "unmarked_absence"]
            dmed = med(by_day)
            print(
                f"  {self.names.get(v, v):<22}{len(delays):>4}/{len(self.falls):<2}"
                f"{fmt_min(med(delays)):>8}{fmt_min(max(delays, default=None)):>8}"
                f"{fmt_min(dmed):>9}{fmt_min(max(by_day, default=None)):>10}"
                f"{fmt_min(med(while_up)):>8}{fmt_min(med(by_night)):>10}"
                f"{len(false) * per100:>23.2f}{len(unmarked):>15}"
            )
            summary[v] = (len(delays), dmed, len(false) * per100)
        for v in self.variants:
            raises = [r for r in self.nowater[v] if r[1] >= t0]
            false = Counter(r[2] for r in raises if r[2] not in ("fall", "unmarked_absence"))
            reasons = Counter(r[3] for r in raises if r[2] == "fall")
            causes = ", ".join(f"{k} {n}" for k, n in false.most_common()) or "none"
            found = ", ".join(f"{k} {n}" for k, n in reasons.most_common())
            print(f"  {self.names.get(v, v)}: false alarms: {causes}; falls found by {found}")
        for v in self.variants:
            if v in ASK:
                print(
                    f"  {v}: elders asked {self.asked[v] * per100:.1f} times per 100 elder-days,"
                    f" {self.answered[v] / max(1, self.asked[v]):.0%} answered"
                )
        print(
            "  the tick's looks between reports, from water.next_check on (the gateway), of"
            f" every {TICK} minutes: "
            + ", ".join(
                f"{self.names.get(v, v)} {self.looks[v] / max(1, self.checks[v]):.1%}"
                for v in self.variants
            )
            + f"; of the {sum(self.check_raises.values())} alerts raised at a tick, delayed"
            f" by waiting for it: {sum(self.missed_looks.values())}"
        )
        found_n, dmed, fa = summary["learned"]
        targets = [
            ("every fall detected (learned rhythm)", found_n == len(self.falls)),
            (
                "median delay < 3 h for daytime falls (learned rhythm)",
                dmed is not None and dmed < 180,
            ),
            ("< 1 false no-water alarm per 100 elder-days (learned rhythm)", fa < 1.0),
            (
                "no alert delayed by the tick waiting for water.next_check",
                not sum(self.missed_looks.values()),
            ),
        ]
        print()
        print("water_running: taps left open")
        delays = [t.detected - t.start for t in self.taps if t.detected is not None]
        tap_raises = [(e, m) for e, m in self.running_raises if m >= t0]
        false_running = [
            (e, m)
            for e, m in tap_raises
            if not any(t.elder is e and t.start <= m <= t.end for t in self.taps)
        ]
        print(
            f"  injected {len(self.taps)}, detected {len(delays)}, delay median"
            f" {fmt_min(statistics.median(delays) if delays else None)}, worst"
            f" {fmt_min(max(delays) if delays else None)}; false alarms"
            f" {len(false_running) * per100:.2f} /100 elder-days"
        )
        targets.append(("every tap left open detected", len(delays) == len(self.taps)))
        print()
        print("gas: leaks (device's own alarm not simulated: telemetry thresholds only)")
        by_kind: dict[str, list[Leak]] = {}
        for k in self.leaks:
            by_kind.setdefault(k.kind, []).append(k)
        for kind, ks in sorted(by_kind.items()):
            dl = [k.detected - k.start for k in ks if k.detected is not None]
            print(
                f"  {kind:<8} injected {len(ks)}, detected {len(dl)}, delay median"
                f" {fmt_min(statistics.median(dl) if dl else None)}, worst"
                f" {fmt_min(max(dl) if dl else None)}; raises per leak"
                f" {[k.raises for k in ks]} (a naive threshold: {[k.naive_raises for k in ks]})"
            )
        gas_false = [
            r for r in self.gas_raises if r[1] >= t0 and self._leak_now(r[0], r[1]) is None
        ]
        warns = [w for w in self.gas_warns if w[1] >= t0 and self._leak_now(w[0], w[1]) is None]
        print(
            f"  false gas alarms {len(gas_false) * per100:.2f} /100 elder-days; warnings"
            f" (board only) outside leaks {len(warns) * per100:.2f} /100 elder-days"
        )
        print(f"  valves: {dict(self.valve_results)}; escalations {dict(self.escalations)}")
        targets.append(("every gas leak detected", all(k.detected is not None for k in self.leaks)))
        targets.append(("one raise per leak (hysteresis)", all(k.raises == 1 for k in self.leaks)))
        print()
        print("device health")
        for b in self.batteries:
            lead = None if b.low_at is None else b.death - b.low_at
            late = None if b.offline_at is None else b.offline_at - b.death
            print(
                f"  dead battery {b.device}: low_battery raised {b.low_raises}x,"
                f" {fmt_min(lead)} before it died; device_offline {fmt_min(late)} after"
            )
        targets.append(
            (
                "every dead battery: one low_battery before, offline after",
                all(
                    b.low_raises == 1 and b.offline_at is not None
                    for b in self.batteries
                    if b.death < self.t_end - 4 * 60
                ),
            )
        )
        cut_devices = {c.building for c in self.cuts}
        for c in self.cuts:
            in_cut = [
                r
                for r in self.offline_raises
                if self.by_id[r[0].split("-")[0]].building == c.building
                and c.start <= r[1] <= c.end + 60
            ]
            c.singles = len(in_cut)
            print(
                f"  power cut in {c.building} for {fmt_min(c.end - c.start)}"
                f" ({3 * sum(e.building == c.building for e in self.elders)} devices):"
                f" one outage opened {fmt_min(None if c.opened is None else c.opened - c.start)}"
                f" after, {c.members} devices at once + {c.joined} joined later;"
                f" single device pages during it: {c.singles}"
            )
            targets.append(
                ("power cut grouped into one outage", c.opened is not None and c.singles == 0)
            )
        dead = {b.device for b in self.batteries}
        other = [
            r
            for r in self.offline_raises
            if r[1] >= t0
            and r[0] not in dead
            and self.by_id[r[0].split("-")[0]].building not in cut_devices
        ]
        other_low = [r for r in self.low_raises if r[1] >= t0 and r[0] not in dead]
        print(
            f"  outages opened {len(self.outages)}; device_offline on healthy devices"
            f" {len(other) * per100:.2f} /100 elder-days; low_battery on healthy devices"
            f" {len(other_low)}"
        )
        print()
        print("targets")
        for name, met in targets:
            print(f"  [{'x' if met else ' '}] {name}")
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=30, help="days measured (default 30)")
    p.add_argument("--elders", type=int, default=60, help="elders (default 60)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--warmup", type=int, default=21, help="days before, for the rules to learn (default 21)"
    )
    p.add_argument(
        "--frontier",
        action="store_true",
        help="also run other settings of the learned rhythm (slower)",
    )
    p.add_argument(
        "--ask",
        action="store_true",
        help="also run settings that ask the elder first (a check-in on the call button)",
    )
    a = p.parse_args(argv)
    began = wallclock.perf_counter()
    sim = Sim(a.days, a.elders, a.seed, a.warmup, a.frontier, a.ask)
    sim.run()
    return sim.report(wallclock.perf_counter() - began)


if __name__ == "__main__":
    sys.exit(main())
