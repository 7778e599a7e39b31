"""Unit tests of the GB/T 42195-2022 capability assessment: the items and part maxima, the
level cut-offs, the coma and one-level-worse adjustments, the current assessment and what it
entitles the elder to. Pure and fast.
"""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from care.assessment import (
    CARE_LEVELS,
    ELIGIBILITY,
    ITEMS,
    ITEMS_BY_KEY,
    LEVEL_BANDS,
    PART_MAXIMA,
    TOTAL_MAX,
    Assessment,
    CapabilityLevel,
    CareLevel,
    Part,
    ServiceCategory,
    current_assessment,
    current_eligibility,
    eligibility_for,
    level_for_total,
    reassessment_due,
)
from care.elders import SelfCareStatus, problems_from

TODAY = date(2026, 11, 25)
FAST = settings(max_examples=300, deadline=None, database=None)
FULL = {i.key: i.max_score for i in ITEMS}

L = CapabilityLevel


def assess(scores: dict[str, int] | None = None, **over: Any) -> Assessment:
    data: dict[str, Any] = {
        "elder_id": "e1",
        "assessed_on": TODAY,
        "assessor": "评估员甲",
        "second_assessor": "评估员乙",
        "scores": FULL if scores is None else scores,
    }
    data.update(over)
    return Assessment.model_validate(data)


def with_total(total: int) -> dict[str, int]:
    """Scores with the given total, taken off items from the last."""
    scores = dict(FULL)
    drop = TOTAL_MAX - total
    for item in reversed(ITEMS):
        take = min(drop, scores[item.key])
        scores[item.key] -= take
        drop -= take
    assert sum(scores.values()) == total
    return scores


scores_strategy = st.fixed_dictionaries(
    {i.key: st.integers(min_value=0, max_value=i.max_score) for i in ITEMS}
)


def test_the_standard_structure() -> None:
    assert len(ITEMS) == 26 and TOTAL_MAX == 90
    assert dict(PART_MAXIMA) == {
        Part.SELF_CARE: 32,
        Part.BASIC_MOBILITY: 15,
        Part.MENTAL_STATE: 28,
        Part.PERCEPTION_SOCIAL: 15,
    }
    assert [sum(1 for i in ITEMS if i.part is p) for p in Part] == [8, 4, 9, 5]
    assert ITEMS_BY_KEY["stairs"].max_score == 3 and ITEMS_BY_KEY["stairs"].code == "B.2.4"
    assert ITEMS_BY_KEY["consciousness"].max_score == 2
    assert ITEMS_BY_KEY["transport"].zh == "使用交通工具外出"
    assert len({i.code for i in ITEMS}) == 26


@pytest.mark.parametrize(
    ("total", "level"),
    [
        (90, L.INTACT),
        (89, L.MILD),
        (66, L.MILD),
        (65, L.MODERATE),
        (46, L.MODERATE),
        (45, L.SEVERE),
        (30, L.SEVERE),
        (29, L.COMPLETE_LOSS),
        (0, L.COMPLETE_LOSS),
    ],
)
def test_level_cut_offs(total: int, level: CapabilityLevel) -> None:
    assert level_for_total(total) is level
    r = assess(with_total(total)).result()
    assert r.total == total and r.preliminary_level is level and r.level is level


def test_level_bands_cover_0_to_90_once() -> None:
    covered = sorted(t for lo, hi, _ in LEVEL_BANDS for t in range(lo, hi + 1))
    assert covered == list(range(91))
    with pytest.raises(ValueError):
        level_for_total(91)


def test_full_marks() -> None:
    r = assess().result()
    assert r.part_scores == dict(PART_MAXIMA)
    assert r.level is L.INTACT and r.care_level is CareLevel.NONE and r.adjustments == ()
    assert L.INTACT.zh == "能力完好"
    assert L.COMPLETE_LOSS.zh == "能力完全丧失（完全失能）"


def test_coma_means_capability_lost_whatever_the_scores() -> None:
    scores = {**FULL, "consciousness": 0}
    r = assess(scores, in_coma=True).result()
    assert r.total == 88 and r.preliminary_level is L.MILD
    assert r.level is L.COMPLETE_LOSS and r.adjustments[0][0] == "coma"
    assert r.care_level is CareLevel.LEVEL_4
    with pytest.raises(ValidationError) as info:
        assess(FULL, in_coma=True)
    assert [p.code for p in problems_from(info.value)] == ["assessment_coma_consciousness"]


def test_one_level_worse_once_whatever_the_number_of_reasons() -> None:
    r = assess(with_total(70), dementia=True).result()
    assert (r.preliminary_level, r.level) == (L.MILD, L.MODERATE)
    r = assess(with_total(70), dementia=True, mental_disorder=True, risk_events_30d=3).result()
    assert r.level is L.MODERATE
    assert [a[0] for a in r.adjustments] == ["dementia", "mental_disorder", "risk_events"]
    assert assess(with_total(70), risk_events_30d=1).result().level is L.MILD
    assert assess(with_total(10), dementia=True).result().level is L.COMPLETE_LOSS


@pytest.mark.parametrize(
    ("scores", "code"),
    [
        ({k: v for k, v in FULL.items() if k != "memory"}, "assessment_missing_items"),
        ({**FULL, "singing": 4}, "assessment_unknown_items"),
        ({**FULL, "stairs": 4}, "assessment_score_range"),
        ({**FULL, "eating": -1}, "assessment_score_range"),
    ],
)
def test_bad_scores_are_refused(scores: dict[str, int], code: str) -> None:
    with pytest.raises(ValidationError) as info:
        assess(scores)
    assert [p.code for p in problems_from(info.value)] == [code]


def test_missing_items_are_named_in_chinese() -> None:
    with pytest.raises(ValidationError) as info:
        assess({k: v for k, v in FULL.items() if k != "memory"})
    assert "B.3.4记忆" in problems_from(info.value)[0].zh


def test_two_different_assessors() -> None:
    with pytest.raises(ValidationError):
        assess(second_assessor="评估员甲")
    assert assess(second_assessor=None).second_assessor is None


@FAST
@given(scores_strategy)
def test_totals_and_levels(scores: dict[str, int]) -> None:
    a = assess(scores)
    r = a.result()
    assert r.total == sum(r.part_scores.values()) == sum(scores.values()) == a.total
    assert all(0 <= r.part_scores[p] <= PART_MAXIMA[p] for p in Part)
    assert 0 <= r.total <= 90
    assert r.level is r.preliminary_level is level_for_total(r.total)


@FAST
@given(st.integers(min_value=0, max_value=90), st.integers(min_value=0, max_value=90))
def test_level_is_monotone_in_the_total(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert level_for_total(lo).rank >= level_for_total(hi).rank


@FAST
@given(scores_strategy, st.booleans(), st.booleans(), st.integers(min_value=0, max_value=5))
def test_adjustments_never_improve_the_level(
    scores: dict[str, int], dementia: bool, mental: bool, events: int
) -> None:
    r = assess(scores, dementia=dementia, mental_disorder=mental, risk_events_30d=events).result()
    assert r.level.rank - r.preliminary_level.rank in (0, 1)
    assert (r.level.rank > r.preliminary_level.rank) == (
        (dementia or mental or events >= 2) and r.preliminary_level is not L.COMPLETE_LOSS
    )


# --------------------------------------------------------------------------------------------
# current assessment and eligibility
# --------------------------------------------------------------------------------------------


def test_the_current_assessment_is_the_latest() -> None:
    old = assess(with_total(90), assessed_on=date(2025, 6, 1))
    new = assess(with_total(50), assessed_on=date(2026, 6, 1))
    same_day_later = assess(with_total(40), assessed_on=date(2026, 6, 1), recorded_seq=2)
    future = assess(with_total(10), assessed_on=TODAY + timedelta(days=3))
    other = assess(with_total(0), elder_id="e2", assessed_on=TODAY)
    pool = [old, same_day_later, new, future, other]
    assert current_assessment(pool, elder_id="e1", today=TODAY) is same_day_later
    assert current_assessment([old, new], elder_id="e1") is new
    assert current_assessment([], elder_id="e1") is None
    elig = current_eligibility(pool, elder_id="e1", today=TODAY)
    assert elig is not None and elig.level is L.SEVERE and elig.care_level is CareLevel.LEVEL_3
    assert current_eligibility([], elder_id="e1") is None


def test_eligibility_table_grows_with_need() -> None:
    for better, worse in pairwise(L):
        assert ELIGIBILITY[better].services <= ELIGIBILITY[worse].services
        assert ELIGIBILITY[better].visit_every_days >= ELIGIBILITY[worse].visit_every_days
        assert ELIGIBILITY[better].care_level < ELIGIBILITY[worse].care_level
    assert ServiceCategory.EMERGENCY in ELIGIBILITY[L.INTACT].services
    assert ServiceCategory.BATHING not in ELIGIBILITY[L.MILD].services
    assert eligibility_for(L.MODERATE).home_care_bed and not eligibility_for(L.MILD).home_care_bed
    assert CARE_LEVELS[L.MILD][1] is SelfCareStatus.PARTLY_DEPENDENT
    assert CARE_LEVELS[L.MODERATE][1] is SelfCareStatus.DEPENDENT


def test_reassessment_due_after_a_year() -> None:
    a = assess(assessed_on=date(2025, 11, 26))
    assert not reassessment_due(a, TODAY)
    assert reassessment_due(a, date(2026, 11, 26))
    assert reassessment_due(None, TODAY)
