"""Tables of the phone page (issue 7): who has their phone page open right now.

`phone_presence`: one row per open live stream of a phone page (gateway/api_me.py), refreshed
by that stream every `PRESENCE_REFRESH_S` and deleted when it closes. The `web` notifier channel
(gateway/phone.py) asks it whether a person can be reached on their phone page: a row seen
within `PRESENCE_TTL_MS` says yes. A row per stream rather than per person, so that one page
closing does not hide another still open (a second tab, a second phone, a stream served by
another gateway process on the same database); a row left behind by a process that died
simply ages out, and is pruned by the next refresh of anyone's stream.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, String, Table

from gateway.tables import metadata

__all__ = ["phone_presence"]

phone_presence = Table(
    "phone_presence",
    metadata,
    Column("stream_id", String(40), primary_key=True),
    Column("person_id", String(40), ForeignKey("responders.id"), nullable=False, index=True),
    Column("opened_at", BigInteger, nullable=False),
    Column("seen_at", BigInteger, nullable=False, index=True),
)
