"""Shared fixtures: a private Mosquitto, and `db_url` on SQLite and PostgreSQL.

- `mosquitto`: one private broker for the session; a test marked `mosquitto` (it stops or
  restarts the broker) gets a broker of its own.
- `db_url`: every test that asks for it runs on SQLite (a file in tmp_path) and on PostgreSQL
  (a fresh database on `SHOUWANG_TEST_PG_URL`, default the local server's `test` database),
  unless the test parametrizes `db_url` itself (indirect).
Missing services skip outside CI and fail in CI (tests/support/services.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support.broker import PrivateMosquitto, mosquitto_bin
from tests.support.services import require

PG_URL = os.environ.get("SHOUWANG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


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


def _pg_admin() -> Any:
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'shouwang-test.db'}"
        return
    name = "sw_" + uuid.uuid4().hex[:12]
    admin = _pg_admin()
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        require("postgresql", f"cannot create a database on {PG_URL}: {exc}")
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
