"""What the database cannot store must not stop the alarm lane: over a real Mosquitto, on SQLite
and PostgreSQL. A NUL (`\\u0000`, valid JSON) in a text field is refused by the parser like other
bad input (PostgreSQL cannot store it, and the worker retried the batch for ever, with every
alarm behind it); a message the database refuses for what it holds, which no parser can foresee,
is found, kept in the quarantine and acknowledged, and the others go on."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from gateway import tables as T
from tests.support.alarm import Mqtt, seed_home, wait_until

NUL = "\x00"


def quarantined(gw: Any) -> list[Any]:
    with gw.engine.connect() as c:
        return c.execute(select(T.quarantine).order_by(T.quarantine.c.id)).all()


def alerts_of(gw: Any) -> list[Any]:
    with gw.engine.connect() as c:
        return c.execute(select(T.alerts).order_by(T.alerts.c.created_at)).all()


def state_of(gw: Any, alert_id: str) -> str:
    with gw.engine.connect() as c:
        return c.execute(select(T.alerts.c.state).where(T.alerts.c.id == alert_id)).scalar_one()


def messages_with(gw: Any, msg_id: str) -> int:
    with gw.engine.connect() as c:
        q = select(func.count()).select_from(T.messages).where(T.messages.c.msg_id == msg_id)
        return c.execute(q).scalar_one()


def reply(mq: Mqtt, pager: str, alert_id: str, action: str, **more: Any) -> None:
    body = {"id": uuid.uuid4().hex[:12], "ts": int(time.time() * 1000), "alert_id": alert_id}
    body |= {"action": action, **more}
    mq.raw(f"{mq.base}/v1/pagers/{pager}/replies", json.dumps(body, ensure_ascii=False).encode())


def press_paged_within(mq: Mqtt, device: str, seconds: float) -> dict[str, Any]:
    """Press `device`'s button; its first page, which must come within `seconds`."""
    sent = time.monotonic()
    msg_id = mq.event(device, "button.pressed")
    page = mq.wait_for(lambda m: m["type"] == "page" and m["_at"] >= sent, timeout=seconds + 2)[0]
    assert page["_at"] - sent < seconds, f"press {msg_id} paged after {page['_at'] - sent:.2f}s"
    return page


def test_a_nul_in_an_event_id_is_quarantined_and_the_lane_goes_on(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    seed_home(engine, n=2)
    gw = make_gateway()
    mq.event("cb-1", "button.pressed", msg_id=f"p{NUL}1")
    wait_until(lambda: quarantined(gw), what="the press with a NUL in its id quarantined")
    [q] = quarantined(gw)
    assert (q.reason, q.detail) == ("invalid", "id: a NUL character (\\u0000) is not allowed")
    assert "\\u0000" in q.payload  # the payload as it came, its escape kept
    assert alerts_of(gw) == []
    # Another elder's press is paged as promptly as ever.
    press_paged_within(mq, "cb-2", 1.0)
    assert [a.device_id for a in alerts_of(gw)] == ["cb-2"]


def test_a_nul_in_a_pagers_note_is_replaced_and_the_answer_taken(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    # The answer is the message, its note the least of it: a NUL (which PostgreSQL cannot
    # store) is replaced, not a reason to lose the resolve.
    seed_home(engine, n=2)
    gw = make_gateway()
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    alert_id = page["alert_id"]
    reply(mq, "pw1", alert_id, "resolved", note=f"到了{NUL}，老人没事\n\t明天再来")
    wait_until(lambda: state_of(gw, alert_id) == "resolved", what="resolved")
    with gw.engine.connect() as c:
        assert c.execute(select(T.alerts.c.note)).scalar_one() == "到了\ufffd，老人没事\n\t明天再来"
    assert quarantined(gw) == []
    press_paged_within(mq, "cb-2", 1.0)


def test_a_lone_surrogate_in_a_pagers_note_is_replaced_and_the_decline_taken(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    # `\ud800` without its pair is valid JSON syntax, yet no UTF-8 (and no PostgreSQL jsonb)
    # holds it: cleaned like a control character, so the decline still pages the next step.
    seed_home(engine)
    gw = make_gateway()
    mq.event("cb-1", "button.pressed")
    [page, _] = mq.wait_for(lambda m: m["type"] == "page", count=2)
    alert_id = page["alert_id"]
    body = {"id": "rn3", "ts": int(time.time() * 1000), "alert_id": alert_id}
    body |= {"action": "decline", "note": "bad \ud800 surrogate"}
    sent = json.dumps(body).encode()
    assert b"\\ud800" in sent  # the escape, as a pager would send it
    mq.raw(f"{mq.base}/v1/pagers/pw1/replies", sent)
    [step2] = mq.wait_for(lambda m: m["_pager"] == "pv1", timeout=3)
    assert (step2["type"], step2["step"]) == ("page", 2)
    with gw.engine.connect() as c:
        e = T.alert_events.c
        q = select(e.actor, e.detail).where(e.alert_id == alert_id, e.type == "declined")
        [declined] = c.execute(q).all()
    assert declined.actor == "responder:w1"
    assert declined.detail == {"note": "bad \ufffd surrogate"}
    assert quarantined(gw) == []


def test_a_nul_in_a_readings_id_is_quarantined_and_the_others_kept(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    seed_home(engine, n=2)
    gw = make_gateway()
    mq.telemetry("water-1", msg_id=f"t{NUL}1", flow_l=2.0, interval_s=60)
    mq.telemetry("water-1", msg_id="t-good", flow_l=1.0, interval_s=60)
    wait_until(lambda: quarantined(gw), what="the reading with a NUL in its id quarantined")
    wait_until(lambda: messages_with(gw, "t-good") == 1, what="the good reading claimed")
    [q] = quarantined(gw)
    assert q.topic.endswith("/devices/water-1/telemetry")
    assert (q.reason, q.detail) == ("invalid", "id: a NUL character (\\u0000) is not allowed")
    press_paged_within(mq, "cb-2", 1.0)


def test_a_payload_ending_in_a_nul_byte_is_quarantined_as_not_json(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    # Firmware in C that sends its string with the terminator: not JSON, and the quarantine
    # keeps what it can of it; PostgreSQL refused the raw NUL in the quarantine's own row.
    seed_home(engine, n=2)
    gw = make_gateway()
    body = json.dumps({"id": "c1", "ts": int(time.time() * 1000), "type": "button.pressed"})
    mq.raw(f"{mq.base}/v1/devices/cb-1/events", body.encode() + b"\x00")
    wait_until(lambda: quarantined(gw), what="the message quarantined")
    [q] = quarantined(gw)
    assert q.reason == "not_json" and NUL not in q.payload and NUL not in q.detail
    assert q.payload == body + "\ufffd" and q.size == len(body) + 1
    press_paged_within(mq, "cb-2", 1.0)


# --- a fault in the database, not in the parser's sight -----------------------------------


def _refuse_messages(engine: Engine, msg_id: str | None) -> Callable[[], None]:
    """A trigger on the repeat check's table that refuses the message `msg_id` (every message
    when None): an error of the database about what one message holds, as a value a column or
    a constraint refuses. SQLite's RAISE is a constraint error; PostgreSQL's RAISE EXCEPTION a
    plain one. Returns what lifts it."""
    when_sqlite = "" if msg_id is None else f" WHEN NEW.msg_id = '{msg_id}'"
    when_pg = "true" if msg_id is None else f"NEW.msg_id = '{msg_id}'"
    with engine.begin() as c:
        if engine.dialect.name == "sqlite":
            c.execute(
                text(
                    f"CREATE TRIGGER refuse_msg BEFORE INSERT ON messages{when_sqlite} "
                    "BEGIN SELECT RAISE(ABORT, 'injected fault: message refused'); END"
                )
            )
        else:
            c.execute(
                text(
                    "CREATE FUNCTION refuse_msg() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN IF {when_pg} THEN "
                    "RAISE EXCEPTION 'injected fault: message refused'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            c.execute(
                text(
                    "CREATE TRIGGER refuse_msg BEFORE INSERT ON messages "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_msg()"
                )
            )

    def lift() -> None:
        with engine.begin() as c:
            if engine.dialect.name == "sqlite":
                c.execute(text("DROP TRIGGER refuse_msg"))
            else:
                c.execute(text("DROP TRIGGER refuse_msg ON messages"))
                c.execute(text("DROP FUNCTION refuse_msg()"))

    return lift


def test_a_message_the_database_refuses_is_quarantined_and_the_next_press_paged(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    seed_home(engine, n=2)
    gw = make_gateway()
    _refuse_messages(engine, "poison-1")
    mq.event("cb-1", "button.pressed", msg_id="poison-1")
    wait_until(lambda: gw.metrics.db_errors._value.get() >= 1, what="the poison refused")
    # Another elder presses while the poison is in the worker's hands.
    page = press_paged_within(mq, "cb-2", 1.0)
    assert page["elder"]["name"] == "老人2"
    wait_until(lambda: quarantined(gw), what="the poison quarantined")
    [q] = quarantined(gw)
    assert q.reason == "unstorable" and q.topic.endswith("/devices/cb-1/events")
    assert "injected fault: message refused" in q.detail
    assert json.loads(q.payload)["id"] == "poison-1"
    wait_until(
        lambda: gw.metrics.quarantined.labels("unstorable")._value.get() == 1, what="counted"
    )
    assert [a.device_id for a in alerts_of(gw)] == ["cb-2"]  # the poison changed nothing
    assert messages_with(gw, "poison-1") == 0
    # Quarantined, it was acknowledged: the broker does not hand it over again.
    gw.stop()
    gw2 = make_gateway()
    time.sleep(1.0)
    assert len(quarantined(gw2)) == 1 and gw2.metrics.db_errors._value.get() == 0


@contextlib.contextmanager
def claims_held(engine: Engine) -> Iterator[None]:
    """The worker's next claim waits while this is open: SQLite's write lock, or PostgreSQL's
    lock on the claims' table (reads go on)."""
    with engine.begin() as c:  # on SQLite a BEGIN IMMEDIATE (gateway/db.py): the write lock
        if engine.dialect.name == "postgresql":
            c.execute(text("LOCK TABLE messages IN EXCLUSIVE MODE"))
        yield


@pytest.mark.parametrize("last", [False, True], ids=["poison-first", "poison-last"])
def test_a_poison_in_one_batch_with_presses_costs_them_nothing(
    make_gateway: Callable[..., Any],
    engine: Engine,
    mq: Mqtt,
    caplog: pytest.LogCaptureFixture,
    last: bool,
) -> None:
    # Last, the poison is refused after the others were taken, and nothing comes after it:
    # they are the evidence against it all the same.
    seed_home(engine, n=3)
    gw = make_gateway()
    _refuse_messages(engine, "poison-2")
    with claims_held(engine):  # the worker waits with what it took; the rest queue up
        mq.event("water-1", "water.dry")
        if not last:
            mq.event("cb-1", "button.pressed", msg_id="poison-2")
        mq.event("cb-2", "button.pressed")
        mq.event("cb-3", "button.pressed")
        if last:
            mq.event("cb-1", "button.pressed", msg_id="poison-2")
        time.sleep(0.5)
    pages = mq.wait_for(lambda m: m["type"] == "page", count=4, timeout=3.0)
    assert {p["elder"]["name"] for p in pages} == {"老人2", "老人3"}
    wait_until(lambda: quarantined(gw), what="the poison quarantined")
    assert [q.reason for q in quarantined(gw)] == ["unstorable"]
    assert sorted(a.device_id for a in alerts_of(gw)) == ["cb-2", "cb-3"]
    refused = [r.getMessage() for r in caplog.records if "refused a batch of" in r.getMessage()]
    assert not refused[0].startswith("the database refused a batch of 1:"), "not one batch"


def test_a_fault_that_refuses_every_message_quarantines_none(
    make_gateway: Callable[..., Any], engine: Engine, mq: Mqtt
) -> None:
    # Every message refused alike is the database's fault, not theirs: they wait for it to be
    # mended, as in an outage, and are paged then; none is quarantined.
    seed_home(engine, n=2)
    gw = make_gateway()
    lift = _refuse_messages(engine, None)
    mq.event("cb-1", "button.pressed")
    mq.event("cb-2", "button.pressed")
    wait_until(lambda: gw.metrics.db_errors._value.get() >= 2, what="both refused")
    time.sleep(2.5)  # each set aside, then tried again (HELD_RETRY_S) and refused again
    assert quarantined(gw) == [] and alerts_of(gw) == []
    assert gw.metrics.db_errors._value.get() >= 4
    lift()
    pages = mq.wait_for(lambda m: m["type"] == "page", count=4, timeout=5.0)
    assert {p["elder"]["name"] for p in pages} == {"老人1", "老人2"}
    assert quarantined(gw) == []
