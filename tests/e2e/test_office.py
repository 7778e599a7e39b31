"""The staff's office page (/office) in a real browser, on the real gateway with the demo
community: a staff member signs in, every tab loads without a console error and without a raw
translation key on screen (screenshots office-<tab>.png), the tabs answer the keyboard, the
quarantine says in plain words why a message was refused, an away mark is ended from the page,
the report draws its charts with the numbers beside them; in the registry an elder is found and
a vital sign entered (the API then has it), an impossible value is refused with the Chinese
message and nothing stored; the desk takes a service application through to dispatch and enters
points; and the page switches to English, the API's refusals with it."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import E2E
from tests.support.alarm import Mqtt

TABS = ("quarantine", "suppressions", "reports", "registry", "services", "points")
I18N = Path(__file__).parents[2] / "gateway/web/static/i18n/office.json"
KEYS = set(json.loads(I18N.read_text(encoding="utf-8"))["zh-CN"])
# Chromium logs every 4xx answer as a console error; the forms' refusals are expected ones.
_EXPECTED = re.compile(
    r"Failed to load resource: the server responded with a status of 4(03|09|22)"
)


def watch(page: Any) -> list[str]:
    """Console errors and uncaught exceptions of the page, as they happen."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.append(f"pageerror: {e}"))
    return seen


def unexpected(seen: list[str]) -> list[str]:
    return [s for s in seen if not _EXPECTED.search(s)]


def raw_keys(text: str) -> list[str]:
    """Translation keys left on screen (a string the page forgot to translate)."""
    return sorted({w for w in re.findall(r"\b[a-z_]+\.[a-z0-9_]+\b", text) if w in KEYS})


def open_office(
    e2e: E2E, signed_in: Callable[..., Any], lang: str = "zh-CN"
) -> tuple[Any, list[str]]:
    """The office page, signed in as staff, started; and what its console says from the start."""
    page = signed_in("staff", lang)
    seen = watch(page)
    page.goto(f"{e2e.url}/office")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page, seen


def in_an_hour() -> str:
    return (datetime.now().astimezone() + timedelta(hours=1)).isoformat(timespec="seconds")


# What shows that a tab has loaded its data.
LOADED = {
    "quarantine": "#q-table tbody tr",
    "suppressions": "#s-away tbody tr",
    "reports": "#r-times svg[role=img]",
    "registry": "#g-search input[name=q]",
    "services": "#v-orders tbody tr",
    "points": "#p-claim select[name=member_id] option",
}


def test_every_tab_loads_and_speaks_chinese(
    e2e: E2E, signed_in: Callable[..., Any], shot: Callable[..., Any]
) -> None:
    elder = e2e.elder_b
    # Something in each list: a refused message, an elder away.
    mq = Mqtt(e2e.mqtt_port, e2e.base)
    try:
        mq.event("cb-e2e-not-registered", "button.pressed")
    finally:
        mq.close()
    with e2e.api() as api:
        r = api.put(
            f"/api/v1/elders/{elder}/away",
            json={"status": "in_hospital", "until": in_an_hour(), "note": "e2e 住院"},
        )
        assert r.status_code == 200, r.text
        name = api.get(f"/api/v1/elders/{elder}").json()["name"]

    page, seen = open_office(e2e, signed_in)
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("#tab-quarantine")).to_have_text("隔离区")
    for tab in TABS:
        page.click(f"#tab-{tab}")
        expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-selected", "true")
        expect(page.locator(f"#panel-{tab}")).to_be_visible()
        page.locator(LOADED[tab]).first.wait_for(state="attached")
        panel = page.locator(f"#panel-{tab}").inner_text()
        assert not raw_keys(panel), (tab, raw_keys(panel))
        shot(page, f"office-{tab}")

    # The quarantine in plain words.
    page.click("#tab-quarantine")
    row = page.locator("#q-table tbody tr", has_text="cb-e2e-not-registered").first
    expect(row).to_contain_text("未登记的设备")
    # The report: charts drawn as SVG, the same numbers in a table beside each.
    page.click("#tab-reports")
    for fig in ("r-times", "r-share", "r-kinds", "r-outcomes"):
        expect(page.locator(f"#{fig} table")).to_be_visible()
    expect(page.locator("#r-share svg title")).to_have_text("P1告警在60秒、180秒内接单的比例")
    # The keyboard: arrows move between tabs.
    page.locator("#tab-reports").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-registry")).to_be_focused()
    expect(page.locator("#panel-registry")).to_be_visible()
    page.keyboard.press("End")
    expect(page.locator("#tab-points")).to_have_attribute("aria-selected", "true")

    # End the elder's away mark from the page (asked twice), and the gateway has ended it.
    page.click("#tab-suppressions")
    row = page.locator("#s-away tbody tr", has_text=name)
    expect(row).to_contain_text("住院")
    button = row.get_by_role("button")
    button.click()
    expect(button).to_have_text(re.compile("确认"))
    button.click()
    expect(page.locator("#s-msg")).to_contain_text(f"已结束{name}的外出标记")
    with e2e.api() as api:
        marks = api.get(f"/api/v1/elders/{elder}/away").json()
    assert marks and marks[0]["ended_at"] is not None and not marks[0]["active"]
    assert unexpected(seen) == [], seen


def test_find_an_elder_and_enter_a_vital_sign(
    e2e: E2E, signed_in: Callable[..., Any], shot: Callable[..., Any]
) -> None:
    elder = e2e.elder_b
    mark = "e2e-" + secrets.token_hex(4)
    with e2e.api() as api:
        name = api.get(f"/api/v1/elders/{elder}").json()["name"]
        before = api.get(f"/api/v1/care/elders/{elder}/vitals").json()
    page, seen = open_office(e2e, signed_in)
    page.click("#tab-registry")
    page.fill("#g-search input[name=q]", name)
    page.keyboard.press("Enter")
    row = page.locator("#g-results tbody tr", has_text=name).first
    row.get_by_role("button").click()
    expect(page.locator("#g-record-name")).to_contain_text(name)
    expect(page.locator("#g-record-name")).to_be_focused()

    form = page.locator("#g-vitals-form")
    form.locator("[name=systolic]").fill("400")
    form.locator("[name=diastolic]").fill("80")
    form.locator("[name=note]").fill(mark)
    form.get_by_role("button").click()
    msg = form.locator(".form-msg")
    expect(msg).to_contain_text("收缩压400mmHg不可能")
    expect(form.locator("[name=systolic]")).to_have_attribute("aria-invalid", "true")
    shot(page, "office-vitals-refused")
    with e2e.api() as api:
        assert api.get(f"/api/v1/care/elders/{elder}/vitals").json() == before  # nothing kept

    form.locator("[name=systolic]").fill("128")
    form.locator("[name=diastolic]").fill("82")
    form.locator("[name=pulse]").fill("71")
    form.locator("[name=note]").fill(mark)
    form.get_by_role("button").click()
    expect(msg).to_contain_text("已保存")
    expect(form.locator("[name=systolic]")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#g-vitals tbody tr").first).to_contain_text("128/82")
    with e2e.api() as api:
        stored = [
            v for v in api.get(f"/api/v1/care/elders/{elder}/vitals").json() if v["note"] == mark
        ]
    assert len(stored) == 1
    assert (stored[0]["systolic"], stored[0]["diastolic"], stored[0]["pulse"]) == (128, 82, 71)
    assert stored[0]["recorded_by"] == f"user:{e2e.accounts['staff'][0]}"
    shot(page, "office-registry-record")
    assert unexpected(seen) == [], seen


def test_the_desk_takes_an_application_to_dispatch_and_enters_points(
    e2e: E2E, signed_in: Callable[..., Any], shot: Callable[..., Any]
) -> None:
    elder = e2e.elder_b
    request = "e2e 送午餐 " + secrets.token_hex(3)
    with e2e.api() as api:
        name = api.get(f"/api/v1/elders/{elder}").json()["name"]
    page, seen = open_office(e2e, signed_in)
    page.click("#tab-services")
    page.locator("#v-orders tbody tr").first.wait_for(state="attached")
    form = page.locator("#v-apply")
    form.locator("[name=elder_q]").fill(name)
    page.click("#v-find")
    form.locator("[name=elder_id]").select_option(elder)
    form.locator("[name=category]").select_option("meals")
    form.locator("[name=applied_role]").select_option("family")
    form.locator("[name=request]").fill(request)
    form.locator("[name=lat]").fill("39.9219")
    form.locator("[name=lon]").fill("116.4436")
    form.get_by_role("button", name="受理申请").click()
    expect(page.locator("#v-order-title")).to_contain_text("已受理")

    agree = page.locator("#v-agree")
    agree.locator("[name=tier]").select_option("paid")
    agree.get_by_role("button").click()
    expect(page.locator("#v-order-msg")).to_contain_text("协议已签订")
    dispatch = page.locator("#v-dispatch")
    expect(dispatch.locator("[name=worker_id] option").first).to_be_attached()
    dispatch.get_by_role("button").click()
    expect(page.locator("#v-order-title")).to_contain_text("已派工")
    expect(page.locator("#v-order-log li")).to_have_count(3)
    shot(page, "office-services-order")
    with e2e.api() as api:
        orders = api.get("/api/v1/service-orders", params={"elder_id": elder}).json()
        mine = [o for o in orders if o["request"] == request]
    assert len(mine) == 1 and mine[0]["state"] == "dispatched" and mine[0]["worker_id"]

    # Points: an award claim, entered for a member; its verification by the same person is
    # refused by the ledger's four-eyes rule, in Chinese.
    page.click("#tab-points")
    claim = page.locator("#p-claim")
    claim.locator("select[name=member_id] option").first.wait_for(state="attached")
    claim.locator("input[value=award]").check()
    claim.locator("[name=points]").fill("0.3")
    claim.locator("[name=reason]").fill("e2e 急救培训")
    claim.get_by_role("button", name="提交申请").click()
    expect(claim.locator(".form-msg")).to_contain_text("0.5")
    claim.locator("[name=points]").fill("1.5")
    claim.get_by_role("button", name="提交申请").click()
    expect(claim.locator(".form-msg")).to_contain_text("待核实")
    row = page.locator("#p-queue tbody tr", has_text="e2e 急救培训").first
    row.get_by_role("button", name="核实").click()
    expect(page.locator("#p-queue-filter + .form-msg")).to_contain_text("不能")
    assert unexpected(seen) == [], seen


def test_the_page_in_english(
    e2e: E2E, signed_in: Callable[..., Any], shot: Callable[..., Any]
) -> None:
    page, seen = open_office(e2e, signed_in)
    page.click("#lang")  # the switch reloads the page in English
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#tab-quarantine")).to_have_text("Quarantine")
    expect(page.locator("#lang")).to_have_text("中文")
    page.click("#tab-reports")
    page.locator(LOADED["reports"]).wait_for(state="attached")
    expect(page.locator("#r-share svg title")).to_have_text(
        "P1 alerts answered within 60 s and 180 s"
    )
    assert not raw_keys(page.locator("#panel-reports").inner_text())
    shot(page, "office-en")

    with e2e.api() as api:
        name = api.get(f"/api/v1/elders/{e2e.elder_b}").json()["name"]
    page.click("#tab-registry")
    page.fill("#g-search input[name=q]", name)
    page.keyboard.press("Enter")
    page.locator("#g-results tbody tr", has_text=name).first.get_by_role("button").click()
    form = page.locator("#g-vitals-form")
    form.locator("[name=temperature_c]").fill("98.6")
    form.get_by_role("button").click()
    expect(form.locator(".form-msg")).to_contain_text("looks like °F")
    form.locator("[name=measured_at]").fill("")
    form.locator("[name=temperature_c]").fill("36.6")
    form.get_by_role("button").click()
    expect(form.locator(".form-msg")).to_contain_text("Measured at: required")
    shot(page, "office-en-refused")
    assert unexpected(seen) == [], seen
