"""The service worker's side of the API (gateway/api_office.py, gateway/api_services.py), on
SQLite and PostgreSQL: a `service_worker` token lists the orders dispatched to its worker, takes
its own steps on them (accept, refuse, check-in, check-out), gets 404 for any other order with
nothing changed, 403 when it names another worker, and 403 on every other route; staff keep
entering steps for any worker and get 403 on the worker's list.

The app is the real one on a migrated database with a clock the test sets (no broker needed),
built and seeded as in test_services_api.py.

Also the office page's static side (gateway/web/static/office.*): every string it shows has its
Chinese and English, every code it labels (quarantine reasons, alert kinds and outcomes, order
states, service categories) has a translation, and the markup has nothing the pages' strict
Content-Security-Policy would block.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.measures import NO_OUTCOME, UNRESOLVED
from alerts.model import AlertKind, Outcome
from care.points import TxnKind
from care.services import OrderState, ServiceCategory
from devices.parse import Reason
from gateway.api import create_app
from gateway.auth import create_token
from gateway.runtime import Runtime
from gateway.tables_services import svc_order_log, svc_orders
from gateway.web import STATIC_DIR
from tests.integration.test_services_api import (
    ADMIN,
    NEAR,
    SH,
    Clock,
    World,
    build_runtime,
    iso,
    ok,
)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 2, 8, 0, tzinfo=SH))


@pytest.fixture
def rt(db_url: str, clock: Clock) -> Iterator[Runtime]:
    runtime = build_runtime(db_url, clock)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def clients(rt: Runtime) -> Iterator[tuple[TestClient, TestClient]]:
    """One app; a client that sends only what each test gives, and one with the admin token."""
    made = create_app(rt)
    with TestClient(made) as plain, TestClient(made, headers=bearer(ADMIN)) as admin:
        yield plain, admin


@pytest.fixture
def app(clients: tuple[TestClient, TestClient]) -> TestClient:
    return clients[0]


@pytest.fixture
def api(clients: tuple[TestClient, TestClient]) -> TestClient:
    return clients[1]


@pytest.fixture
def world(api: TestClient, clock: Clock) -> World:
    return World(api, clock)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def worker_token(rt: Runtime, worker_id: str, name: str = "wang-lijuan") -> dict[str, str]:
    return bearer(
        create_token(rt.engine, name, "service_worker", now_ms=rt.now_ms(), person_id=worker_id)
    )


def dispatched(world: World, elder: str, worker: str, at: datetime) -> str:
    oid = world.order(elder, scheduled_at=iso(at))
    ok(
        world.api.post(
            f"/api/v1/service-orders/{oid}/dispatch",
            json={"provider_id": world.provider, "worker_id": worker},
        )
    )
    return oid


def state_of(rt: Runtime, oid: str) -> tuple[str, str | None, int]:
    """The order's state, worker and number of log entries, read from the database."""
    with rt.engine.connect() as conn:
        row = conn.execute(
            select(svc_orders.c.state, svc_orders.c.worker_id).where(svc_orders.c.id == oid)
        ).one()
        steps = conn.execute(select(svc_order_log.c.id).where(svc_order_log.c.order_id == oid))
        return row.state, row.worker_id, len(steps.all())


def detail_code(resp: Any, status: int) -> str:
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    if isinstance(detail, dict):  # the services' refusals: {code, en, zh}
        assert detail["en"] and detail["zh"], detail
        return str(detail["code"])
    return ""


def test_a_service_worker_lists_and_answers_only_their_own_orders(
    world: World, app: TestClient, rt: Runtime, clock: Clock
) -> None:
    elder = world.elder()
    at = datetime(2026, 11, 2, 11, 30, tzinfo=SH)
    mine = dispatched(world, elder, world.worker, at)
    theirs = dispatched(world, elder, world.worker2, at + timedelta(hours=1))
    waiting = world.order(elder, scheduled_at=iso(at + timedelta(days=1)))  # not dispatched
    me = worker_token(rt, world.worker)

    listed = ok(app.get("/api/v1/worker/orders", headers=me))
    assert [o["id"] for o in listed] == [mine]
    assert listed[0]["worker_id"] == world.worker and listed[0]["state"] == "dispatched"
    assert ok(app.get("/api/v1/worker/orders", params={"state": "accepted"}, headers=me)) == []

    # Their own order, step by step, as themselves.
    w = {"worker_id": world.worker}
    assert ok(app.post(f"/api/v1/service-orders/{mine}/accept", json=w, headers=me))["state"] == (
        "accepted"
    )
    clock.set(at)
    ok(
        app.post(
            f"/api/v1/service-orders/{mine}/check-in", json=w | {"at": iso(at)} | NEAR, headers=me
        )
    )
    out = at + timedelta(minutes=40)
    clock.set(out)
    served = ok(
        app.post(
            f"/api/v1/service-orders/{mine}/check-out", json=w | {"at": iso(out)} | NEAR, headers=me
        )
    )
    assert served["state"] == "served" and served["check_out_at"] is not None
    listed = ok(app.get("/api/v1/worker/orders", params={"state": "served"}, headers=me))
    assert [o["id"] for o in listed] == [mine]

    # Another worker's order, an undispatched one, an unknown one: 404, as if they did not exist,
    # and nothing changed.
    before = {oid: state_of(rt, oid) for oid in (theirs, waiting)}
    for oid in (theirs, waiting, "so-nope"):
        for step, body in (
            ("accept", w),
            ("refuse", w | {"reason": "太远"}),
            ("check-in", w | {"at": iso(out)} | NEAR),
            ("check-out", w | {"at": iso(out)} | NEAR),
        ):
            resp = app.post(f"/api/v1/service-orders/{oid}/{step}", json=body, headers=me)
            assert detail_code(resp, 404) == "not_found", (oid, step)
    assert {oid: state_of(rt, oid) for oid in (theirs, waiting)} == before

    # Naming another worker is refused before anything is looked at: 403, on any order.
    for oid in (theirs, mine):
        resp = app.post(
            f"/api/v1/service-orders/{oid}/accept",
            json={"worker_id": world.worker2},
            headers=me,
        )
        assert detail_code(resp, 403) == "not_yourself"
    assert state_of(rt, theirs) == before[theirs]

    # Bad input is still a 422 (checked before access to the order).
    resp = app.post(f"/api/v1/service-orders/{mine}/accept", json={}, headers=me)
    assert resp.status_code == 422, resp.text


def test_a_refused_order_leaves_the_workers_list(
    world: World, app: TestClient, rt: Runtime
) -> None:
    elder = world.elder()
    oid = dispatched(world, elder, world.worker, datetime(2026, 11, 3, 9, 0, tzinfo=SH))
    me = worker_token(rt, world.worker)
    assert [o["id"] for o in ok(app.get("/api/v1/worker/orders", headers=me))] == [oid]
    refused = ok(
        app.post(
            f"/api/v1/service-orders/{oid}/refuse",
            json={"worker_id": world.worker, "reason": "当天生病"},
            headers=me,
        )
    )
    assert refused["state"] == "agreed" and refused["worker_id"] is None
    assert ok(app.get("/api/v1/worker/orders", headers=me)) == []
    # The refusal is in the order's log under the worker's name, entered by their token.
    log = ok(app.get(f"/api/v1/service-orders/{oid}", headers=bearer(ADMIN)))["log"]
    assert log[-1]["actor_id"] == world.worker and log[-1]["recorded_by"] == "api:wang-lijuan"
    # Once refused, it is another worker's business: 404.
    resp = app.post(
        f"/api/v1/service-orders/{oid}/accept", json={"worker_id": world.worker}, headers=me
    )
    assert detail_code(resp, 404) == "not_found"


def test_a_service_worker_is_refused_everywhere_else(
    world: World, app: TestClient, rt: Runtime
) -> None:
    elder = world.elder()
    oid = dispatched(world, elder, world.worker, datetime(2026, 11, 3, 9, 0, tzinfo=SH))
    me = worker_token(rt, world.worker)
    for method, path, body in (
        ("GET", "/api/v1/service-orders", None),
        ("GET", f"/api/v1/service-orders/{oid}", None),
        ("POST", f"/api/v1/service-orders/{oid}/feedback", {"rating": 5}),
        ("POST", f"/api/v1/service-orders/{oid}/cancel", {"reason": "x"}),
        (
            "POST",
            f"/api/v1/service-orders/{oid}/dispatch",
            {"provider_id": world.provider, "worker_id": world.worker},
        ),
        ("GET", "/api/v1/services", None),
        ("GET", f"/api/v1/providers/{world.provider}/workers", None),
        ("GET", "/api/v1/elders", None),
        ("GET", "/api/v1/quarantine", None),
        ("GET", "/api/v1/suppressions", None),
        ("GET", "/api/v1/reports/alerts", None),
        ("GET", "/api/v1/points/accounts", None),
        ("GET", "/api/v1/care/elders", None),
        ("GET", f"/api/v1/care/elders/{elder}", None),
    ):
        resp = app.request(method, path, json=body, headers=me)
        assert resp.status_code == 403, (method, path, resp.text)
    assert state_of(rt, oid)[0] == "dispatched"


def test_the_workers_list_is_for_service_workers_only(
    world: World, app: TestClient, rt: Runtime
) -> None:
    staff = bearer(create_token(rt.engine, "desk", "staff", now_ms=rt.now_ms()))
    for headers in (staff, bearer(ADMIN)):
        assert app.get("/api/v1/worker/orders", headers=headers).status_code == 403
    assert app.get("/api/v1/worker/orders").status_code == 401
    resp = app.get("/api/v1/worker/orders", headers=bearer("not-a-token"))
    assert resp.status_code == 401
    # Staff still enter a worker's step for them (a call to the station), for any worker.
    elder = world.elder()
    oid = dispatched(world, elder, world.worker2, datetime(2026, 11, 3, 9, 0, tzinfo=SH))
    resp = app.post(
        f"/api/v1/service-orders/{oid}/accept", json={"worker_id": world.worker2}, headers=staff
    )
    assert ok(resp)["state"] == "accepted"
    # ...as the dispatched worker only: the state machine's 409 (not an access refusal).
    oid2 = dispatched(world, elder, world.worker2, datetime(2026, 11, 4, 9, 0, tzinfo=SH))
    resp = app.post(
        f"/api/v1/service-orders/{oid2}/accept", json={"worker_id": world.worker}, headers=staff
    )
    assert resp.status_code in (409, 422) and resp.json()["detail"]["zh"], resp.text


def test_a_workers_list_query_is_checked(world: World, app: TestClient, rt: Runtime) -> None:
    me = worker_token(rt, world.worker)
    for params in ({"state": "nonsense"}, {"limit": 0}, {"limit": 1001}, {"offset": -1}):
        assert app.get("/api/v1/worker/orders", params=params, headers=me).status_code == 422


# --- the page's static side ----------------------------------------------------------------------


def _book(name: str) -> dict[str, dict[str, str]]:
    return json.loads((STATIC_DIR / "i18n" / f"{name}.json").read_text(encoding="utf-8"))


def test_the_office_page_has_every_string_in_both_languages() -> None:
    office, common = _book("office"), _book("common")
    assert set(office) == {"zh-CN", "en"}
    assert set(office["zh-CN"]) == set(office["en"]), set(office["zh-CN"]) ^ set(office["en"])
    for lang, book in office.items():
        empty = [k for k, v in book.items() if not v.strip()]
        assert not empty, (lang, empty)
    known = set(office["zh-CN"]) | set(common["zh-CN"])
    html = (STATIC_DIR / "office.html").read_text(encoding="utf-8")
    js = (STATIC_DIR / "office.js").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', html))
    used |= set(re.findall(r'\bt\("([^"]+)"', js))
    used |= {k for pair in re.findall(r'confirmButton\("([^"]+)", "([^"]+)"', js) for k in pair}
    assert used and not used - known, sorted(used - known)
    # The codes the page labels by prefix: one translation for each value the API can give.
    for prefix, values in (
        ("reason", [r.value for r in Reason]),
        ("kind", [k.value for k in AlertKind]),
        ("outcome", [o.value for o in Outcome] + [UNRESOLVED, NO_OUTCOME, "cancelled"]),
        ("ostate", [s.value for s in OrderState]),
        ("scat", [c.value for c in ServiceCategory]),
        ("txn", [k.value for k in TxnKind]),  # a points statement line's kind
    ):
        missing = [v for v in values if f"{prefix}.{v}" not in office["zh-CN"]]
        assert not missing, (prefix, missing)
    # Every quarantine reason is offered in the filter.
    listed = re.search(r"QUARANTINE_REASONS = \[(.*?)\];", js, re.S)
    assert listed and set(re.findall(r'"([a-z0-9_]+)"', listed.group(1))) == {
        r.value for r in Reason
    }


def test_the_office_markup_needs_nothing_the_policy_forbids() -> None:
    html = (STATIC_DIR / "office.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # no inline script
    assert not re.search(r"\son[a-z]+\s*=", html)  # no on*= handlers
    assert "style=" not in html and "<style" not in html
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
        assert ref.startswith("/static/"), ref  # nothing from elsewhere
        assert (STATIC_DIR / ref.removeprefix("/static/")).is_file(), ref
    for name in ("office.js", "office-charts.js"):
        js = (STATIC_DIR / name).read_text(encoding="utf-8")
        assert "innerHTML" not in js and "eval(" not in js, name
        for imported in re.findall(r'from "(/static/[^"]+)"', js):
            assert (STATIC_DIR / imported.removeprefix("/static/")).is_file(), imported
