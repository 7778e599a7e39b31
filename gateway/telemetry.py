"""Telemetry beside the alarm path: hourly rollups in the database, and a sink to a time-series
store speaking the InfluxDB v2 write protocol (influxdb-client).

Rollups (`telemetry_rollups`, gateway/tables_telemetry.py): per device, per UTC hour and per
reading, count / min / max / sum, updated by `upsert_rollups` inside the ingest transaction
with ONE upsert statement per batch, so they are exact (no repeat counted twice, nothing rolled
back counted). They serve the history API (gateway/api_history.py) with or without a store.

The sink (`TelemetrySink`), used when SHOUWANG_INFLUX_URL is set. influxdb-client's batching
`WriteApi` is not used: in 1.50 its `flush()` does nothing, points not yet sent are lost unless
`close()` is called, `close()` blocks for minutes while the server is down, and its buffer has
no bound (shared/FIELD-NOTES.md). Instead:

- `offer(readings)` is called by the ingest worker after its commit. It appends to our own
  bounded buffer and returns: O(1) per reading, no I/O, never a wait on the store. When the
  buffer is full the OLDEST points are dropped and counted (`dropped`). Only telemetry comes
  here; alarms never do, and nothing on the alarm path waits for the store.
- One worker thread of ours takes up to `batch_points` points, formats them as line protocol
  and writes them with the client's SYNCHRONOUS write API (one HTTP request, a short timeout,
  no urllib3 retries). A failed batch goes back to the front of the buffer (still the oldest,
  so still the first dropped if the buffer fills) and is tried again after a back-off.
- `stop()` flushes within a time limit; what is left then is counted as dropped and logged.
- `status()` says ok / degraded / down with the last error, the last success, and the counts;
  it shows in /healthz (never as a 503: alarms do not depend on the store) and in /metrics.

Points: measurement = the device kind (`water_sensor`), tags `device`, `elder`, `community`
(from the elder's `community:...` tag, omitted when unknown) and `bucket` (stores that speak the
protocol without buckets, such as VictoriaMetrics, drop the bucket; the tag keeps it), fields =
the numeric readings as floats (always floats: a field's type never changes between points),
time = the reading's `ts` in milliseconds.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Engine,
    Float,
    String,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from devices.payloads import READINGS
from gateway.clock import Clock, rfc3339, system_clock
from gateway.metrics import Metrics
from gateway.tables import elders
from gateway.tables_telemetry import telemetry_rollups

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
FIRST_BACKOFF_S = 0.5
WAKE_EVERY_S = 0.5  # a point waits at most about this long in the buffer when all is well
COMMUNITY_TTL_S = 600.0  # an elder's community tag is looked up again after this
DEGRADED_FILL = 0.5  # the buffer this full (or drops in the last few minutes): degraded
DROPS_RECENT_S = 300.0


@dataclass(frozen=True, slots=True)
class Reading:
    """One accepted telemetry message: who sent it, when, and its numeric readings."""

    device_id: str
    kind: str  # devices.kinds.DeviceKind value: the measurement
    elder_id: str | None
    ts_ms: int
    fields: Mapping[str, float]


# --- line protocol ---------------------------------------------------------------------------

# InfluxDB line protocol: in a measurement, escape comma and space; in tag keys, tag values and
# field keys, comma, equals sign and space. A backslash is escaped too, so that a value ending in
# one cannot escape the separator after it. Control characters cannot be carried at all: they
# become spaces (our ids cannot hold them; a free-text community tag should not either).
_MEASUREMENT = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ "})
_KEY = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ "})
_CONTROLS = str.maketrans({c: " " for c in (*range(0x00, 0x20), 0x7F)})


def escape_measurement(name: str) -> str:
    return name.translate(_CONTROLS).translate(_MEASUREMENT)


def escape_key(value: str) -> str:
    """A tag key, tag value or field key, escaped for line protocol."""
    return value.translate(_CONTROLS).translate(_KEY)


def format_value(value: Any) -> str | None:
    """A field value as a line-protocol float, or None when it is not a finite number (a bool,
    a string, NaN or infinity cannot be stored as a number and is refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    if not math.isfinite(f):
        return None
    return repr(f)  # shortest round-trip form: 12.5, 3.0, 1e-05, 1e+16 (all parsed as floats)


def line_head(measurement: str, tags: Mapping[str, str | None]) -> str:
    """`measurement,tag=value,...` of a point: tags sorted by key (as the protocol
    recommends), those with no value omitted (line protocol has no empty tag value)."""
    parts = [
        f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v is not None and v
    ]
    return ",".join([escape_measurement(measurement), *parts])


_FIELD_KEYS: dict[str, str] = {}


def fields_text(fields: Mapping[str, Any]) -> tuple[str | None, int]:
    """`name=value,...` of a point and the number of fields refused (not finite numbers);
    None when no number is left."""
    values = []
    refused = 0
    for name, value in fields.items():
        if type(value) is float and value - value == 0.0:  # a finite float: the usual case
            text: str | None = repr(value)
        else:
            text = format_value(value)
            if text is None:
                refused += 1
                continue
        key = _FIELD_KEYS.get(name)
        if key is None:
            key = escape_key(name)
            if len(_FIELD_KEYS) < 1000:  # the contract's few names; never grows unbounded
                _FIELD_KEYS[name] = key
        values.append(f"{key}={text}")
    return (",".join(values) if values else None), refused


def to_line(
    measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, Any], ts_ms: int
) -> tuple[str | None, int]:
    """One point in line protocol (ms precision) and the number of fields refused; a point
    with no number left is None."""
    text, refused = fields_text(fields)
    if text is None:
        return None, refused
    return f"{line_head(measurement, tags)} {text} {int(ts_ms)}", refused


# --- the bounded buffer ----------------------------------------------------------------------


class PointBuffer:
    """At most `capacity` points, waiting or being written; when full the oldest are dropped.

    One lock, held only for deque operations (never for I/O). The worker takes a batch out
    (`take`), and either confirms it (`done`) or puts it back at the front (`put_back`); the
    batch in flight counts against the capacity, so the bound holds at every moment."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[Reading] = deque()
        self._inflight = 0
        self._lock = threading.Lock()
        self.dropped = 0  # points dropped because the buffer was full (or left at shutdown)
        self.last_drop_mono: float | None = None
        self.closed = False  # after drain_all(): a late batch is not put back

    def offer(self, items: Sequence[Reading]) -> int:
        """Append; drop the oldest waiting points beyond the capacity. Returns how many (all
        of them once the buffer is closed: nothing would write them)."""
        if not items:
            return 0
        with self._lock:
            if self.closed:
                self.dropped += len(items)
                self.last_drop_mono = time.monotonic()
                return len(items)
            self._items.extend(items)
            over = len(self._items) + self._inflight - self.capacity
            if over <= 0:
                return 0
            over = min(over, len(self._items))  # in flight <= capacity, so this is all of it
            for _ in range(over):
                self._items.popleft()
            self.dropped += over
            self.last_drop_mono = time.monotonic()
            return over

    def take(self, limit: int) -> list[Reading]:
        """Up to `limit` of the oldest points, now in flight (one batch at a time)."""
        with self._lock:
            assert self._inflight == 0, "one batch in flight at a time"
            if len(self._items) <= limit:
                batch = list(self._items)
                self._items.clear()
            else:
                batch = [self._items.popleft() for _ in range(limit)]
            self._inflight = len(batch)
            return batch

    def done(self) -> None:
        """The batch in flight is written (or refused for good): it leaves the buffer."""
        with self._lock:
            self._inflight = 0

    def put_back(self, batch: Sequence[Reading]) -> None:
        """The batch in flight failed: it is again the oldest waiting (unless the buffer was
        closed meanwhile, which counted it as dropped already)."""
        with self._lock:
            if not self.closed:
                self._items.extendleft(reversed(batch))
            self._inflight = 0

    def drain_all(self) -> int:
        """Drop everything (waiting and in flight) and count it: shutdown's time is up."""
        with self._lock:
            self.closed = True
            n = len(self._items) + self._inflight
            self._items.clear()
            self._inflight = 0
            if n:
                self.dropped += n
                self.last_drop_mono = time.monotonic()
            return n

    def __len__(self) -> int:
        with self._lock:
            return len(self._items) + self._inflight

    def waiting(self) -> int:
        return len(self._items)


# --- the sink ---------------------------------------------------------------------------------


class WriteRefused(Exception):
    """The store answered that the data itself is bad (400/422): sending it again cannot help."""


@dataclass(slots=True)
class _Health:
    written: int = 0
    rejected: int = 0  # points (or fields) refused as not numbers, or refused by the store
    write_errors: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None
    last_success_ms: int | None = None
    failing_since_mono: float | None = None  # first failure since the last success
    last_attempt_ok: bool | None = None


class TelemetrySink:
    """Writes telemetry points to an InfluxDB v2 write endpoint from a worker of its own."""

    def __init__(
        self,
        url: str,
        bucket: str,
        org: str,
        token: str | None = None,
        *,
        engine: Engine | None = None,
        metrics: Metrics | None = None,
        clock: Clock = system_clock,
        tz: ZoneInfo | None = None,
        buffer_points: int = 100_000,
        batch_points: int = 5_000,
        timeout_s: float = 5.0,
        flush_timeout_s: float = 5.0,
        retry_max_s: float = 30.0,
        down_after_s: float = 30.0,
    ) -> None:
        # Imported here: only a gateway with a store configured pays for importing the client.
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write.point import WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.rest import ApiException

        if batch_points > buffer_points:
            raise ValueError("a batch cannot be larger than the buffer")
        self.url = url
        self.bucket = bucket
        self.org = org
        self.engine = engine  # for the elders' community tags; None: no community tag
        self.metrics = metrics
        self.clock = clock
        self.tz = tz or ZoneInfo("Asia/Shanghai")
        self.batch_points = batch_points
        self.flush_timeout_s = flush_timeout_s
        self.retry_max_s = retry_max_s
        self.down_after_s = down_after_s
        self.buffer = PointBuffer(buffer_points)
        self.health = _Health()
        self._hlock = threading.Lock()
        # A short timeout and no urllib3 retries: our worker decides when to try again.
        ms = int(timeout_s * 1000)
        self._client = InfluxDBClient(
            url=url, token=token or "", org=org, timeout=(min(ms, 2000), ms), retries=False
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._precision: Any = WritePrecision.MS
        self._api_exception = ApiException
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._deadline = math.inf  # monotonic; set by stop()
        self._thread = threading.Thread(target=self._run, name="shouwang-telemetry", daemon=True)
        self._communities: dict[str, tuple[str | None, float]] = {}
        self._heads: dict[tuple[str, str, str | None, str | None], str] = {}
        if metrics is not None:
            metrics.timeseries_buffered.set_function(lambda: float(len(self.buffer)))
            for state in ("ok", "degraded", "down"):
                metrics.timeseries_state.labels(state).set_function(self._is_state(state))

    def _is_state(self, state: str) -> Callable[[], float]:
        return lambda: 1.0 if self.state() == state else 0.0

    # --- the ingest side (never waits) -------------------------------------------------------

    def offer(self, readings: Sequence[Reading]) -> None:
        """Hand over committed readings. O(1) each; no I/O; the oldest go when the buffer is
        full (counted). Telemetry only: alarms never pass through here."""
        dropped = self.buffer.offer(readings)  # all of them after stop(): counted
        if dropped and self.metrics is not None:
            self.metrics.timeseries_dropped.inc(dropped)
        if self.buffer.waiting() >= self.batch_points:
            self._wake.set()

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> int:
        """Write what is held for at most `timeout` seconds (default flush_timeout_s), then
        stop; returns the points dropped at the end (also counted and logged)."""
        limit = self.flush_timeout_s if timeout is None else timeout
        self._deadline = time.monotonic() + limit
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, self._deadline - time.monotonic()))
        lost = self.buffer.drain_all()
        if lost:
            if self.metrics is not None:
                self.metrics.timeseries_dropped.inc(lost)
            log.warning(
                "telemetry sink stopped after %.1fs with %d points not written to %s "
                "(dropped; the rollups in the database have them): %s",
                limit,
                lost,
                self.url,
                self.health.last_error or "time limit reached",
            )
        if not self._thread.is_alive():
            self._client.close()
        # else: a write is still waiting for its HTTP timeout; the daemon thread ends with it
        return lost

    # --- health ------------------------------------------------------------------------------

    def state(self) -> str:
        """ok, degraded (failing for a short while, filling up, or dropping), or down
        (failing for `down_after_s` or longer)."""
        h = self.health
        now = time.monotonic()
        if h.last_attempt_ok is False and h.failing_since_mono is not None:
            if now - h.failing_since_mono >= self.down_after_s:
                return "down"
            return "degraded"
        b = self.buffer
        recent_drop = b.last_drop_mono is not None and now - b.last_drop_mono < DROPS_RECENT_S
        if recent_drop or len(b) >= DEGRADED_FILL * b.capacity:
            return "degraded"
        return "ok"

    def status(self) -> dict[str, Any]:
        """The health signal for /healthz: state, last error and success, counts."""
        h = self.health
        state = self.state()
        return {
            "ok": state == "ok",
            "state": state,
            "configured": True,
            "url": self.url,
            "bucket": self.bucket,
            "last_error": h.last_error,
            "last_error_at": rfc3339(h.last_error_ms, self.tz),
            "last_success_at": rfc3339(h.last_success_ms, self.tz),
            "buffered": len(self.buffer),
            "capacity": self.buffer.capacity,
            "written": h.written,
            "dropped": self.buffer.dropped,
            "rejected": h.rejected,
            "write_errors": h.write_errors,
        }

    # --- the worker --------------------------------------------------------------------------

    def _run(self) -> None:
        # Retries: a small explicit loop rather than a library such as tenacity, because what
        # is tried again is not one call but "the oldest batch in our buffer", which may have
        # changed meanwhile (points dropped, new ones arrived); the wait must end at once on
        # stop(); and the cap is plain to see: 0.5 s doubling to retry_max_s, with jitter so
        # that several gateways do not hammer a store that comes back all at the same moment.
        backoff = FIRST_BACKOFF_S
        while True:
            stopping = self._stopping.is_set()
            if stopping and (self.buffer.waiting() == 0 or time.monotonic() >= self._deadline):
                return
            if not stopping and self.buffer.waiting() < self.batch_points:
                self._wake.wait(WAKE_EVERY_S)
                self._wake.clear()
                if self.buffer.waiting() == 0:
                    continue
            batch = self.buffer.take(self.batch_points)
            if not batch:
                continue
            try:
                ok = self._send(batch)
            except Exception:  # the worker must outlive anything; the batch is kept
                log.exception("telemetry sink: unexpected error; batch kept for a retry")
                ok = False
            if ok:
                self.buffer.done()
                backoff = FIRST_BACKOFF_S
                continue
            self.buffer.put_back(batch)
            wait = backoff * random.uniform(0.8, 1.2)
            if self._stopping.is_set():  # flushing at shutdown: never past the deadline
                time.sleep(max(0.0, min(wait, self._deadline - time.monotonic())))
            else:  # stop() ends the wait at once, for one more try within its time limit
                self._stopping.wait(wait)
            backoff = min(backoff * 2, self.retry_max_s)

    def _send(self, batch: list[Reading]) -> bool:
        """One batch, one request. True when it left the buffer (written, or refused for good
        by the store: counted as rejected, as sending it again would not help)."""
        lines, refused = self._lines(batch)
        if refused:
            self._rejected(refused, "fields that are not finite numbers")
        if not lines:
            return True
        try:
            self._post("\n".join(lines))
        except WriteRefused as exc:
            self._rejected(len(lines), str(exc))
            self._note_failure(str(exc), count_error=False)
            return True
        except Exception as exc:
            self._note_failure(_describe(exc))
            return False
        self._note_success(len(lines))
        return True

    def _post(self, body: str) -> None:
        try:
            self._write.write(
                bucket=self.bucket, org=self.org, record=body, write_precision=self._precision
            )
        except self._api_exception as exc:
            if exc.status in (400, 422):
                raise WriteRefused(f"HTTP {exc.status}: {_body(exc)}") from None
            raise

    def _lines(self, batch: list[Reading]) -> tuple[list[str], int]:
        communities = self._community_of({r.elder_id for r in batch if r.elder_id})
        heads = self._heads
        if len(heads) > 200_000:  # one per device (and elder, community): bounded anyway
            heads.clear()
        lines: list[str] = []
        refused = 0
        for r in batch:
            community = communities.get(r.elder_id) if r.elder_id else None
            key = (r.kind, r.device_id, r.elder_id, community)
            head = heads.get(key)
            if head is None:  # escaping costs more than the rest of a point: once per device
                tags = {
                    "device": r.device_id,
                    "elder": r.elder_id,
                    "community": community,
                    "bucket": self.bucket,
                }
                head = heads[key] = line_head(r.kind, tags)
            text, bad = fields_text(r.fields)
            refused += bad
            if text is not None:
                lines.append(f"{head} {text} {r.ts_ms}")
        return lines, refused

    def _community_of(self, elder_ids: set[str]) -> dict[str, str | None]:
        """Each elder's `community:...` tag, cached; one query for those not cached."""
        now = time.monotonic()
        out: dict[str, str | None] = {}
        missing = []
        for e in elder_ids:
            hit = self._communities.get(e)
            if hit is not None and hit[1] > now:
                out[e] = hit[0]
            else:
                missing.append(e)
        if missing and self.engine is not None:
            try:
                with self.engine.connect().execution_options(readonly=True) as conn:
                    rows = conn.execute(
                        select(elders.c.id, elders.c.tags).where(elders.c.id.in_(missing))
                    ).all()
            except DBAPIError as exc:  # no community tag this time; the points still go
                log.warning("telemetry sink: elders' communities not read: %s", exc)
                return out
            found = {r.id: community_of_tags(r.tags) for r in rows}
            if len(self._communities) > 200_000:
                self._communities.clear()
            for e in missing:
                out[e] = found.get(e)
                self._communities[e] = (out[e], now + COMMUNITY_TTL_S)
        return out

    def _note_success(self, n: int) -> None:
        if self.buffer.closed:  # stop() gave up on this batch and counted it as dropped
            log.info(
                "telemetry sink: %d points counted as dropped at shutdown were written after all",
                n,
            )
            return
        with self._hlock:
            h = self.health
            h.written += n
            h.last_success_ms = int(self.clock() * 1000)
            h.failing_since_mono = None
            h.last_attempt_ok = True
        if self.metrics is not None:
            self.metrics.timeseries_written.inc(n)

    def _note_failure(self, error: str, count_error: bool = True) -> None:
        with self._hlock:
            h = self.health
            first = h.last_attempt_ok is not False
            h.last_error = error[:300]
            h.last_error_ms = int(self.clock() * 1000)
            if count_error:
                h.write_errors += 1
                h.last_attempt_ok = False
                if h.failing_since_mono is None:
                    h.failing_since_mono = time.monotonic()
        if self.metrics is not None and count_error:
            self.metrics.timeseries_write_errors.inc()
        if count_error and first:
            log.warning(
                "telemetry sink: writing to %s failed, keeping up to %d points and retrying: %s",
                self.url,
                self.buffer.capacity,
                error[:300],
            )

    def _rejected(self, n: int, why: str) -> None:
        with self._hlock:
            self.health.rejected += n
        if self.metrics is not None:
            self.metrics.timeseries_rejected.inc(n)
        log.error("telemetry sink: %d points or fields refused (%s)", n, why[:300])


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if isinstance(status, int):  # influxdb_client.rest.ApiException
        return f"HTTP {status}: {_body(exc)}"
    return f"{type(exc).__name__}: {str(exc)[:250]}"


def _body(exc: Any) -> str:
    body = getattr(exc, "body", None) or getattr(exc, "reason", "") or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return str(body)[:200]


def community_of_tags(tags: Any) -> str | None:
    """The `community:...` tag of an elder's tags (a JSON list), or None."""
    for t in tags or []:
        if isinstance(t, str) and t.startswith("community:") and len(t) > len("community:"):
            return t[len("community:") :]
    return None


def build_sink(
    settings: Any, engine: Engine, metrics: Metrics, clock: Clock, tz: ZoneInfo
) -> TelemetrySink | None:
    """The sink the settings ask for; None when SHOUWANG_INFLUX_URL is unset (rollups only)."""
    if not settings.influx_url:
        return None
    missing = [
        f"SHOUWANG_INFLUX_{n.upper()}"
        for n in ("bucket", "org")
        if not getattr(settings, f"influx_{n}")
    ]
    if missing:
        raise ValueError(
            f"SHOUWANG_INFLUX_URL is set but {' and '.join(missing)} is not "
            f"(已设置 SHOUWANG_INFLUX_URL，但缺少 {'、'.join(missing)})"
        )
    token = settings.influx_token.get_secret_value() if settings.influx_token else None
    return TelemetrySink(
        settings.influx_url,
        settings.influx_bucket,
        settings.influx_org,
        token,
        engine=engine,
        metrics=metrics,
        clock=clock,
        tz=tz,
        buffer_points=settings.telemetry_buffer_points,
        batch_points=min(settings.telemetry_batch_points, settings.telemetry_buffer_points),
        timeout_s=settings.influx_timeout_s,
        flush_timeout_s=settings.telemetry_flush_timeout_s,
        retry_max_s=settings.telemetry_retry_max_s,
    )


# --- rollups ------------------------------------------------------------------------------


def hour_start(ts_ms: int) -> int:
    return ts_ms - ts_ms % HOUR_MS


# What is rolled up: the contract's readings. `interval_s` is not a reading but the span of a
# `flow_l` (it still goes to the store); leaving it out saves a third of a water batch's rows.
ROLLED_UP = frozenset(READINGS)


def aggregate(readings: Iterable[Reading]) -> dict[tuple[str, int, str], list[Any]]:
    """The batch's readings per (device, UTC hour start, field) -> [count, min, max, sum];
    finite numbers of ROLLED_UP only. (On the ingest worker's thread: kept to plain loops.)"""
    out: dict[tuple[str, int, str], list[Any]] = {}
    for r in readings:
        h = r.ts_ms - r.ts_ms % HOUR_MS
        dev = r.device_id
        for name, v in r.fields.items():
            if name not in ROLLED_UP:
                continue
            if not (type(v) is float and v - v == 0.0):  # not a finite float: check it
                if format_value(v) is None:
                    continue
                v = float(v)
            key = (dev, h, name)
            a = out.get(key)
            if a is None:
                out[key] = [1, v, v, v]
            else:
                a[0] += 1
                if v < a[1]:
                    a[1] = v
                if v > a[2]:
                    a[2] = v
                a[3] += v
    return out


def upsert_rollups(conn: Connection, readings: Sequence[Reading]) -> int:
    """Add the readings to the hourly rollups with ONE upsert statement (INSERT ... ON
    CONFLICT DO UPDATE: count and sum added, min and max kept), inside the caller's
    transaction. Returns the number of rows.

    The cheapest form measured for each database: on PostgreSQL one INSERT ... SELECT FROM
    unnest(arrays), one round trip for the batch; on SQLite the compiled statement run by the
    driver's executemany (a loop in C; reading the rows from one JSON parameter with json_each
    measured slower). Rows go in key order, so two writers lock them in the same order."""
    aggs = aggregate(readings)
    if not aggs:
        return 0
    keys = sorted(aggs)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        cols = list(zip(*(k + tuple(aggs[k]) for k in keys), strict=True))
        params = {f"r_{name}": list(col) for name, col in zip(_COLS, cols, strict=True)}
        conn.execute(_pg_upsert(), params)
    elif dialect == "sqlite":
        conn.exec_driver_sql(_sqlite_upsert(), [(*k, *aggs[k]) for k in keys])
    else:
        raise NotImplementedError(f"telemetry rollups need SQLite or PostgreSQL, not {dialect}")
    return len(keys)


_COLS = ("device_id", "hour_start", "field", "count", "min", "max", "sum")


def _on_conflict(ins: Any, least: Any, greatest: Any) -> Any:
    t = telemetry_rollups
    ex = ins.excluded
    return ins.on_conflict_do_update(
        index_elements=[t.c.device_id, t.c.hour_start, t.c.field],
        set_={
            "count": t.c.count + ex.count,
            "min": least(t.c.min, ex.min),
            "max": greatest(t.c.max, ex.max),
            "sum": t.c.sum + ex.sum,
        },
    )


@functools.cache
def _pg_upsert() -> Any:
    types = (String, BigInteger, String, BigInteger, Float, Float, Float)
    rows = (
        func.unnest(
            *(bindparam(f"r_{n}", type_=ARRAY(ty)) for n, ty in zip(_COLS, types, strict=True))
        )
        .table_valued(*_COLS)
        .render_derived(name="r")
    )
    ins = postgresql.insert(telemetry_rollups).from_select(
        list(_COLS), select(*(rows.c[n] for n in _COLS))
    )
    return _on_conflict(ins, func.least, func.greatest)


@functools.cache
def _sqlite_upsert() -> str:
    ins = sqlite.insert(telemetry_rollups).values({n: bindparam(n) for n in _COLS})
    # SQLite's two-argument min() and max() are scalar functions: least and greatest.
    compiled = _on_conflict(ins, func.min, func.max).compile(dialect=sqlite.dialect())
    assert tuple(compiled.positiontup or ()) == _COLS, compiled.positiontup
    return str(compiled)


# --- reading the rollups back --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourRow:
    device_id: str
    hour_start: int
    field: str
    count: int
    min: float
    max: float
    sum: float


@dataclass(slots=True)
class WaterHour:
    litres: float
    basis: set[str] = field(default_factory=set)  # "flow_l" and/or "total_l"


def water_use_per_hour(
    rows: Iterable[HourRow],
    before: Mapping[str, tuple[int, float]] | None = None,
    max_gap_ms: int = 3 * HOUR_MS,
) -> dict[int, WaterHour]:
    """Litres used per UTC hour, summed over the devices of `rows` (flow_l and total_l rows).

    Contract v1 gives water two ways, and a meter may send either:
    - `flow_l` is the litres since the device's previous report (with `interval_s`): the use
      of an hour is the SUM of the hour's flow_l. Exact; a report is counted in the hour of its
      `ts` (the end of the interval it covers).
    - `total_l` is the meter's running total: the use of an hour is the hour's MAX minus the
      MAX of the device's previous hour with a reading (`before[device]` for the hour before
      the range), so the litres between the last reading of one hour and the first of the next
      are not lost. With no earlier reading within `max_gap_ms` (a meter silent for longer
      would put all of its silence's water into one hour), or when the total went down (a
      meter replaced or reset), the hour's max minus its min.
    `before[device]` is (hour start, total_l max) of the device's last hour with a total
    before the rows.
    A device that sends flow_l in an hour is counted by flow_l for that hour. Hours with no
    reading from any device are absent: unknown, which is not the same as no water used.
    """
    by_dev: dict[str, dict[int, dict[str, HourRow]]] = {}
    for r in rows:
        by_dev.setdefault(r.device_id, {}).setdefault(r.hour_start, {})[r.field] = r
    out: dict[int, WaterHour] = {}
    for dev, hours in by_dev.items():
        prev_hour, prev_max = (before or {}).get(dev, (None, None))
        for h in sorted(hours):
            fields = hours[h]
            total = fields.get("total_l")
            flow = fields.get("flow_l")
            if flow is not None:
                litres, basis = flow.sum, "flow_l"
            elif total is not None:
                bridged = (
                    prev_max is not None
                    and prev_hour is not None
                    and h - prev_hour <= max_gap_ms
                    and total.max >= prev_max
                )
                if bridged:
                    assert prev_max is not None
                    litres = total.max - prev_max
                else:
                    litres = total.max - total.min
                basis = "total_l"
            else:
                continue
            if total is not None:
                prev_max, prev_hour = total.max, h
            w = out.setdefault(h, WaterHour(0.0))
            w.litres += litres
            w.basis.add(basis)
    return out
