"""Unit tests of the ID-card number: the GB 11643 check, the birth date, the region shape,
gender, masking, and the error codes that say what is wrong. Pure and fast.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from care.idcard import (
    CHECK_CHARS,
    IdCardError,
    IdCardKind,
    check_char,
    is_valid_id_card,
    make_id_number,
    mask_id_card,
    normalize_id_card,
    parse_id_card,
)
from care.people import Gender

TODAY = date(2026, 11, 25)
FAST = settings(max_examples=300, deadline=None, database=None)

# regions of several shapes: districts, a prefecture-level city without districts (东莞 441900),
# Xinjiang, and the three residence-permit prefixes
REGIONS = ["110105", "310101", "440300", "441900", "510107", "650102", "810000", "820000", "830000"]

valid_numbers = st.builds(
    make_id_number,
    st.sampled_from(REGIONS),
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    st.integers(min_value=0, max_value=999),
)


def code_of(raw: str, today: date | None = TODAY) -> str:
    with pytest.raises(IdCardError) as info:
        parse_id_card(raw, today=today)
    return info.value.code


# --------------------------------------------------------------------------------------------
# the standard's own examples
# --------------------------------------------------------------------------------------------


def test_standard_example_with_x_check_character() -> None:
    card = parse_id_card("11010519491231002X", today=TODAY)
    assert card.birth_date == date(1949, 12, 31)
    assert card.region_code == "110105"
    assert card.sequence == "002"
    assert card.gender is Gender.FEMALE  # 2 is even
    assert card.kind is IdCardKind.RESIDENT


def test_check_char_of_known_numbers() -> None:
    assert check_char("11010519491231002") == "X"
    assert check_char("44052418800101001") == "4"


def test_before_1900_is_refused_even_with_a_good_check_character() -> None:
    # the standard's other example was born in 1880: no such elder is alive
    assert code_of("440524188001010014") == "id_birth_date"


# --------------------------------------------------------------------------------------------
# what exactly is wrong
# --------------------------------------------------------------------------------------------


def test_lower_case_x_full_width_digits_and_spaces_are_normalized() -> None:
    assert parse_id_card("11010519491231002x", today=TODAY).number == "11010519491231002X"
    full_width = "１１０１０５１９４９１２３１００２Ｘ"
    assert parse_id_card(full_width, today=TODAY).number == "11010519491231002X"
    assert parse_id_card(" 110105 19491231 002X ", today=TODAY).number == "11010519491231002X"
    assert normalize_id_card("a b\tc") == "ABC"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "id_empty"),
        ("   ", "id_empty"),
        ("1101051949123100", "id_length"),
        ("11010519491231002X1", "id_length"),
        ("110105491231002", "id_first_generation"),
        ("1101A519491231002X", "id_characters"),
        ("11010519491231002Y", "id_characters"),
        ("990105194912310021", "id_region"),
        ("710105194912310021", "id_region"),  # Taiwan's province code is not issued as such
        ("110000194912310021", "id_region"),  # a whole province
        ("810105194912310021", "id_region"),  # a permit's region is 810000
        ("110105194902300021", "id_birth_date"),  # 30 February
        ("110105194913010021", "id_birth_date"),  # month 13
        ("110105194912310021", "id_check_digit"),
    ],
)
def test_each_fault_has_its_code(raw: str, code: str) -> None:
    assert code_of(raw) == code


def test_messages_are_bilingual_and_name_the_position() -> None:
    with pytest.raises(IdCardError) as info:
        parse_id_card("1101A519491231002X", today=TODAY)
    assert "character 5" in info.value.en
    assert "第5位" in info.value.zh
    assert "[id_characters]" in str(info.value)


def test_check_digit_message_does_not_suggest_a_fix() -> None:
    with pytest.raises(IdCardError) as info:
        parse_id_card("110105194912310021", today=TODAY)
    # the right last character is X; telling staff so would make them "fix" the wrong digit
    assert "X" not in info.value.en and "X" not in info.value.zh
    assert "mistyped" in info.value.en


def test_birth_in_the_future_needs_today() -> None:
    future = make_id_number("110105", date(2027, 1, 1), 11)
    assert code_of(future) == "id_birth_future"
    assert parse_id_card(future, today=None).birth_date == date(2027, 1, 1)  # not checked
    assert is_valid_id_card(future, today=date(2027, 1, 1))


def test_residence_permit_kind() -> None:
    card = parse_id_card(make_id_number("810000", date(1950, 5, 6), 31), today=TODAY)
    assert card.kind is IdCardKind.HMT_PERMIT
    assert card.gender is Gender.MALE


def test_mask() -> None:
    assert mask_id_card("11010519491231002X") == "110105********002X"
    assert mask_id_card("11010519491231002x") == "110105********002X"
    assert mask_id_card("12345") == "*2345"
    assert mask_id_card("123") == "***"
    assert parse_id_card("11010519491231002X", today=TODAY).masked == "110105********002X"


def test_make_id_number_refuses_bad_parts() -> None:
    with pytest.raises(ValueError):
        make_id_number("11010", date(1950, 1, 1), 1)
    with pytest.raises(ValueError):
        make_id_number("110105", date(1950, 1, 1), 1000)
    with pytest.raises(ValueError):
        check_char("123")


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------


@FAST
@given(valid_numbers)
def test_generated_numbers_validate_and_read_back(number: str) -> None:
    card = parse_id_card(number, today=TODAY)
    assert card.number == number
    assert card.birth_date.strftime("%Y%m%d") == number[6:14]
    assert card.gender is (Gender.MALE if int(number[16]) % 2 else Gender.FEMALE)


@FAST
@given(valid_numbers, st.integers(min_value=0, max_value=17), st.data())
def test_changing_any_one_character_breaks_the_number(
    number: str, position: int, data: st.DataObject
) -> None:
    alphabet = CHECK_CHARS if position == 17 else "0123456789"
    new = data.draw(st.sampled_from([c for c in alphabet if c != number[position]]))
    broken = number[:position] + new + number[position + 1 :]
    # which check catches it may differ (a changed month is a bad date first), never none
    assert not is_valid_id_card(broken, today=TODAY)


@FAST
@given(valid_numbers, st.integers(min_value=0, max_value=15))
def test_swapping_two_adjacent_digits_breaks_the_number(number: str, position: int) -> None:
    a, b = number[position], number[position + 1]
    if a == b:
        return
    swapped = number[:position] + b + a + number[position + 2 :]
    assert not is_valid_id_card(swapped, today=TODAY)


@FAST
@given(valid_numbers)
def test_mask_hides_the_birth_date_and_keeps_both_ends(number: str) -> None:
    masked = mask_id_card(number)
    assert len(masked) == 18
    assert masked[:6] == number[:6] and masked[-4:] == number[-4:]
    assert masked[6:14] == "*" * 8
