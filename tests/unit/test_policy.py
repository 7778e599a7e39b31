"""Unit tests of the paging policy: built escalation plans, reminders of acknowledged alerts, and
per-person channel chains with retries. Pure and fast: every `now` is a datetime built here.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.escalation import MAX_ACK_TIMEOUT_S, MIN_ACK_TIMEOUT_S, Plan, PlanError, Step
from alerts.model import CLOSED_STATES, AlertKind, Priority, State
from alerts.policy import (
    DEFAULT_LADDERS,
    DEFAULT_POLICY,
    DEFAULT_TIMEOUTS_S,
    FULL_LADDER,
    AllDeclined,
    Attempt,
    ChannelChain,
    ChannelLink,
    DeliveryStatus,
    DueAttempt,
    ElderOverride,
    EscalationPolicy,
    Pairing,
    PlannedStep,
    Reminder,
    ReminderPolicy,
    RetryPolicy,
    Role,
    Roster,
    Shift,
    after_all_declined,
    build_plan,
    chain_schedule,
    default_chain,
    last_resort_staff,
    next_reminder,
    staff_to_page,
    timeouts_with,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 8, 15, tzinfo=CST)
DAY = datetime(2026, 11, 23, tzinfo=CST)
NIGHT = datetime(2026, 11, 23, 3, 0, tzinfo=CST)

FAST = settings(max_examples=200, deadline=None, database=None)

W, V, S, F = Role.WATCHER, Role.VOLUNTEER, Role.STAFF, Role.FAMILY
CALL, GAS = AlertKind.CALL_BUTTON, AlertKind.GAS
P1, P2, P3 = Priority.P1, Priority.P2, Priority.P3

ELDER_TAGS = frozenset({"community:xinhua", "building:xinhua-3"})


def at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


def shift(rid: str, role: Role, start: int, end: int, *tags: str) -> Shift:
    return Shift(
        rid, role, at(start), at(end) if end < 24 else DAY + timedelta(days=1), frozenset(tags)
    )


ROSTER = Roster(
    shifts=(
        shift("s-day", S, 8, 16),
        shift("s-eve", S, 16, 24),
        shift("v-near", V, 8, 20, "community:xinhua"),
        shift("v-same-building", V, 8, 20, "community:xinhua", "building:xinhua-3"),
        shift("v-far", V, 8, 20, "community:heping"),
        shift("v-notags", V, 8, 20),
        shift("v-night", V, 20, 24, "building:xinhua-3"),
    ),
    staff_ids=("s-head", "s-day", "s-eve"),
)

PAIRINGS = (
    Pairing("w-2", W, order=2),
    Pairing("w-1", W, order=1),
    Pairing("v-paired", V),
    Pairing("f-son", F, order=1),
    Pairing("f-daughter", F, order=0),
)


def built(
    kind: AlertKind = CALL,
    priority: Priority = P1,
    now: datetime = T0,
    pairings: tuple[Pairing, ...] = PAIRINGS,
    roster: Roster = ROSTER,
    **kw: object,
) -> tuple[Plan | None, tuple[PlannedStep, ...], tuple[str, ...]]:
    b = build_plan(
        kind=kind,
        priority=priority,
        now=now,
        pairings=pairings,
        roster=roster,
        elder_tags=kw.pop("elder_tags", ELDER_TAGS),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return b.plan, b.steps, b.notes


# --------------------------------------------------------------------------------------------
# the ladder
# --------------------------------------------------------------------------------------------


def test_full_ladder_for_a_call_in_the_day() -> None:
    plan, steps, notes = built()
    assert plan is not None
    assert plan.to_json() == [
        {"responder_ids": ["w-1", "w-2"], "ack_timeout_s": 60},
        # paired first, then on duty nearby: sharing the building before only the community
        {"responder_ids": ["v-paired", "v-same-building", "v-near"], "ack_timeout_s": 60},
        {"responder_ids": ["s-day"], "ack_timeout_s": 90},
        {"responder_ids": ["f-daughter", "f-son"], "ack_timeout_s": 120},
    ]
    assert [s.role for s in steps] == [W, V, S, F]
    assert not any(s.fallback for s in steps)
    assert notes == ()


def test_built_plan_is_the_stored_plan_form() -> None:
    plan, steps, _ = built()
    assert plan is not None
    assert Plan.from_json(plan.to_json()) == plan
    assert [Step(s.responder_ids, s.ack_timeout_s) for s in steps] == list(plan.steps)
    # the last step repeats, by the Plan's own rules
    assert plan.step(plan.last + 3) == plan.steps[-1]


def test_staff_fallback_when_nobody_is_on_duty() -> None:
    plan, steps, notes = built(now=NIGHT)
    assert plan is not None
    staff = next(s for s in steps if s.role == S)
    assert staff.fallback is True
    assert staff.responder_ids == ("s-head", "s-day", "s-eve")
    assert "staff_fallback" in notes
    # at night no volunteer is on duty, so the only volunteer is the paired one
    assert next(s for s in steps if s.role == V).responder_ids == ("v-paired",)


def test_shift_boundaries_are_half_open() -> None:
    _, steps, _ = built(now=at(16))
    assert next(s for s in steps if s.role == S).responder_ids == ("s-eve",)
    _, steps, _ = built(now=at(16) - timedelta(microseconds=1))
    assert next(s for s in steps if s.role == S).responder_ids == ("s-day",)


def test_empty_steps_are_dropped() -> None:
    plan, steps, _ = built(pairings=(), now=NIGHT)
    assert plan is not None
    assert [s.role for s in steps] == [S]  # no watchers, volunteers nor family tonight
    assert plan.last == 1


def test_a_person_pages_at_their_first_step_only() -> None:
    pairings = (
        Pairing("x", W),
        Pairing("x", F),  # a neighbour who is also family
        Pairing("s-day", F),  # a staff member who is the elder's daughter
        Pairing("w-1", W),
        Pairing("w-1", W),  # a pairing entered twice
    )
    roster = Roster(shifts=(*ROSTER.shifts, shift("x", V, 8, 20, "building:xinhua-3")))
    plan, steps, _ = built(pairings=pairings, roster=roster)
    assert plan is not None
    ids = [r for s in plan.steps for r in s.responder_ids]
    assert len(ids) == len(set(ids))
    assert plan.steps[0].responder_ids == ("x", "w-1")
    assert [s.role for s in steps] == [W, V, S]  # the family step had only people already paged


def test_pairing_active_window() -> None:
    pairings = (
        Pairing("w-old", W, active_until=T0),  # ended exactly now
        Pairing("w-new", W, active_from=T0 + timedelta(seconds=1)),  # starts in a second
        Pairing("w-now", W, active_from=T0, active_until=T0 + timedelta(days=7)),
    )
    _, steps, _ = built(pairings=pairings)
    assert steps[0].role == W
    assert steps[0].responder_ids == ("w-now",)


def test_volunteers_need_elder_tags_to_be_nearby() -> None:
    _, steps, _ = built(elder_tags=frozenset())
    assert next(s for s in steps if s.role == V).responder_ids == ("v-paired",)


def test_nearby_volunteer_cap_and_paired_needing_a_shift() -> None:
    capped = EscalationPolicy(max_nearby_volunteers=1)
    _, steps, _ = built(policy=capped)
    assert next(s for s in steps if s.role == V).responder_ids == ("v-paired", "v-same-building")
    strict = EscalationPolicy(paired_volunteers_need_shift=True)
    _, steps, _ = built(policy=strict)
    assert next(s for s in steps if s.role == V).responder_ids == ("v-same-building", "v-near")


def test_paired_staff_on_duty_go_first() -> None:
    roster = Roster(
        shifts=(shift("s-a", S, 8, 16), shift("s-b", S, 8, 16)), staff_ids=("s-a", "s-b", "s-c")
    )
    pairings = (Pairing("s-b", S), Pairing("s-c", S))  # s-c is paired but off duty
    _, steps, _ = built(pairings=pairings, roster=roster)
    assert steps == (PlannedStep(S, ("s-b", "s-a"), 90),)
    _, steps, _ = built(pairings=pairings, roster=roster, now=NIGHT)
    assert steps == (PlannedStep(S, ("s-b", "s-c", "s-a"), 90, fallback=True),)


def test_staff_to_page() -> None:
    assert staff_to_page(ROSTER, T0) == (("s-day",), False, False)
    assert staff_to_page(ROSTER, NIGHT) == (("s-head", "s-day", "s-eve"), True, False)
    assert staff_to_page(Roster(), NIGHT) == ((), True, False)
    # someone with a staff shift but missing from staff_ids is still staff
    roster = Roster(shifts=(shift("s-x", S, 8, 9),), staff_ids=("s-head",))
    assert staff_to_page(roster, NIGHT) == (("s-head", "s-x"), True, False)


# --- staff by station ------------------------------------------------------------------------

HM, JT = "红庙站", "金台站"
# a-* are 红庙站's, b-* 金台站's, d-head of no station (serves every station)
STATIONS = Roster(
    shifts=(shift("b-day", S, 8, 16), shift("a-day", S, 8, 16), shift("d-eve", S, 16, 24)),
    staff_ids=("b-head", "a-head", "d-eve", "b-day", "a-day"),
    stations={"a-head": HM, "a-day": HM, "b-head": JT, "b-day": JT},
)


def test_staff_of_the_elders_station_on_duty_are_paged_not_another_stations() -> None:
    assert staff_to_page(STATIONS, T0, station=HM) == (("a-day",), False, False)
    assert staff_to_page(STATIONS, T0, station=JT) == (("b-day",), False, False)
    # staff of no station serve every station, on duty or in the fallback
    assert staff_to_page(STATIONS, at(17), station=HM) == (("d-eve",), False, False)
    assert staff_to_page(STATIONS, NIGHT, station=HM) == (("a-head", "d-eve", "a-day"), True, False)
    # an elder of no station: every station's, as without stations
    assert staff_to_page(STATIONS, T0) == (("b-day", "a-day"), False, False)
    assert staff_to_page(STATIONS, NIGHT) == (STATIONS.all_staff(), True, False)
    # a station the roster does not know: only those of no station serve it
    assert staff_to_page(STATIONS, NIGHT, station="呼家楼站") == (("d-eve",), True, False)


def test_another_stations_staff_only_when_nobody_serves_the_elders_station() -> None:
    roster = Roster(
        shifts=(shift("b-day", S, 8, 16), shift("c-day", S, 8, 16)),
        staff_ids=("b-head", "b-day", "c-day"),
        stations={"b-head": JT, "b-day": JT, "c-day": "呼家楼站"},
    )
    # 红庙站 has no staff at all: the others on duty, else all of them, and said so
    assert staff_to_page(roster, T0, station=HM) == (("b-day", "c-day"), False, True)
    assert staff_to_page(roster, NIGHT, station=HM) == (("b-head", "b-day", "c-day"), True, True)
    # 金台站's off-duty head is theirs: asked before 呼家楼站's staff on duty
    assert staff_to_page(roster, NIGHT, station=JT) == (("b-head", "b-day"), True, False)
    assert staff_to_page(Roster(), T0, station=HM) == ((), True, False)


def test_paired_staff_of_another_station_are_not_put_first() -> None:
    # b-day was paired with the elder before moving to 金台站: no longer the elder's staff
    paired = ("b-day", "a-head")
    assert staff_to_page(STATIONS, T0, paired, HM) == (("a-day",), False, False)
    assert staff_to_page(STATIONS, NIGHT, paired, HM) == (("a-head", "d-eve", "a-day"), True, False)


def test_the_plan_says_when_another_stations_staff_are_paged() -> None:
    _, steps, notes = built(roster=STATIONS, station=HM)
    [staff] = [s for s in steps if s.role == S]
    assert staff == PlannedStep(S, ("a-day",), 90)
    assert "staff_other_stations" not in notes
    only_b = Roster(STATIONS.shifts[:1], ("b-head", "b-day"), STATIONS.stations)
    _, steps, notes = built(roster=only_b, station=HM)
    [staff] = [s for s in steps if s.role == S]
    assert staff == PlannedStep(S, ("b-day",), 90, other_stations=True)
    assert "staff_other_stations" in notes


def test_when_everyone_declined_the_elders_station_is_asked_before_another() -> None:
    family = {"f1", "f2"}
    replies = ("f1", "f2")  # the family's declines, the last of all
    found = after_all_declined(
        asked=family, replies=no(*replies), roster=STATIONS, now=T0, station=HM
    )
    assert found == AllDeclined(("a-day",), False, ("f1", "f2"))
    # a-day said no and d-eve cannot be reached: 红庙站's head, though off duty
    found = after_all_declined(
        asked=family,
        replies=no("a-day", *replies),
        roster=STATIONS,
        now=T0,
        station=HM,
        unreachable=("d-eve",),
    )
    assert found == AllDeclined(("a-head",), True, ("a-day", "f1", "f2"))
    # everyone of 红庙站 (and of no station) has said no: 金台站's on duty, said so
    found = after_all_declined(
        asked=family,
        replies=no("a-day", "a-head", "d-eve", *replies),
        roster=STATIONS,
        now=T0,
        station=HM,
    )
    assert found == AllDeclined(("b-day",), False, ("a-day", "a-head", "d-eve", "f1", "f2"), True)
    found = after_all_declined(
        asked=family,
        replies=no("a-day", "a-head", "d-eve", "b-day", *replies),
        roster=STATIONS,
        now=T0,
        station=HM,
    )
    assert found is not None and (found.to, found.other_stations) == (("b-head",), True)


def test_last_resort_is_the_elders_station_then_any() -> None:
    assert last_resort_staff(STATIONS, HM) == (("a-head", "d-eve", "a-day"), True, False)
    assert last_resort_staff(STATIONS) == (STATIONS.all_staff(), True, False)
    # nobody of 红庙站 (or of no station) can be reached: the other station's
    passed = ("a-head", "d-eve", "a-day")
    assert last_resort_staff(STATIONS, HM, passed) == (("b-head", "b-day"), True, True)
    assert last_resort_staff(STATIONS, HM, STATIONS.all_staff()) == ((), True, False)


def test_reminders_go_to_the_elders_stations_staff() -> None:
    later = {"sent": [ACKED + 10 * MIN], "now": ACKED + 11 * MIN}  # past the acknowledger-only one
    r = must(roster=STATIONS, station=HM, **later)
    assert (r.to, r.staff_other_stations) == (("w-1", "a-day"), False)
    only_b = Roster(STATIONS.shifts[:1], ("b-head", "b-day"), STATIONS.stations)
    r = must(roster=only_b, station=HM, **later)
    assert (r.to, r.staff_fallback, r.staff_other_stations) == (("w-1", "b-day"), False, True)


# --- everyone at the last step declined ------------------------------------------------------


def no(*ids: str) -> list[tuple[str, str]]:
    return [(r, "declined") for r in ids]


def test_the_last_decline_of_the_last_step_pages_the_staff_on_duty() -> None:
    family = {"f1", "f2"}
    assert after_all_declined(asked=family, replies=no("f1"), roster=ROSTER, now=T0) is None
    found = after_all_declined(asked=family, replies=no("f1", "f2"), roster=ROSTER, now=T0)
    assert found == AllDeclined(("s-day",), False, ("f1", "f2"))
    # nobody on duty (at night): every staff member
    found = after_all_declined(asked=family, replies=no("f1", "f2"), roster=ROSTER, now=NIGHT)
    assert found == AllDeclined(("s-head", "s-day", "s-eve"), True, ("f1", "f2"))


def test_those_who_declined_or_cannot_be_reached_are_passed_over() -> None:
    # s-day, on duty, said no at the staff step before: the other staff, though off duty
    found = after_all_declined(asked={"f1"}, replies=no("s-day", "f1"), roster=ROSTER, now=T0)
    assert found == AllDeclined(("s-head", "s-eve"), True, ("s-day", "f1"))
    found = after_all_declined(
        asked={"f1"}, replies=no("f1"), roster=ROSTER, now=T0, unreachable=("s-day", "s-eve")
    )
    assert found == AllDeclined(("s-head",), True, ("f1",))
    # everyone has said no: nobody left (the caller keeps the step's repeat)
    staff = {"s-head", "s-day", "s-eve"}
    found = after_all_declined(
        asked=staff, replies=no("s-head", "s-eve", "s-day"), roster=ROSTER, now=T0
    )
    assert found == AllDeclined((), True, ("s-head", "s-eve", "s-day"))
    assert after_all_declined(asked={"f1"}, replies=no("f1"), roster=Roster(), now=T0) == (
        AllDeclined((), True, ("f1",))
    )


def test_only_the_decline_that_completes_the_set_pages_anyone() -> None:
    family = {"f1", "f2"}

    def after(asked: set[str], replies: list[tuple[str, str]]) -> AllDeclined | None:
        return after_all_declined(asked=asked, replies=replies, roster=ROSTER, now=T0)

    assert after(family, no("f1", "f2")) is not None
    # the same person declining again, or someone not asked at the last step: nothing more
    assert after(family, no("f1", "f2", "f2")) is None
    assert after(family, no("f1", "f2", "w1")) is None
    # someone paged and silent (a fallback page not answered yet) holds it
    assert after({*family, "s-day"}, no("f1", "f2")) is None
    # the last answer is not a decline: nothing to do here
    assert after(family, []) is None
    assert after(family, [*no("f1"), ("f2", "acknowledged")]) is None


def test_a_withdrawn_ack_is_a_decline_and_a_decline_stands_over_a_repeat() -> None:
    family = {"f1", "f2"}
    # f1 said no; f2 took it and then could not go: both have declined, f2 just now
    replies = [*no("f1"), ("f2", "acknowledged"), *no("f2")]
    found = after_all_declined(asked=family, replies=replies, roster=ROSTER, now=T0)
    assert found == AllDeclined(("s-day",), False, ("f1", "f2"))
    # f1 said no before, took it, and withdrew: their latest answer counts, not their first
    replies = [*no("f2", "f1"), ("f1", "acknowledged"), *no("f1")]
    found = after_all_declined(asked=family, replies=replies, roster=ROSTER, now=T0)
    assert found is not None and found.to == ("s-day",)


def test_a_withdrawal_by_anyone_leaving_nobody_at_the_last_step_pages_the_staff() -> None:
    family = {"f1", "f2"}

    def after(replies: list[tuple[str, str]], asked: set[str] = family) -> AllDeclined | None:
        return after_all_declined(
            asked=asked, replies=replies, roster=ROSTER, now=T0, withdrawal=True
        )

    # w1, paged at step 1 only, took it late after f1 and f2 had said no, then could not go
    replies = [*no("f1", "f2"), ("w1", "acknowledged"), *no("w1")]
    assert after_all_declined(asked=family, replies=replies, roster=ROSTER, now=T0) is None
    assert after(replies) == AllDeclined(("s-day",), False, ("f1", "f2", "w1"))
    # the withdrawer is staff on duty (paged at the staff step): never paged back
    replies = [*no("f1", "f2"), ("s-day", "acknowledged"), *no("s-day")]
    assert after(replies) == AllDeclined(("s-head", "s-eve"), True, ("f1", "f2", "s-day"))
    # someone asked at the last step has not answered: they may still come
    assert after([*no("f1"), ("w1", "acknowledged"), *no("w1")]) is None
    assert after([*no("f1", "f2"), ("w1", "acknowledged"), *no("w1")], {*family, "s-day"}) is None
    # the last answer must be the decline: an ack after it is someone coming
    assert after([*no("f1", "f2", "w1"), ("f1", "acknowledged")]) is None


def test_declines_never_page_anyone_twice_and_end_with_nobody_left() -> None:
    """Everyone paged declines, one by one, as the gateway would see it: each person is paged
    at most once by the fallback, and it ends with nobody left, once."""
    roster = Roster(
        shifts=(shift("s-day", S, 8, 16), shift("s-day2", S, 8, 16)),
        staff_ids=("s-head", "s-day", "s-day2", "s-eve"),
    )
    asked = ["f1", "f2"]
    replies: list[tuple[str, str]] = []
    paged: list[tuple[str, ...]] = []
    ends = 0
    for _ in range(20):  # more rounds than there are people: a loop would show
        waiting = [r for r in asked if (r, "declined") not in replies]
        if not waiting:
            break
        replies.append((waiting[0], "declined"))
        found = after_all_declined(asked=set(asked), replies=replies, roster=roster, now=T0)
        if found is not None and found.to:
            paged.append(found.to)
            asked += found.to
        elif found is not None:
            ends += 1
    assert paged == [("s-day", "s-day2"), ("s-head", "s-eve")]
    assert ends == 1 and len(replies) == 6


@pytest.mark.parametrize(
    ("kind", "priority", "roles", "timeouts"),
    [
        (AlertKind.CALL_BUTTON, P1, [W, V, S, F], [60, 60, 90, 120]),
        (AlertKind.GAS, P1, [W, V, S, F], [60, 60, 90, 120]),
        (AlertKind.WATER_LEAK, P2, [W, V, S, F], [300, 300, 600, 900]),
        (AlertKind.WATER_RUNNING, P2, [W, V, S, F], [300, 300, 600, 900]),
        (AlertKind.NO_WATER_USE, P2, [W, V, S, F], [300, 300, 600, 900]),
        (AlertKind.TAMPER, P2, [S, F], [600, 900]),
        (AlertKind.DEVICE_OFFLINE, P2, [S], [600]),
        (AlertKind.LOW_BATTERY, P3, [S], [900]),
    ],
)
def test_ladder_per_kind(
    kind: AlertKind, priority: Priority, roles: list[Role], timeouts: list[int]
) -> None:
    _, steps, _ = built(kind=kind, priority=priority, now=NIGHT)
    assert [s.role for s in steps] == roles
    assert [s.ack_timeout_s for s in steps] == timeouts


def test_every_kind_has_a_ladder_with_staff() -> None:
    assert set(DEFAULT_LADDERS) == set(AlertKind)
    assert all(S in ladder for ladder in DEFAULT_LADDERS.values())


def test_raised_priority_uses_its_timeouts() -> None:
    # a gas alarm whose valve did not close may be raised; a water alarm at P1 pages like P1
    _, steps, _ = built(kind=AlertKind.WATER_RUNNING, priority=P1)
    assert [s.ack_timeout_s for s in steps] == [60, 60, 90, 120]


def test_battery_widens_when_there_is_no_staff_at_all() -> None:
    plan, steps, notes = built(kind=AlertKind.LOW_BATTERY, priority=P3, roster=Roster())
    assert plan is not None
    assert [s.role for s in steps] == [W, V, F]
    assert "ladder_widened" in notes


def test_nobody_at_all() -> None:
    b = build_plan(kind=CALL, priority=P1, now=T0, pairings=(), roster=Roster())
    assert b.plan is None and b.steps == ()
    assert b.notes == ("no_responders",)


def test_kind_missing_from_the_table_gets_the_default_ladder() -> None:
    policy = EscalationPolicy(ladders={})
    _, steps, _ = built(kind=AlertKind.LOW_BATTERY, priority=P3, policy=policy)
    assert [s.role for s in steps] == list(FULL_LADDER)


# --------------------------------------------------------------------------------------------
# overrides and the policy's validation
# --------------------------------------------------------------------------------------------


def test_override_with_explicit_steps_is_used_as_written() -> None:
    steps = (Step(("warden",), 30), Step(("son", "warden"), 45))
    override = ElderOverride(steps=steps)
    b = build_plan(
        kind=CALL, priority=P1, now=T0, pairings=PAIRINGS, roster=ROSTER, overrides=(override,)
    )
    assert b.plan == Plan(steps)  # the warden twice: as written, like PUT /escalation
    assert b.source == "override"
    assert [s.role for s in b.steps] == [None, None]


def test_override_applies_only_to_its_priorities_and_kinds() -> None:
    only_p1 = ElderOverride(priorities=frozenset({P1}), steps=(Step(("warden",), 30),))
    b = build_plan(
        kind=AlertKind.LOW_BATTERY,
        priority=P3,
        now=T0,
        pairings=PAIRINGS,
        roster=ROSTER,
        overrides=(only_p1,),
    )
    assert b.source == "policy"
    assert b.plan is not None and b.plan.responder_ids() == {"s-day"}
    only_gas = ElderOverride(kinds=frozenset({GAS}), ladder=(S,))
    _, steps, _ = built(kind=CALL, overrides=(only_gas,))
    assert [s.role for s in steps] == [W, V, S, F]
    _, steps, notes = built(kind=GAS, overrides=(only_gas,))
    assert [s.role for s in steps] == [S]
    assert "override" in notes


def test_first_matching_override_wins() -> None:
    first = ElderOverride(priorities=frozenset({P1}), ladder=(F, S))
    second = ElderOverride(ladder=(S,))
    _, steps, _ = built(overrides=(first, second))
    assert [s.role for s in steps] == [F, S]
    _, steps, _ = built(kind=AlertKind.TAMPER, priority=P2, overrides=(first, second))
    assert [s.role for s in steps] == [S]


def test_override_timeouts_merge_with_the_policy() -> None:
    son_next_door = ElderOverride(ladder=(F, W, S), ack_timeout_s={F: 45})
    _, steps, _ = built(overrides=(son_next_door,))
    assert [(s.role, s.ack_timeout_s) for s in steps] == [(F, 45), (W, 60), (S, 90)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "changes nothing"),
        ({"steps": ()}, "at least one step"),
        ({"steps": (Step(("a",), 30),), "ladder": (S,)}, "either"),
        ({"ladder": ()}, "at least one role"),
        ({"ladder": (S, S)}, "twice"),
        ({"ack_timeout_s": {W: 4}}, "ack timeout"),
        ({"ack_timeout_s": {W: 30.5}}, "whole number"),
        ({"ladder": (S,), "priorities": frozenset()}, "no priority"),
        ({"ladder": (S,), "kinds": frozenset()}, "no kind"),
    ],
)
def test_override_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        ElderOverride(**kwargs)  # type: ignore[arg-type]


def test_policy_validation() -> None:
    with pytest.raises(PlanError, match="no ack timeouts for P3"):
        EscalationPolicy(timeouts_s={P1: DEFAULT_TIMEOUTS_S[P1], P2: DEFAULT_TIMEOUTS_S[P2]})
    with pytest.raises(PlanError, match="no ack timeout for P1 family"):
        EscalationPolicy(timeouts_s={**DEFAULT_TIMEOUTS_S, P1: {W: 60, V: 60, S: 90}})
    too_long = timeouts_with({P2: {S: MAX_ACK_TIMEOUT_S + 1}})
    with pytest.raises(PlanError, match="P2 staff"):
        EscalationPolicy(timeouts_s=too_long)
    with pytest.raises(PlanError, match="twice"):
        EscalationPolicy(ladders={CALL: (W, S, W)})
    with pytest.raises(PlanError):
        EscalationPolicy(max_nearby_volunteers=-1)


def test_timeouts_with_keeps_the_other_defaults() -> None:
    merged = timeouts_with({P1: {S: 120}})
    assert merged[P1] == {W: 60, V: 60, S: 120, F: 120}
    assert merged[P2] == dict(DEFAULT_TIMEOUTS_S[P2])
    assert DEFAULT_TIMEOUTS_S[P1][S] == 90  # the defaults are not changed
    _, steps, _ = built(policy=EscalationPolicy(timeouts_s=merged))
    assert [s.ack_timeout_s for s in steps] == [60, 60, 120, 120]


def test_default_timeouts() -> None:
    assert dict(DEFAULT_TIMEOUTS_S[P1]) == {W: 60, V: 60, S: 90, F: 120}
    for priority in (P2, P3):
        for role in Role:
            assert 300 <= DEFAULT_TIMEOUTS_S[priority][role] <= 900
            assert DEFAULT_TIMEOUTS_S[priority][role] >= DEFAULT_TIMEOUTS_S[P1][role]


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="only staff and volunteers"):
        Shift("x", W, at(8), at(9))
    with pytest.raises(ValueError, match="end after"):
        Shift("x", S, at(9), at(9))
    with pytest.raises(ValueError, match="after its active_from"):
        Pairing("x", W, active_from=T0, active_until=T0)
    with pytest.raises(ValueError):
        Pairing("", W)
    assert Role("watcher") is W  # the gateway converts care's roles by value


# --------------------------------------------------------------------------------------------
# properties of built plans
# --------------------------------------------------------------------------------------------

IDS = [f"p{i}" for i in range(12)]
hours = st.integers(0, 23)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[tuple[Pairing, ...], Roster, datetime]:
    pairings = tuple(
        Pairing(rid, role, order=order)
        for rid, role, order in draw(
            st.lists(
                st.tuples(st.sampled_from(IDS), st.sampled_from(list(Role)), st.integers(-2, 2)),
                max_size=8,
            )
        )
    )
    shifts = []
    for rid, role, start, length, tags in draw(
        st.lists(
            st.tuples(
                st.sampled_from(IDS),
                st.sampled_from([S, V]),
                hours,
                st.integers(1, 12),
                st.frozensets(st.sampled_from(sorted(ELDER_TAGS | {"community:heping"}))),
            ),
            max_size=8,
        )
    ):
        begin = at(start)
        shifts.append(Shift(rid, role, begin, begin + timedelta(hours=length), tags))
    staff_ids = tuple(draw(st.lists(st.sampled_from(IDS), max_size=4, unique=True)))
    now = at(draw(hours), draw(st.integers(0, 59)))
    return pairings, Roster(tuple(shifts), staff_ids), now


@FAST
@given(worlds(), st.sampled_from(list(AlertKind)), st.sampled_from(list(Priority)))
def test_built_plan_properties(
    world: tuple[tuple[Pairing, ...], Roster, datetime], kind: AlertKind, priority: Priority
) -> None:
    pairings, roster, now = world
    b = build_plan(
        kind=kind,
        priority=priority,
        now=now,
        pairings=pairings,
        roster=roster,
        elder_tags=ELDER_TAGS,
    )
    known = {p.responder_id for p in pairings} | {s.responder_id for s in roster.shifts}
    known |= set(roster.staff_ids)
    if roster.all_staff():
        # any staff at all: never nobody, and every staff member due is paged at some step
        # (at the staff step, or earlier when they are also, say, the elder's watcher)
        assert b.plan is not None
        paired_staff = [p.responder_id for p in pairings if p.role == S]
        assert set(staff_to_page(roster, now, paired_staff)[0]) <= b.plan.responder_ids()
    if b.plan is None:
        assert b.steps == () and "no_responders" in b.notes
        assert not roster.all_staff()
        return
    ids = [r for s in b.plan.steps for r in s.responder_ids]
    assert len(ids) == len(set(ids)), "a responder appears twice"
    assert set(ids) <= known
    roles = [s.role for s in b.steps]
    ladder = list(FULL_LADDER) if "ladder_widened" in b.notes else list(DEFAULT_LADDERS[kind])
    assert roles == [r for r in ladder if r in roles], "steps out of ladder order"
    for s in b.steps:
        assert s.role is not None
        assert s.ack_timeout_s == DEFAULT_TIMEOUTS_S[priority][s.role]
        assert MIN_ACK_TIMEOUT_S <= s.ack_timeout_s <= MAX_ACK_TIMEOUT_S
        assert s.fallback == (s.role == S and not roster.on_duty(S, now))
    assert Plan.from_json(b.plan.to_json()) == b.plan
    # the staff paged are the ones on duty when any are
    on_duty = {x.responder_id for x in roster.on_duty(S, now)}
    staff_step = next((s for s in b.steps if s.role == S), None)
    if on_duty and staff_step is not None:
        assert set(staff_step.responder_ids) <= on_duty


@FAST
@given(
    worlds(),
    st.dictionaries(st.sampled_from(IDS), st.sampled_from([HM, JT])),
    st.sampled_from([HM, JT, None]),
)
def test_staff_by_station_properties(
    world: tuple[tuple[Pairing, ...], Roster, datetime],
    stations: dict[str, str],
    station: str | None,
) -> None:
    pairings, plain, now = world
    roster = Roster(plain.shifts, plain.staff_ids, stations)
    paired = [p.responder_id for p in pairings if p.role == S]
    pick = staff_to_page(roster, now, paired, station)
    serving = [r for r in roster.all_staff() if roster.serves(r, station)]
    paired_serving = [r for r in paired if roster.serves(r, station)]
    ours = [r for r in pick.to if roster.serves(r, station)]
    # never nobody while there is staff anywhere
    assert bool(pick.to) == bool(roster.all_staff() or paired_serving)
    if pick.other_stations:  # another station's only when nobody serves this one ...
        assert station is not None and not serving and not paired_serving and not ours
    else:  # ... and otherwise none of theirs
        assert ours == list(pick.to)
    # the same for the page of last resort
    last = last_resort_staff(roster, station)
    assert set(last.to) == set(serving or roster.all_staff())
    assert last.other_stations == bool(not serving and roster.all_staff())


# --------------------------------------------------------------------------------------------
# reminders of acknowledged alerts
# --------------------------------------------------------------------------------------------

ACKED = T0 + timedelta(seconds=40)
MIN = timedelta(minutes=1)


def remind(state: State = State.ACKNOWLEDGED, **kw: object) -> Reminder | None:
    args: dict[str, object] = {
        "priority": P1,
        "state": state,
        "acknowledged_at": ACKED,
        "acknowledged_by": "w-1",
        "roster": ROSTER,
        "now": ACKED,
    }
    args.update(kw)
    return next_reminder(**args)  # type: ignore[arg-type]


def must(state: State = State.ACKNOWLEDGED, **kw: object) -> Reminder:
    r = remind(state, **kw)
    assert r is not None, "a reminder was expected"
    return r


def test_first_reminder_goes_to_the_acknowledger_ten_minutes_after() -> None:
    r = next_reminder(
        priority=P1,
        state=State.ACKNOWLEDGED,
        acknowledged_at=ACKED,
        acknowledged_by="w-1",
        roster=ROSTER,
        now=ACKED,
    )
    assert r is not None
    assert r.due_at == ACKED + 10 * MIN
    assert (r.stage, r.number, r.to) == (State.ACKNOWLEDGED, 1, ("w-1",))
    assert not r.is_due(ACKED + 10 * MIN - timedelta(microseconds=1))
    assert r.is_due(ACKED + 10 * MIN)


def test_later_reminders_add_the_staff_on_duty() -> None:
    r = must(sent=[ACKED + 10 * MIN], now=ACKED + 11 * MIN)
    assert r.due_at == ACKED + 20 * MIN
    assert r.number == 2
    assert r.to == ("w-1", "s-day")
    assert r.staff_fallback is False


def test_reminder_at_night_goes_to_all_staff() -> None:
    acked = NIGHT
    r = must(acknowledged_at=acked, sent=[acked + 10 * MIN], now=acked + 20 * MIN)
    assert r.to == ("w-1", "s-head", "s-day", "s-eve")
    assert r.staff_fallback is True


def test_reminder_when_acknowledged_from_the_board() -> None:
    r = must(acknowledged_by=None)
    assert r.to == ("s-day",)


def test_on_site_reminders_are_longer_and_count_from_arrival() -> None:
    arrived = ACKED + 15 * MIN
    sent = [ACKED + 10 * MIN]  # a reminder before arrival does not count in this stage
    r = must(State.ON_SITE, on_site_at=arrived, arrived_by="v-paired", sent=sent, now=arrived)
    assert r.due_at == arrived + 30 * MIN
    assert r.number == 1
    assert r.to == ("v-paired",)
    r = must(State.ON_SITE, on_site_at=arrived, sent=[*sent, arrived + 30 * MIN])
    assert r.due_at == arrived + 60 * MIN
    assert r.to == ("w-1", "s-day")


def test_arrived_without_an_ack() -> None:
    r = must(State.ON_SITE, acknowledged_at=None, acknowledged_by=None, on_site_at=ACKED)
    assert r.due_at == ACKED + 30 * MIN
    assert r.to == ("s-day",)


def test_overdue_reminder_after_downtime_is_one_not_a_burst() -> None:
    r = must(now=ACKED + 3 * timedelta(hours=1))
    assert r.due_at == ACKED + 10 * MIN and r.number == 1


@pytest.mark.parametrize("state", [State.OPEN, State.RESOLVED, State.CANCELLED])
def test_no_reminder_unless_answered_and_unresolved(state: State) -> None:
    assert remind(state, on_site_at=ACKED) is None


@pytest.mark.parametrize("priority", [P2, P3])
def test_no_reminder_for_p2_p3_by_default(priority: Priority) -> None:
    assert remind(priority=priority) is None
    policy = ReminderPolicy(priorities=frozenset({P1, P2, P3}), after_ack=30 * MIN)
    r = must(priority=priority, policy=policy)
    assert r.due_at == ACKED + 30 * MIN


def test_reminder_policy_limits() -> None:
    no_on_site = ReminderPolicy(after_on_site=None)
    assert remind(State.ON_SITE, on_site_at=ACKED, policy=no_on_site) is None
    two = ReminderPolicy(max_per_stage=2)
    assert remind(sent=[ACKED + 10 * MIN], policy=two) is not None
    assert remind(sent=[ACKED + 10 * MIN, ACKED + 20 * MIN], policy=two) is None
    at_once = ReminderPolicy(acknowledger_only=0)
    assert must(policy=at_once).to == ("w-1", "s-day")
    with pytest.raises(ValueError):
        ReminderPolicy(after_ack=timedelta(seconds=1))
    with pytest.raises(ValueError):
        ReminderPolicy(max_per_stage=0)


def test_reminder_needs_the_stage_start() -> None:
    with pytest.raises(ValueError, match="needs the time"):
        remind(acknowledged_at=None)


def test_no_reminder_when_there_is_nobody() -> None:
    assert remind(acknowledged_by=None, roster=Roster()) is None


@FAST
@given(
    st.sampled_from(list(State)),
    st.sampled_from(list(Priority)),
    st.lists(st.integers(0, 600), max_size=6),
    st.integers(0, 600),
    st.booleans(),
)
def test_reminder_properties(
    state: State, priority: Priority, sent_min: list[int], on_site_min: int, by: bool
) -> None:
    everything = ReminderPolicy(priorities=frozenset(Priority))
    on_site = ACKED + on_site_min * MIN
    sent = [ACKED + m * MIN for m in sent_min]
    r = next_reminder(
        priority=priority,
        state=state,
        acknowledged_at=ACKED,
        on_site_at=on_site,
        acknowledged_by="w-1" if by else None,
        sent=sent,
        roster=ROSTER,
        now=ACKED + 700 * MIN,
        policy=everything,
    )
    if state in CLOSED_STATES or state == State.OPEN:
        assert r is None, "a reminder for an alert that is not being answered"
        return
    assert r is not None
    began = on_site if state == State.ON_SITE else ACKED
    in_stage = [t for t in sent if t >= began]
    assert r.number == len(in_stage) + 1
    assert r.due_at > max([began, *in_stage])
    assert len(set(r.to)) == len(r.to) and r.to


# --------------------------------------------------------------------------------------------
# channel chains and retries
# --------------------------------------------------------------------------------------------

SENT = T0
SEC = timedelta(seconds=1)
CHAIN = default_chain(
    [("pager", "pgr-7"), ("sms", "twilio://ACx:tok@+8613800000000"), ("voice", "voice://+86...")]
)


def sched(
    now: datetime,
    attempts: tuple[Attempt, ...] = (),
    chain: ChannelChain = CHAIN,
    state: State = State.OPEN,
    answered: bool = False,
    reminder: bool = False,
) -> tuple[list[tuple[str, int, int]], datetime | None]:
    s = chain_schedule(
        chain, SENT, attempts, now, answered=answered, alert_state=state, reminder=reminder
    )
    return [(d.channel, d.try_no, int((d.due_at - SENT).total_seconds())) for d in s.due], s.next_at


def ok(link: int, t: int, try_no: int = 1) -> Attempt:
    return Attempt(link, try_no, SENT + t * SEC, DeliveryStatus.SENT)


def failed(link: int, t: int, try_no: int) -> Attempt:
    return Attempt(link, try_no, SENT + t * SEC, DeliveryStatus.FAILED)


def test_default_chain() -> None:
    assert [(x.channel, x.after_s) for x in CHAIN.links] == [
        ("pager", 0),
        ("sms", 60),
        ("voice", 120),
    ]
    assert default_chain([("sms", "a")]).links[0].after_s == 0  # no pager: SMS at once


def test_chain_when_nobody_answers() -> None:
    assert sched(SENT) == ([("pager", 1, 0)], SENT + 60 * SEC)
    assert sched(SENT + 30 * SEC, (ok(0, 0),)) == ([], SENT + 60 * SEC)
    assert sched(SENT + 60 * SEC, (ok(0, 0),)) == ([("sms", 1, 60)], SENT + 120 * SEC)
    assert sched(SENT + 125 * SEC, (ok(0, 0), ok(1, 60))) == ([("voice", 1, 120)], None)
    done = chain_schedule(
        CHAIN,
        SENT,
        (ok(0, 0), ok(1, 60), ok(2, 125)),
        SENT + 900 * SEC,
        answered=False,
        alert_state=State.OPEN,
    )
    assert done.done


def test_chain_late_start_sends_what_is_overdue_at_once() -> None:
    due, nxt = sched(SENT + 200 * SEC)
    assert due == [("pager", 1, 0), ("sms", 1, 60), ("voice", 1, 120)]
    assert nxt is None


def test_answer_stops_the_chain() -> None:
    assert sched(SENT + 60 * SEC, (ok(0, 0),), answered=True) == ([], None)


@pytest.mark.parametrize("state", [State.RESOLVED, State.CANCELLED])
def test_closed_alert_stops_every_chain(state: State) -> None:
    assert sched(SENT + 60 * SEC, (ok(0, 0),), state=state) == ([], None)
    assert sched(SENT + 60 * SEC, (ok(0, 0),), state=state, reminder=True) == ([], None)


def test_someone_else_answered_stops_pages_but_not_reminders() -> None:
    assert sched(SENT + 60 * SEC, (ok(0, 0),), state=State.ACKNOWLEDGED) == ([], None)
    assert sched(SENT + 60 * SEC, (ok(0, 0),), state=State.ON_SITE, reminder=True) == (
        [("sms", 1, 60)],
        SENT + 120 * SEC,
    )


def test_failed_pager_is_retried_with_back_off() -> None:
    assert sched(SENT + 1 * SEC, (failed(0, 1, 1),)) == ([], SENT + 6 * SEC)
    assert sched(SENT + 6 * SEC, (failed(0, 1, 1),)) == ([("pager", 2, 6)], SENT + 60 * SEC)
    two = (failed(0, 1, 1), failed(0, 6, 2))
    assert sched(SENT + 7 * SEC, two) == ([], SENT + 21 * SEC)  # 5 s, then 15 s
    assert sched(SENT + 21 * SEC, two) == ([("pager", 3, 21)], SENT + 60 * SEC)


def test_given_up_link_lets_the_next_start_early() -> None:
    dead = (failed(0, 1, 1), failed(0, 6, 2), failed(0, 21, 3))
    assert sched(SENT + 21 * SEC, dead) == ([("sms", 1, 21)], SENT + 120 * SEC)
    # the voice link waits its time while the SMS is alive
    assert sched(SENT + 30 * SEC, (*dead, ok(1, 21))) == ([], SENT + 120 * SEC)
    # and starts early when the SMS has been given up too
    sms_dead = (failed(1, 21, 1), failed(1, 26, 2), failed(1, 41, 3))
    assert sched(SENT + 41 * SEC, (*dead, *sms_dead)) == ([("voice", 1, 41)], None)


def test_delivered_or_sent_after_a_failure_is_not_retried() -> None:
    attempts = (failed(0, 0, 1), Attempt(0, 2, SENT + 5 * SEC, DeliveryStatus.DELIVERED))
    assert sched(SENT + 30 * SEC, attempts) == ([], SENT + 60 * SEC)


def test_attempts_of_links_the_chain_no_longer_has_are_ignored() -> None:
    assert sched(SENT, (failed(7, 0, 1), failed(-1, 0, 1))) == ([("pager", 1, 0)], SENT + 60 * SEC)


def test_retry_policy_back_off() -> None:
    r = RetryPolicy()
    assert [r.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 15, 45, 60]
    flat = RetryPolicy(max_tries=5, first_backoff_s=10, factor=1)
    assert {flat.backoff(n).total_seconds() for n in range(1, 6)} == {10}
    with pytest.raises(ValueError):
        r.backoff(0)
    for bad in ({"max_tries": 0}, {"factor": 0.5}, {"first_backoff_s": -1}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_one_try_link_gives_up_at_once() -> None:
    chain = ChannelChain(
        (
            ChannelLink("pager", "pgr-7", 0, RetryPolicy(max_tries=1)),
            ChannelLink("sms", "sms://a", 60),
        )
    )
    assert sched(SENT + 2 * SEC, (failed(0, 2, 1),), chain=chain) == ([("sms", 1, 2)], None)


def test_chain_validation() -> None:
    with pytest.raises(ValueError, match="at least one link"):
        ChannelChain(())
    with pytest.raises(ValueError, match="in order"):
        ChannelChain((ChannelLink("sms", "a", 60), ChannelLink("pager", "b", 0)))
    with pytest.raises(ValueError):
        ChannelLink("sms", "")
    with pytest.raises(ValueError):
        ChannelLink("sms", "a", -1)


@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(1, 4),
            st.integers(0, 300),
            st.sampled_from(DeliveryStatus),
        ),
        max_size=8,
    ),
    st.integers(0, 400),
)
def test_chain_properties(raw: list[tuple[int, int, int, DeliveryStatus]], now_s: int) -> None:
    attempts = tuple(Attempt(link, n, SENT + t * SEC, status) for link, n, t, status in raw)
    now = SENT + now_s * SEC
    s = chain_schedule(CHAIN, SENT, attempts, now, answered=False, alert_state=State.OPEN)
    links = [d.link for d in s.due]
    assert len(links) == len(set(links)), "one attempt per link at a time"
    for d in s.due:
        assert isinstance(d, DueAttempt)
        assert SENT <= d.due_at <= now
        assert 1 <= d.try_no <= CHAIN.links[d.link].retry.max_tries
        ok_link = any(a.link == d.link and a.status != DeliveryStatus.FAILED for a in attempts)
        assert not ok_link, "a link that got through is tried again"
    assert s.next_at is None or s.next_at > now
    for state in CLOSED_STATES:
        closed = chain_schedule(CHAIN, SENT, attempts, now, answered=False, alert_state=state)
        assert closed.done
    assert chain_schedule(CHAIN, SENT, attempts, now, answered=True, alert_state=State.OPEN).done


def test_default_policy_is_valid_and_shared() -> None:
    assert DEFAULT_POLICY.ladder(AlertKind.LOW_BATTERY) == (S,)
    assert DEFAULT_POLICY.timeout_s(P1, W) == 60
