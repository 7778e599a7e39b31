"""The outcome of an alert a pager resolved, given afterwards by staff over HTTP, on SQLite and
PostgreSQL with a real Mosquitto: a pager's `resolved` carries no outcome (README, The contract),
so `POST /api/v1/alerts/{id}/resolve` gives it once (a `resolve_again` event with who and when),
the report counts it under that outcome, a second outcome is refused (409), a cancelled alert is
left as it is, and a `no_water_use` alert so given `false_alarm` is learned from by the water
rule. Time moves with a FakeClock; every wait is bounded."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway import tables as T
from gateway.api import create_app
from gateway.auth import create_token
from tests.integration.test_api import bearer, serving
from tests.integration.test_rules import ZONE, at_local, dry_day
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

ADMIN = "admin-late-outcome-test-token"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gw(make_gateway: Callable[..., Any], clock: FakeClock) -> Any:
    return make_gateway(clock=clock, admin_token=ADMIN)


@pytest.fixture
def api(gw: Any) -> Iterator[httpx.Client]:
    with (
        serving(create_app(gw.runtime)) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10.0
        ) as client,
    ):
        yield client


def ok(resp: Any, code: int = 200) -> Any:
    assert resp.status_code == code, resp.text
    return resp.json() if resp.content else None


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def alert_row(gw: Any, alert_id: str) -> Any:
    with gw.engine.connect() as c:
        return c.execute(select(T.alerts).where(T.alerts.c.id == alert_id)).one()


def timeline(api: httpx.Client, alert_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ok(api.get(f"/api/v1/alerts/{alert_id}"))["timeline"]
    return result


def pager_resolves(mq: Mqtt, gw: Any, pager: str, alert_id: str, note: str | None = None) -> None:
    """The pager's `resolved` reply (contract v1 `reply`: no outcome), waited for."""
    body = {"id": uuid.uuid4().hex[:12], "ts": int(time.time() * 1000), "alert_id": alert_id}
    body |= {"action": "resolved", **({"note": note} if note else {})}
    mq.raw(f"{mq.base}/v1/pagers/{pager}/replies", json.dumps(body).encode())
    wait_until(lambda: alert_row(gw, alert_id).state == "resolved", what="the pager's resolve")


def test_staff_give_the_outcome_of_a_pager_resolved_alert_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    start = clock()
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page", timeout=2)
    alert_id = page["alert_id"]
    pager_resolves(mq, gw, "pw1", alert_id, note="老人没事")
    before = alert_row(gw, alert_id)
    assert (before.outcome, before.note) == (None, "老人没事")
    period = {"from": iso(start - 60), "to": iso(start + 3600)}
    assert ok(api.get("/api/v1/reports/alerts", params=period))["by_outcome"] == {"no_outcome": 1}

    # Two minutes later the station's staff give the outcome, under their own name.
    clock.advance(120)
    staff = create_token(gw.engine, "值班台", role="staff", now_ms=int(clock() * 1000))
    given = ok(
        api.post(
            f"/api/v1/alerts/{alert_id}/resolve",
            json={"outcome": "test", "note": "演练"},
            headers=bearer(staff),
        )
    )
    assert (given["state"], given["outcome"]) == ("resolved", "test")
    assert given["note"] == "老人没事", "the responder's note stays"
    after = alert_row(gw, alert_id)
    assert (after.closed_at, after.acknowledged_by) == (before.closed_at, before.acknowledged_by)
    events = timeline(api, alert_id)
    [resolved] = [e for e in events if e["type"] == "resolved"]
    [outcome] = [e for e in events if e["type"] == "resolve_again"]
    assert resolved["actor"] == "responder:w1" and resolved["detail"] == {"note": "老人没事"}
    assert outcome["actor"] == "api:值班台"
    assert outcome["detail"] == {"outcome": "test", "note": "演练"}
    waited = datetime.fromisoformat(outcome["at"]) - datetime.fromisoformat(resolved["at"])
    assert waited.total_seconds() >= 120
    r = ok(api.get("/api/v1/reports/alerts", params=period))
    assert r["by_outcome"] == {"test": 1} and r["false_alarm_rate"] is None
    assert r["to_resolution"]["count"] == 1 and r["to_resolution"]["max_s"] < 60

    # An outcome is never rewritten.
    again = api.post(f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "real"})
    assert again.status_code == 409 and "resolved" in again.json()["detail"], again.text
    assert alert_row(gw, alert_id).outcome == "test"
    assert [e["type"] for e in timeline(api, alert_id)].count("resolve_again") == 1

    # A cancelled alert stays cancelled, with no outcome. The device's times follow the test's
    # clock: a cancel sent (by its `ts`) 120 s before the gateway's now would be stale.
    mq.event("cb-1", "button.pressed", ts=int(clock() * 1000))
    [page2] = mq.wait_for(lambda m: m["type"] == "page" and m["alert_id"] != alert_id, timeout=2)
    mq.event("cb-1", "button.cancelled", ts=int(clock() * 1000))
    wait_until(lambda: alert_row(gw, page2["alert_id"]).state == "cancelled", what="cancel")
    refused = api.post(f"/api/v1/alerts/{page2['alert_id']}/resolve", json={"outcome": "test"})
    assert refused.status_code == 409 and "cancelled" in refused.json()["detail"], refused.text
    row = alert_row(gw, page2["alert_id"])
    assert (row.state, row.outcome) == ("cancelled", None)
    r = ok(api.get("/api/v1/reports/alerts", params=period))
    assert r["by_outcome"] == {"cancelled": 1, "test": 1}


def test_a_pager_resolved_no_water_alert_given_false_alarm_is_learned_from(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    at_local(clock, 6)
    dry_day(mq, gw, clock, until_hour=18)  # 12 hours of daytime with no water: the alert
    [page] = mq.wait_for(lambda m: m["kind"] == "no_water_use", timeout=5)
    alert_id = page["alert_id"]
    pager_resolves(mq, gw, "pw1", alert_id)
    assert "learned_again" not in [e["type"] for e in timeline(api, alert_id)]

    given = ok(api.post(f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "false_alarm"}))
    assert given["outcome"] == "false_alarm"
    learned = [e for e in timeline(api, alert_id) if e["type"] == "learned_again"]
    assert learned and learned[0]["detail"] == {
        "day": datetime.fromtimestamp(clock(), ZONE).date().isoformat(),
        "rule": "water",
    }
