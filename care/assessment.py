"""Capability assessment (老年人能力评估) per GB/T 42195-2022 《老年人能力评估规范》.

Source and what was checked. The standard itself was not available here; its structure was
taken from public transcriptions of its Annex B (评估表) and of its result rules, which agree
with each other: four parts, 26 items, total 0-90.

- B.1 自理能力 self-care, 8 items, max 32: 进食, 修饰, 洗澡, 穿/脱上衣, 穿/脱裤子和鞋袜,
  小便控制, 大便控制, 如厕 (0-4 each).
- B.2 基础运动能力 basic mobility, 4 items, max 15: 床上体位转移, 床椅转移, 平地行走 (0-4),
  上下楼梯 (0-3).
- B.3 精神状态 mental state, 9 items, max 28: 时间定向, 空间定向, 人物定向, 记忆, 理解能力,
  表达能力 (0-4), 攻击行为 (0-1), 抑郁症状 (0-1), 意识水平 (0-2).
- B.4 感知觉与社会参与 perception and social participation, 5 items, max 15: 视力 (0-2),
  听力 (0-2), 执行日常事务 (0-4), 使用交通工具外出 (0-3), 社会交往能力 (0-4).

Higher is more capable on every item (4 = 独立完成 ... 0 = 完全依赖).

Level from the total (初步等级): 90 能力完好; 66-89 能力轻度受损(轻度失能); 46-65 能力中度受损
(中度失能); 30-45 能力重度受损(重度失能); 0-29 能力完全丧失(完全失能).

Then the standard's adjustments (最终等级):

- in a coma (昏迷): 能力完全丧失 directly, whatever the scores (the consciousness item must
  then be 0). One transcription reads "重度失能" here; the standard's result rule and the
  other sources say 完全丧失, which is what this module does.
- one level worse (once, not once per reason; never past 完全丧失) when any of: dementia
  diagnosed (ICD-10 F00-F03); another mental or behavioural disorder diagnosed by a
  psychiatrist (F04-F99); two or more care risk events (falls, choking, suicide or self-harm,
  wandering ...) in the last 30 days.

Assumptions (ours, not the standard's), documented so they can be changed in one place:

- `CARE_LEVELS` maps the capability level to a care level 0-4 and to the registry's 3-way
  self-care status: 完好 -> independent, 轻度 -> partly dependent, 中度/重度/完全 -> dependent
  (most local subsidies treat 中度 and worse as 失能).
- `ELIGIBILITY` is a small table of the services (the glossary's service categories) and the
  visiting interval each level calls for, plus whether a 家庭养老床位 (home care bed) may be
  set up. A station's own table can be passed instead.
- Re-assessment: every 12 months (`REASSESS_EVERY`), and at once after a change in condition
  (`AssessmentReason.IMMEDIATE`); an overdue latest assessment still decides eligibility, and
  `reassessment_due` says it is overdue.

Every assessment is kept (never edited: a corrected one is a new assessment with reason
`review`); the current one is the latest by date (then by `recorded_seq`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from enum import IntEnum
from types import MappingProxyType
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from care._common import CareError, Labelled, Note, Text50, Text100, set_labels
from care.elders import SelfCareStatus

__all__ = [
    "CARE_LEVELS",
    "ELIGIBILITY",
    "ITEMS",
    "ITEMS_BY_KEY",
    "LEVEL_BANDS",
    "PART_MAXIMA",
    "REASSESS_EVERY",
    "TOTAL_MAX",
    "Assessment",
    "AssessmentReason",
    "AssessmentResult",
    "CapabilityLevel",
    "CareLevel",
    "Eligibility",
    "Item",
    "Part",
    "ServiceCategory",
    "current_assessment",
    "current_eligibility",
    "eligibility_for",
    "level_for_total",
    "reassessment_due",
]


class Part(Labelled):
    SELF_CARE = "self_care"
    BASIC_MOBILITY = "basic_mobility"
    MENTAL_STATE = "mental_state"
    PERCEPTION_SOCIAL = "perception_social"


set_labels(
    Part,
    {
        Part.SELF_CARE: ("自理能力", "self-care"),
        Part.BASIC_MOBILITY: ("基础运动能力", "basic mobility"),
        Part.MENTAL_STATE: ("精神状态", "mental state"),
        Part.PERCEPTION_SOCIAL: ("感知觉与社会参与", "perception and social participation"),
    },
)


@dataclass(frozen=True, slots=True)
class Item:
    code: str  # the standard's numbering, B.1.1 ...
    key: str  # the field name in `Assessment.scores`
    part: Part
    zh: str
    en: str
    max_score: int


ITEMS: tuple[Item, ...] = (
    Item("B.1.1", "eating", Part.SELF_CARE, "进食", "eating", 4),
    Item("B.1.2", "grooming", Part.SELF_CARE, "修饰", "grooming", 4),
    Item("B.1.3", "bathing", Part.SELF_CARE, "洗澡", "bathing", 4),
    Item("B.1.4", "dressing_upper", Part.SELF_CARE, "穿/脱上衣", "dressing (upper body)", 4),
    Item("B.1.5", "dressing_lower", Part.SELF_CARE, "穿/脱裤子和鞋袜", "dressing (lower body)", 4),
    Item("B.1.6", "urine_control", Part.SELF_CARE, "小便控制", "bladder control", 4),
    Item("B.1.7", "bowel_control", Part.SELF_CARE, "大便控制", "bowel control", 4),
    Item("B.1.8", "toileting", Part.SELF_CARE, "如厕", "toileting", 4),
    Item("B.2.1", "bed_mobility", Part.BASIC_MOBILITY, "床上体位转移", "turning in bed", 4),
    Item("B.2.2", "transfer", Part.BASIC_MOBILITY, "床椅转移", "bed-chair transfer", 4),
    Item("B.2.3", "walking", Part.BASIC_MOBILITY, "平地行走", "walking on the level", 4),
    Item("B.2.4", "stairs", Part.BASIC_MOBILITY, "上下楼梯", "stairs", 3),
    Item("B.3.1", "time_orientation", Part.MENTAL_STATE, "时间定向", "orientation in time", 4),
    Item("B.3.2", "place_orientation", Part.MENTAL_STATE, "空间定向", "orientation in place", 4),
    Item("B.3.3", "person_orientation", Part.MENTAL_STATE, "人物定向", "knowing people", 4),
    Item("B.3.4", "memory", Part.MENTAL_STATE, "记忆", "memory", 4),
    Item("B.3.5", "comprehension", Part.MENTAL_STATE, "理解能力", "understanding", 4),
    Item("B.3.6", "expression", Part.MENTAL_STATE, "表达能力", "expression", 4),
    Item("B.3.7", "aggression", Part.MENTAL_STATE, "攻击行为", "no aggressive behaviour", 1),
    Item("B.3.8", "depression", Part.MENTAL_STATE, "抑郁症状", "no depressive symptoms", 1),
    Item("B.3.9", "consciousness", Part.MENTAL_STATE, "意识水平", "consciousness", 2),
    Item("B.4.1", "vision", Part.PERCEPTION_SOCIAL, "视力", "vision", 2),
    Item("B.4.2", "hearing", Part.PERCEPTION_SOCIAL, "听力", "hearing", 2),
    Item("B.4.3", "daily_affairs", Part.PERCEPTION_SOCIAL, "执行日常事务", "daily affairs", 4),
    Item("B.4.4", "transport", Part.PERCEPTION_SOCIAL, "使用交通工具外出", "going out", 3),
    Item("B.4.5", "social", Part.PERCEPTION_SOCIAL, "社会交往能力", "social contact", 4),
)
ITEMS_BY_KEY: Mapping[str, Item] = MappingProxyType({i.key: i for i in ITEMS})
PART_MAXIMA: Mapping[Part, int] = MappingProxyType(
    {p: sum(i.max_score for i in ITEMS if i.part is p) for p in Part}
)
TOTAL_MAX = sum(PART_MAXIMA.values())
# The standard's figures: a wrong edit of ITEMS fails at import, not in a report.
if dict(PART_MAXIMA) != {
    Part.SELF_CARE: 32,
    Part.BASIC_MOBILITY: 15,
    Part.MENTAL_STATE: 28,
    Part.PERCEPTION_SOCIAL: 15,
} or (TOTAL_MAX, len(ITEMS)) != (90, 26):
    raise RuntimeError("ITEMS no longer match GB/T 42195-2022's part maxima")


class CapabilityLevel(Labelled):
    INTACT = "intact"
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"
    COMPLETE_LOSS = "complete_loss"

    @property
    def rank(self) -> int:
        """0 (intact) .. 4 (complete loss): worse is higher."""
        return list(CapabilityLevel).index(self)

    def worse(self) -> CapabilityLevel:
        """One level worse, capped at complete loss."""
        levels = list(CapabilityLevel)
        return levels[min(self.rank + 1, len(levels) - 1)]


set_labels(
    CapabilityLevel,
    {
        CapabilityLevel.INTACT: ("能力完好", "capability intact"),
        CapabilityLevel.MILD: ("能力轻度受损（轻度失能）", "mildly impaired"),
        CapabilityLevel.MODERATE: ("能力中度受损（中度失能）", "moderately impaired"),
        CapabilityLevel.SEVERE: ("能力重度受损（重度失能）", "severely impaired"),
        CapabilityLevel.COMPLETE_LOSS: ("能力完全丧失（完全失能）", "capability lost"),
    },
)

# (lowest total, highest total, level), best first
LEVEL_BANDS: tuple[tuple[int, int, CapabilityLevel], ...] = (
    (90, 90, CapabilityLevel.INTACT),
    (66, 89, CapabilityLevel.MILD),
    (46, 65, CapabilityLevel.MODERATE),
    (30, 45, CapabilityLevel.SEVERE),
    (0, 29, CapabilityLevel.COMPLETE_LOSS),
)


def level_for_total(total: int) -> CapabilityLevel:
    """The preliminary level (初步等级) of a total score 0-90."""
    for lo, hi, level in LEVEL_BANDS:
        if lo <= total <= hi:
            return level
    raise ValueError(f"a total score is 0..{TOTAL_MAX}, not {total}")


class AssessmentReason(Labelled):
    FIRST = "first"
    ROUTINE = "routine"
    IMMEDIATE = "immediate"
    REVIEW = "review"


set_labels(
    AssessmentReason,
    {
        AssessmentReason.FIRST: ("首次评估", "first assessment"),
        AssessmentReason.ROUTINE: ("常规评估", "routine re-assessment"),
        AssessmentReason.IMMEDIATE: ("即时评估", "after a change in condition"),
        AssessmentReason.REVIEW: ("复评", "review of a disputed result"),
    },
)


class CareLevel(IntEnum):
    """Care level 0-4 (our mapping of the capability level, see the module doc)."""

    NONE = 0
    LEVEL_1 = 1
    LEVEL_2 = 2
    LEVEL_3 = 3
    LEVEL_4 = 4

    @property
    def zh(self) -> str:
        return ("无需照护", "一级照护", "二级照护", "三级照护", "四级照护")[self.value]

    @property
    def en(self) -> str:
        return ("no care needs", "care level 1", "care level 2", "care level 3", "care level 4")[
            self.value
        ]


@dataclass(frozen=True, slots=True)
class AssessmentResult:
    part_scores: Mapping[Part, int]
    total: int
    preliminary_level: CapabilityLevel
    level: CapabilityLevel
    adjustments: tuple[tuple[str, str, str], ...]  # (code, en, zh) of each rule that applied
    care_level: CareLevel


class Assessment(BaseModel):
    """One assessment, kept as made (a correction is a new assessment with reason review)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: Text50 | None = Field(default=None, description="assigned by the gateway")
    elder_id: Text50
    assessed_on: date
    assessor: Text100
    second_assessor: Text100 | None = Field(
        default=None, description="the standard has two assessors on site"
    )
    reason: AssessmentReason = AssessmentReason.FIRST
    scores: dict[str, int] = Field(description="item key -> score, all 26 items (see ITEMS)")
    in_coma: bool = Field(default=False, description="昏迷: capability lost whatever the scores")
    dementia: bool = Field(default=False, description="diagnosed dementia, ICD-10 F00-F03")
    mental_disorder: bool = Field(
        default=False, description="other mental/behavioural disorder, F04-F99, by a psychiatrist"
    )
    risk_events_30d: int = Field(
        default=0, ge=0, le=100, description="falls, choking, self-harm, wandering in 30 days"
    )
    notes: Note | None = None
    recorded_seq: int = Field(
        default=0, ge=0, description="orders two assessments of the same day (later is higher)"
    )

    @field_validator("scores")
    @classmethod
    def _scores(cls, scores: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(scores) - set(ITEMS_BY_KEY))
        if unknown:
            raise CareError(
                "assessment_unknown_items",
                f"unknown items: {', '.join(unknown)}",
                f"未知的评估项目：{'、'.join(unknown)}",
            ).pydantic()
        missing = [i for i in ITEMS if i.key not in scores]
        if missing:
            raise CareError(
                "assessment_missing_items",
                f"every item is scored; missing: {', '.join(i.key for i in missing)}",
                f"须为全部26项评分，缺少：{'、'.join(f'{i.code}{i.zh}' for i in missing)}",
            ).pydantic()
        for item in ITEMS:
            s = scores[item.key]
            if isinstance(s, bool) or not 0 <= s <= item.max_score:
                raise CareError(
                    "assessment_score_range",
                    f"{item.code} {item.en}: {s} is outside 0-{item.max_score}",
                    f"{item.code}{item.zh}：{s}分超出0-{item.max_score}分",
                ).pydantic(item.key)
        return {i.key: scores[i.key] for i in ITEMS}  # the standard's order

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.in_coma and self.scores["consciousness"] != 0:
            raise CareError(
                "assessment_coma_consciousness",
                "in a coma, the consciousness item (B.3.9) scores 0",
                "昏迷者意识水平（B.3.9）应为0分",
            ).pydantic("scores.consciousness")
        if self.second_assessor is not None and self.second_assessor == self.assessor:
            raise CareError(
                "assessment_same_assessor",
                "the second assessor is the first one again",
                "两名评估员不能为同一人",
            ).pydantic("second_assessor")
        return self

    def part_scores(self) -> dict[Part, int]:
        out = dict.fromkeys(Part, 0)
        for item in ITEMS:
            out[item.part] += self.scores[item.key]
        return out

    @property
    def total(self) -> int:
        return sum(self.scores.values())

    def result(self) -> AssessmentResult:
        parts = self.part_scores()
        total = sum(parts.values())
        preliminary = level_for_total(total)
        adjustments: list[tuple[str, str, str]] = []
        if self.in_coma:
            level = CapabilityLevel.COMPLETE_LOSS
            adjustments.append(
                ("coma", "in a coma: capability lost", "昏迷：直接评定为能力完全丧失")
            )
        else:
            reasons: list[tuple[str, str, str]] = []
            if self.dementia:
                reasons.append(("dementia", "diagnosed dementia (F00-F03)", "确诊痴呆（F00-F03）"))
            if self.mental_disorder:
                reasons.append(
                    (
                        "mental_disorder",
                        "diagnosed mental or behavioural disorder (F04-F99)",
                        "确诊精神和行为障碍（F04-F99）",
                    )
                )
            if self.risk_events_30d >= 2:
                reasons.append(
                    (
                        "risk_events",
                        f"{self.risk_events_30d} care risk events in 30 days",
                        f"近30天发生{self.risk_events_30d}次照护风险事件",
                    )
                )
            # one level worse whatever the number of reasons
            level = preliminary.worse() if reasons else preliminary
            adjustments.extend(reasons)
        return AssessmentResult(
            part_scores=MappingProxyType(parts),
            total=total,
            preliminary_level=preliminary,
            level=level,
            adjustments=tuple(adjustments),
            care_level=CARE_LEVELS[level][0],
        )


# --------------------------------------------------------------------------------------------
# care level and eligibility
# --------------------------------------------------------------------------------------------

CARE_LEVELS: Mapping[CapabilityLevel, tuple[CareLevel, SelfCareStatus]] = MappingProxyType(
    {
        CapabilityLevel.INTACT: (CareLevel.NONE, SelfCareStatus.INDEPENDENT),
        CapabilityLevel.MILD: (CareLevel.LEVEL_1, SelfCareStatus.PARTLY_DEPENDENT),
        CapabilityLevel.MODERATE: (CareLevel.LEVEL_2, SelfCareStatus.DEPENDENT),
        CapabilityLevel.SEVERE: (CareLevel.LEVEL_3, SelfCareStatus.DEPENDENT),
        CapabilityLevel.COMPLETE_LOSS: (CareLevel.LEVEL_4, SelfCareStatus.DEPENDENT),
    }
)


class ServiceCategory(Labelled):
    """The glossary's service categories (to move to the service catalogue when it exists)."""

    MEALS = "meals"
    CLEANING = "cleaning"
    BATHING = "bathing"
    MEDICAL = "medical"
    EMERGENCY = "emergency"
    VISIT = "visit"
    COMPANIONSHIP = "companionship"
    ERRAND = "errand"


set_labels(
    ServiceCategory,
    {
        ServiceCategory.MEALS: ("助餐", "meals"),
        ServiceCategory.CLEANING: ("助洁", "cleaning"),
        ServiceCategory.BATHING: ("助浴", "bathing"),
        ServiceCategory.MEDICAL: ("助医", "medical"),
        ServiceCategory.EMERGENCY: ("助急", "emergency"),
        ServiceCategory.VISIT: ("巡访关爱", "visit"),
        ServiceCategory.COMPANIONSHIP: ("精神慰藉", "companionship"),
        ServiceCategory.ERRAND: ("代办", "errand"),
    },
)


@dataclass(frozen=True, slots=True)
class Eligibility:
    """What the current level entitles the elder to (our table, see the module doc)."""

    level: CapabilityLevel
    care_level: CareLevel
    self_care: SelfCareStatus
    services: frozenset[ServiceCategory]
    visit_every_days: int  # at least one visit (巡访) this often
    home_care_bed: bool  # a 家庭养老床位 may be set up


_ALL = frozenset(ServiceCategory)
_BASE = frozenset(
    {
        ServiceCategory.EMERGENCY,
        ServiceCategory.VISIT,
        ServiceCategory.COMPANIONSHIP,
        ServiceCategory.MEALS,
        ServiceCategory.ERRAND,
    }
)


def _row(level: CapabilityLevel, services: frozenset[ServiceCategory], days: int) -> Eligibility:
    care, self_care = CARE_LEVELS[level]
    return Eligibility(level, care, self_care, services, days, level.rank >= 2)


ELIGIBILITY: Mapping[CapabilityLevel, Eligibility] = MappingProxyType(
    {
        CapabilityLevel.INTACT: _row(CapabilityLevel.INTACT, _BASE, 30),
        CapabilityLevel.MILD: _row(
            CapabilityLevel.MILD, _BASE | {ServiceCategory.CLEANING, ServiceCategory.MEDICAL}, 14
        ),
        CapabilityLevel.MODERATE: _row(CapabilityLevel.MODERATE, _ALL, 7),
        CapabilityLevel.SEVERE: _row(CapabilityLevel.SEVERE, _ALL, 3),
        CapabilityLevel.COMPLETE_LOSS: _row(CapabilityLevel.COMPLETE_LOSS, _ALL, 1),
    }
)

REASSESS_EVERY = timedelta(days=365)


def eligibility_for(
    level: CapabilityLevel, table: Mapping[CapabilityLevel, Eligibility] = ELIGIBILITY
) -> Eligibility:
    return table[level]


def current_assessment(
    assessments: Iterable[Assessment], *, elder_id: str | None = None, today: date | None = None
) -> Assessment | None:
    """The latest assessment (by date, then `recorded_seq`), ignoring any dated after `today`."""
    candidates = [
        a
        for a in assessments
        if (elder_id is None or a.elder_id == elder_id)
        and (today is None or a.assessed_on <= today)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda a: (a.assessed_on, a.recorded_seq))


def current_eligibility(
    assessments: Iterable[Assessment],
    *,
    elder_id: str | None = None,
    today: date | None = None,
    table: Mapping[CapabilityLevel, Eligibility] = ELIGIBILITY,
) -> Eligibility | None:
    """The eligibility of the current assessment's final level; None when never assessed."""
    latest = current_assessment(assessments, elder_id=elder_id, today=today)
    return None if latest is None else table[latest.result().level]


def reassessment_due(latest: Assessment | None, today: date) -> bool:
    """Never assessed, or the latest assessment is `REASSESS_EVERY` old or older."""
    return latest is None or today - latest.assessed_on >= REASSESS_EVERY
