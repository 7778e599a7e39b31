"""Python's cyclic garbage collector, run on the ingest worker's terms while a gateway runs.

Measured (2026-11-26, `tests/bench/bench_scale.py`, 100,000 devices, 1,000 msg/s, one process):
CPython's automatic full collections (generation 2) came every few seconds and took 128-145 ms
each, because the worker's decoded rule states (`gateway/ruling.py`, up to 50,000 states of
dozens of objects each) live in the oldest generation. A press that arrived during one waited
for it: the page p99 was 110-145 ms against a p50 of 8 ms.

So while a gateway runs, automatic full collections are off (`hold`); the young generations are
still collected as usual (under 5 ms a pass, measured). The ingest worker runs the full pass
itself (`full_pass`) every `FULL_EVERY_S`, between batches and with no alarm waiting, so a press
meets one at most once in that time. Garbage that is not in a reference cycle is freed at once
as always; what the pass finds waits at most `FULL_EVERY_S` for it.
"""

from __future__ import annotations

import gc
import threading
import time

FULL_EVERY_S = 300.0
_NEVER = 2**31 - 1  # generation 2's threshold: no automatic full collection

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] | None = None


def hold() -> None:
    """A gateway starts: automatic full collections off until the last gateway of this
    process (tests run several) has called `release`."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(_saved[0], _saved[1], _NEVER)
        _holders += 1


def release() -> None:
    """A gateway stopped: the last one gives the process its collector back as it found it."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None


def held() -> bool:
    return _holders > 0


def full_pass() -> float:
    """Collect every generation now; return the seconds it took."""
    started = time.perf_counter()
    gc.collect()
    return time.perf_counter() - started
