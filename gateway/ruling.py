"""The stateful rules of alerts/ (water, gas, device health) and the suppressions, wired to storage.

The rules are pure (alerts/water.py, gas.py, health.py, suppression.py). This module keeps their
states in `rule_states` (as their own JSON) and turns what they decide into alert changes through
the alarm path's own `_decide` (gateway/ingest.py) and AlertService, always in the caller's
transaction, so a decision commits with the message that caused it, before that message is
acknowledged.

- A batch of messages (`Ruling.batch`) loads every rule state it needs with ONE query (FOR UPDATE
  on PostgreSQL, in key order, so gateways sharing the topics take turns on a device), and writes
  back the changed ones with ONE statement (an upsert). The query reads each state's `version`
  (a random token, new at every write); the worker keeps the states it decoded or wrote, and
  reads a state's JSON again (a second query) only when its version is not the one it holds.
  Aways and mutes are read at most every 5 s (at once after a change over HTTP in this process),
  and with them the elders' own water thresholds (`elder_water_rules`, applied over the defaults
  by `water.with_override`): a change is used from the next reading or tick.
  Water telemetry goes through `water.observe` (after `water.rearm` when people closed the
  episode's alert while it went on: `_rearm_water`), gas telemetry through `gas.observe`;
  `gas.alarm` / `gas.cleared` events through `gas.on_device_alarm` / `on_device_cleared` (the
  valve); a `command.result` through `gas.on_command_result` of the sensor whose rule sent the
  command (table `commands`).
- Decisions (alerts/decisions.py): Raise -> `suppression.verdict` first (suppressed: a
  `rule_events` row, no alert), then `to_alert_decision` -> `_decide` (Open pages the plan, Join
  and Record go on the timeline); Clear and Note -> Record; Escalate -> Record (or Open) and then
  `AlertService.escalate_all` (every step of the plan at once); SendCommand -> a contract
  `command` on `<base>/v1/devices/{id}/commands` (QoS 1) through the outbox, a `commands` row and
  a timeline entry; Warn -> a `rule_events` row for the board. Alarm events that open alerts
  (tamper, water.leak, battery.low) pass the same verdict (`RuleBatch.screen`).
- Device health, per building (`devices.building`; a device with none is watched alone): every
  message and status is `health.heard` (a retained status the broker replays is `replayed`: no
  sign of life, see gateway/ingest.py). A status `{"online": false}` (the Last Will too) goes
  through `health.heard` and `health.check` at once. Alone, a device has nothing to be grouped
  with, so its `hold` is 0 and its Last Will opens `device_offline` at once (contract v1). In a
  building, the offline device waits the hold (20 min) so that a power cut is ONE incident
  (`OutageOpened`): one device_offline alert paged to staff only (`AlertService.open_incident`),
  on the first member without an alert of its own, every member listed on its timeline and in
  `incidents`.
  Telemetry is most of the traffic, and a healthy device's `last_heard` matters only to the
  minute (its deadline is 3 report intervals, 15 min at the least): a sign of life from a device
  this process last saw online, within `HEARD_SLACK_MS` of the `last_heard` it wrote, and not
  about a low battery, does not load the building's state at all. (With several gateways, one
  may thus see a device back online up to that long after another found it offline.)
- The periodic tick (`Ruling.tick`, from the worker's housekeeping, on the injected clock): the
  states whose `due_at` has come (water: at `water.next_check`, the first moment a no-water
  rule could fire if no report came first, and at least a `tick_s` ahead; gas: when a
  valve.close is unanswered for its timeout; health: at the earliest deadline of its devices,
  or every `tick_s` while something is offline, a message never putting that look off: it
  checks its own device only, `health_due`) are claimed in bounded batches
  (FOR UPDATE SKIP LOCKED on PostgreSQL) and passed through `water.check`, `gas.check` and
  `health.check`; a health state first forgets devices retired or moved to another building.
  The same tick releases suppressed alerts whose suppression has ended (`until` passed, or cut
  short over HTTP): if the condition is still on (the device still offline, the tap still
  running, the leak not dried, the battery still low) the alert opens then. Nothing is
  silenced forever. Each state, and each ended suppression, is done in a savepoint of its own
  (`RuleBatch.alone`): one that fails (a bug, a state this version cannot read or use) is put
  off RETRY_S, with an ERROR line at every try and, for a state, one `warning` rule event per
  device whose alarms it leaves unchecked; the others go on.
- On start, `Ruling.resume` calls `health.resume` on the health states nobody ticked for two
  ticks (the gateway was down: not the devices' fault).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from datetime import time as dt_time
from functools import partial
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from alerts import gas, health, readtime, water
from alerts import rules as alert_rules
from alerts.decisions import (
    Clear,
    Escalate,
    Note,
    Raise,
    SendCommand,
    Warn,
    to_alert_decision,
)
from alerts.health import OutageChanged, OutageClosed, OutageOpened
from alerts.model import PRIORITY, AlertKind, Outcome, State
from alerts.policy import Role, staff_to_page
from alerts.rules import ActiveAlert
from alerts.suppression import (
    NEVER_SUPPRESSED,
    AwayStatus,
    DeviceMute,
    ElderAway,
    SuppressionError,
    Verdict,
    verdict,
)
from devices.kinds import DeviceKind
from devices.payloads import Command, Event, Status, Telemetry
from devices.topics import Channel, device_topic
from gateway.alert_log import Line
from gateway.alerting import AlertService, OutMsg, Tx
from gateway.clock import from_ms, new_id, to_ms
from gateway.db import refused
from gateway.tables import (
    alert_events,
    commands,
    device_mutes,
    devices,
    elder_away,
    incidents,
    messages,
    outbox,
    rule_events,
    rule_states,
)
from gateway.tables import alerts as alert_rows  # not `alerts`: the rules' package
from gateway.tables_rules import elder_water_rules

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger(__name__)

WATER, GAS, HEALTH = "water", "gas", "health"
HEARD_SLACK_MS = 60_000  # a healthy device's sign of life is written at most once a minute
TICK_BATCH = 50  # states per tick transaction: the tick runs on the alarm worker's thread
RELEASE_BATCH = 50
RESUME_BATCH = 200
SUPPRESSIONS_TTL_S = 5.0  # other gateways' changes to aways and mutes are seen within this
CACHE_MAX = 50_000  # decoded states kept by the worker (a few hundred bytes to a few KB each)
# A device's latest alarms and ends read to judge a leak at a mute's end: the latest leak and
# what came after it are all that count, and a sensor does not flap a hundred times in a mute.
STILL_ON_EVENTS = 100
# A state whose check failed is due again after this (`RuleBatch.alone`): not at the next poll,
# where it would fail again, log every second and, claimed oldest first, crowd the good states
# out of the tick's batches; yet within a minute once the fault is gone (a row put right).
RETRY_S = 60
CHECK_FAILED = "check_failed"  # the reason of the `warning` rule event of such a state
# The alerts a state's devices go without while it cannot be checked (for that warning).
_KIND_OF_RULE = {
    WATER: AlertKind.NO_WATER_USE,
    GAS: AlertKind.GAS,
    HEALTH: AlertKind.DEVICE_OFFLINE,
}

_DECODE: dict[str, Callable[[Any], Any]] = {
    WATER: water.WaterState.from_json,
    GAS: gas.GasState.from_json,
    HEALTH: health.BuildingHealth.from_json,
}

# (tx, decision, device, msg_id, detail, the device's active alerts): gateway/ingest.py's _decide
Decide = Callable[
    [Tx, alert_rules.Decision, Any, str | None, dict[str, Any], dict[AlertKind, ActiveAlert]],
    None,
]


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """The rules' settings: the tick, and each rule's configuration (their defaults)."""

    tick_s: int = 60
    water: water.WaterConfig = field(default_factory=water.WaterConfig)
    gas: gas.GasConfig = field(default_factory=gas.GasConfig)
    health: health.HealthConfig = field(default_factory=health.HealthConfig)

    @classmethod
    def from_settings(cls, s: Settings) -> RuleConfig:
        # A reading the broker kept for us while we were away is late, not from a wrong clock.
        late = max(readtime.LATE_MAX, timedelta(seconds=s.mqtt_session_expiry_s))
        return cls(
            tick_s=s.rules_tick_s,
            water=water.WaterConfig(tz=s.timezone, late_max=late),
            gas=gas.GasConfig(late_max=late),
            health=health.HealthConfig(tz=s.timezone),
        )


def health_key(dev: Any) -> str:
    """The health scope of a device: its building, or the device alone."""
    building = getattr(dev, "building", None)
    return f"b:{building}" if building else f"d:{dev.id}"


# PostgreSQL: the batch's states go as ONE JSON document of rows, one statement whatever their
# number. (An executemany costs a round of the protocol per row; a text[] parameter has psycopg
# escape every quote of every state with a regular expression, measured at 20 us a row.)
_PG_WRITE = text(
    "INSERT INTO rule_states (key, rule, state, updated_at, due_at, version)"
    " SELECT key, rule, state, updated_at, due_at, version FROM json_to_recordset(CAST(:rows AS"
    " json)) AS t(key text, rule text, state json, updated_at bigint, due_at bigint,"
    " version bigint)"
    " ON CONFLICT (key, rule) DO UPDATE SET state = excluded.state,"
    " updated_at = excluded.updated_at, due_at = excluded.due_at, version = excluded.version"
)
# The batch's states are read in two steps: their versions (and locks) first, then the states
# only of those this worker has no current copy of, which in steady state is none of them.
_VERSIONS = select(
    rule_states.c.key, rule_states.c.rule, rule_states.c.version, rule_states.c.due_at
)
# SQLite: the keys as one JSON array, not one bind parameter each (as ingest's repeat check).
_SQLITE_VERSIONS = text(
    "SELECT s.key, s.rule, s.version, s.due_at FROM json_each(:keys) AS k"
    " JOIN rule_states AS s ON s.key = k.value"
)
# PostgreSQL: each key probed on its own (a LATERAL subquery the planner keeps as a nested loop
# over the keys), in key order, so the locks are taken in key order too. `key = ANY(:keys)`, or
# a join to the keys, leave the plan to statistics: with none yet gathered on a growing table (a
# district's 100,000 devices heard for the first time) PostgreSQL hash-joined a full scan of
# the table for each batch, 12-200 ms a batch, and the gateway fell 20 s behind
# (tests/bench/bench_scale.py, 2026-11-26).
_PG_VERSIONS = text(
    "SELECT s.key, s.rule, s.version, s.due_at"
    " FROM unnest(CAST(:keys AS VARCHAR[])) WITH ORDINALITY AS k(key, ord)"
    " CROSS JOIN LATERAL (SELECT r.key, r.rule, r.version, r.due_at FROM rule_states AS r"
    " WHERE r.key = k.key ORDER BY r.rule OFFSET 0 FOR UPDATE) AS s ORDER BY k.ord"
)
_PG_STATES = text(
    "SELECT s.key, s.rule, s.state"
    " FROM unnest(CAST(:keys AS VARCHAR[])) AS k(key)"
    " CROSS JOIN LATERAL (SELECT r.key, r.rule, r.state FROM rule_states AS r"
    " WHERE r.key = k.key OFFSET 0) AS s"
)


def new_version() -> int:
    """A fresh `rule_states.version` token (not a secret: it only has to differ)."""
    return random.getrandbits(62)


def write_states(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert or replace rule states (`key`, `rule`, `state` as a dict, `updated_at`, `due_at`,
    `version`) in one statement."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_WRITE, {"rows": json.dumps(rows)})
    else:  # sqlite3's executemany is a loop in C: as fast as one statement here (measured)
        conn.execute(_upsert(conn), rows)


_UPSERTS: dict[str, Any] = {}


def _upsert(conn: Connection) -> Any:
    """The dialect's upsert of rule states (built once: building it costs more than running it
    for a few hundred rows)."""
    stmt = _UPSERTS.get(conn.dialect.name)
    if stmt is None:
        stmt = _UPSERTS[conn.dialect.name] = _make_upsert(conn)
    return stmt


def _make_upsert(conn: Connection) -> Any:
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(rule_states)
    return ins.on_conflict_do_update(
        index_elements=[rule_states.c.key, rule_states.c.rule],
        set_={
            "state": ins.excluded.state,
            "updated_at": ins.excluded.updated_at,
            "due_at": ins.excluded.due_at,
            "version": ins.excluded.version,
        },
    )


@dataclass(slots=True)
class _Slot:
    state: Any  # WaterState | GasState | BuildingHealth; None: no row yet (or unreadable)
    stored: bool = False  # a row exists
    due_ms: int | None = None  # as stored, then as it is to be written
    version: int | None = None  # as stored
    dirty: bool = False


@dataclass(slots=True)
class _Suppressions:
    """Every away mark and mute not yet over, as the domain's objects; and the elders' own water
    thresholds (read with them: the same freshness, the same invalidation)."""

    loaded_at: float
    away: dict[str, list[ElderAway]]
    mutes: dict[str, list[Any]]  # device id -> rows (made DeviceMute with the device's kind)
    water_cfgs: dict[str, water.WaterConfig] = field(default_factory=dict)  # elder id -> config


@dataclass(slots=True)
class TickResult:
    out: list[OutMsg]
    opened: dict[str, int]
    escalations: int
    full: bool  # a batch was full: more may be due at once
    logs: list[Line] = field(default_factory=list)  # the alerts' log lines, for after the commit


class Ruling:
    """The rules' wiring, owned by the ingest worker (whose thread alone uses `batch` and `tick`);
    the HTTP routes call `invalidate`, `end_pause` and `false_alarm`. What it keeps in memory
    is hints checked against the database (versions, freshness)."""

    def __init__(self, service: AlertService, base: str, cfg: RuleConfig | None = None) -> None:
        self.service = service
        self.base = base
        self.cfg = cfg or RuleConfig()
        self.tick_ms = self.cfg.tick_s * 1000
        # A device with no building has nothing to be grouped with: no hold before its alert.
        self.alone = replace(self.cfg.health, hold=timedelta(0))
        self._gas_cfgs: dict[str | None, gas.GasConfig] = {None: self.cfg.gas}
        # device id -> (ms until which a plain sign of life need not load its health state,
        # battery low): see the module's docstring.
        self._fresh: dict[str, tuple[int, bool]] = {}
        self._sup: _Suppressions | None = None
        self._sup_lock = threading.Lock()
        # (key, rule) -> (version, decoded state, immutable): the worker's copies, used while
        # the stored version is the same. The HTTP routes (and other gateways) write new
        # versions, which makes the copies stale, never wrong.
        self._cache: dict[tuple[str, str], tuple[int, Any]] = {}

    def cached(self, k: tuple[str, str], version: int) -> Any | None:
        c = self._cache.get(k)
        return c[1] if c is not None and c[0] == version else None

    def cache(self, k: tuple[str, str], version: int, state: Any) -> None:
        """Keep a copy; when full, only of the states already kept. Devices report in turn, so
        with more states than room, dropping the oldest dropped just those due next: nearly
        every copy was read from the database again (71,000 states at 100,000 devices). Kept
        as they come, CACHE_MAX of them hit every time, and no state is read more often."""
        cache = self._cache
        if k in cache or len(cache) < CACHE_MAX:
            cache[k] = (version, state)

    # --- configuration -----------------------------------------------------------------------

    def gas_cfg(self, dev: Any) -> gas.GasConfig:
        valve = getattr(dev, "valve_device_id", None)
        cfg = self._gas_cfgs.get(valve)
        if cfg is None:
            cfg = self._gas_cfgs[valve] = replace(self.cfg.gas, valve_device_id=valve)
        return cfg

    def health_cfg(self, key: str) -> health.HealthConfig:
        return self.alone if key.startswith("d:") else self.cfg.health

    # --- suppressions (cached briefly; the HTTP routes invalidate on change) ------------------

    def invalidate(self) -> None:
        """Aways, mutes or an elder's water thresholds changed: read them again before the
        next judgement."""
        self._sup = None

    def suppressions(self, conn: Connection, now_ms: int) -> _Suppressions:
        sup = self._sup
        if sup is not None and time.monotonic() - sup.loaded_at < SUPPRESSIONS_TTL_S:
            return sup
        with self._sup_lock:
            away: dict[str, list[ElderAway]] = {}
            for r in conn.execute(
                select(elder_away).where(
                    elder_away.c.ended_at.is_(None), elder_away.c.until > now_ms
                )
            ):
                try:
                    away.setdefault(r.elder_id, []).append(
                        ElderAway(
                            r.elder_id,
                            AwayStatus(r.status),
                            from_ms(r.since),
                            from_ms(r.until),
                            r.author,
                            r.note or "",
                        )
                    )
                except (SuppressionError, ValueError):
                    log.warning("away mark %s cannot be used; ignored", r.id)
            mutes: dict[str, list[Any]] = {}
            for r in conn.execute(
                select(device_mutes).where(
                    device_mutes.c.ended_at.is_(None), device_mutes.c.until > now_ms
                )
            ):
                mutes.setdefault(r.device_id, []).append(r)
            cfgs: dict[str, water.WaterConfig] = {}
            for r in conn.execute(select(elder_water_rules)):
                try:
                    cfgs[r.elder_id] = water.with_override(self.cfg.water, water_override(r))
                except ValueError as exc:
                    # Valid when set, not with today's defaults (a day_end now before the
                    # default day_start): the defaults rather than no rule at all.
                    log.warning("water thresholds of elder %s ignored: %s", r.elder_id, exc)
            sup = _Suppressions(time.monotonic(), away, mutes, cfgs)
            self._sup = sup
            return sup

    # --- per batch ---------------------------------------------------------------------------

    def batch(
        self,
        tx: Tx,
        decide: Decide,
        devs: dict[str, Any],
        active: dict[str, dict[AlertKind, ActiveAlert]],
    ) -> RuleBatch:
        return RuleBatch(self, tx, decide, devs, active)

    def _remember(self, key: str, state: health.BuildingHealth) -> None:
        """Note which of a building's devices a plain sign of life may skip for a while."""
        fresh = self._fresh
        for dev_id, d in state.devices.items():
            if d.online and d.outage is None and d.last_heard is not None:
                fresh[dev_id] = (to_ms(d.last_heard) + HEARD_SLACK_MS, d.battery_low)
            else:
                fresh.pop(dev_id, None)

    def skips(self, dev_id: str, now_ms: int, battery_pct: float | None) -> bool:
        """True when a sign of life from `dev_id` need not load its health state now."""
        entry = self._fresh.get(dev_id)
        if entry is None or now_ms >= entry[0]:
            return False
        if battery_pct is None:
            return True
        return not entry[1] and battery_pct >= self.cfg.health.battery_low_pct

    # --- the periodic tick -------------------------------------------------------------------

    def tick(self, engine: Engine, now_ms: int, decide: Decide) -> TickResult | None:
        """Check the states that are due, and release suppressions that have ended: one bounded
        batch in one transaction. None when nothing was due."""
        with engine.begin() as conn:
            pg = conn.dialect.name == "postgresql"
            q = (
                select(rule_states)
                .where(rule_states.c.due_at <= now_ms)
                .order_by(rule_states.c.due_at)
                .limit(TICK_BATCH)
            )
            r = (
                select(rule_events)
                .where(
                    rule_events.c.type == "suppressed",
                    rule_events.c.released_at.is_(None),
                    rule_events.c.until <= now_ms,
                )
                .order_by(rule_events.c.until)
                .limit(RELEASE_BATCH)
            )
            if pg:
                q = q.with_for_update(skip_locked=True)
                r = r.with_for_update(skip_locked=True)
            rows = conn.execute(q).all()
            ended = conn.execute(r).all()
            if not rows and not ended:
                return None
            tx = Tx(conn, now_ms)
            b = RuleBatch(self, tx, decide, {}, {})
            b.adopt(rows)
            b.check_all()
            for e in ended:
                b.alone(partial(b.release, e), partial(b.put_off_release, e))
            b.finish()
            _flush(tx)
        return TickResult(
            tx.out,
            dict(tx.opened),
            tx.escalations,
            len(rows) >= TICK_BATCH or len(ended) >= RELEASE_BATCH,
            tx.logs,
        )

    def resume(self, engine: Engine, now_ms: int) -> int:
        """After the gateway was down: `health.resume` on every health state nobody ticked for two
        ticks (with several gateways, one that stays up keeps them fresh). Bounded batches."""
        done = 0
        stale = now_ms - 2 * self.tick_ms
        for _ in range(10_000):  # a bound, not a limit anyone reaches
            with engine.begin() as conn:
                q = (
                    select(rule_states.c.key, rule_states.c.state)
                    .where(rule_states.c.rule == HEALTH, rule_states.c.due_at < stale)
                    .order_by(rule_states.c.due_at)
                    .limit(RESUME_BATCH)
                )
                if conn.dialect.name == "postgresql":
                    q = q.with_for_update(skip_locked=True)
                rows = conn.execute(q).all()
                if not rows:
                    break
                out = []
                broken = []
                now = from_ms(now_ms)
                for row in rows:
                    try:
                        state = _decode(HEALTH, row.key, row.state)
                        if state is None:
                            raise UnreadableState(f"{HEALTH}/{row.key}")
                        state = health.resume(state, now)
                        due = self.health_due(state, now_ms, self.health_cfg(row.key))
                    except Exception as exc:
                        # One state must not keep the gateway from starting, nor the others
                        # from their grace. Nor is it replaced by an empty one (its devices would
                        # be watched no more): left as it is, due now, for the tick to put off
                        # and report (RuleBatch.put_off_state).
                        log.error(
                            "device health %s not resumed (%s):\n%s",
                            row.key,
                            type(exc).__name__,
                            "".join(traceback.format_tb(exc.__traceback__)),
                        )
                        broken.append(row.key)
                        continue
                    out.append(
                        {
                            "key": row.key,
                            "rule": HEALTH,
                            "state": state.to_json(),
                            "updated_at": now_ms,
                            "due_at": due,
                            "version": new_version(),
                        }
                    )
                write_states(conn, out)
                if broken:  # no longer `stale`: not taken again by the next round
                    conn.execute(
                        update(rule_states)
                        .where(rule_states.c.key.in_(broken), rule_states.c.rule == HEALTH)
                        .values(due_at=now_ms)
                    )
                done += len(out)
        if done:
            log.info("device health resumed for %d buildings after the gateway was down", done)
        return done

    # --- when each state is due --------------------------------------------------------------

    def water_due(
        self,
        state: water.WaterState,
        now_ms: int,
        stored: int | None = None,
        cfg: water.WaterConfig | None = None,
    ) -> int | None:
        """When the tick must look at a water state: no water is the absence of use, which no
        message reports. With the elder's `cfg`, at `water.next_check` (the first moment a
        no-water rule could fire; None: not before the next report), at least a tick ahead;
        without it, a tick ahead, where the tick reckons it with the elder's `cfg`.

        At 100,000 devices a look every tick was ~555 states a second, more than the tick
        did (~210), and most of them could not have fired for hours (tests/bench/bench_scale.py,
        2026-11-26). A time still ahead (`stored`) and not later is kept: an unchanged `due_at`
        keeps the row's index entries, which makes the write of a state per reading cheaper (a
        HOT update); an early look only reckons again."""
        if state.last_ts is None or state.no_use_alerted is not None:
            return None
        stale_ms = (cfg or self.cfg.water).stale_after.total_seconds() * 1000
        if now_ms - to_ms(state.last_ts) > stale_ms:
            return None  # no data is not no water; the next report schedules it again
        due = now_ms + self.tick_ms
        if cfg is not None:
            first = water.next_check(state, from_ms(now_ms), cfg)
            if first is None:
                return None
            due = max(due, to_ms(first))
        if stored is not None and now_ms < stored <= due:
            return stored
        return due

    @staticmethod
    def gas_due(state: gas.GasState, cfg: gas.GasConfig) -> int | None:
        """When an unanswered valve.close escalates."""
        v = state.valve
        if v is None or v.status != "pending":
            return None
        return to_ms(v.sent_at + cfg.valve_timeout)

    def health_due(
        self,
        state: health.BuildingHealth,
        now_ms: int,
        cfg: health.HealthConfig,
        planned: int | None = None,
    ) -> int | None:
        """The first device's deadline; every tick while anything is offline or in an outage.
        `planned`: the look already planned, when a message (not the tick) wrote the state. A
        message checks its own device only (`health.heard`), so in the every-tick mode it keeps
        that look rather than put it a tick after itself: a device reporting every minute did
        so for good, and one silent beside it, found offline, was never raised after its hold."""
        if not state.devices:
            return None
        if state.outage is not None or any(not d.online for d in state.devices.values()):
            if planned is not None:
                return min(planned, now_ms + self.tick_ms)
            return now_ms + self.tick_ms
        return min(
            to_ms((d.last_heard or d.since) + cfg.missed * d.interval(cfg))
            for d in state.devices.values()
        )

    # --- called by the HTTP routes, in their transaction -------------------------------------

    def end_pause(self, conn: Connection, device_ids: Sequence[str], at_ms: int) -> None:
        """A pause of the water rules was cut short at `at_ms` (an away mark or a mute ended or
        replaced): the water states keep the end of the pause they were given (`paused_until`),
        so it is moved to now; and suppressed alerts of these devices are looked at again by
        the next tick."""
        self.invalidate()
        if not device_ids:
            return
        conn.execute(
            update(rule_events)
            .where(
                rule_events.c.device_id.in_(list(device_ids)),
                rule_events.c.type == "suppressed",
                rule_events.c.released_at.is_(None),
                rule_events.c.until > at_ms,
            )
            .values(until=at_ms)
        )
        at = from_ms(at_ms)
        rows = []
        q = select(rule_states).where(
            rule_states.c.key.in_(list(device_ids)), rule_states.c.rule == WATER
        )
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        for r in conn.execute(q):
            st = _decode(WATER, r.key, r.state)
            if st is None or st.paused_until is None or st.paused_until <= at:
                continue
            # The field is the rule's own (alerts/water.py): "the end of a suppression".
            st = replace(st, paused_until=at)
            rows.append(
                {
                    "key": r.key,
                    "rule": WATER,
                    "state": st.to_json(),
                    "updated_at": at_ms,
                    "due_at": self.water_due(st, at_ms),
                    "version": new_version(),
                }
            )
        if rows:
            write_states(conn, rows)

    def watch(self, conn: Connection, dev: Any, at_ms: int) -> None:
        """Device health watches an active device from `at_ms` (registered, or moved to another
        building) without waiting for its first message: a device installed dead, which never
        speaks, is then found silent `missed` report intervals later ("never heard"), as one
        that stopped. A device already watched there keeps its history; the state it leaves,
        if moved, forgets it at its next tick (`_check_health`)."""
        if dev.status != "active":
            return
        key = health_key(dev)
        q = select(rule_states.c.state).where(
            rule_states.c.key == key, rule_states.c.rule == HEALTH
        )
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()  # the worker's batch on this building waits, or we do
        row = conn.execute(q).first()
        st = None if row is None else _decode(HEALTH, key, row.state)
        rebuilt = row is not None and st is None
        if rebuilt:
            # Begun afresh with this device alone, it was written over the stored one: the
            # building's other devices were watched no more. Rebuilt as a message would.
            st = RuleBatch(self, Tx(conn, at_ms), _decides_nothing, {}, {})._rebuilt_health(key)
        elif st is None:
            st = health.new_state(key[2:])
        if dev.id in st.devices and not rebuilt:
            return
        new = st
        if dev.id not in new.devices:  # a rebuilt state has it already: it is in the building
            new = health.add_device(st, dev.id, DeviceKind(dev.kind), from_ms(at_ms))
        due = self.health_due(new, at_ms, self.health_cfg(key))
        write_states(
            conn,
            [
                {
                    "key": key,
                    "rule": HEALTH,
                    "state": new.to_json(),
                    "updated_at": at_ms,
                    "due_at": due,
                    "version": new_version(),
                }
            ],
        )

    def look_again(self, conn: Connection, device_ids: Sequence[str], at_ms: int) -> None:
        """An elder's water thresholds changed: the tick reckons their states' next look again
        (`water_due`) with the new thresholds, once every gateway's copy of the old ones is
        gone (SUPPRESSIONS_TTL_S)."""
        if device_ids:
            conn.execute(
                update(rule_states)
                .where(rule_states.c.key.in_(list(device_ids)), rule_states.c.rule == WATER)
                .values(due_at=at_ms + int(SUPPRESSIONS_TTL_S * 1000) + 1)
            )

    def false_alarm(self, tx: Tx, alert: Row[Any]) -> None:
        """A `no_water_use` alert resolved as a false alarm: its day is learned after all
        (`water.include_day`), so the elder's rhythm counts it as normal."""
        if alert.kind != AlertKind.NO_WATER_USE.value or alert.outcome != Outcome.FALSE_ALARM:
            return
        q = select(rule_states).where(
            rule_states.c.key == alert.device_id, rule_states.c.rule == WATER
        )
        if tx.conn.dialect.name == "postgresql":
            q = q.with_for_update()
        r = tx.conn.execute(q).first()
        st = None if r is None else _decode(WATER, r.key, r.state)
        if st is None:
            return
        day = from_ms(alert.created_at).astimezone(self.cfg.water.zone).date()
        new = water.include_day(st, day, self.cfg.water)
        if new is st:
            return
        write_states(
            tx.conn,
            [
                {
                    "key": alert.device_id,
                    "rule": WATER,
                    "state": new.to_json(),
                    "updated_at": tx.now_ms,
                    "due_at": self.water_due(new, tx.now_ms),
                    "version": new_version(),
                }
            ],
        )
        self.service.record(
            tx, alert.id, "learned_again", None, {"day": day.isoformat(), "rule": "water"}
        )


_NOT_SUPPRESSED = Verdict(False, "not_suppressed")


def water_override(row: Any) -> water.WaterOverride:
    """A row of `elder_water_rules` as the rule's override (null columns: the defaults)."""

    def minutes(v: int | None) -> timedelta | None:
        return None if v is None else timedelta(minutes=v)

    def clock(v: str | None) -> dt_time | None:
        return None if v is None else dt_time.fromisoformat(v)

    return water.WaterOverride(
        fixed_min_l=row.fixed_min_l,
        fixed_window=minutes(row.fixed_window_min),
        day_start=clock(row.day_start),
        day_end=clock(row.day_end),
        learn=row.learn,
        running_window=minutes(row.running_window_min),
    )


class UnreadableState(ValueError):
    """A stored rule state this version cannot read (`_decode` logged why), met where starting
    afresh would forget what it watches: the tick and `Ruling.resume`."""


def _decode(rule: str, key: str, data: Any) -> Any:
    """A stored state, or None when it cannot be read (logged: rather than stopping the alarm
    path, a message's water or gas rule starts afresh, `_afresh`, and a building's health is
    rebuilt, `RuleBatch._rebuilt_health`; the tick puts it off, RuleBatch.put_off_state)."""
    try:
        return _DECODE[rule](data)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("rule state %s/%s cannot be read: %s", rule, key, exc)
        return None


def _decides_nothing(*args: Any) -> None:
    """The `Decide` of a RuleBatch used only to rebuild a state (`Ruling.watch`)."""
    raise RuntimeError("a health state's rebuild decides nothing")


def _afresh(slot: _Slot, rule: str, dev_id: str, new_state: Callable[[str], Any]) -> Any:
    """A device's water or gas state for a message, begun afresh when there is none or it
    cannot be read. Unlike a building's health, such a state is its one device's, and what a
    fresh one forgets cannot be rebuilt from other rows: the episode in progress (a run of
    water, an unanswered valve close, the learned days). What it watches is kept: the next
    reading is judged, an alarm raised again joins the active alert and closes the valve
    again. The ERROR line says what was lost."""
    if slot.state is not None:
        return slot.state
    if slot.stored:
        log.error(
            "rule state %s/%s cannot be read: begun afresh at this message; the episode it"
            " held (a run, an alarm, a valve close awaited, the learned days) is forgotten",
            rule,
            dev_id,
        )
    return new_state(dev_id)


def _flush(tx: Tx) -> None:
    """Timeline events AlertService may still hold in the Tx (it writes them in batches)."""
    flush = getattr(tx, "flush", None)
    if flush is not None:
        flush()


class RuleBatch:
    """The rules for one batch of messages (or one tick), inside its transaction."""

    def __init__(
        self,
        ruling: Ruling,
        tx: Tx,
        decide: Decide,
        devs: dict[str, Any],
        active: dict[str, dict[AlertKind, ActiveAlert]],
    ) -> None:
        self.r = ruling
        self.tx = tx
        self.conn = tx.conn
        self.decide = decide
        self.devs = devs
        self.active = active
        self.now_ms = tx.now_ms
        self.now = from_ms(tx.now_ms)
        self.slots: dict[tuple[str, str], _Slot] = {}
        self.cmds: dict[tuple[str, str], Any] = {}
        # Devices whose event's sign of life is left to a transaction after this one's commit
        # (prepare's `defer_heard`; the caller hands them to `heard`).
        self.heard_later: list[str] = []
        self._pg = self.conn.dialect.name == "postgresql"

    # --- states ------------------------------------------------------------------------------

    def prepare(
        self, items: Iterable[tuple[Any, Channel, Any]], *, defer_heard: bool = False
    ) -> None:
        """Load what the batch's messages (device, channel, parsed body) need: the commands
        answered, then every rule state in one query.

        `defer_heard` (the alarm lane): an event's sign of life does not load its device's
        health state here but goes to `heard_later`. Reading and writing a building's health
        state costs a press two round trips of the ~7 before its page (0.9 ms of a 5.8 ms p50
        on PostgreSQL under load, tests/bench/bench_alarm_path.py, 2026-11-26) and, with
        several gateways, a wait for any transaction holding that building's state; an event
        changes a device's health only by being heard, which can follow a few ms later."""
        r = self.r
        wanted: set[tuple[str, str]] = set()
        answers: list[tuple[str, str]] = []
        for dev, channel, body in items:
            kind = dev.kind
            if channel == Channel.TELEMETRY:
                if kind == DeviceKind.WATER_SENSOR and (
                    body.flow_l is not None or body.total_l is not None
                ):
                    wanted.add((dev.id, WATER))
                elif kind == DeviceKind.GAS_SENSOR and (
                    body.lel_pct is not None or body.co_ppm is not None
                ):
                    wanted.add((dev.id, GAS))
                if not r.skips(dev.id, self.now_ms, body.battery_pct):
                    wanted.add((health_key(dev), HEALTH))
            elif channel == Channel.EVENTS:
                if body.type in ("gas.alarm", "gas.cleared"):
                    wanted.add((dev.id, GAS))
                elif body.type == "command.result":
                    answers.append((dev.id, body.command_id))
                if body.type == "battery.low":  # health keeps it (`event`): rare, not deferred
                    wanted.add((health_key(dev), HEALTH))
                elif r.skips(dev.id, self.now_ms, None):
                    pass
                elif defer_heard:
                    self.heard_later.append(dev.id)
                else:
                    wanted.add((health_key(dev), HEALTH))
            elif channel == Channel.STATUS:
                wanted.add((health_key(dev), HEALTH))
        if answers:
            rows = self.conn.execute(
                select(commands).where(
                    commands.c.device_id.in_({d for d, _ in answers}),
                    commands.c.id.in_({c for _, c in answers}),
                )
            )
            for row in rows:
                self.cmds[(row.device_id, row.id)] = row
                if row.origin_device_id:
                    wanted.add((row.origin_device_id, GAS))
        self.load(wanted)

    def load(self, wanted: set[tuple[str, str]]) -> None:
        wanted = wanted - self.slots.keys()
        if not wanted:
            return
        keys = sorted({k for k, _ in wanted})
        if self._pg:  # locked in key order: two gateways take turns on a device
            found = self.conn.execute(_PG_VERSIONS, {"keys": keys})
        elif self.conn.dialect.name == "sqlite":  # one writer at a time: no lock needed
            found = self.conn.execute(_SQLITE_VERSIONS, {"keys": json.dumps(keys)})
        else:
            found = self.conn.execute(_VERSIONS.where(rule_states.c.key.in_(keys)))
        stale: list[tuple[str, str]] = []
        for row in found:
            k = (row.key, row.rule)
            if k not in wanted:
                continue
            state = self.r.cached(k, row.version)
            self.slots[k] = _Slot(state, True, row.due_at, row.version)
            if state is None:
                stale.append(k)
        if stale:
            stale_set = set(stale)
            stale_keys = sorted({k for k, _ in stale})
            q = (
                _PG_STATES.bindparams(keys=stale_keys)
                if self._pg
                else select(rule_states.c.key, rule_states.c.rule, rule_states.c.state).where(
                    rule_states.c.key.in_(stale_keys)
                )
            )
            for got in self.conn.execute(q):
                k = (got.key, got.rule)
                if k in stale_set:
                    self.slots[k].state = _decode(got.rule, got.key, got.state)
        for k in wanted:
            self.slots.setdefault(k, _Slot(None))

    def heard(self, dev_ids: Sequence[str]) -> None:
        """Signs of life left by an earlier batch (`heard_later`): each device heard now, with
        what its health rule then decides (a device back online, an outage ending)."""
        devs = [self.devs[d] for d in dict.fromkeys(dev_ids) if d in self.devs]
        self.load({(health_key(d), HEALTH) for d in devs})
        self._active_many([d.id for d in devs])
        for dev in devs:
            signals = self._heard(dev)
            if signals:
                self.apply(signals, dev)

    def adopt(self, rows: Sequence[Row[Any]]) -> None:
        """States claimed by the tick (already locked)."""
        for row in rows:
            k = (row.key, row.rule)
            state = self.r.cached(k, row.version)
            if state is None:
                state = _decode(row.rule, row.key, row.state)
            self.slots[k] = _Slot(state, True, row.due_at, row.version)

    def _put(self, key: str, rule: str, old: Any, new: Any, due_ms: int | None) -> None:
        slot = self.slots[(key, rule)]
        if new is not old or due_ms != slot.due_ms or not slot.stored:
            slot.dirty = True
        slot.state = new
        slot.due_ms = due_ms

    def finish(self) -> None:
        """Write every changed state back, in one statement."""
        rows = []
        for (key, rule), slot in self.slots.items():
            if rule == HEALTH and slot.state is not None:
                self.r._remember(key, slot.state)
            if not slot.dirty:
                if slot.state is not None and slot.version is not None:
                    self.r.cache((key, rule), slot.version, slot.state)
                continue
            if slot.state is None:
                if slot.stored:  # its device is gone (unreadable, it is not: put_off_state)
                    self.conn.execute(
                        update(rule_states)
                        .where(rule_states.c.key == key, rule_states.c.rule == rule)
                        .values(due_at=None)
                    )
                continue
            slot.version = new_version()
            rows.append(
                {
                    "key": key,
                    "rule": rule,
                    "state": slot.state.to_json(),
                    "updated_at": self.now_ms,
                    "due_at": slot.due_ms,
                    "version": slot.version,
                }
            )
            slot.dirty = False
            slot.stored = True
            # Also when this transaction then fails: the stored version differs, and the next
            # batch reads the state again (a token, not a counter, so it cannot match by chance).
            self.r.cache((key, rule), slot.version, slot.state)
        if rows:
            write_states(self.conn, rows)

    # --- devices and their alerts ------------------------------------------------------------

    def device(self, dev_id: str) -> Any | None:
        dev = self.devs.get(dev_id)
        if dev is None:
            self.load_devices([dev_id])
            dev = self.devs.get(dev_id)
        return dev

    def load_devices(self, ids: Iterable[str]) -> None:
        missing = sorted(set(ids) - self.devs.keys())
        if missing:
            for row in self.conn.execute(select(devices).where(devices.c.id.in_(missing))):
                self.devs[row.id] = SimpleNamespace(**row._mapping)

    def active_of(self, dev_id: str) -> dict[AlertKind, ActiveAlert]:
        found = self.active.get(dev_id)
        if found is None:
            found = self.r.service.active_for_devices(self.conn, [dev_id])[dev_id]
            self.active[dev_id] = found
        return found

    def _active_many(self, ids: Sequence[str]) -> None:
        missing = [d for d in ids if d not in self.active]
        if missing:
            self.active.update(self.r.service.active_for_devices(self.conn, missing))

    # --- suppression ---------------------------------------------------------------------------

    def water_cfg(self, dev: Any) -> water.WaterConfig:
        """The elder's water configuration: the defaults, or with the elder's override."""
        cfgs = self.r.suppressions(self.conn, self.now_ms).water_cfgs
        return cfgs.get(dev.elder_id, self.r.cfg.water) if cfgs else self.r.cfg.water

    def verdict(self, dev: Any, kind: AlertKind) -> Verdict:
        sup = self.r.suppressions(self.conn, self.now_ms)
        if dev.id not in sup.mutes and dev.elder_id not in sup.away:
            return _NOT_SUPPRESSED  # the common case, without building anything
        device_kind = DeviceKind(dev.kind)
        mutes = []
        for m in sup.mutes.get(dev.id, ()):
            try:
                mutes.append(
                    DeviceMute(
                        m.device_id,
                        device_kind,
                        m.author,
                        m.reason,
                        from_ms(m.since),
                        from_ms(m.until),
                    )
                )
            except SuppressionError:
                log.warning("mute %s cannot be used; ignored", m.id)
        return verdict(
            kind,
            self.now,
            device_id=dev.id,
            device_kind=device_kind,
            away=sup.away.get(dev.elder_id, ()),
            mutes=mutes,
        )

    def suppressed(self, dev: Any, kind: AlertKind, reason: str, text: str) -> bool:
        """Whether an alert of `kind` for `dev` is suppressed now; if so it is recorded."""
        if kind in NEVER_SUPPRESSED:
            return False
        v = self.verdict(dev, kind)
        if not v.suppressed:
            return False
        self.conn.execute(
            insert(rule_events).values(
                at=self.now_ms,
                type="suppressed",
                device_id=dev.id,
                elder_id=dev.elder_id,
                kind=kind.value,
                reason=reason[:40],
                detail={"detail": text, "why": v.why, "by": v.by, "note": v.detail},
                until=to_ms(v.until) if v.until is not None else self.now_ms,
            )
        )
        return True

    def screen(
        self, decision: alert_rules.Decision, dev: Any, reason: str, text: str
    ) -> alert_rules.Decision:
        """An alarm event's Open, through the same suppression as the rules' Raise."""
        if isinstance(decision, alert_rules.Open) and self.suppressed(
            dev, decision.kind, reason, text
        ):
            return alert_rules.Nothing(f"{decision.kind} suppressed")
        return decision

    def release(self, e: Row[Any]) -> None:
        """A suppression has ended (or was cut short): open the alert if its condition is still
        on, else only note that it ended."""
        kind = AlertKind(e.kind)
        dev = self.device(e.device_id)
        alert_id = None
        if dev is not None and dev.status == "active":
            v = self.verdict(dev, kind)
            if v.suppressed and v.until is not None:  # another mute or mark goes on longer
                self.conn.execute(
                    update(rule_events)
                    .where(rule_events.c.id == e.id)
                    .values(until=max(to_ms(v.until), self.now_ms + 1))
                )
                return
            if self._still_on(dev, kind):
                active = self.active_of(dev.id)
                text = (e.detail or {}).get("detail", "") if isinstance(e.detail, dict) else ""
                detail = {"rule": e.reason, "detail": text, "suppressed_since": e.at}
                decision = to_alert_decision(Raise(dev.id, kind, e.reason, text), active)
                self.decide(self.tx, decision, dev, None, detail, active)
                current = active.get(kind)
                alert_id = current.id if current is not None else None
        self.conn.execute(
            update(rule_events)
            .where(rule_events.c.id == e.id)
            .values(released_at=self.now_ms, alert_id=alert_id)
        )

    def _still_on(self, dev: Any, kind: AlertKind) -> bool:
        """Is the condition of a suppressed alert still on, by its rule's state, or for an alarm
        event with an end (a leak, until `water.dry`) by the device's events since
        (`alert_rules.still_on`)? A low battery said by `battery.low` is in health's state
        (`_heard`). A tamper has no end in the contract: a moment, that the mute dealt with."""
        raised_by = next((t for t, k in alert_rules.RAISES.items() if k == kind), None)
        if raised_by in alert_rules.LASTS_UNTIL:
            assert raised_by is not None
            m = messages.c
            rows = self.conn.execute(
                select(m.type, m.ts)
                .where(
                    m.source == "d",
                    m.source_id == dev.id,
                    m.channel == Channel.EVENTS.value,
                    m.type.in_((raised_by, alert_rules.LASTS_UNTIL[raised_by])),
                    m.ts.is_not(None),
                )
                .order_by(m.received_at.desc(), m.ts.desc())
                .limit(STILL_ON_EVENTS)
            ).all()
            return alert_rules.still_on(raised_by, ((r.type, from_ms(r.ts)) for r in rows[::-1]))
        if kind in (AlertKind.DEVICE_OFFLINE, AlertKind.LOW_BATTERY):
            key = health_key(dev)
            self.load({(key, HEALTH)})
            st = self.slots[(key, HEALTH)].state
            d = None if st is None else st.devices.get(dev.id)
            if d is None:
                return False
            if kind == AlertKind.DEVICE_OFFLINE:
                return not d.online and d.outage is None
            return bool(d.battery_low)
        if kind in (AlertKind.WATER_RUNNING, AlertKind.NO_WATER_USE):
            self.load({(dev.id, WATER)})
            st = self.slots[(dev.id, WATER)].state
            if st is None:
                return False
            if kind == AlertKind.WATER_RUNNING:
                return bool(st.running_alerted)
            return st.no_use_alerted is not None
        return False

    # --- messages ------------------------------------------------------------------------------

    def telemetry(self, dev: Any, tm: Telemetry, arrived: datetime | None = None) -> None:
        """`arrived`: when the reading reached the gateway (None: the batch's time), the time
        the water and gas rules judge it at when its own `ts` cannot be right."""
        r = self.r
        at = self.now if arrived is None else arrived
        signals: list[Any] = []
        slot = self.slots.get((dev.id, WATER))
        if slot is not None:
            st = self._rearm_water(dev, _afresh(slot, WATER, dev.id, water.new_state))
            v = self.verdict(dev, AlertKind.NO_WATER_USE)
            paused = v.until if v.suppressed else None
            cfg = self.water_cfg(dev)
            new, ds = water.observe(st, tm, at, cfg, paused)
            self._put(
                dev.id, WATER, slot.state, new, r.water_due(new, self.now_ms, slot.due_ms, cfg)
            )
            signals += ds
        slot = self.slots.get((dev.id, GAS))
        if slot is not None:
            gcfg = r.gas_cfg(dev)
            gst = _afresh(slot, GAS, dev.id, gas.new_state)
            if gst.alarmed and AlertKind.GAS not in self.active_of(dev.id):
                gst = gas.new_episode(gst)  # its alert was closed: the next alarm is a new one
            gnew, gds = gas.observe(gst, tm, at, gcfg)
            self._put(dev.id, GAS, slot.state, gnew, r.gas_due(gnew, gcfg))
            signals += gds
        signals += self._heard(dev, battery_pct=tm.battery_pct)
        if signals:
            self.apply(signals, dev)

    def _rearm_water(self, dev: Any, st: water.WaterState) -> water.WaterState:
        """A water episode whose alert people closed while it went on (the tap still runs, still
        no water used) is armed again, its window counted from the closing (`water.rearm`):
        a resolution is not a mute. The rule is not told of the closing, so it is looked for
        here: an alert of the kind closed since the episode began, none active now. (A Raise
        that was suppressed has no alert: its release at the mute's end looks at it.)

        A run re-armed keeps its `run_start`, before the closing it was re-armed from: looked
        for from there, that same closing re-armed it again at every reading, and while a mute
        held the new raise (no alert active) each reading raised and was held anew, each
        released at the mute's end. Only a closing after the re-arm's is a new one. (The
        no-water episode has no such fault: `rearm` clears `no_use_alerted_at`, and a new
        raise comes a whole window after the closing.)"""
        rearmed = st.running_rearmed_at
        episodes = (
            (AlertKind.WATER_RUNNING, st.running_alerted, rearmed or st.run_start, rearmed),
            (AlertKind.NO_WATER_USE, st.no_use_alerted is not None, st.no_use_alerted_at, None),
        )
        for kind, on, since, after in episodes:
            if not on or since is None or kind in self.active_of(dev.id):
                continue
            a = alert_rows.c
            closed = self.conn.execute(
                select(a.closed_at)
                .where(
                    a.elder_id == dev.elder_id,  # indexed; an elder has few alerts
                    a.device_id == dev.id,
                    a.kind == kind.value,
                    a.closed_at > to_ms(after) if after else a.closed_at >= to_ms(since),
                )
                .order_by(a.closed_at.desc())
                .limit(1)
            ).scalar()
            if closed is not None:
                st = water.rearm(st, kind, from_ms(closed))
        return st

    def event(self, dev: Any, ev: Event, opened: bool = False) -> None:
        """After the event's own rule (alerts.rules.on_event): the valve, command results, and
        the device's sign of life. `opened`: the event opened a new alert."""
        r = self.r
        signals: list[Any] = []
        if ev.type in ("gas.alarm", "gas.cleared") and (dev.id, GAS) in self.slots:
            slot = self.slots[(dev.id, GAS)]
            cfg = r.gas_cfg(dev)
            st = _afresh(slot, GAS, dev.id, gas.new_state)
            if ev.type == "gas.alarm":
                if opened:  # the episode's alert was closed, or there was none: a new one
                    st = gas.new_episode(st)
                new, ds = gas.on_device_alarm(st, self.now, cfg)
            else:
                new, ds = gas.on_device_cleared(st, self.now, cfg)
            self._put(dev.id, GAS, slot.state, new, r.gas_due(new, cfg))
            signals += ds
        origin = dev
        if ev.type == "command.result":
            origin, ds = self._command_result(dev, ev)
            signals += ds
        heard = self._heard(dev, said_low=ev.type == "battery.low")
        if signals:
            self.apply(signals, origin)
        if heard:
            self.apply(heard, dev)

    def status(self, dev: Any, st: Status, was_online: bool | None, replayed: bool = False) -> None:
        """A status (retained; the Last Will too) through device health. `{"online": true}` is
        recorded on an open device_offline alert as before (contract v1), also when health had
        not raised it. `replayed`: the broker delivered it again as a record of the device's
        last state (gateway/ingest.py), no sign of life (`health.heard`): its offline counts,
        its online is not recorded as the device being back."""
        signals = self._heard(
            dev, online=st.online, battery_pct=st.battery_pct, check=True, replayed=replayed
        )
        cleared = any(
            isinstance(s, Clear) and s.kind == AlertKind.DEVICE_OFFLINE and s.device_id == dev.id
            for s in signals
        )
        if st.online and not replayed and not cleared:
            active = self.active_of(dev.id)
            decision = alert_rules.on_status(True, was_online, active)
            self.decide(self.tx, decision, dev, None, {"status": "online"}, active)
        if signals:
            self.apply(signals, dev)

    def _heard(
        self,
        dev: Any,
        *,
        online: bool | None = None,
        battery_pct: float | None = None,
        check: bool = False,
        replayed: bool = False,
        said_low: bool = False,
    ) -> list[Any]:
        """`said_low`: the device's own `battery.low` (its alert is the event's own rule's):
        health keeps it, so a mute that held that alert back opens it at its end, unless
        readings have said since that the battery is fine (`release`)."""
        key = health_key(dev)
        slot = self.slots.get((key, HEALTH))
        if slot is None:
            return []  # a healthy device's sign of life, skipped (prepare)
        cfg = self.r.health_cfg(key)
        st = slot.state
        if st is None:
            st = self._rebuilt_health(key) if slot.stored else health.new_state(key[2:])
        new = st
        if dev.id not in new.devices:
            new = health.add_device(new, dev.id, DeviceKind(dev.kind), self.now)
        new, out = health.heard(
            new, dev.id, self.now, cfg, online=online, battery_pct=battery_pct, replayed=replayed
        )
        if said_low:
            new = health.battery_said_low(new, dev.id)
        if check and online is False:
            # The Last Will: judged now, not at the next tick (alone: its alert opens at once).
            new, more = health.check(new, self.now, cfg)
            out += more
        due = self.r.health_due(new, self.now_ms, cfg, slot.due_ms)
        self._put(key, HEALTH, slot.state, new, due)
        return list(out)

    def _rebuilt_health(self, key: str) -> health.BuildingHealth:
        """A health state stored but unreadable (`_decode` said why), met by a message (or a
        device registered or moved into the building, `Ruling.watch`). Begun
        afresh with the message's device alone, as it used to be, it was written over the one
        the tick keeps, and a device of the building already silent was watched no more: never
        found offline. Left as it is, none of them is watched either. So it is rebuilt from
        the building's active devices (as `Ruling.watch` adds them) and what the database
        knows of them (`health.rebuild`): a device known offline (its Last Will, `online`
        false, or its own active device_offline alert with no sign of life since it opened)
        stays offline, and alerted when it was raised since it was last heard (its alert
        active, or closed by staff while it stayed silent): not raised again, its next
        message recorded on an active one; the building's open outage incident is restored with its
        members, and those recorded back or left on its alert. A device online is watched
        from now: a silent one is found `missed` report intervals on, not at once, since its
        real silence is not known (its `last_seen_at` may predate a stop of the gateway, which
        is not the device's fault). Still lost, as the ERROR line says: late reports not yet
        missed enough, low batteries, and when exactly each device went offline."""
        ids = self._member_ids(key)
        self.load_devices(ids)
        mine = [self.devs[i] for i in ids if not self._gone(self.devs.get(i))]
        mine = [d for d in mine if health_key(d) == key]
        self._active_many([d.id for d in mine])
        inc = None
        if key.startswith("b:"):
            inc = self.conn.execute(
                select(incidents)
                .where(incidents.c.building == key[2:], incidents.c.closed_at.is_(None))
                .order_by(incidents.c.opened_at.desc())
            ).first()
        outage = None if inc is None else self._outage_of(inc)
        # Each device's newest own device_offline alert in any state: one staff closed while
        # the device stayed silent was raised all the same (the state keeps `alerted` until a
        # sign of life), and must not be raised again because the state was lost.
        newest = self._newest_offline_alerts([d.id for d in mine])
        known = []
        for d in mine:
            a = self.active[d.id].get(AlertKind.DEVICE_OFFLINE)
            if (
                a is not None
                and inc is not None
                and a.id == inc.alert_id
                and to_ms(a.created_at) >= inc.opened_at
            ):
                a = None  # the outage's own alert, opened on this member: not the device's
            seen = d.last_seen_at
            unheard = a is not None and (seen is None or seen <= to_ms(a.created_at))
            offline = d.online is False or unheard
            raised = newest.get(d.id)
            raised_since = raised is not None and (seen is None or seen <= raised)
            known.append(
                health.KnownDevice(
                    d.id,
                    DeviceKind(d.kind),
                    offline=offline,
                    last_will=d.online is False,
                    alerted=offline and (a is not None or raised_since),
                    last_heard=None if seen is None else from_ms(seen),
                )
            )
        st = health.rebuild(key[2:], known, self.now, self.r.health_cfg(key), outage)
        log.error(
            "device health %s cannot be read: rebuilt from its %d devices, %d known offline"
            " (%d alerted), outage %s; the others watched from now; late reports, low"
            " batteries and when each went offline are forgotten",
            key,
            len(st.devices),
            sum(not d.online for d in st.devices.values()),
            sum(d.alerted for d in st.devices.values()),
            "none" if st.outage is None else st.outage.key,
        )
        return st

    def _newest_offline_alerts(self, device_ids: list[str]) -> dict[str, int]:
        """Each device's newest `device_offline` alert's creation (ms), in any state, of those
        opened for the device itself (not an outage's incident, `plan_source` "incident")."""
        if not device_ids:
            return {}
        a = alert_rows.c
        rows = self.conn.execute(
            select(a.device_id, func.max(a.created_at))
            .where(
                a.device_id.in_(device_ids),
                a.kind == AlertKind.DEVICE_OFFLINE.value,
                a.plan_source.is_distinct_from("incident"),
            )
            .group_by(a.device_id)
        )
        return {dev: int(at) for dev, at in rows}

    def _outage_of(self, inc: Any) -> health.Outage:
        """An open incident as the health state's outage: its members, and those its alert's
        timeline says came back or left it. Begun when it was opened (its first member went
        quiet up to a hold earlier: late members may join it that much longer)."""
        back: list[str] = []
        left: list[str] = []
        restored = None
        if inc.alert_id:
            e = alert_events.c
            for at, detail in self.conn.execute(
                select(e.at, e.detail)
                .where(e.alert_id == inc.alert_id, e.type == "outage_member")
                .order_by(e.id)
            ):
                if not isinstance(detail, dict) or detail.get("incident") != inc.key:
                    continue
                if detail.get("change") == "back_online":
                    back.append(str(detail.get("device_id")))
                    restored = restored or from_ms(at)
                elif detail.get("change") == "still_offline":
                    left.append(str(detail.get("device_id")))
        members = tuple(str(m) for m in inc.device_ids or [])
        return health.Outage(
            inc.key, from_ms(inc.opened_at), members, tuple(back), tuple(left), restored
        )

    def _command_result(self, dev: Any, ev: Any) -> tuple[Any, list[Any]]:
        """A device's `command.result`: recorded on the command and its alert, and given to the
        rule of the sensor that sent it."""
        cmd = self.cmds.get((dev.id, ev.command_id))
        if cmd is None:
            return dev, []  # not a command of ours (or long forgotten): nothing to do
        self.conn.execute(
            update(commands)
            .where(
                commands.c.device_id == dev.id,
                commands.c.id == ev.command_id,
                commands.c.result_at.is_(None),
            )
            .values(result_ok=ev.ok, result_detail=ev.detail, result_at=self.now_ms)
        )
        if cmd.alert_id:
            self.r.service.record(
                self.tx,
                cmd.alert_id,
                "command_result",
                f"device:{dev.id}",
                {"command_id": ev.command_id, "type": cmd.type, "ok": ev.ok, "detail": ev.detail},
            )
        origin = self.device(cmd.origin_device_id) if cmd.origin_device_id else None
        slot = self.slots.get((cmd.origin_device_id, GAS)) if origin is not None else None
        if origin is None or slot is None or slot.state is None:
            return dev, []
        cfg = self.r.gas_cfg(origin)
        new, ds = gas.on_command_result(
            slot.state, ev.command_id, ev.ok, self.now, ev.detail, ev.ts, cfg.late_max
        )
        self._put(origin.id, GAS, slot.state, new, self.r.gas_due(new, cfg))
        return origin, list(ds)

    # --- the tick --------------------------------------------------------------------------------

    def check_all(self) -> None:
        """Every claimed state through its rule's periodic check, each `alone`."""
        ids: set[str] = set()
        for (key, rule), slot in self.slots.items():
            if rule == HEALTH:
                if slot.state is not None:
                    ids.update(slot.state.devices)
            else:
                ids.add(key)
        self.load_devices(ids)
        checks = {WATER: self._check_water, GAS: self._check_gas, HEALTH: self._check_health}
        for (key, rule), slot in list(self.slots.items()):
            check = checks.get(rule)
            if check is not None:
                self.alone(partial(check, key, slot), partial(self.put_off_state, key, rule))

    def _gone(self, dev: Any | None) -> bool:
        return dev is None or dev.status != "active"

    def _check_water(self, key: str, slot: _Slot) -> None:
        dev = self.devs.get(key)
        if self._gone(dev):
            self._put(key, WATER, slot.state, slot.state, None)
            return
        if slot.state is None:
            raise UnreadableState(f"{WATER}/{key}")
        v = self.verdict(dev, AlertKind.NO_WATER_USE)
        paused = v.until if v.suppressed else None
        cfg = self.water_cfg(dev)
        new, ds = water.check(slot.state, self.now, cfg, paused)
        self._put(key, WATER, slot.state, new, self.r.water_due(new, self.now_ms, None, cfg))
        if ds:
            self.apply(ds, dev)

    def _check_gas(self, key: str, slot: _Slot) -> None:
        dev = self.devs.get(key)
        if self._gone(dev):
            self._put(key, GAS, slot.state, slot.state, None)
            return
        if slot.state is None:
            raise UnreadableState(f"{GAS}/{key}")
        cfg = self.r.gas_cfg(dev)
        new, ds = gas.check(slot.state, self.now, cfg)
        self._put(key, GAS, slot.state, new, self.r.gas_due(new, cfg))
        if ds:
            self.apply(ds, dev)

    def _check_health(self, key: str, slot: _Slot) -> None:
        st = slot.state
        if st is None:  # which devices it watched is unknown: none may be dropped unsaid
            raise UnreadableState(f"{HEALTH}/{key}")
        new = st
        for dev_id in list(st.devices):
            dev = self.devs.get(dev_id)
            if self._gone(dev) or health_key(dev) != key:
                new = health.remove_device(new, dev_id)  # retired, or moved to another building
        cfg = self.r.health_cfg(key)
        new, ds = health.check(new, self.now, cfg)
        self._put(key, HEALTH, st, new, self.r.health_due(new, self.now_ms, cfg))
        if ds:
            self.apply(ds, None)

    # --- the tick, one state at a time ---------------------------------------------------------

    def alone(self, work: Callable[[], None], put_off: Callable[[Exception], None]) -> bool:
        """`work()` for one due state (or ended suppression) of the tick, in a savepoint of its
        own. A fault in one (a bug, a stored state this version cannot read or use) used to roll
        back the whole tick at every poll: no home's no-water alarm and no silent device was
        raised any more, anywhere. Now its writes roll back, and with them what this batch
        holds beside the database since: pages to publish, log lines and counts (`tx`), the
        states in hand (`slots`, as they were, so that `finish` neither writes nor caches an
        advanced copy) and the alerts it knew of (`active`: read again when next needed). Then
        `put_off(exc)`. False after a fault. A database error that is no refusal of what the
        state holds (gateway/db.py `refused`: the database gone away, or under load, a lock or
        statement timeout, a deadlock) is no fault of the state's: put off, a silent device
        or a dry home was raised a minute late, with a `check_failed` warning that was not
        so; it fails the tick instead, tried again whole at the next poll. The tick only
        (`cmds`, `heard_later` are not kept). As AlertService._alone for escalations."""
        tx = self.tx
        tx.flush()  # events held so far belong to what came before
        out, logs, opened = list(tx.out), list(tx.logs), tx.opened.copy()
        escalations = tx.escalations
        kept = {k: (s.state, s.stored, s.due_ms, s.version, s.dirty) for k, s in self.slots.items()}
        savepoint = self.conn.begin_nested()
        try:
            work()
            tx.flush()
        except Exception as exc:
            if isinstance(exc, DBAPIError) and not refused(exc):
                raise
            savepoint.rollback()  # should even this fail, the tick fails as a whole
            tx.out, tx.logs, tx.opened, tx.escalations = out, logs, opened, escalations
            tx.events.clear()
            for k in self.slots.keys() - kept.keys():
                del self.slots[k]
            for k, (state, stored, due_ms, version, dirty) in kept.items():
                s = self.slots[k]
                s.state, s.stored, s.due_ms, s.version = state, stored, due_ms, version
                s.dirty = dirty
            self.active.clear()
            put_off(exc)
            return False
        savepoint.commit()
        return True

    def put_off_state(self, key: str, rule: str, exc: Exception) -> None:
        """After a state's check failed (`alone`): it is due again in RETRY_S; the log says so
        at every try (the exception's type and where it was raised, not its message, which may
        quote what it refused); and each active device it watches gets ONE `warning` on
        /rule-events per breakage (none since the state was last written), so that staff see
        whose alarms are not being checked. The stored state stays as it is, for a fix or
        another version to read: replaced, what it watched would be forgotten unsaid."""
        error = type(exc).__name__
        log.error(
            "rule state %s/%s failed (%s), retry in %d s:\n%s",
            rule,
            key,
            error,
            RETRY_S,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        retry_at = self.now_ms + RETRY_S * 1000
        self._quietly(
            f"rule state {rule}/{key}: retry",
            lambda: self.conn.execute(
                update(rule_states)
                .where(rule_states.c.key == key, rule_states.c.rule == rule)
                .values(due_at=retry_at)
            ),
        )
        self._quietly(
            f"rule state {rule}/{key}: warning", partial(self._warn_unchecked, key, rule, error)
        )

    def _member_ids(self, key: str) -> list[str]:
        """The devices a health state is for: its building's, or its one device's."""
        if key.startswith("d:"):
            return [key[2:]]
        return list(
            self.conn.execute(select(devices.c.id).where(devices.c.building == key[2:])).scalars()
        )

    def _warn_unchecked(self, key: str, rule: str, error: str) -> None:
        ids = [key] if rule != HEALTH else self._member_ids(key)
        self.load_devices(ids)
        watched = [self.devs[d] for d in ids if not self._gone(self.devs.get(d))]
        if not watched:
            return
        kind = _KIND_OF_RULE[rule].value
        written = (
            select(rule_states.c.updated_at)
            .where(rule_states.c.key == key, rule_states.c.rule == rule)
            .scalar_subquery()
        )
        warned = set(
            self.conn.execute(
                select(rule_events.c.device_id).where(
                    rule_events.c.type == "warning",
                    rule_events.c.reason == CHECK_FAILED,
                    rule_events.c.kind == kind,
                    rule_events.c.device_id.in_([d.id for d in watched]),
                    rule_events.c.at >= written,
                )
            ).scalars()
        )
        note = f"its {rule} rules cannot be checked ({error}); tried again every {RETRY_S} s"
        rows = [
            {
                "at": self.now_ms,
                "type": "warning",
                "device_id": d.id,
                "elder_id": d.elder_id,
                "kind": kind,
                "reason": CHECK_FAILED,
                "detail": {"detail": note, "rule": rule, "error": error},
            }
            for d in watched
            if d.id not in warned
        ]
        if rows:
            self.conn.execute(insert(rule_events), rows)

    def put_off_release(self, e: Row[Any], exc: Exception) -> None:
        """An ended suppression that could not be released (`alone`): looked at again in
        RETRY_S (its `until` is what the tick goes by), and the log says so at every try. On
        /rule-events it shows as suppressed and not released."""
        log.error(
            "release of rule event %s (%s, device %s) failed (%s), retry in %d s:\n%s",
            e.id,
            e.kind,
            e.device_id,
            type(exc).__name__,
            RETRY_S,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        retry_at = self.now_ms + RETRY_S * 1000
        self._quietly(
            f"rule event {e.id}: retry",
            lambda: self.conn.execute(
                update(rule_events).where(rule_events.c.id == e.id).values(until=retry_at)
            ),
        )

    def _quietly(self, what: str, work: Callable[[], Any]) -> None:
        """`work()` in a savepoint of its own: failing, it is logged and leaves the rest."""
        try:
            with self.conn.begin_nested():
                work()
        except Exception as exc:
            if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                raise
            log.error("%s not recorded (%s)", what, type(exc).__name__)

    # --- decisions -----------------------------------------------------------------------------

    def apply(self, signals: Iterable[Any], origin: Any | None) -> None:
        """Apply the rules' decisions in order. `origin`: the device whose rule decided (the gas
        sensor of a SendCommand)."""
        for s in signals:
            if isinstance(s, OutageOpened):
                self._outage_opened(s)
            elif isinstance(s, OutageChanged | OutageClosed):
                self._outage_changed(s)
            elif isinstance(s, Warn):
                self._warn(s)
            elif isinstance(s, SendCommand):
                self._command(s, origin)
            elif isinstance(s, Raise | Clear | Note | Escalate):
                self._alert(s)
            else:
                log.warning("unknown rule decision %r", s)

    def _alert(self, s: Raise | Clear | Note | Escalate) -> None:
        dev = self.device(s.device_id)
        if dev is None:
            log.warning("rule decision for unknown device %s: %r", s.device_id, s)
            return
        if isinstance(s, Raise):
            if self.suppressed(dev, s.kind, s.reason, s.detail):
                return
            detail = {"rule": s.reason, "detail": s.detail}
        else:
            detail = {"rule": s.why, "detail": s.detail}
        active = self.active_of(dev.id)
        decision = to_alert_decision(s, active)
        self.decide(self.tx, decision, dev, None, detail, active)
        if isinstance(s, Note) and s.kind == AlertKind.GAS and s.kind in active:
            # a close confirmed after pages said it had not: those paged must hear it now
            self.r.service.valve_news(self.tx, active[s.kind].id, s.why)
        if isinstance(s, Escalate):
            current = active.get(s.kind)
            if current is not None:
                self.r.service.escalate_all(self.tx, current.id, s.why, detail)

    def _warn(self, s: Warn) -> None:
        dev = self.device(s.device_id)
        self.conn.execute(
            insert(rule_events).values(
                at=self.now_ms,
                type="warning",
                device_id=s.device_id,
                elder_id=dev.elder_id if dev is not None else None,
                kind=s.kind.value,
                reason=s.reason[:40],
                detail={"detail": s.detail},
            )
        )

    def _command(self, s: SendCommand, origin: Any | None) -> None:
        """Publish a contract `command` to the device, through the outbox, with this decision."""
        gas_alert = self.active_of(origin.id).get(AlertKind.GAS) if origin is not None else None
        alert_id = gas_alert.id if gas_alert is not None else None
        target = self.device(s.device_id)
        detail = {"command_id": s.command_id, "device_id": s.device_id, "type": s.type}
        if target is None:
            log.error("command %s for unregistered device %s not sent", s.type, s.device_id)
            if alert_id:
                self.r.service.record(self.tx, alert_id, "command_not_sent", None, detail)
            return
        if self.conn.execute(
            select(commands.c.id).where(
                commands.c.device_id == s.device_id, commands.c.id == s.command_id
            )
        ).first():
            return  # the same decision applied twice names the same command: sent already
        self.conn.execute(
            insert(commands).values(
                device_id=s.device_id,
                id=s.command_id,
                type=s.type,
                origin_device_id=origin.id if origin is not None else None,
                alert_id=alert_id,
                created_at=self.now_ms,
            )
        )
        topic = device_topic(self.r.base, s.device_id, Channel.COMMANDS)
        payload = Command(
            id=s.command_id, ts=from_ms(self.now_ms, self.r.service.tz), type=s.type
        ).model_dump_json()
        out_id = self.conn.execute(
            insert(outbox)
            .values(
                topic=topic,
                payload=payload,
                qos=1,
                alert_id=alert_id,
                page_id=None,
                created_at=self.now_ms,
            )
            .returning(outbox.c.id)
        ).scalar_one()
        self.tx.out.append(
            OutMsg(out_id, topic, payload, 1, alert_id, "command", self.tx.received_mono)
        )
        if alert_id:
            self.r.service.record(self.tx, alert_id, "command_sent", None, detail)

    # --- a building's outage: one incident -------------------------------------------------------

    def _outage_opened(self, s: OutageOpened) -> None:
        if self.conn.execute(select(incidents.c.id).where(incidents.c.key == s.key)).first():
            return
        self.load_devices(s.device_ids)
        members = [self.devs[d] for d in s.device_ids if d in self.devs]
        if not members:
            return
        self._active_many([m.id for m in members])
        detail: dict[str, Any] = {
            "rule": "outage",
            "building": s.building,
            "incident": s.key,
            "devices": list(s.device_ids),
            "already_alerted": list(s.already_alerted),
            "detail": s.detail,
        }
        kind = AlertKind.DEVICE_OFFLINE
        host = next((m for m in members if kind not in self.active[m.id]), None)
        if host is None:  # every member has its own alert already: the outage joins the first
            alert_id = self.active[members[0].id][kind].id
            self.r.service.record(self.tx, alert_id, "outage", None, detail)
        else:
            alert_id = self._open_for_staff(host, kind, detail)
        for dev_id in s.already_alerted:
            own = self.active_of(dev_id).get(kind)
            if own is not None and own.id != alert_id:
                self.r.service.record(
                    self.tx, own.id, "in_outage", None, {"incident": s.key, "alert_id": alert_id}
                )
        self.conn.execute(
            insert(incidents).values(
                id=new_id("in"),
                key=s.key,
                building=s.building,
                alert_id=alert_id,
                device_ids=list(s.device_ids),
                detail=s.detail[:500],
                opened_at=self.now_ms,
            )
        )

    def _open_for_staff(self, host: Any, kind: AlertKind, detail: dict[str, Any]) -> str:
        """The incident's alert, for the staff on duty (every staff member when none is) of the
        host elder's station (a building is one station's; another's only when it has nobody);
        the elder's own plan only when there are no staff at all: never to nobody."""
        svc, prio = self.r.service, PRIORITY[kind]
        roster, station = svc.paging.roster_for(self.conn, host.elder_id, self.now_ms)
        staff, fallback, other_stations = staff_to_page(roster, self.now, station=station)
        active = self.active_of(host.id)
        if staff:
            timeout = svc.paging.policy.timeouts_s[prio][Role.STAFF]
            detail = {**detail, "staff_fallback": fallback}
            if other_stations:
                detail["staff_other_stations"] = True
            alert_id = svc.open_incident(self.tx, host, kind, prio, detail, staff, timeout)
            active[kind] = ActiveAlert(alert_id, kind, State.OPEN, self.now)
        else:
            self.decide(self.tx, alert_rules.Open(kind, prio), host, None, detail, active)
        return active[kind].id

    def _outage_changed(self, s: OutageChanged | OutageClosed) -> None:
        inc = self.conn.execute(select(incidents).where(incidents.c.key == s.key)).first()
        if inc is None:
            return
        if isinstance(s, OutageChanged):
            if inc.alert_id:
                self.r.service.record(
                    self.tx,
                    inc.alert_id,
                    "outage_member",
                    None,
                    {"incident": s.key, "device_id": s.device_id, "change": s.change},
                )
            if s.change == "joined" and s.device_id not in (inc.device_ids or []):
                self.conn.execute(
                    update(incidents)
                    .where(incidents.c.id == inc.id)
                    .values(device_ids=[*(inc.device_ids or []), s.device_id])
                )
            return
        if inc.alert_id:
            self.r.service.record(
                self.tx,
                inc.alert_id,
                "outage_closed",
                None,
                {"incident": s.key, "why": s.why, "detail": s.detail},
            )
        self.conn.execute(
            update(incidents)
            .where(incidents.c.id == inc.id)
            .values(closed_at=self.now_ms, closed_why=s.why[:40])
        )


__all__ = ["RuleBatch", "RuleConfig", "Ruling", "TickResult", "health_key", "water_override"]
