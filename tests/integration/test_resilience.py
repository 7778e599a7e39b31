"""Nothing accepted is lost: the gateway killed (SIGKILL) in the middle of an escalation, a press
sent while the gateway is down, the broker restarted and the database restarted mid-stream."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from gateway import tables as T
from gateway.app import Gateway
from gateway.db import make_engine, migrate
from tests.support.alarm import Mqtt, seed_home, wait_until
from tests.support.pgserver import PrivatePostgres, pg_bin
from tests.support.process import GatewayProcess
from tests.support.services import require


@pytest.fixture
def gateway_process(mosquitto: Any, db_url: str, base: str, tmp_path: Path):
    procs: list[GatewayProcess] = []

    def make() -> GatewayProcess:
        p = GatewayProcess(
            {
                "SHOUWANG_MQTT_URL": mosquitto.url,
                "SHOUWANG_DATABASE_URL": db_url,
                "SHOUWANG_MQTT_BASE": base,
                "SHOUWANG_MQTT_CLIENT_ID": f"gw-{base}",
            },
            tmp_path / "gateway.log",
        )
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.stop()


def test_gateway_killed_mid_escalation_goes_on_after_restart(gateway_process, engine, mq: Mqtt):
    seed_home(engine, steps=[(["w1"], 5), (["v1"], 5), (["s1"], 5)])
    gw = gateway_process()
    gw.start()
    mq.event("cb-1", "button.pressed")
    [step1] = mq.wait_for(lambda m: m["_pager"] == "pw1")
    gw.kill()
    time.sleep(6)  # step 1's deadline passes while the gateway is dead
    assert not mq.pages("pv1")
    gw.start()
    [step2] = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=5)
    assert step2["alert_id"] == step1["alert_id"] and step2["step"] == 2
    [step3] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=8)
    assert step3["step"] == 3
    # Pages are at least once: a page resent after the kill carries the same page_id.
    page_ids = [p["page_id"] for p in mq.pages()]
    assert len(set(page_ids)) == 3, page_ids


def test_press_sent_while_the_gateway_is_down_is_paged_when_it_is_back(
    gateway_process, engine, mq: Mqtt
):
    seed_home(engine)
    gw = gateway_process()
    gw.start()  # the gateway's persistent session now exists on the broker
    gw.kill()
    mq.event("cb-1", "button.pressed")
    time.sleep(0.5)
    assert mq.pages() == []
    gw.start()
    pages = mq.wait_for(lambda m: m["type"] == "page", timeout=5, count=2)
    assert {p["_pager"] for p in pages} == {"pw1", "pw2"}


def test_sigterm_is_a_clean_shutdown(gateway_process, engine, mq: Mqtt, base: str):
    seed_home(engine)
    gw = gateway_process()
    gw.start()
    status: list[dict[str, Any]] = []
    mq.client.message_callback_add(
        f"{base}/v1/gateways/+/status", lambda c, u, m: status.append(json.loads(m.payload))
    )
    mq.client.subscribe(f"{base}/v1/gateways/+/status", 1)
    wait_until(lambda: status and status[-1]["online"] is True, what="birth message")
    assert gw.terminate() == 0
    wait_until(lambda: status[-1]["online"] is False, what="offline status on shutdown")
    assert "stopped" in gw.tail()


class StreamPublisher:
    """A device fleet on one MQTT 5 persistent session; retries what the broker has not acked,
    as a real device does."""

    def __init__(self, port: int, base: str) -> None:
        self.base = base
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="fleet-" + uuid.uuid4().hex[:6],
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(100)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        self.ids: list[str] = []

    def run(self, n: int, per_s: float, device: str = "water-1") -> None:
        pending: list[tuple[str, bytes, Any]] = []
        for i in range(n):
            msg_id = f"m{i:06d}"
            body = json.dumps(
                {"id": msg_id, "ts": int(time.time() * 1000), "flow_l": 0.5, "interval_s": 60}
            ).encode()
            info = self.client.publish(f"{self.base}/v1/devices/{device}/telemetry", body, qos=1)
            pending.append((msg_id, body, info))
            self.ids.append(msg_id)
            time.sleep(1 / per_s)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            retry = []
            for msg_id, body, info in pending:
                if info.rc == 0 and info.is_published():
                    continue
                if info.rc != 0 or time.monotonic() > deadline - 50:
                    info = self.client.publish(
                        f"{self.base}/v1/devices/{device}/telemetry", body, qos=1
                    )
                retry.append((msg_id, body, info))
            pending = retry
            if pending:
                time.sleep(0.2)
        assert not pending, f"{len(pending)} messages never acknowledged by the broker"

    def close(self) -> None:
        # DISCONNECT first: it wakes paho's loop, which then ends at once; stopped first, the
        # loop sleeps out its 1 s select() before it sees the stop (0.6-1 s per test).
        self.client.disconnect()
        self.client.loop_stop()


def telemetry_ids(engine: Any) -> set[str]:
    with engine.connect() as c:
        return {
            r.msg_id
            for r in c.execute(
                select(T.messages.c.msg_id).where(T.messages.c.channel == "telemetry")
            )
        }


@pytest.mark.mosquitto
def test_broker_restart_mid_stream_loses_nothing(make_gateway, engine, mosquitto, base):
    seed_home(engine)
    gw = make_gateway()
    fleet = StreamPublisher(mosquitto.port, base)
    try:
        t = threading.Thread(target=fleet.run, args=(1500, 500.0))
        t.start()
        time.sleep(1.0)
        mosquitto.restart()
        t.join(90)
        assert not t.is_alive()
        wait_until(
            lambda: len(telemetry_ids(gw.engine)) >= 1500,
            timeout=30,
            what="every message committed",
        )
        assert telemetry_ids(gw.engine) == set(fleet.ids)
    finally:
        fleet.close()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # its database is its own server
def test_database_restart_mid_stream_loses_nothing(mosquitto, settings_for, base, tmp_path):
    if pg_bin() is None:
        require("postgresql", "pg_ctl is needed to run a private PostgreSQL server")
    pg = PrivatePostgres()
    pg.start()
    gw = None
    fleet = None
    try:
        engine = make_engine(pg.url)
        migrate(engine)
        seed_home(engine)
        engine.dispose()
        gw = Gateway(settings_for(database_url=pg.url))
        gw.start(wait_connected=5)
        mq = Mqtt(mosquitto.port, base)
        fleet = StreamPublisher(mosquitto.port, base)
        t = threading.Thread(target=fleet.run, args=(1500, 500.0))
        t.start()
        time.sleep(1.0)
        pg.restart("immediate")  # a crash of the database server, connections cut
        mq.event("cb-1", "button.pressed")  # an alarm while the database comes back
        t.join(90)
        assert not t.is_alive()
        wait_until(
            lambda: len(telemetry_ids(gw.engine)) >= 1500,
            timeout=60,
            what="every message committed after the database restart",
        )
        assert telemetry_ids(gw.engine) == set(fleet.ids)
        mq.wait_for(lambda m: m["type"] == "page", timeout=30, count=2)
        assert gw.metrics.db_errors._value.get() >= 1, "the restart was not noticed"
        mq.close()
    finally:
        if fleet:
            fleet.close()
        if gw:
            gw.stop()
        pg.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_locked_by_another_writer_loses_nothing(
    make_gateway, engine, mosquitto, base, db_url
):
    seed_home(engine)
    gw = make_gateway()
    fleet = StreamPublisher(mosquitto.port, base)
    blocker = make_engine(db_url)
    try:
        t = threading.Thread(target=fleet.run, args=(1000, 500.0))
        t.start()
        time.sleep(0.5)
        with blocker.begin() as c:  # BEGIN IMMEDIATE: the gateway's writes wait
            c.execute(select(func.count()).select_from(T.messages))
            time.sleep(2.0)
        t.join(60)
        wait_until(lambda: len(telemetry_ids(gw.engine)) >= 1000, timeout=30, what="all committed")
        assert telemetry_ids(gw.engine) == set(fleet.ids)
    finally:
        fleet.close()
        blocker.dispose()
