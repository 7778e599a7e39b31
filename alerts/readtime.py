"""When a reading happened, as the telemetry rules (`alerts.gas`, `alerts.water`) take it.

A reading's `ts` is the device's clock; `received` is the gateway's, when the message arrived.
The device's time is used when it can be right: not ahead of the receipt by more than
`AHEAD_MAX`, and not behind it by more than the rule's `late_max`. Otherwise the device's clock
is wrong (a reset after a reboot, a dead RTC battery, a wrong offset) and the reading is taken
at its receipt: it was sent just now, whatever it says, so an alarm in it still raises and a
use of water still counts, instead of the rule waiting for the clock to catch up.

`late_max` (the rules' configurations; 24 h by default, the gateway uses at least the broker's
session expiry) is how late a reading may legitimately arrive: queued by the broker for a
gateway that was down, or buffered by a device whose link was down. Inside it a late reading
keeps its own time, so an old use of water or an old all-clear is not taken as news. The cost:
a clock slow by less than that is believed, and a water meter hours slow keeps the no-water
rule on stale data ("no data is not no water") while device health hears it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# A device a few minutes fast is a cheap RTC drifting between syncs, not worth a warning. An
# ahead reading is taken at its receipt either way: it never moves a rule's time forward.
AHEAD_MAX = timedelta(minutes=5)
LATE_MAX = timedelta(hours=24)

AHEAD, BEHIND = "ahead", "behind"


def taken_at(ts: datetime, received: datetime, late_max: timedelta) -> tuple[datetime, str | None]:
    """The time the rules take a reading at, and `ahead` or `behind` when the device's clock
    cannot be right (None: it can)."""
    if ts - received > AHEAD_MAX:
        return received, AHEAD
    if received - ts > late_max:
        return received, BEHIND
    return min(ts, received), None


def clock_note(ts: datetime, received: datetime, off: str) -> str:
    """What the rules' `clock_skew` warning says."""
    return (
        f"device clock {off}: a reading stamped {ts.isoformat()} arrived at"
        f" {received.isoformat()}; readings are taken at their arrival until it is right"
    )
