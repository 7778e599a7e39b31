"""The Alembic migrations and gateway/tables.py describe the same schema, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select
from sqlalchemy.exc import IntegrityError

from gateway.db import alembic_config, make_engine, migrate
from gateway.tables import messages, metadata

pytestmark = pytest.mark.empty_database  # the test runs the migrations itself, from nothing


def test_migrations_build_exactly_the_tables_the_code_uses(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        migrate(engine)  # a second run changes nothing
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            # Alembic's comparison leaves primary keys out; the repeat check is one.
            found = inspect(conn)
            keys = {t: found.get_pk_constraint(t)["constrained_columns"] for t in metadata.tables}
        assert diff == [], f"tables.py and the migrations differ: {diff}"
        wanted = {n: [c.name for c in t.primary_key.columns] for n, t in metadata.tables.items()}
        assert keys == wanted
    finally:
        engine.dispose()


def test_0015_keys_the_repeat_check_by_channel_and_keeps_the_rows(db_url: str) -> None:
    engine = make_engine(db_url)
    cfg = alembic_config(engine)
    m = messages.c

    def to(revision: str, step: Any) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, revision)

    def stored() -> list[tuple[str, str]]:
        with engine.connect() as conn:
            return sorted((r.msg_id, r.channel) for r in conn.execute(select(m.msg_id, m.channel)))

    row = {"source": "d", "source_id": "gas-1", "received_at": 1, "payload": "{}"}
    try:
        to("0014", command.upgrade)
        with engine.begin() as conn:
            conn.execute(
                insert(messages),
                [
                    {**row, "msg_id": "1", "channel": "events"},
                    {**row, "msg_id": "2", "channel": "telemetry"},
                ],
            )
        to("0015", command.upgrade)
        assert stored() == [("1", "events"), ("2", "telemetry")]
        with engine.begin() as conn:  # one id on the other channel: now a message of its own
            conn.execute(insert(messages), [{**row, "msg_id": "1", "channel": "telemetry"}])
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(messages), [{**row, "msg_id": "1", "channel": "events"}])
        to("0014", command.downgrade)  # the old key holds one of them: the event's row stays
        assert stored() == [("1", "events"), ("2", "telemetry")]
    finally:
        engine.dispose()
