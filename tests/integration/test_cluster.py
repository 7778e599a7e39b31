"""Three gateway processes on one Mosquitto and one PostgreSQL, sharing the device topics (MQTT 5
shared subscriptions): one is killed (SIGKILL) in the middle of a stream of presses and of their
escalations, and every alarm is still paged exactly once and every escalation fires.

The killed gateway's share of the presses is queued by the broker in its persistent session
(Mosquitto gives a member that is away its share); a survivor adopts that session
(gateway/adopt.py) and pages them."""

from __future__ import annotations

import collections
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gateway import tables as T
from tests.support.alarm import Mqtt, seed_home, wait_until
from tests.support.process import GatewayProcess

pytestmark = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

GROUP = "shouwang-test"


@pytest.fixture
def cluster(mosquitto: Any, db_url: str, base: str, tmp_path: Path):
    procs: dict[str, GatewayProcess] = {}

    def make(name: str) -> GatewayProcess:
        p = GatewayProcess(
            {
                "SHOUWANG_MQTT_URL": mosquitto.url,
                "SHOUWANG_DATABASE_URL": db_url,
                "SHOUWANG_MQTT_BASE": base,
                "SHOUWANG_MQTT_CLIENT_ID": f"gw-{base}-{name}",
                "SHOUWANG_MQTT_SHARE_GROUP": GROUP,
            },
            tmp_path / f"gateway-{name}.log",
        )
        procs[name] = p
        return p

    yield make
    for p in procs.values():
        p.stop()


def _adopted(gw: GatewayProcess) -> float:
    text = httpx.get(f"{gw.url}/metrics", timeout=10).text
    m = re.search(r"^shouwang_adopted_messages_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _events_received(gw: GatewayProcess) -> float:
    text = httpx.get(f"{gw.url}/metrics", timeout=10).text
    m = re.search(r'^shouwang_messages_total\{channel="events"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def _steps(mq: Mqtt) -> dict[tuple[str, int], set[str]]:
    """(alert id, step) -> the page ids received for it (a page resent keeps its page_id)."""
    out: dict[tuple[str, int], set[str]] = collections.defaultdict(set)
    for p in mq.pages():
        out[(p["alert_id"], p["step"])].add(p["page_id"])
    return out


def test_three_gateways_one_killed_mid_stream_every_alarm_paged_once(cluster, engine, mq: Mqtt):
    n = 36
    seed_home(engine, n=n, steps=[(["w1"], 5), (["v1"], 60)])
    gws = [cluster(name) for name in ("a", "b", "c")]
    for gw in gws:
        gw.start()
    time.sleep(0.5)  # every member's shared subscription is in place

    for i in range(1, n // 2 + 1):
        mq.event(f"cb-{i}", "button.pressed")
    # Each gateway has taken its share of the first half: each has pages on their way.
    wait_until(lambda: len({a for a, s in _steps(mq) if s == 1}) == n // 2, 10, "first pages")
    # b hangs (SIGSTOP), then is killed: the broker goes on handing it its share of the second
    # half, which waits unacknowledged in its session. (Killed at once, b was sometimes handed
    # nothing more by Mosquitto, and then there is nothing to adopt.)
    assert gws[1].proc is not None
    os.kill(gws[1].proc.pid, signal.SIGSTOP)
    for i in range(n // 2 + 1, n + 1):
        mq.event(f"cb-{i}", "button.pressed")
    gws[1].kill()  # in the middle of the stream, and of every first-half escalation

    # Every press paged (the killed gateway's share too, by a survivor that adopted it) ...
    wait_until(
        lambda: len({a for a, s in _steps(mq) if s == 1}) == n, 20, "every press paged at step 1"
    )
    # ... and every escalation fired: nobody acknowledged in 5 s, so step 2 for all of them.
    wait_until(lambda: len({a for a, s in _steps(mq) if s == 2}) == n, 25, "every escalation fired")
    steps = _steps(mq)
    assert len({a for a, _ in steps}) == n
    # Exactly once: one page per alert and step (a page sent again carries the same page_id).
    assert all(len(ids) == 1 for ids in steps.values()), {
        k: v for k, v in steps.items() if len(v) > 1
    }
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(T.alerts)).scalar() == n
        per_step = c.execute(
            select(T.pages.c.alert_id, T.pages.c.step, func.count())
            .group_by(T.pages.c.alert_id, T.pages.c.step)
            .having(func.count() > 1)
        ).all()
        assert per_step == []
    # b's share of the second half, if the broker queued it for b (it does in most runs), was
    # paged by a survivor that adopted b's session; the next test makes sure of that path.


def test_presses_queued_for_a_dead_gateway_are_paged_by_another(cluster, engine, mq: Mqtt):
    """b alone in the group hangs, every press goes to its session, it dies; a, started after,
    adopts b's session and pages them all. Without the adoption they would wait for b."""
    seed_home(engine, n=5, steps=[(["w1"], 60)])
    a, b = cluster("a"), cluster("b")
    b.start()
    assert b.proc is not None
    os.kill(b.proc.pid, signal.SIGSTOP)
    for i in range(1, 6):
        mq.event(f"cb-{i}", "button.pressed")
    b.kill()
    a.start()
    wait_until(lambda: len({p["alert_id"] for p in mq.pages("pw1")}) == 5, 20, "all five paged")
    assert all(len(ids) == 1 for ids in _steps(mq).values())
    assert _adopted(a) >= 5, a.tail(80)


def test_a_gateway_back_takes_its_share_again(cluster, engine, mq: Mqtt):
    """A survivor adopts a stopped member's session and ends it; the member, restarted, starts
    a session of its own and gets its share again: no press is lost or paged twice."""
    seed_home(engine, n=12, steps=[(["w1"], 60)])
    a, b = cluster("a"), cluster("b")
    a.start()
    b.start()
    time.sleep(0.5)
    assert b.terminate() == 0  # clean stop: offline status; its session stays on the broker
    for i in range(1, 7):
        mq.event(f"cb-{i}", "button.pressed")
    wait_until(lambda: len(mq.pages("pw1")) >= 6, 15, "presses paged while b is stopped")
    b.start()
    time.sleep(0.5)
    for i in range(7, 13):
        mq.event(f"cb-{i}", "button.pressed")
    wait_until(lambda: len({p["alert_id"] for p in mq.pages("pw1")}) == 12, 15, "all paged")
    steps = _steps(mq)
    assert all(len(ids) == 1 for ids in steps.values())
    # b is a member again: the broker hands it a share of what came after its return.
    assert _events_received(b) > 0, b.tail()
