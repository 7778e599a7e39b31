"""Tables of telemetry rollups per device per hour (issue 8).

They share gateway.tables' metadata (imported at the end of that module), so the migrations and
their check see every table. Times are epoch milliseconds (UTC) in BIGINT columns.

`telemetry_rollups` keeps, per device, per UTC hour and per reading (`lel_pct`, `flow_l`, ...),
the count, minimum, maximum and sum of the readings whose `ts` falls in that hour; the mean is
sum / count at read time. The ingest worker updates it in the transaction that accepts the
readings (gateway/telemetry.py `upsert_rollups`), so it is exact: a repeat is never counted twice
and a reading rolled back is never counted. Created by migration 0005.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, String, Table

from gateway.tables import metadata

telemetry_rollups = Table(
    "telemetry_rollups",
    metadata,
    Column("device_id", String(64), primary_key=True),
    # Start of the UTC hour, epoch ms. Local days are made of these hours at read time
    # (exact in zones with whole-hour offsets, such as the default Asia/Shanghai).
    Column("hour_start", BigInteger, primary_key=True),
    Column("field", String(16), primary_key=True),  # a reading's name, devices.payloads.READINGS
    Column("count", BigInteger, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
    Column("sum", Float, nullable=False),
)

# The pruning of old hours (gateway/ingest.py) finds them by this, not by a scan (migration 0014).
Index("ix_telemetry_rollups_hour_start", telemetry_rollups.c.hour_start)

__all__ = ["metadata", "telemetry_rollups"]
