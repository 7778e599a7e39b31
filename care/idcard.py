"""PRC resident ID card numbers (居民身份证号码, GB 11643-1999): validate, read, mask.

An 18-character number is: a 6-digit region code (where the number was first issued), the
birth date YYYYMMDD, a 3-digit sequence whose last digit is odd for men and even for women,
and a check character: the first 17 digits weighted 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2,
summed, mod 11, indexed into "10X98765432".

What is checked, in this order, so that the first thing wrong is the thing reported:

1. characters: after NFKC (full-width digits typed with a Chinese IME become ASCII), spaces
   removed and a lower-case x raised, 17 digits and a digit or X. 15-digit first-generation
   numbers are refused with their own message (those cards stopped being valid in 2013).
2. region code shape: the first two digits are a province-level code of GB/T 2260 (11..65), or
   81/82/83 for the residence permits of Hong Kong, Macao and Taiwan residents (港澳台居民居住证,
   same format, region 810000/820000/830000). The full six digits are NOT looked up in the
   GB/T 2260 list: it changes every year and old numbers keep abolished codes for life, so a
   list would refuse real people. Only shapes that cannot be issued are refused (a mainland
   number whose last four region digits are 0000, a permit whose are not).
3. the birth date is a real calendar date, not before 1900-01-01 and not after `today`.
4. the check character.

The check character catches every single mistyped character and every swap of two adjacent
digits among the first 17 (each weight is non-zero mod 11 and so is every difference of two
adjacent weights; 11 is prime). A wrong check character is reported as such, without saying
what it "should" be: the typo is as likely to be in the first 17 digits, and staff told the
right last character would "fix" the wrong one.

`today` is passed in (the room has no clock). Model validators that have no `today` pass
`today=None`, which skips only the not-in-the-future check; `care.elders.check_registration`
repeats it with the real date.

Storage: the number is sensitive personal information (PIPL). The gateway stores it encrypted
(AES-GCM, key from settings, never in the database) together with a keyed hash (HMAC-SHA256 of
`normalize_id_card(number)`) as a blind index for uniqueness and look-up, and shows only
`mask_id_card(number)` to people whose role needs no more.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from care._common import CareError
from care.people import Gender

WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
EARLIEST_BIRTH = date(1900, 1, 1)

# GB/T 2260 province-level codes (the first two digits) of the mainland.
MAINLAND_PROVINCES: frozenset[str] = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23"}  # north, north-east
    | {"31", "32", "33", "34", "35", "36", "37"}  # east
    | {"41", "42", "43", "44", "45", "46"}  # central, south
    | {"50", "51", "52", "53", "54"}  # south-west
    | {"61", "62", "63", "64", "65"}  # north-west
)
# Residence permits of Hong Kong (81), Macao (82) and Taiwan (83) residents.
PERMIT_PROVINCES: frozenset[str] = frozenset({"81", "82", "83"})


class IdCardKind(StrEnum):
    RESIDENT = "resident"  # 居民身份证
    HMT_PERMIT = "hmt_permit"  # 港澳台居民居住证 (same number format)


class IdCardError(CareError):
    """A refused ID number; `code` says which check failed (id_length, id_check_digit ...)."""


@dataclass(frozen=True, slots=True)
class IdCard:
    """A valid number, read: where it was issued, birth date, sequence, gender, kind."""

    number: str
    region_code: str
    birth_date: date
    sequence: str
    gender: Gender
    kind: IdCardKind

    @property
    def masked(self) -> str:
        return mask_id_card(self.number)


def normalize_id_card(raw: str) -> str:
    """The canonical text of a number as typed: NFKC, spaces dropped, x -> X. Not validated."""
    s = unicodedata.normalize("NFKC", str(raw))
    return "".join(s.split()).upper()


def check_char(first17: str) -> str:
    """The GB 11643 check character for 17 digits."""
    if len(first17) != 17 or not (first17.isdigit() and first17.isascii()):
        raise ValueError("the check character is computed from exactly 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def _err(code: str, en: str, zh: str) -> IdCardError:
    return IdCardError(code, en, zh)


def parse_id_card(raw: str, *, today: date | None) -> IdCard:
    """Validate `raw` and read it, or raise `IdCardError` saying exactly what is wrong.

    `today=None` skips only the "birth date not in the future" check (see the module doc).
    """
    n = normalize_id_card(raw)
    if not n:
        raise _err("id_empty", "the ID number is empty", "身份证号码为空")
    if len(n) == 15 and n.isdigit():
        raise _err(
            "id_first_generation",
            "a 15-digit first-generation ID number; those cards expired in 2013, "
            "ask for the 18-character number",
            "这是15位第一代身份证号码（2013年起停止使用），请提供18位号码",
        )
    if len(n) != 18:
        raise _err(
            "id_length",
            f"an ID number has 18 characters, this one has {len(n)}",
            f"身份证号码应为18位，实为{len(n)}位",
        )
    first17, last = n[:17], n[17]
    if not (first17.isdigit() and first17.isascii()):
        bad = next(i for i, c in enumerate(first17) if not ("0" <= c <= "9"))
        raise _err(
            "id_characters",
            f"character {bad + 1} is {first17[bad]!r}: the first 17 characters are digits",
            f"第{bad + 1}位为“{first17[bad]}”：前17位须为数字",
        )
    if last not in "0123456789X":
        raise _err(
            "id_characters",
            f"the last character is {last!r}: it is a digit or X",
            f"第18位为“{last}”：末位须为数字或X",
        )

    region = n[:6]
    province = region[:2]
    if province in MAINLAND_PROVINCES:
        kind = IdCardKind.RESIDENT
        if region[2:] == "0000":
            raise _err(
                "id_region",
                f"region code {region} names a whole province, not a place that issues numbers",
                f"地区码{region}为省级代码，不是发证地的县级代码",
            )
    elif province in PERMIT_PROVINCES:
        kind = IdCardKind.HMT_PERMIT
        if region[2:] != "0000":
            raise _err(
                "id_region",
                f"region code {region}: a Hong Kong/Macao/Taiwan residence permit "
                f"has {province}0000",
                f"地区码{region}：港澳台居民居住证的地区码应为{province}0000",
            )
    else:
        raise _err(
            "id_region",
            f"region code {region}: {province} is not a province-level code (GB/T 2260)",
            f"地区码{region}：前两位{province}不是有效的省级行政区划代码",
        )

    ymd = n[6:14]
    try:
        born = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
    except ValueError:
        raise _err(
            "id_birth_date",
            f"characters 7-14 ({ymd}) are not a real date (YYYYMMDD)",
            f"第7-14位（{ymd}）不是有效的出生日期（年月日）",
        ) from None
    if born < EARLIEST_BIRTH:
        raise _err(
            "id_birth_date",
            f"birth date {born.isoformat()} is before 1900",
            f"出生日期{born.isoformat()}早于1900年",
        )
    if today is not None and born > today:
        raise _err(
            "id_birth_future",
            f"birth date {born.isoformat()} is after today ({today.isoformat()})",
            f"出生日期{born.isoformat()}晚于今天（{today.isoformat()}）",
        )

    if check_char(first17) != last:
        raise _err(
            "id_check_digit",
            "the check character (the 18th) does not match the first 17: "
            "one of the 18 characters is mistyped",
            "校验码（第18位）与前17位不符：号码中有输错的字符",
        )
    sequence = n[14:17]
    gender = Gender.MALE if int(sequence[2]) % 2 == 1 else Gender.FEMALE
    return IdCard(
        number=n, region_code=region, birth_date=born, sequence=sequence, gender=gender, kind=kind
    )


def validate_id_card(raw: str, *, today: date | None) -> str:
    """The normalized number if valid, else `IdCardError`."""
    return parse_id_card(raw, today=today).number


def is_valid_id_card(raw: str, *, today: date | None) -> bool:
    try:
        parse_id_card(raw, today=today)
    except IdCardError:
        return False
    return True


def mask_id_card(number: str) -> str:
    """For display: region and last four kept, the birth date hidden: 110105********123X.

    Something that is not 18 characters (it should not happen for a stored number) keeps only
    its last four characters, or nothing when it is that short.
    """
    n = normalize_id_card(number)
    if len(n) == 18:
        return n[:6] + "*" * 8 + n[14:]
    if len(n) <= 4:
        return "*" * len(n)
    return "*" * (len(n) - 4) + n[-4:]


def make_id_number(region_code: str, birth_date: date, sequence: int) -> str:
    """A well-formed number for tests and the demo registry (never for a real person).

    `sequence` is 0..999; its last digit gives the gender (odd male, even female).
    """
    if not (0 <= sequence <= 999):
        raise ValueError("sequence is 0..999")
    if len(region_code) != 6 or not region_code.isdigit():
        raise ValueError("region_code is six digits")
    first17 = f"{region_code}{birth_date:%Y%m%d}{sequence:03d}"
    return first17 + check_char(first17)
