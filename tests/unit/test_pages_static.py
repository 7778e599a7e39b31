"""The pages' own code, read and run without a browser: the phone card's buttons (which answers
a watcher or volunteer is offered, as what the card tells them), the language a page opens in
(the account's, unless one was chosen on the device), the phone page's strings in both
languages, and the names the pages give the helpers (GLOSSARY: 守望员, 互助员). The modules are
run as they are, by Node.js, with the few browser objects they touch stubbed (tests/e2e drives
the whole pages in Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.web import STATIC_DIR
from tests.support.services import require


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        require("node", "the pages' modules are run by Node.js")
    return node


def _run(tmp_path: Path, modules: list[str], script: str) -> Any:
    """Run `script` (an ES module; `MOD[name]` is the file URL of each of `modules`) and return
    what it printed, as JSON."""
    urls = {}
    for name in modules:
        copy = tmp_path / f"{name.removesuffix('.js')}.mjs"  # an ES module whatever the setup
        copy.write_text((STATIC_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
        urls[name] = copy.as_uri()
    prelude = f"const MOD = {json.dumps(urls)};\n"
    done = subprocess.run(
        [_node(), "--input-type=module", "-e", prelude + script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _book(name: str) -> dict[str, dict[str, str]]:
    return json.loads((STATIC_DIR / "i18n" / f"{name}.json").read_text(encoding="utf-8"))


# --- the phone card's buttons ----------------------------------------------------------------

ME = {"name": "R-w1", "me": True}
OTHER = {"name": "R-v1", "me": False}
CARDS = [
    # (what the card is, the page item's fields, the answers offered)
    ("waiting", {"state": "open"}, ["ack", "decline"]),
    (
        "waiting again, I declined",
        {"state": "open", "my_last_reply": "declined"},
        ["ack", "decline"],
    ),
    (
        "I accepted: I may take it back",
        {"state": "acknowledged", "acknowledged_by": ME, "my_last_reply": "acknowledged"},
        ["arrived", "resolved", "withdraw"],
    ),
    (
        "someone else accepted: I need not go",
        {"state": "acknowledged", "acknowledged_by": OTHER},
        [],
    ),
    (
        "someone else accepted after I declined",
        {"state": "acknowledged", "acknowledged_by": OTHER, "my_last_reply": "declined"},
        [],
    ),
    (
        "the station accepted",
        {"state": "acknowledged", "acknowledged_by": {"name": "zhao", "me": False}},
        [],
    ),
    (
        "I am coming too (accepted after someone else)",
        {"state": "acknowledged", "acknowledged_by": OTHER, "my_last_reply": "ack_again"},
        ["arrived", "resolved"],
    ),
    (
        "a reminder asks me although someone else accepted",
        {"state": "acknowledged", "acknowledged_by": OTHER, "reminder": True},
        ["arrived", "resolved"],
    ),
    ("on site, I accepted", {"state": "on_site", "acknowledged_by": ME}, ["resolved"]),
    (
        "on site: I arrived, someone else accepted",
        {"state": "on_site", "acknowledged_by": OTHER, "my_last_reply": "on_site"},
        ["resolved"],
    ),
    ("on site: someone else is there", {"state": "on_site", "acknowledged_by": OTHER}, []),
    ("ended", {"state": "resolved", "acknowledged_by": ME}, []),
    ("cancelled", {"state": "cancelled"}, []),
]


def test_the_phone_card_offers_the_answers_that_fit_what_it_says(tmp_path: Path) -> None:
    items = [
        {"acknowledged_by": None, "my_last_reply": None, "reminder": False, **fields}
        for _, fields, _ in CARDS
    ]
    got = _run(
        tmp_path,
        ["phone-card.js"],
        f"""const {{ offered }} = await import(MOD["phone-card.js"]);
        console.log(JSON.stringify({json.dumps(items)}.map(offered)));""",
    )
    assert dict(zip([c for c, _, _ in CARDS], got, strict=True)) == {
        c: want for c, _, want in CARDS
    }


def test_the_phone_page_has_the_withdrawal_and_every_string_in_both_languages() -> None:
    html = (STATIC_DIR / "phone.html").read_text(encoding="utf-8")
    js = (STATIC_DIR / "phone.js").read_text(encoding="utf-8")
    # 无法前往 is a button of its own, asked again before it goes, and sent as the pager's
    # `decline` (the one reply that withdraws an acceptance).
    assert re.search(r'<button[^>]*data-action="withdraw"[^>]*data-i18n="action.withdraw"', html)
    assert re.search(r'class="withdrawal hidden"', html) and 'class="withdraw-yes"' in html
    assert 'action === "withdraw" ? "decline" : action' in js
    assert 'import { offered } from "/static/phone-card.js"' in js

    phone, common = _book("phone"), _book("common")
    assert set(phone) == {"zh-CN", "en"}
    assert set(phone["zh-CN"]) == set(phone["en"]), set(phone["zh-CN"]) ^ set(phone["en"])
    for lang, book in phone.items():
        assert not [k for k, v in book.items() if not v.strip()], lang
    known = set(phone["zh-CN"]) | set(common["zh-CN"])
    used = set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', html))
    used |= set(re.findall(r'\bt\("([^"]+)"', js))
    # Built from the answer: every answer's "done" line, and the withdrawal passed to another.
    used |= {f"action.done.{a}" for a in ("ack", "decline", "arrived", "resolved", "withdraw")}
    used |= {"action.done.withdraw_passed", "page.reopened"}
    assert used and not used - known, sorted(used - known)
    assert phone["zh-CN"]["action.withdraw"] == "无法前往"
    assert phone["en"]["action.withdraw"] == "Can't go"


# --- the language a page opens in --------------------------------------------------------------

# loadI18n in a stubbed browser: the address's query, localStorage, and GET /api/v1/session
# answering `session` (a status and the account's language; "throw": the network is down).
_LOAD = """
const [search, kept, session] = %s;
const store = new Map(kept ? [["shouwang.lang", kept]] : []);
globalThis.location = { search, href: "http://gw/phone" + search };
globalThis.localStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => store.set(k, String(v)),
};
globalThis.document = { documentElement: {}, querySelectorAll: () => [] };
const books = %s;
const asked = [];
globalThis.fetch = async (url) => {
  asked.push(url);
  if (url === "/api/v1/session") {
    if (session === "throw") throw new TypeError("network down");
    return { ok: session[0] === 200, status: session[0],
             json: async () => ({ username: "v", language: session[1] }) };
  }
  const name = /\\/static\\/i18n\\/(\\w+)\\.json/.exec(url)[1];
  return { ok: true, json: async () => books[name] };
};
const i18n = await import(MOD["i18n.js"]);
const lang = await i18n.loadI18n("phone");
console.log(JSON.stringify({ lang, html: document.documentElement.lang,
  title: i18n.t("page.title"), asked: asked.filter((u) => u.startsWith("/api/")),
  kept: store.get("shouwang.lang") ?? null }));
"""


@pytest.mark.parametrize(
    ("search", "kept", "session", "want", "asks"),
    [
        ("", None, [200, "en"], "en", True),  # nothing chosen here: the account's language
        ("", None, [200, "zh-CN"], "zh-CN", True),
        ("", "zh-CN", [200, "en"], "zh-CN", False),  # chosen on this device: that wins
        ("", "en", [200, "zh-CN"], "en", False),
        ("?lang=zh-CN", None, [200, "en"], "zh-CN", False),  # the address wins, and is kept
        ("", None, [401, None], "zh-CN", True),  # signed out (the sign-in page)
        ("", None, "throw", "zh-CN", True),
        ("", None, [200, "fr"], "zh-CN", True),  # not one of ours
    ],
)
def test_a_page_opens_in_the_accounts_language_unless_one_was_chosen_here(
    tmp_path: Path, search: str, kept: str | None, session: Any, want: str, asks: bool
) -> None:
    books = {"common": _book("common"), "phone": _book("phone")}
    got = _run(
        tmp_path,
        ["i18n.js"],
        _LOAD % (json.dumps([search, kept, session]), json.dumps(books, ensure_ascii=False)),
    )
    assert (got["lang"], got["html"]) == (want, want)
    assert got["title"] == books["phone"][want]["page.title"]
    assert got["asked"] == (["/api/v1/session"] if asks else [])
    # Only a choice is kept: the account's language is asked again next time (it may change).
    assert got["kept"] == ("zh-CN" if search else kept)


# --- one name per helper ---------------------------------------------------------------------


def test_the_pages_call_the_helpers_by_the_glossarys_names() -> None:
    for path in sorted((STATIC_DIR / "i18n").glob("*.json")):
        zh = json.loads(path.read_text(encoding="utf-8")).get("zh-CN", {})
        for key, text in zh.items():
            assert "守望人" not in text and "志愿者" not in text, (path.name, key, text)
        for key, name in (("role.watcher", "守望员"), ("role.volunteer", "互助员")):
            assert zh.get(key, name) == name, (path.name, key)
    assert _book("family")["zh-CN"]["state.open"] == "正在通知守望员"
