"""Unit tests of the health record: impossible vital signs refused (with the unit mix-up
named), abnormal ones flagged at the guideline thresholds, check-ups and visits, and trends.
Pure and fast.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from care.elders import problems_from
from care.health import (
    Encounter,
    EncounterKind,
    GlucoseTiming,
    Measure,
    Severity,
    VitalSigns,
    check_measured_at,
    check_occurred_at,
    series,
    trends,
    weight_loss_flag,
)

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=CST)
FAST = settings(max_examples=300, deadline=None, database=None)


def vitals(at: datetime = NOW, elder: str = "e1", **values: Any) -> VitalSigns:
    return VitalSigns.model_validate(
        {"elder_id": elder, "measured_at": at, "measured_by": "staff-1", **values}
    )


def refused(**values: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        vitals(**values)
    return [(p.field, p.code) for p in problems_from(info.value)]


def flags(**values: Any) -> list[tuple[str, str]]:
    return [(f.code, f.severity.value) for f in vitals(**values).flags()]


# --------------------------------------------------------------------------------------------
# impossible values
# --------------------------------------------------------------------------------------------


def test_at_least_one_measure() -> None:
    assert refused() == [("(record)", "vitals_empty")]


@pytest.mark.parametrize(
    ("values", "field", "hint"),
    [
        ({"temperature_c": 98.6}, "temperature_c", "°F"),
        ({"temperature_c": 25.0}, "temperature_c", ""),
        ({"glucose_mmol_l": 126.0, "glucose_timing": "fasting"}, "glucose_mmol_l", "mg/dL"),
        ({"systolic": 16, "diastolic": 10}, "systolic", "kPa"),
        ({"systolic": 320, "diastolic": 90}, "systolic", ""),
        ({"pulse": 300}, "pulse", ""),
        ({"weight_kg": 240.0 * 2}, "weight_kg", "斤"),
        ({"weight_kg": 12.0}, "weight_kg", ""),
    ],
)
def test_impossible_values_are_refused_with_the_likely_unit(
    values: dict[str, Any], field: str, hint: str
) -> None:
    with pytest.raises(ValidationError) as info:
        vitals(**values)
    p = problems_from(info.value)[0]
    assert (p.field, p.code) == (field, "vital_implausible")
    assert hint in p.en


def test_blood_pressure_comes_in_pairs_and_in_order() -> None:
    assert refused(systolic=120) == [("diastolic", "bp_pair")]
    assert refused(systolic=80, diastolic=120) == [("systolic", "bp_order")]


def test_glucose_needs_its_timing_and_a_device_its_id() -> None:
    assert refused(glucose_mmol_l=5.6) == [("glucose_timing", "glucose_timing")]
    assert refused(pulse=70, glucose_timing="fasting") == [("glucose_timing", "glucose_timing")]
    assert refused(pulse=70, source="device") == [("device_id", "device_id_required")]
    assert vitals(pulse=70, source="device", device_id="bp-cuff-7").device_id == "bp-cuff-7"


def test_naive_times_and_nan_are_refused() -> None:
    assert refused(at=NOW.replace(tzinfo=None), pulse=70)[0][1] == "timezone_aware"
    assert refused(temperature_c=float("nan"))[0][1] == "finite_number"


def test_readings_from_the_future() -> None:
    check_measured_at(vitals(at=NOW + timedelta(minutes=4), pulse=70), now=NOW)
    with pytest.raises(ValueError, match="after now"):
        check_measured_at(vitals(at=NOW + timedelta(minutes=6), pulse=70), now=NOW)


def test_readings_and_visits_before_the_birth() -> None:
    born = date(1975, 3, 8)
    # The day is the one in `now`'s zone: 16:00Z on the 7th is already the 8th at +08:00.
    on_the_day = datetime(1975, 3, 7, 16, 0, tzinfo=UTC)
    check_measured_at(vitals(at=on_the_day, pulse=70), now=NOW, born=born)
    with pytest.raises(ValueError, match="before the elder was born") as info:
        check_measured_at(
            vitals(at=on_the_day - timedelta(seconds=1), pulse=70), now=NOW, born=born
        )
    assert getattr(info.value, "code", None) == "measured_before_birth"
    check_measured_at(vitals(at=on_the_day - timedelta(days=400), pulse=70), now=NOW, born=None)

    def visit(at: datetime) -> Encounter:
        return Encounter(
            elder_id="e1", kind=EncounterKind.VISIT, occurred_at=at, recorded_by="s", notes="探访"
        )

    check_occurred_at(visit(on_the_day), now=NOW, born=born)
    with pytest.raises(ValueError, match="before the elder was born") as info:
        check_occurred_at(visit(on_the_day - timedelta(seconds=1)), now=NOW, born=born)
    assert getattr(info.value, "code", None) == "occurred_before_birth"
    check_occurred_at(visit(NOW + timedelta(minutes=4)), now=NOW)
    with pytest.raises(ValueError, match="after now"):
        check_occurred_at(visit(NOW + timedelta(minutes=6)), now=NOW)


# --------------------------------------------------------------------------------------------
# flags
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sbp", "dbp", "expected"),
    [
        (139, 89, []),
        (120, 80, []),
        (140, 80, [("bp_high_grade1", "abnormal")]),
        (130, 90, [("bp_high_grade1", "abnormal")]),
        (165, 85, [("bp_high_grade2", "abnormal")]),
        (150, 100, [("bp_high_grade2", "abnormal")]),
        (180, 100, [("bp_high_grade3", "urgent")]),
        (170, 110, [("bp_high_grade3", "urgent")]),
        (88, 58, [("bp_low", "abnormal")]),
        (100, 59, [("bp_low", "abnormal")]),
    ],
)
def test_blood_pressure_flags(sbp: int, dbp: int, expected: list[tuple[str, str]]) -> None:
    assert flags(systolic=sbp, diastolic=dbp) == expected


@pytest.mark.parametrize(
    ("pulse", "expected"),
    [
        (60, []),
        (100, []),
        (59, [("pulse_low", "abnormal")]),
        (101, [("pulse_high", "abnormal")]),
        (40, [("pulse_extreme", "urgent")]),
        (131, [("pulse_extreme", "urgent")]),
    ],
)
def test_pulse_flags(pulse: int, expected: list[tuple[str, str]]) -> None:
    assert flags(pulse=pulse) == expected


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (36.5, []),
        (37.2, []),
        (37.3, [("fever_low", "abnormal")]),
        (38.1, [("fever_moderate", "abnormal")]),
        (39.1, [("fever_high", "urgent")]),
        (34.9, [("temperature_low", "urgent")]),
    ],
)
def test_temperature_flags(t: float, expected: list[tuple[str, str]]) -> None:
    assert flags(temperature_c=t) == expected


@pytest.mark.parametrize(
    ("g", "timing", "expected"),
    [
        (5.6, "fasting", []),
        (6.1, "fasting", [("glucose_impaired_fasting", "abnormal")]),
        (7.0, "fasting", [("glucose_high", "abnormal")]),
        (7.7, "after_meal_2h", []),
        (7.8, "after_meal_2h", [("glucose_impaired_tolerance", "abnormal")]),
        (11.1, "after_meal_2h", [("glucose_high", "abnormal")]),
        (10.0, "random", []),
        (11.1, "random", [("glucose_high", "abnormal")]),
        (3.8, "random", [("glucose_low", "abnormal")]),
        (2.9, "fasting", [("glucose_low", "urgent")]),
        (16.7, "random", [("glucose_very_high", "urgent")]),
    ],
)
def test_glucose_flags(g: float, timing: str, expected: list[tuple[str, str]]) -> None:
    assert flags(glucose_mmol_l=g, glucose_timing=timing) == expected


def test_flags_say_why_in_both_languages() -> None:
    (f,) = vitals(systolic=150, diastolic=95).flags()
    assert f.measure is Measure.SYSTOLIC and f.value == 150
    assert "140/90" in f.reason_en and "≥140/90" in f.reason_zh


@FAST
@given(st.integers(min_value=50, max_value=300), st.integers(min_value=20, max_value=200))
def test_high_bp_is_flagged_exactly_from_140_or_90(sbp: int, dbp: int) -> None:
    if sbp <= dbp:
        return
    fs = vitals(systolic=sbp, diastolic=dbp).flags()
    high = [f for f in fs if f.code.startswith("bp_high")]
    assert bool(high) == (sbp >= 140 or dbp >= 90)
    if high:
        assert (high[0].severity is Severity.URGENT) == (sbp >= 180 or dbp >= 110)


@FAST
@given(st.floats(min_value=30.0, max_value=45.0), st.floats(min_value=30.0, max_value=45.0))
def test_fever_severity_is_monotone(a: float, b: float) -> None:
    def rank(t: float) -> int:
        fs = vitals(temperature_c=t).flags()
        if not fs or fs[0].code == "temperature_low":
            return 0
        return {"fever_low": 1, "fever_moderate": 2, "fever_high": 3}[fs[0].code]

    lo, hi = sorted((a, b))
    if lo >= 35.0:
        assert rank(lo) <= rank(hi)


# --------------------------------------------------------------------------------------------
# encounters
# --------------------------------------------------------------------------------------------


def test_encounter() -> None:
    e = Encounter(
        elder_id="e1",
        kind=EncounterKind.CHECKUP,
        occurred_at=NOW,
        recorded_by="staff-1",
        seen_by="刘医生",
        notes="年度体检，血脂偏高",
        findings=("血脂偏高",),
        next_due=NOW.date() + timedelta(days=365),
    )
    assert e.kind.zh == "体检"
    with pytest.raises(ValidationError) as info:
        Encounter.model_validate(
            {
                "elder_id": "e1",
                "kind": "visit",
                "occurred_at": NOW,
                "recorded_by": "s",
                "notes": "  ",
            }
        )
    assert [p.code for p in problems_from(info.value)] == ["string_too_short"]
    with pytest.raises(ValidationError) as info:
        Encounter.model_validate({**e.model_dump(), "next_due": NOW.date() - timedelta(days=1)})
    assert [(p.field, p.code) for p in problems_from(info.value)] == [
        ("next_due", "next_due_before")
    ]


# --------------------------------------------------------------------------------------------
# trends
# --------------------------------------------------------------------------------------------


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def test_series_is_in_time_order_and_per_glucose_timing() -> None:
    rs = [
        vitals(days_ago(1), glucose_mmol_l=6.0, glucose_timing="fasting"),
        vitals(days_ago(3), glucose_mmol_l=5.0, glucose_timing="fasting"),
        vitals(days_ago(2), glucose_mmol_l=9.0, glucose_timing="random"),
    ]
    assert [p.value for p in series(rs, Measure.GLUCOSE_FASTING)] == [5.0, 6.0]
    assert [p.value for p in series(rs, Measure.GLUCOSE_RANDOM)] == [9.0]
    assert GlucoseTiming.FASTING.zh == "空腹"


def test_change_over_30_days_from_the_last_reading_before_the_window() -> None:
    rs = [
        vitals(days_ago(45), weight_kg=60.0),
        vitals(days_ago(31), weight_kg=58.0),  # the reference: last at or before 30 days ago
        vitals(days_ago(10), weight_kg=56.0),
        vitals(days_ago(1), weight_kg=55.0),
        vitals(NOW + timedelta(days=1), weight_kg=99.0),  # the future is ignored
    ]
    t = trends(rs, now=NOW)[Measure.WEIGHT]
    assert t.latest is not None and t.latest.value == 55.0
    assert t.reference is not None and t.reference.value == 58.0
    assert t.change == -3.0
    assert t.change_pct == pytest.approx(-5.2)
    assert t.mean_window == 55.5
    assert len(t.points) == 4
    flag = weight_loss_flag(t)
    assert flag is not None and flag.code == "weight_loss" and "5.2%" in flag.reason_en


def test_without_older_readings_the_window_starts_at_its_earliest() -> None:
    rs = [vitals(days_ago(20), pulse=70), vitals(days_ago(2), pulse=82)]
    t = trends(rs, now=NOW)[Measure.PULSE]
    assert t.reference is not None and t.reference.value == 70
    assert t.change == 12


def test_one_reading_has_no_change_and_other_elders_are_kept_out() -> None:
    rs = [vitals(days_ago(2), pulse=82), vitals(days_ago(40), elder="e2", pulse=60)]
    t = trends(rs, now=NOW, elder_id="e1")[Measure.PULSE]
    assert t.change is None and t.reference is None and t.change_pct is None
    assert weight_loss_flag(t) is None
    assert Measure.SYSTOLIC not in trends(rs, now=NOW, elder_id="e1")


def test_small_weight_changes_are_not_flagged() -> None:
    rs = [vitals(days_ago(31), weight_kg=60.0), vitals(days_ago(1), weight_kg=57.5)]
    t = trends(rs, now=NOW)[Measure.WEIGHT]
    assert t.change_pct == pytest.approx(-4.2)
    assert weight_loss_flag(t) is None


@FAST
@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=90), st.integers(min_value=40, max_value=120)),
        min_size=1,
        max_size=15,
    )
)
def test_latest_is_the_newest_and_change_is_latest_minus_reference(
    points: list[tuple[float, int]],
) -> None:
    rs = [vitals(days_ago(d), pulse=p) for d, p in points]
    t = trends(rs, now=NOW)[Measure.PULSE]
    assert t.latest is not None
    assert t.latest.at == max(r.measured_at for r in rs)
    if t.reference is not None:
        assert t.reference.at <= t.latest.at
        assert t.change == pytest.approx(t.latest.value - t.reference.value)
