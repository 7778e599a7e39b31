"""What the pages and notices of the alarm path say, end to end on SQLite and PostgreSQL with a
real Mosquitto: the page of a person the station sends (指派) on an alert someone has taken; the
staff's page after everyone at the last step said no, which says nobody else can come only when
that is so; and the elder's cancel after the grace on an acknowledged alert, told to whoever is
coming as a cancel within it is. Time moves with a FakeClock; every wait is bounded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway.api import create_app
from tests.integration.test_api import serving
from tests.integration.test_paging import (
    ADMIN,
    QUIET,
    alert_row,
    events,
    ok,
    reply,
    shift,
)
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

# (id, role, pager, language) for seed_home
PEOPLE = [
    ("w1", "watcher", "pw1", "zh-CN"),
    ("v1", "volunteer", "pv1", "zh-CN"),
    ("v2", "volunteer", "pv2", "en"),
    ("s1", "staff", "ps1", "en"),
    ("s2", "staff", "ps2", "zh-CN"),
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


def pages_of(mq: Mqtt, pager: str, count: int) -> list[dict[str, Any]]:
    return mq.wait_for(lambda m: m["_pager"] == pager and m["type"] == "page", count=count)


# --- the page of a person the station sends ------------------------------------------------------


def test_an_assigned_persons_page_says_who_sent_them_with_the_note_and_what_to_reply(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["s1"], 90)], responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    [page] = pages_of(mq, "ps1", 1)
    alert_id = page["alert_id"]
    mq.reply("ps1", alert_id, "ack")  # the staff member takes it
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="s1's ack")

    note = "请去看看\n" + "好" * 995  # as long as the board takes: cut on the page
    ok(api.post(f"/api/v1/alerts/{alert_id}/assign", json={"responder_id": "v1", "note": note}))
    [sent] = pages_of(mq, "pv1", 1)
    cut = "请去看看 " + "好" * 294 + "…"  # one line, cut to 300 characters (ASSIGN_NOTE_MAX_CHARS)
    assert sent["text"] == (
        f"【P1 紧急呼叫】（admin指派您前往）老人1 幸福里1号楼 电话13800000000 留言「{cut}」"
        " 已有人接单，您前往请回复接单，不能去请回复拒绝"
    ), sent["text"]
    assert sent["step"] == 1
    paged = events(api, alert_id, "paged")[-1]["detail"]
    assert (paged["reason"], paged["repeat"]) == ("assigned", False)

    # in English, and sent again: now it says so
    ok(api.post(f"/api/v1/alerts/{alert_id}/assign", json={"responder_id": "v2"}))
    [first] = pages_of(mq, "pv2", 1)
    assert first["text"].startswith("P1 CALL BUTTON (ASSIGNED to you by admin): 老人1, ")
    assert first["text"].endswith(
        ". Someone has taken it; reply ACK if you go, DECLINE if you cannot"
    )
    assert "AGAIN" not in first["text"] and "Note" not in first["text"]
    ok(api.post(f"/api/v1/alerts/{alert_id}/assign", json={"responder_id": "v2"}))
    [_, second] = pages_of(mq, "pv2", 2)
    assert second["text"].startswith("P1 CALL BUTTON (ASSIGNED AGAIN to you by admin): 老人1, ")

    # what the page asks is what the reply does: v1's ACK says they go too, the alert stays
    # s1's; v2's DECLINE is recorded, and pages nobody
    mq.reply("pv1", alert_id, "ack")
    reply(mq, "pv2", alert_id, "decline")
    wait_until(lambda: events(api, alert_id, "declined"), what="v2's decline")
    [again] = events(api, alert_id, "ack_again")
    assert again["actor"] == "responder:v1"
    row = alert_row(gw, alert_id)
    assert (row.state, row.acknowledged_by) == ("acknowledged", "responder:s1")
    time.sleep(QUIET)
    assert not mq.pages("ps2")


# --- the staff's page after everyone at the last step said no ------------------------------------


@pytest.mark.parametrize("w1_declines", [False, True], ids=["w1_silent", "w1_declined"])
def test_the_staff_are_told_nobody_else_can_come_only_when_everyone_asked_said_no(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock, w1_declines: bool
) -> None:
    # The watcher (step 1) times out, or declines; the volunteer (the last step) takes it, then
    # cannot go: the staff on duty are paged at once, as when everyone declined.
    seed_home(engine, steps=[(["w1"], 60), (["v1"], 60)], responders=PEOPLE)
    shift(api, clock, "s1")
    mq.event("cb-1", "button.pressed")
    [page] = pages_of(mq, "pw1", 1)
    alert_id = page["alert_id"]
    if w1_declines:
        reply(mq, "pw1", alert_id, "decline")
    else:
        clock.advance(61)
    pages_of(mq, "pv1", 1)
    mq.reply("pv1", alert_id, "ack")
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="v1's ack")

    reply(mq, "pv1", alert_id, "decline", "无法前往")  # v1 withdraws
    [to_s1] = pages_of(mq, "ps1", 1)
    escalated = events(api, alert_id, "escalated")[-1]["detail"]
    assert (escalated["reason"], escalated["to"]) == ("all_declined", "staff_on_duty")
    if w1_declines:  # a decline and a withdrawal: both cannot come
        assert to_s1["text"].startswith("P1 CALL BUTTON (NOBODY ELSE CAN COME): 老人1, ")
    else:  # w1 never answered and may still: the page says nothing of the others
        assert to_s1["text"].startswith("P1 CALL BUTTON: 老人1, "), to_s1["text"]
        assert "DECLINED" not in to_s1["text"] and "NOBODY" not in to_s1["text"]
    assert to_s1["text"].endswith("Reply ACK or DECLINE")
    assert "AGAIN" not in to_s1["text"]


# --- the elder's cancel after the grace, on an acknowledged alert --------------------------------


def notices(mq: Mqtt, pager: str) -> list[dict[str, Any]]:
    return mq.pages(pager, type_="notice")


def cancel_pages(mq: Mqtt, pager: str) -> list[dict[str, Any]]:
    """The pages telling `pager` the elder pressed cancel: pages, as they ask it to act."""
    return [p for p in mq.pages(pager, type_="page") if "按了取消键" in p["text"]]


def is_cancel_page(m: dict[str, Any], pager: str) -> bool:
    return m["_pager"] == pager and m["type"] == "page" and "按了取消键" in m["text"]


def test_a_cancel_after_the_grace_is_told_to_who_is_coming_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1", "v1"], 60)], responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0, count=2)
    alert_id = page["alert_id"]
    mq.reply("pw1", alert_id, "ack")
    mq.wait_for(lambda m: m["_pager"] == "pv1" and m["type"] == "notice", timeout=5)

    clock.advance(600)  # long past the grace (120 s)
    msg_id = mq.event("cb-1", "button.cancelled", ts=int(clock() * 1000))
    [told] = mq.wait_for(lambda m: is_cancel_page(m, "pw1"), timeout=5)
    assert told["alert_id"] == alert_id and "13800000000" in told["text"]
    [late] = events(api, alert_id, "cancel_too_late")
    assert (late["actor"], late["detail"]["told"]) == ("device:cb-1", ["w1"])
    assert late["detail"]["msg_id"] == msg_id
    row = alert_row(gw, alert_id)
    assert (row.state, row.acknowledged_by) == ("acknowledged", "responder:w1")

    # the same message again (a device retry): one press, one page
    mq.event("cb-1", "button.cancelled", msg_id=msg_id, ts=int(clock() * 1000))
    time.sleep(QUIET)
    assert len(cancel_pages(mq, "pw1")) == 1
    assert len(events(api, alert_id, "cancel_too_late")) == 1
    # pressed again (a new message): recorded, but w1 was told once since taking it; each page
    # would go down every channel chain again (SMS, calls)
    clock.advance(30)
    mq.event("cb-1", "button.cancelled", ts=int(clock() * 1000))
    wait_until(lambda: len(events(api, alert_id, "cancel_too_late")) == 2, what="recorded")
    [again] = events(api, alert_id, "cancel_too_late")[1:]
    assert again["detail"]["told"] == []
    time.sleep(QUIET)
    assert len(cancel_pages(mq, "pw1")) == 1
    assert len(notices(mq, "pv1")) == 1, "v1 was told w1 took it; nothing more"

    # once someone is there, only recorded, as within the grace
    mq.reply("pw1", alert_id, "arrived")
    wait_until(lambda: alert_row(gw, alert_id).state == "on_site", what="w1 on site")
    mq.event("cb-1", "button.cancelled", ts=int(clock() * 1000))
    wait_until(lambda: events(api, alert_id, "cancel_after_arrival"), what="recorded")
    time.sleep(QUIET)
    assert len(cancel_pages(mq, "pw1")) == 1


def test_a_stale_cancel_is_told_too_and_a_late_one_on_an_open_alert_is_told_to_nobody(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, n=2, steps=[(["w1", "v1"], 60)], responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", timeout=5.0, count=2)
    alert_id = page["alert_id"]
    mq.reply("pv1", alert_id, "ack")
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="v1's ack")
    # Within the grace, but sent before the press on the device's own clock: not to be trusted
    # (`cancel_stale`), yet the elder did press cancel, and the one coming decides.
    mq.event("cb-1", "button.cancelled", ts=int((clock() - 3600) * 1000))
    mq.wait_for(lambda m: is_cancel_page(m, "pv1"), timeout=5)
    [stale] = events(api, alert_id, "cancel_stale")
    assert stale["detail"]["told"] == ["v1"]
    assert alert_row(gw, alert_id).state == "acknowledged"

    # Past the grace on an alert nobody has taken: recorded, paging goes on, nobody is told.
    mq.event("cb-2", "button.pressed")
    [other, _] = mq.wait_for(lambda m: m["alert_id"] != alert_id, timeout=5.0, count=2)
    clock.advance(200)
    mq.event("cb-2", "button.cancelled", ts=int(clock() * 1000))
    wait_until(lambda: events(api, other["alert_id"], "cancel_too_late"), what="the late cancel")
    [late] = events(api, other["alert_id"], "cancel_too_late")
    assert "told" not in late["detail"]
    assert alert_row(gw, other["alert_id"]).state == "open"
    time.sleep(QUIET)
    assert [n["alert_id"] for n in mq.pages(type_="notice")] == [alert_id]  # w1: v1 took it
    assert [p["alert_id"] for p in cancel_pages(mq, "pv1")] == [alert_id]
    assert not [
        p
        for p in mq.pages(type_="page")
        if p["alert_id"] == other["alert_id"] and "按了取消键" in p["text"]
    ]
