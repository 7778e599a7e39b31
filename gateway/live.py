"""The live feed behind the pages: alert events as they are written, pushed as Server-Sent Events.

One `LiveFeed` per process tails the `alert_events` table by its id (a cursor, one indexed query
every `poll_s`) and fans each new row out to the page streams subscribed to it (the station
board, a watcher's phone). It reads the table, not an in-process signal, so that an event written
by another gateway process (several gateways on one PostgreSQL) reaches every page all the same,
and a page that reconnects with `Last-Event-ID` gets what it missed from the table.

A subscriber too slow to keep up is not waited for: its queue is bounded, and once full it is
told to `resync` (load its snapshot again) and dropped. The feed never blocks the alarm path: it
only reads, on its own short read-only transactions.

Ids are drawn when a row is inserted, not when it is committed: on PostgreSQL a transaction that
drew id 100 may commit after one that drew 101 (an acknowledgement from the API while the worker
pages). A tail by id alone would pass 100 by for good. So an id the tail skips is kept as a
"hole" for `HOLE_WAIT_S` and looked for again at every poll: found, it is handed on late (out of
id order; the pages take every event as "this alert changed"); not found by then, it was rolled
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine, func, select
from starlette.responses import StreamingResponse

from gateway.tables import alert_events

log = logging.getLogger(__name__)

QUEUE_MAX = 1000  # events a subscriber may lag behind before it is told to resync
REPLAY_MAX = 1000  # events replayed to a page that reconnects with Last-Event-ID
BATCH = 500  # rows read per poll
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
STREAM_MAX_S = 300.0  # a stream ends after this; the browser reconnects and is checked again
CLOSE_POLL_S = 1.0  # how often a quiet stream looks at CLOSING
# How often an open stream asks again whether its caller may still have it (see sse_response):
# a signed-out, revoked or disabled caller stops receiving within this, not within STREAM_MAX_S.
AUTH_RECHECK_S = 2.0
# Set when the server begins to shut down (gateway/cli.py): every stream ends within
# CLOSE_POLL_S, so a SIGTERM is not held up by open boards and phones (each held it for up to
# STREAM_MAX_S); the browsers reconnect, to this gateway once it is back or to another.
CLOSING = threading.Event()
HOLE_WAIT_S = 10.0  # how long an id the tail skipped may still be committed (see the module doc)
HOLES_MAX = 5000  # ids waited for at most (a huge rolled-back batch is not waited for id by id)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One `alert_events` row, as the feed hands it on."""

    id: int
    alert_id: str
    at: int  # ms since the epoch
    type: str
    actor: str | None
    detail: dict[str, Any] | None
    late: bool = False  # committed after a later id was handed on (see the module doc)

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


def _rows_in(engine: Engine, ids: list[int]) -> list[LiveEvent]:
    ae = alert_events.c
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        rows = conn.execute(
            select(ae.id, ae.alert_id, ae.at, ae.type, ae.actor, ae.detail)
            .where(ae.id.in_(ids))
            .order_by(ae.id)
        ).all()
    return [LiveEvent(r.id, r.alert_id, r.at, r.type, r.actor, r.detail) for r in rows]


def _head(engine: Engine) -> int:
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        head = conn.execute(select(func.coalesce(func.max(alert_events.c.id), 0))).scalar()
    return int(head or 0)


class LiveFeed:
    """Tails `alert_events` while anyone listens; started on the first subscriber."""

    def __init__(self, engine: Engine, poll_s: float = 0.1) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0
        self._holes: dict[int, float] = {}  # an id the tail skipped -> when (loop time)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._cursor = await asyncio.to_thread(_head, self.engine)
            self._holes.clear()
            self._task = asyncio.create_task(self._run(), name="shouwang-live-feed")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._subs:
            try:
                late: list[LiveEvent] = []
                if self._holes:
                    now = loop.time()
                    for hole in [h for h, t in self._holes.items() if now - t > HOLE_WAIT_S]:
                        del self._holes[hole]  # never committed: rolled back
                    if self._holes:
                        late = await asyncio.to_thread(_rows_in, self.engine, sorted(self._holes))
                rows = await asyncio.to_thread(_rows_after, self.engine, self._cursor, BATCH)
            except Exception:  # the database is down: pages wait, the feed goes on trying
                log.warning("live feed: cannot read alert events", exc_info=True)
                await asyncio.sleep(min(2.0, self.poll_s * 10))
                continue
            for ev in late:
                if self._holes.pop(ev.id, None) is not None:
                    self._fan_out(replace(ev, late=True))
            for ev in rows:
                if ev.id > self._cursor + 1 and len(self._holes) < HOLES_MAX:
                    now = loop.time()
                    for hole in range(self._cursor + 1, min(ev.id, self._cursor + 1 + HOLES_MAX)):
                        self._holes[hole] = now
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
            replayed: set[int] = set()
            if since is not None:
                replay = await asyncio.to_thread(_rows_after, self.engine, since, REPLAY_MAX + 1)
                if len(replay) > REPLAY_MAX:
                    yield RESYNC
                    return
                for ev in replay:
                    replayed.add(ev.id)
                    yield ev
            while True:
                item = await sub.queue.get()
                if isinstance(item, str):
                    yield item
                    return
                # The replay and the tail may overlap; what the page saw before `since` is not
                # sent again, but an event committed late is, whatever its id.
                if item.id in replayed or (
                    since is not None and item.id <= since and not item.late
                ):
                    continue
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


def sse_response(
    messages: Callable[[], AsyncIterator[str]],
    max_s: float = STREAM_MAX_S,
    allowed: Callable[[], bool] | None = None,
) -> StreamingResponse:
    """Stream `messages()` (already formatted by `sse_message`) as text/event-stream, with a
    keep-alive comment whenever nothing was sent for `KEEPALIVE_S`. The stream ends after
    `max_s`: the browser's EventSource reconnects at once (with Last-Event-ID, so nothing is
    missed), and the reconnection is authenticated again.

    `allowed()` says whether the caller may still have the stream (their session not signed
    out, revoked or expired, their account not disabled, their token not revoked): asked before
    each message and every `AUTH_RECHECK_S`, and the stream ends at the first no, so such a
    caller stops receiving within seconds, not within `max_s` (and a phone page stops counting
    as present for delivery). The browser's reconnection is then refused (401). When `allowed`
    itself fails (the database is down for a moment) the stream goes on: a revocation is
    written to that same database, and cutting people off from their pages is the worse fault.
    """

    async def still_allowed() -> bool:
        if allowed is None:
            return True
        try:
            return await asyncio.to_thread(allowed)  # it reads the database
        except Exception:
            log.warning("live stream: cannot check its caller again; it goes on", exc_info=True)
            return True

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"  # how soon the browser reconnects after a drop
        it = messages().__aiter__()
        nxt: asyncio.Task[str] | None = None
        loop = asyncio.get_running_loop()
        ends = loop.time() + max_s
        quiet_since = loop.time()
        next_check = loop.time() + AUTH_RECHECK_S
        try:
            while True:
                now = loop.time()
                left = ends - now
                if left <= 0 or CLOSING.is_set():
                    return
                if now >= next_check:
                    if not await still_allowed():
                        return
                    next_check = loop.time() + AUTH_RECHECK_S
                if nxt is None:
                    nxt = asyncio.ensure_future(it.__anext__())
                to_keepalive = max(0.0, quiet_since + KEEPALIVE_S - loop.time())
                to_check = max(0.0, next_check - loop.time())
                wait_s = min(CLOSE_POLL_S, left, to_keepalive, to_check)
                done, _ = await asyncio.wait({nxt}, timeout=wait_s)
                if not done:
                    now = loop.time()
                    if now - quiet_since >= KEEPALIVE_S and ends - now > 0:
                        quiet_since = now
                        yield ": keep-alive\n\n"
                    continue
                try:
                    msg = nxt.result()
                except StopAsyncIteration:
                    return
                nxt = None
                # The check of the timer may be up to AUTH_RECHECK_S old: a page for a caller
                # cut off since is not sent.
                if not await still_allowed():
                    return
                next_check = loop.time() + AUTH_RECHECK_S
                quiet_since = loop.time()
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
