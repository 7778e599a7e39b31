"""The station board's API (gateway/api_board.py) over real HTTP (uvicorn on 127.0.0.1), on a
running gateway with a private Mosquitto, on SQLite and PostgreSQL: the snapshot and its order,
the live stream (a press arrives as an `alert` event; Last-Event-ID replays; `resync`), assigning
a person (paged at once, and their pager's answer counts), the elder's card, the homes at a
glance with a building's power cut as one line, a station's staff seeing their station only,
and the other roles refused. Time moves with a FakeClock; every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from gateway import tables as T
from gateway.alerting import Tx
from gateway.api import create_app
from gateway.auth import create_token, revoke_token
from gateway.live import AUTH_RECHECK_S, LiveEvent, LiveFeed
from gateway.tables_board import alert_assignments
from gateway.tables_care import audit_log
from gateway.tables_services import svc_providers, svc_workers
from tests.integration.test_api import serving
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until
from tests.support.streams import shut

ADMIN = "admin-board-test-token"
CARE = "/api/v1/care"
MIN = 60


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gw(make_gateway: Callable[..., Any], clock: FakeClock) -> Any:
    return make_gateway(clock=clock, admin_token=ADMIN)


@pytest.fixture
def url(gw: Any) -> Iterator[str]:
    with serving(create_app(gw.runtime)) as base_url:
        yield base_url


@pytest.fixture
def api(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers=bearer(ADMIN), timeout=10.0) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(resp: httpx.Response, code: int = 200) -> Any:
    assert resp.status_code == code, resp.text
    return resp.json() if resp.content else None


def token(gw: Any, name: str, role: str, person_id: str | None = None) -> str:
    return create_token(gw.engine, name, role, now_ms=int(time.time() * 1000), person_id=person_id)


def open_alert(gw: Any, device: str, kind: str) -> Any:
    def find() -> Any:
        with gw.engine.connect() as c:
            return c.execute(
                select(T.alerts).where(T.alerts.c.device_id == device, T.alerts.c.kind == kind)
            ).first()

    return wait_until(find, timeout=5, what=f"{kind} alert of {device}")


def head_id(gw: Any) -> int:
    with gw.engine.connect() as c:
        return int(c.execute(select(func.coalesce(func.max(T.alert_events.c.id), 0))).scalar())


def timeline(gw: Any, alert_id: str) -> list[Any]:
    with gw.engine.connect() as c:
        return list(
            c.execute(
                select(T.alert_events)
                .where(T.alert_events.c.alert_id == alert_id)
                .order_by(T.alert_events.c.id)
            )
        )


class Sse:
    """A Server-Sent Events client on its own thread: every message, parsed, in order."""

    def __init__(self, url: str, path: str, headers: dict[str, str]) -> None:
        self.messages: list[dict[str, Any]] = []
        self.ended = False
        self.status: int | None = None
        self._cond = threading.Condition()
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=None))
        self._resp: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(path, headers), daemon=True)
        self._thread.start()
        wait_until(lambda: self.status is not None, timeout=5, what="the stream to open")

    def _run(self, path: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", path, headers=headers) as resp:
                self._resp = resp
                with self._cond:
                    self.status = resp.status_code
                    self._cond.notify_all()
                msg: dict[str, Any] = {}
                for line in resp.iter_lines():
                    if line == "":
                        if "event" in msg or "data" in msg:
                            msg["at"] = time.monotonic()
                            with self._cond:
                                self.messages.append(msg)
                                self._cond.notify_all()
                        msg = {}
                    elif line.startswith(":"):
                        continue  # a keep-alive comment
                    else:
                        field, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if field == "data":
                            msg["data"] = json.loads(value)
                        elif field in ("id", "event", "retry"):
                            msg[field] = value
        except Exception:  # closed by the test, or by the server
            pass
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def alerts(self) -> list[dict[str, Any]]:
        with self._cond:
            return [m for m in self.messages if m.get("event") == "alert"]

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    seen = [(m.get("event"), m.get("id")) for m in self.messages]
                    raise AssertionError(f"no such message within {timeout}s; got {seen}")
                self._cond.wait(left)

    def close(self) -> None:
        shut(self._resp)  # wakes the reading thread (closing alone would not)
        if self._resp is not None:
            self._resp.close()
        self._client.close()
        self._thread.join(5)


@pytest.fixture
def streams(url: str) -> Iterator[Callable[..., Sse]]:
    opened: list[Sse] = []

    def open_(path: str = "/api/v1/board/stream", who: str = ADMIN, **headers: str) -> Sse:
        s = Sse(url, path, {**bearer(who), **headers})
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


def is_alert(alert_id: str, **want: Any) -> Callable[[dict[str, Any]], bool]:
    def pred(m: dict[str, Any]) -> bool:
        if m.get("event") != "alert" or m["data"]["alert"]["id"] != alert_id:
            return False
        return all(m["data"]["alert"].get(k) == v for k, v in want.items())

    return pred


# --- the snapshot -------------------------------------------------------------------------------


def test_the_snapshot_lists_open_alerts_by_priority_then_age_with_their_paging(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, n=3)  # e1..e3; each plan: w1+w2, then v1, then s1
    empty = ok(api.get("/api/v1/board"))
    assert empty["alerts"] == [] and empty["more"] == 0 and empty["last_event_id"] == 0

    mq.event("gas-2", "battery.low", battery_pct=9)  # P3
    low = open_alert(gw, "gas-2", "low_battery")
    clock.advance(1)
    mq.event("cb-1", "button.pressed")  # P1
    first = open_alert(gw, "cb-1", "call_button")
    clock.advance(1)
    mq.event("water-3", "water.leak")  # P2
    leak = open_alert(gw, "water-3", "water_leak")
    clock.advance(1)
    mq.event("cb-3", "button.pressed")  # P1, younger than cb-1's
    second = open_alert(gw, "cb-3", "call_button")
    mq.wait_for(lambda m: m["type"] == "page" and m["alert_id"] == second.id, count=2)
    # one more, resolved: not on the board
    mq.event("cb-2", "button.pressed")
    done = open_alert(gw, "cb-2", "call_button")
    ok(api.post(f"/api/v1/alerts/{done.id}/resolve", json={"outcome": "test"}))

    def sent() -> bool:  # the publisher has handed the first press's pages to the broker
        snap = ok(api.get("/api/v1/board"))
        row = next(a for a in snap["alerts"] if a["id"] == first.id)
        return all(p["via"] and p["via"][0]["status"] == "sent" for p in row["paged"])

    wait_until(sent, timeout=5, what="pages marked sent")
    snap = ok(api.get("/api/v1/board"))
    assert [a["id"] for a in snap["alerts"]] == [first.id, second.id, leak.id, low.id]
    assert [a["priority"] for a in snap["alerts"]] == ["P1", "P1", "P2", "P3"]
    assert snap["last_event_id"] == head_id(gw)
    assert snap["station"] is None and snap["more"] == 0

    row = snap["alerts"][0]
    assert row["kind"] == "call_button" and row["state"] == "open"
    assert row["elder"] == {
        "id": "e1",
        "name": "老人1",
        "address": "幸福里1号楼",
        "phone": "13800000000",
    }
    assert row["device"]["id"] == "cb-1" and row["device"]["kind"] == "call_button"
    assert row["step"] == 1 and row["steps"] == 3 and row["next_escalation_at"] is not None
    assert [[p["name"] for p in s["responders"]] for s in row["plan"]] == [
        ["R-w1", "R-w2"],
        ["R-v1"],
        ["R-s1"],
    ]
    assert [(p["name"], p["step"], p["reason"]) for p in row["paged"]] == [
        ("R-w1", 1, "opened"),
        ("R-w2", 1, "opened"),
    ]
    assert row["paged"][0]["via"][0]["channel"] == "pager"
    assert row["paged_total"] == 2 and row["assigned"] is None
    assert row["last_event"]["type"] == "paged"

    # an escalation shows on the row: step 2, v1 paged, the next deadline moved on
    clock.advance(31)
    mq.wait_for(lambda m: m["_pager"] == "pv1" and m["alert_id"] == first.id, timeout=5)
    wait_until(
        lambda: ok(api.get("/api/v1/board"))["alerts"][0]["step"] == 2, what="step 2 on the board"
    )
    row = ok(api.get("/api/v1/board"))["alerts"][0]
    assert row["paged"][-1]["name"] == "R-v1" and row["paged"][-1]["reason"] == "timeout"
    # acknowledged by a pager: the responder's name is on the row
    mq.reply("pv1", first.id, "ack")
    wait_until(
        lambda: ok(api.get("/api/v1/board"))["alerts"][0]["state"] == "acknowledged",
        what="acknowledged on the board",
    )
    row = ok(api.get("/api/v1/board"))["alerts"][0]
    assert row["acknowledged_by"] == "responder:v1" and row["acknowledged_by_name"] == "R-v1"


# --- the stream ---------------------------------------------------------------------------------


def test_a_press_arrives_on_the_stream_and_so_does_its_acknowledgement(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, streams: Callable[..., Sse]
) -> None:
    seed_home(engine)
    since = ok(api.get("/api/v1/board"))["last_event_id"]
    s = streams(f"/api/v1/board/stream?since={since}")
    assert s.status == 200
    pressed = time.monotonic()
    mq.event("cb-1", "button.pressed")
    alert = open_alert(gw, "cb-1", "call_button")
    first = s.wait_for(is_alert(alert.id), timeout=5)
    assert first["at"] - pressed < 3.0, "the board hears of a press at once"
    assert first["data"]["alert"]["kind"] == "call_button"
    assert first["data"]["alert"]["priority"] == "P1"
    assert "opened" in [e["type"] for e in first["data"]["events"]]
    assert int(first["id"]) > since
    # the paging comes in the same message or right after it, and then, by itself, that the
    # pages went to the broker (which is no timeline event: the stream looks again)
    s.wait_for(lambda m: is_alert(alert.id)(m) and len(m["data"]["alert"]["paged"]) == 2)
    s.wait_for(
        lambda m: (
            is_alert(alert.id)(m)
            and len(m["data"]["alert"]["paged"]) == 2
            and all(p["via"][0]["status"] == "sent" for p in m["data"]["alert"]["paged"])
        )
    )

    ok(api.post(f"/api/v1/alerts/{alert.id}/ack", json={"note": "我去"}))
    acked = s.wait_for(is_alert(alert.id, state="acknowledged"))
    assert acked["data"]["alert"]["acknowledged_by"] == "api:admin"
    assert acked["data"]["alert"]["acknowledged_by_name"] == "admin"
    assert "acknowledged" in [e["type"] for e in acked["data"]["events"]]
    # a message about new events carries the id; a look again (when a page had not yet gone
    # to the broker) carries none and no events, so the browser's Last-Event-ID stays
    assert all(bool(m["data"]["events"]) == ("id" in m) for m in s.alerts())
    ids = [int(m["id"]) for m in s.alerts() if "id" in m]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "ids only grow"
    assert ids[-1] <= head_id(gw)

    ok(api.post(f"/api/v1/alerts/{alert.id}/resolve", json={"outcome": "real", "note": "ok"}))
    gone = s.wait_for(is_alert(alert.id, state="resolved"))
    assert gone["data"]["alert"]["outcome"] == "real"


def test_last_event_id_replays_what_the_page_missed(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, streams: Callable[..., Sse]
) -> None:
    seed_home(engine)
    since = ok(api.get("/api/v1/board"))["last_event_id"]
    mq.event("cb-1", "button.pressed")
    alert = open_alert(gw, "cb-1", "call_button")
    ok(api.post(f"/api/v1/alerts/{alert.id}/ack"))
    head = head_id(gw)
    assert head > since

    # the browser reconnects with the id it saw last: what came after is sent at once
    s = streams(**{"Last-Event-ID": str(since)})
    m = s.wait_for(is_alert(alert.id, state="acknowledged"))
    assert int(m["id"]) == head
    types = [e["type"] for msg in s.alerts() for e in msg["data"]["events"]]
    assert types[0] == "opened" and "acknowledged" in types
    # Last-Event-ID wins over ?since= (the page's first subscription)
    s2 = streams(f"/api/v1/board/stream?since={since}", **{"Last-Event-ID": str(head)})
    ok(api.post(f"/api/v1/alerts/{alert.id}/arrive"))
    m2 = s2.wait_for(is_alert(alert.id, state="on_site"))
    assert all(int(x["id"]) > head for x in s2.alerts() if "id" in x), "nothing before it"
    assert m2["data"]["events"][0]["type"] == "on_site"


def test_a_page_handed_to_the_broker_later_shows_without_a_new_event(
    engine: Any, gw: Any, api: httpx.Client, streams: Callable[..., Sse]
) -> None:
    """A pager's page is sent by the outbox publisher, which writes no timeline event: the
    stream looks at a row with a page still queued again by itself (and says no new id)."""
    seed_home(engine)
    now = int(time.time() * 1000)
    with engine.begin() as c:
        c.execute(
            insert(T.alerts).values(
                id="al_q",
                elder_id="e1",
                device_id="cb-1",
                kind="call_button",
                priority="P1",
                state="open",
                created_at=now,
                updated_at=now,
                plan=[{"responder_ids": ["w1"], "ack_timeout_s": 3600}],
                step=1,
            )
        )
        c.execute(
            insert(T.pages).values(
                id="pg_q",
                alert_id="al_q",
                responder_id="w1",
                pager_id="pw1",
                type="page",
                step=1,
                created_at=now,
                reply_by=now + 3_600_000,
            )
        )
        c.execute(
            insert(T.outbox).values(
                topic="x/v1/pagers/pw1/pages",
                payload="{}",
                qos=1,
                alert_id="al_q",
                page_id="pg_q",
                created_at=now + 3_600_000,  # young: the publisher's resend leaves it alone
            )
        )
    s = streams(**{"Last-Event-ID": str(head_id(gw))})
    to = [{"responder_id": "w1", "name": "R-w1", "page_id": "pg_q", "channel": "pager"}]
    with engine.begin() as c:
        c.execute(
            insert(T.alert_events).values(
                alert_id="al_q",
                at=now,
                type="paged",
                actor=None,
                detail={"step": 1, "reason": "opened", "to": to},
            )
        )
    queued = s.wait_for(is_alert("al_q"))
    assert queued["data"]["alert"]["paged"][0]["via"][0]["status"] == "queued"
    with engine.begin() as c:
        c.execute(T.outbox.update().where(T.outbox.c.page_id == "pg_q").values(sent_at=now + 5))
    sent = s.wait_for(
        lambda m: (
            is_alert("al_q")(m) and m["data"]["alert"]["paged"][0]["via"][0]["status"] == "sent"
        )
    )
    assert "id" not in sent and sent["data"]["events"] == []


def test_a_page_too_far_behind_is_told_to_resync(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, streams: Callable[..., Sse]
) -> None:
    seed_home(engine)
    mq.event("cb-1", "button.pressed")
    alert = open_alert(gw, "cb-1", "call_button")
    now = int(time.time() * 1000)
    with engine.begin() as c:  # more events than a reconnect replays (live.REPLAY_MAX)
        c.execute(
            insert(T.alert_events),
            [{"alert_id": alert.id, "at": now, "type": "note", "actor": None, "detail": None}]
            * 1001,
        )
    s = streams(**{"Last-Event-ID": "1"})
    m = s.wait_for(lambda m: m.get("event") == "resync")
    assert m["data"] == {}
    wait_until(lambda: s.ended, timeout=5, what="the stream to end after resync")


# --- assigning ----------------------------------------------------------------------------------


def test_assign_pages_the_person_who_may_then_answer_from_their_pager(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, streams: Callable[..., Sse]
) -> None:
    seed_home(engine)
    mq.event("cb-1", "button.pressed")
    alert = open_alert(gw, "cb-1", "call_button")
    s = streams(**{"Last-Event-ID": str(head_id(gw))})

    row = ok(
        api.post(f"/api/v1/alerts/{alert.id}/assign", json={"responder_id": "v1", "note": "最近"})
    )
    assert row["assigned"]["responder_id"] == "v1" and row["assigned"]["name"] == "R-v1"
    assert row["assigned"]["note"] == "最近" and row["assigned"]["by"] == "api:admin"
    assert row["state"] == "open" and row["step"] == 1, "assigning changes no state or step"
    [page] = mq.wait_for(lambda m: m["_pager"] == "pv1" and m["alert_id"] == alert.id)
    assert page["type"] == "page" and page["kind"] == "call_button"
    assert row["paged"][-1]["name"] == "R-v1" and row["paged"][-1]["reason"] == "assigned"
    types = [e.type for e in timeline(gw, alert.id)]
    assert types[-2:] == ["assigned", "paged"]
    pushed = s.wait_for(lambda m: is_alert(alert.id)(m) and m["data"]["alert"]["assigned"])
    assert "assigned" in [e["type"] for e in pushed["data"]["events"]]

    # someone else: replaces the assignee (one row), the history stays on the timeline
    row = ok(api.post(f"/api/v1/alerts/{alert.id}/assign", json={"responder_id": "s1"}))
    assert row["assigned"]["responder_id"] == "s1" and row["assigned"]["note"] is None
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(alert_assignments)).scalar() == 1
    assert [e.type for e in timeline(gw, alert.id)].count("assigned") == 2

    # the assignee's pager answer counts, as any paged person's
    mq.reply("pv1", alert.id, "ack")
    wait_until(
        lambda: ok(api.get(f"/api/v1/alerts/{alert.id}"))["state"] == "acknowledged",
        what="acknowledged from the assignee's pager",
    )

    # bad input: a clear 4xx and nothing changed
    before = len(timeline(gw, alert.id))
    for body, code in (
        ({"responder_id": "nobody"}, 422),
        ({"responder_id": "v1", "extra": 1}, 422),
        ({"responder_id": "a b"}, 422),
        ({}, 422),
        ({"responder_id": "v1", "note": "x" * 1001}, 422),
    ):
        r = api.post(f"/api/v1/alerts/{alert.id}/assign", json=body)
        assert r.status_code == code, (body, r.text)
    assert api.post("/api/v1/alerts/al_none/assign", json={"responder_id": "v1"}).status_code == 404
    assert api.post("/api/v1/alerts/%00/assign", json={"responder_id": "v1"}).status_code == 404
    assert len(timeline(gw, alert.id)) == before
    ok(api.post(f"/api/v1/alerts/{alert.id}/resolve", json={"outcome": "real"}))
    before = len(timeline(gw, alert.id))
    r = api.post(f"/api/v1/alerts/{alert.id}/assign", json={"responder_id": "v1"})
    assert r.status_code == 409 and "resolved" in r.json()["detail"]
    assert len(timeline(gw, alert.id)) == before
    with engine.connect() as c:
        [(who,)] = c.execute(select(alert_assignments.c.responder_id)).all()
    assert who == "s1"


def test_an_assignee_may_decline_an_alert_paged_to_nobody_and_it_is_flagged(
    engine: Any,
    gw: Any,
    url: str,
    api: httpx.Client,
    mq: Mqtt,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No plan and no staff: the alert is opened paged to nobody, with an empty plan. The people
    the station assigns then decline it, by pager and by phone: each decline is on the timeline
    (not quarantined, not a 500) and, as it leaves nobody to page, `escalation_skipped` and an
    ERROR line say so; their later answers still count, up to resolving it."""
    caplog.set_level(logging.INFO, logger="gateway.alerts")
    seed_home(
        engine,
        steps=[],
        responders=[("v1", "volunteer", "pv1", "zh-CN"), ("v2", "volunteer", "pv2", "zh-CN")],
    )
    mq.event("cb-1", "button.pressed")
    alert = open_alert(gw, "cb-1", "call_button")
    assert alert.plan == [] and alert.step == 0 and alert.next_escalation_at is None
    assert "unpaged" in [e.type for e in timeline(gw, alert.id)]

    def declined_by(who: str) -> bool:
        return any(e.type == "declined" and e.actor == who for e in timeline(gw, alert.id))

    def logged(line: str) -> bool:
        return any(r.getMessage() == line and r.levelno == logging.ERROR for r in caplog.records)

    def state() -> str:
        return str(ok(api.get(f"/api/v1/alerts/{alert.id}"))["state"])

    # by pager
    ok(api.post(f"/api/v1/alerts/{alert.id}/assign", json={"responder_id": "v1"}))
    mq.wait_for(lambda m: m["_pager"] == "pv1" and m["alert_id"] == alert.id)
    mq.reply("pv1", alert.id, "decline")
    wait_until(lambda: declined_by("responder:v1"), what="the pager's decline")
    *_, declined, skipped = timeline(gw, alert.id)
    assert (declined.type, declined.actor) == ("declined", "responder:v1")
    assert skipped.type == "escalation_skipped" and skipped.actor is None
    assert skipped.detail["reason"] == "declined" and "nobody" in skipped.detail["why"]
    assert state() == "open"
    wait_until(
        lambda: logged(f"alert unpaged id={alert.id} by=responder:v1 why=declined fallback=none"),
        what="the ERROR line of the decline",
    )

    # by phone: a decline, an ack, then the ack withdrawn (open again, paged to nobody)
    ok(api.post(f"/api/v1/alerts/{alert.id}/assign", json={"responder_id": "v2"}))
    phone = bearer(token(gw, "t-v2", "volunteer", "v2"))
    with httpx.Client(base_url=url, headers=phone, timeout=10.0) as v2:
        for action, changed in (("decline", False), ("ack", True), ("decline", True)):
            out = ok(v2.post("/api/v1/me/replies", json={"alert_id": alert.id, "action": action}))
            assert out["changed"] is changed, (action, out)
    assert state() == "open"
    skips = [e.detail for e in timeline(gw, alert.id) if e.type == "escalation_skipped"]
    assert [(s["reason"], s["by"]) for s in skips] == [
        ("declined", "responder:v1"),
        ("declined", "responder:v2"),
        ("ack_withdrawn", "responder:v2"),
    ]
    assert logged(f"alert unpaged id={alert.id} by=responder:v2 why=ack_withdrawn fallback=none")

    # the first assignee still may take it, from their pager, and resolve it
    mq.reply("pv1", alert.id, "ack")
    wait_until(lambda: state() == "acknowledged", what="acknowledged from the pager")
    mq.reply("pv1", alert.id, "resolved")
    wait_until(lambda: state() == "resolved", what="resolved from the pager")
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(T.quarantine)).scalar() == 0


def test_advancing_an_alert_paged_to_nobody_pages_nobody(engine: Any, gw: Any, mq: Mqtt) -> None:
    """The step after (a time-out, a decline, an ack withdrawn) of an alert with an empty plan:
    there is none, so nothing is paged and nothing raises; the callers flag it."""
    seed_home(engine, steps=[], responders=[("v1", "volunteer", "pv1", "zh-CN")])
    mq.event("cb-1", "button.pressed")
    alert = open_alert(gw, "cb-1", "call_button")
    assert alert.plan == []
    before = timeline(gw, alert.id)
    service = gw.runtime.service
    with engine.begin() as c:
        tx = Tx(c, gw.runtime.now_ms())
        service._advance(tx, service.load(c, alert.id), "timeout")
    assert tx.out == [] and tx.events == [] and tx.escalations == 0
    assert timeline(gw, alert.id) == before


# --- the elder's card ---------------------------------------------------------------------------


def test_the_elder_card_has_contacts_key_holders_conditions_and_the_paired(
    engine: Any, gw: Any, api: httpx.Client
) -> None:
    seed_home(engine)
    record = {
        "elder_id": "e1",
        "name": "王秀英",
        "gender": "female",
        "birth_date": "1946-03-08",
        "phone": "138 1234 5678",
        "address": {
            "district": "朝阳区",
            "subdistrict": "八里庄街道",
            "community": "红庙社区",
            "building": "3",
            "unit": "2",
            "room": "501",
        },
        "living_situation": "lives_alone",
        "self_care": "partly_dependent",
        "emergency_contacts": [
            {"name": "李明", "relation": "child", "phone": "13900000001", "holds_key": True},
            {"name": "赵大妈", "relation": "neighbour", "phone": "13900000002"},
        ],
        "conditions": ["高血压", "糖尿病"],
        "allergies": ["青霉素"],
        "doctor": {"name": "刘医生", "clinic": "红庙社区卫生服务中心"},
        "station": "红庙站",
    }
    ok(api.post(f"{CARE}/elders", json=record), 201)
    ok(api.post(f"{CARE}/elders/e1/pairings", json={"person_id": "w1", "kind": "watcher"}), 201)
    card = ok(api.get("/api/v1/board/elders/e1/card"))
    assert card["name"] == "王秀英" and card["registered"] is True
    assert card["phone"] == "13812345678" and "501" in card["address"]
    assert card["station"] == "红庙站" and card["age"] >= 80
    assert card["conditions"] == ["高血压", "糖尿病"] and card["allergies"] == ["青霉素"]
    assert card["living_situation"]["zh"] and card["living_situation"]["value"] == "lives_alone"
    assert [c["name"] for c in card["emergency_contacts"]] == ["李明", "赵大妈"]
    assert card["emergency_contacts"][0]["relation"]["value"] == "child"
    assert [c["name"] for c in card["key_holders"]] == ["李明"]
    assert card["doctor"]["name"] == "刘医生"
    assert [(p["name"], p["kind"], p["phone"]) for p in card["paired"]] == [
        ("R-w1", "watcher", "13900000000")
    ]
    assert sorted(d["id"] for d in card["devices"]) == ["cb-1", "gas-1", "water-1"]
    with engine.connect() as c:
        reads = c.execute(
            select(audit_log.c.actor, audit_log.c.elder_id).where(
                audit_log.c.resource == "board_card"
            )
        ).all()
    assert [tuple(r) for r in reads] == [("api:admin", "e1")], "every read of a card is audited"

    # an elder with no care record yet: the alarm path's name, address and phone
    with engine.begin() as c:
        c.execute(
            insert(T.elders).values(
                id="e9", name="新老人", address="幸福里9号楼", phone=None, created_at=1
            )
        )
    bare = ok(api.get("/api/v1/board/elders/e9/card"))
    assert bare["registered"] is False and bare["address"] == "幸福里9号楼"
    assert bare["emergency_contacts"] == [] and bare["status"] is None
    for missing in ("nobody", "%00", "x" * 65):
        assert api.get(f"/api/v1/board/elders/{missing}/card").status_code == 404


# --- homes at a glance --------------------------------------------------------------------------


def test_homes_group_devices_by_building_and_a_power_cut_is_one_line(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, n=4)  # 12 devices; e4's stay outside any building
    building = "幸福里3号楼"
    devs = [f"{p}-{i}" for i in range(1, 4) for p in ("cb", "gas", "water")]
    for d in devs:
        ok(api.patch(f"/api/v1/devices/{d}", json={"building": building}))
    homes = ok(api.get("/api/v1/board/homes"))
    assert [b["building"] for b in homes["buildings"]] == [building, None]
    assert homes["buildings"][0]["counts"]["unknown"] == 9, "never heard"
    for d in devs:
        mq.status(d, online=True)
    # e4's call button reports a flat battery (its hourly heartbeat: still fine after the cut)
    status = json.dumps({"online": True, "battery_pct": 8}).encode()
    mq.raw(f"{mq.base}/v1/devices/cb-4/status", status, retain=True)

    def health(d: str) -> str:
        for b in ok(api.get("/api/v1/board/homes"))["buildings"]:
            for dev in b["devices"]:
                if dev["id"] == d:
                    return str(dev["health"])
        raise AssertionError(d)

    wait_until(lambda: health("cb-4") == "low_battery", what="a low battery")
    wait_until(lambda: health("cb-1") == "ok", what="online")
    for d in devs:
        mq.status(d, online=False)  # the power goes: every Last Will at once
    wait_until(
        lambda: all(health(d) == "offline" for d in devs), timeout=10, what="all offline"
    )  # every Last Will taken at its time, before the clock moves on
    clock.advance(21 * MIN)
    incident = wait_until(
        lambda: ok(api.get("/api/v1/incidents", params={"open": "true"})),
        timeout=10,
        what="the outage incident",
    )[0]
    homes = ok(api.get("/api/v1/board/homes"))
    b3, rest = homes["buildings"]
    assert b3["building"] == building and rest["building"] is None
    assert len(b3["incidents"]) == 1, "a power cut is ONE line"
    line = b3["incidents"][0]
    assert line["id"] == incident["id"] and line["devices"] == 9
    assert line["alert_id"] == incident["alert_id"] and line["alert_state"] == "open"
    assert sorted(line["device_ids"]) == sorted(devs)
    assert all(d["incident_id"] == incident["id"] for d in b3["devices"])
    assert b3["counts"] == {"total": 9, "ok": 0, "offline": 9, "low_battery": 0, "unknown": 0}
    assert rest["incidents"] == [] and {d["elder"]["id"] for d in rest["devices"]} == {"e4"}
    assert {d["id"]: d["health"] for d in rest["devices"]}["cb-4"] == "low_battery"
    on_devices = {a["id"] for d in b3["devices"] for a in d["alerts"]}
    assert on_devices == {incident["alert_id"]}, "the outage's one alert, no alert per device"
    # on the board, the incident's one alert says what it stands for
    snap = ok(api.get("/api/v1/board"))
    [row] = [a for a in snap["alerts"] if a["kind"] == "device_offline"]
    assert row["incident"]["building"] == building and row["incident"]["devices"] == 9


# --- who may see what ---------------------------------------------------------------------------


def test_a_stations_staff_see_their_station_and_unplaced_elders_only(
    engine: Any, gw: Any, url: str, api: httpx.Client, mq: Mqtt, streams: Callable[..., Sse]
) -> None:
    seed_home(engine, n=3)  # e3 is in no station's registry yet: on every station's board
    for eid, name, station, room in (
        ("e1", "王秀英", "红庙站", "501"),
        ("e2", "周玉芬", "金台站", "502"),
    ):
        body = {
            "elder_id": eid,
            "name": name,
            "gender": "female",
            "birth_date": "1940-01-01",
            "address": {
                "district": "朝阳区",
                "subdistrict": "八里庄街道",
                "community": "红庙社区",
                "room": room,
            },
            "living_situation": "lives_alone",
            "self_care": "independent",
            "station": station,
        }
        ok(api.post(f"{CARE}/elders", json=body), 201)
    staff = ok(api.post("/api/v1/responders", json={"name": "站员甲", "role": "staff"}), 201)
    ok(api.put(f"{CARE}/people/{staff['id']}/profile", json={"station": "红庙站"}))
    mine = token(gw, "desk-a", "staff", staff["id"])
    every = token(gw, "desk", "staff")  # acts for nobody: every station
    since = head_id(gw)
    s_mine = streams(f"/api/v1/board/stream?since={since}", who=mine)
    s_every = streams(f"/api/v1/board/stream?since={since}", who=every)

    mq.event("cb-2", "button.pressed")  # 金台站
    other = open_alert(gw, "cb-2", "call_button")
    mq.event("cb-1", "button.pressed")  # 红庙站
    ours = open_alert(gw, "cb-1", "call_button")
    mq.event("cb-3", "button.pressed")  # no station yet
    unplaced = open_alert(gw, "cb-3", "call_button")
    s_mine.wait_for(is_alert(ours.id))
    s_mine.wait_for(is_alert(unplaced.id))
    s_every.wait_for(is_alert(ours.id))
    s_every.wait_for(is_alert(other.id))
    assert other.id not in {m["data"]["alert"]["id"] for m in s_mine.alerts()}

    with httpx.Client(base_url=url, headers=bearer(mine), timeout=10.0) as desk:
        snap = ok(desk.get("/api/v1/board"))
        assert {a["id"] for a in snap["alerts"]} == {ours.id, unplaced.id}
        assert snap["station"] == "红庙站"
        assert desk.get("/api/v1/board/elders/e2/card").status_code == 404
        assert desk.get("/api/v1/board/elders/e1/card").status_code == 200
        assert desk.get("/api/v1/board/elders/e3/card").status_code == 200
        r = desk.post(f"/api/v1/alerts/{other.id}/assign", json={"responder_id": "v1"})
        assert r.status_code == 404
        ok(desk.post(f"/api/v1/alerts/{ours.id}/assign", json={"responder_id": "v1"}))
        homes = ok(desk.get("/api/v1/board/homes"))
        seen = {d["elder"]["id"] for b in homes["buildings"] for d in b["devices"]}
        assert seen == {"e1", "e3"}
    with httpx.Client(base_url=url, headers=bearer(every), timeout=10.0) as desk:
        snap = ok(desk.get("/api/v1/board"))
        assert {a["id"] for a in snap["alerts"]} == {ours.id, other.id, unplaced.id}
        assert snap["station"] is None


def test_only_admin_and_staff_use_the_board(
    engine: Any, gw: Any, url: str, mq: Mqtt, streams: Callable[..., Sse]
) -> None:
    seed_home(engine)
    mq.event("cb-1", "button.pressed")
    alert = open_alert(gw, "cb-1", "call_button")
    with engine.begin() as c:
        c.execute(
            insert(T.responders).values(
                id="f1", name="家属", role="family", language="zh-CN", created_at=1
            )
        )
        c.execute(
            insert(svc_providers).values(
                id="pv_1", name="家政公司", kind="company", created_at=1, updated_at=1
            )
        )
        c.execute(
            insert(svc_workers).values(id="sw_1", provider_id="pv_1", name="赵阿姨", created_at=1)
        )
    tokens = {
        "watcher": token(gw, "w", "watcher", "w1"),
        "volunteer": token(gw, "v", "volunteer", "v1"),
        "family": token(gw, "f", "family", "f1"),
        "service_worker": token(gw, "sw", "service_worker", "sw_1"),
    }
    routes = [
        ("GET", "/api/v1/board", None),
        ("GET", "/api/v1/board/stream", None),
        ("GET", "/api/v1/board/homes", None),
        ("GET", "/api/v1/board/elders/e1/card", None),
        ("POST", f"/api/v1/alerts/{alert.id}/assign", {"responder_id": "v1"}),
    ]
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for method, path, body in routes:
            r = http.request(method, path, json=body)
            assert r.status_code == 401, (method, path)
            r = http.request(method, path, json=body, headers=bearer("not-a-token"))
            assert r.status_code == 401, (method, path)
            for role, tok in tokens.items():
                r = http.request(method, path, json=body, headers=bearer(tok))
                assert r.status_code == 403, (role, method, path, r.text)
        staff = token(gw, "desk", "staff")
        for method, path, body in routes:
            if path.endswith("/stream"):
                s = streams(who=staff)
                assert s.status == 200
                continue
            r = http.request(method, path, json=body, headers=bearer(staff))
            assert r.status_code == 200, (method, path, r.text)
    assert len([e for e in timeline(gw, alert.id) if e.type == "assigned"]) == 1


# --- the live feed: an event committed after a later one ------------------------------------------


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_an_event_committed_after_a_later_one_still_reaches_the_stream(engine: Any) -> None:
    """PostgreSQL draws ids at insert: the transaction that drew the smaller one may commit
    last (an acknowledgement from the API while the worker pages). The feed still hands it on.
    (SQLite writers take turns, so ids there are committed in order.)"""
    seed_home(engine)
    now = int(time.time() * 1000)
    with engine.begin() as c:
        c.execute(
            insert(T.alerts).values(
                id="al_1",
                elder_id="e1",
                device_id="cb-1",
                kind="call_button",
                priority="P1",
                state="open",
                created_at=now,
                updated_at=now,
                plan=[],
            )
        )

    def event(type_: str) -> dict[str, Any]:
        return {"alert_id": "al_1", "at": now, "type": type_, "actor": None, "detail": None}

    async def run() -> list[tuple[str, bool]]:
        feed = LiveFeed(engine, poll_s=0.05)
        got: list[tuple[str, bool]] = []
        events = feed.events()

        async def take(n: int) -> None:
            async for ev in events:
                assert isinstance(ev, LiveEvent)
                got.append((ev.type, ev.late))
                if len(got) == n:
                    return

        first = asyncio.ensure_future(take(1))
        await asyncio.sleep(0.3)  # subscribed: the feed tails from here
        slow = engine.connect()
        slow_tx = slow.begin()
        slow.execute(insert(T.alert_events).values(**event("acknowledged")))  # the smaller id
        with engine.begin() as c:
            c.execute(insert(T.alert_events).values(**event("paged")))  # committed first
        await asyncio.wait_for(first, 5)
        second = asyncio.ensure_future(take(2))
        await asyncio.sleep(0.3)  # the feed has passed the smaller id by now
        slow_tx.commit()
        slow.close()
        await asyncio.wait_for(second, 5)
        await events.aclose()
        return got

    assert asyncio.run(run()) == [("paged", False), ("acknowledged", True)]


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_a_board_stream_ends_within_seconds_of_its_token_being_revoked(
    gw: Any, streams: Callable[..., Sse]
) -> None:
    s = streams(who=token(gw, "board-duty", "staff"))
    assert s.status == 200
    cut = time.monotonic()
    assert revoke_token(gw.engine, "board-duty") == 1
    # Within seconds, not when the stream's five minutes are up.
    wait_until(lambda: s.ended, timeout=AUTH_RECHECK_S + 3, what="the stream to end")
    assert time.monotonic() - cut < AUTH_RECHECK_S + 3
