"""The alarm path against a real Mosquitto, on SQLite and PostgreSQL: a press in, a page out,
answers by pager, escalation, cancellation, repeats and every kind of bad input."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway import tables as T
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until


def alerts_of(gw: Any) -> list[Any]:
    with gw.engine.connect() as c:
        return c.execute(select(T.alerts).order_by(T.alerts.c.created_at)).all()


def timeline(gw: Any, alert_id: str) -> list[str]:
    with gw.engine.connect() as c:
        return [
            r.type
            for r in c.execute(
                select(T.alert_events.c.type)
                .where(T.alert_events.c.alert_id == alert_id)
                .order_by(T.alert_events.c.id)
            )
        ]


def quarantined(gw: Any) -> list[Any]:
    with gw.engine.connect() as c:
        return c.execute(select(T.quarantine).order_by(T.quarantine.c.id)).all()


def count(gw: Any, table: Any) -> int:
    with gw.engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


def state_of(gw: Any, alert_id: str) -> str:
    with gw.engine.connect() as c:
        return c.execute(select(T.alerts.c.state).where(T.alerts.c.id == alert_id)).scalar_one()


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_press_is_paged_to_the_first_step_within_a_second(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    gw = make_gateway()
    sent = time.monotonic()
    mq.event("cb-1", "button.pressed", press="long")
    pages = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0, count=2)
    assert {p["_pager"] for p in pages} == {"pw1", "pw2"}
    assert max(p["_at"] for p in pages) - sent < 1.0
    page = pages[0]
    assert page["priority"] == "P1" and page["kind"] == "call_button" and page["step"] == 1
    assert page["elder"] == {"name": "老人1", "address": "幸福里1号楼", "phone": "13800000000"}
    assert "紧急呼叫" in page["text"] and "老人1" in page["text"]
    reply_by = datetime.fromisoformat(page["reply_by"])
    ts = datetime.fromisoformat(page["ts"])
    assert reply_by.utcoffset() is not None and (reply_by - ts).total_seconds() == pytest.approx(30)
    [alert] = alerts_of(gw)
    assert (alert.state, alert.kind, alert.priority, alert.step) == ("open", "call_button", "P1", 1)
    assert page["alert_id"] == alert.id
    wait_until(lambda: gw.metrics.pages_sent.labels("page")._value.get() == 2, what="PUBACKs")

    def unsent() -> int:
        with gw.engine.connect() as c:
            q = select(func.count()).select_from(T.outbox).where(T.outbox.c.sent_at.is_(None))
            return c.execute(q).scalar_one()

    wait_until(lambda: unsent() == 0, what="outbox marked sent")


def test_second_press_joins_the_open_alert(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    gw = make_gateway()
    mq.event("cb-1", "button.pressed")
    mq.wait_for(lambda m: m["type"] == "page", count=2)
    mq.event("cb-1", "button.pressed")
    wait_until(lambda: "repeated" in timeline(gw, alerts_of(gw)[0].id), what="join")
    assert len(alerts_of(gw)) == 1
    time.sleep(0.2)
    assert len(mq.pages()) == 2  # a join pages nobody again


def test_repeated_message_id_has_effect_once_even_after_resolution(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    gw = make_gateway()
    for _ in range(3):
        mq.event("cb-1", "button.pressed", msg_id="same-id")
    mq.wait_for(lambda m: m["type"] == "page", count=2)
    wait_until(lambda: gw.metrics.repeated._value.get() == 2, what="two repeats counted")
    [alert] = alerts_of(gw)
    assert timeline(gw, alert.id).count("repeated") == 0
    mq.reply("pw1", alert.id, "resolved")
    wait_until(lambda: state_of(gw, alert.id) == "resolved", what="resolved")
    mq.event("cb-1", "button.pressed", msg_id="same-id")
    wait_until(lambda: gw.metrics.repeated._value.get() == 3, what="third repeat counted")
    assert len(alerts_of(gw)) == 1


def test_ack_by_pager_stops_escalation_and_tells_the_others(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    clock = FakeClock()
    gw = make_gateway(clock=clock)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    mq.reply("pw1", page["alert_id"], "ack")
    notice = mq.wait_for(lambda m: m["type"] == "notice")[0]
    assert notice["_pager"] == "pw2" and notice["state"] == "acknowledged"
    assert "R-pw1" not in notice["text"] and "R-w1" in notice["text"]
    assert state_of(gw, page["alert_id"]) == "acknowledged"
    clock.advance(3600)
    time.sleep(0.6)  # three scheduler polls
    assert not mq.pages("pv1"), "an acknowledged alert must not escalate"
    assert not mq.pages("pw1", "notice"), "the one who acked is not told someone acked"


def test_escalation_after_timeout_then_last_step_repeats(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    clock = FakeClock()
    gw = make_gateway(clock=clock)
    mq.event("cb-1", "button.pressed")
    [first, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    clock.advance(29)
    time.sleep(0.5)
    assert not mq.pages("pv1"), "escalated before the ack timeout"
    clock.advance(2)
    step2 = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=2)[0]
    assert step2["step"] == 2 and step2["alert_id"] == first["alert_id"]
    clock.advance(31)
    step3 = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)[0]
    assert step3["step"] == 3 and step3["text"].startswith("P1 CALL BUTTON")  # staff reads en
    clock.advance(31)
    again = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2, count=2)
    assert [p["step"] for p in again] == [3, 3] and "AGAIN" in again[1]["text"]
    mq.reply("ps1", first["alert_id"], "ack")
    wait_until(lambda: state_of(gw, first["alert_id"]) == "acknowledged", what="ack")
    notices = mq.wait_for(lambda m: m["type"] == "notice", count=3)
    assert {n["_pager"] for n in notices} == {"pw1", "pw2", "pv1"}
    kinds = timeline(gw, first["alert_id"])
    assert kinds.count("escalated") == 3 and kinds.count("paged") == 4
    clock.advance(600)
    time.sleep(0.5)
    assert len(mq.pages("ps1")) == 2


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_decline_pages_the_next_step_at_once(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    make_gateway(clock=FakeClock())
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    mq.reply("pw1", page["alert_id"], "decline")
    step2 = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=1.0)[0]
    assert step2["step"] == 2


def test_arrived_and_resolved_by_pager(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    gw = make_gateway()
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    mq.reply("pw2", page["alert_id"], "arrived")
    wait_until(lambda: state_of(gw, page["alert_id"]) == "on_site", what="on site")
    mq.reply("pw2", page["alert_id"], "resolved")
    wait_until(lambda: state_of(gw, page["alert_id"]) == "resolved", what="resolved")
    # A late ack after resolution changes nothing; that pager is told how it ended.
    mq.reply("pw1", page["alert_id"], "ack")
    told = mq.wait_for(
        lambda m: m["type"] == "notice" and m["state"] == "resolved" and m["_pager"] == "pw1",
        count=2,
    )
    assert told
    wait_until(lambda: "late_reply" in timeline(gw, page["alert_id"]), what="late reply recorded")
    assert state_of(gw, page["alert_id"]) == "resolved"


def test_a_pagers_answer_with_an_overlong_note_is_taken_and_its_note_cut(
    make_gateway, engine, mq: Mqtt
):
    seed_home(engine)
    clock = FakeClock()
    gw = make_gateway(clock=clock)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    alert_id = page["alert_id"]

    def answer(pager: str, action: str, note: str) -> None:
        body = {"id": uuid.uuid4().hex[:12], "ts": int(time.time() * 1000)}
        body |= {"alert_id": alert_id, "action": action, "note": note}
        payload = json.dumps(body, ensure_ascii=False).encode()
        assert len(payload) <= 4096  # within the contract: only the note is over the limit
        mq.raw(f"{mq.base}/v1/pagers/{pager}/replies", payload)

    def details(type_: str) -> list[dict[str, Any]]:
        with gw.engine.connect() as c:
            e = T.alert_events.c
            q = select(e.detail).where(e.alert_id == alert_id, e.type == type_).order_by(e.id)
            return list(c.execute(q).scalars())

    # A pager or app that appends text to the answer: the ack must still stop the paging.
    answer("pw1", "ack", "x" * 3000)
    wait_until(lambda: state_of(gw, alert_id) == "acknowledged", what="the ack taken")
    assert mq.wait_for(lambda m: m["type"] == "notice" and m["_pager"] == "pw2")
    assert details("acknowledged") == [{"note": "x" * 499 + "…", "note_truncated": True}]
    answer("pw2", "decline", "不" * 1000)
    wait_until(lambda: details("declined"), what="the decline recorded")
    assert details("declined") == [{"note": "不" * 499 + "…", "note_truncated": True}]
    clock.advance(3600)
    time.sleep(0.6)  # three scheduler polls
    assert not mq.pages("pv1"), "an acknowledged alert must not escalate"

    short = "到了，老人没事"
    answer("pw1", "resolved", short)
    wait_until(lambda: state_of(gw, alert_id) == "resolved", what="resolved")
    assert details("resolved") == [{"note": short}], "an uncut note is not marked"
    answer("pw2", "ack", "y" * 2000)
    wait_until(lambda: details("late_reply"), what="the late ack recorded")
    [late] = details("late_reply")
    assert (late["note"], late["note_truncated"]) == ("y" * 499 + "…", True)
    assert quarantined(gw) == []


def test_a_pagers_resolve_with_an_overlong_note_resolves(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    gw = make_gateway()
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    body = {"id": "r-long", "ts": int(time.time() * 1000), "alert_id": page["alert_id"]}
    body |= {"action": "resolved", "note": "x" * 3000}
    mq.raw(f"{mq.base}/v1/pagers/pw1/replies", json.dumps(body).encode())
    wait_until(lambda: state_of(gw, page["alert_id"]) == "resolved", what="resolved")
    with gw.engine.connect() as c:
        note = c.execute(select(T.alerts.c.note)).scalar_one()
    assert note == "x" * 499 + "…"
    assert quarantined(gw) == []


def test_cancel_within_grace_cancels_and_tells_whoever_was_paged(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    clock = FakeClock()
    gw = make_gateway(clock=clock)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    mq.event("cb-1", "button.cancelled")
    notices = mq.wait_for(lambda m: m["type"] == "notice", count=2)
    assert {n["_pager"] for n in notices} == {"pw1", "pw2"}
    assert all(n["state"] == "cancelled" and "取消" in n["text"] for n in notices)
    assert state_of(gw, page["alert_id"]) == "cancelled"
    clock.advance(3600)
    time.sleep(0.5)
    assert not mq.pages("pv1")


def test_cancel_after_grace_is_only_recorded(make_gateway, engine, mq: Mqtt):
    seed_home(engine, steps=[(["w1"], 3600)])
    clock = FakeClock()
    gw = make_gateway(clock=clock)
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page")
    clock.advance(121)
    mq.event("cb-1", "button.cancelled")
    wait_until(lambda: "cancel_too_late" in timeline(gw, page["alert_id"]), what="recorded")
    assert state_of(gw, page["alert_id"]) == "open"


def test_cancel_queued_behind_its_press_while_down_is_weighed_by_device_times(
    make_gateway, engine, mq: Mqtt
):
    """The gateway is down; the elder presses at T and cancels at T + 20 s (grace 15 s); the
    gateway comes back at T + 25 s and processes both in one instant. The cancel came too late
    after the press: the alert pages on, and its timeline shows when the elder pressed."""
    seed_home(engine, steps=[(["w1"], 3600)])
    clock = FakeClock()
    make_gateway(clock=clock, cancel_grace_s=15).stop()  # its session stays with the broker
    pressed_ms = int(clock() * 1000)
    mq.event("cb-1", "button.pressed", ts=pressed_ms)
    mq.event("cb-1", "button.cancelled", ts=pressed_ms + 20_000)
    time.sleep(0.3)  # both queued in the gateway's session
    clock.advance(25)
    gw = make_gateway(clock=clock, cancel_grace_s=15)
    [page] = mq.wait_for(lambda m: m["type"] == "page" and m["_pager"] == "pw1")
    wait_until(lambda: "cancel_too_late" in timeline(gw, page["alert_id"]), what="recorded")
    assert state_of(gw, page["alert_id"]) == "open"
    time.sleep(0.3)
    assert not mq.pages(type_="notice"), "nobody was told the call was cancelled"
    with gw.engine.connect() as c:
        opened = c.execute(
            select(T.alert_events.c.detail).where(
                T.alert_events.c.alert_id == page["alert_id"], T.alert_events.c.type == "opened"
            )
        ).scalar_one()
    assert datetime.fromisoformat(opened["ts"]).timestamp() == pressed_ms / 1000


def test_stale_press_and_cancel_sent_long_before_they_are_processed_page_on(
    make_gateway, engine, mq: Mqtt
):
    """A press and its cancel 3 s apart, both sent 10 minutes before the gateway processes them
    (a backlog): the cancel is stale, and the alarm it would cancel is paged."""
    seed_home(engine, steps=[(["w1"], 3600)])
    clock = FakeClock()
    clock.advance(600)
    gw = make_gateway(clock=clock)
    pressed_ms = int(time.time() * 1000)  # the device's clock: 600 s behind the gateway's now
    mq.event("cb-1", "button.pressed", ts=pressed_ms)
    mq.event("cb-1", "button.cancelled", ts=pressed_ms + 3_000)
    [page] = mq.wait_for(lambda m: m["type"] == "page" and m["_pager"] == "pw1")
    wait_until(lambda: "cancel_stale" in timeline(gw, page["alert_id"]), what="recorded")
    assert state_of(gw, page["alert_id"]) == "open"


def test_gas_and_water_alarms_and_their_all_clear(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    gw = make_gateway()
    mq.event("gas-1", "gas.alarm", gas="natural_gas", lel_pct=25.0)
    mq.event("water-1", "water.leak")
    pages = mq.wait_for(lambda m: m["type"] == "page", count=4)
    assert {(p["kind"], p["priority"]) for p in pages} == {("gas", "P1"), ("water_leak", "P2")}
    assert any("燃气报警" in p["text"] for p in pages)
    mq.event("gas-1", "gas.cleared", gas="natural_gas", lel_pct=0.0)
    mq.event("water-1", "water.dry")
    by_kind = {a.kind: a for a in alerts_of(gw)}
    wait_until(lambda: "gas.cleared" in timeline(gw, by_kind["gas"].id), what="gas cleared")
    wait_until(lambda: "water.dry" in timeline(gw, by_kind["water_leak"].id), what="dry")
    assert {a.state for a in alerts_of(gw)} == {"open"}  # a person still checks the home


def test_status_offline_opens_one_device_offline_alert(make_gateway, engine, mq: Mqtt):
    seed_home(engine, steps=[(["w1"], 3600)])
    gw = make_gateway()
    mq.status("water-1", online=True)
    mq.status("water-1", online=False)
    mq.wait_for(lambda m: m["type"] == "page" and m["kind"] == "device_offline")
    mq.status("water-1", online=False)  # e.g. the retained Last Will delivered again
    mq.status("water-1", online=True)
    [alert] = alerts_of(gw)
    wait_until(lambda: "back_online" in timeline(gw, alert.id), what="back online")
    assert (alert.kind, alert.priority) == ("device_offline", "P2")
    assert len(alerts_of(gw)) == 1
    with gw.engine.connect() as c:
        assert c.execute(select(T.devices.c.online).where(T.devices.c.id == "water-1")).scalar()


def test_replies_from_strangers_are_quarantined(make_gateway, engine, mq: Mqtt):
    seed_home(engine)
    gw = make_gateway()
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    mq.reply("pv1", page["alert_id"], "ack")  # a real pager, but not paged for this alert
    mq.reply("pw1", "al_no_such_alert", "ack")
    mq.reply("pager-nobody", page["alert_id"], "ack")
    wait_until(lambda: len(quarantined(gw)) == 3, what="three quarantined replies")
    assert [q.reason for q in quarantined(gw)] == [
        "reply_not_paged",
        "unknown_alert",
        "unknown_pager",
    ]
    assert state_of(gw, page["alert_id"]) == "open"


def _bad_inputs(base: str) -> list[tuple[str, bytes, str]]:
    ev = f"{base}/v1/devices/cb-1/events"
    now = int(time.time() * 1000)

    def j(**kw: Any) -> bytes:
        return json.dumps(kw).encode()

    return [
        (ev, b"{" + b" " * 4100 + b"}", "too_large"),
        (ev, b"\xff\xfe{}", "not_utf8"),
        (ev, b"press!", "not_json"),
        (ev, b"[1, 2]", "not_object"),
        (ev, j(ts=now, type="button.pressed"), "invalid"),  # no id
        (ev, j(id="x1", type="button.pressed"), "invalid"),  # no ts
        (ev, j(id="x2", ts=now), "invalid"),  # no type
        (ev, j(id="x3", ts="2026-11-23T08:15:00", type="button.pressed"), "invalid"),  # naive
        (ev, j(id="x4", ts=now // 1000, type="button.pressed"), "invalid"),  # seconds
        (ev, j(id="x5", ts=now, type="button.pressed", press="twice"), "invalid"),
        (ev, j(id="x" * 65, ts=now, type="button.pressed"), "invalid"),
        (ev, j(id="x6", ts=now, type="button.exploded"), "unknown_type"),
        (ev, j(id="x7", ts=now, type="gas.alarm", lel_pct=50), "wrong_kind"),
        (
            f"{base}/v1/devices/gas-1/events",
            j(id="x8", ts=now, type="gas.alarm", lel_pct=150),
            "invalid",
        ),
        (f"{base}/v1/devices/gas-1/events", j(id="x9", ts=now, type="gas.alarm"), "invalid"),
        (f"{base}/v1/devices/water-1/telemetry", j(id="x10", ts=now, flow_l=3), "invalid"),
        (f"{base}/v1/devices/water-1/telemetry", j(id="x11", ts=now), "invalid"),
        (f"{base}/v1/devices/water-1/status", j(online="yes"), "invalid"),
        (
            f"{base}/v1/devices/cb-404/events",
            j(id="x12", ts=now, type="button.pressed"),
            "unknown_device",
        ),
        (
            f"{base}/v1/devices/cb-2/events",
            j(id="x13", ts=now, type="button.pressed"),
            "retired_device",
        ),
        (
            f"{base}/v1/devices/bad id!/events",
            j(id="x14", ts=now, type="button.pressed"),
            "bad_topic",
        ),
        (
            f"{base}/v1/pagers/pw1/replies",
            j(id="x15", ts=now, alert_id="a", action="maybe"),
            "invalid",
        ),
    ]


def test_every_kind_of_bad_input_is_quarantined_and_changes_nothing(
    make_gateway, engine, mq: Mqtt, base: str
):
    seed_home(engine, n=2)
    with engine.begin() as c:
        c.execute(T.devices.update().where(T.devices.c.id == "cb-2").values(status="retired"))
    gw = make_gateway()
    cases = _bad_inputs(base)
    for topic, payload, _ in cases:
        mq.raw(topic, payload)
    wait_until(lambda: len(quarantined(gw)) == len(cases), timeout=10, what="all quarantined")
    rows = quarantined(gw)
    by_reason = sorted(q.reason for q in rows)
    assert by_reason == sorted(reason for _, _, reason in cases)
    for q in rows:
        assert q.detail and q.topic and len(q.payload) <= 512 and q.size > 0
    big = next(q for q in rows if q.reason == "too_large")
    assert big.size > 4096 and len(big.payload) == 512
    assert alerts_of(gw) == [] and count(gw, T.messages) == 0 and count(gw, T.outbox) == 0
    assert mq.pages() == []
    metric = gw.metrics.quarantined
    invalid = sum(1 for c in cases if c[2] == "invalid")
    # Counted after the commit, so a moment after the rows are visible.
    wait_until(lambda: metric.labels("invalid")._value.get() == invalid, what="counted")
    assert metric.labels("wrong_kind")._value.get() == 1
    # ... and the gateway keeps working.
    mq.event("cb-1", "button.pressed")
    mq.wait_for(lambda m: m["type"] == "page", count=2)


def test_no_plan_pages_station_staff(make_gateway, engine, mq: Mqtt):
    seed_home(engine, steps=[])
    gw = make_gateway()
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page")
    assert page["_pager"] == "ps1"
    assert alerts_of(gw)[0].step == 1


def test_a_stored_plan_the_api_would_refuse_does_not_cost_the_press_its_page(
    make_gateway, engine, mq: Mqtt
):
    """Written past the API (a hand edit, an old row): the policy's plan pages instead."""
    seed_home(engine, steps=[(["w1"], 1)])  # 1 s: under the 5 s the API allows
    gw = make_gateway()
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page")
    assert page["_pager"] == "ps1"  # no pairings, no roster: the station's staff
    assert alerts_of(gw)[0].step == 1


@pytest.mark.parametrize(
    "steps",
    [
        {"responder_ids": ["w1"], "ack_timeout_s": 30},  # not a list of steps
        [{"responder_ids": "w1", "ack_timeout_s": 30}],  # ids not a list
        [1, 2],
        [{"responder_ids": ["nobody"], "ack_timeout_s": 30}],  # a person since deleted
    ],
)
def test_a_malformed_stored_plan_does_not_cost_the_press_its_page(
    make_gateway, engine, mq: Mqtt, steps: Any
):
    """The first read of an alarm batch also reads the people of the elder's plan (PostgreSQL):
    a plan no API would write must not break that read; the policy's plan (or the staff) pages."""
    seed_home(engine)
    with engine.begin() as c:
        c.execute(
            T.escalation_plans.update().where(T.escalation_plans.c.elder_id == "e1"),
            {"steps": steps},
        )
    gw = make_gateway()
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page")
    assert page["_pager"] == "ps1"  # no pairings, no roster: the station's staff
    assert len(alerts_of(gw)) == 1
