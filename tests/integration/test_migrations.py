"""The Alembic migrations and gateway/tables.py describe the same schema, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.db import make_engine, migrate
from gateway.tables import metadata

pytestmark = pytest.mark.empty_database  # the test runs the migrations itself, from nothing


def test_migrations_build_exactly_the_tables_the_code_uses(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        migrate(engine)  # a second run changes nothing
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"tables.py and the migrations differ: {diff}"
    finally:
        engine.dispose()
