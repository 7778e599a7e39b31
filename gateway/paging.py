"""Paging, wired to storage: plans from pairings and the duty roster, reminders, channel chains.

The decisions are alerts.policy's (pure); this module reads what they need from the tables and
writes what they decide, always inside the caller's transaction, and is called from
gateway/alerting.py (open, page, answer) and from the ingest worker's housekeeping:

- Plans: `plan()` builds an alert's escalation plan with `build_plan` from the elder's active
  pairings, the shifts on duty now, every staff member and each one's station, the elder's tags
  and station, the alert's kind and priority and the `EscalationPolicy` (from Settings): the
  staff step pages the elder's station's staff, another station's only when it has nobody
  (alerts.policy `staff_to_page`). An explicit plan set with
  `PUT /elders/{id}/escalation` is an `ElderOverride(steps=...)`: followed exactly as written.
  `elder()` reads the elder with their explicit plan in one query, as a press needs both.
- Reminders: an acknowledged-but-unresolved alert (P1) gets `alerts.next_reminder_at` from
  `next_reminder`, set in the transaction of the ack or arrival; the housekeeping pages it when
  due (gateway/alerting.py `remind_due`) and sets the next one. Resolve and cancel clear it.
- Channel chains: each person paged gets a chain (`ChannelChain`: their pager at once, then
  their apprise links at their delays), one per person and alert from their first page, and one
  per reminder. Every attempt is a `deliveries` row (a new chain's first rows come from
  `chain_rows`, and the caller writes them with the pages of its step); the newest row of a
  chain carries `next_try_at`, when the scheduler (`chains_due`) looks at the chain again, so a
  restart goes on where it stopped. `chain_schedule` says which attempts are due. Apprise
  attempts are sent by gateway/notify.py's pool after the commit, and their results written
  back by `record_result` in their own short transactions. A failed try (a result, or a lease
  ended) may leave the alert's step with nobody left to reach (`step_failed`): its escalation
  is then made due at once, and the escalation scheduler pages the next step.

Locks: whatever changes an alert's paging locks the alert row first (FOR UPDATE; SKIP LOCKED
for the schedulers on PostgreSQL), then its deliveries, so two gateways or a scheduler and a
result cannot interleave on one chain.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Row,
    String,
    bindparam,
    cast,
    exists,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError

from alerts.escalation import Plan, PlanError, Step
from alerts.model import ACTIVE_STATES, AlertKind, Priority, State
from alerts.policy import (
    DEFAULT_POLICY,
    DEFAULT_REMINDERS,
    DEFAULT_RETRY,
    Attempt,
    BuiltPlan,
    ChannelChain,
    ChannelLink,
    DeliveryStatus,
    ElderOverride,
    EscalationPolicy,
    Pairing,
    Reminder,
    ReminderPolicy,
    RetryPolicy,
    Role,
    Roster,
    Shift,
    build_plan,
    chain_schedule,
    last_resort_staff,
    next_reminder,
    timeouts_with,
)
from gateway.alert_log import Line, emit, line
from gateway.clock import from_ms, rfc3339, to_ms
from gateway.db import refused
from gateway.notify import PAGER, WEB, Delivery, DeliveryResult, mask_address
from gateway.phone import NOT_OPEN
from gateway.tables import (
    alert_events,
    alerts,
    deliveries,
    duty_shifts,
    elders,
    escalation_plans,
    pages,
    pairings,
    responder_channels,
    responders,
)
from gateway.tables_care import elder_profiles, person_profiles

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger(__name__)

# A send with no result after this long is taken as failed (the gateway stopped during it) and
# retried by the link's RetryPolicy. Well above any provider call: apprise's own timeouts are
# a few seconds.
LEASE_MS = 120_000

# A chain whose step failed is looked at again after this (`Paging._chain_alone`): not at each
# poll, where it would fail again and fill the log, yet soon enough when the fault clears. As
# gateway/alerting.py's DUE_RETRY_S for escalations and reminders.
CHAIN_RETRY_S = 30

# Delivery row states besides DeliveryStatus (sent, delivered, failed).
QUEUED, SENDING, CANCELLED = "queued", "sending", "cancelled"

# `step_unreachable`'s "why" when every channel of everyone asked at the step failed for good
# (`Paging.step_failed`); also what marks that step attempt as acted on.
EVERY_CHANNEL_FAILED = "every channel failed"

RESPONDER = "responder:"  # how a responder's answers are labelled on the timeline


def responder_of(label: str | None) -> str | None:
    """The responder id in a timeline actor label ("responder:<id>"), else None (an API user)."""
    if label and label.startswith(RESPONDER):
        return label[len(RESPONDER) :]
    return None


def was_paged_clause(alert_id: Any, person_id: Any) -> Any:
    """A WHERE clause: the person was paged for the alert, by any channel: a pager's page (a
    `pages` row of type "page") or a channel chain's delivery (a `deliveries` row: the phone
    page, SMS ... of a person with or without a pager), escalation, reminder or assignment
    alike. `alert_id` and `person_id` are values or columns. Correlated EXISTS on the alert id
    (indexed in both tables): no join, no duplicate rows. The one definition the replies, the
    phone page's list and the station scope share, so that whoever may answer an alert is also
    the one who can see it."""
    by_pager = exists().where(
        pages.c.alert_id == alert_id, pages.c.responder_id == person_id, pages.c.type == "page"
    )
    by_chain = exists().where(
        deliveries.c.alert_id == alert_id, deliveries.c.responder_id == person_id
    )
    return or_(by_pager, by_chain)


@dataclass(slots=True)
class _Work:
    """What the chain steps need of a transaction: the connection, its time, and the sends to
    hand to the notifier pool and the log lines to write (gateway/alert_log.py) once it has
    committed."""

    conn: Connection
    now_ms: int
    jobs: list[Delivery] = field(default_factory=list)
    logs: list[Line] = field(default_factory=list)
    failed: bool = False  # a try was found failed (its lease ended): the step may be unreachable


class LastResort(NamedTuple):
    """`Paging.all_staff_plan`: the plan, and whether it is another station's staff (the
    elder's has nobody who can be reached), which the timeline says."""

    plan: Plan
    other_stations: bool


class _Link(NamedTuple):
    """One of a person's channels after their pager, as `_chain` reads it."""

    channel: str
    address: str
    after_s: int


# Built once: both are on the way of every page, and building a select costs about as much as
# running it on a warm connection.
_ELDER = (
    select(elders, escalation_plans.c.steps.label("explicit_steps"))
    .outerjoin(escalation_plans, escalation_plans.c.elder_id == elders.c.id)
    .where(elders.c.id == bindparam("elder_id"))
)
_RC = responder_channels.c
_REACHABLE = (
    select(
        responders,
        _RC.position.label("link_position"),
        _RC.channel.label("link_channel"),
        _RC.address.label("link_address"),
        _RC.after_s.label("link_after_s"),
    )
    .outerjoin(responder_channels, _RC.responder_id == responders.c.id)
    .where(responders.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(responders.c.id, _RC.position)
)


# What a plan is made of, in ONE statement on the way of a press: the elder's current pairings
# (src "p"), the shifts on duty (src "s"), every staff member (src "t") and the elder's station
# (src "e", none when no care record), `st` the station of each person (their profile's) or the
# elder's; each part sorted by its own keys (k1, k2, i) in Python. The shifts come first: their
# `tags` column gives the union its JSON type. `elder_id` NULL: the roster alone.
_K = BigInteger()
_PROFILE = person_profiles.c
_PLAN_INPUTS = union_all(
    select(
        literal("s", String).label("src"),
        duty_shifts.c.responder_id.label("rid"),
        responders.c.role,
        duty_shifts.c.start_at.label("k1"),
        cast(literal(0), _K).label("k2"),
        duty_shifts.c.start_at.label("a"),
        duty_shifts.c.end_at.label("b"),
        duty_shifts.c.tags,
        duty_shifts.c.id.label("i"),
        _PROFILE.station.label("st"),
    )
    .join(responders, responders.c.id == duty_shifts.c.responder_id)
    .outerjoin(person_profiles, _PROFILE.responder_id == duty_shifts.c.responder_id)
    .where(duty_shifts.c.start_at <= bindparam("now"), duty_shifts.c.end_at > bindparam("now")),
    select(
        literal("p", String),
        pairings.c.responder_id,
        pairings.c.role,
        cast(pairings.c.ord, _K),
        pairings.c.created_at,
        pairings.c.active_from,
        pairings.c.active_until,
        null(),
        pairings.c.id,
        cast(null(), String),
    ).where(
        pairings.c.elder_id == bindparam("elder_id"),
        pairings.c.active_from <= bindparam("now"),
        or_(pairings.c.active_until.is_(None), pairings.c.active_until > bindparam("now")),
    ),
    select(
        literal("t", String),
        responders.c.id,
        responders.c.role,
        responders.c.created_at,
        cast(literal(0), _K),
        cast(null(), _K),
        cast(null(), _K),
        null(),
        responders.c.id,
        _PROFILE.station,
    )
    .outerjoin(person_profiles, _PROFILE.responder_id == responders.c.id)
    .where(responders.c.role == Role.STAFF.value),
    select(
        literal("e", String),
        elder_profiles.c.elder_id,
        cast(null(), String),
        cast(literal(0), _K),
        cast(literal(0), _K),
        cast(null(), _K),
        cast(null(), _K),
        null(),
        elder_profiles.c.elder_id,
        elder_profiles.c.station,
    ).where(elder_profiles.c.elder_id == bindparam("elder_id")),
)


def _plan_inputs(conn: Connection, elder_id: str | None, now_ms: int) -> list[Row[Any]]:
    return list(conn.execute(_PLAN_INPUTS, {"elder_id": elder_id, "now": now_ms}))


def _roster(rows: list[Row[Any]]) -> Roster:
    """The Roster of `_plan_inputs` rows: shifts by start then id, staff oldest first."""
    shifts = []
    for r in sorted((r for r in rows if r.src == "s"), key=lambda r: (r.k1, r.i)):
        if r.role not in (Role.STAFF.value, Role.VOLUNTEER.value):
            continue  # the API refuses these; a role changed since is not a shift any more
        shifts.append(
            Shift(
                r.rid,
                Role(r.role),
                from_ms(r.a),
                from_ms(r.b),
                frozenset(str(t) for t in (r.tags or [])),
            )
        )
    staff = [r.rid for r in sorted((r for r in rows if r.src == "t"), key=lambda r: (r.k1, r.i))]
    # As gateway/care_store.py's Scope reads it: only NULL is "no station" (every station's).
    stations = {r.rid: r.st for r in rows if r.src in ("s", "t") and r.st is not None}
    return Roster(tuple(shifts), tuple(staff), stations)


def _elder_station(rows: list[Row[Any]]) -> str | None:
    """The elder's station in `_plan_inputs` rows (None: no care record, or one of no station)."""
    return next((r.st for r in rows if r.src == "e"), None)


class Paging:
    def __init__(
        self,
        tz: ZoneInfo,
        *,
        policy: EscalationPolicy = DEFAULT_POLICY,
        reminders: ReminderPolicy | None = DEFAULT_REMINDERS,
        reminders_for_explicit_plans: bool = False,
        retry: RetryPolicy = DEFAULT_RETRY,
        default_ack_timeout_s: int = 60,
    ) -> None:
        self.tz = tz
        self.policy = policy
        self.reminders = reminders
        self.reminders_for_explicit_plans = reminders_for_explicit_plans
        self.retry = retry
        self.default_ack_timeout_s = default_ack_timeout_s
        # Set by the composition root (gateway/app.py) to the notifier pool's `submit`.
        self.dispatch: Callable[[list[Delivery]], None] = self._no_pool

    @classmethod
    def from_settings(cls, s: Settings, tz: ZoneInfo) -> Paging:
        timeouts = timeouts_with(
            {
                Priority.P1: {
                    Role.WATCHER: s.p1_watcher_ack_s,
                    Role.VOLUNTEER: s.p1_volunteer_ack_s,
                    Role.STAFF: s.p1_staff_ack_s,
                    Role.FAMILY: s.p1_family_ack_s,
                },
                Priority.P2: {
                    Role.WATCHER: s.p2_watcher_ack_s,
                    Role.VOLUNTEER: s.p2_volunteer_ack_s,
                    Role.STAFF: s.p2_staff_ack_s,
                    Role.FAMILY: s.p2_family_ack_s,
                },
            }
        )
        reminders: ReminderPolicy | None = None
        if s.reminder_after_ack_s or s.reminder_after_on_site_s:
            reminders = replace(
                DEFAULT_REMINDERS,
                after_ack=timedelta(seconds=s.reminder_after_ack_s)
                if s.reminder_after_ack_s
                else None,
                after_on_site=timedelta(seconds=s.reminder_after_on_site_s)
                if s.reminder_after_on_site_s
                else None,
            )
        return cls(
            tz,
            policy=EscalationPolicy(
                timeouts_s=timeouts, max_nearby_volunteers=s.max_nearby_volunteers
            ),
            reminders=reminders,
            reminders_for_explicit_plans=s.reminders_for_explicit_plans,
            retry=RetryPolicy(
                max_tries=s.delivery_max_tries,
                first_backoff_s=s.delivery_backoff_s,
                max_backoff_s=s.delivery_max_backoff_s,
            ),
            default_ack_timeout_s=s.default_ack_timeout_s,
        )

    @staticmethod
    def _no_pool(jobs: list[Delivery]) -> None:
        if jobs:
            log.warning("no notifier pool: %d deliveries wait for their lease to end", len(jobs))

    # --- plans -----------------------------------------------------------------------------

    def roster_for(self, conn: Connection, elder_id: str, now_ms: int) -> tuple[Roster, str | None]:
        """The shifts on duty at `now_ms`, every staff member (oldest first) and each one's
        station, with the station of the elder they are paged for (None: of no station), in
        one query. No roster without the elder: whom a page goes to depends on both
        (alerts.policy `staff_to_page`)."""
        rows = _plan_inputs(conn, elder_id, now_ms)
        return _roster(rows), _elder_station(rows)

    def elder(self, conn: Connection, elder_id: str) -> Row[Any]:
        """The elder's row with their explicit plan's steps as `explicit_steps` (None: they have
        none), in one query: opening an alert needs both, the plan and the page texts."""
        row = conn.execute(_ELDER, {"elder_id": elder_id}).first()
        assert row is not None, elder_id  # a foreign key guarantees it
        return row

    def plan(
        self, conn: Connection, elder: Row[Any], kind: AlertKind, priority: Priority, now_ms: int
    ) -> BuiltPlan:
        """The plan for a new alert of `elder`'s (a row from `elder()`); `plan` None when nobody
        at all can be paged."""
        now = from_ms(now_ms)
        steps = None
        if elder.explicit_steps is not None:
            try:
                steps = Plan.from_json(elder.explicit_steps).steps
            except (PlanError, TypeError, ValueError, KeyError) as exc:
                # The API refuses such a plan; one written past it must not cost the alarm its
                # page: the policy's plan below (pairings, roster) pages instead, loudly.
                log.error(
                    "elder %s: stored escalation plan unusable (%s); using the policy's",
                    elder.id,
                    exc,
                )
        if steps is not None:
            # Authoritative for every kind: the steps as written (the plan of issue 2).
            return build_plan(
                kind=kind,
                priority=priority,
                now=now,
                pairings=(),
                roster=Roster(),
                policy=self.policy,
                overrides=(ElderOverride(steps=steps),),
            )
        rows = _plan_inputs(conn, elder.id, now_ms)  # pairings and roster: one round trip
        paired = [
            Pairing(
                r.rid, Role(r.role), r.k1, from_ms(r.a), from_ms(r.b) if r.b is not None else None
            )
            for r in sorted((r for r in rows if r.src == "p"), key=lambda r: (r.k1, r.k2, r.i))
        ]
        return build_plan(
            kind=kind,
            priority=priority,
            now=now,
            pairings=paired,
            roster=_roster(rows),
            elder_tags=frozenset(str(t) for t in (elder.tags or [])),
            policy=self.policy,
            station=_elder_station(rows),
        )

    def all_staff_plan(self, conn: Connection, elder_id: str, now_ms: int) -> LastResort | None:
        """The last resort for an alert of `elder_id`'s: one step of every staff member serving
        the elder's station who can be reached, or, when none of them can, of every other
        station's who can (alerts.policy `last_resort_staff`). When nobody at all can be
        reached, those serving the station all the same, so that the plan is there to try again
        at its deadline. None when there are no staff at all."""
        roster, station = self.roster_for(conn, elder_id, now_ms)
        staff = roster.all_staff()
        reach = self.reachable(conn, staff)
        unreachable = [r for r in staff if reach.get(r, (None, None))[1] is None]
        pick = last_resort_staff(roster, station, unreachable)
        if not pick.to:
            pick = last_resort_staff(roster, station)
        try:
            plan = Plan((Step(pick.to, self.default_ack_timeout_s),)) if pick.to else None
        except PlanError:
            return None
        return LastResort(plan, pick.other_stations) if plan else None

    @staticmethod
    def plan_detail(built: BuiltPlan) -> dict[str, Any]:
        """How the plan was made, for the alert's timeline ("planned")."""
        return {
            "source": built.source,
            "notes": list(built.notes),
            "steps": [
                {
                    "role": s.role.value if s.role else None,
                    "responder_ids": list(s.responder_ids),
                    "ack_timeout_s": s.ack_timeout_s,
                    **({"fallback": True} if s.fallback else {}),
                    **({"other_stations": True} if s.other_stations else {}),
                }
                for s in built.steps
            ],
        }

    # --- reminders -------------------------------------------------------------------------

    def reminder_interval_s(self, stage: State) -> int:
        """Seconds until the reminder after one of `stage` (for a page's reply_by)."""
        p = self.reminders
        gap = (p.after_on_site if stage == State.ON_SITE else p.after_ack) if p else None
        return int(gap.total_seconds()) if gap else self.default_ack_timeout_s

    def reminder(self, conn: Connection, alert: Row[Any], now_ms: int) -> Reminder | None:
        """The alert's next reminder as of `now_ms` (recipients: who is on duty now), or None."""
        if self.reminders is None:
            return None
        if alert.plan_source != "policy" and not self.reminders_for_explicit_plans:
            return None  # an explicit plan is followed as written: it has no reminders
        state = State(alert.state)
        if state not in (State.ACKNOWLEDGED, State.ON_SITE):
            return None
        events = conn.execute(
            select(alert_events.c.type, alert_events.c.at, alert_events.c.actor)
            .where(
                alert_events.c.alert_id == alert.id,
                alert_events.c.type.in_(("reminded", State.ON_SITE.value)),
            )
            .order_by(alert_events.c.id)
        ).all()
        arrived = next((e.actor for e in events if e.type == State.ON_SITE.value), None)
        roster, station = self.roster_for(conn, alert.elder_id, now_ms)
        try:
            return next_reminder(
                priority=Priority(alert.priority),
                state=state,
                acknowledged_at=from_ms(alert.acknowledged_at) if alert.acknowledged_at else None,
                on_site_at=from_ms(alert.on_site_at) if alert.on_site_at else None,
                acknowledged_by=responder_of(alert.acknowledged_by),
                arrived_by=responder_of(arrived),
                sent=[from_ms(e.at) for e in events if e.type == "reminded"],
                roster=roster,
                now=from_ms(now_ms),
                policy=self.reminders,
                station=station,
            )
        except ValueError:
            log.exception("alert %s: cannot work out its reminder", alert.id)
            return None

    def set_next_reminder(self, conn: Connection, alert_id: str, now_ms: int) -> None:
        """Store when the alert's next reminder is due (None: none), e.g. after an ack."""
        alert = conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()
        r = self.reminder(conn, alert, now_ms)
        due = to_ms(r.due_at) if r is not None else None
        if due != alert.next_reminder_at:
            conn.execute(update(alerts).where(alerts.c.id == alert_id).values(next_reminder_at=due))

    # --- channel chains --------------------------------------------------------------------

    def _chain(self, pager_id: str | None, links: Iterable[Any]) -> ChannelChain | None:
        """A person's chain: their pager (if any) at once, then their channels in order (rows
        or `_Link`s: anything with `channel`, `address` and `after_s`).

        Without a pager the first channel goes at once and the rest keep their distance from
        it: a page never waits for a link that is not there.
        """
        chain: list[ChannelLink] = []
        if pager_id:
            chain.append(ChannelLink(PAGER, pager_id, 0, self.retry))
        for r in links:
            if r.channel == PAGER:
                continue  # the pager is the responder's own pager_id, always first
            chain.append(ChannelLink(r.channel, r.address, r.after_s, self.retry))
        if not chain:
            return None
        shift = chain[0].after_s
        if shift:
            chain = [replace(link, after_s=link.after_s - shift) for link in chain]
        try:
            return ChannelChain(tuple(chain))
        except ValueError:
            log.warning("a channel chain that cannot be used (links out of order)")
            return ChannelChain(tuple(chain[:1]))

    @staticmethod
    def known_person(person: dict[str, Any]) -> tuple[Any, list[_Link]]:
        """A person read elsewhere as JSON (responder columns and `links`), for `reachable`."""
        links = [_Link(x["channel"], x["address"], x["after_s"]) for x in person["links"] or ()]
        fields = {c.name: person[c.name] for c in responders.c}
        return SimpleNamespace(**fields), links

    def reachable(
        self,
        conn: Connection,
        responder_ids: Iterable[str],
        known: dict[str, tuple[Any, list[_Link]]] | None = None,
    ) -> dict[str, tuple[Row[Any], ChannelChain | None]]:
        """Each of these people who exists, with their chain (None: nobody can reach them).

        One query, the people joined with their channels, as it is on the way of every page;
        none when `known` (people read in this transaction, `known_person`) has them all.
        """
        ids = list(dict.fromkeys(responder_ids))
        if not ids:
            return {}
        if known and all(i in known for i in ids):
            return {i: (known[i][0], self._chain(known[i][0].pager_id, known[i][1])) for i in ids}
        rows = conn.execute(_REACHABLE, {"ids": ids})
        people: dict[str, Row[Any]] = {}
        links: dict[str, list[_Link]] = {}
        for r in rows:
            if r.id not in people:
                people[r.id] = r
                links[r.id] = []
            if r.link_position is not None:  # None: a person with no channels (outer join)
                links[r.id].append(_Link(r.link_channel, r.link_address, r.link_after_s))
        return {rid: (p, self._chain(p.pager_id, links[rid])) for rid, p in people.items()}

    def with_chain(self, conn: Connection, alert_id: str, responder_ids: Sequence[str]) -> set[str]:
        """Those of `responder_ids` whose chain for this alert's escalation has begun."""
        if not responder_ids:
            return set()
        return set(
            conn.execute(
                select(deliveries.c.responder_id)
                .where(
                    deliveries.c.alert_id == alert_id,
                    deliveries.c.reminder.is_(False),
                    deliveries.c.responder_id.in_(list(responder_ids)),
                )
                .distinct()
            ).scalars()
        )

    def step_failed(self, conn: Connection, alert: Any) -> bool:
        """Whether the open `alert` (its row) is at a step nobody can be reached at any more:
        everyone asked there has had every channel of their chain fail for good, and that has
        not been acted on yet (no `step_unreachable` event for it since their pages). The caller
        holds the alert row lock.

        Per person of the step, by their newest escalation chain for the alert:
        - a pager: reachable. A pager page goes to MQTT and is never known to have failed.
        - failed for good: every link of the chain failed, each at its last try (no retry
          left), so none is still to come (an SMS whose provider failed with a fallback link
          still ahead is not); except the phone page (`web`) "not open", failed for good at
          its first failure: nobody sees the page unless they open it within the seconds its
          retries take (a page counts as closed only when unseen for 50 s), and the retries go
          on anyway, so paging the next step at once costs nothing but more people alerted.
        - not counted either way: nobody by that id, no channel at all (`_page_step` passes
          over them), not asked at this step attempt (no chain: passed over as a decliner), or
          answered (the alert being open, they said no).
        True only when at least one person failed for good and nobody else may still get it.
        """
        if alert.state != State.OPEN.value or not alert.plan or alert.step < 1:
            return False
        ids = Plan.from_json(alert.plan).step(alert.step).responder_ids
        reach = self.reachable(conn, ids)
        by_page: dict[str, list[Row[Any]]] = {}
        for r in conn.execute(
            select(deliveries)
            .where(
                deliveries.c.alert_id == alert.id,
                deliveries.c.reminder.is_(False),
                deliveries.c.responder_id.in_(list(ids)),
            )
            .order_by(deliveries.c.id)
        ):
            by_page.setdefault(r.page_id, []).append(r)
        # A person's newest chain: the one begun last (each page of one without a pager begins
        # one, and an older chain's retries may come after it).
        chains: dict[str, list[Row[Any]]] = {}
        for rows in sorted(by_page.values(), key=lambda rows: rows[0].id):
            chains[rows[0].responder_id] = rows
        failed_since: int | None = None
        for rid in ids:
            person, chain = reach.get(rid, (None, None))
            if person is None or chain is None:
                continue
            if person.pager_id:
                return False
            newest = chains.get(rid)
            if not newest:
                continue
            if self._answered(conn, alert.id, rid, newest[0].paged_at):
                continue
            if not _gave_up(chain, newest):
                return False
            failed_since = max(failed_since or 0, newest[0].paged_at)
        if failed_since is None:
            return False
        told = conn.execute(
            select(alert_events.c.detail).where(
                alert_events.c.alert_id == alert.id,
                alert_events.c.type == "step_unreachable",
                alert_events.c.at >= failed_since,
            )
        ).scalars()
        return not any(isinstance(d, dict) and d.get("why") == EVERY_CHANNEL_FAILED for d in told)

    def _if_step_failed(self, conn: Connection, alert_id: str, now_ms: int) -> None:
        """After a try failed: when the alert's step can no longer be reached (`step_failed`),
        make its escalation due now, for the escalation scheduler (gateway/alerting.py
        `escalate_due`, within ESCALATION_POLL_S) to page the next step. The caller holds the
        alert row lock. In a savepoint: a fault here (a stored plan this version cannot read)
        must not cost the result its write; the step's time-out still comes."""
        try:
            with conn.begin_nested():
                alert = conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()
                due = alert.next_escalation_at
                if due is not None and due > now_ms and self.step_failed(conn, alert):
                    conn.execute(
                        update(alerts)
                        .where(alerts.c.id == alert_id)
                        .values(next_escalation_at=now_ms)
                    )
        except Exception as exc:
            if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                raise
            log.exception("alert %s: cannot tell whether its step is unreachable", alert_id)

    def chain_rows(
        self,
        now_ms: int,
        alert_id: str,
        alert_state: State,
        responder_id: str,
        page_id: str,
        chain: ChannelChain,
        title: str,
        body: str,
        *,
        reminder: bool,
    ) -> list[dict[str, Any]]:
        """The `deliveries` rows that begin a new chain for a page just made, for the caller to
        insert in the page's transaction (with the other chains of its step, in one statement;
        in the order given, so that the chain's newest row is its last).

        The pager, when the chain begins with it, was paged through the outbox: that is the
        chain's first attempt, recorded as sent. A channel due at once (a person without a
        pager) is queued for the scheduler, which hands it to the notifier pool after its own
        commit: this transaction may be the ingest worker's, which must not wait for one.
        """
        now = from_ms(now_ms)
        base = {
            "alert_id": alert_id,
            "page_id": page_id,
            "responder_id": responder_id,
            "reminder": reminder,
            "paged_at": now_ms,
            "title": title[:100],
            "body": body,
            "error": None,
            "next_try_at": None,
        }
        rows: list[dict[str, Any]] = []
        attempts: list[Attempt] = []
        first = chain.links[0]
        if first.channel == PAGER:
            rows.append(
                base
                | {
                    "channel": PAGER,
                    "address_masked": first.address,
                    "link": 0,
                    "try_no": 1,
                    "status": DeliveryStatus.SENT.value,
                    "at": now_ms,
                }
            )
            attempts.append(Attempt(0, 1, now, DeliveryStatus.SENT))
        sched = chain_schedule(
            chain, now, attempts, now, answered=False, alert_state=alert_state, reminder=reminder
        )
        for due in sched.due:
            if due.channel == PAGER:
                continue  # only ever the first link, paged above
            rows.append(
                base
                | {
                    "channel": due.channel,
                    "address_masked": mask_address(due.channel, due.address),
                    "link": due.link,
                    "try_no": due.try_no,
                    "status": QUEUED,
                    "at": now_ms,
                }
            )
        if rows:
            queued = any(r["status"] == QUEUED for r in rows)
            rows[-1]["next_try_at"] = now_ms if queued else _ms(sched.next_at)
        return rows

    def chains_due(
        self, conn: Connection, now_ms: int, limit: int = 100, logs: list[Line] | None = None
    ) -> list[Delivery]:
        """Work the chains whose time has come; returns the sends to hand to the pool once the
        transaction has committed. `logs` gets the log lines to write then (`alert_log.emit`)."""
        alert_ids = list(
            conn.execute(
                select(deliveries.c.alert_id)
                .where(deliveries.c.next_try_at <= now_ms)
                .distinct()
                .limit(limit)
            ).scalars()
        )
        if not alert_ids:
            return []
        q = select(alerts.c.id, alerts.c.state).where(alerts.c.id.in_(alert_ids))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)  # another gateway has it: it is theirs
        work = _Work(conn, now_ms, logs=logs if logs is not None else [])
        for a in conn.execute(q).all():
            page_ids = conn.execute(
                select(deliveries.c.page_id)
                .where(deliveries.c.alert_id == a.id, deliveries.c.next_try_at <= now_ms)
                .distinct()
            ).scalars()
            for page_id in list(page_ids):
                self._chain_alone(work, a.id, a.state, page_id)
        return work.jobs

    def _chain_alone(self, w: _Work, alert_id: str, state: str, page_id: str) -> None:
        """One due chain in a savepoint of its own: a fault in one (a bug, a stored row this
        version cannot read) used to roll back every chain at every poll, so that no SMS, call
        or IM went to anyone. Now its writes are rolled back with the sends and log lines it
        had added, and its time to look again is put CHAIN_RETRY_S ahead, with a
        `chain_failed` event on the alert's timeline; the others go on. A database error that
        is no refusal of what the chain holds (gateway/db.py `refused`: the database gone away,
        or under load, a lock or statement timeout, a deadlock) is no fault of the chain's: it
        fails the batch, retried whole at the next poll, not 30 s later."""
        jobs, logs = len(w.jobs), len(w.logs)
        w.failed = False  # this chain's own: not one a chain before it raised on
        savepoint = w.conn.begin_nested()
        try:
            self._step_chain(w, State(state), page_id, send=True)
            if w.failed:
                w.failed = False
                self._if_step_failed(w.conn, alert_id, w.now_ms)
        except Exception as exc:
            if isinstance(exc, DBAPIError) and not refused(exc):
                raise
            savepoint.rollback()  # should even this fail, the batch fails as a whole
            del w.jobs[jobs:], w.logs[logs:]
            retry_at = w.now_ms + CHAIN_RETRY_S * 1000
            error = type(exc).__name__
            # The type and where, not the message: it may quote an address or a name.
            log.error(
                "channel chain %s of alert %s failed (%s), retry in %d s:\n%s",
                page_id,
                alert_id,
                error,
                CHAIN_RETRY_S,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            w.logs.append((logging.ERROR, line("chain_failed", id=alert_id, page=page_id)))
            detail = {"page_id": page_id, "error": error, "retry_at": rfc3339(retry_at, self.tz)}
            for stmt in (
                update(deliveries)
                .where(deliveries.c.page_id == page_id, deliveries.c.next_try_at.is_not(None))
                .values(next_try_at=retry_at),
                insert(alert_events).values(
                    alert_id=alert_id, at=w.now_ms, type="chain_failed", actor=None, detail=detail
                ),
            ):
                try:
                    with w.conn.begin_nested():
                        w.conn.execute(stmt)
                except DBAPIError as e:
                    if e.connection_invalidated:
                        raise
                    log.error(
                        "alert %s: chain failure not recorded (%s)", alert_id, type(e).__name__
                    )
        else:
            savepoint.commit()

    def record_result(
        self, engine: Engine, now_ms: int, d: Delivery, result: DeliveryResult
    ) -> None:
        """Write a send's result back (its own short transaction) and reset the chain's time."""
        logs: list[Line] = []
        with engine.begin() as conn:
            q = select(alerts.c.id, alerts.c.state).where(alerts.c.id == d.alert_id)
            alert = conn.execute(q.with_for_update()).one()
            row = conn.execute(select(deliveries).where(deliveries.c.id == d.id)).first()
            if row is None or row.status != SENDING:
                return  # its lease ended meanwhile and it was counted as failed
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == d.id)
                .values(status=result.status.value, at=now_ms, error=result.error)
            )
            self._record_attempt(conn, now_ms, row, result.status.value, result.error, logs)
            work = _Work(conn, now_ms, logs=logs)
            self._step_chain(work, State(alert.state), d.page_id, send=False)
            if result.status == DeliveryStatus.FAILED or work.failed:
                self._if_step_failed(conn, alert.id, now_ms)
        emit(logs)  # committed

    def _record_attempt(
        self,
        conn: Connection,
        now_ms: int,
        row: Row[Any],
        status: str,
        error: str | None,
        logs: list[Line],
    ) -> None:
        """Put one attempt on the alert's timeline; a link that gave up (failed at its last
        try) also gets a WARNING line in `logs`, for after the commit."""
        detail: dict[str, Any] = {
            "responder_id": row.responder_id,
            "page_id": row.page_id,
            "channel": row.channel,
            "address": row.address_masked,
            "link": row.link,
            "try": row.try_no,
            "status": status,
        }
        if row.reminder:
            detail["reminder"] = True
        if error:
            detail["error"] = error
        if status == DeliveryStatus.FAILED.value and row.try_no >= self.retry.max_tries:
            detail["gave_up"] = True
            # Not the error: a provider may quote the number or address it could not reach.
            failed = line(
                "delivery failed",
                id=row.alert_id,
                page=row.page_id,
                responder=row.responder_id,
                channel=row.channel,
                link=row.link,
                tries=row.try_no,
                reminder="yes" if row.reminder else None,
            )
            logs.append((logging.WARNING, failed))
        conn.execute(
            insert(alert_events).values(
                alert_id=row.alert_id, at=now_ms, type="delivery", actor=None, detail=detail
            )
        )

    def _answered(self, conn: Connection, alert_id: str, responder_id: str, since: int) -> bool:
        """Whether the person answered (any reply of theirs) since the page."""
        return (
            conn.execute(
                select(alert_events.c.id)
                .where(
                    alert_events.c.alert_id == alert_id,
                    alert_events.c.actor == f"{RESPONDER}{responder_id}",
                    alert_events.c.at >= since,
                )
                .limit(1)
            ).first()
            is not None
        )

    def _step_chain(self, w: _Work, alert_state: State, page_id: str, *, send: bool) -> None:
        """Bring one chain up to `w.now_ms`: end lost sends, cancel what an answer made
        unnecessary, then (with `send`) hand queued and newly due attempts to the pool; last,
        put the time to look again on the chain's newest row."""
        conn, now_ms = w.conn, w.now_ms
        now = from_ms(now_ms)
        rows = conn.execute(
            select(deliveries).where(deliveries.c.page_id == page_id).order_by(deliveries.c.id)
        ).all()
        if not rows:
            return
        first = rows[0]
        # The chain as the person has it now, with the pager if the chain began with it (a pager
        # row's address is the pager id, which is not masked).
        links = conn.execute(
            select(responder_channels)
            .where(responder_channels.c.responder_id == first.responder_id)
            .order_by(responder_channels.c.position)
        ).all()
        chain = self._chain(first.address_masked if first.channel == PAGER else None, links)
        answered = self._answered(conn, first.alert_id, first.responder_id, first.paged_at)
        goes_on = alert_state in ACTIVE_STATES and (first.reminder or alert_state == State.OPEN)
        stopped = answered or not goes_on or chain is None

        attempts: list[Attempt] = []
        wake: list[int] = []
        for r in rows:
            status = r.status
            link = chain.links[r.link] if chain and r.link < len(chain.links) else None
            if status == QUEUED and (stopped or link is None or link.channel != r.channel):
                if link is None or link.channel != r.channel:
                    why = "the person's channels changed"
                else:
                    why = "answered before it went" if answered else "no longer needed"
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == r.id)
                    .values(status=CANCELLED, at=now_ms, error=why)
                )
                continue
            if status == SENDING and r.at + LEASE_MS <= now_ms:
                error = f"no result within {LEASE_MS // 1000} s (the gateway stopped?)"
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == r.id)
                    .values(status=DeliveryStatus.FAILED.value, at=now_ms, error=error)
                )
                self._record_attempt(conn, now_ms, r, DeliveryStatus.FAILED.value, error, w.logs)
                w.failed = True
                status = DeliveryStatus.FAILED.value
            elif status == QUEUED:
                if not send:
                    wake.append(now_ms)
                    attempts.append(Attempt(r.link, r.try_no, now, DeliveryStatus.SENT))
                    continue
                assert link is not None
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == r.id)
                    .values(status=SENDING, at=now_ms)
                )
                w.jobs.append(_delivery(r, link.address))
                status = SENDING
            if status == SENDING:
                at = r.at if r.status == SENDING else now_ms
                wake.append(at + LEASE_MS)
            if status == CANCELLED:
                continue
            # In flight counts as sent: a link is not tried again while its try is out.
            as_status = DeliveryStatus(status) if status != SENDING else DeliveryStatus.SENT
            at_ms = r.at if status == r.status else now_ms
            attempts.append(Attempt(r.link, r.try_no, from_ms(at_ms), as_status))

        newest = rows[-1].id
        if not stopped:
            assert chain is not None
            sched = chain_schedule(
                chain,
                from_ms(first.paged_at),
                attempts,
                now,
                answered=answered,
                alert_state=alert_state,
                reminder=first.reminder,
            )
            due = [d for d in sched.due if d.channel != PAGER]
            if send and due:
                for d in due:
                    new_id = conn.execute(
                        insert(deliveries)
                        .values(
                            alert_id=first.alert_id,
                            page_id=page_id,
                            responder_id=first.responder_id,
                            reminder=first.reminder,
                            paged_at=first.paged_at,
                            channel=d.channel,
                            address_masked=mask_address(d.channel, d.address),
                            link=d.link,
                            try_no=d.try_no,
                            status=SENDING,
                            at=now_ms,
                            title=first.title,
                            body=first.body,
                        )
                        .returning(deliveries.c.id)
                    ).scalar_one()
                    newest = new_id
                    w.jobs.append(
                        Delivery(
                            id=new_id,
                            alert_id=first.alert_id,
                            page_id=page_id,
                            responder_id=first.responder_id,
                            channel=d.channel,
                            address=d.address,
                            address_masked=mask_address(d.channel, d.address),
                            link=d.link,
                            try_no=d.try_no,
                            title=first.title,
                            body=first.body,
                        )
                    )
                    wake.append(now_ms + LEASE_MS)
            else:
                wake += [to_ms(d.due_at) for d in due]
            if sched.next_at is not None:
                wake.append(to_ms(sched.next_at))
        cursor = min(wake) if wake else None
        conn.execute(
            update(deliveries)
            .where(deliveries.c.page_id == page_id, deliveries.c.next_try_at.is_not(None))
            .values(next_try_at=None)
        )
        if cursor is not None:
            conn.execute(
                update(deliveries).where(deliveries.c.id == newest).values(next_try_at=cursor)
            )


def _gave_up(chain: ChannelChain, rows: Sequence[Row[Any]]) -> bool:
    """Whether every link of the person's chain failed for good in its `deliveries` rows
    (`Paging.step_failed` says what counts)."""
    for i, link in enumerate(chain.links):
        tries = [r for r in rows if r.link == i and r.channel == link.channel]
        tries = [r for r in tries if r.status != CANCELLED]
        if not tries or any(r.status != DeliveryStatus.FAILED.value for r in tries):
            return False  # still to come, in flight, or sent
        if len(tries) >= link.retry.max_tries:
            continue
        if link.channel == WEB and tries[-1].error == NOT_OPEN:
            continue
        return False  # a retry is left
    return True


def _delivery(r: Row[Any], address: str) -> Delivery:
    return Delivery(
        id=r.id,
        alert_id=r.alert_id,
        page_id=r.page_id,
        responder_id=r.responder_id,
        channel=r.channel,
        address=address,
        address_masked=r.address_masked,
        link=r.link,
        try_no=r.try_no,
        title=r.title,
        body=r.body,
    )


def _ms(dt: Any) -> int | None:
    return to_ms(dt) if dt is not None else None


__all__ = ["LEASE_MS", "Paging", "responder_of"]
