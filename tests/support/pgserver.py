"""A private PostgreSQL server in a temporary directory, so a test can restart its database."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.process import free_port


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


class PrivatePostgres:
    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise FileNotFoundError("pg_ctl not found (Debian package postgresql)")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="shouwang-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # the server refuses to run as root
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def _ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w", *args
        )

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self._ctl("start")

    def restart(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "restart")

    def stop(self) -> None:
        try:
            self._ctl("-m", "fast", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
