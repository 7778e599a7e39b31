"""A broker that forgets the gateway's session on a restart (Mosquitto without persistence) is
named in /healthz's `degraded` (broker_session, with its time and the advice), still a 200: the
gateway works, but presses sent while it was away may be lost. One with persistence is not
(the control). A real Mosquitto of the test's own, stopped and started again by its PID, on
SQLite and PostgreSQL (gateway/app.py `SESSION_LOST_SHOWN_S`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from gateway.api import create_app
from gateway.app import SESSION_LOST_SHOWN_S
from tests.integration.test_api import serving
from tests.support.alarm import wait_until
from tests.support.broker import PrivateMosquitto, mosquitto_bin
from tests.support.services import require


@pytest.fixture(params=[False, True], ids=["no-persistence", "persistence"])
def mosquitto(request: pytest.FixtureRequest) -> Iterator[PrivateMosquitto]:
    """This test's own broker (it restarts it): with or without persistence."""
    if mosquitto_bin() is None:
        require("mosquitto", "no mosquitto binary (apt-get install mosquitto)")
    broker = PrivateMosquitto(persistence=request.param)
    broker.persistent = request.param  # type: ignore[attr-defined]
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def test_healthz_names_a_session_the_broker_lost_for_a_day(
    make_gateway: Callable[..., Any], mosquitto: PrivateMosquitto
) -> None:
    gw = make_gateway()
    with serving(create_app(gw.runtime)) as url:

        def healthz() -> dict[str, Any]:
            r = httpx.get(f"{url}/healthz", timeout=10.0)
            assert r.status_code == 200, r.text  # never a failure: the gateway works
            return dict(r.json())

        before = healthz()
        assert "broker_session" not in before["degraded"]
        assert "session_lost" not in before["broker"]

        assert mosquitto.proc is not None
        pid = mosquitto.proc.pid
        mosquitto.stop()  # SIGTERM to that PID
        assert mosquitto.proc is None
        wait_until(lambda: not gw.mqtt_connected(), timeout=10, what="the gateway to notice")
        mosquitto.start()
        assert mosquitto.proc is not None and mosquitto.proc.pid != pid
        wait_until(gw.mqtt_connected, timeout=15, what="the gateway to reconnect")
        wait_until(
            lambda: all(lk.subscribed.is_set() for lk in gw.links), timeout=10, what="subscribed"
        )
        after = healthz()
        assert after["broker"]["ok"] is True and after["down"] == []

        if getattr(mosquitto, "persistent", True):
            # The control: the broker kept the session, nothing was lost, nothing is said.
            assert "broker_session" not in after["degraded"], after
            assert "session_lost" not in after["broker"]
            return

        assert "broker_session" in after["degraded"], after
        lost = after["broker"]["session_lost"]
        assert "persistence true" in lost["advice"] and "持久化" in lost["advice"]
        assert set(lost["clients"]) == {lk.client_id for lk in gw.links}  # every lane's link
        at = datetime.fromisoformat(lost["at"]).timestamp()
        assert abs(at - time.time()) < 60

        # Shown for a day, then no more (the ERROR stays in the log).
        for lk in gw.links:
            if lk.session_lost_at is not None:
                lk.session_lost_at = time.time() - SESSION_LOST_SHOWN_S + 5
        assert "broker_session" in healthz()["degraded"]
        for lk in gw.links:
            if lk.session_lost_at is not None:
                lk.session_lost_at = time.time() - SESSION_LOST_SHOWN_S - 1
        later = healthz()
        assert "broker_session" not in later["degraded"] and "session_lost" not in later["broker"]
