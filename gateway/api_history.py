"""HTTP API for history of telemetry per device and elder, from the hourly rollups (issue 8).
Included by gateway/api.py's create_app.

- `GET /api/v1/devices/{device_id}/history?field=&from=&to=&step=hour|day`: count, min, max,
  mean and sum of one reading per hour or per local day.
- `GET /api/v1/elders/{elder_id}/water-use?from=&to=&step=hour|day`: litres used, summed over
  the elder's water sensors (gateway/telemetry.py `water_use_per_hour` says how).

Both read `telemetry_rollups` (gateway/tables_telemetry.py), which the ingest worker keeps in
the database whether or not a time-series store is configured, so the charts work on the
embedded default. Days are local days in SHOUWANG_TIMEZONE (Asia/Shanghai by default), made of
whole UTC hours. Ranges are bounded (at most 93 days by the hour, 3 years by the day; a 422 says
so). Buckets with no reading are absent: unknown, which is not zero.

Same conventions as gateway/api.py, whose auth dependency and helpers it uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select

from devices.kinds import DeviceKind
from gateway.api import (
    MAX_BODY_BYTES,
    RuntimeDep,
    _invalid,
    _reading,
    _require,
    authenticate,
    in_scope,
)
from gateway.api_time import QueryInstant, query_instant
from gateway.clock import from_ms, to_ms
from gateway.runtime import Runtime
from gateway.tables import devices, elders
from gateway.tables_telemetry import telemetry_rollups
from gateway.telemetry import HOUR_MS, HourRow, water_use_per_hour

router = APIRouter(
    prefix="/api/v1",
    # A station's staff: another station's elder or device answers 404 (gateway/api.py).
    dependencies=[Depends(authenticate), Depends(in_scope())],
    max_body_size=MAX_BODY_BYTES,
)

DAY_MS = 24 * HOUR_MS
MAX_HOURLY_DAYS = 93  # 2,232 hourly points: a quarter on one chart
MAX_DAILY_DAYS = 3 * 366
DEFAULT_HOURLY = timedelta(hours=24)
DEFAULT_DAILY = timedelta(days=30)


class Step(StrEnum):
    HOUR = "hour"
    DAY = "day"


class ReadingName(StrEnum):
    """The readings of contract v1 telemetry (devices.payloads.READINGS), as rolled up."""

    LEL_PCT = "lel_pct"
    CO_PPM = "co_ppm"
    FLOW_L = "flow_l"
    TOTAL_L = "total_l"
    BATTERY_PCT = "battery_pct"
    RSSI_DBM = "rssi_dbm"
    TEMP_C = "temp_c"


_STEP_DOC = "hour: one point per hour; day: one per local day (SHOUWANG_TIMEZONE)"
StepQuery = Annotated[Step, Query(description=_STEP_DOC)]
FromQuery = Annotated[
    QueryInstant,
    Query(
        alias="from",
        max_length=40,
        description="start, RFC 3339 with an offset (default: 24 hours before `to` by the "
        "hour, 30 days by the day); rounded down to the hour or the local day",
    ),
]
ToQuery = Annotated[
    QueryInstant,
    Query(max_length=40, description="end (excluded), RFC 3339 with an offset; default now"),
]


class HistoryPoint(BaseModel):
    start: str = Field(description="start of the hour or local day, RFC 3339 with the offset")
    count: int = Field(description="readings in the bucket")
    min: float
    max: float
    mean: float = Field(description="sum / count")
    sum: float


class _Range(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    step: Step
    from_: str = Field(alias="from", description="start of the first bucket asked for")
    to: str = Field(description="end of the range (excluded)")
    timezone: str = Field(description="the zone that makes the days (SHOUWANG_TIMEZONE)")


class HistoryPublic(_Range):
    device_id: str
    field: ReadingName
    points: list[HistoryPoint] = Field(description="oldest first; buckets with no reading absent")


class WaterUsePoint(BaseModel):
    start: str = Field(description="start of the hour or local day, RFC 3339 with the offset")
    litres: float = Field(description="litres used in the bucket, over the elder's water sensors")
    basis: list[str] = Field(
        description="flow_l (sum of the litres reported per interval) and/or total_l "
        "(differences of the meter's running total)"
    )


class WaterUsePublic(_Range):
    elder_id: str
    devices: list[str] = Field(description="the elder's water sensors")
    points: list[WaterUsePoint] = Field(
        description="oldest first; a bucket with no reading from any sensor is absent "
        "(unknown, not zero)"
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such device or elder"},
    422: {"description": "a bad field, time or step, or a range too long for the step"},
}


def _bounds(rt: Runtime, from_: str | None, to: str | None, step: Step) -> tuple[int, int]:
    """[start, end) in epoch ms: start rounded down to the hour or local day; the range checked
    against the step's bound (422 with the reason)."""
    end = query_instant(to, "to")
    end = rt.now_ms() if end is None else end
    start = query_instant(from_, "from")
    if start is None:
        start = end - (
            int(DEFAULT_HOURLY.total_seconds() * 1000)
            if step == Step.HOUR
            else int(DEFAULT_DAILY.total_seconds() * 1000)
        )
    if end <= start:
        raise _invalid(("query", "to"), "`to` must be after `from` (to 须晚于 from)", to)
    if step == Step.HOUR:
        start -= start % HOUR_MS
        limit_days = MAX_HOURLY_DAYS
    else:
        start = _local_midnight(rt, start)
        limit_days = MAX_DAILY_DAYS
    if end - start > limit_days * DAY_MS:
        raise _invalid(
            ("query", "from"),
            f"at most {limit_days} days by the {step.value}: ask for a shorter range or "
            f"step=day (按{'小时' if step == Step.HOUR else '天'}查询最多 {limit_days} 天)",
            from_,
        )
    return start, end


def _local_midnight(rt: Runtime, ms: int) -> int:
    local = from_ms(ms, rt.tz)
    return to_ms(datetime(local.year, local.month, local.day, tzinfo=rt.tz))


def _day_key(rt: Runtime, hour: int) -> int:
    return _local_midnight(rt, hour)


def _rows(conn: Any, ids: list[str], fields: list[str], start: int, end: int) -> list[HourRow]:
    t = telemetry_rollups
    q = (
        select(t)
        .where(
            t.c.device_id.in_(ids),
            t.c.field.in_(fields),
            t.c.hour_start >= start,
            t.c.hour_start < end,
        )
        .order_by(t.c.hour_start)
    )
    return [
        HourRow(r.device_id, r.hour_start, r.field, r.count, r.min, r.max, r.sum)
        for r in conn.execute(q)
    ]


def _history_points(rt: Runtime, rows: Iterable[HourRow], step: Step) -> list[HistoryPoint]:
    buckets: dict[int, list[float]] = {}  # start -> [count, min, max, sum]
    for r in rows:
        key = r.hour_start if step == Step.HOUR else _day_key(rt, r.hour_start)
        b = buckets.get(key)
        if b is None:
            buckets[key] = [r.count, r.min, r.max, r.sum]
        else:
            b[0] += r.count
            b[1] = min(b[1], r.min)
            b[2] = max(b[2], r.max)
            b[3] += r.sum
    return [
        HistoryPoint(
            start=_iso(rt, k),
            count=int(b[0]),
            min=b[1],
            max=b[2],
            mean=b[3] / b[0],
            sum=b[3],
        )
        for k, b in sorted(buckets.items())
    ]


def _iso(rt: Runtime, ms: int) -> str:
    return from_ms(ms, rt.tz).isoformat(timespec="seconds")


@router.get("/devices/{device_id}/history", tags=["history"], responses=_ERRORS)
def device_history(
    device_id: str,
    rt: RuntimeDep,
    field: Annotated[ReadingName, Query(description="the reading to chart")],
    from_: FromQuery = None,
    to: ToQuery = None,
    step: StepQuery = Step.HOUR,
) -> HistoryPublic:
    """One reading of a device per hour or per local day, from the hourly rollups: gas levels
    (lel_pct, co_ppm), battery, signal (rssi_dbm), temperature, water (flow_l, total_l)."""
    start, end = _bounds(rt, from_, to, step)
    with _reading(rt) as conn:
        _require(conn, devices, device_id, "device")
        rows = _rows(conn, [device_id], [field.value], start, end)
    return HistoryPublic(
        device_id=device_id,
        field=field,
        step=step,
        **{"from": _iso(rt, start)},
        to=_iso(rt, end),
        timezone=rt.settings.timezone,
        points=_history_points(rt, rows, step),
    )


# How far back the meter total of the hour before a range is looked for; a longer gap is not
# bridged (the first hour counts its own max - min), so a meter silent for days does not put
# all of those days' water into one hour.
TOTAL_LOOKBACK_MS = 3 * HOUR_MS


@router.get("/elders/{elder_id}/water-use", tags=["history"], responses=_ERRORS)
def elder_water_use(
    elder_id: str,
    rt: RuntimeDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    step: StepQuery = Step.HOUR,
) -> WaterUsePublic:
    """Litres of water the elder used per hour or per local day, over their water sensors: the
    sum of `flow_l` (litres per report interval) where a sensor sends it, else the rise of the
    meter's `total_l` from one hour to the next. 用水量（升），按小时或按天。"""
    with _reading(rt) as conn:
        return water_use(conn, elder_id, rt, from_, to, step)


def water_use(
    conn: Connection,
    elder_id: str,
    rt: Runtime,
    from_: str | None = None,
    to: str | None = None,
    step: Step = Step.HOUR,
) -> WaterUsePublic:
    """`elder_water_use` on the caller's connection, so that a page putting it beside other reads
    sees them all at one moment (the family page's snapshot transaction)."""
    start, end = _bounds(rt, from_, to, step)
    t = telemetry_rollups
    _require(conn, elders, elder_id, "elder")
    ids = list(
        conn.execute(
            select(devices.c.id)
            .where(
                devices.c.elder_id == elder_id,
                devices.c.kind == DeviceKind.WATER_SENSOR.value,
            )
            .order_by(devices.c.id)
        ).scalars()
    )
    rows = _rows(conn, ids, ["flow_l", "total_l"], start, end) if ids else []
    before: dict[str, tuple[int, float]] = {}
    for dev in ids:
        prev = conn.execute(
            select(t.c.hour_start, t.c.max)
            .where(
                t.c.device_id == dev,
                t.c.field == "total_l",
                t.c.hour_start < start,
                t.c.hour_start >= start - TOTAL_LOOKBACK_MS,
            )
            .order_by(t.c.hour_start.desc())
            .limit(1)
        ).first()
        if prev is not None:
            before[dev] = (prev.hour_start, prev.max)
    hourly = water_use_per_hour(rows, before, max_gap_ms=TOTAL_LOOKBACK_MS)
    buckets: dict[int, tuple[float, set[str]]] = {}
    for hour, w in hourly.items():
        key = hour if step == Step.HOUR else _day_key(rt, hour)
        litres, basis = buckets.get(key, (0.0, set()))
        buckets[key] = (litres + w.litres, basis | w.basis)
    return WaterUsePublic(
        elder_id=elder_id,
        devices=ids,
        step=step,
        **{"from": _iso(rt, start)},
        to=_iso(rt, end),
        timezone=rt.settings.timezone,
        points=[
            WaterUsePoint(start=_iso(rt, k), litres=round(v[0], 3), basis=sorted(v[1]))
            for k, v in sorted(buckets.items())
        ],
    )


__all__ = ["router"]
