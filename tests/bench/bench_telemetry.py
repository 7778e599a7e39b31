"""Benchmark: points/s written by the telemetry sink (gateway/telemetry.py) to a private
VictoriaMetrics over the InfluxDB v2 write protocol, all on 127.0.0.1.

    .venv/bin/python -m tests.bench.bench_telemetry [--points 200000] [--runs 3] [--batch 5000]

Each run: `--points` water-meter readings (flow_l and total_l, 1,000 devices, distinct times)
are offered to a sink whose buffer holds them all, then the sink is started and timed until it
has written every one (one run is bounded by --limit seconds). Also timed: `offer()` itself, the
only part the ingest worker pays. The first run's points are read back from the server and
counted. Prints each run and the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from typing import Any

from gateway.telemetry import Reading, TelemetrySink
from tests.support.victoria import PrivateVictoria, victoria_bin

DEVICES = 1_000


def readings(n: int, t0: int) -> list[Reading]:
    return [
        Reading(
            f"w-{i % DEVICES}",
            "water_sensor",
            f"e-{i % DEVICES}",
            t0 + i,  # distinct per device: every sample is kept
            {"flow_l": float(i % 7), "total_l": 1000.0 + i},
        )
        for i in range(n)
    ]


def one_run(vm: PrivateVictoria, n: int, batch: int, limit_s: float) -> tuple[float, float, str]:
    bucket = "bench" + uuid.uuid4().hex[:8]  # a tag of its own: this run's series
    sink = TelemetrySink(vm.url, bucket, "shouwang", buffer_points=n, batch_points=batch)
    data = readings(n, int(time.time() * 1000) - 3_600_000)
    started = time.perf_counter()
    for i in range(0, n, 500):  # as the ingest worker does: one batch of messages at a time
        sink.offer(data[i : i + 500])
    offer_ns = (time.perf_counter() - started) / n * 1e9
    started = time.perf_counter()
    sink.start()
    deadline = time.monotonic() + limit_s
    while sink.health.written + sink.health.rejected < n:
        if time.monotonic() > deadline:
            sink.stop(0)
            raise SystemExit(f"run did not finish in {limit_s}s: {sink.status()}")
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    sink.stop()
    status = sink.status()
    if status["written"] != n or status["dropped"] or status["rejected"]:
        raise SystemExit(f"not every point was written: {status}")
    return n / elapsed, offer_ns, bucket


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--limit", type=float, default=120.0, help="seconds one run may take")
    args = ap.parse_args(argv)
    if not 1 <= args.runs <= 10 or not 1_000 <= args.points <= 2_000_000:
        raise SystemExit("--runs is 1..10 and --points 1,000..2,000,000")
    if victoria_bin() is None:
        raise SystemExit("victoria-metrics is not installed (apt-get install victoria-metrics)")
    vm = PrivateVictoria()
    vm.start()
    try:
        vm.speaks_influx_v2()
        rates, offers = [], []
        for run in range(args.runs):
            rate, offer_ns, bucket = one_run(vm, args.points, args.batch, args.limit)
            rates.append(rate)
            offers.append(offer_ns)
            print(
                f"run {run + 1}: {rate:,.0f} points/s written "
                f"({args.points:,} points of 2 fields, batches of {args.batch:,}); "
                f"offer() {offer_ns:,.0f} ns per point",
                flush=True,
            )
            if run == 0:  # read one device's series back: every sample is there
                per_device = args.points // DEVICES

                def complete(series: list[dict[str, Any]], k: int = per_device) -> bool:
                    return sum(len(x["values"]) for x in series) == k

                got = vm.wait_export(
                    f'water_sensor_total_l{{bucket="{bucket}",device="w-0"}}', complete, timeout=30
                )
                print(f"  read back: {sum(len(x['values']) for x in got)} samples of w-0, as sent")
        print(
            f"median of {args.runs}: {statistics.median(rates):,.0f} points/s; "
            f"offer() {statistics.median(offers):,.0f} ns per point "
            f"(VictoriaMetrics on 127.0.0.1, {time.strftime('%Y-%m-%d')})"
        )
    finally:
        vm.close()


if __name__ == "__main__":
    main(sys.argv[1:])
