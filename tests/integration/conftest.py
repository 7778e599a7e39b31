"""Fixtures for gateway integration tests: a gateway in this process on a private broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.db import make_engine, migrate
from gateway.settings import Settings
from tests.support.alarm import CONNECT_WAIT_S, Mqtt, unique_base


@pytest.fixture
def base() -> str:
    return unique_base()


@pytest.fixture
def settings_for(mosquitto: Any, db_url: str, base: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mqtt_url": mosquitto.url,
            "database_url": db_url,
            "mqtt_base": base,
            "mqtt_client_id": f"gw-{base}",
            "http_port": 0,
            "log_level": "WARNING",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def engine(db_url: str) -> Iterator[Any]:
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def make_gateway(settings_for: Callable[..., Settings]) -> Iterator[Callable[..., Gateway]]:
    made: list[Gateway] = []

    def make(clock: Callable[[], float] = time.time, **overrides: Any) -> Gateway:
        gw = Gateway(settings_for(**overrides), clock=clock)
        # Stopped at teardown even when it fails the check below: a gateway left running keeps
        # its threads polling a database since dropped, and on a loaded machine each one so left
        # made the next connects slower, until the rest of the worker's tests failed to connect.
        made.append(gw)
        gw.start(wait_connected=CONNECT_WAIT_S)
        assert gw.mqtt_connected(), "gateway did not connect to the test broker"
        return gw

    yield make
    for gw in made:
        gw.stop()


@pytest.fixture
def mq(mosquitto: Any, base: str) -> Iterator[Mqtt]:
    client = Mqtt(mosquitto.port, base)
    yield client
    client.close()
