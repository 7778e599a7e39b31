"""The outbox publisher: pages and notices go to MQTT only after the transaction that made them
has committed, and count as sent only when the broker has acknowledged them (QoS 1).

One thread owns all publishing, so paho's callbacks only append to a deque and never wait for a
lock of ours. What is not acknowledged (broker down, session lost) stays unsent in the database
and is published again: at least once, with a page_id a pager can use to drop a repeat.

A second thread marks acknowledged rows sent. Marking is a write, and on SQLite a write waits for
the one write lock, which the ingest worker holds most of the time under load; SQLite's busy
handler then sleeps in growing steps (1, 2, 5, 10 ... 100 ms), and measured up to 430 ms. Done on
the publishing thread, that held back every page behind it; on its own thread it holds back none.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import DBAPIError

from gateway.alerting import OutMsg
from gateway.clock import Clock
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.tables import outbox

log = logging.getLogger(__name__)

RESEND_EVERY_S = 2.0
STALE_INFLIGHT_S = 30.0  # no PUBACK by then: the connection was lost; publish again
YOUNG_MS = 2_000  # rows this young may still be on their way to us from their committer


@dataclass(slots=True)
class _InFlight:
    msg: OutMsg
    since: float


def _kind(page_id: str | None) -> str:
    """What an outbox row carries: a page, a notice, or (no page id) a command to a device."""
    if page_id is None:
        return "command"
    return "notice" if page_id.startswith("nt_") else "page"


class Publisher:
    def __init__(self, engine: Engine, link: MqttLink, metrics: Metrics, clock: Clock) -> None:
        self.engine = engine
        self.link = link
        self.metrics = metrics
        self.clock = clock
        self._queue: queue.SimpleQueue[list[OutMsg] | None] = queue.SimpleQueue()
        self._acked: collections.deque[int] = collections.deque()
        self._inflight: dict[int, _InFlight] = {}
        # Outbox ids acknowledged by the broker and not yet marked sent in the database: `_sent`
        # waits for the marker thread, `_marking` also holds those it is writing now (a resend
        # skips both). Guarded by `_sent_lock`, which is never held across a database call.
        self._sent: list[int] = []
        self._marking: set[int] = set()
        self._sent_lock = threading.Lock()
        self._mark_now = threading.Event()
        self._marker_stop = threading.Event()
        self._resend_now = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shouwang-publisher", daemon=True)
        self._marker = threading.Thread(
            target=self._mark_loop, name="shouwang-outbox-marker", daemon=True
        )
        link.add_publish_listener(self._on_ack)
        link.add_connect_listener(self._on_connect_change)

    def start(self) -> None:
        self._resend_now.set()  # whatever a previous run left unsent
        self._thread.start()
        self._marker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish what is queued, wait briefly for acknowledgements, record them."""
        deadline = time.monotonic() + timeout
        self._queue.put(None)
        self._thread.join(timeout)
        while self._inflight and time.monotonic() < deadline and self.link.connected.is_set():
            self._drain_acks()
            time.sleep(0.01)
        self._drain_acks()
        self._marker_stop.set()
        self._mark_now.set()
        self._marker.join(max(0.5, deadline - time.monotonic()))
        self._flush_sent()

    def submit(self, msgs: list[OutMsg]) -> None:
        """Committed outbox messages, to publish now (any thread)."""
        if msgs:
            self._queue.put(msgs)

    # --- the publisher thread --------------------------------------------------------------

    def _on_connect_change(self, connected: bool) -> None:
        if connected:
            self._resend_now.set()

    def _on_ack(self, mid: int) -> None:
        """paho's thread: note the PUBACK and wake the publisher, which drains it at once."""
        self._acked.append(mid)
        self._queue.put([])

    def _run(self) -> None:
        last_resend = 0.0
        while True:
            try:
                batch = self._queue.get(timeout=0.05)
            except queue.Empty:
                batch = []
            if batch is None:
                self._stop.set()
                return
            try:
                self._publish(batch)
                while True:  # take whatever else is already waiting
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)
                        break
                    self._publish(more)
                self._drain_acks()
                now = time.monotonic()
                if self._resend_now.is_set() or now - last_resend > RESEND_EVERY_S:
                    self._resend_now.clear()
                    self._resend()
                    last_resend = now
                self.metrics.outbox_pending.set(len(self._inflight))
            except Exception:  # never let the publisher die: what is unsent is in the database
                log.exception("publisher loop error")
                time.sleep(0.5)

    def _publish(self, msgs: list[OutMsg]) -> None:
        if not self.link.connected.is_set():
            return  # left unsent in the database; resent on reconnect
        now = time.monotonic()
        known = {f.msg.id for f in self._inflight.values()}
        for m in msgs:
            if m.id in known:
                continue
            mid = self.link.publish(m.topic, m.payload, m.qos)
            if mid is None:
                continue
            self._inflight[mid] = _InFlight(m, now)

    def _drain_acks(self) -> None:
        now = time.monotonic()
        acked: list[int] = []
        while self._acked:
            mid = self._acked.popleft()
            f = self._inflight.pop(mid, None)
            if f is None:
                continue
            acked.append(f.msg.id)
            self.metrics.pages_sent.labels(f.msg.kind).inc()
            if f.msg.kind == "page" and f.msg.received_mono is not None:
                self.metrics.page_latency.observe(now - f.msg.received_mono)
        if acked:
            with self._sent_lock:
                self._sent += acked
                self._marking.update(acked)
                if len(self._sent) >= 500:
                    self._mark_now.set()

    # --- the marker thread -----------------------------------------------------------------

    def _mark_loop(self) -> None:
        """Every 0.1 s (sooner when 500 wait), mark what the broker acknowledged as sent."""
        while not self._marker_stop.is_set():
            self._mark_now.wait(0.1)
            self._mark_now.clear()
            try:
                self._flush_sent()
            except Exception:  # never let the marker die: unmarked rows are only resent
                log.exception("outbox marker error")
                self._marker_stop.wait(0.5)

    def _flush_sent(self) -> None:
        with self._sent_lock:
            ids, self._sent = self._sent, []
        if not ids:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(ids))
                    .values(sent_at=int(self.clock() * 1000))
                )
        except DBAPIError:
            log.warning("could not mark %d outbox rows sent; will retry", len(ids))
            with self._sent_lock:
                self._sent = ids + self._sent
            return
        with self._sent_lock:
            self._marking.difference_update(ids)

    def _resend(self) -> None:
        """Publish again what the database says is unsent and not in flight."""
        if not self.link.connected.is_set():
            return
        now = time.monotonic()
        for mid, f in list(self._inflight.items()):
            if now - f.since > STALE_INFLIGHT_S:
                del self._inflight[mid]
        # Acknowledged but not yet marked sent: not again. Taken before the query, as the marker
        # may commit meanwhile (and only this thread adds to `_marking`).
        with self._sent_lock:
            marking = set(self._marking)
        cutoff = int(self.clock() * 1000) - YOUNG_MS
        try:
            with self.engine.connect().execution_options(readonly=True) as conn, conn.begin():
                rows = conn.execute(
                    select(
                        outbox.c.id,
                        outbox.c.topic,
                        outbox.c.payload,
                        outbox.c.qos,
                        outbox.c.alert_id,
                        outbox.c.page_id,
                    )
                    .where(
                        outbox.c.sent_at.is_(None),
                        outbox.c.cancelled_at.is_(None),
                        outbox.c.created_at <= cutoff,
                    )
                    .order_by(outbox.c.id)
                    .limit(1000)
                ).all()
        except DBAPIError:
            log.warning("outbox resend: database unavailable")
            return
        rows = [r for r in rows if r.id not in marking]
        if rows:
            log.info("publishing %d outbox messages again", len(rows))
        self._publish(
            [
                OutMsg(
                    r.id,
                    r.topic,
                    r.payload,
                    r.qos,
                    r.alert_id,
                    _kind(r.page_id),
                )
                for r in rows
            ]
        )
