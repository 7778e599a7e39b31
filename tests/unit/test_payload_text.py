"""Text in inbound payloads: what the database could not store (a NUL, valid JSON as `\\u0000`)
is refused by the parser, naming the field; text as the HTTP API takes it is kept.

Pure and fast: no broker, no database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from devices.kinds import DeviceKind
from devices.parse import Reason, Rejection, parse_event, parse_reply, parse_status, parse_telemetry
from devices.payloads import REPLY_NOTE_MAX_CHARS

TS = 1_764_000_000_000


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def press(**more: Any) -> dict[str, Any]:
    return {"id": "e1", "ts": TS, "type": "button.pressed", **more}


def result(**more: Any) -> dict[str, Any]:
    return {"id": "e2", "ts": TS, "type": "command.result", "command_id": "c1", "ok": True} | more


def reading(**more: Any) -> dict[str, Any]:
    return {"id": "t1", "ts": TS, "flow_l": 1.0, "interval_s": 60} | more


def reply(**more: Any) -> dict[str, Any]:
    return {"id": "r1", "ts": TS, "alert_id": "al_1", "action": "ack"} | more


def event(kind: DeviceKind) -> Callable[[bytes], Any]:
    return lambda b: parse_event(b, kind)


BUTTON, GAS = event(DeviceKind.CALL_BUTTON), event(DeviceKind.GAS_SENSOR)

# Every string field of every inbound payload: (parser, payload with `value` in the field, name).
FIELDS: list[tuple[Callable[[bytes], Any], Callable[[str], dict[str, Any]], str]] = [
    (BUTTON, lambda v: press(id=v), "id"),
    (GAS, lambda v: result(command_id=v), "command_id"),
    (GAS, lambda v: result(detail=v), "detail"),
    (parse_telemetry, lambda v: reading(id=v), "id"),
    (parse_status, lambda v: {"online": True, "fw": v}, "fw"),
    (parse_reply, lambda v: reply(id=v), "id"),
    (parse_reply, lambda v: reply(alert_id=v), "alert_id"),
]
FREE_TEXT = {"detail", "fw", "note"}  # the HTTP API's rule for notes; the rest are ids


@pytest.mark.parametrize(("parse", "body", "name"), FIELDS)
@pytest.mark.parametrize("value", ["\x00", "a\x00", "a\x00b"])
def test_a_nul_in_any_text_field_is_refused_naming_it(
    parse: Callable[[bytes], Any], body: Callable[[str], dict[str, Any]], name: str, value: str
) -> None:
    payload = raw(body(value))
    assert b"\\u0000" in json.dumps(body(value)).encode()  # valid JSON as sent
    with pytest.raises(Rejection) as err:
        parse(payload)
    assert err.value.reason == Reason.INVALID
    assert err.value.detail == f"{name}: a NUL character (\\u0000) is not allowed"


@pytest.mark.parametrize(("parse", "body", "name"), FIELDS)
@pytest.mark.parametrize("value", ["\x07", "a\x1b[31m", "\x7f", "a\x0bb", "\x0c"])
def test_other_control_characters_are_refused_in_free_text_only(
    parse: Callable[[bytes], Any], body: Callable[[str], dict[str, Any]], name: str, value: str
) -> None:
    # The contract's ids are "1-64 chars": only what cannot be stored is refused there.
    if name not in FREE_TEXT:
        assert getattr(parse(raw(body(value))), name) == value
        return
    with pytest.raises(Rejection) as err:
        parse(raw(body(value)))
    assert err.value.reason == Reason.INVALID
    assert err.value.detail == (
        f"{name}: control characters other than tab and newline are not allowed"
    )


@pytest.mark.parametrize(("parse", "body", "name"), FIELDS)
@pytest.mark.parametrize("value", ["老人已到，一切正常", "line 1\nline 2", "a\tb\r\n", "é ✓ 🙂"])
def test_text_as_the_http_api_takes_it_is_kept(
    parse: Callable[[bytes], Any], body: Callable[[str], dict[str, Any]], name: str, value: str
) -> None:
    assert getattr(parse(raw(body(value))), name) == value


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "\x07", "a\x1b[31m", "\x7f", "a\x0bb"])
def test_a_control_character_in_a_pagers_note_is_replaced_and_the_answer_taken(
    value: str,
) -> None:
    # A pager's note, unlike every other text field, is cleaned, not refused: refusing it
    # would refuse the ack or resolve it came with, and the alert would page on as unanswered.
    r = parse_reply(raw(reply(note=value)))
    assert r.note == "".join("\ufffd" if ord(c) < 32 or ord(c) == 127 else c for c in value)
    assert "\x00" not in (r.note or "") and r.action == "ack"


@pytest.mark.parametrize("value", ["老人已到，一切正常", "line 1\nline 2", "a\tb\r\n", "é ✓ 🙂"])
def test_a_pagers_note_as_the_http_api_takes_it_is_kept(value: str) -> None:
    assert parse_reply(raw(reply(note=value))).note == value


def test_an_overlong_note_is_still_cut_and_a_nul_in_it_replaced() -> None:
    note = "x" * REPLY_NOTE_MAX_CHARS + "\x00"
    r = parse_reply(raw(reply(note=note)))
    assert r.note == "x" * (REPLY_NOTE_MAX_CHARS - 1) + "…" and r.note_truncated
    r = parse_reply(raw(reply(note="\x00" + note)))
    assert r.note == "\ufffd" + "x" * (REPLY_NOTE_MAX_CHARS - 2) + "…" and r.note_truncated


def escaped(body: dict[str, Any]) -> bytes:
    """As sent: a lone surrogate can only travel as JSON's escape (`\\ud800`), never as UTF-8."""
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        ("\ud800", "\ufffd"),
        ("bad \ud800 surrogate", "bad \ufffd surrogate"),
        ("\udc00 low, then a pair 🙂", "\ufffd low, then a pair 🙂"),  # the pair is kept
        ("reversed \udc00\ud800", "reversed \ufffd\ufffd"),
        ("end \ud83d", "end \ufffd"),
    ],
)
def test_a_lone_surrogate_in_a_pagers_note_is_replaced_and_the_answer_taken(
    value: str, cleaned: str
) -> None:
    r = parse_reply(escaped(reply(action="decline", note=value)))
    assert (r.action, r.note, r.note_truncated) == ("decline", cleaned, False)
    assert r.note is not None and r.note.encode("utf-8")  # storable: no surrogate left


def test_the_testers_reply_with_a_lone_surrogate_in_its_note_is_taken() -> None:
    sent = rb'{"id":"rn3","ts":1764000000000,"alert_id":"al_1","action":"decline",'
    sent += rb'"note":"bad \ud800 surrogate"}'
    assert parse_reply(sent).note == "bad \ufffd surrogate"


def test_an_overlong_note_with_a_lone_surrogate_is_cleaned_then_cut() -> None:
    r = parse_reply(escaped(reply(note="\ud800" + "x" * REPLY_NOTE_MAX_CHARS)))
    assert r.note == "\ufffd" + "x" * (REPLY_NOTE_MAX_CHARS - 2) + "…" and r.note_truncated


@pytest.mark.parametrize(("parse", "body", "name"), FIELDS)
@pytest.mark.parametrize("value", ["\ud800", "a\udfffb"])
def test_a_lone_surrogate_in_any_other_text_field_is_refused_naming_it(
    parse: Callable[[bytes], Any], body: Callable[[str], dict[str, Any]], name: str, value: str
) -> None:
    with pytest.raises(Rejection) as err:
        parse(escaped(body(value)))
    assert err.value.reason == Reason.INVALID
    assert err.value.detail.startswith(f"{name}: Input should be a valid string")


def test_a_nul_in_a_field_the_models_do_not_know_is_ignored_with_the_field() -> None:
    # Unknown fields are ignored (newer firmware); the raw payload kept for an event holds
    # the escape `\u0000`, six characters, which any database stores.
    assert parse_telemetry(raw(reading(label="a\x00"))).id == "t1"
