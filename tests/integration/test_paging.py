"""Paging wired end to end, on SQLite and PostgreSQL with a real Mosquitto: plans built from
pairings and the duty roster, reminders of acknowledged alarms, a decline after an
acknowledgement (open again, or passed to another who is coming), channel chains through apprise
to a tiny HTTP server on 127.0.0.1 (json:// URLs), retries and fallbacks, the paging API and
the alerts report. Time moves with a FakeClock; every wait is bounded."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from alerts.policy import DeliveryStatus
from gateway import tables as T
from gateway.api import create_app
from gateway.auth import create_token
from gateway.notify import AppriseNotifier, Delivery, mask_address
from tests.integration.test_api import serving
from tests.integration.test_station_scope import register
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

ADMIN = "admin-paging-test-token"
QUIET = 0.6  # three scheduler polls: long enough for a page that should not come to show up

# (id, role, pager, language) for seed_home
PEOPLE = [
    ("w1", "watcher", "pw1", "zh-CN"),
    ("v1", "volunteer", "pv1", "zh-CN"),
    ("v2", "volunteer", "pv2", "zh-CN"),
    ("s1", "staff", "ps1", "en"),
    ("s2", "staff", "ps2", "en"),
    ("f1", "family", "pf1", "zh-CN"),
]


# --- a local endpoint for apprise's json:// URLs -------------------------------------------------


class Hooks:
    """An HTTP server on 127.0.0.1 recording every POST by path. `/fail...` answers 500;
    `/slow...` waits `slow_s` first (and then fails)."""

    def __init__(self, slow_s: float = 2.5) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.started: list[str] = []
        self.slow_s = slow_s
        self._cond = threading.Condition()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = self.path.lstrip("/")
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with hooks._cond:
                    hooks.started.append(path)
                    hooks._cond.notify_all()
                if path.startswith("slow"):
                    time.sleep(hooks.slow_s)
                code = 500 if path.startswith(("fail", "slow")) else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                with hooks._cond:
                    hooks.posts.append((path, body))
                    hooks._cond.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def to(self, path: str) -> list[dict[str, Any]]:
        with self._cond:
            return [body for p, body in self.posts if p == path]

    def wait(self, path: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([1 for p, _ in self.posts if p == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"waited {timeout}s for {count} POST(s) to /{path}: "
                        f"{[p for p, _ in self.posts]}"
                    )
                self._cond.wait(left)
            return [body for p, body in self.posts if p == path]

    def wait_started(self, path: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while path not in self.started:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no request to /{path} within {timeout}s")
                self._cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hooks]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # loopback only, whatever the host says
    h = Hooks()
    yield h
    h.close()


# --- helpers ------------------------------------------------------------------------------------


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


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


def ok(resp: Any, code: int = 200) -> Any:
    assert resp.status_code == code, resp.text
    return resp.json() if resp.content else None


def pair(api: httpx.Client, elder: str, responder: str, **extra: Any) -> dict[str, Any]:
    body = {"responder_id": responder, **extra}
    result: dict[str, Any] = ok(api.post(f"/api/v1/elders/{elder}/pairings", json=body), 201)
    return result


def shift(
    api: httpx.Client, clock: FakeClock, responder: str, tags: list[str] | None = None
) -> Any:
    now = clock()
    body = {
        "responder_id": responder,
        "start_at": iso(now - 3600),
        "end_at": iso(now + 8 * 3600),
        "tags": tags or [],
    }
    return ok(api.post("/api/v1/roster/shifts", json=body), 201)


def channels(api: httpx.Client, responder: str, links: list[dict[str, Any]]) -> Any:
    return ok(api.put(f"/api/v1/responders/{responder}/channels", json={"links": links}))


def timeline(api: httpx.Client, alert_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ok(api.get(f"/api/v1/alerts/{alert_id}"))["timeline"]
    return result


def events(api: httpx.Client, alert_id: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in timeline(api, alert_id) if e["type"] == type_]


def alert_row(gw: Any, alert_id: str) -> Any:
    with gw.engine.connect() as c:
        return c.execute(select(T.alerts).where(T.alerts.c.id == alert_id)).one()


def delivery_rows(gw: Any, alert_id: str) -> list[Any]:
    with gw.engine.connect() as c:
        return c.execute(
            select(T.deliveries)
            .where(T.deliveries.c.alert_id == alert_id)
            .order_by(T.deliveries.c.id)
        ).all()


# --- plans from pairings and the roster -----------------------------------------------------------


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_plan_from_pairings_and_roster_climbs_the_ladder(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[], responders=PEOPLE)
    ok(api.put("/api/v1/elders/e1/tags", json={"tags": ["community:幸福里", "building:1"]}))
    pair(api, "e1", "w1")
    pair(api, "e1", "f1")
    shift(api, clock, "v1", ["community:幸福里"])  # on duty nearby
    shift(api, clock, "v2", ["community:别处"])  # on duty, elsewhere
    shift(api, clock, "s1")  # s2 is not on shift

    mq.event("cb-1", "button.pressed")
    [first] = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0)
    assert (first["_pager"], first["step"]) == ("pw1", 1)
    alert_id = first["alert_id"]
    [planned] = events(api, alert_id, "planned")
    assert planned["detail"]["source"] == "policy"
    assert [
        (s["role"], s["responder_ids"], s["ack_timeout_s"]) for s in planned["detail"]["steps"]
    ] == [
        ("watcher", ["w1"], 60),
        ("volunteer", ["v1"], 60),
        ("staff", ["s1"], 90),
        ("family", ["f1"], 120),
    ]
    clock.advance(61)
    [step2] = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=2)
    assert step2["step"] == 2
    clock.advance(61)
    [step3] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)
    assert step3["step"] == 3 and step3["text"].startswith("P1 CALL BUTTON")
    clock.advance(91)
    [step4] = mq.wait_for(lambda m: m["_pager"] == "pf1", timeout=2)
    assert step4["step"] == 4
    clock.advance(121)
    mq.wait_for(lambda m: m["_pager"] == "pf1", timeout=2, count=2)  # the last step repeats
    assert not mq.pages("pv2"), "a volunteer on duty elsewhere is not paged"
    assert not mq.pages("ps2"), "staff off shift are not paged while someone is on duty"
    assert alert_row(gw, alert_id).plan_source == "policy"


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_all_staff_are_paged_when_nobody_is_on_duty(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt
) -> None:
    seed_home(engine, steps=[], responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    pages = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0, count=2)
    assert {p["_pager"] for p in pages} == {"ps1", "ps2"}
    [planned] = events(api, pages[0]["alert_id"], "planned")
    assert "staff_fallback" in planned["detail"]["notes"]
    assert planned["detail"]["steps"][0]["fallback"] is True


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_an_explicit_plan_still_wins(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["s2"], 30), (["v2"], 30)], responders=PEOPLE)
    pair(api, "e1", "w1")
    shift(api, clock, "s1")
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0)
    assert page["_pager"] == "ps2"
    [planned] = events(api, page["alert_id"], "planned")
    assert planned["detail"]["source"] == "override"
    clock.advance(31)
    mq.wait_for(lambda m: m["_pager"] == "pv2", timeout=2)
    time.sleep(QUIET)
    assert not mq.pages("pw1") and not mq.pages("ps1")
    # An explicit plan is followed as written: no reminders after an ack (by default).
    mq.reply("pv2", page["alert_id"], "ack")
    wait_until(lambda: alert_row(gw, page["alert_id"]).state == "acknowledged", what="ack")
    assert alert_row(gw, page["alert_id"]).next_reminder_at is None


# --- reminders ------------------------------------------------------------------------------------


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_acknowledged_p1_is_reminded_and_never_after_resolve(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[], responders=PEOPLE)
    pair(api, "e1", "w1")
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0)
    alert_id = page["alert_id"]
    assert page["_pager"] == "pw1"
    mq.reply("pw1", alert_id, "ack")
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="ack")
    row = alert_row(gw, alert_id)
    assert row.next_reminder_at == row.acknowledged_at + 600_000

    clock.advance(598)
    time.sleep(QUIET)
    assert len(mq.pages("pw1")) == 1, "reminded before its time"
    clock.advance(3)
    [reminder] = mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=2, count=2)[1:]
    assert reminder["type"] == "page" and reminder["alert_id"] == alert_id
    assert reminder["step"] == 1 and "提醒" in reminder["text"] and "老人1" in reminder["text"]
    assert not mq.pages("ps1"), "the first reminder goes to the one who acknowledged"

    clock.advance(601)  # the second: the acknowledger and the staff (none on duty: all)
    [to_staff] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)
    assert to_staff["text"].startswith("REMINDER P1 CALL BUTTON")
    mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=2, count=3)
    reminded = events(api, alert_id, "reminded")
    assert [e["detail"]["number"] for e in reminded] == [1, 2]
    assert [p["responder_id"] for p in reminded[1]["detail"]["to"]] == ["w1", "s1", "s2"]
    assert alert_row(gw, alert_id).reminders_sent == 2

    ok(api.post(f"/api/v1/alerts/{alert_id}/arrive"))  # on site: reminded less often
    row = alert_row(gw, alert_id)
    assert row.next_reminder_at == row.on_site_at + 1_800_000
    ok(api.post(f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "real"}))
    assert alert_row(gw, alert_id).next_reminder_at is None
    before = len(mq.pages())
    clock.advance(3600)
    time.sleep(QUIET)
    assert len(mq.pages()) == before, "paged after resolution"
    assert len(events(api, alert_id, "reminded")) == 2


# --- a decline after an acknowledgement ----------------------------------------------------------


def reply(mq: Mqtt, pager: str, alert_id: str, action: str, note: str | None = None) -> None:
    """A pager's reply, with its optional note (Mqtt.reply sends none)."""
    body = {"id": uuid.uuid4().hex[:12], "ts": int(time.time() * 1000), "alert_id": alert_id}
    body |= {"action": action, **({"note": note} if note else {})}
    mq.raw(f"{mq.base}/v1/pagers/{pager}/replies", json.dumps(body).encode())


def event_at(gw: Any, alert_id: str, type_: str) -> list[int]:
    with gw.engine.connect() as c:
        e = T.alert_events.c
        q = select(e.at).where(e.alert_id == alert_id, e.type == type_).order_by(e.id)
        return list(c.execute(q).scalars())


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_the_acknowledger_declining_reopens_the_alert_and_pages_the_next_step_at_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1", "v1"], 60), (["s1"], 90), (["f1"], 120)], responders=PEOPLE)
    start = clock()
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0, count=2)
    alert_id = page["alert_id"]
    clock.advance(10)
    mq.reply("pw1", alert_id, "ack")
    [taken] = mq.wait_for(lambda m: m["type"] == "notice" and m["_pager"] == "pv1", timeout=2)
    assert taken["state"] == "acknowledged" and "R-w1" in taken["text"]

    clock.advance(20)  # w1 cannot go after all: nobody is coming
    reply(mq, "pw1", alert_id, "decline", "我去不了，腿受伤了")
    [step2] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)
    assert (step2["type"], step2["step"]) == ("page", 2), "the next step, at once"
    row = alert_row(gw, alert_id)
    assert (row.state, row.acknowledged_at, row.acknowledged_by) == ("open", None, None)
    assert row.step == 2 and row.next_escalation_at == row.updated_at + 90_000
    assert row.next_reminder_at is None
    # v1 was told "w1 took it, no need to go": now that it is open again; w1 is told nothing.
    [again] = mq.wait_for(
        lambda m: m["type"] == "notice" and m["_pager"] == "pv1" and m["state"] == "open",
        timeout=2,
    )
    assert "R-w1" in again["text"] and "无法前往" in again["text"]
    assert not mq.pages("pw1", type_="notice")
    assert not mq.pages("ps1", type_="notice"), "s1 has the page itself"
    seq = [(e["type"], e["actor"]) for e in timeline(api, alert_id)]
    i = seq.index(("ack_withdrawn", "responder:w1"))
    assert seq[i : i + 5] == [
        ("ack_withdrawn", "responder:w1"),
        ("declined", "responder:w1"),
        ("escalated", None),
        ("paged", None),
        ("notified", None),
    ]
    [withdrawn] = events(api, alert_id, "ack_withdrawn")
    assert withdrawn["detail"]["note"] == "我去不了，腿受伤了"
    assert withdrawn["detail"]["state"] == "open" and withdrawn["detail"]["acknowledged_at"]
    [escalated] = events(api, alert_id, "escalated")
    assert escalated["detail"] == {"from": 1, "to": 2, "reason": "ack_withdrawn"}
    [notified] = [e for e in events(api, alert_id, "notified") if e["detail"]["state"] == "open"]
    assert notified["detail"]["pagers"] == ["pv1"]

    # Only the acknowledgement that holds counts: s1's, 70 s after the press, not w1's at 10 s.
    clock.advance(40)
    mq.reply("ps1", alert_id, "ack")
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="s1's ack")
    assert alert_row(gw, alert_id).acknowledged_by == "responder:s1"
    period = {"from": iso(start - 60), "to": iso(clock() + 60)}
    within60 = ok(api.get("/api/v1/reports/alerts", params=period))["answered_within"][0]
    assert (within60["within"], within60["total"]) == (0, 1), "a withdrawn ack is no answer"


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_decline_while_someone_is_coming_pages_nobody_and_a_late_one_is_late(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1", "v1", "v2"], 60), (["s1"], 90)], responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    [page, *_] = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0, count=3)
    alert_id = page["alert_id"]
    mq.reply("pw1", alert_id, "ack")
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="w1's ack")

    clock.advance(5)  # someone else's decline while w1 is coming: recorded, nothing more
    reply(mq, "pv1", alert_id, "decline", "在外地")
    wait_until(lambda: event_at(gw, alert_id, "declined"), what="v1's decline")
    row = alert_row(gw, alert_id)
    assert (row.state, row.acknowledged_by) == ("acknowledged", "responder:w1")

    clock.advance(5)  # v2 is coming too; then w1 cannot: the alert is v2's, from v2's ack
    mq.reply("pv2", alert_id, "ack")
    wait_until(lambda: event_at(gw, alert_id, "ack_again"), what="v2's ack")
    clock.advance(5)
    reply(mq, "pw1", alert_id, "decline")
    wait_until(lambda: alert_row(gw, alert_id).acknowledged_by == "responder:v2", what="v2's")
    row = alert_row(gw, alert_id)
    [v2_at] = event_at(gw, alert_id, "ack_again")
    assert (row.state, row.acknowledged_at) == ("acknowledged", v2_at)
    [withdrawn] = events(api, alert_id, "ack_withdrawn")
    assert withdrawn["actor"] == "responder:w1"
    assert withdrawn["detail"]["passed_to"] == "responder:v2"
    time.sleep(QUIET)
    assert not mq.pages("ps1"), "nobody is paged while someone is coming"
    assert not [n for n in mq.pages(type_="notice") if n["state"] == "open"]

    reply(mq, "pv2", alert_id, "decline")  # and v2 neither (v1 declined before): open again
    mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)
    assert alert_row(gw, alert_id).state == "open"
    told = mq.wait_for(lambda m: m["type"] == "notice" and m["state"] == "open", count=2)
    assert sorted(n["_pager"] for n in told) == ["pv1", "pw1"]

    # Once it is over, a decline is a late reply like any answer, told how it ended.
    ok(api.post(f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "real"}))
    reply(mq, "pv1", alert_id, "decline", "刚看到")
    mq.wait_for(
        lambda m: m["_pager"] == "pv1" and m["type"] == "notice" and m["state"] == "resolved",
        timeout=2,
        count=2,  # the resolution's notice, then the one answering the late decline
    )
    wait_until(lambda: events(api, alert_id, "late_reply"), what="the late decline")
    [late] = events(api, alert_id, "late_reply")
    assert late["actor"] == "responder:v1" and late["detail"]["action"] == "decline"
    assert late["detail"]["note"] == "刚看到"
    assert len(events(api, alert_id, "declined")) == 3, "the late one is not a decline"


# --- everyone at the last step declines ----------------------------------------------------------

FAMILY2 = [*PEOPLE, ("f2", "family", "pf2", "zh-CN")]


def ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_when_everyone_at_the_last_step_declines_the_staff_on_duty_are_paged_at_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 60), (["f1", "f2"], 120)], responders=FAMILY2)
    shift(api, clock, "s1")  # s1 on duty, s2 not
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=1.0)
    alert_id = page["alert_id"]
    clock.advance(61)  # the family step, the last: it would repeat in 120 s
    mq.wait_for(lambda m: m["_pager"] in ("pf1", "pf2"), timeout=2, count=2)
    deadline = alert_row(gw, alert_id).next_escalation_at

    clock.advance(10)
    reply(mq, "pf1", alert_id, "decline", "在外地")
    wait_until(lambda: event_at(gw, alert_id, "declined"), what="f1's decline")
    time.sleep(QUIET)
    assert not mq.pages("ps1"), "f2 may still come: nobody more yet"

    clock.advance(10)  # f2 neither: nobody is coming, so the staff on duty, at once
    reply(mq, "pf2", alert_id, "decline")
    [to_s1] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)
    assert (to_s1["type"], to_s1["step"], to_s1["alert_id"]) == ("page", 2, alert_id)
    # w1, paged at step 1, never answered and may still come: not "nobody else can come"
    assert to_s1["text"].startswith("P1 CALL BUTTON: 老人1"), to_s1["text"]
    assert ms(to_s1["reply_by"]) == deadline, "the step's time-out runs on, not restarted"
    row = alert_row(gw, alert_id)
    assert (row.state, row.step, row.next_escalation_at) == ("open", 2, deadline)
    seq = [(e["type"], e["actor"]) for e in timeline(api, alert_id)]
    i = seq.index(("declined", "responder:f2"))
    assert seq[i + 1 : i + 3] == [("escalated", None), ("paged", None)]
    escalated = events(api, alert_id, "escalated")[-1]
    assert escalated["detail"] == {
        "from": 2,
        "to": "staff_on_duty",
        "reason": "all_declined",
        "declined": ["f1", "f2"],
    }
    paged = events(api, alert_id, "paged")[-1]["detail"]
    assert (paged["step"], paged["reason"], paged["repeat"]) == (2, "all_declined", False)
    assert [p["responder_id"] for p in paged["to"]] == ["s1"]
    assert not mq.pages("ps2"), "staff off duty wait while someone on duty is asked"

    clock.advance(5)  # s1 cannot either: every other staff member (none else is on duty)
    reply(mq, "ps1", alert_id, "decline")
    [to_s2] = mq.wait_for(lambda m: m["_pager"] == "ps2", timeout=2)
    assert ms(to_s2["reply_by"]) == deadline and to_s2["text"].startswith("P1 CALL BUTTON: ")
    escalated = events(api, alert_id, "escalated")[-1]["detail"]
    assert (escalated["to"], escalated["declined"]) == ("all_staff", ["f1", "f2", "s1"])
    assert len(mq.pages("ps1")) == 1, "who declined is not asked again"

    clock.advance(5)  # s2 neither: nobody left; the timeline says so, nothing is paged
    reply(mq, "ps2", alert_id, "decline")
    wait_until(lambda: events(api, alert_id, "escalation_skipped"), what="nobody left")
    [skipped] = events(api, alert_id, "escalation_skipped")
    assert skipped["detail"]["reason"] == "all_declined"
    assert skipped["detail"]["declined"] == ["f1", "f2", "s1", "s2"]
    assert ms(skipped["detail"]["repeat_at"]) == deadline
    reply(mq, "pw1", alert_id, "decline")  # step 1's watcher, not asked at the last step
    time.sleep(QUIET)
    assert [len(mq.pages(p)) for p in ("pf1", "pf2", "ps1", "ps2")] == [1, 1, 1, 1]
    assert alert_row(gw, alert_id).next_escalation_at == deadline

    # The time-out: the last step repeats as before; declining it again pages nobody more.
    clock.advance(deadline / 1000 - clock() + 1)
    mq.wait_for(lambda m: m["_pager"] in ("pf1", "pf2"), timeout=2, count=4)
    reply(mq, "pf1", alert_id, "decline")
    reply(mq, "pf2", alert_id, "decline")
    wait_until(lambda: len(event_at(gw, alert_id, "declined")) == 7, what="the declines")
    time.sleep(QUIET)
    assert [len(mq.pages(p)) for p in ("ps1", "ps2")] == [1, 1]
    assert len(events(api, alert_id, "escalation_skipped")) == 1

    # Over: a decline is a late reply, and pages nobody.
    ok(api.post(f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "real"}))
    before = len(mq.pages())
    reply(mq, "pf1", alert_id, "decline")
    wait_until(lambda: events(api, alert_id, "late_reply"), what="the late decline")
    time.sleep(QUIET)
    assert len(mq.pages()) == before


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_the_last_acknowledger_withdrawing_at_the_last_step_pages_the_staff_at_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["f1", "f2"], 120)], responders=FAMILY2)  # one step: the last
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0, count=2)
    alert_id = page["alert_id"]
    reply(mq, "pf2", alert_id, "decline")
    mq.reply("pf1", alert_id, "ack")
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="f1's ack")
    time.sleep(QUIET)
    assert not mq.pages("ps1") and not mq.pages("ps2"), "f1 is coming"

    reply(mq, "pf1", alert_id, "decline", "车坏了")  # f1 cannot go after all: nobody is coming
    staff = mq.wait_for(lambda m: m["_pager"] in ("ps1", "ps2"), timeout=2, count=2)
    assert all(p["type"] == "page" and "NOBODY ELSE CAN COME" in p["text"] for p in staff)
    assert alert_row(gw, alert_id).state == "open"
    escalated = events(api, alert_id, "escalated")[-1]["detail"]
    assert escalated == {  # nobody on duty: every staff member
        "from": 1,
        "to": "all_staff",
        "reason": "all_declined",
        "declined": ["f2", "f1"],
    }
    # the staff have their pages, not a notice that it is open again
    assert not [n for n in mq.pages(type_="notice") if n["_pager"] in ("ps1", "ps2")]


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_decline_that_reaches_a_last_step_of_people_who_declined_pages_the_staff_at_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    # An explicit plan may name a person twice: f1 says no at step 1, and step 2 is f1 alone.
    seed_home(engine, steps=[(["w1", "f1"], 60), (["f1"], 120)], responders=PEOPLE)
    shift(api, clock, "s2")
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0, count=2)
    reply(mq, "pf1", page["alert_id"], "decline")
    [to_s2] = mq.wait_for(lambda m: m["_pager"] == "ps2", timeout=2)
    assert (to_s2["step"], to_s2["alert_id"]) == (2, page["alert_id"])
    assert [p["step"] for p in mq.pages("pf1")] == [1, 2], "step 2 as the plan says, too"
    [_, escalated] = events(api, page["alert_id"], "escalated")
    assert (escalated["detail"]["to"], escalated["detail"]["declined"]) == ("staff_on_duty", ["f1"])
    assert not mq.pages("ps1")


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_withdrawal_at_the_last_step_pages_not_the_withdrawer_but_the_staff_at_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 60), (["f1"], 120)], responders=PEOPLE)
    shift(api, clock, "s1")
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=1.0)
    alert_id = page["alert_id"]
    reply(mq, "pw1", alert_id, "decline")
    mq.wait_for(lambda m: m["_pager"] == "pf1", timeout=2)
    mq.reply("pf1", alert_id, "ack")
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="f1's ack")

    clock.advance(30)
    reply(mq, "pf1", alert_id, "decline", "车坏了")  # f1 withdraws: nobody is left at step 2
    [to_s1] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)
    assert "NOBODY ELSE CAN COME" in to_s1["text"]
    row = alert_row(gw, alert_id)
    assert (row.state, row.step) == ("open", 2)
    assert row.next_escalation_at == row.updated_at + 120_000, "the step's time-out runs again"
    assert ms(to_s1["reply_by"]) == row.next_escalation_at
    time.sleep(QUIET)
    assert len(mq.pages("pf1")) == 1, "who has just said no is not asked again"
    seq = [(e["type"], e["actor"]) for e in timeline(api, alert_id)]
    i = seq.index(("ack_withdrawn", "responder:f1"))
    assert seq[i:] == [
        ("ack_withdrawn", "responder:f1"),
        ("declined", "responder:f1"),
        ("notified", None),  # w1, paged at step 1, is told it is open again
        ("escalated", None),
        ("paged", None),
    ]
    escalated = events(api, alert_id, "escalated")[-1]["detail"]
    assert (escalated["reason"], escalated["declined"]) == ("all_declined", ["w1", "f1"])
    assert [e["detail"]["reason"] for e in events(api, alert_id, "escalated")] == [
        "declined",
        "all_declined",
    ]

    # Its time-out repeats the last step to everyone, the withdrawer too, as before.
    clock.advance(121)
    [again] = mq.wait_for(lambda m: m["_pager"] == "pf1" and m["type"] == "page", count=2)[1:]
    assert again["step"] == 2


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_withdrawal_at_the_last_step_pages_again_only_who_has_not_declined(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 60), (["f1", "f2", "v1"], 120)], responders=FAMILY2)
    shift(api, clock, "s1")
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=1.0)
    alert_id = page["alert_id"]
    reply(mq, "pw1", alert_id, "decline")
    mq.wait_for(lambda m: m["_pager"] in ("pf1", "pf2", "pv1"), timeout=2, count=3)
    reply(mq, "pv1", alert_id, "decline")
    mq.reply("pf1", alert_id, "ack")
    wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="f1's ack")

    reply(mq, "pf1", alert_id, "decline")  # f2 has not answered: asked again, alone
    [f2_again] = mq.wait_for(lambda m: m["_pager"] == "pf2" and m["type"] == "page", count=2)[1:]
    assert f2_again["step"] == 2
    wait_until(lambda: len(events(api, alert_id, "paged")) == 3, what="the repeat's paged")
    paged = events(api, alert_id, "paged")[-1]["detail"]
    assert (paged["reason"], paged["repeat"]) == ("ack_withdrawn", True)
    assert [p["responder_id"] for p in paged["to"]] == ["f2"]
    assert events(api, alert_id, "escalated")[-1]["detail"] == {
        "from": 2,
        "to": 2,
        "reason": "ack_withdrawn",
    }
    time.sleep(QUIET)
    assert [len(mq.pages(p)) for p in ("pf1", "pv1", "ps1")] == [1, 1, 0]

    reply(mq, "pf2", alert_id, "decline")  # and f2 neither: the staff on duty, at once
    mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)
    escalated = events(api, alert_id, "escalated")[-1]["detail"]
    assert escalated["reason"] == "all_declined"
    assert escalated["declined"] == ["w1", "v1", "f1", "f2"]


# --- a decline answers the step its person was asked at -----------------------------------------

LADDER = [(["w1"], 60), (["v1"], 60), (["s1"], 90), (["f1"], 120)]


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_double_tap_on_decline_pages_the_next_step_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=LADDER, responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=1.0)
    alert_id = page["alert_id"]
    reply(mq, "pw1", alert_id, "decline")
    reply(mq, "pw1", alert_id, "decline")  # the same "no" twice: it is no answer of step 2's
    [step2] = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=2)
    assert step2["step"] == 2
    wait_until(lambda: len(event_at(gw, alert_id, "declined")) == 2, what="both declines")
    time.sleep(QUIET)
    assert not mq.pages("ps1"), "v1 has the full step's time-out before the staff are paged"
    row = alert_row(gw, alert_id)
    assert (row.state, row.step) == ("open", 2)
    assert ms(step2["reply_by"]) == row.next_escalation_at
    assert [e["detail"] for e in events(api, alert_id, "escalated")] == [
        {"from": 1, "to": 2, "reason": "declined"}
    ]

    reply(mq, "pv1", alert_id, "decline")  # asked at step 2: the staff at once
    [step3] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)
    assert (step3["step"], step3["alert_id"]) == (3, alert_id)
    assert alert_row(gw, alert_id).step == 3
    time.sleep(QUIET)
    assert not mq.pages("pf1")


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_late_decline_from_a_step_the_alert_has_left_pages_nobody(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=LADDER, responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=1.0)
    alert_id = page["alert_id"]
    clock.advance(61)  # w1 did not answer: step 2 on its time-out
    mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=2)
    deadline = alert_row(gw, alert_id).next_escalation_at

    clock.advance(5)
    reply(mq, "pw1", alert_id, "decline", "刚看到")  # w1 answers step 1's page, too late
    wait_until(lambda: event_at(gw, alert_id, "declined"), what="w1's decline")
    time.sleep(QUIET)
    assert not mq.pages("ps1"), "step 2 keeps its time-out"
    row = alert_row(gw, alert_id)
    assert (row.state, row.step, row.next_escalation_at) == ("open", 2, deadline)
    [declined] = events(api, alert_id, "declined")
    assert (declined["actor"], declined["detail"]) == ("responder:w1", {"note": "刚看到"})

    clock.advance(5)
    reply(mq, "pv1", alert_id, "decline")  # asked at step 2: the staff at once
    [step3] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=2)
    assert step3["step"] == 3
    assert [
        (e["detail"]["from"], e["detail"]["reason"]) for e in events(api, alert_id, "escalated")
    ] == [
        (1, "timeout"),
        (2, "declined"),
    ]


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_apprise_link_after_the_pager_when_unanswered_and_not_when_answered(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock, hooks: Hooks
) -> None:
    seed_home(engine, steps=[], responders=[("w1", "watcher", "pw1", "zh-CN")])
    pair(api, "e1", "w1")
    url = hooks.url("sms-w1")
    chain = channels(api, "w1", [{"channel": "apprise", "address": url, "after_s": 60}])
    assert [(c["channel"], c["after_s"]) for c in chain["links"]] == [("pager", 0), ("apprise", 60)]
    assert "sms-w1" not in json.dumps(chain) and str(hooks.port) not in json.dumps(chain)

    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0)
    alert_id = page["alert_id"]
    clock.advance(59)
    time.sleep(QUIET)
    assert hooks.to("sms-w1") == [], "the SMS went before its delay"
    clock.advance(2)
    [sms] = hooks.wait("sms-w1", timeout=3)
    assert sms["title"] == "守望告警"
    assert "紧急呼叫" in sms["message"] and "老人1" in sms["message"]
    wait_until(lambda: events(api, alert_id, "delivery"), timeout=3, what="delivery recorded")
    [sent] = events(api, alert_id, "delivery")
    assert sent["detail"]["status"] == "sent" and sent["detail"]["channel"] == "apprise"
    assert sent["detail"]["link"] == 1 and sent["detail"]["address"].startswith("json://…#")
    whole = json.dumps(ok(api.get(f"/api/v1/alerts/{alert_id}")))
    whole += json.dumps(ok(api.get(f"/api/v1/alerts/{alert_id}/deliveries")))
    assert "sms-w1" not in whole and f":{hooks.port}" not in whole
    statuses = [(d.channel, d.link, d.status) for d in delivery_rows(gw, alert_id)]
    assert statuses == [("pager", 0, "sent"), ("apprise", 1, "sent")]
    clock.advance(61)  # the step repeats by pager; the chain has done its part
    mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=2, count=3)
    time.sleep(QUIET)
    assert len(hooks.to("sms-w1")) == 1

    # A second alarm, answered at once: its SMS never goes.
    mq.event("gas-1", "gas.alarm", gas="natural_gas", lel_pct=30.0)
    [gas] = mq.wait_for(lambda m: m["type"] == "page" and m["kind"] == "gas", timeout=2)
    mq.reply("pw1", gas["alert_id"], "ack")
    wait_until(lambda: alert_row(gw, gas["alert_id"]).state == "acknowledged", what="ack")
    clock.advance(120)
    time.sleep(QUIET)
    assert len(hooks.to("sms-w1")) == 1, "an SMS after the person had answered"
    assert [d.channel for d in delivery_rows(gw, gas["alert_id"])] == ["pager"]


def test_a_failing_apprise_url_is_retried_then_the_fallback_is_used(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock, hooks: Hooks
) -> None:
    # A family member without a pager: an SMS provider that fails, and a second provider.
    seed_home(engine, steps=[], responders=[("f1", "family", None, "zh-CN")])
    pair(api, "e1", "f1")
    channels(
        api,
        "f1",
        [
            {"channel": "apprise", "address": hooks.url("fail-sms"), "after_s": 0},
            {"channel": "apprise", "address": hooks.url("backup-sms"), "after_s": 600},
        ],
    )
    mq.event("cb-1", "button.pressed")
    hooks.wait("fail-sms", count=1, timeout=3)  # a page to someone without a pager: at once
    [alert] = ok(api.get("/api/v1/alerts"))

    def failed_tries() -> int:
        return sum(d.status == "failed" for d in delivery_rows(gw, alert["id"]))

    wait_until(lambda: failed_tries() == 1, timeout=3, what="first failure recorded")
    clock.advance(4)
    time.sleep(QUIET)
    assert len(hooks.to("fail-sms")) == 1, "retried before its back-off (5 s)"
    clock.advance(2)
    hooks.wait("fail-sms", count=2, timeout=3)
    wait_until(lambda: failed_tries() == 2, timeout=3, what="second failure recorded")
    clock.advance(16)  # back-off after the second failure: 15 s
    hooks.wait("fail-sms", count=3, timeout=3)
    # Three failures: the link is given up and the next one goes at once, not at its 600 s.
    [backup] = hooks.wait("backup-sms", timeout=3)
    assert "紧急呼叫" in backup["message"]
    assert len(hooks.to("fail-sms")) == 3
    wait_until(
        lambda: (
            [d.status for d in delivery_rows(gw, alert["id"])]
            == ["failed", "failed", "failed", "sent"]
        ),
        timeout=3,
        what="the deliveries recorded",
    )
    recorded = [e["detail"] for e in events(api, alert["id"], "delivery")]
    assert [(d["link"], d["try"], d["status"]) for d in recorded] == [
        (0, 1, "failed"),
        (0, 2, "failed"),
        (0, 3, "failed"),
        (1, 1, "sent"),
    ]
    assert recorded[2].get("gave_up") is True and "500" in recorded[0]["error"]
    [paged] = events(api, alert["id"], "paged")
    assert paged["detail"]["to"][0]["channel"] == "apprise"
    listed = ok(api.get(f"/api/v1/alerts/{alert['id']}/deliveries"))
    assert [d["status"] for d in listed] == ["failed", "failed", "failed", "sent"]
    assert "fail-sms" not in json.dumps(listed)


def test_apprise_notifier_on_a_closed_port_fails_without_telling_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with socket.socket() as sock:  # a port nobody listens on (bound, then closed)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"json://user:s3cr3t@127.0.0.1:{port}/hook"
    d = Delivery(
        1, "al_1", "pg_1", "w1", "apprise", url, mask_address("apprise", url), 1, 1, "t", "b"
    )
    started = time.monotonic()
    result = AppriseNotifier().send(d)
    assert time.monotonic() - started < 5
    assert result.status == DeliveryStatus.FAILED and result.error
    assert "s3cr3t" not in result.error and "hook" not in result.error
    unknown = AppriseNotifier().send(dataclasses.replace(d, address="nonsense://s3cr3t"))
    assert unknown.status == DeliveryStatus.FAILED and "s3cr3t" not in (unknown.error or "")


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_slow_provider_never_holds_up_pages_to_others(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, hooks: Hooks
) -> None:
    seed_home(
        engine,
        n=2,
        steps=[],
        responders=[("f1", "family", None, "zh-CN"), ("w2", "watcher", "pw2", "zh-CN")],
    )
    pair(api, "e1", "f1")
    pair(api, "e2", "w2")
    channels(api, "f1", [{"channel": "apprise", "address": hooks.url("slow-sms")}])
    mq.event("cb-1", "button.pressed")
    hooks.wait_started("slow-sms", timeout=3)
    sent = time.monotonic()
    mq.event("cb-2", "button.pressed")
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw2", timeout=1.0)
    assert page["_at"] - sent < 1.0
    assert hooks.to("slow-sms") == [], "the slow provider had already answered: no proof"


# --- the API --------------------------------------------------------------------------------------


def test_paging_api_checks_input_and_masks_secrets(
    engine: Any, gw: Any, api: httpx.Client, clock: FakeClock
) -> None:
    seed_home(engine, steps=[], responders=[*PEOPLE, ("n1", "watcher", None, "zh-CN")])
    # pairings
    p = pair(api, "e1", "w1", order=2)
    assert (p["role"], p["order"], p["active"], p["active_until"]) == ("watcher", 2, True, None)
    assert p["created_by"] == "api:admin" and p["active_from"].endswith("+08:00")
    assert api.post("/api/v1/elders/e1/pairings", json={"responder_id": "w1"}).status_code == 409
    assert api.post("/api/v1/elders/e404/pairings", json={"responder_id": "w1"}).status_code == 404
    bad = api.post("/api/v1/elders/e1/pairings", json={"responder_id": "nobody"})
    assert bad.status_code == 422 and "nobody" in bad.text
    for body in (
        {"responder_id": "v1", "extra": 1},
        {"responder_id": "v1", "role": "boss"},
        {"responder_id": "v1", "active_from": 1700000000},
        {"responder_id": "v1", "active_from": "2026-01-01T00:00:00"},  # no offset
        {"responder_id": "v1", "active_from": iso(clock()), "active_until": iso(clock() - 60)},
    ):
        resp = api.post("/api/v1/elders/e1/pairings", json=body)
        assert resp.status_code == 422 and "detail" in resp.json(), (body, resp.text)
    v = pair(api, "e1", "v1", role="watcher")
    assert v["role"] == "watcher"
    assert [x["responder_id"] for x in ok(api.get("/api/v1/elders/e1/pairings"))] == ["v1", "w1"]
    assert ok(api.delete(f"/api/v1/elders/e1/pairings/{p['id']}"), 204) is None
    assert api.delete(f"/api/v1/elders/e2/pairings/{v['id']}").status_code == 404
    assert api.delete("/api/v1/elders/e1/pairings/pr_nothing").status_code == 404
    ended = [x for x in ok(api.get("/api/v1/elders/e1/pairings")) if x["id"] == p["id"]]
    assert ended[0]["active"] is False and ended[0]["active_until"]
    assert [x["id"] for x in ok(api.get("/api/v1/elders/e1/pairings?active=true"))] == [v["id"]]
    pair(api, "e1", "w1")  # paired again after the end: no overlap

    # shifts
    s = shift(api, clock, "s1", ["station:幸福里站"])
    assert s["on_duty"] is True and s["role"] == "staff"
    now = clock()
    for body, code in (
        ({"responder_id": "s1", "start_at": iso(now), "end_at": iso(now + 60)}, 409),
        ({"responder_id": "w1", "start_at": iso(now), "end_at": iso(now + 60)}, 422),
        ({"responder_id": "s2", "start_at": iso(now), "end_at": iso(now)}, 422),
        ({"responder_id": "s2", "start_at": iso(now), "end_at": iso(now + 40 * 86400)}, 422),
        ({"responder_id": "ghost", "start_at": iso(now), "end_at": iso(now + 60)}, 422),
    ):
        resp = api.post("/api/v1/roster/shifts", json=body)
        assert resp.status_code == code, (body, resp.text)
    later = ok(
        api.post(
            "/api/v1/roster/shifts",
            json={"responder_id": "s2", "start_at": iso(now + 86400), "end_at": iso(now + 90000)},
        ),
        201,
    )
    assert [x["id"] for x in ok(api.get("/api/v1/roster/shifts"))] == [s["id"], later["id"]]
    only_now = ok(api.get("/api/v1/roster/shifts", params={"to": iso(now + 3600)}))
    assert [x["id"] for x in only_now] == [s["id"]]
    by_s2 = ok(api.get("/api/v1/roster/shifts", params={"responder_id": "s2"}))
    assert [x["id"] for x in by_s2] == [later["id"]]
    assert api.get("/api/v1/roster/shifts", params={"from": "yesterday"}).status_code == 422
    back = {"from": iso(now), "to": iso(now - 1)}
    assert api.get("/api/v1/roster/shifts", params=back).status_code == 422
    assert api.delete(f"/api/v1/roster/shifts/{later['id']}").status_code == 204
    assert api.delete(f"/api/v1/roster/shifts/{later['id']}").status_code == 404

    # channels: apprise URLs masked, never echoed
    secret = "json://user:s3cr3t-token@127.0.0.1:9/hook"
    out = channels(api, "w1", [{"channel": "pager"}, {"channel": "apprise", "address": secret}])
    assert (out["links"][0]["channel"], out["links"][0]["address"]) == ("pager", "pw1")
    assert "s3cr3t" not in json.dumps(out) and out["links"][1]["address"].startswith("json://…")
    assert "s3cr3t" not in api.get("/api/v1/responders/w1/channels").text
    for links in (
        [{"channel": "apprise", "address": "nonsense://s3cr3t"}],
        [{"channel": "apprise", "address": "json://s3cr3t host"}],
        [{"channel": "apprise"}],
        [{"channel": "apprise", "address": secret, "after_s": 60}, {"channel": "pager"}],
        [
            {"channel": "apprise", "address": secret, "after_s": 60},
            {"channel": "apprise", "address": secret, "after_s": 30},
        ],
        [{"channel": "pager", "address": "someone-else"}],
        [{"channel": "fax", "address": secret}],
    ):
        resp = api.put("/api/v1/responders/w1/channels", json={"links": links})
        assert resp.status_code == 422 and "detail" in resp.json(), (links, resp.text)
        assert "s3cr3t" not in resp.text, resp.text
    nopager = api.put("/api/v1/responders/n1/channels", json={"links": [{"channel": "pager"}]})
    assert nopager.status_code == 422
    assert api.put("/api/v1/responders/r404/channels", json={"links": []}).status_code == 404
    assert (
        ok(api.get("/api/v1/responders/w1/channels"))["links"][1]["address"]
        == (out["links"][1]["address"])
    )
    cleared = channels(api, "n1", [])
    assert cleared["links"] == []

    # tags
    tags = ok(api.put("/api/v1/elders/e1/tags", json={"tags": ["community:幸福里", "building:3"]}))
    assert tags == {"elder_id": "e1", "tags": ["community:幸福里", "building:3"]}
    assert ok(api.get("/api/v1/elders/e1/tags"))["tags"] == ["community:幸福里", "building:3"]
    assert api.put("/api/v1/elders/e1/tags", json={"tags": ["a\nb"]}).status_code == 422
    assert api.put("/api/v1/elders/nobody/tags", json={"tags": []}).status_code == 404
    assert api.get("/api/v1/alerts/al_none/deliveries").status_code == 404
    assert api.get("/api/v1/reports/alerts", params={"from": "2026-13-01"}).status_code == 422


# --- the measures report --------------------------------------------------------------------------


def test_alerts_report_counts_and_share_answered_within_60s(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)], responders=PEOPLE)
    ok(api.put("/api/v1/elders/e1/tags", json={"tags": ["station:幸福里站"]}))
    start = clock()

    def alarm(device: str, kind: str, **fields: Any) -> str:
        mq.event(device, fields.pop("type"), **fields)
        [page] = mq.wait_for(lambda m: m["type"] == "page" and m["kind"] == kind, timeout=2)
        return str(page["alert_id"])

    def answered(alert_id: str, after_s: float) -> None:
        clock.advance(after_s)
        mq.reply("pw1", alert_id, "ack")
        wait_until(lambda: alert_row(gw, alert_id).state == "acknowledged", what="ack")

    call = alarm("cb-1", "call_button", type="button.pressed")
    answered(call, 30)  # within 60 s
    gas = alarm("gas-1", "gas", type="gas.alarm", gas="lpg", lel_pct=40.0)
    answered(gas, 90)  # within 180 s, not within 60 s
    leak = alarm("water-1", "water_leak", type="water.leak")  # P2: not judged
    for alert_id, outcome in ((call, "real"), (gas, "false_alarm"), (leak, "false_alarm")):
        ok(api.post(f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": outcome}))

    period = {"from": iso(start - 60), "to": iso(clock() + 60)}
    r = ok(api.get("/api/v1/reports/alerts", params=period))
    assert r["total"] == 3 and r["unpaged"] == 0
    assert r["by_kind"] == {"call_button": 1, "gas": 1, "water_leak": 1}
    assert r["by_priority"] == {"P1": 2, "P2": 1}
    assert r["by_outcome"] == {"false_alarm": 2, "real": 1}
    assert r["false_alarm_rate"] == pytest.approx(2 / 3)
    within60, within180 = r["answered_within"]
    assert (within60["within_s"], within60["within"], within60["total"]) == (60, 1, 2)
    assert within60["share"] == 0.5 and within60["met"] is False
    assert (within180["within"], within180["total"], within180["met"]) == (2, 2, True)
    assert r["standards_met"] is False
    assert r["to_first_page"]["count"] == 3 and r["to_first_page"]["max_s"] < 2
    assert r["to_ack"]["count"] == 3  # the leak's first answer is its resolution
    assert 30 <= r["to_ack"]["p50_s"] < 180
    assert r["start"].endswith("+08:00")

    station = ok(api.get("/api/v1/reports/alerts", params={**period, "station": "幸福里站"}))
    assert station["total"] == 3 and station["station"] == "幸福里站"
    other = ok(api.get("/api/v1/reports/alerts", params={**period, "station": "别的站"}))
    assert other["total"] == 0 and other["answered_within"][0]["met"] is None
    before = ok(api.get("/api/v1/reports/alerts", params={"to": iso(start - 60)}))
    assert before["total"] == 0
    back = {"from": iso(start), "to": iso(start - 1)}
    assert api.get("/api/v1/reports/alerts", params=back).status_code == 422


# --- staff of the elder's station -----------------------------------------------------------------

HM, JT, HJL = "红庙站", "金台站", "呼家楼站"
# sa* are 红庙站's staff, sb* 金台站's (by their profiles); f1 family, x1 a watcher nobody reaches
STATION_PEOPLE = [
    ("sa1", "staff", "psa1", "zh-CN"),
    ("sa2", "staff", "psa2", "zh-CN"),
    ("sb1", "staff", "psb1", "zh-CN"),
    ("sb2", "staff", "psb2", "zh-CN"),
    ("f1", "family", "pf1", "zh-CN"),
    ("x1", "watcher", None, "zh-CN"),
]
STAFF_PAGERS = ("psa1", "psa2", "psb1", "psb2")


def stations(api: httpx.Client, elders: dict[str, str], people: dict[str, str]) -> None:
    """Each elder's care record and each person's profile, with their station."""
    for n, (elder, station) in enumerate(elders.items()):
        register(api, elder, ("王秀英", "周玉芬", "李桂兰")[n], station, f"60{n}")
    for pid, station in people.items():
        ok(api.put(f"/api/v1/care/people/{pid}/profile", json={"station": station}))


BY_STATION = {"sa1": HM, "sa2": HM, "sb1": JT, "sb2": JT}


def pagers_of(mq: Mqtt, alert_id: str) -> list[str]:
    return sorted(p["_pager"] for p in mq.pages() if p["alert_id"] == alert_id)


def pressed(mq: Mqtt, device: str, count: int) -> str:
    """Press `device`'s button; the alert's id once its first `count` pages are out."""
    seen = {p["alert_id"] for p in mq.pages()}
    mq.event(device, "button.pressed")
    pages = mq.wait_for(lambda m: m["type"] == "page" and m["alert_id"] not in seen, 1.0, count)
    alert_id: str = pages[0]["alert_id"]
    return alert_id


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_press_pages_the_staff_on_duty_of_the_elders_station_not_anothers(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, n=3, steps=[], responders=STATION_PEOPLE)
    stations(api, {"e1": HM, "e2": JT}, BY_STATION)  # e3: no station's
    shift(api, clock, "sb1")  # one of each station on duty, 金台站's first on the roster
    shift(api, clock, "sa1")

    e1 = pressed(mq, "cb-1", 1)
    e2 = pressed(mq, "cb-2", 1)
    e3 = pressed(mq, "cb-3", 2)
    time.sleep(QUIET)
    assert pagers_of(mq, e1) == ["psa1"], "红庙站's elder: its staff on duty, not 金台站's"
    assert pagers_of(mq, e2) == ["psb1"]
    assert pagers_of(mq, e3) == ["psa1", "psb1"], "an elder of no station: every station's"
    [planned] = events(api, e1, "planned")
    assert planned["detail"]["notes"] == []
    assert planned["detail"]["steps"] == [
        {"role": "staff", "responder_ids": ["sa1"], "ack_timeout_s": 90}
    ]
    # and 红庙站's staff member sees on the board what they were paged for
    now = int(clock() * 1000)
    desk = create_token(gw.engine, "desk-a", "staff", now_ms=now, person_id="sa1")
    ok(api.get(f"/api/v1/alerts/{e1}", headers={"Authorization": f"Bearer {desk}"}))


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_another_stations_staff_are_paged_only_when_the_elders_station_has_nobody(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, n=2, steps=[], responders=STATION_PEOPLE)
    stations(api, {"e1": HM, "e2": HJL}, BY_STATION)  # 呼家楼站 has no staff at all
    shift(api, clock, "sb1")  # nobody of 红庙站 on duty

    e1 = pressed(mq, "cb-1", 2)
    e2 = pressed(mq, "cb-2", 1)
    time.sleep(QUIET)
    assert pagers_of(mq, e1) == ["psa1", "psa2"], "its own staff off duty before another's"
    [planned] = events(api, e1, "planned")
    assert planned["detail"]["notes"] == ["staff_fallback"]
    # 呼家楼站 has nobody: 金台站's on duty rather than silence, and the plan says why
    assert pagers_of(mq, e2) == ["psb1"]
    [planned] = events(api, e2, "planned")
    assert planned["detail"]["notes"] == ["staff_other_stations"]
    assert planned["detail"]["steps"] == [
        {"role": "staff", "responder_ids": ["sb1"], "ack_timeout_s": 90, "other_stations": True}
    ]


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_when_everyone_declined_the_elders_station_is_paged_before_another(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["f1"], 120)], responders=STATION_PEOPLE)
    stations(api, {"e1": HM}, BY_STATION)
    shift(api, clock, "sb1")
    shift(api, clock, "sa1")
    alert_id = pressed(mq, "cb-1", 1)

    def declined_and_next(pager: str) -> tuple[list[str], dict[str, Any]]:
        before = len(events(api, alert_id, "escalated"))
        reply(mq, pager, alert_id, "decline")
        wait_until(lambda: len(events(api, alert_id, "escalated")) > before, what="the next")
        time.sleep(QUIET)
        return pagers_of(mq, alert_id), events(api, alert_id, "escalated")[-1]["detail"]

    paged, escalated = declined_and_next("pf1")
    assert paged == ["pf1", "psa1"], "红庙站's staff on duty, not 金台站's"
    assert escalated["to"] == "staff_on_duty" and "other_stations" not in escalated
    paged, escalated = declined_and_next("psa1")
    assert paged == ["pf1", "psa1", "psa2"], "红庙站's off duty before 金台站's on duty"
    assert escalated["to"] == "all_staff" and "other_stations" not in escalated
    paged, escalated = declined_and_next("psa2")
    assert paged == ["pf1", "psa1", "psa2", "psb1"], "nobody of 红庙站 left: 金台站's"
    assert (escalated["to"], escalated["other_stations"]) == ("staff_on_duty", True)


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_the_last_resort_pages_the_elders_stations_staff_then_anothers(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    # x1, the whole plan, cannot be reached; 呼家楼站's one staff member cannot be either
    people = [*STATION_PEOPLE, ("sc1", "staff", None, "zh-CN")]
    seed_home(engine, n=2, steps=[(["x1"], 60)], responders=people)
    stations(api, {"e1": HM, "e2": HJL}, {**BY_STATION, "sc1": HJL})

    e1 = pressed(mq, "cb-1", 2)
    time.sleep(QUIET)
    assert pagers_of(mq, e1) == ["psa1", "psa2"], "every staff member of 红庙站, not 金台站's"
    [unpaged] = events(api, e1, "unpaged")
    assert unpaged["detail"] == {"why": "nobody of the plan reachable"}

    e2 = pressed(mq, "cb-2", 4)
    time.sleep(QUIET)
    assert pagers_of(mq, e2) == sorted(STAFF_PAGERS), "nobody of 呼家楼站 reachable: the others"
    [unpaged] = events(api, e2, "unpaged")
    assert unpaged["detail"] == {"why": "nobody of the plan reachable", "other_stations": True}


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_reminders_go_to_the_staff_of_the_elders_station(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[], responders=STATION_PEOPLE)
    stations(api, {"e1": HM}, BY_STATION)
    shift(api, clock, "sb1")
    shift(api, clock, "sa1")
    alert_id = pressed(mq, "cb-1", 1)
    ok(api.post(f"/api/v1/alerts/{alert_id}/ack"))  # from the board: no one person to remind
    clock.advance(601)
    wait_until(lambda: events(api, alert_id, "reminded"), what="the reminder")
    time.sleep(QUIET)
    [reminded] = events(api, alert_id, "reminded")
    assert [p["responder_id"] for p in reminded["detail"]["to"]] == ["sa1"]
    assert "staff_other_stations" not in reminded["detail"]
    assert pagers_of(mq, alert_id) == ["psa1", "psa1"]
