"""Tables of the care records (issue 4): registry, people, health records, assessments, family
links, audit log.

They share gateway.tables' metadata (imported at the end of that module), so the migrations and
their check see every table. Times are epoch milliseconds (UTC) in BIGINT columns.
"""

from __future__ import annotations

from gateway.tables import metadata

__all__ = ["metadata"]
