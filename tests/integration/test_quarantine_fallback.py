"""An alarm event the worker quarantines (gateway/ingest.py `_poison`: our code broke on it, or
the database refused it) still pages: the fallback (`Ingest._fallback`) opens its alert, to the
staff, once. Over a real Mosquitto, on SQLite and PostgreSQL. The fault is injected in the normal
path only (the rules' `on_event`, the parser, or a trigger the normal path's write meets), never
in the fallback's own code, except where its failure is the point."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import DBAPIError

from alerts import rules
from gateway import ingest, refused_alarms
from gateway import tables as T
from tests.integration.test_unstorable import (
    _refuse_messages,
    alerts_of,
    messages_with,
    press_paged_within,
    quarantined,
)
from tests.support.alarm import Mqtt, seed_home, wait_until


def broken_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules raise on every alarm event, as a bug of ours would (the fallback does not use
    them)."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault: the rules broke")

    monkeypatch.setattr(rules, "on_event", boom)


def fallback(gw: Any, outcome: str) -> float:
    return gw.metrics.quarantine_fallback.labels(outcome)._value.get()


def events_of(gw: Any, alert_id: str) -> list[Any]:
    e = T.alert_events.c
    with gw.engine.connect() as c:
        q = select(e.type, e.actor, e.detail).where(e.alert_id == alert_id).order_by(e.id)
        return c.execute(q).all()


def paged_after_the_rest(mq: Mqtt, device: str, elder: str) -> None:
    """Press `device`'s button, and wait for its page: the worker takes messages in order, and
    the publisher sends pages in order, so what came before it was settled, and paged if it
    was to be (an absence then means something, as after a sleep it would not)."""
    sent = time.monotonic()
    mq.event(device, "button.pressed")
    mq.wait_for(lambda m: m["type"] == "page" and m["_at"] >= sent and m["elder"]["name"] == elder)


def refused_on_board(gw: Any, mq: Mqtt) -> list[Any]:
    """The station board's refused alarms (every station's), as gateway/refused_alarms.py
    lists them."""
    with gw.engine.connect() as c:
        return refused_alarms.recent(c, mq.base, gw.runtime.now_ms(), None)


def lifecycle(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.alerts"]


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_press_whose_processing_raises_pages_the_staff_once(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_home(engine, n=2)
    gw = make_gateway()
    broken_rules(monkeypatch)
    sent = time.monotonic()
    msg_id = mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0)
    assert page["_at"] - sent < 2.0, f"paged after {page['_at'] - sent:.2f}s"
    assert page["_pager"] == "ps1"  # the staff, not the elder's watchers (step 1: w1, w2)
    assert (page["kind"], page["priority"], page["elder"]["name"]) == ("call_button", "P1", "老人1")

    [q] = quarantined(gw)
    assert q.reason == "internal_error" and json.loads(q.payload)["id"] == msg_id
    [alert] = alerts_of(gw)
    assert (alert.id, alert.device_id, alert.elder_id) == (page["alert_id"], "cb-1", "e1")
    assert (alert.kind, alert.priority, alert.state) == ("call_button", "P1", "open")
    assert (alert.plan_source, alert.trigger_msg_id) == ("fallback", msg_id)
    opened, planned, *_ = events_of(gw, alert.id)
    assert (opened.type, opened.actor) == ("opened", "device:cb-1")
    assert opened.detail["event"] == "button.pressed"
    assert opened.detail["fallback"]["quarantine_id"] == q.id
    assert opened.detail["fallback"]["reason"] == "internal_error"
    assert planned.detail["source"] == "fallback"
    wait_until(lambda: fallback(gw, "opened") == 1, what="the fallback counted")
    opened_n = gw.metrics.alerts_opened.labels("call_button")
    wait_until(lambda: opened_n._value.get() == 1, what="the alert counted")
    lines = lifecycle(caplog)
    assert (
        logging.WARNING,
        f"alert opened id={alert.id} kind=call_button priority=P1 elder=e1 "
        f"device=cb-1 source=fallback quarantine={q.id}",
    ) in lines

    # The same press again (a device's retry, a redelivery): the fallback claimed it as the
    # normal path does, so it is a repeat there, with the fault still in place.
    mq.raw(f"{mq.base}/v1/devices/cb-1/events", q.payload.encode())
    wait_until(lambda: gw.metrics.repeated._value.get() == 1, what="the copy a repeat")
    assert [a.id for a in alerts_of(gw)] == [alert.id] and len(quarantined(gw)) == 1
    assert messages_with(gw, msg_id) == 1
    paged_after_the_rest(mq, "cb-2", "老人2")
    assert [p for p in mq.pages() if p["alert_id"] == alert.id] == [page]
    assert refused_on_board(gw, mq) == [], "paged by the fallback: on the board as its alert"


def test_a_copy_quarantined_again_opens_no_second_alert(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fault comes before the claim: every copy is quarantined, and the fallback's own claim
    # finds the first.
    seed_home(engine, n=2)
    gw = make_gateway()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected fault: parsing broke")

    monkeypatch.setattr(gw.ingest, "_parse", boom)
    msg_id = mq.event("gas-1", "gas.alarm", lel_pct=40)
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0)
    assert (page["_pager"], page["kind"], page["priority"]) == ("ps1", "gas", "P1")
    [q] = quarantined(gw)
    for _ in range(2):
        mq.raw(f"{mq.base}/v1/devices/gas-1/events", q.payload.encode())
    wait_until(lambda: len(quarantined(gw)) == 3, what="the copies quarantined too")
    wait_until(lambda: fallback(gw, "repeat") == 2, what="the copies taken for repeats")
    assert [a.id for a in alerts_of(gw)] == [page["alert_id"]]
    assert messages_with(gw, msg_id) == 1 and fallback(gw, "opened") == 1
    paged_after_the_rest(mq, "cb-2", "老人2")
    assert [p for p in mq.pages() if p["alert_id"] == page["alert_id"]] == [page]


def test_an_alarm_joins_the_active_alert_of_its_kind(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_home(engine)
    gw = make_gateway()
    mq.event("gas-1", "gas.alarm", lel_pct=30)
    wait_until(lambda: alerts_of(gw), what="the gas alert opened")
    [first] = alerts_of(gw)
    broken_rules(monkeypatch)
    again = mq.event("gas-1", "gas.alarm", lel_pct=40)
    wait_until(lambda: fallback(gw, "joined") == 1, what="the fallback joined")
    assert [a.id for a in alerts_of(gw)] == [first.id]
    [q] = quarantined(gw)
    joined = [e for e in events_of(gw, first.id) if e.type == "repeated"]
    assert [e.detail["msg_id"] for e in joined] == [again]
    assert joined[0].detail["fallback"] == {**joined[0].detail["fallback"], "quarantine_id": q.id}
    assert fallback(gw, "opened") == 0


def test_what_is_no_alarm_of_an_active_device_gets_no_fallback(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every message breaks processing (before the parser's refusals): only a well-formed alarm
    # of an active device of the right kind is paged by the fallback.
    seed_home(engine, n=3)
    with engine.begin() as c:
        c.execute(update(T.devices).where(T.devices.c.id == "cb-3").values(status="retired"))
    gw = make_gateway()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected fault: parsing broke")

    monkeypatch.setattr(gw.ingest, "_parse", boom)
    now = int(time.time() * 1000)
    events = f"{mq.base}/v1/devices/cb-1/events"
    mq.raw(events, b'{"id": "x1", "type": "button.pressed"')  # not JSON
    mq.raw(events, json.dumps({"ts": now, "type": "button.pressed"}).encode())  # no id
    mq.raw(events, json.dumps({"id": "x" * 65, "ts": now, "type": "button.pressed"}).encode())
    mq.raw(events, json.dumps({"id": "x4", "type": "button.pressed", "device_id": "cb-2"}).encode())
    mq.event("cb-1", "button.cancelled")  # no alarm
    mq.event("cb-1", "gas.alarm", lel_pct=40)  # not of a call button
    mq.event("cb-3", "button.pressed")  # retired
    mq.event("cb-9", "button.pressed")  # no such device
    mq.telemetry("water-1", flow_l=1.0, interval_s=60)
    # The worker takes them in order: once this one is paged, the others were settled.
    mq.event("cb-2", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0)
    assert page["elder"]["name"] == "老人2"
    wait_until(lambda: len(quarantined(gw)) == 10, what="all quarantined")
    assert {q.reason for q in quarantined(gw)} == {"internal_error"}
    assert [(a.device_id, a.plan_source) for a in alerts_of(gw)] == [("cb-2", "fallback")]
    time.sleep(0.3)
    assert len(mq.pages()) == 1
    assert (fallback(gw, "opened"), fallback(gw, "failed")) == (1, 0)


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_fallback_the_database_refuses_leaves_the_quarantine_and_says_so(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The database refuses the press's id, on the normal path and the fallback's claim alike.
    seed_home(engine, n=2)
    gw = make_gateway()
    _refuse_messages(engine, "poison-f")
    mq.event("cb-1", "button.pressed", msg_id="poison-f")
    wait_until(lambda: gw.metrics.db_errors._value.get() >= 1, what="the press refused")
    press_paged_within(mq, "cb-2", 1.0)  # the evidence against it
    wait_until(lambda: fallback(gw, "failed") == 1, what="the fallback failed")
    [q] = quarantined(gw)
    assert q.reason == "unstorable" and json.loads(q.payload)["id"] == "poison-f"
    assert [a.device_id for a in alerts_of(gw)] == ["cb-2"]
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any(f"(id={q.id}, unstorable) and NOT paged" in m for m in critical), critical
    assert any(
        m.startswith("alert unpaged device=cb-1") and f"quarantine={q.id}" in m for m in critical
    ), critical
    # Acknowledged all the same: a restarted gateway is not handed it again. A copy handed
    # again would come first (the broker resends what is unacknowledged at once) and be
    # refused, before another press is paged.
    gw.stop()
    gw2 = make_gateway()
    paged_after_the_rest(mq, "cb-1", "老人1")
    assert gw2.metrics.db_errors._value.get() == 0
    assert len(quarantined(gw2)) == 1 and fallback(gw2, "failed") == 0


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_fallback_whose_alert_is_refused_claims_nothing(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_home(engine)
    if engine.dialect.name == "sqlite":
        trigger = (
            "CREATE TRIGGER refuse_alert BEFORE INSERT ON alerts WHEN NEW.device_id = 'cb-1' "
            "BEGIN SELECT RAISE(ABORT, 'injected fault: alert refused'); END"
        )
        with engine.begin() as c:
            c.execute(text(trigger))
    else:
        with engine.begin() as c:
            c.execute(
                text(
                    "CREATE FUNCTION refuse_alert() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN IF NEW.device_id = 'cb-1' THEN "
                    "RAISE EXCEPTION 'injected fault: alert refused'; END IF; RETURN NEW; END $$"
                )
            )
            c.execute(
                text(
                    "CREATE TRIGGER refuse_alert BEFORE INSERT ON alerts "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_alert()"
                )
            )
    gw = make_gateway()
    broken_rules(monkeypatch)
    started = time.monotonic()
    msg_id = mq.event("cb-1", "button.pressed")
    wait_until(lambda: fallback(gw, "failed") == 1, what="the fallback failed")
    assert time.monotonic() - started < 5.0  # a refusal is not waited on (an outage is)
    [q] = quarantined(gw)
    assert q.reason == "internal_error"
    assert alerts_of(gw) == [] and mq.pages() == []
    assert messages_with(gw, msg_id) == 0  # rolled back with it: a redelivery tries again
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any(f"(id={q.id}, internal_error) and NOT paged" in m for m in critical), critical
    # Paged by nobody: the board's refused alarms show it, as nothing else would.
    [shown] = refused_on_board(gw, mq)
    assert (shown.quarantine_id, shown.reason, shown.elder_id) == (q.id, "internal_error", "e1")


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_an_alarm_the_database_cannot_store_is_paged_by_the_fallback_at_once(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    # The database refuses the press's payload as the normal path stores it (the claim's row
    # keeps it); the fallback's claim keeps no payload (the quarantine has it) and goes through.
    # Set aside (held), the press would wait for another message to be taken, the evidence to
    # quarantine it: on a quiet night, for hours. The fallback pages it while it is held.
    seed_home(engine, n=2)
    with engine.begin() as c:
        if engine.dialect.name == "sqlite":
            c.execute(
                text(
                    "CREATE TRIGGER refuse_payload BEFORE INSERT ON messages "
                    "WHEN NEW.payload LIKE '%unstorable-1%' "
                    "BEGIN SELECT RAISE(ABORT, 'injected fault: payload refused'); END"
                )
            )
        else:
            c.execute(
                text(
                    "CREATE FUNCTION refuse_payload() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN IF NEW.payload LIKE '%unstorable-1%' THEN "
                    "RAISE EXCEPTION 'injected fault: payload refused'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            c.execute(
                text(
                    "CREATE TRIGGER refuse_payload BEFORE INSERT ON messages "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_payload()"
                )
            )
    gw = make_gateway()
    sent = time.monotonic()
    mq.event("cb-1", "button.pressed", msg_id="unstorable-1")
    [page] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=5.0)
    assert page["_at"] - sent < 2.0, f"paged after {page['_at'] - sent:.2f}s"
    assert (page["kind"], page["elder"]["name"]) == ("call_button", "老人1")
    assert quarantined(gw) == []  # held, unacknowledged: nothing else came to blame it
    fb = [a for a in alerts_of(gw) if a.device_id == "cb-1"]
    assert [(a.id, a.plan_source, a.trigger_msg_id) for a in fb] == [
        (page["alert_id"], "fallback", "unstorable-1")
    ]
    opened = events_of(gw, page["alert_id"])[0].detail["fallback"]
    assert (opened["reason"], opened["quarantine_id"]) == ("held", None)
    assert messages_with(gw, "unstorable-1") == 1

    # Another press taken, the held one is refused again and quarantined: its fallback finds
    # its claim, a repeat, and nobody is paged twice.
    press_paged_within(mq, "cb-2", 1.0)
    wait_until(lambda: fallback(gw, "repeat") == 1, what="the quarantined press a repeat")
    [q] = quarantined(gw)
    assert q.reason == "unstorable" and gw.ingest._held == []
    assert [a.id for a in alerts_of(gw) if a.device_id == "cb-1"] == [page["alert_id"]]
    assert fallback(gw, "opened") == 1


def _take_alerts_away(engine: Engine) -> Callable[[], None]:
    """The `alerts` table renamed away: every statement on it fails, as after a failover to a
    database without it, which gateway/db.py `refused` counts as an outage (PostgreSQL's
    undefined_table; SQLite's "no such table", an OperationalError), not a refusal. Returns
    what brings it back."""
    with engine.begin() as c:
        c.execute(text("ALTER TABLE alerts RENAME TO alerts_away"))

    def back() -> None:
        with engine.begin() as c:
            c.execute(text("ALTER TABLE alerts_away RENAME TO alerts"))

    return back


@pytest.mark.parametrize("meanwhile", ["waited", "restarted"])
def test_a_fallback_waits_out_a_database_outage(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: str,
) -> None:
    # The quarantine row commits, then the database goes away for longer than the fallback
    # used to wait (5 s): the press was acknowledged, and lost. It is waited out now, however
    # long; stopped meanwhile, the gateway leaves it unacknowledged, and it is paged after
    # the restart.
    seed_home(engine)
    gw = make_gateway()
    broken_rules(monkeypatch)
    back: list[Callable[[], None]] = []
    alarm_of = ingest._alarm_of

    def outage_first(base: str, item: Any) -> Any:
        if not back:  # the first fallback, its quarantine row committed, before its transaction
            back.append(_take_alerts_away(engine))
        return alarm_of(base, item)

    monkeypatch.setattr(ingest, "_alarm_of", outage_first)
    msg_id = mq.event("cb-1", "button.pressed")
    try:
        wait_until(lambda: back and quarantined(gw), what="quarantined, the database away")
        wait_until(lambda: gw.metrics.db_errors._value.get() >= 1, what="the fallback waits")
        time.sleep(6.0)  # the outage: longer than the fallback once gave it
        assert fallback(gw, "failed") == 0 and mq.pages() == []
        if meanwhile == "restarted":
            gw.stop()
    finally:
        back[0]()
    if meanwhile == "restarted":
        monkeypatch.setattr(ingest, "_alarm_of", alarm_of)
        gw = make_gateway()  # the broker hands it the press again: quarantined again, paged
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=10.0)
    assert (page["_pager"], page["kind"], page["elder"]["name"]) == ("ps1", "call_button", "老人1")
    [alert] = alerts_of(gw)
    assert (alert.id, alert.plan_source, alert.trigger_msg_id) == (
        page["alert_id"],
        "fallback",
        msg_id,
    )
    assert messages_with(gw, msg_id) == 1
    assert len(quarantined(gw)) == (2 if meanwhile == "restarted" else 1)
    assert fallback(gw, "opened") == 1 and fallback(gw, "failed") == 0
    assert gw.ingest.db_ok


def test_what_the_parser_refuses_gets_no_fallback_and_no_claim(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fault comes before the parser (which is intact): an alarm the contract refuses
    # changes nothing, no page and no claim, and the device's corrected copy, with the same
    # id, is taken as new.
    seed_home(engine, n=2)
    gw = make_gateway()
    parse = gw.ingest._parse

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected fault: before the parser")

    monkeypatch.setattr(gw.ingest, "_parse", boom)
    now = int(time.time() * 1000)
    press = f"{mq.base}/v1/devices/cb-1/events"
    gas = f"{mq.base}/v1/devices/gas-1/events"
    mq.raw(press, json.dumps({"id": "r1", "type": "button.pressed"}).encode())  # no ts
    medium = {"id": "r2", "ts": now, "type": "button.pressed", "press": "medium"}
    mq.raw(press, json.dumps(medium).encode())
    big = {"id": "r3", "ts": now, "type": "button.pressed", "note": "x" * 4100}
    mq.raw(press, json.dumps(big).encode())  # over 4096 bytes
    mq.raw(gas, f'{{"id": "r4", "ts": {now}, "type": "gas.alarm", "lel_pct": NaN}}'.encode())
    mq.raw(gas, json.dumps({"id": "r5", "ts": now, "type": "gas.alarm"}).encode())  # no reading
    paged_after_the_rest(mq, "cb-2", "老人2")  # by the fallback: a well-formed press
    wait_until(lambda: len(quarantined(gw)) == 6, what="all quarantined")
    assert {q.reason for q in quarantined(gw)} == {"internal_error"}
    assert [a.device_id for a in alerts_of(gw)] == ["cb-2"]
    assert [messages_with(gw, f"r{i}") for i in range(1, 6)] == [0] * 5
    assert len(mq.pages()) == 1 and fallback(gw, "opened") == 1

    monkeypatch.setattr(gw.ingest, "_parse", parse)
    mq.raw(press, json.dumps({"id": "r1", "ts": now, "type": "button.pressed"}).encode())
    mq.wait_for(lambda m: m["type"] == "page" and m["elder"]["name"] == "老人1")
    assert [(a.device_id, a.trigger_msg_id) for a in alerts_of(gw)][-1] == ("cb-1", "r1")
    assert gw.metrics.repeated._value.get() == 0


def test_a_press_still_pages_when_the_parser_itself_breaks(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The parser raising (not refusing) breaks the normal path and the fallback's check alike:
    # the fallback's own reading of the press stands, and the staff are paged.
    seed_home(engine)
    gw = make_gateway()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected fault: the parser broke")

    monkeypatch.setattr(ingest, "parse_event", boom)
    msg_id = mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0)
    assert (page["_pager"], page["kind"], page["elder"]["name"]) == ("ps1", "call_button", "老人1")
    [q] = quarantined(gw)
    assert q.reason == "internal_error"
    assert messages_with(gw, msg_id) == 1 and fallback(gw, "opened") == 1


def test_a_press_pages_when_the_elders_row_cannot_be_read_whole(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    """An elder's row with a column our code cannot read (tags that are no JSON, written by
    hand or by an old tool) broke the normal path and then the fallback on the same row, and
    the press paged nobody. A page needs the name, address and phone only. PostgreSQL refuses
    such tags when they are written: the fault is SQLite's alone."""
    seed_home(engine, n=2)
    bad = text("UPDATE elders SET tags = '{bad' WHERE id = 'e1'")
    if engine.dialect.name != "sqlite":
        with pytest.raises(DBAPIError), engine.begin() as c:
            c.execute(bad)
        return
    with engine.begin() as c:
        c.execute(bad)
    make_gateway()
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page" and m["elder"]["name"] == "老人1")
    assert page["kind"] == "call_button"
