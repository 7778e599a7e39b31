"""The family page's API (gateway/api_family.py), on SQLite and PostgreSQL, over a real gateway
on a real Mosquitto: the elder's devices, alerts and water use are made by MQTT messages through
the alarm path (a press answered from a pager, a press the elder cancels, a device that goes
offline, a low battery, water telemetry), the service visits through the service API, the
family links through the care API.

What is checked: the family member sees their elder's devices, water use today (and "unknown"
before any reading), open and recent alerts with how they ended, recent and upcoming visits;
404, worded as for an unknown id, for another elder and for elders whose link is revoked,
expired or not yet confirmed; 403 for every other role; every read is audited; nothing changes
(no route writes). The live stream (SSE) is checked on a real HTTP server (uvicorn): it tells
the page when its elder's alert changes, not another elder's, and ends when the link ends.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select

from gateway.accounts import SESSION_COOKIE, create_user
from gateway.api import create_app
from gateway.app import Gateway
from gateway.auth import create_token
from gateway.live import AUTH_RECHECK_S
from gateway.tables import alert_events, alerts, devices, elders, rule_states
from gateway.tables_care import audit_log, family_links
from gateway.tables_services import svc_order_log, svc_orders
from gateway.tables_telemetry import telemetry_rollups
from tests.support.alarm import FakeClock, Mqtt, wait_until
from tests.support.streams import shut

ADMIN = "admin-" + secrets.token_urlsafe(18)
SH = ZoneInfo("Asia/Shanghai")
FAMILY = "/api/v1/family"
HOME = {"lat": 39.9300, "lon": 116.4500}
NEAR = {"lat": 39.9301, "lon": 116.4501}
LONG = 600  # ack timeout: nothing escalates while the test looks


@dataclass
class Env:
    client: TestClient
    engine: Engine
    gw: Gateway
    mq: Mqtt
    clock: FakeClock

    def token(self, name: str, role: str, person_id: str | None = None) -> dict[str, str]:
        tok = create_token(
            self.engine, name, role, now_ms=int(self.clock() * 1000), person_id=person_id
        )
        return {"Authorization": f"Bearer {tok}"}

    def ok(self, method: str, path: str, body: Any = None, code: int = 200) -> Any:
        r = self.client.request(method, path, json=body)
        assert r.status_code == code, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()


def _wait_past_midnight() -> None:
    """Water use "today" is the station's day: do not start a minute before it ends."""
    now = datetime.now(SH)
    if now.hour == 23 and now.minute >= 58:
        time.sleep((60 - now.minute) * 60 - now.second + 5)


@pytest.fixture
def env(make_gateway: Callable[..., Gateway], mq: Mqtt) -> Iterator[Env]:
    _wait_past_midnight()
    clock = FakeClock()
    gw = make_gateway(clock=clock, admin_token=ADMIN)
    with TestClient(create_app(gw.runtime), headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield Env(c, gw.engine, gw, mq, clock)


def elder_body(name: str, room: str) -> dict[str, Any]:
    return {
        "name": name,
        "gender": "female",
        "birth_date": "1946-03-08",
        "phone": "13812345678",
        "address": {
            "district": "朝阳区",
            "subdistrict": "八里庄街道",
            "community": "红庙社区",
            "estate": "金台小区",
            "building": "3",
            "unit": "2",
            "room": room,
        },
        "living_situation": "lives_alone",
        "self_care": "independent",
        "service_tier": "paid",
        "station": "红庙站",
    }


def link(env: Env, elder: str, person: str, **extra: Any) -> str:
    """A family link approved by the station and confirmed by the elder: it counts now."""
    body = {"elder_id": elder, "person_id": person, "relation": "child", **extra}
    lid = env.ok("POST", "/api/v1/care/family-links", body, 201)["id"]
    env.ok("POST", f"/api/v1/care/family-links/{lid}/approve")
    env.ok("POST", f"/api/v1/care/family-links/{lid}/confirm", {"on_behalf": False})
    return str(lid)


def iso(dt: datetime) -> str:
    return dt.isoformat()


class Services:
    """A catalogue entry, a provider with a worker and its agreement: enough for visits."""

    def __init__(self, env: Env) -> None:
        self.env = env
        env.ok(
            "POST",
            "/api/v1/services",
            {
                "code": "meal",
                "name_zh": "午餐送餐",
                "name_en": "lunch delivery",
                "category": "meals",
                "unit": "meal",
                "unit_price_fen": 1500,
                "share_fen": {"low_cost": 500, "paid": 1500},
            },
            201,
        )
        self.provider = env.ok(
            "POST", "/api/v1/providers", {"name": "幸福里长者食堂", "kind": "canteen"}, 201
        )["id"]
        outlet = env.ok(
            "POST",
            f"/api/v1/providers/{self.provider}/outlets",
            {"name": "幸福里网点", "address": "幸福里1号", **HOME},
            201,
        )["id"]
        self.worker = env.ok(
            "POST",
            f"/api/v1/providers/{self.provider}/workers",
            {"name": "王丽娟", "outlet_id": outlet},
            201,
        )["id"]
        env.ok(
            "POST",
            f"/api/v1/providers/{self.provider}/agreements",
            {"service_code": "meal", "unit_price_fen": 1500, "valid_from": "2020-01-01"},
            201,
        )

    def order(self, elder: str, **agree: Any) -> str:
        oid = self.env.ok(
            "POST",
            "/api/v1/service-orders",
            {
                "elder_id": elder,
                "category": "meals",
                "request": "每天中午送餐",
                "applied_by": {"role": "family", "id": "女儿"},
                "home": HOME,
            },
            201,
        )["id"]
        if agree:
            body = {"service_code": "meal", "tier": "paid"} | agree
            self.env.ok("POST", f"/api/v1/service-orders/{oid}/agree", body)
        return str(oid)

    def serve(self, oid: str, start: datetime, minutes: int) -> None:
        e, w = self.env, {"worker_id": self.worker}
        e.ok("POST", f"/api/v1/service-orders/{oid}/dispatch", {"provider_id": self.provider} | w)
        e.ok("POST", f"/api/v1/service-orders/{oid}/accept", w)
        e.ok("POST", f"/api/v1/service-orders/{oid}/check-in", w | {"at": iso(start)} | NEAR)
        end = start + timedelta(minutes=minutes)
        e.ok("POST", f"/api/v1/service-orders/{oid}/check-out", w | {"at": iso(end)} | NEAR)


@dataclass
class World:
    a: str  # the family member's elder
    b: str  # another elder, never linked
    revoked: str  # linked, then revoked
    expiring: str  # linked until an hour from now
    unconfirmed: str  # link requested and approved, not confirmed
    family: str  # the family member (a responder of role family)
    watcher: str
    fam: dict[str, str]  # the family member's Authorization header
    link_a: str


def build(env: Env) -> World:
    ids = [
        env.ok("POST", "/api/v1/care/elders", elder_body(n, room), 201)["id"]
        for n, room in (("王秀英", "501"), ("赵桂兰", "502"), ("钱玉珍", "503"), ("孙淑芬", "504"))
    ]
    a, b, revoked, expiring = ids
    unconfirmed = env.ok("POST", "/api/v1/care/elders", elder_body("周凤英", "505"), 201)["id"]
    watcher = env.ok(
        "POST",
        "/api/v1/responders",
        {"name": "李卫国", "role": "watcher", "pager_id": f"pw-{env.mq.base}"},
        201,
    )["id"]
    family = env.ok("POST", "/api/v1/responders", {"name": "王小明", "role": "family"}, 201)["id"]
    for elder, suffix in ((a, "a"), (b, "b")):
        for kind, prefix in (("call_button", "cb"), ("gas_sensor", "gas"), ("water_sensor", "w")):
            env.ok(
                "POST",
                "/api/v1/devices",
                {"id": f"{prefix}-{suffix}", "kind": kind, "elder_id": elder},
                201,
            )
        env.ok(
            "PUT",
            f"/api/v1/elders/{elder}/escalation",
            {"steps": [{"responder_ids": [watcher], "ack_timeout_s": LONG}]},
        )
    link_a = link(env, a, family)
    gone = link(env, revoked, family)
    env.ok("POST", f"/api/v1/care/family-links/{gone}/revoke", {"reason": "家属要求"})
    soon = datetime.fromtimestamp(env.clock(), SH) + timedelta(hours=1)
    link(env, expiring, family, expires_at=iso(soon))
    half = env.ok(
        "POST",
        "/api/v1/care/family-links",
        {"elder_id": unconfirmed, "person_id": family, "relation": "child"},
        201,
    )["id"]
    env.ok("POST", f"/api/v1/care/family-links/{half}/approve")
    fam = env.token("fam-wang", "family", family)
    return World(a, b, revoked, expiring, unconfirmed, family, watcher, fam, link_a)


def page_for(mq: Mqtt, pager: str, kind: str, seen: Iterable[str] = ()) -> str:
    """The alert id of a page of `kind` sent to the pager for an alert not in `seen`."""
    old = set(seen)
    [m] = mq.wait_for(
        lambda m: (
            m["type"] == "page"
            and m["_pager"] == pager
            and m["kind"] == kind
            and m["alert_id"] not in old
        )
    )[:1]
    return str(m["alert_id"])


def alert_state(env: Env, alert_id: str) -> str:
    return str(env.ok("GET", f"/api/v1/alerts/{alert_id}")["state"])


def status(env: Env, w: World, elder: str) -> httpx.Response:
    return env.client.get(f"{FAMILY}/elders/{elder}", headers=w.fam)


def family_audit(env: Env, action: str, elder: str | None = None) -> int:
    q = select(func.count()).where(audit_log.c.role == "family", audit_log.c.action == action)
    if elder is not None:
        q = q.where(audit_log.c.elder_id == elder)
    with env.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def snapshot(env: Env) -> dict[str, Any]:
    """Rows a read could change (the gateway's own background work does not touch these
    while nothing is due: acknowledgement timeouts are long)."""
    out = {}
    with env.engine.connect() as conn:
        for t in (elders, devices, alerts, alert_events, family_links, svc_orders, svc_order_log):
            out[t.name] = sorted(tuple(str(v) for v in r) for r in conn.execute(select(t)).all())
    return out


# --- the status page's data ---------------------------------------------------------------------


def test_the_family_member_sees_their_elder_and_nothing_else(env: Env) -> None:
    w = build(env)
    mq, pager = env.mq, f"pw-{env.mq.base}"

    # Before any message: devices never heard, water unknown (no data is not no water).
    first = status(env, w, w.a)
    assert first.status_code == 200, first.text
    s = first.json()
    assert s["elder"] == {"id": w.a, "name": "王秀英", "status": "active", "status_until": None}
    assert {d["id"]: d["condition"] for d in s["devices"]} == {
        "cb-a": "never_heard",
        "gas-a": "never_heard",
        "w-a": "never_heard",
    }
    assert s["water"]["status"] == "unknown" and s["water"]["litres_today"] is None
    assert s["open_alerts"] == [] and s["recent_alerts"] == []

    # A press answered from the watcher's pager (taken, arrived), then resolved by the station.
    mq.event("cb-a", "button.pressed")
    real = page_for(mq, pager, "call_button")
    mq.reply(pager, real, "ack")
    wait_until(lambda: alert_state(env, real) == "acknowledged", what="ack")
    mq.reply(pager, real, "arrived")
    wait_until(lambda: alert_state(env, real) == "on_site", what="arrived")
    env.ok("POST", f"/api/v1/alerts/{real}/resolve", {"outcome": "real", "note": "摔倒，已扶起"})
    # A press the elder cancels at once.
    mq.event("cb-a", "button.pressed")
    wait_until(
        lambda: env.ok("GET", "/api/v1/alerts?device_id=cb-a&state=open"), what="second press"
    )
    [mistake] = env.ok("GET", "/api/v1/alerts?device_id=cb-a&state=open")
    mq.event("cb-a", "button.cancelled")
    wait_until(lambda: alert_state(env, mistake["id"]) == "cancelled", what="cancel")
    # The call button says its battery is low; the gas sensor goes offline (its Last Will).
    mq.raw(
        f"{mq.base}/v1/devices/cb-a/status",
        json.dumps({"online": True, "battery_pct": 12}).encode(),
        retain=True,
    )
    mq.status("gas-a", False)
    # Water used this morning, on the elder's meter; 6 litres in five minutes.
    mq.telemetry("w-a", flow_l=6.0, interval_s=300, battery_pct=90)
    # Elder B has an alert and water too: none of it may show on A's page.
    mq.event("cb-b", "button.pressed")
    mq.telemetry("w-b", flow_l=50.0, interval_s=300)
    b_alert = page_for(mq, pager, "call_button", seen=(real, mistake["id"]))
    wait_until(
        lambda: env.ok("GET", "/api/v1/alerts?device_id=gas-a&state=open"), what="gas offline"
    )
    wait_until(
        lambda: env.ok("GET", "/api/v1/alerts?device_id=cb-a&state=open"), what="battery alert"
    )

    def water_seen() -> Any:
        got = status(env, w, w.a).json()
        return got if got["water"]["status"] == "used" else None

    s = wait_until(water_seen, what="water use on the family page")
    now = datetime.fromtimestamp(env.clock(), SH)
    assert s["today"] == now.date().isoformat() and s["timezone"] == "Asia/Shanghai"

    devs = {d["id"]: d for d in s["devices"]}
    assert set(devs) == {"cb-a", "gas-a", "w-a"}  # never B's
    assert devs["cb-a"]["condition"] == "battery_low" and devs["cb-a"]["battery_pct"] == 12
    assert devs["gas-a"]["condition"] == "offline" and devs["gas-a"]["online"] is False
    assert devs["w-a"]["condition"] == "ok" and devs["w-a"]["kind"] == "water_sensor"
    heard = datetime.fromisoformat(devs["w-a"]["last_heard_at"])
    assert abs((heard - now).total_seconds()) < 120

    water = s["water"]
    used_at = datetime.fromisoformat(water["last_use_at"])
    assert used_at.date() == now.date() and abs((used_at - now).total_seconds()) < 120
    assert used_at.utcoffset() == timedelta(hours=8)  # the station's clock, for "08:12"
    assert water["litres_today"] == 6.0  # A's litres, not B's 50
    assert water["last_use_hour"] is None

    by_id = {a["id"]: a for a in s["open_alerts"] + s["recent_alerts"]}
    assert b_alert not in by_id
    assert {a["kind"] for a in s["open_alerts"]} == {"device_offline", "low_battery"}
    assert all(a["ended"] == "open" for a in s["open_alerts"])
    assert [a["id"] for a in s["recent_alerts"]] == [mistake["id"], real]  # newest first
    done = by_id[real]
    assert done["ended"] == "resolved" and done["outcome"] == "real"
    assert done["taken_by"] == {"name": "李卫国", "role": "watcher"}
    assert done["came"] == [{"name": "李卫国", "role": "watcher"}]
    assert done["device_kind"] == "call_button" and done["priority"] == "P1"
    assert 0 <= done["answered_after_s"] <= done["arrived_after_s"] <= done["closed_after_s"]
    assert done["closed_after_s"] < 60
    assert "note" not in done  # the station's own notes stay with the station
    cancelled = by_id[mistake["id"]]
    assert cancelled["ended"] == "cancelled_by_elder" and cancelled["outcome"] is None
    assert cancelled["taken_by"] is None and cancelled["came"] == []

    # The list of their elders: A only (not the revoked, expired-later, unconfirmed or B).
    mine = env.client.get(f"{FAMILY}/elders", headers=w.fam)
    assert mine.status_code == 200
    assert {e["id"] for e in mine.json()} == {w.a, w.expiring}
    assert {e["name"] for e in mine.json()} == {"王秀英", "孙淑芬"}


def test_service_visits_past_and_to_come(env: Env) -> None:
    w = build(env)
    svc = Services(env)
    now = datetime.fromtimestamp(env.clock(), SH)
    past = svc.order(w.a, scheduled_at=iso(now - timedelta(days=1, hours=2)))
    svc.serve(past, now - timedelta(days=1, hours=1, minutes=55), 45)
    old = svc.order(w.a, scheduled_at=iso(now - timedelta(days=40)))
    svc.serve(old, now - timedelta(days=40), 30)  # longer ago than the page looks back
    soon = svc.order(w.a, scheduled_at=iso(now + timedelta(days=1)))
    far = svc.order(w.a, scheduled_at=iso(now + timedelta(days=40)))  # beyond the window
    applied = svc.order(w.a)  # an application not yet agreed: no time yet
    regular = svc.order(
        w.a,
        recurrence={"weekdays": [0, 2, 4], "at": "11:30", "start": now.date().isoformat()},
    )
    other = svc.order(w.b, scheduled_at=iso(now + timedelta(hours=3)))
    cancelled = svc.order(w.a, scheduled_at=iso(now + timedelta(days=2)))
    env.ok("POST", f"/api/v1/service-orders/{cancelled}/cancel", {"reason": "住院"})

    r = status(env, w, w.a)
    assert r.status_code == 200, r.text
    s = r.json()
    [visit] = s["recent_visits"]
    assert visit["order_id"] == past and visit["state"] == "served"
    assert visit["service_zh"] == "午餐送餐" and visit["service_en"] == "lunch delivery"
    assert visit["worker"] == "王丽娟" and visit["provider"] == "幸福里长者食堂"
    assert visit["minutes"] == 45 and visit["ended_at"] is not None
    assert [v["order_id"] for v in s["upcoming_visits"]] == [soon, applied]
    assert s["upcoming_visits"][1]["scheduled_at"] is None
    assert far not in str(s) and other not in str(s) and old not in str(s)
    [reg] = s["regular_services"]
    assert reg["order_id"] == regular and reg["weekdays"] == [0, 2, 4] and reg["at"] == "11:30"


def test_water_today_is_what_the_meter_said_never_a_guess(env: Env) -> None:
    w = build(env)

    def water() -> dict[str, Any]:
        r = status(env, w, w.expiring)
        assert r.status_code == 200, r.text
        return dict(r.json()["water"])

    assert water()["status"] == "no_sensor"
    meter = {"id": "w-x", "kind": "water_sensor", "elder_id": w.expiring}
    env.ok("POST", "/api/v1/devices", meter, 201)
    assert water() == {
        "status": "unknown",
        "last_use_at": None,
        "last_use_hour": None,
        "litres_today": None,
        "last_report_at": None,
    }
    env.mq.telemetry("w-x", flow_l=0.2, interval_s=300)  # a drip is not a use
    got = wait_until(lambda: (x := water())["status"] == "not_used_yet" and x, what="a report")
    assert got["litres_today"] == 0.2 and got["last_use_at"] is None
    assert got["last_report_at"] is not None
    env.mq.telemetry("w-x", flow_l=3.0, interval_s=300)
    got = wait_until(lambda: (x := water())["status"] == "used" and x, what="a use")
    assert got["litres_today"] == 3.2 and got["last_use_at"] is not None
    # Without the water rule's state (lost, or unreadable: it is left out the same way) the
    # hourly rollups still say water ran, and in which hour; the minute is not made up.
    with env.engine.begin() as conn:
        conn.execute(
            delete(rule_states).where(rule_states.c.key == "w-x", rule_states.c.rule == "water")
        )
    got = water()
    assert got["status"] == "used" and got["last_use_at"] is None
    hour = datetime.fromisoformat(got["last_use_hour"])
    now = datetime.fromtimestamp(env.clock(), SH)
    assert hour.minute == 0 and timedelta(0) <= now - hour < timedelta(hours=2)
    assert got["litres_today"] == 3.2


def test_a_reading_committed_while_the_page_reads_is_seen_whole_or_not_at_all(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The meter's first reading is committed (by the real ingest worker) between the page's read
    of the water rule's state and its read of the day's litres. The page shows the moment before
    the reading (unknown), never litres beside "no report yet"; the next read shows it all. Under
    READ COMMITTED with the litres read on a second connection, CI once saw the mix."""
    import gateway.api_family as api_family

    w = build(env)
    env.ok("POST", "/api/v1/devices", {"id": "w-y", "kind": "water_sensor", "elder_id": w.a}, 201)
    read_states = api_family._states
    armed = [True]

    def rollup_rows() -> int:
        q = select(func.count()).select_from(telemetry_rollups)
        # Read-only: on SQLite a plain transaction would wait for the page's write lock.
        with env.engine.connect().execution_options(readonly=True) as conn:
            return int(conn.execute(q.where(telemetry_rollups.c.device_id == "w-y")).scalar_one())

    def states_then_a_reading(conn: Any, rule: str, keys: Iterable[str]) -> dict[str, Any]:
        got = read_states(conn, rule, keys)
        if rule == "water" and armed[0]:
            armed[0] = False
            env.mq.telemetry("w-y", flow_l=0.2, interval_s=300)
            # PostgreSQL: the worker commits meanwhile. SQLite: the page's transaction holds the
            # write lock, so the worker waits for it and the reading lands after the page.
            deadline = time.monotonic() + 3.0
            while rollup_rows() == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            if env.engine.dialect.name == "postgresql":
                assert rollup_rows() == 1, "the reading was committed during the page's read"
        return got

    monkeypatch.setattr(api_family, "_states", states_then_a_reading)
    r = status(env, w, w.a)
    assert r.status_code == 200, r.text
    assert not armed[0], "the reading was sent while the page read"
    assert r.json()["water"] == {
        "status": "unknown",
        "last_use_at": None,
        "last_use_hour": None,
        "litres_today": None,
        "last_report_at": None,
    }
    got = wait_until(
        lambda: (x := status(env, w, w.a).json()["water"])["status"] == "not_used_yet" and x,
        what="the reading",
    )
    assert got["litres_today"] == 0.2 and got["last_report_at"] is not None


# --- who may see what ---------------------------------------------------------------------------


def test_other_elders_answer_404_like_unknown_ones_and_other_roles_403(env: Env) -> None:
    w = build(env)
    assert status(env, w, w.a).status_code == 200
    for elder in (w.b, w.revoked, w.unconfirmed, "el_does_not_exist", "bad id!"):
        r = status(env, w, elder)
        assert r.status_code == 404, (elder, r.text)
        assert r.json()["detail"] == f"no elder {elder!r}"  # the same words: nothing leaks
        live = env.client.get(f"{FAMILY}/elders/{elder}/live", headers=w.fam)
        assert live.status_code == 404
    assert status(env, w, w.expiring).status_code == 200
    # The link to `expiring` ends an hour from now.
    env.clock.advance(3601)
    assert status(env, w, w.expiring).status_code == 404
    assert status(env, w, w.a).status_code == 200
    assert {e["id"] for e in env.client.get(f"{FAMILY}/elders", headers=w.fam).json()} == {w.a}
    # Revoking A's link: A is gone too, at once.
    env.ok("POST", f"/api/v1/care/family-links/{w.link_a}/revoke", {"reason": "不再需要"})
    assert status(env, w, w.a).status_code == 404
    assert env.client.get(f"{FAMILY}/elders", headers=w.fam).json() == []

    # Every other role: 403, on every family route; no token: 401.
    staff = env.ok("POST", "/api/v1/responders", {"name": "赵站长", "role": "staff"}, 201)["id"]
    vol = env.ok("POST", "/api/v1/responders", {"name": "孙志愿", "role": "volunteer"}, 201)["id"]
    others = {
        "admin": {"Authorization": f"Bearer {ADMIN}"},
        "staff": env.token("staff", "staff", staff),
        "watcher": env.token("watcher", "watcher", w.watcher),
        "volunteer": env.token("vol", "volunteer", vol),
    }
    for role, headers in others.items():
        for path in ("/elders", f"/elders/{w.a}", f"/elders/{w.a}/live"):
            r = env.client.get(FAMILY + path, headers=headers)
            assert r.status_code == 403, (role, path, r.text)
    bare = TestClient(env.client.app)
    assert bare.get(f"{FAMILY}/elders").status_code == 401


def test_reads_are_audited_and_change_nothing(env: Env) -> None:
    w = build(env)
    env.mq.event("cb-a", "button.pressed")
    page_for(env.mq, f"pw-{env.mq.base}", "call_button")
    before = snapshot(env)
    reads = family_audit(env, "read", w.a)
    lists = family_audit(env, "list")

    assert status(env, w, w.a).status_code == 200
    assert status(env, w, w.a).status_code == 200
    assert env.client.get(f"{FAMILY}/elders", headers=w.fam).status_code == 200
    assert status(env, w, w.b).status_code == 404

    assert family_audit(env, "read", w.a) == reads + 2  # one row per read
    assert family_audit(env, "read", w.b) == 0  # a refused read shows nothing, logs nothing
    assert family_audit(env, "list") == lists + 1
    with env.engine.connect() as conn:
        row = conn.execute(
            select(audit_log).where(audit_log.c.elder_id == w.a, audit_log.c.role == "family")
        ).first()
    assert row is not None and row.person_id == w.family and row.resource == "family_status"

    # No route changes anything: only GET is served under /api/v1/family.
    for route in env.client.app.routes:
        if getattr(route, "path", "").startswith(FAMILY):
            assert route.methods <= {"GET", "HEAD"}, route.path
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r = env.client.request(method, f"{FAMILY}/elders/{w.a}", headers=w.fam, json={})
        assert r.status_code == 405, (method, r.status_code)
    assert snapshot(env) == before


def signed_in(env: Env, username: str, role: str, person_id: str) -> tuple[TestClient, str]:
    """A browser-like client with a session cookie (the door the pages use) and its CSRF."""
    password = "pw-" + secrets.token_urlsafe(12)
    create_user(
        env.engine, username, password, role, now_ms=int(env.clock() * 1000), person_id=person_id
    )
    client = TestClient(env.client.app, base_url="https://testserver")
    r = client.post("/api/v1/session", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return client, str(r.json()["csrf_token"])


def test_through_the_pages_sessions_a_staff_members_name_shows(env: Env) -> None:
    w = build(env)
    fam, _ = signed_in(env, "wang.xiaoming", "family", w.family)
    assert [e["id"] for e in fam.get(f"{FAMILY}/elders").json()] == sorted(
        [w.a, w.expiring], key=lambda i: {w.a: "王秀英", w.expiring: "孙淑芬"}[i]
    )
    assert fam.get(f"{FAMILY}/elders/{w.b}").status_code == 404
    staff_id = env.ok("POST", "/api/v1/responders", {"name": "赵站长", "role": "staff"}, 201)["id"]
    staff, csrf = signed_in(env, "zhao.staff", "staff", staff_id)
    assert staff.get(f"{FAMILY}/elders").status_code == 403
    env.mq.event("cb-a", "button.pressed")
    alert_id = page_for(env.mq, f"pw-{env.mq.base}", "call_button")
    r = staff.post(f"/api/v1/alerts/{alert_id}/arrive", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    [shown] = fam.get(f"{FAMILY}/elders/{w.a}").json()["open_alerts"]
    assert shown["id"] == alert_id and shown["state"] == "on_site"
    assert shown["taken_by"] == {"name": "赵站长", "role": "staff"}
    assert shown["came"] == [{"name": "赵站长", "role": "staff"}]
    # A token at the API is "the station", not a name.
    env.ok("POST", f"/api/v1/alerts/{alert_id}/resolve", {"outcome": "false_alarm"})
    [done] = fam.get(f"{FAMILY}/elders/{w.a}").json()["recent_alerts"]
    assert done["outcome"] == "false_alarm" and done["came"][0]["name"] == "赵站长"


# --- live updates -------------------------------------------------------------------------------


class Server:
    """The app on a real HTTP server in this process (an SSE stream needs one)."""

    def __init__(self, app: Any) -> None:
        # timeout_graceful_shutdown: a stream the test closed stays open on the server until
        # its handler writes again (the 15 s keep-alive); close() would wait for it.
        cfg = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, what="the HTTP server")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Stream:
    """Reads an SSE stream on a thread; events land in `events` as (event, data)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ended = threading.Event()
        self.status: int | None = None
        self._resp: httpx.Response | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=30.0))
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as r:
                self._resp = r
                self.status = r.status_code
                event = None
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event:
                        self.events.append((event, json.loads(line[6:])))
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def close(self) -> None:
        shut(self._resp)  # wakes the reading thread (closing the client alone would not)
        self._client.close()


def test_live_stream_tells_of_this_elders_alerts_only_and_ends_with_the_link(env: Env) -> None:
    w = build(env)
    server = Server(create_app(env.gw.runtime))
    pager = f"pw-{env.mq.base}"
    try:
        stream = Stream(f"{server.url}{FAMILY}/elders/{w.a}/live", w.fam)
        wait_until(lambda: stream.status is not None, what="the stream to open")
        assert stream.status == 200
        time.sleep(0.3)  # the feed is tailing
        env.mq.event("cb-b", "button.pressed")  # another elder's: not told
        b_alert = page_for(env.mq, pager, "call_button")
        env.mq.event("cb-a", "button.pressed")
        wait_until(lambda: stream.events, what="a live event", timeout=10)
        a_alert = env.ok("GET", "/api/v1/alerts?device_id=cb-a")[0]["id"]
        assert {d["alert_id"] for _, d in stream.events} == {a_alert}
        assert all(e == "changed" for e, _ in stream.events)
        assert b_alert != a_alert
        assert family_audit(env, "read", w.a) >= 1  # opening the stream is a read

        # The link is revoked: the next change of A's alerts ends the stream, telling nothing.
        env.ok("POST", f"/api/v1/care/family-links/{w.link_a}/revoke", {"reason": "不再需要"})
        told = len(stream.events)
        env.ok("POST", f"/api/v1/alerts/{a_alert}/ack")
        assert stream.ended.wait(10), "the stream did not end with the link"
        assert len(stream.events) == told
        stream.close()
    finally:
        server.close()


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
@pytest.mark.parametrize("how", ["signed_out", "disabled"])
def test_live_stream_of_a_relative_signed_out_or_disabled_ends_within_seconds(
    env: Env, how: str
) -> None:
    w = build(env)
    fam, csrf = signed_in(env, "wang.xiaoming", "family", w.family)
    cookie = {"Cookie": f"{SESSION_COOKIE}={fam.cookies.get(SESSION_COOKIE)}"}
    server = Server(create_app(env.gw.runtime))
    try:
        stream = Stream(f"{server.url}{FAMILY}/elders/{w.a}/live", cookie)
        wait_until(lambda: stream.status is not None, what="the stream to open")
        assert stream.status == 200
        cut = time.monotonic()
        if how == "signed_out":
            r = fam.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
            assert r.status_code == 204, r.text
        else:
            env.ok("POST", "/api/v1/users/wang.xiaoming/disable")
        # Within seconds, not when the stream's five minutes are up.
        assert stream.ended.wait(AUTH_RECHECK_S + 3), "the stream went on after the cut"
        assert time.monotonic() - cut < AUTH_RECHECK_S + 3
        assert stream.events == []
        stream.close()
    finally:
        server.close()
