"""Unit tests of `alerts.rules.still_on`: whether an alarm event's condition is still on when a
mute that held its alert back ends, from the device's own events (type, its `ts`), in the order
the gateway received them. Every time is a datetime built here."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from alerts.rules import LASTS_UNTIL, RAISES, still_on

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=CST)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


LEAK, DRY = "water.leak", "water.dry"


@pytest.mark.parametrize(
    ("events", "on"),
    [
        ([(LEAK, at(0))], True),  # muted, never dried: still wet at the mute's end
        ([(LEAK, at(0)), (DRY, at(5))], False),
        ([(LEAK, at(0)), (DRY, at(5)), (LEAK, at(9))], True),  # wet again
        ([(DRY, at(-5)), (LEAK, at(0))], True),  # a dry before the leak ends nothing
        ([(LEAK, at(0)), (DRY, at(0))], False),  # the same moment, received after
        ([(LEAK, at(10)), (DRY, at(5))], True),  # a late, stale dry: sent before the leak
        ([(LEAK, at(10)), (LEAK, at(3)), (DRY, at(5))], True),  # the latest leak is at 10
        ([(LEAK, at(0)), (DRY, at(5)), (LEAK, at(20)), (DRY, at(4))], True),
        ([(DRY, at(0))], False),
        ([], False),
    ],
)
def test_a_leak_is_on_until_a_water_dry_after_it(
    events: list[tuple[str, datetime]], on: bool
) -> None:
    assert still_on(LEAK, events) is on


def test_a_tamper_has_no_end_in_the_contract_so_it_was_a_moment() -> None:
    assert "tamper" in RAISES and "tamper" not in LASTS_UNTIL
    assert still_on("tamper", [("tamper", at(0))]) is False
    assert LASTS_UNTIL == {LEAK: DRY}
