"""Shared fixtures: a private Mosquitto, and `db_url` on SQLite and PostgreSQL.

- `mosquitto`: one private broker for the session; a test marked `mosquitto` (it stops or
  restarts the broker) gets a broker of its own.
- `db_url`: every test that asks for it runs on SQLite (a file in tmp_path) and on PostgreSQL
  (a database of its own on the server of `SHOUWANG_TEST_PG_URL`, default the local server),
  unless the test parametrizes `db_url` itself (indirect). The database is already migrated: a
  copy of a template migrated once (tests/support/databases.py); a test marked
  `empty_database` gets an empty one instead (it runs the migrations itself).
Missing services skip outside CI and fail in CI (tests/support/services.py).

Under pytest-xdist (`make test` runs two workers) each worker is a session of its own: its own
broker, SQLite template and test databases (the PostgreSQL template is shared, built under an
advisory lock), its own range of ports (tests/support/process.py). The tests that share an
expensive module- or session-scoped fixture go to one worker (tests/support/xdist_groups.py),
and a test marked `solo` runs alone (tests/support/solo.py).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.broker import PrivateMosquitto, mosquitto_bin
from tests.support.databases import PostgresTestDatabases, SqliteTemplate
from tests.support.services import require
from tests.support.solo import RunLock, is_solo, run_lock
from tests.support.xdist_groups import make_scheduler

PG_URL = os.environ.get("SHOUWANG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RUN_LOCK = pytest.StashKey[RunLock | None]()  # this worker's handle on the run's solo lock


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "empty_database: db_url is an empty database, not a migrated copy"
    )
    config.stash[RUN_LOCK] = run_lock(config)


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`--dist loadgroup` (pyproject.toml), with the groups of tests/support/xdist_groups.py."""
    return make_scheduler(config, log)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outside pytest-timeout's timer
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Under xdist, a `solo` test runs while the other workers wait (tests/support/solo.py)."""
    lock = item.config.stash.get(RUN_LOCK, None)
    if lock is None:
        return (yield)
    lock.enter(solo=is_solo(item))
    try:
        return (yield)
    finally:
        if not (is_solo(item) and is_solo(nextitem)):
            lock.leave()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "db_url" in (names.split(",") if isinstance(names, str) else names):
            return
    metafunc.parametrize(
        "db_url",
        ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
        indirect=True,
    )


@pytest.fixture(scope="session")
def _session_mosquitto() -> Iterator[PrivateMosquitto | None]:
    if mosquitto_bin() is None:
        yield None
        return
    broker = PrivateMosquitto()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def mosquitto(
    request: pytest.FixtureRequest, _session_mosquitto: PrivateMosquitto | None
) -> Iterator[PrivateMosquitto]:
    if _session_mosquitto is None:
        require("mosquitto", "no mosquitto binary (apt-get install mosquitto)")
    if request.node.get_closest_marker("mosquitto") is None:
        yield _session_mosquitto
        return
    own = PrivateMosquitto()  # this test stops or restarts its broker
    own.start()
    try:
        yield own
    finally:
        own.close()


@pytest.fixture(scope="session")
def sqlite_template() -> Iterator[SqliteTemplate]:
    """The migrated SQLite file of the session, for `db_url` to copy."""
    template = SqliteTemplate()
    yield template
    template.close()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PostgresTestDatabases]:
    """Test databases on the PostgreSQL of `SHOUWANG_TEST_PG_URL` (missing: skip, or fail in CI)."""
    try:
        databases = PostgresTestDatabases(PG_URL)
    except Exception as exc:
        require("postgresql", f"cannot connect to {PG_URL}: {exc}")
    yield databases
    databases.close()


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = getattr(request, "param", "sqlite")
    empty = request.node.get_closest_marker("empty_database") is not None
    if kind == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("sqlite_template")
        yield template.url(tmp_path / "shouwang-test.db", empty=empty)
        return
    databases: PostgresTestDatabases = request.getfixturevalue("pg_databases")
    try:
        name = databases.create(empty=empty)
    except Exception as exc:
        require("postgresql", f"cannot create a database on {PG_URL}: {exc}")
    try:
        yield databases.url(name)
    finally:
        databases.drop(name)
