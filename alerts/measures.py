"""Measures of the alarm service: per-alert response times and reports per period and station.

Pure: the caller passes plain alert records (built from the alerts table and its timeline) and
the period; `now` decides what can be judged yet. Definitions, so that every report means the
same thing:

- Times are measured from the alert's `created_at`: to the first page, to the first answer, to
  someone on site, to resolution. The first answer is the earliest of the acknowledgement, the
  arrival and a resolution (a responder may answer "arrived" straight away, and staff may close
  a false alarm from the board without acknowledging first). Only resolved alerts have a time to
  resolution; a cancel is not a resolution.
- Percentiles use the nearest-rank method: the p-th percentile is the smallest observed value
  with at least p% of the values at or below it. It is always one of the observed times, never
  interpolated, and it grows with p. No values: None.
- "Answered within 60 s / 180 s" (the telecare standard: 97.5% within 60 s, 99% within 180 s) is
  taken over the P1 alerts by default (the alarms, not battery or device notices, which page with
  minutes to spare by design). An alert not answered within the limit counts as not within; two
  kinds of alert cannot be judged and are left out, as telephony leaves out short abandoned
  calls: one cancelled by the elder without an answer no later than the limit, and one still
  unanswered whose limit has not passed at `now`. The limit is inclusive (an answer at exactly
  60 s is within 60 s). No alert to judge: share None, met None.
- The false-alarm rate is false alarms over alerts resolved as real, false alarm or device fault;
  tests are planned, not alarms, and are left out. Nothing to count: None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction

from alerts.model import ACTIVE_STATES, AlertKind, Outcome, Priority, State


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """What the measures need of one alert. `closed_at` is when it was resolved or cancelled."""

    id: str
    kind: AlertKind
    priority: Priority
    state: State
    created_at: datetime
    first_page_at: datetime | None = None
    acknowledged_at: datetime | None = None
    on_site_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: Outcome | None = None
    station: str | None = None
    community: str | None = None


@dataclass(frozen=True, slots=True)
class AlertTimes:
    """Durations from the alert's creation; None when it did not (yet) happen."""

    to_first_page: timedelta | None
    to_ack: timedelta | None  # to the first answer: ack, arrival or resolution
    to_on_site: timedelta | None
    to_resolution: timedelta | None


def _since(start: datetime, at: datetime | None) -> timedelta | None:
    if at is None:
        return None
    # Times are the gateway's own, stored in milliseconds; anything before creation is a
    # rounding artefact and reads as zero rather than as a negative response time.
    return max(at - start, timedelta(0))


def answered_at(r: AlertRecord) -> datetime | None:
    """The first answer by a person: acknowledgement, arrival, or resolution, the earliest."""
    resolved = r.closed_at if r.state == State.RESOLVED else None
    times = [t for t in (r.acknowledged_at, r.on_site_at, resolved) if t is not None]
    return min(times) if times else None


def alert_times(r: AlertRecord) -> AlertTimes:
    """Time to first page, to the first answer, to on site and to resolution of one alert."""
    resolved = r.closed_at if r.state == State.RESOLVED else None
    return AlertTimes(
        to_first_page=_since(r.created_at, r.first_page_at),
        to_ack=_since(r.created_at, answered_at(r)),
        to_on_site=_since(r.created_at, r.on_site_at),
        to_resolution=_since(r.created_at, resolved),
    )


def percentile(values: Iterable[timedelta], p: float) -> timedelta | None:
    """The nearest-rank p-th percentile (0 < p <= 100) of `values`; None when there are none."""
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    ordered = sorted(values)
    if not ordered:
        return None
    # Fraction(str(p)) keeps 97.5 exact, so the rank is not one off from float rounding.
    rank = math.ceil(Fraction(str(p)) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class TimeStats:
    count: int
    p50: timedelta | None
    p90: timedelta | None
    max: timedelta | None


def time_stats(values: Iterable[timedelta | None]) -> TimeStats:
    """Count, p50, p90 and max of the durations that happened (None values are left out)."""
    present = sorted(v for v in values if v is not None)
    return TimeStats(
        count=len(present),
        p50=percentile(present, 50),
        p90=percentile(present, 90),
        max=present[-1] if present else None,
    )


@dataclass(frozen=True, slots=True)
class Standard:
    """A share of alerts to answer within a limit, e.g. 97.5% within 60 s."""

    within: timedelta
    target: Fraction

    @classmethod
    def of(cls, seconds: float, target: float | str) -> Standard:
        return cls(timedelta(seconds=seconds), Fraction(str(target)))


# The telecare industry's standard (issue 3): 97.5% answered within 60 s, 99% within 180 s.
TELECARE_STANDARDS: tuple[Standard, ...] = (Standard.of(60, "0.975"), Standard.of(180, "0.99"))
STANDARD_PRIORITIES: frozenset[Priority] = frozenset({Priority.P1})


@dataclass(frozen=True, slots=True)
class ShareWithin:
    """How many of the alerts that can be judged were answered within the standard's limit."""

    standard: Standard
    within: int
    total: int

    @property
    def share(self) -> float | None:
        return self.within / self.total if self.total else None

    @property
    def met(self) -> bool | None:
        """Whether the target is reached (exact arithmetic); None when nothing could be judged."""
        if not self.total:
            return None
        return Fraction(self.within, self.total) >= self.standard.target


def _judge(r: AlertRecord, limit: timedelta, now: datetime) -> bool | None:
    """True: answered within `limit`; False: not; None: cannot be judged (left out)."""
    first = answered_at(r)
    deadline = r.created_at + limit
    if first is not None and first <= deadline:
        return True
    if first is not None:
        return False
    if r.state == State.CANCELLED and r.closed_at is not None and r.closed_at <= deadline:
        return None  # withdrawn before the limit: nobody could have been late yet
    if r.state in ACTIVE_STATES and now <= deadline:
        return None  # still within the limit: too early to say
    return False


def share_within(records: Iterable[AlertRecord], standard: Standard, now: datetime) -> ShareWithin:
    """The alerts of `records` answered within `standard.within` (see the module's rules)."""
    verdicts = [_judge(r, standard.within, now) for r in records]
    judged = [v for v in verdicts if v is not None]
    return ShareWithin(standard, sum(judged), len(judged))


# Keys of Report.by_outcome besides the Outcome values: alerts with no outcome yet.
CANCELLED = "cancelled"
UNRESOLVED = "unresolved"
NO_OUTCOME = "no_outcome"  # resolved (a pager's `resolved` has none): staff still owe one


def outcome_key(r: AlertRecord) -> str:
    """The outcome's value; "cancelled" for a cancelled alert; "no_outcome" for one resolved
    without its outcome; "unresolved" for one still open, acknowledged or on site."""
    if r.outcome is not None:
        return r.outcome.value
    if r.state == State.CANCELLED:
        return CANCELLED
    if r.state == State.RESOLVED:
        return NO_OUTCOME
    return UNRESOLVED


def false_alarm_rate(records: Iterable[AlertRecord]) -> float | None:
    """False alarms over alerts resolved as real, false alarm or device fault (tests left out)."""
    counted = [
        r.outcome
        for r in records
        if r.outcome in (Outcome.REAL, Outcome.FALSE_ALARM, Outcome.DEVICE_FAULT)
    ]
    if not counted:
        return None
    return sum(o == Outcome.FALSE_ALARM for o in counted) / len(counted)


@dataclass(frozen=True, slots=True)
class Report:
    """One period's measures for one station (None: every station), alerts created in
    [start, end)."""

    station: str | None
    start: datetime
    end: datetime
    total: int
    by_kind: dict[str, int]
    by_priority: dict[str, int]
    by_outcome: dict[str, int]
    false_alarm_rate: float | None
    to_first_page: TimeStats
    to_ack: TimeStats
    to_on_site: TimeStats
    to_resolution: TimeStats
    answered_within: tuple[ShareWithin, ...]
    unpaged: int  # alerts never paged (no plan, nobody reachable): each one needs a look

    @property
    def standards_met(self) -> bool | None:
        """All standards met; False if any is not; None when none could be judged."""
        verdicts = [s.met for s in self.answered_within if s.met is not None]
        return all(verdicts) if verdicts else None


def _count(keys: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return dict(sorted(counts.items()))


def report(
    records: Iterable[AlertRecord],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    station: str | None = None,
    standards: Sequence[Standard] = TELECARE_STANDARDS,
    standard_priorities: frozenset[Priority] = STANDARD_PRIORITIES,
) -> Report:
    """The report of the alerts created in [start, end) at `station` (None: all stations).

    `now` is when the report is made: an alert still open and younger than a standard's limit is
    not judged against it yet. A period report made later simply sees more closed alerts.
    """
    if end <= start:
        raise ValueError("a period must end after it starts")
    chosen = [
        r
        for r in records
        if start <= r.created_at < end and (station is None or r.station == station)
    ]
    times = [alert_times(r) for r in chosen]
    judged = [r for r in chosen if r.priority in standard_priorities]
    return Report(
        station=station,
        start=start,
        end=end,
        total=len(chosen),
        by_kind=_count(r.kind.value for r in chosen),
        by_priority=_count(r.priority.value for r in chosen),
        by_outcome=_count(outcome_key(r) for r in chosen),
        false_alarm_rate=false_alarm_rate(chosen),
        to_first_page=time_stats(t.to_first_page for t in times),
        to_ack=time_stats(t.to_ack for t in times),
        to_on_site=time_stats(t.to_on_site for t in times),
        to_resolution=time_stats(t.to_resolution for t in times),
        answered_within=tuple(share_within(judged, s, now) for s in standards),
        unpaged=sum(r.first_page_at is None for r in chosen),
    )


def reports_by(
    records: Iterable[AlertRecord],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    key: Callable[[AlertRecord], str | None] = lambda r: r.station,
    standards: Sequence[Standard] = TELECARE_STANDARDS,
    standard_priorities: frozenset[Priority] = STANDARD_PRIORITIES,
) -> dict[str | None, Report]:
    """One report per group (by station by default; `key=lambda r: r.community` per community),
    for the groups that had alerts in [start, end). The report's `station` is the group key."""
    groups: dict[str | None, list[AlertRecord]] = {}
    for r in records:
        if start <= r.created_at < end:
            groups.setdefault(key(r), []).append(r)
    out: dict[str | None, Report] = {}
    for group, members in groups.items():
        whole = report(
            members,
            start,
            end,
            now,
            standards=standards,
            standard_priorities=standard_priorities,
        )
        out[group] = replace(whole, station=group)
    return out


def periods(start: datetime, end: datetime, length: timedelta) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into periods of `length` (the last one may be shorter), e.g. days.

    For calendar months, pass the boundaries yourself: a month is no fixed timedelta.
    """
    if length <= timedelta(0):
        raise ValueError("a period needs a positive length")
    out = []
    t = start
    while t < end:
        out.append((t, min(t + length, end)))
        t += length
    return out
