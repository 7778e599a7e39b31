"""Every HTTP error a person can meet has its Chinese beside the English (gateway/error_texts.py),
on SQLite and PostgreSQL, in the API's bilingual shapes:
- a string `detail` (English) with `detail_zh` and a `code` beside it;
- a 422's `detail` list, each item with `en` and `zh`;
- `detail: {"code", "en", "zh"}` (points, services).

The app is the real one on a migrated database (no broker needed), built as in
test_services_api.py. One test sends a bad request to a sample of routes of each module; one walks
every operation of the app's own OpenAPI description with unknown ids and an empty, then a
wrong-typed, body (a route added later is walked too) and checks every 4xx it meets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.auth import create_token
from gateway.runtime import Runtime
from tests.integration.test_services_api import ADMIN, SH, Clock, build_runtime, ok

_HAN = re.compile(r"[\u3400-\u9fff]")
UNKNOWN = "nosuch-id-1"


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 2, 8, 0, tzinfo=SH))


@pytest.fixture
def rt(db_url: str, clock: Clock) -> Iterator[Runtime]:
    runtime = build_runtime(db_url, clock)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def app(rt: Runtime) -> Iterator[TestClient]:
    """The app with no credentials: each call brings its own."""
    with TestClient(create_app(rt)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN_H = bearer(ADMIN)


def chinese_texts(body: Any) -> list[str]:
    """The Chinese texts of an error body, [] when some part of it has none.

    A string `detail` needs `detail_zh`; a list needs `zh` on every item; a dict its `zh`."""
    if not isinstance(body, dict) or "detail" not in body:
        return []
    detail = body["detail"]
    if isinstance(detail, str):
        found = [body.get("detail_zh")]
    elif isinstance(detail, list) and detail:
        found = [item.get("zh") if isinstance(item, dict) else None for item in detail]
    elif isinstance(detail, dict):
        found = [detail.get("zh")]
    else:
        return []
    if not all(isinstance(zh, str) and _HAN.search(zh) for zh in found):
        return []
    return [str(zh) for zh in found]


def refused_in_chinese(resp: Any, status: int) -> list[str]:
    assert resp.status_code == status, resp.text
    texts = chinese_texts(resp.json())
    assert texts, f"no Chinese text: {resp.request.method} {resp.request.url} {resp.text}"
    return texts


def english_kept(resp: Any) -> None:
    """The English is still there, as before (the change is additive)."""
    detail = resp.json()["detail"]
    if isinstance(detail, list):
        assert all(item["msg"] and item["en"] and item["type"] for item in detail), detail
    elif isinstance(detail, dict):
        assert detail["en"], detail
    else:
        assert isinstance(detail, str) and detail and resp.json()["code"], resp.text


def person(app: TestClient, rt: Runtime, role: str, name: str) -> dict[str, str]:
    """A responder of `role` and a token acting for them."""
    rid = ok(
        app.post("/api/v1/responders", json={"name": name, "role": role}, headers=ADMIN_H), 201
    )["id"]
    return bearer(create_token(rt.engine, name, role, now_ms=rt.now_ms(), person_id=rid))


def test_a_bad_request_to_each_module_is_refused_in_chinese_too(
    app: TestClient, rt: Runtime
) -> None:
    family = person(app, rt, "family", "李秀英")
    watcher = person(app, rt, "watcher", "王建国")

    # Pydantic's own 422s (points, services): missing, wrong type, too long, out of range, enum,
    # unknown field; each keeps pydantic's msg and type.
    resp = app.post("/api/v1/services", json={}, headers=ADMIN_H)
    zh = refused_in_chinese(resp, 422)
    assert "必填项未填写" in zh, zh
    english_kept(resp)
    resp = app.post(
        "/api/v1/services",
        json={
            "code": "x" * 500,
            "name_zh": "午餐",
            "name_en": "lunch",
            "category": "no-such-category",
            "unit": "meal",
            "unit_price_fen": "many",
            "share_fen": {},
            "colour": "red",
        },
        headers=ADMIN_H,
    )
    zh = refused_in_chinese(resp, 422)
    types = {d["type"]: d["zh"] for d in resp.json()["detail"]}
    assert types.get("int_type") == "须为整数", types  # strict models: a string is no integer
    assert types.get("string_too_long") == "太长（最多40个字）", types
    assert "不接受此字段" in types.get("extra_forbidden", ""), types
    english_kept(resp)
    resp = app.get("/api/v1/points/claims", params={"limit": "0"}, headers=ADMIN_H)
    zh = refused_in_chinese(resp, 422)
    assert any(re.search(r"不能小于\s*1|须大于", z) for z in zh), zh
    resp = app.get("/api/v1/points/claims", params={"limit": "lots"}, headers=ADMIN_H)
    assert "须为整数" in refused_in_chinese(resp, 422)
    as_json = {**ADMIN_H, "Content-Type": "application/json"}
    resp = app.post("/api/v1/points/gifts", content=b"{not json", headers=as_json)
    assert "不是有效的 JSON" in refused_in_chinese(resp, 422)[0]
    # A points refusal of its own ({code, en, zh}) is as it was.
    resp = app.get(f"/api/v1/points/claims/{UNKNOWN}", headers=ADMIN_H)
    assert resp.status_code == 404 and resp.json()["detail"]["code"], resp.text
    refused_in_chinese(resp, 404)

    # care: the 404 of an unknown elder, the 403 of a role that may not.
    resp = app.get(f"/api/v1/care/elders/{UNKNOWN}", headers=ADMIN_H)
    assert refused_in_chinese(resp, 404) == [f"没有该老人：'{UNKNOWN}'"]
    assert resp.json()["detail"] == f"no elder '{UNKNOWN}'" and resp.json()["code"] == "not_found"
    resp = app.get("/api/v1/care/audit", headers=family)
    assert "仅限管理员" in refused_in_chinese(resp, 403)[0]
    english_kept(resp)
    # api.py's 403 of a care-record role on another route (~line 414), and the 401s.
    resp = app.get("/api/v1/elders", headers=family)
    assert refused_in_chinese(resp, 403)[0].startswith("家属只能使用照护档案接口")
    resp = app.get("/api/v1/elders")
    assert resp.headers["www-authenticate"] == "Bearer"
    refused_in_chinese(resp, 401)
    assert refused_in_chinese(app.get("/api/v1/elders", headers=bearer("wrong")), 401)

    # board: an unknown elder's card, a bad assignment; the alarm path's own routes.
    resp = app.get(f"/api/v1/board/elders/{UNKNOWN}/card", headers=ADMIN_H)
    assert refused_in_chinese(resp, 404)[0].startswith("没有该老人")
    refused_in_chinese(app.post(f"/api/v1/alerts/{UNKNOWN}/assign", json={}, headers=ADMIN_H), 422)
    resp = app.post(f"/api/v1/alerts/{UNKNOWN}/ack", json={}, headers=ADMIN_H)
    assert refused_in_chinese(resp, 404)[0].startswith("没有该告警")
    resp = app.get(f"/api/v1/elders/{UNKNOWN}/escalation", headers=ADMIN_H)
    refused_in_chinese(resp, 404)
    resp = app.post("/api/v1/devices", json={"id": "d1", "kind": "fridge"}, headers=ADMIN_H)
    zh = refused_in_chinese(resp, 422)
    assert any("不是可选值之一" in z for z in zh) and any("必填" in z for z in zh), zh

    # me (the phone page): a caller acting for no one; a reply with no alert.
    resp = app.get("/api/v1/me/pages", headers=ADMIN_H)
    assert resp.status_code == 403, resp.text
    refused_in_chinese(resp, 403)
    refused_in_chinese(app.post("/api/v1/me/replies", json={}, headers=watcher), 422)

    # family: another role; an elder not theirs.
    refused_in_chinese(app.get("/api/v1/family/elders", headers=watcher), 403)
    refused_in_chinese(app.get(f"/api/v1/family/elders/{UNKNOWN}", headers=family), 404)

    # office (the service worker's list): not for the admin.
    refused_in_chinese(app.get("/api/v1/worker/orders", headers=ADMIN_H), 403)

    # Outside every route: an unknown path, a wrong method, a control character, a large body.
    refused_in_chinese(app.get("/api/v1/no-such-thing", headers=ADMIN_H), 404)
    refused_in_chinese(app.delete("/api/v1/services", headers=ADMIN_H), 405)
    refused_in_chinese(app.get("/api/v1/elders/a%00b", headers=ADMIN_H), 404)
    refused_in_chinese(app.get("/api/v1/elders", params={"q": "a\x01"}, headers=ADMIN_H), 422)
    big = b"[" + b"1," * 600_000 + b"1]"
    refused_in_chinese(app.post("/api/v1/services", content=big, headers=ADMIN_H), 413)


def _calls(spec: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(method, path with unknown ids, takes a body) for every operation but the streams."""
    for path, ops in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue  # /healthz, /metrics, the phone page's files: no input to refuse
        for method, op in ops.items():
            kinds = {c for r in op.get("responses", {}).values() for c in r.get("content") or {}}
            if "text/event-stream" in kinds:
                continue  # a stream answers 200 and stays open; its refusals are the same code's
            yield method.upper(), re.sub(r"\{[^}]+\}", UNKNOWN, path), "requestBody" in op


def test_every_route_refuses_bad_input_in_chinese_too(app: TestClient) -> None:
    spec = app.get("/openapi.json").json()
    refusals: dict[int, int] = {}
    english_only = []
    for method, path, has_body in _calls(spec):
        bodies: list[Any] = [None] + ([{}, [1]] if has_body else [])
        for body in bodies:
            kwargs: dict[str, Any] = {"headers": ADMIN_H}
            if body is not None:
                kwargs["json"] = body
            resp = app.request(method, path, **kwargs)
            assert resp.status_code < 500, f"{method} {path}: {resp.text}"
            if not 400 <= resp.status_code < 500:
                continue
            refusals[resp.status_code] = refusals.get(resp.status_code, 0) + 1
            try:
                texts = chinese_texts(resp.json())
            except ValueError:
                texts = []
            if not texts:
                english_only.append(f"{method} {path} {body!r}: {resp.status_code} {resp.text}")
    assert not english_only, "\n".join(english_only)
    # The walk met the refusals it is about (unknown ids, missing and wrong-typed bodies).
    assert refusals.get(404, 0) > 50 and refusals.get(422, 0) > 50, refusals
