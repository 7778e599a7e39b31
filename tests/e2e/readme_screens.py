"""The README's screenshots, taken from a running demo (`make run`) with its printed sign-ins.

    make run   # in another terminal; it writes ./shouwang-demo-logins.txt
    .venv/bin/python -m tests.e2e.readme_screens --url http://127.0.0.1:8000 \
        --logins shouwang-demo-logins.txt --out docs/screenshots

Headless Debian Chromium through Playwright, as the browser tests use it. It signs in as each
demo person, waits until each page shows live data, and saves one PNG per screen. It presses
nothing and changes nothing: what the pages show is the demo's own simulated homes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from tests.e2e.conftest import CHROMIUM_ARGS, sign_in_through_form

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def _logins(path: Path) -> dict[str, tuple[str, str]]:
    """role -> (username, password) from the demo's logins file."""
    found: dict[str, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(staff|watcher|volunteer|family)\s+(\S+)\s+(\S+)", line.strip())
        if m:
            found[m.group(1)] = (m.group(2), m.group(3))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--logins", type=Path, default=Path("shouwang-demo-logins.txt"))
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = ap.parse_args()
    logins = _logins(args.logins)
    args.out.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)

        def page_as(role: str, **ctx: Any) -> Any:
            context = browser.new_context(
                locale="zh-CN", timezone_id="Asia/Shanghai", device_scale_factor=1, **ctx
            )
            page = context.new_page()
            user, password = logins[role]
            sign_in_through_form(page, args.url, user, password, "zh-CN")
            return page

        def shot(page: Any, name: str) -> None:
            page.wait_for_timeout(1500)  # let the live data and timers settle
            page.screenshot(path=str(args.out / f"{name}.png"), full_page=True)
            print(args.out / f"{name}.png")

        board = page_as("staff")
        board.locator("#live[data-state='open']").wait_for()
        shot(board, "board")
        board.click("#tab-homes")
        board.locator("#view-homes").wait_for()
        shot(board, "board-homes")

        board.goto(f"{args.url}/office")
        for tab in ("reports", "registry", "quarantine"):
            board.click(f"#tab-{tab}")
            shot(board, f"office-{tab}")

        shot(page_as("watcher", **PHONE), "phone")
        shot(page_as("family"), "family")
        login = browser.new_context(locale="zh-CN").new_page()
        login.goto(f"{args.url}/login")
        shot(login, "login")
        browser.close()


if __name__ == "__main__":
    main()
