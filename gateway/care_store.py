"""Persistence of the care records (issue 4): ID-number encryption, who sees which elder, the
audit log, and the conversions between table rows and the `care` domain.

- `IdVault`: AES-GCM encryption of ID-card numbers and their keyed blind index. Two keys are
  derived from SHOUWANG_DATA_KEY with HKDF (one to encrypt, one for the HMAC), so the index
  says nothing about the encryption key. The elder's id is the associated data: a ciphertext
  moved to another elder's row does not decrypt. No key configured: no vault, and the API
  refuses to store numbers rather than keep them in clear.
- `Scope`: what a caller may see (gateway/auth.py's roles): admin all; staff their station's
  elders (all when the token acts for nobody or the person has no station: a one-station
  deployment); family the elders of their active family links; watchers and volunteers the
  elders paired with them now. `visible` answers for one elder; `filter_ids` for a query.
  `on_board` and `on_board_filter` are the same for the alarm side's routes, where an elder no
  station has taken yet is every station's (gateway/api.py `in_scope`). `sees_person` and
  `people_filter` scope people (responders) alike by their profile's station; `sees_member`
  and `members_filter` a points member, who is an elder or a person.
- `audit`: one append-only row per read or change (the table refuses UPDATE/DELETE).
- `elder_from_rows` / `profile_values`: a stored registry record <-> `care.elders.Elder`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr
from sqlalchemy import Connection, Row, and_, false, insert, literal, or_, select

from care.elders import Elder, StatusEntry
from care.idcard import mask_id_card, normalize_id_card
from gateway.auth import Principal, Role
from gateway.paging import was_paged_clause
from gateway.tables import pairings
from gateway.tables_care import audit_log, elder_profiles, family_links, person_profiles

_VERSION = "v1"

# Registry statuses after which an elder gets no new service and no points: a deceased elder's
# visits, vouchers and points would be paid for nobody (or stranded), a moved one's belong to
# their new place (moved may come back to active, which serves again). Away and in hospital
# only pause. (zh, en) for the refusals' texts.
GONE: dict[str, tuple[str, str]] = {
    "deceased": ("已故", "is deceased"),
    "moved": ("已迁出", "has moved away"),
}


def gone_since(conn: Connection, elder_id: str) -> tuple[str, date] | None:
    """(status, since) when the registry says the elder is deceased or moved (`GONE`), else
    None, also for an id the registry does not hold (served as before)."""
    row = conn.execute(
        select(elder_profiles.c.status, elder_profiles.c.status_since).where(
            elder_profiles.c.elder_id == elder_id
        )
    ).first()
    if row is None or row.status not in GONE:
        return None
    return row.status, row.status_since


def generate_data_key() -> str:
    """A new SHOUWANG_DATA_KEY: 32 random bytes, URL-safe base64 (for the demo and tests)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


class IdVault:
    """Encrypts ID-card numbers (AES-256-GCM) and computes their blind index (HMAC-SHA256)."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("the data key is 32 bytes")
        self._aead = AESGCM(_derive(data_key, b"shouwang id-card encryption v1"))
        self._mac_key = _derive(data_key, b"shouwang id-card blind index v1")

    @classmethod
    def from_secret(cls, secret: SecretStr | None) -> IdVault | None:
        if secret is None:
            return None
        return cls(base64.urlsafe_b64decode(secret.get_secret_value().encode("ascii")))

    def blind_index(self, number: str) -> str:
        """The keyed hash of the normalized number: equal numbers, equal index."""
        n = normalize_id_card(number).encode("ascii", "replace")
        return hmac.new(self._mac_key, n, hashlib.sha256).hexdigest()

    def encrypt(self, number: str, elder_id: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, normalize_id_card(number).encode(), elder_id.encode())
        return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, elder_id: str) -> str:
        """The number, or ValueError when the token is not ours or was moved to another row."""
        version, _, body = token.partition(".")
        if version != _VERSION:
            raise ValueError(f"unknown ID-number encryption version {version!r}")
        raw = base64.urlsafe_b64decode(body.encode("ascii"))
        try:
            return self._aead.decrypt(raw[:12], raw[12:], elder_id.encode()).decode()
        except InvalidTag:
            raise ValueError("the ID number does not decrypt with this key and elder") from None


class BlindIndexSet:
    """`number in registered` through the blind index (for care.registers.validate_import)."""

    def __init__(self, vault: IdVault, indexes: Iterable[str]) -> None:
        self._vault = vault
        self._indexes = frozenset(indexes)

    def __contains__(self, number: object) -> bool:
        return isinstance(number, str) and self._vault.blind_index(number) in self._indexes


# --- scope --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """What one caller may see. `elder_ids` is None when not limited to a list of elders."""

    principal: Principal
    station: str | None  # staff limited to one station
    elder_ids: frozenset[str] | None  # family, watcher, volunteer

    @property
    def role(self) -> Role:
        return self.principal.role

    @property
    def is_staff(self) -> bool:
        """Station staff or admin: may register, change and export."""
        return self.role in (Role.ADMIN, Role.STAFF)

    @property
    def sees_health(self) -> bool:
        """Health records and assessments: staff, admin and the elder's family."""
        return self.role in (Role.ADMIN, Role.STAFF, Role.FAMILY)

    @property
    def sees_full_record(self) -> bool:
        """The whole registry record (a watcher sees address, phone and contacts only)."""
        return self.role in (Role.ADMIN, Role.STAFF, Role.FAMILY)

    def visible(self, profile_station: str | None, elder_id: str) -> bool:
        if self.elder_ids is not None and elder_id not in self.elder_ids:
            return False
        return self.station is None or profile_station == self.station

    def filter(self) -> Any:
        """A WHERE clause on elder_profiles for the elders this caller may see."""
        clauses: list[Any] = []
        if self.elder_ids is not None:
            clauses.append(elder_profiles.c.elder_id.in_(sorted(self.elder_ids)))
        if self.station is not None:
            clauses.append(elder_profiles.c.station == self.station)
        return and_(*clauses) if clauses else and_(True)

    # The alarm side (the board, alerts, devices, paging, rules, services) differs from the
    # registry in one thing: an elder no station has taken yet (no care profile, or one without
    # a station) is on every station's board, so that an alarm is never on nobody's board.

    def on_board(self, profile_station: str | None, elder_id: str) -> bool:
        """`visible`, but an elder no station has taken is seen by every station's staff."""
        if self.elder_ids is not None and elder_id not in self.elder_ids:
            return False
        return self.station is None or profile_station in (None, self.station)

    def on_board_filter(self, elder_id: Any) -> Any:
        """A WHERE clause on any column holding an elder's id (`elders.c.id`,
        `alerts.c.elder_id`, ...) for the elders `on_board`: no join needed, and another
        station's elder is left out whatever table the rows come from. A row of no elder (a
        NULL column) is kept for station staff: it is no other station's."""
        clauses: list[Any] = []
        if self.elder_ids is not None:
            clauses.append(elder_id.in_(sorted(self.elder_ids)))
        if self.station is not None:
            # `station != X` is not true for NULL: an unplaced elder is not in the subquery.
            p = elder_profiles.c
            other = select(p.elder_id).where(p.station != self.station)
            clauses.append(or_(elder_id.is_(None), elder_id.not_in(other)))
        return and_(*clauses) if clauses else and_(True)

    def sees_on_board(self, conn: Connection, elder_id: str) -> bool:
        """`on_board` for one elder, reading its profile's station."""
        station = conn.execute(
            select(elder_profiles.c.station).where(elder_profiles.c.elder_id == elder_id)
        ).scalar()
        return self.on_board(station, elder_id)

    # People (responders) belong to a station through their profile (person_profiles.station),
    # as the staff themselves do. As for elders on the board, a person no station has taken yet
    # (no profile, or one without a station) is every station's: a new volunteer can be paired
    # and put on the roster by whichever station meets them first.

    def _other_people(self) -> Any:
        p = person_profiles.c
        return select(p.responder_id).where(p.station != self.station)

    def people_filter(self, responder_id: Any) -> Any:
        """A WHERE clause on any column holding a responder's id, leaving out the people of
        another station for station staff (NULL kept: it is no other station's)."""
        if self.station is None:
            return and_(True)
        return or_(responder_id.is_(None), responder_id.not_in(self._other_people()))

    def sees_person(self, conn: Connection, responder_id: str) -> bool:
        """Whether a responder is the caller's station's or no station's (always, unlimited)."""
        if self.station is None:
            return True
        station = conn.execute(
            select(person_profiles.c.station).where(person_profiles.c.responder_id == responder_id)
        ).scalar()
        return station in (None, self.station)

    def members_filter(self, member_id: Any) -> Any:
        """`on_board_filter` and `people_filter` at once, for a column holding either an elder's
        or a person's id (a points member): another station's elder or person is left out."""
        return and_(self.on_board_filter(member_id), self.people_filter(member_id))

    def sees_member(self, conn: Connection, member_id: str) -> bool:
        """`sees_on_board` and `sees_person` at once, for an id that may be either's."""
        return self.sees_on_board(conn, member_id) and self.sees_person(conn, member_id)

    # Paging crosses stations (an elder whose station has nobody to page has another station's
    # staff paged), and whoever is paged must be able to open and answer the alarm, or it is on
    # nobody's board. So being paged opens that one alert to the person, and nothing else of the
    # elder's station: the routes add these to the station checks above, never replace them.

    def paged_filter(self, alert_id: Any) -> Any:
        """A WHERE clause on a column holding an alert's id: the alerts the caller's person was
        paged for, by any channel (gateway/paging.py `was_paged_clause`). Nothing for a caller
        acting for nobody."""
        person = self.principal.person_id
        if person is None:
            return false()
        return was_paged_clause(alert_id, person)

    def paged_for(self, conn: Connection, alert_id: str) -> bool:
        """`paged_filter` for one alert."""
        q = select(literal(1)).where(self.paged_filter(alert_id))
        return conn.execute(q).first() is not None


def scope_for(conn: Connection, principal: Principal, now_ms: int) -> Scope:
    role, person = principal.role, principal.person_id
    if role is Role.ADMIN:
        return Scope(principal, None, None)
    if role is Role.STAFF:
        station = None
        if person is not None:
            station = conn.execute(
                select(person_profiles.c.station).where(person_profiles.c.responder_id == person)
            ).scalar()
        return Scope(principal, station, None)
    if person is None:  # verify_token opens nothing for these; belt and braces
        return Scope(principal, None, frozenset())
    if role is Role.FAMILY:
        rows = conn.execute(
            select(family_links.c.elder_id).where(
                family_links.c.person_id == person,
                family_links.c.approved_at.is_not(None),
                family_links.c.confirmed_at.is_not(None),
                or_(family_links.c.revoked_at.is_(None), family_links.c.revoked_at > now_ms),
                or_(family_links.c.expires_at.is_(None), family_links.c.expires_at > now_ms),
            )
        ).scalars()
        return Scope(principal, None, frozenset(rows))
    # watcher, volunteer: the elders paired with them now (the same rows that page them)
    rows = conn.execute(
        select(pairings.c.elder_id).where(
            pairings.c.responder_id == person,
            pairings.c.active_from <= now_ms,
            or_(pairings.c.active_until.is_(None), pairings.c.active_until > now_ms),
        )
    ).scalars()
    return Scope(principal, None, frozenset(rows))


# --- audit --------------------------------------------------------------------------------------


def audit(
    conn: Connection,
    principal: Principal,
    *,
    at: int,
    action: str,
    resource: str,
    elder_id: str | None = None,
    record_id: str | None = None,
    client_ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row, in the caller's transaction (no read or change without it)."""
    conn.execute(
        insert(audit_log).values(
            at=at,
            actor=principal.label,
            role=principal.role.value,
            person_id=principal.person_id,
            action=action,
            resource=resource,
            elder_id=elder_id,
            record_id=record_id,
            client_ip=(client_ip or "")[:64] or None,
            detail=detail,
        )
    )


# --- registry rows <-> domain -------------------------------------------------------------------

# Fields of care.elders.Elder kept in `record` (the rest are columns or derived).
_NOT_IN_RECORD = {"id", "status", "id_card"}


def profile_values(elder: Elder) -> dict[str, Any]:
    """The elder_profiles columns (but the ID number and bookkeeping) of a domain record."""
    record = elder.model_dump(mode="json", exclude=_NOT_IN_RECORD)
    return {
        "gender": elder.gender.value,
        "district": elder.address.district,
        "subdistrict": elder.address.subdistrict,
        "community": elder.address.community,
        "living_situation": elder.living_situation.value,
        "self_care": elder.self_care.value,
        "service_tier": elder.service_tier.value,
        "categories": record["categories"],
        "status": elder.status.status.value,
        "status_since": elder.status.since,
        "status_until": elder.status.until,
        "record": record,
    }


def anchor_values(elder: Elder) -> dict[str, Any]:
    """What the alarm path's `elders` row shows of the registry (pages read these)."""
    return {
        "name": elder.name,
        "address": elder.address.one_line()[:300],
        "phone": elder.phone,
        "birth_date": elder.birth_date,
    }


def id_card_values(vault: IdVault | None, number: str | None, elder_id: str) -> dict[str, Any]:
    """The ID-number columns: encrypted, blind index, masked (all None without a number)."""
    if number is None:
        return {"id_card_enc": None, "id_card_hmac": None, "id_card_masked": None}
    if vault is None:  # the API refuses before this; never store a number in clear
        raise ValueError("no data key: an ID number cannot be stored")
    return {
        "id_card_enc": vault.encrypt(number, elder_id),
        "id_card_hmac": vault.blind_index(number),
        "id_card_masked": mask_id_card(number),
    }


def status_of(profile: Row[Any], note: str | None = None) -> StatusEntry:
    return StatusEntry(
        status=profile.status,
        since=profile.status_since,
        until=profile.status_until,
        note=note,
        recorded_by=profile.updated_by,
    )


class KeyMismatch(ValueError):
    """A stored ID number does not decrypt: SHOUWANG_DATA_KEY changed since it was stored."""


def elder_from_rows(
    profile: Row[Any], vault: IdVault | None, *, with_id_card: bool, lenient: bool = False
) -> Elder:
    """The domain record of a stored profile. The ID number is decrypted only when asked and
    a key is configured (else the record has none; its masked form is a column). A number that
    does not decrypt raises `KeyMismatch`, or with `lenient` is left out."""
    number = None
    if with_id_card and vault is not None and profile.id_card_enc is not None:
        try:
            number = vault.decrypt(profile.id_card_enc, profile.elder_id)
        except ValueError:
            if not lenient:
                raise KeyMismatch(profile.elder_id) from None
    return Elder.model_validate(
        {**profile.record, "id": profile.elder_id, "id_card": number, "status": status_of(profile)}
    )
