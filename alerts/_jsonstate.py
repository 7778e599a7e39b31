"""Helpers for the rules' states stored as JSON: aware datetimes as RFC 3339 text, checked."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any


class StateError(ValueError):
    """A stored rule state that cannot be read (wrong version, missing or malformed field)."""


def dt_out(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def dt_in(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StateError(f"{what}: a time is RFC 3339 text")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise StateError(f"{what}: not a time: {value!r}") from None
    if parsed.tzinfo is None:
        raise StateError(f"{what}: a time needs an offset")
    return parsed


def dt_req(value: Any, what: str) -> datetime:
    parsed = dt_in(value, what)
    if parsed is None:
        raise StateError(f"{what}: a time is required")
    return parsed


def date_in(value: Any, what: str) -> date:
    if not isinstance(value, str):
        raise StateError(f"{what}: a date is ISO text")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise StateError(f"{what}: not a date: {value!r}") from None


def num(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateError(f"{what}: a number is required")
    return float(value)


def opt_num(value: Any, what: str) -> float | None:
    return None if value is None else num(value, what)


def integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateError(f"{what}: a whole number is required")
    return value


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise StateError(f"{what}: text is required")
    return value


def opt_text(value: Any, what: str) -> str | None:
    return None if value is None else text(value, what)


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise StateError(f"{what}: true or false is required")
    return value


def check_version(data: Any, expected: int, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise StateError(f"{what}: a JSON object is required")
    if data.get("v") != expected:
        raise StateError(f"{what}: unknown version {data.get('v')!r} (expected {expected})")
    return data
