"""Station scoping of the points ledger's reports and of the people a body names, on SQLite and
PostgreSQL (gateway/api_points.py `_part`, `_part_txns`; gateway/api_services.py `_person_ref`
and the sign-off's witness).

Two stations, A (红庙站) and B (金台站), each with an elder, a volunteer and a staff member. The
monthly report, the ledger check and the shared accounts' statements (the hardship pool, the
bank's issuance) give a station's staff their station's part only; admins, and staff of no
station (the community's clerk, the sub-district's auditor), the whole, or one station's with
`station`. A service order's sign-off is witnessed by staff of the elder's station only, and a
station's staff cannot name another station's person as a witness or as a provider's worker."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from gateway.api import create_app
from gateway.auth import create_token
from gateway.runtime import Runtime
from gateway.tables_points import points_accounts
from gateway.tables_services import svc_orders, svc_sign_offs, svc_workers
from tests.integration.test_services_api import (
    ADMIN,
    SH,
    Clock,
    World,
    build_runtime,
    ok,
    refused,
)

A, B = "红庙站", "金台站"
MONTH = "2026-11"


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


@pytest.fixture
def world(api: TestClient, clock: Clock) -> World:
    return World(api, clock)


@dataclass
class Stations:
    elder: dict[str, str]  # station key ("a", "b") -> the elder
    volunteer: dict[str, str]
    staff: dict[str, str]  # the people behind the staff tokens
    tokens: dict[str, str]  # "a", "b", and "clerk", "auditor": staff of no station

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}


def _person(api: TestClient, name: str, role: str, station: str) -> str:
    pid = str(ok(api.post("/api/v1/responders", json={"name": name, "role": role}), 201)["id"])
    ok(api.put(f"/api/v1/care/people/{pid}/profile", json={"station": station}))
    return pid


@pytest.fixture
def stations(world: World, api: TestClient, rt: Runtime) -> Iterator[Stations]:
    elder, volunteer, staff, tokens = {}, {}, {}, {}
    now = int(world.clock() * 1000)
    for who, station, name in (("a", A, "王秀英"), ("b", B, "周玉芬")):
        elder[who] = world.elder(name)
        register = {
            "elder_id": elder[who],
            "name": name,
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
        volunteer[who] = _person(api, f"志愿者{who}", "volunteer", station)
        staff[who] = _person(api, f"站员{who}", "staff", station)
        tokens[who] = create_token(
            rt.engine, f"desk-{who}", "staff", now_ms=now, person_id=staff[who]
        )
    for who in ("clerk", "auditor"):
        tokens[who] = create_token(rt.engine, f"{who}-of-none", "staff", now_ms=now)
    yield Stations(elder, volunteer, staff, tokens)


def _idem(s: Stations, who: str = "admin") -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex, **s.h(who)}


@pytest.fixture
def ledger(stations: Stations, api: TestClient) -> Stations:
    """Per station: the volunteer earns (A 2, B 4 points), gives to the hardship pool (A 1,
    B 2) and the pool pays for the station's elder (A 0.5, B 1.5), asked by its staff."""
    s = stations
    for who in ("a", "b"):
        for member in (s.volunteer[who], s.elder[who]):
            body = {"member_id": member, "community": "红庙社区", "birth_date": "1940-01-01"}
            ok(api.post("/api/v1/points/accounts", json=body), 201)
    for who, earned, given, drawn in (("a", "2", "1", "0.5"), ("b", "4", "2", "1.5")):
        award = {"member_id": s.volunteer[who], "points": earned, "reason": "培训 training"}
        claim = ok(api.post("/api/v1/points/claims/award", json=award, headers=_idem(s)), 201)
        cid = claim["claim"]["id"]
        ok(api.post(f"/api/v1/points/claims/{cid}/verify", headers=s.h("clerk")))
        ok(api.post(f"/api/v1/points/claims/{cid}/post", headers=_idem(s, "auditor")))
        gift = {"from_member_id": s.volunteer[who], "to": "pool:hardship", "points": given}
        ok(api.post("/api/v1/points/gifts", json=gift, headers=_idem(s)), 201)
        redeem = {
            "payer": "pool:hardship",
            "beneficiary_id": s.elder[who],
            "points": drawn,
            "service_code": "meal",
            "category": "meals",
            "requested_by": s.staff[who],
        }
        ok(api.post("/api/v1/points/redemptions", json=redeem, headers=_idem(s)), 201)
    return s


def _units(report: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in report["rows"]:
        out[row["kind"]] = out.get(row["kind"], 0) + row["units"]
    return out


def test_the_monthly_report_is_the_stations_part(ledger: Stations, api: TestClient) -> None:
    s = ledger
    path = "/api/v1/points/reports/monthly"

    def report(who: str, **params: str) -> dict[str, Any]:
        return dict(ok(api.get(path, params={"month": MONTH, **params}, headers=s.h(who))))

    # units are half points: A earned 2, gave 1, drew 0.5 for its elder; B 4, 2 and 1.5
    a_part, b_part = {"earn": 4, "gift": 2, "redeem": 1}, {"earn": 8, "gift": 4, "redeem": 3}
    whole = {k: a_part[k] + b_part[k] for k in a_part}
    assert _units(report("a")) == a_part
    assert _units(report("b")) == b_part
    assert _units(report("admin")) == whole
    assert _units(report("auditor")) == whole  # the sub-district audits every station
    assert _units(report("admin", station=A)) == a_part
    assert _units(report("auditor", station=B)) == b_part
    assert _units(report("a", station=A)) == a_part
    members = {r["kind"]: r["members"] for r in report("a")["rows"]}
    assert members == {"earn": 1, "gift": 1, "redeem": 1}
    r = api.get(path, params={"month": MONTH, "station": B}, headers=s.h("a"))
    refused(r, 403, "station_not_yours")

    book = api.get(f"{path}.xlsx", params={"month": MONTH}, headers=s.h("a"))
    assert book.status_code == 200, book.text
    sheet = openpyxl.load_workbook(io.BytesIO(book.content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    assert {(r[1], float(r[5])) for r in rows} == {("earn", 2.0), ("gift", 1.0), ("redeem", 0.5)}
    r = api.get(f"{path}.xlsx", params={"month": MONTH, "station": B}, headers=s.h("a"))
    refused(r, 403, "station_not_yours")


def test_the_hardship_pools_statement_is_the_stations_part(
    ledger: Stations, api: TestClient
) -> None:
    """The pool is one account: a station's staff get the lines of their station's members
    (gifts in from them, redemptions for them) and the balances of those lines alone."""
    s = ledger
    # a gift names the giver's account; a pool redemption the bank's (the elder is its
    # beneficiary, counted for their station)
    a_named = {f"member:{s.volunteer['a']}", "redemption:bank"}
    b_named = {f"member:{s.volunteer['b']}", "redemption:bank"}

    def statement(who: str, account: str = "pool:hardship") -> dict[str, Any]:
        return dict(ok(api.get(f"/api/v1/points/accounts/{account}/statement", headers=s.h(who))))

    def named(st: dict[str, Any]) -> set[str]:
        return {c for ln in st["lines"] for c in ln["counterparties"]}

    def ids(st: dict[str, Any]) -> set[str]:
        return {ln["transaction_id"] for ln in st["lines"]}

    a, b, whole = statement("a"), statement("b"), statement("admin")
    assert [(ln["kind"], ln["units"]) for ln in a["lines"]] == [("gift", 2), ("redeem", -1)]
    assert named(a) == a_named and a["closing_balance_units"] == 1
    assert [(ln["kind"], ln["units"]) for ln in b["lines"]] == [("gift", 4), ("redeem", -3)]
    assert named(b) == b_named and b["closing_balance_units"] == 1
    assert ids(a) | ids(b) == ids(whole) and not ids(a) & ids(b)
    assert whole["closing_balance_units"] == 2
    assert statement("clerk") == whole  # staff of no station: the whole pool
    # the bank's issuance is as shared: its lines are the station's members' earnings
    assert named(statement("a", "issuance:bank")) == {f"member:{s.volunteer['a']}"}

    book = api.get("/api/v1/points/accounts/pool:hardship/statement.xlsx", headers=s.h("a"))
    assert book.status_code == 200, book.text
    sheet = openpyxl.load_workbook(io.BytesIO(book.content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    assert {r[6] for r in rows} == a_named  # 对方账户 Counterparty
    assert {r[10] for r in rows} == ids(a)  # 流水号 Transaction


def test_the_ledger_check_is_the_stations_part(
    ledger: Stations, api: TestClient, rt: Runtime
) -> None:
    s = ledger
    vb = f"member:{s.volunteer['b']}"
    with rt.engine.begin() as conn:  # B's volunteer's cached balance goes wrong
        a = points_accounts.c
        conn.execute(update(points_accounts).where(a.key == vb).values(balance=a.balance + 3))

    def check(who: str, **params: str) -> dict[str, Any]:
        return dict(ok(api.get("/api/v1/points/check", params=params, headers=s.h(who))))

    # balances are summed from entries: the elders, paid by the pool, have none
    a_keys, b_keys = {f"member:{s.volunteer['a']}"}, {vb}
    mine = check("a")
    assert mine["ok"] and mine["problems"] == [], mine
    assert a_keys <= set(mine["balances"]) and not b_keys & set(mine["balances"])
    assert "pool:hardship" in mine["balances"]  # shared, as in GET /points/accounts
    assert check("admin", station=A) == mine
    for who, params in (("b", {}), ("admin", {}), ("auditor", {}), ("admin", {"station": B})):
        theirs = check(who, **params)
        assert not theirs["ok"] and any(p.startswith(f"{vb}:") for p in theirs["problems"])
        assert b_keys <= set(theirs["balances"])
    refused(api.get("/api/v1/points/check", params={"station": B}, headers=s.h("a")), 403)


# --- the people a body names ---------------------------------------------------------------------


def _served(world: World, elder: str) -> str:
    oid = world.order(elder)
    world.serve(oid, datetime(2026, 11, 2, 7, 0, tzinfo=SH))
    return oid


def _state(rt: Runtime, oid: str) -> tuple[str, int]:
    with rt.engine.connect() as conn:
        state = conn.execute(select(svc_orders.c.state).where(svc_orders.c.id == oid)).scalar()
        signed = conn.execute(
            select(func.count()).select_from(svc_sign_offs).where(svc_sign_offs.c.order_id == oid)
        ).scalar()
    return str(state), int(signed or 0)


def test_a_witness_of_another_station_is_refused_and_changes_nothing(
    stations: Stations, world: World, api: TestClient, rt: Runtime
) -> None:
    """签字认证 witnessed: the witness is staff of the elder's station, whoever enters it."""
    s = stations
    unplaced = world.elder("李桂兰")  # in no station's registry
    world.allot(MONTH)
    oid = _served(world, s.elder["a"])
    before = _state(rt, oid)

    def sign(witness: str, who: str = "admin", order: str = oid) -> Any:
        body = {"method": "witnessed", "witness_id": witness}
        return api.post(f"/api/v1/service-orders/{order}/sign-off", json=body, headers=s.h(who))

    detail = refused(sign(s.staff["b"]), 422, "sign_off_witness_other_station")
    assert A in detail["zh"] and A in detail["en"]
    # A's staff do not know B's staff member at all: refused as naming nobody
    refused(sign(s.staff["b"], who="a"), 422, "responder_unknown")
    assert _state(rt, oid) == before
    ok(sign(s.staff["a"], who="a"))
    assert _state(rt, oid) == ("signed_off", 1)
    # an elder no station has taken yet is every station's: any station's staff may witness
    other = _served(world, unplaced)
    ok(sign(s.staff["b"], order=other))


def test_a_worker_is_not_another_stations_person(
    stations: Stations, world: World, api: TestClient, rt: Runtime
) -> None:
    s = stations
    path = f"/api/v1/providers/{world.provider}/workers"

    def workers() -> int:
        with rt.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(svc_workers)).scalar() or 0)

    n = workers()
    body = {"name": "周师傅", "responder_id": s.volunteer["b"]}
    refused(api.post(path, json=body, headers=s.h("a")), 422, "responder_unknown")
    assert workers() == n
    ok(api.post(path, json={**body, "responder_id": s.volunteer["a"]}, headers=s.h("a")), 201)
    ok(api.post(path, json=body), 201)  # the admin sees every station's people
