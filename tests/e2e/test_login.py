"""The sign-in page in a real browser: signing in (and landing on the role's page), the wrong
password's message in Chinese, signing out, the English switch, a signed-out visitor sent from
/board to /login and back after signing in, and the security headers the pages rely on."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.e2e.conftest import E2E, login_ready


def _cookie(page: Any) -> dict[str, Any] | None:
    return next((c for c in page.context.cookies() if c["name"] == "shouwang_session"), None)


def test_sign_in_lands_on_the_roles_page(
    e2e: E2E, signed_in: Callable[..., Any], shot: Callable[..., Any]
) -> None:
    page = signed_in("staff")
    assert page.url == f"{e2e.url}/board"
    cookie = _cookie(page)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # the cookie is out of the scripts' reach
    assert "shouwang_session" not in page.evaluate("document.cookie")
    family = signed_in("family")
    assert family.url == f"{e2e.url}/family"
    watcher = signed_in("watcher")
    assert watcher.url == f"{e2e.url}/phone"


def test_the_login_page_in_chinese_and_a_wrong_password(
    e2e: E2E, new_page: Callable[..., Any], shot: Callable[..., Any]
) -> None:
    page = new_page()
    page.goto(f"{e2e.url}/login")
    expect(page).to_have_title("登录 · 守望")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("#submit")).to_have_text("登录")
    expect(page.locator("label[for=username]")).to_have_text("用户名")
    login_ready(page)
    shot(page, "login")
    username, _, _ = e2e.accounts["volunteer"]
    page.fill("#username", username)
    page.fill("#password", "definitely-not-it")
    page.click("#submit")
    expect(page.locator("#error")).to_have_text("用户名或密码错误，请重试。")
    assert page.url.startswith(f"{e2e.url}/login")
    assert _cookie(page) is None
    assert page.input_value("#password") == ""  # cleared for the next try
    shot(page, "login-wrong-password")
    # empty fields: said so, nothing sent
    page.fill("#username", "")
    page.click("#submit")
    expect(page.locator("#error")).to_have_text("请输入用户名和密码。")


def test_sign_out_ends_the_session(
    e2e: E2E, signed_in: Callable[..., Any], new_page: Callable[..., Any]
) -> None:
    page = signed_in("volunteer")
    value = _cookie(page)["value"]  # type: ignore[index]
    page.goto(f"{e2e.url}/login?signout=1")
    expect(page.locator("#notice")).to_have_text("您已安全退出。")
    assert page.url == f"{e2e.url}/login"
    # the old cookie opens nothing any more, not even when replayed
    r = httpx.get(f"{e2e.url}/api/v1/session", cookies={"shouwang_session": value})
    assert r.status_code == 401
    page.goto(f"{e2e.url}/phone")
    page.wait_for_url(lambda u: "/login" in u)


def test_english_switch(e2e: E2E, new_page: Callable[..., Any], shot: Callable[..., Any]) -> None:
    page = new_page()
    page.goto(f"{e2e.url}/login")
    expect(page).to_have_title("登录 · 守望")
    login_ready(page)
    page.click("#lang")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page).to_have_title("Sign in · Shouwang")
    expect(page.locator("#submit")).to_have_text("Sign in")
    expect(page.locator("#lang")).to_have_text("中文")
    username, _, _ = e2e.accounts["staff"]
    page.fill("#username", username)
    page.fill("#password", "wrong password again")
    page.click("#submit")
    expect(page.locator("#error")).to_have_text("Wrong user name or password. Please try again.")
    shot(page, "login-en")
    # the choice is kept: the next visit is in English too, until switched back
    page.goto(f"{e2e.url}/login")
    expect(page.locator("#submit")).to_have_text("Sign in")
    login_ready(page)
    page.click("#lang")
    expect(page.locator("#submit")).to_have_text("登录")


def test_a_signed_out_visitor_goes_to_login_and_back(
    e2e: E2E, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    page.goto(f"{e2e.url}/board?view=homes")
    page.wait_for_url(lambda u: "/login" in u)
    assert page.url == f"{e2e.url}/login?next=%2Fboard%3Fview%3Dhomes"
    login_ready(page)
    username, password, _ = e2e.accounts["staff"]
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_url(f"{e2e.url}/board?view=homes")


def test_next_never_leaves_the_site(e2e: E2E, new_page: Callable[..., Any]) -> None:
    username, password, _ = e2e.accounts["staff"]
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:1"):
        page = new_page()
        page.goto(f"{e2e.url}/login?" + str(httpx.QueryParams({"next": target})))
        login_ready(page)
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#submit")
        page.wait_for_url(lambda u: "/login" not in u)
        assert page.url.startswith(f"{e2e.url}/"), (target, page.url)
        assert page.url == f"{e2e.url}/board", (target, page.url)


def test_a_page_of_another_role_is_refused(e2e: E2E, signed_in: Callable[..., Any]) -> None:
    page = signed_in("family")
    resp = page.goto(f"{e2e.url}/board")
    assert resp is not None and resp.status == 403
    assert "您没有权限打开此页面" in page.content()
    worker = signed_in("service_worker")
    assert worker.url == f"{e2e.url}/"
    assert "此角色暂无可用页面" in worker.content()


def test_pages_are_served_with_a_strict_policy(e2e: E2E) -> None:
    r = httpx.get(f"{e2e.url}/login")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    # nothing inline that the policy would have to allow
    assert not re.search(r"<script(?![^>]*\bsrc=)", r.text)
    assert not re.search(r"\son[a-z]+\s*=", r.text) and "style=" not in r.text
    js = httpx.get(f"{e2e.url}/static/login.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert httpx.get(f"{e2e.url}/api/v1/session").headers["cache-control"] == "no-store"
