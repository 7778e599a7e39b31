"""Helpers for tests of the garbage collector's policy (gateway/collector.py)."""

from __future__ import annotations

import gc
import weakref
from typing import Any


class _Node:
    other: _Node


def garbage_in_oldest_generation() -> weakref.ref[_Node]:
    """A reference cycle that survives the young generations, then becomes garbage: only a
    full collection can free it. Returns a weak reference that dies with it."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gc.collect(1)  # survivors of generation 1 move to the oldest
    gc.collect(1)
    return weakref.ref(a)


def churn(until_dead: weakref.ref[Any] | None = None, rounds: int = 20) -> int:
    """Allocate the way a busy worker does (objects that live a while, then die), so that the
    interpreter collects on its own; stop early once `until_dead` has died. Returns the rounds
    made. A full collection comes once what moved to the oldest generation since the last one
    is a quarter of what was there: a process with a large heap needs more rounds."""
    for n in range(1, rounds + 1):
        keep: list[list[int]] = []
        for i in range(300_000):
            keep.append([i])
            if len(keep) > 50_000:
                keep = []
        if until_dead is not None and until_dead() is None:
            return n
    return rounds
