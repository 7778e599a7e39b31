"""The service module through its HTTP API, on SQLite and PostgreSQL: catalogue, providers,
the order workflow from application to sign-off and supervision, impossible moves and bad input
refused with nothing changed, vouchers consumed and never negative, reversals, idempotent money
moves, statements as JSON and Excel (read back with openpyxl), and a simulated month of
recurring orders whose ledger reconciles with its visits.

The service API needs no broker: the app is built on a Runtime over a migrated engine (the real
database, the real app), with a clock the test sets."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import sqlalchemy.exc
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.alerting import AlertService
from gateway.api import create_app
from gateway.api_services import SignOffIn
from gateway.auth import create_token
from gateway.db import make_engine, migrate
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.services_store import PIN_MAX_FAILURES
from gateway.settings import Settings
from gateway.tables_services import (
    svc_elder_pins,
    svc_idempotency,
    svc_ledger_accounts,
    svc_ledger_txns,
    svc_order_log,
    svc_orders,
)
from simulators.demo_services import seed_services

ADMIN = "admin-services-test-token"
SH = ZoneInfo("Asia/Shanghai")
HOME = {"lat": 39.9300, "lon": 116.4500}
NEAR = {"lat": 39.9301, "lon": 116.4501}  # ~14 m
FAR = {"lat": 39.9500, "lon": 116.4500}  # ~2.2 km
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200  # a signature pad's image (content is not parsed)


class Clock:
    """The gateway's clock, set by the test (epoch seconds)."""

    def __init__(self, at: datetime) -> None:
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t

    def set(self, at: datetime) -> None:
        self.t = at.timestamp()


def build_runtime(db_url: str, clock: Clock) -> Runtime:
    settings = Settings(_env_file=None, database_url=db_url, admin_token=ADMIN)
    engine = make_engine(db_url)
    migrate(engine)
    tz = ZoneInfo(settings.timezone)
    return Runtime(
        settings=settings,
        engine=engine,
        service=AlertService(settings.mqtt_base, tz, settings.default_ack_timeout_s),
        metrics=Metrics(),
        clock=clock,
        tz=tz,
        publish=lambda msgs: None,
        health=lambda: {},
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
def api(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield client


def ok(resp: Any, code: int = 200) -> Any:
    assert resp.status_code == code, resp.text
    return resp.json()


def refused(resp: Any, status: int, code: str | None = None) -> Any:
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    if code is not None:
        assert isinstance(detail, dict) and detail["code"] == code, detail
        assert detail["zh"] and detail["en"]
    return detail


# --- a small world -------------------------------------------------------------------------------


class World:
    """Catalogue, a provider with a worker, a funding source; elders added as needed."""

    def __init__(self, api: TestClient, clock: Clock) -> None:
        self.api, self.clock = api, clock
        ok(
            api.post(
                "/api/v1/services",
                json={
                    "code": "meal",
                    "name_zh": "午餐送餐",
                    "name_en": "lunch delivery",
                    "category": "助餐",
                    "unit": "meal",
                    "unit_price_fen": 1500,
                    "share_fen": {"low_cost": 500, "paid": 1500},
                },
            ),
            201,
        )
        ok(
            api.post(
                "/api/v1/services",
                json={
                    "code": "clean2h",
                    "name_zh": "居家保洁",
                    "name_en": "home cleaning",
                    "category": "cleaning",
                    "unit": "hour",
                    "unit_price_fen": 4000,
                    "share_fen": {"low_cost": 1000, "paid": 4000},
                },
            ),
            201,
        )
        self.provider = ok(
            api.post("/api/v1/providers", json={"name": "幸福里长者食堂", "kind": "canteen"}), 201
        )["id"]
        self.outlet = ok(
            api.post(
                f"/api/v1/providers/{self.provider}/outlets",
                json={"name": "幸福里网点", "address": "幸福里1号", **HOME},
            ),
            201,
        )["id"]
        self.worker = self.add_worker("王丽娟")
        self.worker2 = self.add_worker("李海燕")
        for code, price in (("meal", 1500), ("clean2h", 4000)):
            ok(
                api.post(
                    f"/api/v1/providers/{self.provider}/agreements",
                    json={
                        "service_code": code,
                        "unit_price_fen": price,
                        "valid_from": "2026-01-01",
                    },
                ),
                201,
            )
        ok(
            api.post(
                "/api/v1/voucher-sources",
                json={
                    "id": "civil",
                    "name_zh": "区民政局居家养老服务券",
                    "name_en": "District civil affairs home-care vouchers",
                    "carry_over": ["cleaning"],
                    "allotments": [
                        {"tier": "free", "category": "meals", "monthly_fen": 30000},
                        {"tier": "free", "category": "cleaning", "monthly_fen": 16000},
                        {"tier": "low_cost", "category": "meals", "monthly_fen": 10000},
                    ],
                },
            ),
            201,
        )
        self.staff = ok(
            api.post("/api/v1/responders", json={"name": "赵建军", "role": "staff"}), 201
        )["id"]

    def add_worker(self, name: str) -> str:
        return str(
            ok(
                self.api.post(
                    f"/api/v1/providers/{self.provider}/workers",
                    json={"name": name, "outlet_id": self.outlet},
                ),
                201,
            )["id"]
        )

    def elder(self, name: str = "张秀英", tier: str | None = "free") -> str:
        eid = ok(
            self.api.post("/api/v1/elders", json={"name": name, "address": "幸福里3号楼"}), 201
        )["id"]
        if tier is not None:
            ok(
                self.api.put(
                    "/api/v1/voucher-wallets",
                    json={
                        "source_id": "civil",
                        "elder_id": eid,
                        "tier": tier,
                        "basis": "三无" if tier == "free" else "75+ 优抚",
                        "from_month": "2026-01",
                    },
                )
            )
        return str(eid)

    def order(self, elder: str, category: str = "meals", **agree: Any) -> str:
        oid = ok(
            self.api.post(
                "/api/v1/service-orders",
                json={
                    "elder_id": elder,
                    "category": category,
                    "request": "每天中午送餐",
                    "applied_by": {"role": "family", "id": "女儿"},
                    "home": HOME,
                },
            ),
            201,
        )["id"]
        body = {"service_code": "meal", "funding_source": "civil"} | agree
        ok(self.api.post(f"/api/v1/service-orders/{oid}/agree", json=body))
        return str(oid)

    def serve(
        self, oid: str, start: datetime, minutes: int = 30, where: dict[str, float] = NEAR
    ) -> None:
        """Dispatch, accept, check in and out, feedback: up to the sign-off."""
        a, w = self.api, {"worker_id": self.worker}
        ok(
            a.post(
                f"/api/v1/service-orders/{oid}/dispatch", json={"provider_id": self.provider} | w
            )
        )
        ok(a.post(f"/api/v1/service-orders/{oid}/accept", json=w))
        ok(a.post(f"/api/v1/service-orders/{oid}/check-in", json=w | {"at": iso(start)} | where))
        end = start + timedelta(minutes=minutes)
        ok(a.post(f"/api/v1/service-orders/{oid}/check-out", json=w | {"at": iso(end)} | where))
        ok(a.post(f"/api/v1/service-orders/{oid}/feedback", json={"rating": 5, "on_time": True}))

    def sign(self, oid: str, key: str | None = None) -> Any:
        headers = {"Idempotency-Key": key} if key else {}
        return self.api.post(
            f"/api/v1/service-orders/{oid}/sign-off",
            json={"method": "signature", "signature_base64": base64.b64encode(PNG).decode()},
            headers=headers,
        )

    def allot(self, month: str) -> Any:
        return ok(self.api.post("/api/v1/vouchers/allot", json={"month": month}))

    def balance(self, elder: str, month: str) -> int:
        return int(
            ok(self.api.get(f"/api/v1/elders/{elder}/vouchers", params={"month": month}))[
                "total_fen"
            ]
        )


def iso(dt: datetime) -> str:
    return dt.isoformat()


@pytest.fixture
def world(api: TestClient, clock: Clock) -> World:
    return World(api, clock)


def count(rt: Runtime, table: Any) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# --- the workflow --------------------------------------------------------------------------------


def test_an_order_from_application_to_supervision(world: World, api: TestClient) -> None:
    elder = world.elder()
    run = world.allot("2026-11")
    assert [t["kind"] for t in run["done"]] == ["allot"]
    assert world.balance(elder, "2026-11") == 46000

    at = datetime(2026, 11, 2, 11, 30, tzinfo=SH)
    oid = world.order(elder, scheduled_at=iso(at))
    order = ok(api.get(f"/api/v1/service-orders/{oid}"))
    assert order["state"] == "agreed" and order["tier"] == "free" and order["basis"] == "三无"
    unsigned = api.get(f"/api/v1/service-orders/{oid}/signature")
    assert unsigned.status_code == 404, unsigned.text
    assert unsigned.json()["detail"]["zh"].startswith("没有该工单签名")  # Chinese throughout
    assert (order["total_fen"], order["subsidy_fen"], order["elder_share_fen"]) == (1500, 1500, 0)

    world.clock.set(at + timedelta(hours=2))
    world.serve(oid, at + timedelta(minutes=5))
    done = ok(world.sign(oid))
    assert done["order"]["state"] == "signed_off"
    [consume] = done["ledger"]
    assert consume["kind"] == "consume" and consume["visit_id"] == oid
    assert sorted(ln["fen"] for ln in consume["lines"]) == [-1500, 1500]
    assert world.balance(elder, "2026-11") == 46000 - 1500
    ok(api.post(f"/api/v1/service-orders/{oid}/close", json={"note": "已回访"}))

    detail = ok(api.get(f"/api/v1/service-orders/{oid}"))
    assert [e["action"] for e in detail["log"]] == [
        "apply", "agree", "dispatch", "accept", "checkin", "checkout", "feedback", "signoff",
        "close",
    ]  # fmt: skip
    assert detail["log"][0]["actor_role"] == "family" and detail["log"][0]["actor_id"] == "女儿"
    assert detail["log"][3]["actor_id"] == world.worker
    evv = detail["evv"]  # the six facts
    assert evv["service_code"] == "meal" and evv["elder_id"] == elder
    assert evv["date"] == "2026-11-02" and evv["worker_id"] == world.worker
    assert evv["start_at"].startswith("2026-11-02T11:35") and evv["end_at"].endswith("+08:00")
    assert not evv["far_check_in"] and abs(evv["lat"] - NEAR["lat"]) < 1e-9
    assert detail["sign_off"]["method"] == "signature"
    assert detail["sign_off"]["signature_bytes"] == len(PNG)
    assert detail["feedback_form"]["rating"] == 5
    sig = api.get(f"/api/v1/service-orders/{oid}/signature")
    assert (
        sig.status_code == 200 and sig.content == PNG and sig.headers["content-type"] == "image/png"
    )

    # Supervision: the follow-up call is open, due in a week; made, it closes.
    assert [f["order_id"] for f in ok(api.get("/api/v1/service-supervision/follow-ups"))] == [oid]
    ok(
        api.post(
            f"/api/v1/service-orders/{oid}/follow-ups", json={"outcome": "satisfied", "rating": 5}
        )
    )
    assert ok(api.get("/api/v1/service-supervision/follow-ups")) == []
    ok(api.post(f"/api/v1/service-orders/{oid}/complaints", json={"note": "饭菜偏凉"}), 201)
    [fig] = ok(api.get("/api/v1/service-supervision", params={"month": "2026-11"}))
    assert (fig["done"], fig["late"], fig["missed"], fig["complaints"]) == (1, 0, 0, 1)
    assert fig["rating_avg"] == 5.0


def test_a_far_check_in_is_flagged_a_late_one_counted_a_refusal_redispatched(
    world: World, api: TestClient
) -> None:
    elder = world.elder()
    world.allot("2026-11")
    at = datetime(2026, 11, 2, 11, 30, tzinfo=SH)
    oid = world.order(elder, scheduled_at=iso(at))
    w2 = {"worker_id": world.worker2}
    ok(
        api.post(
            f"/api/v1/service-orders/{oid}/dispatch", json={"provider_id": world.provider} | w2
        )
    )
    refused_ = ok(api.post(f"/api/v1/service-orders/{oid}/refuse", json=w2 | {"reason": "生病"}))
    assert refused_["state"] == "agreed" and refused_["worker_id"] is None
    world.clock.set(at + timedelta(hours=3))
    world.serve(oid, at + timedelta(minutes=50), where=FAR)  # 50 min late, 2 km away
    order = ok(api.get(f"/api/v1/service-orders/{oid}"))
    assert order["check_in_far"] is True and order["check_in_distance_m"] > 2000
    assert order["evv"]["far_check_in"] is True
    [fig] = ok(api.get("/api/v1/service-supervision", params={"month": "2026-11"}))
    assert (fig["late"], fig["far_check_ins"], fig["done"]) == (1, 1, 1)
    # A visit due yesterday with no check-in is missed.
    miss = world.order(elder, scheduled_at=iso(at + timedelta(days=1)))
    ok(
        api.post(
            f"/api/v1/service-orders/{miss}/dispatch",
            json={"provider_id": world.provider, "worker_id": world.worker},
        )
    )
    world.clock.set(at + timedelta(days=2, hours=2))
    [fig] = ok(api.get("/api/v1/service-supervision", params={"month": "2026-11"}))
    assert fig["missed"] == 1 and fig["scheduled"] == 2


def test_impossible_moves_are_refused_with_the_reason_and_change_nothing(
    world: World, api: TestClient, rt: Runtime
) -> None:
    elder = world.elder()
    oid = world.order(elder)
    w = {"worker_id": world.worker}
    before = ok(api.get(f"/api/v1/service-orders/{oid}"))
    logs = count(rt, svc_order_log)

    now = iso(datetime(2026, 11, 2, 7, 0, tzinfo=SH))
    d = refused(
        api.post(f"/api/v1/service-orders/{oid}/check-in", json=w | {"at": now} | NEAR),
        409,
        "order_bad_move",
    )
    assert "check" in d["en"] and "不能" in d["zh"]
    refused(api.post(f"/api/v1/service-orders/{oid}/accept", json=w), 409, "order_bad_move")
    refused(
        api.post(
            f"/api/v1/service-orders/{oid}/sign-off",
            json={"method": "witnessed", "witness_id": world.staff},
        ),
        409,
        "order_bad_move",
    )
    refused(
        api.post(
            f"/api/v1/service-orders/{oid}/agree", json={"service_code": "meal", "tier": "free"}
        ),
        409,
        "order_bad_move",
    )
    ok(api.post(f"/api/v1/service-orders/{oid}/dispatch", json={"provider_id": world.provider} | w))
    # Only the dispatched worker answers.
    refused(
        api.post(f"/api/v1/service-orders/{oid}/accept", json={"worker_id": world.worker2}),
        422,
        "not_the_worker",
    )
    ok(api.post(f"/api/v1/service-orders/{oid}/accept", json=w))
    ok(api.post(f"/api/v1/service-orders/{oid}/check-in", json=w | {"at": now} | NEAR))
    # A begun visit cannot be cancelled; the check-out must follow the check-in.
    refused(
        api.post(f"/api/v1/service-orders/{oid}/cancel", json={"reason": "老人外出"}),
        409,
        "order_bad_move",
    )
    earlier = iso(datetime(2026, 11, 2, 6, 0, tzinfo=SH))
    refused(
        api.post(f"/api/v1/service-orders/{oid}/check-out", json=w | {"at": earlier} | NEAR),
        422,
        "check_out_before_check_in",
    )
    future = iso(datetime(2026, 11, 2, 9, 0, tzinfo=SH))
    refused(
        api.post(f"/api/v1/service-orders/{oid}/check-out", json=w | {"at": future} | NEAR),
        422,
        "time_in_future",
    )
    after = ok(api.get(f"/api/v1/service-orders/{oid}"))
    assert after["state"] == "in_service"
    assert (
        len(after["log"])
        == len(before["log"]) + 3
        == count(rt, svc_order_log) - logs + len(before["log"])
    )
    # A cancelled order stays cancelled.
    other = world.order(elder)
    ok(api.post(f"/api/v1/service-orders/{other}/cancel", json={"reason": "老人住院"}))
    refused(
        api.post(
            f"/api/v1/service-orders/{other}/dispatch", json={"provider_id": world.provider} | w
        ),
        409,
        "order_bad_move",
    )


def test_bad_input_is_refused_with_the_reason_and_nothing_is_stored(
    world: World, api: TestClient, rt: Runtime
) -> None:
    elder = world.elder()
    world.allot("2026-11")
    orders_before = count(rt, svc_orders)
    base = {
        "elder_id": elder,
        "category": "meals",
        "request": "送餐",
        "applied_by": {"role": "elder"},
        "home": HOME,
    }
    for body in (
        base | {"extra": 1},
        base | {"category": "skydiving"},
        base | {"home": {"lat": 91, "lon": 0}},
        base | {"home": {"lat": "39.9", "lon": 116.4}},
        base | {"request": "a\x00b"},
        base | {"applied_by": {"role": "worker"}},
    ):
        detail = refused(api.post("/api/v1/service-orders", json=body), 422)
        assert isinstance(detail, list) and detail[0]["loc"][0] == "body"
    refused(
        api.post("/api/v1/service-orders", json=base | {"elder_id": "el_nobody"}),
        422,
        "elder_unknown",
    )
    assert count(rt, svc_orders) == orders_before

    svc = {
        "code": "bath",
        "name_zh": "助浴",
        "name_en": "bathing",
        "category": "bathing",
        "unit": "visit",
        "unit_price_fen": 5000,
    }
    refused(
        api.post("/api/v1/services", json=svc | {"share_fen": {"low_cost": 6000, "paid": 5000}}),
        422,
        "service_share_above_price",
    )
    refused(
        api.post(
            "/api/v1/services", json=svc | {"share_fen": {"free": 1, "low_cost": 0, "paid": 0}}
        ),
        422,
        "service_free_not_free",
    )
    refused(
        api.post(
            "/api/v1/services",
            json=svc | {"unit_price_fen": -1, "share_fen": {"low_cost": 0, "paid": 0}},
        ),
        422,
    )
    refused(
        api.post(
            "/api/v1/services",
            json=svc | {"unit_price_fen": 12.5, "share_fen": {"low_cost": 0, "paid": 0}},
        ),
        422,
    )
    refused(
        api.post(
            "/api/v1/services",
            json={**svc, "code": "meal", "share_fen": {"low_cost": 0, "paid": 0}},
        ),
        409,
        "service_exists",
    )
    assert api.get("/api/v1/services/bath").status_code == 404

    refused(api.get("/api/v1/service-orders/so_nothing"), 404, "not_found")
    refused(
        api.post("/api/v1/service-orders/so_nothing/accept", json={"worker_id": world.worker}), 404
    )
    refused(api.get("/api/v1/service-orders/%00"), 404)
    oid = world.order(elder)
    refused(
        api.post(
            f"/api/v1/service-orders/{oid}/dispatch",
            json={"provider_id": "pv_none", "worker_id": world.worker},
        ),
        422,
        "provider_unknown",
    )
    world.serve(oid, datetime(2026, 11, 2, 7, 0, tzinfo=SH))
    big = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 33_000).decode()
    refused(
        api.post(
            f"/api/v1/service-orders/{oid}/sign-off",
            json={"method": "signature", "signature_base64": big},
        ),
        422,
        "signature_too_large",
    )
    gif = base64.b64encode(b"GIF89a....").decode()
    refused(
        api.post(
            f"/api/v1/service-orders/{oid}/sign-off",
            json={"method": "signature", "signature_base64": gif},
        ),
        422,
        "signature_format",
    )
    refused(
        api.post(
            f"/api/v1/service-orders/{oid}/sign-off",
            json={"method": "signature", "signature_base64": "@@@"},
        ),
        422,
        "signature_base64",
    )
    # The worker cannot witness their own visit; the PIN is checked against its hash.
    assert api.put(f"/api/v1/elders/{elder}/service-pin", json={"pin": "2468"}).status_code == 204
    refused(
        api.post(f"/api/v1/service-orders/{oid}/sign-off", json={"method": "pin", "pin": "1111"}),
        422,
        "sign_off_pin_wrong",
    )
    refused(
        api.post(f"/api/v1/service-orders/{oid}/sign-off", json={"method": "pin", "pin": "12a4"}),
        422,
    )
    assert ok(api.get(f"/api/v1/service-orders/{oid}"))["state"] == "feedback_given"
    assert count(rt, svc_ledger_txns) == 1  # the allotment only
    done = ok(
        api.post(
            f"/api/v1/service-orders/{oid}/sign-off",
            json={"method": "pin", "pin": "2468"},
            headers={"Idempotency-Key": "pin-sign-off"},
        )
    )
    assert done["order"]["sign_off_method"] == "pin"
    # The request's stored hash (for the Idempotency-Key) does not hold the PIN: no table does
    # but its salted hash, and a million tries of an unsalted SHA-256 would give it away.
    with rt.engine.connect() as conn:
        stored = conn.execute(
            select(svc_idempotency.c.request_sha256).where(svc_idempotency.c.key == "pin-sign-off")
        ).scalar_one()

    def hashed(without_pin: bool) -> str:  # the body, hashed as the gateway hashes it
        data = SignOffIn.model_validate({"method": "pin", "pin": "2468"}).model_dump(
            mode="json", by_alias=True, exclude={"pin"} if without_pin else None
        )
        return hashlib.sha256(json.dumps([f"sign-off:{oid}", data], sort_keys=True).encode())

    assert stored != hashed(without_pin=False).hexdigest()  # as it was: the PIN inside
    assert stored == hashed(without_pin=True).hexdigest()  # the rest of the body still counts
    refused(
        api.get("/api/v1/service-statements/elders/" + elder, params={"month": "2026-13"}),
        422,
        "month_invalid",
    )


def test_sign_off_checks_the_order_before_the_pin(
    world: World, api: TestClient, rt: Runtime
) -> None:
    """An order not ready for its sign-off answers a right and a wrong PIN alike (409, the
    order's state) and counts no miss: no oracle for the PIN, and tries on such an order do
    not lock the elder's PIN (they did: the PIN was checked first)."""
    elder = world.elder()
    world.allot("2026-11")
    assert api.put(f"/api/v1/elders/{elder}/service-pin", json={"pin": "2468"}).status_code == 204
    applied = ok(
        api.post(
            "/api/v1/service-orders",
            json={
                "elder_id": elder,
                "category": "meals",
                "request": "午餐送餐",
                "applied_by": {"role": "elder", "id": elder},
                "home": HOME,
            },
        ),
        201,
    )["id"]
    oid = world.order(elder)
    for order in (applied, oid):
        for pin in ("2468", "1111", "2468", *["0000"] * PIN_MAX_FAILURES):
            refused(
                api.post(
                    f"/api/v1/service-orders/{order}/sign-off", json={"method": "pin", "pin": pin}
                ),
                409,
                "order_bad_move",
            )
    with rt.engine.connect() as conn:
        failures = conn.execute(
            select(svc_elder_pins.c.failures).where(svc_elder_pins.c.elder_id == elder)
        ).scalar_one()
    assert failures == 0
    # Ready now: the PIN is checked, and it is not locked.
    world.serve(oid, datetime(2026, 11, 2, 7, 0, tzinfo=SH))
    refused(
        api.post(f"/api/v1/service-orders/{oid}/sign-off", json={"method": "pin", "pin": "1111"}),
        422,
        "sign_off_pin_wrong",
    )
    done = ok(
        api.post(f"/api/v1/service-orders/{oid}/sign-off", json={"method": "pin", "pin": "2468"})
    )
    assert done["order"]["state"] == "signed_off" and done["order"]["sign_off_method"] == "pin"


def test_vouchers_are_consumed_never_negative_and_reversed(
    world: World, api: TestClient, rt: Runtime
) -> None:
    elder = world.elder("刘桂兰", tier="low_cost")  # 10,000 fen of meals a month; 10 yuan each
    world.allot("2026-11")
    again = world.allot("2026-11")
    assert again["done"] == [] and again["skipped"][0]["code"] == "already_allotted"
    assert world.balance(elder, "2026-11") == 10000
    day = datetime(2026, 11, 2, 11, 30, tzinfo=SH)
    world.clock.set(datetime(2026, 11, 20, 20, 0, tzinfo=SH))
    signed = []
    for i in range(11):  # 10 fit (1000 fen subsidy each), the 11th does not
        oid = world.order(elder)
        world.serve(oid, day + timedelta(days=i))
        resp = world.sign(oid)
        if i < 10:
            body = ok(resp)
            assert body["order"]["elder_share_fen"] == 500 and body["order"]["subsidy_fen"] == 1000
            signed.append(oid)
        else:
            d = refused(resp, 409, "voucher_insufficient")
            assert "0" in d["en"] and "余额不足" in d["zh"]
            assert ok(api.get(f"/api/v1/service-orders/{oid}"))["state"] == "feedback_given"
            last = oid
    assert world.balance(elder, "2026-11") == 0

    # Reversal: the consumption of one visit is corrected; the balance is back, the journal
    # has one more entry (nothing edited), and the visit can be settled again.
    txns = ok(api.get("/api/v1/vouchers/transactions", params={"visit_id": signed[0]}))
    [consume] = txns
    rev = ok(
        api.post(
            "/api/v1/vouchers/reversals", json={"txn_id": consume["id"], "reason": "重复录入"}
        ),
        201,
    )
    assert rev["kind"] == "reversal" and rev["reverses"] == consume["id"]
    assert sorted(ln["fen"] for ln in rev["lines"]) == [-1000, 1000]
    assert world.balance(elder, "2026-11") == 1000
    refused(
        api.post("/api/v1/vouchers/reversals", json={"txn_id": consume["id"], "reason": "再来"}),
        409,
        "already_reversed",
    )
    refused(
        api.post("/api/v1/vouchers/reversals", json={"txn_id": rev["id"], "reason": "x"}),
        409,
        "reversal_of_reversal",
    )
    refused(api.post("/api/v1/vouchers/reversals", json={"txn_id": "nope#1", "reason": "x"}), 404)
    rec = ok(api.get("/api/v1/vouchers/reconciliation"))
    assert not rec["ok"] and f"visit {signed[0]}: not consumed" in rec["problems"]
    # The freed 1000 fen pays the last visit (it signs off now); the first is then refused.
    assert ok(world.sign(last))["order"]["state"] == "signed_off"
    refused(api.post(f"/api/v1/service-orders/{signed[0]}/settle"), 409, "voucher_insufficient")
    refused(api.post(f"/api/v1/service-orders/{signed[1]}/settle"), 409, "visit_already_consumed")
    # Reversing the allotment would take the allotment below zero: refused.
    [allot] = ok(
        api.get("/api/v1/vouchers/transactions", params={"elder_id": elder, "month": "2026-11"})
    )[:1]
    assert allot["kind"] == "allot"
    refused(
        api.post("/api/v1/vouchers/reversals", json={"txn_id": allot["id"], "reason": "发错"}),
        409,
        "would_go_negative",
    )
    assert world.balance(elder, "2026-11") == 0
    rec = ok(api.get("/api/v1/vouchers/reconciliation"))
    assert rec["problems"] == [
        f"visit {signed[0]}: not consumed",
        "payable total 10000 != visit subsidy total 11000",
    ]


def test_a_visit_of_a_closed_month_says_how_to_settle_it_and_can_be(
    world: World, api: TestClient, rt: Runtime
) -> None:
    """A visit checked in on 10-31 and signed off after October was closed: the sign-off is
    refused (nothing changes), naming the close to reverse; once staff reverse it the visit is
    signed off and paid from October with its own date, October closes again, and the ledger
    reconciles."""
    world.clock.set(datetime(2026, 10, 31, 12, 0, tzinfo=SH))
    elder = world.elder()
    world.allot("2026-10")
    oid = world.order(elder)
    world.serve(oid, datetime(2026, 10, 31, 11, 30, tzinfo=SH))
    world.clock.set(datetime(2026, 11, 1, 9, 0, tzinfo=SH))
    run = {"month": "2026-10"}
    [closed] = ok(api.post("/api/v1/vouchers/close", json=run))["done"]
    txns = count(rt, svc_ledger_txns)
    detail = refused(world.sign(oid), 409, "month_closed")
    assert closed["id"] in detail["en"] and closed["id"] in detail["zh"], detail
    assert "/vouchers/reversals" in detail["en"] and "冲正" in detail["zh"]
    assert ok(api.get(f"/api/v1/service-orders/{oid}"))["state"] == "feedback_given"
    assert count(rt, svc_ledger_txns) == txns
    reopen = {"txn_id": closed["id"], "reason": "10-31服务补签 late sign-off"}
    ok(api.post("/api/v1/vouchers/reversals", json=reopen), 201)
    signed = ok(world.sign(oid))
    assert signed["order"]["state"] == "signed_off"
    [consumed] = signed["ledger"]
    assert consumed["month"] == "2026-10" and consumed["visit_id"] == oid
    assert len(ok(api.post("/api/v1/vouchers/close", json=run))["done"]) == 1
    rec = ok(api.get("/api/v1/vouchers/reconciliation", params={"month": "2026-10"}))
    assert rec["ok"], rec["problems"]


def test_the_journal_is_append_only_in_the_database(world: World, rt: Runtime) -> None:
    world.order(world.elder())
    world.allot("2026-11")
    for stmt in (
        svc_ledger_txns.update().values(reason="edited"),
        svc_ledger_txns.delete(),
        svc_order_log.update().values(detail="edited"),
        svc_order_log.delete(),
    ):
        with (
            pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"),
            rt.engine.begin() as conn,
        ):
            conn.execute(stmt)
    assert count(rt, svc_ledger_txns) == 1


def test_an_application_retried_with_its_key_makes_one_order_naming_the_applicant(
    world: World, api: TestClient, rt: Runtime
) -> None:
    """A double click (the same Idempotency-Key) makes one order and answers it again; another
    body under the key is refused. A family application entered at the desk without the
    relative's id is not put down to the desk's login as a family member."""
    elder = world.elder()
    body = {
        "elder_id": elder,
        "category": "meals",
        "request": "每天中午送餐",
        "applied_by": {"role": "family"},
        "home": HOME,
    }
    before = count(rt, svc_orders)
    first = ok(
        api.post("/api/v1/service-orders", json=body, headers={"Idempotency-Key": "a1"}), 201
    )
    again = ok(
        api.post("/api/v1/service-orders", json=body, headers={"Idempotency-Key": "a1"}), 201
    )
    assert again == first and count(rt, svc_orders) == before + 1
    other = body | {"request": "助浴"}
    refused(
        api.post("/api/v1/service-orders", json=other, headers={"Idempotency-Key": "a1"}),
        409,
        "idempotency_key_reused",
    )
    assert first["applied_by"] == f"family:family-of:{elder}", first
    own = ok(api.post("/api/v1/service-orders", json=body | {"applied_by": {"role": "elder"}}), 201)
    assert own["applied_by"] == f"elder:{elder}"
    desk = ok(
        api.post("/api/v1/service-orders", json=body | {"applied_by": {"role": "staff"}}), 201
    )
    assert desk["applied_by"].startswith("staff:api:")
    assert count(rt, svc_orders) == before + 3


def test_money_moves_are_idempotent_by_key(world: World, api: TestClient, rt: Runtime) -> None:
    elder = world.elder()
    first = ok(
        api.post(
            "/api/v1/vouchers/allot",
            json={"month": "2026-11"},
            headers={"Idempotency-Key": "run-2026-11"},
        )
    )
    second = ok(
        api.post(
            "/api/v1/vouchers/allot",
            json={"month": "2026-11"},
            headers={"Idempotency-Key": "run-2026-11"},
        )
    )
    assert first == second and len(first["done"]) == 1
    refused(
        api.post(
            "/api/v1/vouchers/allot",
            json={"month": "2026-12"},
            headers={"Idempotency-Key": "run-2026-11"},
        ),
        409,
        "idempotency_key_reused",
    )
    oid = world.order(elder)
    world.serve(oid, datetime(2026, 11, 2, 7, 0, tzinfo=SH))
    a = ok(world.sign(oid, key="k-1"))
    b = ok(world.sign(oid, key="k-1"))
    assert a == b
    refused(world.sign(oid, key="k-2"), 409, "order_bad_move")  # a new key: a new (impossible) move
    assert count(rt, svc_ledger_txns) == 2
    assert world.balance(elder, "2026-11") == 46000 - 1500


def test_statements_as_json_and_excel(world: World, api: TestClient) -> None:
    free = world.elder("张秀英")
    low = world.elder("刘桂兰", tier="low_cost")
    own = world.elder("陈德明", tier=None)  # no vouchers: pays in full
    world.allot("2026-11")
    world.clock.set(datetime(2026, 11, 30, 20, 0, tzinfo=SH))
    day = datetime(2026, 11, 3, 11, 30, tzinfo=SH)
    for elder in (free, low):
        for i in range(3):
            oid = world.order(elder)
            world.serve(oid, day + timedelta(days=i))
            ok(world.sign(oid))
    oid = world.order(own, funding_source=None, tier="paid")
    world.serve(oid, day)
    ok(
        api.post(
            f"/api/v1/service-orders/{oid}/sign-off",
            json={"method": "witnessed", "witness_id": world.staff},
        )
    )

    st = ok(api.get(f"/api/v1/service-statements/elders/{low}", params={"month": "2026-11"}))
    assert (st["allotted_fen"], st["consumed_fen"], st["closing_fen"]) == (10000, 3000, 7000)
    assert st["elder_share_ledger_fen"] == 1500 and len(st["visits"]) == 3
    st_own = ok(api.get(f"/api/v1/service-statements/elders/{own}", params={"month": "2026-11"}))
    assert st_own["elder_paid_unfunded_fen"] == 1500 and st_own["allotted_fen"] == 0
    prov = ok(
        api.get(
            f"/api/v1/service-statements/providers/{world.provider}", params={"month": "2026-11"}
        )
    )
    assert prov["payable_by_source_fen"] == {"civil": 3 * 1500 + 3 * 1000}
    assert prov["elder_share_fen"] == 1500 and prov["unfunded_fen"] == 1500
    assert len(prov["visits"]) == 7
    src = ok(api.get("/api/v1/service-statements/sources/civil", params={"month": "2026-11"}))
    assert src["allotted_fen"] == 46000 + 10000 and src["total_payable_fen"] == 7500

    # Month end: meals expire back to the source, cleaning carries over.
    early = ok(api.post("/api/v1/vouchers/close", json={"month": "2026-11"}))
    assert early["done"] == [] and {s["code"] for s in early["skipped"]} == {"month_not_over"}
    world.clock.set(datetime(2026, 12, 1, 2, 0, tzinfo=SH))
    closed = ok(api.post("/api/v1/vouchers/close", json={"month": "2026-11"}))
    assert {t["kind"] for t in closed["done"]} == {"carry", "expire"}
    st = ok(api.get(f"/api/v1/service-statements/elders/{free}", params={"month": "2026-11"}))
    assert (st["expired_fen"], st["carried_out_fen"], st["closing_fen"]) == (30000 - 4500, 16000, 0)
    src = ok(api.get("/api/v1/service-statements/sources/civil", params={"month": "2026-11"}))
    assert src["returned_fen"] == (30000 - 4500) + (10000 - 3000)
    world.allot("2026-12")
    assert world.balance(free, "2026-12") == 30000 + 16000 + 16000  # cleaning carried in

    resp = api.get(
        f"/api/v1/service-statements/providers/{world.provider}",
        params={"month": "2026-11", "format": "xlsx"},
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(
        "application/vnd.openxml"
    )
    wb = openpyxl.load_workbook(io.BytesIO(resp.content))
    summary = {r[0]: r[1] for r in wb["汇总 Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["应付合计(分) Total payable fen"] == 7500
    assert summary["服务次数 Visits"] == 7
    rows = list(wb["明细 Visits"].iter_rows(min_row=2, values_only=True))
    assert len(rows) == 7 and sum(r[10] for r in rows) == 7500 and sum(r[11] for r in rows) == 3000
    for path in (f"elders/{free}", "sources/civil"):
        x = api.get(
            f"/api/v1/service-statements/{path}", params={"month": "2026-11", "format": "xlsx"}
        )
        assert x.status_code == 200
        assert openpyxl.load_workbook(io.BytesIO(x.content))["汇总 Summary"]["B3"].value is not None
    assert ok(api.get("/api/v1/vouchers/reconciliation"))["ok"]


def test_a_stations_staff_get_their_stations_part_of_statements_and_reconciliation(
    world: World, api: TestClient, rt: Runtime
) -> None:
    """A provider's and a source's month and the reconciliation, asked by the staff of a station,
    hold their station's elders (and those of none) only: no line, allotment or problem of
    another station's elder. The admin's hold every station's."""
    stations = {"a": "红庙站", "b": "金台站"}
    elders = {who: world.elder(name) for who, name in (("a", "王秀英"), ("b", "周玉芬"))}
    tokens = {}
    for who, station in stations.items():
        register = {
            "elder_id": elders[who],
            "name": "老人",
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
            "station": station,
        }
        ok(api.post("/api/v1/care/elders", json=register), 201)
        staff = ok(api.post("/api/v1/responders", json={"name": "站员", "role": "staff"}), 201)
        ok(api.put(f"/api/v1/care/people/{staff['id']}/profile", json={"station": station}))
        now = int(world.clock() * 1000)
        tokens[who] = create_token(
            rt.engine, f"desk-{who}", "staff", now_ms=now, person_id=staff["id"]
        )
    world.allot("2026-11")
    world.clock.set(datetime(2026, 11, 30, 20, 0, tzinfo=SH))
    visits = {}
    for who, elder in elders.items():
        visits[who] = world.order(elder)
        world.serve(visits[who], datetime(2026, 11, 3, 11, 30, tzinfo=SH))
        ok(world.sign(visits[who]))

    def get(who: str, path: str, **params: str) -> Any:
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who in tokens else {}
        return api.get(path, params={"month": "2026-11", **params}, headers=headers)

    provider = f"/api/v1/service-statements/providers/{world.provider}"
    for who in ("a", "b"):
        st = ok(get(who, provider))
        assert [v["elder_id"] for v in st["visits"]] == [elders[who]]
        assert st["payable_by_source_fen"] == {"civil": 1500} and st["total_payable_fen"] == 1500
        book = openpyxl.load_workbook(io.BytesIO(get(who, provider, format="xlsx").content))
        assert [r[2] for r in book["明细 Visits"].iter_rows(min_row=2, values_only=True)] == [
            elders[who]
        ]
        src = ok(get(who, "/api/v1/service-statements/sources/civil"))
        assert (src["allotted_fen"], src["total_payable_fen"]) == (30000 + 16000, 1500)
    st = ok(get("admin", provider))
    assert {v["elder_id"] for v in st["visits"]} == set(elders.values())
    assert st["total_payable_fen"] == 3000
    src = ok(get("admin", "/api/v1/service-statements/sources/civil"))
    assert (src["allotted_fen"], src["total_payable_fen"]) == (2 * 46000, 3000)

    # A's visit unconsumed and A's allotment tampered with: problems of A's, and A's alone
    [consume] = ok(api.get("/api/v1/vouchers/transactions", params={"visit_id": visits["a"]}))
    reversal = {"txn_id": consume["id"], "reason": "重复录入"}
    ok(api.post("/api/v1/vouchers/reversals", json=reversal), 201)
    with rt.engine.begin() as conn:
        a = svc_ledger_accounts.c
        conn.execute(
            svc_ledger_accounts.update()
            .where(a.kind == "allot", a.elder_id == elders["a"])
            .values(balance_fen=a.balance_fen + 7)
        )
    b_rec = ok(get("b", "/api/v1/vouchers/reconciliation"))
    assert b_rec["ok"] and b_rec["problems"] == [] and b_rec["visits"] == 1, b_rec
    b_txns = api.get("/api/v1/vouchers/transactions", params={"elder_id": elders["b"]})
    assert b_rec["transactions"] == len(ok(b_txns)) > 0
    for who in ("a", "admin"):
        rec = ok(get(who, "/api/v1/vouchers/reconciliation"))
        assert f"visit {visits['a']}: not consumed" in rec["problems"]
        assert any(p.startswith(f"account allot:civil:{elders['a']}") for p in rec["problems"])


def test_recurring_orders_generate_their_visits_once(world: World, api: TestClient) -> None:
    elder = world.elder()
    rec = {"weekdays": [0, 1, 2, 3, 4], "at": "11:30", "start": "2026-11-01"}
    parent = world.order(elder, recurrence=rec)
    refused(
        api.post(
            f"/api/v1/service-orders/{parent}/dispatch",
            json={"provider_id": world.provider, "worker_id": world.worker},
        ),
        409,
        "order_recurring_parent",
    )
    made = ok(
        api.post(
            f"/api/v1/service-orders/{parent}/generate",
            json={"from": "2026-11-01", "to": "2026-11-30"},
        ),
        201,
    )
    assert len(made) == 21 and made[0]["id"] == f"{parent}@2026-11-02"
    assert (
        made[0]["scheduled_at"] == "2026-11-02T11:30:00.000+08:00" and made[0]["state"] == "agreed"
    )
    assert (
        ok(
            api.post(
                f"/api/v1/service-orders/{parent}/generate",
                json={"from": "2026-11-01", "to": "2026-11-30"},
            ),
            201,
        )
        == []
    )
    again = ok(
        api.post("/api/v1/service-orders/generate", json={"from": "2026-11-15", "to": "2026-12-06"})
    )
    assert again["created"] == 4  # Dec 1-4 (Tue-Fri); Nov 15-30 were made already
    refused(
        api.post(
            "/api/v1/service-orders/generate", json={"from": "2026-11-01", "to": "2027-02-01"}
        ),
        422,
        "range_too_long",
    )
    child = made[0]["id"]
    got = ok(api.get(f"/api/v1/service-orders/{child}"))
    assert got["parent_id"] == parent
    assert got["log"][0]["action"] == "generate"  # logged when made, not when due
    assert got["log"][0]["at"].startswith("2026-11-02T08:00")
    ok(api.post(f"/api/v1/service-orders/{parent}/close", json={"note": "协议到期"}))
    assert (
        ok(
            api.post(
                "/api/v1/service-orders/generate", json={"from": "2026-12-01", "to": "2026-12-31"}
            )
        )["created"]
        == 0
    )


def _register(api: TestClient, elder: str, station: str | None = None) -> None:
    """The elder in the care registry (whose status and station the service module follows)."""
    register = {
        "station": station,
        "elder_id": elder,
        "name": "老人",
        "gender": "female",
        "birth_date": "1940-01-01",
        "address": {"district": "朝阳区", "subdistrict": "八里庄街道", "community": "红庙社区"},
        "living_situation": "lives_alone",
        "self_care": "independent",
    }
    ok(api.post("/api/v1/care/elders", json=register), 201)


def test_a_deceased_or_moved_elder_gets_no_new_service_visit_or_vouchers(
    world: World, api: TestClient, rt: Runtime
) -> None:
    """Once the registry says an elder died (or moved away), no order is applied for, agreed or
    dispatched for them, no visit is generated or checked in after that day, and the monthly
    run allots them nothing from the next month: each refused with the reason (409
    elder_deceased / elder_moved) and nothing stored. Before, all of it went through, and a
    visit to a dead elder could be signed off and its subsidy paid."""
    world.clock.set(datetime(2026, 11, 12, 9, 0, tzinfo=SH))
    elder = world.elder("马春生")
    _register(api, elder)
    world.allot("2026-11")
    rec = {"weekdays": [0, 1, 2, 3, 4], "at": "11:30", "start": "2026-11-02"}
    parent = world.order(elder, recurrence=rec)
    applied = ok(
        api.post(
            "/api/v1/service-orders",
            json={
                "elder_id": elder,
                "category": "meals",
                "request": "送餐",
                "applied_by": {"role": "family"},
                "home": HOME,
            },
        ),
        201,
    )["id"]
    agreed = world.order(elder, scheduled_at="2026-11-11T11:30:00+08:00")
    visit = world.order(elder, scheduled_at="2026-11-11T11:30:00+08:00")
    w = {"worker_id": world.worker}
    ok(
        api.post(
            f"/api/v1/service-orders/{visit}/dispatch", json={"provider_id": world.provider} | w
        )
    )
    ok(api.post(f"/api/v1/service-orders/{visit}/accept", json=w))
    died = {"status": "deceased", "since": "2026-11-10", "note": "病故"}
    ok(api.post(f"/api/v1/care/elders/{elder}/status", json=died))

    orders, log = count(rt, svc_orders), count(rt, svc_order_log)
    apply = {
        "elder_id": elder,
        "category": "meals",
        "request": "送餐",
        "applied_by": {"role": "family"},
        "home": HOME,
    }
    detail = refused(api.post("/api/v1/service-orders", json=apply), 409, "elder_deceased")
    assert "2026-11-10" in detail["en"] and "已故" in detail["zh"]
    body = {"service_code": "meal", "funding_source": "civil"}
    refused(api.post(f"/api/v1/service-orders/{applied}/agree", json=body), 409, "elder_deceased")
    dispatch = {"provider_id": world.provider} | w
    refused(
        api.post(f"/api/v1/service-orders/{agreed}/dispatch", json=dispatch), 409, "elder_deceased"
    )
    check_in = w | {"at": "2026-11-11T11:35:00+08:00"} | NEAR
    refused(
        api.post(f"/api/v1/service-orders/{visit}/check-in", json=check_in), 409, "elder_deceased"
    )
    assert (count(rt, svc_orders), count(rt, svc_order_log)) == (orders, log)
    # The agreement's visits stop the day before the death; the station closes it.
    made = ok(
        api.post(
            f"/api/v1/service-orders/{parent}/generate",
            json={"from": "2026-11-02", "to": "2026-11-30"},
        ),
        201,
    )
    assert [m["id"].split("@")[1][-2:] for m in made] == ["02", "03", "04", "05", "06", "09"]
    assert ok(
        api.post("/api/v1/service-orders/generate", json={"from": "2026-11-10", "to": "2026-12-31"})
    ) == {"parents": 1, "created": 0, "ids": []}
    # No December vouchers for a dead elder; another elder's run goes on.
    other = world.elder("周玉芬")
    run = world.allot("2026-12")
    assert [t["elder_id"] for t in run["done"]] == [other]
    [skip] = run["skipped"]
    assert (skip["elder_id"], skip["code"]) == (elder, "elder_deceased")
    assert world.balance(elder, "2026-12") == 0 and world.balance(other, "2026-12") == 46000

    # Moved away: the same, until they come back.
    mover = world.elder("王秀英")
    _register(api, mover)
    ok(api.post(f"/api/v1/care/elders/{mover}/status", json={"status": "moved"}))
    detail = refused(
        api.post("/api/v1/service-orders", json=apply | {"elder_id": mover}), 409, "elder_moved"
    )
    assert "已迁出" in detail["zh"]
    ok(api.post(f"/api/v1/care/elders/{mover}/status", json={"status": "active"}))
    ok(api.post("/api/v1/service-orders", json=apply | {"elder_id": mover}), 201)


def test_a_stations_staff_get_their_stations_supervision_figures(
    world: World, api: TestClient, rt: Runtime
) -> None:
    """The supervision figures (visits, ratings, complaints, follow-up calls) asked by a
    station's staff count their station's elders' orders only, as the follow-up list does;
    before, they counted every station's (another station's ratings and complaints showed)."""
    stations = {"a": "红庙站", "b": "金台站"}
    tokens = {}
    world.clock.set(datetime(2026, 11, 30, 20, 0, tzinfo=SH))
    for who, station in stations.items():
        elder = world.elder()
        _register(api, elder, station)
        world.allot("2026-11")
        staff = ok(api.post("/api/v1/responders", json={"name": "站员", "role": "staff"}), 201)
        ok(api.put(f"/api/v1/care/people/{staff['id']}/profile", json={"station": station}))
        tokens[who] = create_token(
            rt.engine,
            f"desk-{who}",
            "staff",
            now_ms=int(world.clock() * 1000),
            person_id=staff["id"],
        )
        oid = world.order(elder, scheduled_at="2026-11-03T11:30:00+08:00")
        world.serve(oid, datetime(2026, 11, 3, 11, 30, tzinfo=SH))
        ok(world.sign(oid))
        if who == "a":
            complaint = {"note": "饭菜凉了"}
            ok(api.post(f"/api/v1/service-orders/{oid}/complaints", json=complaint), 201)

    def figures(who: str) -> Any:
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who in tokens else {}
        got = ok(api.get("/api/v1/service-supervision?month=2026-11", headers=headers))
        return {
            k: v
            for k, v in next(f for f in got if f["service_code"] == "meal").items()
            if k in ("scheduled", "done", "ratings", "complaints", "follow_ups_open")
        }

    one = {"scheduled": 1, "done": 1, "ratings": 1, "follow_ups_open": 1}
    assert figures("a") == one | {"complaints": 1}
    assert figures("b") == one | {"complaints": 0}
    assert figures("admin") == {k: 2 * v for k, v in one.items()} | {"complaints": 1}


# --- a simulated month ---------------------------------------------------------------------------


def test_a_simulated_month_reconciles(world: World, api: TestClient, rt: Runtime) -> None:
    """Six elders, meals every weekday and cleaning every Tuesday, generated by recurring orders;
    workers who sometimes refuse, check in late or far away, elders out (cancelled), vouchers
    that run out for one; then month end. The ledger's totals equal the visits' totals."""
    rng = random.Random(5)
    tiers = ["free", "free", "low_cost", "low_cost", "low_cost", None]
    elders = [world.elder(f"老人{'甲乙丙丁戊己'[i]}", tier=t) for i, t in enumerate(tiers)]
    world.allot("2026-11")
    for eid, tier in zip(elders, tiers, strict=True):
        fund = {"funding_source": "civil"} if tier else {"funding_source": None, "tier": "paid"}
        world.order(
            eid,
            recurrence={"weekdays": [0, 1, 2, 3, 4], "at": "11:30", "start": "2026-11-01"},
            **fund,
        )
        if tier == "free":
            world.order(
                eid,
                category="cleaning",
                service_code="clean2h",
                quantity=2,
                recurrence={"weekdays": [1], "at": "09:00", "start": "2026-11-01"},
                **fund,
            )
    gen = ok(
        api.post("/api/v1/service-orders/generate", json={"from": "2026-11-01", "to": "2026-11-30"})
    )
    assert gen["created"] == 6 * 21 + 2 * 4
    world.clock.set(datetime(2026, 12, 1, 1, 0, tzinfo=SH))
    visits = [
        o
        for o in ok(api.get("/api/v1/service-orders", params={"month": "2026-11", "limit": 5000}))
        if o["parent_id"]
    ]
    outcomes: dict[str, int] = {"signed": 0, "insufficient": 0, "cancelled": 0, "missed": 0}
    for o in visits:
        oid, at = o["id"], datetime.fromisoformat(o["scheduled_at"])
        r = rng.random()
        if r < 0.05:
            ok(api.post(f"/api/v1/service-orders/{oid}/cancel", json={"reason": "老人外出"}))
            outcomes["cancelled"] += 1
            continue
        if r < 0.08:
            outcomes["missed"] += 1
            continue
        if rng.random() < 0.1:
            w2 = {"worker_id": world.worker2}
            ok(
                api.post(
                    f"/api/v1/service-orders/{oid}/dispatch",
                    json={"provider_id": world.provider} | w2,
                )
            )
            ok(api.post(f"/api/v1/service-orders/{oid}/refuse", json=w2 | {"reason": "临时有事"}))
        late = timedelta(minutes=45 if rng.random() < 0.1 else rng.randint(-10, 10))
        world.serve(
            oid, at + late, minutes=rng.randint(20, 120), where=FAR if rng.random() < 0.05 else NEAR
        )
        resp = world.sign(oid)
        if resp.status_code == 409:
            assert resp.json()["detail"]["code"] == "voucher_insufficient"
            outcomes["insufficient"] += 1
        else:
            ok(resp)
            outcomes["signed"] += 1
    assert sum(outcomes.values()) == len(visits) == 6 * 21 + 2 * 4
    assert outcomes["signed"] > 80 and outcomes["insufficient"] > 0  # the low-cost elders run out
    # Visits that could not be paid by vouchers stay unsigned: not charged, not in the ledger.
    closed = ok(api.post("/api/v1/vouchers/close", json={"month": "2026-11"}))
    assert len(closed["done"]) == 5

    rec = ok(api.get("/api/v1/vouchers/reconciliation", params={"month": "2026-11"}))
    assert rec["ok"], rec["problems"]
    orders = ok(
        api.get(
            "/api/v1/service-orders",
            params={"month": "2026-11", "limit": 5000, "state": "signed_off"},
        )
    )
    funded = [o for o in orders if o["funding_source"]]
    subsidy = sum(o["subsidy_fen"] for o in funded)
    share = sum(o["elder_share_fen"] for o in funded)
    assert rec["ledger_payable_fen"] == rec["visit_subsidy_fen"] == subsidy > 0
    assert rec["month_ledger_payable_fen"] == subsidy
    assert rec["ledger_elder_share_fen"] == share
    prov = ok(
        api.get(
            f"/api/v1/service-statements/providers/{world.provider}", params={"month": "2026-11"}
        )
    )
    assert prov["total_payable_fen"] == subsidy
    src = ok(api.get("/api/v1/service-statements/sources/civil", params={"month": "2026-11"}))
    assert src["allotted_fen"] - src["returned_fen"] == src["net_out_fen"]
    # Money is conserved: what the source put in = consumed + returned + carried forward.
    bal = sum(world.balance(e, "2026-12") for e in elders)
    assert src["allotted_fen"] == subsidy + src["returned_fen"] + bal
    for eid in elders:
        for a in ok(api.get(f"/api/v1/elders/{eid}/vouchers"))["accounts"]:
            assert a["balance_fen"] >= 0
    figs = ok(api.get("/api/v1/service-supervision", params={"month": "2026-11"}))
    assert sum(f["done"] for f in figs) == outcomes["signed"] + outcomes["insufficient"]
    assert sum(f["late"] for f in figs) > 0
    # A visit altered behind the ledger's back (its price) and a stored balance tampered with
    # are caught, and the reconciliation says exactly where.
    victim = funded[0]
    with rt.engine.begin() as conn:
        conn.execute(
            svc_orders.update()
            .where(svc_orders.c.id == victim["id"])
            .values(unit_price_fen=victim["unit_price_fen"] + 1)
        )
        conn.execute(
            svc_ledger_accounts.update()
            .where(svc_ledger_accounts.c.kind == "payable")
            .values(balance_fen=svc_ledger_accounts.c.balance_fen + 7)
        )
    bad = ok(api.get("/api/v1/vouchers/reconciliation"))
    assert not bad["ok"]
    assert any(p.startswith(f"visit {victim['id']}: ledger") for p in bad["problems"]), bad
    assert any(p.startswith("account payable:civil:") for p in bad["problems"]), bad


def test_the_demo_community_gets_a_month_of_services(
    api: TestClient, clock: Clock, rt: Runtime
) -> None:
    """simulators/demo_services.py through the API: last month done, signed, closed, statements
    that add up; a second run creates nothing."""
    clock.set(datetime(2026, 11, 25, 9, 0, tzinfo=SH))
    elders = [
        ok(api.post("/api/v1/elders", json={"name": n, "address": "幸福里"}), 201)["id"]
        for n in ("王秀英", "李建国", "张淑珍", "刘德明", "陈玉兰", "杨振华", "赵桂英")
    ]
    lines: list[str] = []
    assert seed_services(api, elders, lines.append, today=date(2026, 11, 25))
    assert "一致 ok" in lines[-1], lines
    rec = ok(api.get("/api/v1/vouchers/reconciliation", params={"month": "2026-10"}))
    assert rec["ok"] and rec["month_ledger_payable_fen"] > 0, rec
    figs = ok(api.get("/api/v1/service-supervision", params={"month": "2026-10"}))
    assert sum(f["done"] for f in figs) > 100 and sum(f["late"] for f in figs) > 0
    [canteen] = [p for p in ok(api.get("/api/v1/providers")) if p["kind"] == "canteen"]
    st = ok(
        api.get(
            f"/api/v1/service-statements/providers/{canteen['id']}", params={"month": "2026-10"}
        )
    )
    assert st["total_payable_fen"] > 0 and len(st["visits"]) > 50
    nov = ok(api.get("/api/v1/service-orders", params={"month": "2026-11", "limit": 5000}))
    assert nov and all(o["state"] == "agreed" for o in nov if o["parent_id"])
    assert not seed_services(api, elders, lines.append, today=date(2026, 11, 25))


def test_openapi_describes_the_service_api(api: TestClient) -> None:
    spec = ok(api.get("/openapi.json"))
    paths = spec["paths"]
    for p in (
        "/api/v1/services",
        "/api/v1/service-orders/{order_id}/sign-off",
        "/api/v1/vouchers/reconciliation",
        "/api/v1/service-statements/providers/{provider_id}",
        "/api/v1/service-supervision",
    ):
        assert p in paths, p
    sign = paths["/api/v1/service-orders/{order_id}/sign-off"]["post"]
    assert {"404", "409", "422"} <= set(sign["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in sign["parameters"])
