"""Pure builders of the JSON payloads a simulated device or pager sends (contract v1).

No MQTT here: `DevicePayloads` and `reply_payload` return plain dicts, so tests can check every
message a simulator would send against the `devices.payloads` models without a broker.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from devices.kinds import DeviceKind, event_allowed
from devices.payloads import READINGS

TsFormat = Literal["rfc3339", "epoch_ms"]
CHINA_TZ = timezone(timedelta(hours=8), "CST")
GASES = ("natural_gas", "lpg", "coal_gas", "co")
TELEMETRY_FIELDS = frozenset({*READINGS, "interval_s"})


def make_ts(fmt: TsFormat = "rfc3339", now: float | None = None) -> str | int:
    """The time now as RFC 3339 with the +08:00 offset (milliseconds), or epoch milliseconds."""
    at = time.time() if now is None else now
    if fmt == "epoch_ms":
        return int(at * 1000)
    if fmt != "rfc3339":
        raise ValueError(f"unknown time format {fmt!r}: rfc3339 or epoch_ms")
    return datetime.fromtimestamp(at, CHINA_TZ).isoformat(timespec="milliseconds")


class MessageIds:
    """Message ids unique per sender: `<sender>-<counter>-<random>`, at most 64 characters.

    The random part keeps ids unique across restarts of the same simulated device (the gateway
    drops a repeat of `device_id` + `id` forever, so a restarted counter must not collide).
    """

    def __init__(self, sender: str) -> None:
        self._prefix = sender[:40]
        self._run = secrets.token_hex(3)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            n = next(self._counter)
        return f"{self._prefix}-{n}-{self._run}"


def encode(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (Chinese kept as is, not \\u-escaped)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class DevicePayloads:
    """Builds the events, telemetry and status of one device of one kind.

    The typed builders (`press`, `gas_alarm`, ...) refuse an event type that does not belong to
    the kind; `event()` builds anything (for bad-input tests).
    """

    def __init__(self, device_id: str, kind: DeviceKind | str, ts_format: TsFormat = "rfc3339"):
        self.device_id = device_id
        self.kind = DeviceKind(kind)
        self.ts_format: TsFormat = ts_format
        self.ids = MessageIds(device_id)

    def _header(self) -> dict[str, Any]:
        return {"id": self.ids.next(), "ts": make_ts(self.ts_format)}

    def event(self, type: str, **fields: Any) -> dict[str, Any]:
        """Any event: `{"id", "ts", "type", **fields}` (fields that are None are left out)."""
        body = self._header()
        body["type"] = type
        body.update({k: v for k, v in fields.items() if v is not None})
        return body

    def _typed(self, type: str, **fields: Any) -> dict[str, Any]:
        if not event_allowed(self.kind, type):
            raise ValueError(f"a {self.kind} does not send {type!r}")
        return self.event(type, **fields)

    def press(self, press: Literal["short", "long"] | None = "short") -> dict[str, Any]:
        return self._typed("button.pressed", press=press)

    def cancel(self) -> dict[str, Any]:
        return self._typed("button.cancelled")

    def _gas(
        self, type: str, gas: str, lel_pct: float | None, co_ppm: float | None
    ) -> dict[str, Any]:
        if gas not in GASES:
            raise ValueError(f"unknown gas {gas!r}: one of {', '.join(GASES)}")
        if lel_pct is None and co_ppm is None:
            raise ValueError("a gas event needs lel_pct and/or co_ppm")
        return self._typed(type, gas=gas, lel_pct=lel_pct, co_ppm=co_ppm)

    def gas_alarm(
        self, gas: str = "natural_gas", lel_pct: float | None = 25.0, co_ppm: float | None = None
    ) -> dict[str, Any]:
        return self._gas("gas.alarm", gas, lel_pct, co_ppm)

    def gas_cleared(
        self, gas: str = "natural_gas", lel_pct: float | None = 0.0, co_ppm: float | None = None
    ) -> dict[str, Any]:
        return self._gas("gas.cleared", gas, lel_pct, co_ppm)

    def leak(self) -> dict[str, Any]:
        return self._typed("water.leak")

    def dry(self) -> dict[str, Any]:
        return self._typed("water.dry")

    def tamper(self) -> dict[str, Any]:
        return self._typed("tamper")

    def battery_low(self, pct: float) -> dict[str, Any]:
        return self._typed("battery.low", battery_pct=pct)

    def command_result(
        self, command_id: str, ok: bool = True, detail: str | None = None
    ) -> dict[str, Any]:
        return self._typed("command.result", command_id=command_id, ok=ok, detail=detail)

    def telemetry(self, **readings: float) -> dict[str, Any]:
        """`{"id", "ts", **readings}`; readings from the contract's list, at least one."""
        unknown = set(readings) - TELEMETRY_FIELDS
        if unknown:
            raise ValueError(
                f"unknown telemetry reading(s) {sorted(unknown)}: use {sorted(TELEMETRY_FIELDS)}"
            )
        values = {k: v for k, v in readings.items() if v is not None}
        if not set(values) & set(READINGS):
            raise ValueError(f"telemetry needs at least one of {', '.join(READINGS)}")
        if "flow_l" in values and "interval_s" not in values:
            raise ValueError("flow_l needs interval_s (the seconds it covers)")
        return {**self._header(), **values}

    @staticmethod
    def status(
        online: bool, fw: str | None = None, battery_pct: float | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"online": online}
        if fw is not None:
            body["fw"] = fw
        if battery_pct is not None:
            body["battery_pct"] = battery_pct
        return body


def reply_payload(
    ids: MessageIds,
    alert_id: str,
    action: str,
    note: str | None = None,
    ts_format: TsFormat = "rfc3339",
) -> dict[str, Any]:
    """A pager's reply: `{"id", "ts", "alert_id", "action", "note"?}`."""
    body: dict[str, Any] = {
        "id": ids.next(),
        "ts": make_ts(ts_format),
        "alert_id": alert_id,
        "action": action,
    }
    if note is not None:
        body["note"] = note
    return body
