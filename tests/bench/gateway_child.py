"""A gateway in a process of its own, for the benchmark (so load generators do not share its GIL).

    python -m tests.bench.gateway_child '<Settings fields as JSON>'

Builds `gateway.app.Gateway(Settings(_env_file=None, **fields))`, starts it, waits until the
broker has accepted it and prints `READY` on stdout. Then it answers commands read from stdin,
one a line: `stats` prints one JSON line of counters (see `stats()`; with the duration of each
full garbage collection); `stop` (or end of input, i.e. the benchmark went away, or SIGTERM)
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
from types import FrameType
from typing import Any

from gateway.app import Gateway
from gateway.settings import Settings


class _Stop(Exception):
    """Raised by the SIGTERM handler to leave the command loop."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


_full_gc: dict[str, Any] = {"started": 0.0, "ms": []}


def _watch_gc(phase: str, info: dict[str, Any]) -> None:
    """Times the full collections (gateway/collector.py), the interpreter's or the worker's."""
    if info["generation"] != 2:
        return
    if phase == "start":
        _full_gc["started"] = time.perf_counter()
    elif len(_full_gc["ms"]) < 10_000:
        _full_gc["ms"].append((time.perf_counter() - _full_gc["started"]) * 1000)


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
    }


def main(argv: list[str]) -> int:
    fields = json.loads(argv[1])
    logging.basicConfig(
        level=fields.get("log_level", "WARNING"),
        format="%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s",
    )
    gc.callbacks.append(_watch_gc)
    gw = Gateway(Settings(_env_file=None, **fields))  # type: ignore[call-arg]
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
