"""Refused alarms on the station board (gateway/refused_alarms.py, gateway/api_board.py): a
device's alarm event the gateway refused as invalid opens no alert (CONTRACT.md), but staff see
it, with the device, the elder, when and why, station-scoped, brought by the live stream
without a reload, and /healthz names it in `degraded` until it is dismissed (who and when kept)
or a day old. Over real HTTP on a running gateway with a private Mosquitto, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from gateway import tables as T
from gateway.api import create_app
from gateway.tables_board import quarantine_dismissals
from tests.integration.test_api import serving
from tests.integration.test_board_api import Sse, bearer, head_id, ok, token
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

ADMIN = "admin-refused-alarms-token"
CARE = "/api/v1/care"
A, B = "红庙站", "金台站"


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


def quarantined(gw: Any) -> list[Any]:
    with gw.engine.connect() as c:
        return list(c.execute(select(T.quarantine).order_by(T.quarantine.c.id)))


def count(gw: Any, table: Any) -> int:
    with gw.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar())


def test_a_refused_press_is_on_the_board_and_in_healthz_until_dismissed(
    engine: Any, gw: Any, url: str, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, n=3)  # e3 is in no station's registry: on every station's board
    for eid, name, station, room in (("e1", "王秀英", A, "501"), ("e2", "周玉芬", B, "502")):
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
    with engine.begin() as c:
        c.execute(update(T.elders).where(T.elders.c.id == "e1").values(phone="13800138001"))
    staff = ok(api.post("/api/v1/responders", json={"name": "站员甲", "role": "staff"}), 201)
    ok(api.put(f"{CARE}/people/{staff['id']}/profile", json={"station": A}))
    mine = token(gw, "desk-a", "staff", staff["id"])
    with httpx.Client(base_url=url, headers=bearer(ADMIN), timeout=10.0) as h:
        assert "refused_alarms" not in ok(h.get("/healthz"))["degraded"]

    stream = Sse(url, f"/api/v1/board/stream?since={head_id(gw)}", bearer(mine))
    try:
        # The board's first word on the stream: nothing refused yet.
        stream.wait_for(lambda m: m.get("event") == "refused" and m["data"]["alarms"] == [])

        def events(device: str) -> str:
            return f"{mq.base}/v1/devices/{device}/events"

        sent = [
            # (device, payload): the alarm-looking ones the board must show
            ("cb-1", {"id": "p1", "ts": "2026-11-27T14:15:00", "type": "button.pressed"}),
            ("cb-1", {"id": "p2", "ts": 1795000000, "type": "button.pressed", "press": "double"}),
            ("cb-3", {"ts": "2026-11-27T14:15:00+08:00", "type": "button.pressed"}),  # no id
            ("gas-1", {"id": "g1", "type": "gas.alarm"}),  # no ts
            ("cb-2", {"id": "p3", "ts": "2026-11-27T14:15:00", "type": "button.pressed"}),  # B's
        ]
        for device, payload in sent:
            mq.raw(events(device), json.dumps(payload).encode())
        big = {"id": "p4", "ts": "2026-11-27T14:15:00+08:00", "type": "button.pressed"}
        big["pad"] = "x" * 5000  # cut at 512 characters in the quarantine: no JSON left
        mq.raw(events("cb-1"), json.dumps(big).encode())
        # Not alarms: a broken reading, a status on the events channel, an unknown device's press
        mq.raw(f"{mq.base}/v1/devices/cb-1/telemetry", b'{"type": "button.pressed"}')
        mq.raw(events("cb-1"), b'{"id": "s1", "type": "device.online"}')
        mq.raw(events("cb-9"), json.dumps(sent[0][1]).encode())
        mq.raw(events("cb-1"), b"[1, 2")  # no JSON, no type
        wait_until(lambda: len(quarantined(gw)) >= 10, timeout=10, what="ten quarantined")
        rows = quarantined(gw)
        assert {r.reason for r in rows[:6]} <= {"invalid", "too_large"}, rows
        assert count(gw, T.alerts) == 0, "a refused message opened an alert"
        by_payload = {r.id: r for r in rows}
        ours_ids = [r.id for r in rows[:6] if "cb-2" not in r.topic]
        theirs = next(r.id for r in rows if r.topic.endswith("/cb-2/events"))

        # The stream brings them, with no reload: A's staff get A's and the unplaced elder's.
        msg = stream.wait_for(
            lambda m: m.get("event") == "refused" and len(m["data"]["alarms"]) == 5, timeout=10
        )
        alarms = msg["data"]["alarms"]
        assert "id" not in msg  # no timeline event: the page's Last-Event-ID stays
        assert sorted(a["quarantine_id"] for a in alarms) == sorted(ours_ids)
        assert [a["quarantine_id"] for a in alarms] == sorted(ours_ids, reverse=True)
        first = next(a for a in alarms if a["quarantine_id"] == rows[0].id)
        assert first["type"] == "button.pressed" and first["reason"] == "invalid"
        assert "offset" in first["detail"]
        assert first["device"] == {"id": "cb-1", "kind": "call_button", "status": "active"}
        assert first["elder"]["id"] == "e1" and first["elder"]["phone"] == "13800138001"
        assert first["elder"]["name"] and first["elder"]["address"]
        cut = next(a for a in alarms if a["size"] > 5000)
        assert cut["reason"] == "too_large" and cut["device"]["id"] == "cb-1"
        assert {a["type"] for a in alarms} == {"button.pressed", "gas.alarm"}

        with httpx.Client(base_url=url, headers=bearer(mine), timeout=10.0) as desk:
            board = ok(desk.get("/api/v1/board/refused"))
            assert [a["quarantine_id"] for a in board["alarms"]] == [
                a["quarantine_id"] for a in alarms
            ]
            assert board["window_h"] == 24
            # Another station's refused alarm is neither listed nor dismissable.
            r = desk.post(f"/api/v1/board/refused/{theirs}/dismiss")
            assert r.status_code == 404, r.text
            # What is no refused alarm (a broken reading) is not one to dismiss either.
            reading = next(r.id for r in rows if r.topic.endswith("/telemetry"))
            assert desk.post(f"/api/v1/board/refused/{reading}/dismiss").status_code == 404
        every = ok(api.get("/api/v1/board/refused"))["alarms"]
        assert sorted(a["quarantine_id"] for a in every) == sorted([*ours_ids, theirs])

        health = ok(api.get("/healthz"))
        assert "refused_alarms" in health["degraded"] and health["down"] == []
        assert health["refused_alarms"]["count"] == 6
        assert "看板" in health["refused_alarms"]["advice"]

        # Dismissed: who and when kept, off the board and the stream; nothing else changes.
        with httpx.Client(base_url=url, headers=bearer(mine), timeout=10.0) as desk:
            done = ok(
                desk.post(f"/api/v1/board/refused/{rows[0].id}/dismiss", json={"note": "已致电"})
            )
            assert done["dismissed_by"] == "api:desk-a" and done["note"] == "已致电"
            again = desk.post(f"/api/v1/board/refused/{rows[0].id}/dismiss")
            assert again.status_code == 409, again.text
            left = [a["quarantine_id"] for a in ok(desk.get("/api/v1/board/refused"))["alarms"]]
            assert rows[0].id not in left and len(left) == 4
        with gw.engine.connect() as c:
            kept = c.execute(select(quarantine_dismissals)).one()
        assert kept.quarantine_id == rows[0].id and kept.dismissed_by == "api:desk-a"
        assert kept.dismissed_at > 0 and kept.note == "已致电"
        stream.wait_for(
            lambda m: (
                m.get("event") == "refused"
                and rows[0].id not in [a["quarantine_id"] for a in m["data"]["alarms"]]
                and len(m["data"]["alarms"]) == 4
            ),
            timeout=10,
        )
        assert count(gw, T.alerts) == 0 and len(quarantined(gw)) == len(by_payload)
        assert ok(api.get("/healthz"))["refused_alarms"]["count"] == 5

        for q in [*ours_ids[1:], theirs]:
            ok(api.post(f"/api/v1/board/refused/{q}/dismiss"))
        health = ok(api.get("/healthz"))
        assert "refused_alarms" not in health["degraded"] and "refused_alarms" not in health
    finally:
        stream.close()


def test_a_refused_alarm_leaves_the_board_after_a_day(
    engine: Any, gw: Any, url: str, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine)
    press = {"id": "p1", "ts": "2026-11-27T14:15:00", "type": "button.pressed"}
    mq.raw(f"{mq.base}/v1/devices/cb-1/events", json.dumps(press).encode())
    wait_until(lambda: quarantined(gw), timeout=10, what="the press quarantined")
    assert len(ok(api.get("/api/v1/board/refused"))["alarms"]) == 1
    assert "refused_alarms" in ok(api.get("/healthz"))["degraded"]
    clock.advance(23 * 3600)
    assert len(ok(api.get("/api/v1/board/refused"))["alarms"]) == 1
    clock.advance(2 * 3600)
    assert ok(api.get("/api/v1/board/refused"))["alarms"] == []
    assert "refused_alarms" not in ok(api.get("/healthz"))["degraded"]
    assert count(gw, T.alerts) == 0


def test_a_refused_press_is_not_pushed_off_the_board_by_a_devices_broken_events(
    engine: Any, gw: Any, url: str, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    """A device whose firmware sends a broken non-alarm event every few seconds quarantines
    thousands a day: the list looks at the newest rows that may be alarms, so a press refused
    hours before them is still shown."""
    seed_home(engine)
    press = {"id": "p1", "ts": "2026-11-27T14:15:00", "type": "button.pressed"}
    mq.raw(f"{mq.base}/v1/devices/cb-1/events", json.dumps(press).encode())
    wait_until(lambda: quarantined(gw), timeout=10, what="the press quarantined")
    [first] = quarantined(gw)
    noise = {"id": "n", "ts": "2026-11-27T14:15:00", "type": "selftest.done"}
    rows = [
        {
            "at": first.at + i,
            "topic": first.topic,
            "reason": "invalid",
            "detail": "type: not an event of a call_button",
            "payload": json.dumps({**noise, "id": f"n{i}"}),
            "size": 80,
        }
        for i in range(1, 2501)  # more than the rows one look reads (SCAN_MAX)
    ]
    with gw.engine.begin() as c:
        c.execute(T.quarantine.insert(), rows)
    [shown] = ok(api.get("/api/v1/board/refused"))["alarms"]
    assert shown["quarantine_id"] == first.id
    assert "refused_alarms" in ok(api.get("/healthz"))["degraded"]
