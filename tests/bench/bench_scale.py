"""Scale benchmark: a simulated district of 100,000 devices on one gateway process. It prints
figures; it is not a test.

    .venv/bin/python -m tests.bench.bench_scale                      # PostgreSQL, 10 minutes
    .venv/bin/python -m tests.bench.bench_scale --db sqlite --minutes 2
    .venv/bin/python -m tests.bench.bench_scale --devices 30000 --rate 1000 --minutes 1  # a smoke
    .venv/bin/python -m tests.bench.bench_scale --minutes 3 --split  # a process per lane
    .venv/bin/python -m tests.bench.bench_scale --private-pg  # PostgreSQL as shipped (below)

One run, on a private Mosquitto and a fresh database (as tests/bench/bench_alarm_path.py):

1. Seeds `--devices` devices, three to a home (call button, gas sensor, water sensor), with an
   elder, a watcher with a pager and a one-step plan per home.
2. Starts the gateway in its own process and notes its RSS with every device registered
   (`--split`: two, SHOUWANG_LANES=telemetry and SHOUWANG_LANES=alarm; RSS and CPU summed).
3. For `--minutes`, publisher processes send every device's report in turn at `--rate` msg/s in
   all (QoS 1; 100,000 devices at 1,000 msg/s: one report each per 100 s, the heartbeat,
   water and gas readings of a real district), while a latency process presses a call button
   of another home every `--press-every` s and times its page.
4. Every 5 s it samples the gateway's queue (messages received and not yet committed: the
   ingest lag), its RSS, and the database's size.

`--private-pg` runs a PostgreSQL server of the benchmark's own (tests/support/pgserver.py) with
the package's defaults, autovacuum on as on a managed server; this machine's server has
autovacuum off, so there no table is ever vacuumed or analyzed during a run.

It prints the page latency (p50, p99, max) during the load and how it came about (inside the
gateway: from the press's arrival to the broker's acknowledgement of its page; of that, the
press's wait for the worker and its batch to the commit; for the presses that waited over 10 ms,
which of the worker's jobs they waited for: tests/bench/gateway_child.py times them), where the
CPU went (the gateway, the broker, the load generators, PostgreSQL with `--private-pg`, the rest
of the machine), the ingest lag (the most messages waiting, and the same in seconds of load),
RSS after start / at most / at the end, the database's growth, extrapolated to a day, and the
full garbage collections of each gateway process; with `--timeline`, the duration of each kind
of the worker's jobs, the page latency per minute, and the ingest lag, telemetry batches a
second and their mean duration for every 5 s (how a slowdown shows: in the run that found
PostgreSQL's JIT compiling the rule-state probe, batches went from 20 to 140 ms at once and
stayed there). At the end every message sent must be committed and none quarantined; otherwise
the exit code is 1. Targets (issue 8): page latency p99 <= 20 ms at 1,000 msg/s of background;
RSS <= 300 MB with 100,000 registered devices.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select, text

from gateway import tables as T
from tests.bench.bench_alarm_path import (
    CTX,
    BenchError,
    GatewayChild,
    Workers,
    count_quarantined,
    cpu_seconds,
    devices_of,
    fresh_database,
    latency_worker,
    machine_busy,
    percentile,
    seed,
    wait_committed,
)
from tests.support.broker import PrivateMosquitto
from tests.support.pgserver import PrivatePostgres

SAMPLE_S = 5.0
RSS_TARGET_MB = 300
P99_TARGET_MS = 20


def pg_cpu_seconds(pg: PrivatePostgres | None) -> float:
    """CPU time of a private PostgreSQL: its postmaster, its exited children (cutime, cstime)
    and the live ones; NaN for the machine's own server (not ours to look into)."""
    if pg is None:
        return float("nan")
    try:
        pm = int((pg.data / "postmaster.pid").read_text().split()[0])
        fields = Path(f"/proc/{pm}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return float("nan")
    total = cpu_seconds(pm) + (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pm:
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (VmRSS, from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def db_bytes(engine: Engine, url: str) -> int:
    """The database's size on disk: pg_database_size, or the SQLite file with its WAL."""
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with engine.connect() as c:
        return int(c.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


class Gateways:
    """One gateway process, or (`--split`) a telemetry-lane and an alarm-lane one
    (SHOUWANG_LANES), seen as one: RSS and CPU summed, queues and batches added up."""

    def __init__(self, children: list[GatewayChild]) -> None:
        self.children = children

    def start(self, timeout: float) -> None:
        for child in self.children:
            child.start(timeout=timeout)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()

    def rss(self) -> float:
        return sum(rss_mb(c.pid) for c in self.children)

    def rss_each(self) -> str:
        return ", ".join(
            f"{c.fields.get('lanes', 'all')} {rss_mb(c.pid):.0f} MB" for c in self.children
        )

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(c.pid) for c in self.children)

    def stats(self) -> dict[str, float]:
        each = [c.stats() for c in self.children]
        return {k: float(sum(st[k] for st in each)) for k in ("queue", "batches", "batch_s")}


def run(args: argparse.Namespace) -> int:
    homes = args.devices // 3
    devices = devices_of(homes)
    presses_n = int(args.minutes * 60 / args.press_every)
    # Presses go to homes of their own (pg<i> receives only its page); the rest report.
    press_homes = list(range(1, presses_n + 1))
    warmup = list(range(presses_n + 1, presses_n + 4))
    base = "scale" + uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="shouwang-scale-"))
    broker = PrivateMosquitto()
    pg = PrivatePostgres() if args.private_pg else None
    errors: list[str] = []
    try:
        broker.start()
        if pg is not None:
            pg.start()
            print(f"a private PostgreSQL on 127.0.0.1:{pg.port}, the package's defaults")
        with fresh_database(args.db, workdir, pg.url if pg else None) as url:
            t0 = time.monotonic()
            seed(url, homes)
            print(
                f"seeded {len(devices):,} devices in {homes:,} homes "
                f"({time.monotonic() - t0:.0f} s)"
            )
            poll = create_engine(url)
            fields = {
                "mqtt_url": broker.url,
                "database_url": url,
                "mqtt_base": base,
                "mqtt_client_id": f"gw-{base}",
                "http_port": 0,
                "log_level": "WARNING",
            }
            gw = Gateways(
                [
                    GatewayChild(
                        {**fields, "lanes": lane, "mqtt_client_id": f"gw-{base}-{lane}"},
                        workdir / f"gateway-{lane}.log",
                    )
                    for lane in ("telemetry", "alarm")
                ]
                if args.split
                else [GatewayChild(fields, workdir / "gateway.log")]
            )
            try:
                gw.start(timeout=120)
                rss_start = gw.rss()
                size0 = db_bytes(poll, url)
                print(
                    f"gateway up: RSS {rss_start:.0f} MB with {len(devices):,} devices registered"
                    + (f" ({gw.rss_each()})" if args.split else "")
                )
                errors += measure(
                    args, gw, broker, pg, poll, url, base, devices, press_homes, warmup
                )
                bad = count_quarantined(poll)
                if bad:
                    errors.append(f"{bad} messages were quarantined")
                print(
                    f"database: {db_bytes(poll, url) / 1e6:,.0f} MB at the end "
                    f"({size0 / 1e6:,.0f} MB seeded)"
                )
            finally:
                gw.stop()
                poll.dispose()
                for child in gw.children:
                    if "Traceback" in child.tail(400):
                        print(f"gateway log (last lines):\n{child.tail(20)}")
    except BenchError as exc:
        errors.append(str(exc))
    finally:
        broker.close()
        if pg is not None:
            pg.stop()
    for e in errors:
        print(f"ERROR: {e}")
    return 1 if errors else 0


def measure(
    args: argparse.Namespace,
    gw: Gateways,
    broker: PrivateMosquitto,
    pg: PrivatePostgres | None,
    poll: Engine,
    url: str,
    base: str,
    devices: list[tuple[str, str]],
    press_homes: list[int],
    warmup: list[int],
) -> list[str]:
    errors: list[str] = []
    seconds = args.minutes * 60
    pressed = {f"cb-{i}" for i in press_homes + warmup}
    reporters = [d for d in devices if d[0] not in pressed]
    workers = Workers()
    go, lat_go, stop = CTX.Event(), CTX.Event(), CTX.Event()
    tags = workers.start_background(
        "pub", args.publishers, broker.port, base, reporters, args.rate, seconds, go, stop
    )
    workers.start(
        "latency", latency_worker, broker.port, base, press_homes, warmup, args.press_every, lat_go
    )
    samples: list[dict[str, float]] = []
    try:
        workers.wait_ready([*tags, "latency"], 60)
        size0 = db_bytes(poll, url)
        load_pids = [p.pid for p in workers.procs.values()]
        assert broker.proc is not None
        broker_pid = broker.proc.pid
        cpu0 = (
            gw.cpu_seconds(),
            cpu_seconds(broker_pid),
            sum(cpu_seconds(p) for p in load_pids),
            pg_cpu_seconds(pg),
            machine_busy(),
        )
        start = time.monotonic()
        go.set()
        time.sleep(2.0)
        lat_go.set()
        next_sample = time.monotonic()
        while "latency" not in workers.figures and time.monotonic() - start < seconds + 60:
            if time.monotonic() >= next_sample:
                st = gw.stats()
                samples.append(
                    {
                        "t": time.monotonic() - start,
                        "queue": float(st["queue"]),
                        "rss": gw.rss(),
                        "db": float(db_bytes(poll, url)),
                        "batches": float(st["batches"]),
                        "batch_s": float(st["batch_s"]),
                    }
                )
                next_sample += SAMPLE_S
            try:
                workers._take(0.5)
            except BenchError as exc:
                if "silent" not in str(exc):
                    raise
        # before the stop: the load generators report, then exit, and take their CPU along
        wall = time.monotonic() - start
        used = [
            gw.cpu_seconds() - cpu0[0],
            cpu_seconds(broker_pid) - cpu0[1],
            sum(cpu_seconds(p) for p in load_pids) - cpu0[2],
            pg_cpu_seconds(pg) - cpu0[3],
        ]
        busy, total = machine_busy()
        machine = (busy - cpu0[4][0]) / (total - cpu0[4][1]) * (os.cpu_count() or 1)
        stop.set()
        each = [(c, {**c.stats(), "waited_for": c.trace()}) for c in gw.children]
        full_gc = [(c, st["full_gc_ms"]) for c, st in each]
        # in the order observed; the warm-up presses' pages come first
        inside = [x for _, st in each for x in st["pages_ms"]][len(warmup) :]
        alarm_batches = [x for _, st in each for x in st["alarm_batches"]][len(warmup) :]
        workers.wait_done([*tags, "latency"], 120)
        cpu = used[0] / wall * 100
    finally:
        stop.set()
        workers.close()
    sent = sum(workers.figures[t]["sent"] for t in tags)
    rate = sum(workers.figures[t]["sent"] / workers.figures[t]["seconds"] for t in tags)
    drain0 = time.monotonic()
    _, n = wait_committed(poll, "telemetry", sent, [], 120 + sent / 500)
    drain = time.monotonic() - drain0
    if n != sent:
        errors.append(f"telemetry: {n:,} of {sent:,} committed")
    lat = workers.figures["latency"]
    ms = lat["latencies_ms"]
    if lat["missing"]:
        errors.append(f"{len(lat['missing'])} presses got no page")
    if lat["wrong"]:
        errors.append(f"{len(lat['wrong'])} pages did not match their press")
    grown = db_bytes(poll, url) - size0
    queue = [s["queue"] for s in samples] or [0.0]
    rss = [s["rss"] for s in samples] or [float("nan")]
    print(
        f"load: {sent:,} reports in {args.minutes:g} min = {rate:,.0f} msg/s from "
        f"{len(reporters):,} devices (each every {len(reporters) / max(rate, 1):.0f} s); "
        f"gateway {cpu:.0f}% of one core"
    )
    cores = [u / wall for u in used]
    known = sum(c for c in cores if c == c)
    print(
        f"CPU, in cores of {os.cpu_count()}: the machine {machine:.2f} busy; gateway "
        f"{cores[0]:.2f}, broker {cores[1]:.2f}, load generators {cores[2]:.2f}, "
        + (f"PostgreSQL {cores[3]:.2f}, " if pg is not None else "")
        + f"the rest {machine - known:.2f}"
        + ("" if pg is not None else " (PostgreSQL among it)")
    )
    print(
        f"page latency: {len(ms)} presses, p50 {percentile(ms, 50):.2f} ms, "
        f"p99 {percentile(ms, 99):.2f} ms, max {max(ms) if ms else float('nan'):.2f} ms "
        f"(target p99 <= {P99_TARGET_MS} ms)"
    )
    if inside:
        print(
            "  inside the gateway (the press's arrival to the broker's ack of its page): "
            f"p50 {percentile(inside, 50):.2f} ms, p99 {percentile(inside, 99):.2f} ms, "
            f"max {max(inside):.2f} ms"
        )
    if alarm_batches:
        waits = [w for w, _ in alarm_batches]
        works = [b for _, b in alarm_batches]
        print(
            f"  the presses' batches: waited for the worker p50 {percentile(waits, 50):.2f} / "
            f"p99 {percentile(waits, 99):.2f} / max {max(waits):.2f} ms; took to their commit "
            f"p50 {percentile(works, 50):.2f} / p99 {percentile(works, 99):.2f} / "
            f"max {max(works):.2f} ms"
        )
    for _, st in each:
        wf = st["waited_for"]
        if wf["n"]:
            parts = ", ".join(
                f"{k} {v:.0f} ms" for k, v in sorted(wf["cover_ms"].items(), key=lambda x: -x[1])
            )
            print(
                f"  {wf['n']} batches of events waited over 10 ms for the worker, "
                f"{wf['total_ms']:.0f} ms in all, covered by: {parts or 'nothing recorded'}"
            )
        if args.timeline:
            print("  the worker's jobs: what, how many, p50 / p99 / max ms")
            for name, (count, p50, p99, top) in sorted(wf["jobs"].items()):
                print(f"    {name:28s} {count:7,d} {p50:7.2f} / {p99:7.2f} / {top:7.2f}")
    print(
        f"ingest lag: at most {max(queue):,.0f} messages waiting "
        f"({max(queue) / max(rate, 1):.2f} s of load), median {statistics.median(queue):,.0f}; "
        f"all committed {drain:.1f} s after the last publish"
    )
    print(
        f"RSS: {rss[0]:.0f} MB at the first sample, at most {max(rss):.0f} MB, "
        f"{rss[-1]:.0f} MB at the end (target <= {RSS_TARGET_MB} MB)"
    )
    for child, gc_ms in full_gc:
        lane = f" ({child.fields['lanes']} lane)" if "lanes" in child.fields else ""
        each = ", ".join(f"{x:.0f}" for x in gc_ms[:12]) + (", ..." if len(gc_ms) > 12 else "")
        print(
            f"full garbage collections{lane}: {len(gc_ms)} since the start (the first at the "
            f"start, before gc.freeze)" + (f": {each} ms" if gc_ms else "")
        )
    if args.timeline:
        # presses are `press_every` apart, in order (the few missing ones are left out)
        per = max(1, round(60 / args.press_every))
        print("page latency per minute: minute, presses, p50 / p99 / max ms")
        for k in range(0, len(ms), per):
            chunk = ms[k : k + per]
            print(
                f"  {k // per + 1:3d} {len(chunk):4d} {percentile(chunk, 50):6.1f} /"
                f" {percentile(chunk, 99):6.1f} / {max(chunk):6.1f}"
            )
        print("timeline (5 s samples): t s, messages waiting, batches/s, mean batch ms")
        for a, b in itertools.pairwise(samples):
            nb = b["batches"] - a["batches"]
            mean = (b["batch_s"] - a["batch_s"]) / nb * 1000 if nb else float("nan")
            print(f"  {b['t']:5.0f} {b['queue']:8,.0f} {nb / (b['t'] - a['t']):7.1f} {mean:7.1f}")
    per_day = grown / seconds * 86_400
    with poll.connect() as c:
        rows = c.execute(select(func.count()).select_from(T.messages)).scalar_one()
    print(
        f"database growth: {grown / 1e6:,.1f} MB in {args.minutes:g} min = "
        f"{per_day / 1e9:,.1f} GB a day at this rate ({rows:,} message rows kept; the repeat "
        f"check keeps telemetry ids for SHOUWANG_TELEMETRY_ID_RETENTION_H)"
    )
    return errors


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_scale", description=__doc__.split("\n")[0]
    )
    p.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=1_000, help="reports a second, in all")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--press-every", type=float, default=1.0, help="seconds between presses")
    p.add_argument("--publishers", type=int, default=2)
    p.add_argument(
        "--split",
        action="store_true",
        help="two gateway processes: SHOUWANG_LANES=telemetry and SHOUWANG_LANES=alarm",
    )
    p.add_argument(
        "--private-pg",
        action="store_true",
        help="a PostgreSQL server of the benchmark's own, the package's defaults (autovacuum on)",
    )
    p.add_argument(
        "--timeline",
        action="store_true",
        help="also print the page latency per minute, and the ingest lag and batches per 5 s",
    )
    args = p.parse_args(argv)
    if args.private_pg and args.db != "postgres":
        p.error("--private-pg is for PostgreSQL")
    if args.split and args.db != "postgres":
        p.error("--split needs PostgreSQL (SQLite takes one gateway process)")
    if args.devices < 30 or args.rate <= 0 or args.minutes <= 0 or args.press_every <= 0:
        p.error("sizes must be positive (at least 30 devices)")
    if args.minutes * 60 / args.press_every + 10 > args.devices // 3:
        p.error("more presses than homes: raise --devices or --press-every")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"scale benchmark: {args.db}; {args.devices:,} devices, {args.rate:,.0f} msg/s for "
        f"{args.minutes:g} min, a press every {args.press_every:g} s; {os.cpu_count()} CPUs"
        + ("; two gateway processes, a telemetry lane and an alarm lane" if args.split else "")
    )
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
