"""Messages the database refuses, held unacknowledged (gateway/ingest.py `_held`), over a real
broker, on SQLite and PostgreSQL: one held across a reconnect is never acknowledged with the
message id of the connection it came by (on the new one the broker may have given that id to a
press not yet committed), and is settled exactly once; a database that refuses every write is
reported by the health check, and what is held stays under the cap (each held message is in the
broker's window of messages in flight, which, full, stops all delivery)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from gateway.ingest import HELD_MAX
from tests.integration.test_unstorable import (
    _refuse_messages,
    alerts_of,
    messages_with,
    press_paged_within,
    quarantined,
)
from tests.support.alarm import FakeClock, Mqtt, seed_home, wait_until
from tests.support.process import free_port

_RECEIVED = re.compile(r"Received PUBLISH \(d(\d), q1, r\d, m(\d+)\)")
_ACKED = re.compile(r"Sending PUBACK \(Mid: (\d+)\)")


class Wire:
    """What paho's own log says one client received and acknowledged, in order, connection by
    connection (a CONNACK starts one; attached to a connected client, its connection is 0)."""

    def __init__(self, client: Any) -> None:
        self.lines: list[str] = []
        client.on_log = lambda c, u, level, buf: self.lines.append(buf)

    def connections(self) -> int:
        return sum(line.startswith("Received CONNACK") for line in list(self.lines))

    def redelivered(self) -> bool:
        """A message came again (dup) on a later connection."""
        return any((m := _RECEIVED.match(line)) and m[1] == "1" for line in list(self.lines))

    def stale_acks(self) -> list[str]:
        """Each PUBACK that answers no PUBLISH of its own connection still unanswered: an id
        of an earlier connection, or one answered already (so possibly another message's)."""
        bad: list[str] = []
        open_: set[int] = set()
        conn = 0
        for line in list(self.lines):
            if line.startswith("Received CONNACK"):
                conn += 1
                open_ = set()
            elif m := _RECEIVED.match(line):
                open_.add(int(m[2]))
            elif m := _ACKED.match(line):
                if int(m[1]) not in open_:
                    bad.append(f"connection {conn}: {line}")
                open_.discard(int(m[1]))
        return bad


def refused_times(gw: Any) -> float:
    return gw.metrics.db_errors._value.get()


@pytest.fixture
def sampled_held() -> Iterator[Callable[[Any], list[int]]]:
    """The most messages a gateway's worker holds (set aside, in `_held` or about to be),
    sampled every few milliseconds while the test runs."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(gw: Any) -> list[int]:
        most = [0]

        def sample() -> None:
            while not stop.wait(0.002):
                ing = gw.ingest
                holding = dict(ing._holding)  # a copy at once: the worker changes it
                most[0] = max(most[0], len(ing._held) + sum(holding.values()))

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        threads.append(t)
        return most

    yield start
    stop.set()
    for t in threads:
        t.join(2)


@pytest.mark.mosquitto
@pytest.mark.parametrize("then", ["quarantined", "paged"])
def test_a_message_held_across_a_reconnect_is_not_acked_with_its_old_id(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt, mosquitto: Any, then: str
) -> None:
    # The broker restarts (keeping the gateway's session) while a refused press is held: it
    # sends the press again on the new connection. The old copy was acknowledged with its old
    # message id on the new connection, and settled a second time (quarantined twice).
    seed_home(engine, n=2)
    gw = make_gateway()
    wire = Wire(gw.link.client)
    lift = _refuse_messages(engine, "held-1")
    mq.event("cb-1", "button.pressed", msg_id="held-1")
    wait_until(lambda: refused_times(gw) >= 3, what="the press refused and set aside")

    mosquitto.restart()
    wait_until(lambda: wire.connections() == 1, timeout=15, what="the gateway reconnected")
    wait_until(wire.redelivered, timeout=10, what="the held press delivered again")
    wait_until(mq.client.is_connected, timeout=15, what="the test client reconnected")
    time.sleep(0.3)  # its subscription to the pages again
    before = refused_times(gw)
    wait_until(lambda: refused_times(gw) > before, what="the copy refused too")

    if then == "quarantined":
        # Another press is taken: the evidence that the held one is refused for its own sake.
        mq.event("cb-2", "button.pressed")
        wait_until(lambda: quarantined(gw), what="the held press quarantined")
    else:
        lift()
        wait_until(lambda: alerts_of(gw), timeout=10, what="the held press paged")
    time.sleep(2.5)  # any copy still held is tried again (HELD_RETRY_S) and settled

    assert wire.stale_acks() == []
    assert gw.ingest._held == []
    if then == "quarantined":
        assert [(q.reason, q.topic.split("/")[-2]) for q in quarantined(gw)] == [
            ("unstorable", "cb-1")
        ]
        assert [a.device_id for a in alerts_of(gw)] == ["cb-2"]
    else:
        assert [a.device_id for a in alerts_of(gw)] == ["cb-1"]
        assert messages_with(gw, "held-1") == 1 and quarantined(gw) == []
    # Settled and acknowledged on the connection it came by: the broker keeps nothing of it.
    gw.stop()
    gw2 = make_gateway()
    time.sleep(1.5)
    assert refused_times(gw2) == 0
    assert len(quarantined(gw2)) == (1 if then == "quarantined" else 0)
    assert len(alerts_of(gw2)) == 1


def test_a_message_held_across_a_reconnect_to_the_embedded_broker_is_kept(
    make_gateway: Callable[..., Any], engine: Engine, base: str
) -> None:
    # amqtt 0.12 does not send again what it had sent unacknowledged before a connection
    # dropped (gateway/broker.py): a held press is the only copy left, kept, paged once the
    # refusal passes, and not acknowledged with its old id on the new connection.
    seed_home(engine, n=1)
    port = free_port()
    gw = make_gateway(mqtt_url=None, embedded_mqtt_port=port)
    wire = Wire(gw.link.client)
    mq = Mqtt(port, base)
    try:
        lift = _refuse_messages(engine, "held-2")
        mq.event("cb-1", "button.pressed", msg_id="held-2")
        wait_until(lambda: refused_times(gw) >= 3, what="the press refused and set aside")
        sock = gw.link.client.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)  # the connection drops; paho connects again
        wait_until(lambda: wire.connections() == 1, timeout=15, what="the gateway reconnected")
        wait_until(gw.link.subscribed.is_set, timeout=5, what="subscribed again")
        time.sleep(1.5)  # a held press tried again (HELD_RETRY_S), still refused
        lift()
        mq.wait_for(lambda m: m["type"] == "page", count=2, timeout=10)
        time.sleep(1.5)
        assert [a.device_id for a in alerts_of(gw)] == ["cb-1"]
        assert messages_with(gw, "held-2") == 1 and quarantined(gw) == []
        assert wire.stale_acks() == []
        assert not wire.redelivered()  # the kept copy was the only one
    finally:
        mq.close()


def test_a_database_that_refuses_every_write_is_reported_and_holds_at_most_the_cap(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    sampled_held: Callable[[Any], list[int]],
) -> None:
    # A trigger that refuses every write is no outage by its error (the database answers), so
    # /healthz said ok while every press was held unacknowledged; and held presses filled the
    # broker's window of messages in flight (Mosquitto's default: 20), which stops delivery.
    n = HELD_MAX + 5
    earlier = n + 1  # an elder whose alert is open before the fault, and escalates during it
    seed_home(engine, n=earlier, steps=[(["w1", "w2"], 60), (["v1"], 3600)])
    clock = FakeClock()
    gw = make_gateway(clock)
    mq.event(f"cb-{earlier}", "button.pressed")
    mq.wait_for(lambda m: m["type"] == "page", count=2)
    assert gw.health()["database"]["ok"] is True
    most = sampled_held(gw)
    lift = _refuse_messages(engine, None)
    for i in range(1, n + 1):
        mq.event(f"cb-{i}", "button.pressed")
    wait_until(lambda: not gw.ingest.db_ok, what="the refusals reported")
    health = gw.health()["database"]
    assert health["ok"] is False
    assert "refusing writes" in health["error"] and "injected fault" in health["error"]
    wait_until(lambda: most[0] >= HELD_MAX, what="the cap reached")
    # The lane waits at the cap; the alert already open still escalates.
    clock.advance(61)
    [step2] = mq.wait_for(lambda m: m["type"] == "page" and m["step"] == 2, timeout=3)
    assert step2["elder"]["name"] == f"老人{earlier}"
    time.sleep(1.5)  # held ones tried again (HELD_RETRY_S), the rest waiting
    assert not gw.health()["database"]["ok"]
    assert most[0] == HELD_MAX, f"held at most {most[0]}"
    assert quarantined(gw) == [] and len(alerts_of(gw)) == 1

    lift()
    pages = mq.wait_for(
        lambda m: m["type"] == "page" and m["step"] == 1, count=2 * (n + 1), timeout=20
    )
    assert {p["elder"]["name"] for p in pages} == {f"老人{i}" for i in range(1, n + 2)}
    wait_until(lambda: gw.health()["database"]["ok"], what="health ok again")
    assert len(alerts_of(gw)) == n + 1 and quarantined(gw) == []
    assert most[0] == HELD_MAX


def _refuse_where(engine: Engine, when: str) -> Callable[[], None]:
    """A trigger that refuses the claim of each message `when` (an SQL condition on NEW, the
    same in both dialects) says: as `_refuse_messages`. Returns what lifts it."""
    with engine.begin() as c:
        if engine.dialect.name == "sqlite":
            c.execute(
                text(
                    f"CREATE TRIGGER refuse_where BEFORE INSERT ON messages WHEN {when} "
                    "BEGIN SELECT RAISE(ABORT, 'injected fault: message refused'); END"
                )
            )
        else:
            c.execute(
                text(
                    "CREATE FUNCTION refuse_where() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN IF {when} THEN "
                    "RAISE EXCEPTION 'injected fault: message refused'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            c.execute(
                text(
                    "CREATE TRIGGER refuse_where BEFORE INSERT ON messages "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_where()"
                )
            )

    def lift() -> None:
        with engine.begin() as c:
            if engine.dialect.name == "sqlite":
                c.execute(text("DROP TRIGGER refuse_where"))
            else:
                c.execute(text("DROP TRIGGER refuse_where ON messages"))
                c.execute(text("DROP FUNCTION refuse_where()"))

    return lift


def test_presses_behind_more_refused_messages_than_the_cap_are_paged_and_prove_them(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    sampled_held: Callable[[Any], list[int]],
) -> None:
    # More messages refused for their own sake than the cap, and a press behind them: the
    # press is still tried, taken and paged, and its commit proves the others their own fault.
    seed_home(engine, n=3)
    gw = make_gateway()
    most = sampled_held(gw)
    _refuse_where(engine, "substr(NEW.msg_id, 1, 4) = 'bad-'")
    bad = [f"bad-{k}" for k in range(HELD_MAX + 2)]
    for msg_id in bad:
        mq.event("cb-1", "button.pressed", msg_id=msg_id)
    wait_until(lambda: most[0] >= HELD_MAX, what="the cap reached")
    wait_until(lambda: gw.ingest._again, what="refused ones past the cap deferred")
    page = press_paged_within(mq, "cb-2", 3.0)
    assert page["elder"]["name"] == "老人2"
    wait_until(lambda: len(quarantined(gw)) >= HELD_MAX, what="those set aside quarantined")
    # The last refused ones wait, set aside, for the next message taken: another press.
    press_paged_within(mq, "cb-3", 3.0)
    wait_until(lambda: len(quarantined(gw)) == len(bad), what="every refused one quarantined")
    assert sorted(json.loads(q.payload)["id"] for q in quarantined(gw)) == sorted(bad)
    assert sorted(a.device_id for a in alerts_of(gw)) == ["cb-2", "cb-3"]
    assert most[0] == HELD_MAX
    wait_until(lambda: gw.health()["database"]["ok"], what="health ok again")


def test_readings_refused_past_the_cap_hold_up_no_press(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    sampled_held: Callable[[Any], list[int]],
) -> None:
    # One worker serves both lanes: a telemetry lane at the cap must wait for the database by
    # itself, not with the worker, or a press waits behind readings nobody can store.
    seed_home(engine, n=2)
    gw = make_gateway()
    most = sampled_held(gw)
    lift = _refuse_where(engine, "NEW.channel = 'telemetry'")
    ids = [f"r{i}" for i in range(HELD_MAX + 5)]
    for msg_id in ids:
        mq.telemetry("water-1", msg_id=msg_id, flow_l=1.0, interval_s=60)
    wait_until(lambda: most[0] >= HELD_MAX, what="the telemetry lane at the cap")
    wait_until(
        lambda: "telemetry lane" in (gw.health()["database"].get("error") or ""),
        what="the refusals reported",
    )
    time.sleep(0.5)  # the lane paused, its readings tried again
    press_paged_within(mq, "cb-2", 1.0)
    assert most[0] == HELD_MAX

    lift()
    wait_until(
        lambda: all(messages_with(gw, i) == 1 for i in ids), timeout=15, what="every reading"
    )
    wait_until(lambda: gw.health()["database"]["ok"], what="health ok again")
    assert quarantined(gw) == [] and most[0] == HELD_MAX
