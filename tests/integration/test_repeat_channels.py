"""A repeat is what MQTT redelivery makes: the same device, the same channel, the same id. A
device that reuses a reading's id for an alarm is out of contract, but its alarm is no
redelivery of the reading and must not be dropped as one. Real Mosquitto, SQLite and
PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, insert, select

from gateway import tables as T
from gateway.app import Gateway
from gateway.tables_telemetry import telemetry_rollups
from tests.support.alarm import Mqtt, seed_home, wait_until


def claimed(gw: Any, device: str, msg_id: str, channel: str) -> bool:
    m = T.messages.c
    q = select(m.msg_id).where(m.source_id == device, m.msg_id == msg_id, m.channel == channel)
    with gw.engine.connect() as c:
        return c.execute(q).first() is not None


def gas_alerts(gw: Any) -> list[Any]:
    with gw.engine.connect() as c:
        return c.execute(select(T.alerts).where(T.alerts.c.kind == "gas")).all()


def quarantined(gw: Any) -> int:
    with gw.engine.connect() as c:
        return c.execute(select(func.count()).select_from(T.quarantine)).scalar_one()


def test_a_gas_alarm_reusing_a_readings_id_opens_its_alert(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    gw = make_gateway()
    mq.telemetry("gas-1", msg_id="42", lel_pct=1)
    wait_until(lambda: claimed(gw, "gas-1", "42", "telemetry"), what="the reading committed")

    mq.event("gas-1", "gas.alarm", msg_id="42", gas="lpg", lel_pct=40)
    pages = mq.wait_for(lambda m: m["type"] == "page" and m["kind"] == "gas", count=2)
    assert {(p["_pager"], p["priority"]) for p in pages} == {("pw1", "P1"), ("pw2", "P1")}
    [alert] = gas_alerts(gw)
    assert alert.state == "open" and alert.trigger_msg_id == "42"
    assert gw.metrics.repeated._value.get() == 0
    assert quarantined(gw) == 0

    # True redeliveries (same channel, same id) still do nothing, on either channel.
    mq.event("gas-1", "gas.alarm", msg_id="42", gas="lpg", lel_pct=40)
    mq.telemetry("gas-1", msg_id="42", lel_pct=1)
    wait_until(lambda: gw.metrics.repeated._value.get() == 2, what="two repeats counted")
    time.sleep(0.2)
    assert len(gas_alerts(gw)) == 1
    assert len(mq.pages()) == 2
    assert quarantined(gw) == 0
    with gw.engine.connect() as c:
        r = telemetry_rollups.c
        q = select(r.count).where(r.device_id == "gas-1", r.field == "lel_pct")
        assert c.execute(q).scalar_one() == 1  # the reading counted once


def test_a_reading_reusing_an_alarms_id_is_taken(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    gw = make_gateway()
    mq.event("gas-1", "gas.alarm", msg_id="7", gas="natural_gas", lel_pct=30)
    mq.wait_for(lambda m: m["type"] == "page" and m["kind"] == "gas", count=2)
    mq.telemetry("gas-1", msg_id="7", lel_pct=2)
    wait_until(lambda: claimed(gw, "gas-1", "7", "telemetry"), what="the reading committed")
    assert gw.metrics.repeated._value.get() == 0
    with gw.engine.connect() as c:
        r = telemetry_rollups.c
        q = select(r.count).where(r.device_id == "gas-1", r.field == "lel_pct")
        assert c.execute(q).scalar_one() == 1


def test_pruning_a_readings_id_keeps_the_event_of_the_same_id(settings_for, engine):
    seed_home(engine)
    old = int(time.time() * 1000) - 49 * 3_600_000  # past the default 48 h
    key = {"source": "d", "source_id": "gas-1", "msg_id": "42", "received_at": old}
    with engine.begin() as c:
        c.execute(
            insert(T.messages),
            [{**key, "channel": "telemetry"}, {**key, "channel": "events", "type": "gas.alarm"}],
        )
    gw = Gateway(settings_for())  # not started: only its worker's housekeeping is used
    try:
        gw.ingest._prune()
    finally:
        gw.engine.dispose()
    with engine.connect() as c:
        left = c.execute(select(T.messages.c.channel)).scalars().all()
    assert left == ["events"]  # the alarm's record, and its repeat check, stay for good
