"""The station's standard tables (台账) and the registry import, as pure functions.

Every table is a `Register`: a title, columns with a Chinese and an English header, rows of
plain cells (str, int, float, date or None) and an optional total row. The gateway writes it
to .xlsx with openpyxl (title row, Chinese header row, English header row, data, total) and
serves the same rows as JSON; nothing here knows about Excel files.

Tables (the seeds ask for counts "按照年龄分类汇总 (60-69, 70-79, 80-89, 90以上)" and for 空巢
独居、困难、残疾、百岁 老人 "单独汇总"; the 老年人基本信息台账 by age, health and economy):

- `count_by_age_band`, `count_by_category`, `count_by_self_care`, `count_by_living_situation`:
  one row per group with men, women, total and share; a 合计 row. Elders under 60 (registered
  with a reason) have their own band so the total is everyone. An elder counts once in each
  of their categories, so the category rows do not add up to the total (said in the notes).
- `count_special_groups` and `special_groups`: the 独居/空巢/困难/残疾/百岁 counts and the list
  of those elders, sorted by address for a visiting round. 困难 here means economic hardship:
  低保, 特困, 三无, 五保, 困难, 低收入. The list masks ID numbers.
- `registry`: the full register in the import template's columns (so an export imports back),
  with ID numbers masked unless asked otherwise.

Only elders on the books count (active, away, in hospital) unless `statuses` says otherwise.

Import (`validate_import`): rows are dicts keyed by the template's Chinese headers (the first
line of a header cell; a trailing * marks required columns and is ignored). Every row is
validated and every problem reported (row number, column, reason in English and Chinese); the
result is all-or-nothing: `ImportReport.committable` only when there is at least one row and
no problem at all. Refused also: an ID number twice in the file (each later row names the first),
an ID number in `existing_id_cards`, a file over `max_rows`. The ID number is required in an
import (it is how duplicates are found), though the API accepts an elder without one.
`existing_id_cards` is a `Container[str]` of normalized numbers: the gateway, which keeps only
encrypted numbers, passes an object whose `__contains__` looks up the keyed hash (blind index).

Excel-specific care: an ID number stored as a number has lost its last digits (Excel keeps 15
significant digits) and is refused with that explanation; phones stored as numbers are read
back as text; dates may be real dates, text (1949-10-01, 1949/10/01, 19491001, 1949年10月1日)
or Excel serial numbers; yes/no cells take 是/否, 有/无, Y/N, √/×.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from care._common import CareError, Labelled, problems_from, set_labels
from care.elders import (
    AGE_BANDS,
    MAX_CONTACTS,
    ON_BOOKS,
    Category,
    Elder,
    ElderCreate,
    ElderStatus,
    Gender,
    HukouKind,
    LivingSituation,
    Relation,
    SelfCareStatus,
    ServiceTier,
    check_registration,
)
from care.idcard import is_valid_id_card, mask_id_card, normalize_id_card

Cell = str | int | float | date | None
_E = TypeVar("_E", bound=Labelled)
_T = TypeVar("_T")

__all__ = [
    "EXPORT_ONLY_COLUMNS",
    "HARDSHIP_CATEGORIES",
    "IMPORT_COLUMNS",
    "Cell",
    "Column",
    "ImportColumn",
    "ImportReport",
    "ImportedRow",
    "Register",
    "RowProblem",
    "SpecialGroup",
    "count_by_age_band",
    "count_by_category",
    "count_by_living_situation",
    "count_by_self_care",
    "count_special_groups",
    "import_template",
    "registry",
    "special_groups",
    "special_groups_of",
    "validate_import",
]


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    zh: str
    en: str


@dataclass(frozen=True, slots=True)
class Register:
    """One table, ready for an Excel writer or JSON."""

    key: str
    title_zh: str
    title_en: str
    as_of: date
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    total: tuple[Cell, ...] | None = None
    notes_zh: str = ""
    notes_en: str = ""

    def header_zh(self) -> list[str]:
        return [c.zh for c in self.columns]

    def header_en(self) -> list[str]:
        return [c.en for c in self.columns]

    def records(self) -> list[dict[str, Cell]]:
        """Rows as dicts keyed by column key (for JSON)."""
        keys = [c.key for c in self.columns]
        return [dict(zip(keys, row, strict=True)) for row in self.rows]


def _on_books(elders: Iterable[Elder], statuses: Collection[ElderStatus] | None) -> list[Elder]:
    wanted = ON_BOOKS if statuses is None else frozenset(statuses)
    return [e for e in elders if e.status.status in wanted]


def _share(n: int, total: int) -> float:
    return round(100.0 * n / total, 1) if total else 0.0


_COUNT_COLUMNS = (
    Column("count", "合计", "Total"),
    Column("male", "男", "Men"),
    Column("female", "女", "Women"),
    Column("share", "占比(%)", "Share (%)"),
)


def _count_register(
    key: str,
    title: tuple[str, str],
    group_header: tuple[str, str],
    groups: Sequence[Labelled],
    membership: Callable[[Elder], Iterable[Labelled]],
    elders: list[Elder],
    today: date,
    extra_rows: Sequence[tuple[str, str, Callable[[Elder], bool]]] = (),
    notes: tuple[str, str] = ("", ""),
) -> Register:
    counts: Counter[tuple[Any, Gender]] = Counter()
    for e in elders:
        for g in set(membership(e)):
            counts[(g, e.gender)] += 1
    total = len(elders)
    rows: list[tuple[Cell, ...]] = []
    for g in groups:
        m, f = counts[(g, Gender.MALE)], counts[(g, Gender.FEMALE)]
        rows.append((g.zh, g.en, m + f, m, f, _share(m + f, total)))
    for zh, en, pred in extra_rows:
        m = sum(1 for e in elders if pred(e) and e.gender is Gender.MALE)
        f = sum(1 for e in elders if pred(e) and e.gender is Gender.FEMALE)
        rows.append((zh, en, m + f, m, f, _share(m + f, total)))
    men = sum(1 for e in elders if e.gender is Gender.MALE)
    return Register(
        key=key,
        title_zh=title[0],
        title_en=title[1],
        as_of=today,
        columns=(
            Column("group_zh", group_header[0], f"{group_header[1]} (中文)"),
            Column("group_en", f"{group_header[0]}(英文)", group_header[1]),
            *_COUNT_COLUMNS,
        ),
        rows=tuple(rows),
        total=("合计", "Total", total, men, total - men, 100.0 if total else 0.0),
        notes_zh=notes[0],
        notes_en=notes[1],
    )


def count_by_age_band(
    elders: Iterable[Elder], today: date, *, statuses: Collection[ElderStatus] | None = None
) -> Register:
    """老年人年龄分段统计: 60-69, 70-79, 80-89, 90-99, 100+ (and under 60 when registered)."""
    es = _on_books(elders, statuses)
    return _count_register(
        "by_age_band",
        ("老年人年龄分段统计表", "Elders by age band"),
        ("年龄段", "Age band"),
        AGE_BANDS,
        lambda e: [e.age_band(today)],
        es,
        today,
        notes=(f"年龄按{today.isoformat()}计算（周岁）", f"Ages as of {today.isoformat()}"),
    )


def count_by_category(
    elders: Iterable[Elder], today: date, *, statuses: Collection[ElderStatus] | None = None
) -> Register:
    """老年人类别统计: one row per category, and one for elders in none."""
    es = _on_books(elders, statuses)
    return _count_register(
        "by_category",
        ("老年人类别统计表", "Elders by category"),
        ("类别", "Category"),
        tuple(Category),
        lambda e: e.categories_on(today),
        es,
        today,
        extra_rows=(("无类别", "none", lambda e: not e.categories_on(today)),),
        notes=(
            "一人可属多个类别，各类别人数之和可大于合计",
            "an elder counts in each of their categories; rows may add up to more than the total",
        ),
    )


def count_by_self_care(
    elders: Iterable[Elder], today: date, *, statuses: Collection[ElderStatus] | None = None
) -> Register:
    """老年人自理情况统计: independent / partly dependent / dependent."""
    es = _on_books(elders, statuses)
    return _count_register(
        "by_self_care",
        ("老年人自理情况统计表", "Elders by self-care status"),
        ("自理情况", "Self-care"),
        tuple(SelfCareStatus),
        lambda e: [e.self_care],
        es,
        today,
    )


def count_by_living_situation(
    elders: Iterable[Elder], today: date, *, statuses: Collection[ElderStatus] | None = None
) -> Register:
    """老年人居住情况统计: lives alone / empty nest / with family."""
    es = _on_books(elders, statuses)
    return _count_register(
        "by_living_situation",
        ("老年人居住情况统计表", "Elders by living situation"),
        ("居住情况", "Living situation"),
        tuple(LivingSituation),
        lambda e: [e.living_situation],
        es,
        today,
    )


# --------------------------------------------------------------------------------------------
# special groups
# --------------------------------------------------------------------------------------------


class SpecialGroup(Labelled):
    LIVES_ALONE = "lives_alone"
    EMPTY_NEST = "empty_nest"
    HARDSHIP = "hardship"
    DISABLED = "disabled"
    CENTENARIAN = "centenarian"


set_labels(
    SpecialGroup,
    {
        SpecialGroup.LIVES_ALONE: ("独居", "lives alone"),
        SpecialGroup.EMPTY_NEST: ("空巢", "empty nest"),
        SpecialGroup.HARDSHIP: ("困难", "hardship"),
        SpecialGroup.DISABLED: ("残疾", "disabled"),
        SpecialGroup.CENTENARIAN: ("百岁", "centenarian"),
    },
)

HARDSHIP_CATEGORIES: frozenset[Category] = frozenset(
    {
        Category.DIBAO,
        Category.TEKUN,
        Category.SANWU,
        Category.WUBAO,
        Category.HARDSHIP,
        Category.LOW_INCOME,
    }
)


def special_groups_of(elder: Elder, today: date) -> list[SpecialGroup]:
    groups: list[SpecialGroup] = []
    if elder.living_situation is LivingSituation.LIVES_ALONE:
        groups.append(SpecialGroup.LIVES_ALONE)
    if elder.living_situation is LivingSituation.EMPTY_NEST:
        groups.append(SpecialGroup.EMPTY_NEST)
    cats = elder.categories_on(today)
    if cats & HARDSHIP_CATEGORIES:
        groups.append(SpecialGroup.HARDSHIP)
    if Category.DISABLED in cats:
        groups.append(SpecialGroup.DISABLED)
    if Category.CENTENARIAN in cats:
        groups.append(SpecialGroup.CENTENARIAN)
    return groups


def count_special_groups(
    elders: Iterable[Elder], today: date, *, statuses: Collection[ElderStatus] | None = None
) -> Register:
    """特殊群体统计: 独居、空巢、困难、残疾、百岁 (an elder counts in each group they are in)."""
    es = _on_books(elders, statuses)
    return _count_register(
        "special_group_counts",
        ("特殊群体老年人统计表", "Elders in special groups"),
        ("群体", "Group"),
        tuple(SpecialGroup),
        lambda e: special_groups_of(e, today),
        es,
        today,
        notes=(
            "困难指低保、特困、三无、五保、困难、低收入；一人可属多个群体",
            "hardship: dibao, tekun, sanwu, wubao, hardship, low income; "
            "an elder counts in each group",
        ),
    )


def _natural(text: str | None) -> tuple[Any, ...]:
    # "10栋" after "9栋": digits compare as numbers.
    return tuple(
        (0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text or "") if p
    )


def _address_key(e: Elder) -> tuple[Any, ...]:
    a = e.address
    return (
        a.district,
        a.subdistrict,
        a.community,
        _natural(a.estate),
        _natural(a.building),
        _natural(a.unit),
        _natural(a.room),
        e.name,
    )


def _yes_no(value: bool) -> str:
    return "是" if value else "否"


def special_groups(
    elders: Iterable[Elder], today: date, *, statuses: Collection[ElderStatus] | None = None
) -> Register:
    """特殊群体老年人名册: everyone in at least one special group, by address."""
    es = sorted(
        (e for e in _on_books(elders, statuses) if special_groups_of(e, today)), key=_address_key
    )
    rows: list[tuple[Cell, ...]] = []
    for i, e in enumerate(es, start=1):
        contact = e.emergency_contacts[0] if e.emergency_contacts else None
        groups = special_groups_of(e, today)
        rows.append(
            (
                i,
                e.name,
                e.gender.zh,
                e.age(today),
                "、".join(g.zh for g in groups),
                e.self_care.zh,
                e.masked_id_card,
                e.address.community,
                e.address.one_line(),
                e.phone,
                contact.name if contact else None,
                contact.phone if contact else None,
                _yes_no(any(c.holds_key for c in e.emergency_contacts)),
                e.status.status.zh,
            )
        )
    return Register(
        key="special_groups",
        title_zh="特殊群体老年人名册",
        title_en="Elders in special groups",
        as_of=today,
        columns=(
            Column("no", "序号", "No."),
            Column("name", "姓名", "Name"),
            Column("gender", "性别", "Gender"),
            Column("age", "年龄", "Age"),
            Column("groups", "特殊群体", "Groups"),
            Column("self_care", "自理情况", "Self-care"),
            Column("id_card", "身份证号(脱敏)", "ID number (masked)"),
            Column("community", "社区", "Community"),
            Column("address", "住址", "Address"),
            Column("phone", "联系电话", "Phone"),
            Column("contact", "紧急联系人", "Emergency contact"),
            Column("contact_phone", "紧急联系人电话", "Contact phone"),
            Column("key_holder", "有人持钥匙", "Someone holds a key"),
            Column("status", "状态", "Status"),
        ),
        rows=tuple(rows),
        total=("合计", f"{len(rows)}人", *([None] * 12)),
        notes_zh="困难指低保、特困、三无、五保、困难、低收入",
        notes_en="hardship: dibao, tekun, sanwu, wubao, hardship, low income",
    )


# --------------------------------------------------------------------------------------------
# the import template (also the full register's columns)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportColumn:
    key: str
    zh: str
    en: str
    required: bool = False
    help_zh: str = ""
    example: str = ""


def _choices(cls: type[Labelled]) -> str:
    return "、".join(m.zh for m in cls)


def _contact_columns(i: int) -> list[ImportColumn]:
    return [
        ImportColumn(f"contact{i}_name", f"紧急联系人{i}", f"Emergency contact {i}"),
        ImportColumn(
            f"contact{i}_relation",
            f"联系人{i}关系",
            f"Contact {i} relation",
            help_zh=_choices(Relation),
            example="子女" if i == 1 else "",
        ),
        ImportColumn(f"contact{i}_phone", f"联系人{i}电话", f"Contact {i} phone"),
        ImportColumn(
            f"contact{i}_holds_key",
            f"联系人{i}有钥匙",
            f"Contact {i} holds a key",
            help_zh="是、否",
            example="是" if i == 1 else "",
        ),
    ]


IMPORT_COLUMNS: tuple[ImportColumn, ...] = (
    ImportColumn("name", "姓名", "Name", True, example="王秀英"),
    ImportColumn("gender", "性别", "Gender", help_zh="男、女；空则按身份证号", example="女"),
    ImportColumn(
        "id_card", "身份证号", "ID number", True, help_zh="18位，单元格设为文本", example=""
    ),
    ImportColumn(
        "birth_date", "出生日期", "Birth date", help_zh="空则按身份证号", example="1946-03-08"
    ),
    ImportColumn("phone", "联系电话", "Phone", help_zh="手机或带区号的固话", example="13800000000"),
    ImportColumn("district", "区", "District", True, example="朝阳区"),
    ImportColumn("subdistrict", "街道", "Subdistrict", True, example="八里庄街道"),
    ImportColumn("community", "社区", "Community", True, example="红庙社区"),
    ImportColumn("estate", "小区", "Estate", example="金台小区"),
    ImportColumn("building", "楼栋", "Building", example="3"),
    ImportColumn("unit", "单元", "Unit", example="2"),
    ImportColumn("room", "房号", "Room", example="501"),
    ImportColumn("hukou_kind", "户籍", "Household registration", help_zh=_choices(HukouKind)),
    ImportColumn("hukou_place", "户籍地址", "Registered at", help_zh="外地户籍必填"),
    ImportColumn(
        "living_situation",
        "居住情况",
        "Living situation",
        True,
        help_zh=_choices(LivingSituation),
        example="独居",
    ),
    ImportColumn(
        "self_care", "自理情况", "Self-care", True, help_zh=_choices(SelfCareStatus), example="自理"
    ),
    ImportColumn(
        "categories", "类别", "Categories", help_zh="可多选，用“、”分隔：" + _choices(Category)
    ),
    ImportColumn(
        "service_tier",
        "服务方式",
        "Service tier",
        help_zh=_choices(ServiceTier) + "；空为有偿",
        example="有偿",
    ),
    ImportColumn("tier_basis", "服务依据", "Tier basis", help_zh="无偿、低偿必填；依据为所填类别"),
    *[c for i in range(1, MAX_CONTACTS + 1) for c in _contact_columns(i)],
    ImportColumn("doctor_name", "家庭医生", "Family doctor"),
    ImportColumn("doctor_clinic", "签约机构", "Clinic"),
    ImportColumn("doctor_phone", "医生电话", "Doctor's phone"),
    ImportColumn("allergies", "过敏史", "Allergies", help_zh="用“、”分隔"),
    ImportColumn("conditions", "慢性病", "Chronic conditions", help_zh="用“、”分隔"),
    ImportColumn("notes", "备注", "Notes"),
    ImportColumn("under_60_reason", "60岁以下登记原因", "Reason if under 60"),
)
# Written by `registry` for reading; ignored when the same sheet is imported back.
EXPORT_ONLY_COLUMNS: tuple[Column, ...] = (
    Column("elder_id", "编号", "ID"),
    Column("age", "年龄", "Age"),
    Column("age_band", "年龄段", "Age band"),
    Column("status", "状态", "Status"),
)

_BY_ZH = {c.zh: c for c in IMPORT_COLUMNS}
_EXPORT_ONLY_ZH = {c.zh for c in EXPORT_ONLY_COLUMNS}


def import_template(today: date) -> Register:
    """The import template: headers, one example row, and the help per column as notes."""
    cols = tuple(Column(c.key, c.zh + ("*" if c.required else ""), c.en) for c in IMPORT_COLUMNS)
    help_lines = [f"{c.zh}：{c.help_zh}" for c in IMPORT_COLUMNS if c.help_zh]
    return Register(
        key="import_template",
        title_zh="老年人信息台账导入模板",
        title_en="Elder registry import template",
        as_of=today,
        columns=cols,
        rows=(tuple(c.example or None for c in IMPORT_COLUMNS),),
        notes_zh="带*为必填；" + "；".join(help_lines),
        notes_en="* marks required columns; the first row is an example: delete it",
    )


def _join(values: Iterable[str]) -> str | None:
    text = "、".join(values)
    return text or None


def _elder_cells(e: Elder, mask: bool) -> dict[str, Cell]:
    cells: dict[str, Cell] = {
        "name": e.name,
        "gender": e.gender.zh,
        "id_card": (e.masked_id_card if mask else e.id_card),
        "birth_date": e.birth_date,
        "phone": e.phone,
        "district": e.address.district,
        "subdistrict": e.address.subdistrict,
        "community": e.address.community,
        "estate": e.address.estate,
        "building": e.address.building,
        "unit": e.address.unit,
        "room": e.address.room,
        "hukou_kind": e.hukou.kind.zh if e.hukou else None,
        "hukou_place": e.hukou.place if e.hukou else None,
        "living_situation": e.living_situation.zh,
        "self_care": e.self_care.zh,
        "categories": _join(c.zh for c in Category if c in e.categories),
        "service_tier": e.service_tier.zh,
        "tier_basis": e.tier_basis.text if e.tier_basis else None,
        "doctor_name": e.doctor.name if e.doctor else None,
        "doctor_clinic": e.doctor.clinic if e.doctor else None,
        "doctor_phone": e.doctor.phone if e.doctor else None,
        "allergies": _join(e.allergies),
        "conditions": _join(e.conditions),
        "notes": e.notes,
        "under_60_reason": e.under_60_reason,
    }
    for i in range(1, MAX_CONTACTS + 1):
        c = e.emergency_contacts[i - 1] if i <= len(e.emergency_contacts) else None
        cells[f"contact{i}_name"] = c.name if c else None
        cells[f"contact{i}_relation"] = c.relation.zh if c else None
        cells[f"contact{i}_phone"] = c.phone if c else None
        cells[f"contact{i}_holds_key"] = _yes_no(c.holds_key) if c else None
    return cells


def registry(
    elders: Iterable[Elder],
    today: date,
    *,
    mask_id_cards: bool = True,
    statuses: Collection[ElderStatus] | None = None,
) -> Register:
    """老年人基本信息台账: every elder on the books in the import template's columns.

    With `mask_id_cards=False` (for people allowed to see them) the sheet imports back as is.
    """
    es = sorted(_on_books(elders, statuses), key=_address_key)
    rows: list[tuple[Cell, ...]] = []
    for e in es:
        cells = _elder_cells(e, mask_id_cards)
        rows.append(
            (
                e.id,
                *(cells[c.key] for c in IMPORT_COLUMNS),
                e.age(today),
                e.age_band(today).zh,
                e.status.status.zh,
            )
        )
    return Register(
        key="registry",
        title_zh="老年人基本信息台账",
        title_en="Elder registry",
        as_of=today,
        columns=(
            EXPORT_ONLY_COLUMNS[0],
            *(Column(c.key, c.zh, c.en) for c in IMPORT_COLUMNS),
            *EXPORT_ONLY_COLUMNS[1:],
        ),
        rows=tuple(rows),
        total=("合计", f"{len(rows)}人", *([None] * (len(IMPORT_COLUMNS) + 2))),
    )


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why a row (or the header, at `row` = the header's row) was refused."""

    row: int
    column: str  # the Chinese header, "" for the whole row
    column_en: str
    code: str
    reason_en: str
    reason_zh: str


@dataclass(frozen=True, slots=True)
class ImportedRow:
    row: int
    elder: ElderCreate


@dataclass(frozen=True, slots=True)
class ImportReport:
    """All-or-nothing: commit `rows` only when `committable`."""

    rows_read: int
    rows: tuple[ImportedRow, ...]
    problems: tuple[RowProblem, ...] = field(default=())

    @property
    def committable(self) -> bool:
        return self.rows_read > 0 and not self.problems and len(self.rows) == self.rows_read

    @property
    def refused_rows(self) -> tuple[int, ...]:
        return tuple(sorted({p.row for p in self.problems}))

    def as_register(self, today: date) -> Register:
        """The problems as a table, to hand back as an Excel file next to the original."""
        return Register(
            key="import_report",
            title_zh="导入校验结果",
            title_en="Import check",
            as_of=today,
            columns=(
                Column("row", "行号", "Row"),
                Column("column", "列", "Column"),
                Column("reason_zh", "原因", "Reason (中文)"),
                Column("reason_en", "原因(英文)", "Reason"),
                Column("code", "代码", "Code"),
            ),
            rows=tuple((p.row, p.column, p.reason_zh, p.reason_en, p.code) for p in self.problems),
            notes_zh=(
                f"共{self.rows_read}行，可以导入"
                if self.committable
                else f"共{self.rows_read}行，{len(self.refused_rows)}行有问题，未导入任何数据"
            ),
            notes_en=(
                f"{self.rows_read} rows, ready to import"
                if self.committable
                else f"{self.rows_read} rows, {len(self.refused_rows)} with problems: "
                "nothing imported"
            ),
        )


class _CellError(Exception):
    def __init__(self, code: str, en: str, zh: str) -> None:
        super().__init__(en)
        self.code, self.en, self.zh = code, en, zh


def _header_key(header: object) -> str:
    text = str(header).split("\n", 1)[0].strip()
    text = re.sub(r"[（(]必填[)）]$", "", text).rstrip("*＊ ").strip()
    return text


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def _id_cell(value: Any) -> str | None:
    if isinstance(value, float) or (
        isinstance(value, str) and re.fullmatch(r"\d(\.\d+)?[eE]\+?\d+", value.strip())
    ):
        raise _CellError(
            "id_stored_as_number",
            "the ID number was stored as a number, and Excel kept only 15 digits: "
            "format the column as text and type the number again",
            "身份证号被存成了数字，Excel只保留15位有效数字：请将该列设为文本格式后重新录入",
        )
    return _text(value)


_DATE_TEXT = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_EXCEL_EPOCH = date(1899, 12, 30)  # serial 1 = 1900-01-01 (with Excel's 1900 leap-year bug)


def _date_cell(value: Any) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    bad = _CellError(
        "date_invalid",
        f"{value!r} is not a date (e.g. 1946-03-08)",
        f"“{value}”不是有效日期（如 1946-03-08）",
    )
    if isinstance(value, int | float) and not isinstance(value, bool):
        n = int(value)
        if n != value:
            raise bad
        if 10000101 <= n <= 99991231:
            value = str(n)  # 19460308 typed as a number
        elif 1 <= n <= 80000:
            return _EXCEL_EPOCH + timedelta(days=n)  # a date cell read without its format
        else:
            raise bad
    text = str(value).strip()
    m = _DATE_TEXT.fullmatch(text) or re.fullmatch(r"(\d{4})(\d{2})(\d{2})", text)
    if not m:
        raise bad
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise bad from None


_YES = {"是", "有", "y", "yes", "true", "1", "√", "✓", "对"}
_NO = {"否", "无", "没有", "n", "no", "false", "0", "×", "✗", "不"}


def _bool_cell(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = (_text(value) or "").casefold()
    if not text:
        return None
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise _CellError("bool_invalid", f"{value!r}: answer 是 or 否", f"“{value}”：请填“是”或“否”")


def _choice_cell(cls: type[_E], value: Any) -> _E | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return cls.parse(text)
    except CareError as err:
        raise _CellError(err.code, err.en, err.zh) from None


_SPLIT = re.compile(r"[、,，;；/\n]+")


def _list_cell(value: Any) -> list[str]:
    text = _text(value)
    return [p.strip() for p in _SPLIT.split(text) if p.strip()] if text else []


def _categories_cell(value: Any) -> list[Category]:
    out: list[Category] = []
    for part in _list_cell(value):
        for word in part.split():
            cat = _choice_cell(Category, word)
            if cat is not None and cat not in out:
                out.append(cat)
    return out


# model field path -> import column key (longest prefix wins)
_PATH_TO_KEY: dict[str, str] = {
    "name": "name",
    "gender": "gender",
    "id_card": "id_card",
    "birth_date": "birth_date",
    "phone": "phone",
    "address": "building",
    "address.district": "district",
    "address.subdistrict": "subdistrict",
    "address.community": "community",
    "address.estate": "estate",
    "address.building": "building",
    "address.unit": "unit",
    "address.room": "room",
    "hukou": "hukou_kind",
    "hukou.kind": "hukou_kind",
    "hukou.place": "hukou_place",
    "hukou.resident_since": "hukou_kind",
    "living_situation": "living_situation",
    "self_care": "self_care",
    "categories": "categories",
    "service_tier": "service_tier",
    "tier_basis": "tier_basis",
    "tier_basis.text": "tier_basis",
    "tier_basis.categories": "categories",
    "doctor": "doctor_name",
    "doctor.name": "doctor_name",
    "doctor.clinic": "doctor_clinic",
    "doctor.phone": "doctor_phone",
    "allergies": "allergies",
    "conditions": "conditions",
    "notes": "notes",
    "under_60_reason": "under_60_reason",
    "emergency_contacts": "contact1_name",
}
_KEY_TO_COLUMN = {c.key: c for c in IMPORT_COLUMNS}


def _column_for(path: str, contact_groups: Sequence[int]) -> ImportColumn:
    parts = path.split(".")
    if parts[0] == "emergency_contacts" and len(parts) >= 2 and parts[1].isdigit():
        idx = int(parts[1])
        group = contact_groups[idx] if idx < len(contact_groups) else idx + 1
        attr = parts[2] if len(parts) > 2 else "name"
        return _KEY_TO_COLUMN[f"contact{group}_{attr}"]
    for n in range(len(parts), 0, -1):
        key = _PATH_TO_KEY.get(".".join(parts[:n]))
        if key:
            return _KEY_TO_COLUMN[key]
    return ImportColumn("", "", "")


def _row_to_data(
    cells: Mapping[str, Any],
) -> tuple[dict[str, Any], list[int], list[tuple[str, _CellError]]]:
    """Cells (by column key) -> ElderCreate input, contact groups used, cell errors."""
    errors: list[tuple[str, _CellError]] = []

    def read(key: str, conv: Callable[[Any], _T]) -> _T | None:
        try:
            return conv(cells.get(key))
        except _CellError as err:
            errors.append((key, err))
            return None

    data: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if value is not None:
            data[name] = value

    put("name", read("name", _text))
    put("gender", read("gender", lambda v: _choice_cell(Gender, v)))
    put("id_card", read("id_card", _id_cell))
    put("birth_date", read("birth_date", _date_cell))
    put("phone", read("phone", _text))
    address = {
        k: read(k, _text)
        for k in ("district", "subdistrict", "community", "estate", "building", "unit", "room")
    }
    data["address"] = {k: v for k, v in address.items() if v is not None}
    hukou_kind = read("hukou_kind", lambda v: _choice_cell(HukouKind, v))
    hukou_place = read("hukou_place", _text)
    if hukou_kind is not None or hukou_place is not None:
        hukou = {"kind": hukou_kind, "place": hukou_place}
        data["hukou"] = {k: v for k, v in hukou.items() if v is not None}
    put("living_situation", read("living_situation", lambda v: _choice_cell(LivingSituation, v)))
    put("self_care", read("self_care", lambda v: _choice_cell(SelfCareStatus, v)))
    categories = read("categories", _categories_cell) or []
    data["categories"] = frozenset(categories)
    tier = read("service_tier", lambda v: _choice_cell(ServiceTier, v))
    put("service_tier", tier)
    basis_text = read("tier_basis", _text)
    if basis_text is not None:
        # The basis is the row's categories: the sheet has one categories column.
        data["tier_basis"] = {"text": basis_text, "categories": frozenset(categories)}
    contacts: list[dict[str, Any]] = []
    groups: list[int] = []
    for i in range(1, MAX_CONTACTS + 1):
        name = read(f"contact{i}_name", _text)
        relation = read(f"contact{i}_relation", lambda v: _choice_cell(Relation, v))
        phone = read(f"contact{i}_phone", _text)
        holds_key = read(f"contact{i}_holds_key", _bool_cell)
        if any(x is not None for x in (name, relation, phone, holds_key)):
            contact = {"name": name, "relation": relation, "phone": phone}
            # a missing part is left out, so pydantic says "required", not "not a string"
            contacts.append({k: v for k, v in contact.items() if v is not None})
            contacts[-1]["holds_key"] = bool(holds_key)
            groups.append(i)
    data["emergency_contacts"] = tuple(contacts)
    doctor = {
        "name": read("doctor_name", _text),
        "clinic": read("doctor_clinic", _text),
        "phone": read("doctor_phone", _text),
    }
    if any(v is not None for v in doctor.values()):
        data["doctor"] = doctor
    data["allergies"] = tuple(read("allergies", _list_cell) or [])
    data["conditions"] = tuple(read("conditions", _list_cell) or [])
    put("notes", read("notes", _text))
    put("under_60_reason", read("under_60_reason", _text))
    return data, groups, errors


def _problem(row: int, col: ImportColumn, code: str, en: str, zh: str) -> RowProblem:
    return RowProblem(row, col.zh, col.en, code, en, zh)


def _check_duplicate(
    raw_id: Any,
    row_no: int,
    first_seen: dict[str, int],
    existing: Container[str],
    out: list[RowProblem],
) -> None:
    """Refuse an ID number seen on an earlier row or already registered (valid numbers only)."""
    if not isinstance(raw_id, str) or not is_valid_id_card(raw_id, today=None):
        return
    number = normalize_id_card(raw_id)
    col = _KEY_TO_COLUMN["id_card"]
    if number in first_seen:
        out.append(
            _problem(
                row_no,
                col,
                "id_duplicate_in_file",
                f"the same ID number as row {first_seen[number]}",
                f"身份证号与第{first_seen[number]}行重复",
            )
        )
    else:
        first_seen[number] = row_no
    if number in existing:
        out.append(
            _problem(
                row_no,
                col,
                "id_already_registered",
                f"{mask_id_card(number)} is already in the registry",
                f"身份证号{mask_id_card(number)}已在台账中",
            )
        )


def validate_import(
    rows: Sequence[Mapping[Any, Any]],
    *,
    today: date,
    existing_id_cards: Container[str] = frozenset(),
    headers: Sequence[Any] | None = None,
    first_row: int = 2,
    max_rows: int = 5000,
) -> ImportReport:
    """Validate every row of a registry import; see the module doc for the rules.

    `rows` are the data rows in sheet order, keyed by header; `first_row` is the sheet row
    number of `rows[0]` (2 when the header is row 1), so problems point at real sheet rows.
    `headers` is the header row as read, when the caller has it: a column that is in the
    header but empty in every row is then still checked. Blank rows (every cell empty) are
    skipped, not refused.
    """
    header_row = first_row - 1
    problems: list[RowProblem] = []
    cleaned: list[tuple[int, dict[str, Any]]] = []
    for i, r in enumerate(rows):
        cells = {_BY_ZH[k].key: v for h, v in r.items() if (k := _header_key(h)) in _BY_ZH}
        if all(_text(v) is None for v in cells.values()):
            continue
        cleaned.append((first_row + i, cells))
    if not cleaned:
        return ImportReport(
            rows_read=0,
            rows=(),
            problems=(
                RowProblem(
                    header_row, "", "", "no_rows", "the file has no data rows", "文件中没有数据行"
                ),
            ),
        )
    header_set: set[str] = set()
    if headers is not None:
        header_set.update(_header_key(h) for h in headers if h is not None and str(h).strip())
    for r in rows:
        header_set.update(_header_key(h) for h in r)
    headers_found = header_set
    unknown = sorted(h for h in headers_found if h and h not in _BY_ZH and h not in _EXPORT_ONLY_ZH)
    for h in unknown:
        problems.append(
            RowProblem(
                header_row,
                h,
                "",
                "column_unknown",
                f"unknown column {h!r}: use the template's headers",
                f"无法识别的列“{h}”：请使用模板中的列名",
            )
        )
    for c in IMPORT_COLUMNS:
        if c.required and c.zh not in headers_found:
            problems.append(
                _problem(
                    header_row,
                    c,
                    "column_missing",
                    f"required column {c.zh} ({c.en}) is missing",
                    f"缺少必填列“{c.zh}”",
                )
            )
    if len(cleaned) > max_rows:
        problems.append(
            RowProblem(
                header_row,
                "",
                "",
                "too_many_rows",
                f"{len(cleaned)} rows: import at most {max_rows} at a time",
                f"共{len(cleaned)}行，每次最多导入{max_rows}行",
            )
        )
    if problems:  # a wrong header makes every row wrong: report the header alone
        return ImportReport(rows_read=len(cleaned), rows=(), problems=tuple(problems))

    accepted: list[ImportedRow] = []
    first_seen: dict[str, int] = {}
    for row_no, cells in cleaned:
        row_problems: list[RowProblem] = []
        data, groups, cell_errors = _row_to_data(cells)
        bad_columns = {key for key, _ in cell_errors}
        for key, err in cell_errors:
            row_problems.append(_problem(row_no, _KEY_TO_COLUMN[key], err.code, err.en, err.zh))
        if _text(cells.get("id_card")) is None and "id_card" not in bad_columns:
            row_problems.append(
                _problem(
                    row_no,
                    _KEY_TO_COLUMN["id_card"],
                    "id_required",
                    "the ID number is required in an import",
                    "导入时身份证号为必填",
                )
            )
            bad_columns.add("id_card")
        elder: ElderCreate | None = None
        try:
            elder = ElderCreate.model_validate(data)
        except ValidationError as err:
            found = problems_from(err)
            # pydantic runs the cross-field checks only when every field passed: validate
            # again without the failing fields, so one bad phone number does not hide a birth
            # date that disagrees with the ID number.
            failed = {p.field.split(".", 1)[0] for p in found}
            retry = {k: v for k, v in data.items() if k not in failed}
            try:
                ElderCreate.model_validate(retry)
            except ValidationError as err2:
                found += [p for p in problems_from(err2) if p.field.split(".", 1)[0] not in failed]
            for p in found:
                col = _column_for(p.field, groups)
                if col.key in bad_columns or (col.key == "birth_date" and "id_card" in bad_columns):
                    continue  # already reported at that cell, or follows from it
                bad_columns.add(col.key)
                row_problems.append(_problem(row_no, col, p.code, p.en, p.zh))
            _check_duplicate(
                data.get("id_card"), row_no, first_seen, existing_id_cards, row_problems
            )
        if elder is not None:
            for p in check_registration(elder, today=today):
                col = _column_for(p.field, groups)
                row_problems.append(_problem(row_no, col, p.code, p.en, p.zh))
            _check_duplicate(elder.id_card, row_no, first_seen, existing_id_cards, row_problems)
        if row_problems:
            problems.extend(row_problems)
        elif elder is not None:
            accepted.append(ImportedRow(row_no, elder))
    return ImportReport(rows_read=len(cleaned), rows=tuple(accepted), problems=tuple(problems))
