"""Device health: silent devices, low batteries, and a building's mass outage as one incident.

Pure: the state is one `BuildingHealth` per building (its devices and its outage, if any), a plain
dataclass the gateway keeps as JSON; `heard` takes every message from a device (and its status,
the Last Will included) and `check` is the periodic tick. Each answers with a new state and
decisions; the state passed in is never changed.

- `device_offline`: a device not heard for `missed` (3) of its report intervals, or whose status
  says `{"online": false}` (its Last Will). Default intervals per kind (`DEFAULT_INTERVALS`):
  call buttons heartbeat hourly (battery buttons: more often drains a coin cell within a year,
  and 3 hours is still well inside a day's care round); gas sensors are mains-powered and report
  every 5 minutes (a dead gas sensor is a gap in a life alarm: found within 15 minutes); water
  meters report every 15 minutes (the water rules need that resolution; offline after 45 min).
  A device may override its interval.
- `low_battery` from telemetry or status `battery_pct`: under 20 %, cleared at 25 % or more for
  2 readings in a row (a cold night dips a cell's voltage; a swapped battery is clearly back).
  The device's own `battery.low` event is `alerts.rules`'s; `battery_said_low` keeps it here,
  so the battery counts as low until readings say otherwise (a mute's end opens its alert).
- Mass outage: a power cut or a dead network in a building silences many devices at once. When
  at least `outage_min_devices` (5) devices, or at least `outage_min_share` (50 %) of the
  building's devices (and at least 3), went quiet within `outage_window` (20 min) of each other,
  the decision is ONE `OutageOpened` for staff listing them, instead of one page per device per
  watcher. "Went quiet" is the Last Will's time or the last report, not the time each device is
  found offline (a gas sensor's Last Will comes in a minute, a water meter is found silent after
  three quarter hours); a device that has missed one report (`late_factor` x its interval)
  already counts. An offline device waits `hold` (20 min: more than a water meter's interval, so
  the building's meters are late by then) before its own `Raise(device_offline)`: P2, and
  little next to the report intervals it already waited. A device that goes offline later joins
  the open outage (`OutageChanged(joined)`) for `outage_join_for` (6 h). When power is back (a
  member is heard again), members still silent `straggler_grace` (30 min) later, and `missed` of
  their own intervals later (an hourly button may not have spoken yet), leave it and are
  raised on their own (a battery that died in the dark is not the power cut). The outage closes
  when no member is left offline. One outage per building at a time.

After the gateway itself was down, call `resume(state, now)` first: it did not hear the devices,
which is not the devices' fault (otherwise its first tick would page every device at once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from alerts import _jsonstate as js
from alerts.decisions import Clear, Raise
from alerts.model import AlertKind
from devices.kinds import DeviceKind

STATE_VERSION = 1

DEFAULT_INTERVALS: Mapping[DeviceKind, timedelta] = MappingProxyType(
    {
        DeviceKind.CALL_BUTTON: timedelta(hours=1),
        DeviceKind.GAS_SENSOR: timedelta(minutes=5),
        DeviceKind.WATER_SENSOR: timedelta(minutes=15),
    }
)


class UnknownDevice(KeyError):
    """A device the building's health state does not know (add it with `add_device`)."""


@dataclass(frozen=True, slots=True)
class HealthConfig:
    intervals: Mapping[DeviceKind, timedelta] = field(default_factory=lambda: DEFAULT_INTERVALS)
    missed: int = 3
    battery_low_pct: float = 20.0
    battery_band_pct: float = 5.0
    battery_clear_after: int = 2
    hold: timedelta = timedelta(minutes=20)
    outage_window: timedelta = timedelta(minutes=20)
    outage_lookback: timedelta = timedelta(hours=1)
    late_factor: float = 1.5
    outage_min_devices: int = 5
    outage_min_share: float = 0.5
    outage_share_floor: int = 3
    outage_join_for: timedelta = timedelta(hours=6)
    straggler_grace: timedelta = timedelta(minutes=30)
    tz: str = "Asia/Shanghai"  # the station's: times in the alerts' text are local
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", ZoneInfo(self.tz))
        if self.missed < 1:
            raise ValueError("missed is at least 1")
        if set(self.intervals) != set(DeviceKind):
            raise ValueError("an interval for every device kind")
        if any(i <= timedelta(0) for i in self.intervals.values()):
            raise ValueError("intervals are positive")
        if not 0 < self.outage_min_share <= 1 or self.outage_min_devices < 2:
            raise ValueError("an outage is at least 2 devices and a share in (0, 1]")


# --------------------------------------------------------------------------------------------
# decisions of this module (besides Raise / Clear of alerts.decisions)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutageOpened:
    """One incident for staff: `device_ids` of `building` went offline together.

    The gateway opens one `device_offline` alert for the building, paged to station staff only;
    devices in `already_alerted` had their own alert raised before the outage was seen: the
    gateway records the outage on them (and may close them into it).
    """

    building: str
    key: str
    device_ids: tuple[str, ...]
    already_alerted: tuple[str, ...]
    detail: str


@dataclass(frozen=True, slots=True)
class OutageChanged:
    """A member of the outage `key` changed: `joined` (went offline later), `back_online`, or
    `still_offline` (left the outage after power came back; a Raise of its own follows)."""

    building: str
    key: str
    device_id: str
    change: str


@dataclass(frozen=True, slots=True)
class OutageClosed:
    """No member of the outage is offline any more (recorded; a person resolves the alert)."""

    building: str
    key: str
    why: str
    detail: str


HealthDecision = Raise | Clear | OutageOpened | OutageChanged | OutageClosed


# --------------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device_id: str
    kind: DeviceKind
    since: datetime  # when it was added: silence is counted from here until first heard
    interval_s: float | None = None  # None: the kind's default
    last_heard: datetime | None = None
    online: bool = True
    offline_at: datetime | None = None  # when it counts as gone (the deadline it missed)
    offline_reason: str | None = None  # silent | last_will
    alerted: bool = False  # its own device_offline was raised
    outage: str | None = None  # the key of the outage it is in
    battery_low: bool = False
    battery_ok_run: int = 0

    def interval(self, cfg: HealthConfig) -> timedelta:
        if self.interval_s is not None:
            return timedelta(seconds=self.interval_s)
        return cfg.intervals[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "kind": self.kind.value,
            "since": js.dt_out(self.since),
            "interval_s": self.interval_s,
            "last_heard": js.dt_out(self.last_heard),
            "online": self.online,
            "offline_at": js.dt_out(self.offline_at),
            "offline_reason": self.offline_reason,
            "alerted": self.alerted,
            "outage": self.outage,
            "battery_low": self.battery_low,
            "battery_ok_run": self.battery_ok_run,
        }

    @classmethod
    def from_json(cls, d: Any) -> DeviceHealth:
        if not isinstance(d, dict):
            raise js.StateError("device: a JSON object is required")
        try:
            kind = DeviceKind(js.text(d.get("kind"), "device.kind"))
        except ValueError:
            raise js.StateError(f"device.kind: unknown {d.get('kind')!r}") from None
        return cls(
            device_id=js.text(d.get("device_id"), "device.device_id"),
            kind=kind,
            since=js.dt_req(d.get("since"), "device.since"),
            interval_s=js.opt_num(d.get("interval_s"), "device.interval_s"),
            last_heard=js.dt_in(d.get("last_heard"), "device.last_heard"),
            online=js.flag(d.get("online"), "device.online"),
            offline_at=js.dt_in(d.get("offline_at"), "device.offline_at"),
            offline_reason=js.opt_text(d.get("offline_reason"), "device.offline_reason"),
            alerted=js.flag(d.get("alerted"), "device.alerted"),
            outage=js.opt_text(d.get("outage"), "device.outage"),
            battery_low=js.flag(d.get("battery_low"), "device.battery_low"),
            battery_ok_run=js.integer(d.get("battery_ok_run"), "device.battery_ok_run"),
        )


@dataclass(frozen=True, slots=True)
class Outage:
    key: str
    started: datetime  # the earliest member's offline_at
    members: tuple[str, ...]
    back: tuple[str, ...] = ()  # heard again
    left: tuple[str, ...] = ()  # still offline after power came back: raised on their own
    restored_at: datetime | None = None  # the first member heard again

    def open_members(self) -> set[str]:
        return set(self.members) - set(self.back) - set(self.left)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "started": js.dt_out(self.started),
            "members": list(self.members),
            "back": list(self.back),
            "left": list(self.left),
            "restored_at": js.dt_out(self.restored_at),
        }

    @classmethod
    def from_json(cls, d: Any) -> Outage:
        if not isinstance(d, dict):
            raise js.StateError("outage: a JSON object is required")

        def ids(name: str) -> tuple[str, ...]:
            v = d.get(name)
            if not isinstance(v, list):
                raise js.StateError(f"outage.{name}: a list is required")
            return tuple(js.text(x, f"outage.{name}") for x in v)

        return cls(
            js.text(d.get("key"), "outage.key"),
            js.dt_req(d.get("started"), "outage.started"),
            ids("members"),
            ids("back"),
            ids("left"),
            js.dt_in(d.get("restored_at"), "outage.restored_at"),
        )


@dataclass(frozen=True, slots=True)
class BuildingHealth:
    building: str
    devices: Mapping[str, DeviceHealth] = field(default_factory=dict)
    outage: Outage | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "building": self.building,
            "devices": [self.devices[k].to_json() for k in sorted(self.devices)],
            "outage": None if self.outage is None else self.outage.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> BuildingHealth:
        d = js.check_version(data, STATE_VERSION, "health state")
        devices = d.get("devices")
        if not isinstance(devices, list):
            raise js.StateError("health state.devices: a list is required")
        parsed = [DeviceHealth.from_json(x) for x in devices]
        outage = d.get("outage")
        return cls(
            js.text(d.get("building"), "building"),
            {x.device_id: x for x in parsed},
            None if outage is None else Outage.from_json(outage),
        )


def new_state(building: str) -> BuildingHealth:
    return BuildingHealth(building)


def add_device(
    state: BuildingHealth,
    device_id: str,
    kind: DeviceKind,
    now: datetime,
    interval_s: float | None = None,
) -> BuildingHealth:
    """Watch a device from `now` (or change its kind or interval; its history is kept)."""
    if interval_s is not None and interval_s <= 0:
        raise ValueError("interval_s is positive")
    devices = dict(state.devices)
    old = devices.get(device_id)
    if old is None:
        devices[device_id] = DeviceHealth(device_id, kind, now, interval_s)
    else:
        devices[device_id] = replace(old, kind=kind, interval_s=interval_s)
    return replace(state, devices=devices)


def remove_device(state: BuildingHealth, device_id: str) -> BuildingHealth:
    """Stop watching a device (retired, or moved to another building)."""
    if device_id not in state.devices:
        return state
    devices = dict(state.devices)
    del devices[device_id]
    outage = state.outage
    if outage is not None and device_id in outage.open_members():
        outage = replace(outage, left=(*outage.left, device_id))
    return replace(state, devices=devices, outage=outage)


def resume(state: BuildingHealth, now: datetime) -> BuildingHealth:
    """The gateway was down until `now`: count silence from now for the devices still online."""
    devices = {k: replace(d, last_heard=now) if d.online else d for k, d in state.devices.items()}
    return replace(state, devices=devices)


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """What is known of a device outside its health state (the gateway's device row and
    alerts), to rebuild a state that cannot be read (`rebuild`). `offline`: known offline
    (its Last Will, `last_will`, or an own device_offline alert with no sign of life since);
    `alerted`: that alert is active; `last_heard`: its last sign of life, if any."""

    device_id: str
    kind: DeviceKind
    offline: bool = False
    last_will: bool = False
    alerted: bool = False
    last_heard: datetime | None = None


def rebuild(
    building: str,
    known: Iterable[KnownDevice],
    now: datetime,
    cfg: HealthConfig,
    outage: Outage | None = None,
) -> BuildingHealth:
    """A building's state rebuilt from what is known of its devices and of the outage in
    progress (`outage`, its members, back and left as recorded), when the stored one cannot be
    read. A device known offline stays offline (and alerted, when it was: not raised again; its
    next sign of life clears it), as does an open member of the outage. A device online is
    watched from `now`: its real silence is not known (its last report may predate a stop of
    the gateway, which is not the device's fault). Lost: late reports not yet missed `missed`
    times, low batteries, and when exactly each device went offline (a Last Will counts from
    its last sign of life; so its hold may be over at once)."""
    members = set() if outage is None else outage.open_members()
    devices: dict[str, DeviceHealth] = {}
    for k in known:
        d = DeviceHealth(k.device_id, k.kind, now)
        in_outage = outage is not None and k.device_id in members
        if k.offline or in_outage:
            heard = None if k.last_heard is None else min(k.last_heard, now)
            if k.last_will:
                at, reason = heard or now, "last_will"
            else:
                at = now if heard is None else min(heard + cfg.missed * d.interval(cfg), now)
                reason = "silent"
            d = replace(
                d,
                last_heard=heard,
                online=False,
                offline_at=at,
                offline_reason=reason,
                alerted=k.alerted,
                outage=outage.key if outage is not None and in_outage else None,
            )
        devices[k.device_id] = d
    if outage is not None:  # members no longer here leave it, as `remove_device` has them
        gone = tuple(sorted(members - devices.keys()))
        outage = replace(outage, left=(*outage.left, *gone))
    return BuildingHealth(building, devices, outage)


# --------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------


def _hm(t: datetime, cfg: HealthConfig) -> str:
    return t.astimezone(cfg.zone).isoformat(timespec="minutes")


def heard(
    state: BuildingHealth,
    device_id: str,
    now: datetime,
    cfg: HealthConfig,
    *,
    online: bool | None = None,
    battery_pct: float | None = None,
    replayed: bool = False,
) -> tuple[BuildingHealth, list[HealthDecision]]:
    """A message from (or status of) `device_id`.

    `online=False` is its status `{"online": false}` (its Last Will: sent by the broker, so not a
    sign of life); any other message, or `online=True`, is. `battery_pct` from telemetry or
    status.

    `replayed`: not the device speaking now but a record of its last known state, delivered
    again (a retained status the gateway is sent each time it subscribes), however long ago the
    device said it. Its `online=False` counts as above (the device is gone, and the gateway may
    not have heard its Last Will); but it is no sign of life: `last_heard` does not move, an
    `online=True` does not bring an offline device back (the status it had before it went
    silent says nothing about now; its next real message does), and its battery is an old
    reading, not taken.
    """
    d = state.devices.get(device_id)
    if d is None:
        raise UnknownDevice(device_id)
    out: list[HealthDecision] = []
    outage = state.outage
    if replayed:
        battery_pct = None  # as old as the record: it could clear or raise a low battery wrongly
    if online is False:
        if d.online:
            d = replace(d, online=False, offline_at=now, offline_reason="last_will")
    elif not replayed:
        if d.last_heard is None or now > d.last_heard:
            d = replace(d, last_heard=now)
        if not d.online or d.outage is not None:
            d, outage, back = _back(d, outage, state.building, now, cfg)
            out.extend(back)
    if battery_pct is not None:
        d, battery = _battery(d, battery_pct, cfg)
        out.extend(battery)
    devices = dict(state.devices)
    devices[device_id] = d
    state = replace(state, devices=devices, outage=outage)
    state, closed = _maybe_close(state)
    out.extend(closed)
    return state, out


def _back(
    d: DeviceHealth, outage: Outage | None, building: str, now: datetime, cfg: HealthConfig
) -> tuple[DeviceHealth, Outage | None, list[HealthDecision]]:
    out: list[HealthDecision] = []
    gone = "" if d.offline_at is None else f" (offline since {_hm(d.offline_at, cfg)})"
    if d.alerted:
        out.append(Clear(d.device_id, AlertKind.DEVICE_OFFLINE, "back_online", f"heard{gone}"))
    if d.outage is not None and outage is not None and d.outage == outage.key:
        outage = replace(
            outage,
            back=(*outage.back, d.device_id),
            restored_at=outage.restored_at or now,
        )
        out.append(OutageChanged(building, outage.key, d.device_id, "back_online"))
    d = replace(d, online=True, offline_at=None, offline_reason=None, alerted=False, outage=None)
    return d, outage, out


def _battery(
    d: DeviceHealth, pct: float, cfg: HealthConfig
) -> tuple[DeviceHealth, list[HealthDecision]]:
    if not d.battery_low:
        if pct < cfg.battery_low_pct:
            return replace(d, battery_low=True, battery_ok_run=0), [
                Raise(
                    d.device_id,
                    AlertKind.LOW_BATTERY,
                    "battery_pct",
                    f"battery {pct:g} % (under {cfg.battery_low_pct:g} %)",
                )
            ]
        return d, []
    if pct < cfg.battery_low_pct + cfg.battery_band_pct:
        return replace(d, battery_ok_run=0), []
    run = d.battery_ok_run + 1
    if run < cfg.battery_clear_after:
        return replace(d, battery_ok_run=run), []
    return replace(d, battery_low=False, battery_ok_run=0), [
        Clear(d.device_id, AlertKind.LOW_BATTERY, "battery_ok", f"battery {pct:g} %")
    ]


def battery_said_low(state: BuildingHealth, device_id: str) -> BuildingHealth:
    """The device's own `battery.low` event (its alert is `alerts.rules`'s, so no decision
    here): its battery is low until readings say it is fine, as after a low reading. Unknown
    here, a low battery said only by the event was never on when a mute that held its alert
    back ended, and the alert was dropped for good."""
    d = state.devices.get(device_id)
    if d is None:
        raise UnknownDevice(device_id)
    if d.battery_low and d.battery_ok_run == 0:
        return state
    devices = dict(state.devices)
    devices[device_id] = replace(d, battery_low=True, battery_ok_run=0)
    return replace(state, devices=devices)


def _maybe_close(state: BuildingHealth) -> tuple[BuildingHealth, list[HealthDecision]]:
    o = state.outage
    if o is None or o.open_members():
        return state, []
    why = "all_back_online" if not o.left else "back_but_some_still_offline"
    detail = f"{len(o.back)} back online, {len(o.left)} still offline (raised on their own)"
    return replace(state, outage=None), [OutageClosed(state.building, o.key, why, detail)]


def check(
    state: BuildingHealth, now: datetime, cfg: HealthConfig
) -> tuple[BuildingHealth, list[HealthDecision]]:
    """The periodic tick (every minute or so): silence, outages, held devices, stragglers."""
    out: list[HealthDecision] = []
    devices = dict(state.devices)
    # 1. silence past `missed` report intervals
    for k, d in state.devices.items():
        if not d.online:
            continue
        heard_at = d.last_heard or d.since
        deadline = heard_at + cfg.missed * d.interval(cfg)
        if now >= deadline:
            devices[k] = replace(d, online=False, offline_at=deadline, offline_reason="silent")
    outage = state.outage
    # 2. an open outage takes in devices that go offline while it accepts them
    if outage is not None and now - outage.started <= cfg.outage_join_for:
        joined = [
            d
            for d in devices.values()
            if not d.online
            and d.outage is None
            and not d.alerted
            and d.device_id not in outage.left
        ]
        for d in sorted(joined, key=lambda x: x.device_id):
            devices[d.device_id] = replace(d, outage=outage.key)
            outage = replace(outage, members=(*outage.members, d.device_id))
            out.append(OutageChanged(state.building, outage.key, d.device_id, "joined"))
    # 3. many offline together: one outage
    if outage is None:
        fresh, opened = _trigger(state.building, devices, now, cfg)
        if fresh is not None and opened is not None:
            outage = fresh
            for k in fresh.members:
                devices[k] = replace(devices[k], outage=fresh.key)
            out.append(opened)
    # 4. after power is back, members still silent once their own reports are due (and the
    # grace is over) leave the outage and are raised alone
    restored = None if outage is None else outage.restored_at
    if outage is not None and restored is not None and now - restored >= cfg.straggler_grace:
        for k in sorted(outage.open_members()):
            d = devices[k]
            if now - restored < cfg.missed * d.interval(cfg):
                continue
            outage = replace(outage, left=(*outage.left, k))
            out.append(OutageChanged(state.building, outage.key, k, "still_offline"))
            out.append(_raise(d, cfg, "still offline after the building's outage"))
            devices[k] = replace(d, alerted=True, outage=None)
    # 5. held devices that no outage took: their own alert
    for k, d in sorted(devices.items()):
        if d.online or d.alerted or d.outage is not None or d.offline_at is None:
            continue
        if now >= d.offline_at + cfg.hold:
            out.append(_raise(d, cfg))
            devices[k] = replace(d, alerted=True)
    state = replace(state, devices=devices, outage=outage)
    state, closed = _maybe_close(state)
    out.extend(closed)
    return state, out


def _raise(d: DeviceHealth, cfg: HealthConfig, extra: str = "") -> Raise:
    if d.offline_reason == "last_will":
        reason, detail = "last_will", "status offline (Last Will)"
    else:
        heard = "never heard" if d.last_heard is None else f"last heard {_hm(d.last_heard, cfg)}"
        every = d.interval(cfg).total_seconds() / 60
        reason, detail = "silent", f"silent: {heard}; reports every {every:g} min"
    if extra:
        detail = f"{detail}; {extra}"
    return Raise(d.device_id, AlertKind.DEVICE_OFFLINE, reason, detail)


def _quiet_since(d: DeviceHealth) -> datetime:
    """When the device went quiet: its Last Will, or the last time it was heard."""
    if d.offline_reason == "last_will" and d.offline_at is not None:
        return d.offline_at
    return d.last_heard or d.since


def _dark(d: DeviceHealth, now: datetime, cfg: HealthConfig) -> bool:
    """Offline, or late: it has missed a report (not yet enough to call it offline)."""
    if not d.online:
        return True
    return now - (d.last_heard or d.since) > cfg.late_factor * d.interval(cfg)


def _trigger(
    building: str, devices: dict[str, DeviceHealth], now: datetime, cfg: HealthConfig
) -> tuple[Outage | None, OutageOpened | None]:
    """An outage when enough devices went quiet within `outage_window` of each other.

    Devices are compared by when they went quiet (their Last Will, or their last report), not by
    when each was found offline: a gas sensor's Last Will comes in a minute, a water meter is
    found silent after three quarter hours. A device that has missed one report counts
    (`late_factor`), so the building is judged when the first offline device's `hold` ends,
    before any page of its own.
    """
    dark = sorted(
        (
            d
            for d in devices.values()
            if d.outage is None
            and _dark(d, now, cfg)
            and now - _quiet_since(d) <= cfg.outage_lookback
        ),
        key=_quiet_since,
    )
    ripe = [
        d
        for d in dark
        if not d.online and d.offline_at is not None and now >= d.offline_at + cfg.hold
    ]
    if not ripe:
        return None, None  # nothing would be paged yet: no need to decide
    best: list[DeviceHealth] = []
    for i, first in enumerate(dark):
        start = _quiet_since(first)
        group = [d for d in dark[i:] if _quiet_since(d) - start <= cfg.outage_window]
        if len(group) > len(best) and any(d in group for d in ripe):
            best = group
    n, total = len(best), len(devices)
    enough = n >= cfg.outage_min_devices or (
        n >= cfg.outage_share_floor and n >= cfg.outage_min_share * total
    )
    if not enough:
        return None, None
    members = tuple(sorted(d.device_id for d in best))
    started = _quiet_since(best[0])
    key = f"outage-{building}-{int(started.timestamp())}"
    already = tuple(sorted(d.device_id for d in best if d.alerted))
    window = int(cfg.outage_window.total_seconds() // 60)
    detail = (
        f"{n} of {total} devices in {building} went quiet within {window} min"
        f" from {_hm(started, cfg)} (a power cut or the building's network?)"
    )
    return Outage(key, started, members), OutageOpened(building, key, members, already, detail)
