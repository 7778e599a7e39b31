"""The ingest worker's housekeeping, in small steps that leave room for alarms (SQLite and
PostgreSQL): pruning telemetry ids past the repeat check's window and hourly rollups past their
retention, writing the devices' last-seen times, and the full garbage collections."""

from __future__ import annotations

import gc
import time
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import DBAPIError

from gateway import collector, ingest
from gateway import tables as T
from gateway.app import Gateway
from gateway.tables_telemetry import telemetry_rollups
from tests.support.alarm import seed_home, wait_until
from tests.support.collect import churn, garbage_in_oldest_generation

HOUR_MS = 3_600_000


def _count(engine: Any, table: Any, *where: Any) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_old_ids_and_rollups_go_in_chunks_and_nothing_else(settings_for, engine, monkeypatch):
    monkeypatch.setattr(ingest, "PRUNE_CHUNK", 1_000)
    now = int(time.time() * 1000)
    old_id = now - 49 * HOUR_MS  # past the default 48 h
    old_hour = now - 401 * 24 * HOUR_MS  # past the default 400 days
    with engine.begin() as c:
        c.execute(
            insert(T.messages),
            [
                {
                    "source": "d",
                    "source_id": f"dev-{i % 7}",
                    "msg_id": f"m{i}",
                    "channel": "telemetry",
                    "received_at": old_id if i < 2_500 else now,
                }
                for i in range(2_510)
            ]
            + [  # alarms are the record: kept whatever their age
                {
                    "source": "d",
                    "source_id": "cb-1",
                    "msg_id": f"e{i}",
                    "channel": "events",
                    "received_at": old_id,
                }
                for i in range(5)
            ],
        )
        c.execute(
            insert(telemetry_rollups),
            [
                {
                    "device_id": f"dev-{i % 9}",
                    "hour_start": (old_hour if i < 1_500 else now) - (i // 9) * HOUR_MS,
                    "field": "flow_l",
                    "count": 1,
                    "min": 0.0,
                    "max": 1.0,
                    "sum": 1.0,
                }
                for i in range(1_520)
            ],
        )
    gw = Gateway(settings_for())  # not started: only its worker's housekeeping is used
    try:
        chunks = []
        for _ in range(10):
            before = _count(engine, T.messages) + _count(engine, telemetry_rollups)
            gw.ingest._prune()
            chunks.append(before - _count(engine, T.messages) - _count(engine, telemetry_rollups))
            if gw.ingest._next_prune - time.monotonic() > 60:  # nothing more: an hour from now
                break
        # Each step at most a chunk of each table; the last one found the rest.
        assert all(n <= 2 * 1_000 for n in chunks), chunks
        assert len(chunks) == 3 and sum(chunks) == 2_500 + 1_500, chunks
        assert _count(engine, T.messages, T.messages.c.channel == "telemetry") == 10
        assert _count(engine, T.messages, T.messages.c.channel == "events") == 5
        assert _count(engine, telemetry_rollups) == 20
        assert _count(engine, telemetry_rollups, telemetry_rollups.c.hour_start < old_hour) == 0
    finally:
        gw.engine.dispose()


def _idle_worker(settings_for: Any, engine: Any, homes: int) -> tuple[Gateway, list[str]]:
    """A gateway not started, for its worker's housekeeping alone, and its devices' ids."""
    seed_home(engine, n=homes)
    with engine.connect() as c:
        ids = sorted(c.execute(select(T.devices.c.id)).scalars())
    return Gateway(settings_for()), ids


def test_last_seen_times_are_written_in_chunks_and_yield_to_alarms(settings_for, engine):
    gw, ids = _idle_worker(settings_for, engine, homes=850)  # 2,550 devices
    w = gw.ingest
    try:
        for i, d in enumerate(ids):
            w._touch(d, 1_000 + i, 50.0 if i % 2 else None)
        w.queue.put(object())  # an alarm waiting: one chunk, then the rest waits
        w._flush_devices()
        seen = _count(engine, T.devices, T.devices.c.last_seen_at.is_not(None))
        assert seen == ingest.FLUSH_CHUNK and len(w._seen) == len(ids) - seen
        # Noted again meanwhile, later and without a battery: the later time, the old battery.
        late = next(d for d in ids[::-1] if d in w._seen and ids.index(d) % 2)
        w._touch(late, 9_999_999, None)
        w.queue.get_nowait()
        w._flush_devices()
        assert not w._seen
        with engine.connect() as c:
            rows = {r.id: r for r in c.execute(select(T.devices))}
        assert all(rows[d].last_seen_at is not None for d in ids)
        assert rows[late].last_seen_at == 9_999_999 and rows[late].battery_pct == 50.0
        assert rows[ids[0]].battery_pct is None and rows[ids[1]].battery_pct == 50.0
        # Another gateway has written a newer time (and battery) meanwhile: an older one, with
        # or without a battery, changes neither.
        with engine.begin() as c:
            c.execute(
                update(T.devices)
                .where(T.devices.c.id.in_(ids[:2]))
                .values(last_seen_at=20_000_000, battery_pct=80.0)
            )
        w._touch(ids[0], 10_000_000, 20.0)
        w._touch(ids[1], 10_000_000, None)
        w._touch(ids[2], 30_000_000, 40.0)  # newer than what is there: written
        w._flush_devices()
        with engine.connect() as c:
            rows = {r.id: r for r in c.execute(select(T.devices))}
        assert [(rows[d].last_seen_at, rows[d].battery_pct) for d in ids[:3]] == [
            (20_000_000, 80.0),
            (20_000_000, 80.0),
            (30_000_000, 40.0),
        ]
    finally:
        gw.engine.dispose()


def test_last_seen_times_yield_to_telemetry_and_go_on_at_the_next_round(settings_for, engine):
    gw, ids = _idle_worker(settings_for, engine, homes=100)  # 300 devices: three chunks
    w = gw.ingest
    try:
        for i, d in enumerate(ids):
            w._touch(d, 1_000 + i, None)
        for _ in range(ingest.FLUSH_YIELD_TELEMETRY - 1):  # below the bar: no yield
            w.telemetry_queue.put(object())
        w._flush_devices()
        assert not w._seen
        assert _count(engine, T.devices, T.devices.c.last_seen_at.is_not(None)) == len(ids)

        for d in ids:
            w._touch(d, 5_000, None)
        w._tbuf.append(object())  # gathered for a batch counts too: now at the bar
        w._flush_devices()
        fresh = T.devices.c.last_seen_at == 5_000
        with engine.connect() as c:
            written = set(c.execute(select(T.devices.c.id).where(fresh)).scalars())
        assert written == set(ids[: ingest.FLUSH_CHUNK])  # the oldest noted first
        assert len(w._seen) == len(ids) - ingest.FLUSH_CHUNK
        # not in 5 s but at the next housekeeping round, after the telemetry waiting
        assert time.monotonic() - w._last_device_flush >= ingest.DEVICE_FLUSH_S
        w._tbuf.clear()
        while not w.telemetry_queue.empty():
            w.telemetry_queue.get_nowait()
        w._flush_devices()
        assert not w._seen and _count(engine, T.devices, fresh) == len(ids)
    finally:
        gw.engine.dispose()


def test_while_a_gateway_runs_its_worker_makes_the_full_collections(make_gateway, monkeypatch):
    # gateway/collector.py: the interpreter's automatic full collections stalled presses by
    # 130 ms at 100,000 devices; while a gateway runs, its worker makes them between batches.
    monkeypatch.setattr(collector, "FULL_EVERY_S", 3600.0)
    before = gc.get_threshold()
    gw = make_gateway()
    assert collector.held() and gc.get_threshold()[2] > before[2]
    ref = garbage_in_oldest_generation()
    churn()
    assert ref() is not None, "an automatic full collection ran while the gateway ran"
    assert gw.metrics.registry.get_sample_value("shouwang_gc_full_pass_seconds_count") == 0
    gw.ingest._next_full_gc = 0.0  # due now: the worker's next housekeeping makes it
    wait_until(lambda: ref() is None, 5.0, "the worker's full collection")
    wait_until(
        lambda: gw.metrics.registry.get_sample_value("shouwang_gc_full_pass_seconds_count") == 1,
        2.0,
        "the full collection counted",
    )
    assert gw.ingest._next_full_gc > time.monotonic() + 3000  # the next one in FULL_EVERY_S
    gw.stop()
    assert not collector.held() and gc.get_threshold() == before


def test_the_full_collection_goes_on_while_the_database_is_down(settings_for):
    # A worker retrying a batch against a database that is down for hours still frees cycles.
    gw = Gateway(settings_for())  # not started: only its worker's retry loop is used
    w = gw.ingest
    calls = []

    def work(conn: Any) -> ingest.BatchResult:
        calls.append(1)
        if len(calls) < 3:
            raise DBAPIError("SELECT 1", {}, Exception("the database is down"))
        return ingest.BatchResult()

    collector.hold()
    try:
        ref = garbage_in_oldest_generation()
        w._next_full_gc = 0.0
        assert w._with_retry(work, [SimpleNamespace(lane="alarms")]) is not None
        assert len(calls) == 3 and ref() is None
        assert gw.metrics.registry.get_sample_value("shouwang_gc_full_pass_seconds_count") == 1
    finally:
        collector.release()
        gw.engine.dispose()
