"""The gateway's PostgreSQL connections and their settings: no JIT on any of them, generic
plans for the alarm connection (gateway/db.py); a server that never vacuums is named."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text

from gateway.app import Gateway
from gateway.db import make_engine, server_warnings
from gateway.ruling import _PG_VERSIONS

pytestmark = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _show(engine: Any, name: str) -> str:
    with engine.connect() as c:
        return str(c.execute(text(f"SHOW {name}")).scalar_one())


def test_no_connection_of_the_gateway_compiles_its_statements(settings_for, engine):
    gw = Gateway(settings_for())  # not started: only its engines are used
    try:
        engines = {"api": gw.engine, "telemetry": gw.worker_engine, "alarms": gw.alarm_engine}
        assert {k: _show(e, "jit") for k, e in engines.items()} == dict.fromkeys(engines, "off")
        assert _show(gw.alarm_engine, "plan_cache_mode") == "force_generic_plan"
        assert _show(gw.worker_engine, "plan_cache_mode") == "auto"
        # The rule-state probe, planned as if every statement were worth compiling: no JIT.
        with gw.worker_engine.connect() as c:
            c.execute(text("SET jit_above_cost = 0"))
            plan = c.execute(
                text("EXPLAIN (ANALYZE) " + str(_PG_VERSIONS)), {"keys": ["a", "b"]}
            ).scalars()
            assert not [line for line in plan if "JIT" in line]
    finally:
        for e in {gw.engine, gw.worker_engine, gw.alarm_engine}:
            e.dispose()


def test_a_server_that_never_vacuums_is_named_in_the_log_and_in_health(
    make_gateway, engine, db_url, caplog
):
    on = _show(engine, "autovacuum") == "on" and _show(engine, "track_counts") == "on"
    with caplog.at_level(logging.WARNING, logger="gateway.app"):
        gw = make_gateway()
    said = [r.getMessage() for r in caplog.records if "autovacuum" in r.getMessage()]
    health = gw.health()["database"]
    assert health["ok"]
    if on:  # a server as packaged: nothing to say
        assert not said and "warnings" not in health
    else:  # this repository's test server runs with autovacuum off
        assert said and health["warnings"] == said
        assert "never analyzed or vacuumed" in said[0]
    # Statistics off for the session (a superuser may): the same words, whatever the server.
    quiet = make_engine(db_url, connect_args={"options": "-c track_counts=off"})
    try:
        [warning] = server_warnings(quiet)
        assert "track_counts=off" in warning and "turn autovacuum on" in warning
    finally:
        quiet.dispose()
    assert server_warnings(make_engine("sqlite://")) == []
