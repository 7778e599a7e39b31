"""Station scoping beyond the care and board routes, over real HTTP on a running gateway with a
private Mosquitto, on SQLite and PostgreSQL (gateway/api.py `in_scope`, gateway/care_store.py
`Scope.on_board`).

Two stations: e1 is 红庙站's (A), e2 金台站's (B), e3 in no station's registry yet. A staff
member of B gets 404 for each of e1's routes (the elder, escalation, tags, pairings, away marks,
water rules and use, devices, alerts and their answers, service orders, statements, vouchers),
exactly as for an elder that does not exist, and changes nothing; lists leave e1 out; a body
naming e1 is refused as one naming nobody; a watcher of B is never paired with e1. Staff of A
and the admin make the same calls with success, and B's staff still answer the alarm of the
elder no station has taken (an alarm is never on nobody's board)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from gateway import tables as T
from gateway.api import create_app
from gateway.auth import create_token
from gateway.tables_rules import elder_water_rules
from gateway.tables_services import svc_orders
from tests.integration.test_api import serving
from tests.support.alarm import Mqtt, seed_home, wait_until

ADMIN = "admin-station-scope-token"
CARE = "/api/v1/care"
TZ = ZoneInfo("Asia/Shanghai")
A, B = "红庙站", "金台站"
HOME = {"lat": 39.93, "lon": 116.45}


@dataclass
class World:
    url: str
    gw: Any
    alert_a: str  # e1's open call-button alert (station A)
    alert_unplaced: str  # e3's (no station yet)
    order_a: str  # e1's service order
    watcher_b: str  # a watcher whose profile names station B
    tokens: dict[str, str]

    def client(self, who: str) -> httpx.Client:
        token = ADMIN if who == "admin" else self.tokens[who]
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )

    def count(self, table: Any, *where: Any) -> int:
        with self.gw.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(table).where(*where)).scalar())

    def row(self, table: Any, *where: Any) -> Any:
        with self.gw.engine.connect() as c:
            return c.execute(select(table).where(*where)).first()


def ok(resp: httpx.Response, code: int = 200) -> Any:
    assert resp.status_code == code, resp.text
    return resp.json() if resp.content else None


def later(hours: float) -> str:
    return (datetime.now(TZ) + timedelta(hours=hours)).isoformat(timespec="seconds")


def open_alert(gw: Any, device: str) -> str:
    def find() -> Any:
        with gw.engine.connect() as c:
            return c.execute(select(T.alerts.c.id).where(T.alerts.c.device_id == device)).scalar()

    return str(wait_until(find, timeout=5, what=f"the alert of {device}"))


def register(api: httpx.Client, elder_id: str, name: str, station: str, room: str) -> None:
    body = {
        "elder_id": elder_id,
        "name": name,
        "gender": "female",
        "birth_date": "1940-01-01",
        "phone": "13800000001",
        "address": {
            "district": "朝阳区",
            "subdistrict": "八里庄街道",
            "community": "红庙社区",
            "room": room,
        },
        "living_situation": "lives_alone",
        "self_care": "independent",
        "emergency_contacts": [{"name": "李明", "relation": "child", "phone": "13900000001"}],
        "station": station,
    }
    ok(api.post(f"{CARE}/elders", json=body), 201)


def person(api: httpx.Client, name: str, role: str, station: str) -> str:
    pid = str(ok(api.post("/api/v1/responders", json={"name": name, "role": role}), 201)["id"])
    ok(api.put(f"{CARE}/people/{pid}/profile", json={"station": station}))
    return pid


@pytest.fixture
def world(make_gateway: Callable[..., Any], engine: Any, mq: Mqtt) -> Iterator[World]:
    seed_home(engine, n=3)  # e1..e3, each with cb-i, gas-i, water-i
    gw = make_gateway(admin_token=ADMIN)
    with serving(create_app(gw.runtime)) as url:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10.0
        ) as api:
            register(api, "e1", "王秀英", A, "501")
            register(api, "e2", "周玉芬", B, "502")
            staff_a = person(api, "站员甲", "staff", A)
            staff_b = person(api, "站员乙", "staff", B)
            watcher_b = person(api, "邻居老李", "watcher", B)
            order = ok(
                api.post(
                    "/api/v1/service-orders",
                    json={
                        "elder_id": "e1",
                        "category": "meals",
                        "request": "送餐",
                        "applied_by": {"role": "elder"},
                        "home": HOME,
                    },
                ),
                201,
            )
        mq.event("cb-1", "button.pressed")
        mq.event("cb-3", "button.pressed")
        now = int(time.time() * 1000)
        tokens = {
            "staff_a": create_token(gw.engine, "desk-a", "staff", now_ms=now, person_id=staff_a),
            "staff_b": create_token(gw.engine, "desk-b", "staff", now_ms=now, person_id=staff_b),
            "watcher_b": create_token(
                gw.engine, "watcher-b", "watcher", now_ms=now, person_id=watcher_b
            ),
        }
        yield World(
            url=url,
            gw=gw,
            alert_a=open_alert(gw, "cb-1"),
            alert_unplaced=open_alert(gw, "cb-3"),
            order_a=str(order["id"]),
            watcher_b=watcher_b,
            tokens=tokens,
        )


def e1_calls(w: World) -> list[tuple[str, str, Any, dict[str, Any] | None]]:
    """Every route of station A's elder e1 (method, path, JSON body, query), reads then changes;
    the changes are valid, so that what answers them is the scoping alone."""
    month = datetime.now(TZ).strftime("%Y-%m")
    steps = [{"responder_ids": ["w1"], "ack_timeout_s": 60}]
    return [
        ("GET", "/api/v1/elders/e1", None, None),
        ("GET", "/api/v1/elders/e1/escalation", None, None),
        ("GET", "/api/v1/elders/e1/tags", None, None),
        ("GET", "/api/v1/elders/e1/pairings", None, None),
        ("GET", "/api/v1/elders/e1/away", None, None),
        ("GET", "/api/v1/elders/e1/water-rules", None, None),
        ("GET", "/api/v1/elders/e1/water-use", None, None),
        ("GET", "/api/v1/devices/cb-1", None, None),
        ("GET", "/api/v1/devices/cb-1/rules", None, None),
        ("GET", "/api/v1/devices/cb-1/mutes", None, None),
        ("GET", "/api/v1/devices/water-1/history", None, {"field": "flow_l"}),
        ("GET", f"/api/v1/alerts/{w.alert_a}", None, None),
        ("GET", f"/api/v1/alerts/{w.alert_a}/deliveries", None, None),
        ("GET", f"/api/v1/service-orders/{w.order_a}", None, None),
        ("GET", "/api/v1/service-statements/elders/e1", None, {"month": month}),
        ("GET", "/api/v1/elders/e1/vouchers", None, None),
        ("PUT", "/api/v1/elders/e1/tags", {"tags": ["building:9"]}, None),
        ("PUT", "/api/v1/elders/e1/escalation", {"steps": steps}, None),
        (
            "POST",
            "/api/v1/elders/e1/pairings",
            {"responder_id": w.watcher_b, "role": "watcher"},
            None,
        ),
        ("PUT", "/api/v1/elders/e1/away", {"status": "away", "until": later(48)}, None),
        ("PUT", "/api/v1/elders/e1/water-rules", {"fixed_min_l": 5}, None),
        ("PATCH", "/api/v1/devices/cb-1", {"building": "9"}, None),
        ("POST", "/api/v1/devices/cb-1/mutes", {"reason": "换电池", "until": later(2)}, None),
        ("PUT", "/api/v1/elders/e1/service-pin", {"pin": "2468"}, None),
        ("POST", f"/api/v1/alerts/{w.alert_a}/ack", None, None),
        ("POST", f"/api/v1/service-orders/{w.order_a}/cancel", {"reason": "不需要了"}, None),
        ("POST", "/api/v1/devices/gas-1/retire", None, None),
    ]


def send(
    c: httpx.Client, method: str, path: str, body: Any, query: dict[str, Any] | None
) -> httpx.Response:
    return c.request(method, path, json=body, params=query)


# --- station B's staff ---------------------------------------------------------------------------


def test_another_stations_elder_answers_404_and_nothing_changes(world: World) -> None:
    w = world
    with w.client("staff_b") as desk:
        leaks = []  # every route that answers, not only the first
        for method, path, body, query in e1_calls(w):
            r = send(desk, method, path, body, query)
            if r.status_code != 404:
                leaks.append(f"{method} {path}: {r.status_code} {r.text[:80]}")
        assert leaks == []
        # as for an elder that does not exist, word for word
        assert desk.get("/api/v1/elders/e1").json() == {"detail": "no elder 'e1'"}
        nobody = desk.get("/api/v1/elders/el_nobody").json()["detail"]
        assert nobody == "no elder 'el_nobody'"
        assert desk.post(f"/api/v1/alerts/{w.alert_a}/arrive").status_code == 404
        r = desk.post(
            f"/api/v1/alerts/{w.alert_a}/resolve", json={"outcome": "false_alarm", "note": "x"}
        )
        assert r.status_code == 404
        assert desk.delete("/api/v1/elders/e1/away").status_code == 404
        assert desk.delete("/api/v1/elders/e1/water-rules").status_code == 404
        # the care route refuses the same pairing the same way
        r = desk.post(
            f"{CARE}/elders/e1/pairings", json={"person_id": w.watcher_b, "kind": "watcher"}
        )
        assert r.status_code == 404

    # nothing stored: no pairing, so the watcher of B still does not see e1
    assert w.count(T.pairings, T.pairings.c.elder_id == "e1") == 0
    with w.client("watcher_b") as phone:
        assert phone.get(f"{CARE}/elders/e1").status_code == 404
    alert = w.row(T.alerts, T.alerts.c.id == w.alert_a)
    assert alert.state not in ("acknowledged", "resolved") and alert.acknowledged_by is None
    assert w.row(T.elders, T.elders.c.id == "e1").tags in (None, [])
    plan = w.row(T.escalation_plans, T.escalation_plans.c.elder_id == "e1")
    assert [s["responder_ids"] for s in plan.steps] == [["w1", "w2"], ["v1"], ["s1"]]
    assert w.count(T.elder_away, T.elder_away.c.elder_id == "e1") == 0
    assert w.count(elder_water_rules, elder_water_rules.c.elder_id == "e1") == 0
    assert w.count(T.device_mutes) == 0
    dev = w.row(T.devices, T.devices.c.id == "cb-1")
    assert dev.building is None
    assert w.row(T.devices, T.devices.c.id == "gas-1").status == "active"
    assert w.row(svc_orders, svc_orders.c.id == w.order_a).state == "applied"


def test_lists_leave_another_stations_elders_out(world: World) -> None:
    w = world
    with w.client("staff_b") as desk:
        elders = {e["id"] for e in ok(desk.get("/api/v1/elders"))}
        assert elders == {"e2", "e3"}  # theirs, and the elder no station has taken
        devices = {d["elder_id"] for d in ok(desk.get("/api/v1/devices"))}
        assert devices == {"e2", "e3"}
        assert ok(desk.get("/api/v1/devices", params={"elder_id": "e1"})) == []
        alerts = {a["id"] for a in ok(desk.get("/api/v1/alerts"))}
        assert alerts == {w.alert_unplaced}
        assert ok(desk.get("/api/v1/alerts", params={"elder_id": "e1"})) == []
        assert ok(desk.get("/api/v1/service-orders")) == []
        assert ok(desk.get("/api/v1/service-orders", params={"elder_id": "e1"})) == []
        report = ok(desk.get("/api/v1/reports/alerts"))
        assert report["total"] == 1
    with w.client("admin") as api:
        ok(api.put("/api/v1/elders/e1/away", json={"status": "away", "until": later(48)}))
    with w.client("staff_b") as desk:
        assert ok(desk.get("/api/v1/suppressions"))["away"] == []
    with w.client("staff_a") as desk:
        assert [a["elder_id"] for a in ok(desk.get("/api/v1/suppressions"))["away"]] == ["e1"]


def test_a_body_naming_another_stations_elder_is_refused_as_naming_nobody(world: World) -> None:
    w = world
    order = {
        "category": "meals",
        "request": "送餐",
        "applied_by": {"role": "elder"},
        "home": HOME,
    }
    with w.client("staff_b") as desk:
        for elder in ("e1", "el_nobody"):
            device = {"id": f"cb-x-{elder}", "kind": "call_button", "elder_id": elder}
            r = desk.post("/api/v1/devices", json=device)
            assert r.status_code == 422 and r.json()["detail"][0]["msg"] == f"no elder {elder!r}"
            r = desk.post("/api/v1/service-orders", json={**order, "elder_id": elder})
            assert r.status_code == 422 and r.json()["detail"]["code"] == "elder_unknown"
            # registering an elder that exists: "registered already" would tell e1 exists
            r = desk.post(
                f"{CARE}/elders",
                json={
                    "elder_id": elder,
                    "name": "某人",
                    "gender": "female",
                    "birth_date": "1940-01-01",
                    "address": {
                        "district": "朝阳区",
                        "subdistrict": "八里庄街道",
                        "community": "红庙社区",
                        "room": "1",
                    },
                    "living_situation": "lives_alone",
                    "self_care": "independent",
                },
            )
            assert r.status_code == 422, r.text
            assert [d["type"] for d in r.json()["detail"]] == ["elder_unknown"]
    assert w.count(T.devices, T.devices.c.id.like("cb-x-%")) == 0
    assert w.count(svc_orders) == 1


# --- station A's staff and the admin ---------------------------------------------------------


@pytest.mark.parametrize("who", ["staff_a", "admin"])
def test_own_station_and_admin_still_succeed(world: World, who: str) -> None:
    w = world
    with w.client(who) as desk:
        for method, path, body, query in e1_calls(w):
            r = send(desk, method, path, body, query)
            assert r.status_code in (200, 201, 204), f"{method} {path}: {r.text[:200]}"
        assert "e1" in {e["id"] for e in ok(desk.get("/api/v1/elders"))}
        assert w.alert_a in {a["id"] for a in ok(desk.get("/api/v1/alerts"))}
        assert len(ok(desk.get("/api/v1/service-orders", params={"elder_id": "e1"}))) == 1
        done = desk.post(
            f"/api/v1/alerts/{w.alert_a}/resolve", json={"outcome": "false_alarm", "note": "误按"}
        )
        assert ok(done)["state"] == "resolved"
    assert w.count(T.pairings, T.pairings.c.elder_id == "e1") == 1


def test_a_stations_staff_answer_the_alarm_of_an_elder_of_no_station(world: World) -> None:
    w = world
    with w.client("staff_b") as desk:
        ok(desk.get("/api/v1/elders/e3"))
        ok(desk.get(f"/api/v1/alerts/{w.alert_unplaced}"))
        assert ok(desk.post(f"/api/v1/alerts/{w.alert_unplaced}/ack"))["state"] == "acknowledged"
        done = desk.post(
            f"/api/v1/alerts/{w.alert_unplaced}/resolve", json={"outcome": "false_alarm"}
        )
        assert ok(done)["state"] == "resolved"
