"""Another station's staff member paged for an alarm can open it and answer it, and sees
nothing else of that station (gateway/care_store.py `Scope.paged_filter`, gateway/api.py
`in_scope`, gateway/api_board.py), over real HTTP with a private Mosquitto, on SQLite and
PostgreSQL.

呼家楼站 has no staff: its elder's press pages 金台站's staff member on duty (sb1) and nobody
else. sb1 sees it on the board and its stream, opens it and its elder's card (audited), assigns
it and answers it; 金台站's sb2 and 红庙站's sa1, not paged, get 404 as before; and sb1 still gets
404 for 呼家楼站's other alarms (paged to family by an explicit plan), its elders' records and
devices, and the card once the alarm is over."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway import tables as T
from gateway.api import create_app
from gateway.auth import create_token
from gateway.tables_care import audit_log
from tests.integration.test_api import serving
from tests.integration.test_board_api import Sse, bearer, head_id, is_alert
from tests.integration.test_paging import (
    BY_STATION,
    HJL,
    HM,
    JT,
    QUIET,
    STATION_PEOPLE,
    ok,
    pagers_of,
    pair,
    pressed,
    shift,
    stations,
)
from tests.integration.test_station_scope import person
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

ADMIN = "admin-paged-across-stations-token"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gw(make_gateway: Any, clock: FakeClock) -> Any:
    return make_gateway(clock=clock, admin_token=ADMIN)


@pytest.fixture
def url(gw: Any) -> Iterator[str]:
    with serving(create_app(gw.runtime)) as base_url:
        yield base_url


@pytest.fixture
def api(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers=bearer(ADMIN), timeout=10.0) as client:
        yield client


def state_of(gw: Any, alert_id: str) -> str:
    with gw.engine.connect() as c:
        return str(c.execute(select(T.alerts.c.state).where(T.alerts.c.id == alert_id)).scalar())


def new_alert_paged(mq: Mqtt, device: str, type_: str, **fields: Any) -> str:
    seen = {p["alert_id"] for p in mq.pages()}
    mq.event(device, type_, **fields)
    [page] = mq.wait_for(lambda m: m["type"] == "page" and m["alert_id"] not in seen, 2.0)
    return str(page["alert_id"])


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
def test_staff_paged_for_another_stations_alarm_open_and_answer_it_and_nothing_else(
    engine: Any, gw: Any, url: str, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, n=2, steps=[], responders=STATION_PEOPLE)
    stations(api, {"e1": HJL, "e2": HJL}, BY_STATION)  # 呼家楼站 has no staff at all
    shift(api, clock, "sb1")
    now = int(clock() * 1000)
    desks = {
        p: httpx.Client(
            base_url=url,
            headers=bearer(create_token(gw.engine, f"desk-{p}", "staff", now_ms=now, person_id=p)),
            timeout=10.0,
        )
        for p in ("sb1", "sb2", "sa1")
    }
    sb1 = desks["sb1"]
    stream = Sse(url, f"/api/v1/board/stream?since={head_id(gw)}", dict(sb1.headers))
    try:
        alarm = pressed(mq, "cb-1", 1)
        # 呼家楼站's other alarms page family only (an explicit plan wins), not sb1
        f1_only = {"steps": [{"responder_ids": ["f1"], "ack_timeout_s": 120}]}
        for elder in ("e1", "e2"):
            ok(api.put(f"/api/v1/elders/{elder}/escalation", json=f1_only))
        # paired after the alarm opened (so not on its plan): one of no station, one of 红庙站's
        pair(api, "e1", "x1", role="watcher")
        pair(api, "e1", person(api, "邻居小张", "watcher", HM), role="watcher")
        gas = new_alert_paged(mq, "gas-1", "gas.alarm", gas="natural_gas", lel_pct=25.0)
        other = pressed(mq, "cb-2", 1)
        time.sleep(QUIET)
        assert pagers_of(mq, alarm) == ["psb1"], "呼家楼站 has nobody: 金台站's on duty"
        assert pagers_of(mq, gas) == pagers_of(mq, other) == ["pf1"]

        # sb1 was paged: the alarm is on their board and stream, and theirs to open
        snap = ok(sb1.get("/api/v1/board"))
        assert (snap["station"], [a["id"] for a in snap["alerts"]]) == (JT, [alarm])
        stream.wait_for(is_alert(alarm))
        ok(sb1.get(f"/api/v1/alerts/{alarm}"))
        ok(sb1.get(f"/api/v1/alerts/{alarm}/deliveries"))
        card = ok(sb1.get("/api/v1/board/elders/e1/card"))
        assert (card["name"], card["phone"], card["station"]) == ("王秀英", "13800000001", HJL)
        assert card["address"] and card["emergency_contacts"][0]["phone"] == "13900000001"
        assert [a["id"] for a in card["recent_alerts"]] == [alarm], "not e1's gas alarm"
        assert [p["responder_id"] for p in card["paired"]] == ["x1"], "not 红庙站's watcher"
        assert len(ok(api.get("/api/v1/board/elders/e1/card"))["paired"]) == 2  # the admin's
        with gw.engine.connect() as c:
            read = c.execute(
                select(audit_log.c.detail).where(
                    audit_log.c.person_id == "sb1",
                    audit_log.c.resource == "board_card",
                    audit_log.c.elder_id == "e1",
                )
            ).all()
        assert [r.detail for r in read] == [{"paged_for": alarm}]

        # but nothing else of 呼家楼站
        for path in (
            f"/api/v1/alerts/{gas}",
            f"/api/v1/alerts/{other}",
            f"/api/v1/alerts/{gas}/deliveries",
            "/api/v1/elders/e1",
            "/api/v1/care/elders/e1",
            "/api/v1/devices/cb-1",
            "/api/v1/board/elders/e2/card",
        ):
            assert sb1.get(path).status_code == 404, path
        for alert_id in (gas, other):
            assert sb1.post(f"/api/v1/alerts/{alert_id}/ack").status_code == 404
        assert not {gas, other} & {a["id"] for a in ok(sb1.get("/api/v1/alerts"))}
        assert (state_of(gw, gas), state_of(gw, other)) == ("open", "open")

        # staff not paged for it, of its station's helper or of another, see none of it
        for who in ("sb2", "sa1"):
            desk = desks[who]
            assert alarm not in {a["id"] for a in ok(desk.get("/api/v1/board"))["alerts"]}
            for path in (f"/api/v1/alerts/{alarm}", "/api/v1/board/elders/e1/card"):
                assert desk.get(path).status_code == 404, (who, path)
            assert desk.post(f"/api/v1/alerts/{alarm}/ack").status_code == 404, who
            assign = desk.post(f"/api/v1/alerts/{alarm}/assign", json={"responder_id": who})
            assert assign.status_code == 404, who
        assert state_of(gw, alarm) == "open"

        # sb1 sends a colleague, who is paged and so may open it too
        ok(sb1.post(f"/api/v1/alerts/{alarm}/assign", json={"responder_id": "sb2"}))
        mq.wait_for(lambda m: m["_pager"] == "psb2" and m["alert_id"] == alarm, 2.0)
        ok(desks["sb2"].get(f"/api/v1/alerts/{alarm}"))
        assert desks["sa1"].get(f"/api/v1/alerts/{alarm}").status_code == 404

        # and answers it over HTTP, as the board does
        acked = ok(sb1.post(f"/api/v1/alerts/{alarm}/ack"))
        assert acked["state"] == "acknowledged" and "sb1" in acked["acknowledged_by"]
        stream.wait_for(is_alert(alarm, state="acknowledged"))
        assert {m["data"]["alert"]["id"] for m in stream.alerts()} == {alarm}
        ok(sb1.post(f"/api/v1/alerts/{alarm}/arrive"))
        ok(sb1.post(f"/api/v1/alerts/{alarm}/resolve", json={"outcome": "real"}))
        wait_until(lambda: state_of(gw, alarm) == "resolved", what="resolved")
        assert ok(sb1.get("/api/v1/board"))["alerts"] == []
        # the alarm is over: the elder is another station's again
        assert sb1.get("/api/v1/board/elders/e1/card").status_code == 404
    finally:
        stream.close()
        for desk in desks.values():
            desk.close()
