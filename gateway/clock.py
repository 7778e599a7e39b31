"""Time for the gateway: one injectable clock, ids, and conversions at the edges.

Inside the database times are epoch milliseconds; in the domain, aware datetimes; on the wire,
RFC 3339 with the station's offset.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

Clock = Callable[[], float]  # epoch seconds, like time.time


def system_clock() -> float:
    return time.time()


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def from_ms(ms: int, tz: ZoneInfo | None = None) -> datetime:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.astimezone(tz) if tz else dt


def rfc3339(ms: int | None, tz: ZoneInfo) -> str | None:
    """Epoch ms -> RFC 3339 with the station's offset (None stays None)."""
    if ms is None:
        return None
    return from_ms(ms, tz).isoformat(timespec="milliseconds")


def new_id(prefix: str) -> str:
    """An opaque id: a prefix, the time (so ids sort roughly by age) and randomness."""
    return f"{prefix}_{int(time.time() * 1000):011x}{secrets.token_hex(5)}"
