"""Faults during load (issue 8): the broker restarted, the gateway killed (SIGKILL) and started
again, PostgreSQL restarted, the time-series store down for a minute, all while devices report
and call buttons are pressed. It prints figures; it is not a test.

    .venv/bin/python -m tests.bench.bench_faults                  # about 3 minutes
    .venv/bin/python -m tests.bench.bench_faults --devices 30000 --rate 1000 --ts-down-s 120

On a private Mosquitto, a private PostgreSQL (tests/support/pgserver.py, so that it can be
restarted) and a private VictoriaMetrics standing in for InfluxDB, with the gateway in its own
process: publisher processes send telemetry at `--rate` msg/s (QoS 1) the whole time, and a
press process presses a call button of another home every `--press-every` s and times each
page. After `--calm-s` of calm, each fault in turn, each followed by calm again:

1. broker: Mosquitto stopped for `--down-s`, then started (persistence on);
2. gateway: SIGKILL, started again after `--down-s` (its persistent sessions wait at the broker);
3. database: PostgreSQL stopped for `--down-s` (fast shutdown), then started;
4. time-series store: VictoriaMetrics stopped for `--ts-down-s`, then started.

For each it prints the worst page latency of the presses made from the fault until the calm
after it, and how long after the fault's end the gateway had caught up (nothing waiting in its
queue). At the end: every telemetry message sent must be committed, every press paged, nothing
quarantined (else exit code 1); and how many readings reached the time-series store (the sink
is best effort by design: what a killed gateway held in memory is in the rollups, not in the
store).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine

from tests.bench.bench_alarm_path import (
    CTX,
    BenchError,
    GatewayChild,
    Workers,
    count_quarantined,
    devices_of,
    latency_worker,
    percentile,
    seed,
    wait_committed,
)
from tests.support.broker import PrivateMosquitto
from tests.support.pgserver import PrivatePostgres
from tests.support.victoria import PrivateVictoria

CAUGHT_UP = 50  # messages waiting in the gateway: caught up


class Timeline:
    """Samples the gateway's queue while the load runs, to tell when it has caught up."""

    def __init__(self, gw: GatewayChild) -> None:
        self.gw = gw
        self.samples: list[tuple[float, float]] = []  # (monotonic, queue; nan: gateway down)

    def sample(self) -> None:
        try:
            q = float(self.gw.stats()["queue"])
        except (BenchError, OSError, ValueError, AssertionError):
            q = float("nan")
        self.samples.append((time.monotonic(), q))

    def caught_up_after(self, t: float) -> float:
        """Seconds from `t` until the queue was first seen small again (nan: never)."""
        for at, q in self.samples:
            if at >= t and q == q and q <= CAUGHT_UP:
                return at - t
        return float("nan")


def run(args: argparse.Namespace) -> int:
    homes = args.devices // 3
    devices = devices_of(homes)
    base = "faults" + uuid.uuid4().hex[:8]
    broker, pg, vm = PrivateMosquitto(), PrivatePostgres(), PrivateVictoria()
    errors: list[str] = []
    gw: GatewayChild | None = None
    try:
        broker.start()
        pg.start()
        vm.start()
        url = pg.url
        seed(url, homes)
        poll = create_engine(url, pool_pre_ping=True)
        workdir = Path(pg.dir)
        fields = {
            "mqtt_url": broker.url,
            "database_url": url,
            "mqtt_base": base,
            "mqtt_client_id": f"gw-{base}",
            "http_port": 0,
            "log_level": "WARNING",
            "influx_url": vm.url,
            "influx_token": "bench",
            "influx_org": "bench",
            "influx_bucket": "bench",
        }
        gw = GatewayChild(fields, workdir / "gateway.log")
        gw.start()
        errors += load_with_faults(args, gw, broker, pg, vm, poll, base, devices, fields, workdir)
        bad = count_quarantined(poll)
        if bad:
            errors.append(f"{bad} messages were quarantined")
        poll.dispose()
    except BenchError as exc:
        errors.append(str(exc))
    finally:
        if gw is not None:
            with contextlib.suppress(Exception):
                gw.stop()
        vm.close()
        broker.close()
        pg.stop()
    for e in errors:
        print(f"ERROR: {e}")
    return 1 if errors else 0


def load_with_faults(
    args: argparse.Namespace,
    gw: GatewayChild,
    broker: PrivateMosquitto,
    pg: PrivatePostgres,
    vm: PrivateVictoria,
    poll: Any,
    base: str,
    devices: list[tuple[str, str]],
    fields: dict[str, Any],
    workdir: Path,
) -> list[str]:
    errors: list[str] = []
    faults = ["broker", "gateway", "database", "timeseries"]
    downs = {f: args.down_s for f in faults} | {"timeseries": args.ts_down_s}
    total_s = args.calm_s * (len(faults) + 1) + sum(downs.values()) + 10
    presses = list(range(1, int(total_s / args.press_every) + 1))
    warmup = [len(presses) + k for k in (1, 2, 3)]
    if warmup[-1] > args.devices // 3:
        raise BenchError("more presses than homes: raise --devices")
    pressed = {f"cb-{i}" for i in presses + warmup}
    sensors = [d for d in devices if d[0] not in pressed and d[1] != "call_button"]
    workers = Workers()
    go, lat_go, stop = CTX.Event(), CTX.Event(), CTX.Event()
    tags = workers.start_background(
        "pub", args.publishers, broker.port, base, sensors, args.rate, total_s + 60, go, stop
    )
    workers.start(
        "presses", latency_worker, broker.port, base, presses, warmup, args.press_every, lat_go
    )
    timeline = Timeline(gw)
    windows: dict[str, tuple[float, float, float]] = {}  # fault -> (start, end, calm end)
    try:
        workers.wait_ready([*tags, "presses"], 60)
        go.set()
        time.sleep(1.0)
        lat_go.set()

        def calm(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                timeline.sample()
                time.sleep(0.5)

        calm(args.calm_s)
        for fault in faults:
            start = time.monotonic()
            print(f"fault: {fault} down for {downs[fault]:g} s", flush=True)
            if fault == "broker":
                broker.restart(down_s=downs[fault])
            elif fault == "gateway":
                assert gw.proc is not None
                gw.proc.kill()  # SIGKILL: no shutdown code runs
                gw.proc.wait(10)
                with contextlib.suppress(Exception):
                    gw.stop()  # only closes its pipes now
                calm(downs[fault])
                gw.start()
            elif fault == "database":
                pg._ctl("-m", "fast", "stop")
                calm(downs[fault])
                pg._ctl("start")
            else:
                vm.stop()
                calm(downs[fault])
                vm.start()
            end = time.monotonic()
            calm(args.calm_s)
            windows[fault] = (start, end, time.monotonic())
        stop.set()
        workers.wait_done([*tags, "presses"], 120)
    finally:
        stop.set()
        workers.close()
    sent = sum(workers.figures[t]["sent"] for t in tags)
    _, n = wait_committed(poll, "telemetry", sent, [], 120 + sent / 500)
    if n != sent:
        errors.append(f"telemetry: {n:,} of {sent:,} committed")
    lat = workers.figures["presses"]
    if lat["missing"]:
        errors.append(f"{len(lat['missing'])} presses got no page: {lat['missing'][:10]}")
    if lat["wrong"]:
        errors.append(f"{len(lat['wrong'])} pages did not match their press")
    ms = lat["latencies_ms"]
    paged = [i for i in presses if i not in set(lat["missing"])]
    at = dict(zip(presses, lat["sent_mono"], strict=True))
    print(
        f"\nload: {sent:,} telemetry messages at {args.rate:,.0f} msg/s from {len(sensors):,} "
        f"sensors, {len(presses)} presses ({len(ms)} paged); all {n:,} committed: "
        f"{'yes' if n == sent else 'NO'}"
    )
    print(f"calm presses: p50 {percentile(ms, 50):.1f} ms overall\n")
    print("fault       down   presses in window  worst page latency  caught up after end")
    for fault, (start, end, calm_end) in windows.items():
        inside = [
            lat_ms for i, lat_ms in zip(paged, ms, strict=True) if start - 0.5 <= at[i] <= calm_end
        ]
        worst = max(inside) / 1000 if inside else float("nan")
        print(
            f"{fault:<10}  {downs[fault]:>4.0f} s  {len(inside):>17}  {worst:>16.2f} s  "
            f"{timeline.caught_up_after(end):>17.1f} s"
        )
    # The time-series store: points that reached it (best effort; see the docstring), once the
    # sink has written what it holds (its retries back off to 30 s while the store is down).
    deadline = time.monotonic() + 60
    st = gw.stats()
    while st["ts_buffered"] > 0 and time.monotonic() < deadline:
        time.sleep(1.0)
        st = gw.stats()
    print(
        f"\ntime-series sink (the gateway started after the kill): {st['ts_written']:,.0f} "
        f"points written, {st['ts_dropped']:,.0f} dropped, {st['ts_buffered']:,.0f} still held"
    )
    with contextlib.suppress(httpx.HTTPError):
        series = vm.export('{__name__!=""}')
        points = sum(len(s.get("values", [])) for s in series)
        # Gas readings carry 2 fields, water readings 3, and the sensors alternate.
        print(
            f"time-series store: {points:,} points stored of about {sent * 2.5:,.0f} sent; "
            "the difference is what the killed gateway held in memory (the rollups have it)"
        )
    return errors


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_faults",
        description="Faults during load: broker, gateway, database and time-series store.",
    )
    p.add_argument("--devices", type=int, default=3_000)
    p.add_argument("--rate", type=float, default=500, help="telemetry msg/s, in all")
    p.add_argument("--calm-s", type=float, default=15.0, help="calm before and after each fault")
    p.add_argument("--down-s", type=float, default=5.0, help="broker, gateway, database down")
    p.add_argument("--ts-down-s", type=float, default=60.0, help="time-series store down")
    p.add_argument("--press-every", type=float, default=0.5)
    p.add_argument("--publishers", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"faults benchmark: {args.devices:,} devices, {args.rate:,.0f} msg/s, a press every "
        f"{args.press_every:g} s; {os.cpu_count()} CPUs",
        flush=True,
    )
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
