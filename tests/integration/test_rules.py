"""The stateful rules wired end to end (gateway/ruling.py), on SQLite and PostgreSQL with a real
Mosquitto: no water used and water running from water telemetry, gas over the alarm level with
the valve closed and a failed close escalated, hysteresis, silent devices, a building's power cut
as one incident for staff, an elder away, a muted device, the suppression API refusing bad input,
and an elder's own water thresholds (set, refused, removed). Time moves with a FakeClock
(readings carry its time); every wait is bounded."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from gateway import tables as T
from gateway.api import create_app
from gateway.tables_care import audit_log
from gateway.tables_rules import elder_water_rules
from tests.integration.test_api import serving
from tests.integration.test_station_scope import register
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

ADMIN = "admin-rules-test-token"
QUIET = 1.5  # a tick poll (1 s) and a batch: long enough for a page that should not come
ZONE = ZoneInfo("Asia/Shanghai")
MIN = 60


# --- helpers --------------------------------------------------------------------------------------


def at_local(clock: FakeClock, hour: int, minute: int = 0) -> None:
    """Set the fake clock to tomorrow at hour:minute, Asia/Shanghai (the default timezone)."""
    day = datetime.now(ZONE).date() + timedelta(days=1)
    target = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE).timestamp()
    clock.offset = target - time.time()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


class Commands:
    """A device's side of `<base>/v1/devices/+/commands`: every command the gateway sends."""

    def __init__(self, port: int, base: str) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="cmd-" + uuid.uuid4().hex[:8]
        )
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            f"{base}/v1/devices/+/commands", 1
        )
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(5), "commands client could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.got.append((msg.topic, json.loads(msg.payload)))
            self._cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.got) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"waited {timeout}s for {count} command(s): {self.got}")
                self._cond.wait(left)
            return list(self.got)

    def close(self) -> None:
        # DISCONNECT first: it wakes paho's loop, which then ends at once; stopped first, the
        # loop sleeps out its 1 s select() before it sees the stop (0.6-1 s per test).
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gw(make_gateway: Callable[..., Any], clock: FakeClock) -> Any:
    return make_gateway(clock=clock, admin_token=ADMIN)


@pytest.fixture
def api(gw: Any) -> Iterator[httpx.Client]:
    with (
        serving(create_app(gw.runtime)) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10.0
        ) as client,
    ):
        yield client


@pytest.fixture
def commands(mosquitto: Any, base: str) -> Iterator[Commands]:
    c = Commands(mosquitto.port, base)
    yield c
    c.close()


def ok(resp: Any, code: int = 200) -> Any:
    assert resp.status_code == code, resp.text
    return resp.json() if resp.content else None


def committed(gw: Any, device: str, msg_id: str) -> bool:
    with gw.engine.connect() as c:
        return (
            c.execute(
                select(T.messages.c.msg_id).where(
                    T.messages.c.source_id == device, T.messages.c.msg_id == msg_id
                )
            ).first()
            is not None
        )


def reading(mq: Mqtt, gw: Any, clock: FakeClock, device: str, **values: Any) -> None:
    """A telemetry message stamped with the fake clock, waited for until it is committed (so
    the gateway's `now` is the reading's time)."""
    msg_id = uuid.uuid4().hex[:12]
    body = {"id": msg_id, "ts": int(clock() * 1000), **values}
    mq.raw(f"{mq.base}/v1/devices/{device}/telemetry", json.dumps(body).encode())
    wait_until(lambda: committed(gw, device, msg_id), timeout=5, what=f"reading {msg_id}")


def event(mq: Mqtt, gw: Any, clock: FakeClock, device: str, type_: str, **fields: Any) -> None:
    msg_id = uuid.uuid4().hex[:12]
    body = {"id": msg_id, "ts": int(clock() * 1000), "type": type_, **fields}
    mq.raw(f"{mq.base}/v1/devices/{device}/events", json.dumps(body).encode())
    wait_until(lambda: committed(gw, device, msg_id), timeout=5, what=f"event {msg_id}")


def alerts_of(gw: Any, kind: str | None = None) -> list[Any]:
    q = select(T.alerts).order_by(T.alerts.c.created_at)
    if kind is not None:
        q = q.where(T.alerts.c.kind == kind)
    with gw.engine.connect() as c:
        return list(c.execute(q).all())


def timeline(gw: Any, alert_id: str) -> list[Any]:
    with gw.engine.connect() as c:
        return list(
            c.execute(
                select(T.alert_events)
                .where(T.alert_events.c.alert_id == alert_id)
                .order_by(T.alert_events.c.id)
            ).all()
        )


def types(gw: Any, alert_id: str) -> list[str]:
    return [e.type for e in timeline(gw, alert_id)]


def kinds_paged(mq: Mqtt) -> list[str]:
    return [p["kind"] for p in mq.pages()]


def dry_day(mq: Mqtt, gw: Any, clock: FakeClock, until_hour: int, every_min: int = 30) -> None:
    """Water meter reports with no water used, from now until `until_hour` local time."""
    total = 1234.5
    while True:
        reading(mq, gw, clock, "water-1", flow_l=0.0, interval_s=every_min * 60, total_l=total)
        if datetime.fromtimestamp(clock(), ZONE).hour >= until_hour:
            return
        clock.advance(every_min * MIN)


# --- water ----------------------------------------------------------------------------------------


def test_no_water_use_over_the_window_opens_an_alert_and_water_use_is_recorded(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    at_local(clock, 6)
    dry_day(mq, gw, clock, until_hour=17)  # 06:00 .. 17:00: 11 hours of daytime, no water
    time.sleep(QUIET)
    assert "no_water_use" not in kinds_paged(mq), "paged before 12 hours of daytime"
    clock.advance(30 * MIN)
    reading(mq, gw, clock, "water-1", flow_l=0.0, interval_s=1800, total_l=1234.5)  # 17:30
    time.sleep(QUIET)
    assert "no_water_use" not in kinds_paged(mq)
    clock.advance(30 * MIN)
    reading(mq, gw, clock, "water-1", flow_l=0.0, interval_s=1800, total_l=1234.5)  # 18:00
    [page] = mq.wait_for(lambda m: m["kind"] == "no_water_use", timeout=5)
    assert (page["_pager"], page["priority"]) == ("pw1", "P2")
    [alert] = alerts_of(gw, "no_water_use")
    opened = timeline(gw, alert.id)[0]
    assert opened.type == "opened" and opened.detail["rule"] == "fixed_window"
    assert "0.0 L in the last 12h00 of daytime" in opened.detail["detail"]

    # Water used again: recorded on the alert, which stays for a person to resolve.
    clock.advance(10 * MIN)
    reading(mq, gw, clock, "water-1", flow_l=6.0, interval_s=600, total_l=1240.5)
    wait_until(lambda: "water_used_again" in types(gw, alert.id), what="water used again")
    assert alerts_of(gw, "no_water_use")[0].state == "open"
    assert len(alerts_of(gw, "no_water_use")) == 1

    # Resolved as a false alarm: the day is learned from after all (water.include_day).
    ok(api.post(f"/api/v1/alerts/{alert.id}/resolve", json={"outcome": "false_alarm"}))
    learned = [e for e in timeline(gw, alert.id) if e.type == "learned_again"]
    assert (
        learned
        and learned[0].detail["day"] == datetime.fromtimestamp(clock(), ZONE).date().isoformat()
    )


def water_due(gw: Any, device: str) -> int | None:
    with gw.engine.connect() as c:
        return c.execute(
            select(T.rule_states.c.due_at).where(
                T.rule_states.c.key == device, T.rule_states.c.rule == "water"
            )
        ).scalar_one()


def test_the_tick_looks_at_a_silent_home_when_the_rule_can_first_fire(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    at_local(clock, 6)
    first = clock()  # the first report: the fixed rule's 12 hours of daytime end at 18:00
    dry_day(mq, gw, clock, until_hour=11)
    # 11:00: 18:00 is after the data would go stale (45 min without a report): no look is
    # planned, and the next report plans again (water.next_check)
    assert water_due(gw, "water-1") is None
    clock.advance(30 * MIN)
    dry_day(mq, gw, clock, until_hour=17)
    clock.advance(30 * MIN)
    reading(mq, gw, clock, "water-1", flow_l=0.0, interval_s=1800, total_l=1234.5)  # 17:30
    due = water_due(gw, "water-1")
    assert due is not None and abs(due - (first + 12 * 3600) * 1000) < 5_000, due
    clock.advance(29 * MIN)  # no report: the tick alone finds the silence
    time.sleep(QUIET)
    assert "no_water_use" not in kinds_paged(mq)
    clock.advance(1 * MIN)
    mq.wait_for(lambda m: m["kind"] == "no_water_use", timeout=5)
    [alert] = alerts_of(gw, "no_water_use")
    assert due <= alert.created_at <= due + 5_000
    assert water_due(gw, "water-1") is None  # an open episode: nothing until water is used


def test_continuous_flow_for_two_hours_opens_water_running(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    at_local(clock, 10)
    # 1 L/min in every report of 15 minutes, the first covering 09:45-10:00; by the report at
    # 11:30 the water has run for 1 h 45 min
    for _ in range(7):
        reading(mq, gw, clock, "water-1", flow_l=15.0, interval_s=900)
        clock.advance(15 * MIN)
    time.sleep(QUIET)
    assert "water_running" not in kinds_paged(mq), "paged before the 2-hour window"
    reading(mq, gw, clock, "water-1", flow_l=15.0, interval_s=900)  # 11:45: 2 hours running
    [page] = mq.wait_for(lambda m: m["kind"] == "water_running", timeout=5)
    assert page["priority"] == "P2"
    [alert] = alerts_of(gw, "water_running")
    assert timeline(gw, alert.id)[0].detail["rule"] == "continuous_flow"
    clock.advance(15 * MIN)
    reading(mq, gw, clock, "water-1", flow_l=0.0, interval_s=900)  # the tap is closed
    wait_until(lambda: "flow_stopped" in types(gw, alert.id), what="flow stopped recorded")
    assert len(alerts_of(gw)) == 1


def test_a_water_running_alert_resolved_while_the_water_runs_opens_again_a_window_later(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    """A resolution is not a mute: the tap still running a whole window after the resolution
    opens a new alert (not at once: someone has just looked)."""
    seed_home(engine, steps=[(["w1"], 3600)])
    ok(api.put("/api/v1/elders/e1/water-rules", json={"running_window_min": 15}))

    def flowing() -> None:  # 8 L in 5 minutes
        clock.advance(5 * MIN)
        reading(mq, gw, clock, "water-1", flow_l=8.0, interval_s=300)

    for _ in range(3):  # running since 5 minutes before the first report: 15 minutes
        flowing()
    [first] = alerts_of(gw, "water_running")
    mq.wait_for(lambda m: m["kind"] == "water_running", timeout=5)
    ok(api.post(f"/api/v1/alerts/{first.id}/resolve", json={"outcome": "real"}))
    for _ in range(2):  # 10 minutes after the resolution: still the one alert
        flowing()
        assert [a.id for a in alerts_of(gw, "water_running")] == [first.id]
    flowing()  # 15 minutes after it
    old, new = alerts_of(gw, "water_running")
    assert (old.id, old.state, new.state) == (first.id, "resolved", "open")
    opened = timeline(gw, new.id)[0]
    assert opened.detail["rule"] == "continuous_flow" and "closed at" in opened.detail["detail"]
    mq.wait_for(lambda m: m.get("kind") == "water_running" and m["alert_id"] == new.id, timeout=5)


def test_a_no_water_alert_resolved_while_still_dry_opens_again_a_window_later(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    """Someone checked the elder and resolved the alert; the meter still counts no water:
    a whole window (one hour of daytime here) after the resolution the alert opens again."""
    seed_home(engine, steps=[(["w1"], 3600)])
    ok(api.put("/api/v1/elders/e1/water-rules", json={"fixed_window_h": 1, "learn": False}))
    at_local(clock, 8)

    def dry() -> None:
        reading(mq, gw, clock, "water-1", flow_l=0.0, interval_s=900, total_l=1234.5)

    for _ in range(4):  # 08:00 .. 08:45
        dry()
        clock.advance(15 * MIN)
    dry()  # 09:00: an hour of daytime without water
    mq.wait_for(lambda m: m["kind"] == "no_water_use", timeout=5)
    [first] = alerts_of(gw, "no_water_use")
    ok(api.post(f"/api/v1/alerts/{first.id}/resolve", json={"outcome": "real"}))
    for _ in range(3):  # 45 minutes after the resolution: still the one alert
        clock.advance(15 * MIN)
        dry()
        assert [a.id for a in alerts_of(gw, "no_water_use")] == [first.id]
    clock.advance(15 * MIN)  # an hour after it
    dry()
    wait_until(lambda: len(alerts_of(gw, "no_water_use")) == 2, what="the alert again")
    old, new = alerts_of(gw, "no_water_use")
    assert (old.id, old.state, new.state) == (first.id, "resolved", "open")
    assert timeline(gw, new.id)[0].detail["rule"] == "fixed_window"


def test_a_water_running_alert_re_armed_under_a_mute_is_held_once_and_opened_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    """The tap still runs after its alert was resolved, and the sensor is then muted: the one
    raise a window after the resolution is held by the mute once, not again at every reading
    (each would have been released as one more alert or join at the mute's end)."""
    seed_home(engine, steps=[(["w1"], 3600)])
    ok(api.put("/api/v1/elders/e1/water-rules", json={"running_window_min": 15}))

    def flowing() -> None:  # 8 L in 5 minutes
        clock.advance(5 * MIN)
        reading(mq, gw, clock, "water-1", flow_l=8.0, interval_s=300)

    for _ in range(3):
        flowing()
    [first] = alerts_of(gw, "water_running")
    ok(api.post(f"/api/v1/alerts/{first.id}/resolve", json={"outcome": "real"}))
    mute = {"reason": "valve repair", "until": iso(clock() + 3600)}
    ok(api.post("/api/v1/devices/water-1/mutes", json=mute), 201)
    for _ in range(8):  # 40 more minutes of running water: held once, at 15
        flowing()
    held = ok(api.get("/api/v1/rule-events", params={"type": "suppressed"}))
    assert [(h["kind"], h["reason"]) for h in held] == [("water_running", "continuous_flow")]
    assert [a.id for a in alerts_of(gw, "water_running")] == [first.id]

    clock.advance(21 * MIN)  # the mute is over and the water still runs: one new alert
    mq.wait_for(lambda m: m.get("kind") == "water_running" and m["alert_id"] != first.id)
    old, new = alerts_of(gw, "water_running")
    [released] = wait_until(
        lambda: [
            h
            for h in ok(api.get("/api/v1/rule-events", params={"type": "suppressed"}))
            if h["released_at"]
        ],
        what="the held raise released",
    )
    assert (old.id, released["alert_id"], new.state) == (first.id, new.id, "open")
    time.sleep(QUIET)
    assert types(gw, new.id).count("opened") == 1 and len(alerts_of(gw, "water_running")) == 2


# --- gas ------------------------------------------------------------------------------------------


def test_gas_over_the_alarm_level_pages_p1_closes_the_valve_and_a_failed_close_escalates(
    engine: Any,
    gw: Any,
    api: httpx.Client,
    mq: Mqtt,
    clock: FakeClock,
    commands: Commands,
) -> None:
    seed_home(engine)  # steps: w1+w2 -> v1 -> s1, 30 s each
    dev = ok(api.patch("/api/v1/devices/gas-1", json={"valve_device_id": "gas-1"}))
    assert dev["valve_device_id"] == "gas-1" and dev["building"] is None
    reading(mq, gw, clock, "gas-1", lel_pct=3.0, co_ppm=1.0)
    time.sleep(QUIET)
    assert not mq.pages() and not commands.got
    clock.advance(30)
    reading(mq, gw, clock, "gas-1", lel_pct=25.0)
    pages = mq.wait_for(lambda m: m["kind"] == "gas", count=2, timeout=3)
    assert {p["_pager"] for p in pages} == {"pw1", "pw2"}
    assert {p["priority"] for p in pages} == {"P1"}
    [(topic, cmd)] = commands.wait(1)
    assert topic == f"{mq.base}/v1/devices/gas-1/commands"
    assert cmd["type"] == "valve.close" and cmd["id"] and cmd["ts"].endswith("+08:00")
    [alert] = alerts_of(gw, "gas")
    assert alert.priority == "P1"
    sent = [e for e in timeline(gw, alert.id) if e.type == "command_sent"]
    assert sent and sent[0].detail["command_id"] == cmd["id"]
    assert not mq.pages("pv1") and not mq.pages("ps1")

    # The valve answers that it could not close: everyone of the plan is paged at once.
    event(mq, gw, clock, "gas-1", "command.result", command_id=cmd["id"], ok=False, detail="stuck")
    mq.wait_for(lambda m: m["_pager"] == "pv1" and m["kind"] == "gas", timeout=3)
    mq.wait_for(lambda m: m["_pager"] == "ps1" and m["kind"] == "gas", timeout=3)
    kinds = types(gw, alert.id)
    assert "command_result" in kinds and "valve_close_failed" in kinds
    [esc] = [e for e in timeline(gw, alert.id) if e.type == "escalated"]
    assert esc.detail["to"] == "all" and esc.detail["reason"] == "valve_close_failed"
    with gw.engine.connect() as c:
        row = c.execute(select(T.commands)).one()
    assert (row.device_id, row.id, row.result_ok, row.result_detail) == (
        "gas-1",
        cmd["id"],
        False,
        "stuck",
    )
    assert row.origin_device_id == "gas-1" and row.alert_id == alert.id
    assert len(alerts_of(gw)) == 1


NOT_CLOSED = {"zh-CN": "【P1 燃气报警】（阀门未关闭）", "en": "P1 GAS ALARM (VALVE NOT CLOSED)"}
PAGER_LANGUAGE = {"pw1": "zh-CN", "pw2": "zh-CN", "pv1": "zh-CN", "ps1": "en"}  # seed_home's


def gas_pages(mq: Mqtt, after: int = 0) -> list[dict[str, Any]]:
    return [p for p in mq.pages()[after:] if p["kind"] == "gas"]


def closes_its_own_valve(engine: Any, sensor: str) -> None:
    """As `PATCH /api/v1/devices/{sensor}` with `valve_device_id`, before it has said anything."""
    with engine.begin() as c:
        c.execute(T.devices.update().where(T.devices.c.id == sensor).values(valve_device_id=sensor))


def test_every_gas_page_after_the_valve_failed_to_close_says_it_did_not_close(
    engine: Any,
    make_gateway: Callable[..., Any],
    mq: Mqtt,
    clock: FakeClock,
    commands: Commands,
) -> None:
    """The one who goes must shut the gas at the meter: the pages sent when the valve answers
    that it could not close say so, in each person's language, and so do the later ones (the
    last step repeated, a reminder after the ack)."""
    gw = make_gateway(clock=clock, admin_token=ADMIN, reminders_for_explicit_plans=True)
    seed_home(engine)  # steps: w1+w2 -> v1 -> s1 (en), 30 s each
    closes_its_own_valve(engine, "gas-1")
    reading(mq, gw, clock, "gas-1", lel_pct=25.0)
    first = mq.wait_for(lambda m: m["kind"] == "gas", count=2, timeout=3)
    assert not any("阀门" in p["text"] for p in first), "nothing is known of the valve yet"
    [(_, cmd)] = commands.wait(1)
    before = len(mq.pages())
    stuck = {"command_id": cmd["id"], "ok": False, "detail": "motor stuck"}
    event(mq, gw, clock, "gas-1", "command.result", **stuck)
    mq.wait_for(lambda m: m["kind"] == "gas" and m["_pager"] == "ps1", timeout=3)
    time.sleep(QUIET)
    again = gas_pages(mq, before)
    assert sorted(p["_pager"] for p in again) == ["ps1", "pv1", "pw1", "pw2"]
    for p in again:
        assert p["text"].startswith(NOT_CLOSED[PAGER_LANGUAGE[p["_pager"]]]), p["text"]
    [alert_id] = {p["alert_id"] for p in again}

    before = len(mq.pages())
    clock.advance(31)  # nobody answered: the last step is paged again
    wait_until(lambda: gas_pages(mq, before), timeout=5, what="the last step again")
    [repeat] = gas_pages(mq, before)
    assert repeat["_pager"] == "ps1"
    assert repeat["text"].startswith("P1 GAS ALARM (VALVE NOT CLOSED) (AGAIN): "), repeat["text"]

    mq.reply("ps1", alert_id, "ack")
    wait_until(lambda: alerts_of(gw, "gas")[0].state == "acknowledged", what="the ack")
    before = len(mq.pages())
    clock.advance(601)  # the reminder of an acknowledged alert, to the one who took it
    wait_until(lambda: gas_pages(mq, before), timeout=5, what="the reminder")
    [reminder] = gas_pages(mq, before)
    assert reminder["_pager"] == "ps1"
    assert reminder["text"].startswith("REMINDER P1 GAS ALARM (VALVE NOT CLOSED), still open")


def test_a_gas_page_says_the_valve_closed_once_its_late_answer_comes(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, commands: Commands
) -> None:
    """No answer to valve.close within its time: every step is paged that the valve is not
    closed; its late `ok` is news the next page must give, or people go on calling the gas
    company for a valve that is shut."""
    seed_home(engine, steps=[(["w1", "w2"], 3600), (["v1"], 3600), (["s1"], 60)])
    closes_its_own_valve(engine, "gas-1")
    reading(mq, gw, clock, "gas-1", lel_pct=25.0)
    mq.wait_for(lambda m: m["kind"] == "gas", count=2, timeout=3)
    [(_, cmd)] = commands.wait(1)
    before = len(mq.pages())
    clock.advance(91)  # past the valve's 90 s
    mq.wait_for(lambda m: m["kind"] == "gas" and m["_pager"] == "ps1", timeout=5)
    time.sleep(QUIET)
    silent = gas_pages(mq, before)
    assert sorted(p["_pager"] for p in silent) == ["ps1", "pv1", "pw1", "pw2"]
    for p in silent:
        assert p["text"].startswith(NOT_CLOSED[PAGER_LANGUAGE[p["_pager"]]]), p["text"]

    event(mq, gw, clock, "gas-1", "command.result", command_id=cmd["id"], ok=True)
    [alert] = alerts_of(gw, "gas")
    wait_until(lambda: "valve_closed_late" in types(gw, alert.id), what="the late close")
    before = len(mq.pages())
    clock.advance(61)  # the last step, unanswered, is paged again
    wait_until(lambda: gas_pages(mq, before), timeout=5, what="the last step again")
    [repeat] = gas_pages(mq, before)
    assert repeat["_pager"] == "ps1"
    assert repeat["text"].startswith("P1 GAS ALARM (VALVE CLOSED) (AGAIN): "), repeat["text"]


VALVE_CLOSED_NOTICE = {
    "zh-CN": "【通知】老人1家燃气阀门现已关闭，燃气报警仍需处理",
    "en": "NOTICE: 老人1's gas valve is now CLOSED; the gas alarm still needs handling",
}


def valve_notices(mq: Mqtt) -> list[dict[str, Any]]:
    return [n for n in mq.pages(type_="notice") if n["text"] in VALVE_CLOSED_NOTICE.values()]


def valve_notified(gw: Any, alert_id: str) -> list[dict[str, Any]]:
    return [
        e.detail for e in timeline(gw, alert_id) if e.type == "notified" and "valve" in e.detail
    ]


def valve_silent_past_its_time(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, commands: Commands
) -> dict[str, Any]:
    """A gas alarm whose valve.close gets no answer in time: every step is paged that the valve
    is not closed (nobody's step times out meanwhile). Returns the command."""
    seed_home(engine, steps=[(["w1", "w2"], 3600), (["v1"], 3600), (["s1"], 3600)])
    closes_its_own_valve(engine, "gas-1")
    event(mq, gw, clock, "gas-1", "gas.alarm", gas="natural_gas", lel_pct=30.0)
    mq.wait_for(lambda m: m["kind"] == "gas", count=2, timeout=3)
    [(_, cmd)] = commands.wait(1)
    before = len(mq.pages())
    clock.advance(91)  # past the valve's 90 s
    mq.wait_for(lambda m: m["kind"] == "gas" and m["_pager"] == "ps1", timeout=5)
    time.sleep(QUIET)
    for p in gas_pages(mq, before):
        assert p["text"].startswith(NOT_CLOSED[PAGER_LANGUAGE[p["_pager"]]]), p["text"]
    return cmd


def test_a_late_valve_close_is_told_at_once_to_everyone_paged_once(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, commands: Commands
) -> None:
    """Those paged that the valve is not closed may be on their way to shut the gas at the
    meter: its late "closed" is a notice to each of them at once, in their language, on the
    timeline; the same answer again, or a failure stamped before it (an earlier attempt's,
    delivered late), tells nobody anything more."""
    cmd = valve_silent_past_its_time(engine, gw, mq, clock, commands)
    [alert] = alerts_of(gw, "gas")
    pages_before = len(mq.pages())
    earlier = int(clock() * 1000) - 1000
    event(mq, gw, clock, "gas-1", "command.result", command_id=cmd["id"], ok=True)
    wait_until(lambda: len(valve_notices(mq)) >= 4, timeout=5, what="the valve notices")
    notices = valve_notices(mq)
    assert sorted(n["_pager"] for n in notices) == ["ps1", "pv1", "pw1", "pw2"]
    for n in notices:
        assert n["text"] == VALVE_CLOSED_NOTICE[PAGER_LANGUAGE[n["_pager"]]]
        assert (n["alert_id"], n["state"]) == (alert.id, "open")
    [told] = valve_notified(gw, alert.id)
    assert told["valve"] == "closed" and told["state"] == "open"
    assert told["pagers"] == ["ps1", "pv1", "pw1", "pw2"]
    assert told["responders"] == ["s1", "v1", "w1", "w2"]

    event(mq, gw, clock, "gas-1", "command.result", command_id=cmd["id"], ok=True)
    event(mq, gw, clock, "gas-1", "command.result", command_id=cmd["id"], ok=False, ts=earlier)
    time.sleep(QUIET)
    assert len(valve_notices(mq)) == 4 and len(valve_notified(gw, alert.id)) == 1
    assert len(mq.pages()) == pages_before, "a notice, not a page"
    assert alerts_of(gw, "gas")[0].state == "open"


def test_a_valve_close_that_failed_then_succeeded_is_told_to_everyone_paged(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, commands: Commands
) -> None:
    """The valve answers that it could not close (everyone is paged that it is not closed),
    then, retried, that it closed: that is the truth, told at once to each of them; the alert
    stays the P1 gas alarm it is. The first failure delivered again after it changes nothing."""
    seed_home(engine, steps=[(["w1", "w2"], 3600), (["v1"], 3600), (["s1"], 3600)])
    closes_its_own_valve(engine, "gas-1")
    event(mq, gw, clock, "gas-1", "gas.alarm", gas="natural_gas", lel_pct=30.0)
    mq.wait_for(lambda m: m["kind"] == "gas", count=2, timeout=3)
    [(_, cmd)] = commands.wait(1)
    before = len(mq.pages())
    failed_at = int(clock() * 1000)
    stuck = {"command_id": cmd["id"], "ok": False, "detail": "motor stuck"}
    event(mq, gw, clock, "gas-1", "command.result", **stuck)
    mq.wait_for(lambda m: m["kind"] == "gas" and m["_pager"] == "ps1", timeout=5)
    time.sleep(QUIET)
    for p in gas_pages(mq, before):
        assert p["text"].startswith(NOT_CLOSED[PAGER_LANGUAGE[p["_pager"]]]), p["text"]
    [alert] = alerts_of(gw, "gas")

    clock.advance(20)  # the valve retries
    pages_before = len(mq.pages())
    event(mq, gw, clock, "gas-1", "command.result", command_id=cmd["id"], ok=True)
    wait_until(lambda: len(valve_notices(mq)) >= 4, timeout=5, what="the valve notices")
    assert sorted(n["_pager"] for n in valve_notices(mq)) == ["ps1", "pv1", "pw1", "pw2"]
    for n in valve_notices(mq):
        assert n["text"] == VALVE_CLOSED_NOTICE[PAGER_LANGUAGE[n["_pager"]]]
    assert "valve_closed_late" in types(gw, alert.id)
    [told] = valve_notified(gw, alert.id)
    assert told["valve"] == "closed" and told["responders"] == ["s1", "v1", "w1", "w2"]
    [now] = alerts_of(gw, "gas")
    assert (now.id, now.priority, now.state) == (alert.id, "P1", "open")

    # the failure delivered again (its own time, before the success): stale, no news
    clock.advance(5)
    event(mq, gw, clock, "gas-1", "command.result", **stuck, ts=failed_at)
    time.sleep(QUIET)
    assert len(valve_notices(mq)) == 4 and len(mq.pages()) == pages_before
    assert types(gw, alert.id).count("escalated") == 1


def test_a_valve_closed_again_in_the_same_alert_is_no_news_to_those_told_already(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, commands: Commands
) -> None:
    """The one who took the alert hears the late close too (the notice names the alert's
    state). The sensor clears and alarms again within the alert: the valve is closed again and
    says so in time; everyone already knows it is closed, so nobody is told twice."""
    cmd = valve_silent_past_its_time(engine, gw, mq, clock, commands)
    [alert] = alerts_of(gw, "gas")
    mq.reply("ps1", alert.id, "ack")
    wait_until(lambda: alerts_of(gw, "gas")[0].state == "acknowledged", what="the ack")
    event(mq, gw, clock, "gas-1", "command.result", command_id=cmd["id"], ok=True)
    wait_until(lambda: len(valve_notices(mq)) >= 4, timeout=5, what="the valve notices")
    assert {n["state"] for n in valve_notices(mq)} == {"acknowledged"}
    assert "ps1" in {n["_pager"] for n in valve_notices(mq)}

    event(mq, gw, clock, "gas-1", "gas.cleared", gas="natural_gas", lel_pct=2.0)
    clock.advance(60)
    event(mq, gw, clock, "gas-1", "gas.alarm", gas="natural_gas", lel_pct=30.0)
    [_, (_, again)] = commands.wait(2)
    event(mq, gw, clock, "gas-1", "command.result", command_id=again["id"], ok=True)
    wait_until(lambda: "valve_closed" in types(gw, alert.id), what="the second close")
    time.sleep(QUIET)
    assert len(valve_notices(mq)) == 4 and len(valve_notified(gw, alert.id)) == 1
    assert [a.id for a in alerts_of(gw, "gas")] == [alert.id]


def test_a_late_valve_close_after_the_alert_was_resolved_tells_nobody(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock, commands: Commands
) -> None:
    """Once resolved, those paged were told it ended: the valve's late answer is no news."""
    cmd = valve_silent_past_its_time(engine, gw, mq, clock, commands)
    [alert] = alerts_of(gw, "gas")
    ok(api.post(f"/api/v1/alerts/{alert.id}/resolve", json={"outcome": "real"}))
    wait_until(lambda: len(mq.pages(type_="notice")) >= 4, timeout=5, what="resolved notices")
    before = len(mq.pages(type_="notice"))
    event(mq, gw, clock, "gas-1", "command.result", command_id=cmd["id"], ok=True)
    time.sleep(QUIET)
    assert len(mq.pages(type_="notice")) == before and not valve_notices(mq)
    assert valve_notified(gw, alert.id) == []
    assert "command_result" in types(gw, alert.id)


def test_a_gas_alert_opened_because_the_valve_did_not_answer_says_so_from_its_first_page(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock, commands: Commands
) -> None:
    """The alert was resolved before the valve's time ran out: its silence opens a new gas
    alert, whose every page (the first, then every step at once) says the valve is not closed."""
    seed_home(engine)
    closes_its_own_valve(engine, "gas-1")
    reading(mq, gw, clock, "gas-1", lel_pct=25.0)
    mq.wait_for(lambda m: m["kind"] == "gas", count=2, timeout=3)
    commands.wait(1)
    [old] = alerts_of(gw, "gas")
    ok(api.post(f"/api/v1/alerts/{old.id}/resolve", json={"outcome": "false_alarm"}))
    before = len(mq.pages())
    clock.advance(91)  # past the valve's 90 s
    mq.wait_for(lambda m: m.get("kind") == "gas" and m["_pager"] == "ps1", timeout=5)
    time.sleep(QUIET)
    _, new = alerts_of(gw, "gas")
    assert timeline(gw, new.id)[0].detail["rule"] == "valve_close_no_answer"
    pages = gas_pages(mq, before)
    assert {p["alert_id"] for p in pages} == {new.id}
    assert sorted(p["_pager"] for p in pages) == ["ps1", "pv1", "pw1", "pw1", "pw2", "pw2"]
    for p in pages:
        assert p["text"].startswith(NOT_CLOSED[PAGER_LANGUAGE[p["_pager"]]]), p["text"]


@pytest.mark.parametrize("alarm", ["event", "telemetry"])
def test_a_gas_alarm_after_its_alert_was_resolved_closes_the_valve_again(
    engine: Any,
    gw: Any,
    api: httpx.Client,
    mq: Mqtt,
    clock: FakeClock,
    commands: Commands,
    alarm: str,
) -> None:
    """People resolved the alert while the sensor had not cleared (no gas.cleared, or a reading
    still over the alarm level): the next alarm opens a new alert and closes the valve again,
    since someone may have opened it."""
    seed_home(engine, steps=[(["w1"], 3600)])
    ok(api.patch("/api/v1/devices/gas-1", json={"valve_device_id": "gas-1"}))

    def alarm_now() -> None:
        clock.advance(60)
        if alarm == "event":
            event(mq, gw, clock, "gas-1", "gas.alarm", gas="natural_gas", lel_pct=30.0)
        else:
            reading(mq, gw, clock, "gas-1", lel_pct=30.0)

    alarm_now()
    [(_, first)] = commands.wait(1)
    event(mq, gw, clock, "gas-1", "command.result", command_id=first["id"], ok=True)
    [alert] = alerts_of(gw, "gas")
    ok(api.post(f"/api/v1/alerts/{alert.id}/resolve", json={"outcome": "real", "note": "aired"}))
    alarm_now()
    cmds = commands.wait(2)
    second = cmds[1][1]
    assert second["type"] == "valve.close" and second["id"] != first["id"]
    old, new = alerts_of(gw, "gas")
    assert (old.id, old.state, new.state) == (alert.id, "resolved", "open")
    sent = [e.detail["command_id"] for e in timeline(gw, new.id) if e.type == "command_sent"]
    assert sent == [second["id"]]
    mq.wait_for(lambda m: m.get("kind") == "gas" and m["alert_id"] == new.id, timeout=3)
    with gw.engine.connect() as c:
        rows = c.execute(select(T.commands).order_by(T.commands.c.created_at)).all()
    assert [(r.id, r.alert_id) for r in rows] == [(first["id"], old.id), (second["id"], new.id)]


class StillClock(FakeClock):
    """Time that moves only when the test moves it: every batch is processed at the same
    `now`, as messages taken in one batch are (two sensors alarming together)."""

    def __init__(self) -> None:
        super().__init__()
        self.base = time.time()

    def __call__(self) -> float:
        return self.base + self.offset


def test_sensors_sharing_a_valve_that_alarm_together_each_learn_that_it_closed(
    engine: Any, make_gateway: Callable[..., Any], mq: Mqtt, commands: Commands
) -> None:
    """Two gas sensors with one valve over the alarm level in the same millisecond: each alert
    sends its own valve.close and records the valve's answer to it. (With one command for both,
    the second alert never heard the answer and escalated that the valve did not answer.)"""
    clock = StillClock()
    gw = make_gateway(clock=clock, admin_token=ADMIN)
    seed_home(engine, steps=[(["w1"], 3600)])
    auth = {"Authorization": f"Bearer {ADMIN}"}
    with serving(create_app(gw.runtime)) as url, httpx.Client(base_url=url, headers=auth) as api:
        new = {"id": "gas-7", "kind": "gas_sensor", "elder_id": "e1"}
        ok(api.post("/api/v1/devices", json=new), 201)
        for sensor in ("gas-1", "gas-7"):
            ok(api.patch(f"/api/v1/devices/{sensor}", json={"valve_device_id": "gas-1"}))
    reading(mq, gw, clock, "gas-1", lel_pct=45.0)
    reading(mq, gw, clock, "gas-7", lel_pct=45.0)
    sent = commands.wait(2)
    assert {topic for topic, _ in sent} == {f"{mq.base}/v1/devices/gas-1/commands"}
    assert {cmd["type"] for _, cmd in sent} == {"valve.close"}
    alerts = {a.device_id: a for a in alerts_of(gw, "gas")}
    assert sorted(alerts) == ["gas-1", "gas-7"]
    assert alerts["gas-1"].created_at == alerts["gas-7"].created_at  # the same millisecond
    ids = {}
    for sensor, alert in alerts.items():
        [ids[sensor]] = [
            e.detail["command_id"] for e in timeline(gw, alert.id) if e.type == "command_sent"
        ]
    assert sorted(ids.values()) == sorted(cmd["id"] for _, cmd in sent)
    for _, cmd in sent:  # the valve answers each command
        event(mq, gw, clock, "gas-1", "command.result", command_id=cmd["id"], ok=True)
    for alert in alerts.values():
        wait_until(lambda a=alert: "valve_closed" in types(gw, a.id), what="valve closed")
    clock.advance(91)  # past the valve's 90 s: the tick finds no valve.close unanswered
    time.sleep(QUIET)
    for alert in alerts.values():
        kinds = types(gw, alert.id)
        assert "valve_close_no_answer" not in kinds and "escalated" not in kinds, kinds
    with gw.engine.connect() as c:
        rows = c.execute(select(T.commands)).all()
    assert {(r.origin_device_id, r.id, r.result_ok) for r in rows} == {
        (sensor, cid, True) for sensor, cid in ids.items()
    }


def test_a_reading_hovering_at_the_alarm_line_opens_one_alert(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    reading(mq, gw, clock, "gas-1", lel_pct=12.0)  # over the warning level: for the board
    for value in (20.0, 19.0, 21.0, 16.0, 20.5, 15.5, 19.0, 22.0, 16.0, 18.0):
        clock.advance(30)
        reading(mq, gw, clock, "gas-1", lel_pct=value)
    mq.wait_for(lambda m: m["kind"] == "gas", timeout=3)
    time.sleep(QUIET)
    [alert] = alerts_of(gw, "gas")
    kinds = types(gw, alert.id)
    assert kinds.count("opened") == 1 and "repeated" not in kinds
    assert len(mq.pages("pw1")) == 1
    warnings = ok(api.get("/api/v1/rule-events", params={"type": "warning"}))
    assert [(w["device_id"], w["kind"], w["reason"]) for w in warnings] == [
        ("gas-1", "gas", "lel_warning")
    ]
    for _ in range(3):  # three readings under the clearing line (15 %LEL): the all clear
        clock.advance(30)
        reading(mq, gw, clock, "gas-1", lel_pct=4.0)
    wait_until(lambda: "gas_below_alarm" in types(gw, alert.id), what="all clear recorded")
    assert alerts_of(gw, "gas")[0].state == "open"  # a person still checks the home


# --- device clocks (alerts/readtime.py) -----------------------------------------------------------

RESET_MS = int(datetime(2020, 1, 1, tzinfo=ZONE).timestamp() * 1000)  # a clock reset by a reboot
FAST_MS = int(datetime(2099, 6, 1, tzinfo=ZONE).timestamp() * 1000)


def stamped(mq: Mqtt, device: str, ts_ms: int, **values: Any) -> str:
    """A telemetry message with the device's own (wrong) time; its id, not waited for."""
    msg_id = uuid.uuid4().hex[:12]
    body = {"id": msg_id, "ts": ts_ms, **values}
    mq.raw(f"{mq.base}/v1/devices/{device}/telemetry", json.dumps(body).encode())
    return msg_id


def clock_warnings(api: httpx.Client) -> list[tuple[str, str]]:
    got = ok(api.get("/api/v1/rule-events", params={"type": "warning"}))
    return [(w["device_id"], w["kind"]) for w in got if w["reason"] == "clock_skew"]


def rule_state(gw: Any, key: str, rule: str) -> Any:
    with gw.engine.connect() as c:
        state = c.execute(
            select(T.rule_states.c.state).where(
                T.rule_states.c.key == key, T.rule_states.c.rule == rule
            )
        ).scalar_one()
    return json.loads(state) if isinstance(state, str) else state


def test_a_gas_sensor_whose_clock_reset_still_raises_and_its_clock_is_shown(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    """Found by exploratory testing: after a reading at the right time, readings stamped 2020
    at three times the alarm level were stored and dropped by the rule, with no trace."""
    seed_home(engine, steps=[(["w1"], 3600)])
    at_local(clock, 10)  # the gateway's clock a day ahead of the wall clock the broker's is
    reading(mq, gw, clock, "gas-1", lel_pct=2.0)
    assert clock_warnings(api) == []  # a right clock, judged on the gateway's own clock
    for _ in range(5):
        clock.advance(MIN)
        msg_id = stamped(mq, "gas-1", RESET_MS, lel_pct=60.0)
        wait_until(lambda m=msg_id: committed(gw, "gas-1", m), what=f"reading {msg_id}")
    [page] = mq.wait_for(lambda m: m["kind"] == "gas", timeout=5)
    assert page["priority"] == "P1"
    [alert] = alerts_of(gw, "gas")
    assert timeline(gw, alert.id)[0].detail["rule"] == "lel_alarm"
    assert clock_warnings(api) == [("gas-1", "gas")]  # once, not per reading
    assert rule_state(gw, "gas-1", "gas")["clock_off"] == "behind"


def test_a_fast_clocks_readings_sent_together_are_each_judged(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    """Found by exploratory testing: readings stamped 2099 were all cut to the batch's time,
    and the second and third, equal to the first, were dropped: lel 30 and 31 raised nothing."""
    seed_home(engine, steps=[(["w1"], 3600)])
    ids = [stamped(mq, "gas-1", FAST_MS, lel_pct=v) for v in (2.0, 30.0, 31.0)]
    wait_until(lambda: all(committed(gw, "gas-1", i) for i in ids), what="three readings")
    mq.wait_for(lambda m: m["kind"] == "gas", timeout=5)
    state = rule_state(gw, "gas-1", "gas")
    assert (state["lel"]["level"], state["lel"]["last"]) == ("alarm", 31.0)
    assert clock_warnings(api) == [("gas-1", "gas")]


def test_a_water_reading_stamped_2020_counts_as_water_used_now(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    """Found by exploratory testing: a 2020 `flow_l: 50` left a no_water_use alert as it was."""
    seed_home(engine, steps=[(["w1"], 3600)])
    at_local(clock, 6)
    dry_day(mq, gw, clock, until_hour=18)
    mq.wait_for(lambda m: m["kind"] == "no_water_use", timeout=5)
    [alert] = alerts_of(gw, "no_water_use")
    clock.advance(10 * MIN)
    msg_id = stamped(mq, "water-1", RESET_MS, flow_l=50.0, interval_s=600, total_l=1284.5)
    wait_until(lambda: committed(gw, "water-1", msg_id), what="the 2020 reading")
    assert "water_used_again" in types(gw, alert.id)
    assert clock_warnings(api) == [("water-1", "no_water_use")]


def test_a_reading_as_old_as_the_brokers_session_keeps_its_own_time(
    engine: Any, make_gateway: Callable[..., Any], mq: Mqtt, clock: FakeClock
) -> None:
    """The broker keeps readings for an absent gateway up to its session expiry (here 3 days):
    one 30 hours old is late, not from a wrong clock, and must not count as water used now."""
    gw = make_gateway(clock=clock, admin_token=ADMIN, mqtt_session_expiry_s=3 * 86_400)
    seed_home(engine, steps=[(["w1"], 3600)])
    at_local(clock, 6)
    dry_day(mq, gw, clock, until_hour=18)
    mq.wait_for(lambda m: m["kind"] == "no_water_use", timeout=5)
    [alert] = alerts_of(gw, "no_water_use")
    old_ms = int((clock() - 30 * 3600) * 1000)
    msg_id = stamped(mq, "water-1", old_ms, flow_l=50.0, interval_s=600, total_l=1284.5)
    wait_until(lambda: committed(gw, "water-1", msg_id), what="the late reading")
    assert "water_used_again" not in types(gw, alert.id)
    with gw.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(T.rule_events)).scalar() == 0


# --- device health --------------------------------------------------------------------------------


def test_a_device_silent_for_three_intervals_opens_device_offline(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)  # a gas sensor reports every 5 minutes
    clock.advance(14 * MIN)
    time.sleep(QUIET)
    assert not mq.pages(), "offline before three missed reports"
    clock.advance(2 * MIN)
    [page] = mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    assert page["priority"] == "P2"
    assert "设备离线（燃气报警器）" in page["text"]  # which device: the one who goes knows
    [alert] = alerts_of(gw, "device_offline")
    assert alert.device_id == "gas-1"
    assert timeline(gw, alert.id)[0].detail["rule"] == "silent"
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)  # back: recorded on the alert
    wait_until(lambda: "back_online" in types(gw, alert.id), timeout=5, what="back online")


def test_an_event_is_a_sign_of_life_recorded_after_its_page(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock
) -> None:
    # The alarm lane commits and pages an event before its device is marked heard (a second,
    # small transaction: gateway/ingest.py _heard_later); the mark must still come.
    seed_home(engine, steps=[(["w1"], 3600)])
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    clock.advance(16 * MIN)
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    [offline] = alerts_of(gw, "device_offline")
    event(mq, gw, clock, "gas-1", "gas.alarm", lel_pct=30.0)  # back, and with an alarm
    mq.wait_for(lambda m: m["kind"] == "gas", timeout=3)
    wait_until(lambda: "back_online" in types(gw, offline.id), timeout=5, what="back online")
    assert types(gw, offline.id).count("back_online") == 1


def test_a_device_registered_and_never_heard_is_found_silent(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    # Device health used to watch a device from its first message only: one installed dead
    # was never reported.
    seed_home(engine, steps=[(["w1"], 3600)])
    for dev in ("gas-new", "gas-moved"):
        body = {"id": dev, "kind": "gas_sensor", "elder_id": "e1"}
        ok(api.post("/api/v1/devices", json=body), 201)
    clock.advance(5 * MIN)
    ok(api.patch("/api/v1/devices/gas-moved", json={"building": "幸福里3号楼"}))
    clock.advance(9 * MIN)  # 14 min after the registration
    time.sleep(QUIET)
    assert not mq.pages(), "offline before three missed reports"
    clock.advance(2 * MIN)  # 16 min: alone, a device has no hold
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    [alert] = alerts_of(gw, "device_offline")
    assert alert.device_id == "gas-new"
    assert "never heard" in timeline(gw, alert.id)[0].detail["detail"]
    # Moved into a building: watched there from the move, offline 15 min later, then the hold.
    clock.advance(23 * MIN)  # 39 min: 34 after the move
    time.sleep(QUIET)
    assert len(alerts_of(gw, "device_offline")) == 1
    clock.advance(2 * MIN)  # 41 min: 36 after the move
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5, count=2)
    assert [a.device_id for a in alerts_of(gw, "device_offline")] == ["gas-new", "gas-moved"]


def test_a_silent_device_is_raised_on_time_beside_neighbours_reporting_every_minute(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock
) -> None:
    """A message checks its own device's health only (`health.heard`): another's silence is
    the tick's to find. The building's state is due every tick once anything in it is
    offline, and each message that loaded it used to put that look a tick after itself. One
    neighbour every minute loads it just as the look comes due (whichever goes first); two,
    half a minute apart, as in any building with a few devices, put it off for good: the
    silent device, found offline, was never raised after its hold. Now raised within its 3
    reports (15 min), the building's hold (20 min) and a tick."""
    seed_home(engine, n=3, steps=[(["w1"], 3600)])
    chatty = ["gas-1", "gas-3"]
    with engine.begin() as c:
        c.execute(T.devices.update().where(T.devices.c.id.like("gas-%")).values(building="B1"))
    reading(mq, gw, clock, "gas-2", lel_pct=0.0)  # then silent
    t0 = clock()

    def a_minute() -> None:  # each of them every 60 s, half a minute apart
        for dev in chatty:
            reading(mq, gw, clock, dev, lel_pct=0.0)
            clock.advance(MIN / 2)

    def gas_2_online() -> bool:
        with gw.engine.connect() as c:
            s = T.rule_states.c
            q = select(s.state).where(s.key == "b:B1", s.rule == "health")
            [d] = [d for d in c.execute(q).scalar_one()["devices"] if d["device_id"] == "gas-2"]
        return bool(d["online"])

    for _ in range(16):
        a_minute()
    # the tick finds it offline (at 15 min): from then on the state is due every tick
    wait_until(lambda: not gas_2_online(), timeout=5, what="gas-2 found offline")
    for _ in range(18):  # held 20 min
        a_minute()
    assert not alerts_of(gw, "device_offline"), "raised before its hold ended"
    a_minute()  # 35 min
    wait_until(lambda: alerts_of(gw, "device_offline"), timeout=5, what="gas-2 raised")
    [alert] = alerts_of(gw, "device_offline")
    assert alert.device_id == "gas-2"
    assert alert.created_at <= (t0 + 36 * MIN) * 1000
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)


def last_seen(gw: Any, device: str) -> int | None:
    with gw.engine.connect() as c:
        return c.execute(
            select(T.devices.c.last_seen_at).where(T.devices.c.id == device)
        ).scalar_one()


def deliveries(
    gw: Any, monkeypatch: pytest.MonkeyPatch, live_ms: dict[str, int] | None = None
) -> list[tuple[str, bool]]:
    """(topic, retain flag) of every message the broker delivers to the gateway from now on;
    `live_ms` gets, per topic, the receipt time of its latest live (not retained) delivery."""
    delivered: list[tuple[str, bool]] = []
    put = gw.ingest.put

    def spy(item: Any) -> None:
        delivered.append((item.topic, item.retain))
        if live_ms is not None and not item.retain:
            live_ms[item.topic] = item.received_ms
        put(item)

    monkeypatch.setattr(gw.ingest, "put", spy)
    return delivered


def replay_processed(gw: Any, mq: Mqtt, clock: FakeClock, delivered: list[Any], topic: str) -> None:
    """Wait until the broker has replayed `topic` (retain flag set) to the gateway and the
    gateway has processed it: an event published after it, on the same connection and lane, is
    committed (one that changes nothing: a result for a command nobody sent)."""
    wait_until(lambda: (topic, True) in delivered, timeout=15, what=f"{topic} replayed")
    event(mq, gw, clock, "cb-1", "command.result", command_id="none", ok=True)


def reconnect(
    gw: Any, mosquitto: Any, mq: Mqtt, clock: FakeClock, delivered: list[Any], topic: str
) -> None:
    """Restart the broker (it keeps the gateway's session and the retained statuses, on disk):
    the gateway reconnects and subscribes again, and the broker replays the retained statuses."""
    delivered.clear()
    mosquitto.restart()
    wait_until(lambda: (topic, True) in delivered, timeout=15, what=f"{topic} replayed")
    wait_until(mq.client.is_connected, timeout=15, what="test client connected again")
    replay_processed(gw, mq, clock, delivered, topic)


@pytest.mark.mosquitto
def test_a_retained_status_replayed_on_reconnect_is_no_sign_of_life(
    engine: Any,
    gw: Any,
    mq: Mqtt,
    clock: FakeClock,
    mosquitto: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found against a real Mosquitto: a gas sensor's retained `{"online": true}` was replayed
    # (retain=1) at each reconnect of the gateway and taken as a sign of life, so its silence
    # was counted from the gateway's last reconnect, not from the sensor's last message.
    seed_home(engine, steps=[(["w1"], 3600)])
    live_ms: dict[str, int] = {}
    delivered = deliveries(gw, monkeypatch, live_ms)
    status_topic = f"{mq.base}/v1/devices/gas-1/status"
    mq.status("gas-1", online=True)  # retained, and live: a sign of life
    wait_until(lambda: (status_topic, False) in delivered, what="the live status")
    before = clock()
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)  # its last real message
    heard_at = {
        datetime.fromtimestamp(t, ZONE).isoformat(timespec="minutes") for t in (before, clock())
    }
    # its last-seen time as the reading left it (written every few seconds). Not "the first
    # value after the reading was sent": the status may have been received in that same
    # millisecond, and the reading's later one then lands after the test took the status's.
    seen = max(ms for t, ms in live_ms.items() if "/devices/gas-1/" in t)
    wait_until(
        lambda: last_seen(gw, "gas-1") == seen, timeout=10, what="last_seen_at of the reading"
    )

    clock.advance(10 * MIN)
    reconnect(gw, mosquitto, mq, clock, delivered, status_topic)
    assert last_seen(gw, "gas-1") == seen, "a replayed status moved last_seen_at"
    clock.advance(4 * MIN)  # 14 min after its last message
    time.sleep(QUIET)
    assert not mq.pages(), "offline before three missed reports"
    clock.advance(2 * MIN)  # 16 min after its last message, 6 after the reconnect
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    [alert] = alerts_of(gw, "device_offline")
    assert alert.device_id == "gas-1"
    opened = timeline(gw, alert.id)[0].detail
    assert opened["rule"] == "silent"
    assert any(f"last heard {hm}" in opened["detail"] for hm in heard_at), opened

    # Offline now: its old `{"online": true}`, replayed again, does not bring it back ...
    reconnect(gw, mosquitto, mq, clock, delivered, status_topic)
    time.sleep(QUIET)
    assert "back_online" not in types(gw, alert.id)
    assert last_seen(gw, "gas-1") == seen
    # ... a real message does.
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    wait_until(lambda: "back_online" in types(gw, alert.id), timeout=5, what="back online")


def published_while_not_listening(
    gw: Any, mq: Mqtt, device: str, online: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device's retained status is published while the gateway is not subscribed to
    statuses (as when the broker lost its session); it then reaches the gateway only as the
    broker's replay when the gateway subscribes again."""
    status_filter = f"{mq.base}/v1/devices/+/status"
    unsubscribed = threading.Event()
    monkeypatch.setattr(gw.link.client, "on_unsubscribe", lambda *a: unsubscribed.set())
    gw.link.client.unsubscribe(status_filter)
    assert unsubscribed.wait(5), "the gateway could not unsubscribe"
    mq.status(device, online=online)
    gw.link.client.subscribe(status_filter, 1)


def test_a_replayed_status_may_say_offline_but_never_back_online(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    delivered = deliveries(gw, monkeypatch)
    status_topic = f"{mq.base}/v1/devices/gas-1/status"
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    # The gateway missed the sensor's Last Will: the replay of it is the news that it is gone.
    published_while_not_listening(gw, mq, "gas-1", False, monkeypatch)
    replay_processed(gw, mq, clock, delivered, status_topic)
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    [alert] = alerts_of(gw, "device_offline")
    assert timeline(gw, alert.id)[0].detail["rule"] == "last_will"
    # Its `{"online": true}` replayed says nothing about now (the sensor could have died again
    # since): the alert is not told the device is back ...
    delivered.clear()
    published_while_not_listening(gw, mq, "gas-1", True, monkeypatch)
    replay_processed(gw, mq, clock, delivered, status_topic)
    assert "back_online" not in types(gw, alert.id)
    # ... until a real message comes.
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    wait_until(lambda: "back_online" in types(gw, alert.id), timeout=5, what="back online")


def test_a_power_cut_in_a_building_is_one_incident_paged_to_staff_only(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, n=3)  # 9 devices; each elder's plan: watchers w1+w2, v1, then s1
    devs = [f"{p}-{i}" for i in range(1, 4) for p in ("cb", "gas", "water")]
    for d in devs:
        assert (
            ok(api.patch(f"/api/v1/devices/{d}", json={"building": "幸福里3号楼"}))["building"]
            == "幸福里3号楼"
        )
    for d in devs:
        mq.status(d, online=True)
    for d in devs:
        mq.status(d, online=False)  # the power goes: every Last Will at once
    time.sleep(QUIET)
    assert not mq.pages(), "a building's device paged before the hold"
    clock.advance(21 * MIN)
    [page] = mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    assert page["_pager"] == "ps1"
    time.sleep(QUIET)
    assert [p["_pager"] for p in mq.pages()] == ["ps1"], "one page, to staff only"
    [alert] = alerts_of(gw, "device_offline")
    opened = timeline(gw, alert.id)[0]
    assert sorted(opened.detail["devices"]) == sorted(devs)
    assert alert.plan == [{"responder_ids": ["s1"], "ack_timeout_s": 600}]
    [incident] = ok(api.get("/api/v1/incidents", params={"open": "true"}))
    assert incident["alert_id"] == alert.id and sorted(incident["device_ids"]) == sorted(devs)
    assert incident["building"] == "幸福里3号楼" and incident["closed_at"] is None

    for d in devs:  # the power is back
        mq.status(d, online=True)
    wait_until(
        lambda: ok(api.get("/api/v1/incidents", params={"open": "false"})),
        timeout=5,
        what="incident closed",
    )
    kinds = types(gw, alert.id)
    assert kinds.count("outage_member") == len(devs) and "outage_closed" in kinds
    assert len(alerts_of(gw)) == 1


def test_an_outage_page_says_it_is_the_building_with_its_devices_and_homes(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    """The outage's alert is filed under one member's elder; its page must not read as that
    one elder's call button offline, but as the building dark: how many devices, how many homes,
    in each staff member's language, and on the repeat with the devices that joined since."""
    staff = [("s1", "staff", "ps1", "en"), ("s2", "staff", "ps2", "zh-CN")]
    seed_home(engine, n=3, steps=[], responders=staff)
    homes = {i: [f"{p}-{i}" for p in ("cb", "gas", "water")] for i in (1, 2, 3)}
    for d in (d for ds in homes.values() for d in ds):
        ok(api.patch(f"/api/v1/devices/{d}", json={"building": "幸福里3号楼"}))
        mq.status(d, online=True)
    for d in homes[1] + homes[2]:  # 6 of the building's 9 devices go at once
        mq.status(d, online=False)
    time.sleep(QUIET)
    clock.advance(16 * MIN)
    reading(mq, gw, clock, "gas-3", lel_pct=0.0)  # its 5-min report: late, it would count
    clock.advance(5 * MIN)
    pages = mq.wait_for(lambda m: m.get("kind") == "device_offline", timeout=5, count=2)
    text = {p["_pager"]: p["text"] for p in pages}
    assert text == {
        "ps1": "P2 BUILDING OUTAGE: 6 devices in 2 homes, 幸福里3号楼. Reply ACK or DECLINE",
        "ps2": "【P2 楼栋断电/设备离线】幸福里3号楼 6台设备（2户） 请回复接单或拒绝",
    }
    # nor does the page's `elder`: the building, not one home's elder or phone; the address is
    # the building's tag, then the filed home's address for the street (the test's homes have
    # addresses of their own buildings, so the tag is not in it)
    where1 = "幸福里3号楼 · 幸福里1号楼"
    assert {p["_pager"]: p["elder"] for p in pages} == {
        "ps1": {"name": "BUILDING OUTAGE, 2 homes", "address": where1, "phone": None},
        "ps2": {"name": "楼栋断电/设备离线 2户", "address": where1, "phone": None},
    }
    [alert] = alerts_of(gw, "device_offline")
    for d in homes[3]:  # the third home goes dark too: it joins the outage
        mq.status(d, online=False)

    def joined() -> bool:
        return types(gw, alert.id).count("outage_member") == 3

    wait_until(joined, timeout=5, what="the third home joined")
    before = len(mq.pages())
    clock.advance(601)  # nobody answered: the staff are paged again
    wait_until(lambda: len(mq.pages()) >= before + 2, timeout=5, what="the repeat")
    again = {p["_pager"]: p["text"] for p in mq.pages()[before:]}
    where = "9 devices in 3 homes, 幸福里3号楼"
    assert again == {
        "ps1": f"P2 BUILDING OUTAGE (AGAIN): {where}. Reply ACK or DECLINE",
        "ps2": "【P2 楼栋断电/设备离线】（再次呼叫）幸福里3号楼 9台设备（3户） 请回复接单或拒绝",
    }
    assert {p["_pager"]: p["elder"]["name"] for p in mq.pages()[before:]} == {
        "ps1": "BUILDING OUTAGE, 3 homes",
        "ps2": "楼栋断电/设备离线 3户",
    }


def test_a_buildings_outage_is_paged_to_the_staff_of_its_elders_station(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    staff = [("sa1", "staff", "psa1", "zh-CN"), ("sb1", "staff", "psb1", "zh-CN")]
    seed_home(engine, n=2, steps=[], responders=staff)
    register(api, "e1", "王秀英", "红庙站", "501")
    register(api, "e2", "周玉芬", "呼家楼站", "502")  # a station with no staff at all
    ok(api.put("/api/v1/care/people/sa1/profile", json={"station": "红庙站"}))
    ok(api.put("/api/v1/care/people/sb1/profile", json={"station": "金台站"}))
    buildings = {1: "红庙1号楼", 2: "呼家楼2号楼"}
    devs = {i: [f"{p}-{i}" for p in ("cb", "gas", "water")] for i in buildings}
    for i, building in buildings.items():
        for d in devs[i]:
            ok(api.patch(f"/api/v1/devices/{d}", json={"building": building}))
            mq.status(d, online=True)
    for i in buildings:
        for d in devs[i]:
            mq.status(d, online=False)
    time.sleep(QUIET)  # every Last Will taken before the hold begins to run out
    clock.advance(21 * MIN)
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5, count=3)
    time.sleep(QUIET)
    by_elder = {a.elder_id: a for a in alerts_of(gw, "device_offline")}
    assert set(by_elder) == {"e1", "e2"}
    paged = {
        e: sorted(p["_pager"] for p in mq.pages() if p["alert_id"] == a.id)
        for e, a in by_elder.items()
    }
    # nobody on duty: all of 红庙站's staff, not 金台站's; 呼家楼站 has nobody: 金台站's too
    assert paged == {"e1": ["psa1"], "e2": ["psa1", "psb1"]}
    opened = {e: timeline(gw, a.id)[0].detail for e, a in by_elder.items()}
    assert "staff_other_stations" not in opened["e1"]
    assert opened["e2"]["staff_other_stations"] is True


# --- suppression ----------------------------------------------------------------------------------


def test_an_elder_away_gets_no_no_water_use_alert_but_still_gets_call_button_pages(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    at_local(clock, 6)
    away = ok(
        api.put(
            "/api/v1/elders/e1/away",
            json={"status": "in_hospital", "until": iso(clock() + 3 * 86400), "note": "hip"},
        )
    )
    assert away["active"] is True and away["author"] == "api:admin"
    board = ok(api.get("/api/v1/suppressions"))
    assert [a["id"] for a in board["away"]] == [away["id"]] and board["mutes"] == []
    dry_day(mq, gw, clock, until_hour=19)
    time.sleep(QUIET)
    assert "no_water_use" not in kinds_paged(mq)
    assert alerts_of(gw, "no_water_use") == []
    event(mq, gw, clock, "cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["kind"] == "call_button", timeout=2)
    assert page["priority"] == "P1"
    assert ok(api.delete("/api/v1/elders/e1/away"), 204) is None
    assert ok(api.get("/api/v1/suppressions"))["away"] == []
    assert api.delete("/api/v1/elders/e1/away").status_code == 404


def test_a_muted_devices_offline_alert_is_suppressed_until_the_mute_expires(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    mute = ok(
        api.post(
            "/api/v1/devices/gas-1/mutes",
            json={"reason": "sensor swap", "until": iso(clock() + 3600)},
        ),
        201,
    )
    assert mute["active"] is True and mute["author"] == "api:admin"
    clock.advance(16 * MIN)  # silent for three reports: offline, but muted
    wait_until(
        lambda: ok(api.get("/api/v1/rule-events", params={"type": "suppressed"})),
        timeout=5,
        what="the suppressed alert recorded",
    )
    [held] = ok(api.get("/api/v1/rule-events", params={"type": "suppressed"}))
    assert (held["device_id"], held["kind"], held["reason"]) == (
        "gas-1",
        "device_offline",
        "silent",
    )
    assert held["detail"]["why"] == "device_maintenance" and held["detail"]["by"] == "api:admin"
    assert held["until"] == ok(api.get("/api/v1/devices/gas-1/mutes"))[0]["until"]
    time.sleep(QUIET)
    assert not mq.pages() and alerts_of(gw) == []

    clock.advance(45 * MIN)  # the mute has expired and the sensor is still silent
    [page] = mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    assert page["_pager"] == "pw1"
    [alert] = alerts_of(gw, "device_offline")
    [released] = ok(api.get("/api/v1/rule-events", params={"type": "suppressed"}))
    assert released["released_at"] and released["alert_id"] == alert.id
    assert ok(api.get("/api/v1/suppressions"))["mutes"] == []


def test_a_mute_ended_early_lets_a_battery_alarm_through(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    mute = ok(
        api.post(
            "/api/v1/devices/cb-1/mutes",
            json={"reason": "battery change", "until": iso(clock() + 7200)},
        ),
        201,
    )
    reading(mq, gw, clock, "cb-1", battery_pct=12.0)  # low battery from telemetry: muted
    event(mq, gw, clock, "cb-1", "tamper")  # the technician opens the case: muted
    time.sleep(QUIET)
    assert not mq.pages()
    held = ok(api.get("/api/v1/rule-events", params={"type": "suppressed"}))
    assert sorted(h["kind"] for h in held) == ["low_battery", "tamper"]
    event(mq, gw, clock, "cb-1", "button.pressed")  # a press is never muted
    mq.wait_for(lambda m: m["kind"] == "call_button", timeout=2)
    assert ok(api.delete(f"/api/v1/devices/cb-1/mutes/{mute['id']}"), 204) is None
    # Still low: its alert opens now. The tamper was a moment: nothing to open.
    [page] = mq.wait_for(lambda m: m["kind"] == "low_battery", timeout=5)
    assert page["priority"] == "P3"
    time.sleep(QUIET)
    assert "tamper" not in kinds_paged(mq)
    assert [m["active"] for m in ok(api.get("/api/v1/devices/cb-1/mutes"))] == [False]


def test_a_leak_or_a_battery_low_event_held_by_a_mute_opens_when_the_mute_ends(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    """A leak lasts until the sensor's water.dry, and a battery said low by its event until
    readings say it is fine: at the mute's end, elder 1's (still wet, still low) open; elder
    2's (dried, a new battery) were over, and nothing opens."""
    seed_home(engine, n=2, steps=[(["w1"], 3600)])
    for device in ("water-1", "cb-1", "water-2", "cb-2"):
        mute = {"reason": "maintenance", "until": iso(clock() + 75)}
        ok(api.post(f"/api/v1/devices/{device}/mutes", json=mute), 201)
    for n in (1, 2):
        event(mq, gw, clock, f"water-{n}", "water.leak")
        event(mq, gw, clock, f"cb-{n}", "battery.low", battery_pct=5)
    clock.advance(10)
    event(mq, gw, clock, "water-2", "water.dry")
    for _ in range(2):
        clock.advance(10)
        reading(mq, gw, clock, "cb-2", battery_pct=95.0)
    held = ok(api.get("/api/v1/rule-events", params={"type": "suppressed"}))
    assert sorted((h["device_id"], h["kind"]) for h in held) == [
        ("cb-1", "low_battery"),
        ("cb-2", "low_battery"),
        ("water-1", "water_leak"),
        ("water-2", "water_leak"),
    ]
    time.sleep(QUIET)
    assert not mq.pages() and alerts_of(gw) == []

    clock.advance(60)  # the mutes have expired
    pages = mq.wait_for(lambda m: m["kind"] in ("water_leak", "low_battery"), count=2)
    assert sorted((p["kind"], p["priority"]) for p in pages) == [
        ("low_battery", "P3"),
        ("water_leak", "P2"),
    ]
    opened = {a.device_id: a for a in alerts_of(gw)}
    assert sorted((d, a.kind) for d, a in opened.items()) == [
        ("cb-1", "low_battery"),
        ("water-1", "water_leak"),
    ]

    def released() -> list[dict[str, Any]]:
        held = ok(api.get("/api/v1/rule-events", params={"type": "suppressed"}))
        return held if all(h["released_at"] for h in held) else []

    done = wait_until(released, what="every suppression released")
    assert {h["device_id"]: h["alert_id"] for h in done} == {
        "water-1": opened["water-1"].id,
        "cb-1": opened["cb-1"].id,
        "water-2": None,
        "cb-2": None,
    }
    assert timeline(gw, opened["water-1"].id)[0].detail["suppressed_since"]


def test_bad_suppression_input_gets_4xx_and_changes_nothing(
    engine: Any, gw: Any, api: httpx.Client, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    with engine.begin() as c:
        c.execute(T.devices.update().where(T.devices.c.id == "water-1").values(status="retired"))
    now = clock()
    for body, code in (
        ({"status": "away"}, 422),  # no end: nothing is silenced forever
        ({"status": "away", "until": None}, 422),
        ({"status": "away", "until": iso(now - 60)}, 422),  # over already
        ({"status": "away", "until": iso(now + 91 * 86400)}, 422),  # longer than 90 days
        ({"status": "holiday", "until": iso(now + 3600)}, 422),
        ({"status": "away", "until": "2030-01-01T00:00:00"}, 422),  # no offset
        ({"status": "away", "until": 1_900_000_000}, 422),
        ({"status": "away", "until": iso(now + 3600), "since": iso(now + 7200)}, 422),
        ({"status": "away", "until": iso(now + 3600), "who": "me"}, 422),
        ({"status": "away", "until": iso(now + 3600), "note": "a\x00b"}, 422),
    ):
        resp = api.put("/api/v1/elders/e1/away", json=body)
        assert resp.status_code == code and "detail" in resp.json(), (body, resp.text)
    assert (
        api.put(
            "/api/v1/elders/nobody/away", json={"status": "away", "until": iso(now + 60)}
        ).status_code
        == 404
    )
    assert api.delete("/api/v1/elders/e1/away").status_code == 404
    assert api.get("/api/v1/elders/nobody/away").status_code == 404

    for device, body, code in (
        ("gas-1", {"until": iso(now + 3600)}, 422),  # no reason
        ("gas-1", {"reason": "  ", "until": iso(now + 3600)}, 422),
        ("gas-1", {"reason": "swap"}, 422),  # no end
        ("gas-1", {"reason": "swap", "until": iso(now + 25 * 3600)}, 422),  # over 24 h
        ("cb-1", {"reason": "swap", "until": iso(now - 1)}, 422),
        ("cb-1", {"reason": "swap", "until": iso(now + 60), "author": "x"}, 422),
        ("nothing", {"reason": "swap", "until": iso(now + 60)}, 404),
        ("water-1", {"reason": "swap", "until": iso(now + 60)}, 409),  # retired
    ):
        resp = api.post(f"/api/v1/devices/{device}/mutes", json=body)
        assert resp.status_code == code and "detail" in resp.json(), (device, body, resp.text)
    assert api.delete("/api/v1/devices/gas-1/mutes/mu_nothing").status_code == 404

    for device, body, code in (
        ("water-1", {"valve_device_id": "water-1"}, 422),  # only gas sensors have a valve
        ("gas-1", {"valve_device_id": "no-such-valve"}, 422),
        ("gas-1", {"valve_device_id": "bad id!"}, 422),
        ("gas-1", {"building": "x" * 65}, 422),
        ("gas-1", {"building": ""}, 422),
        ("gas-1", {"colour": "red"}, 422),
        ("nothing", {"building": "b"}, 404),
    ):
        resp = api.patch(f"/api/v1/devices/{device}", json=body)
        assert resp.status_code == code and "detail" in resp.json(), (device, body, resp.text)

    assert ok(api.get("/api/v1/suppressions")) == {"away": [], "mutes": []}
    with gw.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(T.elder_away)).scalar() == 0
        assert c.execute(select(func.count()).select_from(T.device_mutes)).scalar() == 0
        row = c.execute(select(T.devices).where(T.devices.c.id == "gas-1")).one()
        assert (row.building, row.valve_device_id) == (None, None)


# --- an elder's own water thresholds --------------------------------------------------------------


def audit_rows(gw: Any) -> list[Any]:
    with gw.engine.connect() as c:
        return list(
            c.execute(
                select(audit_log)
                .where(audit_log.c.resource == "water_rules")
                .order_by(audit_log.c.id)
            ).all()
        )


def test_an_elders_own_thresholds_open_the_no_water_alert_at_the_next_tick(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    before = ok(api.get("/api/v1/elders/e1/water-rules"))
    assert before["override"] is None and before["effective"]["fixed_window_h"] == 12
    at_local(clock, 6)
    dry_day(mq, gw, clock, until_hour=10)  # 06:00 .. 10:00: the default waits for 18:00
    time.sleep(QUIET)
    assert "no_water_use" not in kinds_paged(mq)

    got = ok(
        api.put(
            "/api/v1/elders/e1/water-rules",
            json={"fixed_window_h": 3, "fixed_min_l": 5, "learn": False},
        )
    )
    assert got["override"] == {
        "fixed_min_l": 5.0,
        "fixed_window_h": 3.0,
        "day_start": None,
        "day_end": None,
        "learn": False,
        "running_window_min": None,
    }
    assert got["effective"]["fixed_window_h"] == 3 and got["effective"]["day_start"] == "06:00"
    assert got["updated_by"] == "api:admin"
    [row] = audit_rows(gw)
    assert (row.action, row.elder_id, row.actor) == ("update", "e1", "api:admin")
    assert row.detail["values"]["fixed_window_h"] == 3

    clock.advance(2 * MIN)  # no reading: the tick judges with the new window
    [page] = mq.wait_for(lambda m: m["kind"] == "no_water_use", timeout=5)
    assert page["priority"] == "P2"
    [alert] = alerts_of(gw, "no_water_use")
    opened = timeline(gw, alert.id)[0]
    assert opened.detail["rule"] == "fixed_window"
    assert "in the last 3h00 of daytime" in opened.detail["detail"]
    assert "at least 5 L" in opened.detail["detail"]


def test_removing_an_elders_thresholds_returns_to_the_defaults(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    ok(api.put("/api/v1/elders/e1/water-rules", json={"fixed_window_h": 2}))
    at_local(clock, 6)
    reading(mq, gw, clock, "water-1", flow_l=0.0, interval_s=1800, total_l=1234.5)
    assert ok(api.delete("/api/v1/elders/e1/water-rules"), 204) is None
    assert api.delete("/api/v1/elders/e1/water-rules").status_code == 404
    back = ok(api.get("/api/v1/elders/e1/water-rules"))
    assert back["override"] is None and back["updated_at"] is None
    assert back["effective"]["fixed_window_h"] == 12 and back["effective"]["learn"] is True
    assert [r.action for r in audit_rows(gw)] == ["update", "delete"]
    assert audit_rows(gw)[1].detail["values"] == {"fixed_window_h": 2.0}

    clock.advance(30 * MIN)
    dry_day(mq, gw, clock, until_hour=17)  # past 08:00, where the 2-hour window would be
    time.sleep(QUIET)
    assert "no_water_use" not in kinds_paged(mq)
    clock.advance(60 * MIN)
    reading(mq, gw, clock, "water-1", flow_l=0.0, interval_s=3600, total_l=1234.5)  # 18:00
    mq.wait_for(lambda m: m["kind"] == "no_water_use", timeout=5)
    [alert] = alerts_of(gw, "no_water_use")
    assert "in the last 12h00 of daytime" in timeline(gw, alert.id)[0].detail["detail"]


def test_bad_water_thresholds_get_422_and_change_nothing(
    engine: Any, gw: Any, api: httpx.Client
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    kept = ok(api.put("/api/v1/elders/e1/water-rules", json={"fixed_min_l": 20.5}))
    for body in (
        {},  # nothing to set: DELETE removes an override
        {"fixed_min_l": 0},
        {"fixed_min_l": -3},
        {"fixed_min_l": 1001},
        {"fixed_min_l": "10"},
        {"fixed_window_h": 0},
        {"fixed_window_h": 49},
        {"fixed_window_h": 2.5},
        {"day_start": "25:00"},
        {"day_start": "7:00"},
        {"day_start": "07:00:00"},
        {"day_end": "05:00"},  # before the default day_start
        {"day_start": "20:00", "day_end": "08:00"},
        {"learn": "yes"},
        {"learn": 1},
        {"running_window_min": 5},
        {"running_window_min": 1441},
        {"fixed_min_l": 5, "colour": "red"},
        {"fixed_min_l": None},
    ):
        resp = api.put("/api/v1/elders/e1/water-rules", json=body)
        assert resp.status_code == 422 and "detail" in resp.json(), (body, resp.text)
    resp = api.put("/api/v1/elders/nobody/water-rules", json={"fixed_min_l": 5})
    assert resp.status_code == 404
    assert api.get("/api/v1/elders/nobody/water-rules").status_code == 404
    assert api.delete("/api/v1/elders/nobody/water-rules").status_code == 404

    assert ok(api.get("/api/v1/elders/e1/water-rules")) == kept
    assert kept["effective"]["fixed_min_l"] == 20.5
    assert [r.action for r in audit_rows(gw)] == ["update"]
    with gw.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(elder_water_rules)).scalar() == 1
