"""Escalation plans: steps of responders, each with an acknowledgement timeout.

Step numbers are 1-based, as on the pages. After the last step times out, the last step is paged
again every `ack_timeout_s` until someone answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MIN_ACK_TIMEOUT_S = 5
MAX_ACK_TIMEOUT_S = 86_400
MAX_STEPS = 10


class PlanError(ValueError):
    """An escalation plan that cannot be used, with the reason."""


@dataclass(frozen=True, slots=True)
class Step:
    responder_ids: tuple[str, ...]
    ack_timeout_s: int


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise PlanError("a plan needs at least one step")
        if len(self.steps) > MAX_STEPS:
            raise PlanError(f"a plan has at most {MAX_STEPS} steps")
        for n, step in enumerate(self.steps, 1):
            if not step.responder_ids:
                raise PlanError(f"step {n} names no responder")
            if len(set(step.responder_ids)) != len(step.responder_ids):
                raise PlanError(f"step {n} names a responder twice")
            if not MIN_ACK_TIMEOUT_S <= step.ack_timeout_s <= MAX_ACK_TIMEOUT_S:
                raise PlanError(
                    f"step {n}: ack_timeout_s must be {MIN_ACK_TIMEOUT_S}..{MAX_ACK_TIMEOUT_S}"
                )

    @property
    def last(self) -> int:
        return len(self.steps)

    def step(self, number: int) -> Step:
        """Step `number` (1-based); past the end, the last step (it repeats)."""
        if number < 1:
            raise PlanError("steps start at 1")
        return self.steps[min(number, self.last) - 1]

    def after(self, number: int) -> int:
        """The step paged when step `number` times out or is declined."""
        return min(number + 1, self.last)

    def responder_ids(self) -> set[str]:
        return {r for s in self.steps for r in s.responder_ids}

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"responder_ids": list(s.responder_ids), "ack_timeout_s": s.ack_timeout_s}
            for s in self.steps
        ]

    @classmethod
    def from_json(cls, steps: Iterable[Mapping[str, Any]]) -> Plan:
        """A plan from its stored form; PlanError for anything malformed."""
        if not isinstance(steps, list | tuple):
            raise PlanError("a plan is a list of steps")
        parsed = []
        for n, s in enumerate(steps, 1):
            if not isinstance(s, Mapping):
                raise PlanError(f"step {n}: a step is an object with responder_ids")
            ids, timeout = s.get("responder_ids"), s.get("ack_timeout_s")
            if not isinstance(ids, list) or not all(isinstance(r, str) for r in ids):
                raise PlanError(f"step {n}: responder_ids must be a list of ids")
            if not isinstance(timeout, int) or isinstance(timeout, bool):
                raise PlanError(f"step {n}: ack_timeout_s must be a whole number of seconds")
            parsed.append(Step(tuple(ids), timeout))
        return cls(tuple(parsed))
