"""The alert lifecycle in the gateway's log (gateway/alert_log.py), on SQLite and PostgreSQL with a
real Mosquitto: one `alert <step> id=...` line per step, written only once its transaction has
committed, and never a name, phone number, address or note."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert, select, text

from gateway import tables as T
from gateway.api import create_app
from gateway.auth import ADMIN_NAME, create_token
from tests.integration.test_api import bearer, serving
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

ADMIN = "admin-alert-log-test-token"
# What seed_home gives the elder and the people, and a note full of what must stay on the
# timeline: none of it may reach the log.
PERSONAL = ("老人1", "幸福里", "13800000000", "13900000000", "R-w1", "R-v1", "门锁密码", "4321")


def lifecycle(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.alerts"]


def assert_nothing_personal(caplog: pytest.LogCaptureFixture) -> None:
    """In no line of any logger: the log leaves the station."""
    for r in caplog.records:
        said = r.getMessage() + (r.exc_text or "")
        leaked = [p for p in PERSONAL if p in said]
        assert not leaked, f"{leaked} in the log of {r.name}: {said[:300]}"


def state_of(engine: Engine, alert_id: str) -> str:
    with engine.connect() as c:
        return c.execute(select(T.alerts.c.state).where(T.alerts.c.id == alert_id)).scalar_one()


def reply_with_note(mq: Mqtt, pager: str, alert_id: str, action: str, note: str) -> None:
    body = {
        "id": uuid.uuid4().hex[:12],
        "ts": int(time.time() * 1000),
        "alert_id": alert_id,
        "action": action,
        "note": note,
    }
    mq.raw(f"{mq.base}/v1/pagers/{pager}/replies", json.dumps(body).encode())


def test_an_alarm_logs_opened_paged_acknowledged_resolved_in_order(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    seed_home(engine)
    gw = make_gateway(admin_token=ADMIN)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    alert_id = page["alert_id"]
    reply_with_note(mq, "pw1", alert_id, "ack", "老人1 门锁密码 4321, 电话 13800000000")
    wait_until(lambda: state_of(engine, alert_id) == "acknowledged", what="the ack")
    with serving(create_app(gw.runtime)) as url:
        done = httpx.post(
            f"{url}/api/v1/alerts/{alert_id}/resolve",
            json={"outcome": "real", "note": "老人1 在家, 13800000000"},
            headers=bearer(ADMIN),
            timeout=10,
        )
    assert done.status_code == 200, done.text
    # The worker writes its lines just after the commit: the state may show a moment before.
    wait_until(lambda: len(lifecycle(caplog)) >= 4, what="four lifecycle lines")
    assert lifecycle(caplog) == [
        f"alert opened id={alert_id} kind=call_button priority=P1 elder=e1 device=cb-1",
        f"alert paged id={alert_id} step=1 to=w1,w2 reason=opened",
        f"alert acknowledged id={alert_id} by=responder:w1",
        f"alert resolved id={alert_id} by=api:{ADMIN_NAME} outcome=real",
    ]
    assert {r.levelno for r in caplog.records if r.name == "gateway.alerts"} == {logging.INFO}
    assert_nothing_personal(caplog)


def test_escalation_decline_and_cancel_are_logged(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.alerts")
    seed_home(engine)
    clock = FakeClock()
    make_gateway(clock=clock)
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    a = page["alert_id"]
    clock.advance(31)
    mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=3)
    reply_with_note(mq, "pv1", a, "decline", "R-v1 生病了")
    mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=3)
    mq.event("cb-1", "button.cancelled")  # within the grace period
    mq.wait_for(lambda m: m["type"] == "notice" and m["state"] == "cancelled", count=3)
    wait_until(lambda: len(lifecycle(caplog)) >= 8, what="eight lifecycle lines")
    assert lifecycle(caplog) == [
        f"alert opened id={a} kind=call_button priority=P1 elder=e1 device=cb-1",
        f"alert paged id={a} step=1 to=w1,w2 reason=opened",
        f"alert escalated id={a} step=2 reason=timeout",
        f"alert paged id={a} step=2 to=v1 reason=timeout",
        f"alert declined id={a} by=responder:v1",
        f"alert escalated id={a} step=3 reason=declined",
        f"alert paged id={a} step=3 to=s1 reason=declined",
        f"alert cancelled id={a} by=elder:cb-1",
    ]
    assert_nothing_personal(caplog)


def test_the_board_and_the_phone_page_log_as_the_pager_does(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.alerts")
    seed_home(engine)
    gw = make_gateway(admin_token=ADMIN)
    w1 = create_token(engine, "t-w1", "watcher", now_ms=gw.runtime.now_ms(), person_id="w1")
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    a = page["alert_id"]
    with serving(create_app(gw.runtime)) as url, httpx.Client(base_url=url, timeout=10) as http:
        sent = http.post(
            f"/api/v1/alerts/{a}/assign", json={"responder_id": "v1"}, headers=bearer(ADMIN)
        )
        assert sent.status_code == 200, sent.text
        for action in ("ack", "arrived"):
            out = http.post(
                "/api/v1/me/replies",
                json={"alert_id": a, "action": action, "note": "老人1 13800000000"},
                headers=bearer(w1),
            )
            assert out.status_code == 200, out.text
    assert lifecycle(caplog)[2:] == [
        f"alert assigned id={a} to=v1 by=api:{ADMIN_NAME}",
        f"alert paged id={a} step=1 to=v1 reason=assigned",  # a first assignment: no repeat
        f"alert acknowledged id={a} by=responder:w1",
        f"alert on_site id={a} by=responder:w1",
    ]
    assert_nothing_personal(caplog)


def _refuse_outbox_writes(engine: Engine) -> Callable[[], None]:
    """A fault in the database itself, in the middle of the alarm's transaction: every write to
    the outbox refused (after the alert's own row), until the function returned lifts it. On
    SQLite a trigger naming a table that does not exist (an OperationalError, as a full disk
    or a lock would give); on PostgreSQL a trigger that raises."""
    with engine.begin() as c:
        if engine.dialect.name == "sqlite":
            c.execute(
                text(
                    "CREATE TRIGGER fault_outbox BEFORE INSERT ON outbox "
                    "BEGIN INSERT INTO fault_no_such_table VALUES (1); END"
                )
            )
        else:
            c.execute(
                text(
                    "CREATE FUNCTION fault_outbox() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'injected fault: outbox refused'; END $$"
                )
            )
            c.execute(
                text(
                    "CREATE TRIGGER fault_outbox BEFORE INSERT ON outbox "
                    "FOR EACH ROW EXECUTE FUNCTION fault_outbox()"
                )
            )

    def lift() -> None:
        with engine.begin() as c:
            if engine.dialect.name == "sqlite":
                c.execute(text("DROP TRIGGER fault_outbox"))
            else:
                c.execute(text("DROP TRIGGER fault_outbox ON outbox"))
                c.execute(text("DROP FUNCTION fault_outbox()"))

    return lift


def test_a_rolled_back_alarm_logs_nothing_and_its_retry_logs_once(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    seed_home(engine)
    gw = make_gateway()
    lift = _refuse_outbox_writes(engine)
    mq.event("cb-1", "button.pressed")
    # Each try opened the alert (under a new id) and was rolled back.
    wait_until(lambda: gw.metrics.db_errors._value.get() >= 2, what="two failed tries")
    assert lifecycle(caplog) == [], "a line for an alert that was rolled back"
    lift()
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2, timeout=10)
    a = page["alert_id"]
    wait_until(lambda: len(lifecycle(caplog)) >= 2, what="the committed alarm's lines")
    time.sleep(0.3)
    with engine.connect() as c:
        assert c.execute(select(T.alerts.c.id)).scalars().all() == [a]
    assert lifecycle(caplog) == [
        f"alert opened id={a} kind=call_button priority=P1 elder=e1 device=cb-1",
        f"alert paged id={a} step=1 to=w1,w2 reason=opened",
    ]
    assert_nothing_personal(caplog)  # also in the database errors logged meanwhile


def test_an_alarm_nobody_can_be_reached_on_is_an_error(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.alerts")
    # One watcher with no pager and no channel, and no staff to fall back on.
    seed_home(engine, steps=[(["w1"], 30)], responders=[("w1", "watcher", None, "zh-CN")])
    make_gateway()
    mq.event("cb-1", "button.pressed")
    wait_until(lambda: len(lifecycle(caplog)) >= 2, what="the opened and unpaged lines")
    with engine.connect() as c:
        a = c.execute(select(T.alerts.c.id)).scalar_one()
    assert lifecycle(caplog) == [
        f"alert opened id={a} kind=call_button priority=P1 elder=e1 device=cb-1",
        f"alert unpaged id={a} step=1 why=nobody_reachable fallback=none",
    ]
    [unpaged] = [r for r in caplog.records if "unpaged" in r.getMessage()]
    assert unpaged.levelno == logging.ERROR


def test_a_channel_that_gives_up_is_a_warning(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # loopback only
    caplog.set_level(logging.INFO)
    with socket.socket() as s:  # a port nobody listens on: the provider cannot be reached
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A family member without a pager, reached by one SMS-like link only.
    seed_home(engine, steps=[(["f1"], 30)], responders=[("f1", "family", None, "zh-CN")])
    with engine.begin() as c:
        c.execute(
            insert(T.responder_channels).values(
                responder_id="f1",
                position=0,
                channel="apprise",
                address=f"json://user:s3cr3t@127.0.0.1:{port}/hook",
                after_s=0,
            )
        )
    make_gateway(delivery_max_tries=1)  # the first failure is the last
    mq.event("cb-1", "button.pressed")

    def failed() -> list[Any]:
        return [r for r in caplog.records if "alert delivery failed" in r.getMessage()]

    wait_until(failed, timeout=10, what="the give-up line")
    with engine.connect() as c:
        a = c.execute(select(T.alerts.c.id)).scalar_one()
        page_id = c.execute(select(T.deliveries.c.page_id)).scalars().first()
    [gave_up] = failed()
    assert gave_up.levelno == logging.WARNING
    assert gave_up.getMessage() == (
        f"alert delivery failed id={a} page={page_id} responder=f1 channel=apprise link=0 tries=1"
    )
    assert f"alert paged id={a} step=1 to=f1 reason=opened" in lifecycle(caplog)
    assert all("s3cr3t" not in r.getMessage() for r in caplog.records)


def test_everyone_declining_at_the_last_step_is_logged_and_nobody_left_is_an_error(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.alerts")
    seed_home(engine, steps=[(["w1"], 60), (["v1"], 60)])  # s1: the only staff, off duty
    make_gateway()
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw1")
    a = page["alert_id"]
    reply_with_note(mq, "pw1", a, "decline", "R-w1 不在家")
    mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=3)
    reply_with_note(mq, "pv1", a, "decline", "R-v1 生病了")
    mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=3)
    reply_with_note(mq, "ps1", a, "decline", "老人1 13800000000")
    wait_until(lambda: len(lifecycle(caplog)) >= 10, what="ten lifecycle lines")
    assert lifecycle(caplog) == [
        f"alert opened id={a} kind=call_button priority=P1 elder=e1 device=cb-1",
        f"alert paged id={a} step=1 to=w1 reason=opened",
        f"alert declined id={a} by=responder:w1",
        f"alert escalated id={a} step=2 reason=declined",
        f"alert paged id={a} step=2 to=v1 reason=declined",
        f"alert declined id={a} by=responder:v1",
        f"alert escalated id={a} step=2 reason=all_declined to=all_staff",
        f"alert paged id={a} step=2 to=s1 reason=all_declined",
        f"alert declined id={a} by=responder:s1",
        f"alert unpaged id={a} step=2 why=all_declined fallback=none",
    ]
    [unpaged] = [r for r in caplog.records if "unpaged" in r.getMessage()]
    assert unpaged.levelno == logging.ERROR
    assert_nothing_personal(caplog)
