"""The HTTP API over real HTTP (uvicorn on 127.0.0.1), on a running gateway with a private
Mosquitto, on SQLite and PostgreSQL: tokens, resources, bad input, the alarm answered through
the API, health, metrics, and the demo community seeded by its real client."""

from __future__ import annotations

import dataclasses
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from gateway import tables as T
from gateway.alerting import OutMsg
from gateway.api import create_app
from gateway.auth import create_token, revoke_token
from simulators.community import seed
from tests.support.alarm import Mqtt, wait_until

ADMIN = "admin-" + secrets.token_urlsafe(18)
SHANGHAI = timedelta(hours=8)  # the default SHOUWANG_TIMEZONE


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a loopback port bound here (no race for a free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # At the end, a stream the test has closed is still open on the server until its handler
    # writes again (the 15 s keep-alive): without a limit the server waits for it, and the
    # test with it. A second, then the handlers left are cancelled.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True
    )
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def gw(make_gateway: Callable[..., Any]) -> Any:
    return make_gateway(admin_token=ADMIN)


@pytest.fixture
def published() -> list[OutMsg]:
    """What the API handed to the outbox publisher, in order."""
    return []


@pytest.fixture
def url(gw: Any, published: list[OutMsg]) -> Iterator[str]:
    def publish(msgs: list[OutMsg]) -> None:
        published.extend(msgs)
        gw.runtime.publish(msgs)

    with serving(create_app(dataclasses.replace(gw.runtime, publish=publish))) as base_url:
        yield base_url


@pytest.fixture
def api(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers=bearer(ADMIN), timeout=10.0) as client:
        yield client


def detail(resp: httpx.Response) -> Any:
    """The JSON `detail` of an error answer (failing the test if it is not one)."""
    assert resp.headers["content-type"].startswith("application/json"), resp.text[:200]
    body = resp.json()
    assert "detail" in body, body
    return body["detail"]


def created(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def offset_of(ts: str) -> timedelta | None:
    return datetime.fromisoformat(ts).utcoffset()


def new_elder(api: httpx.Client, name: str = "张秀英") -> str:
    body = {"name": name, "address": "幸福里3号楼2单元502", "phone": "13800000001"}
    return str(created(api.post("/api/v1/elders", json=body))["id"])


def new_responder(api: httpx.Client, name: str, role: str, pager: str, lang: str = "zh-CN") -> str:
    body = {"name": name, "role": role, "pager_id": pager, "language": lang}
    return str(created(api.post("/api/v1/responders", json=body))["id"])


# --- tokens -----------------------------------------------------------------------------------


def test_every_api_call_needs_a_valid_bearer_token(gw: Any, url: str) -> None:
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for method, path in (
            ("GET", "/api/v1/alerts"),
            ("GET", "/api/v1/devices/cb-1"),
            ("POST", "/api/v1/elders"),
            ("POST", "/api/v1/alerts/al_x/ack"),
        ):
            # Refused before the (here malformed) body is even looked at.
            resp = http.request(method, path, json={"bad": True})
            assert resp.status_code == 401, (method, path, resp.text)
            assert resp.headers["www-authenticate"] == "Bearer"
            assert "Bearer" in detail(resp)
        for header in ("Bearer wrong-token", "Basic " + ADMIN, "Bearer", ADMIN, "Bearer  x"):
            resp = http.get("/api/v1/alerts", headers={"Authorization": header})
            assert resp.status_code == 401, header
            assert resp.headers["www-authenticate"] == "Bearer"
            assert detail(resp)
        assert http.get("/api/v1/alerts", headers=bearer(ADMIN)).status_code == 200
        assert http.get("/api/v1/alerts", headers=bearer(ADMIN + "x")).status_code == 401

        token = create_token(gw.engine, "front-desk", role="staff", now_ms=int(time.time() * 1000))
        assert http.get("/api/v1/alerts", headers=bearer(token)).status_code == 200
        with gw.engine.connect() as c:
            [row] = c.execute(select(T.api_tokens)).all()
        assert (row.name, row.role, row.revoked_at) == ("front-desk", "staff", None)
        assert token not in json.dumps([str(v) for v in row])  # only its hash is kept

        other = create_token(gw.engine, "night-shift", now_ms=int(time.time() * 1000))
        assert revoke_token(gw.engine, "front-desk") == 1
        assert revoke_token(gw.engine, "front-desk") == 0
        resp = http.get("/api/v1/alerts", headers=bearer(token))
        assert resp.status_code == 401 and "revoked" in detail(resp)
        assert http.get("/api/v1/alerts", headers=bearer(other)).status_code == 200

        with pytest.raises(ValueError, match="unknown role"):
            create_token(gw.engine, "x", role="root", now_ms=0)

        # Health and metrics are for probes and Prometheus: no token.
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200
        openapi = http.get("/openapi.json").json()
        assert openapi["info"]["title"] == "Shouwang 守望" and openapi["info"]["version"]
        assert "/api/v1/alerts/{alert_id}/resolve" in openapi["paths"]
        assert http.get("/docs").status_code == 200


# --- resources --------------------------------------------------------------------------------


def test_elders_devices_and_responders_are_created_read_and_refused_twice(
    api: httpx.Client,
) -> None:
    elder = created(
        api.post(
            "/api/v1/elders",
            json={"name": " 王桂英 ", "address": "幸福里1号楼", "birth_date": "1941-03-08"},
        )
    )
    assert elder["name"] == "王桂英" and elder["phone"] is None
    assert elder["birth_date"] == "1941-03-08" and offset_of(elder["created_at"]) == SHANGHAI
    eid = elder["id"]
    assert api.get(f"/api/v1/elders/{eid}").json() == elder
    assert [e["id"] for e in api.get("/api/v1/elders").json()] == [eid]
    other = new_elder(api, "李建国")
    assert other != eid  # ids are the gateway's, distinct

    device = created(
        api.post("/api/v1/devices", json={"id": "cb-7.a_1", "kind": "call_button", "elder_id": eid})
    )
    assert device["id"] == "cb-7.a_1" and device["kind"] == "call_button"
    assert device["status"] == "active" and device["elder_id"] == eid
    assert device["online"] is None and device["last_seen_at"] is None
    assert {"battery_pct", "fw"} <= device.keys()
    assert api.get("/api/v1/devices/cb-7.a_1").json() == device
    again = api.post(
        "/api/v1/devices", json={"id": "cb-7.a_1", "kind": "gas_sensor", "elder_id": other}
    )
    assert again.status_code == 409 and "cb-7.a_1" in detail(again)
    created(
        api.post("/api/v1/devices", json={"id": "gas-7", "kind": "gas_sensor", "elder_id": other})
    )
    assert [d["id"] for d in api.get("/api/v1/devices", params={"elder_id": other}).json()] == [
        "gas-7"
    ]
    assert len(api.get("/api/v1/devices").json()) == 2

    retired = api.post("/api/v1/devices/cb-7.a_1/retire")
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    assert api.get("/api/v1/devices/cb-7.a_1").json()["status"] == "retired"
    assert api.post("/api/v1/devices/cb-7.a_1/retire").json()["status"] == "retired"

    watcher = created(
        api.post(
            "/api/v1/responders",
            json={
                "name": "刘晓明",
                "role": "watcher",
                "pager_id": "pager-w-01",
                "phone": "139 0000 0001",
            },
        )
    )
    assert watcher["language"] == "zh-CN" and watcher["pager_id"] == "pager-w-01"
    assert api.get(f"/api/v1/responders/{watcher['id']}").json() == watcher
    family = created(
        api.post(
            "/api/v1/responders", json={"name": "Lucy Wang", "role": "family", "language": "en"}
        )
    )
    assert family["pager_id"] is None and family["language"] == "en"
    dup = api.post(
        "/api/v1/responders",
        json={"name": "另一个人", "role": "volunteer", "pager_id": "pager-w-01"},
    )
    assert dup.status_code == 409 and "pager-w-01" in detail(dup)
    assert [r["role"] for r in api.get("/api/v1/responders").json()] == ["watcher", "family"]
    assert len(api.get("/api/v1/responders", params={"role": "family"}).json()) == 1

    for path in (
        "/api/v1/elders/el_nobody",
        "/api/v1/devices/nothing-here",
        "/api/v1/responders/rs_nobody",
        "/api/v1/alerts/al_nothing",
        "/api/v1/elders/el_nobody/escalation",
        "/api/v1/devices/%00",  # NUL: PostgreSQL would refuse it with an error, not "no rows"
        "/api/v1/devices/" + "x" * 300,
    ):
        resp = api.get(path)
        assert resp.status_code == 404, (path, resp.text)
        assert detail(resp)
    assert api.post("/api/v1/devices/nothing-here/retire").status_code == 404


def test_bad_input_is_a_4xx_with_a_json_detail_never_a_500(api: httpx.Client) -> None:
    eid = new_elder(api)
    json_body = {"content-type": "application/json"}
    E, D, R = "/api/v1/elders", "/api/v1/devices", "/api/v1/responders"

    def el(**fields: Any) -> dict[str, Any]:
        return {"name": "a", "address": "x", **fields}

    def dev(**fields: Any) -> dict[str, Any]:
        return {"id": "cb-ok", "kind": "call_button", "elder_id": eid, **fields}

    def rs(**fields: Any) -> dict[str, Any]:
        return {"name": "a", "role": "watcher", **fields}

    cases: list[tuple[str, str, dict[str, Any] | bytes | None, int, str]] = [
        # (method, path, JSON body or raw bytes, status, text the detail must contain)
        ("POST", E, {"address": "x"}, 422, "name"),
        ("POST", E, el(name=5), 422, "string"),
        ("POST", E, el(name="x" * 101), 422, "100"),
        ("POST", E, el(address="x" * 301), 422, "300"),
        ("POST", E, el(name="   "), 422, "name"),
        ("POST", E, el(name="a\x00b"), 422, "control"),  # PostgreSQL would refuse NUL: a 500
        ("POST", E, el(nick="y"), 422, "nick"),
        ("POST", E, el(phone="call me"), 422, "phone"),
        ("POST", E, el(phone="1" * 33), 422, "32"),
        ("POST", E, el(birth_date="1940/01/02"), 422, "YYYY-MM-DD"),
        ("POST", E, el(birth_date=86400), 422, "YYYY-MM-DD"),
        ("POST", E, el(birth_date="2999-01-01"), 422, "today"),
        ("POST", E, b"{not json", 422, "JSON"),
        ("POST", E, b'["a", "b"]', 422, "body"),
        ("POST", E, b"", 422, "body"),
        ("POST", E, b'{"name": "\\ud800", "address": "x"}', 422, "string"),  # lone surrogate
        ("POST", E, b'{"name": "' + b"x" * 70_000 + b'"}', 413, "bytes"),
        ("POST", D, dev(id="cb 1"), 422, "A-Z"),
        ("POST", D, dev(id="cb/1"), 422, "A-Z"),
        ("POST", D, dev(id=""), 422, "A-Z"),
        ("POST", D, dev(id="x" * 65), 422, "64"),
        ("POST", D, dev(id=7), 422, "string"),
        ("POST", D, dev(kind="smoke_sensor"), 422, "call_button"),
        ("POST", D, dev(elder_id="el_nobody"), 422, "el_nobody"),
        ("POST", D, dev(status="retired"), 422, "status"),
        ("POST", D, {"id": "cb-ok", "kind": "call_button"}, 422, "elder_id"),
        ("POST", R, rs(role="boss"), 422, "watcher"),
        ("POST", R, rs(language="fr"), 422, "zh-CN"),
        ("POST", R, rs(pager_id="p a"), 422, "A-Z"),
        ("POST", R, rs(name=["a"]), 422, "string"),
        ("GET", "/api/v1/alerts?limit=0", None, 422, "limit"),
        ("GET", "/api/v1/alerts?limit=1001", None, 422, "limit"),
        ("GET", "/api/v1/alerts?limit=many", None, 422, "limit"),
        ("GET", "/api/v1/alerts?state=panicking", None, 422, "open"),
        ("GET", "/api/v1/alerts?device_id=%00", None, 422, "device_id"),
        ("GET", "/api/v1/quarantine?reason=whatever", None, 422, "not_json"),
    ]
    for method, path, body, code, must_say in cases:
        if isinstance(body, bytes):
            resp = api.request(method, path, content=body, headers=json_body)
        else:
            resp = api.request(method, path, json=body)
        what = f"{method} {path} {body!r:.80}"
        assert resp.status_code == code, f"{what} -> {resp.status_code} {resp.text[:300]}"
        said = json.dumps(detail(resp), ensure_ascii=False)
        assert must_say in said, f"{what}: {said[:300]}"
    # None of it reached the tables.
    assert [e["id"] for e in api.get("/api/v1/elders").json()] == [eid]
    assert api.get("/api/v1/devices").json() == []
    assert api.get("/api/v1/responders").json() == []


def test_escalation_plan_is_checked_then_stored_and_replaced(api: httpx.Client) -> None:
    eid = new_elder(api)
    w = new_responder(api, "守望员甲", "watcher", "pw-1")
    s = new_responder(api, "工作人员乙", "staff", "ps-1")
    path = f"/api/v1/elders/{eid}/escalation"
    none_yet = api.get(path)
    assert none_yet.status_code == 404 and "staff" in detail(none_yet)

    bad: list[tuple[Any, str]] = [
        ({"steps": []}, "at least one step"),
        ({"steps": [{"responder_ids": [], "ack_timeout_s": 30}]}, "names no responder"),
        ({"steps": [{"responder_ids": [w, w], "ack_timeout_s": 30}]}, "twice"),
        ({"steps": [{"responder_ids": [w], "ack_timeout_s": 1}]}, "ack_timeout_s"),
        ({"steps": [{"responder_ids": [w], "ack_timeout_s": "30"}]}, "integer"),
        ({"steps": [{"responder_ids": [w], "ack_timeout_s": 30.5}]}, "integer"),
        ({"steps": [{"responder_ids": [w]}]}, "ack_timeout_s"),
        ({"steps": [{"responder_ids": [w], "ack_timeout_s": 30, "x": 1}]}, "x"),
        ({"steps": [{"responder_ids": [w], "ack_timeout_s": 30}] * 11}, "at most 10"),
        ({"steps": [{"responder_ids": [w, "rs_ghost"], "ack_timeout_s": 30}]}, "rs_ghost"),
        ({"steps": [{"responder_ids": ["bad id"], "ack_timeout_s": 30}]}, "A-Z"),
        ({"plan": []}, "steps"),
    ]
    for body, must_say in bad:
        resp = api.put(path, json=body)
        assert resp.status_code == 422, (body, resp.text)
        said = json.dumps(detail(resp), ensure_ascii=False)
        assert must_say in said, (body, said)
    assert api.get(path).status_code == 404  # nothing was stored

    plan = {"steps": [{"responder_ids": [w], "ack_timeout_s": 30}]}
    resp = api.put(path, json=plan)
    assert resp.status_code == 200, resp.text
    assert resp.json()["steps"] == plan["steps"] and resp.json()["elder_id"] == eid
    assert offset_of(resp.json()["updated_at"]) == SHANGHAI
    plan2 = {
        "steps": [
            {"responder_ids": [w], "ack_timeout_s": 20},
            {"responder_ids": [s, w], "ack_timeout_s": 60},
        ]
    }
    assert api.put(path, json=plan2).status_code == 200
    assert api.get(path).json()["steps"] == plan2["steps"]
    missing = api.put("/api/v1/elders/el_nobody/escalation", json=plan)
    assert missing.status_code == 404 and "el_nobody" in detail(missing)


# --- the alarm, answered through the API --------------------------------------------------------


def test_a_press_is_paged_and_answered_through_the_api(
    api: httpx.Client, mq: Mqtt, published: list[OutMsg]
) -> None:
    eid = new_elder(api)
    created(
        api.post("/api/v1/devices", json={"id": "cb-api", "kind": "call_button", "elder_id": eid})
    )
    w1 = new_responder(api, "刘晓明", "watcher", "pw-a")
    w2 = new_responder(api, "David Zhang", "watcher", "pw-b", "en")
    staff = new_responder(api, "陈静", "staff", "ps-a")
    plan = {
        "steps": [
            {"responder_ids": [w1, w2], "ack_timeout_s": 30},
            {"responder_ids": [staff], "ack_timeout_s": 60},
        ]
    }
    assert api.put(f"/api/v1/elders/{eid}/escalation", json=plan).status_code == 200

    mq.event("cb-api", "button.pressed", press="long")
    pages = mq.wait_for(lambda m: m["type"] == "page", count=2, timeout=10)
    assert {p["_pager"] for p in pages} == {"pw-a", "pw-b"}
    alert_id = pages[0]["alert_id"]
    assert pages[1]["alert_id"] == alert_id

    [listed] = api.get("/api/v1/alerts", params={"state": "open"}).json()
    assert listed["id"] == alert_id
    assert (listed["kind"], listed["priority"], listed["state"]) == ("call_button", "P1", "open")
    assert (listed["device_id"], listed["elder_id"], listed["step"]) == ("cb-api", eid, 1)
    assert offset_of(listed["created_at"]) == SHANGHAI
    assert offset_of(listed["next_escalation_at"]) == SHANGHAI
    assert api.get("/api/v1/alerts", params={"elder_id": eid}).json()[0]["id"] == alert_id
    assert api.get("/api/v1/alerts", params={"device_id": "cb-api"}).json()[0]["id"] == alert_id
    assert api.get("/api/v1/alerts", params={"device_id": "cb-other"}).json() == []
    assert api.get("/api/v1/alerts", params={"state": "resolved"}).json() == []

    ack = api.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "我马上到"})
    assert ack.status_code == 200, ack.text
    assert ack.json()["state"] == "acknowledged" and ack.json()["acknowledged_by"] == "api:admin"
    assert ack.json()["next_escalation_at"] is None
    # The API acted for nobody's pager: both pagers paged are told they need not go. The
    # notices were handed to the publisher at once (not left for its slower sweep of the outbox).
    handed = sorted((m.kind, m.alert_id, m.topic.split("/")[3]) for m in published)
    assert handed == [("notice", alert_id, "pw-a"), ("notice", alert_id, "pw-b")]
    notices = mq.wait_for(
        lambda m: m["type"] == "notice" and m["state"] == "acknowledged", count=2, timeout=10
    )
    assert {n["_pager"] for n in notices} == {"pw-a", "pw-b"}
    assert all(n["alert_id"] == alert_id for n in notices)
    again = api.post(f"/api/v1/alerts/{alert_id}/ack")  # a second taker: harmless, recorded
    assert again.status_code == 200 and again.json()["state"] == "acknowledged"

    arrive = api.post(f"/api/v1/alerts/{alert_id}/arrive", json={})
    assert arrive.status_code == 200 and arrive.json()["state"] == "on_site"
    assert offset_of(arrive.json()["on_site_at"]) == SHANGHAI

    bad = api.post(f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "fine"})
    assert bad.status_code == 422 and "false_alarm" in json.dumps(detail(bad))
    assert api.post(f"/api/v1/alerts/{alert_id}/resolve").status_code == 422
    done = api.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "real", "note": "扶起，无外伤"}
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["state"], body["outcome"], body["note"]) == ("resolved", "real", "扶起，无外伤")
    assert offset_of(body["closed_at"]) == SHANGHAI
    mq.wait_for(lambda m: m["type"] == "notice" and m["state"] == "resolved", count=2, timeout=10)

    late = api.post(f"/api/v1/alerts/{alert_id}/ack")
    assert late.status_code == 409 and "resolved" in detail(late)
    twice = api.post(f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "test"})
    assert twice.status_code == 409 and "resolved" in detail(twice)
    assert api.post("/api/v1/alerts/al_nothing/ack").status_code == 404
    assert (
        api.post("/api/v1/alerts/al_nothing/resolve", json={"outcome": "real"}).status_code == 404
    )

    full = api.get(f"/api/v1/alerts/{alert_id}").json()
    types = [e["type"] for e in full["timeline"]]
    expected = ["opened", "paged", "acknowledged", "notified", "ack_again", "on_site", "resolved"]
    it = iter(types)
    assert all(t in it for t in expected), types  # in this order, others between allowed
    assert all(offset_of(e["at"]) == SHANGHAI for e in full["timeline"])
    ats = [datetime.fromisoformat(e["at"]) for e in full["timeline"]]
    assert ats == sorted(ats)
    by_type = {e["type"]: e for e in full["timeline"]}
    assert by_type["opened"]["actor"] == "device:cb-api"
    assert by_type["acknowledged"]["actor"] == "api:admin"
    assert by_type["acknowledged"]["detail"] == {"note": "我马上到"}
    assert by_type["resolved"]["detail"]["outcome"] == "real"
    assert {p["responder_id"] for p in by_type["paged"]["detail"]["to"]} == {w1, w2}
    assert full["plan"] == plan["steps"] and full["state"] == "resolved"
    sent_pages = [p for p in full["pages"] if p["type"] == "page"]
    assert {p["pager_id"] for p in sent_pages} == {"pw-a", "pw-b"}
    assert all(p["step"] == 1 and offset_of(p["reply_by"]) == SHANGHAI for p in sent_pages)
    assert len([p for p in full["pages"] if p["type"] == "notice"]) == 4

    def all_sent() -> bool:
        got = api.get(f"/api/v1/alerts/{alert_id}").json()["pages"]
        return all(p["sent_at"] is not None for p in got)

    wait_until(all_sent, timeout=10, what="every page and notice acknowledged by the broker")
    assert not mq.pages("ps-a"), "an acknowledged alert does not escalate to staff"


def test_staff_token_acts_under_its_own_name(api: httpx.Client, mq: Mqtt, gw: Any) -> None:
    eid = new_elder(api)
    created(
        api.post("/api/v1/devices", json={"id": "cb-s", "kind": "call_button", "elder_id": eid})
    )
    w = new_responder(api, "守望员", "watcher", "pw-s")
    plan = {"steps": [{"responder_ids": [w], "ack_timeout_s": 30}]}
    assert api.put(f"/api/v1/elders/{eid}/escalation", json=plan).status_code == 200
    mq.event("cb-s", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=10)
    token = create_token(gw.engine, "值班台", role="staff", now_ms=int(time.time() * 1000))
    resp = api.post(
        f"/api/v1/alerts/{page['alert_id']}/resolve",
        json={"outcome": "false_alarm"},
        headers=bearer(token),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "resolved" and resp.json()["outcome"] == "false_alarm"
    [notice] = mq.wait_for(lambda m: m["type"] == "notice", timeout=10)
    assert notice["_pager"] == "pw-s" and notice["state"] == "resolved"
    timeline = api.get(f"/api/v1/alerts/{page['alert_id']}").json()["timeline"]
    assert [e["actor"] for e in timeline if e["type"] == "resolved"] == ["api:值班台"]


# --- health, metrics, quarantine ------------------------------------------------------------------


def test_healthz_metrics_and_quarantine(api: httpx.Client, mq: Mqtt, url: str) -> None:
    health = httpx.get(f"{url}/healthz", timeout=10)
    assert health.status_code == 200
    body = health.json()
    assert body["broker"]["ok"] is True and body["database"]["ok"] is True
    assert "timeseries" in body and body["down"] == []

    def count(text: str, reason: str) -> float:
        for line in text.splitlines():
            if line.startswith(f'shouwang_quarantined_messages_total{{reason="{reason}"}}'):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no quarantine counter for {reason} in:\n{text[:2000]}")

    metrics = httpx.get(f"{url}/metrics", timeout=10)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert count(metrics.text, "not_json") == 0
    assert count(metrics.text, "unknown_device") == 0

    eid = new_elder(api)
    created(
        api.post("/api/v1/devices", json={"id": "cb-q", "kind": "call_button", "elder_id": eid})
    )
    mq.raw(f"{mq.base}/v1/devices/cb-q/events", b"{this is not json")
    mq.event("nobody-knows-me", "button.pressed")
    wait_until(
        lambda: len(api.get("/api/v1/quarantine").json()) == 2, timeout=10, what="two quarantined"
    )
    newest, oldest = api.get("/api/v1/quarantine").json()
    assert (newest["reason"], oldest["reason"]) == ("unknown_device", "not_json")
    assert newest["id"] > oldest["id"] and offset_of(newest["at"]) == SHANGHAI
    assert oldest["payload"] == "{this is not json" and oldest["topic"].endswith("/cb-q/events")
    only = api.get("/api/v1/quarantine", params={"reason": "not_json", "limit": 5}).json()
    assert [q["id"] for q in only] == [oldest["id"]]
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert count(text, "not_json") == 1 and count(text, "unknown_device") == 1


@pytest.mark.mosquitto  # stops its own broker
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_healthz_is_503_naming_the_broker_while_it_is_down(url: str, mosquitto: Any) -> None:
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    mosquitto.stop()
    try:
        down = wait_until(
            lambda: (r := httpx.get(f"{url}/healthz", timeout=10)).status_code == 503 and r,
            timeout=10,
            what="healthz 503",
        )
        body = down.json()
        assert body["down"] == ["broker"] and body["broker"]["ok"] is False
        assert body["database"]["ok"] is True
    finally:
        mosquitto.start()
    wait_until(
        lambda: httpx.get(f"{url}/healthz", timeout=10).status_code == 200,
        timeout=20,
        what="healthz 200 after the broker is back",
    )


# --- the demo community, seeded by its real client ------------------------------------------------


def test_seed_creates_the_demo_community_then_finds_it_there(
    url: str, api: httpx.Client, mq: Mqtt
) -> None:
    lines: list[str] = []
    community = seed(url, ADMIN, 2, wait_s=10, log_line=lines.append, modules=())
    assert community.created, lines
    assert all(h.elder_id for h in community.homes) and all(p.id for p in community.people)

    devices = api.get("/api/v1/devices").json()
    assert sorted(d["id"] for d in devices) == [
        "cb-001", "cb-002", "gas-001", "gas-002", "water-001", "water-002",
    ]  # fmt: skip
    responders = api.get("/api/v1/responders").json()
    assert {r["pager_id"] for r in responders} == {p.pager_id for p in community.people}
    home = community.homes[0]
    plan = api.get(f"/api/v1/elders/{home.elder_id}/escalation").json()
    ids = {p.pager_id: p.id for p in community.people}
    assert plan["steps"][0] == {
        "responder_ids": [ids[w] for w in home.watchers],
        "ack_timeout_s": 30,
    }

    again = seed(url, ADMIN, 2, wait_s=10, modules=())
    assert not again.created
    assert len(api.get("/api/v1/devices").json()) == 6
    assert len(api.get("/api/v1/responders").json()) == len(community.people)

    # The seeded community works: a press pages the home's watcher.
    mq.event("cb-001", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=10)
    assert page["_pager"] in home.watchers and page["elder"]["name"] == home.elder_name
