"""One pydantic-settings object for the contract's SHOUWANG_* variables (and a .env file)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHOUWANG_", env_file=".env", extra="forbid", frozen=True
    )

    mqtt_url: str | None = Field(
        None, description="mqtt://user:pass@host:port of the broker; unset: an embedded broker"
    )
    embedded_mqtt_port: int = Field(1883, ge=1, le=65535, description="the embedded broker's port")
    mqtt_base: str = Field(
        "shouwang", pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="first part of every topic"
    )
    mqtt_client_id: str = Field(
        "shouwang-gateway",
        pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
        description="the gateway's MQTT client id (its persistent session)",
    )
    mqtt_session_expiry_s: int = Field(
        86_400,
        ge=60,
        description="how long the broker keeps the gateway's session (and queued alarms) while "
        "it is away (MQTT 5)",
    )
    mqtt_version: int = Field(
        5, description="MQTT protocol of an external broker: 5 (default) or 311 (3.1.1)"
    )
    mqtt_share_group: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description="MQTT 5 shared-subscription group, for several gateways on one broker",
    )
    database_url: str = Field("sqlite:///./shouwang.db", description="SQLAlchemy URL")
    influx_url: str | None = Field(None, description="time-series store for telemetry")
    influx_token: SecretStr | None = Field(None, description="time-series store token")
    influx_org: str | None = Field(None, description="time-series store organisation")
    influx_bucket: str | None = Field(None, description="time-series store bucket")
    http_host: str = Field("127.0.0.1", description="where the API and pages are served")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP port (0: any free port)")
    admin_token: SecretStr | None = Field(None, description="an administrator's bearer token")
    timezone: str = Field("Asia/Shanghai", description="offset used for times the gateway writes")
    cancel_grace_s: int = Field(
        120, ge=0, le=3600, description="a button.cancelled within this cancels the alert"
    )
    default_ack_timeout_s: int = Field(
        60, ge=5, le=86_400, description="ack timeout when an elder has no escalation plan"
    )
    telemetry_id_retention_h: int = Field(
        48, ge=1, description="how long telemetry ids are kept for the repeat check"
    )
    log_level: str = Field("INFO", description="logging level")

    @field_validator("mqtt_version")
    @classmethod
    def _mqtt_version(cls, value: int) -> int:
        if value not in (5, 311):
            raise ValueError("SHOUWANG_MQTT_VERSION is 5 or 311")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError("SHOUWANG_MQTT_URL must look like mqtt://user:pass@host:port")
        return value


class MqttEndpoint:
    """Host, port and credentials taken from an mqtt:// URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
