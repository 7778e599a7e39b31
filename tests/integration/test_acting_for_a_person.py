"""A staff member who is also a responder answers as that one person whichever door they use:
the board or the API (a token or a pages account acting for them), their pager, their phone
page. On SQLite and PostgreSQL with a real Mosquitto.

Before, the board's ack was recorded as the login (`api:<token>`, `user:<name>`) and the pager's
decline as `responder:<id>`: the decline did not withdraw the ack, nothing was paged and nobody
came; the log named the login (an email address) and the others' notice the login too."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from gateway import tables as T
from gateway.accounts import CSRF_HEADER, SESSION_COOKIE, create_session, create_user
from gateway.api import create_app
from gateway.auth import create_token
from tests.integration.test_api import bearer, serving
from tests.support.alarm import Mqtt, seed_home, wait_until

LOGIN = "li.hua@example.com"  # a login that is an email address: never in the log
# s1 (R-s1, staff, pager ps1) and w1 first; v1 next; w2 last.
STEPS = [(["s1", "w1"], 30), (["v1"], 30), (["w2"], 30)]


def lifecycle(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.alerts"]


def assert_no_login(caplog: pytest.LogCaptureFixture) -> None:
    for r in caplog.records:
        assert "li.hua" not in r.getMessage(), f"a login in the log of {r.name}: {r.getMessage()}"


def alert_row(engine: Engine, alert_id: str) -> Any:
    with engine.connect() as c:
        return c.execute(select(T.alerts).where(T.alerts.c.id == alert_id)).one()


def timeline(engine: Engine, alert_id: str) -> list[Any]:
    with engine.connect() as c:
        return list(
            c.execute(
                select(T.alert_events.c.type, T.alert_events.c.actor, T.alert_events.c.detail)
                .where(T.alert_events.c.alert_id == alert_id)
                .order_by(T.alert_events.c.id)
            ).all()
        )


def id_of(engine: Engine, table: Any, column: Any, value: str) -> str:
    with engine.connect() as c:
        return str(c.execute(select(table.c.id).where(column == value)).scalar_one())


def press(mq: Mqtt) -> str:
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    return str(page["alert_id"])


def assert_withdrawn_and_next_step_paged(engine: Engine, mq: Mqtt, a: str) -> None:
    mq.wait_for(lambda m: m["_pager"] == "pv1" and m["type"] == "page", timeout=5)
    row = alert_row(engine, a)
    assert (row.state, row.acknowledged_by, row.step) == ("open", None, 2)
    types = [(e.type, e.actor) for e in timeline(engine, a)]
    assert ("ack_withdrawn", "responder:s1") in types
    # w1 was told not to go, and is told it is open again, naming the person.
    again = mq.wait_for(lambda m: m["_pager"] == "pw1" and m.get("state") == "open")
    assert "R-s1无法前往" in again[0]["text"]


def test_a_board_ack_then_a_pager_decline_withdraws_it_and_pages_the_next_step(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    seed_home(engine, steps=STEPS)
    gw = make_gateway()
    token = create_token(engine, LOGIN, "staff", now_ms=gw.runtime.now_ms(), person_id="s1")
    tk = id_of(engine, T.api_tokens, T.api_tokens.c.name, LOGIN)
    a = press(mq)
    with serving(create_app(gw.runtime)) as url:
        ack = httpx.post(f"{url}/api/v1/alerts/{a}/ack", headers=bearer(token), timeout=10)
    assert ack.status_code == 200, ack.text
    assert ack.json()["acknowledged_by"] == "responder:s1"
    [acked] = [e for e in timeline(engine, a) if e.type == "acknowledged"]
    assert (acked.actor, acked.detail) == ("responder:s1", {"via": f"api:{tk}"})
    # The others are told the person's name; their own pager is told nothing.
    [told] = mq.wait_for(lambda m: m["type"] == "notice" and m["state"] == "acknowledged")
    assert told["_pager"] == "pw1"
    assert told["text"] == "【通知】老人1的呼叫已由R-s1接单，您无需前往"
    mq.reply("ps1", a, "decline")
    assert_withdrawn_and_next_step_paged(engine, mq, a)
    assert not mq.pages("ps1", "notice")
    wait_until(lambda: f"alert declined id={a} by=responder:s1 state=open" in lifecycle(caplog))
    assert f"alert acknowledged id={a} by=responder:s1" in lifecycle(caplog)
    assert_no_login(caplog)


def test_a_pages_account_ack_then_a_phone_page_decline_withdraws_it(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    seed_home(engine, steps=STEPS)
    gw = make_gateway()
    now = gw.runtime.now_ms()
    user = create_user(engine, LOGIN, "长城-守望-2026-xyz", "staff", now_ms=now, person_id="s1")
    cookie, session = create_session(engine, LOGIN, now_ms=now, lifetime_s=3600)
    signed_in = {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: session.csrf_token}
    a = press(mq)
    with serving(create_app(gw.runtime)) as url, httpx.Client(base_url=url, timeout=10) as http:
        ack = http.post(f"/api/v1/alerts/{a}/ack", headers=signed_in)
        assert ack.status_code == 200, ack.text
        assert ack.json()["acknowledged_by"] == "responder:s1"
        no = http.post(
            "/api/v1/me/replies", json={"alert_id": a, "action": "decline"}, headers=signed_in
        )
        assert no.status_code == 200, no.text
    [acked] = [e for e in timeline(engine, a) if e.type == "acknowledged"]
    assert acked.detail == {"via": f"user:{user.id}"}
    assert_withdrawn_and_next_step_paged(engine, mq, a)
    assert_no_login(caplog)


def test_a_pager_ack_then_a_board_ack_is_one_person_not_two(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    seed_home(engine, steps=STEPS)
    gw = make_gateway()
    token = create_token(engine, LOGIN, "staff", now_ms=gw.runtime.now_ms(), person_id="s1")
    a = press(mq)
    mq.reply("ps1", a, "ack")
    wait_until(lambda: alert_row(engine, a).state == "acknowledged", what="the pager's ack")
    with serving(create_app(gw.runtime)) as url:
        # The same person taking it again at the board is no second person coming.
        ack = httpx.post(f"{url}/api/v1/alerts/{a}/ack", headers=bearer(token), timeout=10)
    assert ack.status_code == 200, ack.text
    [again] = [e for e in timeline(engine, a) if e.type == "ack_again"]
    assert again.actor == "responder:s1"
    mq.reply("ps1", a, "decline")
    assert_withdrawn_and_next_step_paged(engine, mq, a)


def test_a_login_acting_for_nobody_is_logged_by_its_id(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    seed_home(engine, steps=STEPS)
    gw = make_gateway()
    now = gw.runtime.now_ms()
    user = create_user(engine, LOGIN, "长城-守望-2026-xyz", "staff", now_ms=now)
    cookie, session = create_session(engine, LOGIN, now_ms=now, lifetime_s=3600)
    signed_in = {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: session.csrf_token}
    a = press(mq)
    with serving(create_app(gw.runtime)) as url, httpx.Client(base_url=url, timeout=10) as http:
        ack = http.post(f"/api/v1/alerts/{a}/ack", headers=signed_in)
        assert ack.status_code == 200, ack.text
        sent = http.post(
            f"/api/v1/alerts/{a}/assign", json={"responder_id": "v1"}, headers=signed_in
        )
        assert sent.status_code == 200, sent.text
    # The timeline (seen by the station only) still names the login; the log its id.
    assert ack.json()["acknowledged_by"] == f"user:{LOGIN}"
    wait_until(lambda: any("assigned" in line for line in lifecycle(caplog)), what="assigned")
    assert f"alert acknowledged id={a} by=user:{user.id}" in lifecycle(caplog)
    assert f"alert assigned id={a} to=v1 by=user:{user.id}" in lifecycle(caplog)
    assert_no_login(caplog)
