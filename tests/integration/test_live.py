"""gateway/live.py's stream wrapper: a stream ends after its time so that the caller is checked
again on reconnect, and keeps an idle connection alive in between."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from gateway import live
from gateway.live import sse_message, sse_response


async def _collect(max_s: float, keepalive_s: float) -> tuple[list[str], float]:
    async def messages() -> AsyncIterator[str]:
        yield sse_message("alert", {"n": 1}, id=1)
        await asyncio.sleep(3600)  # nothing more: only the end of the stream stops this
        yield sse_message("alert", {"n": 2}, id=2)

    old = live.KEEPALIVE_S
    live.KEEPALIVE_S = keepalive_s
    try:
        response = sse_response(messages, max_s=max_s)
        started = time.monotonic()
        got = [str(chunk) async for chunk in response.body_iterator]
        return got, time.monotonic() - started
    finally:
        live.KEEPALIVE_S = old


def test_a_stream_ends_after_its_time_with_keep_alives_in_between() -> None:
    got, took = asyncio.run(_collect(max_s=0.6, keepalive_s=0.2))
    assert 0.5 <= took < 3.0, took
    assert got[0].startswith("retry:")
    assert got[1] == 'id: 1\nevent: alert\ndata: {"n": 1}\n\n'
    assert got.count(": keep-alive\n\n") >= 1
    assert not any('"n": 2' in g for g in got)


def test_every_stream_ends_within_a_second_when_the_server_begins_to_stop() -> None:
    async def run() -> tuple[list[str], float]:
        asyncio.get_running_loop().call_later(0.3, live.CLOSING.set)  # as SIGTERM does
        return await _collect(max_s=300, keepalive_s=15)

    try:
        got, took = asyncio.run(run())
    finally:
        live.CLOSING.clear()
    assert 0.3 <= took < 2.0, took  # not the 300 s of its time (gateway/cli.py sets CLOSING)
    assert got[1] == 'id: 1\nevent: alert\ndata: {"n": 1}\n\n'


async def _until_cut(
    allowed: list[bool | Exception],
    cut_at: float,
    second_at: float,
    recheck_s: float,
    max_s: float = 30.0,
) -> tuple[list[str], float]:
    """A stream that sends one message at once and one at `second_at`, whose caller is cut off
    at `cut_at` (`allowed[0]` turns False; an exception there: the check fails); what it sent
    and how long it lasted."""

    async def messages() -> AsyncIterator[str]:
        yield sse_message("page", {"n": 1}, id=1)
        await asyncio.sleep(second_at)
        yield sse_message("page", {"n": 2}, id=2)
        await asyncio.sleep(3600)

    def check() -> bool:
        if isinstance(allowed[0], Exception):
            raise allowed[0]
        return allowed[0]

    old = live.AUTH_RECHECK_S
    live.AUTH_RECHECK_S = recheck_s
    try:
        asyncio.get_running_loop().call_later(cut_at, allowed.__setitem__, 0, False)
        response = sse_response(messages, max_s=max_s, allowed=check)
        started = time.monotonic()
        got = [str(chunk) async for chunk in response.body_iterator]
        return got, time.monotonic() - started
    finally:
        live.AUTH_RECHECK_S = old


def test_a_stream_ends_on_its_timer_once_its_caller_is_cut_off() -> None:
    got, took = asyncio.run(_until_cut([True], cut_at=0.3, second_at=3600, recheck_s=0.2))
    assert 0.3 <= took < 2.0, took  # the next check after the cut, not the stream's 30 s
    assert got[1] == 'id: 1\nevent: page\ndata: {"n": 1}\n\n'


def test_a_message_for_a_caller_cut_off_since_the_last_check_is_not_sent() -> None:
    # The timer would not look again for a minute: the check before the message does.
    got, took = asyncio.run(_until_cut([True], cut_at=0.2, second_at=0.4, recheck_s=60))
    assert not any('"n": 2' in g for g in got), got
    assert took < 2.0, took
    assert got[1] == 'id: 1\nevent: page\ndata: {"n": 1}\n\n'


def test_a_check_that_fails_keeps_the_stream_going() -> None:
    # The database down for a moment: the person keeps getting their pages until it is back.
    down: list[bool | Exception] = [RuntimeError("database down")]
    got, took = asyncio.run(_until_cut(down, cut_at=3600, second_at=0.3, recheck_s=0.1, max_s=1))
    assert any('"n": 2' in g for g in got), got
    assert took >= 0.9, took  # it ran its time
