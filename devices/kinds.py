"""Device kinds and which event types belong to each kind (contract v1)."""

from __future__ import annotations

from enum import StrEnum


class DeviceKind(StrEnum):
    CALL_BUTTON = "call_button"
    GAS_SENSOR = "gas_sensor"
    WATER_SENSOR = "water_sensor"


# Event types any kind may send.
COMMON_EVENT_TYPES: frozenset[str] = frozenset({"tamper", "battery.low", "command.result"})

KIND_EVENT_TYPES: dict[DeviceKind, frozenset[str]] = {
    DeviceKind.CALL_BUTTON: frozenset({"button.pressed", "button.cancelled"}) | COMMON_EVENT_TYPES,
    DeviceKind.GAS_SENSOR: frozenset({"gas.alarm", "gas.cleared"}) | COMMON_EVENT_TYPES,
    DeviceKind.WATER_SENSOR: frozenset({"water.leak", "water.dry"}) | COMMON_EVENT_TYPES,
}

ALL_EVENT_TYPES: frozenset[str] = frozenset().union(*KIND_EVENT_TYPES.values())


def event_allowed(kind: DeviceKind, event_type: str) -> bool:
    """True when a device of `kind` may send an event of `event_type`."""
    return event_type in KIND_EVENT_TYPES[kind]
