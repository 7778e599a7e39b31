"""Unit tests of the service catalogue and orders (care.services): each transition and each
refusal, EVV and distance flags, recurring generation, charges; then hypothesis properties: random
command sequences never leave the state machine's defined states and log exactly the accepted
steps, and recurring generation is idempotent however the date range is cut."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from care._common import CareError
from care.elders import ServiceTier
from care.services import (
    ALLOWED_MOVES,
    SHANGHAI,
    Accept,
    Actor,
    ActorRole,
    Agree,
    Apply,
    Cancel,
    CheckIn,
    CheckOut,
    Close,
    Dispatch,
    Feedback,
    GeoPoint,
    OrderState,
    Recurrence,
    Refuse,
    Service,
    ServiceCategory,
    ServiceOrder,
    ServicePolicy,
    ServiceUnit,
    SignOff,
    SignOffMethod,
    apply,
    distance_m,
    evv_record,
    generate_occurrences,
    make_agreement,
    open_order,
    visit_charge,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)  # a Monday
HOME = GeoPoint(31.2304, 121.4737)
NEAR = GeoPoint(31.2310, 121.4740)  # about 70 m away
FAR = GeoPoint(31.2350, 121.4737)  # about 510 m north
STAFF = Actor(ActorRole.STAFF, "s1")
WITNESS = Actor(ActorRole.STAFF, "s2")
WORKER = Actor(ActorRole.WORKER, "w1")
OTHER_WORKER = Actor(ActorRole.WORKER, "w2")
ELDER = Actor(ActorRole.ELDER, "e1")

CLEANING = Service(
    "clean-2h",
    "助洁",
    "cleaning",
    ServiceCategory.CLEANING,
    ServiceUnit.HOUR,
    4000,
    {ServiceTier.FREE: 0, ServiceTier.LOW_COST: 1000, ServiceTier.PAID: 4000},
)
MEAL = Service(
    "lunch",
    "午餐",
    "lunch",
    ServiceCategory.MEALS,
    ServiceUnit.MEAL,
    1500,
    {ServiceTier.FREE: 0, ServiceTier.LOW_COST: 500, ServiceTier.PAID: 1500},
)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def new_order(category: ServiceCategory = ServiceCategory.CLEANING) -> ServiceOrder:
    return open_order(Apply(ELDER, "o1", "e1", HOME, category, "打扫卫生"), T0)


def steps(tier: ServiceTier = ServiceTier.LOW_COST) -> list[tuple[object, datetime]]:
    agreement = make_agreement(CLEANING, tier, 2, "civil-affairs")
    return [
        (Agree(STAFF, agreement), at(1)),
        (Dispatch(STAFF, "p1", "w1"), at(2)),
        (Accept(WORKER), at(3)),
        (CheckIn(WORKER, at(60), NEAR), at(60)),
        (CheckOut(WORKER, at(180), NEAR), at(180)),
        (Feedback(ELDER, 5, "很干净"), at(181)),
        (SignOff(WORKER, SignOffMethod.SIGNATURE, ref="img/sig1.png"), at(182)),
        (Close(STAFF), at(200)),
    ]


def run_until(state: OrderState, tier: ServiceTier = ServiceTier.LOW_COST) -> ServiceOrder:
    order = new_order()
    for command, now in steps(tier):
        if order.state is state:
            break
        order = apply(order, command, now)  # type: ignore[arg-type]
    assert order.state is state
    return order


# --- catalogue ------------------------------------------------------------------------------


def test_service_free_tier_must_be_free() -> None:
    with pytest.raises(CareError) as e:
        Service(
            "x",
            "x",
            "x",
            ServiceCategory.MEALS,
            ServiceUnit.MEAL,
            100,
            {ServiceTier.FREE: 1, ServiceTier.LOW_COST: 1, ServiceTier.PAID: 100},
        )
    assert e.value.code == "service_free_not_free"


@pytest.mark.parametrize(
    ("shares", "code"),
    [
        ({ServiceTier.FREE: 0, ServiceTier.PAID: 100}, "service_tier_price_missing"),
        (
            {ServiceTier.FREE: 0, ServiceTier.LOW_COST: 200, ServiceTier.PAID: 100},
            "service_share_above_price",
        ),
        ({ServiceTier.FREE: 0, ServiceTier.LOW_COST: -1, ServiceTier.PAID: 100}, "amount_invalid"),
    ],
)
def test_service_prices_checked(shares: dict[ServiceTier, int], code: str) -> None:
    with pytest.raises(CareError) as e:
        Service("x", "x", "x", ServiceCategory.MEALS, ServiceUnit.MEAL, 100, shares)
    assert e.value.code == code


def test_category_parses_chinese_labels() -> None:
    assert ServiceCategory.parse("助浴") is ServiceCategory.BATHING
    assert ServiceCategory.parse("巡访") is ServiceCategory.VISIT


def test_agreement_quantity_and_prices() -> None:
    with pytest.raises(CareError) as e:
        make_agreement(CLEANING, ServiceTier.PAID, 0, None)
    assert e.value.code == "quantity_invalid"
    a = make_agreement(CLEANING, ServiceTier.LOW_COST, 2, "civil-affairs")
    assert (a.total_fen, a.elder_share_fen, a.subsidy_fen) == (8000, 2000, 6000)
    unfunded = make_agreement(CLEANING, ServiceTier.LOW_COST, 2, None)
    assert (unfunded.elder_share_fen, unfunded.subsidy_fen) == (8000, 0)


# --- the workflow ---------------------------------------------------------------------------


def test_whole_workflow_logs_every_step() -> None:
    order = run_until(OrderState.CLOSED)
    assert [e.action for e in order.log] == [
        "apply",
        "agree",
        "dispatch",
        "accept",
        "checkin",
        "checkout",
        "feedback",
        "signoff",
        "close",
    ]
    assert order.log[0].actor == ELDER and order.log[3].actor == WORKER
    assert [e.at for e in order.log] == sorted(e.at for e in order.log)
    assert order.rating == 5 and order.sign_off is SignOffMethod.SIGNATURE


def test_system_can_apply_for_a_welfare_visit() -> None:
    system = Actor(ActorRole.SYSTEM, "water-alarm:a42")
    order = open_order(
        Apply(system, "o9", "e1", HOME, ServiceCategory.VISIT, "无用水告警后巡访"), T0
    )
    assert order.state is OrderState.APPLIED and order.applied_by == system


def test_worker_cannot_apply() -> None:
    with pytest.raises(CareError) as e:
        open_order(Apply(WORKER, "o9", "e1", HOME, ServiceCategory.VISIT, "x"), T0)
    assert e.value.code == "order_applicant_invalid"


def test_agreement_must_match_category() -> None:
    with pytest.raises(CareError) as e:
        apply(new_order(), Agree(STAFF, make_agreement(MEAL, ServiceTier.FREE, 1, "ca")), at(1))
    assert e.value.code == "agreement_category_mismatch"


def test_refusal_goes_back_to_dispatch() -> None:
    order = run_until(OrderState.DISPATCHED)
    order = apply(order, Refuse(WORKER, "生病"), at(5))
    assert order.state is OrderState.AGREED and order.worker_id is None
    order = apply(order, Dispatch(STAFF, "p1", "w2"), at(6))
    order = apply(order, Accept(OTHER_WORKER), at(7))
    assert order.state is OrderState.ACCEPTED and order.log[-3].detail == "生病"


def test_refusal_needs_reason() -> None:
    with pytest.raises(CareError) as e:
        apply(run_until(OrderState.DISPATCHED), Refuse(WORKER, "  "), at(5))
    assert e.value.code == "reason_missing"


def test_only_the_dispatched_worker() -> None:
    order = run_until(OrderState.DISPATCHED)
    for actor in (OTHER_WORKER, STAFF):
        with pytest.raises(CareError) as e:
            apply(order, Accept(actor), at(5))
        assert e.value.code == "not_the_worker"


@pytest.mark.parametrize(
    "state",
    [OrderState.APPLIED, OrderState.AGREED, OrderState.DISPATCHED, OrderState.ACCEPTED],
)
def test_cancel_before_service(state: OrderState) -> None:
    order = apply(run_until(state), Cancel(STAFF, "老人住院"), at(59))
    assert order.state is OrderState.CANCELLED and order.cancel_reason == "老人住院"


@pytest.mark.parametrize("state", [OrderState.IN_SERVICE, OrderState.SIGNED_OFF, OrderState.CLOSED])
def test_no_cancel_once_service_began(state: OrderState) -> None:
    with pytest.raises(CareError) as e:
        apply(run_until(state), Cancel(STAFF, "x"), at(300))
    assert e.value.code == "order_bad_move"


def test_cancelled_is_final() -> None:
    order = apply(new_order(), Cancel(ELDER, "不需要了"), at(1))
    for command, now in steps():
        with pytest.raises(CareError) as e:
            apply(order, command, now)  # type: ignore[arg-type]
        assert e.value.code == "order_bad_move"


def test_bad_move_message_is_bilingual() -> None:
    with pytest.raises(CareError) as e:
        apply(new_order(), Accept(WORKER), at(1))
    assert "cannot accept when applied" in e.value.en and "工单o1" in e.value.zh


def test_check_out_must_follow_check_in() -> None:
    order = run_until(OrderState.IN_SERVICE)
    with pytest.raises(CareError) as e:
        apply(order, CheckOut(WORKER, at(60), NEAR), at(60))
    assert e.value.code == "check_out_before_check_in"


def test_naive_times_refused() -> None:
    order = run_until(OrderState.ACCEPTED)
    with pytest.raises(CareError) as e:
        apply(order, CheckIn(WORKER, datetime(2026, 3, 2, 10), NEAR), at(60))
    assert e.value.code == "naive_datetime"


@pytest.mark.parametrize("rating", [0, 6, True])
def test_rating_range(rating: int) -> None:
    with pytest.raises(CareError) as e:
        apply(run_until(OrderState.SERVED), Feedback(ELDER, rating), at(181))
    assert e.value.code == "rating_invalid"


@pytest.mark.parametrize(
    ("sign_off", "code"),
    [
        (SignOff(WORKER, SignOffMethod.SIGNATURE), "sign_off_no_signature"),
        (SignOff(WORKER, SignOffMethod.PIN, pin_ok=False), "sign_off_pin_wrong"),
        (SignOff(WORKER, SignOffMethod.WITNESSED), "sign_off_witness_invalid"),
        (SignOff(WORKER, SignOffMethod.WITNESSED, ref="w1"), "sign_off_witness_invalid"),
    ],
)
def test_sign_off_refusals(sign_off: SignOff, code: str) -> None:
    with pytest.raises(CareError) as e:
        apply(run_until(OrderState.FEEDBACK_GIVEN), sign_off, at(182))
    assert e.value.code == code


@pytest.mark.parametrize(
    "sign_off",
    [
        SignOff(WORKER, SignOffMethod.PIN, pin_ok=True),
        SignOff(WITNESS, SignOffMethod.WITNESSED, ref="s2"),
    ],
)
def test_sign_off_methods(sign_off: SignOff) -> None:
    order = apply(run_until(OrderState.FEEDBACK_GIVEN), sign_off, at(182))
    assert order.state is OrderState.SIGNED_OFF and order.sign_off is sign_off.method


# --- EVV ------------------------------------------------------------------------------------


def test_distance_haversine() -> None:
    # One degree of latitude is about 111.2 km anywhere.
    assert distance_m(GeoPoint(0, 0), GeoPoint(1, 0)) == pytest.approx(111_195, rel=1e-3)
    assert distance_m(HOME, HOME) == 0
    assert 500 < distance_m(HOME, FAR) < 520


def test_far_check_in_is_flagged_not_refused() -> None:
    order = apply(run_until(OrderState.ACCEPTED), CheckIn(WORKER, at(60), FAR), at(60))
    assert order.state is OrderState.IN_SERVICE
    assert order.check_in is not None and order.check_in.far
    assert order.log[-1].detail.endswith("FAR")
    relaxed = ServicePolicy(max_check_in_distance_m=1000)
    order2 = apply(run_until(OrderState.ACCEPTED), CheckIn(WORKER, at(60), FAR), at(60), relaxed)
    assert order2.check_in is not None and not order2.check_in.far


def test_evv_six_facts() -> None:
    rec = evv_record(run_until(OrderState.SIGNED_OFF))
    assert rec.service_code == "clean-2h" and rec.elder_id == "e1" and rec.worker_id == "w1"
    assert rec.date == date(2026, 3, 2) and rec.where == NEAR
    assert (rec.start, rec.end) == (at(60), at(180))
    assert not rec.far_check_in and not rec.far_check_out


def test_evv_date_is_shanghai_calendar() -> None:
    order = run_until(OrderState.ACCEPTED)
    # 17:00 UTC on 2 March is 01:00 on 3 March in Shanghai: the visit's date is 3 March.
    start = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
    order = apply(order, CheckIn(WORKER, start, NEAR), start)
    order = apply(order, CheckOut(WORKER, start + timedelta(hours=1), NEAR), start)
    assert evv_record(order).date == date(2026, 3, 3)


def test_evv_incomplete_refused() -> None:
    with pytest.raises(CareError) as e:
        evv_record(run_until(OrderState.IN_SERVICE))
    assert e.value.code == "evv_incomplete" and "check_out" in e.value.en


def test_visit_charge() -> None:
    with pytest.raises(CareError) as e:
        visit_charge(run_until(OrderState.FEEDBACK_GIVEN))
    assert e.value.code == "visit_not_signed_off"
    c = visit_charge(run_until(OrderState.CLOSED))
    assert (c.visit_id, c.provider_id, c.month, c.funding_source) == (
        "o1",
        "p1",
        "2026-03",
        "civil-affairs",
    )
    assert (c.total_fen, c.subsidy_fen, c.elder_share_fen) == (8000, 6000, 2000)
    free = visit_charge(run_until(OrderState.CLOSED, ServiceTier.FREE))
    assert (free.subsidy_fen, free.elder_share_fen) == (8000, 0)


# --- recurring ------------------------------------------------------------------------------


def recurring(weekdays: set[int], start: date, end: date | None = None) -> ServiceOrder:
    rec = Recurrence(frozenset(weekdays), time(11, 30), start, end)
    order = open_order(Apply(STAFF, "r1", "e1", HOME, ServiceCategory.MEALS, "工作日送餐"), T0)
    return apply(order, Agree(STAFF, make_agreement(MEAL, ServiceTier.LOW_COST, 1, "ca", rec)), T0)


def test_weekday_meals() -> None:
    parent = recurring({0, 1, 2, 3, 4}, date(2026, 3, 1))
    kids = generate_occurrences(parent, date(2026, 3, 1), date(2026, 3, 14), set())
    assert len(kids) == 10
    assert all(k.scheduled_at and k.scheduled_at.weekday() < 5 for k in kids)
    assert kids[0].id == "r1@2026-03-02" and kids[0].parent_id == "r1"
    assert kids[0].scheduled_at == datetime(2026, 3, 2, 11, 30, tzinfo=SHANGHAI)
    assert kids[0].state is OrderState.AGREED and kids[0].agreement is not None
    assert kids[0].agreement.recurrence is None
    # A child goes through the ordinary workflow.
    assert apply(kids[0], Dispatch(STAFF, "canteen", "w1"), T0).state is OrderState.DISPATCHED


def test_tuesday_cleaning_within_agreement_dates() -> None:
    parent = recurring({1}, date(2026, 3, 5), date(2026, 3, 20))
    kids = generate_occurrences(parent, date(2026, 3, 1), date(2026, 3, 31), set())
    assert [k.id for k in kids] == ["r1@2026-03-10", "r1@2026-03-17"]


def test_generation_twice_adds_nothing() -> None:
    parent = recurring({1, 3}, date(2026, 3, 1))
    first = generate_occurrences(parent, date(2026, 3, 1), date(2026, 3, 31), set())
    again = generate_occurrences(parent, date(2026, 3, 1), date(2026, 3, 31), {k.id for k in first})
    assert first and again == []


def test_parent_is_not_dispatched_and_closed_parent_generates_nothing() -> None:
    parent = recurring({0}, date(2026, 3, 1))
    with pytest.raises(CareError) as e:
        apply(parent, Dispatch(STAFF, "p", "w1"), T0)
    assert e.value.code == "order_recurring_parent"
    closed = apply(parent, Close(STAFF, "协议到期"), T0)
    assert generate_occurrences(closed, date(2026, 3, 1), date(2026, 3, 31), set()) == []
    with pytest.raises(CareError) as e:
        generate_occurrences(
            run_until(OrderState.AGREED), date(2026, 3, 1), date(2026, 3, 2), set()
        )
    assert e.value.code == "order_not_recurring"


def test_recurrence_validation() -> None:
    with pytest.raises(CareError):
        Recurrence(frozenset({7}), time(9), date(2026, 1, 1))
    with pytest.raises(CareError):
        Recurrence(frozenset(), time(9), date(2026, 1, 1))
    with pytest.raises(CareError):
        Recurrence(frozenset({1}), time(9), date(2026, 1, 2), date(2026, 1, 1))


# --- properties -----------------------------------------------------------------------------

COMMANDS = [c for c, _ in steps()] + [
    Refuse(WORKER, "忙"),
    Cancel(STAFF, "取消"),
    Dispatch(STAFF, "p1", "w1"),
    Accept(OTHER_WORKER),
    SignOff(WORKER, SignOffMethod.PIN, pin_ok=False),
    Feedback(ELDER, 9),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(range(len(COMMANDS))), max_size=40))
def test_random_commands_stay_in_defined_states(picks: list[int]) -> None:
    order = new_order()
    now = T0
    for i in picks:
        command = COMMANDS[i]
        now += timedelta(minutes=1)
        if isinstance(command, (CheckIn, CheckOut)):
            command = type(command)(command.actor, now, command.where)
        try:
            after = apply(order, command, now)  # type: ignore[arg-type]
        except CareError:
            assert order.state in OrderState  # refused: the order is unchanged
            continue
        assert after.state in OrderState
        assert after.state is ALLOWED_MOVES[type(command)][order.state]
        assert after.log[:-1] == order.log and len(after.log) == len(order.log) + 1
        order = after
    # Facts that hold in every reachable state.
    if order.state in (OrderState.SERVED, OrderState.FEEDBACK_GIVEN, OrderState.SIGNED_OFF):
        assert evv_record(order).start < evv_record(order).end
    if order.state is OrderState.CANCELLED:
        assert order.cancel_reason and order.check_in is None


@settings(max_examples=200, deadline=None)
@given(
    weekdays=st.sets(st.integers(0, 6), min_size=1),
    start=st.dates(date(2026, 1, 1), date(2026, 12, 31)),
    length=st.integers(0, 70),
    cuts=st.lists(st.integers(0, 70), max_size=4),
)
def test_generation_is_idempotent_however_cut(
    weekdays: set[int], start: date, length: int, cuts: list[int]
) -> None:
    parent = recurring(weekdays, date(2026, 1, 1))
    end = start + timedelta(days=length)
    whole = generate_occurrences(parent, start, end, set())
    seen: set[str] = set()
    # The same range in overlapping pieces, each run knowing what earlier runs made.
    bounds = sorted({0, length, *(c for c in cuts if c <= length)})
    for lo, hi in zip(bounds, [*bounds[1:], length], strict=True):
        piece = generate_occurrences(
            parent, start + timedelta(days=lo), start + timedelta(days=hi), seen
        )
        assert not {k.id for k in piece} & seen
        seen |= {k.id for k in piece}
    assert seen == {k.id for k in whole}
    assert len(whole) == len({k.id for k in whole})
    assert generate_occurrences(parent, start, end, seen) == []
