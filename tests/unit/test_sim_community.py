"""The simulated month (tests/bench/sim_community.py) still runs, small, and its `--ask`
variants change nothing of the world the other rules see."""

from __future__ import annotations

import re

import pytest

from tests.bench import sim_community as sc

SMALL = ["--days", "3", "--warmup", "7", "--elders", "8", "--seed", "3"]


def _rows(out: str) -> dict[str, str]:
    """The no-water table's rows, by rule (the name is padded to 22 characters)."""
    rows = {}
    for line in out.splitlines():
        name, rest = line[2:24].strip(), line[24:]
        if line.startswith("  ") and re.match(r"\s*\d+/\d+ ", rest):
            rows[name] = rest
    return rows


def _world(out: str) -> list[str]:
    """The lines that do not name the ask variants (nor the run time)."""
    return [
        line
        for line in out.splitlines()
        if "ask first" not in line and "ran in" not in line and "the tick's looks" not in line
    ]


def test_a_small_month_runs_and_asking_first_leaves_the_other_rules_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sc.main(SMALL) == 0
    plain = capsys.readouterr().out
    assert sc.main([*SMALL, "--ask"]) == 0
    asked = capsys.readouterr().out
    before, after = _rows(plain), _rows(asked)
    assert set(before) == {"learned rhythm", "fixed 12 h < 10 L"}
    assert set(after) == set(before) | set(sc.ASK)
    # Everything else is the same to the line: the answers draw from a generator of their own.
    assert _world(asked) == _world(plain)
    for name in sc.ASK:
        assert re.search(rf"{re.escape(name)}: elders asked [\d.]+ times per 100 elder-days", asked)


def test_nobody_answers_for_a_fallen_or_absent_elder() -> None:
    sim = sc.Sim(days=10, elders=30, seed=3, warmup=7, ask=True)  # planned, not run
    assert sim.falls
    for f in sim.falls:
        for after in (1, 60, 600):
            assert not sim._answers(f.elder, f.at + after)
    for e in sim.elders:
        for s, t, k in e.outings:
            if k != "nap":
                assert not sim._answers(e, (s + t) / 2)
