"""Suppression: what may pause or mute an alert, for how long, and why. Nothing is silenced forever.

Two inputs, both with a required end time:

- `ElderAway`: an elder marked `away` or `in_hospital` (by staff or family) until an end time.
  It pauses the `no_water_use` rule and nothing else: an empty flat uses no water, but a call
  button press, a gas reading or a tap left running while the elder is away are still real.
  Capped at `MAX_AWAY` (90 days); a longer stay is marked again, so someone looks at it.
- `DeviceMute`: a device in maintenance, with author, reason and expiry, shown on the board.
  It mutes only the alerts *about the device* (offline, battery, tamper), and for a water sensor
  also the water-use rules (a plumber at work opens taps and shuts the supply). It never mutes
  a `call_button` press or a `gas` alarm: a technician's test press is answered and resolved as
  `test`, which is cheaper than one real press going unheard. Caps per device kind
  (`MUTE_CAP`): 24 hours for call buttons and gas sensors (the elder's lifelines: a mute that
  long means the device is broken, and replacing it beats muting it), 30 days for water sensors
  (a meter swap waits for the water company).

`verdict(kind, now, ...)` answers for one alert kind of one device whether it is suppressed,
until when, by whom, and why. Datetimes must be timezone-aware.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from alerts.model import AlertKind
from devices.kinds import DeviceKind


class SuppressionError(ValueError):
    """A pause or mute that cannot be accepted (no end time, too long, no author or reason)."""


class AwayStatus(StrEnum):
    AWAY = "away"
    IN_HOSPITAL = "in_hospital"


MAX_AWAY = timedelta(days=90)

MUTE_CAP: dict[DeviceKind, timedelta] = {
    DeviceKind.CALL_BUTTON: timedelta(hours=24),
    DeviceKind.GAS_SENSOR: timedelta(hours=24),
    DeviceKind.WATER_SENSOR: timedelta(days=30),
}

# Alert kinds that no pause or mute ever silences.
NEVER_SUPPRESSED: frozenset[AlertKind] = frozenset({AlertKind.CALL_BUTTON, AlertKind.GAS})

# Alert kinds an elder's away status pauses.
AWAY_PAUSES: frozenset[AlertKind] = frozenset({AlertKind.NO_WATER_USE})

_DEVICE_KINDS = frozenset({AlertKind.DEVICE_OFFLINE, AlertKind.LOW_BATTERY, AlertKind.TAMPER})

# Alert kinds a maintenance mute silences, per device kind.
MUTABLE: dict[DeviceKind, frozenset[AlertKind]] = {
    DeviceKind.CALL_BUTTON: _DEVICE_KINDS,
    DeviceKind.GAS_SENSOR: _DEVICE_KINDS,
    DeviceKind.WATER_SENSOR: _DEVICE_KINDS
    | {AlertKind.NO_WATER_USE, AlertKind.WATER_RUNNING, AlertKind.WATER_LEAK},
}


def _aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise SuppressionError(f"{what} needs a time zone")


@dataclass(frozen=True, slots=True)
class ElderAway:
    """The elder is away or in hospital from `since` until `until` (both required)."""

    elder_id: str
    status: AwayStatus
    since: datetime
    until: datetime
    author: str
    note: str = ""

    def __post_init__(self) -> None:
        _aware(self.since, "since")
        _aware(self.until, "until")
        if not self.author.strip():
            raise SuppressionError("an away mark needs its author")
        if self.until <= self.since:
            raise SuppressionError("an away mark ends after it starts")
        if self.until - self.since > MAX_AWAY:
            raise SuppressionError(f"an away mark lasts at most {MAX_AWAY.days} days")

    def active(self, now: datetime) -> bool:
        return self.since <= now < self.until


@dataclass(frozen=True, slots=True)
class DeviceMute:
    """`device_id` is in maintenance from `since` until `until`: author, reason, expiry required."""

    device_id: str
    device_kind: DeviceKind
    author: str
    reason: str
    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        _aware(self.since, "since")
        _aware(self.until, "until")
        if not self.author.strip():
            raise SuppressionError("a mute needs its author")
        if not self.reason.strip():
            raise SuppressionError("a mute needs a reason")
        if self.until <= self.since:
            raise SuppressionError("a mute ends after it starts")
        cap = MUTE_CAP[self.device_kind]
        if self.until - self.since > cap:
            raise SuppressionError(f"a {self.device_kind} is muted for at most {_span(cap)}")

    def active(self, now: datetime) -> bool:
        return self.since <= now < self.until


def _span(d: timedelta) -> str:
    return f"{d.days} days" if d.days >= 2 else f"{int(d.total_seconds() // 3600)} hours"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one alert kind of one device is suppressed at `now`.

    `why`: `elder_away`, `elder_in_hospital` or `device_maintenance` when suppressed;
    `never_suppressed` for call button and gas; `not_suppressed` otherwise. `until` is when the
    suppression ends (the water rule measures silence from then on), `by` who set it.
    """

    suppressed: bool
    why: str
    until: datetime | None = None
    by: str | None = None
    detail: str = ""


def verdict(
    kind: AlertKind,
    now: datetime,
    *,
    device_id: str,
    device_kind: DeviceKind,
    away: Iterable[ElderAway] = (),
    mutes: Iterable[DeviceMute] = (),
) -> Verdict:
    """Is an alert of `kind` from `device_id` suppressed at `now`, and why.

    `away` are the elder's away marks and `mutes` the mutes known for the elder's devices (only
    those of `device_id` count). Where several apply, the one that lasts longest is named.
    """
    _aware(now, "now")
    if kind in NEVER_SUPPRESSED:
        return Verdict(False, "never_suppressed", detail=f"{kind} is never suppressed")
    best: Verdict | None = None
    if kind in MUTABLE[device_kind]:
        for m in mutes:
            if (
                m.device_id == device_id
                and m.active(now)
                and (best is None or _later(m.until, best))
            ):
                best = Verdict(True, "device_maintenance", m.until, m.author, m.reason)
    if kind in AWAY_PAUSES:
        for a in away:
            if a.active(now) and (best is None or _later(a.until, best)):
                why = "elder_in_hospital" if a.status == AwayStatus.IN_HOSPITAL else "elder_away"
                best = Verdict(True, why, a.until, a.author, a.note)
    return best if best is not None else Verdict(False, "not_suppressed")


def _later(until: datetime, than: Verdict) -> bool:
    return than.until is None or until > than.until
