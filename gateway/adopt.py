"""Several gateways on one broker: a gateway that is gone does not keep its share of the alarms.

With MQTT 5 shared subscriptions (`SHOUWANG_MQTT_SHARE_GROUP`) the broker hands each device
message to one member of the group. A member that is away but keeps its persistent session is
still given its share: Mosquitto 2.0 queues a third of the presses for a killed gateway of three
until that gateway comes back (measured here; Mosquitto #2662). For a call button that is a
press nobody pages.

So every gateway of a group watches the others' retained status (each one's birth message and
Last Will, `<base>/v1/gateways/<client id>/status`). When a peer is offline, one gateway (a
PostgreSQL advisory lock decides which) *adopts* its sessions, the alarm one and the telemetry
one: it connects with the peer's client id and `clean_start=False`, so the broker hands it what
was queued for the peer and keeps handing it the peer's share; every message goes through this
gateway's own ingest worker (committed, then acknowledged on the adopted connection, as any
other). It then unsubscribes the peer's filters (the broker stops routing to that session),
waits until everything received has been acknowledged, and ends the session (DISCONNECT with a
session expiry of 0): from then on the broker hands everything to the members that are there.

If the peer comes back meanwhile, the broker gives it its session back (a session taken over);
the adopter just stops, and what it had not acknowledged is delivered again to the peer, whose
repeat check makes that harmless. If the adopter dies mid-way, its lock goes with its database
connection, the session is still there (its expiry was never shortened), and another gateway
adopts it.

Assumes the members of a group share the base topic and the group name (one deployment).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from devices.topics import VERSION, alarm_filters, telemetry_filters
from gateway.metrics import Metrics
from gateway.mqtt import Inbound, close_wakeup_pair, set_nodelay

log = logging.getLogger(__name__)

TELEMETRY_SUFFIX = ".telemetry"  # the telemetry link's client id is the gateway's + this
QUIET_S = 1.0  # nothing new for this long after the UNSUBACK: the session is drained
DRAIN_LIMIT_S = 120.0  # give up (and leave the session for another try) after this
RETRY_S = 5.0  # a peer still offline and not yet adopted (lock held elsewhere) is tried again
# A status seen offline waits this long: when the whole group restarts, a peer's old retained
# "offline" arrives just before its new birth message, and adopting it then would take a live
# session from it (it takes it back, but a second of its share is shuffled for nothing).
GRACE_S = 2.0
_SESSION_TAKEN_OVER = 142  # MQTT 5 reason code: the peer is back and took its session


@dataclass(slots=True)
class _Peer:
    online: bool
    done: bool = False  # its sessions were ended (or found empty) since it went offline
    next_try: float = 0.0


class AdoptedSession:
    """One adopted session: connect as the peer, receive, unsubscribe, drain, end it."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        filters: list[str],
        lane: str,
        on_inbound: Callable[[Inbound], None],
        *,
        username: str | None,
        password: str | None,
        session_expiry_s: int,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.filters = filters
        self.lane = lane
        self._on_inbound = on_inbound
        self.session_expiry_s = session_expiry_s
        self.on_received: Callable[[], None] | None = None  # counts, as each one comes
        self.connected = threading.Event()
        self.gone = threading.Event()  # disconnected (taken over, broker gone, or ended)
        self.unsubscribed = threading.Event()
        self.session_present: bool | None = None
        self.refused: str | None = None
        self.taken_over = False
        self._lock = threading.Lock()
        self.received = 0
        self.acked = 0
        self.last_received = time.monotonic()
        self._unsub_mid: int | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(200)
        self.client.on_socket_open = lambda c, u, sock: set_nodelay(sock)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_unsubscribe = self._on_unsubscribe

    # --- paho's thread ---------------------------------------------------------------------

    def _on_connect(self, client: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self.refused = str(rc)
            self.gone.set()
            return
        self.session_present = bool(getattr(flags, "session_present", False))
        self.connected.set()

    def _on_disconnect(self, client: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.taken_over = getattr(rc, "value", None) == _SESSION_TAKEN_OVER
        self.connected.clear()
        self.gone.set()

    def _on_unsubscribe(self, client: Any, u: Any, mid: int, rcs: Any, props: Any) -> None:
        if mid == self._unsub_mid:
            self.unsubscribed.set()

    def _on_message(self, client: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received += 1
            self.last_received = time.monotonic()
        if self.on_received is not None:
            self.on_received()
        try:
            self._on_inbound(
                Inbound(
                    msg.topic,
                    msg.payload,
                    msg.mid,
                    msg.qos,
                    bool(msg.retain),
                    time.monotonic(),
                    int(time.time() * 1000),
                    self.lane,
                    self,
                )
            )
        except Exception:  # unacknowledged: the broker keeps it for the session's next owner
            log.exception("could not hand over an adopted message on %s", msg.topic[:200])

    # --- the worker's side -----------------------------------------------------------------

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge on this connection (message ids are per session); after the commit."""
        if qos > 0:
            self.client.ack(mid, qos)
        with self._lock:
            self.acked += 1

    # --- the adopter's thread --------------------------------------------------------------

    def run(self, stop: threading.Event) -> str:
        """Adopt, drain and end the session. Returns how it went: ended, empty, taken_over,
        refused, stopped or timeout (the last four leave the session to the broker)."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s  # kept if we die mid-way
        self.client.connect_async(
            self.host, self.port, keepalive=30, clean_start=False, properties=props
        )
        self.client.loop_start()
        try:
            return self._drain(stop)
        finally:
            self.client.loop_stop()
            close_wakeup_pair(self.client)

    def _drain(self, stop: threading.Event) -> str:
        deadline = time.monotonic() + DRAIN_LIMIT_S
        while not self.connected.is_set():
            if self.gone.is_set() or self.refused:
                return "refused" if self.refused else "taken_over"
            if stop.is_set() or time.monotonic() > deadline:
                self.client.disconnect()
                return "stopped" if stop.is_set() else "timeout"
            time.sleep(0.05)
        # A session that was not there is a new, empty one: nothing queued, no subscriptions.
        if self.session_present:
            _, self._unsub_mid = self.client.unsubscribe(self.filters)
        else:
            self.unsubscribed.set()
        while True:
            if self.gone.is_set():
                return "taken_over" if self.taken_over else "lost"
            with self._lock:
                settled = self.acked >= self.received
                quiet = time.monotonic() - self.last_received >= QUIET_S
            if self.unsubscribed.is_set() and settled and quiet:
                break
            if stop.is_set() or time.monotonic() > deadline:
                self.client.disconnect()  # the session stays, with what we did not ack
                return "stopped" if stop.is_set() else "timeout"
            time.sleep(0.05)
        end = Properties(PacketTypes.DISCONNECT)
        end.SessionExpiryInterval = 0  # the broker drops the session: nothing is queued for it
        self.client.disconnect(properties=end)
        self.gone.wait(5)
        return "ended" if self.session_present else "empty"


class Adopter:
    """Watches the group's gateways and adopts the sessions of those that are gone."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        base: str,
        share_group: str,
        engine: Engine,
        metrics: Metrics,
        on_inbound: Callable[[Inbound], None],
        username: str | None = None,
        password: str | None = None,
        session_expiry_s: int = 86_400,
    ) -> None:
        self.host, self.port, self.client_id, self.base = host, port, client_id, base
        self.share_group = share_group
        self.engine = engine
        self.metrics = metrics
        self.on_inbound = on_inbound
        self.username, self.password = username, password
        self.session_expiry_s = session_expiry_s
        self._peers: dict[str, _Peer] = {}
        self._events: queue.Queue[tuple[str, bool]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shouwang-adopt", daemon=True)
        self.status_filter = f"{base}/{VERSION}/gateways/+/status"
        self.watch = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{client_id}.watch",
            protocol=mqtt.MQTTv5,
        )
        if username:
            self.watch.username_pw_set(username, password)
        self.watch.reconnect_delay_set(min_delay=1, max_delay=30)
        self.watch.on_socket_open = lambda c, u, sock: set_nodelay(sock)
        self.watch.on_connect = lambda c, u, f, rc, p: (
            None if rc.is_failure else c.subscribe(self.status_filter, 1)
        )
        self.watch.on_message = self._on_status

    def _shared(self, filters: list[str]) -> list[str]:
        return [f"$share/{self.share_group}/{f}" for f in filters]

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0  # statuses are retained: nothing to keep between runs
        self.watch.connect_async(
            self.host, self.port, keepalive=30, clean_start=True, properties=props
        )
        self.watch.loop_start()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        with contextlib.suppress(Exception):
            self.watch.disconnect()
        self.watch.loop_stop()
        close_wakeup_pair(self.watch)

    # --- paho's thread ---------------------------------------------------------------------

    def _on_status(self, client: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 5:
            return
        peer = parts[3]
        if peer == self.client_id or not msg.payload:
            return  # our own (a retained offline from our last run is not a peer), or cleared
        try:
            online = bool(json.loads(msg.payload).get("online", False))
        except (ValueError, AttributeError):
            return
        self._events.put((peer, online))

    # --- the adopter's thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Empty):
                event: tuple[str, bool] | None = self._events.get(timeout=0.5)
                while event is not None:  # every status waiting, before acting on any
                    peer, online = event
                    p = self._peers.get(peer)
                    if p is None or p.online != online:
                        p = self._peers[peer] = _Peer(online)  # a new absence, or back
                        p.next_try = time.monotonic() + (0.0 if online else GRACE_S)
                    try:
                        event = self._events.get_nowait()
                    except queue.Empty:
                        event = None
            now = time.monotonic()
            for peer, p in list(self._peers.items()):
                if p.online or p.done or now < p.next_try or self._stop.is_set():
                    continue
                try:
                    p.done = self._adopt(peer)
                except Exception:
                    log.exception("adopting the sessions of gateway %s failed", peer)
                    p.done = False
                if not p.done:
                    p.next_try = time.monotonic() + RETRY_S

    def _adopt(self, peer: str) -> bool:
        """Adopt both sessions of `peer` under a lock only one gateway holds; True when done
        (ended or empty), False to try again later (lock held elsewhere, peer back, error)."""
        with self._lease(peer) as held:
            if not held:
                return False
            for client_id, filters, lane in (
                (peer, alarm_filters(self.base), "alarm"),
                (peer + TELEMETRY_SUFFIX, telemetry_filters(self.base), "telemetry"),
            ):
                if self._peers[peer].online or self._stop.is_set():
                    return False
                s = AdoptedSession(
                    self.host,
                    self.port,
                    client_id,
                    self._shared(filters),
                    lane,
                    self.on_inbound,
                    username=self.username,
                    password=self.password,
                    session_expiry_s=self.session_expiry_s,
                )
                s.on_received = self.metrics.adopted.inc
                outcome = s.run(self._stop)
                if s.received:
                    log.warning(
                        "adopted %d message(s) queued for gateway %s (%s): %s",
                        s.received,
                        client_id,
                        lane,
                        outcome,
                    )
                if outcome not in ("ended", "empty"):
                    log.warning("session %s not ended: %s", client_id, outcome)
                    return False
            return True

    @contextlib.contextmanager
    def _lease(self, peer: str) -> Any:
        """A PostgreSQL advisory lock on the peer's name, held on a connection of its own for
        the adoption: two gateways adopting one session would take it from each other."""
        if self.engine.dialect.name != "postgresql":
            yield True  # SQLite: one gateway process per database
            return
        key = zlib.crc32(f"shouwang-adopt:{self.share_group}:{peer}".encode()) - 2**31
        try:
            conn = self.engine.connect()
        except DBAPIError:
            yield False
            return
        try:
            held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield held
            finally:
                if held:
                    with contextlib.suppress(DBAPIError):
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
        finally:
            conn.close()
