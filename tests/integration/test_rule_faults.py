"""One rule state that cannot be checked (a bug, a state a newer version wrote) holds up no other
home: the tick checks each due state, and releases each ended suppression, in a savepoint of its
own (gateway/ruling.py, RuleBatch.alone), so a fault rolls back that one only, which is tried
again a minute later, said in the log at every try and once on /rule-events for staff; and
`Ruling.resume` at start-up leaves it to the tick rather than failing the start. On SQLite and
PostgreSQL with a real Mosquitto; the faults are rows written to the database, not patched code."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, update

from gateway import tables as T
from gateway.api import create_app
from gateway.ruling import RETRY_S
from tests.integration.test_api import serving
from tests.integration.test_rules import MIN, QUIET, alerts_of, event, ok, reading, timeline, types
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

ADMIN = "admin-rule-faults-token"


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


def health_row(gw: Any, key: str) -> Any:
    with gw.engine.connect() as c:
        s = T.rule_states.c
        return c.execute(select(T.rule_states).where(s.key == key, s.rule == "health")).one()


def store_health(gw: Any, key: str, state: dict[str, Any]) -> None:
    """Write a device-health state as it is, with a new version token, so that the gateway
    reads it rather than using the copy it holds."""
    with gw.engine.begin() as c:
        s = T.rule_states.c
        c.execute(
            update(T.rule_states)
            .where(s.key == key, s.rule == "health")
            .values(state=state, version=s.version + 1)
        )


def unusable(state: dict[str, Any]) -> dict[str, Any]:
    """Readable, but its deadline is past the calendar's end: `health.check` raises."""
    [device] = state["devices"]
    return {**state, "devices": [{**device, "interval_s": 1e13}]}


def newer_version(state: dict[str, Any]) -> dict[str, Any]:
    """Written by a newer version (rolled back since): this one cannot read it."""
    return {**state, "v": 99}


def warnings(gw: Any) -> list[Any]:
    with gw.engine.connect() as c:
        e = T.rule_events.c
        q = select(T.rule_events).where(e.type == "warning").order_by(e.id)
        return list(c.execute(q).all())


def errors(caplog: pytest.LogCaptureFixture, part: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.ruling" and r.levelno == logging.ERROR and part in r.getMessage()
    ]


@pytest.mark.parametrize("corrupt", [unusable, newer_version], ids=lambda f: f.__name__)
def test_a_rule_state_that_cannot_be_checked_holds_up_no_other_home(
    engine: Any,
    gw: Any,
    api: httpx.Client,
    mq: Mqtt,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    corrupt: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    seed_home(engine, n=2, steps=[(["w1"], 3600)])
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)  # a gas sensor reports every 5 minutes
    reading(mq, gw, clock, "gas-2", lel_pct=0.0)
    good = health_row(gw, "d:gas-1").state
    store_health(gw, "d:gas-1", corrupt(good))

    clock.advance(16 * MIN)  # both silent for three reports: due at the same tick
    [page] = mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    [alert] = alerts_of(gw, "device_offline")
    assert (alert.device_id, page["alert_id"]) == ("gas-2", alert.id)
    wait_until(lambda: warnings(gw), what="the broken state shown to staff")
    time.sleep(QUIET)  # a poll a second: it is not tried at each
    assert len(alerts_of(gw, "device_offline")) == 1
    assert len(mq.pages()) == 1
    [line] = errors(caplog, "rule state health/d:gas-1 failed")
    assert f"retry in {RETRY_S} s" in line
    [warning] = warnings(gw)
    row = health_row(gw, "d:gas-1")
    assert row.state == corrupt(good), "kept as stored, for a fix or another version"
    assert row.due_at == warning.at + RETRY_S * 1000
    [shown] = ok(api.get("/api/v1/rule-events", params={"type": "warning"}))
    assert (shown["device_id"], shown["elder_id"], shown["kind"], shown["reason"]) == (
        "gas-1",
        "e1",
        "device_offline",
        "check_failed",
    )

    clock.advance(RETRY_S + 1)  # tried again, said again in the log, shown once only
    wait_until(lambda: len(errors(caplog, "health/d:gas-1 failed")) == 2, what="the retry")
    assert len(warnings(gw)) == 1
    store_health(gw, "d:gas-1", good)  # put right: found silent at the next try
    clock.advance(RETRY_S + 1)
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5, count=2)
    assert [a.device_id for a in alerts_of(gw, "device_offline")] == ["gas-2", "gas-1"]


def test_a_suppression_that_cannot_be_released_holds_up_no_other_home(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    seed_home(engine, n=2, steps=[(["w1"], 3600)])
    reading(mq, gw, clock, "gas-2", lel_pct=0.0)
    ended = int(clock() * 1000)
    with gw.engine.begin() as c:  # an alert kind this version does not know, its mute ended
        event_id = c.execute(
            insert(T.rule_events)
            .values(
                at=ended - 3_600_000,
                type="suppressed",
                device_id="gas-1",
                elder_id="e1",
                kind="smoke",
                reason="smoke",
                detail={"detail": "smoke"},
                until=ended,
            )
            .returning(T.rule_events.c.id)
        ).scalar_one()

    clock.advance(16 * MIN)
    [page] = mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    [alert] = alerts_of(gw, "device_offline")
    assert (alert.device_id, page["alert_id"]) == ("gas-2", alert.id)
    time.sleep(QUIET)
    [line] = errors(caplog, f"rule event {event_id} ")
    assert "failed (ValueError)" in line and "smoke" in line
    with gw.engine.connect() as c:
        e = c.execute(select(T.rule_events).where(T.rule_events.c.id == event_id)).one()
    assert e.released_at is None, "still shown as suppressed, not released"
    assert e.until > int(clock() * 1000) and e.until - int(clock() * 1000) <= RETRY_S * 1000


def test_a_health_state_that_cannot_be_resumed_neither_stops_the_start_nor_the_others(
    engine: Any,
    gw: Any,
    make_gateway: Callable[..., Any],
    mq: Mqtt,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    seed_home(engine, n=2, steps=[(["w1"], 3600)])
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    reading(mq, gw, clock, "gas-2", lel_pct=0.0)
    broken = unusable(health_row(gw, "d:gas-1").state)
    store_health(gw, "d:gas-1", broken)
    gw.stop()
    clock.advance(2 * 3600)  # the gateway was down for two hours: not the devices' silence

    again = make_gateway(clock=clock, admin_token=ADMIN)
    restarted = int(clock() * 1000)
    wait_until(lambda: warnings(again), what="the broken state shown to staff")
    assert abs(health_row(again, "d:gas-2").due_at - (restarted + 15 * MIN * 1000)) < 5_000
    row = health_row(again, "d:gas-1")
    assert row.state == broken, "not replaced by an empty state"
    assert errors(caplog, "device health d:gas-1 not resumed (OverflowError)")
    time.sleep(QUIET)
    assert not mq.pages(), "the gateway's silence was taken for the devices'"
    clock.advance(16 * MIN)  # silent since the restart: found so
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    assert [a.device_id for a in alerts_of(again, "device_offline")] == ["gas-2"]


def set_kind(gw: Any, alert_id: str, kind: str) -> None:
    with gw.engine.begin() as c:
        c.execute(update(T.alerts).where(T.alerts.c.id == alert_id).values(kind=kind))


def watched(gw: Any, key: str) -> bool:
    with gw.engine.connect() as c:
        s = T.rule_states.c
        return c.execute(select(s.key).where(s.key == key, s.rule == "health")).first() is not None


def test_a_silence_whose_alert_cannot_be_opened_is_not_marked_raised_and_is_raised_later(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock
) -> None:
    # The state is fine; opening its alert fails after the check has moved it on (the device
    # offline and alerted). That move must go with the rollback, or the alert is never opened.
    seed_home(engine, n=2, steps=[(["w1"], 3600)])
    reading(mq, gw, clock, "gas-2", lel_pct=0.0)
    event(mq, gw, clock, "gas-1", "gas.alarm", lel_pct=30.0)
    [alarm] = mq.wait_for(lambda m: m["kind"] == "gas", timeout=5)
    wait_until(lambda: watched(gw, "d:gas-1"), what="the alarm's sign of life")
    set_kind(gw, alarm["alert_id"], "fall_detected")  # a newer version's kind: unreadable here
    before = health_row(gw, "d:gas-1").state

    clock.advance(16 * MIN)
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    assert [a.device_id for a in alerts_of(gw, "device_offline")] == ["gas-2"]
    wait_until(lambda: warnings(gw), what="the broken state shown to staff")
    assert health_row(gw, "d:gas-1").state == before

    set_kind(gw, alarm["alert_id"], "gas")  # put right: raised at the next try
    clock.advance(RETRY_S + 1)
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5, count=2)
    assert [a.device_id for a in alerts_of(gw, "device_offline")] == ["gas-2", "gas-1"]


def test_a_message_does_not_replace_an_unreadable_buildings_health_with_itself_alone(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The tick keeps a building's health state it cannot read; a message from one device of
    the building used to replace it with a state of that device alone, so that another, already
    silent, was watched no more and never found offline. It is rebuilt from the building's
    devices instead, each watched from then."""
    caplog.set_level(logging.INFO, logger="gateway")
    seed_home(engine, n=2, steps=[(["w1"], 3600)])
    with gw.engine.begin() as c:
        c.execute(
            update(T.devices).where(T.devices.c.id.in_(["gas-1", "gas-2"])).values(building="B1")
        )
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    reading(mq, gw, clock, "gas-2", lel_pct=0.0)
    stored = health_row(gw, "b:B1").state
    assert sorted(d["device_id"] for d in stored["devices"]) == ["gas-1", "gas-2"]
    store_health(gw, "b:B1", newer_version(stored))

    for _ in range(8):  # gas-1 is silent; gas-2 reports every 5 minutes
        clock.advance(5 * MIN)
        reading(mq, gw, clock, "gas-2", lel_pct=0.0)
    rebuilt = health_row(gw, "b:B1").state
    assert sorted(d["device_id"] for d in rebuilt["devices"]) == ["gas-1", "gas-2"]
    assert errors(caplog, "device health b:B1 cannot be read: rebuilt from its 2 devices")
    clock.advance(MIN)  # silent for three reports since, and the building's hold over
    [page] = mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    [alert] = alerts_of(gw, "device_offline")
    assert (alert.device_id, page["alert_id"]) == ("gas-1", alert.id)


def in_building(gw: Any, building: str, ids: list[str]) -> None:
    with gw.engine.begin() as c:
        c.execute(update(T.devices).where(T.devices.c.id.in_(ids)).values(building=building))


def pages_of(mq: Mqtt, alert_id: str) -> list[dict[str, Any]]:
    return [p for p in mq.pages() if p["alert_id"] == alert_id]


def test_a_rebuilt_buildings_health_keeps_who_was_offline_and_alerted(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Rebuilt, the state used to watch every device from then: one already offline and
    alerted was raised again (its alert `repeated`) and its recovery not recorded. Now a
    device known offline (silent with its own alert active, or its Last Will) stays offline
    and alerted; an online one is still watched from then, and raised when silent."""
    caplog.set_level(logging.INFO, logger="gateway")
    seed_home(engine, n=4, steps=[(["w1"], 3600)])
    gas = ["gas-1", "gas-2", "gas-3", "gas-4"]
    in_building(gw, "B1", gas)
    for dev in gas:
        reading(mq, gw, clock, dev, lel_pct=0.0)
    mq.status("gas-4", False)  # its Last Will; gas-1 falls silent
    for _ in range(7):  # gas-2 and gas-3 report every 5 minutes
        clock.advance(5 * MIN)
        reading(mq, gw, clock, "gas-2", lel_pct=0.0)
        reading(mq, gw, clock, "gas-3", lel_pct=0.0)
    clock.advance(MIN)  # a tick's look with no message after it
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5, count=2)
    offline = {a.device_id: a for a in alerts_of(gw, "device_offline")}
    assert sorted(offline) == ["gas-1", "gas-4"]
    stored = health_row(gw, "b:B1").state
    store_health(gw, "b:B1", newer_version(stored))

    clock.advance(5 * MIN)  # gas-3 is silent from now on
    reading(mq, gw, clock, "gas-2", lel_pct=0.0)  # the state is rebuilt here
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)  # back: recorded on its alert
    assert "back_online" in types(gw, offline["gas-1"].id)
    for _ in range(7):
        clock.advance(5 * MIN)
        reading(mq, gw, clock, "gas-1", lel_pct=0.0)
        reading(mq, gw, clock, "gas-2", lel_pct=0.0)
    clock.advance(MIN)  # gas-3: silent for three reports since the rebuild, and the hold over
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5, count=3)
    time.sleep(QUIET)
    assert "repeated" not in types(gw, offline["gas-4"].id), "gas-4 was raised again"
    assert len(pages_of(mq, offline["gas-4"].id)) == 1
    assert [a.device_id for a in alerts_of(gw, "device_offline")][2:] == ["gas-3"]
    assert errors(
        caplog,
        "device health b:B1 cannot be read: rebuilt from its 4 devices, 2 known offline"
        " (2 alerted), outage none",
    )


def test_a_rebuilt_buildings_health_does_not_raise_again_an_offline_device_staff_closed(
    engine: Any,
    gw: Any,
    api: httpx.Client,
    mq: Mqtt,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The state keeps a device raised until it is heard again, also when staff closed its
    alert (the device is known to be off: a flat battery to change tomorrow). Rebuilt from the
    database with only the active alerts, such a device was raised again at once."""
    caplog.set_level(logging.INFO, logger="gateway")
    seed_home(engine, n=2, steps=[(["w1"], 3600)])
    gas = ["gas-1", "gas-2"]
    in_building(gw, "B1", gas)
    for dev in gas:
        reading(mq, gw, clock, dev, lel_pct=0.0)
    mq.status("gas-1", False)  # its Last Will
    for _ in range(5):
        clock.advance(5 * MIN)
        reading(mq, gw, clock, "gas-2", lel_pct=0.0)
    clock.advance(MIN)
    [page] = mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    ok(api.post(f"/api/v1/alerts/{page['alert_id']}/resolve", json={"outcome": "real"}))
    store_health(gw, "b:B1", newer_version(health_row(gw, "b:B1").state))

    for _ in range(5):  # the state is rebuilt at the first; gas-1 still silent
        clock.advance(5 * MIN)
        reading(mq, gw, clock, "gas-2", lel_pct=0.0)
    clock.advance(MIN)
    time.sleep(QUIET)
    assert [a.device_id for a in alerts_of(gw, "device_offline")] == ["gas-1"]
    assert errors(caplog, "1 known offline (1 alerted)")


def test_a_rebuilt_buildings_health_keeps_its_outage_in_progress(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A power cut's outage, open when the state became unreadable, is restored from its
    incident: its members coming back are recorded on the incident's alert, which closes when
    the last is back (rebuilt from nothing, it stayed open for good)."""
    caplog.set_level(logging.INFO, logger="gateway")
    seed_home(engine, n=3, steps=[(["w1"], 3600)])
    gas = ["gas-1", "gas-2", "gas-3"]
    in_building(gw, "B1", gas)
    for dev in gas:
        reading(mq, gw, clock, dev, lel_pct=0.0)
    clock.advance(36 * MIN)  # all three silent: one outage
    [page] = mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    with gw.engine.connect() as c:
        [inc] = c.execute(select(T.incidents)).all()
    assert (inc.building, inc.alert_id, inc.closed_at) == ("B1", page["alert_id"], None)
    store_health(gw, "b:B1", newer_version(health_row(gw, "b:B1").state))

    clock.advance(MIN)
    reading(mq, gw, clock, "gas-2", lel_pct=0.0)  # power back: rebuilt here, then heard
    members = [e.detail for e in timeline(gw, inc.alert_id) if e.type == "outage_member"]
    assert [(m["device_id"], m["change"]) for m in members] == [("gas-2", "back_online")]
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    reading(mq, gw, clock, "gas-3", lel_pct=0.0)
    with gw.engine.connect() as c:
        closed = c.execute(select(T.incidents)).one()
    assert (closed.closed_why, closed.closed_at is not None) == ("all_back_online", True)
    assert [a.id for a in alerts_of(gw, "device_offline")] == [inc.alert_id]
    assert errors(
        caplog, f"rebuilt from its 3 devices, 3 known offline (0 alerted), outage {inc.key}"
    )


def test_a_device_moved_into_a_building_whose_health_is_unreadable_keeps_the_others_watched(
    engine: Any,
    gw: Any,
    api: httpx.Client,
    mq: Mqtt,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`Ruling.watch` began an unreadable state afresh with the moved device alone and wrote it
    over the stored one: the building's other devices were watched no more, and one of them
    falling silent was never raised. Now the state is rebuilt as a message rebuilds it."""
    caplog.set_level(logging.INFO, logger="gateway")
    seed_home(engine, n=3, steps=[(["w1"], 3600)])
    in_building(gw, "B1", ["gas-1", "gas-2"])
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    reading(mq, gw, clock, "gas-2", lel_pct=0.0)  # then silent
    store_health(gw, "b:B1", newer_version(health_row(gw, "b:B1").state))

    ok(api.patch("/api/v1/devices/gas-3", json={"building": "B1"}))  # never heard
    assert errors(caplog, "device health b:B1 cannot be read: rebuilt from its 3 devices")
    assert sorted(d["device_id"] for d in health_row(gw, "b:B1").state["devices"]) == [
        "gas-1",
        "gas-2",
        "gas-3",
    ]
    for _ in range(7):  # gas-1 reports every 5 minutes
        clock.advance(5 * MIN)
        reading(mq, gw, clock, "gas-1", lel_pct=0.0)
    clock.advance(MIN)  # 36 min: offline at 15, then the building's hold of 20
    mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5, count=2)
    time.sleep(QUIET)
    assert sorted(a.device_id for a in alerts_of(gw, "device_offline")) == ["gas-2", "gas-3"]
