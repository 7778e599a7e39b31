"""Unit tests of the device side of contract v1: topics, payload models and parsing.

Pure and fast: no broker, no database. Every refusal is checked for its exact `Reason`.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub
from pydantic import BaseModel

from devices.kinds import (
    ALL_EVENT_TYPES,
    COMMON_EVENT_TYPES,
    KIND_EVENT_TYPES,
    DeviceKind,
    event_allowed,
)
from devices.parse import (
    Reason,
    Rejection,
    decode_object,
    parse_event,
    parse_reply,
    parse_status,
    parse_telemetry,
)
from devices.payloads import (
    EVENT_MODELS,
    MAX_PAYLOAD_BYTES,
    READINGS,
    BatteryLow,
    ButtonCancelled,
    ButtonPressed,
    CommandResult,
    GasAlarm,
    GasCleared,
    Notice,
    Page,
    PageElder,
    Reply,
    Status,
    Tamper,
    Telemetry,
    WaterDry,
    WaterLeak,
)
from devices.topics import (
    DEVICE_CHANNELS,
    PAGER_CHANNELS,
    Channel,
    Topic,
    device_topic,
    gateway_status_topic,
    inbound_filters,
    pager_topic,
    parse_topic,
    valid_id,
)

BASE = "shouwang"
CST = timezone(timedelta(hours=8))
TS = "2026-11-23T08:15:00+08:00"
TS_DT = datetime(2026, 11, 23, 8, 15, tzinfo=CST)
TS_MS = int(TS_DT.timestamp() * 1000)

# A fast profile for every property test: no example database written into the repository.
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def event(type_: str, **fields: Any) -> dict[str, Any]:
    return {"id": "ev-1", "ts": TS, "type": type_, **fields}


def rejected(fn: Any, payload: bytes, *args: Any) -> Rejection:
    with pytest.raises(Rejection) as info:
        fn(payload, *args)
    return info.value


# --------------------------------------------------------------------------------------------
# kinds
# --------------------------------------------------------------------------------------------


def test_every_kind_has_its_own_types_and_the_common_ones() -> None:
    own = {
        DeviceKind.CALL_BUTTON: {"button.pressed", "button.cancelled"},
        DeviceKind.GAS_SENSOR: {"gas.alarm", "gas.cleared"},
        DeviceKind.WATER_SENSOR: {"water.leak", "water.dry"},
    }
    assert set(COMMON_EVENT_TYPES) == {"tamper", "battery.low", "command.result"}
    for kind, types in own.items():
        assert KIND_EVENT_TYPES[kind] == types | COMMON_EVENT_TYPES
        for t in ALL_EVENT_TYPES:
            assert event_allowed(kind, t) == (t in types or t in COMMON_EVENT_TYPES)
    assert set(EVENT_MODELS) == set(ALL_EVENT_TYPES)
    assert {k.value for k in DeviceKind} == {"call_button", "gas_sensor", "water_sensor"}


# --------------------------------------------------------------------------------------------
# topics
# --------------------------------------------------------------------------------------------

GOOD_IDS = ["a", "Z", "0", "btn-0001", "gas_sensor.kitchen", "A.b-c_9", "x" * 64, "-", "..."]
BAD_IDS = [
    "",
    "x" * 65,
    "é",
    "btné",
    "two words",
    " lead",
    "trail ",
    "a/b",
    "a+b",
    "+",
    "#",
    "a#",
    "tab\there",
    "日本",
    "a\x00",
    # BUG (devices/topics.py:13,40): ID_RE ends in `$`, which also matches before a final
    # newline, so "abc\n" is a valid id. Fix: ID_RE.fullmatch (or end the pattern with \Z).
    "abc\n",
    "\nabc",
]


@pytest.mark.parametrize("channel", sorted(DEVICE_CHANNELS))
@pytest.mark.parametrize("ident", ["d", "btn-0001", "x" * 64])
def test_device_topic_round_trip(channel: Channel, ident: str) -> None:
    topic = device_topic(BASE, ident, channel)
    assert topic == f"shouwang/v1/devices/{ident}/{channel.value}"
    assert parse_topic(BASE, topic) == Topic("devices", ident, channel)
    # a plain string channel works too
    assert device_topic(BASE, ident, channel.value) == topic


@pytest.mark.parametrize("channel", sorted(PAGER_CHANNELS))
@pytest.mark.parametrize("ident", ["p", "pager-7", "x" * 64])
def test_pager_topic_round_trip(channel: Channel, ident: str) -> None:
    topic = pager_topic(BASE, ident, channel)
    assert topic == f"shouwang/v1/pagers/{ident}/{channel.value}"
    assert parse_topic(BASE, topic) == Topic("pagers", ident, channel)


def test_channels_are_split_between_devices_and_pagers() -> None:
    assert set(Channel) == DEVICE_CHANNELS | PAGER_CHANNELS
    assert not DEVICE_CHANNELS & PAGER_CHANNELS
    assert {c.value for c in DEVICE_CHANNELS} == {"events", "telemetry", "status", "commands"}
    assert {c.value for c in PAGER_CHANNELS} == {"pages", "replies"}


def test_configurable_base_round_trip() -> None:
    topic = device_topic("home-7", "btn-1", Channel.EVENTS)
    assert topic == "home-7/v1/devices/btn-1/events"
    assert parse_topic("home-7", topic) == Topic("devices", "btn-1", Channel.EVENTS)
    assert parse_topic(BASE, topic) is None


@pytest.mark.parametrize("ident", GOOD_IDS)
def test_valid_ids_accepted(ident: str) -> None:
    assert valid_id(ident)
    assert parse_topic(BASE, f"shouwang/v1/devices/{ident}/events") == Topic(
        "devices", ident, Channel.EVENTS
    )
    assert parse_topic(BASE, f"shouwang/v1/pagers/{ident}/replies") == Topic(
        "pagers", ident, Channel.REPLIES
    )
    device_topic(BASE, ident, Channel.STATUS)
    pager_topic(BASE, ident, Channel.PAGES)


@pytest.mark.parametrize("ident", BAD_IDS)
def test_invalid_ids_refused(ident: str) -> None:
    assert not valid_id(ident)
    assert parse_topic(BASE, f"shouwang/v1/devices/{ident}/events") is None
    assert parse_topic(BASE, f"shouwang/v1/pagers/{ident}/replies") is None
    with pytest.raises(ValueError, match="invalid id"):
        device_topic(BASE, ident, Channel.EVENTS)
    with pytest.raises(ValueError, match="invalid id"):
        pager_topic(BASE, ident, Channel.PAGES)


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/devices/btn-1/events",  # wrong base
        "Shouwang/v1/devices/btn-1/events",  # base is case sensitive
        "shouwang/v2/devices/btn-1/events",  # wrong version
        "shouwang/V1/devices/btn-1/events",
        "shouwang/v1/device/btn-1/events",  # wrong owner
        "shouwang/v1/gateways/btn-1/events",
        "shouwang/v1/Devices/btn-1/events",
        "shouwang/v1/devices/btn-1",  # too few levels
        "shouwang/v1/devices",
        "shouwang",
        "",
        "shouwang/v1/devices/btn-1/events/extra",  # too many levels
        "shouwang/v1/devices/btn-1/events/",
        "/shouwang/v1/devices/btn-1/events",
        "shouwang/v1/devices//events",  # empty id
        "shouwang/v1/devices/btn-1/alarms",  # unknown channel
        "shouwang/v1/devices/btn-1/Events",
        "shouwang/v1/devices/btn-1/pages",  # pager channel on a device
        "shouwang/v1/devices/btn-1/replies",
        "shouwang/v1/pagers/p-1/events",  # device channel on a pager
        "shouwang/v1/pagers/p-1/telemetry",
        "shouwang/v1/pagers/p-1/status",
        "shouwang/v1/pagers/p-1/commands",
        "shouwang/v1/devices/+/events",  # a filter is not a topic
        "shouwang/v1/devices/#",
        "shouwang/v1/gateways/shouwang-gateway/status",
    ],
)
def test_non_contract_topics_parse_to_none(topic: str) -> None:
    assert parse_topic(BASE, topic) is None


@pytest.mark.parametrize("channel", sorted(PAGER_CHANNELS))
def test_device_topic_refuses_pager_channels(channel: Channel) -> None:
    with pytest.raises(ValueError, match="not a device channel"):
        device_topic(BASE, "btn-1", channel)


@pytest.mark.parametrize("channel", sorted(DEVICE_CHANNELS))
def test_pager_topic_refuses_device_channels(channel: Channel) -> None:
    with pytest.raises(ValueError, match="not a pager channel"):
        pager_topic(BASE, "p-1", channel)


def test_unknown_channel_name_refused_when_building() -> None:
    with pytest.raises(ValueError):
        device_topic(BASE, "btn-1", "alarms")


def test_gateway_status_topic() -> None:
    assert gateway_status_topic(BASE, "shouwang-gateway") == (
        "shouwang/v1/gateways/shouwang-gateway/status"
    )


def test_inbound_filters() -> None:
    filters = inbound_filters(BASE)
    assert filters == [
        "shouwang/v1/devices/+/events",
        "shouwang/v1/devices/+/telemetry",
        "shouwang/v1/devices/+/status",
        "shouwang/v1/pagers/+/replies",
    ]
    assert inbound_filters("home-7")[0] == "home-7/v1/devices/+/events"
    inbound = {Channel.EVENTS, Channel.TELEMETRY, Channel.STATUS, Channel.REPLIES}
    for channel in Channel:
        if channel in DEVICE_CHANNELS:
            topic = device_topic(BASE, "x" * 64, channel)
        else:
            topic = pager_topic(BASE, "x" * 64, channel)
        matching = [f for f in filters if topic_matches_sub(f, topic)]
        # each inbound topic is matched by exactly one filter; the gateway never hears its own
        # commands and pages
        assert len(matching) == (1 if channel in inbound else 0), (channel, matching)
    assert not any(topic_matches_sub(f, "shouwang/v2/devices/a/events") for f in filters)
    assert not any(topic_matches_sub(f, "other/v1/devices/a/events") for f in filters)


@FAST
@given(st.text(max_size=80))
def test_parse_topic_never_raises(topic: str) -> None:
    result = parse_topic(BASE, topic)
    if result is not None:
        assert valid_id(result.ident)
        assert topic == f"{BASE}/v1/{result.owner}/{result.ident}/{result.channel.value}"


@FAST
@given(st.from_regex(r"\A[A-Za-z0-9_.\-]{1,64}\Z"), st.sampled_from(list(Channel)))
def test_topic_round_trip_property(ident: str, channel: Channel) -> None:
    if channel in DEVICE_CHANNELS:
        topic, owner = device_topic(BASE, ident, channel), "devices"
    else:
        topic, owner = pager_topic(BASE, ident, channel), "pagers"
    assert parse_topic(BASE, topic) == Topic(owner, ident, channel)


# --------------------------------------------------------------------------------------------
# decoding: size, UTF-8, JSON, object
# --------------------------------------------------------------------------------------------

ALL_PARSERS = [
    pytest.param(lambda b: parse_event(b, DeviceKind.CALL_BUTTON), id="event"),
    pytest.param(parse_telemetry, id="telemetry"),
    pytest.param(parse_status, id="status"),
    pytest.param(parse_reply, id="reply"),
]


def padded(obj: dict[str, Any], size: int) -> bytes:
    """`obj` with an unknown `pad` field making it exactly `size` bytes."""
    base = raw({**obj, "pad": ""})
    out = raw({**obj, "pad": "x" * (size - len(base))})
    assert len(out) == size
    return out


def test_payload_of_exactly_max_bytes_accepted() -> None:
    assert MAX_PAYLOAD_BYTES == 4096
    body = padded(event("button.pressed"), 4096)
    assert isinstance(parse_event(body, DeviceKind.CALL_BUTTON), ButtonPressed)
    # the limit counts bytes, not characters
    multi = raw({**event("button.pressed"), "pad": ""})
    n = (4096 - len(multi)) // 3
    body = raw({**event("button.pressed"), "pad": "水" * n})
    assert len(body) <= 4096
    parse_event(body, DeviceKind.CALL_BUTTON)


@pytest.mark.parametrize("parser", ALL_PARSERS)
def test_payload_over_max_bytes_too_large(parser: Any) -> None:
    body = padded(event("button.pressed"), 4097)
    err = rejected(parser, body)
    assert err.reason == Reason.TOO_LARGE
    assert "4097" in err.detail
    # size is checked first: a huge non-UTF-8, non-JSON blob is still "too large"
    assert rejected(parser, b"\xff" * 5000).reason == Reason.TOO_LARGE


def test_too_large_counts_bytes_not_characters() -> None:
    body = raw({**event("button.pressed"), "pad": "水" * 1400})  # ~4200 bytes, 1400+ chars
    assert len(body) > 4096
    assert rejected(parse_event, body, DeviceKind.CALL_BUTTON).reason == Reason.TOO_LARGE


@pytest.mark.parametrize("parser", ALL_PARSERS)
@pytest.mark.parametrize(
    "body",
    [
        b"\xff",
        b"\xfe\xff{}",
        b'{"id": "\xc3"}',  # truncated sequence
        b'{"id": "\xc0\xaf"}',  # overlong encoding
        b'{"id": "\xed\xa0\x80"}',  # encoded surrogate
        b'{"id": "ok", "ts": "\x80"}',
        '{"note": "café"}'.encode("latin-1"),
    ],
)
def test_invalid_utf8(parser: Any, body: bytes) -> None:
    err = rejected(parser, body)
    assert err.reason == Reason.NOT_UTF8
    assert "byte" in err.detail


@pytest.mark.parametrize("parser", ALL_PARSERS)
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b" ",
        b"{",
        b"}",
        b"{'id': 'a'}",
        b'{"id": "a",}',
        b"hello",
        b"{}x",
        b'{"a": 1} {"b": 2}',
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark is not JSON
        b'{"id": undefined}',
    ],
)
def test_not_json(parser: Any, body: bytes) -> None:
    assert rejected(parser, body).reason == Reason.NOT_JSON


@pytest.mark.parametrize("parser", ALL_PARSERS)
@pytest.mark.parametrize(
    "body", [b"[]", b'[{"id": "a"}]', b'"string"', b"5", b"1.5", b"null", b"true", b"false"]
)
def test_not_an_object(parser: Any, body: bytes) -> None:
    err = rejected(parser, body)
    assert err.reason == Reason.NOT_OBJECT
    assert "not an object" in err.detail


def test_decode_object_returns_the_object() -> None:
    assert decode_object(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    assert decode_object(b" \n{}\t ") == {}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 4096,  # deeply nested, still within the size limit
        b"[" * 2000 + b"]" * 2000,  # well-formed JSON, just deep
        b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}",  # an object, deep inside
    ],
    ids=["open-4096", "array-2000", "object-2000"],
)
def test_deeply_nested_json_is_a_rejection_not_a_crash(body: bytes) -> None:
    # BUG (devices/parse.py, decode_object): json.loads raises RecursionError (not ValueError)
    # for nesting deeper than the interpreter's recursion limit, which escapes the parser and
    # is not a Rejection. The contract: a message that is not acceptable "is kept in the
    # quarantine with its reason ... the gateway keeps running".
    assert len(body) <= MAX_PAYLOAD_BYTES
    for parser in (parse_telemetry, parse_status, parse_reply):
        err = rejected(parser, body)  # any Rejection (not_json is the natural reason)
        assert err.reason in (Reason.NOT_JSON, Reason.NOT_OBJECT, Reason.INVALID)
    err = rejected(parse_event, body, DeviceKind.CALL_BUTTON)
    assert err.reason in (Reason.NOT_JSON, Reason.NOT_OBJECT, Reason.INVALID)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_not_json(literal: str) -> None:
    # BUG (devices/parse.py, decode_object): Python's json.loads accepts the non-standard
    # literals NaN, Infinity and -Infinity (RFC 8259 has none of them), so e.g.
    # {"co_ppm": Infinity} parses to co_ppm=inf and is accepted.
    body = f'{{"id": "t-1", "ts": {TS_MS}, "co_ppm": {literal}}}'.encode()
    assert rejected(parse_telemetry, body).reason == Reason.NOT_JSON
    body = f'{{"id": "e-1", "ts": {TS_MS}, "type": "gas.alarm", "co_ppm": {literal}}}'.encode()
    assert rejected(parse_event, body, DeviceKind.GAS_SENSOR).reason == Reason.NOT_JSON


def test_number_overflowing_to_infinity_is_invalid() -> None:
    # 1e400 is valid JSON syntax but becomes float('inf') in Python: not a reading.
    body = f'{{"id": "t-1", "ts": {TS_MS}, "total_l": 1e400}}'.encode()
    assert rejected(parse_telemetry, body).reason == Reason.INVALID


# --------------------------------------------------------------------------------------------
# events: required fields, ids, times
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["id", "ts"])
def test_missing_id_or_ts_invalid(missing: str) -> None:
    body = event("button.pressed")
    del body[missing]
    err = rejected(parse_event, raw(body), DeviceKind.CALL_BUTTON)
    assert err.reason == Reason.INVALID
    assert missing in err.detail
    assert "required" in err.detail.lower()


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_missing_type_invalid(kind: DeviceKind) -> None:
    body = event("button.pressed")
    del body["type"]
    err = rejected(parse_event, raw(body), kind)
    assert err.reason == Reason.INVALID
    assert "type" in err.detail


def test_null_type_invalid() -> None:
    err = rejected(
        parse_event, raw(event("button.pressed") | {"type": None}), DeviceKind.CALL_BUTTON
    )
    assert err.reason == Reason.INVALID


def test_missing_everything_names_fields() -> None:
    err = rejected(parse_event, raw({"type": "tamper"}), DeviceKind.CALL_BUTTON)
    assert err.reason == Reason.INVALID
    assert "id" in err.detail and "ts" in err.detail


@pytest.mark.parametrize("bad_id", ["", "x" * 65, 5, 0, 1.5, True, None, ["a"], {"a": 1}], ids=repr)
def test_bad_event_id_invalid(bad_id: Any) -> None:
    err = rejected(parse_event, raw(event("tamper", id=bad_id)), DeviceKind.WATER_SENSOR)
    assert err.reason == Reason.INVALID
    assert "id" in err.detail


@pytest.mark.parametrize("good_id", ["x", "x" * 64, "水" * 64, "a b/c#+"])
def test_event_id_1_to_64_chars_of_anything(good_id: str) -> None:
    ev = parse_event(raw(event("tamper", id=good_id)), DeviceKind.WATER_SENSOR)
    assert ev.id == good_id


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-23T08:15:00+08:00", TS_DT),
        ("2026-11-23T00:15:00Z", TS_DT),
        ("2026-11-23T00:15:00z", TS_DT),
        ("2026-11-23t00:15:00Z", TS_DT),
        ("2026-11-23T00:15:00+00:00", TS_DT),
        ("2026-11-22T19:15:00-05:00", TS_DT),
        ("2026-11-23T08:15:00.250+08:00", TS_DT + timedelta(milliseconds=250)),
        ("2026-11-23 08:15:00+08:00", TS_DT),  # RFC 3339 allows a space
        (TS_MS, TS_DT),
        (TS_MS + 7, TS_DT + timedelta(milliseconds=7)),
        (1_000_000_000_000, datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)),
        (4_102_444_800_000, datetime(2100, 1, 1, tzinfo=UTC)),
    ],
)
def test_good_times(ts: Any, expected: datetime) -> None:
    ev = parse_event(raw(event("button.pressed", ts=ts)), DeviceKind.CALL_BUTTON)
    assert ev.ts == expected
    assert ev.ts.tzinfo is not None


def test_offset_is_kept() -> None:
    ev = parse_event(raw(event("button.pressed")), DeviceKind.CALL_BUTTON)
    assert ev.ts.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    ("ts", "in_detail"),
    [
        ("2026-11-23T08:15:00", "offset"),  # naive
        ("2026-11-23 08:15:00", "offset"),
        ("2026-11-23T08:15:00.123", "offset"),
        (1_764_000_000, "range"),  # epoch seconds, not ms
        (0, "range"),
        (-1, "range"),
        (999_999_999_999, "range"),
        (4_102_444_800_001, "range"),
        (10**30, "range"),
        (1_764_000_000_000.0, "RFC 3339"),  # float
        (1_764_000_000_000.5, "RFC 3339"),
        (True, "RFC 3339"),  # bool
        (False, "RFC 3339"),
        (None, "ts"),
        ([2026, 11, 23], "RFC 3339"),
        ({"s": 1}, "RFC 3339"),
        ("garbage", "RFC 3339"),
        ("", "RFC 3339"),
        ("2026-11-23", "RFC 3339"),
        ("2026-13-01T08:15:00+08:00", "RFC 3339"),
        ("2026-02-30T08:15:00+08:00", "RFC 3339"),
        ("2026-11-23T25:15:00+08:00", "RFC 3339"),
        ("2026-11-23X08:15:00+08:00", "RFC 3339"),
        ("1764000000000", "RFC 3339"),  # ms as a string
        ("yesterday at noon, +08:00", "RFC 3339"),
    ],
    ids=repr,
)
def test_bad_times(ts: Any, in_detail: str) -> None:
    err = rejected(parse_event, raw(event("button.pressed", ts=ts)), DeviceKind.CALL_BUTTON)
    assert err.reason == Reason.INVALID
    assert "ts" in err.detail
    assert in_detail in err.detail


# --------------------------------------------------------------------------------------------
# events: type and kind
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(DeviceKind))
@pytest.mark.parametrize(
    "etype",
    ["button.held", "gas.leak", "smoke.alarm", "", "BUTTON.PRESSED", "tamper ", 5, True, [], {}],
    ids=repr,
)
def test_unknown_type(kind: DeviceKind, etype: Any) -> None:
    err = rejected(parse_event, raw(event("tamper") | {"type": etype}), kind)
    assert err.reason == Reason.UNKNOWN_TYPE


def test_unknown_type_detail_is_bounded() -> None:
    err = rejected(parse_event, raw(event("x" * 2000)), DeviceKind.CALL_BUTTON)
    assert err.reason == Reason.UNKNOWN_TYPE
    assert len(err.detail) < 120


WRONG_KIND_CASES = [
    (kind, etype)
    for kind in DeviceKind
    for etype in sorted(ALL_EVENT_TYPES)
    if etype not in KIND_EVENT_TYPES[kind]
]


def test_wrong_kind_cases_cover_every_pair() -> None:
    # 3 kinds x 2 kind-specific types of each of the 2 other kinds
    assert len(WRONG_KIND_CASES) == 3 * 4


@pytest.mark.parametrize(("kind", "etype"), WRONG_KIND_CASES)
def test_event_of_another_kind_refused(kind: DeviceKind, etype: str) -> None:
    # a fully valid event of its own kind, sent by the wrong kind of device
    body = valid_event_body(etype)
    err = rejected(parse_event, raw(body), kind)
    assert err.reason == Reason.WRONG_KIND
    assert etype in err.detail and kind.value in err.detail


def test_wrong_kind_checked_before_fields() -> None:
    # a gas.alarm without any reading from a call button: the kind is what is wrong
    err = rejected(parse_event, raw(event("gas.alarm")), DeviceKind.CALL_BUTTON)
    assert err.reason == Reason.WRONG_KIND


# --------------------------------------------------------------------------------------------
# events: valid examples from the contract's tables
# --------------------------------------------------------------------------------------------

VALID_EVENTS: dict[str, list[dict[str, Any]]] = {
    "button.pressed": [{}, {"press": "short"}, {"press": "long"}, {"press": None}],
    "button.cancelled": [{}],
    "gas.alarm": [
        {"gas": "natural_gas", "lel_pct": 25},
        {"gas": "lpg", "lel_pct": 12.5},
        {"gas": "coal_gas", "lel_pct": 100, "co_ppm": 30},
        {"gas": "co", "co_ppm": 150},
        {"lel_pct": 0},
        {"co_ppm": 0},
    ],
    "gas.cleared": [
        {"gas": "natural_gas", "lel_pct": 0},
        {"gas": "co", "co_ppm": 2.5},
        {"gas": "lpg", "lel_pct": 1, "co_ppm": 0},
    ],
    "water.leak": [{}],
    "water.dry": [{}],
    "tamper": [{}],
    "battery.low": [
        {"battery_pct": 0},
        {"battery_pct": 9},
        {"battery_pct": 12.5},
        {"battery_pct": 100},
    ],
    "command.result": [
        {"command_id": "cmd-1", "ok": True},
        {"command_id": "cmd-2", "ok": False, "detail": "valve stuck"},
        {"command_id": "cmd-3", "ok": True, "detail": None},
    ],
}

MODEL_OF = {
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


def valid_event_body(etype: str) -> dict[str, Any]:
    return event(etype, **VALID_EVENTS[etype][0])


VALID_CASES = [
    pytest.param(kind, etype, fields, id=f"{kind.value}-{etype}-{i}")
    for kind in DeviceKind
    for etype in sorted(KIND_EVENT_TYPES[kind])
    for i, fields in enumerate(VALID_EVENTS[etype])
]


def test_valid_examples_cover_every_type() -> None:
    assert set(VALID_EVENTS) == set(ALL_EVENT_TYPES) == set(MODEL_OF)


@pytest.mark.parametrize(("kind", "etype", "fields"), VALID_CASES)
def test_valid_contract_examples_parse(kind: DeviceKind, etype: str, fields: dict) -> None:
    for ts in (TS, TS_MS):
        ev = parse_event(raw(event(etype, ts=ts, **fields)), kind)
        assert type(ev) is MODEL_OF[etype]
        assert ev.type == etype
        assert ev.id == "ev-1"
        assert ev.ts == TS_DT
        for name, value in fields.items():
            assert getattr(ev, name) == value


def test_numbers_are_taken_as_given() -> None:
    ev = parse_event(raw(event("gas.alarm", lel_pct=25, co_ppm=7.5)), DeviceKind.GAS_SENSOR)
    assert isinstance(ev, GasAlarm)
    assert ev.lel_pct == 25.0 and ev.co_ppm == 7.5 and ev.gas is None
    ev = parse_event(raw(event("button.pressed")), DeviceKind.CALL_BUTTON)
    assert isinstance(ev, ButtonPressed) and ev.press is None


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_unknown_extra_fields_ignored(kind: DeviceKind) -> None:
    extra = {"fw": "2.1.0", "rssi": -71, "nested": {"a": [1, 2]}, "online": "maybe", "x": None}
    for etype in sorted(KIND_EVENT_TYPES[kind]):
        ev = parse_event(raw(valid_event_body(etype) | extra), kind)
        assert ev.type == etype
        assert not hasattr(ev, "nested")


def test_models_are_frozen() -> None:
    ev = parse_event(raw(event("tamper")), DeviceKind.CALL_BUTTON)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen instance error
        ev.id = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# events: field validation
# --------------------------------------------------------------------------------------------

BAD_FIELDS = [
    # (kind, type, fields, field named in the detail)
    (DeviceKind.CALL_BUTTON, "button.pressed", {"press": "double"}, "press"),
    (DeviceKind.CALL_BUTTON, "button.pressed", {"press": "SHORT"}, "press"),
    (DeviceKind.CALL_BUTTON, "button.pressed", {"press": ""}, "press"),
    (DeviceKind.CALL_BUTTON, "button.pressed", {"press": 1}, "press"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"lel_pct": 101}, "lel_pct"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"lel_pct": 100.01}, "lel_pct"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"lel_pct": -1}, "lel_pct"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"lel_pct": -0.001}, "lel_pct"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"co_ppm": -1}, "co_ppm"),
    (DeviceKind.GAS_SENSOR, "gas.cleared", {"co_ppm": -0.5}, "co_ppm"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {}, "lel_pct"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"gas": "co"}, "lel_pct"),
    (DeviceKind.GAS_SENSOR, "gas.cleared", {}, "co_ppm"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"lel_pct": None, "co_ppm": None}, "lel_pct"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"gas": "methane", "lel_pct": 10}, "gas"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"gas": "CO", "co_ppm": 10}, "gas"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"gas": 1, "lel_pct": 10}, "gas"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"lel_pct": "5"}, "lel_pct"),  # strict
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"co_ppm": "150"}, "co_ppm"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"lel_pct": True}, "lel_pct"),
    (DeviceKind.GAS_SENSOR, "gas.alarm", {"lel_pct": [5]}, "lel_pct"),
    (DeviceKind.CALL_BUTTON, "battery.low", {}, "battery_pct"),
    (DeviceKind.CALL_BUTTON, "battery.low", {"battery_pct": None}, "battery_pct"),
    (DeviceKind.GAS_SENSOR, "battery.low", {"battery_pct": "5"}, "battery_pct"),
    (DeviceKind.WATER_SENSOR, "battery.low", {"battery_pct": 101}, "battery_pct"),
    (DeviceKind.WATER_SENSOR, "battery.low", {"battery_pct": -1}, "battery_pct"),
    (DeviceKind.WATER_SENSOR, "battery.low", {"battery_pct": False}, "battery_pct"),
    (DeviceKind.CALL_BUTTON, "command.result", {"command_id": "c-1"}, "ok"),
    (DeviceKind.CALL_BUTTON, "command.result", {"command_id": "c-1", "ok": "true"}, "ok"),
    (DeviceKind.GAS_SENSOR, "command.result", {"command_id": "c-1", "ok": 1}, "ok"),
    (DeviceKind.GAS_SENSOR, "command.result", {"command_id": "c-1", "ok": None}, "ok"),
    (DeviceKind.WATER_SENSOR, "command.result", {"ok": True}, "command_id"),
    (DeviceKind.WATER_SENSOR, "command.result", {"command_id": "", "ok": True}, "command_id"),
    (DeviceKind.WATER_SENSOR, "command.result", {"command_id": 7, "ok": True}, "command_id"),
    (
        DeviceKind.WATER_SENSOR,
        "command.result",
        {"command_id": "c", "ok": True, "detail": "x" * 501},
        "detail",
    ),
    (
        DeviceKind.WATER_SENSOR,
        "command.result",
        {"command_id": "c", "ok": True, "detail": 5},
        "detail",
    ),
]


@pytest.mark.parametrize(("kind", "etype", "fields", "field"), BAD_FIELDS, ids=repr)
def test_bad_fields_invalid(kind: DeviceKind, etype: str, fields: dict, field: str) -> None:
    err = rejected(parse_event, raw(event(etype, **fields)), kind)
    assert err.reason == Reason.INVALID
    assert field in err.detail


def test_command_result_detail_up_to_500() -> None:
    body = event("command.result", command_id="c", ok=False, detail="x" * 500)
    ev = parse_event(raw(body), DeviceKind.GAS_SENSOR)
    assert isinstance(ev, CommandResult) and len(ev.detail or "") == 500


# --------------------------------------------------------------------------------------------
# telemetry
# --------------------------------------------------------------------------------------------

ONE_READING = [
    {"lel_pct": 3.5},
    {"co_ppm": 4},
    {"flow_l": 1.5, "interval_s": 60},
    {"flow_l": 0, "interval_s": 300},
    {"total_l": 123456.7},
    {"battery_pct": 80},
    {"rssi_dbm": -71},
    {"temp_c": 21.5},
    {"temp_c": -10},
]


def telemetry(**fields: Any) -> dict[str, Any]:
    return {"id": "t-1", "ts": TS_MS, **fields}


@pytest.mark.parametrize("reading", ONE_READING, ids=repr)
def test_each_reading_alone_accepted(reading: dict[str, Any]) -> None:
    tm = parse_telemetry(raw(telemetry(**reading)))
    assert isinstance(tm, Telemetry)
    assert tm.readings() == {k: float(v) for k, v in reading.items()}
    assert tm.ts == TS_DT


def test_every_reading_together() -> None:
    fields = {
        "lel_pct": 1,
        "co_ppm": 2,
        "flow_l": 3,
        "interval_s": 60,
        "total_l": 4,
        "battery_pct": 5,
        "rssi_dbm": -6,
        "temp_c": 7,
    }
    tm = parse_telemetry(raw(telemetry(**fields, extra="ignored")))
    assert tm.readings() == {k: float(v) for k, v in fields.items()}
    assert set(READINGS) == set(fields) - {"interval_s"}


@pytest.mark.parametrize(
    ("fields", "in_detail"),
    [
        ({}, "at least one reading"),
        ({"interval_s": 60}, "at least one reading"),
        ({"unknown_reading": 5}, "at least one reading"),
        ({"lel_pct": None}, "at least one reading"),
        ({"flow_l": 2.0}, "interval_s"),
        ({"flow_l": -1, "interval_s": 60}, "flow_l"),
        ({"flow_l": 1, "interval_s": 0}, "interval_s"),
        ({"flow_l": 1, "interval_s": -5}, "interval_s"),
        ({"flow_l": 1, "interval_s": 86_401}, "interval_s"),
        ({"total_l": -0.1}, "total_l"),
        ({"lel_pct": 101}, "lel_pct"),
        ({"co_ppm": -1}, "co_ppm"),
        ({"battery_pct": 100.5}, "battery_pct"),
        ({"rssi_dbm": 1}, "rssi_dbm"),
        ({"rssi_dbm": -201}, "rssi_dbm"),
        ({"temp_c": 151}, "temp_c"),
        ({"temp_c": -61}, "temp_c"),
        ({"temp_c": "21"}, "temp_c"),
        ({"battery_pct": "5"}, "battery_pct"),
        ({"flow_l": "1", "interval_s": 60}, "flow_l"),
        ({"co_ppm": True}, "co_ppm"),
    ],
    ids=repr,
)
def test_bad_telemetry(fields: dict[str, Any], in_detail: str) -> None:
    err = rejected(parse_telemetry, raw(telemetry(**fields)))
    assert err.reason == Reason.INVALID
    assert in_detail in err.detail


@pytest.mark.parametrize("missing", ["id", "ts"])
def test_telemetry_needs_id_and_ts(missing: str) -> None:
    body = telemetry(temp_c=20)
    del body[missing]
    err = rejected(parse_telemetry, raw(body))
    assert err.reason == Reason.INVALID and missing in err.detail


def test_telemetry_bad_ts() -> None:
    err = rejected(parse_telemetry, raw(telemetry(temp_c=20) | {"ts": 1_764_000_000}))
    assert err.reason == Reason.INVALID and "range" in err.detail


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"online": True},
        {"online": False},
        {"online": True, "fw": "1.4.2"},
        {"online": True, "battery_pct": 77},
        {"online": True, "fw": "v2.0.0-rc.1+build.7", "battery_pct": 100},
        {"online": False, "fw": None, "battery_pct": None},
        {"online": True, "id": 5, "ts": "whatever", "client_id": "x"},  # unknown ignored
        {"online": True, "fw": "x" * 64},
    ],
    ids=repr,
)
def test_good_status(body: dict[str, Any]) -> None:
    st_ = parse_status(raw(body))
    assert isinstance(st_, Status)
    assert st_.online is body["online"]
    assert st_.fw == body.get("fw")
    assert st_.battery_pct == body.get("battery_pct")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "online"),
        ({"fw": "1.0"}, "online"),
        ({"online": None}, "online"),
        ({"online": "true"}, "online"),
        ({"online": "false"}, "online"),
        ({"online": 1}, "online"),
        ({"online": 0}, "online"),
        ({"online": "yes"}, "online"),
        ({"online": True, "battery_pct": 101}, "battery_pct"),
        ({"online": True, "battery_pct": -1}, "battery_pct"),
        ({"online": True, "battery_pct": "50"}, "battery_pct"),
        ({"online": True, "fw": 1.4}, "fw"),
        ({"online": True, "fw": "x" * 65}, "fw"),
    ],
    ids=repr,
)
def test_bad_status(body: dict[str, Any], field: str) -> None:
    err = rejected(parse_status, raw(body))
    assert err.reason == Reason.INVALID
    assert field in err.detail


def test_last_will_payload() -> None:
    assert parse_status(b'{"online": false}') == Status(online=False)


# --------------------------------------------------------------------------------------------
# replies
# --------------------------------------------------------------------------------------------


def reply(**fields: Any) -> dict[str, Any]:
    return {"id": "r-1", "ts": TS, "alert_id": "al-01HZX", "action": "ack", **fields}


@pytest.mark.parametrize("action", ["ack", "decline", "arrived", "resolved"])
def test_reply_actions(action: str) -> None:
    r = parse_reply(raw(reply(action=action)))
    assert isinstance(r, Reply)
    assert r.action == action
    assert r.alert_id == "al-01HZX"
    assert r.ts == TS_DT
    assert r.note is None


def test_reply_with_note_and_epoch_ms() -> None:
    r = parse_reply(raw(reply(ts=TS_MS, note="到了，老人没事" * 10, extra=1)))
    assert r.note == "到了，老人没事" * 10
    r = parse_reply(raw(reply(note="n" * 500)))
    assert r.note is not None and len(r.note) == 500
    assert r.note_truncated is False


@pytest.mark.parametrize("action", ["ack", "decline", "arrived", "resolved"])
@pytest.mark.parametrize("long_note", ["x" * 3000, "n" * 501, "到了，老人没事" * 150])
def test_reply_with_overlong_note_is_taken_with_its_note_cut(action: str, long_note: str) -> None:
    # The answer is what matters: an overlong note must not lose it (an ack lost keeps paging).
    body = raw(reply(action=action, note=long_note))
    assert len(body) <= MAX_PAYLOAD_BYTES
    r = parse_reply(body)
    assert r.action == action
    assert r.alert_id == "al-01HZX"
    assert r.note == long_note[:499] + "…"
    assert len(r.note) == 500
    assert r.note_truncated is True


def test_reply_note_truncated_is_the_gateways_word_not_the_senders() -> None:
    for sent in (True, "yes", 1):
        r = parse_reply(raw(reply(note="short", note_truncated=sent)))
        assert r.note == "short"
        assert r.note_truncated is False
    # A note of exactly the limit that happens to end in "…" was not cut.
    r = parse_reply(raw(reply(note="n" * 499 + "…", note_truncated=True)))
    assert r.note == "n" * 499 + "…" and r.note_truncated is False
    r = parse_reply(raw(reply(note_truncated=True)))
    assert r.note is None and r.note_truncated is False


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "cancel"}, "action"),
        ({"action": "ACK"}, "action"),
        ({"action": "arrive"}, "action"),
        ({"action": ""}, "action"),
        ({"action": None}, "action"),
        ({"action": 1}, "action"),
        ({"note": 5}, "note"),
        ({"note": ["n" * 501]}, "note"),
        ({"note": {"text": "n" * 501}}, "note"),
        ({"alert_id": ""}, "alert_id"),
        ({"alert_id": 42}, "alert_id"),
        ({"alert_id": "a" * 65}, "alert_id"),
        ({"ts": "2026-11-23T08:15:00"}, "ts"),
        ({"id": ""}, "id"),
    ],
    ids=repr,
)
def test_bad_reply(fields: dict[str, Any], field: str) -> None:
    err = rejected(parse_reply, raw(reply(**fields)))
    assert err.reason == Reason.INVALID
    assert field in err.detail


@pytest.mark.parametrize("missing", ["id", "ts", "alert_id", "action"])
def test_reply_missing_field(missing: str) -> None:
    body = reply()
    del body[missing]
    err = rejected(parse_reply, raw(body))
    assert err.reason == Reason.INVALID
    assert missing in err.detail


# --------------------------------------------------------------------------------------------
# Rejection
# --------------------------------------------------------------------------------------------


def test_rejection_carries_reason_and_detail() -> None:
    err = Rejection(Reason.INVALID, "id: Field required")
    assert err.reason is Reason.INVALID
    assert err.detail == "id: Field required"
    assert str(err) == "invalid: id: Field required"
    assert Reason.TOO_LARGE == "too_large" and Reason.NOT_PAGED == "reply_not_paged"


def test_detail_is_short_for_many_errors() -> None:
    body = {"id": 1, "ts": True, "lel_pct": "a", "co_ppm": "b", "total_l": "c", "temp_c": "d"}
    err = rejected(parse_telemetry, raw(body))
    assert err.reason == Reason.INVALID
    assert "and 1 more" in err.detail
    assert "\n" not in err.detail


# --------------------------------------------------------------------------------------------
# property tests: anything in gives a model or a Rejection, never another exception
# --------------------------------------------------------------------------------------------

PARSERS_BY_NAME: dict[str, Any] = {
    "event:call_button": lambda b: parse_event(b, DeviceKind.CALL_BUTTON),
    "event:gas_sensor": lambda b: parse_event(b, DeviceKind.GAS_SENSOR),
    "event:water_sensor": lambda b: parse_event(b, DeviceKind.WATER_SENSOR),
    "telemetry": parse_telemetry,
    "status": parse_status,
    "reply": parse_reply,
}
EXPECTED_TYPE: dict[str, Any] = {
    "event:call_button": tuple(MODEL_OF.values()),
    "event:gas_sensor": tuple(MODEL_OF.values()),
    "event:water_sensor": tuple(MODEL_OF.values()),
    "telemetry": Telemetry,
    "status": Status,
    "reply": Reply,
}


def parses_or_rejects(name: str, body: bytes) -> BaseModel | None:
    try:
        model = PARSERS_BY_NAME[name](body)
    except Rejection as err:
        assert isinstance(err.reason, Reason)
        assert isinstance(err.detail, str) and err.detail
        return None
    assert isinstance(model, EXPECTED_TYPE[name])
    if name.startswith("event:"):
        kind = DeviceKind(name.split(":")[1])
        assert event_allowed(kind, model.type)  # type: ignore[attr-defined]
    return model


@FAST
@given(st.sampled_from(sorted(PARSERS_BY_NAME)), st.binary(max_size=300))
def test_arbitrary_bytes_give_a_model_or_a_rejection(name: str, body: bytes) -> None:
    parses_or_rejects(name, body)


@FAST
@given(
    st.sampled_from(sorted(PARSERS_BY_NAME)),
    st.text(alphabet=st.sampled_from('{}[]":,0123456789.eE+-tfnrulasNIy \\x'), max_size=200),
)
def test_json_ish_text_gives_a_model_or_a_rejection(name: str, text: str) -> None:
    parses_or_rejects(name, text.encode())


KEYS = [
    "id",
    "ts",
    "type",
    "press",
    "gas",
    "lel_pct",
    "co_ppm",
    "battery_pct",
    "command_id",
    "ok",
    "detail",
    "flow_l",
    "interval_s",
    "total_l",
    "rssi_dbm",
    "temp_c",
    "online",
    "fw",
    "alert_id",
    "action",
    "note",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-10, max_value=200),
    st.integers(min_value=900_000_000_000, max_value=4_200_000_000_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70),
    st.sampled_from(
        [
            TS,
            "2026-11-23T08:15:00Z",
            "2026-11-23T08:15:00",
            "",
            "x" * 64,
            "x" * 65,
            *sorted(ALL_EVENT_TYPES),
            "short",
            "long",
            "co",
            "lpg",
            "ack",
            "decline",
            "arrived",
            "resolved",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.one_of(
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), json_values, max_size=10),
    st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=64),
            "ts": st.sampled_from([TS, TS_MS, "2026-11-23T00:15:00.5Z"]),
        },
        optional={k: json_values for k in KEYS if k not in ("id", "ts")},
    ),
)


@FAST
@given(st.sampled_from(sorted(PARSERS_BY_NAME)), json_objects)
def test_arbitrary_json_objects_give_a_model_or_a_rejection(name: str, obj: dict) -> None:
    parses_or_rejects(name, json.dumps(obj).encode())


@FAST
@given(
    st.sampled_from(list(DeviceKind)),
    st.sampled_from(sorted(ALL_EVENT_TYPES)),
    st.dictionaries(st.sampled_from(KEYS[3:]), scalars, max_size=6),
)
def test_arbitrary_event_fields(kind: DeviceKind, etype: str, fields: dict) -> None:
    body = raw({**fields, "id": "e-1", "ts": TS_MS, "type": etype})
    try:
        ev = parse_event(body, kind)
    except Rejection as err:
        if any(isinstance(v, float) and not math.isfinite(v) for v in fields.values()):
            assert err.reason == Reason.NOT_JSON  # Infinity/NaN are refused before the type
        elif not event_allowed(kind, etype):
            assert err.reason == Reason.WRONG_KIND
        else:
            assert err.reason in (Reason.INVALID, Reason.TOO_LARGE, Reason.NOT_JSON)
        return
    assert ev.type == etype
    assert event_allowed(kind, etype)


# --------------------------------------------------------------------------------------------
# gateway -> pager payloads
# --------------------------------------------------------------------------------------------


def make_page(phone: str | None = "13800138000") -> Page:
    return Page(
        page_id="pg-1",
        alert_id="al-1",
        ts=TS_DT,
        priority="P1",
        kind="call_button",
        elder=PageElder(name="张奶奶", address="幸福里3号楼2单元501", phone=phone),
        text="【P1 紧急呼叫】张奶奶",
        step=1,
        reply_by=TS_DT + timedelta(seconds=30),
    )


def test_page_serialises_with_rfc3339_times() -> None:
    page = make_page()
    data = json.loads(page.model_dump_json())
    assert data == {
        "type": "page",
        "page_id": "pg-1",
        "alert_id": "al-1",
        "ts": "2026-11-23T08:15:00.000+08:00",
        "priority": "P1",
        "kind": "call_button",
        "elder": {"name": "张奶奶", "address": "幸福里3号楼2单元501", "phone": "13800138000"},
        "text": "【P1 紧急呼叫】张奶奶",
        "step": 1,
        "reply_by": "2026-11-23T08:15:30.000+08:00",
    }
    for key in ("ts", "reply_by"):
        assert datetime.fromisoformat(data[key]).tzinfo is not None
    assert len(page.model_dump_json().encode()) <= MAX_PAYLOAD_BYTES


def test_page_phone_null_when_unknown() -> None:
    data = json.loads(make_page(phone=None).model_dump_json())
    assert data["elder"]["phone"] is None
    assert "phone" in data["elder"]


def test_page_utc_and_milliseconds() -> None:
    ts = datetime(2026, 11, 23, 0, 15, 0, 123456, tzinfo=UTC)
    page = make_page().model_copy(update={"ts": ts})
    assert json.loads(page.model_dump_json())["ts"] == "2026-11-23T00:15:00.123+00:00"


def test_page_round_trips_through_json() -> None:
    page = make_page()
    again = Page.model_validate_json(page.model_dump_json())
    assert again == page


def test_page_refuses_bad_priority_and_naive_times() -> None:
    fields = {name: getattr(make_page(), name) for name in Page.model_fields}
    with pytest.raises(ValueError):
        Page(**(fields | {"priority": "P4"}))
    with pytest.raises(ValueError):
        Page(**(fields | {"ts": datetime(2026, 1, 1)}))
    assert Page(**fields) == make_page()


def test_notice_serialises_with_rfc3339_times() -> None:
    notice = Notice(
        page_id="pg-1", alert_id="al-1", ts=TS_DT, state="acknowledged", text="【通知】"
    )
    data = json.loads(notice.model_dump_json())
    assert data == {
        "type": "notice",
        "page_id": "pg-1",
        "alert_id": "al-1",
        "ts": "2026-11-23T08:15:00.000+08:00",
        "state": "acknowledged",
        "text": "【通知】",
    }
    assert Notice.model_validate_json(notice.model_dump_json()) == notice
