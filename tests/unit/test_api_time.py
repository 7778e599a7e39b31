"""Unit tests of the times the HTTP API accepts (gateway/api_time.py): the edges of the range in
several offsets, numbers refused, query parameters, months and days. Pure and fast."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from gateway.api_time import Instant, Month, day_in_range, query_instant

INSTANT: TypeAdapter[Any] = TypeAdapter(Instant)
MONTH: TypeAdapter[Any] = TypeAdapter(Month)


def refused(adapter: TypeAdapter[Any], value: Any) -> str:
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(value)
    return str(info.value.errors()[0]["type"])


@pytest.mark.parametrize(
    "text",
    [
        "1970-01-01T00:00:00Z",
        "1970-01-01T08:00:00+08:00",
        "2026-11-25T08:00:00+08:00",
        "2099-12-31T23:59:59.999Z",
        "2100-01-01T07:59:59+08:00",  # 2099-12-31T23:59:59Z
        "2099-12-31T11:59:59-12:00",
    ],
)
def test_instants_in_range(text: str) -> None:
    assert INSTANT.validate_python(text).utcoffset() is not None


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+08:00",
        "1900-01-01T00:00:00+08:00",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T07:59:59+08:00",
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:00:00Z",
        "9999-12-31T23:59:59-12:00",  # year 10000 in UTC
    ],
)
def test_instants_out_of_range(text: str) -> None:
    assert refused(INSTANT, text) == "datetime_range"
    with pytest.raises(RequestValidationError) as info:
        query_instant(text, "from")
    (error,) = info.value.errors()
    assert error["type"] == "datetime_range" and error["loc"] == ("query", "from")
    assert "1970-01-01T00:00:00Z" in error["msg"] and "2100-01-01T00:00:00Z" in error["msg"]


def test_numbers_and_naive_times_are_refused() -> None:
    assert refused(INSTANT, 1764000000) == "datetime_format"
    assert refused(INSTANT, "1764000000") == "datetime_format"  # pydantic: epoch seconds
    assert refused(INSTANT, "2026-11-25T08:00:00") == "timezone_aware"


def test_query_instants() -> None:
    assert query_instant(None, "to") is None
    assert query_instant("1970-01-01T00:00:00Z", "from") == 0
    midnight_utc = int(datetime(2026, 11, 25, tzinfo=UTC).timestamp() * 1000)
    assert query_instant("2026-11-25T08:00:00 08:00", "from") == midnight_utc  # "+" lost
    for bad in ("yesterday", "2026-11-25T08:00:00"):
        with pytest.raises(RequestValidationError):
            query_instant(bad, "from")


def test_months_and_days() -> None:
    assert MONTH.validate_python("1970-01") == "1970-01"
    assert MONTH.validate_python("2099-12") == "2099-12"
    for bad in ("0000-01", "1969-12", "2100-01", "9999-12"):
        assert refused(MONTH, bad) == "month_range"
    assert refused(MONTH, "2026-13") == "string_pattern_mismatch"
    assert day_in_range(date(1970, 1, 1)) == date(1970, 1, 1)
    assert day_in_range(date(2099, 12, 31)) == date(2099, 12, 31)
    for bad_day in (date(1, 1, 1), date(1969, 12, 31), date(2100, 1, 1), date(9999, 12, 31)):
        with pytest.raises(ValueError, match="1970-01-01 to 2099-12-31"):
            day_in_range(bad_day)
