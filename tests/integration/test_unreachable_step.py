"""A step whose people cannot be reached by any channel, end to end on SQLite and PostgreSQL with
a real Mosquitto: when every channel of everyone asked at a step has failed for good, the next
step is paged at once, not at the step's time-out (at the last step, the staff); a channel with
a retry left holds it; and with nobody reachable and no staff, the timeline says that nobody
was paged, once. Time moves with a FakeClock; every wait is bounded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway import phone
from gateway.api import create_app
from tests.integration.test_api import serving
from tests.integration.test_paging import (
    ADMIN,
    QUIET,
    Hooks,
    alert_row,
    channels,
    delivery_rows,
    events,
    ok,
)
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hooks]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    h = Hooks()
    yield h
    h.close()


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


def the_alert(api: httpx.Client) -> str:
    got: list[dict[str, Any]] = wait_until(lambda: ok(api.get("/api/v1/alerts")), what="alert")
    [alert] = got
    return str(alert["id"])


def test_a_step_whose_only_channel_is_a_closed_phone_page_pages_the_next_step_at_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    # The volunteer's only way to be reached is the phone page, and it is not open.
    seed_home(
        engine,
        steps=[(["v1"], 20), (["w1"], 20)],
        responders=[("v1", "volunteer", None, "zh-CN"), ("w1", "watcher", "pw1", "zh-CN")],
    )
    channels(api, "v1", [{"channel": "web"}])
    mq.event("cb-1", "button.pressed")
    alert_id = the_alert(api)
    # At once, not at the 20 s time-out: the clock is not moved.
    [page] = mq.wait_for(lambda m: m["_pager"] == "pw1", timeout=5)
    assert page["step"] == 2 and page["alert_id"] == alert_id
    [web] = [d for d in delivery_rows(gw, alert_id) if d.channel == "web"][:1]
    assert (web.status, web.error) == ("failed", phone.NOT_OPEN)
    [unreachable] = events(api, alert_id, "step_unreachable")
    assert unreachable["detail"] == {"step": 1, "why": "every channel failed"}
    [escalated] = events(api, alert_id, "escalated")
    assert escalated["detail"] == {"from": 1, "to": 2, "reason": "previous_step_unreachable"}
    row = alert_row(gw, alert_id)
    assert row.step == 2 and row.state == "open"
    assert row.next_escalation_at > int(clock() * 1000) + 15_000  # step 2's own time-out
    # The phone page's retries go on (the volunteer may still open it); nothing pages again.
    clock.advance(6)
    wait_until(
        lambda: sum(d.channel == "web" for d in delivery_rows(gw, alert_id)) >= 2,
        timeout=5,
        what="the phone page retried",
    )
    time.sleep(QUIET)
    assert len(mq.pages("pw1")) == 1
    assert len(events(api, alert_id, "step_unreachable")) == 1


def test_a_failing_sms_holds_the_step_until_its_last_try_then_the_staff_are_paged(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock, hooks: Hooks
) -> None:
    # The last (only) step: a relative without a pager, whose SMS provider fails every time.
    seed_home(
        engine,
        steps=[(["f1"], 60)],
        responders=[("f1", "family", None, "zh-CN"), ("s1", "staff", "ps1", "en")],
    )
    channels(api, "f1", [{"channel": "apprise", "address": hooks.url("fail-sms")}])
    mq.event("cb-1", "button.pressed")
    hooks.wait("fail-sms", count=1, timeout=5)
    alert_id = the_alert(api)

    def failed() -> int:
        return sum(d.status == "failed" for d in delivery_rows(gw, alert_id))

    wait_until(lambda: failed() == 1, timeout=5, what="first failure recorded")
    time.sleep(QUIET)
    assert mq.pages("ps1") == [], "paged the staff while the SMS had retries left"
    clock.advance(6)  # the second try (back-off 5 s)
    hooks.wait("fail-sms", count=2, timeout=5)
    wait_until(lambda: failed() == 2, timeout=5, what="second failure recorded")
    time.sleep(QUIET)
    assert mq.pages("ps1") == [], "paged the staff while the SMS had a retry left"
    clock.advance(16)  # the third and last try (back-off 15 s): given up
    hooks.wait("fail-sms", count=3, timeout=5)
    # The staff at once, at +22 s, not at the step's 60 s time-out.
    [page] = mq.wait_for(lambda m: m["_pager"] == "ps1", timeout=5)
    assert page["alert_id"] == alert_id
    [unreachable] = events(api, alert_id, "step_unreachable")
    assert unreachable["detail"] == {"step": 1, "why": "every channel failed"}
    [unpaged] = events(api, alert_id, "unpaged")
    assert unpaged["detail"]["why"] == "every channel failed"
    row = alert_row(gw, alert_id)
    assert row.state == "open" and row.next_escalation_at > int(clock() * 1000) + 55_000
    time.sleep(QUIET)
    assert len(mq.pages("ps1")) == 1, "the staff paged again before the time-out"


def test_nobody_reachable_and_no_staff_says_unpaged_on_the_timeline_once(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock
) -> None:
    # A watcher with neither pager nor channel, and no staff at all to fall back on.
    seed_home(engine, steps=[(["w9"], 20)], responders=[("w9", "watcher", None, "zh-CN")])
    mq.event("cb-1", "button.pressed")
    alert_id = the_alert(api)
    [unpaged] = wait_until(lambda: events(api, alert_id, "unpaged"), what="unpaged")
    assert unpaged["detail"] == {"why": "nobody of the plan reachable", "fallback": "none"}

    def tries() -> int:
        return len(events(api, alert_id, "step_unreachable"))

    for n in (2, 3):  # the step is tried again at each time-out: the timeline does not grow
        clock.advance(21)
        wait_until(lambda: tries() == n, timeout=5, what=f"try {n}")  # noqa: B023 (waited here)
    assert len(events(api, alert_id, "unpaged")) == 1
    assert alert_row(gw, alert_id).state == "open"
