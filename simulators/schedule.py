"""A tiny timer thread: run callables at monotonic times, off paho's network thread.

Delayed pager replies, telemetry and demo incidents are scheduled here, so that no paho callback
ever sleeps or publishes from its own thread. Calls run one after another on one thread; a call
that raises is logged and the scheduler goes on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class _Entry:
    __slots__ = ("args", "cancelled", "fn", "seq", "when")

    def __init__(self, when: float, seq: int, fn: Callable[..., Any], args: tuple[Any, ...]):
        self.when = when
        self.seq = seq
        self.fn = fn
        self.args = args
        self.cancelled = False

    def __lt__(self, other: _Entry) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class Handle:
    """What `call_at` / `call_later` return: `cancel()` it to drop the call if not yet run."""

    __slots__ = ("_entry",)

    def __init__(self, entry: _Entry) -> None:
        self._entry = entry

    def cancel(self) -> None:
        self._entry.cancelled = True

    @property
    def when(self) -> float:
        return self._entry.when


class Scheduler:
    """One daemon thread running scheduled calls in time order (time.monotonic based)."""

    def __init__(self, name: str = "sim-scheduler") -> None:
        self._heap: list[_Entry] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Handle:
        """Run `fn(*args)` at monotonic time `when` (at once when it is past)."""
        entry = _Entry(when, next(self._seq), fn, args)
        with self._cond:
            if self._stopped:
                entry.cancelled = True
                return Handle(entry)
            heapq.heappush(self._heap, entry)
            self._cond.notify()
        return Handle(entry)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Handle:
        """Run `fn(*args)` after `delay` seconds."""
        return self.call_at(time.monotonic() + max(0.0, delay), fn, *args)

    def pending(self) -> int:
        """How many calls wait (cancelled ones included until their time comes)."""
        with self._cond:
            return len(self._heap)

    def stop(self, timeout: float = 5.0) -> None:
        """Drop what is pending and end the thread (waits up to `timeout` for a running call)."""
        with self._cond:
            self._stopped = True
            for entry in self._heap:
                entry.cancelled = True
            self._heap.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait(1.0)
                        continue
                    delay = self._heap[0].when - time.monotonic()
                    if delay <= 0:
                        break
                    self._cond.wait(min(delay, 1.0))
                if self._stopped:
                    return
                entry = heapq.heappop(self._heap)
            if entry.cancelled:
                continue
            try:
                entry.fn(*entry.args)
            except Exception:
                log.exception("scheduled call %r failed", entry.fn)
