"""Browser tests: a real gateway process on a private Mosquitto, a small demo community seeded
over HTTP, an account per role, and headless Chromium (Debian's `chromium`) driven by Playwright.

Fixtures:
- `e2e` (package): the running gateway: `url`, `admin_token`, `mqtt_host`, `mqtt_port`,
  `base`, `accounts[role] = (username, password, person_id)` for staff, watcher (paired with
  elder A), volunteer, family (a confirmed family link to elder A), service_worker; `elder_a`,
  `elder_b` (an elder neither that watcher nor that family member may see), `button_a` (elder
  A's call button), `watcher_pager` (the watcher's pager id), `community` (the seeded plan),
  `api()` (an httpx client with the admin token) and `press()` (a real MQTT press).
- `browser` (package): headless Chromium.
- `signed_in(role, lang="zh-CN", **context_options) -> Page`: a fresh browser context that
  signed in through the /login form as that role's account, and is now on its page.
- `shot(page, name)`: a full-page PNG in tests/e2e/artifacts/ (kept by CI as an artefact).

The two are package-scoped, not session-scoped: they end with the last browser test, not with
the session. While Playwright's sync API is open, its event loop counts as running in the main
thread, and a later test of the session calling asyncio.run() would fail ("cannot be called from
a running event loop"). Serially these tests came last; under xdist tests of other folders run
after them on the same worker.

Every test here is marked `e2e`. Chromium or Mosquitto missing: skipped outside CI, a failure
in CI (tests/support/services.py).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.broker import PrivateMosquitto, mosquitto_bin
from tests.support.process import GatewayProcess
from tests.support.services import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
E2E_DIR = Path(__file__).parent
N_HOMES = 4
ROLES = ("staff", "watcher", "volunteer", "family", "service_worker")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@dataclass
class E2E:
    url: str
    admin_token: str
    mqtt_host: str
    mqtt_port: int
    base: str
    accounts: dict[str, tuple[str, str, str | None]]
    elder_a: str
    elder_b: str
    button_a: str
    watcher_pager: str
    community: Any
    gateway: GatewayProcess
    log_path: Path
    _devices: dict[str, Any] = field(default_factory=dict)

    def api(self) -> httpx.Client:
        """An HTTP client on the gateway with the admin token (close it, or use `with`)."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10.0,
        )

    def press(self, device_id: str | None = None, kind: str = "short") -> None:
        """A real call-button press over MQTT (elder A's button unless told otherwise)."""
        from devices.kinds import DeviceKind
        from simulators.devices import SimDevice

        device_id = device_id or self.button_a
        dev = self._devices.get(device_id)
        if dev is None:
            dev = SimDevice(
                device_id, DeviceKind.CALL_BUTTON, self.mqtt_host, self.mqtt_port, self.base
            )
            self._devices[device_id] = dev
        dev.press(kind, wait=True)  # type: ignore[arg-type]

    def log_tail(self, n: int = 60) -> str:
        return self.gateway.tail(n)

    def close(self) -> None:
        for dev in self._devices.values():
            dev.close()
        self._devices.clear()


def _ok(resp: httpx.Response, *codes: int) -> Any:
    assert resp.status_code in (codes or (200, 201)), f"{resp.request.url}: {resp.text[:300]}"
    return resp.json()


def _make_accounts(client: httpx.Client, community: Any) -> tuple[dict[str, Any], str, str]:
    """The accounts of the five roles; returns them, elder B's id and the watcher's pager."""
    home_a = community.homes[0]
    by_pager = {p.pager_id: p for p in community.people}
    watcher = by_pager[home_a.watchers[0]]
    family = by_pager[home_a.family[0]]
    volunteer = by_pager[home_a.volunteers[0]]
    staff = by_pager[community.staff[0]]
    home_b = next(
        h
        for h in community.homes[1:]
        if watcher.pager_id not in h.watchers and family.pager_id not in h.family
    )
    # the family link of the seeded registry must be there, confirmed (the care API's workflow)
    links = _ok(client.get("/api/v1/care/family-links", params={"elder_id": home_a.elder_id}))
    assert any(lk["person_id"] == family.id and lk.get("confirmed_at") for lk in links), (
        f"no confirmed family link for elder A: {links}"
    )
    providers = _ok(client.get("/api/v1/providers"))
    worker_id = None
    for prov in providers:
        workers = _ok(client.get(f"/api/v1/providers/{prov['id']}/workers"))
        if workers:
            worker_id = workers[0]["id"]
            break
    assert worker_id is not None, "the seeded services have no worker"
    people = {
        "staff": staff.id,
        "watcher": watcher.id,
        "volunteer": volunteer.id,
        "family": family.id,
        "service_worker": worker_id,
    }
    accounts: dict[str, Any] = {}
    for role in ROLES:
        username = f"e2e.{role.replace('_', '-')}"
        password = "pw-" + secrets.token_urlsafe(12)
        body = {"username": username, "role": role, "person_id": people[role], "password": password}
        _ok(client.post("/api/v1/users", json=body), 201)
        accounts[role] = (username, password, people[role])
    return accounts, str(home_b.elder_id), watcher.pager_id


@pytest.fixture(scope="package")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    if mosquitto_bin() is None:
        require("mosquitto", "no mosquitto binary (apt-get install mosquitto)")
    from gateway.care_store import generate_data_key
    from simulators.community import seed

    work = tmp_path_factory.mktemp("e2e")
    broker = PrivateMosquitto()
    broker.start()
    token = "e2e-admin-" + secrets.token_urlsafe(18)
    base = "e2e" + secrets.token_hex(3)
    gw = GatewayProcess(
        {
            "SHOUWANG_DATABASE_URL": f"sqlite:///{work / 'e2e.db'}",
            "SHOUWANG_MQTT_URL": broker.url,
            "SHOUWANG_MQTT_BASE": base,
            "SHOUWANG_MQTT_CLIENT_ID": f"gw-{base}",
            "SHOUWANG_ADMIN_TOKEN": token,
            "SHOUWANG_DATA_KEY": generate_data_key(),
            "SHOUWANG_HTTP_HOST": "127.0.0.1",
            "SHOUWANG_MODE": "production",
        },
        work / "gateway.log",
    )
    env: E2E | None = None
    try:
        gw.start(timeout=60)
        community = seed(gw.url, token, N_HOMES, wait_s=20, modules=("care", "points", "services"))
        assert community.created
        with httpx.Client(
            base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client:
            accounts, elder_b, pager = _make_accounts(client, community)
        home_a = community.homes[0]
        env = E2E(
            url=gw.url,
            admin_token=token,
            mqtt_host="127.0.0.1",
            mqtt_port=broker.port,
            base=base,
            accounts=accounts,
            elder_a=str(home_a.elder_id),
            elder_b=elder_b,
            button_a=home_a.call_button,
            watcher_pager=pager,
            community=community,
            gateway=gw,
            log_path=work / "gateway.log",
        )
        yield env
    finally:
        if env is not None:
            env.close()
        gw.stop()
        broker.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("playwright", "the playwright package is not installed (pip install '.[dev]')")
    if not CHROMIUM.exists():
        require("chromium", f"no {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """`new_page(lang="zh-CN", **context_options) -> Page`: a fresh context (its own cookies
    and storage), with the station's time zone, closed after the test."""
    contexts: list[Any] = []

    def make(lang: str = "zh-CN", **options: Any) -> Any:
        options.setdefault("locale", lang)
        options.setdefault("timezone_id", "Asia/Shanghai")
        options.setdefault("viewport", {"width": 1280, "height": 860})
        ctx = browser.new_context(**options)
        ctx.set_default_timeout(10_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


def login_ready(page: Any) -> None:
    """Wait until /login's script has started (its form is live). The page loads before the
    script has fetched its texts and taken over the form: a click before that submits the bare
    HTML form, and the page stays on /login."""
    from playwright.sync_api import expect

    # expect() rather than wait_for_function: the pages' CSP forbids the eval() it relies on
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def sign_in_through_form(page: Any, url: str, username: str, password: str, lang: str) -> None:
    """Open /login in `lang`, fill the form, submit, and wait until the page has moved on."""
    from playwright.sync_api import expect

    page.goto(f"{url}/login?lang={lang}")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    login_ready(page)
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_url(lambda u: "/login" not in u)
    page.wait_for_load_state("domcontentloaded")


@pytest.fixture
def signed_in(e2e: E2E, new_page: Callable[..., Any]) -> Callable[..., Any]:
    """`signed_in(role, lang="zh-CN", **context_options) -> Page`, signed in through the form
    as the role's account (admin: not an account; use the API with `e2e.admin_token`)."""

    def make(role: str, lang: str = "zh-CN", **options: Any) -> Any:
        username, password, _ = e2e.accounts[role]
        page = new_page(lang, **options)
        sign_in_through_form(page, e2e.url, username, password, lang)
        return page

    return make


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    """`shot(page, name)`: a full-page screenshot, tests/e2e/artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(page: Any, name: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("._") or "page"
        path = ARTIFACTS / f"{safe}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def wait_until(check: Callable[[], Any], timeout: float = 5.0, step: float = 0.05) -> Any:
    """Poll `check` until it returns something true (returned) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(step)


__all__ = ["E2E", "login_ready", "sign_in_through_form", "wait_until"]
