"""Which database errors the ingest worker may lay on a message (gateway/db.py `refused`, also
what the escalations, reminders, channel chains and rule tick may lay on one alert or state):
a refusal of what the batch holds is taken apart to find the message; anything that would refuse
every message alike is waited out as an outage, and no message is quarantined for it."""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg.errors as pg
import pytest
from sqlalchemy import exc

from gateway.db import refused as _refused
from gateway.ingest import _refusal


def wrapped(cls: type[exc.DBAPIError], orig: Exception) -> exc.DBAPIError:
    return cls("INSERT INTO messages ...", {}, orig)


def as_sqlalchemy_wraps(orig: Exception) -> exc.DBAPIError:
    """Wrapped in the class SQLAlchemy itself picks for the driver's error."""
    base = psycopg.Error if isinstance(orig, psycopg.Error) else sqlite3.Error
    return exc.DBAPIError.instance("UPDATE alerts ...", {}, orig, base)


@pytest.mark.parametrize(
    "orig",
    [
        pg.QueryCanceled("canceling statement due to statement timeout"),
        pg.DeadlockDetected("deadlock detected"),
        pg.SerializationFailure("could not serialize access"),
        pg.LockNotAvailable("canceling statement due to lock timeout"),
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("interrupted"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:20],
)
def test_a_timeout_a_deadlock_or_a_lock_is_an_outage_not_a_refusal(orig: Exception) -> None:
    assert not _refused(as_sqlalchemy_wraps(orig))


@pytest.mark.parametrize(
    "error",
    [
        wrapped(exc.DataError, pg.DataError("PostgreSQL text fields cannot contain NUL")),
        wrapped(exc.DataError, pg.NumericValueOutOfRange("integer out of range")),
        wrapped(exc.DataError, sqlite3.DataError("string or blob too big")),
        wrapped(exc.IntegrityError, pg.CheckViolation("violates check constraint")),
        wrapped(exc.IntegrityError, sqlite3.IntegrityError("NOT NULL constraint failed")),
        wrapped(exc.ProgrammingError, pg.RaiseException("refused by a trigger")),
        wrapped(exc.InternalError, pg.InternalError_("unexpected")),
    ],
    ids=lambda e: type(e.orig).__name__,
)
def test_a_refusal_of_what_the_batch_holds(error: exc.DBAPIError) -> None:
    assert _refused(error)


@pytest.mark.parametrize(
    "error",
    [
        wrapped(exc.OperationalError, pg.AdminShutdown("terminating connection")),
        wrapped(exc.OperationalError, pg.CannotConnectNow("the database system is starting up")),
        wrapped(exc.OperationalError, pg.DiskFull("could not extend file")),
        wrapped(exc.OperationalError, sqlite3.OperationalError("database or disk is full")),
        wrapped(exc.OperationalError, sqlite3.OperationalError("database is locked")),
        wrapped(exc.InterfaceError, pg.InterfaceError("the connection is closed")),
        # Refusals of every write alike: a standby after a failover, a grant or table gone.
        wrapped(exc.InternalError, pg.ReadOnlySqlTransaction("read-only transaction")),
        wrapped(exc.ProgrammingError, pg.InsufficientPrivilege("permission denied")),
        wrapped(exc.ProgrammingError, pg.UndefinedTable('relation "messages" does not exist')),
        wrapped(exc.NotSupportedError, pg.FeatureNotSupported("cached plan must not change")),
        exc.DBAPIError("SELECT 1", {}, Exception("an error of no known class")),
    ],
    ids=lambda e: type(e.orig).__name__ + ":" + str(e.orig)[:20],
)
def test_an_outage_or_a_fault_of_every_write(error: exc.DBAPIError) -> None:
    assert not _refused(error)


def test_a_refusal_broken_connection_is_an_outage() -> None:
    error = wrapped(exc.DataError, pg.DataError("x"))
    error.connection_invalidated = True
    assert not _refused(error)


def test_what_the_quarantine_keeps_of_a_refusal_is_the_databases_first_line() -> None:
    error = wrapped(exc.ProgrammingError, pg.RaiseException("refused\nCONTEXT: PL/pgSQL"))
    assert _refusal(error) == "the database refused it: RaiseException: refused"
