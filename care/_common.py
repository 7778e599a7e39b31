"""Shared pieces of the care room: bilingual errors, labelled enums, text, names and phone numbers.

Private to `care` (the public modules re-export what callers need). Everything here is pure:
no clock, no I/O.

- `CareError`: every refusal in `care` is one, with a stable `code` (for the gateway's 4xx bodies
  and for tests), an English and a Chinese message. Inside pydantic validators it is raised as a
  `PydanticCustomError` whose `type` is the code and whose `ctx` carries `en`, `zh` and `code`,
  so the import report and the API can show either language without parsing strings.
- `Labelled`: a `StrEnum` whose members carry a Chinese and an English label, plus aliases that
  staff actually type into spreadsheets (儿子 for child, 老伴 for spouse ...); `parse` accepts
  the code value, either label or an alias.
- Text fields: one-line and multi-line text with control characters refused, person names.
- Phone numbers: mainland mobile (1[3-9] + 9 digits) and landline (area code + 7/8 digits, an
  optional extension), normalized to one form so that equal numbers compare equal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Self, TypeVar

from pydantic import AfterValidator, BeforeValidator, StringConstraints, ValidationError
from pydantic_core import PydanticCustomError


class CareError(ValueError):
    """A refused value or move: a stable code, an English and a Chinese message."""

    def __init__(self, code: str, en: str, zh: str) -> None:
        super().__init__(f"{en} ({zh}) [{code}]")
        self.code = code
        self.en = en
        self.zh = zh

    def pydantic(self, field: str | None = None) -> PydanticCustomError:
        """The same refusal as pydantic reports it: type = code, ctx = {code, en, zh[, field]}.

        `field` names the field a model-level check is about, relative to its model (pydantic
        locates those at the model itself); `problems_from` appends it to the location.
        """
        # The template only names context keys, so user text echoed in a message (which may
        # hold braces) is never parsed as a template.
        ctx: dict[str, Any] = {"code": self.code, "en": self.en, "zh": self.zh}
        if field:
            ctx["field"] = field
        return PydanticCustomError(self.code, "{en} ({zh})", ctx)


def raise_in_pydantic(err: CareError) -> None:
    raise err.pydantic() from None


# --------------------------------------------------------------------------------------------
# labelled enums
# --------------------------------------------------------------------------------------------

_LABELS: dict[type, dict[Any, tuple[str, str, tuple[str, ...]]]] = {}
_M = TypeVar("_M", bound=StrEnum)


class Labelled(StrEnum):
    """A StrEnum with a Chinese and an English label per member (see `set_labels`)."""

    @property
    def zh(self) -> str:
        return _LABELS[type(self)][self][0]

    @property
    def en(self) -> str:
        return _LABELS[type(self)][self][1]

    @classmethod
    def parse(cls, text: str) -> Self:
        """The member named by `text`: its value, either label or an alias (case-insensitive).

        Raises `CareError` (code `not_a_choice`) listing the Chinese labels when nothing matches.
        """
        key = _fold(text)
        for member, (zh, en, aliases) in _LABELS[cls].items():
            if key in {_fold(member.value), _fold(zh), _fold(en), *(_fold(a) for a in aliases)}:
                return member  # type: ignore[no-any-return]
        choices_zh = "、".join(zh for zh, _, _ in _LABELS[cls].values())
        choices_en = ", ".join(m.value for m in _LABELS[cls])
        raise CareError(
            "not_a_choice",
            f"{text!r} is not one of: {choices_en}",
            f"“{text}”不是可选值之一：{choices_zh}",
        )


def in_declared_order(values: frozenset[_M]) -> list[_M]:
    """A set of enum members as a list in declaration order: stable JSON for stored sets
    (a frozenset's own order changes with the process's hash seed)."""
    return sorted(values, key=lambda m: list(type(m).__members__.values()).index(m))


def set_labels(
    cls: type[Labelled],
    table: Mapping[Any, tuple[str, str] | tuple[str, str, tuple[str, ...]]],
) -> None:
    """Give every member of `cls` its (zh, en[, aliases]); refuses a table that misses one."""
    missing = [m for m in cls if m not in table]
    if missing:  # a programming error, caught at import time
        raise RuntimeError(f"{cls.__name__}: no labels for {missing}")
    _LABELS[cls] = {m: (v[0], v[1], v[2] if len(v) == 3 else ()) for m, v in table.items()}


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold().replace(" ", "")


# --------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")


def _one_line(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    if "\n" in value or "\r" in value or "\t" in value or _CONTROL.search(value):
        raise_in_pydantic(
            CareError(
                "text_one_line",
                "must be one line of text without control characters",
                "须为单行文字，不能含换行或控制字符",
            )
        )
    return value


def _multi_line(value: str) -> str:
    value = unicodedata.normalize("NFC", value).replace("\r\n", "\n")
    if _CONTROL.search(value) or "\r" in value:
        raise_in_pydantic(
            CareError("text_control", "must not contain control characters", "不能含控制字符")
        )
    return value


# One line of text, stripped, 1..N characters (N in the name). Plain aliases rather than a
# factory called in annotations, which mypy cannot read.
Text20 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=20),
    AfterValidator(_one_line),
]
Text50 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50),
    AfterValidator(_one_line),
]
Text100 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_one_line),
]
Text200 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
]
# Free text (notes): stripped, 1..2000 characters, newlines allowed.
Note = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(_multi_line),
]


# Letters of any script; between words one of: space, middle dot (买买提·艾力), dot, hyphen,
# apostrophe. Digits are refused: a digit in a name is nearly always a cell shifted by one.
_NAME = re.compile(r"[^\W\d_]+(?:[ ·•.\-'][^\W\d_]+)*")


def _person_name(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    value = value.replace("•", "·").replace("\u30fb", "·")  # the dots people type for ·
    if not _NAME.fullmatch(value):
        raise_in_pydantic(
            CareError(
                "name_invalid",
                "a name is letters (any script), words joined by a space, · or -; no digits",
                "姓名只能由文字组成（少数民族姓名可用“·”分隔），不能含数字或符号",
            )
        )
    return value


PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50),
    AfterValidator(_person_name),
]


# --------------------------------------------------------------------------------------------
# phone numbers
# --------------------------------------------------------------------------------------------

_MOBILE = re.compile(r"1[3-9]\d{9}")
_EXT = re.compile(r"(.*?)(?:转|ext\.?|#|x)(\d{1,6})", re.IGNORECASE)
_DASHED_EXT = re.compile(r"(0\d{2,3})-(\d{7,8})-(\d{1,6})")


def normalize_phone(raw: str) -> str:
    """A mainland mobile or landline number in one canonical form, or `CareError`.

    Mobile: 11 digits starting 13-19, an optional +86 / 0086 / 86 prefix dropped:
    "+86 138-1234-5678" -> "13812345678". Landline: area code (010 and 02x have three digits,
    the others four) and a 7 or 8 digit local number, joined by "-", with an optional extension
    (转 / ext / # / a third "-" group): "(0755)8765-4321转12" -> "0755-87654321-12". A local
    number without its area code is refused: the station dials from a mobile as often as not.
    Local numbers starting 0 or 1 are refused (1 starts service numbers such as 12345).
    """
    s = unicodedata.normalize("NFKC", str(raw)).strip()
    s = re.sub(r"[\s()（）]", "", s)
    if not s:
        raise CareError("phone_empty", "the phone number is empty", "电话号码为空")
    intl = False
    for prefix in ("+86", "0086"):
        if s.startswith(prefix):
            s, intl = s[len(prefix) :].lstrip("-"), True
            break
    ext: str | None = None
    m = _DASHED_EXT.fullmatch(s)
    if m:
        s, ext = f"{m[1]}-{m[2]}", m[3]
    else:
        m = _EXT.fullmatch(s)
        if m:
            s, ext = m[1], m[2]
    digits = s.replace("-", "")
    if not digits.isdigit() or not digits.isascii():
        raise CareError(
            "phone_invalid",
            f"{raw!r} is not a phone number (digits, with an optional area code and extension)",
            f"“{raw}”不是有效的电话号码",
        )
    if not intl and len(digits) == 13 and digits.startswith("861"):
        digits, intl = digits[2:], True
    if ext is None and _MOBILE.fullmatch(digits):
        return digits
    if digits.startswith("1") and not (intl and digits.startswith("10")):
        raise CareError(
            "phone_mobile_invalid",
            f"{raw!r}: a mobile number has 11 digits and starts with 13-19",
            f"“{raw}”：手机号码应为以13-19开头的11位数字",
        )
    if intl:
        digits = "0" + digits  # +86 10 6234 5678 is 010-62345678 dialled at home
    if not digits.startswith("0"):
        raise CareError(
            "phone_needs_area_code",
            f"{raw!r}: a landline number needs its area code, e.g. 010-12345678",
            f"“{raw}”：固定电话须带区号，如 010-12345678",
        )
    area_len = 3 if digits[1] in "12" else 4
    area, local = digits[:area_len], digits[area_len:]
    ok_len = len(local) == 8 if area_len == 3 else len(local) in (7, 8)
    if not ok_len or local[0] in "01":
        raise CareError(
            "phone_landline_invalid",
            f"{raw!r}: a landline is an area code and a 7 or 8 digit number (010/02x: 8 digits)",
            f"“{raw}”：固定电话应为区号加7-8位号码（010、02X 区号后为8位）",
        )
    return f"{area}-{local}" + (f"-{ext}" if ext else "")


def _phone(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return normalize_phone(value)
        except CareError as err:
            raise err.pydantic() from None
    return value  # not a string: the str schema refuses it with pydantic's own message


Phone = Annotated[
    str,
    BeforeValidator(_phone),
    StringConstraints(min_length=11, max_length=24),
]


# --------------------------------------------------------------------------------------------
# problems (several refusals at once)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One refusal about one field, among several (registration checks, import rows).

    `field` is the field's path in the model ("address.community", "emergency_contacts.0.phone").
    """

    field: str
    code: str
    en: str
    zh: str

    @classmethod
    def of(cls, field: str, err: CareError) -> Problem:
        return cls(field, err.code, err.en, err.zh)


class Refused(CareError):
    """Several problems at once; `problems` lists them, the message joins them."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("Refused needs at least one problem")
        super().__init__(
            problems[0].code if len(problems) == 1 else "refused",
            "; ".join(f"{p.field}: {p.en}" for p in problems),
            "；".join(f"{p.field}：{p.zh}" for p in problems),
        )
        self.problems = list(problems)


# Chinese for pydantic's own error types (ours carry their Chinese in ctx).
_PYDANTIC_ZH: dict[str, str] = {
    "missing": "必填项为空",
    "string_too_short": "不能为空",
    "string_too_long": "内容过长",
    "too_long": "项数过多",
    "too_short": "项数过少",
    "greater_than_equal": "数值过小",
    "greater_than": "数值过小",
    "less_than_equal": "数值过大",
    "less_than": "数值过大",
    "enum": "不是可选值之一",
    "literal_error": "不是可选值之一",
    "date_parsing": "不是有效日期（如 1949-10-01）",
    "date_from_datetime_parsing": "不是有效日期（如 1949-10-01）",
    "date_from_datetime_inexact": "应为日期，不带时间",
    "date_type": "应为日期",
    "datetime_parsing": "不是有效的时间",
    "timezone_aware": "时间须带时区",
    "bool_parsing": "应为“是”或“否”",
    "bool_type": "应为“是”或“否”",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "int_from_float": "应为整数",
    "float_parsing": "应为数字",
    "float_type": "应为数字",
    "finite_number": "应为有限的数字",
    "string_type": "应为文字",
    "extra_forbidden": "不认识的字段",
}


def problems_from(err: ValidationError, *, prefix: str = "") -> list[Problem]:
    """A pydantic `ValidationError` as `Problem`s, each with English and Chinese text."""
    out: list[Problem] = []
    for e in err.errors(include_url=False):
        ctx = e.get("ctx") or {}
        # A model-level check names its field relative to its model (ctx["field"]).
        loc = ".".join(str(x) for x in (*e["loc"], *([ctx["field"]] if "field" in ctx else [])))
        field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "(record)")
        if "zh" in ctx and "en" in ctx:
            out.append(Problem(field, str(ctx.get("code", e["type"])), ctx["en"], ctx["zh"]))
        else:
            zh = _PYDANTIC_ZH.get(e["type"], "格式不正确")
            out.append(Problem(field, e["type"], e["msg"], zh))
    return out
