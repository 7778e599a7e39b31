"""What the HTTP layer and the CLI see of a running gateway (built in gateway/app.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from gateway.alerting import AlertService, OutMsg
from gateway.clock import Clock
from gateway.live import LiveFeed
from gateway.metrics import Metrics
from gateway.ruling import Ruling
from gateway.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    service: AlertService
    metrics: Metrics
    clock: Clock
    tz: ZoneInfo
    publish: Callable[[list[OutMsg]], None]  # hand committed outbox messages to the publisher
    health: Callable[[], dict[str, Any]]  # {"broker": {"ok": bool, ...}, "database": {...}}
    rules: Ruling | None = None  # the stateful rules' wiring (suppressions, false alarms)
    live: LiveFeed | None = None  # alert events pushed to the pages (gateway/live.py)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
