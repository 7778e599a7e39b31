"""The composition root: builds the gateway's parts from Settings, starts and stops them in order.

broker (embedded, when no SHOUWANG_MQTT_URL) -> database (migrated) -> notifier pool (apprise;
web: the phone page) -> publisher -> telemetry sink (when SHOUWANG_INFLUX_URL is set) -> ingest
worker -> MQTT link; the HTTP app gets a Runtime view of them.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from devices.topics import alarm_filters, telemetry_filters
from gateway import collector
from gateway.adopt import Adopter
from gateway.alerting import AlertService
from gateway.clock import Clock, rfc3339, system_clock
from gateway.db import make_engine, make_worker_engine, migrate, server_warnings
from gateway.ingest import Ingest
from gateway.live import LiveFeed
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.notify import APPRISE, WEB, AppriseNotifier, Delivery, DeliveryResult, Dispatcher
from gateway.outbox import Publisher
from gateway.paging import Paging
from gateway.phone import PhoneNotifier
from gateway.ruling import RuleConfig, Ruling
from gateway.runtime import Runtime
from gateway.settings import MqttEndpoint, Settings
from gateway.telemetry import TelemetrySink, build_sink

log = logging.getLogger(__name__)

# How long /healthz names a session the broker lost (`degraded`: broker_session): presses sent
# while the gateway was away may be lost, and an operator looking the next morning must see it.
# A restart of the gateway forgets it (it is kept in memory: the log has the ERROR).
SESSION_LOST_SHOWN_S = 24 * 3600
SESSION_LOST_ADVICE = (
    "代理服务器重启后丢失了网关的会话，期间设备发来的消息（含呼叫按钮）可能已丢失；"
    "请为代理服务器开启持久化（mosquitto: `persistence true`）。 "
    "The broker lost the gateway's session (restarted without persistence?): messages sent "
    "meanwhile, presses included, may be lost; run the broker with `persistence true`."
)


class Gateway:
    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.metrics = Metrics()
        self.broker: Any = None
        self.engine = make_engine(settings.database_url)
        self.paging = Paging.from_settings(settings, self.tz)
        self.service = AlertService(
            settings.mqtt_base, self.tz, settings.default_ack_timeout_s, paging=self.paging
        )
        # Notifier channels besides the MQTT pager, by the `channel` of a person's chain links.
        self.notifier = Dispatcher(
            {APPRISE: AppriseNotifier(), WEB: PhoneNotifier(self.engine, clock)},
            self._record_delivery,
            threads=settings.notify_threads,
        )
        self.paging.dispatch = self.notifier.submit
        if settings.mqtt_url:
            ep = MqttEndpoint(settings.mqtt_url)
            self.mqtt_host, self.mqtt_port = ep.host, ep.port
            user, password, mqtt5 = ep.username, ep.password, settings.mqtt_version == 5
        else:
            self.mqtt_host, self.mqtt_port = "127.0.0.1", settings.embedded_mqtt_port
            user, password, mqtt5 = None, None, False  # amqtt speaks MQTT 3.1.1 only
        link_args: dict[str, Any] = {
            "username": user,
            "password": password,
            "mqtt5": mqtt5,
            "session_expiry_s": settings.mqtt_session_expiry_s,
            "share_group": settings.mqtt_share_group,
            # amqtt drops what it sent us unacknowledged when the connection drops: a message
            # the worker holds then will not come again, so it is kept (gateway/broker.py).
            "redelivers": bool(settings.mqtt_url),
        }
        # Two connections, two persistent sessions: alarms (events, status, replies; and every
        # page we publish) on the gateway's client id, telemetry on its own. The broker then
        # delivers a press at once even while thousands of readings queue for the gateway.
        # SHOUWANG_LANES splits them between processes: a telemetry-lane gateway's own link
        # subscribes to nothing and only publishes (pages its rules raise, its status).
        lanes = settings.lanes
        self.link = MqttLink(
            self.mqtt_host,
            self.mqtt_port,
            settings.mqtt_client_id,
            settings.mqtt_base,
            self._on_inbound,
            filters=alarm_filters(settings.mqtt_base) if lanes != "telemetry" else [],
            lane="alarm",
            **link_args,
        )
        self.telemetry_link: MqttLink | None = None
        if lanes != "alarm":
            self.telemetry_link = MqttLink(
                self.mqtt_host,
                self.mqtt_port,
                f"{settings.mqtt_client_id}.telemetry",
                settings.mqtt_base,
                self._on_inbound,
                filters=telemetry_filters(settings.mqtt_base),
                lane="telemetry",
                announce=False,
                **link_args,
            )
        self.links = tuple(lk for lk in (self.link, self.telemetry_link) if lk is not None)
        # Several gateways sharing the topics: the sessions of one that is gone are taken over.
        self.adopter: Adopter | None = None
        if settings.mqtt_url and settings.mqtt_share_group and mqtt5:
            self.adopter = Adopter(
                host=self.mqtt_host,
                port=self.mqtt_port,
                client_id=settings.mqtt_client_id,
                base=settings.mqtt_base,
                share_group=settings.mqtt_share_group,
                engine=self.engine,
                metrics=self.metrics,
                on_inbound=self._on_inbound,
                username=user,
                password=password,
                session_expiry_s=settings.mqtt_session_expiry_s,
            )
        self.publisher = Publisher(self.engine, self.link, self.metrics, clock)
        self.ruling = Ruling(self.service, settings.mqtt_base, RuleConfig.from_settings(settings))
        self.worker_engine = make_worker_engine(settings.database_url, self.engine)
        self.alarm_engine = make_worker_engine(settings.database_url, self.engine, alarms=True)
        self.ingest = Ingest(
            self.worker_engine,
            self.service,
            settings.mqtt_base,
            self.metrics,
            clock,
            self.publisher.submit,
            self._ack,
            cancel_grace_s=settings.cancel_grace_s,
            telemetry_id_retention_h=settings.telemetry_id_retention_h,
            rollup_retention_days=settings.rollup_retention_days,
            ruling=self.ruling,
            alarm_engine=self.alarm_engine,
            redelivered=self._redelivered,
        )
        # Telemetry to the time-series store, beside the alarm path: the worker only hands
        # committed readings over (never waits); the sink writes them from a thread of its own.
        self.telemetry: TelemetrySink | None = build_sink(
            settings, self.engine, self.metrics, clock, self.tz
        )
        if self.telemetry is not None:
            self.ingest.telemetry_sink = self.telemetry.offer
        self.runtime = Runtime(
            settings=settings,
            engine=self.engine,
            service=self.service,
            metrics=self.metrics,
            clock=clock,
            tz=self.tz,
            publish=self.publisher.submit,
            health=self.health,
            rules=self.ruling,
            live=LiveFeed(self.engine),
        )
        self._started = False
        self.db_warnings: list[str] = []  # the server's settings that work against us (start)

    def _on_inbound(self, item: Any) -> None:
        self.ingest.put(item)

    def _link_of(self, item: Any) -> MqttLink:
        link = self.telemetry_link if item.lane == "telemetry" else self.link
        assert link is not None  # readings come by the telemetry link only (or an adopted one)
        return link

    def _ack(self, item: Any) -> None:
        """Acknowledge a message on the connection it came by (message ids are per
        connection); not at all when that connection is gone (MqttLink.ack)."""
        if item.link is not None:  # an adopted session's
            item.link.ack(item.mid, item.qos)
            return
        if not self._link_of(item).ack(item.mid, item.qos, item.generation):
            log.debug(  # a batch in flight at a reconnect: one line each, hence debug
                "not acknowledging a message on %s: it came by an earlier connection",
                item.topic[:200],
            )

    def _redelivered(self, item: Any) -> bool:
        """The broker has sent `item` again since (Ingest: a held copy to forget)."""
        if item.link is not None:  # an adopted session: one connection, never resumed by us
            return False
        return self._link_of(item).redelivered(item.generation)

    def _record_delivery(self, delivery: Delivery, result: DeliveryResult) -> None:
        self.paging.record_result(self.engine, int(self.clock() * 1000), delivery, result)

    def start(self, wait_connected: float = 0.0) -> None:
        """Start every part; optionally wait until the broker has accepted us."""
        if not self.settings.mqtt_url:
            from gateway.broker import EmbeddedBroker

            self.broker = EmbeddedBroker("127.0.0.1", self.settings.embedded_mqtt_port)
            self.broker.start()
        migrate(self.engine)
        self.db_warnings = server_warnings(self.engine)
        for warning in self.db_warnings:
            log.warning("%s", warning)
        self.notifier.start()
        self.publisher.start()
        if self.telemetry is not None:
            self.telemetry.start()
        self.ingest.start()
        for link in self.links:
            link.start()
        if self.adopter is not None:
            self.adopter.start()
        self._started = True
        # Everything built so far lives as long as the process: keep it out of the collector's
        # generations, whose full passes otherwise stall a page by 20-45 ms now and then. The
        # full passes are the worker's from now on (gateway/collector.py).
        gc.collect()
        gc.freeze()
        collector.hold()
        self.metrics.mqtt_connected.set_function(lambda: 1.0 if self.mqtt_connected() else 0.0)
        deadline = time.monotonic() + wait_connected
        for link in self.links if wait_connected else ():
            if not link.wait_connected(max(0.0, deadline - time.monotonic())):
                log.warning(
                    "%s not yet connected and subscribed to MQTT %s:%s after %.0fs; "
                    "still trying (%s)",
                    link.client_id,
                    self.mqtt_host,
                    self.mqtt_port,
                    wait_connected,
                    link.last_error,
                )

    def mqtt_connected(self) -> bool:
        return all(link.connected.is_set() for link in self.links)

    def stop(self) -> None:
        """Finish the batch in hand, publish what is committed, say offline, stop the broker."""
        if not self._started:
            return
        self._started = False
        collector.release()
        if self.adopter is not None:  # first: what it had not acked stays in the peer's session
            self.adopter.stop()
        self.ingest.stop()
        if self.telemetry is not None:  # after the ingest: its last batch is handed over too
            self.telemetry.stop()  # bounded by SHOUWANG_TELEMETRY_FLUSH_TIMEOUT_S
        self.notifier.stop()
        self.publisher.stop()
        for link in reversed(self.links):
            link.stop()
        if self.broker is not None:
            self.broker.stop()
        for engine in {self.worker_engine, self.alarm_engine} - {self.engine}:
            engine.dispose()
        self.engine.dispose()

    def health(self) -> dict[str, Any]:
        started = time.monotonic()
        db_ok, db_error = True, None
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            db_ok, db_error = False, str(exc.orig or exc)[:200]
        if db_ok and not self.ingest.db_ok:
            # It answers, but the worker cannot commit (a full disk, a read-only database):
            # messages are held, not acknowledged, until it can.
            db_ok, db_error = False, f"cannot commit: {self.ingest.db_error}"
        broker_ok = self.mqtt_connected()
        now = time.time()
        lost = sorted(
            (lk.session_lost_at, lk.client_id)
            for lk in self.links
            if lk.session_lost_at is not None and now - lk.session_lost_at < SESSION_LOST_SHOWN_S
        )
        return {
            "broker": {
                "ok": broker_ok,
                "url": f"mqtt://{self.mqtt_host}:{self.mqtt_port}",
                "embedded": self.broker is not None,
                **(
                    {
                        "session_lost": {
                            "at": rfc3339(int(lost[-1][0] * 1000), self.tz),
                            "clients": [client for _, client in lost],
                            "advice": SESSION_LOST_ADVICE,
                        }
                    }
                    if lost
                    else {}
                ),
                **(
                    {}
                    if broker_ok
                    else {
                        "error": "; ".join(
                            f"{lk.client_id}: {lk.last_error}"
                            for lk in self.links
                            if not lk.connected.is_set()
                        )
                    }
                ),
            },
            "database": {
                "ok": db_ok,
                "dialect": self.engine.dialect.name,
                **({} if db_ok else {"error": db_error}),
                **({"warnings": self.db_warnings} if self.db_warnings else {}),
            },
            "timeseries": (
                self.telemetry.status()
                if self.telemetry is not None
                else {"ok": None, "state": "not_configured", "configured": False}
            ),
            "lanes": self.settings.lanes,  # what this process takes (SHOUWANG_LANES)
            "ingest_queue": self.ingest.depth(),
            "checked_in_ms": round((time.monotonic() - started) * 1000, 1),
        }
