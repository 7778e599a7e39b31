"""Paging policy: who is paged for an alert, in what order, when to remind, and on which channels.

Pure, like the rest of `alerts`: the caller passes the elder's pairings, the station's duty roster,
the alert and `now`; nothing here reads a clock or a database. Three parts:

- `build_plan`: the escalation ladder for one alert, as an `alerts.escalation.Plan` (the form the
  gateway already stores as JSON and pages step by step), plus what each step is and why.
  Ladder: paired watchers -> volunteers (paired first, then on duty nearby) -> station staff on
  duty (all staff as a fallback when nobody is; the elder's station's first, see
  `staff_to_page`) -> family. Which roles a kind pages and each
  role's ack timeout per priority are tables (`DEFAULT_LADDERS`, `DEFAULT_TIMEOUTS_S`); an elder
  may override them, or give explicit steps.
- `next_reminder`: when an acknowledged-but-unresolved alert (P1 by default) is paged again, and
  to whom. Never once the alert is resolved or cancelled.
- `chain_schedule`: a person's channel chain (pager, then SMS after 60 s, then voice ...) with
  retries per channel: which delivery attempts are due now, and when the next one is.

Datetimes are expected to be timezone-aware (the gateway's `from_ms` makes them so).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, NamedTuple

from alerts.escalation import (
    MAX_ACK_TIMEOUT_S,
    MAX_STEPS,
    MIN_ACK_TIMEOUT_S,
    Plan,
    PlanError,
    Step,
)
from alerts.model import AlertKind, Priority, State, stops_paging


class Role(StrEnum):
    """A responder's role; the same values as `care.people.Role` and the contract's `role`.

    Defined again here because `alerts` may not import `care`; convert with `Role(value)`.
    """

    WATCHER = "watcher"
    VOLUNTEER = "volunteer"
    STAFF = "staff"
    FAMILY = "family"


# --------------------------------------------------------------------------------------------
# inputs: pairings and the duty roster
# --------------------------------------------------------------------------------------------


def _within(now: datetime, start: datetime | None, end: datetime | None) -> bool:
    """start <= now < end, an open side when None: a shift ending at 08:00 is over at 08:00."""
    return (start is None or start <= now) and (end is None or now < end)


@dataclass(frozen=True, slots=True)
class Pairing:
    """A standing link between the elder and a responder (结对).

    `order` ranks people within their step (lower first; ties keep the input order). The pairing
    counts only while `active_from <= now < active_until` (either side open when None), e.g. a
    watcher away for a month ends the pairing, or a new one starts next week.
    """

    responder_id: str
    role: Role
    order: int = 0
    active_from: datetime | None = None
    active_until: datetime | None = None

    def __post_init__(self) -> None:
        if not self.responder_id:
            raise ValueError("a pairing needs a responder id")
        if (
            self.active_from is not None
            and self.active_until is not None
            and self.active_until <= self.active_from
        ):
            raise ValueError("a pairing's active_until must be after its active_from")

    def active_at(self, now: datetime) -> bool:
        return _within(now, self.active_from, self.active_until)


@dataclass(frozen=True, slots=True)
class Shift:
    """A staff member or volunteer on duty from `start` until `end` (值班).

    `tags` say where a volunteer is during the shift (e.g. "community:xinhua",
    "building:xinhua-3"); a volunteer counts as nearby when a tag is shared with the elder's.
    Staff serve the whole station: their tags are not used.
    """

    responder_id: str
    role: Role
    start: datetime
    end: datetime
    tags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.responder_id:
            raise ValueError("a shift needs a responder id")
        if self.role not in (Role.STAFF, Role.VOLUNTEER):
            raise ValueError(f"only staff and volunteers have shifts, not {self.role}")
        if self.end <= self.start:
            raise ValueError("a shift must end after it starts")

    def on_duty(self, now: datetime) -> bool:
        return _within(now, self.start, self.end)


@dataclass(frozen=True, slots=True)
class Roster:
    """The duty roster, all staff (in the order to page them as a fallback), and the station
    each person belongs to (`stations`, responder id -> station, 社区居家养老服务站). A person
    not in `stations` belongs to no station and serves every one (a district's own staff, or an
    installation of one station)."""

    shifts: tuple[Shift, ...] = ()
    staff_ids: tuple[str, ...] = ()
    stations: Mapping[str, str] = field(default_factory=dict)

    def serves(self, responder_id: str, station: str | None) -> bool:
        """Whether the person serves an elder of `station` (None: an elder no station has
        taken, whom every station serves): theirs, or they are of no station."""
        own = self.stations.get(responder_id)
        return station is None or own is None or own == station

    def on_duty(self, role: Role, now: datetime) -> tuple[Shift, ...]:
        """The shifts of `role` on duty at `now`, in roster order."""
        return tuple(s for s in self.shifts if s.role == role and s.on_duty(now))

    def all_staff(self) -> tuple[str, ...]:
        """Every staff member known: `staff_ids`, then anyone else with a staff shift."""
        shift_staff = (s.responder_id for s in self.shifts if s.role == Role.STAFF)
        return _unique([*self.staff_ids, *shift_staff])


def _unique(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))


class StaffPick(NamedTuple):
    """Staff to page (`to`), whether they are every staff member because nobody is on duty
    (`fallback`), and whether they are another station's because nobody serves the elder's
    station at all (`other_stations`)."""

    to: tuple[str, ...]
    fallback: bool
    other_stations: bool = False


def _staff_tiers(roster: Roster, now: datetime, station: str | None) -> tuple[StaffPick, ...]:
    """Whom to ask, in order, for an elder of `station`, as a telecare centre does: those
    serving the station (theirs and those of no station) on duty, then all of them; then, only
    for an elder of a station, the other stations' staff on duty, then all of them. Another
    station's staff do not know the elder and cannot see the alert on their board, but a page
    to them beats silence."""
    on_duty = _unique(s.responder_id for s in roster.on_duty(Role.STAFF, now))
    everyone = roster.all_staff()
    ours = {r for r in (*on_duty, *everyone) if roster.serves(r, station)}
    tiers = [
        StaffPick(tuple(r for r in on_duty if r in ours), False),
        StaffPick(tuple(r for r in everyone if r in ours), True),
    ]
    if station is not None:
        tiers.append(StaffPick(tuple(r for r in on_duty if r not in ours), False, True))
        tiers.append(StaffPick(tuple(r for r in everyone if r not in ours), True, True))
    return tuple(tiers)


def staff_to_page(
    roster: Roster, now: datetime, paired: Sequence[str] = (), station: str | None = None
) -> StaffPick:
    """The staff to page now for an elder of `station` (None: of no station): those serving
    the station on duty, or, when none is, all of them; only when nobody serves the station,
    the other stations' staff (on duty, else all). See `_staff_tiers`.

    `paired` (staff paired with the elder) go first: on duty ones normally, all of them in a
    fallback; a pairing left from before a move to another station does not count. Paging
    everyone when the roster is empty at that moment (a gap between shifts, a forgotten roster)
    is deliberate: an alarm must never go to nobody.
    """
    paired = [r for r in paired if roster.serves(r, station)]
    tiers = _staff_tiers(roster, now, station)
    on_duty = tiers[0].to
    if on_duty:
        first = [r for r in paired if r in on_duty]
        return StaffPick(_unique([*first, *on_duty]), False)
    if paired:
        return StaffPick(_unique([*paired, *tiers[1].to]), True)
    return next((t for t in tiers[1:] if t.to), StaffPick((), True))


def last_resort_staff(
    roster: Roster, station: str | None = None, passed: Collection[str] = ()
) -> StaffPick:
    """Every staff member serving the elder's `station` but those `passed` (e.g. who cannot be
    reached), or, when that is nobody, every other station's: the page of last resort when no
    plan can be made or nobody of it reached, on duty or not."""
    left = [r for r in roster.all_staff() if r not in passed]
    ours = tuple(r for r in left if roster.serves(r, station))
    if ours:
        return StaffPick(ours, True)
    others = tuple(r for r in left if r not in ours)
    return StaffPick(others, True, bool(others))


DECLINED = "declined"  # the answer `after_all_declined` looks for (a timeline event type)


@dataclass(frozen=True, slots=True)
class AllDeclined:
    """Everyone asked at the last step has declined: `to` are the staff to page at once instead
    (empty: nobody is left), `fallback` says they are every staff member left because nobody
    left is on duty, `declined` who has said no (in the order of their first answer),
    `other_stations` that they are another station's because nobody serving the elder's station
    is left."""

    to: tuple[str, ...]
    fallback: bool
    declined: tuple[str, ...]
    other_stations: bool = False


def after_all_declined(
    *,
    asked: Collection[str],
    replies: Sequence[tuple[str, str]],
    roster: Roster,
    now: datetime,
    unreachable: Collection[str] = (),
    station: str | None = None,
    withdrawal: bool = False,
) -> AllDeclined | None:
    """What follows a decline at the last step of an open alert, or None when nothing does.

    `asked` are the people paged at the last step (its own pages, repeats and earlier
    fallbacks); `replies` every answer to the alert as (responder id, event type), oldest first,
    the last being the decline just made. A person's latest answer counts: a decline stands over
    a repeat of the page (they said no; asking again is what the repeat does), and an ack
    withdrawn is a decline. Something follows only when this decline is the one that leaves
    nobody asked who has not declined: the decliner was asked and had not declined already. So a
    second decline by the same person, or one by someone not asked, pages nobody, and as the
    people paged here join `asked`, each is paged this way once at most: there is no loop.

    Who then, for an elder of `station`: the staff on duty now who have not declined; when none
    is left, every other staff member (like `staff_to_page`: a gap in the roster must not mean
    nobody), those serving the elder's station first, another station's only when none of them
    is left. People who cannot be reached (`unreachable`: no pager, no channel) are passed over
    like those who said no, so the search goes on to someone who can be. `to` empty: everyone
    has said no or cannot be reached.

    `withdrawal`: the decline took back the decliner's acknowledgement and the alert is open
    again. Then whoever they are (perhaps paged at an earlier step only, who acknowledged after
    the alert had climbed to the last step), nobody is coming now: something follows whenever
    nobody asked at the last step is left who has not declined. Each withdrawal follows an
    acknowledgement of its own, so this is no loop either.
    """
    if not replies or replies[-1][1] != DECLINED:
        return None
    decliner = replies[-1][0]
    latest: dict[str, str] = {}
    for rid, answer in replies[:-1]:
        latest[rid] = answer
    if not withdrawal and (decliner not in asked or latest.get(decliner) == DECLINED):
        return None
    latest[decliner] = DECLINED
    if any(latest.get(r) != DECLINED for r in asked):
        return None  # someone asked may still come: the step's time-out stands
    declined = tuple(r for r, answer in latest.items() if answer == DECLINED)
    passed = {*declined, *unreachable}
    for tier in _staff_tiers(roster, now, station):
        left = tuple(r for r in tier.to if r not in passed)
        if left:
            return AllDeclined(left, tier.fallback, declined, tier.other_stations)
    return AllDeclined((), True, declined)


# --------------------------------------------------------------------------------------------
# the policy tables
# --------------------------------------------------------------------------------------------

FULL_LADDER: tuple[Role, ...] = (Role.WATCHER, Role.VOLUNTEER, Role.STAFF, Role.FAMILY)

# Ack timeout per step, by priority and role (seconds). P1 (call button, gas) is short: a
# neighbour who does not answer in a minute is probably asleep or out, and the next rung must
# come quickly. Staff get a little longer (they may be on another call), family longest (they
# are often far away; theirs is also the step that repeats). P2 and P3 leave minutes.
DEFAULT_TIMEOUTS_S: Mapping[Priority, Mapping[Role, int]] = MappingProxyType(
    {
        Priority.P1: MappingProxyType(
            {Role.WATCHER: 60, Role.VOLUNTEER: 60, Role.STAFF: 90, Role.FAMILY: 120}
        ),
        Priority.P2: MappingProxyType(
            {Role.WATCHER: 300, Role.VOLUNTEER: 300, Role.STAFF: 600, Role.FAMILY: 900}
        ),
        Priority.P3: MappingProxyType(
            {Role.WATCHER: 900, Role.VOLUNTEER: 900, Role.STAFF: 900, Role.FAMILY: 900}
        ),
    }
)

# Which roles each kind pages, in order. Alarms a neighbour can act on (a call, gas, water on
# the floor, a tap left running, no water used: perhaps a fall) climb the whole ladder. Device
# matters are the station's: a flat battery or a device offline must not wake a neighbour at
# night (and a mass outage would page every watcher of a building); a tamper goes to staff, then
# to the family, who may know who moved the device. A kind not listed gets the whole ladder:
# paging too many people is a nuisance, paging too few is a danger.
DEFAULT_LADDERS: Mapping[AlertKind, tuple[Role, ...]] = MappingProxyType(
    {
        AlertKind.CALL_BUTTON: FULL_LADDER,
        AlertKind.GAS: FULL_LADDER,
        AlertKind.WATER_LEAK: FULL_LADDER,
        AlertKind.WATER_RUNNING: FULL_LADDER,
        AlertKind.NO_WATER_USE: FULL_LADDER,
        AlertKind.TAMPER: (Role.STAFF, Role.FAMILY),
        AlertKind.DEVICE_OFFLINE: (Role.STAFF,),
        AlertKind.LOW_BATTERY: (Role.STAFF,),
    }
)


def _check_timeout(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanError(f"{what}: ack timeout must be a whole number of seconds")
    if not MIN_ACK_TIMEOUT_S <= value <= MAX_ACK_TIMEOUT_S:
        raise PlanError(f"{what}: ack timeout must be {MIN_ACK_TIMEOUT_S}..{MAX_ACK_TIMEOUT_S} s")


def _check_ladder(ladder: Sequence[Role], what: str) -> None:
    if not ladder:
        raise PlanError(f"{what}: a ladder needs at least one role")
    if len(set(ladder)) != len(ladder):
        raise PlanError(f"{what}: a ladder names a role twice")
    for role in ladder:
        Role(role)  # ValueError for a stranger


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """The station's paging policy: ack timeouts per priority and role, ladders per kind.

    `max_nearby_volunteers` caps the on-duty volunteers taken from the neighbourhood (paired
    volunteers are never cut); None pages them all. With `paired_volunteers_need_shift` a paired
    volunteer is paged only while on a shift; by default the pairing itself is the promise to be
    reachable while it is active, as for a watcher.
    """

    timeouts_s: Mapping[Priority, Mapping[Role, int]] = field(
        default_factory=lambda: DEFAULT_TIMEOUTS_S
    )
    ladders: Mapping[AlertKind, tuple[Role, ...]] = field(default_factory=lambda: DEFAULT_LADDERS)
    default_ladder: tuple[Role, ...] = FULL_LADDER
    max_nearby_volunteers: int | None = None
    paired_volunteers_need_shift: bool = False

    def __post_init__(self) -> None:
        for priority in Priority:
            table = self.timeouts_s.get(priority)
            if table is None:
                raise PlanError(f"no ack timeouts for {priority}")
            for role in Role:
                if role not in table:
                    raise PlanError(f"no ack timeout for {priority} {role}")
                _check_timeout(table[role], f"{priority} {role}")
        for kind, ladder in self.ladders.items():
            _check_ladder(ladder, str(kind))
        _check_ladder(self.default_ladder, "default ladder")
        if self.max_nearby_volunteers is not None and self.max_nearby_volunteers < 0:
            raise PlanError("max_nearby_volunteers must be >= 0")

    def ladder(self, kind: AlertKind) -> tuple[Role, ...]:
        return self.ladders.get(kind, self.default_ladder)

    def timeout_s(self, priority: Priority, role: Role) -> int:
        return self.timeouts_s[priority][role]


DEFAULT_POLICY = EscalationPolicy()


def timeouts_with(
    changes: Mapping[Priority, Mapping[Role, int]],
    base: Mapping[Priority, Mapping[Role, int]] = DEFAULT_TIMEOUTS_S,
) -> dict[Priority, dict[Role, int]]:
    """`base` with some timeouts changed, for `EscalationPolicy(timeouts_s=...)` from settings:
    `timeouts_with({Priority.P1: {Role.STAFF: 120}})` keeps every other default."""
    merged = {p: dict(t) for p, t in base.items()}
    for priority, table in changes.items():
        merged.setdefault(Priority(priority), {}).update({Role(r): v for r, v in table.items()})
    return merged


@dataclass(frozen=True, slots=True)
class ElderOverride:
    """One elder's exception to the policy, for some priorities and kinds (None: all of them).

    Either explicit `steps` (used exactly as written, like `PUT /elders/{id}/escalation`; the
    same person may then be in two steps), or a different `ladder` and/or ack timeouts for some
    roles (the rest come from the policy). E.g. a son living next door: family first, 60 s.
    """

    priorities: frozenset[Priority] | None = None
    kinds: frozenset[AlertKind] | None = None
    steps: tuple[Step, ...] | None = None
    ladder: tuple[Role, ...] | None = None
    ack_timeout_s: Mapping[Role, int] | None = None

    def __post_init__(self) -> None:
        if self.steps is not None:
            if self.ladder is not None or self.ack_timeout_s is not None:
                raise PlanError("an override gives either explicit steps or a ladder/timeouts")
            Plan(self.steps)  # PlanError now rather than when the alarm comes
        if self.ladder is not None:
            _check_ladder(self.ladder, "override")
        for role, value in (self.ack_timeout_s or {}).items():
            _check_timeout(value, f"override {Role(role)}")
        if self.steps is None and self.ladder is None and not self.ack_timeout_s:
            raise PlanError("an override changes nothing")
        if self.priorities is not None and not self.priorities:
            raise PlanError("an override for no priority")
        if self.kinds is not None and not self.kinds:
            raise PlanError("an override for no kind")

    def applies_to(self, priority: Priority, kind: AlertKind) -> bool:
        return (self.priorities is None or priority in self.priorities) and (
            self.kinds is None or kind in self.kinds
        )


# --------------------------------------------------------------------------------------------
# building the plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """A step of the built plan with what it is: the role it pages (None for an explicit
    override step), whether these are off-duty staff paged because nobody was on duty, and
    whether they are another station's staff because nobody serves the elder's station."""

    role: Role | None
    responder_ids: tuple[str, ...]
    ack_timeout_s: int
    fallback: bool = False
    other_stations: bool = False


Source = Literal["policy", "override"]


@dataclass(frozen=True, slots=True)
class BuiltPlan:
    """The plan to store on the alert (None: nobody at all to page), and how it was made.

    `notes` are short codes for the alert's timeline: "override", "staff_fallback" (nobody on
    duty: all staff), "staff_other_stations" (nobody serves the elder's station: another
    station's staff), "ladder_widened" (the kind's ladder found nobody: the whole ladder was
    used), "no_responders".
    """

    plan: Plan | None
    steps: tuple[PlannedStep, ...]
    source: Source
    notes: tuple[str, ...] = ()


def _by_order(pairings: Iterable[Pairing]) -> list[Pairing]:
    return sorted(pairings, key=lambda p: p.order)  # sorted() is stable: ties keep input order


def _role_candidates(
    role: Role,
    now: datetime,
    pairings: Sequence[Pairing],
    roster: Roster,
    elder_tags: frozenset[str],
    policy: EscalationPolicy,
    station: str | None,
) -> StaffPick:
    """Who this role's step would page, in order, and whether it is the staff fallback and
    another station's staff."""
    paired = [p.responder_id for p in _by_order(x for x in pairings if x.role == role)]
    if role in (Role.WATCHER, Role.FAMILY):
        return StaffPick(tuple(paired), False)
    if role == Role.STAFF:
        return staff_to_page(roster, now, paired, station)
    on_duty = roster.on_duty(Role.VOLUNTEER, now)
    if policy.paired_volunteers_need_shift:
        duty_ids = {s.responder_id for s in on_duty}
        paired = [r for r in paired if r in duty_ids]
    # Nearby: a shared community or building tag; more shared tags (same building as well as the
    # same community) first. No tags on the elder: we cannot tell who is near, so nobody is.
    scored = [(len(s.tags & elder_tags), n, s.responder_id) for n, s in enumerate(on_duty)]
    nearby = [rid for shared, _, rid in sorted(scored, key=lambda t: (-t[0], t[1])) if shared]
    nearby = [r for r in _unique(nearby) if r not in paired]
    if policy.max_nearby_volunteers is not None:
        nearby = nearby[: policy.max_nearby_volunteers]
    return StaffPick((*paired, *nearby), False)


def _ladder_steps(
    ladder: Sequence[Role],
    timeouts: Mapping[Role, int],
    now: datetime,
    pairings: Sequence[Pairing],
    roster: Roster,
    elder_tags: frozenset[str],
    policy: EscalationPolicy,
    station: str | None,
) -> list[PlannedStep]:
    seen: set[str] = set()
    steps: list[PlannedStep] = []
    for role in ladder:
        ids, fallback, other = _role_candidates(
            role, now, pairings, roster, elder_tags, policy, station
        )
        fresh = [r for r in _unique(ids) if r not in seen]  # a person pages at their first step
        if not fresh:
            continue  # an empty rung is dropped, it would only delay the next one
        seen.update(fresh)
        steps.append(PlannedStep(role, tuple(fresh), timeouts[role], fallback, other))
    return steps


def build_plan(
    *,
    kind: AlertKind,
    priority: Priority,
    now: datetime,
    pairings: Sequence[Pairing],
    roster: Roster,
    elder_tags: frozenset[str] = frozenset(),
    policy: EscalationPolicy = DEFAULT_POLICY,
    overrides: Sequence[ElderOverride] = (),
    station: str | None = None,
) -> BuiltPlan:
    """The escalation plan for a new alert of `kind` at `priority`, as of `now`, for an elder
    of `station` (None: of no station; its staff step is `staff_to_page`'s).

    The first override that applies to (priority, kind) is used; its explicit steps are taken as
    written. Otherwise the kind's ladder is built from the active pairings and the roster; should
    it find nobody (e.g. a battery alert where there are no staff at all), the whole ladder
    is used instead. `plan` is None only when there is nobody at all to page.
    """
    override = next((o for o in overrides if o.applies_to(priority, kind)), None)
    if override is not None and override.steps is not None:
        explicit = tuple(
            PlannedStep(None, s.responder_ids, s.ack_timeout_s) for s in override.steps
        )
        return BuiltPlan(Plan(override.steps), explicit, "override", ("override",))

    active = [p for p in pairings if p.active_at(now)]
    ladder = policy.ladder(kind)
    timeouts: dict[Role, int] = dict(policy.timeouts_s[priority])
    notes: list[str] = []
    source: Source = "policy"
    if override is not None:
        source = "override"
        notes.append("override")
        ladder = override.ladder or ladder
        timeouts.update({Role(r): t for r, t in (override.ack_timeout_s or {}).items()})

    args = (now, active, roster, elder_tags, policy, station)
    steps = _ladder_steps(ladder, timeouts, *args)
    if not steps and tuple(ladder) != FULL_LADDER:
        steps = _ladder_steps(FULL_LADDER, timeouts, *args)
        if steps:
            notes.append("ladder_widened")
    if not steps:
        return BuiltPlan(None, (), source, (*notes, "no_responders"))
    if any(s.fallback for s in steps):
        notes.append("staff_fallback")
    if any(s.other_stations for s in steps):
        notes.append("staff_other_stations")
    # A ladder has at most four rungs, well under MAX_STEPS; the slice only guards a future one.
    steps = steps[:MAX_STEPS]
    plan = Plan(tuple(Step(s.responder_ids, s.ack_timeout_s) for s in steps))
    return BuiltPlan(plan, tuple(steps), source, tuple(notes))


# --------------------------------------------------------------------------------------------
# reminders for acknowledged alerts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    """Reminders for an alert that was answered but is not resolved.

    While `acknowledged` (someone said they are coming but has not arrived) a reminder is due
    every `after_ack` from the acknowledgement or the previous reminder; once `on_site`, every
    `after_on_site` (longer: they are there, the reminder only asks them to close it). The first
    `acknowledger_only` reminders of a stage go to the person who answered alone; later ones to
    them and the station's staff, who can check. None as an interval turns that stage's
    reminders off; `max_per_stage` None means no limit (an unresolved P1 keeps nagging).
    """

    priorities: frozenset[Priority] = frozenset({Priority.P1})
    after_ack: timedelta | None = timedelta(minutes=10)
    after_on_site: timedelta | None = timedelta(minutes=30)
    acknowledger_only: int = 1
    max_per_stage: int | None = None

    def __post_init__(self) -> None:
        for name in ("after_ack", "after_on_site"):
            value = getattr(self, name)
            if value is not None and value < timedelta(seconds=MIN_ACK_TIMEOUT_S):
                raise ValueError(f"{name} must be at least {MIN_ACK_TIMEOUT_S} s")
        if self.acknowledger_only < 0:
            raise ValueError("acknowledger_only must be >= 0")
        if self.max_per_stage is not None and self.max_per_stage < 1:
            raise ValueError("max_per_stage must be >= 1")


DEFAULT_REMINDERS = ReminderPolicy()


@dataclass(frozen=True, slots=True)
class Reminder:
    """The next reminder: when, the how-many-th in its stage (1-based), and to whom."""

    due_at: datetime
    stage: State  # acknowledged or on_site
    number: int
    to: tuple[str, ...]
    staff_fallback: bool = False
    staff_other_stations: bool = False

    def is_due(self, now: datetime) -> bool:
        return self.due_at <= now


def next_reminder(
    *,
    priority: Priority,
    state: State,
    acknowledged_at: datetime | None,
    on_site_at: datetime | None = None,
    acknowledged_by: str | None = None,
    arrived_by: str | None = None,
    sent: Sequence[datetime] = (),
    roster: Roster,
    now: datetime,
    policy: ReminderPolicy = DEFAULT_REMINDERS,
    station: str | None = None,
) -> Reminder | None:
    """The next reminder for an answered alert, or None when none is wanted.

    None when the alert is open (escalation pages it), resolved or cancelled (never page after
    that), of a priority without reminders, or when the stage's limit is reached. `sent` are
    the times of the reminders already sent for this alert; only those since the current stage
    began count. `due_at` may be in the past (the gateway was down): send one then, not a burst.
    Recipients are worked out as of `now` (who is on duty now); staff are those on duty, or all
    staff when nobody is, for an elder of `station` as `staff_to_page` picks them. Raises
    ValueError when the time the stage began is missing.
    """
    if state not in (State.ACKNOWLEDGED, State.ON_SITE) or priority not in policy.priorities:
        return None
    if state == State.ON_SITE:
        interval = policy.after_on_site
        began = on_site_at or acknowledged_at  # arrived without an ack: the stage starts there
        first = arrived_by or acknowledged_by
    else:
        interval = policy.after_ack
        began = acknowledged_at
        first = acknowledged_by
    if interval is None:
        return None
    if began is None:
        raise ValueError(f"an alert {state} needs the time it became so")
    in_stage = sorted(t for t in sent if t >= began)
    if policy.max_per_stage is not None and len(in_stage) >= policy.max_per_stage:
        return None
    number = len(in_stage) + 1
    due_at = (in_stage[-1] if in_stage else began) + interval
    if first is not None and number <= policy.acknowledger_only:
        return Reminder(due_at, state, number, (first,))
    staff = staff_to_page(roster, now, station=station)
    to = _unique([*([first] if first else []), *staff.to])
    if not to:
        return None  # nobody at all to remind: the gateway logs it, as for a plan of nobody
    return Reminder(due_at, state, number, to, staff.fallback, staff.other_stations)


# --------------------------------------------------------------------------------------------
# channel chains and retries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of one channel attempt that failed (the provider refused, the call did not go).

    After the n-th failed try the next waits `first_backoff_s * factor**(n-1)`, at most
    `max_backoff_s`; after `max_tries` failures the channel is given up for this page. Short
    by default: an alarm's SMS that goes out three minutes late is of little use.
    """

    max_tries: int = 3
    first_backoff_s: float = 5.0
    factor: float = 3.0
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError("max_tries must be >= 1")
        if self.first_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("back-off must be >= 0")
        if self.factor < 1:
            raise ValueError("factor must be >= 1")

    def backoff(self, failures: int) -> timedelta:
        """The wait after the `failures`-th failed try (1-based)."""
        if failures < 1:
            raise ValueError("failures start at 1")
        seconds = min(self.first_backoff_s * self.factor ** (failures - 1), self.max_backoff_s)
        return timedelta(seconds=seconds)


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class ChannelLink:
    """One link of a person's chain: a channel name ("pager", "sms", "voice", "im", "web"), an
    opaque address (a pager id, an apprise URL), and when it starts, in seconds after the page."""

    channel: str
    address: str
    after_s: int = 0
    retry: RetryPolicy = DEFAULT_RETRY

    def __post_init__(self) -> None:
        if not self.channel or not self.address:
            raise ValueError("a channel link needs a channel and an address")
        if self.after_s < 0:
            raise ValueError("after_s must be >= 0")


@dataclass(frozen=True, slots=True)
class ChannelChain:
    """A person's channels in order. Links start at their `after_s`, or at once when every link
    before them has been given up (a dead pager need not hold the SMS back for a minute)."""

    links: tuple[ChannelLink, ...]

    def __post_init__(self) -> None:
        if not self.links:
            raise ValueError("a channel chain needs at least one link")
        delays = [link.after_s for link in self.links]
        if delays != sorted(delays):
            raise ValueError("a chain's links must start in order (after_s not decreasing)")


DEFAULT_CHAIN_GAP_S = 60


def default_chain(
    links: Sequence[tuple[str, str]], gap_s: int = DEFAULT_CHAIN_GAP_S
) -> ChannelChain:
    """A chain from (channel, address) pairs in order, the k-th (0-based) at k * `gap_s`:
    pager at once, SMS after 60 s, voice after 120 s."""
    return ChannelChain(tuple(ChannelLink(c, a, k * gap_s) for k, (c, a) in enumerate(links)))


class DeliveryStatus(StrEnum):
    SENT = "sent"  # handed over (the broker or provider took it); no receipt (yet)
    DELIVERED = "delivered"  # the provider or device confirmed it arrived
    FAILED = "failed"  # refused or lost: retried by the link's RetryPolicy


@dataclass(frozen=True, slots=True)
class Attempt:
    """A delivery attempt made for a page: `link` is the index in the chain, `try_no` 1-based."""

    link: int
    try_no: int
    at: datetime
    status: DeliveryStatus


@dataclass(frozen=True, slots=True)
class DueAttempt:
    link: int
    channel: str
    address: str
    try_no: int
    due_at: datetime


@dataclass(frozen=True, slots=True)
class ChainSchedule:
    """What to send now (`due`), and when to look again (`next_at`; None: nothing more to do)."""

    due: tuple[DueAttempt, ...]
    next_at: datetime | None

    @property
    def done(self) -> bool:
        return not self.due and self.next_at is None


_NOTHING = ChainSchedule((), None)


def chain_schedule(
    chain: ChannelChain,
    sent_at: datetime,
    attempts: Sequence[Attempt],
    now: datetime,
    *,
    answered: bool,
    alert_state: State,
    reminder: bool = False,
) -> ChainSchedule:
    """The channel attempts due at `now` for a page sent to one person at `sent_at`.

    `answered`: the person replied (ack, decline, arrived, resolved) since `sent_at`: the chain
    stops. It stops too when the alert is resolved or cancelled, and, for an escalation page,
    when someone else answered (the alert left `open`); a `reminder` page goes on while the
    alert is acknowledged or on site. Only an answer stops later links: a delivered pager in a
    drawer wakes nobody. A failed try is retried after its back-off; a link that was sent or
    delivered is not tried again. `attempts` naming a link the chain no longer has (the person
    changed their channels) are ignored.

    Use one chain per person and alert from their first page (the escalation's own repeats go
    out as pages anyway), and one per reminder.
    """
    if answered or alert_state not in (State.OPEN, State.ACKNOWLEDGED, State.ON_SITE):
        return _NOTHING
    if not reminder and stops_paging(alert_state):
        return _NOTHING
    by_link: dict[int, list[Attempt]] = {}
    for a in attempts:
        if 0 <= a.link < len(chain.links):
            by_link.setdefault(a.link, []).append(a)

    pending: list[DueAttempt] = []
    # The time by which every earlier link had been given up; None once one of them is alive.
    earlier_gave_up: datetime | None = sent_at
    for i, link in enumerate(chain.links):
        start = sent_at + timedelta(seconds=link.after_s)
        if earlier_gave_up is not None:
            start = min(start, earlier_gave_up)
        tries = sorted(by_link.get(i, []), key=lambda a: (a.try_no, a.at))
        gave_up: datetime | None = None
        if any(a.status != DeliveryStatus.FAILED for a in tries):
            pass  # sent or delivered: this link has done its part
        elif not tries:
            pending.append(DueAttempt(i, link.channel, link.address, 1, start))
        elif len(tries) >= link.retry.max_tries:
            gave_up = max(a.at for a in tries)
        else:
            last = max(a.at for a in tries)
            retry_at = last + link.retry.backoff(len(tries))
            pending.append(DueAttempt(i, link.channel, link.address, len(tries) + 1, retry_at))
        if gave_up is None or earlier_gave_up is None:
            earlier_gave_up = None
        else:
            earlier_gave_up = max(earlier_gave_up, gave_up)

    due = tuple(p for p in pending if p.due_at <= now)
    later = [p.due_at for p in pending if p.due_at > now]
    return ChainSchedule(due, min(later) if later else None)


__all__ = [
    "DECLINED",
    "DEFAULT_CHAIN_GAP_S",
    "DEFAULT_LADDERS",
    "DEFAULT_POLICY",
    "DEFAULT_REMINDERS",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS_S",
    "FULL_LADDER",
    "AllDeclined",
    "Attempt",
    "BuiltPlan",
    "ChainSchedule",
    "ChannelChain",
    "ChannelLink",
    "DeliveryStatus",
    "DueAttempt",
    "ElderOverride",
    "EscalationPolicy",
    "Pairing",
    "PlannedStep",
    "Reminder",
    "ReminderPolicy",
    "RetryPolicy",
    "Role",
    "Roster",
    "Shift",
    "StaffPick",
    "after_all_declined",
    "build_plan",
    "chain_schedule",
    "default_chain",
    "last_resort_staff",
    "next_reminder",
    "staff_to_page",
    "timeouts_with",
]
