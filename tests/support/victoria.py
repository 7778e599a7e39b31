"""A private VictoriaMetrics on a free loopback port: a real server speaking the InfluxDB v2
write protocol (`/api/v2/write`), for the telemetry sink's tests and benchmark.

What it does with InfluxDB writes (checked by `speaks_influx_v2`): the series is named
`<measurement>_<field>`, tags become labels, the `bucket` and `org` query parameters are
dropped (so the sink also sends a `bucket` tag), string fields are stored as 0, time is trimmed
to milliseconds. It has no Flux: read back with `/api/v1/export`.

Reading back at once: VictoriaMetrics 1.79 makes a written sample searchable up to about a
second later (its in-memory parts are flushed every second), and `/internal/force_flush` did
not shorten that here. `-search.disableCache` keeps a query from being answered from a cache
made before the write, and `-search.latencyOffset=1s` (FIELD-NOTES) keeps range queries from
hiding the last minute; `/api/v1/export` is read again until what is expected is there, within
a time limit (`wait_export`).

Started with its own `-storageDataPath` in a temporary folder, stopped by its PID (SIGTERM,
then SIGKILL), restartable on the same port with the same data.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.process import free_port

BINARY = "victoria-metrics"


def victoria_bin() -> str | None:
    return shutil.which(BINARY) or (
        "/usr/bin/victoria-metrics" if Path("/usr/bin/victoria-metrics").exists() else None
    )


class PrivateVictoria:
    def __init__(self) -> None:
        binary = victoria_bin()
        if binary is None:
            raise FileNotFoundError("victoria-metrics not found (Debian package victoria-metrics)")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="shouwang-vm-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        log = (self.dir / "victoria.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.dir / 'data'}",
                "-retentionPeriod=1d",
                "-search.latencyOffset=1s",
                "-search.disableCache",
                "-loggerLevel=WARN",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"victoria-metrics exited with {self.proc.returncode}: {self.log()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"victoria-metrics did not answer on {self.port}: {self.log()}")

    def stop(self) -> None:
        """SIGTERM to its PID (it flushes and exits), SIGKILL if it does not within 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "victoria.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    # --- reading back ----------------------------------------------------------------------

    def force_flush(self) -> None:
        httpx.get(f"{self.url}/internal/force_flush", timeout=5)

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every series matching the selector, with its values and ms timestamps."""
        self.force_flush()
        resp = httpx.post(f"{self.url}/api/v1/export", data={"match[]": match}, timeout=10)
        resp.raise_for_status()
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]

    def wait_export(
        self,
        match: str,
        pred: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Export again until `pred` holds (samples become searchable about 1 s after a write)."""
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            got = self.export(match)
            if pred(got):
                return got
            time.sleep(0.2)
        raise AssertionError(f"VictoriaMetrics: {match} not as expected after {timeout}s: {got}")

    def speaks_influx_v2(self) -> None:
        """Write one point through /api/v2/write and read it back through /api/v1/export."""
        probe = "probe" + uuid.uuid4().hex[:8]
        ts = int(time.time() * 1000)
        resp = httpx.post(
            f"{self.url}/api/v2/write",
            params={"org": "o", "bucket": "b", "precision": "ms"},
            content=f"{probe},device=d\\ 1 v=1.5 {ts}".encode(),
            timeout=5,
        )
        assert resp.status_code == 204, resp.text
        self.wait_export(
            f"{probe}_v",
            lambda got: (
                len(got) == 1
                and got[0]["metric"].get("device") == "d 1"
                and got[0]["values"] == [1.5]
                and got[0]["timestamps"] == [ts]
            ),
        )


def samples(series: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(timestamp ms, value) of every sample of the series, sorted."""
    out: list[tuple[int, float]] = []
    for s in series:
        out.extend(zip(s["timestamps"], s["values"], strict=True))
    return sorted(out)
