"""One pydantic-settings object for the contract's SHOUWANG_* variables (and a .env file)."""

from __future__ import annotations

import base64
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.model import Priority
from alerts.policy import DEFAULT_REMINDERS, DEFAULT_RETRY, DEFAULT_TIMEOUTS_S, Role

_P1, _P2 = DEFAULT_TIMEOUTS_S[Priority.P1], DEFAULT_TIMEOUTS_S[Priority.P2]
_REMIND_ACK = int(DEFAULT_REMINDERS.after_ack.total_seconds()) if DEFAULT_REMINDERS.after_ack else 0
_REMIND_SITE = (
    int(DEFAULT_REMINDERS.after_on_site.total_seconds()) if DEFAULT_REMINDERS.after_on_site else 0
)


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
    lanes: Literal["all", "alarm", "telemetry"] = Field(
        "all",
        description="which device messages this process takes: all; alarm (events, status, "
        "pager replies); telemetry (readings). A process of each keeps a press from waiting "
        "behind readings for the CPU; needs an external broker and PostgreSQL",
    )
    database_url: str = Field("sqlite:///./shouwang.db", description="SQLAlchemy URL")
    influx_url: str | None = Field(None, description="time-series store for telemetry")
    influx_token: SecretStr | None = Field(None, description="time-series store token")
    influx_org: str | None = Field(None, description="time-series store organisation")
    influx_bucket: str | None = Field(None, description="time-series store bucket")
    influx_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="HTTP timeout of one write to the time-series store (connect and read); "
        "short, so that a store that hangs is found out quickly and shutdown stays bounded",
    )
    telemetry_buffer_points: int = Field(
        100_000,
        ge=100,
        le=10_000_000,
        description="the most telemetry points held for the time-series store while it is "
        "slow or down (about 200 bytes each); when full, the OLDEST points are dropped and "
        "counted (alarms never pass through this buffer)",
    )
    telemetry_batch_points: int = Field(
        5_000,
        ge=1,
        le=50_000,
        description="points per write to the time-series store (one HTTP request)",
    )
    telemetry_flush_timeout_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="at shutdown, how long the telemetry sink may keep writing what it holds; "
        "what is left then is counted as dropped and logged",
    )
    telemetry_retry_max_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="the longest wait between tries while the time-series store fails (the "
        "wait starts at 0.5 s and doubles)",
    )
    http_host: str = Field("127.0.0.1", description="where the API and pages are served")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP port (0: any free port)")
    admin_token: SecretStr | None = Field(None, description="an administrator's bearer token")
    data_key: SecretStr | None = Field(
        None,
        description="key that encrypts ID-card numbers in the care registry and keys their "
        "look-up hash: 32 random bytes, URL-safe base64 (`python -c 'import secrets, base64; "
        "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())'`). Keep it out of "
        "the database and its backups; losing it loses the stored numbers. Unset: the registry "
        "refuses to store ID numbers",
    )
    timezone: str = Field("Asia/Shanghai", description="offset used for times the gateway writes")
    station_phone: str | None = Field(
        None,
        pattern=r"^[0-9+()\- ]{3,32}$",
        description="the station's phone number, offered on the watchers' phone page as one tap "
        "to call the station; unset: the page offers the elder's number only",
    )
    cancel_grace_s: int = Field(
        120, ge=0, le=3600, description="a button.cancelled within this cancels the alert"
    )
    default_ack_timeout_s: int = Field(
        60,
        ge=5,
        le=86_400,
        description="ack timeout of the last-resort plan (every staff member of the elder's "
        "station) when the policy finds nobody to page",
    )
    # Paging policy (alerts.policy): ack timeouts per priority and role of the ladder paired
    # watchers -> volunteers -> staff on duty -> family. P3 keeps the policy's defaults.
    p1_watcher_ack_s: int = Field(
        _P1[Role.WATCHER],
        ge=5,
        le=86_400,
        description="P1 (call button, gas): seconds a paired "
        "watcher has to answer before the next rung is paged",
    )
    p1_volunteer_ack_s: int = Field(
        _P1[Role.VOLUNTEER], ge=5, le=86_400, description="P1: seconds for volunteers"
    )
    p1_staff_ack_s: int = Field(
        _P1[Role.STAFF], ge=5, le=86_400, description="P1: seconds for station staff on duty"
    )
    p1_family_ack_s: int = Field(
        _P1[Role.FAMILY],
        ge=5,
        le=86_400,
        description="P1: seconds for family (the last rung, repeated until answered)",
    )
    p2_watcher_ack_s: int = Field(
        _P2[Role.WATCHER], ge=5, le=86_400, description="P2 (water, device): seconds for watchers"
    )
    p2_volunteer_ack_s: int = Field(
        _P2[Role.VOLUNTEER], ge=5, le=86_400, description="P2: seconds for volunteers"
    )
    p2_staff_ack_s: int = Field(
        _P2[Role.STAFF], ge=5, le=86_400, description="P2: seconds for station staff"
    )
    p2_family_ack_s: int = Field(
        _P2[Role.FAMILY], ge=5, le=86_400, description="P2: seconds for family"
    )
    max_nearby_volunteers: int | None = Field(
        None,
        ge=0,
        description="at most this many on-duty volunteers near the elder are paged "
        "(paired volunteers always are); unset: all of them",
    )
    reminder_after_ack_s: int = Field(
        _REMIND_ACK,
        ge=0,
        le=86_400,
        description="an acknowledged, unresolved P1 is paged again "
        "this many seconds after the ack (then again as often); 0: no reminders",
    )
    reminder_after_on_site_s: int = Field(
        _REMIND_SITE,
        ge=0,
        le=86_400,
        description="seconds between reminders once someone is "
        "on site and the alert is still unresolved; 0: none",
    )
    reminders_for_explicit_plans: bool = Field(
        False,
        description="also remind for alerts paged by an explicit per-elder plan (PUT "
        "/elders/{id}/escalation); by default such a plan is followed exactly as written",
    )
    delivery_max_tries: int = Field(
        DEFAULT_RETRY.max_tries,
        ge=1,
        le=10,
        description="tries of one apprise link (SMS, IM, "
        "voice) before it is given up and the chain's next link is used",
    )
    delivery_backoff_s: float = Field(
        DEFAULT_RETRY.first_backoff_s,
        ge=0,
        le=600,
        description="wait after a link's first failed try; tripled after each further failure",
    )
    delivery_max_backoff_s: float = Field(
        DEFAULT_RETRY.max_backoff_s, ge=0, le=3600, description="the longest wait between tries"
    )
    notify_threads: int = Field(
        4,
        ge=1,
        le=64,
        description="threads that call the apprise providers (never the ingest worker's)",
    )
    rules_tick_s: int = Field(
        60,
        ge=1,
        le=3600,
        description="how often the stored rule states are checked when due: no water used, "
        "an unanswered valve.close, silent devices and outages (alerts/water, gas, health)",
    )
    telemetry_id_retention_h: int = Field(
        48, ge=1, description="how long telemetry ids are kept for the repeat check"
    )
    rollup_retention_days: int = Field(
        400,
        ge=35,
        le=3650,
        description="how long the hourly telemetry rollups (history charts, the water rules' "
        "learning) are kept; pruned in small steps by the ingest worker",
    )
    log_level: str = Field("INFO", description="logging level")
    # Accounts and sessions of the pages (issue 7; gateway/accounts.py).
    mode: Literal["production", "demo"] = Field(
        "production",
        description="production: `shouwang run` refuses to start without an administrator's "
        "credential (SHOUWANG_ADMIN_TOKEN or an enabled admin account) and no account is ever "
        "made with a password of ours; demo (`shouwang run --demo`, `make run`): demo accounts "
        "with random passwords are made and printed",
    )
    session_lifetime_s: int = Field(
        14 * 86_400,
        ge=300,
        le=90 * 86_400,
        description="a signed-in session ends this many seconds after the sign-in, whatever "
        "happens (then sign in again)",
    )
    session_idle_s: int = Field(
        3 * 86_400,
        ge=300,
        le=90 * 86_400,
        description="a session not used for this many seconds ends; long by default, as a "
        "watcher's phone page must stay signed in to be paged",
    )
    cookie_secure: bool = Field(
        False,
        description="always mark the session cookie Secure (behind a proxy that ends TLS and "
        "does not pass X-Forwarded-Proto); it is Secure anyway when the request is https",
    )
    signin_lockout_after: int = Field(
        5,
        ge=1,
        le=100,
        description="wrong passwords in a row for one user name before its sign-in is locked "
        "for a while (each further failure doubles the wait)",
    )
    signin_lockout_s: int = Field(
        30,
        ge=1,
        le=3600,
        description="the first lock's length in seconds (doubled, at most 15 min)",
    )
    signin_ip_max_failures: int = Field(
        30,
        ge=1,
        le=10_000,
        description="failed sign-ins from one address within 10 minutes before that address "
        "is slowed down (429) for the rest of the 10 minutes",
    )

    @field_validator("data_key")
    @classmethod
    def _data_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        try:
            raw = base64.urlsafe_b64decode(value.get_secret_value().encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raw = b""
        if len(raw) != 32:
            raise ValueError("SHOUWANG_DATA_KEY is 32 random bytes in URL-safe base64")
        return value

    @field_validator("mqtt_version")
    @classmethod
    def _mqtt_version(cls, value: int) -> int:
        if value not in (5, 311):
            raise ValueError("SHOUWANG_MQTT_VERSION is 5 or 311")
        return value

    @field_validator("reminder_after_ack_s", "reminder_after_on_site_s")
    @classmethod
    def _reminder_interval(cls, value: int) -> int:
        if 0 < value < 5:
            raise ValueError("a reminder interval is 0 (off) or at least 5 seconds")
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

    @model_validator(mode="after")
    def _lanes(self) -> Settings:
        if self.lanes != "all":
            # The embedded broker is this process's own, and SQLite takes one gateway process.
            if not self.mqtt_url:
                raise ValueError(
                    f"SHOUWANG_LANES={self.lanes} needs the other lane's gateway on the same "
                    "broker: set SHOUWANG_MQTT_URL (an external broker)"
                )
            # A shared group's members adopt and end a gone member's session: the last process
            # of a lane gone, nobody would be subscribed to it and the broker would drop what
            # devices send. One process per lane keeps its own session, as a single gateway.
            if self.mqtt_share_group:
                raise ValueError(
                    f"SHOUWANG_LANES={self.lanes} takes no SHOUWANG_MQTT_SHARE_GROUP: run one "
                    "process per lane, or several with SHOUWANG_LANES=all in a share group"
                )
            if not self.database_url.startswith("postgresql"):
                raise ValueError(
                    f"SHOUWANG_LANES={self.lanes} needs the other lane's gateway on the same "
                    "database: set SHOUWANG_DATABASE_URL to PostgreSQL (SQLite takes one process)"
                )
        return self


class MqttEndpoint:
    """Host, port and credentials taken from an mqtt:// URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
