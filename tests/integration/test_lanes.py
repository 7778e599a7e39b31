"""SHOUWANG_LANES: an alarm-lane gateway and a telemetry-lane gateway on one Mosquitto and one
PostgreSQL (gateway/app.py). The alarm one takes events, status and pager replies; the telemetry
one takes readings, and pages what its rules raise from them through a link that subscribes to
nothing. Each press and each gas alarm is paged once; neither gateway sees the other's lane;
a device's last-seen time, written by both, never goes back. A gateway that ran with every lane
and is split keeps what its old session had queued, and no more.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway import tables as T
from gateway.app import Gateway
from tests.integration.test_rules import alerts_of, committed
from tests.support.alarm import Mqtt, seed_home, wait_until

pytestmark = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def received(gw: Gateway, channel: str) -> float:
    return float(gw.metrics.messages.labels(channel)._value.get())


def counted(gw: Gateway, want: dict[str, int]) -> dict[str, float]:
    """The messages the gateway received, by channel, once they are `want` (a batch is counted
    just after its commit, so a test that saw the commit waits a moment for the count; CI,
    2026-11-26). What it counted, after at most 5 s, for the assertion to show."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: all(received(gw, ch) == n for ch, n in want.items()), 5.0, "counts")
    return {ch: received(gw, ch) for ch in want}


def test_an_alarm_gateway_and_a_telemetry_gateway_split_the_messages_and_page_once(
    make_gateway: Callable[..., Gateway], engine: Any, mq: Mqtt, base: str
) -> None:
    seed_home(engine, steps=[(["w1"], 600)], responders=[("w1", "watcher", "pw1", "zh-CN")])
    later = int(time.time() * 1000) + 3_600_000  # heard by a gateway whose clock is ahead
    with engine.begin() as c:
        c.execute(update(T.devices).where(T.devices.c.id == "water-1").values(last_seen_at=later))
    alarm = make_gateway(lanes="alarm", mqtt_client_id=f"gwa-{base}")
    tel = make_gateway(lanes="telemetry", mqtt_client_id=f"gwt-{base}")
    assert [lk.lane for lk in alarm.links] == ["alarm"]
    assert [lk.lane for lk in tel.links] == ["alarm", "telemetry"]  # the first only publishes
    assert (alarm.health()["lanes"], tel.health()["lanes"]) == ("alarm", "telemetry")

    press = mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page" and m["kind"] == "call_button")
    mq.telemetry("water-1", flow_l=2.5, interval_s=300)
    mq.telemetry("gas-1", lel_pct=3.0, interval_s=300)
    # over the alarm level (a reading with the same time would be judged too, after it)
    mq.telemetry("gas-1", lel_pct=25.0, interval_s=300, ts=int(time.time() * 1000) + 5)
    [gas_page] = mq.wait_for(lambda m: m["type"] == "page" and m["kind"] == "gas")
    mq.status("water-1", online=True)
    wait_until(lambda: received(tel, "telemetry") == 3, what="the readings")
    wait_until(lambda: received(alarm, "status") == 1, what="the status")

    # The pager's reply to the gas page (the telemetry gateway's) is the alarm gateway's.
    mq.reply("pw1", gas_page["alert_id"], "ack")
    wait_until(
        lambda: (
            {a.kind: a.state for a in alerts_of(alarm)}
            == {"call_button": "open", "gas": "acknowledged"}
        ),
        what="the gas alert acknowledged",
    )
    assert committed(alarm, "cb-1", press)
    want_alarm = {"events": 1, "telemetry": 0, "replies": 1}
    assert counted(alarm, want_alarm) == want_alarm
    want_tel = {"events": 0, "status": 0, "replies": 0}
    assert counted(tel, want_tel) == want_tel
    assert len(mq.pages("pw1")) == 2, mq.pages("pw1")  # one for each alert, no more
    assert page["alert_id"] != gas_page["alert_id"]
    # The status (alarm gateway) and the reading (telemetry gateway, at its flush) came after
    # a later time another gateway had written: neither takes it back.
    tel.ingest._flush_devices()
    with engine.connect() as c:
        row = c.execute(select(T.devices).where(T.devices.c.id == "water-1")).one()
    assert row.online is True and row.last_seen_at == later


def test_a_gateway_split_into_lanes_keeps_what_its_old_session_queued_and_no_more(
    make_gateway: Callable[..., Gateway], engine: Any, mq: Mqtt, base: str
) -> None:
    """The gateway ran with every lane; it is split, the telemetry lane keeping its client id.
    A press queued in its old session while it was down is paged (by the telemetry-lane
    process, which takes what that session held), once; after that the old session is routed
    nothing, so the next press is the alarm lane's alone."""
    seed_home(engine, steps=[(["w1"], 600)], responders=[("w1", "watcher", "pw1", "zh-CN")])
    with engine.begin() as c:  # a second button in the home
        c.execute(
            T.devices.insert().values(
                id="cb-2", kind="call_button", elder_id="e1", created_at=int(time.time() * 1000)
            )
        )
    old = make_gateway(mqtt_client_id=f"gw-{base}")
    old.stop()  # its sessions stay with the broker
    queued = mq.event("cb-1", "button.pressed")
    time.sleep(0.3)  # in the old session's queue
    tel = make_gateway(lanes="telemetry", mqtt_client_id=f"gw-{base}")
    alarm = make_gateway(lanes="alarm", mqtt_client_id=f"gwa-{base}")
    [first] = mq.wait_for(lambda m: m["type"] == "page" and m["kind"] == "call_button")
    assert committed(tel, "cb-1", queued)
    assert counted(tel, {"events": 1}) == {"events": 1}
    mq.reply("pw1", first["alert_id"], "resolved")
    wait_until(lambda: alerts_of(alarm)[0].state == "resolved", what="the first alert resolved")

    second = mq.event("cb-2", "button.pressed")
    pages = mq.wait_for(lambda m: m["type"] == "page" and m["kind"] == "call_button", count=2)
    assert len({p["alert_id"] for p in pages}) == 2
    wait_until(lambda: committed(alarm, "cb-2", second), what="the second press")
    assert counted(alarm, {"events": 1}) == {"events": 1}
    assert counted(tel, {"events": 1}) == {"events": 1}
    time.sleep(0.3)
    assert len(mq.pages("pw1")) == 2, mq.pages("pw1")
