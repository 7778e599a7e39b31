"""Unit tests of the station's tables (台账) and of the registry import: counts that add up,
the special-groups list, the export that imports back, every refusal reported by row and
column, and the import's all-or-nothing rule. Pure and fast.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from care.elders import (
    AGE_BANDS,
    Category,
    Elder,
    ElderCreate,
    ElderStatus,
    LivingSituation,
    SelfCareStatus,
    StatusEntry,
    register_elder,
)
from care.idcard import make_id_number, mask_id_card
from care.registers import (
    IMPORT_COLUMNS,
    ImportReport,
    SpecialGroup,
    count_by_age_band,
    count_by_category,
    count_by_living_situation,
    count_by_self_care,
    count_special_groups,
    import_template,
    registry,
    special_groups,
    special_groups_of,
    validate_import,
)

TODAY = date(2026, 11, 25)
FAST = settings(max_examples=60, deadline=None, database=None)
_seq = iter(range(1, 10**6))


def elder(
    born: date = date(1946, 3, 8),
    *,
    male: bool = False,
    status: str = "active",
    building: str = "3",
    **over: Any,
) -> Elder:
    n = next(_seq)
    seq = (n * 2 + (1 if male else 0)) % 1000
    data: dict[str, Any] = {
        "name": "王秀英",
        "id_card": make_id_number("110105", born, seq),
        "address": {
            "district": "朝阳区",
            "subdistrict": "八里庄街道",
            "community": "红庙社区",
            "estate": "金台小区",
            "building": building,
            "unit": "1",
            "room": "101",
        },
        "living_situation": "with_family",
        "self_care": "independent",
    }
    data.update(over)
    e = register_elder(
        ElderCreate.model_validate(data), elder_id=f"e{n}", today=TODAY, recorded_by="s"
    )
    if status != "active":
        until = date(2026, 12, 31) if status == "away" else None
        e = e.model_copy(
            update={
                "status": StatusEntry(
                    status=ElderStatus(status), since=TODAY, until=until, recorded_by="s"
                )
            }
        )
    return e


def group_row(reg: Any, label_en: str) -> tuple[Any, ...]:
    return next(r for r in reg.rows if r[1] == label_en)


# --------------------------------------------------------------------------------------------
# counts
# --------------------------------------------------------------------------------------------


def test_count_by_age_band() -> None:
    es = [
        elder(date(1960, 1, 1), male=True),  # 66
        elder(date(1950, 6, 1)),  # 76
        elder(date(1940, 6, 1)),  # 86
        elder(date(1940, 6, 1), male=True),
        elder(date(1925, 1, 1)),  # 101
        elder(date(1935, 1, 1), status="deceased"),  # not on the books
        elder(date(1935, 1, 1), status="away"),  # on the books: 91
    ]
    reg = count_by_age_band(es, TODAY)
    assert reg.header_zh() == ["年龄段", "年龄段(英文)", "合计", "男", "女", "占比(%)"]
    assert reg.header_en()[1:4] == ["Age band", "Total", "Men"]
    assert [r[1] for r in reg.rows] == [b.en for b in AGE_BANDS]
    assert group_row(reg, "80-89")[2:5] == (2, 1, 1)
    assert group_row(reg, "100+")[2] == 1
    assert group_row(reg, "90-99")[2] == 1
    assert reg.total == ("合计", "Total", 6, 2, 4, 100.0)
    assert group_row(reg, "80-89")[5] == pytest.approx(33.3)
    everyone = count_by_age_band(es, TODAY, statuses=list(ElderStatus))
    assert everyone.total is not None and everyone.total[2] == 7
    assert reg.records()[3]["count"] == 2


def test_count_by_category_counts_an_elder_in_each_category() -> None:
    es = [
        elder(categories=["dibao", "disabled"]),
        elder(categories=["dibao"]),
        elder(),
        elder(date(1924, 1, 1)),  # a centenarian by age, nothing stored
    ]
    reg = count_by_category(es, TODAY)
    assert group_row(reg, Category.DIBAO.en)[2] == 2
    assert group_row(reg, Category.DISABLED.en)[2] == 1
    assert group_row(reg, Category.CENTENARIAN.en)[2] == 1
    assert group_row(reg, "none")[2] == 1
    assert reg.total is not None and reg.total[2] == 4
    assert "各类别人数之和可大于合计" in reg.notes_zh


def test_self_care_and_living_situation() -> None:
    es = [
        elder(self_care="dependent", living_situation="lives_alone"),
        elder(self_care="partly_dependent", living_situation="lives_alone"),
        elder(self_care="dependent", living_situation="empty_nest"),
    ]
    sc = count_by_self_care(es, TODAY)
    assert group_row(sc, SelfCareStatus.DEPENDENT.en)[2] == 2
    assert group_row(sc, SelfCareStatus.INDEPENDENT.en)[2] == 0
    ls = count_by_living_situation(es, TODAY)
    assert group_row(ls, LivingSituation.LIVES_ALONE.en)[2] == 2
    assert [r[0] for r in ls.rows] == ["独居", "空巢", "与家人同住"]


population = st.lists(
    st.builds(
        lambda born, male, self_care, living, status: elder(
            born, male=male, self_care=self_care, living_situation=living, status=status
        ),
        st.dates(min_value=date(1922, 1, 1), max_value=date(1966, 11, 25)),
        st.booleans(),
        st.sampled_from([s.value for s in SelfCareStatus]),
        st.sampled_from([s.value for s in LivingSituation]),
        st.sampled_from(["active", "away", "in_hospital", "moved", "deceased"]),
    ),
    max_size=25,
)


@FAST
@given(population)
def test_exclusive_groupings_add_up_to_the_total(es: list[Elder]) -> None:
    on_books = [e for e in es if e.status.status not in (ElderStatus.MOVED, ElderStatus.DECEASED)]
    for fn in (count_by_age_band, count_by_self_care, count_by_living_situation):
        reg = fn(es, TODAY)
        assert reg.total is not None
        assert sum(r[2] for r in reg.rows) == reg.total[2] == len(on_books)  # type: ignore[misc]
        assert all(r[2] == r[3] + r[4] for r in reg.rows)  # type: ignore[operator]


# --------------------------------------------------------------------------------------------
# special groups
# --------------------------------------------------------------------------------------------


def test_special_groups_list() -> None:
    alone = elder(living_situation="lives_alone", building="10", name="甲")
    poor = elder(categories=["dibao"], building="9", name="乙")
    old = elder(date(1925, 2, 1), building="9", name="丙")
    plain = elder(name="丁")
    gone = elder(living_situation="lives_alone", status="moved", name="戊")
    reg = special_groups([alone, poor, old, plain, gone], TODAY)
    names = [r[1] for r in reg.rows]
    assert names == ["丙", "乙", "甲"]  # building 9 before 10, then name
    row = reg.records()[2]
    assert row["groups"] == "独居"
    assert row["id_card"] == mask_id_card(alone.id_card or "")
    assert reg.records()[0]["groups"] == "百岁"
    assert reg.records()[1]["groups"] == "困难"
    counts = count_special_groups([alone, poor, old, plain, gone], TODAY)
    assert [r[2] for r in counts.rows] == [1, 0, 1, 0, 1]
    assert [r[0] for r in counts.rows] == [g.zh for g in SpecialGroup]


@pytest.mark.parametrize(
    ("category", "hardship"),
    [
        ("dibao", True),
        ("tekun", True),
        ("sanwu", True),
        ("wubao", True),
        ("hardship", True),
        ("low_income", True),
        ("special_care", False),
        ("jisheng_tefu", False),
        ("model_worker", False),
        ("disabled", False),
    ],
)
def test_which_categories_are_hardship(category: str, hardship: bool) -> None:
    groups = special_groups_of(elder(categories=[category]), TODAY)
    assert (SpecialGroup.HARDSHIP in groups) == hardship
    assert (SpecialGroup.DISABLED in groups) == (category == "disabled")


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


def row(**over: Any) -> dict[str, Any]:
    n = next(_seq)
    base: dict[str, Any] = {
        "姓名": "李桂兰",
        "身份证号": make_id_number("110105", date(1944, 5, 6), n % 1000),
        "区": "朝阳区",
        "街道": "八里庄街道",
        "社区": "红庙社区",
        "楼栋": 3,
        "单元": 2,
        "房号": 501,
        "居住情况": "独居",
        "自理情况": "半自理",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def problems(report: ImportReport) -> list[tuple[int, str, str]]:
    return [(p.row, p.column, p.code) for p in report.problems]


def test_good_rows_are_committable() -> None:
    report = validate_import(
        [
            row(),
            row(
                **{
                    "类别": "低保、残疾",
                    "服务方式": "无偿",
                    "服务依据": "75周岁以上城镇低保户",
                    "紧急联系人1": "李强",
                    "联系人1关系": "儿子",
                    "联系人1电话": 13800000001,
                    "联系人1有钥匙": "是",
                    "过敏史": "青霉素、海鲜",
                    "联系电话": "010-62345678",
                }
            ),
        ],
        today=TODAY,
    )
    assert report.committable, report.problems
    assert report.rows_read == 2 and [r.row for r in report.rows] == [2, 3]
    e = report.rows[1].elder
    assert e.categories == {Category.DIBAO, Category.DISABLED}
    assert e.tier_basis is not None and e.tier_basis.categories == e.categories
    assert e.emergency_contacts[0].phone == "13800000001"
    assert e.emergency_contacts[0].holds_key
    assert e.allergies == ("青霉素", "海鲜")
    assert e.address.building == "3"


def test_a_bad_row_blocks_the_whole_import_and_is_named() -> None:
    report = validate_import([row(), row(居住情况="独"), row()], today=TODAY)
    assert not report.committable
    assert problems(report) == [(3, "居住情况", "not_a_choice")]
    assert report.refused_rows == (3,)
    assert "独居、空巢、与家人同住" in report.problems[0].reason_zh


def test_every_problem_of_a_row_is_reported() -> None:
    r = row(
        出生日期="1944年5月7日",  # disagrees with the ID number
        联系电话="87654321",  # no area code
        服务方式="低偿",  # no basis
        联系人2电话="13900000000",  # a contact without a name or relation
    )
    report = validate_import([r], today=TODAY)
    got = {(p.column, p.code) for p in report.problems}
    assert ("联系电话", "phone_needs_area_code") in got
    assert ("紧急联系人2", "missing") in got
    assert ("联系人2关系", "missing") in got
    # the cross-field checks are not hidden by the bad phone (pydantic stops at the first
    # failing model-level check, so the birth date's turn comes once the basis is given)
    assert ("服务依据", "tier_basis_required") in got
    r.update(服务依据="困难", 类别="困难")
    got = {(p.column, p.code) for p in validate_import([r], today=TODAY).problems}
    assert ("出生日期", "birth_date_id_mismatch") in got
    assert ("联系电话", "phone_needs_area_code") in got


def test_duplicates_in_the_file_and_in_the_registry() -> None:
    # Born a day after `row()`'s default elder, whose numbers count through 0..999 across
    # the tests: the same number cannot come up by the order the tests ran in.
    same = make_id_number("110105", date(1944, 5, 7), 500)
    known = make_id_number("110105", date(1944, 5, 7), 502)
    report = validate_import(
        [row(身份证号=same), row(), row(身份证号=same.lower()), row(身份证号=known)],
        today=TODAY,
        existing_id_cards={known},
    )
    assert problems(report) == [
        (4, "身份证号", "id_duplicate_in_file"),
        (5, "身份证号", "id_already_registered"),
    ]
    assert "第2行" in report.problems[0].reason_zh
    assert known not in report.problems[1].reason_zh  # masked in the report


def test_excel_quirks() -> None:
    report = validate_import(
        [
            row(身份证号=1.10105194405061e17),
            row(出生日期=datetime(1944, 5, 6), 联系电话=13812345678.0),
            row(出生日期=16198),  # an Excel serial number: 1944-05-06
            row(出生日期="1944/5/6"),
            row(出生日期=19440506),
        ],
        today=TODAY,
    )
    assert problems(report)[0] == (2, "身份证号", "id_stored_as_number")
    assert "文本" in report.problems[0].reason_zh
    assert [p.row for p in report.problems] == [2]


def test_headers() -> None:
    starred = {f"{k}*" if k in ("姓名", "区") else k: v for k, v in row().items()}
    two_line = {f"{k}\nanything": v for k, v in row().items()}
    assert validate_import([starred, two_line], today=TODAY).committable
    report = validate_import([{**row(), "年纪": 80}], today=TODAY)
    assert problems(report) == [(1, "年纪", "column_unknown")]
    report = validate_import([row()], today=TODAY, headers=[*row(), "备注", "性别 ", None])
    assert report.committable
    report = validate_import([row()], today=TODAY, headers=[*row(), "籍贯"])
    assert problems(report) == [(1, "籍贯", "column_unknown")]
    missing = row()
    del missing["社区"]
    report = validate_import([missing], today=TODAY, first_row=4)
    assert problems(report) == [(3, "社区", "column_missing")]


def test_blank_rows_are_skipped_and_rows_keep_their_sheet_numbers() -> None:
    blank = dict.fromkeys(row(), None) | {"姓名": "  "}
    report = validate_import([row(), blank, row(居住情况="x")], today=TODAY, first_row=5)
    assert report.rows_read == 2
    assert report.refused_rows == (7,)


def test_empty_and_oversized_files() -> None:
    report = validate_import([], today=TODAY)
    assert not report.committable and problems(report) == [(1, "", "no_rows")]
    report = validate_import([row(), row(), row()], today=TODAY, max_rows=2)
    assert not report.committable and problems(report) == [(1, "", "too_many_rows")]


def test_under_60_and_required_id_card() -> None:
    young = make_id_number("110105", date(1975, 1, 1), 3)
    report = validate_import(
        [
            row(身份证号=young),
            row(
                身份证号=make_id_number("110105", date(1975, 1, 1), 5),
                **{"60岁以下登记原因": "残疾配偶"},
            ),
        ],
        today=TODAY,
    )
    assert problems(report)[0] == (2, "出生日期", "age_under_60")
    assert report.refused_rows == (2,)
    report = validate_import([row(身份证号=" ")], today=TODAY)
    assert problems(report) == [(2, "身份证号", "id_required")]
    report = validate_import([row(身份证号=None)], today=TODAY)
    assert problems(report) == [(1, "身份证号", "column_missing")]


def test_the_report_as_a_table() -> None:
    report = validate_import([row(居住情况="x")], today=TODAY)
    table = report.as_register(TODAY)
    assert table.header_zh()[:3] == ["行号", "列", "原因"]
    assert table.rows[0][:2] == (2, "居住情况")
    assert "未导入任何数据" in table.notes_zh


@FAST
@given(
    st.integers(min_value=1, max_value=12),
    st.sets(st.integers(min_value=0, max_value=11), max_size=4),
    st.sampled_from(
        [
            {"居住情况": "独"},
            {"联系电话": "123"},
            {"区": "", "街道": " ", "社区": "   "},
            {"出生日期": "1999-13-01"},
            {"类别": "土豪"},
            {"服务方式": "无偿"},
            {"身份证号": "110105194405060000"},
        ]
    ),
)
def test_import_is_all_or_nothing(n: int, bad: set[int], fault: dict[str, Any]) -> None:
    bad = {i for i in bad if i < n}
    rows = []
    for i in range(n):
        r = row()
        if i in bad:
            r.update(fault)
        rows.append(r)
    report = validate_import(rows, today=TODAY)
    assert report.committable == (not bad)
    assert set(report.refused_rows) == {i + 2 for i in bad}
    assert len(report.rows) == n - len(bad)
    if report.committable:
        assert len(report.rows) == report.rows_read == n


# --------------------------------------------------------------------------------------------
# the register exports, and imports back
# --------------------------------------------------------------------------------------------


def test_registry_masks_id_numbers_by_default() -> None:
    e = elder()
    reg = registry([e], TODAY)
    rec = reg.records()[0]
    assert rec["id_card"] == mask_id_card(e.id_card or "")
    assert rec["elder_id"] == e.id and rec["age_band"] == "80-89岁" and rec["status"] == "在册"


def test_registry_round_trip() -> None:
    es = [
        elder(
            categories=["dibao", "disabled"],
            service_tier="free",
            tier_basis={"text": "低保残疾", "categories": ["dibao", "disabled"]},
            phone="0755-87654321-12",
            hukou={"kind": "non_local", "place": "河北省保定市"},
            emergency_contacts=[
                {"name": "李强", "relation": "child", "phone": "13800000001", "holds_key": True},
                {"name": "张梅", "relation": "neighbour", "phone": "13800000002"},
            ],
            doctor={"name": "刘医生", "clinic": "红庙社区卫生服务站"},
            allergies=["青霉素"],
            conditions=["高血压", "糖尿病"],
            notes="耳背，敲门要大声",
        ),
        elder(date(1970, 1, 1), under_60_reason="残疾配偶"),
    ]
    reg = registry(es, TODAY, mask_id_cards=False)
    rows = [dict(zip(reg.header_zh(), r, strict=True)) for r in reg.rows]
    report = validate_import(rows, today=TODAY)
    assert report.committable, report.problems
    assert sorted((r.elder for r in report.rows), key=lambda x: x.id_card or "") == sorted(
        (e.to_create() for e in es), key=lambda x: x.id_card or ""
    )


def test_template() -> None:
    t = import_template(TODAY)
    assert t.header_zh()[0] == "姓名*"
    assert len(t.columns) == len(IMPORT_COLUMNS)
    assert "独居、空巢、与家人同住" in t.notes_zh
