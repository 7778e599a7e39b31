"""Pairing (结对), family links, and the volunteers' profiles.

Pairing: a standing link between an elder and a person who helps: a watcher (守望员), a
mutual-aid volunteer (互助员), a relative (亲属结对), a party member (党员结对) or a staff member
in charge of the household (包户). The seed's station pairs "邻里结对、亲属结对、党员结对 ... 按照
就近、自愿原则". A pairing has a kind, a start, an optional end (open: until ended), an `order`
within its kind (lower is paged first), and who set it up.

- Active at `now` when `start <= now < end` (an end at 08:00 is over at 08:00), the same
  half-open rule as `alerts.policy.Pairing`, which the gateway builds from these: `kind.role`
  gives the paging role (a party member pages as a volunteer). The gateway's `pairings` table
  stores `start`/`end` as `active_from`/`active_until`.
- No two pairings of the same elder, person and kind may overlap in time (`check_new_pairing`):
  a second one would page the same person twice, and ending one would leave the other. Another
  kind for the same pair is fine (a neighbour who is also a party member).
- Ending (`end_pairing`) sets the end; it never deletes, so the history says who was paired
  when an alarm was answered.

Family links (`FamilyLink`, the issue's access rule): a relative sees an elder only after the
station approves the request and the elder (or the station on the elder's behalf, said so)
confirms; the link may expire and may be revoked. States: requested -> approved -> confirmed;
revoked from any; expired is read from `expires_at`, never stored. Staff approve; the approver
does not also confirm on the elder's behalf (two people, as for the points). A relative has at
most one live (requested, approved or confirmed) link per elder (`check_new_family_link`).

Volunteers (`VolunteerProfile`): categories (the seed's 党员、大学生、医疗、法律、文体 plus
低龄老人, the young-old whom the district's mutual-aid plan recruits), skills, weekly
availability (station-local wall-clock time), trainings and certificates with expiry.
`check_volunteer` holds the date rules: a young-old volunteer is 60-69 (`YOUNG_OLD_AGES`).

Datetimes are timezone-aware; `now`/`today` are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from care._common import (
    CareError,
    Labelled,
    Note,
    Problem,
    Text50,
    Text100,
    in_declared_order,
    set_labels,
)
from care.elders import Relation, age_on
from care.people import Role

__all__ = [
    "YOUNG_OLD_AGES",
    "Availability",
    "Certificate",
    "FamilyLink",
    "FamilyLinkState",
    "Pairing",
    "PairingConflict",
    "PairingKind",
    "Training",
    "VolunteerCategory",
    "VolunteerProfile",
    "active_pairings",
    "approve_family_link",
    "check_new_family_link",
    "check_new_pairing",
    "check_volunteer",
    "confirm_family_link",
    "end_pairing",
    "revoke_family_link",
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )


# --------------------------------------------------------------------------------------------
# pairing
# --------------------------------------------------------------------------------------------


class PairingKind(Labelled):
    WATCHER = "watcher"
    VOLUNTEER = "volunteer"
    FAMILY = "family"
    PARTY_MEMBER = "party_member"
    STAFF = "staff"

    @property
    def role(self) -> Role:
        """The paging role of this kind of pairing (alerts.policy.Role has the same values)."""
        return {
            PairingKind.WATCHER: Role.WATCHER,
            PairingKind.VOLUNTEER: Role.VOLUNTEER,
            PairingKind.FAMILY: Role.FAMILY,
            PairingKind.PARTY_MEMBER: Role.VOLUNTEER,
            PairingKind.STAFF: Role.STAFF,
        }[self]


set_labels(
    PairingKind,
    {
        PairingKind.WATCHER: ("守望员结对", "watcher", ("邻里结对", "守望员")),
        PairingKind.VOLUNTEER: ("互助结对", "volunteer", ("志愿者", "互助员")),
        PairingKind.FAMILY: ("亲属结对", "relative", ("亲属", "家属")),
        PairingKind.PARTY_MEMBER: ("党员结对", "party member", ("党员",)),
        PairingKind.STAFF: ("包户工作人员", "staff in charge", ("工作人员",)),
    },
)


class PairingConflict(CareError):
    """A pairing refused: overlapping, already ended, or ended before it started."""


class Pairing(_Model):
    id: Text50 | None = Field(default=None, description="assigned by the gateway")
    elder_id: Text50
    person_id: Text50
    kind: PairingKind
    start: AwareDatetime
    end: AwareDatetime | None = Field(default=None, description="none: until ended")
    order: int = Field(default=0, ge=0, le=1000, description="lower is paged first in its kind")
    created_by: Text100
    note: Note | None = None

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if self.end is not None and self.end <= self.start:
            raise CareError(
                "pairing_end_before_start",
                "the end is not after the start",
                "结束时间须晚于开始时间",
            ).pydantic("end")
        return self

    def active_at(self, now: datetime) -> bool:
        return self.start <= now and (self.end is None or now < self.end)

    def same_link(self, other: Pairing) -> bool:
        return (self.elder_id, self.person_id, self.kind) == (
            other.elder_id,
            other.person_id,
            other.kind,
        )

    def overlaps(self, other: Pairing) -> bool:
        """The two [start, end) spans share an instant."""
        return (other.end is None or self.start < other.end) and (
            self.end is None or other.start < self.end
        )


def check_new_pairing(new: Pairing, existing: Iterable[Pairing]) -> None:
    """Refuse `new` (PairingConflict) when it overlaps a pairing of the same elder, person
    and kind. A pairing with the same `id` as `new` is `new` itself (an edit) and is skipped.
    """
    for p in existing:
        if new.id is not None and p.id == new.id:
            continue
        if p.same_link(new) and p.overlaps(new):
            raise PairingConflict(
                "pairing_overlap",
                f"{new.person_id} is already paired with {new.elder_id} as {new.kind.en} "
                f"from {p.start.isoformat()}" + (f" to {p.end.isoformat()}" if p.end else ""),
                f"{new.person_id}已与{new.elder_id}建立“{new.kind.zh}”，时间重叠",
            )


def end_pairing(pairing: Pairing, *, at: datetime) -> Pairing:
    """The pairing ended at `at` (which must be after its start and before any earlier end)."""
    if at <= pairing.start:
        raise PairingConflict(
            "pairing_end_before_start",
            "a pairing ends after it starts (delete nothing: end it at a later time)",
            "结束时间须晚于开始时间",
        )
    if pairing.end is not None and pairing.end <= at:
        raise PairingConflict(
            "pairing_already_ended",
            f"the pairing already ended at {pairing.end.isoformat()}",
            f"该结对已于{pairing.end.isoformat()}结束",
        )
    return pairing.model_copy(update={"end": at})


def active_pairings(
    pairings: Iterable[Pairing],
    now: datetime,
    *,
    elder_id: str | None = None,
    kind: PairingKind | None = None,
) -> list[Pairing]:
    """The pairings active at `now`, by kind then `order` (input order breaks ties)."""
    kinds = list(PairingKind)
    active = [
        p
        for p in pairings
        if p.active_at(now)
        and (elder_id is None or p.elder_id == elder_id)
        and (kind is None or p.kind is kind)
    ]
    return sorted(active, key=lambda p: (kinds.index(p.kind), p.order))


# --------------------------------------------------------------------------------------------
# family links
# --------------------------------------------------------------------------------------------


class FamilyLinkState(Labelled):
    REQUESTED = "requested"
    APPROVED = "approved"
    CONFIRMED = "confirmed"
    REVOKED = "revoked"
    EXPIRED = "expired"


set_labels(
    FamilyLinkState,
    {
        FamilyLinkState.REQUESTED: ("待审核", "requested"),
        FamilyLinkState.APPROVED: ("待老人确认", "approved, awaiting the elder"),
        FamilyLinkState.CONFIRMED: ("已生效", "confirmed"),
        FamilyLinkState.REVOKED: ("已撤销", "revoked"),
        FamilyLinkState.EXPIRED: ("已过期", "expired"),
    },
)


class FamilyLink(_Model):
    """A relative's access to one elder's status; see the module doc for the steps."""

    id: Text50 | None = None
    elder_id: Text50
    person_id: Text50
    relation: Relation
    requested_at: AwareDatetime
    requested_by: Text100
    expires_at: AwareDatetime | None = Field(default=None, description="none: no expiry")
    approved_at: AwareDatetime | None = None
    approved_by: Text100 | None = None
    confirmed_at: AwareDatetime | None = None
    confirmed_by: Text100 | None = None
    confirmed_on_behalf: bool = Field(
        default=False, description="the station confirmed for an elder who cannot"
    )
    revoked_at: AwareDatetime | None = None
    revoked_by: Text100 | None = None
    revoke_reason: Note | None = None

    def state_at(self, now: datetime) -> FamilyLinkState:
        if self.revoked_at is not None and self.revoked_at <= now:
            return FamilyLinkState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return FamilyLinkState.EXPIRED
        if self.confirmed_at is not None:
            return FamilyLinkState.CONFIRMED
        if self.approved_at is not None:
            return FamilyLinkState.APPROVED
        return FamilyLinkState.REQUESTED

    def active_at(self, now: datetime) -> bool:
        """Whether the relative may see the elder now."""
        return self.state_at(now) is FamilyLinkState.CONFIRMED

    def live_at(self, now: datetime) -> bool:
        """Requested, approved or confirmed at `now`: neither revoked nor expired."""
        return self.state_at(now) not in (FamilyLinkState.REVOKED, FamilyLinkState.EXPIRED)


def _refuse_link(state: FamilyLinkState, action_en: str, action_zh: str) -> CareError:
    return CareError(
        "family_link_state",
        f"cannot {action_en} a link that is {state.en}",
        f"状态为“{state.zh}”的亲属关联不能{action_zh}",
    )


def check_new_family_link(new: FamilyLink, existing: Iterable[FamilyLink], now: datetime) -> None:
    """Refuse `new` (CareError `family_link_duplicate`) while the same relative has a live link
    (requested, approved or confirmed) to the same elder: a second one would keep the access
    alive after the first is revoked. After a revocation or expiry a new request is fine."""
    for link in existing:
        if new.id is not None and link.id == new.id:
            continue
        if link.elder_id != new.elder_id or link.person_id != new.person_id:
            continue
        if link.live_at(now):
            state = link.state_at(now)
            raise CareError(
                "family_link_duplicate",
                f"{new.person_id} already has a link to {new.elder_id} ({link.id}, {state.en})",
                f"{new.person_id}与{new.elder_id}已有亲属关联（{link.id}，{state.zh}）",
            )


def approve_family_link(link: FamilyLink, *, by: str, by_role: Role, at: datetime) -> FamilyLink:
    """The station approves the request (staff only)."""
    state = link.state_at(at)
    if state is not FamilyLinkState.REQUESTED:
        raise _refuse_link(state, "approve", "审核")
    if by_role is not Role.STAFF:
        raise CareError("family_link_role", "only station staff approve", "仅站点工作人员可审核")
    return link.model_copy(update={"approved_at": at, "approved_by": by})


def confirm_family_link(
    link: FamilyLink, *, by: str, by_role: Role | None, at: datetime, on_behalf: bool
) -> FamilyLink:
    """The elder confirms (`by` is the elder's id), or staff confirm on the elder's behalf.

    On the elder's behalf needs a staff member other than the approver.
    """
    state = link.state_at(at)
    if state is not FamilyLinkState.APPROVED:
        raise _refuse_link(state, "confirm", "确认")
    if on_behalf:
        if by_role is not Role.STAFF:
            raise CareError(
                "family_link_role",
                "only station staff confirm on the elder's behalf",
                "仅站点工作人员可代老人确认",
            )
        if by == link.approved_by:
            raise CareError(
                "family_link_same_person",
                "the approver does not also confirm on the elder's behalf",
                "审核人不能同时代老人确认",
            )
    elif by != link.elder_id:
        raise CareError(
            "family_link_not_elder",
            "only the elder confirms, or staff on the elder's behalf",
            "须由老人本人确认，或由工作人员代为确认",
        )
    return link.model_copy(
        update={"confirmed_at": at, "confirmed_by": by, "confirmed_on_behalf": on_behalf}
    )


def revoke_family_link(link: FamilyLink, *, by: str, at: datetime, reason: str) -> FamilyLink:
    """Revoked from any state but revoked; the reason is kept."""
    state = link.state_at(at)
    if state is FamilyLinkState.REVOKED:
        raise _refuse_link(state, "revoke", "撤销")
    if not reason.strip():
        raise CareError("family_link_reason", "give the reason", "请填写撤销原因")
    return link.model_copy(
        update={"revoked_at": at, "revoked_by": by, "revoke_reason": reason.strip()}
    )


# --------------------------------------------------------------------------------------------
# volunteers
# --------------------------------------------------------------------------------------------


class VolunteerCategory(Labelled):
    PARTY_MEMBER = "party_member"
    STUDENT = "student"
    MEDICAL = "medical"
    LEGAL = "legal"
    ARTS = "arts"
    YOUNG_OLD = "young_old"


set_labels(
    VolunteerCategory,
    {
        VolunteerCategory.PARTY_MEMBER: ("党员", "party member"),
        VolunteerCategory.STUDENT: ("学生", "student", ("大学生",)),
        VolunteerCategory.MEDICAL: ("医疗", "medical", ("医护",)),
        VolunteerCategory.LEGAL: ("法律", "legal"),
        VolunteerCategory.ARTS: ("文体", "arts and sports", ("文艺", "体育")),
        VolunteerCategory.YOUNG_OLD: ("低龄老人", "young-old", ("低龄健康老人", "初老健老")),
    },
)

YOUNG_OLD_AGES = (60, 69)  # 低龄老人, inclusive


class Availability(_Model):
    """A weekly slot in station-local wall-clock time: Monday is 0."""

    weekday: int = Field(ge=0, le=6)
    start: time
    end: time

    @model_validator(mode="after")
    def _order(self) -> Self:
        # naive first: comparing a naive and an aware time raises TypeError
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise CareError(
                "availability_local",
                "slots are station-local times, without an offset",
                "时段为站点当地时间，不带时区",
            ).pydantic("start")
        if self.end <= self.start:
            raise CareError(
                "availability_order",
                "a slot ends after it starts (split one over midnight in two)",
                "时段结束须晚于开始（跨午夜请分为两段）",
            ).pydantic("end")
        return self

    def covers(self, local: datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        return local.weekday() == self.weekday and self.start <= t < self.end


class Training(_Model):
    name: Text100
    completed_on: date
    hours: float | None = Field(default=None, gt=0, le=1000)
    provider: Text100 | None = None


class Certificate(_Model):
    name: Text100 = Field(description="e.g. 养老护理员, 红十字救护员证")
    number: Text50 | None = None
    issued_by: Text100 | None = None
    issued_on: date
    expires_on: date | None = Field(default=None, description="none: does not expire")

    @model_validator(mode="after")
    def _dates(self) -> Self:
        if self.expires_on is not None and self.expires_on <= self.issued_on:
            raise CareError(
                "certificate_dates", "it expires before it was issued", "有效期早于发证日期"
            ).pydantic("expires_on")
        return self

    def valid_on(self, today: date) -> bool:
        """Issued by `today` and not expired (valid through its expiry date)."""
        return self.issued_on <= today and (self.expires_on is None or today <= self.expires_on)

    def expires_within(self, today: date, days: int) -> bool:
        return (
            self.valid_on(today)
            and self.expires_on is not None
            and self.expires_on <= today + timedelta(days=days)
        )


class VolunteerProfile(_Model):
    person_id: Text50
    categories: frozenset[VolunteerCategory] = frozenset()
    skills: tuple[Text50, ...] = Field(default=(), max_length=30, description="e.g. 理发, 量血压")
    availability: tuple[Availability, ...] = Field(default=(), max_length=50)
    trainings: tuple[Training, ...] = Field(default=(), max_length=100)
    certificates: tuple[Certificate, ...] = Field(default=(), max_length=50)
    birth_date: date | None = Field(default=None, description="needed for the young-old")
    note: Note | None = None

    @field_validator("skills")
    @classmethod
    def _unique_skills(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))

    @field_serializer("categories", when_used="json")
    def _categories_json(self, value: frozenset[VolunteerCategory]) -> list[VolunteerCategory]:
        return in_declared_order(value)

    def available_at(self, local: datetime) -> bool:
        """Whether a weekly slot covers `local` (station-local time)."""
        return any(a.covers(local) for a in self.availability)

    def valid_certificates(self, today: date) -> list[Certificate]:
        return [c for c in self.certificates if c.valid_on(today)]

    def expiring_certificates(self, today: date, days: int = 30) -> list[Certificate]:
        """Valid today, expiring within `days`: time to renew."""
        return [c for c in self.certificates if c.expires_within(today, days)]


def check_volunteer(profile: VolunteerProfile, *, today: date) -> list[Problem]:
    """The date rules of a profile; an empty list when all hold."""
    problems: list[Problem] = []
    if VolunteerCategory.YOUNG_OLD in profile.categories:
        lo, hi = YOUNG_OLD_AGES
        if profile.birth_date is None:
            problems.append(
                Problem(
                    "birth_date",
                    "young_old_birth_date",
                    "a young-old volunteer needs a birth date",
                    "低龄老人志愿者须填写出生日期",
                )
            )
        elif profile.birth_date > today or not lo <= age_on(profile.birth_date, today) <= hi:
            problems.append(
                Problem(
                    "categories",
                    "young_old_age",
                    f"young-old means aged {lo}-{hi}",
                    f"低龄老人指{lo}-{hi}周岁",
                )
            )
    for i, c in enumerate(profile.certificates):
        if c.issued_on > today:
            problems.append(
                Problem(
                    f"certificates.{i}.issued_on",
                    "certificate_future",
                    f"{c.name} is issued after today",
                    f"{c.name}发证日期晚于今天",
                )
            )
    for i, t in enumerate(profile.trainings):
        if t.completed_on > today:
            problems.append(
                Problem(
                    f"trainings.{i}.completed_on",
                    "training_future",
                    f"{t.name} is completed after today",
                    f"{t.name}完成日期晚于今天",
                )
            )
    return problems
