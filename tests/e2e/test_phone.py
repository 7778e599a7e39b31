"""The watcher's phone page in a real browser, phone-sized, on the real gateway with the demo
community: a real press on elder A's call button appears on the page within a second (live,
with the alarm ringing), the watcher accepts (接单) and the alert is acknowledged by them (the
same as a pager's ack), the English switch, and done (完成) with an outcome. It is an installable
web app: its manifest and service worker (scope /phone). Screenshots: phone-ringing.png (zh-CN,
the call as it rings), phone.png (accepted) and phone-en.png."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import E2E, wait_until

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
ACTIVE = ("open", "acknowledged", "on_site")
# A translation key left on screen looks like "kind.call_button" or "page.who".
_RAW_KEY = re.compile(
    r"\b(?:page|kind|state|action|outcome|call|points|pairings?|role)\.[a-z_.]+\b"
)


def _clear_button_a(e2e: E2E) -> None:
    """Other tests press the same button: an alert still active would take this press in
    (a repeat joins it, contract v1) and page nobody. End them first."""
    with e2e.api() as api:
        found = api.get("/api/v1/alerts", params={"device_id": e2e.button_a, "limit": 50}).json()
        for a in found:
            if a["state"] in ACTIVE:
                r = api.post(f"/api/v1/alerts/{a['id']}/resolve", json={"outcome": "test"})
                assert r.status_code == 200, r.text


def _alert(e2e: E2E, alert_id: str) -> dict[str, Any]:
    with e2e.api() as api:
        r = api.get(f"/api/v1/alerts/{alert_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_press_rings_on_the_watchers_phone_and_is_accepted_there(
    e2e: E2E, signed_in: Callable[..., Any], shot: Callable[..., Any]
) -> None:
    _clear_button_a(e2e)
    _, _, watcher_id = e2e.accounts["watcher"]
    with e2e.api() as api:  # as the registry has it now (it keeps `elders` in step)
        elder_a = api.get(f"/api/v1/elders/{e2e.elder_a}").json()

    page = signed_in("watcher", **PHONE)
    assert page.url == f"{e2e.url}/phone"
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page).to_have_title("守望 · 呼叫")
    body = page.locator("body")
    expect(body).to_have_attribute("data-live", "1")  # the live stream is open
    # Their pairing (elder A) and points are on the page.
    expect(page.locator("#pairings")).to_contain_text(elder_a["name"])
    expect(page.locator("#points")).not_to_be_empty()
    page.click("#enable-sound")  # the one tap a phone's browser needs before it may ring

    started = time.monotonic()
    e2e.press()
    card = page.locator("#pages li.page[data-state='open']").first
    card.wait_for(state="visible", timeout=3000)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"the page took {elapsed:.2f} s to appear"
    alert_id = card.get_attribute("data-alert-id")
    assert alert_id
    card = page.locator(f"#pages li.page[data-alert-id='{alert_id}']")  # whatever its state
    expect(card.locator(".kind")).to_have_text("紧急呼叫")
    expect(card.locator(".elder")).to_have_text(elder_a["name"])
    expect(card.locator(".address")).to_have_text(elder_a["address"])
    expect(body).to_have_attribute("data-ringing", "1")
    expect(page.locator("#alarm-bar")).to_be_visible()
    expect(card.locator("[data-action='ack']")).to_have_text("接单")
    expect(card.locator("[data-action='decline']")).to_have_text("拒绝")
    shot(page, "phone-ringing")
    if elder_a["phone"]:
        call = card.locator(".elder-call")
        digits = re.sub(r"[^0-9+]", "", elder_a["phone"])
        expect(call).to_have_attribute("href", f"tel:{digits}")

    card.locator("[data-action='ack']").click()
    expect(card).to_have_attribute("data-state", "acknowledged")
    expect(card.locator(".state")).to_have_text("已接单")
    expect(card.locator(".msg")).to_have_text("已接单，请尽快前往")
    expect(body).to_have_attribute("data-ringing", "0")
    expect(card.locator("[data-action='arrived']")).to_be_visible()
    expect(card.locator("[data-action='ack']")).to_be_hidden()
    # Acknowledged on the gateway, by the watcher, as a pager's ack is.
    alert = _alert(e2e, alert_id)
    assert alert["state"] == "acknowledged"
    assert alert["acknowledged_by"] == f"responder:{watcher_id}"
    acked = [e for e in alert["timeline"] if e["type"] == "acknowledged"]
    assert [e["actor"] for e in acked] == [f"responder:{watcher_id}"]
    assert not _RAW_KEY.search(page.locator("main").inner_text())
    shot(page, "phone")

    # Installable: the manifest is linked and the service worker controls /phone.
    assert page.locator("link[rel=manifest]").get_attribute("href") == "/phone/manifest.webmanifest"
    scope = wait_until(
        lambda: page.evaluate(
            "navigator.serviceWorker.getRegistration('/phone').then(r => r ? r.scope : '')"
        ),
        timeout=10,
    )
    assert scope == f"{e2e.url}/phone"

    # English, then done with an outcome from the phone.
    page.click("#lang")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page).to_have_title("Shouwang · Calls")
    card = page.locator(f"#pages li.page[data-alert-id='{alert_id}']")
    expect(card.locator(".state")).to_have_text("Accepted")
    expect(card.locator(".kind")).to_have_text("Emergency call")
    expect(card.locator("[data-action='arrived']")).to_have_text("Arrived")
    expect(page.locator("#lang")).to_have_text("中文")
    assert not _RAW_KEY.search(page.locator("main").inner_text())
    shot(page, "phone-en")
    card.locator("[data-action='resolved']").click()
    card.locator("[data-outcome='test']").click()
    expect(card).to_have_attribute("data-state", "resolved")
    alert = _alert(e2e, alert_id)
    assert (alert["state"], alert["outcome"]) == ("resolved", "test")
    expect(card).to_be_hidden(timeout=8000)  # an ended call leaves the list
