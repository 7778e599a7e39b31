"""The simulators against a real Mosquitto on 127.0.0.1 (the session's private broker).

Each test has its own topic base, so tests never see each other's traffic, and clears the
retained status messages it leaves behind.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import paho.mqtt.client as paho
import pytest

from devices.kinds import DeviceKind
from devices.parse import parse_event, parse_reply, parse_status, parse_telemetry
from devices.topics import Channel, device_topic, pager_topic
from simulators import mqtt
from simulators.community import plan, run
from simulators.devices import SimDevice
from simulators.pager import SimPager
from simulators.payloads import encode

HOST = "127.0.0.1"


class Listener:
    """A plain MQTT client that collects every message under `base` and can publish."""

    def __init__(self, base: str, port: int) -> None:
        self.base = base
        self.port = port
        self.messages: queue.Queue[tuple[str, bytes, bool, float]] = queue.Queue()
        self.retained: set[str] = set()
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.new_client(mqtt.unique_client_id("test-listener"))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        try:
            mqtt.start(
                self.client,
                HOST,
                port,
                timeout=5,
                on_connected=lambda c: c.subscribe(f"{base}/#", qos=1),
            )
        except mqtt.ConnectError as exc:
            pytest.fail(f"these tests need Mosquitto on {HOST}:{port}: {exc}")
        assert subscribed.wait(5)

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.payload and msg.topic.endswith("/status"):
            with self._lock:
                self.retained.add(msg.topic)
        self.messages.put((msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))

    def next(self, topic: str, timeout: float = 3.0) -> tuple[bytes, float] | None:
        """The next message on `topic` within `timeout` (others are dropped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, payload, _, at = self.messages.get(timeout=left)
            except queue.Empty:
                return None
            if got == topic:
                return payload, at
        return None

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        mqtt.wait_published(self.client.publish(topic, payload, qos=1, retain=retain))

    def close(self) -> None:
        for topic in sorted(self.retained):  # leave no retained messages behind
            self.publish(topic, b"", retain=True)
        mqtt.stop(self.client)


@pytest.fixture
def sim_base() -> str:
    return f"t{uuid4().hex[:8]}"


@pytest.fixture
def listener(sim_base: str, mosquitto: Any) -> Iterator[Listener]:
    lis = Listener(sim_base, mosquitto.port)
    yield lis
    lis.close()


def _page(alert_id: str) -> bytes:
    return encode(
        {
            "type": "page",
            "page_id": f"page-{alert_id}",
            "alert_id": alert_id,
            "ts": "2026-11-23T08:15:00+08:00",
            "priority": "P1",
            "kind": "call_button",
            "elder": {
                "name": "王秀英",
                "address": "幸福里社区 3号楼2单元502",
                "phone": "13800000000",
            },
            "text": "王秀英 一键呼叫",
            "step": 1,
            "reply_by": "2026-11-23T08:15:30+08:00",
        }
    )


def test_a_press_arrives_as_a_valid_event_after_the_online_status(
    listener: Listener, sim_base: str
) -> None:
    status_topic = device_topic(sim_base, "cb-001", Channel.STATUS)
    events_topic = device_topic(sim_base, "cb-001", Channel.EVENTS)
    with SimDevice("cb-001", "call_button", HOST, listener.port, sim_base, battery_pct=77) as dev:
        got = listener.next(status_topic)
        assert got is not None
        status = parse_status(got[0])
        assert status.online and status.fw == "sim-1.0" and status.battery_pct == 77
        dev.press(wait=True)
        got = listener.next(events_topic)
        assert got is not None
        event = parse_event(got[0], DeviceKind.CALL_BUTTON)
        assert event.type == "button.pressed" and event.press == "short"
        dev.telemetry(battery_pct=76, rssi_dbm=-60, qos=1, wait=True)
        got = listener.next(device_topic(sim_base, "cb-001", Channel.TELEMETRY))
        assert got is not None and parse_telemetry(got[0]).battery_pct == 76


def test_a_device_answers_a_command(listener: Listener, sim_base: str) -> None:
    with SimDevice("water-001", "water_sensor", HOST, listener.port, sim_base):
        command = {"id": "cmd-1", "ts": "2026-11-23T08:15:00+08:00", "type": "valve.close"}
        listener.publish(device_topic(sim_base, "water-001", Channel.COMMANDS), encode(command))
        got = listener.next(device_topic(sim_base, "water-001", Channel.EVENTS))
        assert got is not None
        result = parse_event(got[0], DeviceKind.WATER_SENSOR)
        assert result.type == "command.result" and result.command_id == "cmd-1" and result.ok


def test_the_last_will_fires_when_the_connection_drops(listener: Listener, sim_base: str) -> None:
    status_topic = device_topic(sim_base, "gas-001", Channel.STATUS)
    dev = SimDevice("gas-001", "gas_sensor", HOST, listener.port, sim_base)
    assert listener.next(status_topic) is not None  # online
    dev.go_offline(graceful=False)
    got = listener.next(status_topic, timeout=3)
    assert got is not None and json.loads(got[0]) == {"online": False}
    # It can come back, and a graceful offline says so itself.
    dev.connect()
    got = listener.next(status_topic)
    assert got is not None and json.loads(got[0])["online"] is True
    dev.go_offline(graceful=True)
    got = listener.next(status_topic)
    assert got is not None and json.loads(got[0]) == {"online": False}
    dev.close()


def test_a_pager_acks_a_page_after_its_delay(listener: Listener, sim_base: str) -> None:
    with SimPager("pager-w-01", HOST, listener.port, sim_base, reply_after=0.5) as pager:
        sent_at = time.monotonic()
        listener.publish(pager_topic(sim_base, "pager-w-01", Channel.PAGES), _page("alert-1"))
        received = pager.wait_for(lambda p: p.alert_id == "alert-1", timeout=3)
        assert received is not None and received.message.elder.name == "王秀英"
        got = listener.next(pager_topic(sim_base, "pager-w-01", Channel.REPLIES), timeout=3)
        assert got is not None
        reply = parse_reply(got[0])
        assert reply.alert_id == "alert-1" and reply.action == "ack"
        assert 0.45 <= got[1] - sent_at < 2.0


def test_a_pager_that_never_replies_stays_silent(listener: Listener, sim_base: str) -> None:
    with SimPager("pager-w-02", HOST, listener.port, sim_base, reply_after=None) as pager:
        listener.publish(pager_topic(sim_base, "pager-w-02", Channel.PAGES), _page("alert-2"))
        assert pager.wait_for(timeout=3) is not None
        replies = pager_topic(sim_base, "pager-w-02", Channel.REPLIES)
        assert listener.next(replies, timeout=1.0) is None
        assert pager.replies == []


def test_the_cli_presses_a_button(listener: Listener, sim_base: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simulators", "press", "--device", "cb-007", "--host", HOST,
         "--port", str(listener.port), "--base", sim_base],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = listener.next(device_topic(sim_base, "cb-007", Channel.EVENTS))
    assert got is not None
    assert parse_event(got[0], DeviceKind.CALL_BUTTON).type == "button.pressed"


def test_the_demo_community_runs_and_stops(listener: Listener, sim_base: str) -> None:
    community = plan(2, random_seed=3)
    lines: list[str] = []
    started = time.monotonic()
    stats = run(
        community,
        HOST,
        listener.port,
        sim_base,
        duration=2.0,
        seed=3,
        first_incident_after=0.2,
        incident_every=(0.5, 0.8),
        water_every_s=1.0,
        log_line=lines.append,
    )
    assert time.monotonic() - started < 8
    assert stats.incidents >= 2 and stats.events >= 2 and stats.telemetry >= 1
    topics = set()
    while not listener.messages.empty():
        topics.add(listener.messages.get_nowait()[0])
    assert device_topic(sim_base, "water-001", Channel.TELEMETRY) in topics
    assert any(t.endswith("/events") for t in topics)
    assert any("stopped" in line for line in lines)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_client_started_and_stopped_many_times_leaves_no_descriptor_open(
    listener: Listener,
) -> None:
    """paho 2's `loop_start()` opens a socket pair to wake its thread, which `loop_stop()`
    leaves open until the client is collected: two descriptors per stopped client, and a
    process starting thousands (the community demo, a test run) passed 1024, where paho's
    select() fails. Stopped every way the simulators stop a device's or pager's client
    (DISCONNECT, a dropped connection for the Last Will, a start with no CONNACK), a client
    keeps none, collected or not (kept here, as a caller may keep it)."""
    silent = socket.create_server((HOST, 0))  # accepts, never answers: no CONNACK
    accepted: list[socket.socket] = []
    kept: list[paho.Client] = []
    before = open_fds()
    try:
        for i in range(12):
            client = mqtt.new_client(mqtt.unique_client_id("test-fds"))
            kept.append(client)
            mqtt.start(client, HOST, listener.port, timeout=5)
            if i % 2:
                mqtt.stop(client)
            else:
                mqtt.kill(client)
        for _ in range(2):
            client = mqtt.new_client(mqtt.unique_client_id("test-fds"))
            kept.append(client)
            with pytest.raises(mqtt.ConnectError, match="no CONNACK"):
                mqtt.start(client, HOST, silent.getsockname()[1], timeout=0.2)
            accepted.append(silent.accept()[0])
        assert open_fds() - before - len(accepted) <= 2  # a stray one of the process's own
    finally:
        for s in accepted:
            s.close()
        silent.close()
