"""One pydantic model per payload of contract v1 (device and pager messages in and out).

Models are strict (no "5" for 5, no "true" for true) and ignore fields they do not know, so that
a device with newer firmware that adds a field keeps working, while a malformed known field is
refused, never guessed at.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

MAX_PAYLOAD_BYTES = 4096
# Epoch milliseconds accepted: 2001-09-09 .. 2100-01-01 (a seconds value would be far too small).
_MIN_MS = 1_000_000_000_000
_MAX_MS = 4_102_444_800_000
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?"
)


def parse_ts(value: Any) -> datetime:
    """RFC 3339 with an offset, or integer epoch milliseconds -> an aware datetime."""
    if isinstance(value, bool):
        raise ValueError("a time is RFC 3339 with an offset or integer epoch milliseconds")
    if isinstance(value, int):
        if not _MIN_MS <= value <= _MAX_MS:
            raise ValueError("epoch milliseconds out of range (seconds sent instead of ms?)")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        m = _RFC3339.fullmatch(value)
        if m is None:
            raise ValueError("not an RFC 3339 time (e.g. 2026-11-23T08:15:00+08:00)")
        if m["offset"] is None:
            raise ValueError("an RFC 3339 time needs an offset (e.g. +08:00 or Z)")
        try:
            return datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
        except ValueError:
            raise ValueError("not an RFC 3339 time: no such date or time of day") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a time needs an offset")
        return value
    raise ValueError("a time is RFC 3339 with an offset or integer epoch milliseconds")


def format_ts(value: datetime) -> str:
    """RFC 3339 with offset, millisecond precision."""
    return value.isoformat(timespec="milliseconds")


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_ts),
    PlainSerializer(format_ts, return_type=str, when_used="json"),
]


def _no_nul(value: str) -> str:
    # JSON allows `\u0000`, PostgreSQL text does not: a NUL that got past here made the database
    # refuse its whole batch, and every alarm behind it waited. Ids ("1-64 chars" in the
    # contract) refuse nothing more.
    if "\x00" in value:
        raise ValueError("a NUL character (\\u0000) is not allowed")
    return value


# The HTTP API's rule for notes (gateway/api.py `_free_text`): tab, newline and carriage return
# are text, other control characters never are.
_CONTROL_IN_TEXT = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")


# What `_free_text` refuses, as a pager's note is cleaned of it instead (Reply._cut_note); and a
# lone surrogate (JSON's `\ud800` escape without its pair: json.loads joins a pair into one
# character, so any left is lone), which no UTF-8 can hold and pydantic refuses as "not a valid
# string" before any after-validator runs.
_UNFIT_IN_NOTE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _free_text(value: str) -> str:
    _no_nul(value)
    if _CONTROL_IN_TEXT.search(value):
        raise ValueError("control characters other than tab and newline are not allowed")
    return value


MessageId = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_no_nul)]
Pct = Annotated[float, Field(ge=0, le=100)]
NonNeg = Annotated[float, Field(ge=0)]


class Payload(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, allow_inf_nan=False)


class _Event(Payload):
    id: MessageId
    ts: Timestamp


class ButtonPressed(_Event):
    type: Literal["button.pressed"]
    press: Literal["short", "long"] | None = None


class ButtonCancelled(_Event):
    type: Literal["button.cancelled"]


class _GasReading(_Event):
    gas: Literal["natural_gas", "lpg", "coal_gas", "co"] | None = None
    lel_pct: Pct | None = None
    co_ppm: NonNeg | None = None

    @model_validator(mode="after")
    def _one_reading(self) -> _GasReading:
        if self.lel_pct is None and self.co_ppm is None:
            raise ValueError("a gas event needs lel_pct and/or co_ppm")
        return self


class GasAlarm(_GasReading):
    type: Literal["gas.alarm"]


class GasCleared(_GasReading):
    type: Literal["gas.cleared"]


class WaterLeak(_Event):
    type: Literal["water.leak"]


class WaterDry(_Event):
    type: Literal["water.dry"]


class Tamper(_Event):
    type: Literal["tamper"]


class BatteryLow(_Event):
    type: Literal["battery.low"]
    battery_pct: Pct


class CommandResult(_Event):
    type: Literal["command.result"]
    command_id: MessageId
    ok: bool
    detail: Annotated[str, StringConstraints(max_length=500), AfterValidator(_free_text)] | None = (
        None
    )


Event = (
    ButtonPressed
    | ButtonCancelled
    | GasAlarm
    | GasCleared
    | WaterLeak
    | WaterDry
    | Tamper
    | BatteryLow
    | CommandResult
)

EVENT_MODELS: dict[str, type[_Event]] = {
    "button.pressed": ButtonPressed,
    "button.cancelled": ButtonCancelled,
    "gas.alarm": GasAlarm,
    "gas.cleared": GasCleared,
    "water.leak": WaterLeak,
    "water.dry": WaterDry,
    "tamper": Tamper,
    "battery.low": BatteryLow,
    "command.result": CommandResult,
}

READINGS = ("lel_pct", "co_ppm", "flow_l", "total_l", "battery_pct", "rssi_dbm", "temp_c")


class Telemetry(Payload):
    id: MessageId
    ts: Timestamp
    lel_pct: Pct | None = None
    co_ppm: NonNeg | None = None
    flow_l: NonNeg | None = None
    interval_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    total_l: NonNeg | None = None
    battery_pct: Pct | None = None
    rssi_dbm: Annotated[float, Field(ge=-200, le=0)] | None = None
    temp_c: Annotated[float, Field(ge=-60, le=150)] | None = None

    @model_validator(mode="after")
    def _readings(self) -> Telemetry:
        if all(getattr(self, name) is None for name in READINGS):
            raise ValueError(f"telemetry needs at least one reading of {', '.join(READINGS)}")
        if self.flow_l is not None and self.interval_s is None:
            raise ValueError("flow_l needs interval_s (the seconds it covers)")
        return self

    def readings(self) -> dict[str, float]:
        """The readings present, by name (interval_s included when given)."""
        names = (*READINGS, "interval_s")
        return {n: v for n in names if (v := getattr(self, n)) is not None}


class Status(Payload):
    online: bool
    fw: Annotated[str, StringConstraints(max_length=64), AfterValidator(_free_text)] | None = None
    battery_pct: Pct | None = None


ReplyAction = Literal["ack", "decline", "arrived", "resolved"]
REPLY_NOTE_MAX_CHARS = 500
NOTE_CUT_MARK = "…"
ReplyNote = Annotated[
    str, StringConstraints(max_length=REPLY_NOTE_MAX_CHARS), AfterValidator(_free_text)
]


class Reply(Payload):
    id: MessageId
    ts: Timestamp
    alert_id: MessageId
    action: ReplyAction
    note: ReplyNote | None = None
    # Not read from the payload: the gateway's own record that it cut `note` (`_cut_note`).
    note_truncated: bool = False

    @model_validator(mode="before")
    @classmethod
    def _cut_note(cls, data: Any) -> Any:
        """An overlong note is cut to the limit (ending in NOTE_CUT_MARK), and a control
        character in it (a NUL included) or a lone surrogate is replaced by U+FFFD, not
        refused: the answer is the
        message, the note the least of it, and an ack refused for its note leaves the alert
        paging as if nobody had answered. A note that is not a string stays refused, as a
        malformed field always is."""
        if not isinstance(data, dict):
            return data
        note = data.get("note")
        if isinstance(note, str):
            note = _UNFIT_IN_NOTE.sub("\ufffd", note)
            data = {**data, "note": note}
        cut = isinstance(note, str) and len(note) > REPLY_NOTE_MAX_CHARS
        data = {**data, "note_truncated": cut}
        if cut:
            keep = REPLY_NOTE_MAX_CHARS - len(NOTE_CUT_MARK)
            data["note"] = str(note)[:keep] + NOTE_CUT_MARK
        return data


# --- gateway -> devices and pagers ---------------------------------------------------------


class Command(Payload):
    id: MessageId
    ts: Timestamp
    type: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PageElder(Payload):
    name: str
    address: str
    phone: str | None


class Page(Payload):
    type: Literal["page"] = "page"
    page_id: str
    alert_id: str
    ts: Timestamp
    priority: Literal["P1", "P2", "P3"]
    kind: str
    elder: PageElder
    text: str
    step: int
    reply_by: Timestamp


class Notice(Payload):
    type: Literal["notice"] = "notice"
    page_id: str
    alert_id: str
    ts: Timestamp
    state: str
    text: str
