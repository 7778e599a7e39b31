"""The times the HTTP API accepts, each checked and bounded in one place.

- `Instant`: a time in a body, RFC 3339 with an offset (`2026-11-25T08:00:00+08:00`, `...Z`).
- `QueryInstant` and `query_instant`: a time in a query parameter (`?from=`, `?to=`): the
  parameter as declared, and its value checked, as epoch milliseconds.
- `Month`: a `YYYY-MM` month in a body or query; `month_in_range` for the routes that check a
  query's month themselves and answer in their own shape.
- `day_in_range`: a calendar day the gateway turns into times (a recurrence's days, the days
  to generate, a status's days), as a pydantic after-validator.

Why the bounds: times are stored as epoch milliseconds and answered as RFC 3339 in the
station's zone. A time far from now (year 1; year 9999 at -12:00) converts on the way in but not
on the way back (`datetime.fromtimestamp` ends at years 1 and 9999), so it was stored and every
list holding it answered 500 from then on; before 1901 the zone database gives the station's
local mean time (+08:05:43), not an RFC 3339 offset. Nothing the gateway records (an alarm, a
pairing, a mute, a visit, a measurement) happened before 1970 or is planned for 2100 or later,
so [1970-01-01T00:00Z, 2100-01-01T00:00Z) holds every real time, in any offset, with room to
spare. Dates of birth are no instants: they keep their own rule (gateway/api.py `BirthDate`).

A refusal is a 422 whose `detail` names the range, in English and Chinese.
"""

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

from gateway.clock import to_ms

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
END = datetime(2100, 1, 1, tzinfo=UTC)  # excluded
FIRST_MONTH, LAST_MONTH = "1970-01", "2099-12"
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2099, 12, 31)

INSTANT_RANGE = (
    "a time is from 1970-01-01T00:00:00Z to before 2100-01-01T00:00:00Z",
    "时间须在1970-01-01T00:00:00Z（含）至2100-01-01T00:00:00Z（不含）之间",
)
MONTH_RANGE = ("a month is from 1970-01 to 2099-12", "月份须在1970-01至2099-12之间")
DAY_RANGE = ("a day is from 1970-01-01 to 2099-12-31", "日期须在1970-01-01至2099-12-31之间")

_LOOKS_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
_PLUS_LOST = re.compile(r"(:\d{2}(?:\.\d+)?) (\d{2}:\d{2})$")


def _refusal(code: str, en_zh: tuple[str, str]) -> PydanticCustomError:
    # Bilingual as care/_common.py's refusals: the template names context keys only.
    en, zh = en_zh
    return PydanticCustomError(code, "{en} ({zh})", {"en": en, "zh": zh})


def _rfc3339_only(value: Any) -> Any:
    # pydantic would take a number, or a string of digits, as epoch seconds: times here are
    # RFC 3339 only.
    if not isinstance(value, str) or not _LOOKS_RFC3339.match(value):
        raise PydanticCustomError("datetime_format", "a time is RFC 3339 with an offset")
    return value


def instant_in_range(value: datetime) -> bool:
    # Aware datetimes compare on their UTC instant, also those whose UTC form is out of range.
    return EARLIEST <= value < END


def _instant_in_range(value: datetime) -> datetime:
    if not instant_in_range(value):
        raise _refusal("datetime_range", INSTANT_RANGE)
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_only),
    AfterValidator(_instant_in_range),
    Field(examples=["2026-11-25T08:00:00+08:00"]),
]


QueryInstant = Annotated[
    str | None,
    Query(
        max_length=40,
        description="RFC 3339 with an offset, e.g. 2026-11-25T00:00:00+08:00 (1970 to 2099)",
    ),
]


def query_instant(value: str | None, name: str) -> int | None:
    """A query parameter's time in epoch ms (None when absent); 422 when it is no RFC 3339
    time with an offset or lies outside the range."""
    if value is None:
        return None
    # An unencoded "+08:00" in a query string arrives as " 08:00": take it as meant.
    value = _PLUS_LOST.sub(r"\1+\2", value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise _query_refusal(
            name, "value_error", "a time is RFC 3339 with an offset", value
        ) from None
    if dt.tzinfo is None:
        raise _query_refusal(name, "value_error", "a time needs its offset (+08:00 or Z)", value)
    if not instant_in_range(dt):
        raise _query_refusal(name, "datetime_range", "{} ({})".format(*INSTANT_RANGE), value)
    return to_ms(dt)


def _query_refusal(name: str, code: str, msg: str, value: str) -> RequestValidationError:
    # Shaped like FastAPI's own 422 (and gateway/api.py's `_invalid`).
    return RequestValidationError(
        [{"type": code, "loc": ("query", name), "msg": msg, "input": value}]
    )


def month_in_range(value: str) -> bool:
    """Whether a `YYYY-MM` month (already well formed) lies in the range."""
    return FIRST_MONTH <= value <= LAST_MONTH


def _month_in_range(value: str) -> str:
    if not month_in_range(value):
        raise _refusal("month_range", MONTH_RANGE)
    return value


Month = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
    AfterValidator(_month_in_range),
    Field(description="YYYY-MM (the local calendar), 1970-01 to 2099-12", examples=["2026-11"]),
]


def day_in_range(value: date) -> date:
    """After-validator of a calendar day that becomes times (midnights, visits)."""
    if not FIRST_DAY <= value <= LAST_DAY:
        raise _refusal("date_range", DAY_RANGE)
    return value
