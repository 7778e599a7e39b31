"""The ingest worker: the way of one message, in batches.

paho's thread puts each message on a bounded queue of its lane, alarms or telemetry (blocking
when it is full, so the broker holds the rest). One worker thread takes what is waiting (up to a
batch, alarms first and alone), and in ONE transaction: parses and validates, claims the
messages (`device_id` + channel + `id`: a repeat is not claimed, has no effect), quarantines what is
bad, updates devices, asks the rules what follows and writes the decisions with their outbox
rows. Only after the commit does it hand pages to the publisher and acknowledge the
messages to the broker. A crash before the commit means the broker delivers them again; the
repeat check makes that harmless. The same thread fires due escalations, whose deadlines are
rows, and ticks the stateful rules (gateway/ruling.py: water, gas, device health), whose states
are rows too. An event's sign of life (device health) follows its page, in a small transaction
of its own (`_heard_later`): on the way of a press, only what pages it.

Why one worker for both lanes, also on PostgreSQL: a second thread for alarms, on its own
connection, was measured (2026-11-26, tests/bench/bench_alarm_path.py): under 2,000 telemetry
messages/s its presses took 30 times longer (p50 90 ms -> 3.1 s on a loaded machine), as each of
its statements waited for the GIL that the CPU-bound telemetry worker holds for up to a switch
interval. A press waits instead for at most the one telemetry batch in progress, which the
20 ms linger keeps small.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from paho.mqtt.client import topic_matches_sub
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    case,
    delete,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from alerts import rules
from alerts.model import PRIORITY, AlertKind, State
from alerts.rules import ActiveAlert
from devices.kinds import DeviceKind, event_allowed
from devices.parse import Reason, Rejection, parse_event, parse_reply, parse_status, parse_telemetry
from devices.payloads import Event, Reply, Telemetry, parse_ts
from devices.topics import Channel, Topic, inbound_filters, parse_topic
from gateway import alert_log, collector
from gateway.alert_log import Line
from gateway.alerting import AlertService, NotFound, NotPaged, OutMsg, Tx
from gateway.clock import Clock, from_ms, rfc3339, to_ms
from gateway.db import refused as _refused
from gateway.metrics import INTERNAL_ERROR, UNSTORABLE, Metrics
from gateway.ruling import RuleBatch, Ruling
from gateway.tables import alerts, devices, messages, quarantine, responders
from gateway.tables_telemetry import telemetry_rollups
from gateway.telemetry import Reading, upsert_rollups

log = logging.getLogger(__name__)

MAX_BATCH = 500
# Telemetry batches are smaller: a press waits for the telemetry batch in progress, and with
# 100,000 devices (their states not cached, each heard every 100 s) a batch of 500 took 0.2-0.5 s
# (tests/bench/bench_scale.py). 100 keeps that wait short, for some peak throughput (PostgreSQL,
# 30,000 readings, alternated on a loaded machine: 4,074 / 6,143 / 5,615 msg/s with 500,
# 4,316 / 5,579 / 4,371 with 100).
MAX_TELEMETRY_BATCH = 100
QUARANTINE_PAYLOAD_CHARS = 512
ESCALATION_POLL_S = 0.2
DEVICE_FLUSH_S = 5.0
# Devices' last-seen times written in one transaction; a press that arrives waits for the one in
# progress. 250 took 3.9 ms at the median, 25 ms at the 99th percentile and 63 ms at most under
# 1,000 msg/s (tests/bench/bench_scale.py --timeline, 2026-11-26).
FLUSH_CHUNK = 100
# A flush also stops for this much telemetry waiting, and goes on at the next round: the 50
# chunks of a 5 s flush at 1,000 msg/s took ~110 ms in one go, and the readings that came
# meanwhile made a batch of 100 that a press arriving during it waited for (telemetry batches
# p99 26-27 -> 19-21 ms with it, tests/bench/bench_scale.py, 2026-11-26).
FLUSH_YIELD_TELEMETRY = 20
PRUNE_EVERY_S = 3600.0
PRUNE_CHUNK = 5_000  # rows of a table deleted in one transaction (ids, rollups)
PRUNE_AGAIN_S = 0.5  # after a full chunk; the worker takes alarms and telemetry in between
# Telemetry waits at most this long to be batched with more. A press waits for the telemetry
# batch in progress, and at a steady rate a batch's size (its duration) is about the rate times
# this: at 1,000 msg/s, 100,000 devices, 20 ms made batches of ~22 readings, 10 ms at the
# median and 19 at p99; 10 ms about halved them (6.3 / 11.9 ms) for 0.50 of a core instead
# of 0.48, and the page latency p99 went 26.2 -> 17.7 ms (tests/bench/bench_scale.py, 10
# minutes each, 2026-11-26). At peak rates batches fill to MAX_TELEMETRY_BATCH first.
TELEMETRY_LINGER_S = 0.01
OURS_CACHE_MAX = 200_000  # topics remembered as ours or not (a few per device)
RULES_POLL_S = 1.0  # how often the worker looks for rule states that are due (on the clock)
# A message the database refuses (it is up, and says no to what the batch holds: `_refused`) is
# tried this many times alone, or once when others of its lane wait behind it, then set aside,
# unacknowledged, so that they go on (`_judge_held`). One set aside is tried again every
# HELD_RETRY_S, also with nothing else coming: the refusal may pass.
REFUSED_TRIES = 3
HELD_RETRY_S = 1.0
# At most this many set aside per lane. Each is unacknowledged, in the broker's window of
# messages in flight to us (Mosquitto's max_inflight_messages, 20 by default for MQTT 3.1.1),
# which, once full, stops all delivery on the link. At the cap a refusal is waited out as an
# outage is: the lane takes nothing new and its batch is tried again later (`_defer`), while
# the other lane, escalations and rules go on; the window keeps room for what is retried.
HELD_MAX = 10
# Alarm events that still open their alert when quarantined by the worker (`_fallback`): those
# of contract v1 that page (CONTRACT.md "Which messages open which alerts").
FALLBACK_TYPES = frozenset({"button.pressed", "gas.alarm", "water.leak"})
HELD = "held"  # the fallback's reason for an alarm the database refuses, set aside (`_page_held`)


def _refusal(exc: DBAPIError) -> str:
    """What the database said, for the quarantine: the first line of its error (no statement,
    no parameters)."""
    said = str(exc.orig).strip().splitlines()
    return f"the database refused it: {type(exc.orig).__name__}: {said[0] if said else ''}"


def _lane(batch: list[Any]) -> str:
    return "telemetry" if batch and batch[0].lane == "telemetry" else "alarm"


@dataclass(slots=True)
class _Parsed:
    """One message of a batch after parsing: what it is, or why it was refused."""

    item: Any  # gateway.mqtt.Inbound
    topic: Topic | None = None
    rejection: Rejection | None = None
    body: Any = None  # Event | Telemetry | Status | Reply
    key: tuple[str, str, str, str] | None = None  # the repeat check's (gateway/tables.py)


@dataclass(slots=True)
class _Seen:
    """Device facts gathered from telemetry, written every few seconds rather than per message."""

    last_seen_at: int
    battery_pct: float | None = None


@dataclass(slots=True)
class BatchResult:
    out: list[OutMsg] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)
    repeats: int = 0
    opened: dict[str, int] = field(default_factory=dict)
    escalations: int = 0
    readings: list[Reading] = field(default_factory=list)  # accepted telemetry, for the sink
    heard_later: list[str] = field(default_factory=list)  # devices (RuleBatch.heard_later)
    logs: list[Line] = field(default_factory=list)  # the alerts' log lines (Tx.logs)
    # Messages the database refused, set aside unacknowledged, each with its lane's count of
    # committed batches at that moment (Ingest._judge_held).
    held: list[tuple[Any, int]] = field(default_factory=list)
    # Messages refused with no room to set them aside (HELD_MAX): unacknowledged, back to their
    # lane (Ingest._defer).
    deferred: list[Any] = field(default_factory=list)


class Ingest:
    # Set by the gateway when a time-series store is configured (gateway/telemetry.py): gets
    # the committed readings of each batch; returns at once, never waits for the store.
    telemetry_sink: Callable[[list[Reading]], None] | None = None

    def __init__(
        self,
        engine: Engine,
        service: AlertService,
        base: str,
        metrics: Metrics,
        clock: Clock,
        publish: Callable[[list[OutMsg]], None],
        ack: Callable[[Any], None],
        *,
        cancel_grace_s: int = 120,
        telemetry_id_retention_h: int = 48,
        rollup_retention_days: int = 400,
        queue_size: int = 20_000,
        ruling: Ruling | None = None,
        alarm_engine: Engine | None = None,
        redelivered: Callable[[Any], bool] | None = None,
    ) -> None:
        """`redelivered(item)`: the broker has sent a message the worker holds unacknowledged
        again since, on a newer connection (gateway/mqtt.py MqttLink.redelivered)."""
        self.engine = engine
        # Alarm batches may go by a connection of their own (gateway/db.py make_worker_engine).
        self.alarm_engine = alarm_engine or engine
        self.service = service
        self.base = base
        self.metrics = metrics
        self.clock = clock
        self.publish = publish
        self.ack = ack
        self.cancel_grace = timedelta(seconds=cancel_grace_s)
        self.telemetry_retention_ms = telemetry_id_retention_h * 3_600_000
        self.rollup_retention_ms = rollup_retention_days * 86_400_000
        # Two lanes: alarms (events, status, replies) are always taken before telemetry, and a
        # batch is of one lane only, so a press never waits behind a backlog of readings.
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.telemetry_queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._wake = threading.Event()
        self._tbuf: list[Any] = []  # telemetry taken from its queue, gathering into a batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shouwang-ingest", daemon=True)
        # oldest first: a flush cut short takes up where it stopped, not with the newest
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._seen_lock = threading.Lock()  # the worker notes signs of life, shutdown flushes
        self._last_device_flush = time.monotonic()
        self._next_prune = 0.0
        self._next_full_gc = time.monotonic() + collector.FULL_EVERY_S
        self._next_escalation_poll = 0.0
        self._outage: str | None = None  # the worker cannot commit: what the database said
        # Lanes whose every write is refused, as far as the worker can tell: messages set aside
        # and none of the lane committed since the oldest (`_note_refusing`); what it said.
        self._refusing: dict[str, str] = {}
        self._refused_said: dict[str, str] = {}  # the last refusal of each lane
        self._filters = inbound_filters(base)
        self._ours_cache: dict[str, bool] = {}
        self.ruling = ruling or Ruling(service, base)
        self._next_rules_poll = 0.0
        # Devices whose events were committed ahead of their sign of life (`_heard_later`).
        self._later: set[str] = set()
        # Messages the database refused, set aside (BatchResult.held), and the batches each
        # lane has committed: the evidence that the database takes the others (`_judge_held`).
        self._held: list[tuple[Any, int]] = []
        # Those of them the fallback has settled (`_page_held`): not tried again while held.
        self._paged_held: list[Any] = []
        self._commits: dict[str, int] = {}
        self._committed_ms: dict[str, int] = {}  # when each lane last committed (wall clock)
        self._held_retry_at = 0.0
        # Set aside in the batch in hand, not yet in `_held` (BatchResult.held): per lane.
        self._holding: dict[str, int] = {}
        # A lane at HELD_MAX pauses (`_defer`): until when, and for how long the last time.
        self._paused_until: dict[str, float] = {}
        self._pause_s: dict[str, float] = {}
        self._again: list[Any] = []  # alarms deferred, taken first when the lane goes on
        self.redelivered = redelivered or (lambda item: False)

    @property
    def db_ok(self) -> bool:
        """The worker commits: the database is up and takes what it is given (gateway/app.py
        health: a database that answers but refuses every press is as down as one that
        does not answer)."""
        return self._outage is None and not self._refusing

    @property
    def db_error(self) -> str | None:
        """What the database said, while db_ok is False."""
        if self._outage is not None:
            return self._outage
        refusing = dict(self._refusing)  # the worker replaces it meanwhile
        if not refusing:
            return None
        said = "; ".join(f"{lane} lane: {why}" for lane, why in sorted(refusing.items()))
        return f"refusing writes: {said}"[:300]

    # --- hand-over (paho's thread) ---------------------------------------------------------

    def put(self, item: Any) -> None:
        """Block while the lane's queue is full (the broker then holds the rest); never drop."""
        lane = self.telemetry_queue if item.lane == "telemetry" else self.queue
        while not self._stop.is_set():
            try:
                lane.put(item, timeout=0.5)
                self._wake.set()
                return
            except queue.Full:
                continue

    def depth(self) -> int:
        """Messages received and not yet processed, both lanes."""
        waiting = self.queue.qsize() + self.telemetry_queue.qsize() + len(self._again)
        return waiting + len(self._tbuf) + len(self._held)

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        try:  # the gateway was down: its silence is not the devices' (alerts/health.py)
            self.ruling.resume(self.engine, int(self.clock() * 1000))
        except DBAPIError as exc:
            log.warning("device health not resumed (database unavailable): %s", exc)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand; what is still queued is not acked, so the broker keeps it."""
        self._stop.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._heard_later()
        try:
            self._flush_devices(yield_to_alarms=False)  # what is queued stays queued anyway
        except DBAPIError:
            log.warning("could not write device last-seen times at shutdown")

    # --- the worker ------------------------------------------------------------------------

    @staticmethod
    def _drain(q: queue.Queue[Any]) -> list[Any]:
        batch: list[Any] = []
        with contextlib.suppress(queue.Empty):
            while len(batch) < MAX_BATCH:
                batch.append(q.get_nowait())
        return batch

    def _take(self) -> list[Any]:
        """Alarms first, alone. Telemetry gathers for up to TELEMETRY_LINGER_S into one batch:
        a few large batches cost far less per message than many small ones, and leave the
        worker idle, ready for the next alarm, most of the time. A lane paused (`_defer`) is
        not taken from."""
        if not self._paused("alarm"):
            # Those deferred first, with what came meanwhile: one of these may be taken, and
            # prove the refusals of those set aside their own (`_judge_held`).
            alarms, self._again = self._again + self._drain(self.queue), []
            if alarms:
                return alarms
        if self._paused("telemetry"):
            return []
        with contextlib.suppress(queue.Empty):
            while len(self._tbuf) < MAX_TELEMETRY_BATCH:
                self._tbuf.append(self.telemetry_queue.get_nowait())
        if self._tbuf and (
            len(self._tbuf) >= MAX_TELEMETRY_BATCH
            or self._linger_left() <= 0
            or self._stop.is_set()
        ):
            batch, self._tbuf = self._tbuf, []
            return batch
        return []

    def _linger_left(self) -> float:
        return TELEMETRY_LINGER_S - (time.monotonic() - self._tbuf[0].received_mono)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if not batch:
                wait = max(
                    0.0, min(self._next_escalation_poll - time.monotonic(), ESCALATION_POLL_S)
                )
                if self._tbuf and not self._paused("telemetry"):
                    wait = max(0.0, min(wait, self._linger_left()))
                if wait > 0:
                    self._wake.wait(wait)
                self._wake.clear()
                batch = self._take()
            self.metrics.queue_depth.set(self.depth())
            try:
                if batch:
                    self._handle(batch)
                due = time.monotonic() >= self._held_retry_at
                if self._held and due and not self._alarms_due():
                    self._retry_held()
                if self._later and not self._alarms_due():  # alarms waiting go first
                    self._heard_later()
                if time.monotonic() >= self._next_escalation_poll:
                    self._housekeeping()
                self._full_gc()
            except Exception:  # the worker must outlive any one failure; unacked = redelivered
                log.exception("ingest worker error")
                self._stop.wait(0.5)
        if self._tbuf:  # gathered, not yet processed: finish them rather than leave them unacked
            batch, self._tbuf = self._tbuf, []
            try:
                self._handle(batch)
            except Exception:
                log.exception("could not process %d telemetry messages at shutdown", len(batch))

    def _handle(self, batch: list[Any]) -> None:
        """Process, commit, then publish and ack; retry while the database is down."""
        self._settle(batch)

    def _settle(
        self, batch: list[Any], *, tries: int = REFUSED_TRIES, proven: bool = False
    ) -> None:
        """`_handle`, and a message set aside tried again (`tries`, `proven`: `_with_retry`)."""
        started = time.perf_counter()
        result = self._with_retry(
            lambda conn: self._process(conn, batch), batch, tries=tries, proven=proven
        )
        self._holding = {}  # what this batch set aside is in `result.held`: merged below
        if result is None:
            return  # stopping with the database down: nothing acked, the broker keeps them
        self._done(batch, result, started)
        self._held += result.held
        if result.held:
            self._page_held(result.held)
        if result.deferred:
            self._defer(result.deferred)
        if not proven:
            self._judge_held()
            self._note_refusing()

    def _page_held(self, held: list[tuple[Any, int]]) -> None:
        """An alarm set aside pages at once, by the fallback (`_fallback`, which claims it
        without its payload, perhaps what the database refuses): held, it would wait for
        another message of its lane to commit, on a quiet night for hours. Committed, the
        alarm is claimed, and the held message's own retry is a repeat. Refused too (the
        database refuses every write), it stays held, and is tried again with the message."""
        for it, _ in held:
            if any(it is p for p in self._paged_held):
                continue
            res = BatchResult()
            outcome = self._fallback(it, HELD, None, res)
            if outcome is None:
                return  # stopping: the message is unacked anyway
            if outcome != "failed":
                self._paged_held.append(it)
            self.publish(res.out)
            alert_log.emit(res.logs)
        self._paged_held = [p for p in self._paged_held if any(p is h for h, _ in self._held)]

    def _note_refusing(self) -> None:
        """A lane with messages still set aside after `_judge_held` has committed nothing since
        the oldest of them: as far as anyone can tell, the database refuses all its writes
        (a trigger or a constraint added, a pooler's error), and health says so."""
        if not (self._held or self._refusing):
            return  # the way of nearly every batch
        lanes = {_lane([it]) for it, _ in self._held}
        self._refusing = {lane: self._refused_said.get(lane, "?") for lane in sorted(lanes)}

    def _held_in(self, lane: str) -> int:
        """Messages of `lane` set aside, counting the batch in hand's."""
        self._forget_redelivered()
        return self._holding.get(lane, 0) + sum(1 for it, _ in self._held if _lane([it]) == lane)

    def _forget_redelivered(self) -> None:
        """Messages set aside that the broker has sent again since, on a newer connection: the
        copy that came anew is settled and acknowledged in their stead (the old copy's message
        id means nothing on the new connection)."""
        kept = [(it, c) for it, c in self._held if not self.redelivered(it)]
        if len(kept) < len(self._held):
            log.info(
                "%d message(s) set aside were delivered again after a reconnect: the old "
                "copies are dropped",
                len(self._held) - len(kept),
            )
            self._held = kept

    def _judge_held(self) -> None:
        """Each message set aside whose lane has committed a batch since is tried once more,
        alone: the database takes the others, so refused again, the fault is the message's own,
        and it is quarantined. While nothing else commits, no message is blamed: a fault that
        refuses every write alike is the database's, waited out as an outage is."""
        self._forget_redelivered()
        due: list[tuple[Any, int]] = []
        wait: list[tuple[Any, int]] = []
        for it, commits in self._held:
            (due if self._commits.get(_lane([it]), 0) > commits else wait).append((it, commits))
        self._held = wait
        for it, _ in due:
            self._settle([it], proven=True)

    def _retry_held(self) -> None:
        """The first message set aside, tried again alone now and then: with nothing else
        coming, this is how a refusal that has passed is found out. Refused again, it is set
        aside anew, at the end."""
        self._held_retry_at = time.monotonic() + HELD_RETRY_S
        self._forget_redelivered()
        if not self._held:
            self._note_refusing()
            return
        (it, _), *self._held = self._held
        self._settle([it], tries=1)

    def _waiting(self, lane: str) -> bool:
        """Messages of `lane` are waiting for the worker."""
        if lane == "telemetry":
            return bool(self._tbuf) or not self.telemetry_queue.empty()
        return bool(self._again) or not self.queue.empty()

    def _done(self, batch: list[Any], result: BatchResult, started: float) -> None:
        """After a batch's commit: its pages to the publisher, its messages acked (a method of
        its own, which tests/bench/gateway_child.py times)."""
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.publish(result.out)
        alert_log.emit(result.logs)
        held = {id(it) for it, _ in result.held} | {id(it) for it in result.deferred}
        for it in batch:
            if id(it) not in held:  # set aside, not committed: the broker keeps it till then
                self.ack(it)
        self._later.update(result.heard_later)
        self._count(result)
        if result.readings and self.telemetry_sink is not None:
            self.telemetry_sink(result.readings)

    def _with_retry(
        self,
        work: Callable[[Connection], BatchResult],
        batch: list[Any],
        *,
        tries: int = REFUSED_TRIES,
        proven: bool = False,
    ) -> BatchResult | None:
        """`work` in one transaction, until it commits. The database down is waited out however
        long. A batch it refuses (`_refused`) is taken apart to find the message; a message it
        refuses is quarantined when the refusal is about a value (DataError) or when it is
        `proven` its own (`_judge_held`), else set aside after `tries` (BatchResult.held) so
        that what waits behind it goes on: it must not hold up the lane, nor be blamed for a
        fault of the database's; with HELD_MAX of its lane set aside already, it goes back to
        its lane, which pauses (BatchResult.deferred)."""
        delay = 0.1
        conflicts = refusals = 0
        lane = _lane(batch)
        engine = self.engine if lane == "telemetry" else self.alarm_engine
        while True:
            try:
                with engine.begin() as conn:
                    result = work(conn)
                self._outage = None
                if sum(result.counts.values()) > len(result.quarantined) + result.repeats:
                    self._commits[lane] = self._commits.get(lane, 0) + 1  # it took a message
                    self._committed_ms[lane] = int(time.time() * 1000)
                    if lane in self._refusing:
                        self._refusing = {k: v for k, v in self._refusing.items() if k != lane}
                    if lane in self._pause_s:
                        del self._pause_s[lane], self._paused_until[lane]
                return result
            except DBAPIError as exc:
                if isinstance(exc, IntegrityError) and conflicts < 3:
                    # Another gateway process committed the same message or alert first: run
                    # the batch again; the repeat check and the active-alert lookup now see it.
                    conflicts += 1
                    continue
                self.metrics.db_errors.inc()
                if _refused(exc):
                    refusals += 1
                    log.error("the database refused a batch of %d: %s", len(batch), exc)
                    if len(batch) > 1:
                        return self._one_by_one(batch)
                    if proven or isinstance(exc, DataError):
                        return self._poison(batch, UNSTORABLE, _refusal(exc))
                    said = self._refused_said[lane] = _refusal(exc)
                    if self._held_in(lane) >= HELD_MAX:
                        # No room to set it aside: the lane waits for the database (`_defer`),
                        # and health says why.
                        self._refusing = {**self._refusing, lane: said}
                        return BatchResult(deferred=[batch[0]])
                    if refusals >= tries or self._waiting(lane):
                        self._holding[lane] = self._holding.get(lane, 0) + 1
                        commits = self._commits.get(lane, 0)
                        # Its lane committed since it arrived (it waited behind a batch): the
                        # database took another message while this one is refused, evidence
                        # enough, or a poison that comes last, alone, would wait for the next
                        # message of its lane, on a quiet night for hours.
                        if self._committed_ms.get(lane, 0) > batch[0].received_ms:
                            commits -= 1
                        return BatchResult(held=[(batch[0], commits)])
                else:
                    self._outage = str(exc.orig or exc)[:200]
                    log.error("database error, batch of %d will be retried: %s", len(batch), exc)
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)
                self._full_gc()  # the database may be down for hours: garbage still goes
            except Exception:
                log.exception("error processing a batch of %d", len(batch))
                return self._one_by_one(batch) if len(batch) > 1 else self._poison(batch)

    def _defer(self, items: list[Any]) -> None:
        """Messages a lane at HELD_MAX could not take: back at the head of their lane, which
        pauses (longer each time, as an outage's retries) and is taken from again after. The
        other lane, escalations and rules go on meanwhile: a refusal need not stop every write,
        and telemetry refused must not stop a press."""
        lane = _lane(items)
        if lane == "telemetry":
            self._tbuf[:0] = items
        else:
            self._again[:0] = items
        pause = min(self._pause_s.get(lane, 0.05) * 2, 5.0)
        self._pause_s[lane] = pause
        self._paused_until[lane] = time.monotonic() + pause
        log.error(
            "the database refuses the %s lane's messages, %d set aside: %d wait, tried again "
            "in %.1fs",
            lane,
            HELD_MAX,
            len(self._again) if lane == "alarm" else len(self._tbuf),
            pause,
        )

    def _paused(self, lane: str) -> bool:
        return time.monotonic() < self._paused_until.get(lane, 0.0)

    def _alarms_due(self) -> bool:
        """Alarms wait for the worker, and all else it does waits for them; not alarms paused
        (`_defer`): those wait for the database."""
        return (bool(self._again) or not self.queue.empty()) and not self._paused("alarm")

    def _one_by_one(self, batch: list[Any]) -> BatchResult | None:
        """A batch failed for what a message of it holds (an exception, or the database's
        refusal): each message alone, to find the one that did it."""
        total = BatchResult()
        before = self._commits.get(_lane(batch), 0)
        for i, it in enumerate(batch):
            # Refused while others of the batch are still to come, a message is set aside at
            # once: they must not wait for it, and their commit is the evidence against it.
            tries = 1 if i < len(batch) - 1 else REFUSED_TRIES
            r = self._with_retry(lambda conn, it=it: self._process(conn, [it]), [it], tries=tries)
            if r is None:
                alert_log.emit(total.logs)  # those done are committed: their lines are true
                return None  # stopping: ack none; those done are repeats when redelivered
            # The lane is at HELD_MAX: it waits; the rest are tried all the same (in hand, they
            # take no more room in the broker's window), and one taken is evidence against
            # those set aside, which frees room.
            total.deferred += r.deferred
            total.out += r.out
            total.logs += r.logs
            total.quarantined += r.quarantined
            total.repeats += r.repeats
            total.readings += r.readings
            total.heard_later += r.heard_later
            total.held += r.held
            for k, v in r.counts.items():
                total.counts[k] = total.counts.get(k, 0) + v
            for k, v in r.opened.items():
                total.opened[k] = total.opened.get(k, 0) + v
        # One taken from the same batch, before or after it, is evidence against a message too.
        total.held = [(it, before) for it, _ in total.held]
        return total

    def _poison(
        self,
        batch: list[Any],
        reason: str = INTERNAL_ERROR,
        detail: str = "processing failed; see the log",
    ) -> BatchResult | None:
        """A message that breaks processing, or that the database will not store, is kept in
        the quarantine, loudly, not lost (acked only once that is committed)."""
        it = batch[0]
        log.error("quarantining a message (%s) on %s", reason, it.topic[:200])
        row = self._quarantine_row(it, reason, detail)
        while True:
            try:
                with self.engine.begin() as conn:
                    found = conn.execute(insert(quarantine).values(**row))
                    pk = found.inserted_primary_key
                    assert pk is not None  # a single-row INSERT's key
                    quarantine_id = int(pk[0])
                break
            except DBAPIError:
                if self._stop.wait(1.0):
                    return None
        res = BatchResult(quarantined=[reason])
        # An alarm among them still pages; acked (by `_done`) only after that commits too.
        if self._fallback(it, reason, quarantine_id, res) is None:
            return None  # stopping mid-way: unacked, redelivered; the claim makes that safe
        return res

    def _fallback(
        self, it: Any, reason: str, quarantine_id: int | None, res: BatchResult
    ) -> str | None:
        """A device's alarm event quarantined here (our code broke on it, or the database
        refused it) still opens its alert: by `AlertService.open_fallback`, to the staff, in a
        transaction of its own after the quarantine's, its pages and log lines to `res`. Also
        one the database refuses, set aside (`_page_held`: `reason` HELD, no `quarantine_id`).

        Only a payload that is a JSON object of an alarm type (`FALLBACK_TYPES`) with a usable
        id, from a registered, active device of a kind that sends it, and that the contract's
        parser does not refuse, qualifies; the rest stays quarantined only. The message is
        claimed as `_process` claims it (its row there was rolled back), so a redelivered copy
        is a repeat, here or on the normal path. An active alert of the kind is joined.
        Suppressions are not consulted: they are of the code that may have failed, and a page
        too many is better than none.

        The database down (not refusing: `_refused`) is waited out however long, as `_poison`
        waits, and stopping meanwhile returns None: the message stays unacked, and its
        redelivery is quarantined and falls back again (the claim makes that safe). Fails (the
        database refuses it, or our code breaks again): CRITICAL, counted, and the message is
        acked all the same, as a redelivery would meet the same refusal or the same bug; the
        quarantine row stays. Returns the outcome, "" when the message does not qualify, None
        when stopping before it was done."""
        try:
            alarm = _alarm_of(self.base, it)
        except Exception:  # raised out of `_poison`, the message would come back for ever
            log.critical(
                "quarantine fallback FAILED on quarantine id=%s", quarantine_id, exc_info=True
            )
            self.metrics.quarantine_fallback.labels("failed").inc()
            return "failed"
        if alarm is None:
            return ""
        device_id, type_ = alarm["source_id"], alarm["type"]
        delay, conflicts = 0.1, 0
        while True:
            try:
                with self.alarm_engine.begin() as conn:
                    tx = Tx(conn, int(self.clock() * 1000), received_mono=it.received_mono)
                    outcome = self._fallback_alert(tx, alarm, it.payload, reason, quarantine_id)
                self._outage = None
                break
            except IntegrityError as exc:
                conflicts += 1  # another gateway opened the alert or claimed the message first
                if conflicts < 3:
                    continue
                error: Exception = exc
            except DBAPIError as exc:
                if not _refused(exc):  # an outage: the press must not be lost to it
                    self.metrics.db_errors.inc()
                    self._outage = str(exc.orig or exc)[:200]
                    log.error("database error, the fallback of %s will be retried: %s", type_, exc)
                    if self._stop.wait(delay):
                        return None
                    delay = min(delay * 2, 1.0)
                    continue
                error = exc
            except Exception as exc:
                error = exc
            said = _refusal(error) if isinstance(error, DBAPIError) else repr(error)
            if quarantine_id is None:  # held: tried again with the message, unacked till then
                log.error("the fallback of a held %s from %s failed: %s", type_, device_id, said)
                return "failed"
            log.critical(
                "quarantine fallback FAILED: %s from %s was quarantined (id=%s, %s) and NOT "
                "paged: %s",
                type_,
                device_id,
                quarantine_id,
                reason,
                said[:300],
                exc_info=error,
            )
            line = alert_log.line(
                "unpaged",
                device=device_id,
                event=type_,
                quarantine=quarantine_id,
                reason=reason,
                why="fallback_failed",
            )
            res.logs.append((logging.CRITICAL, line))
            self.metrics.quarantine_fallback.labels("failed").inc()
            return "failed"
        if outcome:
            res.out += tx.out
            res.logs += tx.logs
            for kind, n in tx.opened.items():
                res.opened[kind] = res.opened.get(kind, 0) + n
            self.metrics.quarantine_fallback.labels(outcome).inc()
        return outcome

    def _fallback_alert(
        self,
        tx: Tx,
        alarm: dict[str, Any],
        payload: bytes,
        reason: str,
        quarantine_id: int | None,
    ) -> str:
        """`_fallback`'s transaction: the outcome ("opened", "joined", "repeat"), or "" when the
        device or the message does not qualify."""
        conn, device_id, type_ = tx.conn, alarm["source_id"], alarm["type"]
        dev = conn.execute(select(devices).where(devices.c.id == device_id)).first()
        if dev is None or dev.kind not in {k.value for k in DeviceKind}:
            log.warning("quarantined %s from %s: no such device", type_, device_id)
            return ""
        if dev.status != "active" or dev.elder_id is None:
            log.warning("quarantined %s from %s: no active device with an elder", type_, device_id)
            return ""
        if not event_allowed(DeviceKind(dev.kind), type_):
            log.warning("quarantined %s from %s: not of a %s", type_, device_id, dev.kind)
            return ""
        # What the parser refuses changes nothing (the contract), and claimed it would make a
        # corrected copy with its id a repeat. Only the parser itself breaking leaves it to
        # `_alarm_of`'s reading: that may be the very fault that quarantined it.
        try:
            parse_event(payload, DeviceKind(dev.kind), device_id=device_id)
        except Rejection as rej:
            log.warning("quarantined %s from %s: %s, no fallback", type_, device_id, rej.reason)
            return ""
        except Exception:
            log.exception("quarantined %s from %s: the parser broke; paged", type_, device_id)
        if not claim_messages(conn, [alarm]):
            log.warning("quarantined %s from %s: a repeat, no fallback", type_, device_id)
            return "repeat"
        kind = rules.RAISES[type_]
        ts = alarm["ts"]
        detail: dict[str, Any] = {
            "event": type_,
            "msg_id": alarm["msg_id"],
            "ts": rfc3339(ts, self.service.tz) if ts is not None else None,
            "fallback": {
                "quarantine_id": quarantine_id,
                "reason": reason,
                "why": "网关处理该报警时出错，已隔离；由兜底流程开启告警并呼叫值班人员。"
                " The gateway failed to process this alarm (quarantined); the fallback "
                "opened the alert and paged the staff."
                if quarantine_id is not None
                else "数据库拒绝保存该报警，暂存待重试；由兜底流程开启告警并呼叫值班人员。"
                " The database refused to store this alarm (held, to be tried again); the "
                "fallback opened the alert and paged the staff.",
            },
        }
        active = self.service.active_for_devices(conn, [device_id])[device_id].get(kind)
        if active is not None:
            self.service.record(tx, active.id, "repeated", None, detail)
            tx.note(
                logging.WARNING,
                "joined",
                id=active.id,
                device=device_id,
                source="fallback",
                quarantine=quarantine_id,
            )
            return "joined"
        self.service.open_fallback(tx, dev, kind, PRIORITY[kind], alarm["msg_id"], detail)
        return "opened"

    # --- one batch, inside one transaction -------------------------------------------------

    def _process(self, conn: Connection, batch: list[Any]) -> BatchResult:
        now_ms = int(self.clock() * 1000)
        # A message's `received_ms` is on the wall clock, the rules' time on the injected one
        # (the same clock in production): the difference turns the one into the other.
        shift_ms = now_ms - int(time.time() * 1000)
        tx = Tx(conn, now_ms)
        res = BatchResult()
        parsed = [_Parsed(it, parse_topic(self.base, it.topic)) for it in batch if self._ours(it)]

        dev_ids = {p.topic.ident for p in parsed if p.topic and p.topic.owner == "devices"}
        pager_ids = {p.topic.ident for p in parsed if p.topic and p.topic.owner == "pagers"}
        devs: dict[str, Any] = {}
        prefetched: dict[str, dict[AlertKind, ActiveAlert]] | None = None
        if dev_ids and batch[0].lane != "telemetry":
            # An alarm batch needs the devices' active alerts and elders too: one round trip.
            devs, prefetched = self.service.devices_and_active(conn, dev_ids, tx.elders, tx.people)
        elif dev_ids:
            # Plain copies: a status in this batch changes `online` for the messages after it.
            found = (
                conn.execute(_PG_DEVICES, {"ids": sorted(dev_ids)})
                if conn.dialect.name == "postgresql"
                else conn.execute(select(devices).where(devices.c.id.in_(dev_ids)))
            )
            devs = {r.id: SimpleNamespace(**r._mapping) for r in found}
        people: dict[str, Row[Any]] = {}
        if pager_ids:
            people = {
                r.pager_id: r
                for r in conn.execute(
                    select(responders).where(responders.c.pager_id.in_(pager_ids))
                )
            }

        for p in parsed:
            self._parse(p, devs, people)

        # The repeat check is the claim: the batch's messages are written to `messages` first,
        # in one statement that skips the keys already there. What comes back is new and ours
        # to apply; the rest are repeats (also a copy being applied by another gateway, which
        # the primary key makes us wait for, then skip).
        claims: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for p in parsed:
            if p.key is not None and p.rejection is None and p.key not in claims:
                claims[p.key] = self._message_row(p)
        claimed = claim_messages(conn, list(claims.values()))
        unclaim: list[tuple[str, str, str, str]] = []  # claimed, then refused: not accepted

        alarm_devs = [
            p.topic.ident
            for p in parsed
            if p.topic
            and p.rejection is None
            and p.topic.channel in (Channel.EVENTS, Channel.STATUS)
        ]
        if prefetched is not None:
            active = prefetched
        else:
            active = self.service.active_for_devices(conn, sorted(set(alarm_devs)))
        # The stateful rules: every state this batch needs, in one query (gateway/ruling.py).
        rb = self.ruling.batch(tx, self._decide, devs, active)
        rb.prepare(
            (
                (devs[p.topic.ident], p.topic.channel, p.body)
                for p in parsed
                if p.rejection is None and p.topic is not None and p.topic.owner == "devices"
            ),
            defer_heard=batch[0].lane != "telemetry",  # the page first (RuleBatch.prepare)
        )

        bad_rows: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for p in parsed:
            channel = p.topic.channel.value if p.topic else "unknown"
            counts[channel] = counts.get(channel, 0) + 1
            if p.rejection is None and p.key is not None:
                if p.key not in claimed:
                    res.repeats += 1
                    continue
                claimed.discard(p.key)  # a second copy in this batch is a repeat
            if p.rejection is None:
                tx.received_mono = p.item.received_mono
                try:
                    self._apply(tx, p, devs, people, active, rb, shift_ms)
                except Rejection as rej:
                    p.rejection = rej
                    if p.key is not None:
                        unclaim.append(p.key)
                else:
                    if p.topic is not None and p.topic.channel == Channel.TELEMETRY:
                        dev = devs[p.topic.ident]
                        res.readings.append(
                            Reading(
                                dev.id, dev.kind, dev.elder_id, to_ms(p.body.ts), p.body.readings()
                            )
                        )
                    continue
            assert p.rejection is not None
            res.quarantined.append(p.rejection.reason.value)
            bad_rows.append(
                self._quarantine_row(p.item, p.rejection.reason.value, p.rejection.detail)
            )

        rb.finish()  # the changed rule states, in one statement
        res.heard_later = rb.heard_later
        if unclaim:
            conn.execute(delete(messages).where(tuple_(*_KEY).in_(unclaim)))
        if bad_rows:
            conn.execute(insert(quarantine), bad_rows)
        upsert_rollups(conn, res.readings)  # hourly rollups, one statement, in this transaction
        res.out = tx.out
        res.logs = tx.logs
        res.counts = counts
        res.opened = dict(tx.opened)
        return res

    def _ours(self, item: Any) -> bool:
        """Only what our subscriptions match. amqtt 0.12 also sends a new client retained
        messages matching anyone's subscription; those are none of ours: acked and ignored."""
        ours = self._ours_cache.get(item.topic)
        if ours is None:  # a topic per device and channel: matched once, not per message
            ours = any(topic_matches_sub(f, item.topic) for f in self._filters)
            if len(self._ours_cache) >= OURS_CACHE_MAX:
                self._ours_cache.clear()
            self._ours_cache[item.topic] = ours
        if not ours:
            log.debug("ignoring a message on %s (not subscribed)", item.topic[:200])
        return ours

    def _parse(self, p: _Parsed, devs: dict[str, Any], people: dict[str, Row[Any]]) -> None:
        it, t = p.item, p.topic
        try:
            if t is None:
                raise Rejection(Reason.BAD_TOPIC, f"not a contract topic: {it.topic[:200]!r}")
            if t.owner == "devices":
                dev = devs.get(t.ident)
                if dev is None:
                    raise Rejection(Reason.UNKNOWN_DEVICE, f"no device {t.ident!r} is registered")
                if dev.status != "active":
                    raise Rejection(Reason.RETIRED_DEVICE, f"device {t.ident!r} is {dev.status}")
                if t.channel == Channel.EVENTS:
                    p.body = parse_event(it.payload, DeviceKind(dev.kind), device_id=t.ident)
                elif t.channel == Channel.TELEMETRY:
                    p.body = parse_telemetry(it.payload, device_id=t.ident)
                elif t.channel == Channel.STATUS:
                    p.body = parse_status(it.payload, device_id=t.ident)
                    return  # a status has no id: it is a state, repeats are harmless
                else:
                    raise Rejection(Reason.BAD_TOPIC, f"devices do not send on {t.channel}")
                p.key = ("d", t.ident, p.body.id, t.channel.value)
            else:
                if t.channel != Channel.REPLIES:
                    raise Rejection(Reason.BAD_TOPIC, f"pagers do not send on {t.channel}")
                if t.ident not in people:
                    raise Rejection(Reason.UNKNOWN_PAGER, f"no responder has pager {t.ident!r}")
                p.body = parse_reply(it.payload, pager_id=t.ident)
                p.key = ("p", t.ident, p.body.id, t.channel.value)
        except Rejection as rej:
            p.rejection = rej

    def _apply(
        self,
        tx: Tx,
        p: _Parsed,
        devs: dict[str, Any],
        people: dict[str, Row[Any]],
        active: dict[str, dict[AlertKind, ActiveAlert]],
        rb: RuleBatch,
        shift_ms: int = 0,
    ) -> None:
        """The effects of one accepted (and claimed) message. `shift_ms`: from the wall clock
        of `received_ms` to the injected clock of `tx.now_ms`."""
        assert p.topic is not None
        ident, channel, body = p.topic.ident, p.topic.channel, p.body
        received = p.item.received_ms
        if channel == Channel.EVENTS:
            ev: Event = body
            dev = devs[ident]
            self._touch(ident, received, getattr(ev, "battery_pct", None))
            if ev.type == "button.cancelled":
                _with_press_ts(tx.conn, active[ident])
            decision = rules.on_event(
                ev.type, active[ident], from_ms(tx.now_ms), self.cancel_grace, sent_at=ev.ts
            )
            # The device's time too: the timeline's `at` is when the gateway processed it, which
            # can be long after the elder pressed (the gateway down, a backlog).
            detail = {"event": ev.type, "ts": rfc3339(to_ms(ev.ts), self.service.tz), **_fields(ev)}
            decision = rb.screen(decision, dev, ev.type, ev.type)  # a mute, an elder away
            self._decide(tx, decision, dev, ev.id, detail, active[ident])
            # the valve, command results, a sign of life
            rb.event(dev, ev, opened=isinstance(decision, rules.Open))
            return
        if channel == Channel.TELEMETRY:
            tm: Telemetry = body
            self._touch(ident, received, tm.battery_pct)
            # water and gas rules (at the reading's arrival: alerts/readtime.py), device health
            arrived = from_ms(min(tx.now_ms, received + shift_ms))
            rb.telemetry(devs[ident], tm, arrived)
            return
        if channel == Channel.STATUS:
            dev = devs[ident]
            was_online = dev.online
            # Delivered with the retain flag: the broker replaying the device's retained status
            # (on every subscribe, so on every reconnect of ours), however old; a live publish
            # reaches us with retain=0 (MQTT 3.1.1, and 5 without retain-as-published, which
            # gateway/mqtt.py does not ask for). It is the device's last known state, so
            # `online` (and `fw`) are taken, but it is no sign of life: `last_seen_at`, the
            # battery and the health rule's `last_heard` keep what the device itself last said,
            # or a gateway reconnecting every few minutes would never find a dead device
            # silent. (amqtt also flags what it queued for us while we were away retain=True: a
            # status queued there is thus no sign of life either; the device's next report is.)
            replayed = p.item.retain
            values: dict[str, Any] = {"online": body.online}
            if not replayed:
                values["last_seen_at"] = _later(received)
                if body.battery_pct is not None:
                    values["battery_pct"] = body.battery_pct
            if body.fw is not None:
                values["fw"] = body.fw
            tx.conn.execute(update(devices).where(devices.c.id == ident).values(**values))
            dev.online = body.online
            # Through device health, which groups a building's outage (gateway/ruling.py); a
            # device with no building is judged at once, as contract v1 has it.
            rb.status(dev, body, was_online, replayed=replayed)
            return
        # A pager's reply.
        reply: Reply = body
        person = people[ident]
        self._reply(tx, person, ident, reply)

    def _decide(
        self,
        tx: Tx,
        decision: rules.Decision,
        dev: Any,
        msg_id: str | None,
        detail: dict[str, Any],
        active: dict[AlertKind, ActiveAlert],
    ) -> None:
        svc = self.service
        if isinstance(decision, rules.Open):
            alert_id = svc.open(tx, dev, decision.kind, decision.priority, msg_id, detail)
            active[decision.kind] = ActiveAlert(
                alert_id, decision.kind, State.OPEN, from_ms(tx.now_ms)
            )
        elif isinstance(decision, rules.Join):
            svc.join(tx, decision.alert_id, msg_id, detail)
        elif isinstance(decision, rules.Cancel | rules.CancelPressed):
            # Weighed again on the locked row: someone may have acknowledged since `active`
            # was read, and then the cancel must not take the alert from under them.
            if not svc.elder_cancel(tx, decision.alert_id, dev.id, msg_id, detail):
                return
            for kind, a in list(active.items()):
                if a.id == decision.alert_id:
                    del active[kind]
        elif isinstance(decision, rules.Record) and decision.why in rules.LATE_CANCELS:
            svc.late_cancel(tx, decision.alert_id, dev.id, decision.why, msg_id, detail)
        elif isinstance(decision, rules.Record):
            svc.record(
                tx,
                decision.alert_id,
                decision.why,
                f"device:{dev.id}",
                {"msg_id": msg_id, **detail},
            )

    def _reply(self, tx: Tx, person: Row[Any], pager_id: str, reply: Reply) -> None:
        """A pager's reply, through the alert service's one reply path (the phone page's too:
        gateway/api_me.py), so both count the same; what it refuses is quarantined."""
        try:
            self.service.reply(
                tx,
                person,
                reply.alert_id,
                reply.action,
                note=reply.note,
                note_truncated=reply.note_truncated,
                pager_id=pager_id,
            )
        except NotFound:
            raise Rejection(Reason.UNKNOWN_ALERT, f"no alert {reply.alert_id!r}") from None
        except NotPaged:
            raise Rejection(
                Reason.NOT_PAGED, f"pager {pager_id!r} was not paged for {reply.alert_id!r}"
            ) from None

    # --- helpers ---------------------------------------------------------------------------

    def _touch(self, device_id: str, at_ms: int, battery: float | None) -> None:
        with self._seen_lock:
            seen = self._seen.get(device_id)
            if seen is None:
                self._seen[device_id] = _Seen(at_ms, battery)
            else:
                seen.last_seen_at = max(seen.last_seen_at, at_ms)
                if battery is not None:
                    seen.battery_pct = battery

    @staticmethod
    def _message_row(p: _Parsed) -> dict[str, Any]:
        """The `messages` row of a parsed message with an id (an event, a reading, a reply);
        a reading's payload is not kept, its effects are."""
        assert p.key is not None and p.topic is not None
        body, channel = p.body, p.topic.channel
        type_ = body.type if channel == Channel.EVENTS else getattr(body, "action", None)
        keep = channel != Channel.TELEMETRY
        return {
            "source": p.key[0],
            "source_id": p.key[1],
            "msg_id": p.key[2],
            "channel": channel.value,
            "type": type_,
            "ts": to_ms(body.ts),
            "received_at": p.item.received_ms,
            "payload": p.item.payload.decode("utf-8") if keep else None,
        }

    @staticmethod
    def _quarantine_row(item: Any, reason: str, detail: str) -> dict[str, Any]:
        text = item.payload[: QUARANTINE_PAYLOAD_CHARS * 4].decode("utf-8", errors="replace")
        # A NUL byte is UTF-8 but no PostgreSQL text: shown as U+FFFD, as a byte that is not
        # UTF-8 is, or the quarantine would refuse the very row that keeps the bad message
        # (firmware sending its JSON with a C string's terminator).
        return {
            "at": item.received_ms,
            "topic": item.topic[:300].replace("\x00", "\ufffd"),
            "reason": reason,
            "detail": detail[:500].replace("\x00", "\ufffd"),
            "payload": text[:QUARANTINE_PAYLOAD_CHARS].replace("\x00", "\ufffd"),
            "size": len(item.payload),
        }

    def _count(self, r: BatchResult) -> None:
        m = self.metrics
        for channel, n in r.counts.items():
            m.messages.labels(channel).inc(n)
        for reason in r.quarantined:
            m.quarantined.labels(reason).inc()
        if r.repeats:
            m.repeated.inc(r.repeats)
        for kind, n in r.opened.items():
            m.alerts_opened.labels(kind).inc(n)
        if r.escalations:
            m.escalations.inc(r.escalations)

    # --- housekeeping: escalations, device facts, pruning ----------------------------------

    def _housekeeping(self) -> None:
        self._next_escalation_poll = time.monotonic() + ESCALATION_POLL_S
        try:
            with self.engine.begin() as conn:
                tx = Tx(conn, int(self.clock() * 1000))
                self.service.escalate_due(tx)
            self._outage = None  # not `_refusing`: that is about the messages' own writes
        except DBAPIError as exc:
            self._outage = str(exc.orig or exc)[:200]
            self.metrics.db_errors.inc()
            log.error("escalation check failed, will retry: %s", exc)
            return
        alert_log.emit(tx.logs)
        if tx.out:
            self.publish(tx.out)
        if tx.escalations:
            self.metrics.escalations.inc(tx.escalations)
        self.service.paging_due(self.engine, tx.now_ms, self.publish)  # reminders, SMS/IM chains
        now = time.monotonic()
        if now >= self._next_rules_poll and not self._alarms_due():  # alarms waiting go first
            self._rules_tick()
        try:
            if now - self._last_device_flush >= DEVICE_FLUSH_S:
                self._flush_devices()
            if now >= self._next_prune and not self._alarms_due():  # alarms waiting go first
                self._prune()
        except DBAPIError as exc:
            log.warning("housekeeping deferred: %s", exc)

    def _full_gc(self) -> None:
        """The full garbage collection when due, with no alarm waiting (gateway/collector.py)."""
        now = time.monotonic()
        if now >= self._next_full_gc and not self._alarms_due() and collector.held():
            self._next_full_gc = now + collector.FULL_EVERY_S
            self.metrics.gc_full_seconds.observe(collector.full_pass())

    def _rules_tick(self) -> None:
        """One bounded batch of due rule states (water, gas, health) and ended suppressions, on
        the injected clock; again at once while batches come back full."""
        self._next_rules_poll = time.monotonic() + RULES_POLL_S
        if self._later:  # heard before judged silent
            self._heard_later()
        try:
            res = self.ruling.tick(self.engine, int(self.clock() * 1000), self._decide)
        except DBAPIError as exc:  # a conflict with another gateway, or the database down
            log.warning("rules tick deferred: %s", exc)
            return
        except Exception:  # a fault here must not stop the escalations
            log.exception("rules tick failed; will retry")
            return
        if res is None:
            return
        alert_log.emit(res.logs)
        if res.out:
            self.publish(res.out)
        for kind, n in res.opened.items():
            self.metrics.alerts_opened.labels(kind).inc(n)
        if res.escalations:
            self.metrics.escalations.inc(res.escalations)
        if res.full:
            self._next_rules_poll = time.monotonic()

    def _heard_later(self) -> None:
        """The signs of life of events already committed and paged (RuleBatch.prepare's
        `defer_heard`), in one transaction of their own. The database down: kept for the next
        try. Lost only with the process, whose restart gives every device a grace period
        (Ruling.resume), so no device is judged silent for it."""
        ids, self._later = sorted(self._later), set()
        if not ids:
            return
        try:
            with self.alarm_engine.begin() as conn:
                tx = Tx(conn, int(self.clock() * 1000))
                devs = {
                    r.id: SimpleNamespace(**r._mapping)
                    for r in conn.execute(select(devices).where(devices.c.id.in_(ids)))
                }
                rb = self.ruling.batch(tx, self._decide, devs, {})
                rb.heard(ids)
                rb.finish()
        except DBAPIError as exc:
            self._later.update(ids)
            log.warning("signs of life of %d devices deferred: %s", len(ids), exc)
            return
        except Exception:  # a fault here must not stop the worker; the next sign of life heals
            log.exception("signs of life of %d devices not recorded", len(ids))
            return
        alert_log.emit(tx.logs)
        if tx.out:
            self.publish(tx.out)
        for kind, n in tx.opened.items():
            self.metrics.alerts_opened.labels(kind).inc(n)

    def _flush_devices(self, yield_to_alarms: bool = True) -> None:
        """Write the devices' last-seen times (and batteries) noted since the last flush, in
        chunks of FLUSH_CHUNK devices a transaction (a district's 5 s is thousands of devices:
        60 ms in one go on PostgreSQL). With alarms waiting, or FLUSH_YIELD_TELEMETRY readings,
        the rest waits for the next housekeeping round, after them."""
        self._last_device_flush = time.monotonic()
        with self._seen_lock:
            left = len(self._seen)  # this flush's share: what was noted before it began
        while left > 0:
            with self._seen_lock:
                n = min(FLUSH_CHUNK, left, len(self._seen))
                chunk = [self._seen.popitem(last=False) for _ in range(n)]
            if not chunk:
                return
            left -= n
            try:
                self._write_seen(chunk)
            except BaseException:
                self._put_back(chunk)  # the database failed: for the next flush
                raise
            if left > 0 and yield_to_alarms and self._flush_yields():
                self._last_device_flush -= DEVICE_FLUSH_S  # the rest at the next round
                return

    def _flush_yields(self) -> bool:
        return self._alarms_due() or (
            not self._paused("telemetry")
            and self.telemetry_queue.qsize() + len(self._tbuf) >= FLUSH_YIELD_TELEMETRY
        )

    def _put_back(self, items: list[tuple[str, _Seen]]) -> None:
        """Unwritten last-seen notes back, under any newer ones noted meanwhile (last: they
        failed once)."""
        if not items:
            return
        with self._seen_lock:
            for device_id, old in items:
                new = self._seen.get(device_id)
                if new is None:
                    self._seen[device_id] = old
                    continue
                new.last_seen_at = max(new.last_seen_at, old.last_seen_at)
                if new.battery_pct is None:
                    new.battery_pct = old.battery_pct

    def _write_seen(self, items: list[tuple[str, _Seen]]) -> None:
        rows = [{"b_id": d, "b_seen": s.last_seen_at, "b_batt": s.battery_pct} for d, s in items]
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # one statement, not one UPDATE per device
                conn.execute(
                    _PG_TOUCH,
                    {
                        "ids": [r["b_id"] for r in rows],
                        "seen": [r["b_seen"] for r in rows],
                        "batt": [r["b_batt"] for r in rows],
                    },
                )
                return
            plain = [r for r in rows if r["b_batt"] is None]
            batt = [r for r in rows if r["b_batt"] is not None]
            if plain:
                conn.execute(_TOUCH, plain)
            if batt:
                conn.execute(_TOUCH_BATTERY, batt)

    def _prune(self) -> None:
        """Telemetry ids past the repeat check's window, rollups past their retention: at most
        PRUNE_CHUNK rows of each a transaction, the next chunk soon after while there are more,
        so a backlog (at 1,000 readings/s, 3.6 million ids an hour) never holds up an alarm
        for more than one small delete."""
        self._next_prune = time.monotonic() + PRUNE_EVERY_S  # also when the database fails
        now_ms = int(self.clock() * 1000)
        m, r = messages.c, telemetry_rollups.c
        ids = self._prune_chunk(
            messages,
            _KEY,  # the whole key: without the channel, an event of the same id would go too
            (m.channel == "telemetry") & (m.received_at < now_ms - self.telemetry_retention_ms),
        )
        hours = self._prune_chunk(
            telemetry_rollups,
            (r.device_id, r.hour_start, r.field),
            r.hour_start < now_ms - self.rollup_retention_ms,
        )
        if ids or hours:
            log.info("pruned %d telemetry ids and %d rollup rows past their retention", ids, hours)
        if PRUNE_CHUNK in (ids, hours):
            self._next_prune = time.monotonic() + PRUNE_AGAIN_S

    def _prune_chunk(self, table: Any, key: tuple[Any, ...], old: Any) -> int:
        chunk = select(*key).where(old).limit(PRUNE_CHUNK)
        with self.engine.begin() as conn:
            return int(conn.execute(delete(table).where(tuple_(*key).in_(chunk))).rowcount)


def _later(seen: Any) -> Any:
    """`last_seen_at` never goes back: several gateways (or lanes) hear one device, and one's
    flush of what it heard a few seconds ago may come after another's newer time."""
    return case((devices.c.last_seen_at > seen, devices.c.last_seen_at), else_=seen)


_TOUCH = (
    update(devices)
    .where(devices.c.id == bindparam("b_id"))
    .values(last_seen_at=_later(bindparam("b_seen")))
)
_TOUCH_BATTERY = (
    update(devices)
    .where(devices.c.id == bindparam("b_id"))
    .values(
        last_seen_at=_later(bindparam("b_seen")),
        # the battery of the newer report (SET reads the row as it was)
        battery_pct=case(
            (devices.c.last_seen_at > bindparam("b_seen"), devices.c.battery_pct),
            else_=bindparam("b_batt"),
        ),
    )
)
_PG_TOUCH = text(
    "UPDATE devices AS d SET last_seen_at = GREATEST(d.last_seen_at, v.seen),"
    " battery_pct = CASE WHEN d.last_seen_at > v.seen THEN d.battery_pct"
    " ELSE COALESCE(v.batt, d.battery_pct) END"
    " FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:seen AS BIGINT[]),"
    " CAST(:batt AS DOUBLE PRECISION[])) AS v(id, seen, batt)"
    " WHERE d.id = v.id"
)
# A telemetry batch's devices on PostgreSQL: joined to the ids unnested, so the primary key is
# probed whatever the statistics say (see _PG_VERSIONS in gateway/ruling.py); `IN (...)` of 500
# ids scanned the 100,000 devices of a freshly loaded registry.
_PG_DEVICES = (
    select(devices)
    .select_from(text("unnest(CAST(:ids AS VARCHAR[])) AS wanted(id)"))
    .join(devices, devices.c.id == text("wanted.id"))
)

# The claim passes the batch's rows as arrays (PostgreSQL) or one JSON text (SQLite): one
# compiled statement whatever the batch size, one primary-key probe per row whatever the size of
# `messages` (telemetry ids are kept for days).
_M = messages.c
_KEY = (_M.source, _M.source_id, _M.msg_id, _M.channel)  # the primary key (gateway/tables.py)
_COLS = ("source", "source_id", "msg_id", "channel", "type", "ts", "received_at", "payload")
_PG_CLAIM = text(
    "INSERT INTO messages (source, source_id, msg_id, channel, type, ts, received_at, payload)"
    " SELECT * FROM unnest(CAST(:source AS VARCHAR[]), CAST(:source_id AS VARCHAR[]),"
    " CAST(:msg_id AS VARCHAR[]), CAST(:channel AS VARCHAR[]), CAST(:type AS VARCHAR[]),"
    " CAST(:ts AS BIGINT[]), CAST(:received_at AS BIGINT[]), CAST(:payload AS TEXT[]))"
    " ON CONFLICT DO NOTHING RETURNING source, source_id, msg_id, channel"
)
# "WHERE true": SQLite needs it to read ON CONFLICT after INSERT ... SELECT.
_SQLITE_CLAIM = text(
    "INSERT INTO messages (source, source_id, msg_id, channel, type, ts, received_at, payload)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'),"
    " json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]')"
    " FROM json_each(:rows) WHERE true"
    " ON CONFLICT DO NOTHING RETURNING source, source_id, msg_id, channel"
)


def claim_messages(conn: Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Insert the `messages` rows whose key (source, source_id, msg_id, channel) is not there
    yet, in one statement; return the keys inserted. The rows' keys must be distinct."""
    if not rows:
        return set()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        found = conn.execute(_PG_CLAIM, {c: [r[c] for r in rows] for c in _COLS})
    elif dialect == "sqlite":
        data = json.dumps([[r[c] for c in _COLS] for r in rows], ensure_ascii=False)
        found = conn.execute(_SQLITE_CLAIM, {"rows": data})
    else:  # no set-returning input: one row at a time
        inserted = set()
        for r in rows:
            key = (r["source"], r["source_id"], r["msg_id"], r["channel"])
            if conn.execute(select(_M.msg_id).where(tuple_(*_KEY) == key)).first() is None:
                conn.execute(insert(messages).values(**r))
                inserted.add(key)
        return inserted
    return {(r.source, r.source_id, r.msg_id, r.channel) for r in found}


# The device's `ts` of the message that opened an alert: its claimed `messages` row (kept for
# good, as every event's is), by primary key. Read for a cancel only, off the way of a press.
_OPENING_TS = (
    select(_M.ts)
    .select_from(alerts)
    .join(
        messages,
        and_(
            _M.source == "d",
            _M.source_id == alerts.c.device_id,
            _M.msg_id == alerts.c.trigger_msg_id,
            # a press is an event; a reading may carry the same id, and its ts is not the press's
            _M.channel == "events",
        ),
    )
    .where(alerts.c.id == bindparam("alert_id"))
)


def _with_press_ts(conn: Connection, active: dict[AlertKind, ActiveAlert]) -> None:
    """Give the device's active call-button alert the device's time of its press, for
    `rules.on_event` to weigh a cancel against (also a press claimed earlier in this batch:
    its row is written). Not found, the rule has nothing to weigh by and pages on."""
    current = active.get(AlertKind.CALL_BUTTON)
    if current is None or current.device_ts is not None:
        return
    ts = conn.execute(_OPENING_TS, {"alert_id": current.id}).scalar()
    if ts is not None:
        active[AlertKind.CALL_BUTTON] = dataclasses.replace(current, device_ts=from_ms(ts))


def _alarm_of(base: str, item: Any) -> dict[str, Any] | None:
    """The `messages` row (the claim, `claim_messages`) of a quarantined message if it may be a
    device's alarm event (`Ingest._fallback`), else None. Defensive, and apart from the parser:
    the message may be malformed in the very way that broke processing (what the parser refuses
    is ruled out in `Ingest._fallback_alert`, once the device's kind is known). Only what the
    claim and the alert need is taken, checked as the columns will hold it; not the payload (it
    is in the quarantine, and may be what the database refused)."""
    topic = parse_topic(base, item.topic)
    if topic is None or topic.owner != "devices" or topic.channel != Channel.EVENTS:
        return None
    try:
        data = json.loads(item.payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("type") not in FALLBACK_TYPES:
        return None
    msg_id, sender = data.get("id"), data.get("device_id", topic.ident)
    if not isinstance(msg_id, str) or not 1 <= len(msg_id) <= 64 or "\x00" in msg_id:
        return None
    if sender != topic.ident or len(topic.ident) > 64:
        return None
    try:
        msg_id.encode("utf-8")  # a lone surrogate: no text column holds it
    except UnicodeEncodeError:
        return None
    try:
        ts: int | None = to_ms(parse_ts(data.get("ts")))
    except (ValueError, TypeError, OverflowError):
        ts = None  # the time is the device's; the alert's is when it is opened
    return {
        "source": "d",
        "source_id": topic.ident,
        "msg_id": msg_id,
        "channel": Channel.EVENTS.value,
        "type": data["type"],
        "ts": ts,
        "received_at": item.received_ms,
        "payload": None,
    }


def _fields(ev: Event) -> dict[str, Any]:
    """The event's own fields for the timeline (without id/ts/type)."""
    return ev.model_dump(exclude={"id", "ts", "type"}, exclude_none=True)
