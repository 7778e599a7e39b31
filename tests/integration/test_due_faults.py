"""One alert that cannot be escalated or reminded (a bug, a bad stored row) holds up no other:
each due alert is worked in a savepoint of its own, so its fault rolls back its own writes only,
and it is tried again a little later rather than at every poll. On SQLite and PostgreSQL, with
a real Mosquitto; the fault is a stored row this gateway cannot read, not patched code."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from gateway import tables as T
from gateway.alerting import DUE_RETRY_S
from gateway.api import create_app
from tests.integration.test_api import serving
from tests.integration.test_paging import PEOPLE, QUIET, Hooks, ms, ok
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

ADMIN = "admin-due-faults-token"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gw(make_gateway: Any, clock: FakeClock) -> Any:
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


def set_kind(gw: Any, alert_id: str, kind: str) -> None:
    """Store an alert kind this gateway does not know (as a newer version leaves behind when it
    is rolled back), or put the real one back."""
    with gw.engine.begin() as c:
        c.execute(update(T.alerts).where(T.alerts.c.id == alert_id).values(kind=kind))


def alert_row(gw: Any, alert_id: str) -> Any:
    with gw.engine.connect() as c:
        return c.execute(select(T.alerts).where(T.alerts.c.id == alert_id)).one()


def events(gw: Any, alert_id: str, type_: str) -> list[Any]:
    """Read from the table: the API would have to read the unknown kind too."""
    with gw.engine.connect() as c:
        e = T.alert_events.c
        q = select(e.at, e.detail).where(e.alert_id == alert_id, e.type == type_).order_by(e.id)
        return list(c.execute(q).all())


def press(mq: Mqtt, seen: set[str]) -> str:
    [page] = mq.wait_for(lambda m: m["type"] == "page" and m["alert_id"] not in seen, timeout=2)
    seen.add(page["alert_id"])
    return str(page["alert_id"])


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_an_alert_that_cannot_escalate_holds_up_no_other_and_is_retried_later(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    seed_home(engine, n=2, steps=[(["w1"], 60), (["v1"], 60)], responders=PEOPLE)
    seen: set[str] = set()
    mq.event("cb-1", "button.pressed")
    bad = press(mq, seen)
    mq.event("cb-2", "button.pressed")
    good = press(mq, seen)
    set_kind(gw, bad, "fall_detected")  # due first: its fault used to roll back both

    clock.advance(61)
    [step2] = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=2)
    assert (step2["alert_id"], step2["step"]) == (good, 2)
    wait_until(lambda: events(gw, bad, "escalation_failed"), what="the fault on the timeline")
    time.sleep(QUIET)  # a few polls: it is not tried at each
    [failed] = events(gw, bad, "escalation_failed")
    assert failed.detail["error"] == "ValueError"
    row = alert_row(gw, bad)
    assert (row.state, row.step) == ("open", 1)
    assert row.next_escalation_at == failed.at + DUE_RETRY_S * 1000 == ms(failed.detail["retry_at"])
    # Nothing of its step half done: no event, page or count of it, and no log line saying so.
    assert not events(gw, bad, "escalated") and not events(gw, bad, "paged")[1:]
    assert [p["alert_id"] for p in mq.pages("pv1")] == [good]
    assert gw.metrics.escalations._value.get() == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.alerts"]
    assert f"alert escalated id={good} step=2 reason=timeout" in lines
    assert not [
        x
        for x in lines
        if x.startswith((f"alert escalated id={bad}", f"alert paged id={bad} step=2"))
    ]
    assert [x for x in lines if x.startswith(f"alert escalation_failed id={bad} ")]
    [trace] = [r for r in caplog.records if r.name == "gateway.alerting" and bad in r.getMessage()]
    assert trace.levelno == logging.ERROR and "ValueError" in trace.getMessage()
    assert "fall_detected" not in trace.getMessage(), "a stored value is not logged"

    clock.advance(DUE_RETRY_S + 1)  # tried again later, not given up on
    wait_until(lambda: len(events(gw, bad, "escalation_failed")) == 2, what="the retry")
    set_kind(gw, bad, "call_button")  # the row repaired: it goes on where it stopped
    clock.advance(DUE_RETRY_S + 1)
    [late] = mq.wait_for(lambda m: m["_pager"] == "pv1" and m["alert_id"] == bad, timeout=2)
    assert late["step"] == 2 and alert_row(gw, bad).step == 2


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_an_alert_that_cannot_be_reminded_holds_up_no_other_reminder(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, n=2, steps=[], responders=PEOPLE)
    for elder in ("e1", "e2"):
        ok(api.post(f"/api/v1/elders/{elder}/pairings", json={"responder_id": "w1"}), 201)
    seen: set[str] = set()
    ids = []
    for device in ("cb-1", "cb-2"):
        mq.event(device, "button.pressed")
        alert_id = press(mq, seen)
        mq.reply("pw1", alert_id, "ack")
        wait_until(lambda a=alert_id: alert_row(gw, a).state == "acknowledged", what="the ack")
        ids.append(alert_id)
    bad, good = ids
    set_kind(gw, bad, "fall_detected")  # due first: its fault used to roll back both

    clock.advance(601)
    [reminder] = mq.wait_for(lambda m: m["alert_id"] == good, timeout=2, count=2)[1:]
    assert reminder["_pager"] == "pw1" and "提醒" in reminder["text"]
    wait_until(lambda: events(gw, bad, "reminder_failed"), what="the fault on the timeline")
    time.sleep(QUIET)
    [failed] = events(gw, bad, "reminder_failed")
    row = alert_row(gw, bad)
    assert (row.state, row.reminders_sent) == ("acknowledged", 0)
    assert row.next_reminder_at == failed.at + DUE_RETRY_S * 1000
    assert not events(gw, bad, "reminded") and alert_row(gw, good).reminders_sent == 1
    assert [p["alert_id"] for p in mq.pages("pw1")].count(bad) == 1, "its first page only"

    clock.advance(DUE_RETRY_S + 1)
    wait_until(lambda: len(events(gw, bad, "reminder_failed")) == 2, what="the retry")
    set_kind(gw, bad, "call_button")
    clock.advance(DUE_RETRY_S + 1)
    mq.wait_for(lambda m: m["alert_id"] == bad, timeout=2, count=2)
    assert alert_row(gw, bad).reminders_sent == 1


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hooks]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # loopback only, whatever the host says
    h = Hooks()
    yield h
    h.close()


def delivery_rows(gw: Any, alert_id: str) -> list[Any]:
    with gw.engine.connect() as c:
        d = T.deliveries.c
        return list(c.execute(select(T.deliveries).where(d.alert_id == alert_id)).all())


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_channel_chain_that_cannot_be_worked_holds_up_no_other(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock, hooks: Hooks
) -> None:
    watchers = [("w1", "watcher", "pw1", "zh-CN"), ("w2", "watcher", "pw2", "zh-CN")]
    seed_home(engine, n=2, steps=[], responders=watchers)
    for elder, person in (("e1", "w1"), ("e2", "w2")):
        ok(api.post(f"/api/v1/elders/{elder}/pairings", json={"responder_id": person}), 201)
        link = {"channel": "apprise", "address": hooks.url(f"sms-{person}"), "after_s": 60}
        ok(api.put(f"/api/v1/responders/{person}/channels", json={"links": [link]}))
    seen: set[str] = set()
    mq.event("cb-1", "button.pressed")
    bad = press(mq, seen)
    mq.event("cb-2", "button.pressed")
    good = press(mq, seen)
    wait_until(
        lambda: all(r.status == "sent" for a in (bad, good) for r in delivery_rows(gw, a)),
        what="both pages handed to the broker",
    )
    with gw.engine.begin() as c:  # a delivery status this version does not know
        c.execute(
            update(T.deliveries).where(T.deliveries.c.alert_id == bad).values(status="bounced")
        )

    clock.advance(61)
    [sms] = hooks.wait("sms-w2", timeout=3)
    assert "老人2" in sms["message"]
    wait_until(lambda: events(gw, bad, "chain_failed"), what="the fault on the timeline")
    time.sleep(QUIET)
    [failed] = events(gw, bad, "chain_failed")
    assert failed.detail["error"] == "ValueError"
    assert hooks.to("sms-w1") == []
    [row] = delivery_rows(gw, bad)  # nothing of its step half done
    assert (row.channel, row.status, row.next_try_at) == (
        "pager",
        "bounced",
        failed.at + DUE_RETRY_S * 1000,
    )

    clock.advance(DUE_RETRY_S + 1)
    wait_until(lambda: len(events(gw, bad, "chain_failed")) == 2, what="the retry")
    with gw.engine.begin() as c:  # put right: the chain goes on
        c.execute(update(T.deliveries).where(T.deliveries.c.alert_id == bad).values(status="sent"))
    clock.advance(DUE_RETRY_S + 1)
    [late] = hooks.wait("sms-w1", timeout=3)
    assert "老人1" in late["message"]
