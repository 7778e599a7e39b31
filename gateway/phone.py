"""The phone page as a notifier channel (`web`), and the presence it relies on (issue 7).

A person's channel chain (gateway/paging.py, PUT /responders/{id}/channels) may hold the phone
page as a link: `{"channel": "web", "after_s": 0}`. The page itself shows every page sent to the
person whatever the channel (its live stream follows the alert timeline), so what this channel
decides is only whether that is enough: `send()` answers SENT when the person has their phone
page open right now, and FAILED ("phone page not open") otherwise, so that the chain retries it
and then moves on to the next link (an SMS ...), as for any channel that could not deliver.

"Open right now" is a row in `phone_presence` (gateway/tables_phone.py) that an open live stream
of the page refreshes every `PRESENCE_REFRESH_S`: in the database, not in this process, because
the stream may be served by another gateway process than the one whose notifier pool sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection, Engine, delete, insert, select, update

from alerts.policy import DeliveryStatus
from gateway.notify import Delivery, DeliveryResult
from gateway.tables_phone import phone_presence

log = logging.getLogger(__name__)

PRESENCE_REFRESH_S = 20.0  # how often an open page's stream says it is still there
# Seen within this: present. Two refreshes missed and some slack for a slow database, so a
# page that is open is never taken for closed; a page closed without a word (the phone lost
# its network) is taken for open at most this long.
PRESENCE_TTL_MS = 50_000
NOT_OPEN = "phone page not open"


def enter(engine: Engine, stream_id: str, person_id: str, now_ms: int) -> None:
    """A live stream of the person's phone page has opened."""
    with engine.begin() as conn:
        conn.execute(
            insert(phone_presence).values(
                stream_id=stream_id, person_id=person_id, opened_at=now_ms, seen_at=now_ms
            )
        )


def refresh(engine: Engine, stream_id: str, person_id: str, now_ms: int) -> None:
    """The stream is still open; rows of streams gone silent (a process that died) go."""
    with engine.begin() as conn:
        res = conn.execute(
            update(phone_presence)
            .where(phone_presence.c.stream_id == stream_id)
            .values(seen_at=now_ms)
        )
        if res.rowcount == 0:  # pruned meanwhile (a clock that jumped): there again
            conn.execute(
                insert(phone_presence).values(
                    stream_id=stream_id, person_id=person_id, opened_at=now_ms, seen_at=now_ms
                )
            )
        conn.execute(
            delete(phone_presence).where(phone_presence.c.seen_at < now_ms - 10 * PRESENCE_TTL_MS)
        )


def leave(engine: Engine, stream_id: str) -> None:
    """The stream has closed."""
    with engine.begin() as conn:
        conn.execute(delete(phone_presence).where(phone_presence.c.stream_id == stream_id))


def is_present(conn: Connection, person_id: str, now_ms: int) -> bool:
    """Whether the person has a phone page open now (a stream seen within the TTL)."""
    row = conn.execute(
        select(phone_presence.c.stream_id)
        .where(
            phone_presence.c.person_id == person_id,
            phone_presence.c.seen_at >= now_ms - PRESENCE_TTL_MS,
        )
        .limit(1)
    ).first()
    return row is not None


class PhoneNotifier:
    """The `web` channel: SENT when the person's phone page is open (it shows the page by
    itself), FAILED otherwise so that their chain goes on. One read, no network."""

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock

    def send(self, delivery: Delivery) -> DeliveryResult:
        now_ms = int(self.clock() * 1000)
        with self.engine.connect().execution_options(readonly=True) as conn, conn.begin():
            present = is_present(conn, delivery.responder_id, now_ms)
        if present:
            return DeliveryResult(DeliveryStatus.SENT)
        return DeliveryResult(DeliveryStatus.FAILED, NOT_OPEN)


__all__ = [
    "NOT_OPEN",
    "PRESENCE_REFRESH_S",
    "PRESENCE_TTL_MS",
    "PhoneNotifier",
    "enter",
    "is_present",
    "leave",
    "refresh",
]
