"""Prometheus metrics of one gateway (its own registry, so several gateways can live in a test)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from devices.parse import Reason

# The ingest worker's own quarantine reasons (gateway/ingest.py), beside the parser's: a message
# that broke processing, and one the database refused to store (it said no to what the message
# holds, while it took the others).
INTERNAL_ERROR = "internal_error"
UNSTORABLE = "unstorable"
FALLBACK_OUTCOMES = ("opened", "joined", "repeat", "failed")


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # *_created series only double what Prometheus shows
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "shouwang_messages", "MQTT messages received, by channel", ["channel"], registry=r
        )
        self.repeated = Counter(
            "shouwang_repeated_messages",
            "messages dropped as repeats (same source, channel, id)",
            registry=r,
        )
        self.quarantined = Counter(
            "shouwang_quarantined_messages",
            "messages refused and kept in the quarantine, by reason",
            ["reason"],
            registry=r,
        )
        for reason in (*Reason, INTERNAL_ERROR, UNSTORABLE):  # each shows at 0 before it happens
            self.quarantined.labels(reason)
        # An alarm event quarantined by the worker (internal_error, unstorable) still pages
        # (gateway/ingest.py `_fallback`); `failed` is one that could not: nobody paged.
        self.quarantine_fallback = Counter(
            "shouwang_quarantine_fallback",
            "quarantined alarm events the fallback paged, by outcome "
            "(opened, joined, repeat, failed)",
            ["outcome"],
            registry=r,
        )
        for outcome in FALLBACK_OUTCOMES:
            self.quarantine_fallback.labels(outcome)
        self.alerts_opened = Counter(
            "shouwang_alerts_opened", "alerts opened, by kind", ["kind"], registry=r
        )
        self.pages_sent = Counter(
            "shouwang_pages_sent",
            "pages and notices acknowledged by the broker",
            ["type"],
            registry=r,
        )
        self.escalations = Counter("shouwang_escalations", "escalation steps fired", registry=r)
        self.adopted = Counter(
            "shouwang_adopted_messages",
            "messages taken over from the session of a gateway of the group that was gone",
            registry=r,
        )
        self.page_latency = Histogram(
            "shouwang_page_latency_seconds",
            "from the alarm message's arrival to the broker's acknowledgement of its page",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "shouwang_ingest_batch_seconds",
            "time to process and commit one batch of messages",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.gc_full_seconds = Histogram(
            "shouwang_gc_full_pass_seconds",
            "the worker's full garbage collections (gateway/collector.py)",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=r,
        )
        self.db_errors = Counter(
            "shouwang_database_errors", "transactions retried after a database error", registry=r
        )
        self.mqtt_connected = Gauge(
            "shouwang_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.outbox_pending = Gauge(
            "shouwang_outbox_pending",
            "outbox messages not yet acknowledged by the broker",
            registry=r,
        )
        self.queue_depth = Gauge(
            "shouwang_ingest_queue_depth", "messages received, not yet processed", registry=r
        )
        # The telemetry sink to the time-series store (gateway/telemetry.py); all stay at 0
        # when no store is configured.
        self.timeseries_written = Counter(
            "shouwang_timeseries_points_written",
            "points written to the time-series store",
            registry=r,
        )
        self.timeseries_dropped = Counter(
            "shouwang_timeseries_points_dropped",
            "telemetry points dropped: the sink's buffer was full (oldest first) or still held "
            "them when the shutdown flush ran out of time",
            registry=r,
        )
        self.timeseries_rejected = Counter(
            "shouwang_timeseries_points_rejected",
            "points or fields refused as not finite numbers, or refused by the store",
            registry=r,
        )
        self.timeseries_write_errors = Counter(
            "shouwang_timeseries_write_errors",
            "failed writes to the time-series store (retried)",
            registry=r,
        )
        self.timeseries_buffered = Gauge(
            "shouwang_timeseries_buffered_points",
            "telemetry points held for the time-series store, not yet written",
            registry=r,
        )
        self.timeseries_state = Gauge(
            "shouwang_timeseries_state",
            "1 for the sink's current state (ok, degraded, down)",
            ["state"],
            registry=r,
        )
