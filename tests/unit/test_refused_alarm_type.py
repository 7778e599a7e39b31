"""Which quarantined payloads look like an alarm event (gateway/refused_alarms.py `alarm_type`):
read defensively, as the payload may be anything, cut at 512 characters included."""

from __future__ import annotations

import pytest

from gateway.refused_alarms import alarm_type

CUT = '{"id": "p4", "ts": "2026-11-27T14:15:00", "type": "button.pressed", "pad": "xxxx'


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        ('{"id": "p1", "ts": "2026-11-27T14:15:00", "type": "button.pressed"}', "button.pressed"),
        ('{"type": "gas.alarm"}', "gas.alarm"),
        ('{"type" : "water.leak", "id": 5}', "water.leak"),
        (CUT, "button.pressed"),  # no JSON left: the text is searched
        ('{"type": "device.online"}', None),
        ('{"type": ["button.pressed"]}', None),
        ('["button.pressed"]', None),
        ('"button.pressed"', None),
        ("not json", None),
        ("", None),
        ("\ufffd\ufffd", None),
        ('{"type": "button.pressed\\u0000"}', None),
        ("[" * 5000, None),  # deeper than the parser goes: no exception
    ],
)
def test_alarm_type(payload: str, want: str | None) -> None:
    assert alarm_type(payload) == want
