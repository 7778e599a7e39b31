"""The board's banner of refused alarms (gateway/web/static/board-refused.js), run as it is by
Node.js: which alarms it shows (the day's, not dismissed here, newest first), which are new (and
ring), and that the page draws it from the stream with every string in both languages."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.web import STATIC_DIR
from tests.unit.test_pages_static import _book, _run

NOW = "2026-11-27T14:00:00+08:00"


def alarm(qid: int, at: str) -> dict[str, object]:
    return {"quarantine_id": qid, "at": at, "type": "button.pressed"}


def test_the_banner_shows_the_days_refused_alarms_not_dismissed_newest_first(
    tmp_path: Path,
) -> None:
    listed = {
        "window_h": 24,
        "alarms": [
            alarm(3, "2026-11-27T13:59:00+08:00"),
            alarm(7, "2026-11-27T13:00:00+08:00"),  # a later id received earlier: by id
            alarm(2, "2026-11-26T14:30:00+08:00"),  # 23.5 h old: still shown
            alarm(1, "2026-11-26T13:59:00+08:00"),  # a day and a minute: gone
            alarm(5, "2026-11-27T05:00:00Z"),  # another offset, 13:00 in Beijing
        ],
    }
    got = _run(
        tmp_path,
        ["board-refused.js"],
        f"""const {{ shownRefused, newRefused }} = await import(MOD["board-refused.js"]);
        const list = {json.dumps(listed)};
        const now = Date.parse({json.dumps(NOW)});
        const ids = (xs) => xs.map((a) => a.quarantine_id);
        const shown = shownRefused(list, now);
        console.log(JSON.stringify({{
          shown: ids(shown),
          dismissed: ids(shownRefused(list, now, new Set([7, 3]))),
          none: [shownRefused(null, now), shownRefused({{}}, now)],
          first: newRefused(shown, null),
          fresh: newRefused(shown, new Set([3, 2])),
        }}));""",
    )
    assert got["shown"] == [7, 5, 3, 2]
    assert got["dismissed"] == [5, 2]
    assert got["none"] == [[], []]
    assert got["first"] == []  # the list the page opens with rings nothing
    assert got["fresh"] == [7, 5]


def test_the_board_draws_the_banner_from_the_stream_in_both_languages() -> None:
    html = (STATIC_DIR / "board.html").read_text(encoding="utf-8")
    js = (STATIC_DIR / "board.js").read_text(encoding="utf-8")
    assert 'id="refused"' in html and 'id="refused-list"' in html
    assert re.search(r'import \{[^}]*shownRefused[^}]*\} from "/static/board-refused.js"', js)
    assert 'es.addEventListener("refused"' in js and 'get("/board/refused")' in js
    assert "/board/refused/${a.quarantine_id}/dismiss" in js
    book = _book("board")
    used = set(re.findall(r'"(refused\.[a-z_.]+)"', js + html)) - {"refused.type", "refused.reason"}
    used |= {f"refused.type.{t}" for t in ("button.pressed", "gas.alarm", "water.leak")}
    used |= {f"refused.reason.{r}" for r in ("invalid", "too_large", "not_json", "retired_device")}
    for lang in ("zh-CN", "en"):
        missing = sorted(k for k in used if k not in book[lang])
        assert not missing, (lang, missing)
    assert book["zh-CN"]["refused.title"] != book["en"]["refused.title"]
