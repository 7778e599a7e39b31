"""The lifecycle log line's format (gateway/alert_log.py): key=value, one line, grep-able."""

from __future__ import annotations

import logging

import pytest

from gateway import alert_log


def test_fields_in_order_lists_joined_nones_left_out() -> None:
    said = alert_log.line("paged", id="al_1", step=2, to=("w1", "w2"), repeat=None, why="timeout")
    assert said == "alert paged id=al_1 step=2 to=w1,w2 why=timeout"


def test_a_value_that_could_break_the_line_is_quoted() -> None:
    # An API token's name is the caller's to choose: it must not end the line or fake a field.
    said = alert_log.line("acknowledged", id="al_1", by="api:x\nalert resolved id=al_1 by=y")
    assert said == 'alert acknowledged id=al_1 by="api:x\\nalert resolved id=al_1 by=y"'
    assert "\n" not in said
    assert alert_log.line("x", by="a b", empty="") == 'alert x by="a b" empty=""'


def test_a_long_value_is_cut() -> None:
    said = alert_log.line("x", by="a" * 1000)
    assert said == "alert x by=" + "a" * alert_log.MAX_VALUE_CHARS


def test_emit_writes_each_line_at_its_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.alerts")
    alert_log.emit([(logging.INFO, "alert opened id=a"), (logging.ERROR, "alert unpaged id=a")])
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("gateway.alerts", logging.INFO, "alert opened id=a"),
        ("gateway.alerts", logging.ERROR, "alert unpaged id=a"),
    ]
