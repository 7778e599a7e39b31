"""Telemetry end to end: a real gateway on a private Mosquitto, SQLite and PostgreSQL, writing
to a private VictoriaMetrics through the InfluxDB v2 write protocol (tests/support/victoria.py).

- readings arrive as `<kind>_<field>` series with the device, elder, community and bucket tags
  and their values and times; the hourly rollups in the database are exact (repeats once);
- with the store down: points are buffered up to the bound, the oldest dropped and counted,
  the health signal says so, a button press still pages at once; the store back, what is held
  arrives;
- shutdown while the store is down (refusing, or hanging) returns within the flush limit and
  counts what it could not write;
- bad telemetry is quarantined, never written, never silently lost;
- the history API reads the rollups: per device, water use per elder, by hour and local day.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from gateway import tables as T
from gateway.api import create_app
from gateway.tables_telemetry import telemetry_rollups
from gateway.telemetry import HOUR_MS, Reading, hour_start, upsert_rollups
from tests.integration.test_api import serving
from tests.support.alarm import Mqtt, seed_home, wait_until
from tests.support.victoria import PrivateVictoria, samples, victoria_bin

ADMIN = "admin-telemetry-test"
BUCKET = "telemetry"
COMMUNITY = "幸福 里,3=号"  # a space, a comma and an equals sign in a Chinese tag value
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def victoria() -> Iterator[PrivateVictoria]:
    """A private VictoriaMetrics, not yet started (a test may start it late)."""
    if victoria_bin() is None:
        from tests.support.services import require

        require("victoria-metrics", "no victoria-metrics binary (apt-get install victoria-metrics)")
    vm = PrivateVictoria()
    try:
        yield vm
    finally:
        vm.close()


@pytest.fixture
def store_gateway(
    make_gateway: Callable[..., Any], victoria: PrivateVictoria
) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "influx_url": victoria.url,
            "influx_org": "shouwang",
            "influx_bucket": BUCKET,
            "influx_token": "any-token",
            "telemetry_retry_max_s": 0.5,
            "admin_token": ADMIN,
        }
        values.update(overrides)
        return make_gateway(**values)

    return make


def publish(mq: Mqtt, device: str, msg_id: str, ts: int, **readings: Any) -> None:
    body = {"id": msg_id, "ts": ts, **readings}
    mq.raw(f"{mq.base}/v1/devices/{device}/telemetry", json.dumps(body).encode())


def rollups(gw: Any, device: str, field: str) -> list[Any]:
    t = telemetry_rollups
    with gw.engine.connect() as c:
        return c.execute(
            select(t).where(t.c.device_id == device, t.c.field == field).order_by(t.c.hour_start)
        ).all()


def rolled_count(gw: Any, device: str, field: str) -> int:
    return sum(r.count for r in rollups(gw, device, field))


def past_hour() -> int:
    """A time 10 minutes into the previous hour: readings around it share one hour."""
    return hour_start(int(time.time() * 1000)) - HOUR_MS + 600_000


# --- the store up -----------------------------------------------------------------------------


def test_readings_reach_the_store_with_their_tags_and_the_rollups_are_exact(
    store_gateway: Callable[..., Any], engine: Any, mq: Mqtt, victoria: PrivateVictoria
) -> None:
    victoria.start()
    victoria.speaks_influx_v2()
    seed_home(engine)
    with engine.begin() as c:
        c.execute(
            update(T.elders)
            .where(T.elders.c.id == "e1")
            .values(tags=[f"community:{COMMUNITY}", "building:3"])
        )
    gw = store_gateway()
    t = past_hour()
    publish(mq, "gas-1", "g1", t, lel_pct=1.5, co_ppm=12, battery_pct=88, rssi_dbm=-71, temp_c=21.5)
    publish(mq, "water-1", "w1", t + 60_000, flow_l=2.5, interval_s=60, total_l=1002.5)
    publish(mq, "water-1", "w2", t + 120_000, flow_l=1.5, interval_s=60, total_l=1004)
    publish(mq, "water-1", "w2", t + 120_000, flow_l=1.5, interval_s=60, total_l=1004)  # repeat

    lel = victoria.wait_export('gas_sensor_lel_pct{device="gas-1"}', lambda s: len(s) == 1)
    labels = lel[0]["metric"]
    assert labels == {
        "__name__": "gas_sensor_lel_pct",
        "device": "gas-1",
        "elder": "e1",
        "community": COMMUNITY,
        "bucket": BUCKET,
    }
    assert samples(lel) == [(t, 1.5)]
    for field, value in (("co_ppm", 12.0), ("battery_pct", 88.0), ("rssi_dbm", -71.0)):
        got = victoria.wait_export(f'gas_sensor_{field}{{device="gas-1"}}', lambda s: len(s) == 1)
        assert samples(got) == [(t, value)]
    flow = victoria.wait_export(
        'water_sensor_flow_l{device="water-1"}', lambda s: len(samples(s)) >= 2
    )
    assert samples(flow) == [(t + 60_000, 2.5), (t + 120_000, 1.5)]  # the repeat: once
    total = victoria.wait_export('water_sensor_total_l{device="water-1"}', lambda s: len(s) == 1)
    assert samples(total) == [(t + 60_000, 1002.5), (t + 120_000, 1004.0)]

    [f] = rollups(gw, "water-1", "flow_l")
    assert (f.hour_start, f.count, f.min, f.max, f.sum) == (hour_start(t), 2, 1.5, 2.5, 4.0)
    [tot] = rollups(gw, "water-1", "total_l")
    assert (tot.count, tot.min, tot.max) == (2, 1002.5, 1004.0)
    [g] = rollups(gw, "gas-1", "temp_c")
    assert (g.count, g.min, g.max, g.sum) == (1, 21.5, 21.5, 21.5)

    status = gw.health()["timeseries"]
    assert status["state"] == "ok" and status["written"] == 3 and status["dropped"] == 0
    assert status["buffered"] == 0 and status["last_success_at"] is not None


def test_rollups_add_up_across_batches_and_hours(engine: Any) -> None:
    """The upsert itself, on both databases: count and sum added, min and max kept."""
    t0 = hour_start(int(time.time() * 1000))
    first = [
        Reading("g", "gas_sensor", "e", t0 + 1, {"lel_pct": 4.0, "co_ppm": 3.0}),
        Reading("g", "gas_sensor", "e", t0 + 2, {"lel_pct": 2.0}),
    ]
    second = [
        Reading("g", "gas_sensor", "e", t0 + 3, {"lel_pct": 7.0}),
        Reading("g", "gas_sensor", "e", t0 + HOUR_MS, {"lel_pct": 1.0}),
    ]
    for batch in (first, second):
        with engine.begin() as c:
            upsert_rollups(c, batch)
    t = telemetry_rollups
    with engine.connect() as c:
        rows = c.execute(
            select(t.c.hour_start, t.c.field, t.c.count, t.c.min, t.c.max, t.c.sum).order_by(
                t.c.hour_start, t.c.field
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (t0, "co_ppm", 1, 3.0, 3.0, 3.0),
        (t0, "lel_pct", 3, 2.0, 7.0, 13.0),
        (t0 + HOUR_MS, "lel_pct", 1, 1.0, 1.0, 1.0),
    ]


# --- the store down ---------------------------------------------------------------------------


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
@SQLITE_ONLY
def test_store_down_buffers_to_the_bound_drops_the_oldest_and_alarms_still_page(
    store_gateway: Callable[..., Any], engine: Any, mq: Mqtt, victoria: PrivateVictoria
) -> None:
    seed_home(engine)
    gw = store_gateway(telemetry_buffer_points=100, telemetry_batch_points=10)
    t = past_hour()
    for i in range(150):
        publish(mq, "gas-1", f"m{i}", t + i * 1000, temp_c=float(i))
    wait_until(lambda: rolled_count(gw, "gas-1", "temp_c") == 150, timeout=15, what="ingest")
    sink = gw.telemetry
    wait_until(lambda: sink.status()["dropped"] == 50, timeout=5, what="drops counted")
    status = gw.health()["timeseries"]
    assert status["buffered"] == 100 and status["written"] == 0
    assert status["state"] in ("degraded", "down") and status["last_error"]

    with serving(create_app(gw.runtime)) as url, httpx.Client(base_url=url, timeout=10) as http:
        body = http.get("/healthz").json()
        assert http.get("/healthz").status_code == 200  # the store is not an alarm dependency
        assert body["degraded"] == ["timeseries"] and body["down"] == []
        metrics = http.get("/metrics").text
    assert "shouwang_timeseries_points_dropped_total 50.0" in metrics
    assert "shouwang_timeseries_buffered_points 100.0" in metrics

    sent = time.monotonic()
    mq.event("cb-1", "button.pressed")
    pages = mq.wait_for(lambda m: m["type"] == "page", timeout=1.0, count=2)
    assert max(p["_at"] for p in pages) - sent < 1.0

    victoria.start()  # the store comes back: the newest 100 arrive, the oldest 50 never
    got = victoria.wait_export(
        'gas_sensor_temp_c{device="gas-1"}', lambda s: len(samples(s)) >= 100, timeout=20
    )
    assert samples(got) == [(t + i * 1000, float(i)) for i in range(50, 150)]
    wait_until(lambda: sink.status()["written"] == 100, timeout=5, what="written counted")
    status = sink.status()
    assert status["dropped"] == 50 and status["buffered"] == 0
    assert status["last_success_at"] is not None


def _unanswering_server() -> socket.socket:
    """A port that accepts connections and never answers: a store that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@pytest.mark.solo  # a wall-clock bound: run alone under xdist
@SQLITE_ONLY
@pytest.mark.parametrize("hanging", [False, True], ids=["refusing", "hanging"])
def test_shutdown_with_the_store_down_returns_within_the_flush_limit_and_counts_the_loss(
    store_gateway: Callable[..., Any],
    engine: Any,
    mq: Mqtt,
    caplog: pytest.LogCaptureFixture,
    hanging: bool,
) -> None:
    seed_home(engine)
    hang = _unanswering_server() if hanging else None
    overrides: dict[str, Any] = {"telemetry_flush_timeout_s": 1.0, "influx_timeout_s": 10.0}
    if hang is not None:
        overrides["influx_url"] = f"http://127.0.0.1:{hang.getsockname()[1]}"
    try:
        gw = store_gateway(**overrides)
        t = past_hour()
        for i in range(20):
            publish(mq, "gas-1", f"s{i}", t + i, temp_c=float(i))
        wait_until(lambda: rolled_count(gw, "gas-1", "temp_c") == 20, timeout=10, what="ingest")
        sink = gw.telemetry
        wait_until(lambda: len(sink.buffer) == 20, timeout=5, what="points handed to the sink")
        caplog.set_level(logging.WARNING, logger="gateway.telemetry")
        started = time.monotonic()
        lost = sink.stop()
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, f"the flush took {elapsed:.2f}s, its limit is 1 s"
        assert lost == 20 and sink.status()["dropped"] == 20 and sink.status()["written"] == 0
        assert any("20 points not written" in r.getMessage() for r in caplog.records)
        gw.stop()
    finally:
        if hang is not None:
            hang.close()


# --- bad input ------------------------------------------------------------------------------


def test_bad_telemetry_is_quarantined_not_written_and_counted(
    store_gateway: Callable[..., Any], engine: Any, mq: Mqtt, victoria: PrivateVictoria
) -> None:
    victoria.start()
    seed_home(engine)
    gw = store_gateway()
    t = past_hour()
    publish(mq, "gas-1", "bad1", t, lel_pct="high")  # not a number
    publish(mq, "gas-1", "bad2", t + 1, lel_pct=2.0, co_ppm=True)  # one bad field spoils it
    publish(mq, "gas-1", "good", t + 2, lel_pct=3.0)
    got = victoria.wait_export('gas_sensor_lel_pct{device="gas-1"}', lambda s: len(s) == 1)
    with gw.engine.connect() as c:
        quarantined = c.execute(
            select(T.quarantine.c.reason, T.quarantine.c.payload).order_by(T.quarantine.c.id)
        ).all()
    assert [q.reason for q in quarantined] == ["invalid", "invalid"]
    assert '"high"' in quarantined[0].payload
    time.sleep(1.5)  # anything else written would be searchable by now
    got = victoria.export('{__name__=~"gas_sensor_.*", device="gas-1"}')
    assert [(s["metric"]["__name__"], samples([s])) for s in got] == [
        ("gas_sensor_lel_pct", [(t + 2, 3.0)])
    ]
    assert rolled_count(gw, "gas-1", "lel_pct") == 1
    metrics = gw.metrics.quarantined.labels("invalid")._value.get()
    assert metrics == 2


# --- the history API ------------------------------------------------------------------------

# 2026-11-24 15:00 UTC = 23:00 in Shanghai: the hours straddle local midnight.
H0 = int(datetime(2026, 11, 24, 15, tzinfo=UTC).timestamp() * 1000)


def _seed_history(engine: Any) -> None:
    seed_home(engine)
    with engine.begin() as c:
        c.execute(
            T.devices.insert().values(
                id="meter-1", kind="water_sensor", elder_id="e1", created_at=H0
            )
        )
    readings = [
        Reading("gas-1", "gas_sensor", "e1", H0 + 60_000, {"lel_pct": 2.0}),
        Reading("gas-1", "gas_sensor", "e1", H0 + 120_000, {"lel_pct": 4.0}),
        Reading("gas-1", "gas_sensor", "e1", H0 + HOUR_MS + 1, {"lel_pct": 1.0}),
        Reading("gas-1", "gas_sensor", "e1", H0 + 2 * HOUR_MS + 1, {"lel_pct": 3.0}),
        # water-1 reports flow per interval; meter-1 its running total
        Reading("water-1", "water_sensor", "e1", H0 + 1, {"flow_l": 3.0, "interval_s": 60.0}),
        Reading("water-1", "water_sensor", "e1", H0 + 2, {"flow_l": 2.0, "interval_s": 60.0}),
        Reading("water-1", "water_sensor", "e1", H0 + HOUR_MS + 5, {"flow_l": 1.0}),
        Reading("meter-1", "water_sensor", "e1", H0 - HOUR_MS + 5, {"total_l": 90.0}),
        Reading("meter-1", "water_sensor", "e1", H0 + 5, {"total_l": 100.0}),
        Reading("meter-1", "water_sensor", "e1", H0 + 9, {"total_l": 104.0}),
        Reading("meter-1", "water_sensor", "e1", H0 + HOUR_MS + 5, {"total_l": 110.0}),
    ]
    with engine.begin() as c:
        upsert_rollups(c, readings)


@pytest.fixture
def history_api(make_gateway: Callable[..., Any], engine: Any) -> Iterator[httpx.Client]:
    _seed_history(engine)
    gw = make_gateway(admin_token=ADMIN)
    with (
        serving(create_app(gw.runtime)) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
        ) as client,
    ):
        yield client


def test_device_history_by_hour_and_by_local_day(history_api: httpx.Client) -> None:
    q = {"field": "lel_pct", "from": "2026-11-24T23:00:00+08:00", "to": "2026-11-25T02:00:00+08:00"}
    r = history_api.get("/api/v1/devices/gas-1/history", params=q)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["from"] == "2026-11-24T23:00:00+08:00" and body["timezone"] == "Asia/Shanghai"
    assert [(p["start"], p["count"], p["min"], p["max"], p["mean"]) for p in body["points"]] == [
        ("2026-11-24T23:00:00+08:00", 2, 2.0, 4.0, 3.0),
        ("2026-11-25T00:00:00+08:00", 1, 1.0, 1.0, 1.0),
        ("2026-11-25T01:00:00+08:00", 1, 3.0, 3.0, 3.0),
    ]
    q = {
        "field": "lel_pct",
        "step": "day",
        "from": "2026-11-24T00:00:00+08:00",
        "to": "2026-11-26T00:00:00+08:00",
    }
    days = history_api.get("/api/v1/devices/gas-1/history", params=q).json()["points"]
    assert [(p["start"], p["count"], p["sum"], p["max"]) for p in days] == [
        ("2026-11-24T00:00:00+08:00", 2, 6.0, 4.0),
        ("2026-11-25T00:00:00+08:00", 2, 4.0, 3.0),
    ]


def test_water_use_per_hour_and_day_from_flow_and_meter_total(history_api: httpx.Client) -> None:
    q = {"from": "2026-11-24T23:00:00+08:00", "to": "2026-11-25T01:00:00+08:00"}
    r = history_api.get("/api/v1/elders/e1/water-use", params=q)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["devices"] == ["meter-1", "water-1"]
    # 23:00: flow 3 + 2, meter 104 - 90 (the hour before); 00:00: flow 1, meter 110 - 104.
    assert [(p["start"], p["litres"], p["basis"]) for p in body["points"]] == [
        ("2026-11-24T23:00:00+08:00", 19.0, ["flow_l", "total_l"]),
        ("2026-11-25T00:00:00+08:00", 7.0, ["flow_l", "total_l"]),
    ]
    q = {"step": "day", "from": "2026-11-25T00:00:00+08:00", "to": "2026-11-26T00:00:00+08:00"}
    days = history_api.get("/api/v1/elders/e1/water-use", params=q).json()["points"]
    assert [(p["start"], p["litres"]) for p in days] == [("2026-11-25T00:00:00+08:00", 7.0)]


@pytest.mark.parametrize(
    ("path", "params", "code", "says"),
    [
        ("/api/v1/devices/nope/history", {"field": "lel_pct"}, 404, "no device"),
        ("/api/v1/elders/nope/water-use", {}, 404, "no elder"),
        ("/api/v1/devices/gas-1/history", {"field": "pressure"}, 422, "lel_pct"),
        ("/api/v1/devices/gas-1/history", {}, 422, "field"),
        (
            "/api/v1/devices/gas-1/history",
            {
                "field": "lel_pct",
                "from": "2026-01-01T00:00:00+08:00",
                "to": "2026-06-01T00:00:00+08:00",
            },
            422,
            "at most 93 days",
        ),
        (
            "/api/v1/elders/e1/water-use",
            {"from": "2026-11-25T00:00:00+08:00", "to": "2026-11-24T00:00:00+08:00"},
            422,
            "after",
        ),
        ("/api/v1/elders/e1/water-use", {"from": "2026-11-25T00:00:00"}, 422, "offset"),
        ("/api/v1/elders/e1/water-use", {"step": "week"}, 422, "hour"),
    ],
)
def test_history_refuses_bad_input_with_the_reason(
    history_api: httpx.Client, path: str, params: dict[str, str], code: int, says: str
) -> None:
    r = history_api.get(path, params=params)
    assert r.status_code == code, r.text
    assert says in json.dumps(r.json()["detail"], ensure_ascii=False)


def test_history_needs_a_token(history_api: httpx.Client) -> None:
    resp = history_api.get(  # the client's token replaced by a wrong one
        "/api/v1/elders/e1/water-use", headers={"Authorization": "Bearer wrong" + uuid.uuid4().hex}
    )
    assert resp.status_code == 401


def test_rollups_in_the_database_count_each_reading_once_without_a_store(
    make_gateway: Callable[..., Any], engine: Any, mq: Mqtt
) -> None:
    """No SHOUWANG_INFLUX_URL: no sink, the rollups alone, and health says not configured."""
    seed_home(engine)
    gw = make_gateway()
    assert gw.telemetry is None
    t = past_hour()
    for i in range(5):
        publish(mq, "water-1", f"n{i}", t + i * 1000, flow_l=1.0 + i, interval_s=60)
    publish(mq, "water-1", "n0", t, flow_l=1.0, interval_s=60)  # a repeat
    wait_until(lambda: rolled_count(gw, "water-1", "flow_l") == 5, timeout=10, what="rollups")
    time.sleep(0.3)
    [r] = rollups(gw, "water-1", "flow_l")
    assert (r.count, r.min, r.max, r.sum) == (5, 1.0, 5.0, 15.0)
    assert gw.health()["timeseries"] == {"ok": None, "state": "not_configured", "configured": False}
    with gw.engine.connect() as c:
        # flow_l only: interval_s is not a reading, and is not rolled up
        assert c.execute(select(func.count()).select_from(telemetry_rollups)).scalar_one() == 1
