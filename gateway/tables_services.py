"""Tables of the service module (issue 5): catalogue, providers, orders, vouchers.

They share gateway.tables' metadata (imported at the end of that module), so the migrations and
their check see every table. Times are epoch milliseconds (UTC) in BIGINT columns.
"""

from __future__ import annotations

from gateway.tables import metadata

__all__ = ["metadata"]
