"""A gateway in its own process (`python -m gateway run`), to kill with SIGKILL and restart;
`free_port()` for the servers the tests start."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

# Ports for the servers the tests start (Mosquitto, gateways, PostgreSQL, VictoriaMetrics):
# `free_port()` checks that a port is free and the server binds it a moment later. Taken from
# below the kernel's ephemeral range, no outgoing connection (to PostgreSQL, a broker, a
# gateway) can be given one of them in that moment, and under pytest-xdist each worker hands out
# ports from a slice of its own, so two workers never hand out the same one. Within a slice the
# ports are taken in turn from a random start (another test session on the machine starts
# elsewhere) and a port is not handed out again until the slice has gone round.
PORTS_FROM = 10000
_ports_lock = threading.Lock()
_next_port: int | None = None


def _ephemeral_start() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return low


def _port_slice() -> tuple[int, int]:
    """[low, high) for this process: a worker's share of the ports below the ephemeral range."""
    first, end = PORTS_FROM, _ephemeral_start()
    if end - first < 2000:  # an unusual ephemeral range: share out all the non-root ports
        first, end = 1024, 65536
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ... under pytest-xdist
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), 1)
    index = int(worker[2:]) % count if worker.startswith("gw") and worker[2:].isdigit() else 0
    size = (end - first) // count
    low = first + index * size
    return low, low + size


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback port nobody listens on, for a server this test is about to start."""
    global _next_port
    low, high = _port_slice()
    with _ports_lock:
        if _next_port is None or not low <= _next_port < high:
            _next_port = low + random.randrange(high - low)
        for _ in range(high - low):
            port = _next_port
            _next_port = low if _next_port + 1 >= high else _next_port + 1
            if _bindable(port):
                return port
    raise RuntimeError(f"no free port in {low}-{high - 1}")


class GatewayProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.http_port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SHOUWANG_")},
            "SHOUWANG_HTTP_PORT": str(self.http_port),
            "SHOUWANG_ADMIN_TOKEN": "test-admin-token",
            "SHOUWANG_LOG_LEVEL": "INFO",
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 20.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway not healthy after {timeout}s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
