"""A private Mosquitto on a free loopback port, with persistence (unless told otherwise), so a test
can restart it.

`PrivateMosquitto(locked=True, extra_config=...)` starts one that refuses anonymous clients,
with the given lines added to its configuration (e.g. `password_file {dir}/passwd`, where
`{dir}` is the broker's own directory, written before `start()`), and
`reload()` sends it SIGHUP, on which Mosquitto reads those files again.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.process import free_port

CONFIG = """\
listener {port} 127.0.0.1
allow_anonymous {anonymous}
persistence {persistence}
persistence_location {dir}/
autosave_interval 1
max_queued_messages 1000000
max_inflight_messages 100
set_tcp_nodelay true
log_dest file {dir}/mosquitto.log
"""


def mosquitto_bin() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


class PrivateMosquitto:
    def __init__(
        self, *, locked: bool = False, extra_config: str = "", persistence: bool = True
    ) -> None:
        """`persistence=False`: a broker that forgets every session when it restarts."""
        binary = mosquitto_bin()
        if binary is None:
            raise FileNotFoundError("mosquitto not found (Debian package mosquitto)")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="shouwang-mqtt-"))
        self.port = free_port()
        self.conf = self.dir / "mosquitto.conf"
        config = CONFIG.format(
            port=self.port,
            dir=self.dir,
            anonymous="false" if locked else "true",
            persistence="true" if persistence else "false",
        )
        config += extra_config.format(dir=self.dir)
        if os.geteuid() == 0:
            # Started as root, Mosquitto drops to the user `mosquitto`, which could then not
            # write its persistence file here: every session would be lost on a restart.
            try:
                pwd.getpwnam("mosquitto")
                shutil.chown(self.dir, "mosquitto")
            except KeyError:
                config += "user root\n"
        self.conf.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistence file (queued QoS 1 messages) and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its password and ACL files again."""
        assert self.proc is not None and self.proc.poll() is None, "mosquitto is not running"
        self.proc.send_signal(signal.SIGHUP)

    def restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "mosquitto.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"
