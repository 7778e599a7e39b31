"""The repeat check as a claim (gateway/ingest.py claim_messages), on SQLite and PostgreSQL:
new keys are inserted and returned, keys already there are skipped and leave their row as it
was, and every column survives the trip (NULLs, big times, Chinese text)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gateway.ingest import claim_messages
from gateway.tables import messages


def row(msg_id: str, channel: str = "events", **over: Any) -> dict[str, Any]:
    r = {
        "source": "d",
        "source_id": "cb-1",
        "msg_id": msg_id,
        "channel": channel,
        "type": "button.pressed" if channel == "events" else None,
        "ts": 1_795_650_506_263,
        "received_at": 1_795_650_506_300,
        "payload": f'{{"id":"{msg_id}","note":"老人按了呼叫器"}}' if channel == "events" else None,
    }
    r.update(over)
    return r


def test_claim_inserts_new_keys_and_skips_known_ones(engine: Any) -> None:
    with engine.begin() as conn:
        assert claim_messages(conn, []) == set()
        first = claim_messages(conn, [row("a"), row("b", "telemetry")])
    assert first == {("d", "cb-1", "a", "events"), ("d", "cb-1", "b", "telemetry")}
    with engine.begin() as conn:
        again = claim_messages(
            conn, [row("a", received_at=1), row("c", source="p", source_id="pw1")]
        )
    assert again == {("p", "pw1", "c", "events")}
    with engine.connect() as conn:
        stored = {r.msg_id: r for r in conn.execute(select(messages))}
    assert stored["a"].received_at == 1_795_650_506_300  # the first claim's row, untouched
    assert stored["a"].payload == '{"id":"a","note":"老人按了呼叫器"}'
    assert stored["b"].type is None and stored["b"].payload is None
    assert stored["b"].ts == 1_795_650_506_263
    assert stored["c"].source == "p"


def test_a_rolled_back_claim_leaves_the_key_free(engine: Any) -> None:
    conn = engine.connect()
    tx = conn.begin()
    assert claim_messages(conn, [row("x")]) == {("d", "cb-1", "x", "events")}
    tx.rollback()
    conn.close()
    with engine.begin() as conn:
        assert claim_messages(conn, [row("x")]) == {("d", "cb-1", "x", "events")}


def test_one_id_on_two_channels_is_two_messages(engine: Any) -> None:
    """A repeat is a redelivery or a retry, which come on the message's own topic: a device's
    reading and its event of one id are both claimed, each once, in one batch or in two."""
    with engine.begin() as conn:
        assert claim_messages(conn, [row("42", "telemetry")]) == {("d", "cb-1", "42", "telemetry")}
    with engine.begin() as conn:
        got = claim_messages(conn, [row("42"), row("43"), row("43", "telemetry")])
    assert got == {
        ("d", "cb-1", "42", "events"),
        ("d", "cb-1", "43", "events"),
        ("d", "cb-1", "43", "telemetry"),
    }
    with engine.begin() as conn:
        again = [row("42"), row("42", "telemetry"), row("43"), row("43", "telemetry")]
        assert claim_messages(conn, again) == set()
    with engine.connect() as conn:
        stored = conn.execute(select(messages.c.msg_id, messages.c.channel)).all()
    assert sorted(stored) == [
        ("42", "events"),
        ("42", "telemetry"),
        ("43", "events"),
        ("43", "telemetry"),
    ]
