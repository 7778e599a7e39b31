"""Tables of the station board (issue 7): who an alert is assigned to (migration 0012), and the
refused alarms staff dismissed (0016).

They share gateway.tables' metadata (imported at the end of that module).

An assignment is the station staff's "you go" (指派): one row per alert, the CURRENT assignee,
replaced by a new assignment. Every assignment is also an `assigned` event on the alert's
timeline (the history, and what the live board is pushed). A table of its own rather than a
column on `alerts`: `alerts` is the alarm path's hot table, rebuilt by SQLite's batch ALTER, and
its rows are written in one statement per press; the board's bookkeeping stays out of it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, String, Table, Text

from gateway.tables import metadata

__all__ = ["alert_assignments", "quarantine_dismissals"]

alert_assignments = Table(
    "alert_assignments",
    metadata,
    Column("alert_id", String(40), ForeignKey("alerts.id"), primary_key=True),
    Column("responder_id", String(40), ForeignKey("responders.id"), nullable=False, index=True),
    Column("assigned_at", BigInteger, nullable=False),
    Column("assigned_by", String(120), nullable=False),
    Column("note", Text),
)

# A refused alarm (gateway/refused_alarms.py) that staff have looked into: it leaves the board's
# banner. Kept, never deleted: who dismissed it and when is the audit of that decision. Created
# by migration 0016.
quarantine_dismissals = Table(
    "quarantine_dismissals",
    metadata,
    Column("quarantine_id", BigInteger, ForeignKey("quarantine.id"), primary_key=True),
    Column("dismissed_at", BigInteger, nullable=False),
    Column("dismissed_by", String(120), nullable=False),
    Column("note", Text),
)
