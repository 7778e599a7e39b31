"""Tests that run alone under pytest-xdist: the `solo` marker.

`make test` runs the suite in two worker processes on a machine of two cores. A test that asserts
a wall-clock bound (a page reaches the pager, the board or the phone within a second; a shutdown
returns within its flush limit) would then measure the other worker's load as much as the code.
A test marked `solo` runs while the other workers wait between two of their tests, so it sees the
machine as a serial run does, and its bound keeps its meaning.

How: every test holds a lock while it runs (setup, call and teardown), shared by ordinary tests
and exclusive for a solo test, `flock` on a file in the run's temporary folder (the same for all
the workers of one run, a new one for every run). A gate in front of it keeps the workers from
starving a solo test: a solo test waiting for the lock holds the gate, and the others wait at the
gate, not in front of the lock, until it has run. Consecutive solo tests on one worker keep the
lock. The lock is taken around pytest-timeout's timer: waiting for it does not count against a
test's timeout.

Without xdist (a serial run, `-n 0`) there is nothing to wait for and nothing is locked.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

MARKER = "solo"


def is_solo(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker(MARKER) is not None


class RunLock:
    """The lock of one test run, shared by its worker processes."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._gate = os.open(folder / "solo.gate", os.O_RDWR | os.O_CREAT, 0o666)
        self._lock = os.open(folder / "solo.lock", os.O_RDWR | os.O_CREAT, 0o666)
        self._held: int | None = None  # fcntl.LOCK_SH or fcntl.LOCK_EX

    def enter(self, solo: bool) -> None:
        want = fcntl.LOCK_EX if solo else fcntl.LOCK_SH
        if self._held == want == fcntl.LOCK_EX:
            return  # the previous test was solo too and kept it
        self.leave()
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._lock, want)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self._held = want

    def leave(self) -> None:
        if self._held is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._held = None


def run_lock(config: pytest.Config) -> RunLock | None:
    """This worker's handle on the run's lock; None outside an xdist worker."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    basetemp = config.option.basetemp  # xdist gives each worker <the run's basetemp>/<worker>
    if basetemp:
        folder = Path(basetemp).parent
    else:  # not expected: then a folder named for the run
        uid = os.environ.get("PYTEST_XDIST_TESTRUNUID", "run")
        folder = Path(tempfile.gettempdir()) / f"shouwang-solo-{uid}"
    return RunLock(folder)


__all__ = ["MARKER", "RunLock", "is_solo", "run_lock"]
