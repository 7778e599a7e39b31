"""Test databases made fast: the migrations run once, each test gets a copy of the result.

PostgreSQL: a template database named for the migration head and a hash of the migration files
(`sw_tpl_<head>_<hash>`) is migrated the first time a session needs it and kept on the server,
so later sessions reuse it and a changed migration makes a new one. Each test's database is
`CREATE DATABASE ... TEMPLATE` that template: a copy of a few megabytes, about 0.15 s against
1-1.5 s for running every migration.

Sessions that run at the same time against one server (two checkouts, parallel CI jobs) are
safe: building or dropping a template takes an exclusive advisory lock, copying one a shared
lock, and a template is built under a temporary name and renamed when complete, so nobody copies
half a template. Each session holds an advisory lock of its own for its whole life and names its
test databases after it (`sw_t_<session>_<n>`): a test's database is dropped after the test, and
ones left by a session that was killed (its lock is free) are dropped by the next session.
Only the newest few templates are kept.

SQLite: the migrated file is made once per session and copied for each test.

A test that must start from an empty database (tests/integration/test_migrations.py runs the
migrations itself) asks for one with the marker `empty_database`.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import re
import secrets
import shutil
import sqlite3
import tempfile
import threading
from contextlib import closing
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from gateway.db import MIGRATIONS, make_engine, migrate

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = ("gateway", "alerts", "care", "devices")
TEMPLATE_PREFIX = "sw_tpl_"
BUILD_PREFIX = "sw_tplbuild_"
TEST_PREFIX = "sw_t_"
KEEP_TEMPLATES = 3  # other checkouts may be running on other migrations: keep theirs a while
# Advisory lock keys (the two-integer form): one for the templates, one per session.
LOCK_TEMPLATES = (0x5357, 1)
LOCK_SESSION_SPACE = 0x5358


def _quote(name: str) -> str:
    assert re.fullmatch(r"[a-z0-9_]+", name), name  # every name here is ours: no quoting games
    return f'"{name}"'


def migration_fingerprint() -> str:
    """A hash of the migration files and of our modules they import (a constant a migration
    reads from the code changes what it builds too)."""
    files = sorted(p for p in MIGRATIONS.rglob("*") if p.is_file() and p.suffix in (".py", ".mako"))
    imported: set[Path] = set()
    for path in files:
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in OUR_PACKAGES:
                    continue
                module = ROOT.joinpath(*name.split("."))
                for candidate in (module.with_suffix(".py"), module / "__init__.py"):
                    if candidate.is_file():
                        imported.add(candidate)
    digest = hashlib.sha256()
    for path in [*files, *sorted(imported - set(files))]:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def migration_head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = sorted(ScriptDirectory.from_config(cfg).get_heads())
    return "_".join(h.lower() for h in heads) or "base"


def template_name() -> str:
    head = re.sub(r"[^a-z0-9]", "", migration_head())[:20]
    return f"{TEMPLATE_PREFIX}{head}_{migration_fingerprint()[:16]}"


class PostgresTestDatabases:
    """Test databases on one PostgreSQL server, copied from the migrated template."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = template_name()
        self.session = secrets.randbelow(2**31 - 1) + 1
        self._names = itertools.count(1)
        self._lock = threading.Lock()  # the admin connection is one; tests may share it
        self._admin: Engine = create_engine(
            admin_url,
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
            connect_args={"connect_timeout": 3},
        )
        # This session's lock, held as long as the connection: while it is held, no other
        # session takes our databases for leftovers.
        self._conn: Connection = self._admin.connect()
        self._conn.execute(
            text("SELECT pg_advisory_lock(:a, :b)"), {"a": LOCK_SESSION_SPACE, "b": self.session}
        )
        # Test databases are thrown away: their commits need not wait for the disk (a server
        # crash is not what these tests test; the gateway's own durability is the server's
        # setting in production). The copy of the template is a commit too.
        self._conn.execute(text("SET synchronous_commit = off"))
        self._ready = False

    def close(self) -> None:
        with self._lock:
            self._conn.close()  # releases the session lock
            self._admin.dispose()

    def url(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    # --- the template ---------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        found = self._conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first()
        return found is not None

    def _drop(self, name: str) -> None:
        self._conn.execute(text(f"ALTER DATABASE {_quote(name)} IS_TEMPLATE false"))
        self._conn.execute(text(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)"))

    def _build_template(self) -> None:
        """Under the exclusive lock: migrate a fresh database and rename it to the template."""
        building = f"{BUILD_PREFIX}{secrets.token_hex(6)}"
        self._conn.execute(text(f"CREATE DATABASE {_quote(building)} TEMPLATE template0"))
        engine = create_engine(self.url(building), poolclass=NullPool)
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            self._conn.execute(text(f"DROP DATABASE {_quote(building)} WITH (FORCE)"))
            raise
        engine.dispose()
        try:
            self._conn.execute(
                text(f"ALTER DATABASE {_quote(building)} RENAME TO {_quote(self.template)}")
            )
        except DBAPIError:
            # Built meanwhile by a session that locks in another database (advisory locks are
            # per database; the admin URL names one): theirs is as good as ours.
            self._drop(building)
            if not self._exists(self.template):
                raise
            return
        # A template nobody connects to (not even autovacuum) can always be copied.
        self._conn.execute(
            text(f"ALTER DATABASE {_quote(self.template)} IS_TEMPLATE true ALLOW_CONNECTIONS false")
        )

    def _tidy(self) -> None:
        """Under the exclusive lock: drop half-built templates, old templates, and the test
        databases of sessions that are gone."""
        rows = self._conn.execute(
            text("SELECT datname, oid FROM pg_database WHERE datname LIKE 'sw\\_%' ORDER BY oid")
        ).all()
        templates = [r.datname for r in rows if r.datname.startswith(TEMPLATE_PREFIX)]
        for name in templates[:-KEEP_TEMPLATES]:
            if name != self.template:
                self._drop(name)
        for name, _oid in rows:
            if name.startswith(BUILD_PREFIX):  # builds happen under this lock: a dead one
                self._drop(name)
            m = re.fullmatch(rf"{TEST_PREFIX}(\d+)_\d+", name)
            if m is None or int(m.group(1)) == self.session:
                continue
            if not self._alive(int(m.group(1))):
                self._drop(name)

    def _alive(self, session: int) -> bool:
        """Whether a session holds its lock (pg_locks shows every database's locks)."""
        held = self._conn.execute(
            text(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :a AND objid = :b AND objsubid = 2"
            ),
            {"a": LOCK_SESSION_SPACE, "b": session},
        ).first()
        return held is not None

    def _ensure_template(self) -> None:
        self._conn.execute(text("SELECT pg_advisory_lock(:a, :b)"), _lock_args(LOCK_TEMPLATES))
        try:
            if not self._ready:
                self._tidy()
            if not self._exists(self.template):
                self._build_template()
            self._ready = True
        finally:
            self._conn.execute(
                text("SELECT pg_advisory_unlock(:a, :b)"), _lock_args(LOCK_TEMPLATES)
            )

    # --- test databases -------------------------------------------------------------------

    def create(self, *, empty: bool = False) -> str:
        """A new database for a test: a copy of the migrated template, or empty."""
        with self._lock:
            name = f"{TEST_PREFIX}{self.session}_{next(self._names)}"
            if empty:
                self._conn.execute(text(f"CREATE DATABASE {_quote(name)}"))
                self._no_sync(name)
                return name
            for attempt in (1, 2):
                if not self._ready or attempt == 2:
                    self._ensure_template()
                args = _lock_args(LOCK_TEMPLATES)
                self._conn.execute(text("SELECT pg_advisory_lock_shared(:a, :b)"), args)
                try:
                    if self._exists(self.template):  # another session may have tidied it away
                        self._conn.execute(
                            text(f"CREATE DATABASE {_quote(name)} TEMPLATE {_quote(self.template)}")
                        )
                        self._no_sync(name)
                        return name
                finally:
                    self._conn.execute(text("SELECT pg_advisory_unlock_shared(:a, :b)"), args)
            raise RuntimeError(f"the template database {self.template} keeps disappearing")

    def _no_sync(self, name: str) -> None:
        """Every connection to this test database (the gateway processes a test starts too)
        commits without waiting for the disk: the suite was bound by fsync, not by CPU."""
        self._conn.execute(text(f"ALTER DATABASE {_quote(name)} SET synchronous_commit = off"))

    def drop(self, name: str) -> None:
        with self._lock:
            self._conn.execute(text(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)"))


def _lock_args(key: tuple[int, int]) -> dict[str, int]:
    return {"a": key[0], "b": key[1]}


class SqliteTemplate:
    """The migrated SQLite file, made once per session, copied for each test."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._lock = threading.Lock()

    def _template(self) -> Path:
        with self._lock:
            if self._dir is None:
                folder = Path(tempfile.mkdtemp(prefix="shouwang-sqlite-template-"))
                path = folder / "template.db"
                engine = make_engine(f"sqlite:///{path}")
                migrate(engine)
                engine.dispose()
                # Everything into the main file: it alone is copied. (Outside a transaction:
                # the engine's connections begin one of their own.)
                with closing(sqlite3.connect(path)) as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._dir = folder
            return self._dir / "template.db"

    def url(self, path: Path, *, empty: bool = False) -> str:
        """A database at `path`: a copy of the migrated file, or none yet (empty)."""
        if not empty:
            shutil.copyfile(self._template(), path)
        return f"sqlite:///{path}"

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


__all__ = [
    "PostgresTestDatabases",
    "SqliteTemplate",
    "migration_fingerprint",
    "migration_head",
    "template_name",
]
