"""One log line per step of an alert's life, for whoever tails the gateway's log.

The alert's timeline in the database holds everything; these lines are what an on-call engineer
needs in `journalctl -f` or a log shipper: `alert opened id=al_... kind=call_button priority=P1
elder=e1 device=cb-1`, then `alert paged`, `alert escalated`, `alert acknowledged` ... `alert
resolved`, at INFO; `alert delivery failed` (a channel gave up after its retries) at WARNING;
`alert unpaged` (nobody of the plan could be reached) at ERROR. key=value, one line each, ids
only: never a name, phone number, address, PIN or note, as the log leaves the station.

A line is collected with the transaction that did the step (`Tx.logs` in gateway/alerting.py)
and written by `emit` once that transaction has committed: a line about an alert whose
transaction then rolled back (a database error, and the worker retries the message under a new
alert id) would tell the engineer about an alert that does not exist.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable

# Its own name, so that these lines can be kept, filtered or shipped apart from the rest.
log = logging.getLogger("gateway.alerts")

Line = tuple[int, str]  # (logging level, the formatted line)

# A value outside these characters is quoted (JSON), so that a field never runs into the next
# and a label with a space or a newline cannot forge a line of its own.
_PLAIN = re.compile(r"[A-Za-z0-9_.:,/@+#-]+")
MAX_VALUE_CHARS = 200


def line(what: str, **fields: object) -> str:
    """`alert <what> k=v ...`; None fields are left out, a list or tuple is comma-joined."""
    parts = [f"alert {what}"]
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            value = ",".join(str(v) for v in value) or "-"
        text = str(value)[:MAX_VALUE_CHARS]
        if not _PLAIN.fullmatch(text):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def emit(lines: Iterable[Line]) -> None:
    """Write the lines of a committed transaction, in the order they were made."""
    for level, text in lines:
        log.log(level, "%s", text)


__all__ = ["Line", "emit", "line", "log"]
