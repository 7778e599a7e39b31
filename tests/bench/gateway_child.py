"""A gateway in a process of its own, for the benchmark (so load generators do not share its GIL).

    python -m tests.bench.gateway_child '<Settings fields as JSON>'

Builds `gateway.app.Gateway(Settings(_env_file=None, **fields))`, starts it, waits until the
broker has accepted it and prints `READY` on stdout. Then it answers commands read from stdin,
one a line: `trace` prints what the batches of events that waited over 10 ms waited for
(`_waited_for`); `stats` prints one JSON line of counters (see `stats()`; with the duration of each
full garbage collection, and each page's latency inside the gateway: from its alarm's arrival
to the broker's acknowledgement of the page, as `shouwang_page_latency_seconds` observes it);
`stop` (or end of input, i.e. the benchmark went away, or SIGTERM)
stops the gateway with `gw.stop()` and exits 0.
It serves no HTTP (gateway/api.py is not used).
"""

from __future__ import annotations

import gc
import json
import logging
import resource
import signal
import sys
import time
from array import array
from collections.abc import Iterator
from types import FrameType
from typing import Any

from gateway.app import Gateway
from gateway.settings import Settings


class _Stop(Exception):
    """Raised by the SIGTERM handler to leave the command loop."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


_full_gc: dict[str, Any] = {"started": 0.0, "ms": []}
_young: dict[str, float] = {"started": 0.0}


def _watch_gc(phase: str, info: dict[str, Any]) -> None:
    """Times the full collections (gateway/collector.py), the interpreter's or the worker's, and
    records the young ones among the worker's jobs (they stop every thread)."""
    if info["generation"] != 2:
        if phase == "start":
            _young["started"] = time.monotonic()
        else:
            _span("young collections", _young["started"], time.monotonic())
        return
    if phase == "start":
        _full_gc["started"] = time.perf_counter()
    elif len(_full_gc["ms"]) < 10_000:
        _full_gc["ms"].append((time.perf_counter() - _full_gc["started"]) * 1000)
        _span("full collections", _full_gc["started"], time.perf_counter())


_pages_ms: list[float] = []


def _record_pages(gw: Gateway) -> None:
    """Keep each value `shouwang_page_latency_seconds` observes (the histogram has buckets only)."""
    hist = gw.metrics.page_latency
    observe = hist.observe

    def recording(amount: float, *args: Any, **kwargs: Any) -> None:
        if len(_pages_ms) < 100_000:
            _pages_ms.append(amount * 1000)
        observe(amount, *args, **kwargs)

    hist.observe = recording  # type: ignore[method-assign]


_alarm_batches: list[tuple[float, float]] = []
_waits: list[tuple[float, float]] = []  # (arrival, start) of each batch of events, monotonic
# What the worker did, as (what, start, end) triples of doubles in one array (24 bytes a job: a
# list of tuples weighed some 40 MB of the gateway's RSS over 10 minutes), `what` an index into
# _span_names.
_span_data = array("d")
_span_names: list[str] = []


def _span(name: str, start: float, end: float) -> None:
    if len(_span_data) >= 3 * 2_000_000:
        return
    if name not in _span_names:
        _span_names.append(name)
    _span_data.extend((_span_names.index(name), start, end))


def _spans() -> Iterator[tuple[str, float, float]]:
    for i in range(0, len(_span_data), 3):
        yield _span_names[int(_span_data[i])], _span_data[i + 1], _span_data[i + 2]


_SPANS = (
    "_housekeeping",
    "_rules_tick",
    "_flush_devices",
    "_write_seen",
    "_heard_later",
    "_prune",
)


def _record_spans(gw: Gateway) -> None:
    """Time the worker's jobs (telemetry batches and housekeeping), to tell what a press that
    waited was waiting for (`_waited_for`)."""
    w = gw.ingest

    def timed(name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                _span(name, t0, time.monotonic())

        return run

    for name in _SPANS:
        setattr(w, name, timed(name, getattr(w, name)))
    process = w._process

    def process_timed(conn: Any, batch: list[Any]) -> Any:
        name = "telemetry: to the commit" if batch[0].lane == "telemetry" else "alarms: to"
        return timed(name, process)(conn, batch)

    w._process = process_timed  # type: ignore[method-assign]
    handle, done = w._handle, w._done

    def handle_timed(batch: list[Any]) -> None:
        name = "telemetry: all" if batch[0].lane == "telemetry" else "alarms: all"
        timed(name, handle)(batch)

    def done_timed(batch: list[Any], result: Any, started: float) -> None:
        name = "telemetry: after the commit" if batch[0].lane == "telemetry" else "alarms: after"
        timed(name, done)(batch, result, started)

    w._handle = handle_timed  # type: ignore[method-assign]
    w._done = done_timed  # type: ignore[method-assign]


def _waited_for(over_ms: float = 10.0) -> dict[str, Any]:
    """For the batches of events that waited over `over_ms` for the worker: how many, their
    waits in all and how much of them each job of the worker's covered (ms; a job within another,
    such as `_write_seen` within `_housekeeping`, counts in both); and every job's count and
    p50 / p99 / max duration."""
    cover: dict[str, float] = {}
    n = 0
    total = 0.0
    for arrival, start in _waits:
        if (start - arrival) * 1000 <= over_ms:
            continue
        n += 1
        total += (start - arrival) * 1000
        for name, a, b in _spans():
            if b > arrival and a < start:
                cover[name] = cover.get(name, 0.0) + (min(b, start) - max(a, arrival)) * 1000
    durations: dict[str, list[float]] = {}
    for name, a, b in _spans():
        durations.setdefault(name, []).append((b - a) * 1000)
    jobs = {}
    for name, ds in durations.items():
        ds.sort()
        jobs[name] = [len(ds), ds[len(ds) // 2], ds[min(len(ds) - 1, len(ds) * 99 // 100)], ds[-1]]
    return {"n": n, "total_ms": total, "cover_ms": cover, "jobs": jobs}


def _record_alarm_batches(gw: Gateway) -> None:
    """For each batch of events: how long its first message waited for the worker (arrival to
    the batch's start) and how long the batch took (to its commit), in ms."""
    done = gw.ingest._done

    def recording(batch: list[Any], result: Any, started: float) -> None:
        # perf_counter and monotonic are the same clock on Linux (CLOCK_MONOTONIC)
        first = batch[0]
        if first.lane != "telemetry" and "/events" in first.topic and len(_alarm_batches) < 1e5:
            wait = (started - first.received_mono) * 1000
            _alarm_batches.append((wait, (time.perf_counter() - started) * 1000))
            _waits.append((first.received_mono, started))
        done(batch, result, started)

    gw.ingest._done = recording  # type: ignore[method-assign]


def stats(gw: Gateway) -> dict[str, Any]:
    """Counters the benchmark reads between phases (all cumulative since the start)."""
    reg = gw.metrics.registry

    def value(name: str, labels: dict[str, str] | None = None) -> float:
        return reg.get_sample_value(name, labels or {}) or 0.0

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "mono": time.monotonic(),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "messages": {
            ch: value("shouwang_messages_total", {"channel": ch})
            for ch in ("events", "telemetry", "status", "replies")
        },
        "batches": value("shouwang_ingest_batch_seconds_count"),
        "batch_s": value("shouwang_ingest_batch_seconds_sum"),
        "pages": value("shouwang_page_latency_seconds_count"),
        "page_s": value("shouwang_page_latency_seconds_sum"),
        "db_errors": value("shouwang_database_errors_total"),
        "ts_written": value("shouwang_timeseries_points_written_total"),
        "ts_dropped": value("shouwang_timeseries_points_dropped_total"),
        "ts_buffered": value("shouwang_timeseries_buffered_points"),
        "queue": gw.ingest.depth(),
        "full_gc_ms": _full_gc["ms"],
        "pages_ms": _pages_ms,
        "alarm_batches": _alarm_batches,
    }


def main(argv: list[str]) -> int:
    fields = json.loads(argv[1])
    logging.basicConfig(
        level=fields.get("log_level", "WARNING"),
        format="%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s",
    )
    gc.callbacks.append(_watch_gc)
    gw = Gateway(Settings(_env_file=None, **fields))  # type: ignore[call-arg]
    _record_pages(gw)
    _record_alarm_batches(gw)
    _record_spans(gw)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        gw.start(wait_connected=10)
        if not gw.mqtt_connected():
            print(f"NOT CONNECTED {gw.link.last_error}", flush=True)
            return 2
        print("READY", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                print(json.dumps(stats(gw)), flush=True)
            elif command == "trace":  # at the end: it walks every job recorded
                print(json.dumps(_waited_for()), flush=True)
            elif command == "stop":
                break
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut stop()
        gw.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
