"""Gas rules over a gas sensor's telemetry: warning and alarm levels with hysteresis, and the
valve.

Pure: the caller passes the sensor's state (a plain dataclass kept as JSON between messages),
the reading, `now` and a `GasConfig`; the rules answer with a new state and decisions
(`alerts.decisions`). The state passed in is never changed.

Levels (defaults, per channel):

- `lel_pct` (natural gas, LPG), warning 10 %LEL, alarm 20 %LEL. GB 15322.2-2019 (household
  combustible gas detectors, mandatory) has the detector sound its own alarm at a low fraction
  of the lower explosive limit; common practice (and the range of GB 15322.1's commercial
  detectors) puts that setpoint no higher than 25 %LEL, household detectors are commonly set
  around 10 %LEL, and two-stage ones at about 10 % and 20-25 %. (The standard's exact clause
  was not at hand when this was written: check it before relying on the numbers.) The device's
  own `gas.alarm` event is the first line and opens the alert (`alerts.rules`); the telemetry
  levels are the second line, for sensors that only report readings or whose own alarm
  failed. 20 %LEL leaves a factor of five to an explosive mixture; 10 % is the board's warning.
- `co_ppm` (coal gas, stoves, CO), warning 50 ppm, alarm 150 ppm at once, or the warning level
  held for `co_sustained` (60 min): every reading over the hour at or over 50 ppm, the one
  that raises too (a reading under it, in the hysteresis band or not, starts the hour again;
  two readings of 55 and then 10 ppm are not an hour of 50). CO harms by dose, not by a
  single reading: EN 50291-1 has an alarm sound at 50 ppm within 60-90 min, at 100 ppm within
  10-40 min, at 300 ppm within 3 min; UL 2034 at 150 ppm within 10-50 min. 150 ppm at once
  and 50 ppm for an hour sit inside both.

Hysteresis: a channel rises at the level, and falls only after `clear_after` (3) consecutive
readings below the level minus its band (alarm 20 -> under 15 %LEL; 150 -> under 100 ppm; an
alarm raised by the sustained rule clears under the warning line). A reading hovering at the line
therefore raises once, and clears once.

Time: a reading is judged at its own `ts`, or at its receipt when the device's clock cannot be
right (`alerts.readtime`: a sensor reset to 2020, or fast by years), with a `clock_skew`
warning for the board; a late reading at an alarm level still raises (`observe`).

Decisions: `Raise(gas)` when the sensor goes into alarm (one per episode: a second channel in
alarm is a `Note`); `Clear(gas, "gas_below_alarm")` when every channel is back under; `Warn` for
a warning. Where the home has a valve (`valve_device_id`), going into alarm, or the device's own
`gas.alarm` (`on_device_alarm`), also gives `SendCommand(valve.close)`, once per episode, with
an id of its own per sensor (`valve_command_id`: sensors sharing a valve each hear its answer).
Its `command.result` (`on_command_result`): ok -> `Note(gas, "valve_closed")`; not ok ->
`Escalate(gas, "valve_close_failed")`; no answer within `valve_timeout` (`check`) ->
`Escalate(gas, "valve_close_no_answer")`. The gateway pages every step of the gas alert at once.
A later answer follows the latest by the valve's own time: a success after a failure (a retry
that closed it) is `Note(gas, "valve_closed_late")`, told to those paged. When people close
the episode's alert before the gas is all clear, the gateway starts a new episode
(`new_episode`) at the next alarm: a new alert closes the valve again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from alerts import _jsonstate as js
from alerts import readtime
from alerts.decisions import Clear, Escalate, Note, Raise, SendCommand, Warn
from alerts.model import AlertKind
from devices.payloads import Telemetry

STATE_VERSION = 1
NORMAL, WARNING, ALARM = "normal", "warning", "alarm"
_LEVELS = (NORMAL, WARNING, ALARM)

GasDecision = Raise | Clear | Note | Warn | SendCommand | Escalate


@dataclass(frozen=True, slots=True)
class Levels:
    """Warning and alarm levels of one reading, each with the band it must fall below."""

    warn: float
    alarm: float
    warn_band: float
    alarm_band: float
    unit: str

    def __post_init__(self) -> None:
        if not 0 < self.warn < self.alarm:
            raise ValueError("0 < warn < alarm")
        if not 0 < self.warn_band < self.warn or not 0 < self.alarm_band < self.alarm:
            raise ValueError("bands are positive and below their level")


LEL = Levels(warn=10.0, alarm=20.0, warn_band=3.0, alarm_band=5.0, unit="%LEL")
CO = Levels(warn=50.0, alarm=150.0, warn_band=15.0, alarm_band=50.0, unit="ppm")


@dataclass(frozen=True, slots=True)
class GasConfig:
    lel: Levels = LEL
    co: Levels = CO
    clear_after: int = 3
    co_sustained: timedelta | None = timedelta(minutes=60)
    valve_device_id: str | None = None  # None: the home has no valve
    valve_timeout: timedelta = timedelta(seconds=90)
    late_max: timedelta = readtime.LATE_MAX  # later than this, the device's clock is wrong

    def __post_init__(self) -> None:
        if not 1 <= self.clear_after <= 100:
            raise ValueError("clear_after is 1 to 100 readings")
        if self.late_max <= timedelta(0):
            raise ValueError("late_max is positive")


@dataclass(frozen=True, slots=True)
class Channel:
    """One reading's level, readings under the clearing line in a row, and since when."""

    level: str = NORMAL
    below: int = 0
    # When this level began; in warning, since when every reading has been at or over the
    # warning level (the CO dose), restarted by any reading under it.
    since: datetime | None = None
    clear_line: float | None = None  # in alarm: the value it must fall under
    last: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "below": self.below,
            "since": js.dt_out(self.since),
            "clear_line": self.clear_line,
            "last": self.last,
        }

    @classmethod
    def from_json(cls, d: Any) -> Channel:
        if not isinstance(d, dict):
            raise js.StateError("channel: a JSON object is required")
        level = js.text(d.get("level"), "channel.level")
        if level not in _LEVELS:
            raise js.StateError(f"channel.level: one of {_LEVELS}")
        return cls(
            level,
            js.integer(d.get("below"), "channel.below"),
            js.dt_in(d.get("since"), "channel.since"),
            js.opt_num(d.get("clear_line"), "channel.clear_line"),
            js.opt_num(d.get("last"), "channel.last"),
        )


@dataclass(frozen=True, slots=True)
class Valve:
    """The valve.close of this episode: `pending`, `closed`, `failed` or `no_answer`."""

    command_id: str
    device_id: str
    sent_at: datetime
    status: str = "pending"
    # The time of the answer that set `status` (its own `ts`, as `readtime` judges it): a later
    # answer overturns it only if it is newer (`on_command_result`).
    answered_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "device_id": self.device_id,
            "sent_at": js.dt_out(self.sent_at),
            "status": self.status,
            "answered_at": js.dt_out(self.answered_at),
        }

    @classmethod
    def from_json(cls, d: Any) -> Valve:
        if not isinstance(d, dict):
            raise js.StateError("valve: a JSON object is required")
        return cls(
            js.text(d.get("command_id"), "valve.command_id"),
            js.text(d.get("device_id"), "valve.device_id"),
            js.dt_req(d.get("sent_at"), "valve.sent_at"),
            js.text(d.get("status"), "valve.status"),
            js.dt_in(d.get("answered_at"), "valve.answered_at"),  # absent in states before
        )


@dataclass(frozen=True, slots=True)
class GasState:
    device_id: str
    lel: Channel = field(default_factory=Channel)
    co: Channel = field(default_factory=Channel)
    device_alarm: bool = False  # the sensor's own gas.alarm, until its gas.cleared
    alarmed: bool = False  # an episode is on: raised, not yet all clear
    valve: Valve | None = None
    last_ts: datetime | None = None
    clock_off: str | None = None  # the device's clock cannot be right: `ahead` or `behind`

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "device_id": self.device_id,
            "lel": self.lel.to_json(),
            "co": self.co.to_json(),
            "device_alarm": self.device_alarm,
            "alarmed": self.alarmed,
            "valve": None if self.valve is None else self.valve.to_json(),
            "last_ts": js.dt_out(self.last_ts),
            "clock_off": self.clock_off,
        }

    @classmethod
    def from_json(cls, data: Any) -> GasState:
        d = js.check_version(data, STATE_VERSION, "gas state")
        valve = d.get("valve")
        return cls(
            js.text(d.get("device_id"), "device_id"),
            Channel.from_json(d.get("lel")),
            Channel.from_json(d.get("co")),
            js.flag(d.get("device_alarm"), "device_alarm"),
            js.flag(d.get("alarmed"), "alarmed"),
            None if valve is None else Valve.from_json(valve),
            js.dt_in(d.get("last_ts"), "last_ts"),
            js.opt_text(d.get("clock_off"), "clock_off"),  # absent in states written before
        )


def new_state(device_id: str) -> GasState:
    return GasState(device_id)


def step(
    ch: Channel,
    value: float,
    levels: Levels,
    clear_after: int,
    ts: datetime,
    sustained: timedelta | None = None,
) -> tuple[Channel, str | None]:
    """One reading through one channel's hysteresis: the new channel and what happened
    (`warn`, `alarm`, `sustained`, `alarm_cleared`, `warn_cleared` or None)."""
    if ch.level == ALARM:
        line = ch.clear_line if ch.clear_line is not None else levels.alarm - levels.alarm_band
        below = ch.below + 1 if value < line else 0
        if below < clear_after:
            return replace(ch, below=below, last=value), None
        if value >= levels.warn - levels.warn_band:
            return Channel(WARNING, 0, ts, None, value), "alarm_cleared"
        return Channel(NORMAL, 0, ts, None, value), "alarm_cleared"
    if value >= levels.alarm:
        line = levels.alarm - levels.alarm_band
        return Channel(ALARM, 0, ts, line, value), "alarm"
    if ch.level == WARNING:
        # The dose: held only while every reading is at or over the warning level. A reading
        # inside the band keeps the warning but restarts the hour; `last` under the level also
        # restarts it for a state stored before `since` was kept so.
        held = value >= levels.warn
        if not held:
            since = None
        elif ch.since is None or ch.last is None or ch.last < levels.warn:
            since = ts
        else:
            since = ch.since
        if held and sustained is not None and since is not None and ts - since >= sustained:
            return Channel(ALARM, 0, ts, levels.warn - levels.warn_band, value), "sustained"
        below = ch.below + 1 if value < levels.warn - levels.warn_band else 0
        if below >= clear_after:
            return Channel(NORMAL, 0, ts, None, value), "warn_cleared"
        return replace(ch, below=below, since=since, last=value), None
    if value >= levels.warn:
        return Channel(WARNING, 0, ts, None, value), "warn"
    return replace(ch, below=0, last=value), None


_COMMAND_ID_MAX = 64  # a command.result's `command_id` (contract v1: an id of 1-64 chars)


def valve_command_id(sensor_id: str, now: datetime) -> str:
    """The id of a sensor's valve.close. It names the sensor: sensors sharing one valve that
    alarm in the same millisecond (one batch) each get a command, and each alert its own
    answer; with the time alone they got one, and the other alert escalated that the valve
    never answered. A sensor id too long to fit is named by a digest of it."""
    ms = int(now.timestamp() * 1000)
    prefix = f"valve-close-{ms}-"
    tag = sensor_id
    if len(prefix) + len(tag) > _COMMAND_ID_MAX:
        tag = hashlib.blake2s(sensor_id.encode(), digest_size=8).hexdigest()
    return prefix + tag


def _valve_close(state: GasState, now: datetime, cfg: GasConfig) -> tuple[GasState, list[Any]]:
    if cfg.valve_device_id is None or state.valve is not None:
        return state, []
    command_id = valve_command_id(state.device_id, now)
    valve = Valve(command_id, cfg.valve_device_id, now)
    return replace(state, valve=valve), [
        SendCommand(cfg.valve_device_id, command_id, "valve.close")
    ]


def observe(
    state: GasState, reading: Telemetry, now: datetime, cfg: GasConfig
) -> tuple[GasState, list[GasDecision]]:
    """A telemetry message from the gas sensor (readings other than lel_pct/co_ppm ignored);
    `now` is when the gateway received it.

    The reading is taken at its own time, or at `now` when the device's clock cannot be right
    (`alerts.readtime`; the first such reading of a spell gives `Warn(gas, "clock_skew")`).
    Readings taken at the same time are each judged, in the order given. One taken before the
    last (a message that arrived late) is left out of the levels, as the readings after it say
    more of now, unless it is at or over an alarm level: then that channel goes into alarm if it
    was not (a late alarm still raises; its all-clear needs readings newer than the last).
    """
    if reading.lel_pct is None and reading.co_ppm is None:
        return state, []
    ts, off = readtime.taken_at(reading.ts, now, cfg.late_max)
    out: list[GasDecision] = []
    if off is not None and state.clock_off is None:
        note = readtime.clock_note(reading.ts, now, off)
        out.append(Warn(state.device_id, AlertKind.GAS, "clock_skew", note))
    if off != state.clock_off:
        state = replace(state, clock_off=off)
    late = state.last_ts is not None and ts < state.last_ts
    judge = _late if late else step
    was_alarm = state.lel.level == ALARM or state.co.level == ALARM
    lel, co = state.lel, state.co
    events: list[tuple[str, str, float, Levels]] = []
    if reading.lel_pct is not None:
        lel, ev = judge(lel, reading.lel_pct, cfg.lel, cfg.clear_after, ts)
        if ev:
            events.append(("lel", ev, reading.lel_pct, cfg.lel))
    if reading.co_ppm is not None:
        co, ev = judge(co, reading.co_ppm, cfg.co, cfg.clear_after, ts, cfg.co_sustained)
        if ev:
            events.append(("co", ev, reading.co_ppm, cfg.co))
    state = replace(state, lel=lel, co=co, last_ts=state.last_ts if late else ts)
    now_alarm = lel.level == ALARM or co.level == ALARM
    dev = state.device_id
    for name, ev, value, lv in events:
        shown = f"{value:g} {lv.unit}"
        if ev in ("alarm", "sustained"):
            reason = f"{name}_{'alarm' if ev == 'alarm' else 'sustained'}"
            if ev == "alarm":
                detail = f"{name} {shown} at or over the alarm level {lv.alarm:g} {lv.unit}"
            else:
                held = _mins(cfg.co_sustained)
                detail = f"{name} at or over {lv.warn:g} {lv.unit} for {held} min (now {shown})"
            if late:
                detail += f"; a reading of {ts.isoformat(timespec='seconds')} that arrived late"
            if state.alarmed:
                out.append(Note(dev, AlertKind.GAS, reason, detail))
            else:
                state = replace(state, alarmed=True, valve=None)
                out.append(Raise(dev, AlertKind.GAS, reason, detail))
                state, cmd = _valve_close(state, now, cfg)
                out.extend(cmd)
        elif ev == "warn" and not state.alarmed:
            out.append(
                Warn(dev, AlertKind.GAS, f"{name}_warning", f"{name} {shown} at or over warning")
            )
    if was_alarm and not now_alarm and state.alarmed and not state.device_alarm:
        state = replace(state, alarmed=False)
        shown = ", ".join(
            f"{n} {c.last:g}" for n, c in (("lel", lel), ("co", co)) if c.last is not None
        )
        out.append(
            Clear(dev, AlertKind.GAS, "gas_below_alarm", f"{shown}; {cfg.clear_after} readings")
        )
    return state, out


def _late(
    ch: Channel,
    value: float,
    levels: Levels,
    clear_after: int,
    ts: datetime,
    sustained: timedelta | None = None,
) -> tuple[Channel, str | None]:
    """`step` for a reading older than the channel's last: only an alarm it shows counts. Under
    the alarm level it would count toward an all-clear, or move the dose's hour, on news older
    than what the channel already knows."""
    if value < levels.alarm or ch.level == ALARM:
        return ch, None
    return Channel(ALARM, 0, ts, levels.alarm - levels.alarm_band, value), "alarm"


def _mins(d: timedelta | None) -> int:
    return 0 if d is None else int(d.total_seconds() // 60)


def on_device_alarm(
    state: GasState, now: datetime, cfg: GasConfig
) -> tuple[GasState, list[GasDecision]]:
    """The sensor's own `gas.alarm`: `alerts.rules.on_event` opens the alert; this closes the
    valve (once per episode)."""
    if not state.alarmed:
        state = replace(state, alarmed=True, valve=None)
    state = replace(state, device_alarm=True)
    state, cmd = _valve_close(state, now, cfg)
    return state, list(cmd)


def new_episode(state: GasState) -> GasState:
    """The alert of the episode on was resolved or cancelled (by a person: the rule was not
    told): what comes next is a new episode, with its own alert and its own valve.close
    (someone may have opened the valve again). A channel still at its alarm level is armed
    again, so its next reading at that level raises anew: a resolution is not a mute, and a
    leak must not stay silent behind a closed alert."""
    if not state.alarmed and state.valve is None and not state.device_alarm:
        return state

    def armed(ch: Channel) -> Channel:
        return Channel(last=ch.last) if ch.level == ALARM else ch

    return replace(
        state,
        lel=armed(state.lel),
        co=armed(state.co),
        device_alarm=False,
        alarmed=False,
        valve=None,
    )


def on_device_cleared(
    state: GasState, now: datetime, cfg: GasConfig
) -> tuple[GasState, list[GasDecision]]:
    """The sensor's own `gas.cleared` (recorded by `alerts.rules.on_event`): the episode ends
    when no telemetry channel is in alarm either."""
    in_alarm = state.lel.level == ALARM or state.co.level == ALARM
    return replace(state, device_alarm=False, alarmed=state.alarmed and in_alarm), []


def on_command_result(
    state: GasState,
    command_id: str,
    ok: bool,
    now: datetime,
    detail: str | None = None,
    ts: datetime | None = None,
    late_max: timedelta = readtime.LATE_MAX,
) -> tuple[GasState, list[GasDecision]]:
    """A `command.result` event: for this episode's valve.close, a record or an escalation.
    `ts` is the answer's own time (None: `now`, its receipt).

    The valve is what its latest answer says, the answers ordered by their own time (judged as
    readings are, `alerts.readtime`: at receipt when the valve's clock cannot be right), not by
    their arrival: a device that retries a close it failed may say so late, or a failure may be
    delivered again after the success that followed it. So:

    - a success no older than the last answer (a failure, or none yet) is the truth: the valve
      is closed, `Note(valve_closed_late)` after a failure or no answer (the gateway tells those
      paged that it had not closed); the alert keeps the priority its failure escalated to;
    - a failure strictly newer than a success: the valve is not closed again,
      `Escalate(valve_close_failed)` (the safe side); one stamped no later than the success is
      an earlier attempt's answer and is left out. On equal stamps the success wins: a device
      retrying a close stops at its first success. A failure whose own time cannot be right
      (`readtime`: timed at receipt) or against a valve closed with no `answered_at` (a state
      kept before it was) cannot be ordered after the success and is left out too;
    - an answer older than the last, or a repeat of the same outcome, changes nothing."""
    v = state.valve
    if v is None or command_id != v.command_id:
        return state, []
    at, off = readtime.taken_at(ts if ts is not None else now, now, late_max)
    last = v.answered_at
    # A failure reopens a closed valve only if its own time is believable and newer than the
    # success's: one whose clock cannot be right (`off`, timed at receipt, e.g. redelivered a
    # day late) or one against a valve closed before `answered_at` was kept (`last` None: when
    # it closed is unknown, and then a closed valve was final) cannot be ordered after it.
    if v.status == "closed" and (ok or last is None or off is not None or at <= last):
        return state, []
    if v.status == "failed" and (not ok or (last is not None and at < last)):
        return state, []
    dev, said = state.device_id, f" ({detail})" if detail else ""
    if ok:
        why = "valve_closed_late" if v.status in ("no_answer", "failed") else "valve_closed"
        return replace(state, valve=replace(v, status="closed", answered_at=at)), [
            Note(dev, AlertKind.GAS, why, f"valve {v.device_id} closed{said}")
        ]
    return replace(state, valve=replace(v, status="failed", answered_at=at)), [
        Escalate(dev, AlertKind.GAS, "valve_close_failed", f"valve {v.device_id}{said}")
    ]


def check(state: GasState, now: datetime, cfg: GasConfig) -> tuple[GasState, list[GasDecision]]:
    """The periodic tick: a valve.close with no answer within `valve_timeout` escalates."""
    v = state.valve
    if v is None or v.status != "pending" or now - v.sent_at < cfg.valve_timeout:
        return state, []
    waited = int((now - v.sent_at).total_seconds())
    return replace(state, valve=replace(v, status="no_answer")), [
        Escalate(
            state.device_id,
            AlertKind.GAS,
            "valve_close_no_answer",
            f"valve {v.device_id}: no command.result for {v.command_id} after {waited} s",
        )
    ]
