"""A database under load is no fault of one alert, chain or rule state: a lock or statement
timeout while an escalation, a channel chain or the rule tick pages someone fails the whole poll,
tried again at the next one, rather than being laid on that alert (put off 30 s, with
`escalation_failed` on its timeline) or state (put off a minute, with a `check_failed` warning).
Only a refusal of what the alert or state holds is (tests/integration/test_due_faults.py and
test_rule_faults.py). On SQLite and PostgreSQL with a real Mosquitto; the fault is the
database's own (`Busy`), not patched code."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, text

from gateway import tables as T
from gateway.api import create_app
from tests.integration.test_api import serving
from tests.integration.test_due_faults import alert_row, delivery_rows, events, hooks, press
from tests.integration.test_paging import PEOPLE, Hooks, ok
from tests.integration.test_rule_faults import health_row, warnings
from tests.integration.test_rules import MIN, QUIET, alerts_of, reading
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until

__all__ = ["hooks"]  # a fixture of test_due_faults, used here

ADMIN = "admin-transient-faults-token"
# What pages a person: the rows a lock on that person holds up (their foreign key).
_PAGING = re.compile(r"\s*INSERT INTO (pages|deliveries)\b", re.IGNORECASE)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lock_timeout(engine: Any) -> None:
    """PostgreSQL: a wait for a lock ends after 250 ms on every connection to this database
    (as an operator sets for the gateway's role), set before the gateway connects."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as c:
            name = c.execute(text("SELECT current_database()")).scalar_one()
            c.execute(text(f"ALTER DATABASE \"{name}\" SET lock_timeout = '250ms'"))


@pytest.fixture
def gw(make_gateway: Any, clock: FakeClock, lock_timeout: None) -> Any:
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


class Busy:
    """The database under load for the writes that page `person` (their `pages` and
    `deliveries` rows), while in the `with`.

    PostgreSQL: another transaction holds the person's row (an edit of it in progress), which
    those inserts' foreign key must read; the gateway gives up waiting at the lock timeout
    (55P03). SQLite: the gateway's transactions hold the write lock from BEGIN IMMEDIATE on, so
    nothing inside one waits for a lock; what stops a statement there is a statement timeout,
    which SQLite has as a progress handler interrupting it (SQLITE_INTERRUPT): here, those
    inserts, on every connection of the gateway's. SQLite ends the whole transaction at such an
    error (as at SQLITE_FULL) before any savepoint can keep the rest, so there the poll failed
    whole even before the fault was told apart from a refusal; PostgreSQL keeps the transaction
    at a lock timeout, where laying it on one alert or state put it off."""

    def __init__(self, gw: Any, engine: Any, person: str) -> None:
        self.gw, self.engine, self.person = gw, engine, person
        self.on = threading.Event()
        self.hits = 0
        self._held: Any = None

    def __enter__(self) -> Busy:
        if self.engine.dialect.name == "postgresql":
            self._held = self.engine.connect()
            self._held.begin()
            r = T.responders.c
            self._held.execute(select(r.id).where(r.id == self.person).with_for_update())
        else:
            event.listen(self.gw.engine, "connect", self._hook)
            self.gw.engine.dispose()  # its connections from now on have the hook
        self.on.set()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.on.clear()
        if self._held is not None:
            self._held.rollback()
            self._held.close()

    def _hook(self, dbapi_conn: Any, _record: Any) -> None:
        paging = [False]

        def traced(sql: str) -> None:
            paging[0] = _PAGING.match(sql) is not None

        def progress() -> int:
            if self.on.is_set() and paging[0]:
                self.hits += 1
                return 1
            return 0

        dbapi_conn.set_trace_callback(traced)
        dbapi_conn.set_progress_handler(progress, 1)

    def tried(self) -> bool:
        """The gateway ran into the fault (SQLite: counted; PostgreSQL: a wait seen)."""
        if self.engine.dialect.name != "postgresql":
            return self.hits > 0
        with self.engine.connect() as c:
            return bool(
                c.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            )


def test_an_escalation_held_up_by_a_busy_database_goes_as_soon_as_it_can(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 60), (["v1"], 60)], responders=PEOPLE)
    mq.event("cb-1", "button.pressed")
    alert_id = press(mq, set())
    due = alert_row(gw, alert_id).next_escalation_at

    with Busy(gw, engine, "v1") as busy:
        clock.advance(61)
        wait_until(busy.tried, what="the escalation held up")
        time.sleep(QUIET)  # a few polls, each held up
        assert not events(gw, alert_id, "escalation_failed"), "laid on the alert"
        row = alert_row(gw, alert_id)
        assert (row.state, row.step, row.next_escalation_at) == ("open", 1, due)
        assert not mq.pages("pv1")
    # The database free again: step 2 at the next poll, not half a minute later.
    [step2] = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=3)
    assert (step2["alert_id"], step2["step"]) == (alert_id, 2)
    assert not events(gw, alert_id, "escalation_failed")


def test_a_silent_device_held_up_by_a_busy_database_is_raised_as_soon_as_it_can(
    engine: Any, gw: Any, mq: Mqtt, clock: FakeClock
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    reading(mq, gw, clock, "gas-1", lel_pct=0.0)  # a gas sensor reports every 5 minutes

    with Busy(gw, engine, "w1") as busy:
        clock.advance(16 * MIN)  # silent for three reports: its alert pages w1
        wait_until(busy.tried, what="the rule tick held up")
        time.sleep(QUIET)  # a tick a second, each held up
        assert not warnings(gw), "laid on the rule state"
        assert health_row(gw, "d:gas-1").due_at <= int(clock() * 1000), "put off"
        assert not alerts_of(gw) and not mq.pages()
    [page] = mq.wait_for(lambda m: m["kind"] == "device_offline", timeout=5)
    [alert] = alerts_of(gw, "device_offline")
    assert (alert.device_id, page["alert_id"]) == ("gas-1", alert.id)
    assert not warnings(gw)


def test_a_channel_chain_held_up_by_a_busy_database_goes_on_as_soon_as_it_can(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock, hooks: Hooks
) -> None:
    seed_home(engine, steps=[], responders=[("w1", "watcher", "pw1", "zh-CN")])
    ok(api.post("/api/v1/elders/e1/pairings", json={"responder_id": "w1"}), 201)
    link = {"channel": "apprise", "address": hooks.url("sms-w1"), "after_s": 60}
    ok(api.put("/api/v1/responders/w1/channels", json={"links": [link]}))
    mq.event("cb-1", "button.pressed")
    alert_id = press(mq, set())
    wait_until(
        lambda: all(r.status == "sent" for r in delivery_rows(gw, alert_id)),
        what="the page handed to the broker",
    )

    with Busy(gw, engine, "w1") as busy:
        clock.advance(61)  # the SMS is due
        wait_until(busy.tried, what="the chain held up")
        time.sleep(QUIET)
        assert not events(gw, alert_id, "chain_failed"), "laid on the chain"
        [row] = delivery_rows(gw, alert_id)
        assert row.next_try_at <= int(clock() * 1000), "put off"
        assert hooks.to("sms-w1") == []
    [sms] = hooks.wait("sms-w1", timeout=3)
    assert "老人1" in sms["message"]
    assert not events(gw, alert_id, "chain_failed")
