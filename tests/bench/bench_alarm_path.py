"""Benchmark of the alarm path: page latency under load, and sustained ingest, on SQLite and
PostgreSQL. It prints figures; it is not a test (pytest does not collect it).

Run from the repository root (or `make bench`):

    .venv/bin/python -m tests.bench.bench_alarm_path                # both databases, 3 runs each
    .venv/bin/python -m tests.bench.bench_alarm_path --db sqlite --runs 5
    .venv/bin/python -m tests.bench.bench_alarm_path --quick        # smoke run, well under a minute

What one run does, on a private Mosquitto (tests.support.broker: set_tcp_nodelay, a large
max_queued_messages, persistence) on a free loopback port, and a fresh database (a SQLite file,
or a new PostgreSQL database on SHOUWANG_TEST_PG_URL, dropped afterwards) seeded with homes of a
call button, a gas sensor and a water sensor each, and one responder with a pager per elder
(a one-step plan), so that every press pages a pager of its own:

1. Page latency. Two processes publish 2,000 telemetry messages/s (QoS 1) in the background from
   the homes' sensors; after a second of that, a latency process publishes `button.pressed`
   (QoS 1) from 200 call buttons of 200 elders, 25 ms apart (after 5 unmeasured warm-up
   presses), and takes the time from just before each publish to the arrival of the page on
   `<base>/v1/pagers/<pager>/pages`, both with time.perf_counter in that one process. Targets:
   p50 <= 5 ms, p99 <= 20 ms.
2. Telemetry ingest. Several publisher processes publish N telemetry messages from 1,000 devices
   as fast as they can (QoS 1); the rate is N over the time from the first publish until the
   gateway has committed all N rows to table `messages`, every one of which is checked to be
   there. Target >= 5,000 messages/s.
3. Event ingest. The same with events that do not page (`water.dry` from water sensors,
   `command.result` from the rest); each is committed before it is acknowledged. Target >= 2,000
   events/s.

The gateway runs in its own process (tests/bench/gateway_child.py), and so does every load
generator (each paho client sets TCP_NODELAY), so none shares another's GIL. The machine is
shared and noisy: every run is printed, and the median of the runs is what the final table
judges against the targets. The exit code is 0 whether or not targets are met; it is non-zero
when something failed or a message was lost (a page that never came, a row never committed, a
message quarantined).

Other options: `--presses`, `--telemetry`, `--events`, `--publishers`, `--background-rate` (0: no
background) change the sizes; `--gateways N` (PostgreSQL) runs N gateway processes sharing the
topics as an MQTT 5 shared-subscription group, for the scaling figures of issue 8;
`--json FILE` writes every run's figures (and each press's latency, in order); `--py-spy DIR`
records the gateway with py-spy (`pip install py-spy`) in each phase,
as raw stacks per thread with idle time, to see where its time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import select as io_select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from gateway import tables as T
from gateway.db import make_engine, migrate
from tests.support.broker import PrivateMosquitto

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("SHOUWANG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
INGEST_DEVICES = 1_000
ACK_TIMEOUT_S = 3_600  # no escalation fires during a run
CTX = multiprocessing.get_context("fork")  # cheap; the parent has no threads when it forks


@dataclass(frozen=True)
class Target:
    metric: str
    unit: str
    limit: float | None
    higher_is_better: bool

    def met(self, value: float) -> bool | None:
        if self.limit is None or math.isnan(value):
            return None
        return value >= self.limit if self.higher_is_better else value <= self.limit

    def describe(self) -> str:
        if self.limit is None:
            return "-"
        return f"{'>=' if self.higher_is_better else '<='} {self.limit:,.0f} {self.unit}"


TARGETS = [
    Target("page latency p50", "ms", 5, False),
    Target("page latency p99", "ms", 20, False),
    Target("page latency max", "ms", None, False),
    Target("telemetry ingest", "msg/s", 5_000, True),
    Target("event ingest", "events/s", 2_000, True),
]


@dataclass(frozen=True)
class Plan:
    """The sizes of one run."""

    presses: int = 200
    warmup: int = 5
    spacing_s: float = 0.025
    background_rate: int = 2_000
    background_procs: int = 2
    background_lead_s: float = 1.0
    telemetry: int = 40_000
    events: int = 16_000
    publishers: int = 2

    @property
    def homes(self) -> int:
        return max(math.ceil(INGEST_DEVICES / 3), self.presses + self.warmup)


QUICK = Plan(presses=30, warmup=3, spacing_s=0.02, telemetry=3_000, events=1_500)


class BenchError(RuntimeError):
    """A failure of the run (not a missed target)."""


# --- the world: devices, seeding, databases -----------------------------------------------


def devices_of(homes: int) -> list[tuple[str, str]]:
    """(device id, kind) of every home, home by home: cb-i, gas-i, water-i."""
    out: list[tuple[str, str]] = []
    for i in range(1, homes + 1):
        out += [(f"cb-{i}", "call_button"), (f"gas-{i}", "gas_sensor")]
        out.append((f"water-{i}", "water_sensor"))
    return out


def seed(url: str, homes: int, plans: str = "explicit") -> None:
    """Migrate, then elders e1..eN with three devices each, and responder r<i> (pager pg<i>)
    as the one-step plan of elder e<i> (`plans` "explicit": issue 2's per-elder plan), or as
    e<i>'s paired watcher, with two staff members on duty behind (`plans` "policy": the plan an
    elder without one of their own gets, built at each press from pairings and the roster)."""
    engine = make_engine(url)
    try:
        migrate(engine)
        now = int(time.time() * 1000)
        rng = range(1, homes + 1)
        with engine.begin() as c:
            c.execute(
                insert(T.responders),
                [
                    {
                        "id": f"r{i}",
                        "name": f"守望员{i}",
                        "role": "watcher",
                        "pager_id": f"pg{i}",
                        "phone": "13900000000",
                        "language": "zh-CN",
                        "created_at": now,
                    }
                    for i in rng
                ],
            )
            c.execute(
                insert(T.elders),
                [
                    {
                        "id": f"e{i}",
                        "name": f"老人{i}",
                        "address": f"幸福里{i}号楼",
                        "phone": "13800000000",
                        "created_at": now,
                    }
                    for i in rng
                ],
            )
            c.execute(
                insert(T.devices),
                [
                    {"id": d, "kind": k, "elder_id": f"e{d.rsplit('-', 1)[1]}", "created_at": now}
                    for d, k in devices_of(homes)
                ],
            )
            if plans == "explicit":
                c.execute(
                    insert(T.escalation_plans),
                    [
                        {
                            "elder_id": f"e{i}",
                            "steps": [{"responder_ids": [f"r{i}"], "ack_timeout_s": ACK_TIMEOUT_S}],
                            "updated_at": now,
                        }
                        for i in rng
                    ],
                )
                return
            c.execute(
                insert(T.pairings),
                [
                    {
                        "id": f"pa{i}",
                        "elder_id": f"e{i}",
                        "responder_id": f"r{i}",
                        "role": "watcher",
                        "ord": 0,
                        "active_from": now - 86_400_000,
                        "created_by": "bench",
                        "created_at": now,
                    }
                    for i in rng
                ],
            )
            staff = [f"s{k}" for k in (1, 2)]
            c.execute(
                insert(T.responders),
                [
                    {
                        "id": sid,
                        "name": f"站员{sid}",
                        "role": "staff",
                        "pager_id": f"pager-{sid}",
                        "phone": "13700000000",
                        "language": "zh-CN",
                        "created_at": now,
                    }
                    for sid in staff
                ],
            )
            c.execute(
                insert(T.duty_shifts),
                [
                    {
                        "id": f"sh-{sid}",
                        "responder_id": sid,
                        "start_at": now - 3_600_000,
                        "end_at": now + 86_400_000,
                        "tags": [],
                        "created_by": "bench",
                        "created_at": now,
                    }
                    for sid in staff
                ],
            )
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path, server: str | None = None) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database: a SQLite file in `workdir`, or a new PostgreSQL
    database on `server` (a URL; PG_URL by default), created like tests/conftest.py does and
    dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    server = server or PG_URL
    name = "sw_bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        try:
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            raise BenchError(f"cannot create a database on {server}: {exc}") from exc
        try:
            yield make_url(server).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --- the gateway in its own process ---------------------------------------------------------


class GatewayChild:
    """tests/bench/gateway_child.py as a subprocess: READY, `stats` and `stop` over its pipes."""

    def __init__(self, fields: dict[str, Any], log_path: Path) -> None:
        self.fields = fields
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOUWANG_")}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.gateway_child", json.dumps(self.fields)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=REPO,
            text=True,
        )
        line = self._readline(timeout)
        if line != "READY":
            raise BenchError(f"gateway did not start ({line!r}):\n{self.tail()}")

    def _readline(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = io_select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise BenchError(f"gateway silent for {timeout:.0f}s:\n{self.tail()}")
        return self.proc.stdout.readline().strip()

    def stats(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise BenchError(f"gateway exited with {self.proc.returncode}:\n{self.tail()}")
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return dict(json.loads(self._readline(10)))

    def trace(self) -> dict[str, Any]:
        """What the batches of events that waited for the worker waited for
        (gateway_child.py `_waited_for`)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("trace\n")
        self.proc.stdin.flush()
        return dict(json.loads(self._readline(60)))

    def stop(self, timeout: float = 30.0) -> None:
        """`stop` (gw.stop()), then SIGTERM, then SIGKILL, each only if the one before failed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.write("stop\n")
                    proc.stdin.close()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            if self._log is not None:
                self._log.close()

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


class Cluster:
    """One or several GatewayChild processes as one gateway: with several, they share the
    device topics as an MQTT 5 shared-subscription group on one PostgreSQL (issue 8)."""

    def __init__(self, members: list[GatewayChild]) -> None:
        self.members = members

    @property
    def pid(self) -> int:
        return self.members[0].pid

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.members]

    def start(self) -> None:
        for m in self.members:
            m.start()

    def stats(self) -> dict[str, Any]:
        """The members' counters, added up (`mono`: the latest)."""
        every = [m.stats() for m in self.members]
        out: dict[str, Any] = {"mono": max(s["mono"] for s in every)}
        for key, value in every[0].items():
            if key == "mono":
                continue
            if isinstance(value, dict):
                out[key] = {k: sum(s[key][k] for s in every) for k in value}
            elif isinstance(value, list):
                out[key] = [x for s in every for x in s[key]]
            else:
                out[key] = sum(s[key] for s in every)
        return out

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def tail(self, n: int = 30) -> str:
        return "\n".join(
            f"[gateway {i}]\n{m.tail(n)}" if len(self.members) > 1 else m.tail(n)
            for i, m in enumerate(self.members, 1)
        )


# --- load generators (each in its own process) ----------------------------------------------


class _Counter:
    """PUBACKs received (incremented on paho's thread only)."""

    def __init__(self) -> None:
        self.n = 0

    def inc(self, *_: Any) -> None:
        self.n += 1


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _client(
    port: int,
    client_id: str,
    on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None] | None = None,
    subscribe: str | None = None,
) -> tuple[mqtt.Client, _Counter]:
    """A connected paho client (MQTT 3.1.1, TCP_NODELAY) and its PUBACK counter."""
    acks = _Counter()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.on_socket_open = _nodelay
    client.max_inflight_messages_set(1_000)
    client.max_queued_messages_set(0)
    client.on_publish = acks.inc
    if on_message is not None:
        client.on_message = on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    connected = threading.Event()

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        if subscribe is not None:  # again after a reconnect: a clean session forgets it
            c.subscribe(subscribe, qos=1)
        connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        raise BenchError(f"load client {client_id} could not connect to 127.0.0.1:{port}")
    if subscribe is not None and not subscribed.wait(10):
        raise BenchError(f"load client {client_id} could not subscribe")
    return client, acks


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def _wait_acks(acks: _Counter, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while acks.n < n and time.monotonic() < deadline:
        time.sleep(0.002)


def _telemetry(dev: str, kind: str, msg_id: str) -> bytes:
    body: dict[str, Any] = {"id": msg_id, "ts": int(time.time() * 1000)}
    if kind == "gas_sensor":
        body.update(lel_pct=0.0, co_ppm=1.0)
    elif kind == "water_sensor":
        body.update(flow_l=0.0, interval_s=60, total_l=1234.5)
    else:
        body.update(battery_pct=87.0, rssi_dbm=-61.0)
    return json.dumps(body).encode()


def _event(dev: str, kind: str, msg_id: str) -> bytes:
    body: dict[str, Any] = {"id": msg_id, "ts": int(time.time() * 1000)}
    if kind == "water_sensor":
        body["type"] = "water.dry"
    else:
        body.update(type="command.result", command_id="cmd-bench", ok=True)
    return json.dumps(body).encode()


def _worker(tag: str, results: Any, body: Callable[[], dict[str, Any]]) -> None:
    """Run a load generator; report ("done", tag, figures) or ("error", tag, traceback)."""
    try:
        results.put(("done", tag, body()))
    except BaseException:
        results.put(("error", tag, traceback.format_exc()))


def background_worker(
    tag: str,
    results: Any,
    port: int,
    base: str,
    devices: list[tuple[str, str]],
    rate: float,
    max_s: float,
    go: Any,
    stop: Any,
) -> None:
    """Telemetry at `rate` msg/s (QoS 1) round the `devices` until `stop` (at most `max_s`)."""

    def body() -> dict[str, Any]:
        client, acks = _client(port, f"bench-{tag}-{uuid.uuid4().hex[:6]}")
        results.put(("ready", tag, None))
        if not go.wait(60):
            raise BenchError("never told to go")
        sent, start = 0, time.monotonic()
        while not stop.is_set():
            elapsed = time.monotonic() - start
            if elapsed > max_s:
                break
            due = int(elapsed * rate) + 1
            while sent < due:
                dev, kind = devices[sent % len(devices)]
                topic = f"{base}/v1/devices/{dev}/telemetry"
                client.publish(topic, _telemetry(dev, kind, f"{tag}-{sent}"), qos=1)
                sent += 1
            time.sleep(0.005)
        duration = time.monotonic() - start
        _wait_acks(acks, sent, 20)
        _close(client)
        return {"sent": sent, "acked": acks.n, "seconds": duration}

    _worker(tag, results, body)


def latency_worker(
    tag: str,
    results: Any,
    port: int,
    base: str,
    presses: list[int],
    warmup: list[int],
    spacing_s: float,
    go: Any,
) -> None:
    """Press cb-<i> for each i, `spacing_s` apart; time each until its page reaches pg<i>."""

    def body() -> dict[str, Any]:
        got: dict[str, tuple[float, dict[str, Any]]] = {}
        extra: list[str] = []
        sent_mono: dict[int, float] = {}

        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            at = time.perf_counter()
            pager = msg.topic.split("/")[3]
            page = json.loads(msg.payload)
            if page.get("type") == "page" and pager not in got:
                got[pager] = (at, page)
            else:
                extra.append(pager)

        pagers, _ = _client(
            port, f"bench-pagers-{uuid.uuid4().hex[:6]}", on_message, f"{base}/v1/pagers/+/pages"
        )
        device, acks = _client(port, f"bench-buttons-{uuid.uuid4().hex[:6]}")
        results.put(("ready", tag, None))
        if not go.wait(60):
            raise BenchError("never told to go")

        def press(i: int) -> float:
            payload = json.dumps(
                {
                    "id": f"press-{i}",
                    "ts": int(time.time() * 1000),
                    "type": "button.pressed",
                    "press": "short",
                }
            ).encode()
            topic = f"{base}/v1/devices/cb-{i}/events"
            at = time.perf_counter()
            sent_mono[i] = time.monotonic()  # the same clock in every process (bench_faults)
            device.publish(topic, payload, qos=1)
            return at

        for i in warmup:  # the first alerts pay for cold caches; not measured
            press(i)
            time.sleep(spacing_s)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(f"pg{i}" in got for i in warmup):
            time.sleep(0.005)

        sent: dict[int, float] = {}
        next_at = time.perf_counter()
        for i in presses:
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[i] = press(i)
            next_at += spacing_s
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(f"pg{i}" in got for i in presses):
            time.sleep(0.005)
        _wait_acks(acks, len(warmup) + len(presses), 5)
        _close(device)
        _close(pagers)

        latencies, missing, wrong = [], [], []
        for i in presses:
            if f"pg{i}" not in got:
                missing.append(i)
                continue
            at, page = got[f"pg{i}"]
            latencies.append((at - sent[i]) * 1000)
            elder = page.get("elder") or {}
            if (
                page.get("kind") != "call_button"
                or page.get("step") != 1
                or elder.get("name") != f"老人{i}"
                or not page.get("alert_id")
            ):
                wrong.append(i)
        return {
            "latencies_ms": latencies,  # of the presses paged, in the order pressed
            "missing": missing,
            "wrong": wrong,
            "extra": extra,
            "sent_mono": [sent_mono[i] for i in presses],
        }

    _worker(tag, results, body)


def burst_worker(
    tag: str,
    results: Any,
    port: int,
    base: str,
    channel: str,
    devices: list[tuple[str, str]],
    count: int,
    go: Any,
) -> None:
    """Publish `count` messages (QoS 1) round the `devices` as fast as paho can."""

    def body() -> dict[str, Any]:
        client, acks = _client(port, f"bench-{tag}-{uuid.uuid4().hex[:6]}")
        make = _telemetry if channel == "telemetry" else _event
        msgs = []
        for k in range(count):
            dev, kind = devices[k % len(devices)]
            msgs.append((f"{base}/v1/devices/{dev}/{channel}", make(dev, kind, f"{tag}-{k}")))
        results.put(("ready", tag, None))
        if not go.wait(60):
            raise BenchError("never told to go")
        cpu = time.process_time()
        first = time.monotonic()
        for topic, payload in msgs:
            client.publish(topic, payload, qos=1)
        handed = time.monotonic()
        _wait_acks(acks, count, 120)
        acked = time.monotonic()
        figures = {
            "first": first,
            "handed": handed,
            "acked_at": acked,
            "acked": acks.n,
            "cpu_s": time.process_time() - cpu,
        }
        _close(client)
        return figures

    _worker(tag, results, body)


class Workers:
    """Load-generator processes: start them, wait until all are ready, collect what they say."""

    def __init__(self) -> None:
        self.results: Any = CTX.Queue()
        self.procs: dict[str, Any] = {}
        self.figures: dict[str, dict[str, Any]] = {}
        self._ready: set[str] = set()

    def start(self, tag: str, target: Callable[..., None], *args: Any) -> None:
        proc = CTX.Process(target=target, args=(tag, self.results, *args), daemon=True)
        proc.start()
        self.procs[tag] = proc

    def start_background(
        self,
        prefix: str,
        n: int,
        port: int,
        base: str,
        devices: list[tuple[str, str]],
        rate: float,
        seconds: float,
        go: Any,
        stop: Any,
    ) -> list[str]:
        """`n` telemetry publishers (`background_worker`) sharing `devices` and `rate` between
        them; returns their tags."""
        tags = [f"{prefix}{w}" for w in range(n)]
        for w, tag in enumerate(tags):
            self.start(
                tag, background_worker, port, base, devices[w::n], rate / n, seconds, go, stop
            )
        return tags

    def _take(self, timeout: float) -> None:
        try:
            what, tag, data = self.results.get(timeout=timeout)
        except Exception as exc:  # queue.Empty
            raise BenchError("a load generator went silent") from exc
        if what == "error":
            raise BenchError(f"load generator {tag} failed:\n{data}")
        if what == "ready":
            self._ready.add(tag)
        else:
            self.figures[tag] = data

    def wait_ready(self, tags: list[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not set(tags) <= self._ready:
            self._take(max(0.1, deadline - time.monotonic()))

    def wait_done(self, tags: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not set(tags) <= set(self.figures):
            self._take(max(0.1, deadline - time.monotonic()))
        for tag in tags:
            self.procs[tag].join(10)

    def close(self) -> None:
        """Stop what is still running (only our own processes, by handle)."""
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        self.results.close()


# --- measuring ------------------------------------------------------------------------------


def _clk_tck() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process `pid`, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _clk_tck()


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat (every process, ours or not)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def count_rows(engine: Engine, channel: str) -> int:
    with engine.connect() as c:
        q = select(func.count()).select_from(T.messages).where(T.messages.c.channel == channel)
        return int(c.execute(q).scalar_one())


def count_quarantined(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(T.quarantine)).scalar_one())


def wait_committed(
    engine: Engine,
    channel: str,
    expected: int,
    last_keys: list[tuple[str, str]],
    timeout: float,
    stall_s: float = 20.0,
) -> tuple[float, int]:
    """Wait until `expected` rows of `channel` are in `messages`; (monotonic time, count).

    Looks up each publisher's last message by primary key every 10 ms (cheap, and a publisher's
    messages arrive in order), then counts them all; if some are still missing, counts every
    50 ms. Gives up after `timeout`, or when the count has not grown for `stall_s`.
    """
    start = time.monotonic()
    deadline = start + timeout
    m = T.messages.c
    lookups = [
        select(m.msg_id).where(m.source == "d", m.source_id == dev, m.msg_id == msg_id)
        for dev, msg_id in last_keys
    ]
    n, grew_at, counted_at = -1, start, 0.0
    while lookups and time.monotonic() < deadline:
        with engine.connect() as c:
            if all(c.execute(q).first() is not None for q in lookups):
                break
        now = time.monotonic()
        if now - counted_at >= 1.0:  # the stall check
            counted_at, before = now, n
            n = count_rows(engine, channel)
            if n > before:
                grew_at = now
            elif now - grew_at > stall_s:
                return now, n
        time.sleep(0.01)
    done = time.monotonic()
    n = count_rows(engine, channel)
    while n < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        before, n = n, count_rows(engine, channel)
        done = time.monotonic()
        if n > before:
            grew_at = done
        elif done - grew_at > stall_s:
            break
    return done, n


@dataclass
class Usage:
    """CPU used by the gateway, the broker, and the machine as a whole, over one phase."""

    gateway_pids: list[int]
    broker_pid: int
    start: float = 0.0
    gw0: float = 0.0
    broker0: float = 0.0
    busy0: tuple[float, float] = (0.0, 0.0)

    def _gateways(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.gateway_pids)

    def begin(self) -> None:
        self.start = time.monotonic()
        self.gw0, self.broker0 = self._gateways(), cpu_seconds(self.broker_pid)
        self.busy0 = machine_busy()

    def end(self) -> str:
        wall = max(1e-9, time.monotonic() - self.start)
        gw = (self._gateways() - self.gw0) / wall * 100
        broker = (cpu_seconds(self.broker_pid) - self.broker0) / wall * 100
        busy, total = machine_busy()
        machine = (busy - self.busy0[0]) / max(1.0, total - self.busy0[1]) * 100
        who = "gateway" if len(self.gateway_pids) == 1 else f"{len(self.gateway_pids)} gateways"
        return (
            f"cpu: {who} {gw:.0f}%, broker {broker:.0f}% of one core; "
            f"all processes {machine:.0f}% of {os.cpu_count()} cores"
        )


def batch_note(before: dict[str, Any], after: dict[str, Any]) -> str:
    batches = after["batches"] - before["batches"]
    msgs = sum(after["messages"].values()) - sum(before["messages"].values())
    seconds = after["batch_s"] - before["batch_s"]
    if not batches:
        return "no batches"
    return (
        f"{batches:,.0f} batches, mean {msgs / batches:.0f} msgs, "
        f"{seconds / batches * 1000:.1f} ms each ({seconds / max(msgs, 1) * 1e6:.0f} us/msg)"
    )


# --- one run --------------------------------------------------------------------------------


@dataclass
class RunResult:
    db: str
    run: int
    values: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # in the order pressed
    errors: list[str] = field(default_factory=list)


class Run:
    def __init__(
        self,
        db: str,
        number: int,
        plan: Plan,
        py_spy: Path | None,
        gateways: int = 1,
        plans: str = "explicit",
    ) -> None:
        self.db, self.number, self.plan, self.py_spy = db, number, plan, py_spy
        self.gateways = gateways
        self.plans = plans
        self.result = RunResult(db, number)
        self.base = "bench" + uuid.uuid4().hex[:8]
        self.devices = devices_of(plan.homes)
        self.label = f"[{db} run {number}]"

    def say(self, text: str) -> None:
        print(f"{self.label} {text}", flush=True)

    def error(self, text: str) -> None:
        self.result.errors.append(text)
        self.say(f"ERROR: {text}")

    def execute(self) -> RunResult:
        workdir = Path(tempfile.mkdtemp(prefix="shouwang-bench-"))
        broker = PrivateMosquitto()
        try:
            broker.start()
            with fresh_database(self.db, workdir) as url:
                seed(url, self.plan.homes, self.plans)
                poll = create_engine(url)
                shared: dict[str, Any] = {"mqtt_share_group": "bench"} if self.gateways > 1 else {}
                if self.plans == "policy":  # no escalation fires during a run
                    shared["p1_watcher_ack_s"] = ACK_TIMEOUT_S
                gw = Cluster(
                    [
                        GatewayChild(
                            {
                                "mqtt_url": broker.url,
                                "database_url": url,
                                "mqtt_base": self.base,
                                "mqtt_client_id": f"gw-{self.base}-{k}",
                                "http_port": 0,
                                "log_level": "WARNING",
                                **shared,
                            },
                            workdir / f"gateway-{k}.log",
                        )
                        for k in range(1, self.gateways + 1)
                    ]
                )
                try:
                    gw.start()
                    assert broker.proc is not None
                    usage = Usage(gw.pids, broker.proc.pid)
                    self.latency(broker.port, gw, poll, usage)
                    self.ingest("telemetry", broker.port, gw, poll, usage)
                    self.ingest("events", broker.port, gw, poll, usage)
                    bad = count_quarantined(poll)
                    if bad:
                        self.error(f"{bad} messages were quarantined")
                finally:
                    gw.stop()
                    poll.dispose()
                    log = gw.tail(200)
                    if any(w in log for w in ("ERROR", "Traceback")):
                        self.say(f"gateway log (last lines):\n{gw.tail(15)}")
        except BenchError as exc:
            self.error(str(exc))
        except Exception:
            self.error(traceback.format_exc())
        finally:
            broker.close()
            shutil.rmtree(workdir, ignore_errors=True)
        return self.result

    def _spy(self, pid: int, phase: str) -> subprocess.Popen[bytes] | None:
        if self.py_spy is None:
            return None
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = self.py_spy / f"{self.db}-run{self.number}-{phase}.txt"
        return subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--threads",
                "--idle",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @staticmethod
    def _unspy(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def latency(self, port: int, gw: Cluster, poll: Engine, usage: Usage) -> None:
        plan = self.plan
        presses = list(range(1, plan.presses + 1))
        warmup = list(range(plan.presses + 1, plan.presses + plan.warmup + 1))
        sensors = [d for d in self.devices if d[1] != "call_button"]
        measure_s = plan.warmup * plan.spacing_s + plan.presses * plan.spacing_s
        workers = Workers()
        bg_go, lat_go, stop = CTX.Event(), CTX.Event(), CTX.Event()
        spy = None
        try:
            bg_tags = workers.start_background(
                "bg",
                plan.background_procs if plan.background_rate else 0,
                port,
                self.base,
                sensors,
                plan.background_rate,
                measure_s + 60,
                bg_go,
                stop,
            )
            workers.start(
                "latency",
                latency_worker,
                port,
                self.base,
                presses,
                warmup,
                plan.spacing_s,
                lat_go,
            )
            workers.wait_ready([*bg_tags, "latency"])
            spy = self._spy(gw.pid, "latency")
            before = gw.stats()
            usage.begin()
            bg_go.set()
            time.sleep(plan.background_lead_s)
            lat_go.set()
            workers.wait_done(["latency"], measure_s + 30)
            stop.set()
            workers.wait_done(bg_tags, 40)
            cpu = usage.end()
            after = gw.stats()
        finally:
            stop.set()
            self._unspy(spy)
            workers.close()
        lat = workers.figures["latency"]
        ms = lat["latencies_ms"]
        bg = [workers.figures[t] for t in bg_tags]
        bg_sent = sum(f["sent"] for f in bg)
        bg_rate = sum(f["sent"] / f["seconds"] for f in bg) if bg else 0.0
        self.result.latencies_ms = ms
        values = self.result.values
        values["page latency p50"] = percentile(ms, 50)
        values["page latency p99"] = percentile(ms, 99)
        values["page latency max"] = max(ms) if ms else float("nan")
        values["background rate"] = bg_rate
        self.say(
            f"page latency: {len(ms)} presses, p50 {values['page latency p50']:.2f} ms, "
            f"p99 {values['page latency p99']:.2f} ms, max {values['page latency max']:.2f} ms, "
            f"mean {statistics.fmean(ms) if ms else float('nan'):.2f} ms "
            f"(background {bg_rate:,.0f} telemetry msg/s)"
        )
        pages = after["pages"] - before["pages"]
        if pages:
            inside = (after["page_s"] - before["page_s"]) / pages * 1000
            self.say(f"  gateway's own view: arrival -> page PUBACK mean {inside:.2f} ms")
        self.say(f"  {batch_note(before, after)}; {cpu}")
        if lat["missing"]:
            self.error(f"{len(lat['missing'])} presses got no page: {lat['missing'][:10]}")
        if lat["wrong"]:
            self.error(f"{len(lat['wrong'])} pages did not match their press")
        if lat["extra"]:
            self.error(f"{len(lat['extra'])} unexpected messages on pager topics")
        if any(f["acked"] < f["sent"] for f in bg):
            self.error("the broker did not acknowledge every background message")
        # Nothing lost: every background message and every press is committed.
        _, n = wait_committed(poll, "telemetry", bg_sent, [], 30 + bg_sent / 500)
        if n != bg_sent:
            self.error(f"background telemetry: {n:,} of {bg_sent:,} committed")
        _, n = wait_committed(poll, "events", len(presses) + len(warmup), [], 30)
        if n != len(presses) + len(warmup):
            self.error(f"presses: {n} of {len(presses) + len(warmup)} committed")

    def ingest(self, channel: str, port: int, gw: Cluster, poll: Engine, usage: Usage) -> None:
        plan = self.plan
        total = plan.telemetry if channel == "telemetry" else plan.events
        metric = "telemetry ingest" if channel == "telemetry" else "event ingest"
        devices = self.devices[:INGEST_DEVICES]
        already = count_rows(poll, channel)
        workers = Workers()
        go = CTX.Event()
        n_pub = max(1, plan.publishers)
        tags = [f"{channel[:2]}{w}" for w in range(n_pub)]
        counts = [total // n_pub + (1 if w < total % n_pub else 0) for w in range(n_pub)]
        last_keys = []
        spy = None
        try:
            for w, tag in enumerate(tags):
                mine = devices[w::n_pub]
                workers.start(tag, burst_worker, port, self.base, channel, mine, counts[w], go)
                if counts[w]:
                    last_keys.append(
                        (mine[(counts[w] - 1) % len(mine)][0], f"{tag}-{counts[w] - 1}")
                    )
            workers.wait_ready(tags, 60)
            spy = self._spy(gw.pid, channel)
            before = gw.stats()
            usage.begin()
            go.set()
            done, n = wait_committed(poll, channel, already + total, last_keys, 30 + total / 400)
            cpu = usage.end()
            after = gw.stats()
            workers.wait_done(tags, 150)
        finally:
            self._unspy(spy)
            workers.close()
        figs = [workers.figures[t] for t in tags]
        first = min(f["first"] for f in figs)
        committed = n - already
        seconds = done - first
        rate = total / seconds if committed == total else float("nan")
        published = total / max(1e-9, max(f["acked_at"] for f in figs) - first)
        self.result.values[metric] = rate
        noun = "events" if channel == "events" else "messages"
        self.say(
            f"{channel} ingest: {total:,} {noun} from {len(devices):,} devices committed in "
            f"{seconds:.2f} s = {rate:,.0f} {noun}/s; {committed:,} of {total:,} there "
            f"(publishers: {published:,.0f} msg/s acked by the broker, "
            f"{sum(f['cpu_s'] for f in figs):.1f} cpu s)"
        )
        self.say(f"  {batch_note(before, after)}; {cpu}")
        if committed != total:
            self.error(f"{channel}: only {committed:,} of {total:,} committed (lost or too slow)")
        if any(f["acked"] < c for f, c in zip(figs, counts, strict=True)):
            self.error(f"{channel}: the broker did not acknowledge every message published")


# --- the whole benchmark ----------------------------------------------------------------------


def summarize(results: list[RunResult], dbs: list[str]) -> list[list[str]]:
    """Rows of the final table: db, metric, median, runs, target, met."""
    rows = [["db", "metric", "median", "runs", "target", "met"]]
    for db in dbs:
        mine = [r for r in results if r.db == db]
        for t in TARGETS:
            vals = [r.values[t.metric] for r in mine if t.metric in r.values]
            vals = [v for v in vals if not math.isnan(v)]
            med = statistics.median(vals) if vals else float("nan")
            fmt = "{:,.2f}" if t.unit == "ms" else "{:,.0f}"
            met = t.met(med)
            rows.append(
                [
                    db,
                    f"{t.metric} ({t.unit})",
                    fmt.format(med) if vals else "n/a",
                    ", ".join(fmt.format(v) for v in vals) or "n/a",
                    t.describe(),
                    "-" if met is None else ("yes" if met else "NO"),
                ]
            )
    return rows


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_alarm_path",
        description="Page latency under load and sustained ingest, on SQLite and PostgreSQL.",
    )
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--runs", type=int, default=None, help="runs per database (default 3; 1 quick)")
    p.add_argument("--quick", action="store_true", help="a short smoke run (few hundred messages)")
    p.add_argument("--presses", type=int, help="measured presses per run (default 200)")
    p.add_argument("--telemetry", type=int, help="telemetry messages per run (default 40,000)")
    p.add_argument("--events", type=int, help="events per run (default 16,000)")
    p.add_argument("--publishers", type=int, help="publisher processes for ingest (default 2)")
    p.add_argument(
        "--background-rate", type=int, help="telemetry msg/s during the presses (default 2,000)"
    )
    p.add_argument(
        "--gateways",
        type=int,
        default=1,
        help="gateway processes sharing the topics (MQTT 5 shared subscriptions; PostgreSQL only)",
    )
    p.add_argument(
        "--plans",
        choices=["explicit", "policy"],
        default="explicit",
        help="each elder's plan of their own (issue 2, the default), or the policy's plan made "
        "at each press from the elder's pairing and the duty roster (issue 3)",
    )
    p.add_argument("--json", type=Path, help="also write every run's figures to this file")
    p.add_argument("--py-spy", type=Path, help="record the gateway with py-spy into this folder")
    args = p.parse_args(argv)
    if args.gateways < 1 or (args.gateways > 1 and args.db != "postgres"):
        p.error("--gateways above 1 needs --db postgres (one SQLite file, one process)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else Plan()
    overrides = {
        k: v
        for k, v in (
            ("presses", args.presses),
            ("telemetry", args.telemetry),
            ("events", args.events),
            ("publishers", args.publishers),
            ("background_rate", args.background_rate),
        )
        if v is not None
    }
    plan = Plan(**{**plan.__dict__, **overrides})
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    print(
        f"alarm-path benchmark: {', '.join(dbs)}; {runs} run(s) each; {plan.presses} presses "
        f"{plan.spacing_s * 1000:.0f} ms apart under {plan.background_rate:,} telemetry msg/s; "
        f"{plan.telemetry:,} telemetry and {plan.events:,} events from {INGEST_DEVICES:,} "
        f"devices via {plan.publishers} publisher processes; "
        f"{args.gateways} gateway process(es); {args.plans} plans; {os.cpu_count()} CPUs",
        flush=True,
    )
    results: list[RunResult] = []
    started = time.monotonic()
    for db in dbs:
        for n in range(1, runs + 1):
            results.append(Run(db, n, plan, args.py_spy, args.gateways, args.plans).execute())
    print(f"\nsummary (median of runs; {time.monotonic() - started:.0f} s in all)\n")
    print_table(summarize(results, dbs))
    errors = [f"{r.db} run {r.run}: {e.splitlines()[0]}" for r in results for e in r.errors]
    if args.json is not None:
        args.json.write_text(
            json.dumps([r.__dict__ for r in results], indent=2, default=str, allow_nan=True)
        )
    if errors:
        print(f"\n{len(errors)} error(s):", *errors, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
