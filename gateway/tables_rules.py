"""Tables of the rules' per-elder settings (issue 3): an elder's own no-water and water-running
thresholds. Created by migration 0013.

They share gateway.tables' metadata (imported at the end of that module).

One row per elder with an override (alerts.water.WaterOverride); a null column keeps the
gateway's default for that field, and no row means the defaults throughout. Durations are whole
minutes, times of day `HH:MM` local time. Who changed it and when is here and in `audit_log`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Integer, String, Table

from gateway.tables import metadata

__all__ = ["elder_water_rules"]

elder_water_rules = Table(
    "elder_water_rules",
    metadata,
    Column("elder_id", String(40), ForeignKey("elders.id"), primary_key=True),
    Column("fixed_min_l", Float),
    Column("fixed_window_min", Integer),
    Column("day_start", String(5)),
    Column("day_end", String(5)),
    Column("learn", Boolean),
    Column("running_window_min", Integer),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(120), nullable=False),
)
