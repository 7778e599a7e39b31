"""The gateway's settings (gateway/settings.py): what they refuse, with the reason."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.settings import Settings


@pytest.mark.parametrize(
    ("values", "needs"),
    [
        ({"lanes": "alarm"}, "SHOUWANG_MQTT_URL"),
        ({"lanes": "telemetry", "mqtt_url": "mqtt://127.0.0.1:1883"}, "PostgreSQL"),
        (
            {
                "lanes": "alarm",
                "mqtt_url": "mqtt://127.0.0.1:1883",
                "database_url": "postgresql+psycopg://postgres@127.0.0.1/test",
                "mqtt_share_group": "g1",
            },
            "SHOUWANG_MQTT_SHARE_GROUP",
        ),
    ],
)
def test_a_lane_alone_needs_an_external_broker_postgresql_and_no_share_group(
    values: dict[str, Any], needs: str
) -> None:
    with pytest.raises(ValidationError, match=needs):
        Settings(_env_file=None, **values)
    assert Settings(_env_file=None).lanes == "all"
    ok = {k: v for k, v in values.items() if k != "mqtt_share_group"}
    ok |= {"mqtt_url": "mqtt://127.0.0.1:1883", "database_url": "postgresql+psycopg://x@h/d"}
    assert Settings(_env_file=None, **ok).lanes == values["lanes"]
    with pytest.raises(ValidationError, match="lanes"):
        Settings(_env_file=None, lanes="events")
