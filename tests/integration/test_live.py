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
