"""A full disk on the SQLite path: a clear error and a refusal to accept (nothing acknowledged, so
the broker keeps every message), never a corrupt database; with room again, everything held is
processed and paged, nothing lost.

The database lives on a small tmpfs of its own, filled up by the test (mounting needs root, as
in CI; elsewhere the test is skipped, and in CI a failed mount fails it)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway import tables as T
from gateway.db import make_engine
from tests.support.alarm import Mqtt, seed_home, wait_until
from tests.support.services import require

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        require("a tmpfs mount (root)", done.stderr.strip() or "mount failed")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    """Write a file until the disk is full; it is what the test removes to make room."""
    filler = disk / "filler"
    chunk = b"\0" * 4096
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as f:
        while True:
            f.write(chunk)
    return filler


def _count(engine: Any, channel: str) -> int:
    with engine.connect() as c:
        q = select(func.count()).select_from(T.messages).where(T.messages.c.channel == channel)
        return int(c.execute(q).scalar_one())


def test_a_full_disk_refuses_clearly_and_loses_nothing(
    small_disk: Path, db_url: str, make_gateway, mq: Mqtt
) -> None:
    path = small_disk / "shouwang.db"
    shutil.copyfile(db_url.removeprefix("sqlite:///"), path)  # the migrated template's copy
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        seed_home(engine, n=3)
        gw = make_gateway(database_url=url)
        mq.event("cb-1", "button.pressed")
        mq.wait_for(lambda m: m["type"] == "page" and m["elder"]["name"] == "老人1")

        filler = _fill(small_disk)
        mq.event("cb-2", "button.pressed")
        for i in range(40):
            mq.telemetry("water-3", msg_id=f"t{i}", flow_l=0.5, interval_s=60)
        wait_until(lambda: not gw.health()["database"]["ok"], 10, "the database refusal seen")
        health = gw.health()["database"]
        assert "cannot commit" in health["error"] and "full" in health["error"], health
        time.sleep(1.0)
        assert not [p for p in mq.pages() if p["elder"]["name"] == "老人2"]  # not accepted yet

        filler.unlink()  # room again: what was held goes through
        mq.wait_for(lambda m: m["type"] == "page" and m["elder"]["name"] == "老人2", timeout=15)
        wait_until(lambda: _count(engine, "telemetry") == 40, 15, "every reading committed")
        wait_until(lambda: gw.health()["database"]["ok"], 10, "the database healthy again")
        with engine.connect() as c:
            assert c.execute(select(func.count()).select_from(T.quarantine)).scalar_one() == 0
        gw.stop()
        with contextlib.closing(sqlite3.connect(path)) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        engine.dispose()
