"""Who is paged when nobody is coming any more, end to end on SQLite and PostgreSQL with a real
Mosquitto: a withdrawal (无法前往) that leaves nobody at the last step who has not declined is
"all declined" whoever withdrew (also someone paged at an earlier step only, acknowledging
late); and the elder's cancel after someone acknowledged leaves the alert to them, with a notice
that the elder pressed cancel. Time moves with a FakeClock; every wait is bounded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway import ingest
from gateway import tables as T
from gateway.api import create_app
from tests.integration.test_api import serving
from tests.integration.test_paging import (
    ADMIN,
    QUIET,
    alert_row,
    events,
    ms,
    reply,
    shift,
    timeline,
)
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

# (id, role, pager, language) for seed_home
PEOPLE = [
    ("w1", "watcher", "pw1", "zh-CN"),
    ("s1", "staff", "ps1", "en"),
    ("s2", "staff", "ps2", "en"),
    ("f1", "family", "pf1", "zh-CN"),
]


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


# --- a withdrawal that leaves nobody at the last step who has not declined -----------------------


def test_a_late_ack_from_an_earlier_step_withdrawn_pages_the_staff_at_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 60), (["f1"], 120)], responders=PEOPLE)
    shift(api, clock, "s1")  # s1 on duty, s2 not
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=5.0)
    alert_id = page["alert_id"]
    clock.advance(61)  # w1 silent: the last step, f1
    mq.wait_for(lambda m: m["_pager"] == "pf1", timeout=5)
    mq.reply("pw1", alert_id, "ack")  # w1 answers late: the alert is theirs
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="w1's late ack")
    reply(mq, "pf1", alert_id, "decline")  # f1 says no: recorded, the alert is w1's
    wait_until(lambda: events(api, alert_id, "declined"), what="f1's decline")
    time.sleep(QUIET)
    assert not mq.pages("ps1"), "w1 is coming"

    clock.advance(20)
    reply(mq, "pw1", alert_id, "decline", "车坏了")  # w1 cannot go: nobody at step 2 is left
    [to_s1] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=5)
    # w1 (withdrew) and f1 (declined) are all who were asked: nobody else can come
    assert to_s1["type"] == "page" and "NOBODY ELSE CAN COME" in to_s1["text"]
    row = alert_row(gw, alert_id)
    assert (row.state, row.step) == ("open", 2)
    assert ms(to_s1["reply_by"]) == row.next_escalation_at, "the step's repeat still comes"
    escalated = events(api, alert_id, "escalated")[-1]["detail"]
    assert escalated == {
        "from": 2,
        "to": "staff_on_duty",
        "reason": "all_declined",
        "declined": ["w1", "f1"],  # in the order of their first answer: w1's ack came first
    }
    time.sleep(QUIET)
    assert len(mq.pages("pw1")) == 1, "the withdrawer is not paged again"
    assert len(mq.pages("pf1")) == 1, "nor who said no"
    assert not mq.pages("ps2"), "staff on duty first"


def test_a_late_ack_withdrawn_after_everyone_declined_says_nobody_is_left(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    # Everyone at the last step (f1, then the staff its decline paged) has said no before w1,
    # paged at step 1 only, acknowledges late and then cannot go: nobody is left, and the
    # timeline and the log must say so, as for the last decline of the step.
    seed_home(engine, steps=[(["w1"], 60), (["f1"], 120)], responders=PEOPLE)
    shift(api, clock, "s1")
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=5.0)
    alert_id = page["alert_id"]
    clock.advance(61)
    mq.wait_for(lambda m: m["_pager"] == "pf1", timeout=5)
    reply(mq, "pf1", alert_id, "decline")
    mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=5)
    reply(mq, "ps1", alert_id, "decline")
    mq.wait_for(lambda m: m["_pager"] == "ps2", timeout=5)
    reply(mq, "ps2", alert_id, "decline")
    wait_until(lambda: events(api, alert_id, "escalation_skipped"), what="nobody left")
    mq.reply("pw1", alert_id, "ack")
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="w1's late ack")

    reply(mq, "pw1", alert_id, "decline")
    wait_until(lambda: len(events(api, alert_id, "escalation_skipped")) == 2, what="said so")
    skipped = events(api, alert_id, "escalation_skipped")[-1]["detail"]
    assert skipped["reason"] == "all_declined"
    assert skipped["declined"] == ["f1", "s1", "s2", "w1"]
    assert alert_row(gw, alert_id).state == "open"
    time.sleep(QUIET)
    pages = [(m["_pager"], m["type"]) for m in mq.pages()]
    assert pages.count(("pw1", "page")) == 1, "the withdrawer is not paged again"
    assert [t["type"] for t in timeline(api, alert_id)][-1] == "escalation_skipped"


# --- the elder's cancel after someone acknowledged -----------------------------------------------


def notices(mq: Mqtt, pager: str) -> list[dict[str, Any]]:
    return mq.pages(pager, type_="notice")


def test_a_cancel_within_the_grace_after_an_ack_leaves_the_alert_to_who_is_coming(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1", "f1"], 60)], responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0, count=2)
    alert_id = page["alert_id"]
    mq.reply("pw1", alert_id, "ack")
    mq.wait_for(lambda m: m["_pager"] == "pf1" and m["type"] == "notice", timeout=5)

    clock.advance(10)
    mq.event("cb-1", "button.cancelled", ts=int(clock() * 1000))  # within the grace
    # A page, not a notice: it asks w1 to act, and a notice's state ("acknowledged") would
    # read on a pager as someone else having taken it.
    [told] = mq.wait_for(
        lambda m: m["_pager"] == "pw1" and m["type"] == "page" and "按了取消键" in m["text"],
        timeout=5,
    )
    assert told["alert_id"] == alert_id and "13800000000" in told["text"]
    assert not [n for n in notices(mq, "pw1") if "按了取消键" in n["text"]]
    row = alert_row(gw, alert_id)
    assert (row.state, row.acknowledged_by, row.closed_at) == ("acknowledged", "responder:w1", None)
    [after_ack] = events(api, alert_id, "cancel_after_ack")
    assert (after_ack["actor"], after_ack["detail"]["told"]) == ("device:cb-1", ["w1"])
    [paged] = [
        e for e in events(api, alert_id, "paged") if e["detail"]["reason"] == "cancel_pressed"
    ]
    assert [t["responder_id"] for t in paged["detail"]["to"]] == ["w1"]
    assert not events(api, alert_id, "cancelled")
    time.sleep(QUIET)
    assert len(notices(mq, "pf1")) == 1, "f1 was told w1 took it; nothing more"

    # w1 decides: they have checked on the elder, and close it.
    mq.reply("pw1", alert_id, "resolved")
    wait_until(lambda: alert_row(gw, alert_id).state == "resolved", what="w1's resolution")


def test_a_cancel_still_cancels_an_alert_nobody_has_taken(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1", "f1"], 60)], responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0, count=2)
    mq.event("cb-1", "button.cancelled", ts=int(clock() * 1000))
    told = mq.wait_for(lambda m: m["type"] == "notice", timeout=5, count=2)
    assert {(n["_pager"], n["state"]) for n in told} == {
        ("pw1", "cancelled"),
        ("pf1", "cancelled"),
    }
    assert alert_row(gw, page["alert_id"]).state == "cancelled"
    assert not events(api, page["alert_id"], "cancel_after_ack")


def taken_together(monkeypatch: pytest.MonkeyPatch, n: int) -> list[list[str]]:
    """From now on, the alarm worker's first batch waits (at most 5 s) for `n` messages in its
    queue, so that they are taken in one batch whatever the timing of their delivery. Returns
    the topics of each batch the worker then processes (a batch taken apart shows as more)."""
    batches: list[list[str]] = []
    take, process = ingest.Ingest._take, ingest.Ingest._process

    def gated(self: ingest.Ingest) -> list[Any]:
        deadline = time.monotonic() + 5.0
        while not batches and self.queue.qsize() < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return take(self)

    def recorded(self: ingest.Ingest, conn: Any, batch: list[Any]) -> Any:
        batches.append([it.topic for it in batch])
        return process(self, conn, batch)

    monkeypatch.setattr(ingest.Ingest, "_take", gated)
    monkeypatch.setattr(ingest.Ingest, "_process", recorded)
    return batches


def test_an_ack_and_a_cancel_queued_together_leave_the_alert_to_who_took_it(
    engine: Any,
    make_gateway: Callable[..., Any],
    mq: Mqtt,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The gateway is down while w1 acknowledges and the elder then presses cancel: both are
    # taken when it is back, the cancel weighed against the alert as the ack left it (the
    # device's alerts were read before the ack was taken).
    seed_home(engine, steps=[(["w1", "f1"], 60)], responders=PEOPLE)
    first = make_gateway(clock=clock, admin_token=ADMIN)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0, count=2)
    alert_id = page["alert_id"]
    wait_until(lambda: events_of(first, alert_id), what="the pages recorded")
    first.stop()  # its session stays with the broker
    mq.reply("pw1", alert_id, "ack")
    mq.event("cb-1", "button.cancelled", ts=int(clock() * 1000))  # both in its session now
    batches = taken_together(monkeypatch, 2)
    gw = make_gateway(clock=clock, admin_token=ADMIN)
    wait_until(lambda: "cancel_after_ack" in events_of(gw, alert_id), what="the cancel weighed")
    assert batches[0] == [f"{mq.base}/v1/pagers/pw1/replies", f"{mq.base}/v1/devices/cb-1/events"]
    assert alert_row(gw, alert_id).state == "acknowledged"
    mq.wait_for(
        lambda m: m["_pager"] == "pw1" and m["type"] == "page" and "按了取消键" in m["text"],
        timeout=5,
    )


def test_a_resolve_and_a_cancel_taken_together_leave_the_alert_resolved(
    engine: Any,
    make_gateway: Callable[..., Any],
    mq: Mqtt,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # w1 resolves and the elder presses cancel while the gateway is down: taken in one batch,
    # the rule weighs the cancel against the alert as read before the batch's answers
    # (acknowledged), and the locked row is resolved by then. The cancel is recorded, not
    # applied: an IllegalTransition rolled the whole batch back (any press in it waited), and
    # a cancel alone was quarantined.
    seed_home(engine, steps=[(["w1", "f1"], 60)], responders=PEOPLE)
    first = make_gateway(clock=clock, admin_token=ADMIN)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0, count=2)
    alert_id = page["alert_id"]
    mq.reply("pw1", alert_id, "ack")
    wait_until(lambda: alert_row(first, alert_id).state == "acknowledged", what="w1's ack")
    first.stop()  # its session stays with the broker
    mq.reply("pw1", alert_id, "resolved")
    mq.event("cb-1", "button.cancelled", ts=int(clock() * 1000))
    batches = taken_together(monkeypatch, 2)
    gw = make_gateway(clock=clock, admin_token=ADMIN)
    wait_until(lambda: "cancel_after_close" in events_of(gw, alert_id), what="the cancel")
    replies, cancel = f"{mq.base}/v1/pagers/pw1/replies", f"{mq.base}/v1/devices/cb-1/events"
    assert batches == [[replies, cancel]]  # one batch, committed as one
    assert alert_row(gw, alert_id).state == "resolved"
    assert "cancelled" not in events_of(gw, alert_id)
    with gw.engine.connect() as c:
        assert c.execute(select(T.quarantine)).all() == []
        e = T.alert_events.c
        q = select(e.actor, e.detail).where(e.type == "cancel_after_close")
        [closed] = c.execute(q).all()
    assert (closed.actor, closed.detail["state"]) == ("device:cb-1", "resolved")


def events_of(gw: Any, alert_id: str) -> list[str]:
    with gw.engine.connect() as c:
        e = T.alert_events.c
        return list(
            c.execute(select(e.type).where(e.alert_id == alert_id).order_by(e.id)).scalars()
        )
