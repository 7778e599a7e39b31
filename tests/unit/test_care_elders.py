"""Unit tests of the elder registry record: validation of the Create/Update shapes, phones,
addresses and coordinates, the service-tier basis, derived age and age band, the registration
rules that need `today`, and the status state machine. Pure and fast.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from care.elders import (
    ALLOWED_MOVES,
    AgeBand,
    Category,
    Elder,
    ElderCreate,
    ElderStatus,
    ElderUpdate,
    Gender,
    LivingSituation,
    Refused,
    Relation,
    SelfCareStatus,
    ServiceTier,
    StatusEntry,
    StatusTransitionError,
    age_band_of,
    age_on,
    apply_update,
    change_status,
    check_registration,
    initial_status,
    is_overdue,
    normalize_phone,
    problems_from,
    register_elder,
    suggest_service_tier,
)
from care.idcard import make_id_number

TODAY = date(2026, 11, 25)
FAST = settings(max_examples=200, deadline=None, database=None)
ADDRESS = {
    "district": "朝阳区",
    "subdistrict": "八里庄街道",
    "community": "红庙社区",
    "estate": "金台小区",
    "building": "3",
    "unit": "2",
    "room": "501",
}
WANG_ID = make_id_number("110105", date(1946, 3, 8), 124)  # a woman (4 is even)


def create(**over: Any) -> ElderCreate:
    data: dict[str, Any] = {
        "name": "王秀英",
        "id_card": WANG_ID,
        "address": ADDRESS,
        "living_situation": "lives_alone",
        "self_care": "independent",
    }
    data.update(over)
    return ElderCreate.model_validate({k: v for k, v in data.items() if v is not ...})


def codes(err: ValidationError) -> set[str]:
    return {p.code for p in problems_from(err)}


def refused(**over: Any) -> set[str]:
    with pytest.raises(ValidationError) as info:
        create(**over)
    return codes(info.value)


def registered(**over: Any) -> Elder:
    return register_elder(create(**over), elder_id="e1", today=TODAY, recorded_by="staff-1")


# --------------------------------------------------------------------------------------------
# Create
# --------------------------------------------------------------------------------------------


def test_birth_date_and_gender_come_from_the_id_card() -> None:
    e = create()
    assert e.birth_date == date(1946, 3, 8)
    assert e.gender is Gender.FEMALE


def test_birth_date_and_gender_must_agree_with_the_id_card() -> None:
    assert refused(birth_date=date(1946, 3, 9)) == {"birth_date_id_mismatch"}
    assert refused(gender="male") == {"gender_id_mismatch"}
    assert create(birth_date=date(1946, 3, 8), gender="female").gender is Gender.FEMALE


def test_without_id_card_birth_date_and_gender_are_required() -> None:
    assert refused(id_card=None) == {"birth_date_required"}
    assert refused(id_card=None, birth_date=date(1946, 3, 8)) == {"gender_required"}
    e = create(id_card=None, birth_date=date(1946, 3, 8), gender="female")
    assert e.gender is Gender.FEMALE and e.id_card is None


def test_a_bad_id_card_is_reported_at_its_field_without_noise() -> None:
    with pytest.raises(ValidationError) as info:
        create(id_card=WANG_ID[:-1] + ("0" if WANG_ID[-1] != "0" else "1"))
    problems = problems_from(info.value)
    assert [(p.field, p.code) for p in problems] == [("id_card", "id_check_digit")]
    assert problems[0].zh.startswith("校验码")


def test_the_published_schema_does_not_require_what_the_id_card_gives() -> None:
    required = ElderCreate.model_json_schema()["required"]
    assert "birth_date" not in required and "gender" not in required
    assert {"name", "address", "living_situation", "self_care"} <= set(required)


def test_unknown_fields_are_refused() -> None:
    assert refused(age=80) == {"extra_forbidden"}


@pytest.mark.parametrize("name", ["王秀英", "买买提·艾力", "Li Ming", "欧阳 娜娜", "Anne-Marie"])
def test_names(name: str) -> None:
    assert create(name=name).name == name


@pytest.mark.parametrize("name", ["王1", "王\n英", "", "  ", "王@英"])
def test_bad_names(name: str) -> None:
    assert refused(name=name) & {"name_invalid", "string_too_short", "text_one_line"}


def test_middle_dot_variants_become_the_one_dot() -> None:
    assert create(name="买买提•艾力").name == "买买提·艾力"


# --------------------------------------------------------------------------------------------
# phones
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        ("138 1234 5678", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("008613812345678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),
        ("010-62345678", "010-62345678"),
        ("01062345678", "010-62345678"),
        ("(010)62345678", "010-62345678"),
        ("0755-8765432", "0755-8765432"),
        ("075587654321", "0755-87654321"),
        ("+86 10 6234 5678", "010-62345678"),
        ("0755-87654321转12", "0755-87654321-12"),
        ("0755-87654321-12", "0755-87654321-12"),
        ("020-82345678 ext 9", "020-82345678-9"),
    ],
)
def test_phone_normalization(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected
    assert create(phone=raw).phone == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("1381234567", "phone_mobile_invalid"),
        ("12812345678", "phone_mobile_invalid"),
        ("87654321", "phone_needs_area_code"),
        ("010-6234567", "phone_landline_invalid"),  # 010 numbers have 8 digits
        ("010-12345678", "phone_landline_invalid"),  # 1 starts service numbers
        ("0755-0765432", "phone_landline_invalid"),
        ("phone", "phone_invalid"),
        ("", "phone_empty"),
    ],
)
def test_bad_phones(raw: str, code: str) -> None:
    assert refused(phone=raw) == {code}


def test_a_number_is_not_a_phone_string() -> None:
    assert refused(phone=13812345678) == {"string_type"}


# --------------------------------------------------------------------------------------------
# address, coordinates, household registration
# --------------------------------------------------------------------------------------------


def test_address_one_line_adds_the_usual_suffixes_to_bare_numbers() -> None:
    assert create().address.one_line() == "朝阳区 八里庄街道 红庙社区 金台小区3栋2单元501室"
    a = create(address={**ADDRESS, "building": "3号楼", "unit": None, "room": "501室"}).address
    assert a.one_line() == "朝阳区 八里庄街道 红庙社区 金台小区3号楼501室"


def test_a_unit_needs_a_building() -> None:
    with pytest.raises(ValidationError) as info:
        create(address={**ADDRESS, "building": None})
    assert [(p.field, p.code) for p in problems_from(info.value)] == [
        ("address.building", "address_unit_without_building")
    ]


def test_address_down_to_community_is_required() -> None:
    assert refused(address={"district": "朝阳区", "subdistrict": "八里庄街道"}) == {"missing"}


@pytest.mark.parametrize(
    ("lat", "lon", "ok"),
    [
        (39.9219, 116.4436, True),
        (22.5431, 114.0579, True),
        (116.4436, 39.9219, False),  # swapped: latitude out of range
        (39.9219, 16.4436, False),  # not China
        (0.0, 0.0, False),
        (91.0, 116.0, False),
    ],
)
def test_coordinates(lat: float, lon: float, ok: bool) -> None:
    over = {"address": {**ADDRESS, "coordinates": {"lat": lat, "lon": lon}}}
    if ok:
        c = create(**over).address.coordinates
        assert c is not None and c.system.value == "gcj02"
    else:
        assert refused(**over)


def test_non_local_hukou_needs_its_place() -> None:
    assert refused(hukou={"kind": "non_local"}) == {"hukou_place_required"}
    e = create(hukou={"kind": "non_local", "place": "河北省保定市", "resident_since": "2020-05-01"})
    assert e.hukou is not None and e.hukou.years_resident(TODAY) == 6


# --------------------------------------------------------------------------------------------
# categories, tier, contacts
# --------------------------------------------------------------------------------------------


def test_free_and_low_cost_tiers_need_a_basis() -> None:
    assert refused(service_tier="free") == {"tier_basis_required"}
    assert refused(service_tier="low_cost", tier_basis={"text": "困难"}) == {"tier_basis_required"}
    assert refused(service_tier="free", tier_basis={"text": "低保", "categories": ["dibao"]}) == {
        "tier_basis_category"
    }
    e = create(
        categories=["dibao", "disabled"],
        service_tier="free",
        tier_basis={"text": "75周岁以上城镇低保户", "categories": ["dibao"]},
    )
    assert e.service_tier is ServiceTier.FREE
    assert create(service_tier="low_cost", tier_basis={"text": "评估", "assessment_id": "a1"})


def test_emergency_contacts() -> None:
    e = create(
        emergency_contacts=[
            {"name": "李强", "relation": "child", "phone": "13800000001", "holds_key": True}
        ]
    )
    assert e.emergency_contacts[0].holds_key
    assert e.emergency_contacts[0].relation is Relation.CHILD
    twice = {"name": "李强", "relation": "child", "phone": "13800000001"}
    assert refused(emergency_contacts=[twice, twice]) == {"contact_duplicate"}
    four = [{**twice, "phone": f"1380000000{i}"} for i in range(4)]
    assert refused(emergency_contacts=four) == {"too_long"}


def test_allergies_and_conditions_are_deduplicated() -> None:
    e = create(allergies=["青霉素", "青霉素", "海鲜"], conditions=["高血压"])
    assert e.allergies == ("青霉素", "海鲜")


def test_doctor_needs_a_name_or_a_clinic() -> None:
    assert refused(doctor={"phone": "13800000002"}) == {"doctor_empty"}
    assert create(doctor={"clinic": "红庙社区卫生服务站"}).doctor is not None


def test_labels_parse_chinese_english_and_aliases() -> None:
    assert LivingSituation.parse("独居") is LivingSituation.LIVES_ALONE
    assert LivingSituation.parse("与子女同住") is LivingSituation.WITH_FAMILY
    assert SelfCareStatus.parse("不能自理") is SelfCareStatus.DEPENDENT
    assert Relation.parse("老伴") is Relation.SPOUSE
    assert Category.parse("Dibao") is Category.DIBAO
    assert ServiceTier.parse("free").zh == "无偿"
    with pytest.raises(ValueError) as info:
        LivingSituation.parse("独")
    assert "独居、空巢、与家人同住" in str(info.value)


# --------------------------------------------------------------------------------------------
# age
# --------------------------------------------------------------------------------------------


def test_age_counts_on_the_birthday() -> None:
    born = date(1946, 3, 8)
    assert age_on(born, date(2026, 3, 7)) == 79
    assert age_on(born, date(2026, 3, 8)) == 80
    leap = date(1948, 2, 29)
    assert age_on(leap, date(2026, 2, 28)) == 77
    assert age_on(leap, date(2026, 3, 1)) == 78
    with pytest.raises(ValueError):
        age_on(TODAY + timedelta(days=1), TODAY)


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (59, AgeBand.UNDER_60),
        (60, AgeBand.AGE_60_69),
        (69, AgeBand.AGE_60_69),
        (70, AgeBand.AGE_70_79),
        (89, AgeBand.AGE_80_89),
        (99, AgeBand.AGE_90_99),
        (100, AgeBand.AGE_100_PLUS),
        (115, AgeBand.AGE_100_PLUS),
    ],
)
def test_age_bands(age: int, band: AgeBand) -> None:
    assert age_band_of(age) is band


@FAST
@given(
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
)
def test_age_band_is_monotone_in_birth_date(a: date, b: date) -> None:
    earlier, later = min(a, b), max(a, b)
    assert age_on(earlier, TODAY) >= age_on(later, TODAY)
    assert age_band_of(age_on(earlier, TODAY)).rank >= age_band_of(age_on(later, TODAY)).rank


@FAST
@given(st.dates(min_value=date(1906, 1, 1), max_value=date(1966, 11, 25)))
def test_the_record_derives_the_same_age_band(born: date) -> None:
    e = registered(id_card=None, birth_date=born, gender="male")
    assert e.age_band(TODAY) is age_band_of(age_on(born, TODAY))
    assert "age" not in Elder.model_fields and "age_band" not in Elder.model_fields


# --------------------------------------------------------------------------------------------
# registration rules (need today)
# --------------------------------------------------------------------------------------------


def test_under_60_is_refused_unless_a_reason_is_given() -> None:
    young = make_id_number("110105", date(1970, 1, 1), 11)
    with pytest.raises(Refused) as info:
        registered(id_card=young)
    assert [p.code for p in info.value.problems] == ["age_under_60"]
    assert "60岁以下登记原因" in info.value.problems[0].zh
    e = registered(id_card=young, under_60_reason="与独居老伴同住的残疾配偶")
    assert e.age_band(TODAY) is AgeBand.UNDER_60


def test_the_age_limit_is_60_on_the_day() -> None:
    sixty_today = make_id_number("110105", date(1966, 11, 25), 11)
    sixty_tomorrow = make_id_number("110105", date(1966, 11, 26), 13)
    assert registered(id_card=sixty_today).age(TODAY) == 60
    with pytest.raises(Refused) as info:
        registered(id_card=sixty_tomorrow)
    assert info.value.code == "age_under_60"


def test_centenarian_is_refused_under_100_and_derived_from_100() -> None:
    with pytest.raises(Refused) as info:
        registered(categories=["centenarian"])
    assert info.value.problems[0].code == "centenarian_under_100"
    old = registered(id_card=make_id_number("110105", date(1925, 1, 5), 21))
    assert Category.CENTENARIAN in old.categories_on(TODAY)
    assert Category.CENTENARIAN not in old.categories


def test_future_and_implausible_birth_dates() -> None:
    future = make_id_number("110105", TODAY + timedelta(days=3), 21)
    assert [p.code for p in check_registration(create(id_card=future), today=TODAY)] == [
        "id_birth_future"
    ]
    e = create(id_card=None, birth_date=date(1901, 1, 1), gender="male")
    assert [p.code for p in check_registration(e, today=TODAY)] == ["age_implausible"]


def test_resident_since_is_checked() -> None:
    e = create(hukou={"kind": "local", "resident_since": TODAY + timedelta(days=1)})
    assert [p.field for p in check_registration(e, today=TODAY)] == ["hukou.resident_since"]


def test_register_makes_an_active_record() -> None:
    e = registered()
    assert e.status.status is ElderStatus.ACTIVE and e.status.since == TODAY
    assert e.masked_id_card == WANG_ID[:6] + "********" + WANG_ID[14:]
    assert e.to_create() == create()


# --------------------------------------------------------------------------------------------
# Update
# --------------------------------------------------------------------------------------------


def test_update_changes_only_what_is_sent() -> None:
    e = registered(phone="13800000000", notes="怕冷")
    u = apply_update(e, ElderUpdate(phone="13900000000"), today=TODAY)
    assert u.phone == "13900000000" and u.notes == "怕冷" and u.id == e.id
    cleared = apply_update(e, ElderUpdate.model_validate({"notes": None}), today=TODAY)
    assert cleared.notes is None and cleared.phone == "13800000000"


def test_update_cannot_clear_required_fields() -> None:
    with pytest.raises(ValidationError) as info:
        ElderUpdate.model_validate({"name": None})
    assert codes(info.value) == {"field_required"}


def test_a_new_id_card_re_reads_birth_date_and_gender() -> None:
    e = registered()
    other = make_id_number("310101", date(1940, 7, 1), 33)
    u = apply_update(e, ElderUpdate(id_card=other), today=TODAY)
    assert u.birth_date == date(1940, 7, 1) and u.gender is Gender.MALE


def test_update_runs_every_rule_again() -> None:
    e = registered(categories=["dibao"])
    with pytest.raises(Refused) as info:
        apply_update(e, ElderUpdate(service_tier=ServiceTier.FREE), today=TODAY)
    assert info.value.problems[0].code == "tier_basis_required"
    with pytest.raises(Refused) as info:
        apply_update(
            e, ElderUpdate(id_card=make_id_number("110105", date(1980, 1, 1), 1)), today=TODAY
        )
    assert info.value.problems[0].code == "age_under_60"


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


def entry(status: str, since: date, until: date | None = None) -> StatusEntry:
    return StatusEntry(status=ElderStatus(status), since=since, until=until, recorded_by="s")


def test_status_entries_validate_their_dates() -> None:
    with pytest.raises(ValidationError) as info:
        entry("away", TODAY)
    assert codes(info.value) == {"status_until_required"}
    with pytest.raises(ValidationError) as info:
        entry("active", TODAY, TODAY)
    assert codes(info.value) == {"status_until_not_allowed"}
    with pytest.raises(ValidationError) as info:
        entry("in_hospital", TODAY, TODAY - timedelta(days=1))
    assert codes(info.value) == {"status_until_before_since"}
    assert entry("in_hospital", TODAY).until is None


def test_a_normal_life_of_statuses() -> None:
    s = initial_status(date(2026, 1, 1), "s")
    s = change_status(s, entry("away", date(2026, 11, 1), date(2026, 12, 1)), today=TODAY)
    s = change_status(s, entry("away", date(2026, 11, 1), date(2026, 12, 20)), today=TODAY)
    s = change_status(s, entry("in_hospital", date(2026, 11, 20)), today=TODAY)
    s = change_status(s, entry("active", TODAY), today=TODAY)
    s = change_status(s, entry("moved", TODAY), today=TODAY)
    s = change_status(s, entry("active", TODAY), today=TODAY)  # moved back
    assert s.status is ElderStatus.ACTIVE


def test_nothing_follows_deceased() -> None:
    dead = entry("deceased", date(2026, 11, 20))
    for status in ElderStatus:
        until = TODAY + timedelta(days=5) if status is ElderStatus.AWAY else None
        with pytest.raises(StatusTransitionError) as info:
            change_status(dead, entry(status, TODAY, until), today=TODAY)
        assert info.value.code == "status_after_deceased"


def test_impossible_moves_and_dates() -> None:
    active = initial_status(date(2026, 1, 1), "s")
    with pytest.raises(StatusTransitionError) as info:
        change_status(active, entry("active", TODAY), today=TODAY)
    assert info.value.code == "status_move_refused"
    with pytest.raises(StatusTransitionError) as info:
        change_status(active, entry("in_hospital", TODAY + timedelta(days=1)), today=TODAY)
    assert info.value.code == "status_in_future"
    with pytest.raises(StatusTransitionError) as info:
        change_status(active, entry("in_hospital", date(2025, 12, 1)), today=TODAY)
    assert info.value.code == "status_before_current"
    with pytest.raises(StatusTransitionError) as info:
        change_status(active, entry("away", date(2026, 11, 1), date(2026, 11, 10)), today=TODAY)
    assert info.value.code == "status_already_over"
    moved = entry("moved", date(2026, 11, 1))
    with pytest.raises(StatusTransitionError):
        change_status(moved, entry("in_hospital", TODAY), today=TODAY)


def test_a_death_may_be_reported_with_an_earlier_date() -> None:
    away = entry("away", date(2026, 11, 20), date(2026, 12, 31))
    dead = change_status(away, entry("deceased", date(2026, 11, 18)), today=TODAY)
    assert dead.status is ElderStatus.DECEASED


def test_overdue_away() -> None:
    away = entry("away", date(2026, 11, 1), date(2026, 11, 20))
    assert is_overdue(away, TODAY)
    assert not is_overdue(away, date(2026, 11, 20))
    assert not is_overdue(entry("active", date(2026, 1, 1)), TODAY)


@FAST
@given(st.lists(st.sampled_from(list(ElderStatus)), min_size=1, max_size=12))
def test_random_walks_obey_the_table(moves: list[ElderStatus]) -> None:
    current = initial_status(date(2026, 1, 1), "s")
    for status in moves:
        until = TODAY + timedelta(days=10) if status is ElderStatus.AWAY else None
        new = entry(status, TODAY, until)
        allowed = status in ALLOWED_MOVES[current.status]
        try:
            current = change_status(current, new, today=TODAY)
        except StatusTransitionError:
            assert not allowed
        else:
            assert allowed
    if ElderStatus.DECEASED in moves:
        assert current.status is ElderStatus.DECEASED


# --------------------------------------------------------------------------------------------
# service tier suggestion (the seed plan)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cats", "living", "self_care", "age", "tier"),
    [
        ({"sanwu"}, "with_family", "independent", 65, "free"),
        ({"dibao"}, "with_family", "independent", 75, "free"),
        ({"dibao"}, "with_family", "independent", 74, "paid"),
        ({"tekun", "disabled"}, "lives_alone", "dependent", 80, "free"),
        ({"hardship"}, "lives_alone", "partly_dependent", 76, "low_cost"),
        ({"hardship"}, "lives_alone", "independent", 76, "paid"),
        ({"hardship"}, "with_family", "dependent", 76, "paid"),
        (set(), "lives_alone", "dependent", 90, "paid"),
    ],
)
def test_suggested_tier(cats: set[str], living: str, self_care: str, age: int, tier: str) -> None:
    s = suggest_service_tier(
        categories=frozenset(Category(c) for c in cats),
        living_situation=LivingSituation(living),
        self_care=SelfCareStatus(self_care),
        age=age,
    )
    assert s.tier is ServiceTier(tier)
    assert s.basis <= frozenset(Category(c) for c in cats)
    if s.tier is not ServiceTier.PAID:
        # the suggestion is a valid basis for the record as it stands
        create(
            categories=sorted(cats),
            service_tier=s.tier,
            tier_basis={"text": s.reason_zh, "categories": sorted(s.basis)},
        )
