"""Parsing raw MQTT payloads into contract models, saying exactly why a message is refused.

Every refusal is a `Rejection` with a `reason` from a small closed set (it becomes a metric
label) and a human `detail` (it is kept in the quarantine).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from devices.kinds import ALL_EVENT_TYPES, DeviceKind, event_allowed
from devices.payloads import (
    EVENT_MODELS,
    MAX_PAYLOAD_BYTES,
    Event,
    Reply,
    Status,
    Telemetry,
)


class Reason(StrEnum):
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_TYPE = "unknown_type"
    WRONG_KIND = "wrong_kind"
    INVALID = "invalid"
    UNKNOWN_DEVICE = "unknown_device"
    RETIRED_DEVICE = "retired_device"
    UNKNOWN_PAGER = "unknown_pager"
    UNKNOWN_ALERT = "unknown_alert"
    NOT_PAGED = "reply_not_paged"
    WRONG_TOPIC = "wrong_topic"  # the payload names another device or pager than its topic


class Rejection(Exception):
    """A message refused: `reason` (closed set) and `detail` (for people)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_object(raw: bytes) -> dict[str, Any]:
    """Size, UTF-8, JSON and 'is an object' checks, in that order."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise Rejection(Reason.TOO_LARGE, f"{len(raw)} bytes; at most {MAX_PAYLOAD_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejection(Reason.NOT_UTF8, f"not UTF-8 at byte {exc.start}") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # deep nesting is a RecursionError
        raise Rejection(Reason.NOT_JSON, f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise Rejection(Reason.NOT_OBJECT, f"a JSON {type(data).__name__}, not an object")
    return data


def explain(exc: ValidationError) -> str:
    """A short one-line account of what failed validation, naming the fields."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    more = len(exc.errors()) - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


M = TypeVar("M", bound=BaseModel)


# Contract v1 payloads carry no sender: the topic says who sent them, and the broker's ACL
# (gateway/broker_config.py) lets a device publish on its own topics only. A payload MAY name
# its sender (`device_id`, a pager's `pager_id`); one that names another than its topic's has
# come through a hole (a device holding another's credentials, a broker without our ACL) and
# is refused rather than applied to the wrong elder's device.
def _same_sender(data: dict[str, Any], field: str, expected: str | None) -> None:
    if expected is None:
        return
    claimed = data.get(field)
    if claimed is not None and claimed != expected:
        raise Rejection(
            Reason.WRONG_TOPIC,
            f"the payload's {field} is {str(claimed)[:64]!r}, the topic's {expected!r}",
        )


def _validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Rejection(Reason.INVALID, explain(exc)) from None


def parse_event(raw: bytes, kind: DeviceKind, *, device_id: str | None = None) -> Event:
    """An event from a device of `kind`; refuses unknown types and types of another kind, and
    (given the topic's `device_id`) a payload that names another device."""
    data = decode_object(raw)
    _same_sender(data, "device_id", device_id)
    etype = data.get("type")
    if etype is None:
        raise Rejection(Reason.INVALID, "type: Field required")
    if not isinstance(etype, str) or etype not in ALL_EVENT_TYPES:
        raise Rejection(Reason.UNKNOWN_TYPE, f"unknown event type {str(etype)[:64]!r}")
    if not event_allowed(kind, etype):
        raise Rejection(Reason.WRONG_KIND, f"a {kind} does not send {etype!r}")
    return _validate(EVENT_MODELS[etype], data)  # type: ignore[return-value]


def parse_telemetry(raw: bytes, *, device_id: str | None = None) -> Telemetry:
    data = decode_object(raw)
    _same_sender(data, "device_id", device_id)
    return _validate(Telemetry, data)


def parse_status(raw: bytes, *, device_id: str | None = None) -> Status:
    data = decode_object(raw)
    _same_sender(data, "device_id", device_id)
    return _validate(Status, data)


def parse_reply(raw: bytes, *, pager_id: str | None = None) -> Reply:
    data = decode_object(raw)
    _same_sender(data, "pager_id", pager_id)
    return _validate(Reply, data)
