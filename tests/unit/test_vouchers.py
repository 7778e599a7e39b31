"""Unit tests of the voucher ledger (care.vouchers): allotment, consumption, the concurrency
guard, reversals, month close (expiry and carry-over), statements and reconciliation; then a
hypothesis state machine that throws random command sequences at a ledger and checks after every
step that it is zero-sum, never negative, equal to its recomputation and to the visit totals."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from care._common import CareError
from care.elders import ServiceTier
from care.services import SHANGHAI, ServiceCategory, VisitCharge
from care.vouchers import (
    Account,
    AccountKind,
    Allot,
    CloseMonth,
    Consume,
    LedgerSnapshot,
    Reverse,
    Transaction,
    TxnKind,
    VoucherCommand,
    VoucherPolicy,
    balances,
    decide,
    elder_statement,
    month_of,
    next_month,
    provider_statement,
    reconcile,
    snapshot_of,
    source_statement,
)

MEALS, CLEANING = ServiceCategory.MEALS, ServiceCategory.CLEANING
POLICY = VoucherPolicy(
    {
        (ServiceTier.FREE, MEALS): 30_000,
        (ServiceTier.FREE, CLEANING): 20_000,
        (ServiceTier.LOW_COST, MEALS): 10_000,
    },
    carry_over=frozenset({CLEANING}),
)
MARCH = datetime(2026, 3, 5, 10, 0, tzinfo=SHANGHAI)
APRIL = datetime(2026, 4, 1, 0, 30, tzinfo=SHANGHAI)
SRC = "civil-affairs"


def charge(
    visit: str,
    subsidy: int,
    share: int = 0,
    *,
    elder: str = "e1",
    provider: str = "p1",
    category: ServiceCategory = MEALS,
    month: str = "2026-03",
) -> VisitCharge:
    return VisitCharge(
        visit, elder, provider, category, month, SRC, subsidy + share, subsidy, share
    )


class Ledger:
    """A journal in memory, applying `decide` the way the gateway does under its lock."""

    def __init__(self) -> None:
        self.txns: list[Transaction] = []
        self.snap = LedgerSnapshot()

    def do(self, command: VoucherCommand, now: datetime = MARCH) -> list[Transaction]:
        new = decide(self.snap, command, POLICY, now)
        self.txns += new
        self.snap = self.snap.with_(new)
        return new


def allotted(elder: str = "e1", tier: ServiceTier = ServiceTier.FREE) -> Ledger:
    ledger = Ledger()
    ledger.do(Allot(SRC, elder, tier, "2026-03"))
    return ledger


def code_of(ledger: Ledger, command: VoucherCommand, now: datetime = MARCH) -> str:
    with pytest.raises(CareError) as e:
        ledger.do(command, now)
    return e.value.code


def bal(ledger: Ledger, account: Account) -> int:
    return ledger.snap.balance(account)


A_MEALS = Account.allotment(SRC, "e1", "2026-03", MEALS)
A_CLEAN = Account.allotment(SRC, "e1", "2026-03", CLEANING)
SOURCE = Account.of_source(SRC)
P1 = Account.payable(SRC, "p1")


# --- months ---------------------------------------------------------------------------------


def test_months() -> None:
    assert next_month("2026-12") == "2027-01" and next_month("2026-03") == "2026-04"
    # 23:30 UTC on 31 March is 1 April in Shanghai.
    assert month_of(datetime.fromisoformat("2026-03-31T23:30+00:00")) == "2026-04"
    with pytest.raises(CareError):
        next_month("2026-13")


# --- allotment ------------------------------------------------------------------------------


def test_allot_by_tier_and_category() -> None:
    ledger = allotted()
    assert (bal(ledger, A_MEALS), bal(ledger, A_CLEAN), bal(ledger, SOURCE)) == (
        30_000,
        20_000,
        -50_000,
    )
    low = allotted("e2", ServiceTier.LOW_COST)
    assert bal(low, Account.allotment(SRC, "e2", "2026-03", MEALS)) == 10_000


def test_allot_refusals() -> None:
    ledger = allotted()
    assert code_of(ledger, Allot(SRC, "e1", ServiceTier.FREE, "2026-03")) == "already_allotted"
    assert code_of(ledger, Allot(SRC, "e3", ServiceTier.PAID, "2026-03")) == "no_allotment"
    assert code_of(ledger, Allot(SRC, "e3", ServiceTier.FREE, "2026-3")) == "month_invalid"


def test_naive_now_refused() -> None:
    assert (
        code_of(Ledger(), Allot(SRC, "e1", ServiceTier.FREE, "2026-03"), datetime(2026, 3, 5))
        == "naive_datetime"
    )


# --- consumption ----------------------------------------------------------------------------


def test_consume_moves_subsidy_to_provider_and_records_share() -> None:
    ledger = allotted()
    (t,) = ledger.do(Consume(charge("v1", 1200, 300)))
    assert t.kind is TxnKind.CONSUME and t.elder_share_fen == 300 and t.id == "consume:v1#1"
    assert bal(ledger, A_MEALS) == 28_800 and bal(ledger, P1) == 1200


def test_zero_subsidy_visit_is_recorded() -> None:
    ledger = allotted()
    (t,) = ledger.do(Consume(charge("v1", 0, 1500)))
    assert t.lines == () and t.elder_share_fen == 1500


def test_consume_refusals() -> None:
    ledger = allotted()
    ledger.do(Consume(charge("v1", 1000)))
    assert code_of(ledger, Consume(charge("v1", 1000))) == "visit_already_consumed"
    assert code_of(ledger, Consume(charge("v2", 30_000))) == "voucher_insufficient"
    assert (
        code_of(ledger, Consume(charge("v3", 10, category=ServiceCategory.BATHING)))
        == "voucher_insufficient"
    )
    bad = VisitCharge("v4", "e1", "p1", MEALS, "2026-03", SRC, 100, 90, 20)
    assert code_of(ledger, Consume(bad)) == "charge_inconsistent"
    unfunded = VisitCharge("v5", "e1", "p1", MEALS, "2026-03", None, 100, 0, 100)
    assert code_of(ledger, Consume(unfunded)) == "no_funding_source"


def test_exactly_the_balance_can_be_spent() -> None:
    ledger = allotted()
    ledger.do(Consume(charge("v1", 30_000)))
    assert bal(ledger, A_MEALS) == 0
    assert code_of(ledger, Consume(charge("v2", 1))) == "voucher_insufficient"


def test_two_visits_at_once_cannot_spend_the_same_voucher() -> None:
    """Both decisions from the same stale snapshot would each pass; the gateway holds the row
    lock, so the second is decided on the snapshot after the first, and is refused."""
    ledger = allotted()
    stale = ledger.snap
    first = decide(stale, Consume(charge("v1", 20_000)), POLICY, MARCH)
    second_stale = decide(stale, Consume(charge("v2", 20_000)), POLICY, MARCH)
    assert first and second_stale  # why the lock is needed
    after_first = stale.with_(first)
    with pytest.raises(CareError) as e:
        decide(after_first, Consume(charge("v2", 20_000)), POLICY, MARCH)
    assert e.value.code == "voucher_insufficient"


# --- reversal -------------------------------------------------------------------------------


def test_reverse_consumption_then_consume_again() -> None:
    ledger = allotted()
    (t,) = ledger.do(Consume(charge("v1", 1200, 300)))
    (r,) = ledger.do(Reverse(t.id, "录错金额", "s1"))
    assert r.reverses == t.id and r.elder_share_fen == -300 and r.month == "2026-03"
    assert bal(ledger, A_MEALS) == 30_000 and bal(ledger, P1) == 0
    (t2,) = ledger.do(Consume(charge("v1", 1000, 500)))
    assert t2.id == "consume:v1#2" and bal(ledger, P1) == 1000


def test_reversal_refusals() -> None:
    ledger = allotted()
    (t,) = ledger.do(Consume(charge("v1", 1000)))
    assert code_of(ledger, Reverse("nope", "x", "s1")) == "txn_unknown"
    assert code_of(ledger, Reverse(t.id, " ", "s1")) == "reversal_needs_reason"
    (r,) = ledger.do(Reverse(t.id, "重复录入", "s1"))
    assert code_of(ledger, Reverse(t.id, "again", "s1")) == "already_reversed"
    assert code_of(ledger, Reverse(r.id, "undo", "s1")) == "reversal_of_reversal"


def test_reversing_a_spent_allotment_would_go_negative() -> None:
    ledger = allotted()
    ledger.do(Consume(charge("v1", 1000)))
    assert code_of(ledger, Reverse(ledger.txns[0].id, "发错", "s1")) == "would_go_negative"


# --- month close ----------------------------------------------------------------------------


def test_close_expires_meals_and_carries_cleaning() -> None:
    ledger = allotted()
    ledger.do(Consume(charge("v1", 10_000)))
    assert code_of(ledger, CloseMonth(SRC, "e1", "2026-03"), MARCH) == "month_not_over"
    (t,) = ledger.do(CloseMonth(SRC, "e1", "2026-03"), APRIL)
    assert t.kind is TxnKind.CARRY
    assert bal(ledger, A_MEALS) == 0 and bal(ledger, A_CLEAN) == 0
    assert bal(ledger, Account.allotment(SRC, "e1", "2026-04", CLEANING)) == 20_000
    assert bal(ledger, SOURCE) == -50_000 + 20_000  # the unused meals went back
    assert code_of(ledger, CloseMonth(SRC, "e1", "2026-03"), APRIL) == "month_closed"
    assert code_of(ledger, Consume(charge("late", 1)), APRIL) == "month_closed"
    assert (
        code_of(ledger, Allot(SRC, "e1", ServiceTier.FREE, "2026-03"), APRIL) == "already_allotted"
    )
    # Next month's allotment adds to what was carried.
    ledger.do(Allot(SRC, "e1", ServiceTier.FREE, "2026-04"), APRIL)
    assert bal(ledger, Account.allotment(SRC, "e1", "2026-04", CLEANING)) == 40_000


def test_reopening_a_month_by_reversal() -> None:
    ledger = allotted()
    (close,) = ledger.do(CloseMonth(SRC, "e1", "2026-03"), APRIL)
    ledger.do(Reverse(close.id, "补录三月服务", "s1"), APRIL)
    ledger.do(Consume(charge("late", 500)), APRIL)
    (again,) = ledger.do(CloseMonth(SRC, "e1", "2026-03"), APRIL)
    assert again.id.endswith("#2")


def test_reopening_refused_once_carried_value_is_spent() -> None:
    ledger = allotted()
    (close,) = ledger.do(CloseMonth(SRC, "e1", "2026-03"), APRIL)
    ledger.do(Consume(charge("a1", 15_000, category=CLEANING, month="2026-04")), APRIL)
    assert code_of(ledger, Reverse(close.id, "x", "s1"), APRIL) == "would_go_negative"


# --- statements and reconciliation ----------------------------------------------------------


def month_of_work() -> tuple[Ledger, list[VisitCharge]]:
    ledger = allotted()
    ledger.do(Allot(SRC, "e2", ServiceTier.LOW_COST, "2026-03"))
    charges = [
        charge("v1", 1200, 300),
        charge("v2", 1200, 300, provider="p2"),
        charge("v3", 8000, category=CLEANING),
        charge("v4", 1000, 500, elder="e2"),
    ]
    for c in charges:
        ledger.do(Consume(c))
    (t,) = ledger.do(Consume(charge("v5", 999)))
    ledger.do(Reverse(t.id, "服务未完成", "s1"))
    ledger.do(CloseMonth(SRC, "e1", "2026-03"), APRIL)
    ledger.do(CloseMonth(SRC, "e2", "2026-03"), APRIL)
    return ledger, charges


def test_elder_statement() -> None:
    ledger, _ = month_of_work()
    s = elder_statement(ledger.txns, "e1", "2026-03")
    assert (s.allotted, s.consumed, s.elder_share) == (50_000, 10_400, 600)
    assert (s.expired, s.carried_out, s.carried_in, s.closing) == (27_600, 12_000, 0, 0)
    assert s.allotted + s.carried_in - s.consumed - s.expired - s.carried_out == s.closing
    assert s.visits == ("v1", "v2", "v3")
    april = elder_statement(ledger.txns, "e1", "2026-04")
    assert (april.carried_in, april.closing) == (12_000, 12_000)


def test_provider_and_source_statements() -> None:
    ledger, _ = month_of_work()
    p1 = provider_statement(ledger.txns, "p1", "2026-03")
    assert p1.payable_by_source == {SRC: 10_200} and p1.total_payable == 10_200
    assert p1.elder_share == 800 and p1.visits == ("v1", "v3", "v4")
    src = source_statement(ledger.txns, SRC, "2026-03")
    assert src.allotted == 60_000 and src.payable_by_provider == {"p1": 10_200, "p2": 1200}
    assert src.returned == 27_600 + 9_000  # e1's meals and e2's meals expire; cleaning carried
    assert src.net_out == src.allotted - src.returned


def test_reconcile_ok_and_catches_problems() -> None:
    ledger, charges = month_of_work()
    r = reconcile(ledger.txns, charges)
    assert r.ok, r.problems
    assert r.ledger_payable == r.visit_subsidy == 11_400 and r.ledger_elder_share == 1100
    missing = reconcile(ledger.txns, [*charges, charge("v9", 100)])
    assert not missing.ok and any("v9: not consumed" in p for p in missing.problems)
    changed = reconcile(ledger.txns, [charge("v1", 1300, 200), *charges[1:]])
    assert not changed.ok and any("visit v1" in p for p in changed.problems)
    unknown = reconcile(ledger.txns, charges[1:])
    assert any("no such visit" in p for p in unknown.problems)


# --- properties -----------------------------------------------------------------------------

ELDERS = ["e1", "e2", "e3"]
MONTHS = ["2026-03", "2026-04"]
LATER = datetime(2026, 6, 1, tzinfo=SHANGHAI)


class VoucherMachine(RuleBasedStateMachine):
    """Random allotments, consumptions, closes and reversals; refusals are fine, a broken
    ledger is not."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        self.charges: dict[str, VisitCharge] = {}
        self.n = 0

    def attempt(self, command: VoucherCommand) -> list[Transaction]:
        try:
            return self.ledger.do(command, LATER)
        except CareError:
            return []

    @rule(
        elder=st.sampled_from(ELDERS),
        tier=st.sampled_from(list(ServiceTier)),
        month=st.sampled_from(MONTHS),
    )
    def allot(self, elder: str, tier: ServiceTier, month: str) -> None:
        self.attempt(Allot(SRC, elder, tier, month))

    @rule(
        elder=st.sampled_from(ELDERS),
        category=st.sampled_from([MEALS, CLEANING]),
        month=st.sampled_from(MONTHS),
        subsidy=st.integers(0, 25_000),
        share=st.integers(0, 2000),
        provider=st.sampled_from(["p1", "p2"]),
    )
    def consume(
        self,
        elder: str,
        category: ServiceCategory,
        month: str,
        subsidy: int,
        share: int,
        provider: str,
    ) -> None:
        self.n += 1
        c = charge(
            f"v{self.n}",
            subsidy,
            share,
            elder=elder,
            provider=provider,
            category=category,
            month=month,
        )
        if self.attempt(Consume(c)):
            self.charges[c.visit_id] = c

    @rule(elder=st.sampled_from(ELDERS), month=st.sampled_from(MONTHS))
    def close(self, elder: str, month: str) -> None:
        self.attempt(CloseMonth(SRC, elder, month))

    @rule(pick=st.integers(0, 10_000))
    def reverse(self, pick: int) -> None:
        if not self.ledger.txns:
            return
        t = self.ledger.txns[pick % len(self.ledger.txns)]
        if self.attempt(Reverse(t.id, "test", "s1")) and t.kind is TxnKind.CONSUME:
            del self.charges[t.visit_id]  # the visit no longer counts as paid by voucher

    @rule(pick=st.integers(0, 10_000))
    def retry_consumption(self, pick: int) -> None:
        # A retried request (same visit) must never pay twice.
        if self.charges:
            c = list(self.charges.values())[pick % len(self.charges)]
            assert self.attempt(Consume(c)) == []

    @invariant()
    def zero_sum(self) -> None:
        for t in self.ledger.txns:
            assert sum(line.fen for line in t.lines) == 0
        assert sum(self.ledger.snap.balances.values()) == 0

    @invariant()
    def never_negative(self) -> None:
        for account, fen in self.ledger.snap.balances.items():
            assert account.kind is AccountKind.SOURCE or fen >= 0, account

    @invariant()
    def equals_recomputation(self) -> None:
        recomputed = balances(self.ledger.txns)
        live = {a: f for a, f in self.ledger.snap.balances.items() if f or a in recomputed}
        assert live == recomputed
        assert snapshot_of(self.ledger.txns).balances == recomputed

    @invariant()
    def reconciles_with_visits(self) -> None:
        r = reconcile(self.ledger.txns, self.charges.values())
        assert r.ok, r.problems
        assert r.ledger_payable == sum(c.subsidy_fen for c in self.charges.values())

    @invariant()
    def statements_add_up(self) -> None:
        for elder in ELDERS:
            for month in MONTHS:
                s = elder_statement(self.ledger.txns, elder, month)
                assert (
                    s.allotted + s.carried_in - s.consumed - s.expired - s.carried_out == s.closing
                )
                assert s.closing == _allotment_total(
                    self.ledger.snap.balances.items(), elder, month
                )


def _allotment_total(items: Iterable[tuple[Account, int]], elder: str, month: str) -> int:
    return sum(
        f
        for a, f in items
        if a.kind is AccountKind.ALLOTMENT and a.elder == elder and a.month == month
    )


def test_voucher_ledger_properties() -> None:
    run_state_machine_as_test(
        VoucherMachine, settings=settings(max_examples=150, stateful_step_count=40, deadline=None)
    )
