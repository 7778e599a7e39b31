"""Unit tests of pairing (结对): no overlapping duplicates, half-open activity, ending without
deleting, the paging role of each kind; family links (approve, confirm, expire, revoke); and the
volunteers' availability, trainings and certificates. Pure and fast.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alerts.policy import Role as PolicyRole
from care._common import CareError
from care.elders import Relation, problems_from
from care.pairing import (
    Certificate,
    FamilyLink,
    FamilyLinkState,
    Pairing,
    PairingConflict,
    PairingKind,
    VolunteerCategory,
    VolunteerProfile,
    active_pairings,
    approve_family_link,
    check_new_family_link,
    check_new_pairing,
    check_volunteer,
    confirm_family_link,
    end_pairing,
    revoke_family_link,
)
from care.people import Role

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=CST)
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=CST)
TODAY = NOW.date()
FAST = settings(max_examples=300, deadline=None, database=None)


def pairing(
    start: datetime = T0, end: datetime | None = None, *, person: str = "w1", **over: Any
) -> Pairing:
    data: dict[str, Any] = {
        "elder_id": "e1",
        "person_id": person,
        "kind": "watcher",
        "start": start,
        "end": end,
        "created_by": "staff-1",
    }
    data.update(over)
    return Pairing.model_validate(data)


# --------------------------------------------------------------------------------------------
# pairing
# --------------------------------------------------------------------------------------------


def test_active_is_half_open() -> None:
    p = pairing(T0, T0 + timedelta(days=7))
    assert not p.active_at(T0 - timedelta(seconds=1))
    assert p.active_at(T0)
    assert p.active_at(T0 + timedelta(days=7) - timedelta(seconds=1))
    assert not p.active_at(T0 + timedelta(days=7))
    assert pairing().active_at(NOW + timedelta(days=3650))


def test_end_after_start_and_aware_times() -> None:
    with pytest.raises(ValidationError) as info:
        pairing(T0, T0)
    assert [(p.field, p.code) for p in problems_from(info.value)] == [
        ("end", "pairing_end_before_start")
    ]
    with pytest.raises(ValidationError):
        pairing(T0.replace(tzinfo=None))


def test_overlapping_duplicates_are_refused() -> None:
    existing = [pairing(T0)]
    with pytest.raises(PairingConflict) as info:
        check_new_pairing(pairing(NOW), existing)
    assert info.value.code == "pairing_overlap"
    # another kind, another person, another elder: fine
    check_new_pairing(pairing(NOW, kind="party_member"), existing)
    check_new_pairing(pairing(NOW, person="w2"), existing)
    check_new_pairing(pairing(NOW, elder_id="e2"), existing)


def test_a_new_pairing_may_start_when_the_old_one_ends() -> None:
    old = pairing(T0, NOW)
    check_new_pairing(pairing(NOW), [old])
    with pytest.raises(PairingConflict):
        check_new_pairing(pairing(NOW - timedelta(minutes=1)), [old])


def test_editing_a_pairing_does_not_conflict_with_itself() -> None:
    p = pairing(T0, id="p1")
    check_new_pairing(p.model_copy(update={"order": 2}), [p])


def test_end_pairing() -> None:
    p = pairing(T0)
    ended = end_pairing(p, at=NOW)
    assert ended.end == NOW and ended.start == p.start and not ended.active_at(NOW)
    with pytest.raises(PairingConflict) as info:
        end_pairing(p, at=T0)
    assert info.value.code == "pairing_end_before_start"
    with pytest.raises(PairingConflict) as info:
        end_pairing(ended, at=NOW + timedelta(days=1))
    assert info.value.code == "pairing_already_ended"
    assert end_pairing(ended, at=NOW - timedelta(days=1)).end == NOW - timedelta(days=1)


def test_active_pairings_by_kind_then_order() -> None:
    ps = [
        pairing(person="v1", kind="volunteer", order=1),
        pairing(person="w2", order=5),
        pairing(person="w1", order=1),
        pairing(person="f1", kind="family"),
        pairing(person="w3", end=NOW),
        pairing(person="x", elder_id="e2"),
    ]
    got = [p.person_id for p in active_pairings(ps, NOW, elder_id="e1")]
    assert got == ["w1", "w2", "v1", "f1"]
    assert [p.person_id for p in active_pairings(ps, NOW, kind=PairingKind.FAMILY)] == ["f1"]


def test_kinds_page_with_the_alerts_roles() -> None:
    assert PairingKind.PARTY_MEMBER.role is Role.VOLUNTEER
    for kind in PairingKind:
        assert PolicyRole(kind.role.value).value == kind.role.value  # alerts accepts it


spans = st.tuples(
    st.integers(min_value=0, max_value=100), st.one_of(st.none(), st.integers(1, 50))
).map(lambda t: (T0 + timedelta(hours=t[0]), None if t[1] is None else t[0] + t[1]))


@FAST
@given(spans, spans)
def test_overlap_is_symmetric_and_matches_a_shared_instant(
    a: tuple[datetime, int | None], b: tuple[datetime, int | None]
) -> None:
    pa = pairing(a[0], None if a[1] is None else T0 + timedelta(hours=a[1]))
    pb = pairing(b[0], None if b[1] is None else T0 + timedelta(hours=b[1]))
    assert pa.overlaps(pb) == pb.overlaps(pa)
    hours = [T0 + timedelta(hours=h) for h in range(0, 200)]
    shared = any(pa.active_at(h) and pb.active_at(h) for h in hours)
    assert pa.overlaps(pb) == shared


# --------------------------------------------------------------------------------------------
# family links
# --------------------------------------------------------------------------------------------


def request(**over: Any) -> FamilyLink:
    data: dict[str, Any] = {
        "elder_id": "e1",
        "person_id": "f1",
        "relation": Relation.CHILD,
        "requested_at": T0,
        "requested_by": "f1",
    }
    data.update(over)
    return FamilyLink.model_validate(data)


def test_family_link_steps() -> None:
    link = request()
    assert link.state_at(NOW) is FamilyLinkState.REQUESTED and not link.active_at(NOW)
    link = approve_family_link(link, by="staff-1", by_role=Role.STAFF, at=T0 + timedelta(hours=1))
    assert link.state_at(NOW) is FamilyLinkState.APPROVED and not link.active_at(NOW)
    link = confirm_family_link(
        link, by="e1", by_role=None, at=T0 + timedelta(hours=2), on_behalf=False
    )
    assert link.active_at(NOW)
    link = revoke_family_link(link, by="staff-1", at=NOW, reason="老人要求")
    assert link.state_at(NOW) is FamilyLinkState.REVOKED and not link.active_at(NOW)
    assert link.state_at(NOW - timedelta(minutes=1)) is FamilyLinkState.CONFIRMED


def test_family_link_refusals() -> None:
    link = request()
    with pytest.raises(ValueError, match="confirm"):
        confirm_family_link(link, by="e1", by_role=None, at=NOW, on_behalf=False)
    with pytest.raises(ValueError, match="staff"):
        approve_family_link(link, by="w1", by_role=Role.WATCHER, at=NOW)
    approved = approve_family_link(link, by="staff-1", by_role=Role.STAFF, at=NOW)
    with pytest.raises(ValueError, match="approve"):
        approve_family_link(approved, by="staff-2", by_role=Role.STAFF, at=NOW)
    with pytest.raises(ValueError, match="only the elder"):
        confirm_family_link(approved, by="f1", by_role=Role.FAMILY, at=NOW, on_behalf=False)
    with pytest.raises(ValueError, match="approver"):
        confirm_family_link(approved, by="staff-1", by_role=Role.STAFF, at=NOW, on_behalf=True)
    ok = confirm_family_link(approved, by="staff-2", by_role=Role.STAFF, at=NOW, on_behalf=True)
    assert ok.confirmed_on_behalf and ok.active_at(NOW)
    with pytest.raises(ValueError, match="reason"):
        revoke_family_link(ok, by="staff-1", at=NOW, reason=" ")
    revoked = revoke_family_link(ok, by="staff-1", at=NOW, reason="家属要求")
    with pytest.raises(ValueError, match="revoke"):
        revoke_family_link(revoked, by="staff-1", at=NOW, reason="again")


def test_family_link_expires() -> None:
    link = request(expires_at=NOW)
    link = approve_family_link(link, by="s1", by_role=Role.STAFF, at=T0)
    link = confirm_family_link(link, by="e1", by_role=None, at=T0, on_behalf=False)
    assert link.active_at(NOW - timedelta(seconds=1))
    assert link.state_at(NOW) is FamilyLinkState.EXPIRED and not link.active_at(NOW)


def test_one_live_family_link_per_relative_and_elder() -> None:
    new = request(requested_at=NOW)
    pending = request(id="fl1")
    with pytest.raises(CareError, match="already has a link") as err:
        check_new_family_link(new, [pending], NOW)
    assert err.value.code == "family_link_duplicate"
    confirmed = confirm_family_link(
        approve_family_link(pending, by="s1", by_role=Role.STAFF, at=T0),
        by="e1",
        by_role=None,
        at=T0,
        on_behalf=False,
    )
    with pytest.raises(CareError, match="confirmed"):
        check_new_family_link(new, [confirmed], NOW)
    # Ended links do not count, nor another relative's or another elder's, nor the link itself.
    revoked = revoke_family_link(confirmed, by="s1", at=NOW, reason="家属要求")
    expired = request(id="fl2", expires_at=NOW)
    others = [request(id="fl3", person_id="f2"), request(id="fl4", elder_id="e2")]
    check_new_family_link(new, [revoked, expired, *others], NOW)
    check_new_family_link(pending, [pending], NOW)


# --------------------------------------------------------------------------------------------
# volunteers
# --------------------------------------------------------------------------------------------


def profile(**over: Any) -> VolunteerProfile:
    data: dict[str, Any] = {
        "person_id": "v1",
        "categories": ["young_old", "medical"],
        "skills": ["量血压", "理发", "量血压"],
        "birth_date": date(1961, 4, 1),
        "availability": [
            {"weekday": 0, "start": "08:00", "end": "12:00"},
            {"weekday": 2, "start": "14:00", "end": "17:30"},
        ],
        "trainings": [{"name": "急救培训", "completed_on": "2026-03-01", "hours": 8}],
        "certificates": [
            {"name": "红十字救护员证", "issued_on": "2024-12-10", "expires_on": "2026-12-10"},
            {"name": "养老护理员", "issued_on": "2020-01-01"},
            {"name": "旧证", "issued_on": "2019-01-01", "expires_on": "2022-01-01"},
        ],
    }
    data.update(over)
    return VolunteerProfile.model_validate(data)


def test_volunteer_profile() -> None:
    v = profile()
    assert v.skills == ("量血压", "理发")
    assert (
        VolunteerCategory.YOUNG_OLD in v.categories and VolunteerCategory.YOUNG_OLD.zh == "低龄老人"
    )
    monday_9 = datetime(2026, 11, 23, 9, 0, tzinfo=CST)
    assert v.available_at(monday_9)
    assert not v.available_at(monday_9.replace(hour=12))  # half-open
    assert not v.available_at(monday_9 + timedelta(days=1))
    assert [c.name for c in v.valid_certificates(TODAY)] == ["红十字救护员证", "养老护理员"]
    assert [c.name for c in v.expiring_certificates(TODAY)] == ["红十字救护员证"]
    assert v.expiring_certificates(TODAY, days=10) == []
    assert check_volunteer(v, today=TODAY) == []


def test_volunteer_rules() -> None:
    with pytest.raises(ValidationError):
        profile(availability=[{"weekday": 4, "start": "22:00", "end": "02:00"}])
    with pytest.raises(ValidationError):
        profile(availability=[{"weekday": 7, "start": "08:00", "end": "09:00"}])
    with pytest.raises(ValidationError):
        Certificate(name="x", issued_on=date(2026, 1, 1), expires_on=date(2025, 1, 1))
    codes = [p.code for p in check_volunteer(profile(birth_date=None), today=TODAY)]
    assert codes == ["young_old_birth_date"]
    codes = [p.code for p in check_volunteer(profile(birth_date=date(1950, 1, 1)), today=TODAY)]
    assert codes == ["young_old_age"]
    future = profile(
        certificates=[{"name": "新证", "issued_on": "2027-01-01"}],
        trainings=[{"name": "培训", "completed_on": "2027-01-01"}],
    )
    assert [p.field for p in check_volunteer(future, today=TODAY)] == [
        "certificates.0.issued_on",
        "trainings.0.completed_on",
    ]


def test_availability_is_local_wall_clock() -> None:
    with pytest.raises(ValidationError):
        profile(availability=[{"weekday": 0, "start": time(8, tzinfo=CST), "end": time(9)}])
