"""Database engines (SQLite by default, PostgreSQL in production) and schema migrations (Alembic).

SQLite: WAL, `synchronous=FULL` (a committed alarm survives a power cut, not only a crash),
foreign keys on, and write transactions that start with BEGIN IMMEDIATE so two writers wait for
each other (busy_timeout) instead of failing on a lock upgrade.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InternalError,
    NotSupportedError,
    ProgrammingError,
)

MIGRATIONS = Path(__file__).with_name("migrations")

# Errors that refuse every write alike, whatever the message: a standby after a failover (read
# only), a grant or a table taken away, a statement the server no longer runs (a cached plan
# after a migration). Waited out like an outage, never laid on a message or an alert.
_SYSTEMIC_SQLSTATES = frozenset({"25006", "42501", "42P01", "42703", "42883", "0A000"})
_REFUSALS = (DataError, IntegrityError, ProgrammingError, InternalError, NotSupportedError)


def refused(exc: DBAPIError) -> bool:
    """The database is up and refused what was asked of it (a value, a constraint, a trigger):
    possibly the doing of one message (the ingest worker) or one alert or rule state (the
    escalations, reminders, channel chains and rule tick, each worked alone in a savepoint).
    Anything else (down, restarting, full, locked, a lock or statement timeout, a deadlock or
    serialization failure, read-only, an error of no known class) is an outage: the work waits
    for the database, however long, and is blamed on nothing in it."""
    if exc.connection_invalidated or not isinstance(exc, _REFUSALS):
        return False
    return getattr(exc.orig, "sqlstate", None) not in _SYSTEMIC_SQLSTATES


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url` with the pragmas and pool settings the gateway relies on."""
    # A database error's text goes to the log, which leaves the station; with its parameters
    # it would carry a page's payload (the elder's name, address and phone) or a person's
    # details. The statement still shows; the values stay in the database.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            if conn.get_execution_options().get("readonly"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    if "psycopg" in url or url.startswith("postgresql"):
        args = dict(kwargs.pop("connect_args", None) or {"connect_timeout": 5})
        # No JIT: the gateway's statements are short lookups by key. On a table not yet
        # analyzed and grown since (a district's rule states in their first hour), PostgreSQL
        # overestimated a 100-key rule-state probe past jit_above_cost and compiled it at each
        # planning (every new connection, or after psycopg drops its prepared statements at a
        # rollback): 233 ms instead of 3.7 by EXPLAIN ANALYZE, the telemetry worker 4.7 times
        # slower per message (2026-11-26, 100,000 devices).
        args["options"] = " ".join(filter(None, ["-c jit=off", args.get("options")]))
        kwargs["connect_args"] = args
    return create_engine(url, **kwargs)


def make_worker_engine(url: str, shared: Engine, *, alarms: bool = False) -> Engine:
    """An engine for the ingest worker: on PostgreSQL a connection of its own, tuned for the
    alarm path; on SQLite `shared` (one writer at a time there anyway).

    No ping before each transaction: that is a round trip per batch, on the way of every press,
    and the worker retries a batch on any database error anyway (SQLAlchemy replaces a broken
    connection). The pool's ping stays for the API, whose requests do not retry.

    `alarms`: the connection for alarm batches (a press, a reply: a few rows each), with
    generic plans. Its handful of statements are otherwise planned anew at every press
    (0.1-0.3 ms each by EXPLAIN; PostgreSQL keeps choosing custom plans for them); measured,
    a press took about 1 ms less. Not for telemetry batches: their `IN (...)` lookups of
    hundreds of devices took twice as long with generic plans (2026-11-26,
    tests/bench/bench_alarm_path.py).
    """
    if shared.dialect.name != "postgresql":
        return shared
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if alarms:
        connect_args["options"] = "-c plan_cache_mode=force_generic_plan"
    return make_engine(
        url,
        pool_size=1,
        max_overflow=1,  # shutdown's last flush may overlap a stuck batch's connection
        pool_pre_ping=False,
        connect_args=connect_args,
    )


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def server_warnings(engine: Engine) -> list[str]:
    """What in the database server's own settings works against the gateway, in words for its
    log and /healthz. Today one thing: PostgreSQL with autovacuum off (this repository's test
    server runs so) never analyzes the gateway's tables as they grow, so the planner works from
    statistics of empty tables (a district's rule-state lookups went from 4 ms to 233 with
    JIT, README "Scale and faults"), and never reclaims dead row versions (the database grows
    by each update)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        autovacuum, track_counts = conn.execute(
            text("SELECT current_setting('autovacuum'), current_setting('track_counts')")
        ).one()
    if autovacuum == "on" and track_counts == "on":
        return []
    return [
        f"PostgreSQL runs with autovacuum={autovacuum}, track_counts={track_counts}: the "
        "gateway's tables are never analyzed or vacuumed, so lookups slow down and the "
        "database keeps every dead row as they grow; turn autovacuum on (the default), or "
        "schedule VACUUM ANALYZE"
    ]
