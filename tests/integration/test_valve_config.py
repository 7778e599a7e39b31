"""Which device may take a gas sensor's `valve.close`, on SQLite and PostgreSQL: `PATCH
/api/v1/devices/{id}` refuses (422, nothing stored) a valve of another elder, a retired one, and a
device that cannot take `valve.close` (a call button, a water sensor); an active gas sensor of the
same elder (the sensor itself included) is taken, and the gas rule closes it; retiring the valve
device clears the setting of the sensors that named it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway import tables as T
from gateway.api import create_app
from tests.integration.test_api import serving
from tests.integration.test_rules import Commands, event
from tests.support.alarm import FakeClock, Mqtt, seed_home

ADMIN = "admin-valve-test-token"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gw(make_gateway: Callable[..., Any], clock: FakeClock) -> Any:
    return make_gateway(clock=clock, admin_token=ADMIN)


@pytest.fixture
def api(gw: Any) -> Iterator[httpx.Client]:
    with (
        serving(create_app(gw.runtime)) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10.0
        ) as client,
    ):
        yield client


@pytest.fixture
def commands(mosquitto: Any, base: str) -> Iterator[Commands]:
    c = Commands(mosquitto.port, base)
    yield c
    c.close()


def ok(resp: Any, code: int = 200) -> Any:
    assert resp.status_code == code, resp.text
    return resp.json() if resp.content else None


def stored_valve(gw: Any, device: str) -> str | None:
    with gw.engine.connect() as c:
        valve: str | None = c.execute(
            select(T.devices.c.valve_device_id).where(T.devices.c.id == device)
        ).scalar_one()
        return valve


def test_a_valve_is_an_active_gas_sensor_of_the_same_elder(
    engine: Any, gw: Any, api: httpx.Client
) -> None:
    seed_home(engine, n=2, steps=[(["w1"], 3600)])  # e1: cb-1, gas-1, water-1; e2: ... gas-2
    for dev in ("gas-1b", "gas-old"):
        ok(
            api.post("/api/v1/devices", json={"id": dev, "kind": "gas_sensor", "elder_id": "e1"}),
            201,
        )
    ok(api.post("/api/v1/devices/gas-old/retire"))

    for device, valve, why in (
        ("gas-1", "gas-2", "belongs to another elder"),
        ("gas-1", "gas-old", "is retired"),
        ("gas-old", "gas-old", "is retired"),  # itself, retired
        ("gas-1", "cb-1", "call_button cannot take valve.close"),
        ("gas-1", "water-1", "water_sensor cannot take valve.close"),
    ):
        resp = api.patch(f"/api/v1/devices/{device}", json={"valve_device_id": valve})
        assert resp.status_code == 422, (device, valve, resp.text)
        [problem] = resp.json()["detail"]
        assert problem["loc"] == ["body", "valve_device_id"] and why in problem["msg"], problem
        assert stored_valve(gw, device) is None, (device, valve)

    # The valid cases still work: the sensor itself, another gas sensor of the same home.
    assert (
        ok(api.patch("/api/v1/devices/gas-1", json={"valve_device_id": "gas-1"}))["valve_device_id"]
        == "gas-1"
    )
    ok(api.patch("/api/v1/devices/gas-1", json={"valve_device_id": "gas-1b"}))
    refused = api.patch("/api/v1/devices/gas-1", json={"valve_device_id": "gas-2"})
    assert refused.status_code == 422 and stored_valve(gw, "gas-1") == "gas-1b"
    assert ok(api.get("/api/v1/devices/gas-1/rules"))["valve_device_id"] == "gas-1b"

    # Retiring the valve clears the setting; a sensor whose valve is itself keeps its own.
    ok(api.patch("/api/v1/devices/gas-2", json={"valve_device_id": "gas-2"}))
    ok(api.post("/api/v1/devices/gas-1b/retire"))
    assert ok(api.get("/api/v1/devices/gas-1/rules"))["valve_device_id"] is None
    assert stored_valve(gw, "gas-2") == "gas-2"


def test_the_gas_rule_closes_the_valve_of_another_sensor_of_the_home(
    engine: Any, gw: Any, api: httpx.Client, mq: Mqtt, clock: FakeClock, commands: Commands
) -> None:
    seed_home(engine, steps=[(["w1"], 3600)])
    ok(
        api.post("/api/v1/devices", json={"id": "gas-1b", "kind": "gas_sensor", "elder_id": "e1"}),
        201,
    )
    ok(api.patch("/api/v1/devices/gas-1", json={"valve_device_id": "gas-1b"}))
    event(mq, gw, clock, "gas-1", "gas.alarm", gas="natural_gas", lel_pct=30.0)
    [(topic, cmd)] = commands.wait(1)
    assert topic == f"{mq.base}/v1/devices/gas-1b/commands" and cmd["type"] == "valve.close"
