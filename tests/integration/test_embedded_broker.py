"""The embedded amqtt broker (gateway/broker.py): it starts and stops, says clearly when its port
is taken, listens on loopback only, keeps the gateway's session while it is away, and carries
the whole alarm path."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import broker as broker_module
from gateway.app import Gateway
from gateway.broker import BrokerPortInUse, EmbeddedBroker
from gateway.mqtt import Inbound, MqttLink
from gateway.settings import Settings
from tests.support.alarm import Mqtt, seed_home, wait_until
from tests.support.process import free_port
from tests.support.services import require

BASE = "shouwang"


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker("127.0.0.1", free_port())
    b.start(timeout=10)
    yield b
    b.stop()


class Client:
    """A bare paho MQTT 3.1.1 client that records what it receives."""

    def __init__(
        self, port: int, client_id: str | None = None, clean: bool = True, manual_ack: bool = False
    ) -> None:
        self.received: list[mqtt.MQTTMessage] = []
        self.session_present: bool | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or "t-" + uuid.uuid4().hex[:8],
            protocol=mqtt.MQTTv311,
            clean_session=clean,
            manual_ack=manual_ack,
        )
        connected = threading.Event()

        def on_connect(c: Any, u: Any, flags: Any, rc: Any, p: Any) -> None:
            self.session_present = flags.session_present
            connected.set()

        self.client.on_connect = on_connect
        self.client.on_message = lambda c, u, msg: self.received.append(msg)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(5), "could not connect to the embedded broker"

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, 1)
        assert done.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published(), "no PUBACK from the embedded broker"

    def payloads(self, topic_prefix: str = "", qos: int = 1) -> list[bytes | bytearray]:
        return [
            m.payload
            for m in list(self.received)
            if m.topic.startswith(topic_prefix) and m.qos == qos
        ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bindable(port: int) -> bool:
    """Could a server listen on 127.0.0.1:port now (as amqtt does, with SO_REUSEADDR)?"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            return False
        return True


# --- 1. start, QoS 1 through it, stop -------------------------------------------------------


def test_qos1_round_trip_then_stop_frees_the_port() -> None:
    port = free_port()
    b = EmbeddedBroker("127.0.0.1", port)
    b.start(timeout=10)
    try:
        assert b.running
        sub, pub = Client(port), Client(port)
        sub.subscribe("t/#")
        pub.publish("t/1", b"hello")
        wait_until(lambda: sub.received, 5, "the message through the embedded broker")
        msg = sub.received[0]
        assert (msg.topic, msg.payload, msg.qos) == ("t/1", b"hello", 1)
        sub.close()
        pub.close()
    finally:
        b.stop()
    b.stop()  # a second stop is harmless
    assert not b.running
    assert bindable(port), f"port {port} still taken after stop()"
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(1)
        s.connect(("127.0.0.1", port))  # nobody listens any more

    again = EmbeddedBroker("127.0.0.1", port)  # and a broker can have the port again
    again.start(timeout=10)
    again.stop()


# --- 2. the port is taken ---------------------------------------------------------------------


def test_a_second_broker_on_the_same_port_is_refused_clearly(broker: EmbeddedBroker) -> None:
    second = EmbeddedBroker("127.0.0.1", broker.port)
    with pytest.raises(BrokerPortInUse) as info:
        second.start(timeout=10)
    assert isinstance(info.value, RuntimeError)
    assert str(broker.port) in str(info.value)
    assert "SHOUWANG_EMBEDDED_MQTT_PORT" in str(info.value)
    second.stop()  # nothing was started: harmless
    # the first broker is unharmed
    c = Client(broker.port)
    c.close()


def test_a_plain_socket_on_the_port_gives_broker_port_in_use() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(BrokerPortInUse, match=str(port)):
            EmbeddedBroker("127.0.0.1", port).start(timeout=10)


def test_amqtts_own_bind_failure_is_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone takes the port between our check and amqtt's bind: still BrokerPortInUse."""
    monkeypatch.setattr(broker_module, "_check_port", lambda host, port: None)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        b = EmbeddedBroker("127.0.0.1", port)
        with pytest.raises(BrokerPortInUse, match=str(port)):
            b.start(timeout=10)
        b.stop()
        assert b._thread is not None and not b._thread.is_alive()


# --- 3. loopback only -------------------------------------------------------------------------


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on `port`, from /proc/net/tcp and tcp6."""
    found: set[str] = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr_hex, port_hex = local.rsplit(":", 1)
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            if name == "tcp":
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def _non_loopback_ipv4() -> str | None:
    candidates = []
    with contextlib.suppress(OSError):
        candidates.append(socket.gethostbyname(socket.gethostname()))
    # A UDP "connect" sends nothing; it only picks the address a route would use.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
        s.connect(("192.0.2.1", 9))
        candidates.append(s.getsockname()[0])
    return next((ip for ip in candidates if not ip.startswith("127.")), None)


def test_listens_on_loopback_only(broker: EmbeddedBroker) -> None:
    if not Path("/proc/net/tcp").exists():
        require("procfs", "no /proc/net/tcp to read the listening sockets from")
    assert _listening_addresses(broker.port) == {"127.0.0.1"}
    ip = _non_loopback_ipv4()
    if ip is not None:
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(2)
            s.connect((ip, broker.port))


# --- 4. the gateway's persistent session ------------------------------------------------------


def _event(device: str, n: int) -> bytes:
    body = {"id": f"m{n}", "ts": int(time.time() * 1000), "type": "button.pressed"}
    return json.dumps(body).encode()


def test_messages_sent_while_the_gateway_is_away_arrive_when_it_is_back(
    broker: EmbeddedBroker,
) -> None:
    """With the gateway's own MqttLink (3.1.1, clean_session=False, QoS 1, manual ack)."""
    client_id = "gw-" + uuid.uuid4().hex[:8]
    topic = f"{BASE}/v1/devices/cb-1/events"
    got: list[Inbound] = []

    def link(returning: bool = True) -> MqttLink:
        lk = MqttLink("127.0.0.1", broker.port, client_id, BASE, got.append, mqtt5=False)
        lk.start()
        # A returning session: wait for the connection only, as amqtt answers its SUBSCRIBE
        # only after the messages it queued meanwhile are acknowledged.
        ready = lk.connected.wait(5) if returning else lk.wait_connected(5)
        assert ready, lk.last_error
        return lk

    pub = Client(broker.port)
    first = link(returning=False)
    # The subscription is in place once a message goes through.
    pub.publish(topic, _event("cb-1", 0))
    wait_until(lambda: got, 5, "the first message")
    first.ack(got[0].mid, got[0].qos)
    first.stop()
    got.clear()

    away = 20
    for n in range(1, away + 1):
        pub.publish(topic, _event("cb-1", n))

    second = link()
    try:
        wait_until(lambda: len(got) >= away, 10, f"{away} queued messages")
        assert [json.loads(i.payload)["id"] for i in got] == [f"m{n}" for n in range(1, away + 1)]
        assert {(i.topic, i.qos) for i in got} == {(topic, 1)}
        for i in got:
            second.ack(i.mid, i.qos)
        time.sleep(0.3)  # no extra deliveries
        assert len(got) == away
    finally:
        second.stop()
    got.clear()

    # Acknowledged messages are not delivered again.
    third = link()
    try:
        time.sleep(1.0)
        assert [i for i in got if i.qos == 1] == []
    finally:
        third.stop()
    pub.close()


def test_clients_connecting_while_others_subscribe_lose_nothing(broker: EmbeddedBroker) -> None:
    """amqtt walks its table of subscriptions across awaits when a client connects (to send it
    the retained messages): another client subscribing meanwhile ended the connecting client's
    handler, and what that client then published went unread (58-74 of 480 lost, every run,
    before gateway/broker.py's `_Snapshots`)."""
    n, each = 80, 5
    listener = Client(broker.port)
    listener.subscribe("t/#")
    clients: list[mqtt.Client] = []
    lock = threading.Lock()

    def device(i: int) -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"race-{i}-{uuid.uuid4().hex[:6]}")
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        with lock:
            clients.append(c)
        c.publish(f"t/{i}/status", b"{}", qos=1, retain=True)  # a retained status, as devices do
        for k in range(each):
            c.subscribe(f"x/{i}/{k}", 1)  # a new topic in the table while others connect
            c.publish(f"t/{i}/{k}", b"x", qos=1)

    threads = [threading.Thread(target=device, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        want = {f"t/{i}/{k}" for i in range(n) for k in [*range(each), "status"]}

        def topics() -> set[str]:
            return {m.topic for m in list(listener.received)}

        with contextlib.suppress(AssertionError):
            wait_until(lambda: want <= topics(), timeout=20, what="every message")
        assert len(want - topics()) == 0, f"{len(want - topics())} of {len(want)} not delivered"
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
        listener.close()


def test_amqtt_does_not_redeliver_an_unacked_message_after_a_drop(
    broker: EmbeddedBroker,
) -> None:
    """A known amqtt 0.12 limitation (see gateway/broker.py): a QoS 1 message sent but not yet
    acknowledged when the connection drops is not sent again. If this fails, amqtt improved:
    update the module docstring."""
    client_id = "gw-" + uuid.uuid4().hex[:8]
    gw = Client(broker.port, client_id, clean=False, manual_ack=True)
    gw.subscribe("u/#")
    pub = Client(broker.port)
    pub.publish("u/1", b"unacked")
    wait_until(lambda: gw.payloads("u/"), 5, "the message")
    gw.client.loop_stop()
    sock = gw.client.socket()
    assert sock is not None
    sock.close()  # abrupt: no DISCONNECT, no PUBACK

    back = Client(broker.port, client_id, clean=False, manual_ack=True)
    try:
        assert back.session_present is True  # the session itself was kept
        time.sleep(1.5)
        assert back.payloads("u/") == []
    finally:
        back.close()
        pub.close()


# --- 5. the whole gateway on its embedded broker ----------------------------------------------


def test_gateway_pages_through_its_embedded_broker(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        _env_file=None,
        mqtt_url=None,
        mqtt_base=BASE,
        database_url=f"sqlite:///{tmp_path}/t.db",
        embedded_mqtt_port=port,
        http_port=0,
        log_level="WARNING",
    )
    gw = Gateway(settings)
    try:
        gw.start(wait_connected=5)
        assert gw.link.connected.is_set(), gw.link.last_error
        assert gw.broker is not None and gw.broker.port == port
        assert gw.health()["broker"]["embedded"] is True
        seed_home(gw.engine)

        mq = Mqtt(port, BASE)
        try:
            mq.client.publish(
                f"{BASE}/v1/devices/cb-1/events",
                json.dumps(
                    {"id": "press-1", "ts": int(time.time() * 1000), "type": "button.pressed"}
                ),
                qos=1,
            ).wait_for_publish(5)
            pages = mq.wait_for(lambda m: m["type"] == "page", timeout=10, count=2)
            assert sorted(p["_pager"] for p in pages) == ["pw1", "pw2"]
            assert {p.get("step") for p in pages} == {1}
        finally:
            mq.close()
    finally:
        gw.stop()
    assert bindable(port), "the embedded broker's port is still taken after gw.stop()"
