"""The care records (issue 4) through the HTTP API, on SQLite and PostgreSQL: the registry,
bad input (4xx with the reason, nothing changed), ID numbers encrypted at rest, health records
and assessments, the station tables as JSON and as .xlsx read back with openpyxl, the import
(all or nothing, on real .xlsx files), pairings feeding the escalation plan, scoping per role,
and the append-only audit log.

The app is the real one (gateway/api.py create_app on a real Gateway's runtime and a migrated
database); the MQTT side is never started because no route here touches it.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from alerts.model import AlertKind, Priority
from care.idcard import make_id_number
from care.registers import IMPORT_COLUMNS
from gateway.api import create_app
from gateway.app import Gateway
from gateway.auth import create_token
from gateway.care_store import generate_data_key
from gateway.clock import new_id
from gateway.db import migrate
from gateway.settings import Settings
from gateway.tables import elders, responders
from gateway.tables_care import audit_log, elder_profiles, family_links, vital_signs
from tests.integration.test_api import serving

ADMIN = "admin-" + secrets.token_urlsafe(18)
TZ = ZoneInfo("Asia/Shanghai")
CARE = "/api/v1/care"


class Clock:
    """The gateway's clock, movable by the test (link expiry)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Env:
    client: TestClient
    engine: Engine
    clock: Clock
    gw: Gateway

    def as_(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def token(self, name: str, role: str, person_id: str | None = None) -> str:
        return create_token(
            self.engine, name, role, now_ms=int(time.time() * 1000), person_id=person_id
        )

    def count(self, table: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _make_env(db_url: str, data_key: str | None) -> Iterator[Env]:
    settings = Settings(
        _env_file=None,
        database_url=db_url,
        mqtt_url="mqtt://127.0.0.1:9",  # never connected: these routes do not use MQTT
        admin_token=ADMIN,
        data_key=data_key,
        log_level="WARNING",
    )
    clock = Clock()
    gw = Gateway(settings, clock=clock)
    migrate(gw.engine)
    with TestClient(create_app(gw.runtime), headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield Env(c, gw.engine, clock, gw)
    gw.engine.dispose()


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    yield from _make_env(db_url, generate_data_key())


def elder_body(name: str = "王秀英", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "id_card": make_id_number("110105", date(1946, 3, 8), 122),  # even: female
        "phone": "138 1234 5678",
        "address": {
            "district": "朝阳区",
            "subdistrict": "八里庄街道",
            "community": "红庙社区",
            "estate": "金台小区",
            "building": "3",
            "unit": "2",
            "room": "501",
        },
        "living_situation": "lives_alone",
        "self_care": "partly_dependent",
        "categories": ["dibao"],
        "service_tier": "free",
        "tier_basis": {"text": "75周岁以上城镇低保户", "categories": ["dibao"]},
        "emergency_contacts": [
            {"name": "李明", "relation": "child", "phone": "13900000001", "holds_key": True}
        ],
        "conditions": ["高血压"],
        "station": "红庙站",
    }
    body.update(over)
    return body


def register(env: Env, **over: Any) -> dict[str, Any]:
    resp = env.client.post(f"{CARE}/elders", json=elder_body(**over))
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


def responder(env: Env, name: str, role: str) -> str:
    resp = env.client.post("/api/v1/responders", json={"name": name, "role": role})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def types_of(resp: Any) -> list[str]:
    detail = resp.json()["detail"]
    assert isinstance(detail, list), detail
    return [d["type"] for d in detail]


def now_iso(env: Env, delta: timedelta = timedelta()) -> str:
    return (datetime.fromtimestamp(env.clock(), TZ) + delta).isoformat()


# --- registry -----------------------------------------------------------------------------------


def test_register_read_change_and_status(env: Env) -> None:
    e = register(env)
    assert e["gender"] == "female" and e["birth_date"] == "1946-03-08"  # read from the ID number
    assert e["id_card_masked"].startswith("110105********") and "19460308" not in str(e)
    assert e["phone"] == "13812345678"  # normalized
    assert e["age_band"] == "70-79" or e["age_band"] == "80-89"
    assert e["special_groups"] == ["lives_alone", "hardship"]
    assert e["status"]["status"] == "active"
    # The alarm path's row says what the registry says (pages read it).
    with env.engine.connect() as conn:
        anchor = conn.execute(select(elders).where(elders.c.id == e["id"])).one()
    assert anchor.name == "王秀英" and "金台小区3栋2单元501室" in anchor.address

    r = env.client.patch(f"{CARE}/elders/{e['id']}", json={"phone": "010-62345678"})
    assert r.status_code == 200, r.text
    assert r.json()["phone"] == "010-62345678"
    assert env.client.get(f"/api/v1/elders/{e['id']}").json()["phone"] == "010-62345678"

    today = datetime.fromtimestamp(env.clock(), TZ).date()
    away = {"status": "away", "until": (today + timedelta(days=10)).isoformat(), "note": "女儿家"}
    r = env.client.post(f"{CARE}/elders/{e['id']}/status", json=away)
    assert r.status_code == 200, r.text
    assert r.json()["status"]["status"] == "away"
    r = env.client.post(f"{CARE}/elders/{e['id']}/status", json={"status": "deceased"})
    assert r.status_code == 200
    r = env.client.post(f"{CARE}/elders/{e['id']}/status", json={"status": "active"})
    assert r.status_code == 409 and types_of(r) == ["status_after_deceased"]
    hist = env.client.get(f"{CARE}/elders/{e['id']}/status").json()
    assert [h["status"] for h in hist] == ["deceased", "away", "active"]
    # Not on the books any more: the default search leaves the deceased out.
    assert env.client.get(f"{CARE}/elders").json() == []
    assert len(env.client.get(f"{CARE}/elders", params={"status": "deceased"}).json()) == 1


def test_away_and_in_hospital_pause_the_no_water_rule_and_active_ends_the_pause(env: Env) -> None:
    e = register(env)
    marks = f"/api/v1/elders/{e['id']}/away"
    today = datetime.fromtimestamp(env.clock(), TZ).date()
    back = today + timedelta(days=5)
    r = env.client.post(
        f"{CARE}/elders/{e['id']}/status",
        json={"status": "away", "until": back.isoformat(), "note": "女儿家"},
    )
    assert r.status_code == 200, r.text
    [mark] = env.client.get(marks).json()
    assert mark["status"] == "away" and mark["note"] == "女儿家"
    # Watched again from the morning of the day back, not after it.
    assert datetime.fromisoformat(mark["until"]) == datetime(
        back.year, back.month, back.day, tzinfo=TZ
    )
    assert datetime.fromisoformat(mark["since"]) == datetime(
        today.year, today.month, today.day, tzinfo=TZ
    )
    # In hospital with no end date: paused for 14 days, to be renewed; never for ever.
    r = env.client.post(f"{CARE}/elders/{e['id']}/status", json={"status": "in_hospital"})
    assert r.status_code == 200, r.text
    now = datetime.fromtimestamp(env.clock(), TZ)
    current = [m for m in env.client.get(marks).json() if m["ended_at"] is None]
    assert [m["status"] for m in current] == ["in_hospital"]
    assert datetime.fromisoformat(current[0]["until"]) - now == pytest.approx(
        timedelta(days=14), abs=timedelta(seconds=60)
    )
    # Back home: the pause ends at once.
    r = env.client.post(f"{CARE}/elders/{e['id']}/status", json={"status": "active"})
    assert r.status_code == 200, r.text
    assert all(m["ended_at"] is not None for m in env.client.get(marks).json())


def test_register_an_existing_anchor_elder_and_search(env: Env) -> None:
    anchor = env.client.post(
        "/api/v1/elders", json={"name": "赵大爷", "address": "红庙社区1号楼"}
    ).json()
    r = env.client.post(
        f"{CARE}/elders",
        json=elder_body(
            "赵建国",
            elder_id=anchor["id"],
            id_card=make_id_number("110105", date(1930, 5, 1), 111),
            living_situation="empty_nest",
            categories=[],
            service_tier="paid",
            tier_basis=None,
        ),
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"] == anchor["id"]
    again = env.client.post(f"{CARE}/elders", json=elder_body(elder_id=anchor["id"]))
    assert again.status_code == 409
    register(env)
    names = lambda **p: sorted(x["name"] for x in env.client.get(f"{CARE}/elders", params=p).json())  # noqa: E731
    assert names() == ["王秀英", "赵建国"]
    assert names(living_situation="empty_nest") == ["赵建国"]
    assert names(category="dibao") == ["王秀英"]
    assert names(q="建") == ["赵建国"]
    assert names(age_band="90-99") == ["赵建国"]  # born 1930
    assert names(age_band="80-89") == ["王秀英"]  # born 1946
    assert names(id_card=make_id_number("110105", date(1930, 5, 1), 111)) == ["赵建国"]


def test_bad_input_is_refused_with_the_reason_and_changes_nothing(env: Env) -> None:
    e = register(env)
    before = (env.count(elder_profiles), env.count(elders), env.count(vital_signs))
    good = make_id_number("110105", date(1950, 1, 2), 121)
    bad_digit = good[:-1] + ("0" if good[-1] != "0" else "1")
    cases = [
        (elder_body("张三", id_card=bad_digit), "id_check_digit"),
        (elder_body("张3"), "name_invalid"),
        (elder_body("张三", phone="12345"), "phone_mobile_invalid"),
        (elder_body("张三", surprise=1), "extra_forbidden"),
        (elder_body("张三", service_tier="free", tier_basis=None), "tier_basis_required"),
        (
            elder_body("张三", id_card=make_id_number("110105", date(1990, 1, 2), 121)),
            "age_under_60",
        ),
    ]
    for body, code in cases:
        r = env.client.post(f"{CARE}/elders", json=body)
        assert r.status_code == 422, (code, r.text)
        assert code in types_of(r), (code, r.json())
    r = env.client.post(f"{CARE}/elders", json=elder_body("张三", id_card=bad_digit))
    d = r.json()["detail"][0]
    assert "校验码" in d["msg"] and d["loc"] == ["body", "id_card"]
    # the same ID number twice
    r = env.client.post(f"{CARE}/elders", json=elder_body("王秀英二"))
    assert r.status_code == 409 and types_of(r) == ["id_already_registered"]
    # vital signs: impossible values and unit mix-ups
    for vitals, code in (
        ({"temperature_c": 98.6}, "vital_implausible"),  # °F
        ({"systolic": 80, "diastolic": 120}, "bp_order"),
        ({"systolic": 120}, "bp_pair"),
        ({"glucose_mmol_l": 6.0}, "glucose_timing"),
        ({}, "vitals_empty"),
    ):
        r = env.client.post(
            f"{CARE}/elders/{e['id']}/vitals", json={"measured_at": now_iso(env), **vitals}
        )
        assert r.status_code == 422 and code in types_of(r), (code, r.text)
    r = env.client.post(
        f"{CARE}/elders/{e['id']}/vitals",
        json={"measured_at": now_iso(env, timedelta(hours=2)), "pulse": 70},
    )
    assert r.status_code == 422 and types_of(r) == ["measured_in_future"]
    r = env.client.post(f"{CARE}/elders/{e['id']}/status", json={"status": "away"})
    assert r.status_code == 422 and "status_until_required" in types_of(r)
    r = env.client.patch(f"{CARE}/elders/{e['id']}", json={"name": None})
    assert r.status_code == 422
    r = env.client.post(f"{CARE}/elders/{e['id']}/assessments", json={"assessed_on": "2026-01-01"})
    assert r.status_code == 422
    assert env.client.get(f"{CARE}/elders/el_nope").status_code == 404
    assert (env.count(elder_profiles), env.count(elders), env.count(vital_signs)) == before


def test_id_numbers_are_encrypted_at_rest(env: Env) -> None:
    number = make_id_number("110105", date(1946, 3, 8), 122)
    e = register(env)
    with env.engine.connect() as conn:
        raw = conn.execute(
            text("SELECT * FROM elder_profiles WHERE elder_id = :id"), {"id": e["id"]}
        ).one()
        dump = " ".join(str(v) for v in raw)
        audit_dump = " ".join(str(r) for r in conn.execute(text("SELECT * FROM audit_log")))
    assert number not in dump and number[:-1] not in dump and "19460308" not in dump
    assert number not in audit_dump
    assert raw.id_card_enc.startswith("v1.") and len(raw.id_card_hmac) == 64
    r = env.client.get(f"{CARE}/elders/{e['id']}/id-card")
    assert r.status_code == 200 and r.json()["id_card"] == number
    with env.engine.connect() as conn:
        reveals = conn.execute(
            select(audit_log).where(audit_log.c.action == "reveal", audit_log.c.elder_id == e["id"])
        ).all()
    assert len(reveals) == 1


def test_without_a_data_key_id_numbers_are_refused(db_url: str) -> None:
    for env in _make_env(db_url, None):
        r = env.client.post(f"{CARE}/elders", json=elder_body())
        assert r.status_code == 422 and types_of(r) == ["data_key_missing"]
        assert env.count(elder_profiles) == 0
        body = elder_body(birth_date="1946-03-08", gender="female")
        del body["id_card"]
        assert env.client.post(f"{CARE}/elders", json=body).status_code == 201


# --- health records and assessments ---------------------------------------------------------------


def _scores(level: str) -> dict[str, int]:
    from care.assessment import ITEMS

    full = {i.key: i.max_score for i in ITEMS}  # 90: intact
    if level == "mild":
        full.update(bathing=0, stairs=0, walking=2)  # 90 - 4 - 3 - 2 = 81
    return full


def test_health_records_trends_and_assessments(env: Env) -> None:
    e = register(env)
    eid = e["id"]
    env.clock.offset = -20 * 86400  # twenty days ago
    r = env.client.post(
        f"{CARE}/elders/{eid}/vitals",
        json={"measured_at": now_iso(env), "weight_kg": 60.0, "systolic": 128, "diastolic": 80},
    )
    assert r.status_code == 201, r.text
    env.clock.offset = 0
    r = env.client.post(
        f"{CARE}/elders/{eid}/vitals",
        json={
            "measured_at": now_iso(env),
            "weight_kg": 56.0,
            "systolic": 182,
            "diastolic": 95,
            "glucose_mmol_l": 7.4,
            "glucose_timing": "fasting",
        },
    )
    assert r.status_code == 201, r.text
    flags = {f["code"]: f["severity"] for f in r.json()["flags"]}
    assert flags == {"bp_high_grade3": "urgent", "glucose_high": "abnormal"}
    assert r.json()["measured_by"] == "api:admin"
    listed = env.client.get(f"{CARE}/elders/{eid}/vitals").json()
    assert [v["weight_kg"] for v in listed] == [56.0, 60.0]
    trends = {t["measure"]: t for t in env.client.get(f"{CARE}/elders/{eid}/vitals/trends").json()}
    assert trends["weight"]["change"] == -4.0 and trends["weight"]["flag"]["code"] == "weight_loss"
    assert trends["systolic"]["latest"]["value"] == 182

    r = env.client.post(
        f"{CARE}/elders/{eid}/encounters",
        json={"kind": "visit", "occurred_at": now_iso(env), "notes": "入户探访，精神好"},
    )
    assert r.status_code == 201, r.text
    assert len(env.client.get(f"{CARE}/elders/{eid}/encounters").json()) == 1

    cur = env.client.get(f"{CARE}/elders/{eid}/assessments/current").json()
    assert cur["assessment"] is None and cur["reassessment_due"] is True
    today = datetime.fromtimestamp(env.clock(), TZ).date()
    first = {
        "assessed_on": (today - timedelta(days=30)).isoformat(),
        "assessor": "评估员甲",
        "second_assessor": "评估员乙",
        "scores": _scores("intact"),
    }
    r = env.client.post(f"{CARE}/elders/{eid}/assessments", json=first)
    assert r.status_code == 201, r.text
    assert r.json()["level"] == "intact" and r.json()["total"] == 90
    second = {
        **first,
        "assessed_on": today.isoformat(),
        "reason": "immediate",
        "scores": _scores("mild"),
        "risk_events_30d": 2,
    }
    r = env.client.post(f"{CARE}/elders/{eid}/assessments", json=second)
    assert r.status_code == 201, r.text
    # 81 is mild; two risk events make it one level worse
    assert (r.json()["preliminary_level"], r.json()["level"]) == ("mild", "moderate")
    cur = env.client.get(f"{CARE}/elders/{eid}/assessments/current").json()
    assert cur["assessment"]["id"] == r.json()["id"] and cur["eligibility"]["care_level"] == 2
    assert cur["reassessment_due"] is False
    assert len(env.client.get(f"{CARE}/elders/{eid}/assessments").json()) == 2
    # the current level drives the registry's self-care status
    assert env.client.get(f"{CARE}/elders/{eid}").json()["self_care"] == "dependent"
    bad = {**first, "scores": {**_scores("intact"), "eating": 7}}
    r = env.client.post(f"{CARE}/elders/{eid}/assessments", json=bad)
    assert r.status_code == 422 and "assessment_score_range" in types_of(r)


# --- registers and Excel --------------------------------------------------------------------------


def _seed_registry(env: Env) -> None:
    register(env)  # female, 1946, lives alone, dibao
    register(
        env,
        name="李建华",
        id_card=make_id_number("310104", date(1925, 2, 3), 131),  # male, 100+
        living_situation="with_family",
        self_care="dependent",
        categories=["disabled"],
        service_tier="paid",
        tier_basis=None,
    )
    register(
        env,
        name="陈桂兰",
        id_card=make_id_number("440106", date(1958, 7, 9), 142),  # 60-69 ... or under 60
        birth_date=None,
        living_situation="empty_nest",
        self_care="independent",
        categories=[],
        service_tier="paid",
        tier_basis=None,
    )


def test_registers_as_json_and_excel(env: Env) -> None:
    _seed_registry(env)
    reg = env.client.get(f"{CARE}/registers/by_age_band").json()
    assert reg["title_zh"] == "老年人年龄分段统计表"
    counts = {r["group_en"]: r["count"] for r in reg["rows"]}
    assert counts["100+"] == 1 and sum(counts.values()) == 3 and reg["total"]["count"] == 3
    living = {
        r["group_en"]: r["count"]
        for r in env.client.get(f"{CARE}/registers/by_living_situation").json()["rows"]
    }
    assert living == {"lives alone": 1, "empty nest": 1, "with family": 1}
    special = env.client.get(f"{CARE}/registers/special_groups").json()
    assert {r["name"] for r in special["rows"]} == {"王秀英", "李建华", "陈桂兰"}

    r = env.client.get(f"{CARE}/registers/by_self_care.xlsx")
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "application/vnd.openxmlformats"
    )
    ws = load_workbook(io.BytesIO(r.content)).active
    assert ws is not None
    rows = [list(x) for x in ws.iter_rows(values_only=True)]
    assert rows[0][0].startswith("老年人自理情况统计表")
    assert rows[1][:3] == ["自理情况", "自理情况(英文)", "合计"]
    by = {row[0]: row[2] for row in rows[3:6]}
    assert by == {"自理": 1, "半自理": 1, "失能": 1}
    assert rows[6][0] == "合计" and rows[6][2] == 3

    r = env.client.get(f"{CARE}/registers/registry.xlsx")
    ws = load_workbook(io.BytesIO(r.content)).active
    assert ws is not None
    header = [c.value for c in ws[2]]
    ids = [row[header.index("身份证号")] for row in ws.iter_rows(min_row=4, values_only=True)]
    assert all(i is None or "********" in i for i in ids[:3])  # masked by default
    assert env.client.get(f"{CARE}/registers/nope").status_code == 422


# --- import -------------------------------------------------------------------------------------


def _xlsx(rows: list[dict[str, Any]], title_rows: int = 0) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for _ in range(title_rows):
        ws.append(["老年人信息台账"])
    headers = [c.zh + ("*" if c.required else "") for c in IMPORT_COLUMNS]
    ws.append(headers)
    keys = [c.key for c in IMPORT_COLUMNS]
    for r in rows:
        ws.append([r.get(k) for k in keys])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _row(name: str, number: str, **over: Any) -> dict[str, Any]:
    row = {
        "name": name,
        "id_card": number,
        "phone": "13700000000",
        "district": "朝阳区",
        "subdistrict": "八里庄街道",
        "community": "红庙社区",
        "building": "5",
        "unit": "1",
        "room": "302",
        "living_situation": "独居",
        "self_care": "自理",
        "contact1_name": "刘强",
        "contact1_relation": "儿子",
        "contact1_phone": "13600000000",
        "contact1_holds_key": "是",
    }
    row.update(over)
    return row


def _import(env: Env, data: bytes, **params: Any) -> Any:
    return env.client.post(
        f"{CARE}/elders/import",
        content=data,
        params=params,
        headers={
            "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        },
    )


def test_import_is_all_or_nothing_on_real_files(env: Env) -> None:
    n1 = make_id_number("110105", date(1940, 1, 1), 11)
    n2 = make_id_number("110105", date(1941, 2, 2), 22)
    n3 = make_id_number("110105", date(1942, 3, 3), 33)
    bad = n3[:-1] + ("0" if n3[-1] != "0" else "1")
    rows = [
        _row("孙玉兰", n1),
        _row("周德明", bad),
        _row("吴淑珍", n2, living_situation="住楼上"),
        _row("郑国强", n1),
    ]
    r = _import(env, _xlsx(rows, title_rows=1), station="红庙站")
    assert r.status_code == 422, r.text
    report = r.json()["detail"]
    assert report["imported"] == 0 and report["rows_read"] == 4
    assert report["refused_rows"] == [4, 5, 6]  # header on row 2, data from row 3
    by_row = {(p["row"], p["code"]) for p in report["problems"]}
    assert (4, "id_check_digit") in by_row and (6, "id_duplicate_in_file") in by_row
    assert any(p["row"] == 5 and p["column"] == "居住情况" for p in report["problems"])
    assert env.count(elder_profiles) == 0 and env.count(elders) == 0  # nothing half-imported

    good = [_row("孙玉兰", n1), _row("周德明", n3), _row("吴淑珍", n2, categories="低保、残疾")]
    r = _import(env, _xlsx(good), dry_run="true")
    assert r.status_code == 200 and r.json()["committable"] and r.json()["imported"] == 0
    assert env.count(elder_profiles) == 0
    r = _import(env, _xlsx(good), station="红庙站")
    assert r.status_code == 201, r.text
    assert r.json()["imported"] == 3 and len(r.json()["elder_ids"]) == 3
    got = {e["name"]: e for e in env.client.get(f"{CARE}/elders").json()}
    assert got["吴淑珍"]["categories"] == ["disabled"] or "disabled" in got["吴淑珍"]["categories"]
    assert got["孙玉兰"]["emergency_contacts"][0]["holds_key"] is True
    assert got["孙玉兰"]["station"] == "红庙站"

    # An export with full numbers (admin) imports back; here every row is registered already.
    r = env.client.get(f"{CARE}/registers/registry.xlsx", params={"full_id_cards": "true"})
    assert r.status_code == 200
    r = _import(env, r.content)
    assert r.status_code == 422
    assert {p["code"] for p in r.json()["detail"]["problems"]} == {"id_already_registered"}
    assert env.count(elder_profiles) == 3
    r = _import(env, b"not a workbook")
    assert r.status_code == 422 and types_of(r) == ["xlsx_unreadable"]


# --- pairings -----------------------------------------------------------------------------------


def test_pairing_kind_feeds_the_escalation_plan(env: Env) -> None:
    e = register(env)
    party = responder(env, "党员老周", "volunteer")
    r = env.client.post(
        f"{CARE}/elders/{e['id']}/pairings", json={"person_id": party, "kind": "party_member"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "volunteer" and r.json()["active"] is True
    again = env.client.post(
        f"{CARE}/elders/{e['id']}/pairings", json={"person_id": party, "kind": "party_member"}
    )
    assert again.status_code == 409 and types_of(again) == ["pairing_overlap"]
    # the paging routes list the same row: one list of pairings
    listed = env.client.get(f"/api/v1/elders/{e['id']}/pairings").json()
    assert [p["id"] for p in listed] == [r.json()["id"]]
    with env.engine.connect() as conn:
        paging = env.gw.paging
        built = paging.plan(
            conn,
            paging.elder(conn, e["id"]),
            AlertKind.CALL_BUTTON,
            Priority.P1,
            int(env.clock() * 1000),
        )
    assert built.plan is not None and party in built.plan.responder_ids()
    # ending it through the paging route ends it for the plan too
    env.client.delete(f"/api/v1/elders/{e['id']}/pairings/{r.json()['id']}")
    with env.engine.connect() as conn:
        built = paging.plan(
            conn,
            paging.elder(conn, e["id"]),
            AlertKind.CALL_BUTTON,
            Priority.P1,
            int(env.clock() * 1000) + 10,
        )
    assert built.plan is None or party not in built.plan.responder_ids()


def test_people_profiles(env: Env) -> None:
    vol = responder(env, "林阿姨", "volunteer")
    body = {
        "categories": ["young_old", "medical"],
        "skills": ["量血压", "理发"],
        "availability": [{"weekday": 1, "start": "09:00", "end": "11:30"}],
        "certificates": [
            {"name": "红十字救护员证", "issued_on": "2025-06-01", "expires_on": "2029-06-01"}
        ],
        "birth_date": "1961-04-05",
    }
    r = env.client.put(f"{CARE}/people/{vol}/profile", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["valid_certificates"] == ["红十字救护员证"]
    bad = {**body, "birth_date": "1940-04-05"}
    r = env.client.put(f"{CARE}/people/{vol}/profile", json=bad)
    assert r.status_code == 422 and types_of(r) == ["young_old_age"]
    listed = env.client.get(f"{CARE}/people", params={"category": "medical"}).json()
    assert [p["responder_id"] for p in listed] == [vol]
    assert env.client.get(f"{CARE}/people", params={"skill": "做饭"}).json() == []


# --- scoping ------------------------------------------------------------------------------------


def test_scoping_for_every_role(env: Env) -> None:
    a = register(env)  # station 红庙站
    b = register(
        env,
        name="周玉芬",
        id_card=make_id_number("110105", date(1944, 9, 9), 202),
        station="金台站",
    )
    staff_a = responder(env, "站员甲", "staff")
    env.client.put(f"{CARE}/people/{staff_a}/profile", json={"station": "红庙站"})
    staff_b = responder(env, "站员乙", "staff")
    env.client.put(f"{CARE}/people/{staff_b}/profile", json={"station": "红庙站"})
    watcher = responder(env, "邻居老张", "watcher")
    family = responder(env, "李明", "family")
    tok = {
        "staff_a": env.token("staff-a", "staff", staff_a),
        "staff_b": env.token("staff-b", "staff", staff_b),
        "legacy_staff": env.token("legacy", "staff"),
        "watcher": env.token("watcher", "watcher", watcher),
        "family": env.token("family", "family", family),
    }
    get = lambda who, path: env.client.get(path, headers=env.as_(tok[who]))  # noqa: E731

    # staff: their station's elders only; another station's answers 404, like a missing one
    assert get("staff_a", f"{CARE}/elders/{a['id']}").status_code == 200
    assert get("staff_a", f"{CARE}/elders/{b['id']}").status_code == 404
    assert [x["id"] for x in get("staff_a", f"{CARE}/elders").json()] == [a["id"]]
    rows = get("staff_a", f"{CARE}/registers/special_groups").json()["rows"]
    assert [x["name"] for x in rows] == ["王秀英"]
    # a staff token acting for nobody: the whole registry, and every existing route
    assert len(get("legacy_staff", f"{CARE}/elders").json()) == 2
    assert get("legacy_staff", "/api/v1/alerts").status_code == 200

    # watcher: nothing until paired; then address and phone, not the ID number or health
    assert get("watcher", f"{CARE}/elders/{a['id']}").status_code == 404
    env.client.post(
        f"{CARE}/elders/{a['id']}/pairings", json={"person_id": watcher, "kind": "watcher"}
    )
    seen = get("watcher", f"{CARE}/elders/{a['id']}")
    assert seen.status_code == 200 and seen.json()["view"] == "contact"
    assert seen.json()["phone"] == "13812345678" and "金台小区" in seen.json()["address_line"]
    for hidden in ("id_card_masked", "categories", "conditions", "birth_date", "doctor"):
        assert hidden not in seen.json()
    assert get("watcher", f"{CARE}/elders/{a['id']}/vitals").status_code == 403
    assert get("watcher", f"{CARE}/elders/{a['id']}/assessments/current").status_code == 403
    assert get("watcher", f"{CARE}/elders/{a['id']}/id-card").status_code == 403
    assert get("watcher", f"{CARE}/elders/{b['id']}").status_code == 404
    assert [x["id"] for x in get("watcher", f"{CARE}/elders").json()] == [a["id"]]
    assert get("watcher", "/api/v1/alerts").status_code == 403  # not the stations' tools
    r = env.client.patch(
        f"{CARE}/elders/{a['id']}", json={"phone": "13900000009"}, headers=env.as_(tok["watcher"])
    )
    assert r.status_code == 403

    # family: only after the station approves and the elder (or other staff) confirms
    r = env.client.post(
        f"{CARE}/family-links",
        json={"elder_id": a["id"], "person_id": family, "relation": "child"},
        headers=env.as_(tok["staff_a"]),
    )
    assert r.status_code == 201, r.text
    link = r.json()["id"]
    assert get("family", f"{CARE}/elders/{a['id']}").status_code == 404  # requested only
    post = lambda who, path, body=None: env.client.post(  # noqa: E731
        path, json=body, headers=env.as_(tok[who])
    )
    assert post("staff_a", f"{CARE}/family-links/{link}/approve").json()["state"] == "approved"
    assert get("family", f"{CARE}/elders/{a['id']}").status_code == 404  # not yet confirmed
    same = post("staff_a", f"{CARE}/family-links/{link}/confirm", {"on_behalf": True})
    assert same.status_code == 409 and types_of(same) == ["family_link_same_person"]
    ok = post("staff_b", f"{CARE}/family-links/{link}/confirm", {"on_behalf": True})
    assert ok.status_code == 200 and ok.json()["state"] == "confirmed"
    full = get("family", f"{CARE}/elders/{a['id']}")
    assert full.status_code == 200 and full.json()["view"] == "full"
    assert get("family", f"{CARE}/elders/{a['id']}/vitals").status_code == 200
    assert get("family", f"{CARE}/elders/{b['id']}").status_code == 404  # another elder: 404
    assert get("family", f"{CARE}/elders/{b['id']}/vitals").status_code == 404
    assert get("family", f"{CARE}/elders/{a['id']}/id-card").status_code == 403
    assert [x["id"] for x in get("family", f"{CARE}/family-links").json()] == [link]
    assert get("family", f"{CARE}/registers/by_age_band").status_code == 403
    assert get("family", "/api/v1/elders").status_code == 403
    r = post("staff_a", f"{CARE}/family-links/{link}/revoke", {"reason": "家属要求"})
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert get("family", f"{CARE}/elders/{a['id']}").status_code == 404

    # a link that expires: visible until then, 404 after
    r = post(
        "staff_a",
        f"{CARE}/family-links",
        {
            "elder_id": a["id"],
            "person_id": family,
            "relation": "child",
            "expires_at": now_iso(env, timedelta(days=1)),
        },
    )
    link2 = r.json()["id"]
    post("staff_a", f"{CARE}/family-links/{link2}/approve")
    post("staff_b", f"{CARE}/family-links/{link2}/confirm", {"on_behalf": False})
    assert get("family", f"{CARE}/elders/{a['id']}").status_code == 200
    env.clock.offset = 2 * 86400
    assert get("family", f"{CARE}/elders/{a['id']}").status_code == 404
    # a staff member of another station cannot manage a link to an elder they cannot see
    assert (
        post(
            "staff_a",
            f"{CARE}/family-links",
            {"elder_id": b["id"], "person_id": family, "relation": "child"},
        ).status_code
        == 422
    )


def _race(url: str, calls: int, call: Callable[[httpx.Client], httpx.Response]) -> list[Any]:
    """`call` made `calls` times at once, each on its own thread, HTTP client and connection
    (so its own request thread and database connection in the gateway)."""
    start = threading.Barrier(calls)

    def run(_i: int) -> httpx.Response:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
            client.get(f"{CARE}/family-links")  # connected before the barrier: the race is the POST
            start.wait(timeout=30)
            return call(client)

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(run, range(calls), timeout=120))


def test_one_live_family_link_per_relative_and_elder(env: Env) -> None:
    """Six identical requests at once make one link (201) and five 409s, on SQLite and
    PostgreSQL; a request while that link is confirmed is a 409 too; after its revocation the
    relative may be asked for again. They made six links, and one more after the confirmation."""
    a = register(env)
    family = responder(env, "李明", "family")
    body = {"elder_id": a["id"], "person_id": family, "relation": "child"}
    with serving(create_app(env.gw.runtime)) as url:
        got = _race(url, 6, lambda client: client.post(f"{CARE}/family-links", json=body))
    assert sorted(r.status_code for r in got) == [201, 409, 409, 409, 409, 409], [
        r.text for r in got
    ]
    assert all(types_of(r) == ["family_link_duplicate"] for r in got if r.status_code == 409)
    links = env.client.get(f"{CARE}/family-links", params={"elder_id": a["id"]}).json()
    assert len(links) == 1
    link = links[0]["id"]
    assert env.client.post(f"{CARE}/family-links/{link}/approve").status_code == 200
    r = env.client.post(f"{CARE}/family-links/{link}/confirm", json={"on_behalf": False})
    assert r.status_code == 200 and r.json()["state"] == "confirmed"
    again = env.client.post(f"{CARE}/family-links", json=body | {"relation": "spouse"})
    assert again.status_code == 409 and types_of(again) == ["family_link_duplicate"]
    # another relative of the same elder is a link of its own
    other = responder(env, "李红", "family")
    r = env.client.post(f"{CARE}/family-links", json=body | {"person_id": other})
    assert r.status_code == 201, r.text
    r = env.client.post(f"{CARE}/family-links/{link}/revoke", json={"reason": "家属要求"})
    assert r.status_code == 200
    r = env.client.post(f"{CARE}/family-links", json=body)
    assert r.status_code == 201 and r.json()["state"] == "requested"
    assert len(env.client.get(f"{CARE}/family-links", params={"elder_id": a["id"]}).json()) == 3


def test_revoking_a_link_ends_access_even_beside_an_older_duplicate(env: Env) -> None:
    """A database from before the one-live-link rule may hold two confirmed links of one
    relative to one elder (written here as the API then wrote them): revoking either ends the
    relative's access to the care record and the family page (it survived, by the other)."""
    a = register(env)
    family = responder(env, "李明", "family")
    tok = env.as_(env.token("family", "family", family))
    body = {"elder_id": a["id"], "person_id": family, "relation": "child"}
    first = env.client.post(f"{CARE}/family-links", json=body).json()["id"]
    env.client.post(f"{CARE}/family-links/{first}/approve")
    env.client.post(f"{CARE}/family-links/{first}/confirm", json={"on_behalf": False})
    twin = new_id("fl")
    with env.engine.begin() as conn:
        row = conn.execute(select(family_links).where(family_links.c.id == first)).one()
        conn.execute(insert(family_links).values({**row._asdict(), "id": twin}))
    for path in (f"{CARE}/elders/{a['id']}", f"/api/v1/family/elders/{a['id']}"):
        assert env.client.get(path, headers=tok).status_code == 200, path
    r = env.client.post(f"{CARE}/family-links/{first}/revoke", json={"reason": "家属要求"})
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    for path in (f"{CARE}/elders/{a['id']}", f"/api/v1/family/elders/{a['id']}"):
        assert env.client.get(path, headers=tok).status_code == 404, path
    states = {
        x["id"]: x["state"]
        for x in env.client.get(f"{CARE}/family-links", params={"elder_id": a["id"]}).json()
    }
    assert states == {first: "revoked", twin: "revoked"}
    audited = env.client.get(f"{CARE}/audit", params={"elder_id": a["id"]}).json()
    assert {x["record_id"] for x in audited if x["action"] == "revoke"} == {first, twin}


# --- audit --------------------------------------------------------------------------------------


def test_audit_log_is_written_and_cannot_be_changed(env: Env) -> None:
    e = register(env)
    env.client.post(
        f"{CARE}/elders/{e['id']}/vitals", json={"measured_at": now_iso(env), "pulse": 72}
    )
    env.client.get(f"{CARE}/elders/{e['id']}/vitals")
    rows = env.client.get(f"{CARE}/audit", params={"elder_id": e["id"]}).json()
    actions = [(r["action"], r["resource"]) for r in rows]
    assert actions[:3] == [("read", "vital_signs"), ("create", "vital_signs"), ("create", "elder")]
    assert rows[0]["actor"] == "api:admin" and rows[0]["client_ip"]  # from where
    staff = env.token("staff", "staff")
    assert env.client.get(f"{CARE}/audit", headers=env.as_(staff)).status_code == 403
    # no route changes it
    assert env.client.delete(f"{CARE}/audit").status_code == 405
    assert env.client.put(f"{CARE}/audit", json={}).status_code == 405
    # and the database itself refuses to rewrite it
    for stmt in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError), env.engine.begin() as conn:
            conn.execute(text(stmt))
    assert env.count(audit_log) >= 3


def test_limited_tokens_need_a_person(env: Env) -> None:
    with pytest.raises(ValueError):
        env.token("fam", "family")
    watcher = responder(env, "守望员", "watcher")
    with pytest.raises(ValueError):
        env.token("fam", "family", watcher)  # a watcher is not a family member
    with env.engine.connect() as conn:
        assert conn.execute(select(responders.c.id).where(responders.c.id == watcher)).first()


def test_a_changed_data_key_is_said_not_a_500(db_url: str) -> None:
    for first in _make_env(db_url, generate_data_key()):
        e = register(first)
        for second in _make_env(db_url, generate_data_key()):
            r = second.client.get(f"{CARE}/elders/{e['id']}/id-card")
            assert r.status_code == 409 and types_of(r) == ["data_key_mismatch"]
            r = second.client.patch(f"{CARE}/elders/{e['id']}", json={"notes": "复核"})
            assert r.status_code == 409 and types_of(r) == ["data_key_mismatch"]
            # masked tables still work; the full export says why it cannot
            assert second.client.get(f"{CARE}/registers/special_groups").status_code == 200
            r = second.client.get(f"{CARE}/registers/registry", params={"full_id_cards": True})
            assert r.status_code == 409
            assert second.client.get(f"{CARE}/elders/{e['id']}").status_code == 200
