"""Unit tests of the measures: per-alert response times, percentiles, the telecare standard and
period reports per station. Pure and fast: every time is a datetime built here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.measures import (
    STANDARD_PRIORITIES,
    TELECARE_STANDARDS,
    AlertRecord,
    AlertTimes,
    ShareWithin,
    Standard,
    alert_times,
    answered_at,
    false_alarm_rate,
    outcome_key,
    percentile,
    periods,
    report,
    reports_by,
    share_within,
    time_stats,
)
from alerts.model import AlertKind, Outcome, Priority, State

CST = timezone(timedelta(hours=8))
DAY = datetime(2026, 11, 23, tzinfo=CST)
NEXT_DAY = DAY + timedelta(days=1)
LATER = NEXT_DAY + timedelta(days=1)  # reports made after every alert was dealt with
S = timedelta(seconds=1)

FAST = settings(max_examples=200, deadline=None, database=None)


def rec(
    id_: str = "al-1",
    *,
    at: datetime = DAY + timedelta(hours=9),
    kind: AlertKind = AlertKind.CALL_BUTTON,
    priority: Priority = Priority.P1,
    state: State = State.RESOLVED,
    page: int | None = 0,
    ack: int | None = None,
    on_site: int | None = None,
    closed: int | None = None,
    outcome: Outcome | None = None,
    station: str | None = "st-xinhua",
    community: str | None = "xinhua",
) -> AlertRecord:
    """An alert created `at`; the other times in seconds after it."""

    def t(s: int | None) -> datetime | None:
        return None if s is None else at + s * S

    return AlertRecord(
        id_,
        kind,
        priority,
        state,
        at,
        first_page_at=t(page),
        acknowledged_at=t(ack),
        on_site_at=t(on_site),
        closed_at=t(closed),
        outcome=outcome,
        station=station,
        community=community,
    )


# --------------------------------------------------------------------------------------------
# per alert
# --------------------------------------------------------------------------------------------


def test_times_of_a_whole_alert() -> None:
    r = rec(page=1, ack=42, on_site=600, closed=1800, outcome=Outcome.REAL)
    assert alert_times(r) == AlertTimes(1 * S, 42 * S, 600 * S, 1800 * S)


def test_an_open_alert_has_only_what_happened() -> None:
    assert alert_times(rec(state=State.OPEN, page=0)) == AlertTimes(timedelta(0), None, None, None)
    assert alert_times(rec(state=State.OPEN, page=None)) == AlertTimes(None, None, None, None)


def test_a_cancel_is_not_a_resolution_nor_an_answer() -> None:
    r = rec(state=State.CANCELLED, closed=20)
    assert answered_at(r) is None
    assert alert_times(r).to_resolution is None


def test_arrival_or_resolution_without_ack_is_the_first_answer() -> None:
    arrived = rec(state=State.ON_SITE, on_site=50)
    assert alert_times(arrived).to_ack == 50 * S
    closed_from_board = rec(closed=30, outcome=Outcome.FALSE_ALARM)
    assert alert_times(closed_from_board).to_ack == 30 * S
    assert alert_times(closed_from_board).to_resolution == 30 * S
    # the earliest answer counts, whatever order the fields suggest
    assert answered_at(rec(ack=90, on_site=40, closed=100)) == rec().created_at + 40 * S


def test_times_before_creation_read_as_zero() -> None:
    r = rec(page=0, ack=0)
    r = replace(r, first_page_at=r.created_at - timedelta(milliseconds=1))
    assert alert_times(r).to_first_page == timedelta(0)


# --------------------------------------------------------------------------------------------
# percentiles
# --------------------------------------------------------------------------------------------


def secs(*values: int) -> list[timedelta]:
    return [v * S for v in values]


def test_nearest_rank_percentiles() -> None:
    ten = secs(10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    assert percentile(ten, 50) == 50 * S  # rank ceil(5) = 5
    assert percentile(ten, 90) == 90 * S
    assert percentile(ten, 91) == 100 * S
    assert percentile(ten, 100) == 100 * S
    assert percentile(ten, 1) == 10 * S
    assert percentile(reversed(ten), 50) == 50 * S  # order of input does not matter
    assert percentile(secs(7), 50) == percentile(secs(7), 90) == 7 * S
    assert percentile(secs(1, 2), 50) == 1 * S  # never interpolated
    # 97.5 on 40 values is rank 39 exactly; float arithmetic could make it 40
    forty = secs(*range(1, 41))
    assert percentile(forty, 97.5) == 39 * S


def test_percentile_of_nothing() -> None:
    assert percentile([], 50) is None
    assert time_stats([None, None]) == time_stats([])
    empty = time_stats([])
    assert (empty.count, empty.p50, empty.p90, empty.max) == (0, None, None, None)


@pytest.mark.parametrize("p", [0, -1, 100.1])
def test_percentile_range(p: float) -> None:
    with pytest.raises(ValueError):
        percentile(secs(1), p)


def test_time_stats_leaves_out_what_did_not_happen() -> None:
    stats = time_stats([10 * S, None, 30 * S, 20 * S])
    assert (stats.count, stats.p50, stats.p90, stats.max) == (3, 20 * S, 30 * S, 30 * S)


@FAST
@given(st.lists(st.integers(0, 10**6), max_size=60), st.floats(0.01, 100), st.floats(0.01, 100))
def test_percentiles_are_monotone_observed_values(values: list[int], a: float, b: float) -> None:
    data = secs(*values)
    lo, hi = sorted((a, b))
    p_lo, p_hi = percentile(data, lo), percentile(data, hi)
    if not data:
        assert p_lo is None and p_hi is None
        return
    assert p_lo is not None and p_hi is not None
    assert p_lo <= p_hi
    assert p_lo in data and p_hi in data
    # nearest rank: at least lo% of the values are at or below it, and it is the smallest such
    at_or_below = sum(v <= p_lo for v in data)
    assert at_or_below * 100 >= lo * len(data) - 1e-9
    assert sum(v < p_lo for v in data) * 100 < lo * len(data) + 1e-9
    stats = time_stats(data)
    assert stats.p50 is not None and stats.p90 is not None and stats.max is not None
    assert min(data) <= stats.p50 <= stats.p90 <= stats.max == max(data)


# --------------------------------------------------------------------------------------------
# the telecare standard
# --------------------------------------------------------------------------------------------

SIXTY, ONE_EIGHTY = TELECARE_STANDARDS


def test_the_standard() -> None:
    assert Standard(60 * S, Fraction(975, 1000)) == SIXTY
    assert Standard(180 * S, Fraction(99, 100)) == ONE_EIGHTY
    assert frozenset({Priority.P1}) == STANDARD_PRIORITIES


def test_within_is_inclusive_and_unanswered_is_not_within() -> None:
    records = [
        rec("a", ack=60),  # exactly 60 s: within
        rec("b", ack=61),
        rec("c", ack=180),
        rec("d", state=State.OPEN),  # never answered, long ago: not within
        rec("e", state=State.OPEN, page=None),  # never even paged: not within either
    ]
    s60 = share_within(records, SIXTY, LATER)
    s180 = share_within(records, ONE_EIGHTY, LATER)
    assert (s60.within, s60.total) == (1, 5)
    assert (s180.within, s180.total) == (3, 5)


def test_cancelled_before_the_limit_is_not_judged() -> None:
    early = rec("early", state=State.CANCELLED, closed=30)
    mid = rec("mid", state=State.CANCELLED, closed=100)  # nobody answered in 60 s
    late = rec("late", state=State.CANCELLED, closed=500)
    answered = rec("ans", state=State.CANCELLED, ack=20, closed=90)
    s60 = share_within([early, mid, late, answered], SIXTY, LATER)
    s180 = share_within([early, mid, late, answered], ONE_EIGHTY, LATER)
    assert (s60.within, s60.total) == (1, 3)  # mid and late missed; early left out
    assert (s180.within, s180.total) == (1, 2)  # early and mid left out
    at_limit = rec("limit", state=State.CANCELLED, closed=60)
    assert share_within([at_limit], SIXTY, LATER).total == 0
    just_after = rec("after", state=State.CANCELLED, closed=61)
    assert share_within([just_after], SIXTY, LATER).total == 1


def test_open_alerts_younger_than_the_limit_are_not_judged_yet() -> None:
    young = rec(state=State.OPEN)
    now = young.created_at + 59 * S
    assert share_within([young], SIXTY, now).total == 0
    assert share_within([young], SIXTY, young.created_at + 60 * S).total == 0  # at the limit
    late = share_within([young], SIXTY, young.created_at + 61 * S)
    assert (late.within, late.total) == (0, 1)


@pytest.mark.parametrize(
    ("within", "total", "met"),
    [(39, 40, True), (38, 40, False), (195, 200, True), (194, 200, False), (1, 1, True)],
)
def test_met_is_exact(within: int, total: int, met: bool) -> None:
    s = ShareWithin(SIXTY, within, total)
    assert s.met is met
    assert s.share == within / total


def test_nothing_to_judge_is_neither_met_nor_missed() -> None:
    s = ShareWithin(SIXTY, 0, 0)
    assert s.share is None and s.met is None


def test_standard_of_parses_decimals_exactly() -> None:
    assert Standard.of(60, 0.975).target == Fraction(39, 40)
    assert Standard.of(30, "0.9") == Standard(30 * S, Fraction(9, 10))


# --------------------------------------------------------------------------------------------
# false alarms and outcomes
# --------------------------------------------------------------------------------------------


def test_false_alarm_rate_leaves_out_tests_and_unresolved() -> None:
    records = [
        rec("1", outcome=Outcome.REAL, closed=60),
        rec("2", outcome=Outcome.FALSE_ALARM, closed=60),
        rec("3", outcome=Outcome.FALSE_ALARM, closed=60),
        rec("4", outcome=Outcome.DEVICE_FAULT, closed=60),
        rec("5", outcome=Outcome.TEST, closed=60),
        rec("6", state=State.CANCELLED, closed=10),
        rec("7", state=State.OPEN),
        rec("8", closed=60),  # resolved from a pager, with no outcome yet
    ]
    assert false_alarm_rate(records) == 2 / 4
    assert false_alarm_rate(records[4:]) is None
    assert false_alarm_rate([]) is None
    keys = [outcome_key(r) for r in records]
    assert keys == [
        "real",
        "false_alarm",
        "false_alarm",
        "device_fault",
        "test",
        "cancelled",
        "unresolved",
        "no_outcome",
    ]


# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------


def day_of_alerts() -> list[AlertRecord]:
    h = DAY + timedelta(hours=9)
    return [
        rec("c1", at=h, page=0, ack=25, on_site=400, closed=1500, outcome=Outcome.REAL),
        rec(
            "c2", at=h + timedelta(hours=1), page=1, ack=70, closed=200, outcome=Outcome.FALSE_ALARM
        ),
        rec("c3", at=h + timedelta(hours=2), page=0, state=State.CANCELLED, closed=15),
        rec(
            "g1",
            at=h + timedelta(hours=3),
            kind=AlertKind.GAS,
            page=0,
            ack=40,
            on_site=300,
            state=State.ON_SITE,
        ),
        rec(
            "b1",
            at=h + timedelta(hours=4),
            kind=AlertKind.LOW_BATTERY,
            priority=Priority.P3,
            page=2,
            ack=3000,  # slow by design: not judged against the standard
            closed=9000,
            outcome=Outcome.REAL,
        ),
        rec("other", at=h, station="st-heping", community="heping", ack=10, closed=30),
        rec("yesterday", at=DAY - timedelta(minutes=1), ack=500, closed=600),
        rec("tomorrow", at=NEXT_DAY, ack=500, closed=600),
    ]


def test_report_for_a_day_and_station() -> None:
    rep = report(day_of_alerts(), DAY, NEXT_DAY, LATER, station="st-xinhua")
    assert rep.total == 5
    assert rep.station == "st-xinhua"
    assert rep.by_kind == {"call_button": 3, "gas": 1, "low_battery": 1}
    assert rep.by_priority == {"P1": 4, "P3": 1}
    assert rep.by_outcome == {"cancelled": 1, "false_alarm": 1, "real": 2, "unresolved": 1}
    assert rep.false_alarm_rate == 1 / 3
    assert (rep.to_first_page.count, rep.to_first_page.p50, rep.to_first_page.p90) == (
        5,
        0 * S,
        2 * S,
    )
    assert (rep.to_ack.count, rep.to_ack.p50, rep.to_ack.p90) == (4, 40 * S, 3000 * S)
    assert (rep.to_on_site.count, rep.to_on_site.p50, rep.to_on_site.p90) == (2, 300 * S, 400 * S)
    assert (rep.to_resolution.count, rep.to_resolution.max) == (3, 9000 * S)
    s60, s180 = rep.answered_within
    # P1 only: c1 25 s, c2 70 s, g1 40 s; c3 was cancelled at 15 s and is left out
    assert (s60.within, s60.total, s60.met) == (2, 3, False)
    assert (s180.within, s180.total, s180.met) == (3, 3, True)
    assert rep.standards_met is False
    assert rep.unpaged == 0


def test_report_of_all_stations_and_the_period_edges() -> None:
    rep = report(day_of_alerts(), DAY, NEXT_DAY, LATER)
    assert rep.station is None
    assert rep.total == 6  # "yesterday" and "tomorrow" are outside [DAY, NEXT_DAY)
    first = report(day_of_alerts(), DAY - timedelta(minutes=1), DAY, LATER)
    assert first.total == 1


def test_report_of_an_empty_period() -> None:
    rep = report([], DAY, NEXT_DAY, LATER)
    assert rep.total == 0
    assert rep.by_kind == rep.by_outcome == {}
    assert rep.false_alarm_rate is None
    assert rep.to_ack.p50 is None and rep.to_ack.p90 is None
    assert all(s.met is None and s.share is None for s in rep.answered_within)
    assert rep.standards_met is None


def test_report_counts_unpaged_alerts() -> None:
    rep = report([rec(page=None, state=State.OPEN)], DAY, NEXT_DAY, LATER)
    assert rep.unpaged == 1
    assert rep.answered_within[0].within == 0 and rep.answered_within[0].total == 1


def test_report_with_other_standards_and_priorities() -> None:
    rep = report(
        day_of_alerts(),
        DAY,
        NEXT_DAY,
        LATER,
        station="st-xinhua",
        standards=[Standard.of(3600, "0.5")],
        standard_priorities=frozenset(Priority),
    )
    (only,) = rep.answered_within
    assert (only.within, only.total, only.met) == (4, 4, True)


def test_report_rejects_an_empty_period() -> None:
    with pytest.raises(ValueError):
        report([], DAY, DAY, LATER)


def test_reports_by_station_and_by_community() -> None:
    by_station = reports_by(day_of_alerts(), DAY, NEXT_DAY, LATER)
    assert set(by_station) == {"st-xinhua", "st-heping"}
    assert by_station["st-xinhua"] == report(
        day_of_alerts(), DAY, NEXT_DAY, LATER, station="st-xinhua"
    )
    assert by_station["st-heping"].total == 1
    by_community = reports_by(day_of_alerts(), DAY, NEXT_DAY, LATER, key=lambda r: r.community)
    assert by_community["heping"].station == "heping"
    assert by_community["xinhua"].total == 5


def test_periods() -> None:
    days = periods(DAY, DAY + timedelta(days=2, hours=12), timedelta(days=1))
    assert days == [
        (DAY, NEXT_DAY),
        (NEXT_DAY, LATER),
        (LATER, LATER + timedelta(hours=12)),
    ]
    assert periods(DAY, DAY, timedelta(days=1)) == []
    with pytest.raises(ValueError):
        periods(DAY, NEXT_DAY, timedelta(0))


# --------------------------------------------------------------------------------------------
# properties of reports
# --------------------------------------------------------------------------------------------

maybe_s = st.one_of(st.none(), st.integers(0, 4000))


@st.composite
def records(draw: st.DrawFn) -> AlertRecord:
    state = draw(st.sampled_from(list(State)))
    closed = draw(st.integers(0, 9000)) if state in (State.RESOLVED, State.CANCELLED) else None
    outcome = draw(st.sampled_from(list(Outcome))) if state == State.RESOLVED else None
    return rec(
        draw(st.text(min_size=1, max_size=4)),
        at=DAY + draw(st.integers(0, 86_399)) * S,
        kind=draw(st.sampled_from(list(AlertKind))),
        priority=draw(st.sampled_from(list(Priority))),
        state=state,
        page=draw(maybe_s),
        ack=draw(maybe_s) if state != State.OPEN else None,
        on_site=draw(maybe_s) if state in (State.ON_SITE, State.RESOLVED) else None,
        closed=closed,
        outcome=outcome,
        station=draw(st.sampled_from(["a", "b", None])),
    )


@FAST
@given(st.lists(records(), max_size=40), st.integers(0, 200_000))
def test_report_properties(recs: list[AlertRecord], now_s: int) -> None:
    now = DAY + now_s * S
    rep = report(recs, DAY, NEXT_DAY, now)
    assert rep.total == len(recs) == sum(rep.by_kind.values()) == sum(rep.by_outcome.values())
    for stats in (rep.to_first_page, rep.to_ack, rep.to_on_site, rep.to_resolution):
        assert stats.count <= rep.total
        if stats.count:
            assert stats.p50 is not None and stats.p90 is not None and stats.max is not None
            assert timedelta(0) <= stats.p50 <= stats.p90 <= stats.max
        else:
            assert stats.p50 is stats.p90 is stats.max is None
    s60, s180 = rep.answered_within
    for s in (s60, s180):
        assert 0 <= s.within <= s.total
        assert s.share is None or 0 <= s.share <= 1
        assert (s.met is None) == (s.total == 0)
    # answered within 60 s is answered within 180 s too
    assert s60.within <= s180.within
    if rep.false_alarm_rate is not None:
        assert 0 <= rep.false_alarm_rate <= 1
    split = reports_by(recs, DAY, NEXT_DAY, now)
    assert sum(r.total for r in split.values()) == rep.total
