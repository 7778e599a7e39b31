"""Health records (健康档案): vital signs, check-ups and visits, trends per elder.

Vital signs (`VitalSigns`): one measuring session of blood pressure (mmHg), pulse (/min),
temperature (°C, axillary, the usual place in China), blood glucose (mmol/L, with its timing:
fasting, two hours after a meal, random) and weight (kg), with who measured, when and how
(by hand or by a device). Any subset may be given, at least one; systolic and diastolic come
together.

Two different judgements, kept apart:

- **Impossible values are refused** (`PLAUSIBLE`): outside what a living person can show, or
  almost surely a unit mix-up, for which the message says which (°F for °C, mg/dL for mmol/L,
  kPa for mmHg, 斤 for kg). A refused value is never stored.
- **Abnormal values are stored and flagged** (`VitalSigns.flags()`), each flag with a severity
  (abnormal: note it and follow up; urgent: tell staff now) and a reason in both languages:

  - blood pressure, 中国高血压防治指南 (2018; kept by the 2024 revision): high from 140
    systolic and/or 90 diastolic; grade 1 140-159/90-99, grade 2 160-179/100-109, grade 3
    from 180/110 (urgent). Low below 90/60.
  - pulse: below 60 or above 100; urgent at 40 or less or from 131 (NEWS2's red band).
  - temperature (axillary): fever from 37.3 (低热 37.3-38.0, 中度 38.1-39.0, 高热 from
    39.1, urgent); below 35.0 hypothermia (urgent).
  - glucose, 中国2型糖尿病防治指南 (2020): fasting from 7.0 high (diabetic range), 6.1-6.9
    impaired fasting glucose; two hours after a meal or random from 11.1 high, 7.8-11.0 (after
    a meal) impaired tolerance; below 3.9 low (below 3.0 urgent); from 16.7 urgent.
  - weight: no single value is abnormal; `weight_loss_flag` flags a loss of 5% or more within
    the trend window (30 days), a usual marker of clinically significant weight loss.

These are screening thresholds for a home-care station, not a diagnosis: the flag says what
to look at, a doctor says what it means.

Check-ups and visits (`Encounter`): a check-up (体检), a home visit (探访), a doctor's follow-up
(随访) or a clinic visit (就诊), with who, when, notes and findings.

Trends (`trends`): per measure the series in time order, the latest value, and the change over
30 days: latest minus the reference reading, which is the last reading at or before
`now - 30 days`, or, when there is none, the earliest reading inside the window.

Times are timezone-aware; `now` is passed in. Readings after `now` (plus a small clock skew)
are refused by `check_measured_at` and ignored by `trends`; a reading or a visit dated before
the elder's birth (when known) is refused by `check_measured_at` and `check_occurred_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from care._common import CareError, Labelled, Note, Text50, Text100, Text200, set_labels

__all__ = [
    "MAX_CLOCK_SKEW",
    "PLAUSIBLE",
    "WEIGHT_LOSS_PCT",
    "Encounter",
    "EncounterKind",
    "Flag",
    "GlucoseTiming",
    "Measure",
    "Point",
    "Severity",
    "Source",
    "Trend",
    "VitalSigns",
    "check_measured_at",
    "check_occurred_at",
    "series",
    "trends",
    "weight_loss_flag",
]


class GlucoseTiming(Labelled):
    FASTING = "fasting"
    AFTER_MEAL_2H = "after_meal_2h"
    RANDOM = "random"


class Source(Labelled):
    MANUAL = "manual"
    DEVICE = "device"


class Measure(Labelled):
    """One series of numbers (glucose is three: its timing changes what a value means)."""

    SYSTOLIC = "systolic"
    DIASTOLIC = "diastolic"
    PULSE = "pulse"
    TEMPERATURE = "temperature"
    GLUCOSE_FASTING = "glucose_fasting"
    GLUCOSE_AFTER_MEAL = "glucose_after_meal"
    GLUCOSE_RANDOM = "glucose_random"
    WEIGHT = "weight"


class Severity(Labelled):
    ABNORMAL = "abnormal"  # note it, follow up
    URGENT = "urgent"  # tell staff now


class EncounterKind(Labelled):
    CHECKUP = "checkup"
    VISIT = "visit"
    FOLLOW_UP = "follow_up"
    CLINIC = "clinic"


set_labels(
    GlucoseTiming,
    {
        GlucoseTiming.FASTING: ("空腹", "fasting"),
        GlucoseTiming.AFTER_MEAL_2H: ("餐后2小时", "2 h after a meal", ("餐后",)),
        GlucoseTiming.RANDOM: ("随机", "random"),
    },
)
set_labels(Source, {Source.MANUAL: ("手工录入", "by hand"), Source.DEVICE: ("设备", "device")})
set_labels(
    Measure,
    {
        Measure.SYSTOLIC: ("收缩压", "systolic pressure"),
        Measure.DIASTOLIC: ("舒张压", "diastolic pressure"),
        Measure.PULSE: ("脉搏", "pulse"),
        Measure.TEMPERATURE: ("体温", "temperature"),
        Measure.GLUCOSE_FASTING: ("空腹血糖", "fasting glucose"),
        Measure.GLUCOSE_AFTER_MEAL: ("餐后2小时血糖", "glucose 2 h after a meal"),
        Measure.GLUCOSE_RANDOM: ("随机血糖", "random glucose"),
        Measure.WEIGHT: ("体重", "weight"),
    },
)
set_labels(Severity, {Severity.ABNORMAL: ("异常", "abnormal"), Severity.URGENT: ("危急", "urgent")})
set_labels(
    EncounterKind,
    {
        EncounterKind.CHECKUP: ("体检", "check-up"),
        EncounterKind.VISIT: ("探访", "home visit", ("巡访", "入户")),
        EncounterKind.FOLLOW_UP: ("随访", "doctor's follow-up"),
        EncounterKind.CLINIC: ("就诊", "clinic visit", ("门诊",)),
    },
)

# What a living person can show (inclusive); outside is refused as impossible.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "systolic": (50, 300),
    "diastolic": (20, 200),
    "pulse": (20, 250),
    "temperature_c": (30.0, 45.0),
    "glucose_mmol_l": (0.5, 50.0),
    "weight_kg": (20.0, 300.0),
}
MAX_CLOCK_SKEW = timedelta(minutes=5)  # a device clock slightly ahead is not "the future"

_UNITS = {
    "systolic": ("mmHg", "mmHg"),
    "diastolic": ("mmHg", "mmHg"),
    "pulse": ("/min", "次/分"),
    "temperature_c": ("°C", "℃"),
    "glucose_mmol_l": ("mmol/L", "mmol/L"),
    "weight_kg": ("kg", "千克"),
}
_NAMES = {
    "systolic": ("systolic pressure", "收缩压"),
    "diastolic": ("diastolic pressure", "舒张压"),
    "pulse": ("pulse", "脉搏"),
    "temperature_c": ("temperature", "体温"),
    "glucose_mmol_l": ("blood glucose", "血糖"),
    "weight_kg": ("weight", "体重"),
}


def _unit_hint(name: str, value: float) -> tuple[str, str] | None:
    """A likely unit mix-up behind an impossible value, in English and Chinese."""
    if name == "temperature_c" and 86 <= value <= 113:
        return ("this looks like °F: enter °C", "疑似华氏度，请填写摄氏度")
    if name == "glucose_mmol_l" and 50 < value <= 900:
        return ("this looks like mg/dL: divide by 18 for mmol/L", "疑似mg/dL，除以18换算为mmol/L")
    if name in ("systolic", "diastolic") and 5 <= value < 30:
        return ("this looks like kPa: multiply by 7.5 for mmHg", "疑似千帕，乘以7.5换算为毫米汞柱")
    if name == "weight_kg" and 300 < value <= 600:
        return ("this looks like 斤: halve it for kg", "疑似以斤计，除以2换算为千克")
    return None


def _plausible(name: str, value: float | None) -> None:
    if value is None:
        return
    lo, hi = PLAUSIBLE[name]
    if lo <= value <= hi:
        return
    en_name, zh_name = _NAMES[name]
    unit_en, unit_zh = _UNITS[name]
    hint = _unit_hint(name, value)
    raise CareError(
        "vital_implausible",
        f"{en_name} {value:g} {unit_en} is impossible (plausible {lo:g}-{hi:g})"
        + (f": {hint[0]}" if hint else ""),
        f"{zh_name}{value:g}{unit_zh}不可能（合理范围{lo:g}-{hi:g}）"
        + (f"：{hint[1]}" if hint else ""),
    ).pydantic(name)


@dataclass(frozen=True, slots=True)
class Flag:
    """An abnormal value: which measure, how serious, why (both languages)."""

    measure: Measure
    severity: Severity
    code: str
    value: float
    reason_en: str
    reason_zh: str


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )


class VitalSigns(_Model):
    """One measuring session; any of the measures, at least one."""

    elder_id: Text50
    measured_at: AwareDatetime
    measured_by: Text100 = Field(description="who measured (person id or name)")
    source: Source = Source.MANUAL
    device_id: Text100 | None = None
    systolic: int | None = Field(default=None, description="mmHg")
    diastolic: int | None = Field(default=None, description="mmHg")
    pulse: int | None = Field(default=None, description="beats per minute")
    temperature_c: float | None = Field(default=None, description="°C, axillary")
    glucose_mmol_l: float | None = Field(default=None, description="mmol/L")
    glucose_timing: GlucoseTiming | None = None
    weight_kg: float | None = Field(default=None, description="kg")
    note: Note | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        values = (
            self.systolic,
            self.diastolic,
            self.pulse,
            self.temperature_c,
            self.glucose_mmol_l,
            self.weight_kg,
        )
        if all(v is None for v in values):
            raise CareError("vitals_empty", "no measurement given", "未填写任何测量值").pydantic()
        for name in PLAUSIBLE:
            _plausible(name, getattr(self, name))
        if (self.systolic is None) != (self.diastolic is None):
            raise CareError(
                "bp_pair",
                "blood pressure needs both systolic and diastolic",
                "血压须同时填写收缩压和舒张压",
            ).pydantic("diastolic" if self.diastolic is None else "systolic")
        if (
            self.systolic is not None
            and self.diastolic is not None
            and self.systolic <= self.diastolic
        ):
            raise CareError(
                "bp_order",
                f"systolic {self.systolic} is not above diastolic {self.diastolic}: swapped?",
                f"收缩压{self.systolic}不高于舒张压{self.diastolic}：是否填反？",
            ).pydantic("systolic")
        if (self.glucose_mmol_l is None) != (self.glucose_timing is None):
            raise CareError(
                "glucose_timing",
                "a glucose value needs its timing (fasting, after a meal, random), and only then",
                "血糖须注明测量时间（空腹、餐后2小时、随机）",
            ).pydantic("glucose_timing")
        if self.source is Source.DEVICE and not self.device_id:
            raise CareError(
                "device_id_required",
                "a device reading needs the device id",
                "设备测量须填写设备编号",
            ).pydantic("device_id")
        return self

    def glucose_measure(self) -> Measure | None:
        return {
            GlucoseTiming.FASTING: Measure.GLUCOSE_FASTING,
            GlucoseTiming.AFTER_MEAL_2H: Measure.GLUCOSE_AFTER_MEAL,
            GlucoseTiming.RANDOM: Measure.GLUCOSE_RANDOM,
            None: None,
        }[self.glucose_timing]

    def values(self) -> dict[Measure, float]:
        """The measures taken in this session."""
        out: dict[Measure, float] = {}
        if self.systolic is not None and self.diastolic is not None:
            out[Measure.SYSTOLIC] = self.systolic
            out[Measure.DIASTOLIC] = self.diastolic
        if self.pulse is not None:
            out[Measure.PULSE] = self.pulse
        if self.temperature_c is not None:
            out[Measure.TEMPERATURE] = self.temperature_c
        g = self.glucose_measure()
        if g is not None and self.glucose_mmol_l is not None:
            out[g] = self.glucose_mmol_l
        if self.weight_kg is not None:
            out[Measure.WEIGHT] = self.weight_kg
        return out

    def flags(self) -> list[Flag]:
        """The abnormal values of this session (see the module doc for the thresholds)."""
        out: list[Flag] = []
        if self.systolic is not None and self.diastolic is not None:
            out.extend(_bp_flags(self.systolic, self.diastolic))
        if self.pulse is not None:
            out.extend(_pulse_flags(self.pulse))
        if self.temperature_c is not None:
            out.extend(_temperature_flags(self.temperature_c))
        if self.glucose_mmol_l is not None and self.glucose_timing is not None:
            out.extend(_glucose_flags(self.glucose_mmol_l, self.glucose_timing))
        return out


def _bp_flags(sbp: int, dbp: int) -> list[Flag]:
    bp = f"{sbp}/{dbp} mmHg"
    if sbp >= 180 or dbp >= 110:
        return [
            Flag(
                Measure.SYSTOLIC if sbp >= 180 else Measure.DIASTOLIC,
                Severity.URGENT,
                "bp_high_grade3",
                sbp if sbp >= 180 else dbp,
                f"blood pressure {bp}: grade 3 hypertension range (>= 180/110)",
                f"血压{bp}：3级高血压水平（≥180/110）",
            )
        ]
    if sbp >= 140 or dbp >= 90:
        grade = 2 if (sbp >= 160 or dbp >= 100) else 1
        return [
            Flag(
                Measure.SYSTOLIC if sbp >= 140 else Measure.DIASTOLIC,
                Severity.ABNORMAL,
                f"bp_high_grade{grade}",
                sbp if sbp >= 140 else dbp,
                f"blood pressure {bp}: high (>= 140/90), grade {grade} range",
                f"血压{bp}：偏高（≥140/90），{grade}级高血压水平",
            )
        ]
    if sbp < 90 or dbp < 60:
        return [
            Flag(
                Measure.SYSTOLIC if sbp < 90 else Measure.DIASTOLIC,
                Severity.ABNORMAL,
                "bp_low",
                sbp if sbp < 90 else dbp,
                f"blood pressure {bp}: low (< 90/60)",
                f"血压{bp}：偏低（<90/60）",
            )
        ]
    return []


def _pulse_flags(p: int) -> list[Flag]:
    if p <= 40 or p >= 131:
        return [
            Flag(
                Measure.PULSE,
                Severity.URGENT,
                "pulse_extreme",
                p,
                f"pulse {p}/min: at or beyond 40 or 131",
                f"脉搏{p}次/分：≤40或≥131",
            )
        ]
    if p < 60:
        return [
            Flag(
                Measure.PULSE,
                Severity.ABNORMAL,
                "pulse_low",
                p,
                f"pulse {p}/min: slow (< 60)",
                f"脉搏{p}次/分：过缓（<60）",
            )
        ]
    if p > 100:
        return [
            Flag(
                Measure.PULSE,
                Severity.ABNORMAL,
                "pulse_high",
                p,
                f"pulse {p}/min: fast (> 100)",
                f"脉搏{p}次/分：过速（>100）",
            )
        ]
    return []


def _temperature_flags(t: float) -> list[Flag]:
    if t < 35.0:
        return [
            Flag(
                Measure.TEMPERATURE,
                Severity.URGENT,
                "temperature_low",
                t,
                f"temperature {t:g} °C: hypothermia (< 35.0)",
                f"体温{t:g}℃：体温过低（<35.0）",
            )
        ]
    if t >= 39.1:
        return [
            Flag(
                Measure.TEMPERATURE,
                Severity.URGENT,
                "fever_high",
                t,
                f"temperature {t:g} °C: high fever (>= 39.1)",
                f"体温{t:g}℃：高热（≥39.1）",
            )
        ]
    if t >= 37.3:
        moderate = t >= 38.1
        return [
            Flag(
                Measure.TEMPERATURE,
                Severity.ABNORMAL,
                "fever_moderate" if moderate else "fever_low",
                t,
                f"temperature {t:g} °C: fever (>= 37.3)" + (", moderate" if moderate else ""),
                f"体温{t:g}℃：" + ("中度发热（38.1-39.0）" if moderate else "低热（37.3-38.0）"),
            )
        ]
    return []


def _glucose_flags(g: float, timing: GlucoseTiming) -> list[Flag]:
    measure = {
        GlucoseTiming.FASTING: Measure.GLUCOSE_FASTING,
        GlucoseTiming.AFTER_MEAL_2H: Measure.GLUCOSE_AFTER_MEAL,
        GlucoseTiming.RANDOM: Measure.GLUCOSE_RANDOM,
    }[timing]
    label_en, label_zh = f"{timing.en} glucose {g:g} mmol/L", f"{timing.zh}血糖{g:g}mmol/L"
    if g < 3.9:
        urgent = g < 3.0
        return [
            Flag(
                measure,
                Severity.URGENT if urgent else Severity.ABNORMAL,
                "glucose_low",
                g,
                f"{label_en}: low (< 3.9)" + (", below 3.0" if urgent else ""),
                f"{label_zh}：低血糖（<3.9）" + ("，低于3.0" if urgent else ""),
            )
        ]
    if g >= 16.7:
        return [
            Flag(
                measure,
                Severity.URGENT,
                "glucose_very_high",
                g,
                f"{label_en}: very high (>= 16.7)",
                f"{label_zh}：显著升高（≥16.7）",
            )
        ]
    if timing is GlucoseTiming.FASTING:
        if g >= 7.0:
            return [
                Flag(
                    measure,
                    Severity.ABNORMAL,
                    "glucose_high",
                    g,
                    f"{label_en}: high (fasting >= 7.0)",
                    f"{label_zh}：偏高（空腹≥7.0）",
                )
            ]
        if g >= 6.1:
            return [
                Flag(
                    measure,
                    Severity.ABNORMAL,
                    "glucose_impaired_fasting",
                    g,
                    f"{label_en}: impaired fasting glucose (6.1-6.9)",
                    f"{label_zh}：空腹血糖受损（6.1-6.9）",
                )
            ]
        return []
    if g >= 11.1:
        return [
            Flag(
                measure,
                Severity.ABNORMAL,
                "glucose_high",
                g,
                f"{label_en}: high (>= 11.1)",
                f"{label_zh}：偏高（≥11.1）",
            )
        ]
    if timing is GlucoseTiming.AFTER_MEAL_2H and g >= 7.8:
        return [
            Flag(
                measure,
                Severity.ABNORMAL,
                "glucose_impaired_tolerance",
                g,
                f"{label_en}: impaired glucose tolerance (7.8-11.0)",
                f"{label_zh}：糖耐量受损（7.8-11.0）",
            )
        ]
    return []


def check_measured_at(vitals: VitalSigns, *, now: datetime, born: date | None = None) -> None:
    """Refuse with `CareError` a reading from the future (beyond `MAX_CLOCK_SKEW`), or from
    before the elder was born (`born`, when known; the day in `now`'s zone)."""
    at = vitals.measured_at
    if at > now + MAX_CLOCK_SKEW:
        raise CareError(
            "measured_in_future",
            f"measured at {at.isoformat()}, after now",
            f"测量时间{at.isoformat()}晚于当前时间",
        )
    if born is not None and (day := at.astimezone(now.tzinfo).date()) < born:
        raise CareError(
            "measured_before_birth",
            f"measured on {day}, before the elder was born ({born})",
            f"测量日期{day}早于出生日期{born}",
        )


# --------------------------------------------------------------------------------------------
# check-ups and visits
# --------------------------------------------------------------------------------------------


class Encounter(_Model):
    """A check-up, home visit, follow-up or clinic visit, with notes."""

    elder_id: Text50
    kind: EncounterKind
    occurred_at: AwareDatetime
    recorded_by: Text100 = Field(description="who entered it (person id)")
    seen_by: Text100 | None = Field(default=None, description="the doctor or visitor")
    place: Text100 | None = Field(default=None, description="clinic or 'home'")
    notes: Note
    findings: tuple[Text200, ...] = Field(default=(), max_length=30)
    next_due: date | None = Field(default=None, description="when the next one is due")

    @model_validator(mode="after")
    def _next_after(self) -> Self:
        if self.next_due is not None and self.next_due < self.occurred_at.date():
            raise CareError(
                "next_due_before",
                "the next one is due before this one happened",
                "下次日期早于本次",
            ).pydantic("next_due")
        return self


def check_occurred_at(encounter: Encounter, *, now: datetime, born: date | None = None) -> None:
    """Refuse with `CareError` a check-up or visit in the future (beyond `MAX_CLOCK_SKEW`), or
    before the elder was born (`born`, when known; the day in `now`'s zone)."""
    at = encounter.occurred_at
    if at > now + MAX_CLOCK_SKEW:
        raise CareError("occurred_in_future", "it happened after now", "发生时间晚于当前时间")
    if born is not None and (day := at.astimezone(now.tzinfo).date()) < born:
        raise CareError(
            "occurred_before_birth",
            f"it happened on {day}, before the elder was born ({born})",
            f"发生日期{day}早于出生日期{born}",
        )


# --------------------------------------------------------------------------------------------
# trends
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Trend:
    """One measure's series, its latest value and its change over the window."""

    measure: Measure
    points: tuple[Point, ...]
    latest: Point | None
    reference: Point | None  # what `change` is measured from
    change: float | None  # latest - reference
    change_pct: float | None
    mean_window: float | None  # mean of the readings inside the window


def series(readings: Iterable[VitalSigns], measure: Measure) -> tuple[Point, ...]:
    """The measure's readings in time order (ties keep the input order)."""
    points = [
        Point(r.measured_at, v) for r in readings if (v := r.values().get(measure)) is not None
    ]
    return tuple(sorted(points, key=lambda p: p.at))


def _trend(measure: Measure, points: tuple[Point, ...], now: datetime, window: timedelta) -> Trend:
    past = tuple(p for p in points if p.at <= now + MAX_CLOCK_SKEW)
    if not past:
        return Trend(measure, (), None, None, None, None, None)
    latest = past[-1]
    start = now - window
    before = [p for p in past if p.at <= start]
    inside = [p for p in past if p.at > start]
    reference = before[-1] if before else (inside[0] if inside else None)
    if reference is latest:
        reference = None
    change = None if reference is None else round(latest.value - reference.value, 2)
    pct = (
        None
        if reference is None or change is None or reference.value == 0
        else round(100.0 * change / reference.value, 1)
    )
    mean = round(sum(p.value for p in inside) / len(inside), 2) if inside else None
    return Trend(measure, past, latest, reference, change, pct, mean)


def trends(
    readings: Iterable[VitalSigns],
    *,
    now: datetime,
    elder_id: str | None = None,
    window: timedelta = timedelta(days=30),
) -> dict[Measure, Trend]:
    """Per measure with at least one reading: its `Trend` as of `now`.

    `elder_id` keeps only that elder's readings (so a mixed list cannot mix elders).
    """
    rs = [r for r in readings if elder_id is None or r.elder_id == elder_id]
    out: dict[Measure, Trend] = {}
    for m in Measure:
        pts = series(rs, m)
        if pts:
            t = _trend(m, pts, now, window)
            if t.latest is not None:
                out[m] = t
    return out


WEIGHT_LOSS_PCT = 5.0


def weight_loss_flag(trend: Trend) -> Flag | None:
    """A loss of `WEIGHT_LOSS_PCT`% or more over the window (an abnormal flag), else None."""
    if trend.measure is not Measure.WEIGHT or trend.change_pct is None or trend.latest is None:
        return None
    if trend.change_pct > -WEIGHT_LOSS_PCT:
        return None
    lost = -trend.change_pct
    return Flag(
        Measure.WEIGHT,
        Severity.ABNORMAL,
        "weight_loss",
        trend.latest.value,
        f"weight down {lost:g}% over the period (>= {WEIGHT_LOSS_PCT:g}%)",
        f"体重下降{lost:g}%（≥{WEIGHT_LOSS_PCT:g}%）",
    )
