"""Topic names of contract v1: building them and taking them apart.

The base (`shouwang` by default) is configurable; the version segment `v1` is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

VERSION = "v1"
ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class Channel(StrEnum):
    EVENTS = "events"
    TELEMETRY = "telemetry"
    STATUS = "status"
    COMMANDS = "commands"
    PAGES = "pages"
    REPLIES = "replies"


DEVICE_CHANNELS = frozenset({Channel.EVENTS, Channel.TELEMETRY, Channel.STATUS, Channel.COMMANDS})
PAGER_CHANNELS = frozenset({Channel.PAGES, Channel.REPLIES})


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: `owner` is `devices` or `pagers`, `ident` the device or pager id."""

    owner: str
    ident: str
    channel: Channel


def valid_id(ident: str) -> bool:
    """True for a device or pager id the contract allows (1-64 of A-Z a-z 0-9 _ . -)."""
    return ID_RE.fullmatch(ident) is not None


def _check(ident: str) -> str:
    if not valid_id(ident):
        raise ValueError(f"invalid id {ident!r}: 1-64 characters of A-Z a-z 0-9 _ . -")
    return ident


def device_topic(base: str, device_id: str, channel: Channel | str) -> str:
    channel = Channel(channel)
    if channel not in DEVICE_CHANNELS:
        raise ValueError(f"{channel} is not a device channel")
    return f"{base}/{VERSION}/devices/{_check(device_id)}/{channel}"


def pager_topic(base: str, pager_id: str, channel: Channel | str) -> str:
    channel = Channel(channel)
    if channel not in PAGER_CHANNELS:
        raise ValueError(f"{channel} is not a pager channel")
    return f"{base}/{VERSION}/pagers/{_check(pager_id)}/{channel}"


def gateway_status_topic(base: str, client_id: str) -> str:
    """The gateway's own retained status (birth message and Last Will)."""
    return f"{base}/{VERSION}/gateways/{client_id}/status"


def alarm_filters(base: str) -> list[str]:
    """What can raise or answer an alarm: device events and status, pager replies."""
    return [
        f"{base}/{VERSION}/devices/+/events",
        f"{base}/{VERSION}/devices/+/status",
        f"{base}/{VERSION}/pagers/+/replies",
    ]


def telemetry_filters(base: str) -> list[str]:
    """Device readings: many, and never allowed to stand in front of an alarm."""
    return [f"{base}/{VERSION}/devices/+/telemetry"]


def inbound_filters(base: str) -> list[str]:
    """The subscriptions a gateway needs: everything devices and pagers send to it."""
    events, status, replies = alarm_filters(base)
    return [events, *telemetry_filters(base), status, replies]


def parse_topic(base: str, topic: str) -> Topic | None:
    """Take an inbound topic apart; None when it is not one of the contract's topics."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != base or parts[1] != VERSION:
        return None
    _, _, owner, ident, chan = parts
    if not valid_id(ident):
        return None
    try:
        channel = Channel(chan)
    except ValueError:
        return None
    if owner == "devices" and channel in DEVICE_CHANNELS:
        return Topic(owner, ident, channel)
    if owner == "pagers" and channel in PAGER_CHANNELS:
        return Topic(owner, ident, channel)
    return None
