"""Station scoping beyond the care and board routes, over real HTTP on a running gateway with a
private Mosquitto, on SQLite and PostgreSQL (gateway/api.py `in_scope`, gateway/care_store.py
`Scope.on_board`).

Two stations: e1 is 红庙站's (A), e2 金台站's (B), e3 in no station's registry yet. A staff
member of B gets 404 for each of e1's routes (the elder, escalation, tags, pairings, away marks,
water rules and use, devices, alerts and their answers, service orders, statements, vouchers),
exactly as for an elder that does not exist, and changes nothing; lists leave e1 out; a body
naming e1 is refused as one naming nobody; a watcher of B is never paired with e1. Staff of A
and the admin make the same calls with success, and B's staff still answer the alarm of the
elder no station has taken (an alarm is never on nobody's board).

People are a station's by their profile: A's watcher and staff member are unknown to B's staff
(the responder, channels, profile, shifts; never put on a plan, the roster or an alert), A's
staff cannot pair B's watcher or link B's relative, the quarantine leaves out another station's
devices and pagers, and the points of another station's members (accounts, statements, claims,
transactions, audit) answer as unknown ones."""

from __future__ import annotations

import time
import uuid
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
from gateway.tables_care import family_links, person_profiles
from gateway.tables_points import points_claims, points_transactions
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
    watcher_a: str  # and one of station A
    staff_a: str  # the people behind the staff tokens
    staff_b: str
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
            watcher_a = person(api, "邻居小张", "watcher", A)
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
            watcher_a=watcher_a,
            staff_a=staff_a,
            staff_b=staff_b,
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
            {"responder_id": w.watcher_a, "role": "watcher"},
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
        assert desk.get("/api/v1/elders/e1").json() == {
            "detail": "no elder 'e1'",
            "detail_zh": "没有该老人：'e1'",
            "code": "not_found",
        }
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


# --- people: responders, their profiles, channels and shifts, pairing ----------------------------


def expect(
    leaks: list[str], what: str, r: httpx.Response, status: int, code: str | None = None
) -> None:
    """Note `what` in `leaks` unless it answered `status` (and `code`, the detail's code or
    its first error's type): a test collects every leak, not only the first."""
    json_ = r.headers.get("content-type", "").startswith("application/json")
    detail = r.json().get("detail") if json_ else None  # a leaked workbook is not JSON
    found = None
    if isinstance(detail, dict):
        found = detail.get("code")
    elif isinstance(detail, list) and detail:
        found = detail[0].get("type")
    if r.status_code != status or (code is not None and found != code):
        leaks.append(f"{what}: {r.status_code} {r.text[:160]}")


def test_another_stations_people_are_unknown_and_left_out(world: World) -> None:
    w = world
    with w.client("admin") as api:
        shift = {"responder_id": w.staff_a, "start_at": later(1), "end_at": later(9)}
        shift_a = ok(api.post("/api/v1/roster/shifts", json=shift), 201)["id"]
    a_people = {w.staff_a, w.watcher_a}
    leaks: list[str] = []
    with w.client("staff_b") as desk:
        nobody = desk.get("/api/v1/responders/rs_nobody")
        assert nobody.json() == {
            "detail": "no responder 'rs_nobody'",
            "detail_zh": "没有该人员：'rs_nobody'",
            "code": "not_found",
        }
        r = desk.get(f"/api/v1/responders/{w.watcher_a}")
        expect(leaks, "GET responder", r, 404)
        if r.status_code == 404 and r.json() != {
            "detail": f"no responder {w.watcher_a!r}",
            "detail_zh": f"没有该人员：{w.watcher_a!r}",
            "code": "not_found",
        }:
            leaks.append(f"GET responder is told apart from an unknown one: {r.text}")
        people = {p["id"] for p in ok(desk.get("/api/v1/responders"))}
        if people & a_people or not {w.staff_b, w.watcher_b, "w1"} <= people:
            leaks.append(f"GET responders: {people}")  # theirs, and w1 of no station
        r = desk.get(f"/api/v1/responders/{w.watcher_a}/channels")
        expect(leaks, "GET channels", r, 404)
        r = desk.put(f"/api/v1/responders/{w.watcher_a}/channels", json={"links": []})
        expect(leaks, "PUT channels", r, 404)
        expect(leaks, "GET profile", desk.get(f"{CARE}/people/{w.watcher_a}/profile"), 404)
        # taking another station's person into one's own would move them: refused as unknown
        r = desk.put(f"{CARE}/people/{w.watcher_a}/profile", json={"skills": ["做饭"]})
        expect(leaks, "PUT profile", r, 404)
        profiles = {p["responder_id"] for p in ok(desk.get(f"{CARE}/people"))}
        if profiles & a_people:
            leaks.append(f"GET care people: {profiles}")
        # the duty roster
        if shift_a in {s["id"] for s in ok(desk.get("/api/v1/roster/shifts"))}:
            leaks.append("GET shifts")
        expect(leaks, "DELETE shift", desk.delete(f"/api/v1/roster/shifts/{shift_a}"), 404)
        shift = {"responder_id": w.staff_a, "start_at": later(10), "end_at": later(12)}
        r = desk.post("/api/v1/roster/shifts", json=shift)
        expect(leaks, "POST shift", r, 422)
        if r.status_code == 422 and r.json()["detail"][0]["msg"] != f"no responder {w.staff_a!r}":
            leaks.append(f"POST shift is told apart from an unknown one: {r.text}")
        # bodies naming one: an escalation plan, an assignment
        steps = [{"responder_ids": [w.watcher_a], "ack_timeout_s": 60}]
        r = desk.put("/api/v1/elders/e2/escalation", json={"steps": steps})
        expect(leaks, "PUT escalation", r, 422)
        assign = {"responder_id": w.watcher_a}
        r = desk.post(f"/api/v1/alerts/{w.alert_unplaced}/assign", json=assign)
        expect(leaks, "POST assign", r, 422)
    assert leaks == [], "\n".join(leaks)
    prof = w.row(person_profiles, person_profiles.c.responder_id == w.watcher_a)
    assert prof.station == A and prof.profile.get("skills") in (None, [])
    assert w.count(T.duty_shifts) == 1
    assert w.count(T.duty_shifts, T.duty_shifts.c.id == shift_a) == 1
    plan = w.row(T.escalation_plans, T.escalation_plans.c.elder_id == "e2")
    assert w.watcher_a not in {r for s in plan.steps for r in s["responder_ids"]}

    with w.client("staff_a") as desk:
        ok(desk.get(f"/api/v1/responders/{w.watcher_a}"))
        people = {p["id"] for p in ok(desk.get("/api/v1/responders"))}
        assert a_people <= people and w.watcher_b not in people
        ok(desk.get(f"/api/v1/responders/{w.watcher_a}/channels"))
        ok(desk.get(f"{CARE}/people/{w.watcher_a}/profile"))
        assert shift_a in {s["id"] for s in ok(desk.get("/api/v1/roster/shifts"))}
        steps = [{"responder_ids": [w.watcher_a], "ack_timeout_s": 60}]
        ok(desk.put("/api/v1/elders/e1/escalation", json={"steps": steps}))
        assert desk.delete(f"/api/v1/roster/shifts/{shift_a}").status_code == 204
    with w.client("admin") as api:  # the admin sees every station's people
        assert a_people | {w.watcher_b} <= {p["id"] for p in ok(api.get("/api/v1/responders"))}


def test_a_responder_of_another_station_is_not_paired(world: World) -> None:
    w = world
    with w.client("admin") as api:
        relative_b = person(api, "女儿", "family", B)
    leaks: list[str] = []
    with w.client("staff_a") as desk:
        r = desk.post("/api/v1/elders/e1/pairings", json={"responder_id": w.watcher_b})
        expect(leaks, "POST pairing", r, 422)
        if r.status_code == 422 and r.json()["detail"][0]["msg"] != f"no responder {w.watcher_b!r}":
            leaks.append(f"POST pairing is told apart from an unknown one: {r.text}")
        pairing = {"person_id": w.watcher_b, "kind": "watcher"}
        r = desk.post(f"{CARE}/elders/e1/pairings", json=pairing)
        expect(leaks, "POST care pairing", r, 422, "person_unknown")
        # nor is a relative of another station linked
        link = {"elder_id": "e1", "person_id": relative_b, "relation": "child"}
        r = desk.post(f"{CARE}/family-links", json=link)
        expect(leaks, "POST family link", r, 422, "family_person")
    assert leaks == [], "\n".join(leaks)
    assert w.count(T.pairings, T.pairings.c.elder_id == "e1") == 0
    assert w.count(family_links) == 0
    with w.client("watcher_b") as phone:
        assert phone.get(f"{CARE}/elders/e1").status_code == 404
    with w.client("staff_a") as desk:  # a person of the station is paired as before
        pairing = {"person_id": w.watcher_a, "kind": "watcher"}
        ok(desk.post(f"{CARE}/elders/e1/pairings", json=pairing), 201)


# --- the quarantine -------------------------------------------------------------------------------


def test_the_quarantine_leaves_out_another_stations_devices_and_pagers(
    world: World, mq: Mqtt
) -> None:
    w = world
    with w.client("admin") as api:  # w2 (pager pw2) joins station A; w1 (pw1) is of none
        ok(api.put(f"{CARE}/people/w2/profile", json={"station": A}))
    for device in ("cb-1", "cb-2", "cb-9"):  # A's, B's, and a device nobody registered
        mq.raw(f"{mq.base}/v1/devices/{device}/events", b"not json")
    for pager in ("pw1", "pw2"):
        mq.reply(pager, "al_nobody", "ack")

    def topics(who: str) -> set[str]:
        with w.client(who) as desk:
            return {q["topic"] for q in ok(desk.get("/api/v1/quarantine"))}

    base = f"{mq.base}/v1"
    every = {
        f"{base}/devices/cb-1/events",
        f"{base}/devices/cb-2/events",
        f"{base}/devices/cb-9/events",
        f"{base}/pagers/pw1/replies",
        f"{base}/pagers/pw2/replies",
    }
    wait_until(lambda: every <= topics("admin"), timeout=5, what="the five quarantined")
    assert topics("staff_b") & every == every - {
        f"{base}/devices/cb-1/events",
        f"{base}/pagers/pw2/replies",
    }
    assert topics("staff_a") & every == every - {f"{base}/devices/cb-2/events"}


# --- the points ledger ---------------------------------------------------------------------------


def test_another_stations_points_are_unknown_and_left_out(world: World) -> None:
    """An elder's account is their station's, a person's their profile's: B's staff meet A's
    accounts, claims and transactions as unknown ones, in lists, paths and bodies alike."""
    w = world
    now = int(time.time() * 1000)
    clerk = create_token(w.gw.engine, "community-clerk", "staff", now_ms=now)  # of no station
    auditor = create_token(w.gw.engine, "subdistrict-auditor", "staff", now_ms=now)

    def idem() -> dict[str, str]:
        return {"Idempotency-Key": uuid.uuid4().hex}

    with w.client("admin") as api:
        service = {
            "code": "bath-home",
            "name_zh": "上门助浴",
            "name_en": "bathing at home",
            "category": "bathing",
            "unit": "visit",
            "unit_price_fen": 3000,
            "share_fen": {"low_cost": 1000, "paid": 3000},
        }
        ok(api.post("/api/v1/services", json=service), 201)  # what the redemptions pay
        for member in ("e1", "e2", w.watcher_a, w.watcher_b):
            account = {"member_id": member, "community": "红庙社区"}
            ok(api.post("/api/v1/points/accounts", json=account), 201)
        claims = {}
        for member in (w.watcher_a, "e1", w.watcher_b):
            award = {"member_id": member, "points": "2", "reason": "培训 training"}
            r = api.post("/api/v1/points/claims/award", json=award, headers=idem())
            claims[member] = ok(r, 201)["claim"]["id"]
        h = {"Authorization": f"Bearer {clerk}"}
        ok(api.post(f"/api/v1/points/claims/{claims[w.watcher_a]}/verify", headers=h))
        h = {"Authorization": f"Bearer {auditor}", **idem()}
        ok(api.post(f"/api/v1/points/claims/{claims[w.watcher_a]}/post", headers=h))
        gift_a = {"from_member_id": w.watcher_a, "to": "e1", "points": "0.5"}
        gift_a = ok(api.post("/api/v1/points/gifts", json=gift_a, headers=idem()), 201)["id"]
        # across the stations (an admin may): B's staff read it, a line of their member's
        # statement, but cannot undo it, for it moved A's points too
        across = {"from_member_id": w.watcher_a, "to": "e2", "points": "0.5"}
        across = ok(api.post("/api/v1/points/gifts", json=across, headers=idem()), 201)["id"]
    a_members = {"e1", w.watcher_a}
    members_only = {"kind": "member"}

    leaks: list[str] = []
    with w.client("staff_b") as desk:
        nobody = desk.get("/api/v1/points/accounts/el_nobody").json()["detail"]
        assert nobody["code"] == "no_account"
        for member in a_members:
            for path in ("", "/statement", "/statement.xlsx"):
                r = desk.get(f"/api/v1/points/accounts/{member}{path}")
                expect(leaks, f"GET account {member}{path}", r, 404, "no_account")
                unknown = {k: v.replace("el_nobody", member) for k, v in nobody.items()}
                if r.status_code == 404 and r.json()["detail"] != unknown:
                    leaks.append(f"GET account {member}{path} is told apart: {r.text}")
            r = desk.get(f"/api/v1/points/accounts/member:{member}")
            expect(leaks, f"GET account member:{member}", r, 404, "no_account")
        accounts = ok(desk.get("/api/v1/points/accounts", params=members_only))
        if {a["member_id"] for a in accounts} != {"e2", w.watcher_b}:
            leaks.append(f"GET accounts: {[a['member_id'] for a in accounts]}")
        listed = {c["member_id"] for c in ok(desk.get("/api/v1/points/claims"))}
        if listed != {w.watcher_b}:
            leaks.append(f"GET claims: {listed}")
        for claim in (claims["e1"], claims[w.watcher_a]):
            r = desk.get(f"/api/v1/points/claims/{claim}")
            expect(leaks, "GET claim", r, 404, "unknown_claim")
            for step, body in (("verify", None), ("refuse", {"reason": "不对"})):
                r = desk.post(f"/api/v1/points/claims/{claim}/{step}", json=body)
                expect(leaks, f"POST claim {step}", r, 404, "unknown_claim")
        r = desk.get(f"/api/v1/points/transactions/{gift_a}")
        expect(leaks, "GET transaction", r, 404, "unknown_transaction")
        expect(leaks, "GET across", desk.get(f"/api/v1/points/transactions/{across}"), 200)
        for txn in (gift_a, across):
            reverse = {"transaction_id": txn, "reason": "录错", "requested_by": "s1"}
            r = desk.post("/api/v1/points/reversals", json=reverse, headers=idem())
            expect(leaks, f"POST reversal {txn}", r, 404, "unknown_transaction")
        audited = {a["member_id"] for a in ok(desk.get("/api/v1/points/audit"))}
        if audited & a_members or "e2" not in audited:
            leaks.append(f"GET audit: {audited}")
        # bodies naming A's members are refused as naming nobody
        r = desk.post("/api/v1/points/accounts", json={"member_id": "e1", "community": "x"})
        expect(leaks, "POST account", r, 404, "unknown_member")  # not "has one already"
        award = {"member_id": "e1", "points": "1", "reason": "培训 training"}
        r = desk.post("/api/v1/points/claims/award", json=award, headers=idem())
        expect(leaks, "POST award", r, 404, "no_account")
        service = {
            "member_id": w.watcher_a,
            "category": "visit",
            "started_at": later(-3),
            "ended_at": later(-2),
            "service_ref": "visit-1",
        }
        r = desk.post("/api/v1/points/claims/service", json=service, headers=idem())
        expect(leaks, "POST service claim", r, 404, "no_account")
        alarm = {"member_id": w.watcher_b, "alert_id": w.alert_a}
        r = desk.post("/api/v1/points/claims/alarm", json=alarm, headers=idem())
        expect(leaks, "POST alarm claim", r, 404, "unknown_alert")
        for gift in (
            {"from_member_id": w.watcher_b, "to": "e1", "points": "0.5"},
            {"from_member_id": w.watcher_a, "to": "e2", "points": "0.5"},
        ):
            r = desk.post("/api/v1/points/gifts", json=gift, headers=idem())
            expect(leaks, f"POST gift {gift}", r, 404, "no_account")
        pool = {
            "payer": "pool:hardship",
            "points": "1",
            "service_code": "bath-home",
            "category": "bathing",
            "requested_by": "s1",
        }
        for_e1 = {**pool, "beneficiary_id": "e1"}
        r = desk.post("/api/v1/points/redemptions", json=for_e1, headers=idem())
        expect(leaks, "POST redemption for e1", r, 404, "no_account")
        # an order of A's elder is unknown, not "the order of e1"
        paid = {**pool, "beneficiary_id": "e2", "order_id": w.order_a}
        r = desk.post("/api/v1/points/redemptions", json=paid, headers=idem())
        expect(leaks, "POST redemption of A's order", r, 422, "unknown_order")
        # nor does A's staff member sign B's approvals
        approver = {"approver_id": w.staff_a}
        r = desk.post(f"/api/v1/points/claims/{claims[w.watcher_b]}/verify", json=approver)
        expect(leaks, "POST verify by A's staff", r, 422)
    assert leaks == [], "\n".join(leaks)
    with w.gw.engine.connect() as c:
        states = dict(c.execute(select(points_claims.c.id, points_claims.c.status)).all())
        assert states[claims["e1"]] == states[claims[w.watcher_b]] == "pending"
        assert c.execute(select(func.count()).select_from(points_transactions)).scalar() == 3
        assert c.execute(select(func.count()).select_from(points_claims)).scalar() == 3

    with w.client("staff_a") as desk:
        accounts = ok(desk.get("/api/v1/points/accounts", params=members_only))
        assert {a["member_id"] for a in accounts} == a_members
        for member in a_members:
            ok(desk.get(f"/api/v1/points/accounts/{member}/statement"))
        ok(desk.get(f"/api/v1/points/claims/{claims['e1']}"))
        ok(desk.get(f"/api/v1/points/transactions/{gift_a}"))
        reverse = {"transaction_id": gift_a, "reason": "录错", "requested_by": "s1"}
        ok(desk.post("/api/v1/points/reversals", json=reverse, headers=idem()), 201)
    with w.client("admin") as api:
        accounts = ok(api.get("/api/v1/points/accounts", params=members_only))
        assert {a["member_id"] for a in accounts} == a_members | {"e2", w.watcher_b}
