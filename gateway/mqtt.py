"""The gateway's MQTT connection (paho-mqtt 2, callback API version 2).

- A persistent session: MQTT 5 with clean_start=False and a SessionExpiryInterval (MQTT 3.1.1
  with clean_session=False against the embedded amqtt broker, which speaks only 3.1.1), so alarms
  sent while the gateway is down are delivered when it is back.
- QoS 1 subscriptions with manual acknowledgement: a message is acked only after its effects are
  committed (see gateway/ingest.py); a crash before that means the broker delivers it again.
  A message id is per connection: one received before a reconnect is never acked after it
  (`generation`), as by then the broker may have given its id to a message not yet committed.
- Reconnects with back-off (paho's own loop), subscribes again on every connect, and a retained
  birth message on the gateway's status topic with the opposite Last Will.
- TCP_NODELAY on the socket: without it a PUBACK then a page wait ~40 ms for a delayed ACK.
- Callbacks only hand messages over; they never publish or take our locks (paho calls them
  holding its own, and doing more there has deadlocked other projects). One exception: the
  connection's generation lock, held elsewhere only around a call that takes none of paho's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from devices.topics import gateway_status_topic, inbound_filters

log = logging.getLogger(__name__)


def close_wakeup_pair(client: mqtt.Client) -> None:
    """Close the socket pair paho 2 opens in `loop_start()` to wake its thread: `loop_stop()`
    leaves it open until the client is collected, two descriptors per stopped client (a test
    run starting thousands of gateways passed 1024, where paho's select() fails)."""
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None:
        reset(sockpair_only=True)


@dataclass(slots=True)
class Inbound:
    """One received message, as handed from paho's thread to the worker."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool  # as delivered: a retained message replayed by the broker, not a live one
    received_mono: float
    received_ms: int
    lane: str = "alarm"  # which link it came by: "alarm" or "telemetry" (see gateway/app.py)
    link: Any = None  # an adopted session (gateway/adopt.py) to acknowledge on; None: ours
    # The connection it came by (MqttLink.generation): its `mid` means this message on that
    # connection only; on a later one the broker may have given the id to another message.
    generation: int = 0


def set_nodelay(sock: Any) -> None:
    """TCP_NODELAY: without it a PUBACK then a page wait ~40 ms for a delayed ACK."""
    # Not a TCP socket (e.g. a websocket wrapper): nothing to set.
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttLink:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        base: str,
        on_inbound: Callable[[Inbound], None],
        *,
        username: str | None = None,
        password: str | None = None,
        mqtt5: bool = True,
        session_expiry_s: int = 86_400,
        receive_maximum: int = 1000,
        share_group: str | None = None,
        filters: list[str] | None = None,
        lane: str = "alarm",
        announce: bool = True,
        redelivers: bool = True,
    ) -> None:
        """`filters`: what to subscribe to (default: everything devices and pagers send);
        `lane`: stamped on every Inbound; `announce`: publish the gateway's birth message and
        Last Will on its status topic (one link of a gateway does); `redelivers`: the broker
        sends again, on a connection that resumes the session, what it had sent and we had
        not acknowledged (MQTT requires it; amqtt 0.12 does not: gateway/broker.py)."""
        self.host, self.port, self.base, self.client_id = host, port, base, client_id
        self.mqtt5 = mqtt5
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.share_group = share_group
        self.lane = lane
        self.announce = announce
        self._base_filters = filters if filters is not None else inbound_filters(base)
        self._on_inbound = on_inbound
        self._publish_listeners: list[Callable[[int], None]] = []
        self._connect_listeners: list[Callable[[bool], None]] = []
        self.connected = threading.Event()
        # Set once the broker has confirmed our subscriptions (SUBACK): before that a message
        # published to a fresh session is not routed to us.
        self.subscribed = threading.Event()
        self._sub_mid: int | None = None
        self._had_session = False
        self._stopping = False
        self.last_error: str | None = None
        # When the broker last forgot our session (wall clock, s): /healthz names it for a while.
        self.session_lost_at: float | None = None
        self.redelivers = redelivers
        # Which connection: a new number before every connection attempt and on every loss,
        # stamped on what it delivers. A message id is only good on its own connection.
        self.generation = 0
        self._live_generation: int | None = None  # the connection the broker accepted, if up
        # The oldest connection whose unacknowledged messages the broker still holds for us:
        # every connection since resumed the session (and the broker redelivers).
        self._session_since = 0
        # Held by the worker only around client.ack (a queue append, no lock of paho's), and by
        # paho's thread in our callbacks to move to a new connection: an ack is checked and
        # queued wholly before a loss (whose reconnect() discards the queue), or not at all.
        # Reentrant: an ack after loop_stop() writes at once, and a failed write calls back.
        self._generation_lock = threading.RLock()
        self.status_topic = gateway_status_topic(base, client_id)
        if mqtt5:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv5,
                manual_ack=True,
            )
        else:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        if announce:
            self.client.will_set(
                self.status_topic, json.dumps({"online": False}), qos=1, retain=True
            )
        self.client.on_socket_open = self._on_socket_open
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    # --- listeners -------------------------------------------------------------------------

    def add_publish_listener(self, fn: Callable[[int], None]) -> None:
        """fn(mid) runs on paho's thread when the broker acknowledges a publish: keep it tiny."""
        self._publish_listeners.append(fn)

    def add_connect_listener(self, fn: Callable[[bool], None]) -> None:
        """fn(connected) runs on paho's thread on every connect and disconnect: keep it tiny."""
        self._connect_listeners.append(fn)

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        kwargs: dict[str, Any] = {"keepalive": 30}
        if self.mqtt5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s
            props.ReceiveMaximum = self.receive_maximum
            kwargs.update(clean_start=False, properties=props)
        self.client.connect_async(self.host, self.port, **kwargs)
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed (the broker routes device messages to us)."""
        return self.subscribed.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Say we are going (retained offline status), disconnect, stop paho's thread."""
        self._stopping = True
        if self.connected.is_set() and self.announce:
            info = self.client.publish(
                self.status_topic, json.dumps({"online": False}), qos=1, retain=True
            )
            deadline = time.monotonic() + timeout
            while (
                not info.is_published() and time.monotonic() < deadline and self.connected.is_set()
            ):
                time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()
        close_wakeup_pair(self.client)
        self.connected.clear()
        self.subscribed.clear()

    # --- use -------------------------------------------------------------------------------

    def ack(self, mid: int, qos: int, generation: int | None = None) -> bool:
        """Acknowledge `mid` if it came by the connection we have now (`generation`; None: no
        check). False when it came by an earlier one: then its id may belong to another
        message by now (one not yet committed), and the broker redelivers the old one anyway."""
        if qos == 0:
            return True
        with self._generation_lock:
            if generation is not None and generation != self.generation:
                return False
            self.client.ack(mid, qos)
        return True

    def redelivered(self, generation: int) -> bool:
        """A message that came by connection `generation` and was not acknowledged is the
        broker's again: a later connection is up and resumed the session since, and the
        broker sends such messages again on it (a copy with the same effect)."""
        with self._generation_lock:
            live = self._live_generation
            return (
                self.redelivers
                and live is not None
                and live == self.generation
                and self._session_since <= generation < live
            )

    def publish(
        self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False
    ) -> int | None:
        """Hand a message to paho; its mid, or None when it could not be queued."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        return info.mid

    # --- paho callbacks (paho's thread) ----------------------------------------------------

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        set_nodelay(sock)

    def _new_generation(self) -> None:
        with self._generation_lock:
            self.generation += 1
            self._live_generation = None

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        # Also here, not only on a loss: a reconnect that paho makes without reporting one.
        self._new_generation()

    def _filters(self) -> list[str]:
        filters = list(self._base_filters)
        if self.share_group and self.mqtt5:
            filters = [f"$share/{self.share_group}/{f}" for f in filters]
        return filters

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            # A refused connection is a failure, not a connection: paho will retry.
            self.last_error = f"connection refused: {reason_code}"
            log.error("MQTT %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        present = getattr(flags, "session_present", None)
        if not self._base_filters:  # a link that only publishes (a telemetry-lane gateway's)
            self._sub_mid = None  # "subscribed" once connected, below
            if present:
                # The session of this client id from before SHOUWANG_LANES: what it queued is
                # delivered to us (and processed, whatever the lane), but nothing new is routed.
                # Every inbound filter (one it does not hold is harmless); never shared ones,
                # as lanes refuse a share group (gateway/settings.py).
                client.unsubscribe(inbound_filters(self.base))
        elif self.mqtt5:
            # Never retain-as-published: the retain flag of a delivery must keep meaning "the
            # broker replays a retained message" (on subscribe), as in 3.1.1; with it every live
            # retained status would arrive flagged too, and be taken as no sign of life
            # (gateway/ingest.py).
            opts = SubscribeOptions(qos=1, retainAsPublished=False)
            _, self._sub_mid = client.subscribe([(f, opts) for f in self._filters()])
        else:
            _, self._sub_mid = client.subscribe([(f, 1) for f in self._filters()])
        if self.announce:
            client.publish(
                self.status_topic,
                json.dumps({"online": True, "client_id": self.client_id}),
                qos=1,
                retain=True,
            )
        self.last_error = None
        log.info("MQTT connected to %s:%s (session present: %s)", self.host, self.port, present)
        if present is False and self._had_session:
            # The broker forgot us (restarted without persistence, or the session expired):
            # what devices sent in between was not queued for us. Say so loudly.
            log.error(
                "MQTT broker %s:%s has lost the gateway's session: messages sent while we were "
                "disconnected may be lost; run the broker with `persistence true`",
                self.host,
                self.port,
            )
            self.session_lost_at = time.time()
        self._had_session = True
        with self._generation_lock:
            self._live_generation = self.generation
            if not (present and self.redelivers):
                # What earlier connections left unacknowledged will not come again.
                self._session_since = self.generation
        self.connected.set()
        if not self._base_filters:
            self.subscribed.set()
        for fn in self._connect_listeners:
            fn(True)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("MQTT disconnected: %s", reason_code)
        self.last_error = f"disconnected: {reason_code}"
        # Before paho's reconnect() drops what is queued to send: an ack queued after this
        # would go out on the next connection.
        self._new_generation()
        self.connected.clear()
        self.subscribed.clear()
        for fn in self._connect_listeners:
            fn(False)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        if mid != self._sub_mid:
            return
        failed = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
        if failed:
            self.last_error = f"subscription refused: {failed}"
            log.error("MQTT broker refused a subscription: %s", failed)
            return
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
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
                    generation=self.generation,  # paho's thread is the only one to change it
                )
            )
        except Exception:  # one bad hand-over must not stop paho's loop
            log.exception("could not hand over a message on %s", msg.topic[:200])

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        for fn in self._publish_listeners:
            fn(mid)
