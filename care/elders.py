"""The elder registry (老年人信息台账): who the station looks after, where, and on what terms.

Shapes (pydantic v2, frozen, unknown fields refused):

- `ElderCreate`: what staff enter or import. Either `id_card` or `birth_date` is required;
  `birth_date` and `gender` are read from the ID number when not given, and must agree with it
  when they are.
- `ElderUpdate`: a partial change (PATCH): only the fields sent change; required fields cannot
  be cleared; the status is not here (it has its own state machine, `change_status`).
- `Elder`: the registered record (what the gateway stores and the registers read): an id, a
  certain `gender` and `birth_date`, and the current `status`.

Rules that need the date (`today` is always passed in; this room has no clock) are in
`check_registration`, called by `register_elder` and `apply_update`, and by the import:

- the birth date is not in the future, and the age is at most 120 (older is a typo);
- **under 60**: refused unless `under_60_reason` says why the station takes this person on
  (e.g. a disabled spouse living with an elder). A reason, not a bare flag, so the exception is
  visible and auditable in the register; the under-60 person is counted in the "60岁以下" band;
- `centenarian` (百岁) is refused for anyone under 100, and added automatically from 100 on
  (`Elder.categories_on(today)`): it follows from the birth date, so it is never stored twice;
- `hukou.resident_since` is not in the future nor before the birth.

Age and age band are derived from `birth_date` and `today` (`age_on`, `age_band_of`), never
stored. On a birthday the elder is that age (the civil-affairs reading of 周岁).

Statuses: active, away (since/until, until required), in_hospital (since, until optional),
moved (since), deceased (since = date of death). `ALLOWED_MOVES` is the state machine: nothing
follows deceased; moved may come back to active. Status dates run forward and are not in the
future (a death reported late may carry an earlier date).

Service tier (free 无偿 / low_cost 低偿 / paid 有偿): free and low-cost need a `tier_basis`
naming the elder's categories or an assessment that justify it. `suggest_service_tier` applies
the tier rules of the station's plan in the seeds (社区居家养老方案, 服务方式) as a suggestion
that staff confirm, never as a decision.

Coordinates carry their datum: Chinese map SDKs (AMap, Tencent) give GCJ-02, Baidu BD-09,
GPS WGS-84; mixing them puts a door 300-500 m off. Points outside China's bounding box are
refused (nearly always swapped latitude/longitude or a 0,0 placeholder).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from care._common import (
    CareError,
    Labelled,
    Note,
    PersonName,
    Phone,
    Problem,
    Refused,
    Text20,
    Text50,
    Text100,
    Text200,
    in_declared_order,
    normalize_phone,
    problems_from,
    set_labels,
)
from care.idcard import IdCardError, mask_id_card, parse_id_card
from care.people import Gender

__all__ = [
    "AGE_BANDS",
    "ALLOWED_MOVES",
    "MAX_AGE",
    "MAX_CONTACTS",
    "MIN_AGE",
    "ON_BOOKS",
    "Address",
    "AgeBand",
    "CareError",
    "Category",
    "CoordinateSystem",
    "Coordinates",
    "Doctor",
    "Elder",
    "ElderCreate",
    "ElderStatus",
    "ElderUpdate",
    "EmergencyContact",
    "Gender",
    "Hukou",
    "HukouKind",
    "LivingSituation",
    "Problem",
    "Refused",
    "Relation",
    "SelfCareStatus",
    "ServiceTier",
    "StatusEntry",
    "StatusTransitionError",
    "TierBasis",
    "TierSuggestion",
    "age_band_of",
    "age_on",
    "apply_update",
    "change_status",
    "check_registration",
    "initial_status",
    "is_overdue",
    "normalize_phone",
    "problems_from",
    "register_elder",
    "suggest_service_tier",
]

MIN_AGE = 60  # 老年人: 60 周岁及以上 (《老年人权益保障法》第二条)
MAX_AGE = 120  # older than any living person: a typo in the birth date
MAX_CONTACTS = 3  # emergency contacts per elder (the Excel register has three column groups)


# --------------------------------------------------------------------------------------------
# vocabularies
# --------------------------------------------------------------------------------------------


class LivingSituation(Labelled):
    """How the elder lives. Exclusive choices here (in statistics 空巢 includes 独居)."""

    LIVES_ALONE = "lives_alone"  # 独居
    EMPTY_NEST = "empty_nest"  # 空巢: only with a spouse or other elders, no children at home
    WITH_FAMILY = "with_family"  # 与家人同住: with children or other younger family


class SelfCareStatus(Labelled):
    INDEPENDENT = "independent"  # 自理
    PARTLY_DEPENDENT = "partly_dependent"  # 半自理
    DEPENDENT = "dependent"  # 失能


class Category(Labelled):
    """Assistance and other categories (a set per elder). Pinyin kept for legal categories."""

    DIBAO = "dibao"  # 低保: minimum living guarantee
    TEKUN = "tekun"  # 特困: destitute persons' support
    SANWU = "sanwu"  # 三无: no income, no ability to work, no one obliged to support (urban)
    WUBAO = "wubao"  # 五保: the rural counterpart (both now folded into 特困, kept as recorded)
    SPECIAL_CARE = "special_care"  # 重点优抚: veterans, martyrs' families ...
    JISHENG_TEFU = "jisheng_tefu"  # 计生特扶: family-planning special hardship (失独/伤残)
    CENTENARIAN = "centenarian"  # 百岁: derived from the birth date (see module doc)
    DISABLED = "disabled"  # 残疾: holds a disability certificate
    HARDSHIP = "hardship"  # 困难: other economic hardship recognised by the community
    LOW_INCOME = "low_income"  # 低收入 (低边)
    MODEL_WORKER = "model_worker"  # 劳模: the seed's plan serves them free from 75


class ServiceTier(Labelled):
    FREE = "free"  # 无偿
    LOW_COST = "low_cost"  # 低偿
    PAID = "paid"  # 有偿


class HukouKind(Labelled):
    LOCAL = "local"  # 本地户籍: household registration in this community
    NON_LOCAL = "non_local"  # 外地户籍: registered elsewhere, lives here


class Relation(Labelled):
    CHILD = "child"
    CHILD_IN_LAW = "child_in_law"
    SPOUSE = "spouse"
    SIBLING = "sibling"
    GRANDCHILD = "grandchild"
    OTHER_RELATIVE = "other_relative"
    NEIGHBOUR = "neighbour"
    FRIEND = "friend"
    OTHER = "other"


class ElderStatus(Labelled):
    ACTIVE = "active"
    AWAY = "away"
    IN_HOSPITAL = "in_hospital"
    MOVED = "moved"
    DECEASED = "deceased"


class AgeBand(Labelled):
    UNDER_60 = "under_60"
    AGE_60_69 = "60-69"
    AGE_70_79 = "70-79"
    AGE_80_89 = "80-89"
    AGE_90_99 = "90-99"
    AGE_100_PLUS = "100+"

    @property
    def rank(self) -> int:
        """0 for under 60 ... 5 for 100+: bands compare by age."""
        return AGE_BANDS.index(self)


class CoordinateSystem(Labelled):
    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"


set_labels(
    LivingSituation,
    {
        LivingSituation.LIVES_ALONE: ("独居", "lives alone", ("独居老人", "孤寡")),
        LivingSituation.EMPTY_NEST: ("空巢", "empty nest", ("空巢老人", "与配偶同住", "老两口")),
        LivingSituation.WITH_FAMILY: (
            "与家人同住",
            "with family",
            ("与子女同住", "同住", "与家人", "与子女"),
        ),
    },
)
set_labels(
    SelfCareStatus,
    {
        SelfCareStatus.INDEPENDENT: ("自理", "independent", ("能自理", "生活自理")),
        SelfCareStatus.PARTLY_DEPENDENT: ("半自理", "partly dependent", ("部分自理",)),
        SelfCareStatus.DEPENDENT: ("失能", "dependent", ("不能自理", "完全不能自理", "全护理")),
    },
)
set_labels(
    Category,
    {
        Category.DIBAO: ("低保", "dibao (minimum living guarantee)", ("低保户", "城镇低保")),
        Category.TEKUN: ("特困", "tekun (destitute support)", ("特困人员", "特困供养")),
        Category.SANWU: ("三无", "sanwu (no income, no work ability, no supporter)", ("三无老人",)),
        Category.WUBAO: ("五保", "wubao (rural five guarantees)", ("五保户",)),
        Category.SPECIAL_CARE: (
            "重点优抚",
            "special care (veterans' families)",
            ("优抚", "优抚对象"),
        ),
        Category.JISHENG_TEFU: (
            "计生特扶",
            "family-planning special hardship",
            ("计生特殊家庭", "失独", "计划生育特殊家庭"),
        ),
        Category.CENTENARIAN: ("百岁", "centenarian", ("百岁老人",)),
        Category.DISABLED: ("残疾", "disabled", ("残疾人", "残障")),
        Category.HARDSHIP: ("困难", "hardship", ("困难老人", "经济困难")),
        Category.LOW_INCOME: ("低收入", "low income", ("低边", "低保边缘")),
        Category.MODEL_WORKER: ("劳模", "model worker", ("劳动模范",)),
    },
)
set_labels(
    ServiceTier,
    {
        ServiceTier.FREE: ("无偿", "free", ("免费", "无偿服务")),
        ServiceTier.LOW_COST: ("低偿", "low cost", ("低偿服务",)),
        ServiceTier.PAID: ("有偿", "paid", ("有偿服务", "自费")),
    },
)
set_labels(
    HukouKind,
    {
        HukouKind.LOCAL: ("本地", "local", ("本地户籍", "本社区", "本社区户籍")),
        HukouKind.NON_LOCAL: ("外地", "non-local", ("外地户籍", "非本地", "非本地户籍")),
    },
)
set_labels(
    Relation,
    {
        Relation.CHILD: ("子女", "child", ("儿子", "女儿", "子", "女", "son", "daughter")),
        Relation.CHILD_IN_LAW: ("儿媳/女婿", "child-in-law", ("儿媳", "女婿", "媳妇")),
        Relation.SPOUSE: ("配偶", "spouse", ("老伴", "丈夫", "妻子", "爱人")),
        Relation.SIBLING: ("兄弟姐妹", "sibling", ("兄弟", "姐妹", "哥哥", "姐姐", "弟弟", "妹妹")),
        Relation.GRANDCHILD: ("孙辈", "grandchild", ("孙子", "孙女", "外孙", "外孙女")),
        Relation.OTHER_RELATIVE: ("其他亲属", "other relative", ("亲属", "侄子", "侄女", "外甥")),
        Relation.NEIGHBOUR: ("邻居", "neighbour", ("neighbor",)),
        Relation.FRIEND: ("朋友", "friend", ()),
        Relation.OTHER: ("其他", "other", ()),
    },
)
set_labels(
    ElderStatus,
    {
        ElderStatus.ACTIVE: ("在册", "active", ("正常",)),
        ElderStatus.AWAY: ("外出", "away", ("暂离", "外出暂住")),
        ElderStatus.IN_HOSPITAL: ("住院", "in hospital", ()),
        ElderStatus.MOVED: ("迁出", "moved", ("搬离",)),
        ElderStatus.DECEASED: ("去世", "deceased", ("已故", "死亡")),
    },
)
set_labels(
    AgeBand,
    {
        AgeBand.UNDER_60: ("60岁以下", "under 60"),
        AgeBand.AGE_60_69: ("60-69岁", "60-69"),
        AgeBand.AGE_70_79: ("70-79岁", "70-79"),
        AgeBand.AGE_80_89: ("80-89岁", "80-89"),
        AgeBand.AGE_90_99: ("90-99岁", "90-99"),
        AgeBand.AGE_100_PLUS: ("100岁及以上", "100+"),
    },
)
set_labels(
    CoordinateSystem,
    {
        CoordinateSystem.WGS84: ("WGS-84（GPS）", "WGS-84 (GPS)"),
        CoordinateSystem.GCJ02: ("GCJ-02（高德/腾讯）", "GCJ-02 (AMap, Tencent)"),
        CoordinateSystem.BD09: ("BD-09（百度）", "BD-09 (Baidu)"),
    },
)

AGE_BANDS: tuple[AgeBand, ...] = tuple(AgeBand)
# On the station's books: counted in the registers, visited, paged for.
ON_BOOKS: frozenset[ElderStatus] = frozenset(
    {ElderStatus.ACTIVE, ElderStatus.AWAY, ElderStatus.IN_HOSPITAL}
)


# --------------------------------------------------------------------------------------------
# age
# --------------------------------------------------------------------------------------------


def age_on(birth_date: date, today: date) -> int:
    """Completed years (周岁) on `today`; on the birthday the new age counts.

    A 29 February birthday counts on 1 March in common years.
    """
    if birth_date > today:
        raise ValueError("the birth date is after today")
    before_birthday = (today.month, today.day) < (birth_date.month, birth_date.day)
    return today.year - birth_date.year - before_birthday


def age_band_of(age: int) -> AgeBand:
    if age < 60:
        return AgeBand.UNDER_60
    if age >= 100:
        return AgeBand.AGE_100_PLUS
    return AGE_BANDS[(age - 60) // 10 + 1]


# --------------------------------------------------------------------------------------------
# parts of the record
# --------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )


# China's extent with a margin: lat 3.5..54, lon 73..136 (Zengmu Ansha to Mohe, Pamir to Fuyuan).
_CHINA_LAT = (3.5, 54.0)
_CHINA_LON = (73.0, 136.0)


class Coordinates(_Model):
    lat: float = Field(ge=-90, le=90, description="latitude, degrees north")
    lon: float = Field(ge=-180, le=180, description="longitude, degrees east")
    system: CoordinateSystem = Field(
        default=CoordinateSystem.GCJ02, description="datum; Chinese map pickers give GCJ-02"
    )

    @model_validator(mode="after")
    def _in_china(self) -> Self:
        lat_ok = _CHINA_LAT[0] <= self.lat <= _CHINA_LAT[1]
        if not (lat_ok and _CHINA_LON[0] <= self.lon <= _CHINA_LON[1]):
            raise CareError(
                "coordinates_outside_china",
                f"({self.lat}, {self.lon}) is outside China: latitude and longitude swapped, "
                "or a 0,0 placeholder?",
                f"坐标（{self.lat}，{self.lon}）不在中国境内：经纬度是否填反？",
            ).pydantic()
        return self


def _door_part(value: str | None, suffix: str) -> str:
    if not value:
        return ""
    # "3" -> "3栋"; "3号楼" stays: staff type both.
    return value + suffix if value.isdigit() else value


class Address(_Model):
    """Residence down to the room (区/街道/社区/小区/楼栋/单元/室)."""

    district: Text50 = Field(description="区 / 县")
    subdistrict: Text50 = Field(description="街道 / 镇")
    community: Text50 = Field(description="社区 / 村")
    estate: Text50 | None = Field(default=None, description="小区")
    building: Text20 | None = Field(default=None, description="楼栋")
    unit: Text20 | None = Field(default=None, description="单元")
    room: Text20 | None = Field(default=None, description="室 / 房号")
    coordinates: Coordinates | None = None

    @model_validator(mode="after")
    def _unit_needs_building(self) -> Self:
        if self.unit and not self.building:
            raise CareError(
                "address_unit_without_building",
                "a unit needs its building",
                "填写单元时须填写楼栋",
            ).pydantic("building")
        return self

    def one_line(self) -> str:
        """ "朝阳区 八里庄街道 红庙社区 金台小区3栋2单元501室" for screens and the old column."""
        place = " ".join(p for p in (self.district, self.subdistrict, self.community) if p)
        door = (
            (self.estate or "")
            + _door_part(self.building, "栋")
            + _door_part(self.unit, "单元")
            + _door_part(self.room, "室")
        )
        return f"{place} {door}".strip()


class Hukou(_Model):
    """Household registration (户籍) as against residence (the address)."""

    kind: HukouKind
    place: Text200 | None = Field(default=None, description="户籍地址; required when non-local")
    resident_since: date | None = Field(
        default=None, description="living at the address since (plans ask for e.g. two years)"
    )

    @model_validator(mode="after")
    def _place_when_non_local(self) -> Self:
        if self.kind is HukouKind.NON_LOCAL and not self.place:
            raise CareError(
                "hukou_place_required",
                "a non-local household registration needs its place",
                "外地户籍须填写户籍地址",
            ).pydantic("place")
        return self

    def years_resident(self, today: date) -> int | None:
        return None if self.resident_since is None else age_on(self.resident_since, today)


class EmergencyContact(_Model):
    name: PersonName
    relation: Relation
    phone: Phone
    holds_key: bool = Field(default=False, description="holds a key to the elder's home")
    note: Text100 | None = None


class Doctor(_Model):
    """The family doctor (家庭医生) or clinic the elder is signed with."""

    name: PersonName | None = None
    clinic: Text100 | None = Field(default=None, description="e.g. 社区卫生服务中心")
    phone: Phone | None = None

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if not (self.name or self.clinic):
            raise CareError(
                "doctor_empty", "a doctor needs a name or a clinic", "家庭医生须填写姓名或机构"
            ).pydantic()
        return self


class TierBasis(_Model):
    """Why the elder has a free or low-cost tier: text, and the categories or assessment."""

    text: Text200 = Field(description="e.g. 75周岁以上城镇低保户，按方案享受无偿服务")
    categories: frozenset[Category] = Field(
        default=frozenset(), description="the elder's categories that justify the tier"
    )
    assessment_id: Text50 | None = Field(
        default=None, description="the assessment that justifies it"
    )

    @field_serializer("categories", when_used="json")
    def _categories_json(self, value: frozenset[Category]) -> list[Category]:
        return in_declared_order(value)


def _dedupe(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


class _ElderFields(_Model):
    """Fields shared by the input shape and the record."""

    name: PersonName
    id_card: str | None = Field(
        default=None, description="居民身份证号码 (18 characters); stored encrypted by the gateway"
    )
    phone: Phone | None = None
    address: Address
    hukou: Hukou | None = None
    living_situation: LivingSituation
    self_care: SelfCareStatus
    categories: frozenset[Category] = frozenset()
    service_tier: ServiceTier = ServiceTier.PAID
    tier_basis: TierBasis | None = None
    emergency_contacts: tuple[EmergencyContact, ...] = Field(
        default=(), max_length=MAX_CONTACTS, description="at most three; more family go in pairings"
    )
    doctor: Doctor | None = None
    allergies: tuple[Text50, ...] = Field(default=(), max_length=30)
    conditions: tuple[Text50, ...] = Field(
        default=(), max_length=30, description="chronic conditions"
    )
    notes: Note | None = None
    under_60_reason: Text200 | None = Field(
        default=None, description="why someone under 60 is registered (else refused)"
    )

    @field_serializer("categories", when_used="json")
    def _categories_json(self, value: frozenset[Category]) -> list[Category]:
        return in_declared_order(value)

    @field_validator("id_card")
    @classmethod
    def _id_card(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            # Without today here; check_registration repeats it with the date.
            return parse_id_card(value, today=None).number
        except IdCardError as err:
            raise err.pydantic() from None

    @field_validator("allergies", "conditions")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _dedupe(value)

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        tier, basis = self.service_tier, self.tier_basis
        if tier is not ServiceTier.PAID:
            if basis is None or not (basis.categories or basis.assessment_id):
                raise CareError(
                    "tier_basis_required",
                    f"a {tier.en} service tier needs its basis: the categories or the "
                    "assessment that justify it",
                    f"{tier.zh}服务须注明依据：符合的类别或能力评估",
                ).pydantic("tier_basis")
            missing = basis.categories - self.categories
            if missing:
                names = "、".join(sorted(c.zh for c in missing))
                raise CareError(
                    "tier_basis_category",
                    f"the tier basis cites {sorted(c.value for c in missing)}, "
                    "which the elder is not in",
                    f"服务依据中的类别（{names}）不在该老人的类别中",
                ).pydantic("tier_basis.categories")
        seen: set[tuple[str, str]] = set()
        for c in self.emergency_contacts:
            if (c.name, c.phone) in seen:
                raise CareError(
                    "contact_duplicate",
                    f"emergency contact {c.name} is listed twice",
                    f"紧急联系人{c.name}重复",
                ).pydantic("emergency_contacts")
            seen.add((c.name, c.phone))
        return self


def _birth_and_gender_from_card(data: Any) -> Any:
    """Fill birth_date and gender from a valid ID number when they were not given."""
    if not isinstance(data, dict) or not isinstance(data.get("id_card"), str):
        return data
    try:
        card = parse_id_card(data["id_card"], today=None)
    except IdCardError:
        return data  # the field validator reports it, at its field
    filled = dict(data)
    if filled.get("birth_date") is None:
        filled["birth_date"] = card.birth_date
    if filled.get("gender") is None:
        filled["gender"] = card.gender
    return filled


def _card_agrees(id_card: str | None, birth_date: date | None, gender: Gender | None) -> None:
    if id_card is None:
        return
    card = parse_id_card(id_card, today=None)
    if birth_date is not None and birth_date != card.birth_date:
        raise CareError(
            "birth_date_id_mismatch",
            f"birth date {birth_date.isoformat()} disagrees with the ID number "
            f"({card.birth_date.isoformat()})",
            f"出生日期{birth_date.isoformat()}与身份证号码中的{card.birth_date.isoformat()}不符",
        ).pydantic("birth_date")
    if gender is not None and gender is not card.gender:
        raise CareError(
            "gender_id_mismatch",
            f"gender {gender.en} disagrees with the ID number ({card.gender.en})",
            f"性别“{gender.zh}”与身份证号码（{card.gender.zh}）不符",
        ).pydantic("gender")


def _drop_required_from_schema(schema: dict[str, Any]) -> None:
    # birth_date and gender may come from the ID number: not required in the published schema.
    optional = ("birth_date", "gender")
    schema["required"] = [r for r in schema.get("required", []) if r not in optional]


class ElderCreate(_ElderFields):
    """An elder as entered or imported. Give `id_card`, `birth_date`, or both."""

    model_config = ConfigDict(json_schema_extra=_drop_required_from_schema)

    gender: Gender | None = Field(
        default=None, description="read from the ID number when not given"
    )
    birth_date: date | None = Field(
        default=None, description="read from the ID number when not given"
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_card(cls, data: Any) -> Any:
        return _birth_and_gender_from_card(data)

    @model_validator(mode="after")
    def _card_and_dates(self) -> Self:
        if self.birth_date is None:
            raise CareError(
                "birth_date_required",
                "give the ID number or the birth date",
                "须填写身份证号码或出生日期",
            ).pydantic("birth_date")
        if self.gender is None:
            raise CareError(
                "gender_required",
                "give the gender (or the ID number, which holds it)",
                "须填写性别（或身份证号码）",
            ).pydantic("gender")
        _card_agrees(self.id_card, self.birth_date, self.gender)
        return self


_UPDATE_REQUIRED = ("name", "address", "living_situation", "self_care", "service_tier", "gender")


class ElderUpdate(_Model):
    """A partial change: only the fields sent are changed; `None` clears an optional field."""

    name: PersonName | None = None
    gender: Gender | None = None
    id_card: str | None = None
    birth_date: date | None = None
    phone: Phone | None = None
    address: Address | None = None
    hukou: Hukou | None = None
    living_situation: LivingSituation | None = None
    self_care: SelfCareStatus | None = None
    categories: frozenset[Category] | None = None
    service_tier: ServiceTier | None = None
    tier_basis: TierBasis | None = None
    emergency_contacts: tuple[EmergencyContact, ...] | None = Field(
        default=None, max_length=MAX_CONTACTS
    )
    doctor: Doctor | None = None
    allergies: tuple[Text50, ...] | None = Field(default=None, max_length=30)
    conditions: tuple[Text50, ...] | None = Field(default=None, max_length=30)
    notes: Note | None = None
    under_60_reason: Text200 | None = None

    @field_validator("id_card")
    @classmethod
    def _id_card(cls, value: str | None) -> str | None:
        return _ElderFields._id_card(value)

    @model_validator(mode="after")
    def _no_clearing_required(self) -> Self:
        for name in _UPDATE_REQUIRED:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise CareError(
                    "field_required",
                    f"{name} cannot be cleared",
                    f"{name} 为必填项，不能清空",
                ).pydantic(name)
        if "birth_date" in self.model_fields_set and self.birth_date is None:
            raise CareError(
                "field_required", "birth_date cannot be cleared", "出生日期不能清空"
            ).pydantic("birth_date")
        return self


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------

ALLOWED_MOVES: Mapping[ElderStatus, frozenset[ElderStatus]] = {
    ElderStatus.ACTIVE: frozenset(
        {ElderStatus.AWAY, ElderStatus.IN_HOSPITAL, ElderStatus.MOVED, ElderStatus.DECEASED}
    ),
    # away -> away and in_hospital -> in_hospital change the dates (a trip extended).
    ElderStatus.AWAY: frozenset(
        {
            ElderStatus.ACTIVE,
            ElderStatus.AWAY,
            ElderStatus.IN_HOSPITAL,
            ElderStatus.MOVED,
            ElderStatus.DECEASED,
        }
    ),
    ElderStatus.IN_HOSPITAL: frozenset(
        {
            ElderStatus.ACTIVE,
            ElderStatus.IN_HOSPITAL,
            ElderStatus.AWAY,  # recovering at a child's home after discharge
            ElderStatus.MOVED,  # e.g. into a nursing home
            ElderStatus.DECEASED,
        }
    ),
    ElderStatus.MOVED: frozenset({ElderStatus.ACTIVE, ElderStatus.DECEASED}),
    ElderStatus.DECEASED: frozenset(),
}


class StatusTransitionError(CareError):
    """A status change refused by the state machine or its dates."""


class StatusEntry(_Model):
    """One entry of the status history; the latest is the elder's status."""

    status: ElderStatus
    since: date = Field(description="from this day; for deceased, the date of death")
    until: date | None = Field(default=None, description="away: required; in_hospital: optional")
    note: Note | None = None
    recorded_by: Text100

    @model_validator(mode="after")
    def _dates(self) -> Self:
        s = self.status
        if s is ElderStatus.AWAY and self.until is None:
            raise CareError(
                "status_until_required",
                "away needs the date the elder is expected back",
                "外出须填写预计返回日期",
            ).pydantic("until")
        if self.until is not None and s not in (ElderStatus.AWAY, ElderStatus.IN_HOSPITAL):
            raise CareError(
                "status_until_not_allowed",
                f"{s.en} has no end date",
                f"“{s.zh}”状态没有结束日期",
            ).pydantic("until")
        if self.until is not None and self.until < self.since:
            raise CareError(
                "status_until_before_since",
                "the end date is before the start date",
                "结束日期早于开始日期",
            ).pydantic("until")
        return self


def initial_status(since: date, recorded_by: str) -> StatusEntry:
    return StatusEntry(status=ElderStatus.ACTIVE, since=since, recorded_by=recorded_by)


def change_status(current: StatusEntry, new: StatusEntry, *, today: date) -> StatusEntry:
    """`new` if the state machine and the dates allow it, else `StatusTransitionError`."""
    if new.status not in ALLOWED_MOVES[current.status]:
        if current.status is ElderStatus.DECEASED:
            raise StatusTransitionError(
                "status_after_deceased",
                "nothing follows deceased",
                "已去世的老人不能再变更状态",
            )
        raise StatusTransitionError(
            "status_move_refused",
            f"cannot go from {current.status.en} to {new.status.en}",
            f"不能从“{current.status.zh}”变为“{new.status.zh}”",
        )
    if new.since > today:
        raise StatusTransitionError(
            "status_in_future",
            f"the status starts {new.since.isoformat()}, after today: record it on the day",
            f"状态开始日期{new.since.isoformat()}晚于今天，请在当天登记",
        )
    # History runs forward, except that a death may be reported after another change.
    if new.since < current.since and new.status is not ElderStatus.DECEASED:
        raise StatusTransitionError(
            "status_before_current",
            f"the new status starts {new.since.isoformat()}, before the current one "
            f"({current.since.isoformat()})",
            f"新状态开始日期{new.since.isoformat()}早于当前状态的{current.since.isoformat()}",
        )
    if new.until is not None and new.until < today:
        raise StatusTransitionError(
            "status_already_over",
            f"the status ended {new.until.isoformat()}, before today",
            f"结束日期{new.until.isoformat()}早于今天",
        )
    return new


def is_overdue(entry: StatusEntry, today: date) -> bool:
    """Away or in hospital past the expected end: someone should check the elder is back."""
    return (
        entry.status in (ElderStatus.AWAY, ElderStatus.IN_HOSPITAL)
        and entry.until is not None
        and entry.until < today
    )


# --------------------------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------------------------


class Elder(_ElderFields):
    """A registered elder: what the gateway stores and the registers read."""

    id: Text50
    gender: Gender
    birth_date: date
    status: StatusEntry

    @model_validator(mode="after")
    def _card(self) -> Self:
        _card_agrees(self.id_card, self.birth_date, self.gender)
        return self

    def age(self, today: date) -> int:
        return age_on(self.birth_date, today)

    def age_band(self, today: date) -> AgeBand:
        return age_band_of(self.age(today))

    def categories_on(self, today: date) -> frozenset[Category]:
        """The stored categories, with centenarian added from the 100th birthday."""
        if self.age(today) >= 100:
            return self.categories | {Category.CENTENARIAN}
        return self.categories

    @property
    def masked_id_card(self) -> str | None:
        return None if self.id_card is None else mask_id_card(self.id_card)

    def to_create(self) -> ElderCreate:
        """The record's registry fields as input (for an update, an export, a copy)."""
        return ElderCreate.model_validate(self.model_dump(exclude={"id", "status"}))


def check_registration(elder: ElderCreate | Elder, *, today: date) -> list[Problem]:
    """The date-dependent rules (see the module doc); an empty list when all hold."""
    problems: list[Problem] = []
    if elder.id_card is not None:
        try:
            parse_id_card(elder.id_card, today=today)
        except IdCardError as err:
            problems.append(Problem.of("id_card", err))
    born = elder.birth_date
    if born is None:  # ElderCreate validation makes this impossible; keep mypy and callers honest
        return [Problem("birth_date", "birth_date_required", "no birth date", "无出生日期")]
    if born > today:
        if not problems:  # the ID check already said it
            problems.append(
                Problem(
                    "birth_date",
                    "birth_date_future",
                    f"birth date {born.isoformat()} is after today",
                    f"出生日期{born.isoformat()}晚于今天",
                )
            )
        return problems
    age = age_on(born, today)
    if age > MAX_AGE:
        problems.append(
            Problem(
                "birth_date",
                "age_implausible",
                f"age {age} is implausible: check the birth date",
                f"年龄{age}岁不合常理，请核对出生日期",
            )
        )
    if age < MIN_AGE and not elder.under_60_reason:
        problems.append(
            Problem(
                "birth_date",
                "age_under_60",
                f"aged {age}: the station registers people of 60 and over; "
                "give under_60_reason to register someone younger",
                f"{age}岁，未满60周岁：如确需登记，请填写“60岁以下登记原因”",
            )
        )
    if Category.CENTENARIAN in elder.categories and age < 100:
        problems.append(
            Problem(
                "categories",
                "centenarian_under_100",
                f"centenarian, but aged {age}",
                f"类别为百岁老人，但年龄为{age}岁",
            )
        )
    if elder.hukou is not None and elder.hukou.resident_since is not None:
        since = elder.hukou.resident_since
        if since > today or since < born:
            problems.append(
                Problem(
                    "hukou.resident_since",
                    "resident_since_invalid",
                    f"resident since {since.isoformat()}: after today or before the birth",
                    f"居住起始日期{since.isoformat()}晚于今天或早于出生日期",
                )
            )
    return problems


def register_elder(data: ElderCreate, *, elder_id: str, today: date, recorded_by: str) -> Elder:
    """A new `Elder` (status active from `today`), or `Refused` listing every problem."""
    problems = check_registration(data, today=today)
    if problems:
        raise Refused(problems)
    fields = data.model_dump()
    return Elder.model_validate(
        {**fields, "id": elder_id, "status": initial_status(today, recorded_by)}
    )


def apply_update(elder: Elder, update: ElderUpdate, *, today: date) -> Elder:
    """The elder with `update` applied and every rule checked again, or `Refused`.

    A new `id_card` without a `birth_date`/`gender` re-reads them from the new number (the
    usual reason to change the number is a typo in it).
    """
    changes = update.model_dump(exclude_unset=True)
    data = elder.model_dump(exclude={"id", "status"})
    if "id_card" in changes:
        for derived in ("birth_date", "gender"):
            if derived not in changes:
                data.pop(derived, None)
    data.update(changes)
    try:
        merged = ElderCreate.model_validate(data)
    except ValidationError as err:
        raise Refused(problems_from(err)) from None
    problems = check_registration(merged, today=today)
    if problems:
        raise Refused(problems)
    return Elder.model_validate({**merged.model_dump(), "id": elder.id, "status": elder.status})


# --------------------------------------------------------------------------------------------
# service tier suggestion (the seed plan's rules)
# --------------------------------------------------------------------------------------------

_ECONOMIC_HARDSHIP = frozenset(
    {Category.DIBAO, Category.TEKUN, Category.HARDSHIP, Category.LOW_INCOME}
)


@dataclass(frozen=True, slots=True)
class TierSuggestion:
    tier: ServiceTier
    basis: frozenset[Category]
    reason_en: str
    reason_zh: str


def suggest_service_tier(
    *,
    categories: frozenset[Category],
    living_situation: LivingSituation,
    self_care: SelfCareStatus,
    age: int,
) -> TierSuggestion:
    """The tier the station's plan (seeds: 社区居家养老方案, 服务方式) gives, with its basis.

    Free (无偿): 三无 (and the rural 五保); from 75, 重点优抚, 劳模 or 城镇低保; from 75,
    特困 and disabled. Low cost (低偿): from 75, living alone or empty-nest, not fully
    independent, and in economic hardship (低保/特困/困难/低收入). Otherwise paid (有偿).
    Local policies differ: this is a suggestion for staff to confirm.
    """
    if hit := categories & {Category.SANWU, Category.WUBAO}:
        return TierSuggestion(
            ServiceTier.FREE, hit, "sanwu/wubao elders are served free", "三无/五保老人，无偿服务"
        )
    if age >= 75:
        if hit := categories & {Category.SPECIAL_CARE, Category.MODEL_WORKER, Category.DIBAO}:
            return TierSuggestion(
                ServiceTier.FREE,
                hit,
                "aged 75+ and special care, model worker or dibao",
                "75周岁以上重点优抚对象、劳模或低保户",
            )
        if {Category.TEKUN, Category.DISABLED} <= categories:
            return TierSuggestion(
                ServiceTier.FREE,
                frozenset({Category.TEKUN, Category.DISABLED}),
                "aged 75+, tekun and disabled",
                "75周岁以上特困残疾人",
            )
        hardship = categories & _ECONOMIC_HARDSHIP
        if (
            hardship
            and living_situation in (LivingSituation.LIVES_ALONE, LivingSituation.EMPTY_NEST)
            and self_care is not SelfCareStatus.INDEPENDENT
        ):
            return TierSuggestion(
                ServiceTier.LOW_COST,
                hardship,
                "aged 75+, alone or empty-nest, not fully independent, in hardship",
                "75周岁以上、独居或空巢、不能完全自理且经济困难",
            )
    return TierSuggestion(
        ServiceTier.PAID,
        frozenset(),
        "no free or low-cost rule applies",
        "不符合无偿、低偿条件，有偿服务",
    )
