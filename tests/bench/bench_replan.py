"""Benchmark: what re-planning costs the telemetry worker on a district's rule states, with and
without PostgreSQL's JIT (gateway/db.py turns it off). It prints figures; it is not a test.

    .venv/bin/python -m tests.bench.bench_replan                  # 33,333 homes, 6-15 minutes
    .venv/bin/python -m tests.bench.bench_replan --homes 5000     # a smoke

On a fresh PostgreSQL database seeded like tests/bench/bench_scale.py (three devices a home), a
gateway that is not started has its ingest worker take every device's reading twice (two
rounds, batches of `--batch`), in this process, on the worker's own connection. Every
`--rollback-every` seconds a transaction on that connection is rolled back, as a conflict with
another gateway or a database error would: psycopg then drops its prepared statements, and
PostgreSQL plans the next lookups again, now on a rule-state table that grew by a row a device
and that nothing has analyzed yet (autovacuum runs late, or not at all on this machine). Three
settings, each on a database of its own:

- `no rollbacks`: prepared once, planned while the tables were small;
- `rollbacks, jit on`: the server's default (`jit = on`, `jit_above_cost` 100,000);
- `rollbacks, jit off`: the gateway's setting.

For each it prints the worker's milliseconds a message (the median of blocks of 2,000) in each
round, and the slowest rule-state lookup. On 2026-11-26 13:08-13:21 (99,999 devices, the
machine about three times slower than when quiet), in that order: 0.80 / 0.86, 0.90 / 3.09 and
0.45 / 0.36 ms a message in the first / second round; slowest lookup 25, 584 and 23 ms. (The
first setting ran first, on a machine busier still: its figures are noise against the third.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from gateway.app import Gateway
from gateway.mqtt import Inbound
from gateway.settings import Settings
from tests.bench.bench_alarm_path import (
    BenchError,
    _telemetry,
    devices_of,
    fresh_database,
    seed,
)

BLOCK = 2_000
BASE = "replan"


def _reading(dev: str, kind: str) -> Inbound:
    return Inbound(
        f"{BASE}/v1/devices/{dev}/telemetry",
        _telemetry(dev, kind, uuid.uuid4().hex[:12]),
        0,
        1,
        False,
        time.monotonic(),
        int(time.time() * 1000),
        lane="telemetry",
    )


def run(homes: int, batch: int, rollback_every: float | None, jit: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, fresh_database("postgres", Path(tmp)) as url:
        seed(url, homes)
        gw = Gateway(
            Settings(
                _env_file=None,
                database_url=url,
                mqtt_url="mqtt://127.0.0.1:1",  # never connected: the gateway is not started
                mqtt_base=BASE,
                http_port=0,
                log_level="WARNING",
            )
        )
        w = gw.ingest
        w.ack = lambda item: None
        w.publish = lambda out: None
        slowest = [0.0]

        @event.listens_for(w.engine, "before_cursor_execute")
        def _start(conn: Any, cur: Any, statement: str, *rest: Any) -> None:
            conn.info["t0"] = time.perf_counter()

        @event.listens_for(w.engine, "after_cursor_execute")
        def _end(conn: Any, cur: Any, statement: str, *rest: Any) -> None:
            if "FROM rule_states AS r" in statement:
                slowest[0] = max(slowest[0], time.perf_counter() - conn.info["t0"])

        try:
            if jit:  # the server's default, on the worker's one connection (pool_size 1)
                with w.engine.begin() as c:
                    c.execute(text("SET jit = on"))
            devs = devices_of(homes)
            rounds: list[float] = []
            rollbacks = 0
            for _ in range(2):
                per: list[float] = []
                next_rollback = time.monotonic() + (rollback_every or 0)
                for pos in range(0, len(devs), BLOCK):
                    block = devs[pos : pos + BLOCK]
                    t0 = time.perf_counter()
                    for j in range(0, len(block), batch):
                        if rollback_every and time.monotonic() >= next_rollback:
                            next_rollback += rollback_every
                            with w.engine.connect() as c:  # BEGIN, a statement, ROLLBACK
                                c.execute(text("SELECT 1"))
                                c.rollback()
                            rollbacks += 1
                        w._handle([_reading(d, k) for d, k in block[j : j + batch]])
                    per.append((time.perf_counter() - t0) / len(block) * 1000)
                rounds.append(statistics.median(per))
            with w.engine.connect() as c:
                jit_now = c.execute(text("SHOW jit")).scalar_one()
            return {
                "rounds": rounds,
                "slowest_ms": slowest[0] * 1000,
                "rollbacks": rollbacks,
                "jit": jit_now,
            }
        finally:
            for e in {gw.engine, gw.worker_engine, gw.alarm_engine}:
                e.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.bench_replan")
    p.add_argument("--homes", type=int, default=33_333)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--rollback-every", type=float, default=1.0, help="seconds")
    args = p.parse_args(argv)
    if args.homes < 700 or args.batch < 1 or args.rollback_every <= 0:
        p.error("at least 700 homes, a positive batch and interval")
    print(
        f"replanning: {args.homes * 3:,} devices, each read twice in batches of {args.batch}; "
        f"a rollback every {args.rollback_every:g} s on the worker's connection"
    )
    try:
        for name, every, jit in (
            ("no rollbacks", None, False),
            ("rollbacks, jit on", args.rollback_every, True),
            ("rollbacks, jit off", args.rollback_every, False),
        ):
            r = run(args.homes, args.batch, every, jit)
            print(
                f"{name:20} (jit {r['jit']}, {r['rollbacks']} rollbacks): ms a message "
                f"{r['rounds'][0]:.2f} first round, {r['rounds'][1]:.2f} second; slowest "
                f"rule-state lookup {r['slowest_ms']:.1f} ms",
                flush=True,
            )
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
