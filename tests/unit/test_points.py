"""Unit tests of the time bank (care.points): amounts, rounding, the two approvals, gifts,
redemptions, reversals, caps, idempotency, statements and reports; then a hypothesis state
machine that throws random sequences of operations at a ledger and checks after every step that
it is zero-sum, never negative, equal to its recomputation and to an independent model, within
its caps, and that a retried request has effect once. Every `now` is passed in."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from care.points import (
    HARDSHIP_POOL,
    ISSUANCE,
    REDEMPTION,
    Account,
    AccountKind,
    AccountState,
    ApprovalLevel,
    Claim,
    ClaimStatus,
    Command,
    Entry,
    Gift,
    Ledger,
    Operator,
    OperatorRole,
    Post,
    Redeem,
    Refund,
    Refuse,
    RequestAlarmCredit,
    RequestAward,
    RequestService,
    Reverse,
    Transaction,
    TxnKind,
    Verify,
    balances_from,
    check_order_price,
    decide_gift,
    decide_post,
    decide_request_award,
    decide_request_service,
    decide_reverse,
    earned_from,
    fingerprint,
    member_account,
    order_price_units,
    person_of,
)
from care.points_rules import (
    CEIL_HALF_HOUR,
    ERROR_MESSAGES,
    FLOOR_HALF_HOUR,
    NEAREST_HALF_HOUR,
    ROUNDING_RULES,
    MemberFacts,
    PointsError,
    PointsPolicy,
    RoundingMode,
    RoundingRule,
    age_on,
    format_points,
    parse_points,
    require_units,
)

CST = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 6, 10, 12, 0, tzinfo=CST)
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
FAST = settings(max_examples=200, deadline=None, database=None)

OLD = MemberFacts(birth_date=date(1950, 3, 1))
YOUNG = MemberFacts(birth_date=date(1975, 3, 1))


# --- helpers ------------------------------------------------------------------------------


def service(
    member: str = "v1",
    minutes: int = 90,
    end: datetime = T0 - H,
    ref: str = "svc-1",
    category: str = "visit",
    community: str = "c1",
    operator: Operator | None = None,
    key: str | None = None,
    reason: str = "",
) -> RequestService:
    return RequestService(
        member=member,
        community=community,
        category=category,
        started_at=end - minutes * MIN,
        ended_at=end,
        service_ref=ref,
        operator=operator or Operator(member),
        reason=reason,
        idempotency_key=key,
    )


def alarm(
    member: str = "w1",
    ack: datetime | None = T0 - 2 * H,
    on_site: datetime | None = T0 - 2 * H + 10 * MIN,
    resolved: datetime | None = T0 - H,
    confirmed_by: str | None = "staff-zhang",
    alert_id: str = "al-1",
) -> RequestAlarmCredit:
    return RequestAlarmCredit(
        member=member,
        community="c1",
        alert_id=alert_id,
        acknowledged_at=ack,
        on_site_at=on_site,
        resolved_at=resolved,
        confirmed_by=confirmed_by,
        operator=Operator(member),
    )


def earn(
    ledger: Ledger,
    member: str = "v1",
    minutes: int = 120,
    ref: str | None = None,
    end: datetime = T0 - H,
    now: datetime = T0,
    community: str = "c1",
    category: str = "visit",
) -> Transaction:
    """Request, verify (community) and post (sub-district) a service claim."""
    ref = ref or f"svc-{len(ledger.claims) + 1}"
    claim = ledger.request(
        service(member, minutes, end=end, ref=ref, community=community, category=category), now
    )
    ledger.verify(Verify(claim.id, "cv-li"), now)
    return ledger.post(Post(claim.id, "sd-wang"), now)


def gift(
    member: str = "v1", to: str | Account = "mom", units: int = 2, key: str | None = None
) -> Gift:
    target = to if isinstance(to, Account) else member_account(to)
    return Gift(member, target, units, "c1", Operator(member), idempotency_key=key)


def redeem(
    member: str = "v1",
    units: int = 2,
    order: str = "order-1",
    facts: MemberFacts = OLD,
    key: str | None = None,
) -> Redeem:
    return Redeem(
        payer=member_account(member),
        beneficiary=member,
        beneficiary_facts=facts,
        units=units,
        order_ref=order,
        category="meals",
        community="c1",
        operator=Operator(member),
        idempotency_key=key,
    )


def refused(ledger: Ledger, action: Callable[[], object], code: str) -> PointsError:
    """`action` raises PointsError `code` and leaves the ledger exactly as it was."""
    before = copy.deepcopy(ledger.__dict__)
    with pytest.raises(PointsError) as info:
        action()
    assert info.value.code == code, info.value
    assert ledger.__dict__ == before, "a refused command changed the ledger"
    return info.value


# --- amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "units"),
    [("1.5", 3), ("0.5", 1), ("2", 4), (" 3.0 ", 6), ("1.50", 3), ("+1", 2), (2, 4)],
)
def test_parse_points_reads_half_points(text: str | int, units: int) -> None:
    assert parse_points(text) == units


def test_parse_points_takes_decimals_but_never_floats() -> None:
    assert parse_points(Decimal("0.5")) == 1
    for value in (1.5, 0.5, True, None, [1]):
        with pytest.raises(PointsError) as info:
            parse_points(value)  # type: ignore[arg-type]
        assert info.value.code == "amount_not_number"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1.25", "amount_too_fine"),
        ("0.3", "amount_too_fine"),
        ("0.05", "amount_too_fine"),
        ("abc", "amount_not_number"),
        ("", "amount_not_number"),
        ("1e3", "amount_not_number"),
        ("nan", "amount_not_number"),
        ("1,5", "amount_not_number"),
        ("１.５", "amount_not_number"),  # full-width digits: refused, not guessed at
        ("-1", "amount_negative"),
        ("0", "amount_zero"),
        ("-0.0", "amount_zero"),
        ("99999999", "amount_too_large"),
    ],
)
def test_parse_points_refuses(text: str, code: str) -> None:
    with pytest.raises(PointsError) as info:
        parse_points(text)
    assert info.value.code == code


def test_parse_points_zero_and_negative_when_allowed() -> None:
    assert parse_points("0", allow_zero=True) == 0
    assert parse_points("-1.5", allow_negative=True) == -3
    with pytest.raises(PointsError):
        parse_points(Decimal("NaN"))


@pytest.mark.parametrize(
    ("units", "text"), [(3, "1.5"), (2, "1"), (0, "0"), (1, "0.5"), (-3, "-1.5")]
)
def test_format_points(units: int, text: str) -> None:
    assert format_points(units) == text


@FAST
@given(st.integers(-(10**6), 10**6))
def test_format_then_parse_is_identity(units: int) -> None:
    assert parse_points(format_points(units), allow_zero=True, allow_negative=True) == units


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (0, "amount_zero"),
        (-1, "amount_negative"),
        (1.0, "amount_not_number"),
        (True, "amount_not_number"),
    ],
)
def test_require_units_refuses_what_is_not_a_positive_int(value: object, code: str) -> None:
    with pytest.raises(PointsError) as info:
        require_units(value)
    assert info.value.code == code
    assert require_units(1) == 1


# --- rounding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "minutes", "units"),
    [
        (FLOOR_HALF_HOUR, 29, 0),
        (FLOOR_HALF_HOUR, 30, 1),
        (FLOOR_HALF_HOUR, 59, 1),
        (FLOOR_HALF_HOUR, 60, 2),
        (FLOOR_HALF_HOUR, 90, 3),
        (NEAREST_HALF_HOUR, 14, 0),
        (NEAREST_HALF_HOUR, 15, 1),
        (NEAREST_HALF_HOUR, 44, 1),
        (NEAREST_HALF_HOUR, 45, 2),
        (NEAREST_HALF_HOUR, 74, 2),
        (CEIL_HALF_HOUR, 14, 0),
        (CEIL_HALF_HOUR, 15, 1),
        (CEIL_HALF_HOUR, 31, 2),
        (CEIL_HALF_HOUR, 60, 2),
    ],
)
def test_rounding_rules(rule: RoundingRule, minutes: int, units: int) -> None:
    assert rule.units_for(minutes * MIN) == units


def test_rounding_rules_speak_both_languages_and_are_listed() -> None:
    for code, rounding in ROUNDING_RULES.items():
        assert rounding.code == code
        assert rounding.name_zh and rounding.name_en and rounding.description_zh


def test_a_whole_hour_rule_still_gives_half_point_units() -> None:
    hourly = RoundingRule(
        "floor_hour", "按小时", "By the hour", "-", "-", RoundingMode.DOWN, 60, 60
    )
    assert hourly.units_for(119 * MIN) == 2
    with pytest.raises(ValueError):
        RoundingRule("x", "x", "x", "x", "x", RoundingMode.DOWN, step_minutes=20)


@FAST
@given(st.integers(0, 24 * 3600))
def test_rounding_order_and_never_more_than_given_when_rounding_down(seconds: int) -> None:
    d = timedelta(seconds=seconds)
    down = FLOOR_HALF_HOUR.units_for(d)
    assert down * 30 * 60 <= seconds
    assert seconds - down * 30 * 60 < 30 * 60
    if seconds >= 30 * 60:  # all three rules count it
        assert down <= NEAREST_HALF_HOUR.units_for(d) <= CEIL_HALF_HOUR.units_for(d)


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        PointsPolicy(balance_cap=0)
    with pytest.raises(ValueError):
        PointsPolicy(yearly_earn_cap=-2)
    with pytest.raises(ValueError):
        PointsPolicy(claim_window_days=0)
    with pytest.raises(Exception):  # noqa: B017 - ZoneInfoNotFoundError or ValueError
        PointsPolicy(timezone="Mars/Olympus")
    assert PointsPolicy(balance_cap=None).balance_cap is None


def test_age_on_birthday_and_leap_day() -> None:
    assert age_on(date(1965, 6, 10), date(2025, 6, 10)) == 60
    assert age_on(date(1965, 6, 11), date(2025, 6, 10)) == 59
    assert age_on(date(1964, 2, 29), date(2024, 2, 28)) == 59
    assert age_on(date(1964, 2, 29), date(2024, 2, 29)) == 60


def test_every_error_has_both_languages() -> None:
    for code, (zh, en) in ERROR_MESSAGES.items():
        assert zh and en, code
    err = PointsError("amount_zero")
    assert (
        err.message_zh == "不能转移0积分"
        and "zero" in err.message_en
        and str(err).startswith("amount_zero")
    )


# --- earning: the two approvals ------------------------------------------------------------


def test_a_claim_counts_only_once_posted() -> None:
    ledger = Ledger()
    claim = ledger.request(service(minutes=95), T0)
    assert claim.status is ClaimStatus.PENDING and claim.units == 3 and claim.minutes == 95
    assert claim.rounding is FLOOR_HALF_HOUR
    assert ledger.balance("v1") == 0
    assert ledger.statement("v1").pending == (claim,)

    verified = ledger.verify(Verify(claim.id, "cv-li"), T0 + H)
    assert verified.status is ClaimStatus.VERIFIED and ledger.balance("v1") == 0
    assert verified.verified is not None and verified.verified.level is ApprovalLevel.COMMUNITY

    txn = ledger.post(Post(claim.id, "sd-wang"), T0 + 2 * H)
    assert ledger.balance("v1") == 3 and ledger.balance(ISSUANCE) == -3
    assert txn.kind is TxnKind.EARN and txn.rounding is FLOOR_HALF_HOUR
    assert [a.by for a in txn.approvals] == ["cv-li", "sd-wang"]
    assert [a.level for a in txn.approvals] == [ApprovalLevel.COMMUNITY, ApprovalLevel.SUBDISTRICT]
    assert txn.requested_by == Operator("v1") and txn.claim_id == claim.id
    assert ledger.claim(claim.id).status is ClaimStatus.POSTED
    assert ledger.statement("v1").pending == ()
    assert ledger.problems() == []


def test_posting_needs_verification_first_and_approvals_do_not_repeat_with_others() -> None:
    ledger = Ledger()
    claim = ledger.request(service(), T0)
    refused(ledger, lambda: ledger.post(Post(claim.id, "sd-wang"), T0), "claim_not_verified")
    ledger.verify(Verify(claim.id, "cv-li"), T0)
    # The same verifier again: harmless, nothing changes.
    before = copy.deepcopy(ledger.__dict__)
    assert ledger.verify(Verify(claim.id, "cv-li"), T0 + H).verified.at == T0  # type: ignore[union-attr]
    assert ledger.__dict__ == before
    refused(ledger, lambda: ledger.verify(Verify(claim.id, "cv-zhao"), T0), "claim_not_pending")
    txn = ledger.post(Post(claim.id, "sd-wang"), T0)
    before = copy.deepcopy(ledger.__dict__)
    assert ledger.post(Post(claim.id, "sd-wang"), T0 + H) == txn
    assert ledger.__dict__ == before and ledger.balance("v1") == 3
    refused(ledger, lambda: ledger.post(Post(claim.id, "sd-qian"), T0), "claim_closed")
    refused(ledger, lambda: ledger.refuse(Refuse(claim.id, "sd-qian", "late"), T0), "claim_closed")


def test_nobody_approves_their_own_points_nor_twice() -> None:
    ledger = Ledger()
    own = ledger.request(service("v1"), T0)
    refused(ledger, lambda: ledger.verify(Verify(own.id, "v1"), T0), "self_approval")
    entered = ledger.request(service("v2", operator=Operator("staff-a", OperatorRole.STAFF)), T0)
    refused(ledger, lambda: ledger.verify(Verify(entered.id, "staff-a"), T0), "self_approval")
    ledger.verify(Verify(own.id, "cv-li"), T0)
    refused(ledger, lambda: ledger.post(Post(own.id, "cv-li"), T0), "same_approver")
    refused(ledger, lambda: ledger.post(Post(own.id, "v1"), T0), "self_approval")
    refused(ledger, lambda: ledger.refuse(Refuse(own.id, "cv-li", "oops"), T0), "same_approver")
    refused(ledger, lambda: ledger.verify(Verify("C99", "cv-li"), T0), "unknown_claim")


def test_refused_at_either_level_with_a_reason() -> None:
    ledger = Ledger()
    first = ledger.request(service(ref="a", end=T0 - 5 * H), T0)
    second = ledger.request(service(ref="b"), T0)
    refused(ledger, lambda: ledger.refuse(Refuse(first.id, "cv-li", "  "), T0), "reason_required")
    refused(ledger, lambda: ledger.refuse(Refuse(first.id, "v1", "no"), T0), "self_approval")
    one = ledger.refuse(Refuse(first.id, "cv-li", "elder says nobody came"), T0)
    assert one.refusal is not None and one.refusal.level is ApprovalLevel.COMMUNITY
    ledger.verify(Verify(second.id, "cv-li"), T0)
    two = ledger.refuse(Refuse(second.id, "sd-wang", "no signature"), T0)
    assert two.refusal is not None and two.refusal.level is ApprovalLevel.SUBDISTRICT
    refused(ledger, lambda: ledger.verify(Verify(first.id, "cv-zhao"), T0), "claim_not_pending")
    statement = ledger.statement("v1")
    assert [c.refusal.reason for c in statement.refused if c.refusal] == [
        "elder says nobody came",
        "no signature",
    ]
    assert ledger.balance("v1") == 0 and ledger.transactions == ()


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (service(minutes=20), "duration_too_short"),
        (service(minutes=0), "duration_invalid"),
        (service(minutes=13 * 60), "duration_too_long"),
        (service(end=T0 + H), "in_future"),
        (service(end=T0 - timedelta(days=91)), "claim_too_old"),
        (service(category="karaoke"), "unknown_category"),
        (service(ref=" "), "missing_field"),
        (service(operator=Operator("someone-else")), "operator_invalid"),
        (service(operator=Operator("v1", OperatorRole.STAFF)), "operator_invalid"),
        (
            dataclasses.replace(service(), started_at=datetime(2025, 6, 10, 9, 0)),
            "naive_datetime",
        ),
    ],
)
def test_service_claims_refused(command: RequestService, code: str) -> None:
    ledger = Ledger()
    refused(ledger, lambda: ledger.request(command, T0), code)


def test_a_few_minutes_of_clock_drift_are_tolerated() -> None:
    assert Ledger().request(service(end=T0 + 4 * MIN), T0).status is ClaimStatus.PENDING


def test_one_person_cannot_be_in_two_places_nor_claim_twice() -> None:
    ledger = Ledger()
    ledger.request(service(minutes=120, end=T0 - H, ref="a"), T0)
    refused(
        ledger, lambda: ledger.request(service(end=T0 - 2 * H, ref="b"), T0), "overlapping_claim"
    )
    refused(ledger, lambda: ledger.request(service(end=T0 - 5 * H, ref="a"), T0), "duplicate_claim")
    # Touching is not overlapping; someone else at the same time is fine.
    ledger.request(service(minutes=60, end=T0 - 3 * H, ref="c"), T0)
    ledger.request(service("v2", minutes=120, end=T0 - H, ref="a"), T0)


def test_rounding_rule_comes_from_the_policy_and_is_recorded() -> None:
    ledger = Ledger(PointsPolicy(rounding=NEAREST_HALF_HOUR))
    claim = ledger.request(service(minutes=45), T0)
    assert claim.units == 2 and claim.rounding is NEAREST_HALF_HOUR
    ledger.verify(Verify(claim.id, "cv"), T0)
    assert ledger.post(Post(claim.id, "sd"), T0).rounding is NEAREST_HALF_HOUR


def test_proxy_operation_records_member_and_real_operator() -> None:
    ledger = Ledger()
    daughter = Operator("daughter-1", OperatorRole.FAMILY)
    claim = ledger.request(service("grandpa", operator=daughter), T0)
    assert claim.member == "grandpa" and claim.requested_by == daughter
    ledger.verify(Verify(claim.id, "cv"), T0)
    ledger.post(Post(claim.id, "sd"), T0)
    desk = Operator("staff-a", OperatorRole.STAFF)
    txn = ledger.gift(Gift("grandpa", HARDSHIP_POOL, 1, "c1", desk), T0)
    assert txn.member == "grandpa" and txn.requested_by == desk
    assert ledger.statement("grandpa").lines[-1].requested_by == desk


# --- earning: alarms and awards ------------------------------------------------------------


def test_alarm_response_earns_from_ack_to_resolution() -> None:
    ledger = Ledger()
    claim = ledger.request(alarm(), T0)
    assert (claim.units, claim.category, claim.minutes, claim.ref) == (2, "emergency", 60, "al-1")


def test_alarm_response_is_capped_and_has_a_minimum() -> None:
    ledger = Ledger()
    long = ledger.request(alarm(ack=T0 - 10 * H, on_site=T0 - 9 * H, resolved=T0 - H), T0)
    assert long.units == 8 and long.minutes == 240  # capped at 4 h
    short = ledger.request(
        alarm("w2", ack=T0 - 20 * MIN, on_site=T0 - 15 * MIN, resolved=T0 - 10 * MIN), T0
    )
    assert short.units == 1  # 10 minutes: rounding gives 0, the minimum gives 0.5 point


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (alarm(on_site=None), "alarm_incomplete"),
        (alarm(ack=None), "alarm_incomplete"),
        (alarm(resolved=None), "alarm_incomplete"),
        (alarm(confirmed_by=None), "alarm_not_confirmed"),
        (alarm(confirmed_by="w1"), "self_approval"),
        (alarm(on_site=T0 - 3 * H), "duration_invalid"),
        (alarm(resolved=T0 + H), "in_future"),
    ],
)
def test_alarm_claims_refused(command: RequestAlarmCredit, code: str) -> None:
    ledger = Ledger()
    refused(ledger, lambda: ledger.request(command, T0), code)


def test_the_same_alarm_cannot_be_claimed_twice() -> None:
    ledger = Ledger()
    ledger.request(alarm(), T0)
    refused(ledger, lambda: ledger.request(alarm(), T0), "duplicate_claim")
    ledger.request(alarm("w2"), T0)  # the second responder has their own claim


def test_station_awards_need_staff_a_reason_and_both_approvals() -> None:
    ledger = Ledger()
    staff = Operator("staff-a", OperatorRole.STAFF)
    award = RequestAward("v1", "c1", 2, "first-aid training", staff)
    refused(
        ledger, lambda: ledger.request(dataclasses.replace(award, reason=""), T0), "reason_required"
    )
    refused(
        ledger,
        lambda: ledger.request(dataclasses.replace(award, operator=Operator("v1")), T0),
        "award_needs_staff",
    )
    refused(ledger, lambda: ledger.request(dataclasses.replace(award, units=0), T0), "amount_zero")
    claim = ledger.request(award, T0)
    assert claim.status is ClaimStatus.PENDING and claim.category == "award"
    refused(ledger, lambda: ledger.verify(Verify(claim.id, "staff-a"), T0), "self_approval")
    ledger.verify(Verify(claim.id, "cv"), T0)
    assert ledger.post(Post(claim.id, "sd"), T0).reason == "first-aid training"


def test_person_of_reads_the_gateways_person_names() -> None:
    assert person_of("responder:rs_1") == person_of("rs_1") == "rs_1"
    assert person_of("api:admin") == "api:admin" and person_of("user:li") == "user:li"


def test_four_eyes_count_people_not_spellings() -> None:
    """ "responder:x" (a person approving through a token, or named on paper) is member x."""
    ledger = Ledger()
    clerk = Operator("api:clerk", OperatorRole.STAFF)
    own = ledger.request(service("s2", operator=clerk), T0)
    # The member, approving through their own token, at either level.
    refused(ledger, lambda: ledger.verify(Verify(own.id, "responder:s2"), T0), "self_approval")
    ledger.verify(Verify(own.id, "responder:s1"), T0)
    refused(ledger, lambda: ledger.post(Post(own.id, "responder:s2"), T0), "self_approval")
    refused(
        ledger, lambda: ledger.refuse(Refuse(own.id, "responder:s2", "no"), T0), "self_approval"
    )
    # One person verifying under one name and posting or refusing under the other.
    refused(ledger, lambda: ledger.post(Post(own.id, "s1"), T0), "same_approver")
    refused(ledger, lambda: ledger.refuse(Refuse(own.id, "s1", "no"), T0), "same_approver")
    # Whoever entered it, under another name.
    entered = ledger.request(
        service("v2", operator=Operator("responder:s3", OperatorRole.STAFF)), T0
    )
    refused(ledger, lambda: ledger.verify(Verify(entered.id, "s3"), T0), "self_approval")
    # Nobody acts "for" themself as staff under another spelling of their name.
    refused(
        ledger,
        lambda: ledger.request(
            RequestAward("s3", "c1", 2, "training", Operator("responder:s3", OperatorRole.STAFF)),
            T0,
        ),
        "operator_invalid",
    )
    txn = ledger.post(Post(own.id, "responder:s4"), T0)
    assert [a.by for a in txn.approvals] == ["responder:s1", "responder:s4"]
    # Reversals and the pool's second pair of eyes count people too.
    r = Reverse(txn.id, "wrong hours", "s1", "responder:s1")
    refused(ledger, lambda: ledger.reverse(r, T0), "same_approver")
    r = dataclasses.replace(r, approved_by="responder:s2")
    refused(ledger, lambda: ledger.reverse(r, T0), "self_approval")
    earn(ledger, minutes=240)
    ledger.gift(gift(to=HARDSHIP_POOL, units=4), T0)
    pooled = Redeem(
        HARDSHIP_POOL, "granny", OLD, 3, "o-9", "bathing", "c1", Operator("s1", OperatorRole.STAFF)
    )
    asked = dataclasses.replace(pooled, approved_by="responder:s1")
    refused(ledger, lambda: ledger.redeem(asked, T0), "same_approver")
    served = dataclasses.replace(pooled, approved_by="responder:granny")
    refused(ledger, lambda: ledger.redeem(served, T0), "self_approval")


# --- caps ---------------------------------------------------------------------------------


def test_yearly_earning_cap_is_checked_when_posting() -> None:
    ledger = Ledger(PointsPolicy(yearly_earn_cap=5))
    earn(ledger, minutes=120, ref="a", end=T0 - 5 * H)
    claim = ledger.request(service(minutes=90, ref="b"), T0)
    ledger.verify(Verify(claim.id, "cv"), T0)
    err = refused(ledger, lambda: ledger.post(Post(claim.id, "sd"), T0), "yearly_cap_exceeded")
    assert "2.5" in err.message_en and "年度上限" in err.message_zh
    # Next year is a new year (counted by the local date of the help).
    next_year = datetime(2026, 1, 1, 0, 30, tzinfo=CST)
    earn(ledger, minutes=120, ref="c", end=next_year - MIN + 120 * MIN, now=next_year + 2 * H)
    assert ledger.earned("v1", 2026) == 4 and ledger.earned("v1", 2025) == 4


def test_balance_cap_on_posting_and_on_gifts_received() -> None:
    ledger = Ledger(PointsPolicy(balance_cap=4))
    earn(ledger, "v1", minutes=120, ref="a")
    earn(ledger, "v2", minutes=120, ref="a")
    claim = ledger.request(service("v1", minutes=60, end=T0 - 4 * H, ref="b"), T0)
    ledger.verify(Verify(claim.id, "cv"), T0)
    refused(ledger, lambda: ledger.post(Post(claim.id, "sd"), T0), "balance_cap_exceeded")
    refused(ledger, lambda: ledger.gift(gift("v2", "v1", 1), T0), "balance_cap_exceeded")
    ledger.gift(gift("v1", HARDSHIP_POOL, 4), T0)  # a pool has no cap
    ledger.gift(gift("v2", "v1", 4), T0)
    assert ledger.balance("v1") == 4 and ledger.balance(HARDSHIP_POOL) == 4


def test_a_claim_over_a_cap_by_itself_is_refused_when_requested() -> None:
    """It could never be posted: refused at once, in the words posting uses."""
    ledger = Ledger(PointsPolicy(yearly_earn_cap=5, balance_cap=8))
    earn(ledger, minutes=60, ref="a", end=T0 - 5 * H)  # 2 units earned this year
    staff = Operator("staff-a", OperatorRole.STAFF)
    err = refused(
        ledger,
        lambda: ledger.request(RequestAward("v1", "c1", 6, "training", staff), T0),
        "yearly_cap_exceeded",
    )
    assert (err.params["earned"], err.params["amount"], err.params["cap"]) == ("1", "3", "2.5")
    refused(ledger, lambda: ledger.request(service(minutes=180), T0), "yearly_cap_exceeded")
    refused(
        ledger,
        lambda: ledger.request(alarm("v1", ack=T0 - 4 * H, on_site=T0 - 3 * H), T0),
        "yearly_cap_exceeded",
    )
    # Over what is left this year, but not over the cap alone: it waits for posting, as a
    # reversal may make room before then.
    claim = ledger.request(RequestAward("v1", "c1", 5, "training", staff), T0)
    ledger.verify(Verify(claim.id, "cv"), T0)
    refused(ledger, lambda: ledger.post(Post(claim.id, "sd"), T0), "yearly_cap_exceeded")
    # The balance cap alone, and the decide function without a state (nothing earned, held).
    policy = PointsPolicy(yearly_earn_cap=None, balance_cap=4)
    with pytest.raises(PointsError, match="balance_cap_exceeded") as info:
        decide_request_award(RequestAward("v1", "c1", 5, "training", staff), policy, T0, "C1")
    assert info.value.params["balance"] == "0"
    assert decide_request_award(RequestAward("v1", "c1", 4, "x", staff), policy, T0, "C1").claim


def test_default_policy_is_the_documented_one() -> None:
    policy = PointsPolicy()
    assert policy.balance_cap == 3000 and policy.yearly_earn_cap == 1000
    assert policy.redeem_min_age == 60 and policy.rounding is FLOOR_HALF_HOUR


# --- gifts --------------------------------------------------------------------------------


def test_gift_moves_posted_points_at_once() -> None:
    ledger = Ledger()
    earn(ledger, minutes=180)
    txn = ledger.gift(gift(units=3), T0)
    assert (ledger.balance("v1"), ledger.balance("mom")) == (3, 3)
    assert txn.category == "gift" and txn.reason
    assert ledger.gift(gift(to=HARDSHIP_POOL, units=1), T0).category == "gift_to_pool"


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (gift(units=5), "insufficient_balance"),
        (gift(units=0), "amount_zero"),
        (gift(units=-1), "amount_negative"),
        (dataclasses.replace(gift(), units=1.5), "amount_not_number"),
        (gift(to="v1"), "self_gift"),
        (gift(to=ISSUANCE), "invalid_recipient"),
        (gift(to=REDEMPTION), "invalid_recipient"),
        (dataclasses.replace(gift(), operator=Operator("mom")), "operator_invalid"),
    ],
)
def test_gifts_refused(command: Gift, code: str) -> None:
    ledger = Ledger()
    earn(ledger, minutes=120)
    refused(ledger, lambda: ledger.gift(command, T0), code)


def test_pending_points_cannot_be_spent() -> None:
    ledger = Ledger()
    claim = ledger.request(service(minutes=120), T0)
    ledger.verify(Verify(claim.id, "cv"), T0)
    refused(ledger, lambda: ledger.gift(gift(units=1), T0), "insufficient_balance")
    refused(ledger, lambda: ledger.redeem(redeem(units=1), T0), "insufficient_balance")


# --- redemptions --------------------------------------------------------------------------


def test_an_order_costs_its_hours_in_points_paying_only_the_elders_share() -> None:
    # 1 point = 1 hour (seed 004): 3 hours cost 3 points, whatever the fen price.
    assert order_price_units("o-1", "hour", 3, 3000) == 6
    check_order_price(redeem(units=6, order="o-1"), 6)
    for units in (2, 5, 7):  # less or more than the price: refused, never rounded
        with pytest.raises(PointsError) as info:
            check_order_price(redeem(units=units, order="o-1"), 6)
        assert info.value.code == "points_not_order_price" and "o-1" in info.value.message_zh
    for unit, share, code in (
        ("hour", 0, "order_fully_subsidised"),  # the government pays it all
        ("visit", 3000, "order_not_in_hours"),  # no hours to buy
        ("meal", 500, "order_not_in_hours"),
    ):
        with pytest.raises(PointsError) as info:
            order_price_units("o-1", unit, 1, share)
        assert info.value.code == code, info.value


def test_redeem_pays_a_service_order_once() -> None:
    ledger = Ledger()
    earn(ledger, minutes=240)
    txn = ledger.redeem(redeem(units=3, order="o-1"), T0)
    assert ledger.balance("v1") == 5 and ledger.balance(REDEMPTION) == 3
    assert (txn.ref, txn.beneficiary, txn.category) == ("o-1", "v1", "meals")
    refused(ledger, lambda: ledger.redeem(redeem(units=1, order="o-1"), T0), "order_already_paid")


@pytest.mark.parametrize(
    ("facts", "ok"),
    [
        (MemberFacts(date(1965, 6, 10)), True),  # 60 today
        (MemberFacts(date(1965, 6, 11)), False),  # 60 tomorrow
        (MemberFacts(None), False),
        (MemberFacts(date(1980, 1, 1), frozenset({"dependent"})), True),
        (MemberFacts(date(1980, 1, 1), frozenset({"lives_alone"})), False),
    ],
)
def test_redeem_needs_age_or_condition(facts: MemberFacts, ok: bool) -> None:
    ledger = Ledger()
    earn(ledger, minutes=120)
    if ok:
        ledger.redeem(redeem(facts=facts), T0)
    else:
        refused(ledger, lambda: ledger.redeem(redeem(facts=facts), T0), "redeem_not_eligible")


def test_a_member_redeems_only_for_themself() -> None:
    ledger = Ledger()
    earn(ledger, minutes=120)
    other = dataclasses.replace(redeem(), beneficiary="mom")
    refused(ledger, lambda: ledger.redeem(other, T0), "redeem_for_other")
    refused(
        ledger,
        lambda: ledger.redeem(dataclasses.replace(redeem(), category="spa"), T0),
        "unknown_category",
    )
    refused(
        ledger,
        lambda: ledger.redeem(dataclasses.replace(redeem(), payer=ISSUANCE), T0),
        "invalid_payer",
    )


def test_the_pool_pays_for_an_elder_with_a_second_staff_approval() -> None:
    ledger = Ledger()
    earn(ledger, minutes=240)
    ledger.gift(gift(to=HARDSHIP_POOL, units=4), T0)
    staff = Operator("staff-a", OperatorRole.STAFF)
    pooled = Redeem(HARDSHIP_POOL, "granny", OLD, 3, "o-9", "bathing", "c1", staff)
    refused(ledger, lambda: ledger.redeem(pooled, T0), "pool_needs_approval")
    refused(
        ledger,
        lambda: ledger.redeem(dataclasses.replace(pooled, approved_by="staff-a"), T0),
        "same_approver",
    )
    refused(
        ledger,
        lambda: ledger.redeem(dataclasses.replace(pooled, approved_by="granny"), T0),
        "self_approval",
    )
    refused(
        ledger,
        lambda: ledger.redeem(
            dataclasses.replace(pooled, approved_by="staff-b", operator=Operator("granny")), T0
        ),
        "operator_invalid",
    )
    refused(
        ledger,
        lambda: ledger.redeem(
            dataclasses.replace(pooled, approved_by="staff-b", beneficiary_facts=YOUNG), T0
        ),
        "redeem_not_eligible",
    )
    txn = ledger.redeem(dataclasses.replace(pooled, approved_by="staff-b"), T0)
    assert ledger.balance(HARDSHIP_POOL) == 1 and txn.beneficiary == "granny"
    assert [a.by for a in txn.approvals] == ["staff-b"]


# --- reversals ----------------------------------------------------------------------------


def test_reversing_an_earning_takes_it_back_and_frees_the_claim() -> None:
    ledger = Ledger()
    txn = earn(ledger, minutes=180, ref="visit-7")
    rev = ledger.reverse(Reverse(txn.id, "wrong hours", "staff-a", "sd-wang"), T0 + H)
    assert rev.kind is TxnKind.REVERSAL and rev.reverses == txn.id
    assert {e.account: e.units for e in rev.entries} == {ISSUANCE: 6, member_account("v1"): -6}
    assert ledger.balance("v1") == 0 and ledger.earned("v1", 2025) == 0
    assert ledger.claim(txn.claim_id or "").status is ClaimStatus.REVERSED
    assert ledger.transaction(txn.id) == txn  # the original is never edited
    # The corrected claim for the same visit is now possible.
    earn(ledger, minutes=120, ref="visit-7")
    assert ledger.balance("v1") == 4
    assert [line.balance_after for line in ledger.statement("v1").lines] == [6, 0, 4]


def test_reversal_rules() -> None:
    ledger = Ledger()
    txn = earn(ledger, minutes=180)
    r = Reverse(txn.id, "wrong hours", "staff-a", "sd-wang")
    refused(
        ledger, lambda: ledger.reverse(dataclasses.replace(r, reason=""), T0), "reason_required"
    )
    refused(
        ledger,
        lambda: ledger.reverse(dataclasses.replace(r, approved_by="staff-a"), T0),
        "same_approver",
    )
    refused(
        ledger,
        lambda: ledger.reverse(dataclasses.replace(r, approved_by="v1"), T0),
        "self_approval",
    )
    refused(
        ledger,
        lambda: ledger.reverse(dataclasses.replace(r, transaction_id="T99"), T0),
        "unknown_transaction",
    )
    rev = ledger.reverse(r, T0)
    refused(ledger, lambda: ledger.reverse(r, T0), "already_reversed")
    refused(
        ledger,
        lambda: ledger.reverse(dataclasses.replace(r, transaction_id=rev.id), T0),
        "cannot_reverse_reversal",
    )


def test_spent_points_cannot_be_reversed_away() -> None:
    ledger = Ledger()
    txn = earn(ledger, minutes=180)
    spend = ledger.redeem(redeem(units=4, order="o-1"), T0)
    r = Reverse(txn.id, "wrong hours", "staff-a", "sd-wang")
    refused(ledger, lambda: ledger.reverse(r, T0), "insufficient_balance")
    # Undo the spending first (the order was cancelled), then the earning.
    ledger.reverse(Reverse(spend.id, "order cancelled", "staff-a", "staff-b"), T0)
    assert ledger.balance(REDEMPTION) == 0 and ledger.balance("v1") == 6
    ledger.reverse(r, T0)
    assert ledger.balances() == {} and ledger.problems() == []
    # A reversed redemption frees its order.
    earn(ledger, minutes=120)
    ledger.redeem(redeem(units=4, order="o-1"), T0)


def test_a_refund_respects_the_balance_cap() -> None:
    ledger = Ledger(PointsPolicy(balance_cap=4))
    earn(ledger, minutes=120, ref="a", end=T0 - 4 * H)
    spend = ledger.redeem(redeem(units=2, order="o-1"), T0)
    earn(ledger, minutes=60, ref="b")
    r = Reverse(spend.id, "order cancelled", "staff-a", "staff-b")
    refused(ledger, lambda: ledger.reverse(r, T0), "balance_cap_exceeded")


def test_a_cancelled_orders_points_go_back_to_the_payer_once() -> None:
    ledger = Ledger(PointsPolicy(balance_cap=4))
    earn(ledger, minutes=120, ref="a", end=T0 - 4 * H)
    spend = ledger.redeem(redeem(units=2, order="o-1"), T0)
    earn(ledger, minutes=60, ref="b")
    desk = Operator("api:desk", OperatorRole.STAFF)
    cancel = Refund(spend.id, "住院 in hospital", desk)
    refused(
        ledger,
        lambda: ledger.refund(dataclasses.replace(cancel, reason=" "), T0),
        "reason_required",
    )
    back = ledger.refund(cancel, T0 + H)
    assert (back.kind, back.reverses, back.ref, back.beneficiary) == (
        TxnKind.REFUND,
        spend.id,
        "o-1",
        "v1",
    )
    assert {e.account: e.units for e in back.entries} == {member_account("v1"): 2, REDEMPTION: -2}
    # The elder's own points come back even past the balance cap (a reversal is refused there):
    # refusing would block the cancel or lose the points. Not an earning: the yearly count stays.
    assert ledger.balance("v1") == 6 and ledger.balance(REDEMPTION) == 0
    assert ledger.earned("v1", 2025) == 6 and ledger.problems() == []
    # Once: neither a second refund nor a reversal of the redemption, and a refund stands.
    refused(ledger, lambda: ledger.refund(cancel, T0 + H), "already_reversed")
    undo = Reverse(spend.id, "order cancelled", "staff-a", "staff-b")
    refused(ledger, lambda: ledger.reverse(undo, T0 + H), "already_reversed")
    undo_refund = dataclasses.replace(undo, transaction_id=back.id)
    refused(ledger, lambda: ledger.reverse(undo_refund, T0 + H), "cannot_reverse_reversal")
    # A pool's payment goes back to the pool; the report counts the elder it was for.
    ledger.gift(gift("v1", HARDSHIP_POOL, 2), T0)
    pooled = Redeem(HARDSHIP_POOL, "mom", OLD, 2, "o-2", "meals", "c1", desk, approved_by="staff-b")
    from_pool = ledger.redeem(pooled, T0)
    assert ledger.refund(Refund(from_pool.id, "家属取消", desk), T0 + H).entries == (
        Entry(HARDSHIP_POOL, 2),
        Entry(REDEMPTION, -2),
    )
    assert ledger.balance(HARDSHIP_POOL) == 2 and ledger.problems() == []
    [row] = [r for r in ledger.monthly_report(2025, 6).rows if r.kind is TxnKind.REFUND]
    assert (row.category, row.transactions, row.members, row.units) == ("meals", 2, 2, 4)


# --- idempotency --------------------------------------------------------------------------


def test_a_retried_gift_has_effect_once() -> None:
    ledger = Ledger()
    earn(ledger, minutes=240)
    first = ledger.gift(gift(units=2, key="req-1"), T0)
    before = copy.deepcopy(ledger.__dict__)
    again = ledger.gift(gift(units=2, key="req-1"), T0 + H)  # a later retry, same request
    assert again == first and ledger.__dict__ == before
    assert ledger.balance("v1") == 6
    refused(ledger, lambda: ledger.gift(gift(units=3, key="req-1"), T0), "idempotency_conflict")
    refused(ledger, lambda: ledger.redeem(redeem(units=2, key="req-1"), T0), "idempotency_conflict")


def test_a_retried_claim_returns_the_same_claim() -> None:
    ledger = Ledger()
    claim = ledger.request(service(key="phone-77"), T0)
    ledger.verify(Verify(claim.id, "cv"), T0)
    again = ledger.request(service(key="phone-77"), T0 + H)
    assert again.id == claim.id and again.status is ClaimStatus.VERIFIED
    assert len(ledger.claims) == 1


def test_a_refused_request_does_not_use_up_its_key() -> None:
    ledger = Ledger()
    refused(ledger, lambda: ledger.gift(gift(units=2, key="k"), T0), "insufficient_balance")
    earn(ledger, minutes=120)
    assert ledger.gift(gift(units=2, key="k"), T0).kind is TxnKind.GIFT


def test_fingerprint_compares_instants_not_spellings() -> None:
    a = service(end=T0 - H)
    b = service(end=(T0 - H).astimezone(ZoneInfo("UTC")))
    assert a.ended_at.tzinfo != b.ended_at.tzinfo
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(service(minutes=91))


# --- statements and reports ---------------------------------------------------------------


def test_statement_lists_every_line_with_reason_balance_and_pending() -> None:
    ledger = Ledger()
    earn(ledger, minutes=120, ref="a", end=T0 - 5 * H)
    ledger.gift(Gift("v1", member_account("mom"), 1, "c1", Operator("v1"), "for mum"), T0 + H)
    earn(ledger, minutes=60, ref="b", now=T0 + 2 * H)
    pending = ledger.request(service(minutes=30, ref="c", end=T0), T0 + 3 * H)
    st_ = ledger.statement("v1")
    assert [(line.units, line.balance_after) for line in st_.lines] == [(4, 4), (-1, 3), (2, 5)]
    assert all(line.reason for line in st_.lines)
    assert st_.lines[1].reason == "for mum" and st_.lines[1].counterparties == (
        member_account("mom"),
    )
    assert st_.lines[0].rounding is FLOOR_HALF_HOUR and st_.lines[1].rounding is None
    assert st_.closing_balance == ledger.balance("v1") == 5
    assert st_.pending == (pending,) and st_.pending_units == 1
    later = ledger.statement("v1", since=T0 + 30 * MIN)
    assert later.opening_balance == 4 and len(later.lines) == 2 and later.closing_balance == 5
    early = ledger.statement("v1", until=T0 + 30 * MIN)
    assert early.closing_balance == 4


def test_monthly_report_by_community_and_category_in_local_months() -> None:
    ledger = Ledger()
    june_end = datetime(2025, 6, 30, 23, 30, tzinfo=CST)  # 15:30 UTC, still June locally
    july = datetime(2025, 7, 1, 0, 10, tzinfo=CST)
    earn(ledger, "v1", minutes=120, ref="a", end=june_end - 2 * H, now=june_end)
    earn(ledger, "v2", minutes=60, ref="a", end=june_end - 2 * H, now=june_end)
    earn(ledger, "v3", minutes=60, ref="a", end=june_end - 2 * H, now=june_end, community="c2")
    earn(ledger, "v1", minutes=60, ref="b", end=july - 5 * MIN, now=july, category="meals")
    ledger.gift(gift("v1", HARDSHIP_POOL, 1), july)
    june = ledger.monthly_report(2025, 6)
    assert [
        (r.community, r.kind, r.category, r.transactions, r.members, r.units) for r in june.rows
    ] == [
        ("c1", TxnKind.EARN, "visit", 2, 2, 6),
        ("c2", TxnKind.EARN, "visit", 1, 1, 2),
    ]
    assert june.total("c1") == 6 and june.total(kind=TxnKind.EARN) == 8
    july_report = ledger.monthly_report(2025, 7)
    assert {(r.kind, r.category) for r in july_report.rows} == {
        (TxnKind.EARN, "meals"),
        (TxnKind.GIFT, "gift_to_pool"),
    }


# --- the pure functions the gateway will call ---------------------------------------------


def test_decide_functions_work_from_a_snapshot() -> None:
    policy = PointsPolicy()
    giver = AccountState(member_account("v1"), balance=4)
    mom = AccountState(member_account("mom"))
    decision = decide_gift(gift(units=3), giver, mom, policy, T0, "T-100")
    assert decision.transaction is not None and decision.transaction.id == "T-100"
    assert balances_from([decision.transaction]) == {
        member_account("v1"): -3,
        member_account("mom"): 3,
    }
    with pytest.raises(PointsError, match="insufficient_balance"):
        decide_gift(gift(units=5), giver, mom, policy, T0, "T-101")

    claim = decide_request_service(service(), [], policy, T0, "C-7").claim
    assert isinstance(claim, Claim) and claim.id == "C-7"
    with pytest.raises(PointsError, match="overlapping_claim"):
        decide_request_service(service(ref="other"), [claim], policy, T0, "C-8")
    ledger = Ledger()
    real = ledger.verify(Verify(ledger.request(service(), T0).id, "cv"), T0)
    near_cap = AccountState(member_account("v1"), earned_by_year={2025: 999})
    with pytest.raises(PointsError, match="yearly_cap_exceeded"):
        decide_post(real, near_cap, Post(real.id, "sd"), policy, T0, "T-1")
    with pytest.raises(PointsError, match="balance_cap_exceeded"):
        decide_post(
            real, AccountState(member_account("v1"), 2999), Post(real.id, "sd"), policy, T0, "T-1"
        )
    posted = decide_post(
        real, AccountState(member_account("v1")), Post(real.id, "sd"), policy, T0, "T-1"
    )
    assert posted.transaction is not None and posted.claim is not None
    assert posted.claim.status is ClaimStatus.POSTED and posted.claim.transaction_id == "T-1"


def test_the_bank_accounts_need_no_state_so_no_lock() -> None:
    """A refund is decided from the member's state alone: the gateway never locks the bank's
    REDEMPTION or ISSUANCE rows, which every redemption and earning in the district shares."""
    ledger = Ledger()
    earn(ledger, minutes=120)
    spend = ledger.redeem(redeem(units=3), T0)
    only_member = {member_account("v1"): ledger.account_state(member_account("v1"))}
    decision = decide_reverse(
        Reverse(spend.id, "order cancelled", "staff-a", "staff-b"),
        spend,
        None,
        only_member,
        None,
        PointsPolicy(),
        T0,
        "T-9",
    )
    assert decision.transaction is not None
    assert decision.transaction.units_for(member_account("v1")) == 3


@pytest.mark.parametrize(
    "lines",
    [
        [("a", -2), ("b", 1)],  # does not sum to zero
        [("a", -2)],  # one-sided
        [("a", 0), ("b", 0)],  # zero lines
        [("a", -2), ("a", 2)],  # the same account twice
    ],
)
def test_transactions_cannot_be_unbalanced(lines: list[tuple[str, int]]) -> None:
    entries = tuple(Entry(member_account(m), u) for m, u in lines)
    with pytest.raises(ValueError):
        Transaction("T1", TxnKind.GIFT, entries, T0, "c1", "gift", "x", Operator("a"))


def test_the_invariant_check_can_fail() -> None:
    ledger = Ledger()
    earn(ledger, minutes=120)
    assert ledger.problems() == []
    ledger._balances[member_account("v1")] += 1  # what a bug in applying would do
    assert len(ledger.problems()) == 2  # not zero-sum, and unlike the recomputation


# --- random sequences of operations -------------------------------------------------------

MEMBERS = ["m0", "m1", "m2", "m3"]
FACTS = {
    "m0": OLD,
    "m1": OLD,
    "m2": YOUNG,
    "m3": MemberFacts(date(1980, 1, 1), frozenset({"dependent"})),
}
STAFF = ["s0", "s1", "s2"]
PEOPLE = MEMBERS + STAFF
# Small caps so that random runs reach them often.
POLICY = PointsPolicy(yearly_earn_cap=24, balance_cap=20, alarm_max_minutes=120)
START = datetime(2024, 11, 20, 8, 0, tzinfo=CST)  # runs cross into a new year
GRANT_MAX = 20  # opening grants up to the balance cap, so that caps are reached often

people = st.sampled_from(PEOPLE)
staff = st.sampled_from(STAFF)
amounts = st.one_of(st.integers(1, 6), st.integers(1, 6), st.sampled_from([0, -1, 40]))
members = st.sampled_from(MEMBERS)
index = st.integers(0, 10**6)


class LedgerMachine(RuleBasedStateMachine):
    """Random operations, good and bad, against a Ledger and an independent model of it."""

    # What the runs reached, over all examples: successes by command, refusals by code.
    reached: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(POLICY)
        self.now = START
        self.model: dict[Account, int] = defaultdict(int)  # balances by the commands' meaning
        self.model_earned: dict[tuple[str, int], int] = defaultdict(int)
        self.effects: dict[str, dict[Account, int]] = {}  # txn id -> what the model applied
        self.claim_ids: list[str] = []
        self.txn_ids: list[str] = []
        self.keyed: list[tuple[Command, str]] = []  # successful keyed commands and their result
        self.keys = 0

    # running commands

    def key(self, use: bool) -> str | None:
        if not use:
            return None
        self.keys += 1
        return f"k{self.keys}"

    def run(self, command: Command) -> Claim | Transaction | None:
        before = copy.deepcopy(self.ledger.__dict__)
        count = len(self.ledger.transactions)
        try:
            result = self.ledger.execute(command, self.now)
        except PointsError as err:
            self.reached[err.code] += 1
            assert err.code in ERROR_MESSAGES and err.message_zh and err.message_en
            assert self.ledger.__dict__ == before, f"refused {err.code} changed the ledger"
            return None
        appended = len(self.ledger.transactions) - count
        assert appended in (0, 1)
        self.reached[type(command).__name__] += 1
        if isinstance(command, (Gift, Redeem, Reverse)) or appended:
            assert isinstance(result, Transaction)
        key = getattr(command, "idempotency_key", None)
        if key is not None:
            self.keyed.append((command, result.id))
        if isinstance(result, Claim) and result.id not in self.claim_ids:
            self.claim_ids.append(result.id)
        if appended:
            assert isinstance(result, Transaction)
            self.txn_ids.append(result.id)
        return result

    def record(self, txn: Transaction, effect: dict[Account, int]) -> None:
        """Apply the effect the command should have had, and check the ledger agrees."""
        assert {e.account: e.units for e in txn.entries} == effect
        self.effects[txn.id] = effect
        for account, units in effect.items():
            self.model[account] += units

    # rules

    @initialize(
        grants=st.lists(st.integers(0, GRANT_MAX), min_size=len(MEMBERS), max_size=len(MEMBERS))
    )
    def fund(self, grants: list[int]) -> None:
        """Start members with posted points, through the ordinary award -> verify -> post."""
        for member, units in zip(MEMBERS, grants, strict=True):
            if units:
                operator = Operator("s0", OperatorRole.STAFF)
                claim = self.run(RequestAward(member, "c1", units, "opening", operator))
                assert isinstance(claim, Claim)
                assert self.run(Verify(claim.id, "s1")) is not None
                self.do_post(claim.id, "s2")
                assert self.ledger.balance(member) == units

    @rule(minutes=st.integers(1, 60 * 24 * 25))
    def tick(self, minutes: int) -> None:
        self.now += minutes * MIN

    @rule(
        member=members,
        minutes=st.integers(0, 13 * 60),
        ago=st.integers(-30, 100 * 24 * 60),
        ref=st.integers(0, 6),
        category=st.sampled_from(["visit", "companionship", "karaoke"]),
        by_staff=st.booleans(),
        keyed=st.booleans(),
    )
    def request_service(
        self,
        member: str,
        minutes: int,
        ago: int,
        ref: int,
        category: str,
        by_staff: bool,
        keyed: bool,
    ) -> None:
        operator = Operator("s0", OperatorRole.STAFF) if by_staff else Operator(member)
        command = service(
            member,
            minutes,
            end=self.now - ago * MIN,
            ref=f"r{ref}",
            category=category,
            operator=operator,
            key=self.key(keyed),
        )
        claim = self.run(command)
        if claim is not None:
            assert isinstance(claim, Claim)
            assert claim.units == POLICY.rounding.units_for(minutes * MIN) > 0
            assert 30 <= minutes <= POLICY.max_service_minutes

    @rule(
        member=members,
        ago=st.integers(0, 3 * 24 * 60),
        length=st.integers(0, 300),
        alert=st.integers(0, 4),
        confirmer=st.sampled_from([None, *PEOPLE]),
    )
    def request_alarm(
        self, member: str, ago: int, length: int, alert: int, confirmer: str | None
    ) -> None:
        resolved = self.now - ago * MIN
        ack = resolved - length * MIN
        self.run(alarm(member, ack, ack, resolved, confirmer, f"al{alert}"))

    @rule(member=members, units=st.integers(0, 16), staff=people, keyed=st.booleans())
    def request_award(self, member: str, units: int, staff: str, keyed: bool) -> None:
        operator = Operator(staff, OperatorRole.STAFF)
        self.run(RequestAward(member, "c1", units, "training", operator, self.key(keyed)))

    @precondition(lambda self: self.claim_ids)
    @rule(i=index, verifier=people)
    def verify(self, i: int, verifier: str) -> None:
        self.run(Verify(self.claim_ids[i % len(self.claim_ids)], verifier))

    def do_post(self, claim_id: str, auditor: str) -> None:
        count = len(self.ledger.transactions)
        txn = self.run(Post(claim_id, auditor))
        if txn is None or len(self.ledger.transactions) == count:
            return
        assert isinstance(txn, Transaction)
        claim = self.ledger.claim(claim_id)
        verifier, poster = (a.by for a in txn.approvals)
        assert len({verifier, poster, claim.member}) == 3
        assert claim.requested_by.person not in (verifier, poster)
        self.model_earned[(claim.member, claim.service_date.year)] += claim.units
        self.record(txn, {ISSUANCE: -claim.units, member_account(claim.member): claim.units})

    @precondition(lambda self: self.claim_ids)
    @rule(i=index, auditor=people)
    def post(self, i: int, auditor: str) -> None:
        self.do_post(self.claim_ids[i % len(self.claim_ids)], auditor)

    @precondition(lambda self: self.claim_ids)
    @rule(i=index, verifier=staff, auditor=staff)
    def approve(self, i: int, verifier: str, auditor: str) -> None:
        """The usual path: a community verifier, then a sub-district auditor, on an open claim."""
        open_ids = [
            c.id
            for c in self.ledger.claims
            if c.status in (ClaimStatus.PENDING, ClaimStatus.VERIFIED)
        ]
        claim_id = (open_ids or self.claim_ids)[i % len(open_ids or self.claim_ids)]
        self.run(Verify(claim_id, verifier))
        self.do_post(claim_id, auditor)

    @precondition(lambda self: self.claim_ids)
    @rule(i=index, by=people, reason=st.sampled_from(["", "no record of the visit"]))
    def refuse(self, i: int, by: str, reason: str) -> None:
        self.run(Refuse(self.claim_ids[i % len(self.claim_ids)], by, reason))

    @rule(
        giver=members,
        to=st.sampled_from([*MEMBERS, "pool"]),
        units=amounts,
        keyed=st.booleans(),
    )
    def gift(self, giver: str, to: str, units: int, keyed: bool) -> None:
        target = HARDSHIP_POOL if to == "pool" else member_account(to)
        txn = self.run(gift(giver, target, units, self.key(keyed)))
        if txn is not None:
            assert isinstance(txn, Transaction)
            self.record(txn, {member_account(giver): -units, target: units})

    @rule(
        payer=st.sampled_from([*MEMBERS, "pool"]),
        other=st.sampled_from([None, None, None, *MEMBERS]),
        units=amounts,
        order=st.integers(0, 2),
        approver=st.sampled_from([None, *PEOPLE]),
        keyed=st.booleans(),
    )
    def redeem(
        self,
        payer: str,
        other: str | None,
        units: int,
        order: int,
        approver: str | None,
        keyed: bool,
    ) -> None:
        # Usually a member pays for themself (a pool for m0); sometimes for someone else.
        beneficiary = other or (payer if payer != "pool" else "m0")
        account = HARDSHIP_POOL if payer == "pool" else member_account(payer)
        operator = Operator("s1", OperatorRole.STAFF) if payer == "pool" else Operator(payer)
        command = Redeem(
            account,
            beneficiary,
            FACTS[beneficiary],
            units,
            f"o{order}",
            "meals",
            "c1",
            operator,
            approver,
            idempotency_key=self.key(keyed),
        )
        txn = self.run(command)
        if txn is not None:
            assert isinstance(txn, Transaction)
            assert POLICY.may_redeem(FACTS[beneficiary], self.now.date())
            self.record(txn, {account: -units, REDEMPTION: units})

    @precondition(lambda self: self.txn_ids)
    @rule(i=index, requester=staff, approver=people, keyed=st.booleans())
    def reverse(self, i: int, requester: str, approver: str, keyed: bool) -> None:
        original = self.txn_ids[i % len(self.txn_ids)]
        txn = self.run(
            Reverse(original, "correction", requester, approver, idempotency_key=self.key(keyed))
        )
        if txn is None:
            return
        assert isinstance(txn, Transaction)
        before = self.ledger.transaction(original)
        if before.kind is TxnKind.EARN:
            assert before.member is not None and before.service_date is not None
            self.model_earned[(before.member, before.service_date.year)] -= before.units_for(
                member_account(before.member)
            )
        self.record(txn, {a: -u for a, u in self.effects[original].items()})

    @precondition(lambda self: self.keyed)
    @rule(i=index)
    def retry(self, i: int) -> None:
        """The same request again (a phone that did not hear the answer): no second effect."""
        command, result_id = self.keyed[i % len(self.keyed)]
        before = copy.deepcopy(self.ledger.__dict__)
        result = self.ledger.execute(command, self.now)
        assert result.id == result_id
        assert self.ledger.__dict__ == before

    @precondition(lambda self: self.keyed)
    @rule(i=index)
    def reuse_key(self, i: int) -> None:
        """A different request under a used key is refused, and changes nothing."""
        command, _ = self.keyed[i % len(self.keyed)]
        changed = dataclasses.replace(command, reason=f"{command.reason} (changed)")
        before = copy.deepcopy(self.ledger.__dict__)
        with pytest.raises(PointsError, match="idempotency_conflict"):
            self.ledger.execute(changed, self.now)
        assert self.ledger.__dict__ == before
        self.reached["idempotency_conflict"] += 1

    # invariants, after every step

    @invariant()
    def zero_sum_and_equal_to_recomputation_and_model(self) -> None:
        balances = self.ledger.balances()
        assert sum(balances.values()) == 0
        assert balances == self.ledger.recompute()
        assert balances == {a: u for a, u in self.model.items() if u}
        assert self.ledger.problems() == []

    @invariant()
    def never_negative_and_within_caps(self) -> None:
        for account, units in self.ledger.balances().items():
            if account.kind is not AccountKind.ISSUANCE:
                assert units >= 0, account
            if account.kind is AccountKind.MEMBER:
                assert POLICY.balance_cap is not None and units <= POLICY.balance_cap
        earned = earned_from(self.ledger.transactions)
        assert earned == {k: u for k, u in self.model_earned.items() if u}
        assert all(u <= (POLICY.yearly_earn_cap or 0) for u in earned.values())

    @invariant()
    def each_key_had_one_effect(self) -> None:
        # An EARN carries its claim's key; gifts, redemptions and reversals carry their own.
        keys = [t.idempotency_key for t in self.ledger.transactions if t.idempotency_key]
        assert len(keys) == len(set(keys))
        claim_keys = [c.idempotency_key for c in self.ledger.claims if c.idempotency_key]
        assert len(claim_keys) == len(set(claim_keys))

    @invariant()
    def claims_agree_with_transactions(self) -> None:
        reversed_ids = {t.reverses for t in self.ledger.transactions if t.reverses}
        live: list[Claim] = []
        for claim in self.ledger.claims:
            if claim.status in (ClaimStatus.POSTED, ClaimStatus.REVERSED):
                assert claim.transaction_id is not None and claim.posted and claim.verified
                txn = self.ledger.transaction(claim.transaction_id)
                assert txn.units_for(member_account(claim.member)) == claim.units
                assert (claim.status is ClaimStatus.REVERSED) == (txn.id in reversed_ids)
            else:
                assert claim.transaction_id is None
            if claim.status in (ClaimStatus.PENDING, ClaimStatus.VERIFIED, ClaimStatus.POSTED):
                live.append(claim)
        # Among live claims: no service or alert claimed twice, nobody in two places at once.
        refs = [(c.member, c.source, c.ref) for c in live if c.ref is not None]
        assert len(refs) == len(set(refs))
        for a, b in itertools.combinations(live, 2):
            if a.member == b.member and a.started_at and a.ended_at and b.started_at and b.ended_at:
                assert a.ended_at <= b.started_at or b.ended_at <= a.started_at, (a.id, b.id)

    @invariant()
    def statements_add_up(self) -> None:
        for member in MEMBERS:
            statement = self.ledger.statement(member)
            running = 0
            for line in statement.lines:
                running += line.units
                assert line.balance_after == running and line.reason
            assert statement.closing_balance == self.ledger.balance(member)
            assert all(
                c.status in (ClaimStatus.PENDING, ClaimStatus.VERIFIED) for c in statement.pending
            )


def test_random_operations_keep_the_ledger_sound() -> None:
    LedgerMachine.reached.clear()
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=150,
            stateful_step_count=60,
            deadline=None,
            database=None,
            derandomize=True,  # the reach check below must not depend on luck
        ),
    )
    # The runs must have reached what they claim to test, or passing proves little.
    reached = LedgerMachine.reached
    for what in (
        "RequestService",
        "RequestAlarmCredit",
        "RequestAward",
        "Verify",
        "Post",
        "Refuse",
        "Gift",
        "Redeem",
        "Reverse",
        "yearly_cap_exceeded",
        "balance_cap_exceeded",
        "insufficient_balance",
        "order_already_paid",
        "already_reversed",
        "idempotency_conflict",
    ):
        assert reached[what] > 0, f"random runs never reached {what}: {dict(reached)}"
