"""The worker's copies of decoded rule states (`Ruling.cache`): used while the stored version
is the same, and, when full, kept for the states already there, so that devices reporting in
turn find their copies instead of evicting each other's."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import ruling


@pytest.fixture
def rules(monkeypatch: pytest.MonkeyPatch) -> ruling.Ruling:
    monkeypatch.setattr(ruling, "CACHE_MAX", 3)
    return ruling.Ruling(service=Any, base="t")  # type: ignore[arg-type]  # the cache needs none


def test_a_copy_is_used_only_for_its_version(rules: ruling.Ruling) -> None:
    rules.cache(("d1", "water"), 1, "v1")
    assert rules.cached(("d1", "water"), 1) == "v1"
    assert rules.cached(("d1", "water"), 2) is None  # written since: read it again
    rules.cache(("d1", "water"), 2, "v2")
    assert rules.cached(("d1", "water"), 2) == "v2"
    assert rules.cached(("d1", "gas"), 1) is None


def test_when_full_the_copies_kept_stay_and_are_kept_up_to_date(rules: ruling.Ruling) -> None:
    keys = [(f"d{i}", "water") for i in range(6)]
    hits = 0
    for _ in range(4):  # six devices reporting in turn, room for three
        for k in keys:
            hits += rules.cached(k, 1) is not None
            rules.cache(k, 1, k[0])
    assert hits == 3 * 3  # the first three, from the second round on (dropping the oldest: none)
    rules.cache(keys[0], 2, "new")
    assert rules.cached(keys[0], 2) == "new"
    assert rules.cached(keys[5], 1) is None
