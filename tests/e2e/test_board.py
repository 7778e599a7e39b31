"""The station board in a real browser, on the real gateway with the demo community: station
staff sign in, a real call-button press (MQTT) appears on the board within a second without a
reload or a poll (and rings: Chromium runs with --autoplay-policy=no-user-gesture-required),
its timer runs, the elder's card opens, staff acknowledge and assign from the board (the
gateway records it), a watcher's answer from their pager shows who took a second alert, the
homes at a glance, the English switch, and resolving with an outcome takes it off the board.
Screenshots: board.png, board-card.png, board-homes.png, board-en.png."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from simulators.pager import SimPager
from tests.e2e.conftest import E2E, wait_until

# A translation key left on screen looks like "alert.step" or "kind.call_button".
_RAW_KEY = re.compile(
    r"\b(?:board|alert|btn|kind|state|outcome|device|channel|status|reason|event|role|card|"
    r"assign|resolve|homes|health|sound|live|ago|error)\.[a-z_]+\b"
)


def _clear(api: Any, device_id: str) -> None:
    """No alert of this button left open by another test: the press must open a new one."""
    for a in api.get("/api/v1/alerts", params={"device_id": device_id, "limit": 50}).json():
        if a["state"] in ("open", "acknowledged", "on_site"):
            r = api.post(f"/api/v1/alerts/{a['id']}/resolve", json={"outcome": "test"})
            assert r.status_code in (200, 409), r.text


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_press_appears_on_the_board_and_staff_answer_it_there(
    e2e: E2E, signed_in: Callable[..., Any], shot: Callable[..., Any]
) -> None:
    home = e2e.community.homes[2]  # not elder A's home: other pages' tests press that one
    with e2e.api() as api:
        _clear(api, home.call_button)
        elder = api.get(f"/api/v1/elders/{home.elder_id}").json()

    page = signed_in("staff")
    assert page.url == f"{e2e.url}/board"
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page).to_have_title(re.compile("值班看板"))
    expect(page.locator("#live")).to_have_attribute("data-state", "open")
    expect(page.locator("#live-text")).to_have_text("实时连接正常")
    # the browser was started with the autoplay flag: the ring needs no click here
    expect(page.locator("#sound")).to_have_attribute("data-state", "on")

    board_gets: list[str] = []
    page.on(
        "request",
        lambda r: board_gets.append(r.url) if r.url.endswith("/api/v1/board") else None,
    )
    page.evaluate("window.__sameDocument = 'yes'")  # gone if the page were reloaded
    rings = int(page.locator("body").get_attribute("data-rings") or 0)

    started = time.monotonic()
    e2e.press(home.call_button)
    row = page.locator("li.alert.P1").filter(has_text=elder["name"])
    row.wait_for(timeout=5_000)
    took = time.monotonic() - started
    assert took < 1.0, f"the press took {took:.2f} s to reach the board"
    assert page.evaluate("window.__sameDocument") == "yes", "no reload"
    assert board_gets == [], "no polling: the stream brought it"
    expect(row.locator(".kind")).to_have_text("紧急呼叫")
    expect(row.locator(".state")).to_have_text("待接单")
    expect(row.locator(".address")).to_have_text(elder["address"])
    expect(page.locator("body")).to_have_attribute("data-rings", str(rings + 1))
    expect(page.locator("#open-count")).not_to_have_text("0")

    with e2e.api() as api:
        [alert] = wait_until(
            lambda: api.get(
                "/api/v1/alerts", params={"device_id": home.call_button, "state": "open"}
            ).json()
        )
    row = page.locator(f"#alert-{alert['id']}")
    # who was paged (the first step of the demo plan) and the escalation's countdown
    expect(row.locator(".paged li").first).to_contain_text(":")
    expect(row.locator(".step")).to_contain_text("第 1/")
    expect(row.locator(".next")).to_contain_text("后")
    # the timer runs on its own, a second at a time
    first = row.locator(".timer-value").inner_text()
    expect(row.locator(".timer-value")).not_to_have_text(first, timeout=3_000)

    # the elder's card, one click away
    row.locator(".act-card").click()
    card = page.locator("#card-dialog")
    expect(card).to_be_visible()
    expect(card.locator("#card-body")).to_contain_text(elder["address"])
    expect(card.locator("#card-body")).to_contain_text("紧急联系人")
    shot(page, "board-card")
    card.locator("button[data-close]").click()
    expect(card).to_be_hidden()

    # acknowledge from the board: the signed-in staff member acts for their person, so the
    # ack is that person's, as a reply from their pager would be
    row.locator(".act-ack").click()
    expect(row.locator(".state")).to_have_text("已接单")
    expect(row.locator(".acked")).to_contain_text("接单")
    _, _, staff_id = e2e.accounts["staff"]
    with e2e.api() as api:
        got = api.get(f"/api/v1/alerts/{alert['id']}").json()
        staff_name = api.get(f"/api/v1/responders/{staff_id}").json()["name"]
    assert got["state"] == "acknowledged" and got["acknowledged_by"] == f"responder:{staff_id}"

    # assign one of the elder's watchers: paged, and shown on the row
    row.locator(".act-assign").click()
    dialog = page.locator("#assign-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#assign-who")).to_be_enabled()
    watcher = e2e.community.person(home.watchers[0])
    dialog.locator("#assign-who").select_option(watcher.id)
    dialog.locator("#assign-note").fill("离得最近")
    dialog.locator("#assign-ok").click()
    expect(dialog).to_be_hidden()
    expect(row.locator(".assigned")).to_contain_text(watcher.name)
    with e2e.api() as api:
        timeline = api.get(f"/api/v1/alerts/{alert['id']}").json()["timeline"]
    assigned = [e for e in timeline if e["type"] == "assigned"]
    assert assigned and assigned[-1]["detail"]["responder_id"] == watcher.id
    # a second press elsewhere: both on the board, the older P1 first; it rings again
    other = e2e.community.homes[3]
    with e2e.api() as api:
        _clear(api, other.call_button)
        other_elder = api.get(f"/api/v1/elders/{other.elder_id}").json()
    e2e.press(other.call_button)
    second = page.locator("li.alert.P1").filter(has_text=other_elder["name"])
    second.wait_for(timeout=5_000)
    expect(page.locator("li.alert")).to_have_count(2)
    assert page.locator("li.alert").first.get_attribute("id") == f"alert-{alert['id']}"
    expect(page.locator("body")).to_have_attribute("data-rings", str(rings + 2))
    expect(second.locator(".next")).to_contain_text("后呼叫下一步")
    body = page.locator("body").inner_text()
    assert not _RAW_KEY.search(body), _RAW_KEY.search(body)
    shot(page, "board")

    # the watcher paged for it answers from their pager: the board shows who took it
    with e2e.api() as api:
        [second_alert] = api.get(
            "/api/v1/alerts", params={"device_id": other.call_button, "state": "open"}
        ).json()
    taker = e2e.community.person(other.watchers[0])
    pager = SimPager(taker.pager_id, e2e.mqtt_host, e2e.mqtt_port, e2e.base, reply_after=None)
    try:
        pager.reply(second_alert["id"], "ack", wait=True)
        expect(second.locator(".state")).to_have_text("已接单")
        expect(second.locator(".acked")).to_contain_text(taker.name)
    finally:
        pager.close()

    # the homes at a glance
    page.click("#tab-homes")
    expect(page.locator("#view-homes")).to_be_visible()
    homes = page.locator("#homes .building")
    homes.first.wait_for()
    expect(page.locator(f".dev[data-device='{home.call_button}']")).to_be_visible()
    expect(page.locator("#homes")).to_contain_text(elder["name"])
    body = page.locator("body").inner_text()
    assert not _RAW_KEY.search(body), _RAW_KEY.search(body)
    shot(page, "board-homes")
    page.click("#tab-alerts")

    # English
    page.click("#lang")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page).to_have_title(re.compile("Station board"))
    row = page.locator(f"#alert-{alert['id']}")
    expect(row.locator(".state")).to_have_text("Taken")
    expect(row.locator(".kind")).to_have_text("Call button")
    expect(page.locator("#live-text")).to_have_text("Live")
    expect(page.locator("#tab-homes")).to_have_text("Homes")
    expect(row.locator(".step")).to_have_text(re.compile(r"^Step 1 of \d+$"))
    expect(row.locator(".acked")).to_contain_text(f"Taken by {staff_name} at ")
    expect(row.locator(".assigned")).to_contain_text(f"Assigned to {watcher.name}")
    # the page's own words are English (names of people and places stay as they are)
    for sel in (".head", ".actions", ".step", ".acked", ".paged-title", ".plan summary"):
        text = row.locator(sel).inner_text().replace(staff_name, "")
        assert not re.search(r"[\u4e00-\u9fff]", text), (sel, text)
    shot(page, "board-en")

    # resolve with an outcome and a note: off the board
    row.locator(".act-resolve").click()
    dialog = page.locator("#resolve-dialog")
    dialog.locator("input[value=false_alarm]").check()
    dialog.locator("#resolve-note").fill("pressed by mistake")
    dialog.locator("#resolve-ok").click()
    expect(row).to_have_count(0)
    with e2e.api() as api:
        got = api.get(f"/api/v1/alerts/{alert['id']}").json()
    assert got["state"] == "resolved" and got["outcome"] == "false_alarm"
    assert got["note"] == "pressed by mistake"
    page.click("#lang")  # back to Chinese for whoever uses this browser's storage next
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    with e2e.api() as api:
        _clear(api, other.call_button)
    expect(page.locator("li.alert")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()


def test_the_board_is_for_staff_only(e2e: E2E, signed_in: Callable[..., Any]) -> None:
    page = signed_in("watcher")
    resp = page.goto(f"{e2e.url}/board")
    assert resp is not None and resp.status == 403
    got = page.evaluate(
        "async () => (await fetch('/api/v1/board', {credentials: 'same-origin'})).status"
    )
    assert got == 403
