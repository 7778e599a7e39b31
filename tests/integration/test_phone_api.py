"""The phone page's API over real HTTP, on SQLite and PostgreSQL with a real Mosquitto: a press
pages the watcher, their pages, a reply from the phone that counts exactly as a pager's (the
same timeline), a decline that pages the next step, a late answer, what another person sees
(nothing), the live stream, the `web` notifier channel decided by presence, and the pager path
unchanged beside it. Time moves with a FakeClock where the channel chains need it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from alerts.policy import DeliveryStatus
from gateway import live as live_mod
from gateway import phone
from gateway import tables as T
from gateway.accounts import SESSION_COOKIE, create_session, create_user
from gateway.api import create_app
from gateway.api_me import QUIET_EVENTS, _Presence
from gateway.auth import create_token, revoke_token
from gateway.notify import Delivery
from gateway.tables_phone import phone_presence
from tests.integration.test_api import serving
from tests.integration.test_paging import Hooks
from tests.integration.test_rules import closes_its_own_valve
from tests.integration.test_rules import event as gas_event
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until
from tests.support.streams import shut

ADMIN = "admin-phone-test-token"
QUIET = 0.6  # scheduler polls enough for something that should not happen to show up
PEOPLE = [
    ("w1", "watcher", "pw1", "zh-CN"),
    ("w2", "watcher", None, "zh-CN"),  # no pager: reached by the phone page, then SMS
    ("v1", "volunteer", "pv1", "zh-CN"),
    ("s1", "staff", "ps1", "en"),
    ("f1", "family", None, "zh-CN"),
]


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def start(
    make_gateway: Callable[..., Any], clock: FakeClock, engine: Any
) -> Iterator[Callable[..., tuple[Any, str]]]:
    """start(**settings) -> (gateway, base URL of its HTTP app), with the community seeded."""
    with_http: list[Any] = []

    def make(**overrides: Any) -> tuple[Any, str]:
        gw = make_gateway(clock=clock, admin_token=ADMIN, **overrides)
        seed_home(
            engine,
            n=2,
            steps=[(["w1"], 60), (["v1"], 60), (["s1"], 60)],
            responders=PEOPLE,
        )
        cm = serving(create_app(gw.runtime))
        url = cm.__enter__()
        with_http.append(cm)
        return gw, url

    yield make
    for cm in with_http:
        cm.__exit__(None, None, None)


def token(gw: Any, person: str | None, role: str) -> dict[str, str]:
    tok = create_token(
        gw.engine, f"t-{role}-{person}", role, now_ms=gw.runtime.now_ms(), person_id=person
    )
    return {"Authorization": f"Bearer {tok}"}


class Client:
    """One caller of the API (bearer token)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.http = httpx.Client(base_url=url, headers=headers, timeout=10.0)

    def get(self, path: str, code: int = 200) -> Any:
        r = self.http.get(path)
        assert r.status_code == code, r.text
        return r.json()

    def post(self, path: str, body: Any, code: int = 200) -> Any:
        r = self.http.post(path, json=body)
        assert r.status_code == code, r.text
        return r.json()

    def put(self, path: str, body: Any, code: int = 200) -> Any:
        r = self.http.put(path, json=body)
        assert r.status_code == code, r.text
        return r.json()

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def clients() -> Iterator[Callable[[str, dict[str, str]], Client]]:
    made: list[Client] = []

    def make(url: str, headers: dict[str, str]) -> Client:
        c = Client(url, headers)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


class Sse:
    """A live stream read on a thread: every SSE message as {event, id, data}."""

    def __init__(self, url: str, headers: dict[str, str], path: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.status: int | None = None
        self.opened = threading.Event()
        self.ended = threading.Event()  # the server ended the stream (or it was closed here)
        self._cond = threading.Condition()
        self._stop = False
        self._resp: httpx.Response | None = None
        self._client = httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(10.0, read=None)
        )
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _run(self, path: str) -> None:
        try:
            with self._client.stream("GET", path) as r:
                self._resp = r
                self.status = r.status_code
                self.headers = r.headers
                self.opened.set()
                msg: dict[str, Any] = {}
                for line in r.iter_lines():
                    if self._stop:
                        return
                    if line == "":
                        if "data" in msg:
                            msg["data"] = json.loads(msg["data"])
                            with self._cond:
                                self.messages.append(msg)
                                self._cond.notify_all()
                        msg = {}
                    elif not line.startswith(":"):
                        field, _, value = line.partition(":")
                        msg[field] = value[1:] if value.startswith(" ") else value
        except Exception:  # closed under it at the end of the test
            self.opened.set()
        finally:
            self.ended.set()

    def of(self, event: str) -> list[dict[str, Any]]:
        with self._cond:
            return [m for m in self.messages if m.get("event") == event]

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching message in {timeout}s: {self.messages}")
                self._cond.wait(left)

    def close(self) -> None:
        self._stop = True
        shut(self._resp)  # wakes the reading thread (closing the client alone would not)
        self._client.close()
        self._thread.join(5)


@pytest.fixture
def streams() -> Iterator[Callable[[str, dict[str, str], str], Sse]]:
    made: list[Sse] = []

    def make(url: str, headers: dict[str, str], path: str) -> Sse:
        s = Sse(url, headers, path)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def alert_row(gw: Any, alert_id: str) -> Any:
    with gw.engine.connect() as c:
        return c.execute(select(T.alerts).where(T.alerts.c.id == alert_id)).one()


def timeline(gw: Any, alert_id: str) -> list[Any]:
    with gw.engine.connect() as c:
        return c.execute(
            select(T.alert_events)
            .where(T.alert_events.c.alert_id == alert_id)
            .order_by(T.alert_events.c.id)
        ).all()


def shape(gw: Any, alert_id: str) -> list[tuple[str, str | None, Any]]:
    """A timeline without its times and ids (and which of two devices): what happened, by
    whom, in order."""
    out = []
    for e in timeline(gw, alert_id):
        actor = "device:*" if (e.actor or "").startswith("device:") else e.actor
        detail = dict(e.detail or {})
        for volatile in ("reply_by", "msg_id", "ts"):  # ts: the device's own time
            detail.pop(volatile, None)
        if "to" in detail:
            detail["to"] = [{k: v for k, v in t.items() if k != "page_id"} for t in detail["to"]]
        out.append((e.type, actor, detail))
    return out


def published(gw: Any, alert_id: str) -> bool:
    """Whether the alert's pages have left the outbox (the broker took them): an answer before
    that also cancels the page still waiting there (`pending_pages_cancelled`)."""
    with gw.engine.connect() as c:
        rows = c.execute(select(T.outbox.c.sent_at).where(T.outbox.c.alert_id == alert_id)).all()
    return bool(rows) and all(r.sent_at is not None for r in rows)


def deliveries(gw: Any, alert_id: str) -> list[Any]:
    with gw.engine.connect() as c:
        return c.execute(
            select(T.deliveries)
            .where(T.deliveries.c.alert_id == alert_id)
            .order_by(T.deliveries.c.id)
        ).all()


def gw_commands(gw: Any) -> list[str]:
    """The ids of the commands the gateway sent to devices (valve.close)."""
    with gw.engine.connect() as c:
        return list(c.execute(select(T.commands.c.id).order_by(T.commands.c.id)).scalars())


def present(gw: Any, person: str) -> bool:
    with gw.engine.connect() as c:
        return phone.is_present(c, person, gw.runtime.now_ms())


# --- the reply path: the phone counts as the pager ---------------------------------------------


def test_a_reply_from_the_phone_counts_exactly_as_a_pager_reply(
    start: Callable[..., tuple[Any, str]], clients: Callable[..., Client], mq: Mqtt
) -> None:
    gw, url = start()
    w1 = clients(url, token(gw, "w1", "watcher"))
    v1 = clients(url, token(gw, "v1", "volunteer"))
    assert w1.get("/api/v1/me/pages")["pages"] == []

    mq.event("cb-1", "button.pressed")  # elder 1: answered from the phone
    [page] = mq.wait_for(lambda m: m["type"] == "page" and m["_pager"] == "pw1", timeout=2)
    by_phone = page["alert_id"]
    mine = w1.get("/api/v1/me/pages")
    [item] = mine["pages"]
    assert item["alert_id"] == by_phone and mine["last_event_id"] > 0
    assert (item["kind"], item["priority"], item["state"], item["step"]) == (
        "call_button",
        "P1",
        "open",
        1,
    )
    assert item["elder"] == {
        "id": "e1",
        "name": "老人1",
        "address": "幸福里1号楼",
        "phone": "13800000000",
    }
    assert item["what"]["event"] == "button.pressed" and item["reply_by"] is not None
    assert item["acknowledged_by"] is None and item["my_last_reply"] is None
    assert "station_phone" not in item  # none configured: left out, not null
    assert v1.get("/api/v1/me/pages")["pages"] == [], "another person sees nothing of it"

    wait_until(lambda: published(gw, by_phone), what="the page published")
    out = w1.post("/api/v1/me/replies", {"alert_id": by_phone, "action": "ack"})
    assert out["changed"] is True and out["page"]["state"] == "acknowledged"
    assert out["page"]["acknowledged_by"] == {"name": "R-w1", "me": True}
    assert out["page"]["my_last_reply"] == "acknowledged"

    mq.event("cb-2", "button.pressed")  # elder 2: the same answer from the MQTT pager
    [page2] = mq.wait_for(lambda m: m["type"] == "page" and m["alert_id"] != by_phone, timeout=2)
    by_pager = page2["alert_id"]
    wait_until(lambda: published(gw, by_pager), what="the page published")
    mq.reply("pw1", by_pager, "ack")
    wait_until(lambda: alert_row(gw, by_pager).state == "acknowledged", what="pager ack")

    assert shape(gw, by_phone) == shape(gw, by_pager)
    assert [t for t, _, _ in shape(gw, by_phone)][-1] == "acknowledged"
    a, b = alert_row(gw, by_phone), alert_row(gw, by_pager)
    assert a.acknowledged_by == b.acknowledged_by == "responder:w1"
    assert a.next_escalation_at is None and b.next_escalation_at is None
    assert a.next_reminder_at is None and b.next_reminder_at is None  # an explicit plan
    assert not mq.pages("pv1"), "nobody else was paged after the ack"

    # Both show on the phone, newest first; the answered one says who answered.
    listed = w1.get("/api/v1/me/pages")["pages"]
    assert [p["alert_id"] for p in listed] == [by_pager, by_phone]

    # arrived, then done with an outcome, from the phone
    w1.post("/api/v1/me/replies", {"alert_id": by_phone, "action": "arrived", "note": "到了"})
    assert alert_row(gw, by_phone).state == "on_site"
    done = w1.post(
        "/api/v1/me/replies",
        {"alert_id": by_phone, "action": "resolved", "outcome": "real", "note": "老人没事"},
    )
    assert done["page"]["state"] == "resolved"
    row = alert_row(gw, by_phone)
    assert (row.state, row.outcome, row.note) == ("resolved", "real", "老人没事")
    assert [p["alert_id"] for p in w1.get("/api/v1/me/pages")["pages"]] == [by_pager]
    resolved = [e for e in timeline(gw, by_phone) if e.type == "resolved"]
    assert resolved[0].actor == "responder:w1" and resolved[0].detail["outcome"] == "real"

    # The pager's `resolved` carries no outcome; the phone may leave it out too.
    mq.reply("pw1", by_pager, "resolved")
    wait_until(lambda: alert_row(gw, by_pager).state == "resolved", what="pager resolve")
    assert alert_row(gw, by_pager).outcome is None


def test_decline_pages_the_next_step_and_a_late_answer_is_409(
    start: Callable[..., tuple[Any, str]], clients: Callable[..., Client], mq: Mqtt
) -> None:
    gw, url = start()
    admin = clients(url, {"Authorization": f"Bearer {ADMIN}"})
    w1 = clients(url, token(gw, "w1", "watcher"))
    v1 = clients(url, token(gw, "v1", "volunteer"))
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=2)
    alert_id = page["alert_id"]

    out = w1.post(
        "/api/v1/me/replies", {"alert_id": alert_id, "action": "decline", "note": "在外地"}
    )
    assert out["changed"] is False and out["page"]["my_last_reply"] == "declined"
    # The step's 60 s have not passed (the clock stands still): only the decline pages v1.
    [nxt] = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=5)
    assert nxt["step"] == 2
    types = [(e.type, e.actor) for e in timeline(gw, alert_id)]
    i = types.index(("declined", "responder:w1"))
    assert (
        types[i + 1][0] == "escalated"
        and timeline(gw, alert_id)[i + 1].detail["reason"] == "declined"
    )
    assert [p["alert_id"] for p in v1.get("/api/v1/me/pages")["pages"]] == [alert_id]
    assert w1.get("/api/v1/me/pages")["pages"][0]["step"] == 1, "w1 was paged at step 1"

    # The station resolves it; a late ack from the phone is recorded, and answered 409.
    admin.post(f"/api/v1/alerts/{alert_id}/resolve", {"outcome": "false_alarm"})
    r = w1.http.post("/api/v1/me/replies", json={"alert_id": alert_id, "action": "ack"})
    assert r.status_code == 409, r.text
    [problem] = r.json()["detail"]
    assert problem["type"] == "late_reply" and "resolved" in problem["en"] and problem["zh"]
    late = [e for e in timeline(gw, alert_id) if e.type == "late_reply"]
    assert [(e.actor, e.detail["action"]) for e in late] == [("responder:w1", "ack")]
    assert alert_row(gw, alert_id).state == "resolved"


def test_the_acknowledger_declining_from_the_phone_reopens_it_and_late_is_409(
    start: Callable[..., tuple[Any, str]], clients: Callable[..., Client], mq: Mqtt
) -> None:
    gw, url = start()
    admin = clients(url, {"Authorization": f"Bearer {ADMIN}"})
    w1 = clients(url, token(gw, "w1", "watcher"))
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=2)
    alert_id = page["alert_id"]
    w1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "ack"})

    out = w1.post(
        "/api/v1/me/replies", {"alert_id": alert_id, "action": "decline", "note": "腿受伤了"}
    )
    assert out["changed"] is True and out["page"]["state"] == "open"
    assert out["page"]["acknowledged_by"] is None and out["page"]["my_last_reply"] == "declined"
    [nxt] = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=5)
    assert nxt["step"] == 2, "the next step at once, as from the pager"
    [withdrawn] = [e for e in timeline(gw, alert_id) if e.type == "ack_withdrawn"]
    assert withdrawn.actor == "responder:w1" and withdrawn.detail["note"] == "腿受伤了"
    assert alert_row(gw, alert_id).acknowledged_at is None

    admin.post(f"/api/v1/alerts/{alert_id}/resolve", {"outcome": "real"})
    r = w1.http.post("/api/v1/me/replies", json={"alert_id": alert_id, "action": "decline"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"][0]["type"] == "late_reply"
    late = [e for e in timeline(gw, alert_id) if e.type == "late_reply"]
    assert [(e.actor, e.detail["action"]) for e in late] == [("responder:w1", "decline")]


def test_declining_twice_on_the_phone_then_on_the_pager_pages_the_next_step_once(
    start: Callable[..., tuple[Any, str]], clients: Callable[..., Client], mq: Mqtt
) -> None:
    gw, url = start()
    w1 = clients(url, token(gw, "w1", "watcher"))
    v1 = clients(url, token(gw, "v1", "volunteer"))
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=2)
    alert_id = page["alert_id"]

    for _ in range(2):  # a double tap
        out = w1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "decline"})
        assert out["changed"] is False and out["page"]["my_last_reply"] == "declined"
    [nxt] = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=5)
    assert nxt["step"] == 2
    mq.reply("pw1", alert_id, "decline")  # and the pager in the pocket says no as well
    wait_until(
        lambda: len([e for e in timeline(gw, alert_id) if e.type == "declined"]) == 3,
        what="the pager's decline",
    )
    time.sleep(QUIET)
    assert not mq.pages("ps1"), "w1's one answer moved the alert one step"
    assert alert_row(gw, alert_id).step == 2
    escalated = [e.detail for e in timeline(gw, alert_id) if e.type == "escalated"]
    assert escalated == [{"from": 1, "to": 2, "reason": "declined"}]

    v1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "decline"})  # step 2's own
    [staff] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=5)
    assert staff["step"] == 3 and alert_row(gw, alert_id).step == 3


def test_what_is_not_yours_is_404_and_bad_input_changes_nothing(
    start: Callable[..., tuple[Any, str]], clients: Callable[..., Client], mq: Mqtt
) -> None:
    gw, url = start()
    w1 = clients(url, token(gw, "w1", "watcher"))
    v1 = clients(url, token(gw, "v1", "volunteer"))
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=2)
    alert_id = page["alert_id"]
    before = shape(gw, alert_id)

    for body in (
        {"alert_id": alert_id, "action": "ack"},  # v1 is in the plan, but not paged yet
        {"alert_id": "al_nothing", "action": "ack"},
        {"alert_id": "../../etc", "action": "ack"},
    ):
        r = v1.http.post("/api/v1/me/replies", json=body)
        assert r.status_code == 404, r.text
        assert r.json()["detail"][0]["type"] == "not_paged"
    for body in (
        {"alert_id": alert_id, "action": "ack", "outcome": "real"},
        {"alert_id": alert_id, "action": "snooze"},
        {"alert_id": alert_id},
        {"alert_id": alert_id, "action": "ack", "extra": 1},
        {"alert_id": alert_id, "action": "resolved", "outcome": "maybe"},
        {"alert_id": alert_id, "action": "ack", "note": "x" * 1001},
        {"alert_id": "x" * 41, "action": "ack"},
    ):
        r = w1.http.post("/api/v1/me/replies", json=body)
        assert r.status_code == 422, (body, r.text)
    assert shape(gw, alert_id) == before and alert_row(gw, alert_id).state == "open"

    # Who may use the phone page at all.
    assert clients(url, {}).http.get("/api/v1/me").status_code == 401
    for headers in (
        token(gw, "f1", "family"),
        token(gw, None, "staff"),  # a staff token that acts for nobody
        {"Authorization": f"Bearer {ADMIN}"},
    ):
        c = clients(url, headers)
        for path in ("/api/v1/me", "/api/v1/me/pages", "/api/v1/me/stream"):
            assert c.http.get(path).status_code == 403, path
        assert (
            c.http.post(
                "/api/v1/me/replies", json={"alert_id": alert_id, "action": "ack"}
            ).status_code
            == 403
        )
    staff = clients(url, token(gw, "s1", "staff"))  # staff with a person: their own pages
    assert staff.get("/api/v1/me/pages")["pages"] == []
    assert alert_row(gw, alert_id).state == "open"


def test_me_shows_pairings_points_and_the_station_phone(
    start: Callable[..., tuple[Any, str]], clients: Callable[..., Client]
) -> None:
    gw, url = start(station_phone="010-6688 1234")
    admin = clients(url, {"Authorization": f"Bearer {ADMIN}"})
    admin.post("/api/v1/elders/e2/pairings", {"responder_id": "w1"}, 201)
    r = admin.http.post("/api/v1/points/accounts", json={"member_id": "w1", "community": "幸福里"})
    assert r.status_code == 201, r.text
    r = admin.http.post(
        "/api/v1/points/claims/award",
        json={"member_id": "w1", "points": "2.5", "reason": "急救培训 first aid"},
        headers={"Idempotency-Key": "award-w1-1"},
    )
    assert r.status_code == 201, r.text

    w1 = clients(url, token(gw, "w1", "watcher"))
    me = w1.get("/api/v1/me")
    assert me["person"] == {
        "id": "w1",
        "name": "R-w1",
        "role": "watcher",
        "phone": "13900000000",
        "language": "zh-CN",
        "pager_id": "pw1",
    }
    [pairing] = me["pairings"]
    assert pairing["elder"] == {
        "id": "e2",
        "name": "老人2",
        "address": "幸福里2号楼",
        "phone": "13800000000",
    }
    assert pairing["kind"] == "watcher"
    assert me["points"] == {
        "balance": "0",
        "balance_units": 0,
        "pending": "2.5",
        "pending_units": 5,
    }
    assert me["station_phone"] == "010-6688 1234" and me["channels"] == ["pager"]
    with gw.engine.connect() as c:  # reading care records leaves its audit row
        audits = c.execute(
            select(T.metadata.tables["audit_log"]).where(
                T.metadata.tables["audit_log"].c.person_id == "w1"
            )
        ).all()
    assert [(a.action, a.resource, a.elder_id) for a in audits] == [("read", "pairing", "e2")]

    v1 = clients(url, token(gw, "v1", "volunteer"))
    other = v1.get("/api/v1/me")
    assert other["pairings"] == [] and other["points"] is None, "nothing of w1's"


# --- the live stream ------------------------------------------------------------------------------


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_the_stream_delivers_the_page_and_its_changes_to_that_person_only(
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    streams: Callable[..., Sse],
    mq: Mqtt,
) -> None:
    gw, url = start()
    w1_headers, v1_headers = token(gw, "w1", "watcher"), token(gw, "v1", "volunteer")
    since = clients(url, w1_headers).get("/api/v1/me/pages")["last_event_id"]
    w1 = streams(url, w1_headers, f"/api/v1/me/stream?since={since}")
    v1 = streams(url, v1_headers, "/api/v1/me/stream")
    assert w1.status == v1.status == 200
    assert w1.headers["content-type"].startswith("text/event-stream")

    t0 = time.monotonic()
    mq.event("cb-1", "button.pressed")
    got = w1.wait(lambda m: m["event"] == "page", timeout=2)
    assert time.monotonic() - t0 < 1.0, "the page reaches the phone within a second"
    alert_id = got["data"]["page"]["alert_id"]
    assert got["data"]["page"]["state"] == "open" and got["data"]["event"]["type"] == "paged"
    assert int(got["id"]) == got["data"]["event"]["id"]
    assert got["data"]["event"]["at"].endswith("+08:00")  # RFC 3339, not epoch ms

    mq.reply("pw1", alert_id, "ack")  # answered from the pager: the phone is told
    upd = w1.wait(lambda m: m["event"] == "update" and m["data"]["page"]["state"] == "acknowledged")
    assert upd["data"]["page"]["acknowledged_by"]["me"] is True
    time.sleep(QUIET)
    assert v1.messages == [], "another person's stream shows nothing of it"

    # A reconnect with Last-Event-ID gets what it missed, and only its own.
    again = streams(url, w1_headers | {"Last-Event-ID": str(since)}, "/api/v1/me/stream")
    again.wait(lambda m: m["event"] == "page" and m["data"]["event"]["type"] == "paged")
    # ... and the card as it is now (the changes of one commit coalesced: one update at most).
    [now] = clients(url, w1_headers).get("/api/v1/me/pages")["pages"]
    again.wait(lambda m: m["data"]["page"] == now and now["state"] == "acknowledged")
    assert {m["data"]["page"]["alert_id"] for m in again.messages} == {alert_id}


def _withdrawals(sse: Sse, kind: str) -> list[dict[str, Any]]:
    return [m for m in sse.of(kind) if m["data"]["event"]["type"] == "ack_withdrawn"]


def test_an_alert_open_again_rings_the_phones_of_those_paged_for_it(
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    streams: Callable[..., Sse],
    mq: Mqtt,
) -> None:
    gw, url = start()
    w1_headers, v1_headers = token(gw, "w1", "watcher"), token(gw, "v1", "volunteer")
    w1, v1 = clients(url, w1_headers), clients(url, v1_headers)
    since = w1.get("/api/v1/me/pages")["last_event_id"]
    w1_live = streams(url, w1_headers, f"/api/v1/me/stream?since={since}")
    v1_live = streams(url, v1_headers, f"/api/v1/me/stream?since={since}")

    mq.event("cb-1", "button.pressed")
    alert_id = w1_live.wait(lambda m: m["event"] == "page")["data"]["page"]["alert_id"]
    w1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "decline"})
    v1_live.wait(lambda m: m["event"] == "page")  # step 2, at once
    v1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "ack"})
    told = w1_live.wait(
        lambda m: m["event"] == "update" and m["data"]["page"]["state"] == "acknowledged"
    )
    assert told["data"]["page"]["reopened"] is False

    # v1 cannot go after all: it is open again, and w1 is asked again, as their pager is.
    out = v1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "decline"})
    assert out["page"]["state"] == "open" and out["page"]["reopened"] is False
    again = w1_live.wait(
        lambda m: m["event"] == "page" and m["data"]["event"]["type"] == "ack_withdrawn"
    )
    assert again["data"]["page"]["state"] == "open"
    assert again["data"]["page"]["reopened"] is True
    mq.wait_for(lambda m: m["_pager"] == "pw1" and m["type"] == "notice" and m["state"] == "open")
    [item] = w1.get("/api/v1/me/pages")["pages"]
    assert item["reopened"] is True and item["my_last_reply"] == "declined"
    # Not the one who withdrew: they have just said they cannot go.
    # Streamed as an update (which of the withdrawal's events carries it depends on how far
    # behind the stream is: identical cards are sent once), never as a page.
    [v1_now] = v1.get("/api/v1/me/pages")["pages"]
    v1_live.wait(lambda m: m["event"] == "update" and m["data"]["page"] == v1_now)
    assert _withdrawals(v1_live, "page") == []
    assert v1.get("/api/v1/me/pages")["pages"][0]["reopened"] is False

    out = w1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "ack"})
    assert out["page"]["state"] == "acknowledged" and out["page"]["reopened"] is False

    # Withdrawn while someone else accepted too: theirs now, still acknowledged, nobody asked.
    mq.event("cb-2", "button.pressed")
    second = w1_live.wait(
        lambda m: m["event"] == "page" and m["data"]["page"]["alert_id"] != alert_id
    )["data"]["page"]["alert_id"]
    w1.post("/api/v1/me/replies", {"alert_id": second, "action": "decline"})
    v1_live.wait(lambda m: m["event"] == "page" and m["data"]["page"]["alert_id"] == second)
    v1.post("/api/v1/me/replies", {"alert_id": second, "action": "ack"})
    w1.post("/api/v1/me/replies", {"alert_id": second, "action": "ack"})  # coming too
    out = v1.post("/api/v1/me/replies", {"alert_id": second, "action": "decline"})
    assert out["page"]["state"] == "acknowledged"
    [now] = [p for p in w1.get("/api/v1/me/pages")["pages"] if p["alert_id"] == second]
    w1_live.wait(lambda m: m["data"]["page"] == now)  # the withdrawal, streamed
    time.sleep(QUIET)
    assert [m["data"]["page"]["alert_id"] for m in _withdrawals(w1_live, "page")] == [alert_id]
    assert w1.get("/api/v1/me/pages")["pages"][0]["reopened"] is False


def _at_ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def test_a_card_tells_its_calls_apart_and_when_the_alert_moved_on(
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    streams: Callable[..., Sse],
    clock: FakeClock,
    mq: Mqtt,
) -> None:
    """What a page that resyncs needs (phone-card.js): which call to the person is the latest
    (`call_event_id`, the stream's `page` event id), whether they answered it since, and when
    the alert was passed on past their own page's reply_by (`passed_on_at`)."""
    gw, url = start()
    w1_headers, v1_headers = token(gw, "w1", "watcher"), token(gw, "v1", "volunteer")
    w1, v1 = clients(url, w1_headers), clients(url, v1_headers)
    since = w1.get("/api/v1/me/pages")["last_event_id"]
    w1_live = streams(url, w1_headers, f"/api/v1/me/stream?since={since}")
    mq.event("cb-1", "button.pressed")
    rang = w1_live.wait(lambda m: m["event"] == "page")
    alert_id = rang["data"]["page"]["alert_id"]
    [item] = w1.get("/api/v1/me/pages")["pages"]
    [paged] = [e for e in timeline(gw, alert_id) if e.type == "paged"]
    assert item["call_event_id"] == paged.id == int(rang["id"])
    assert item["my_last_reply_event_id"] is None and item["passed_on_at"] is None
    mine = item["reply_by"]
    assert mine is not None and _at_ms(mine) > gw.runtime.now_ms()

    # Nobody answers in the step's 60 s: v1 is paged, w1's reply_by is behind, still open.
    clock.advance(61)
    wait_until(lambda: alert_row(gw, alert_id).step == 2, what="the escalation to step 2")
    [item] = w1.get("/api/v1/me/pages")["pages"]
    to_v1 = [e for e in timeline(gw, alert_id) if e.type == "paged"][-1]
    assert [t["responder_id"] for t in to_v1.detail["to"]] == ["v1"]
    assert item["state"] == "open" and item["step"] == 1 and item["reply_by"] == mine
    assert item["passed_on_at"] is not None and _at_ms(item["passed_on_at"]) == to_v1.at
    assert _at_ms(mine) < gw.runtime.now_ms()
    assert item["call_event_id"] == paged.id, "v1's page is no call to w1"
    assert v1.get("/api/v1/me/pages")["pages"][0]["passed_on_at"] is None, "v1's own page"

    # w1 declines: answered since the call.
    out = w1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "decline"})
    [declined] = [e for e in timeline(gw, alert_id) if e.type == "declined"]
    assert out["page"]["my_last_reply_event_id"] == declined.id > out["page"]["call_event_id"]

    # v1 accepts, then cannot go: open again, a new call to w1 (the stream's `page` for it).
    v1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "ack"})
    v1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "decline"})
    again = w1_live.wait(
        lambda m: m["event"] == "page" and m["data"]["event"]["type"] == "ack_withdrawn"
    )
    [item] = w1.get("/api/v1/me/pages")["pages"]
    assert item["call_event_id"] == int(again["id"]) > item["my_last_reply_event_id"]
    [item_v1] = v1.get("/api/v1/me/pages")["pages"]
    assert item_v1["call_event_id"] < item_v1["my_last_reply_event_id"], "not to who withdrew"


def test_one_withdrawal_is_one_update_and_every_page_still_comes(
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    streams: Callable[..., Sse],
    mq: Mqtt,
) -> None:
    """无法前往 writes several timeline events in one transaction (ack_withdrawn, declined,
    escalated, paged): each used to be an `update` with the very same card, four in a row on
    the withdrawer's phone. One committed change is one update; the pages it makes all come."""
    gw, url = start()
    heads = {
        p: token(gw, p, r) for p, r in (("w1", "watcher"), ("v1", "volunteer"), ("s1", "staff"))
    }
    w1, v1 = clients(url, heads["w1"]), clients(url, heads["v1"])
    since = w1.get("/api/v1/me/pages")["last_event_id"]
    live = {p: streams(url, h, f"/api/v1/me/stream?since={since}") for p, h in heads.items()}
    mq.event("cb-1", "button.pressed")
    alert_id = live["w1"].wait(lambda m: m["event"] == "page")["data"]["page"]["alert_id"]
    w1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "decline"})
    live["v1"].wait(lambda m: m["event"] == "page")
    acked = v1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "ack"})["page"]
    for p in ("v1", "w1"):  # both streams caught up with the ack
        live[p].wait(lambda m: m["data"]["page"]["updated_at"] == acked["updated_at"])
    n = {p: len(s.messages) for p, s in live.items()}

    v1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "decline"})  # 无法前往
    live["s1"].wait(lambda m: m["event"] == "page")  # the next step, paged at once
    wait_until(lambda: alert_row(gw, alert_id).step == 3, what="step 3 paged")
    time.sleep(QUIET)
    [withdrawn] = [e for e in timeline(gw, alert_id) if e.type == "ack_withdrawn"]
    loud = {e.type for e in timeline(gw, alert_id) if e.id >= withdrawn.id} - QUIET_EVENTS
    assert {"ack_withdrawn", "declined", "escalated", "paged"} <= loud, "several events"
    got = {
        p: [(m["event"], m["data"]["event"]["type"]) for m in s.messages[n[p] :]]
        for p, s in live.items()
    }
    assert got["v1"] == [("update", "ack_withdrawn")], "one update for one change"
    assert got["w1"] == [("page", "ack_withdrawn")], "open again: asked again, once"
    assert got["s1"] == [("page", "paged")]
    [item] = v1.get("/api/v1/me/pages")["pages"]
    assert live["v1"].messages[-1]["data"]["page"] == item

    # The next change is an update again.
    s1 = clients(url, heads["s1"])
    s1.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "ack"})
    upd = live["v1"].wait(
        lambda m: m["event"] == "update" and m["data"]["page"]["state"] == "acknowledged"
    )
    assert upd["data"]["event"]["type"] == "acknowledged"


def test_a_gas_card_says_the_valve_as_its_pages_do_and_is_told_when_it_closes_late(
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    streams: Callable[..., Sse],
    clock: FakeClock,
    mq: Mqtt,
) -> None:
    """The card's `valve` is what the alert's pages say now (AlertService.page_facts): nothing
    before the valve answers, not closed once it did not answer in time (（阀门未关闭）), closed
    once its late answer comes, which reaches an open page as an update."""
    gw, url = start()
    closes_its_own_valve(gw.engine, "gas-1")
    w1_headers = token(gw, "w1", "watcher")
    w1 = clients(url, w1_headers)
    since = w1.get("/api/v1/me/pages")["last_event_id"]
    w1_live = streams(url, w1_headers, f"/api/v1/me/stream?since={since}")
    gas_event(mq, gw, clock, "gas-1", "gas.alarm", gas="natural_gas", lel_pct=30.0)
    rang = w1_live.wait(lambda m: m["event"] == "page")
    assert rang["data"]["page"]["kind"] == "gas" and rang["data"]["page"]["valve"] is None
    alert_id = rang["data"]["page"]["alert_id"]
    wait_until(lambda: gw_commands(gw), what="valve.close sent")
    [command_id] = gw_commands(gw)

    clock.advance(91)  # past the valve's 90 s with no answer
    wait_until(
        lambda: "valve_close_no_answer" in {e.type for e in timeline(gw, alert_id)},
        what="the valve's silence",
    )
    [item] = w1.get("/api/v1/me/pages")["pages"]
    assert item["valve"] == "not_closed" and item["outage"] is None
    w1_live.wait(lambda m: m["data"]["page"]["valve"] == "not_closed")
    time.sleep(QUIET)  # the rest of that commit streamed too

    gas_event(mq, gw, clock, "gas-1", "command.result", command_id=command_id, ok=True)
    # One update for the commit (its command_result and valve_closed_late events), as it closed.
    told = w1_live.wait(lambda m: m["event"] == "update" and m["data"]["page"]["valve"] == "closed")
    [late] = [e for e in timeline(gw, alert_id) if e.type == "valve_closed_late"]
    assert told["data"]["event"]["id"] <= late.id
    assert w1.get("/api/v1/me/pages")["pages"][0]["valve"] == "closed"


def test_an_outage_card_names_the_building_and_its_homes(
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    clock: FakeClock,
    mq: Mqtt,
) -> None:
    """A building's outage is filed under one of its elders: the card gets the building and how
    many homes (`outage`, as its pages say 楼栋断电 N户), besides that elder (`elder`, kept)."""
    gw, url = start()
    admin = clients(url, {"Authorization": f"Bearer {ADMIN}"})
    devs = [f"{p}-{i}" for i in (1, 2) for p in ("cb", "gas", "water")]
    for d in devs:
        r = admin.http.patch(f"/api/v1/devices/{d}", json={"building": "幸福里9号楼"})
        assert r.status_code == 200, r.text
        mq.status(d, online=True)
    for d in devs:
        mq.status(d, online=False)  # the power goes
    time.sleep(QUIET)
    clock.advance(21 * 60)
    mq.wait_for(lambda m: m.get("kind") == "device_offline" and m["_pager"] == "ps1", timeout=5)
    s1 = clients(url, token(gw, "s1", "staff"))
    [item] = s1.get("/api/v1/me/pages")["pages"]
    assert item["kind"] == "device_offline" and item["valve"] is None
    assert item["outage"] == {"building": "幸福里9号楼", "homes": 2, "devices": 6}
    assert item["elder"]["id"] in {"e1", "e2"}, "the elder it is filed under, as before"


# --- the web channel ---------------------------------------------------------------------------


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hooks]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    h = Hooks()
    yield h
    h.close()


def _phone_then_sms(gw: Any, url: str, clients: Callable[..., Client], hooks: Hooks) -> Client:
    admin = clients(url, {"Authorization": f"Bearer {ADMIN}"})
    admin.put(
        "/api/v1/elders/e1/escalation", {"steps": [{"responder_ids": ["w2"], "ack_timeout_s": 300}]}
    )
    chain = admin.put(
        "/api/v1/responders/w2/channels",
        {
            "links": [
                {"channel": "web"},
                {"channel": "apprise", "address": hooks.url("sms-w2"), "after_s": 30},
            ]
        },
    )
    links = [(c["channel"], c["address"], c["after_s"]) for c in chain["links"]]
    assert links[0] == ("web", "/phone", 0) and links[1][0] == "apprise"
    return clients(url, token(gw, "w2", "watcher"))


def test_web_channel_fails_when_the_page_is_closed_and_the_chain_moves_on(
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    mq: Mqtt,
    hooks: Hooks,
) -> None:
    gw, url = start(delivery_max_tries=1)
    w2 = _phone_then_sms(gw, url, clients, hooks)
    assert not present(gw, "w2")
    mq.event("cb-1", "button.pressed")
    wait_until(lambda: w2.get("/api/v1/me/pages")["pages"], what="paged by the web channel")
    [item] = w2.get("/api/v1/me/pages")["pages"]
    alert_id = item["alert_id"]

    def web_rows() -> list[Any]:
        return [d for d in deliveries(gw, alert_id) if d.channel == "web"]

    wait_until(lambda: any(d.status == "failed" for d in web_rows()), what="web delivery failed")
    assert web_rows()[0].error == phone.NOT_OPEN
    [sms] = hooks.wait("sms-w2", timeout=3)  # given up: the next link at once, not at +30 s
    assert "老人1" in sms["message"]

    def delivered() -> list[Any]:
        return [e.detail for e in timeline(gw, alert_id) if e.type == "delivery"]

    events = wait_until(lambda: len(delivered()) == 2 and delivered(), what="the SMS recorded")
    assert [(d["channel"], d["status"]) for d in events] == [("web", "failed"), ("apprise", "sent")]
    assert events[0]["error"] == "phone page not open"

    # A person without a pager answers from the phone: was_paged knows them by their chain.
    out = w2.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "ack"})
    assert out["page"]["state"] == "acknowledged"
    assert alert_row(gw, alert_id).acknowledged_by == "responder:w2"


def test_web_channel_is_sent_while_the_page_is_open(
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    streams: Callable[..., Sse],
    mq: Mqtt,
    hooks: Hooks,
    clock: FakeClock,
) -> None:
    gw, url = start(delivery_max_tries=1)
    w2 = _phone_then_sms(gw, url, clients, hooks)
    since = w2.get("/api/v1/me/pages")["last_event_id"]
    live = streams(url, token(gw, "w2", "watcher"), f"/api/v1/me/stream?since={since}")
    wait_until(lambda: present(gw, "w2"), what="the open page counted as present")

    mq.event("cb-1", "button.pressed")
    got = live.wait(lambda m: m["event"] == "page", timeout=2)
    alert_id = got["data"]["page"]["alert_id"]
    wait_until(
        lambda: [d.status for d in deliveries(gw, alert_id)] == ["sent"], what="web delivery sent"
    )
    [web] = deliveries(gw, alert_id)
    assert (web.channel, web.address_masked, web.error) == ("web", "/phone", None)
    clock.advance(20)
    time.sleep(QUIET)
    assert hooks.to("sms-w2") == [], "no SMS before its delay"

    w2.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "ack"})
    live.wait(lambda m: m["event"] == "update" and m["data"]["page"]["state"] == "acknowledged")
    clock.advance(20)  # past the SMS link's 30 s: answered, so it never goes
    time.sleep(QUIET)
    assert hooks.to("sms-w2") == []

    live.close()
    wait_until(lambda: not present(gw, "w2"), what="the closed page no longer present")


def test_a_phone_only_acknowledger_hears_that_the_elder_pressed_cancel(
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    streams: Callable[..., Sse],
    mq: Mqtt,
    hooks: Hooks,
    clock: FakeClock,
) -> None:
    """w2 (no pager: the phone page first) accepts, then the elder presses cancel within the
    grace: w2's page (`_tell_cancel_pressed`) comes on the stream as a `page`, and their card
    says which call it is (`cancel_pressed_at`/`_event_id`: phone-card.js rings it like a
    reminder). w1, paged with them, is not told it was "passed on" by it."""
    gw, url = start(delivery_max_tries=1)
    w2 = _phone_then_sms(gw, url, clients, hooks)
    admin = clients(url, {"Authorization": f"Bearer {ADMIN}"})
    admin.put(
        "/api/v1/elders/e1/escalation",
        {"steps": [{"responder_ids": ["w1", "w2"], "ack_timeout_s": 300}]},
    )
    w1 = clients(url, token(gw, "w1", "watcher"))
    since = w2.get("/api/v1/me/pages")["last_event_id"]
    live = streams(url, token(gw, "w2", "watcher"), f"/api/v1/me/stream?since={since}")
    wait_until(lambda: present(gw, "w2"), what="the open page counted as present")

    mq.event("cb-1", "button.pressed")
    alert_id = live.wait(lambda m: m["event"] == "page", timeout=2)["data"]["page"]["alert_id"]
    w2.post("/api/v1/me/replies", {"alert_id": alert_id, "action": "ack"})
    live.wait(lambda m: m["event"] == "update" and m["data"]["page"]["state"] == "acknowledged")
    [before] = w2.get("/api/v1/me/pages")["pages"]
    assert before["cancel_pressed_at"] is None and before["cancel_pressed_event_id"] is None

    clock.advance(10)
    mq.event("cb-1", "button.cancelled", ts=int(clock() * 1000))  # within the grace

    def cancel_pages() -> list[Any]:
        return [
            e
            for e in timeline(gw, alert_id)
            if e.type == "paged" and e.detail.get("reason") == "cancel_pressed"
        ]

    [paged] = wait_until(cancel_pages, what="the cancel page to who is coming")
    told = live.wait(lambda m: m["event"] == "page" and int(m["id"]) == paged.id, timeout=5)
    assert [t["responder_id"] for t in paged.detail["to"]] == ["w2"]
    assert int(told["id"]) == paged.id
    # and down w2's chain like a reminder's (their page, then SMS), though w2 has answered: a
    # step's chain stops at its person's answer, and this one would never have gone
    page_id = paged.detail["to"][0]["page_id"]

    def sent() -> list[Any]:
        with gw.engine.connect() as c:
            rows = c.execute(select(T.deliveries).where(T.deliveries.c.page_id == page_id))
            return [r for r in rows if r.status in ("sent", "delivered")]

    [went] = wait_until(sent, what="the cancel page delivered to w2's phone page")
    assert (went.channel, went.reminder) == ("web", True)
    card = told["data"]["page"]
    assert (card["state"], card["reminder"]) == ("acknowledged", False)
    assert card["cancel_pressed_event_id"] == card["call_event_id"] == paged.id
    assert card["my_last_reply_event_id"] < paged.id, "asks them again: rings (phone-card.js)"
    assert _at_ms(card["cancel_pressed_at"]) == paged.at
    [now] = w2.get("/api/v1/me/pages")["pages"]
    assert now["cancel_pressed_event_id"] == paged.id and now["passed_on_at"] is None

    # w1, paged with w2: the page to who is coming is no "passed to the next person".
    [other] = w1.get("/api/v1/me/pages")["pages"]
    assert other["passed_on_at"] is None
    assert other["cancel_pressed_at"] is None and other["cancel_pressed_event_id"] is None
    assert other["call_event_id"] < paged.id


def _signed_in(gw: Any, person: str, role: str) -> tuple[dict[str, str], str, str]:
    """A pages account for the person, signed in: (the cookie header, CSRF token, user name)."""
    username = f"{role}.{person}"
    now = gw.runtime.now_ms()
    create_user(gw.engine, username, "长城-守望-2026-xyz", role, now_ms=now, person_id=person)
    cookie, session = create_session(gw.engine, username, now_ms=now, lifetime_s=3600)
    return {"Cookie": f"{SESSION_COOKIE}={cookie}"}, session.csrf_token, username


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
@pytest.mark.parametrize("how", ["signed_out", "disabled", "token_revoked"])
def test_a_stream_whose_caller_is_cut_off_ends_within_seconds_and_is_not_delivered_to(
    how: str,
    start: Callable[..., tuple[Any, str]],
    clients: Callable[..., Client],
    streams: Callable[..., Sse],
    mq: Mqtt,
    hooks: Hooks,
) -> None:
    gw, url = start(delivery_max_tries=1)
    _phone_then_sms(gw, url, clients, hooks)
    admin = clients(url, {"Authorization": f"Bearer {ADMIN}"})
    if how == "token_revoked":
        headers, csrf, username = token(gw, "w2", "watcher"), "", ""
    else:
        headers, csrf, username = _signed_in(gw, "w2", "watcher")
    w2 = clients(url, headers)
    since = w2.get("/api/v1/me/pages")["last_event_id"]
    live = streams(url, headers, f"/api/v1/me/stream?since={since}")
    wait_until(lambda: present(gw, "w2"), what="the open page counted as present")

    cut = time.monotonic()
    if how == "signed_out":
        r = w2.http.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 204, r.text
    elif how == "disabled":
        admin.post(f"/api/v1/users/{username}/disable", None)
    else:
        assert revoke_token(gw.engine, "t-watcher-w2") >= 1
    # Within seconds, not at the stream's end (STREAM_MAX_S, five minutes).
    assert live.ended.wait(live_mod.AUTH_RECHECK_S + 3), "the stream went on after the cut"
    assert time.monotonic() - cut < live_mod.AUTH_RECHECK_S + 3
    wait_until(lambda: not present(gw, "w2"), timeout=2, what="no longer present")
    assert w2.http.get("/api/v1/me/stream").status_code == 401  # the reconnection is refused

    # A page now is not taken as delivered to a phone that is not there: the chain moves on.
    mq.event("cb-1", "button.pressed")
    alert_id = wait_until(
        lambda: [a["id"] for a in admin.get("/api/v1/alerts?device_id=cb-1")], what="the alert"
    )[0]
    web = wait_until(
        lambda: [
            d
            for d in deliveries(gw, alert_id)
            if d.channel == "web" and d.status in ("sent", "failed")
        ],
        what="the web delivery decided",
    )
    assert [(d.status, d.error) for d in web] == [("failed", phone.NOT_OPEN)]
    hooks.wait("sms-w2", timeout=3)
    assert live.of("page") == []


def test_a_closed_streams_presence_is_not_written_back_by_a_late_refresh(
    engine: Any, clock: FakeClock
) -> None:
    seed_home(engine, steps=[], responders=PEOPLE)

    class Rt:  # what _Presence uses of the runtime
        def __init__(self) -> None:
            self.engine = engine

        def now_ms(self) -> int:
            return int(clock() * 1000)

    here = _Presence(Rt(), "w2")  # type: ignore[arg-type]
    here.enter()
    with engine.connect() as c:
        assert phone.is_present(c, "w2", int(clock() * 1000))
    here.leave()
    here.refresh()  # a beat that was already on its way when the stream closed
    with engine.connect() as c:
        assert not phone.is_present(c, "w2", int(clock() * 1000))
        assert c.execute(select(phone_presence.c.stream_id)).all() == []


def test_presence_and_the_web_notifier(engine: Any, clock: FakeClock) -> None:
    seed_home(engine, steps=[], responders=PEOPLE)
    notifier = phone.PhoneNotifier(engine, clock)
    d = Delivery(1, "al_x", "pg_x", "w2", "web", "/phone", "/phone", 0, 1, "t", "b")
    now = int(clock() * 1000)
    assert notifier.send(d).status is DeliveryStatus.FAILED
    phone.enter(engine, "ps_a", "w2", now)
    phone.enter(engine, "ps_b", "w2", now)
    assert notifier.send(d).status is DeliveryStatus.SENT
    phone.leave(engine, "ps_a")  # one of two pages closes: still open on the other
    assert notifier.send(d).status is DeliveryStatus.SENT
    clock.advance(phone.PRESENCE_TTL_MS / 1000 + 1)  # the other went silent (a dead process)
    assert notifier.send(d).status is DeliveryStatus.FAILED
    later = int(clock() * 1000)
    phone.refresh(engine, "ps_b", "w2", later)  # it speaks again
    assert notifier.send(d).status is DeliveryStatus.SENT
    phone.enter(engine, "ps_old", "w1", later - 11 * phone.PRESENCE_TTL_MS)
    phone.refresh(engine, "ps_b", "w2", later)  # a refresh prunes long-dead rows
    with engine.connect() as c:
        assert c.execute(select(phone_presence.c.stream_id)).scalars().all() == ["ps_b"]


def test_the_web_link_is_checked(
    start: Callable[..., tuple[Any, str]], clients: Callable[..., Client]
) -> None:
    gw, url = start()
    admin = clients(url, {"Authorization": f"Bearer {ADMIN}"})
    for who, links in (
        ("w2", [{"channel": "web", "address": "https://elsewhere"}]),
        ("w2", [{"channel": "web"}, {"channel": "web", "after_s": 60}]),
        ("f1", [{"channel": "web"}]),  # a relative has the family page, not this one
    ):
        r = admin.http.put(f"/api/v1/responders/{who}/channels", json={"links": links})
        assert r.status_code == 422, r.text
    out = admin.put(
        "/api/v1/responders/w1/channels",
        {"links": [{"channel": "pager"}, {"channel": "web", "after_s": 0}]},
    )
    assert [(c["channel"], c["address"]) for c in out["links"]] == [
        ("pager", "pw1"),
        ("web", "/phone"),
    ]
    me = clients(url, token(gw, "w1", "watcher")).get("/api/v1/me")
    assert me["channels"] == ["pager", "web"]


def test_the_page_installs(
    start: Callable[..., tuple[Any, str]], clients: Callable[..., Client]
) -> None:
    _, url = start()
    anyone = clients(url, {})  # a browser fetches the manifest without its cookies
    r = anyone.http.get("/phone/manifest.webmanifest")
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "application/manifest+json"
    )
    manifest = r.json()
    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == (
        "/phone",
        "/phone",
        "standalone",
    )
    sizes = {i["sizes"] for i in manifest["icons"]}
    assert {"192x192", "512x512"} <= sizes
    r = anyone.http.get("/phone/sw.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["service-worker-allowed"] == "/phone"
