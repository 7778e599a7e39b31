"""Helpers for alarm-path tests: seeding a home, an MQTT collector of pages, a fake clock."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, insert

from gateway import tables as T
from gateway.mqtt import close_wakeup_pair


class FakeClock:
    """Real time plus an offset the test moves forward (escalations fire without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def unique_base() -> str:
    return "t" + uuid.uuid4().hex[:10]


def seed_home(
    engine: Engine,
    n: int = 1,
    steps: list[tuple[list[str], int]] | None = None,
    responders: list[tuple[str, str, str | None, str]] | None = None,
) -> None:
    """Elders e1..en, each with cb-i, gas-i, water-i; responders (id, role, pager, language);
    every elder gets the plan `steps` [(responder ids, ack timeout s), ...]."""
    now = int(time.time() * 1000)
    responders = responders or [
        ("w1", "watcher", "pw1", "zh-CN"),
        ("w2", "watcher", "pw2", "zh-CN"),
        ("v1", "volunteer", "pv1", "zh-CN"),
        ("s1", "staff", "ps1", "en"),
    ]
    steps = steps if steps is not None else [(["w1", "w2"], 30), (["v1"], 30), (["s1"], 30)]
    with engine.begin() as c:
        for rid, role, pager, lang in responders:
            c.execute(
                insert(T.responders).values(
                    id=rid,
                    name=f"R-{rid}",
                    role=role,
                    pager_id=pager,
                    language=lang,
                    phone="13900000000",
                    created_at=now,
                )
            )
        for i in range(1, n + 1):
            c.execute(
                insert(T.elders).values(
                    id=f"e{i}",
                    name=f"老人{i}",
                    address=f"幸福里{i}号楼",
                    phone="13800000000",
                    created_at=now,
                )
            )
            for kind, prefix in (
                ("call_button", "cb"),
                ("gas_sensor", "gas"),
                ("water_sensor", "water"),
            ):
                c.execute(
                    insert(T.devices).values(
                        id=f"{prefix}-{i}", kind=kind, elder_id=f"e{i}", created_at=now
                    )
                )
            if steps:
                c.execute(
                    insert(T.escalation_plans).values(
                        elder_id=f"e{i}",
                        steps=[{"responder_ids": r, "ack_timeout_s": t} for r, t in steps],
                        updated_at=now,
                    )
                )


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Mqtt:
    """A device-and-pager stand-in: publishes as devices/pagers, collects every page and notice."""

    def __init__(self, port: int, base: str, client_id: str | None = None) -> None:
        self.base = base
        self.received: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or "tc-" + uuid.uuid4().hex[:8],
            protocol=mqtt.MQTTv311,
        )
        self.client.on_socket_open = _nodelay
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: (
            c.subscribe(f"{base}/v1/pagers/+/pages", 1),
            connected.set(),
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(CONNECT_WAIT_S):
            self.close()  # not left running behind the failure
            raise AssertionError("test MQTT client could not connect")
        time.sleep(0.1)  # let the subscription settle

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        body["_pager"] = msg.topic.split("/")[3]
        body["_at"] = time.monotonic()
        with self._cond:
            self.received.append(body)
            self._cond.notify_all()

    def event(self, device: str, type_: str, msg_id: str | None = None, **fields: Any) -> str:
        msg_id = msg_id or uuid.uuid4().hex[:12]
        body = {"id": msg_id, "ts": int(time.time() * 1000), "type": type_, **fields}
        self.raw(f"{self.base}/v1/devices/{device}/events", json.dumps(body).encode())
        return msg_id

    def telemetry(self, device: str, msg_id: str | None = None, **readings: Any) -> None:
        body = {"id": msg_id or uuid.uuid4().hex[:12], "ts": int(time.time() * 1000), **readings}
        self.raw(f"{self.base}/v1/devices/{device}/telemetry", json.dumps(body).encode())

    def status(self, device: str, online: bool) -> None:
        self.raw(
            f"{self.base}/v1/devices/{device}/status",
            json.dumps({"online": online}).encode(),
            retain=True,
        )

    def reply(self, pager: str, alert_id: str, action: str, msg_id: str | None = None) -> None:
        body = {
            "id": msg_id or uuid.uuid4().hex[:12],
            "ts": int(time.time() * 1000),
            "alert_id": alert_id,
            "action": action,
        }
        self.raw(f"{self.base}/v1/pagers/{pager}/replies", json.dumps(body).encode())

    def raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)

    def pages(self, pager: str | None = None, type_: str = "page") -> list[dict[str, Any]]:
        with self._cond:
            return [
                m
                for m in self.received
                if m["type"] == type_ and (pager is None or m["_pager"] == pager)
            ]

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0, count: int = 1
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.received if pred(m)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m["type"], m["_pager"], m.get("step")) for m in self.received]
                    raise AssertionError(
                        f"waited {timeout}s for {count} matching message(s); got {len(found)}; "
                        f"all received: {seen}"
                    )
                self._cond.wait(left)

    def close(self) -> None:
        # DISCONNECT first: it wakes paho's loop, which then ends at once; stopped first, the
        # loop sleeps out its 1 s select() before it sees the stop (0.6-1 s per test).
        self.client.disconnect()
        self.client.loop_stop()
        close_wakeup_pair(self.client)


# How long a test waits for a client or gateway to connect to its broker: generous, as two
# workers, a browser and the database share two cores (a connect is ~1 ms when idle).
CONNECT_WAIT_S = 15.0


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
