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
    assert re.search(r'import \{\s*offered\b[^}]*\} from "/static/phone-card.js"', js)

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
    used |= {"page.reply_by", "page.reply_by_passed", "page.passed_on"}  # replyByLine's keys
    card = (STATIC_DIR / "phone-card.js").read_text(encoding="utf-8")
    used |= set(re.findall(r'"(page\.[a-z_.]+)"', card))  # subjectOf's, valveKey's keys
    assert used and not used - known, sorted(used - known)
    assert phone["zh-CN"]["action.withdraw"] == "无法前往"
    assert phone["en"]["action.withdraw"] == "Can't go"


# --- a call that came while the page was away rings -------------------------------------------

# (what the card is, the page item's fields, the call id last seen for it, whether it rings)
RESYNCED = [
    ("paged while away, never seen", {"state": "open", "call_event_id": 40}, None, True),
    ("seen (muted) before the gap", {"state": "open", "call_event_id": 40}, 40, False),
    ("paged again since it was seen", {"state": "open", "call_event_id": 57}, 40, True),
    (
        "open again since it was seen: the one who accepted cannot go",
        {"state": "open", "call_event_id": 61, "reopened": True, "my_last_reply_event_id": 45},
        40,
        True,
    ),
    (
        "answered (declined) on the pager after the call",
        {"state": "open", "call_event_id": 40, "my_last_reply_event_id": 44},
        None,
        False,
    ),
    (
        "answered before the call, asked again",
        {"state": "open", "call_event_id": 50, "my_last_reply_event_id": 44},
        None,
        True,
    ),
    (
        "no longer open: someone accepted",
        {"state": "acknowledged", "call_event_id": 40},
        None,
        False,
    ),
    (
        "a reminder while someone else's acceptance is not done",
        {"state": "acknowledged", "call_event_id": 70, "reminder": True},
        40,
        True,
    ),
    (
        "a reminder that was answered",
        {"state": "on_site", "call_event_id": 70, "reminder": True, "my_last_reply_event_id": 71},
        None,
        False,
    ),
    (
        "the elder pressed cancel after I accepted, while away",
        {
            "state": "acknowledged",
            "call_event_id": 12,
            "cancel_pressed_event_id": 12,
            "my_last_reply_event_id": 10,
        },
        10,
        True,
    ),
    (
        "the elder pressed cancel, seen (muted) already",
        {
            "state": "acknowledged",
            "call_event_id": 12,
            "cancel_pressed_event_id": 12,
            "my_last_reply_event_id": 10,
        },
        12,
        False,
    ),
    (
        "the elder pressed cancel, answered (arrived) since",
        {
            "state": "on_site",
            "call_event_id": 12,
            "cancel_pressed_event_id": 12,
            "my_last_reply_event_id": 14,
        },
        None,
        False,
    ),
    (
        "the elder pressed cancel, then a newer call that no longer asks",
        {
            "state": "acknowledged",
            "call_event_id": 20,
            "cancel_pressed_event_id": 12,
            "my_last_reply_event_id": 10,
        },
        12,
        False,
    ),
    ("ended", {"state": "resolved", "call_event_id": 40}, None, False),
    ("cancelled", {"state": "cancelled", "call_event_id": 40}, None, False),
    ("no call id known (an older gateway)", {"state": "open"}, None, True),
    ("no call id known, seen", {"state": "open"}, 0, False),
]


def test_after_a_resync_a_new_unanswered_call_rings_and_nothing_else(tmp_path: Path) -> None:
    cases = [
        [{"reminder": False, "my_last_reply_event_id": None, **fields}, seen]
        for _, fields, seen, _ in RESYNCED
    ]
    got = _run(
        tmp_path,
        ["phone-card.js"],
        f"""const {{ ringsAfterResync }} = await import(MOD["phone-card.js"]);
        const cases = {json.dumps(cases)};
        console.log(JSON.stringify(cases.map(([p, s]) => ringsAfterResync(p, s ?? undefined))));""",
    )
    assert dict(zip([c for c, _, _, _ in RESYNCED], got, strict=True)) == {
        c: want for c, _, _, want in RESYNCED
    }
    # The page asks it of every card of the list it loads (GET /me/pages), and rings for it; a
    # `page` event of the stream rings unless its call was seen.
    js = (STATIC_DIR / "phone.js").read_text(encoding="utf-8")
    load = js[js.index("async function loadPages()") : js.index("function connect(")]
    assert re.search(
        r"if \(ringsAfterResync\(page, seen\.get\(page\.alert_id\)\)\) \{\s*ring\(", load
    )
    assert "seen = seenCalls(localStorage, me.person.id)" in js
    # A card brought up to date stops ringing once its call no longer asks (answered elsewhere).
    upsert = js[js.index("function upsert(") : js.index("function dropIfClosed(")]
    assert re.search(r"else if \(!calling\(page\)\) \{[^}]*stopRinging\(page\.alert_id\)", upsert)


# A phone's localStorage, kept across "reloads" (each a new seenCalls over the same store).
_SEEN = """
const { seenCalls } = await import(MOD["phone-card.js"]);
const store = new Map([["shouwang.phone.seen.w9", "not json"],
                       ["shouwang.phone.seen.w8", JSON.stringify({ a1: "9", a2: 5, a3: [1] })]]);
const storage = { getItem: (k) => (store.has(k) ? store.get(k) : null),
                  setItem: (k, v) => store.set(k, String(v)) };
const out = {};
let s = seenCalls(storage, "w1");
out.fresh = s.get("a1") ?? null;
s.mark("a1", 40); s.mark("a1", 30); s.mark("a2", null);
s = seenCalls(storage, "w1");  // reloaded
out.reloaded = [s.get("a1"), s.get("a2")];
out.other_person = seenCalls(storage, "w2").get("a1") ?? null;
s.keep(new Set(["a2"]));  // a1 ended: it leaves the list and the store
out.kept = JSON.parse(store.get("shouwang.phone.seen.w1"));
out.unreadable = seenCalls(storage, "w9").get("a1") ?? null;
out.bad_values = [seenCalls(storage, "w8").get("a1") ?? null, seenCalls(storage, "w8").get("a2"),
                  seenCalls(storage, "w8").get("a3") ?? null];
const mem = seenCalls(null, null);  // no person yet: in memory only
mem.mark("a1", 3);
out.memory = [mem.get("a1"), store.size];
const full = seenCalls({ getItem: () => null, setItem: () => { throw new Error("full"); } }, "w1");
full.mark("a1", 4);
out.full = full.get("a1");
console.log(JSON.stringify(out));
"""


def test_the_calls_seen_are_kept_per_person_across_a_reload(tmp_path: Path) -> None:
    got = _run(tmp_path, ["phone-card.js"], _SEEN)
    assert got["fresh"] is None
    assert got["reloaded"] == [40, 0], "the latest call seen, never an older one"
    assert got["other_person"] is None, "another person on the same phone hears their calls"
    assert got["kept"] == {"a2": 0}
    assert got["unreadable"] is None, "an unreadable store rings once more, never less"
    assert got["bad_values"] == [None, 5, None]
    assert got["memory"] == [3, 3], "nothing written for nobody"
    assert got["full"] == 4


# --- a live `page` event rings only for a call that still asks ---------------------------------

# (what the event's card is, the page item's fields, the event id, the call id seen, rings)
LIVE_PAGES = [
    ("paged now", {"state": "open", "call_event_id": 40}, 40, None, True),
    (
        "paged, seen (muted) at the list's load",
        {"state": "open", "call_event_id": 40},
        40,
        40,
        False,
    ),
    ("paged again after a mute", {"state": "open", "call_event_id": 57}, 57, 40, True),
    (
        "replayed: I accepted it since, no reminder due",
        {"state": "acknowledged", "call_event_id": 40, "my_last_reply_event_id": 44},
        40,
        None,
        False,
    ),
    (
        "someone else accepted since",
        {"state": "acknowledged", "call_event_id": 40},
        40,
        None,
        False,
    ),
    (
        "replayed: I declined it since",
        {"state": "open", "call_event_id": 40, "my_last_reply_event_id": 44},
        40,
        None,
        False,
    ),
    (
        "a reminder of the one I accepted",
        {
            "state": "acknowledged",
            "call_event_id": 70,
            "reminder": True,
            "my_last_reply_event_id": 44,
        },
        70,
        None,
        True,
    ),
    (
        "a reminder while someone else is on site",
        {"state": "on_site", "call_event_id": 70, "reminder": True},
        70,
        40,
        True,
    ),
    (
        "open again: the one who accepted cannot go",
        {"state": "open", "call_event_id": 61, "reopened": True, "my_last_reply_event_id": 45},
        61,
        40,
        True,
    ),
    (
        "the elder pressed cancel after I accepted: I must check they are safe",
        {
            "state": "acknowledged",
            "call_event_id": 12,
            "cancel_pressed_event_id": 12,
            "my_last_reply_event_id": 10,
        },
        12,
        None,
        True,
    ),
    (
        "the elder pressed cancel while I am on site",
        {
            "state": "on_site",
            "call_event_id": 12,
            "cancel_pressed_event_id": 12,
            "my_last_reply_event_id": 11,
        },
        12,
        10,
        True,
    ),
    (
        "the elder pressed cancel, replayed after I answered it",
        {
            "state": "acknowledged",
            "call_event_id": 12,
            "cancel_pressed_event_id": 12,
            "my_last_reply_event_id": 13,
        },
        12,
        None,
        False,
    ),
    (
        "the elder pressed cancel, muted already",
        {
            "state": "acknowledged",
            "call_event_id": 12,
            "cancel_pressed_event_id": 12,
            "my_last_reply_event_id": 10,
        },
        12,
        12,
        False,
    ),
    (
        "the elder pressed cancel, then it ended",
        {"state": "resolved", "call_event_id": 12, "cancel_pressed_event_id": 12},
        12,
        None,
        False,
    ),
    ("ended meanwhile", {"state": "resolved", "call_event_id": 40}, 40, None, False),
]


def test_the_elders_cancel_told_to_who_is_coming_notifies_and_shows_on_the_card() -> None:
    # A call saying the elder pressed cancel (gateway/alerting.py `_tell_cancel_pressed`)
    # notifies with that text, and the card says so while it is the newest call.
    js = (STATIC_DIR / "phone.js").read_text(encoding="utf-8")
    handler = js[js.index('es.addEventListener("page"') : js.index('es.addEventListener("update"')]
    assert re.search(r"if \([^)]*cancelPressed\(page\)\) notify\(page\)", handler)
    note = js[js.index("async function notify(") : js.index("function telHref(")]
    assert 'cancelPressed(page) ? `${t("notify.cancel_pressed")}' in note
    meta = js[js.index("function metaText(") : js.index("function setLive(")]
    assert re.search(
        r'if \(cancelPressed\(page\)[^{]*\{\s*lines\.push\(t\("page\.cancel_pressed"', meta
    )
    phone = _book("phone")
    assert phone["zh-CN"]["notify.cancel_pressed"] == "老人按了取消键，请确认老人平安。"
    assert "老人按了取消键，请确认老人平安" in phone["zh-CN"]["page.cancel_pressed"]
    assert "pressed CANCEL" in phone["en"]["notify.cancel_pressed"]
    assert "check they are safe" in phone["en"]["page.cancel_pressed"]


def test_a_live_page_rings_only_while_its_call_still_asks_the_person(tmp_path: Path) -> None:
    cases = [
        [{"reminder": False, "my_last_reply_event_id": None, **fields}, event_id, seen]
        for _, fields, event_id, seen, _ in LIVE_PAGES
    ]
    got = _run(
        tmp_path,
        ["phone-card.js"],
        f"""const {{ ringsOnPage }} = await import(MOD["phone-card.js"]);
        const cases = {json.dumps(cases)};
        const rings = ([p, e, s]) => ringsOnPage(p, e, s ?? undefined);
        console.log(JSON.stringify(cases.map(rings)));""",
    )
    assert dict(zip([c[0] for c in LIVE_PAGES], got, strict=True)) == {
        c[0]: c[-1] for c in LIVE_PAGES
    }
    # The stream's `page` handler asks it, after the card is brought up to date.
    js = (STATIC_DIR / "phone.js").read_text(encoding="utf-8")
    handler = js[js.index('es.addEventListener("page"') : js.index('es.addEventListener("update"')]
    assert re.search(
        r"upsert\(page\);[^}]*if \(ringsOnPage\(page, event\.id, seen\.get\(page\.alert_id\)\)\) "
        r"\{\s*ring\(",
        handler,
    )


_MUTE = """
const { ringingCalls, seenCalls } = await import(MOD["phone-card.js"]);
const seen = seenCalls(null, null);
const calls = { a1: 40, a2: 41, a3: 50 };
const r = ringingCalls();
const out = {};
r.ring("a1"); r.ring("a2");
out.muted = r.mute(seen, (id) => calls[id]).sort();
out.after_mute = [r.size, seen.get("a1"), seen.get("a2")];
r.ring("a3");  // a new call
out.new_call = [r.size, r.has("a1"), r.has("a2"), r.has("a3"), seen.get("a3") ?? null];
r.stop("a3");
out.stopped = r.size;
r.ring("a1");  // a1 asks again (a reminder): rings on its own
out.again = [r.size, r.has("a1"), r.has("a2")];
console.log(JSON.stringify(out));
"""


def test_mute_stops_the_calls_ringing_now_and_a_new_call_rings_alone(tmp_path: Path) -> None:
    got = _run(tmp_path, ["phone-card.js"], _MUTE)
    assert got["muted"] == ["a1", "a2"]
    assert got["after_mute"] == [0, 40, 41], "muted: each call seen, as its card's call id"
    assert got["new_call"] == [1, False, False, True, None], "the muted ones stay quiet"
    assert got["stopped"] == 0
    assert got["again"] == [1, True, False]
    # The page has no mute for good: its sound is the calls ringing, muted each on its own.
    js = (STATIC_DIR / "phone.js").read_text(encoding="utf-8")
    assert "const ringing = ringingCalls();" in js and not re.search(r"\bmuted\s*=", js)
    mute = js[js.index("function mute()") : js.index("function showAlarm()")]
    assert "ringing.mute(seen, (id) => cards.get(id)?.page.call_event_id)" in mute


# --- what a card names: the valve, a building's outage ----------------------------------------

ELDER = {"id": "e1", "name": "老人1", "address": "幸福里1号楼", "phone": "13800000000"}
FACTS = [
    # (what the card is, the page item's fields, subjectOf's answer, valveKey's answer)
    (
        "a call button",
        {"kind": "call_button"},
        {
            "label": "page.who",
            "who": None,
            "name": "老人1",
            "address": "幸福里1号楼",
            "phone": "13800000000",
        },
        None,
    ),
    ("gas, the valve closed", {"kind": "gas", "valve": "closed"}, None, "page.valve_closed"),
    (
        "gas, the valve not closed",
        {"kind": "gas", "valve": "not_closed"},
        None,
        "page.valve_not_closed",
    ),
    ("gas, nothing known of the valve", {"kind": "gas", "valve": None}, None, None),
    (
        "a building's outage",
        {"kind": "device_offline", "outage": {"building": "幸福里9号楼", "homes": 2, "devices": 6}},
        {
            "label": "page.who_outage",
            "who": {"key": "page.outage_homes", "homes": 2},
            "name": None,
            "address": "幸福里9号楼",
            "phone": None,
        },
        None,
    ),
    (
        "one device offline",
        {"kind": "device_offline", "outage": None},
        {
            "label": "page.who",
            "who": None,
            "name": "老人1",
            "address": "幸福里1号楼",
            "phone": "13800000000",
        },
        None,
    ),
]


def test_a_card_says_the_valve_and_names_a_building_as_its_pages_do(tmp_path: Path) -> None:
    items = [{"state": "open", "elder": ELDER, **fields} for _, fields, _, _ in FACTS]
    got = _run(
        tmp_path,
        ["phone-card.js"],
        f"""const {{ subjectOf, valveKey }} = await import(MOD["phone-card.js"]);
        const facts = (p) => [subjectOf(p), valveKey(p)];
        console.log(JSON.stringify({json.dumps(items)}.map(facts)));""",
    )
    for (name, _, subject, valve), (got_subject, got_valve) in zip(FACTS, got, strict=True):
        if subject is not None:
            assert got_subject == subject, name
        assert got_valve == valve, name
    phone = _book("phone")
    assert phone["zh-CN"]["page.valve_not_closed"] == "阀门未关闭"  # as the pages' （阀门未关闭）
    assert phone["zh-CN"]["page.valve_closed"] == "阀门已关闭"
    assert phone["zh-CN"]["page.outage_homes"].format(homes=2) == "楼栋断电 2户"  # outage_elder's
    assert "{homes}" in phone["en"]["page.outage_homes"]
    # The card shows them: the valve right after the label, the building for the elder.
    js = (STATIC_DIR / "phone.js").read_text(encoding="utf-8")
    what = js[js.index("function whatText(") : js.index("function metaText(")]
    assert re.search(r"const valve = valveKey\(page\);[^\n]*\n\s*if \(valve\) parts\.push", what)
    render = js[js.index("function render(") : js.index("function say(")]
    assert "const who = subjectOf(page);" in render
    assert '.querySelector(".elder").textContent = nameText(who)' in render
    assert '.querySelector(".address").textContent = who.address' in render
    html = (STATIC_DIR / "phone.html").read_text(encoding="utf-8")
    assert '<dt class="who" data-i18n="page.who">' in html


# --- what an open card says of the time to answer -----------------------------------------------

NOW = "2024-05-01T10:00:00+08:00"
REPLY_BY = [
    # (what the card is, the page item's fields, the line's key and time)
    (
        "my deadline ahead",
        {"state": "open", "reply_by": "2024-05-01T10:01:00+08:00"},
        ["page.reply_by", "2024-05-01T10:01:00+08:00"],
    ),
    (
        "escalated past me: my deadline went by, it still waits",
        {
            "state": "open",
            "reply_by": "2024-05-01T09:59:00+08:00",
            "passed_on_at": "2024-05-01T09:59:00.500+08:00",
        },
        ["page.passed_on", "2024-05-01T09:59:00.500+08:00"],
    ),
    (
        "I declined and the next step was paged at once",
        {
            "state": "open",
            "reply_by": "2024-05-01T10:01:00+08:00",
            "my_last_reply": "declined",
            "passed_on_at": "2024-05-01T09:58:00+08:00",
        },
        ["page.passed_on", "2024-05-01T09:58:00+08:00"],
    ),
    (
        "my deadline went by, nobody else to page yet",
        {"state": "open", "reply_by": "2024-05-01T09:59:59+08:00"},
        ["page.reply_by_passed", "2024-05-01T09:59:59+08:00"],
    ),
    ("no deadline", {"state": "open", "reply_by": None}, None),
    (
        "accepted: no time to answer",
        {"state": "acknowledged", "reply_by": "2024-05-01T09:59:00+08:00"},
        None,
    ),
    (
        "ended after it was passed on",
        {"state": "resolved", "passed_on_at": "2024-05-01T09:58:00+08:00"},
        None,
    ),
]


def test_the_reply_by_line_says_what_is_true_after_an_escalation(tmp_path: Path) -> None:
    items = [
        {"acknowledged_by": None, "my_last_reply": None, "reminder": False, "passed_on_at": None}
        | fields
        for _, fields, _ in REPLY_BY
    ]
    got = _run(
        tmp_path,
        ["phone-card.js"],
        f"""const {{ replyByLine, offered }} = await import(MOD["phone-card.js"]);
        const now = Date.parse({json.dumps(NOW)});
        console.log(JSON.stringify({json.dumps(items)}.map((p) => {{
          const line = replyByLine(p, now);
          return [line && [line.key, line.time], offered(p)];
        }})));""",
    )
    names = [c for c, _, _ in REPLY_BY]
    assert dict(zip(names, [line for line, _ in got], strict=True)) == {
        c: want for c, _, want in REPLY_BY
    }
    # The card's line is this one, not the person's own reply_by whatever happened since.
    js = (STATIC_DIR / "phone.js").read_text(encoding="utf-8")
    assert "replyByLine(page, Date.now())" in js and 't("page.reply_by"' not in js
    # Passed on, and still theirs to accept.
    assert got[1][1] == got[2][1] == ["ack", "decline"]
    phone = _book("phone")
    assert "转呼下一位" in phone["zh-CN"]["page.passed_on"]
    assert "可接单" in phone["zh-CN"]["page.passed_on"]
    for book in phone.values():
        for key in ("page.reply_by", "page.reply_by_passed", "page.passed_on"):
            assert "{time}" in book[key], key


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
