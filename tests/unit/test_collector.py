"""The garbage collector's policy while a gateway runs (gateway/collector.py)."""

from __future__ import annotations

import gc

import pytest

from gateway import collector
from tests.support.collect import churn, garbage_in_oldest_generation


@pytest.fixture(autouse=True)
def _no_gateway_holds() -> None:
    assert not collector.held(), "a gateway of an earlier test was left running"


def test_the_interpreter_makes_full_collections_on_its_own_without_a_gateway() -> None:
    # The control for the next test: the churn is enough for an automatic full collection.
    gc.collect()
    ref = garbage_in_oldest_generation()
    churn(until_dead=ref)
    assert ref() is None


def test_held_no_automatic_full_collection_until_a_full_pass() -> None:
    gc.collect()
    collector.hold()
    try:
        ref = garbage_in_oldest_generation()
        churn()  # as many rounds as the control may take, at most
        assert ref() is not None, "an automatic full collection ran while held"
        assert collector.full_pass() >= 0
        assert ref() is None
    finally:
        collector.release()


def test_the_last_release_gives_back_the_thresholds_as_they_were() -> None:
    before = gc.get_threshold()
    collector.hold()
    collector.hold()  # two gateways in one process
    collector.release()
    assert collector.held()
    assert gc.get_threshold()[2] > before[2]
    assert gc.get_threshold()[:2] == before[:2]  # the young generations as before
    collector.release()
    assert not collector.held()
    assert gc.get_threshold() == before
    collector.release()  # once too often: nothing happens
    assert gc.get_threshold() == before
