"""Times, months and days out of range through the HTTP API, on SQLite and PostgreSQL: each is
refused with a 422 whose `detail` names the range, and nothing changes (the lists that would
hold the row still answer 200, without it).

The bug this guards: a time such as 0001-01-01T00:00:00+08:00 or 9999-12-31T23:59:59-12:00
converted to epoch ms on the way in but not back to RFC 3339 on the way out (gateway/clock.py
`from_ms`: year 0 or 10000), so some routes stored the row, answered 500, and every list holding
it answered 500 from then on; a month such as 0000-01 failed in `services_store.month_bounds_ms`.
Each route that takes a time, a month, or a day that becomes times gets the bad values here
(the range and the why: gateway/api_time.py). A health record dated before the elder's birth is
refused as well.

The app is the real one (gateway/api.py create_app) on a Runtime over the migrated database,
with no broker (no route here publishes) and a clock the test sets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from care.idcard import make_id_number
from gateway.alerting import AlertService
from gateway.api import create_app
from gateway.care_store import generate_data_key
from gateway.db import make_engine, migrate
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.tables_services import svc_ledger_txns, svc_orders, svc_voucher_wallets
from tests.integration.test_care_api import elder_body
from tests.integration.test_services_api import Clock, World

ADMIN = "admin-times-test-token"
SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=SH)
CARE = "/api/v1/care"

# Outside [1970-01-01T00:00Z, 2100-01-01T00:00Z): the reported ones first, then the edges.
BAD_TIMES = (
    "0001-01-01T00:00:00+08:00",
    "9999-12-31T23:00:00Z",
    "9999-12-31T23:59:59-12:00",
    "1900-01-01T00:00:00+08:00",  # local mean time (+08:05:43) in the zone database
    "1969-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
)
BAD_MONTHS = ("0000-01", "9999-12", "1969-12", "2100-01")
BAD_DAYS = ("0001-01-01", "9999-12-31", "1969-12-31", "2100-01-01")
RANGE_SAID = {
    "datetime_range": "1970-01-01T00:00:00Z to before 2100-01-01T00:00:00Z",
    "month_range": "1970-01 to 2099-12",
    "date_range": "1970-01-01 to 2099-12-31",
}


@dataclass
class Env:
    api: TestClient
    rt: Runtime
    clock: Clock

    def count(self, table: Any) -> int:
        with self.rt.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def get(self, path: str, **params: Any) -> Any:
        """A read that must answer 200 (the 500s of the bug were on these)."""
        resp = self.api.get(path, params=params)
        assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.headers["content-type"].startswith("application/json") else None

    def created(self, path: str, body: dict[str, Any], code: int = 201) -> Any:
        resp = self.api.post(path, json=body)
        assert resp.status_code == code, f"POST {path}: {resp.status_code} {resp.text}"
        return resp.json()


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    settings = Settings(
        _env_file=None, database_url=db_url, admin_token=ADMIN, data_key=generate_data_key()
    )
    engine = make_engine(db_url)
    migrate(engine)
    clock = Clock(NOW)
    rt = Runtime(
        settings=settings,
        engine=engine,
        service=AlertService(settings.mqtt_base, SH, settings.default_ack_timeout_s),
        metrics=Metrics(),
        clock=clock,
        tz=SH,
        publish=lambda msgs: None,
        health=lambda: {},
    )
    with TestClient(create_app(rt), headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield Env(client, rt, clock)
    engine.dispose()


def out_of_range(resp: Any, code: str = "datetime_range") -> None:
    """A 422 whose detail names the allowed range: FastAPI's list of errors, or the service
    module's bilingual {code, en, zh}."""
    assert resp.status_code == 422, f"{resp.request.method} {resp.request.url}: {resp.text}"
    detail = resp.json()["detail"]
    if isinstance(detail, dict):
        assert detail["code"] == code and detail["zh"], detail
        said = detail["en"]
    else:
        errors = [e for e in detail if e["type"] == code]
        assert errors, detail
        said = errors[0]["msg"]
    assert RANGE_SAID[code] in said, said


def responder(env: Env, name: str, role: str) -> str:
    return str(env.created("/api/v1/responders", {"name": name, "role": role})["id"])


def test_pairings_shifts_and_the_alerts_report_refuse_times_out_of_range(env: Env) -> None:
    elder = env.created("/api/v1/elders", {"name": "张秀英", "address": "幸福里3号楼"})["id"]
    watcher = responder(env, "李建国", "watcher")
    pairings = f"/api/v1/elders/{elder}/pairings"
    all_shifts = {"from": "1970-01-01T00:00:00Z"}
    ok_time = "2026-11-02T09:00:00+08:00"
    for bad in BAD_TIMES:
        for field in ("active_from", "active_until"):
            out_of_range(env.api.post(pairings, json={"responder_id": watcher, field: bad}))
        for start, end in ((bad, ok_time), (ok_time, bad)):
            shift = {"responder_id": watcher, "start_at": start, "end_at": end}
            out_of_range(env.api.post("/api/v1/roster/shifts", json=shift))
        for name in ("from", "to"):
            out_of_range(env.api.get("/api/v1/roster/shifts", params={name: bad}))
            out_of_range(env.api.get("/api/v1/reports/alerts", params={name: bad}))
    assert env.get(pairings) == []
    assert env.get("/api/v1/roster/shifts", **all_shifts) == []

    # The last instant of the range is taken, and read back as RFC 3339 with the offset.
    last = env.created(pairings, {"responder_id": watcher, "active_until": "2099-12-31T23:00:00Z"})
    assert last["active_until"] == "2100-01-01T07:00:00.000+08:00"
    assert [p["id"] for p in env.get(pairings)] == [last["id"]]
    report = env.get("/api/v1/reports/alerts", **{"from": "1970-01-01T00:00:00Z"})
    assert report["total"] == 0 and report["start"] == "1970-01-01T08:00:00.000+08:00"


def test_away_marks_mutes_and_history_refuse_times_out_of_range(env: Env) -> None:
    elder = env.created("/api/v1/elders", {"name": "张秀英", "address": "幸福里3号楼"})["id"]
    for device, kind in (("cb-t1", "call_button"), ("ws-t1", "water_sensor")):
        env.created("/api/v1/devices", {"id": device, "kind": kind, "elder_id": elder})
    soon = (NOW + timedelta(days=1)).isoformat()
    for bad in BAD_TIMES:
        for body in ({"until": bad}, {"since": bad, "until": soon}):
            out_of_range(
                env.api.put(f"/api/v1/elders/{elder}/away", json={"status": "away"} | body)
            )
            mute = {"reason": "更换电池 battery change"} | body
            out_of_range(env.api.post("/api/v1/devices/cb-t1/mutes", json=mute))
        for name in ("from", "to"):
            out_of_range(
                env.api.get("/api/v1/devices/ws-t1/history", params={"field": "flow_l", name: bad})
            )
            out_of_range(env.api.get(f"/api/v1/elders/{elder}/water-use", params={name: bad}))
    assert env.get(f"/api/v1/elders/{elder}/away") == []
    assert env.get("/api/v1/devices/cb-t1/mutes") == []
    assert env.get("/api/v1/suppressions") == {"away": [], "mutes": []}
    # Inside the range, a mute's own cap answers (30 days), not a 500.
    capped = env.api.post(
        "/api/v1/devices/cb-t1/mutes", json={"reason": "维修", "until": "2099-12-31T23:00:00Z"}
    )
    assert capped.status_code == 422 and capped.json()["detail"], capped.text
    assert env.get("/api/v1/devices/cb-t1/mutes") == []


def test_health_records_pairings_links_and_status_refuse_times_out_of_range(env: Env) -> None:
    elder = env.created(f"{CARE}/elders", elder_body())["id"]  # born 1946-03-08
    watcher = responder(env, "李建国", "watcher")
    family = responder(env, "李明", "family")
    reads = (
        f"{CARE}/elders/{elder}/vitals",
        f"{CARE}/elders/{elder}/vitals/trends",
        f"{CARE}/elders/{elder}/encounters",
        f"{CARE}/elders/{elder}/pairings",
        f"/api/v1/elders/{elder}/pairings",
        f"{CARE}/family-links",
        f"{CARE}/elders/{elder}/status",
    )
    before = [env.get(path) for path in reads]
    for bad in BAD_TIMES:
        vitals = {"measured_at": bad, "pulse": 70}
        out_of_range(env.api.post(f"{CARE}/elders/{elder}/vitals", json=vitals))
        visit = {"kind": "visit", "occurred_at": bad, "notes": "上门探访"}
        out_of_range(env.api.post(f"{CARE}/elders/{elder}/encounters", json=visit))
        for field in ("start", "end"):
            pairing = {"person_id": watcher, "kind": "watcher", field: bad}
            out_of_range(env.api.post(f"{CARE}/elders/{elder}/pairings", json=pairing))
        link = {"elder_id": elder, "person_id": family, "relation": "子女", "expires_at": bad}
        out_of_range(env.api.post(f"{CARE}/family-links", json=link))
    for bad_day in BAD_DAYS:
        for status in (
            {"status": "away", "until": bad_day},
            {"status": "deceased", "since": bad_day},
        ):
            out_of_range(env.api.post(f"{CARE}/elders/{elder}/status", json=status), "date_range")
    assert [env.get(path) for path in reads] == before


def test_a_health_record_before_the_birth_or_in_the_future_is_refused(env: Env) -> None:
    born = date(1975, 3, 8)
    young = elder_body(
        name="周丽华",
        id_card=make_id_number("110105", born, 124),
        under_60_reason="独居且行动不便 lives alone, limited mobility",
    )
    elder = env.created(f"{CARE}/elders", young)["id"]
    vitals, visits = f"{CARE}/elders/{elder}/vitals", f"{CARE}/elders/{elder}/encounters"
    eve = "1975-03-07T23:59:00+08:00"  # the day before, in the station's zone
    future = (NOW + timedelta(hours=1)).isoformat()
    for at, code in ((eve, "measured_before_birth"), (future, "measured_in_future")):
        resp = env.api.post(vitals, json={"measured_at": at, "pulse": 70})
        assert resp.status_code == 422 and [d["type"] for d in resp.json()["detail"]] == [code]
        assert resp.json()["detail"][0]["zh"], resp.text
    for at, code in ((eve, "occurred_before_birth"), (future, "occurred_in_future")):
        resp = env.api.post(visits, json={"kind": "visit", "occurred_at": at, "notes": "探访"})
        assert resp.status_code == 422 and [d["type"] for d in resp.json()["detail"]] == [code]
    assert env.get(vitals) == [] and env.get(visits) == []
    # On the day of the birth itself it is taken (1975-03-07T16:00Z is 03-08 in Shanghai).
    env.created(vitals, {"measured_at": "1975-03-07T16:00:00Z", "pulse": 70})
    assert [v["measured_at"] for v in env.get(vitals)] == ["1975-03-08T00:00:00.000+08:00"]


def test_service_months_times_and_days_out_of_range_change_nothing(env: Env) -> None:
    world = World(env.api, env.clock)
    elder = world.elder()
    world.allot("2026-11")
    order = env.created(
        "/api/v1/service-orders",
        {
            "elder_id": elder,
            "category": "meals",
            "request": "每天中午送餐",
            "applied_by": {"role": "family"},
            "home": {"lat": 39.93, "lon": 116.45},
        },
    )["id"]
    counts = (env.count(svc_orders), env.count(svc_ledger_txns), env.count(svc_voucher_wallets))
    month_reads = (
        "/api/v1/service-orders",
        "/api/v1/service-supervision",
        f"/api/v1/service-statements/elders/{elder}",
        f"/api/v1/service-statements/providers/{world.provider}",
        "/api/v1/service-statements/sources/civil",
        "/api/v1/vouchers/transactions",
        f"/api/v1/elders/{elder}/vouchers",
        "/api/v1/vouchers/reconciliation",
    )
    wallet = {"source_id": "civil", "elder_id": elder, "tier": "free", "basis": "三无"}
    for month in BAD_MONTHS:
        for path in month_reads:
            out_of_range(env.api.get(path, params={"month": month}), "month_range")
        for body in ({"from_month": month}, {"from_month": "2026-01", "until_month": month}):
            out_of_range(env.api.put("/api/v1/voucher-wallets", json=wallet | body), "month_range")
        for path in ("/api/v1/vouchers/allot", "/api/v1/vouchers/close"):
            out_of_range(env.api.post(path, json={"month": month}), "month_range")
    agree = {"service_code": "meal", "funding_source": "civil"}
    for bad in BAD_TIMES:
        out_of_range(
            env.api.post(
                f"/api/v1/service-orders/{order}/agree", json=agree | {"scheduled_at": bad}
            )
        )
    for day in BAD_DAYS:
        for recurrence in ({"start": day}, {"start": "2026-11-02", "end": day}):
            body = agree | {"recurrence": {"weekdays": [0, 2, 4], "at": "11:30"} | recurrence}
            out_of_range(
                env.api.post(f"/api/v1/service-orders/{order}/agree", json=body), "date_range"
            )
        for span in ({"from": day, "to": "2026-11-30"}, {"from": "2026-11-01", "to": day}):
            out_of_range(env.api.post("/api/v1/service-orders/generate", json=span), "date_range")
    assert env.get(f"/api/v1/service-orders/{order}")["state"] == "applied"

    # A visit's check-in and check-out times.
    visit = world.order(elder, scheduled_at=(NOW + timedelta(hours=3)).isoformat())
    worker = {"worker_id": world.worker}
    dispatch = {"provider_id": world.provider} | worker
    assert env.api.post(f"/api/v1/service-orders/{visit}/dispatch", json=dispatch).is_success
    assert env.api.post(f"/api/v1/service-orders/{visit}/accept", json=worker).is_success
    counts = (env.count(svc_orders), env.count(svc_ledger_txns), env.count(svc_voucher_wallets))
    for bad in BAD_TIMES:
        for step in ("check-in", "check-out"):
            presence = worker | {"at": bad, "lat": 39.93, "lon": 116.45}
            out_of_range(env.api.post(f"/api/v1/service-orders/{visit}/{step}", json=presence))
    assert env.get(f"/api/v1/service-orders/{visit}")["state"] == "accepted"
    assert (
        env.count(svc_orders),
        env.count(svc_ledger_txns),
        env.count(svc_voucher_wallets),
    ) == counts
    for path in month_reads:
        env.get(path, month="2026-11")


def test_points_claims_statements_and_reports_refuse_times_out_of_range(env: Env) -> None:
    member = responder(env, "王志强", "volunteer")
    env.created("/api/v1/points/accounts", {"member_id": member, "community": "幸福里社区"})
    claims_before = env.get("/api/v1/points/claims")
    claim = {
        "member_id": member,
        "category": "visit",
        "started_at": (NOW - timedelta(hours=2)).isoformat(),
        "ended_at": (NOW - timedelta(hours=1)).isoformat(),
        "service_ref": "rec-1",
    }
    statement = f"/api/v1/points/accounts/{member}/statement"
    for bad in BAD_TIMES:
        for field in ("started_at", "ended_at"):
            out_of_range(
                env.api.post(
                    "/api/v1/points/claims/service",
                    json=claim | {field: bad},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
            )
        for path in (statement, statement + ".xlsx"):
            for name in ("from", "to"):
                out_of_range(env.api.get(path, params={name: bad}))
    for month in BAD_MONTHS:
        for path in ("/api/v1/points/reports/monthly", "/api/v1/points/reports/monthly.xlsx"):
            out_of_range(env.api.get(path, params={"month": month}), "month_range")
    assert env.get("/api/v1/points/claims") == claims_before
    assert env.get(statement, **{"from": "1970-01-01T00:00:00Z"})["lines"] == []
    env.get("/api/v1/points/reports/monthly", month="2099-12")
