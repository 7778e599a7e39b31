"""The live feed behind the pages: alert events as they are written, pushed as Server-Sent Events.

One `LiveFeed` per process tails the `alert_events` table by its id (a cursor, one indexed query
every `poll_s`) and fans each new row out to the page streams subscribed to it (the station
board, a watcher's phone). It reads the table, not an in-process signal, so that an event written
by another gateway process (several gateways on one PostgreSQL) reaches every page all the same,
and a page that reconnects with `Last-Event-ID` gets what it missed from the table.

A subscriber too slow to keep up is not waited for: its queue is bounded, and once full it is
told to `resync` (load its snapshot again) and dropped. The feed never blocks the alarm path: it
only reads, on its own short read-only transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select
from starlette.responses import StreamingResponse

from gateway.tables import alert_events

log = logging.getLogger(__name__)

QUEUE_MAX = 1000  # events a subscriber may lag behind before it is told to resync
REPLAY_MAX = 1000  # events replayed to a page that reconnects with Last-Event-ID
BATCH = 500  # rows read per poll
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One `alert_events` row, as the feed hands it on."""

    id: int
    alert_id: str
    at: int  # ms since the epoch
    type: str
    actor: str | None
    detail: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alert_id": self.alert_id,
            "at": self.at,
            "type": self.type,
            "actor": self.actor,
            "detail": self.detail,
        }


RESYNC = "resync"  # what a lagging subscriber receives last


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue[LiveEvent | str] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    dropped: bool = False


def _rows_after(engine: Engine, cursor: int, limit: int) -> list[LiveEvent]:
    ae = alert_events.c
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        rows = conn.execute(
            select(ae.id, ae.alert_id, ae.at, ae.type, ae.actor, ae.detail)
            .where(ae.id > cursor)
            .order_by(ae.id)
            .limit(limit)
        ).all()
    return [LiveEvent(r.id, r.alert_id, r.at, r.type, r.actor, r.detail) for r in rows]


def _head(engine: Engine) -> int:
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        return int(conn.execute(select(func.coalesce(func.max(alert_events.c.id), 0))).scalar())


class LiveFeed:
    """Tails `alert_events` while anyone listens; started on the first subscriber."""

    def __init__(self, engine: Engine, poll_s: float = 0.1) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._cursor = await asyncio.to_thread(_head, self.engine)
            self._task = asyncio.create_task(self._run(), name="shouwang-live-feed")

    async def _run(self) -> None:
        while self._subs:
            try:
                rows = await asyncio.to_thread(_rows_after, self.engine, self._cursor, BATCH)
            except Exception:  # the database is down: pages wait, the feed goes on trying
                log.warning("live feed: cannot read alert events", exc_info=True)
                await asyncio.sleep(min(2.0, self.poll_s * 10))
                continue
            for ev in rows:
                self._cursor = ev.id
                self._fan_out(ev)
            if len(rows) < BATCH:
                await asyncio.sleep(self.poll_s)

    def _fan_out(self, ev: LiveEvent) -> None:
        for sub in list(self._subs):
            try:
                sub.queue.put_nowait(ev)
            except asyncio.QueueFull:
                self._drop(sub)

    def _drop(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        sub.dropped = True
        with contextlib.suppress(asyncio.QueueEmpty):
            sub.queue.get_nowait()  # make room for the last word
        sub.queue.put_nowait(RESYNC)

    async def events(self, since: int | None = None) -> AsyncIterator[LiveEvent | str]:
        """The events after `since` (the last id a page saw; None: from now on), then each new
        one as it is written; `RESYNC` (and the end) when the page must load its snapshot."""
        sub = Subscription()
        await self._ensure_running()
        self._subs.add(sub)
        try:
            if since is not None:
                replay = await asyncio.to_thread(_rows_after, self.engine, since, REPLAY_MAX + 1)
                if len(replay) > REPLAY_MAX:
                    yield RESYNC
                    return
                seen = since
                for ev in replay:
                    seen = ev.id
                    yield ev
            else:
                seen = -1
            while True:
                item = await sub.queue.get()
                if isinstance(item, str):
                    yield item
                    return
                if item.id > seen:  # the replay and the tail may overlap
                    yield item
        finally:
            self._subs.discard(sub)


def sse_message(event: str, data: Any, id: int | None = None) -> str:
    """One Server-Sent Events message (`event`, JSON `data`, optional `id`)."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def last_event_id(header: str | None) -> int | None:
    """The `Last-Event-ID` a reconnecting EventSource sends, when it is one of ours."""
    if header and header.isdigit() and len(header) < 19:
        return int(header)
    return None


def sse_response(messages: Callable[[], AsyncIterator[str]]) -> StreamingResponse:
    """Stream `messages()` (already formatted by `sse_message`) as text/event-stream, with a
    keep-alive comment whenever nothing was sent for `KEEPALIVE_S`."""

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"  # how soon the browser reconnects after a drop
        it = messages().__aiter__()
        nxt: asyncio.Task[str] | None = None
        try:
            while True:
                if nxt is None:
                    nxt = asyncio.ensure_future(it.__anext__())
                done, _ = await asyncio.wait({nxt}, timeout=KEEPALIVE_S)
                if not done:
                    yield ": keep-alive\n\n"
                    continue
                try:
                    msg = nxt.result()
                except StopAsyncIteration:
                    return
                nxt = None
                yield msg
        finally:
            if nxt is not None:
                nxt.cancel()
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


__all__ = [
    "RESYNC",
    "LiveEvent",
    "LiveFeed",
    "last_event_id",
    "sse_message",
    "sse_response",
]
