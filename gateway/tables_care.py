"""Tables of the care records (issue 4): registry, people, health records, assessments, family
links, audit log. Created by migration 0006.

They share gateway.tables' metadata (imported at the end of that module), so the migrations and
their check see every table. Times are epoch milliseconds (UTC) in BIGINT columns; calendar
days (birth dates, status dates, assessment days) are DATE.

Why a 1:1 `elder_profiles` table rather than more columns on `elders`: `elders` is the alarm
path's anchor (a page needs name, address and phone, read on every press) and other modules
reference it by id; the registry's detail is large, sensitive, and read by people, not by the
alarm path. Keeping it apart means the alarm path's rows and queries do not change, an elder
created by the contract's `POST /api/v1/elders` (the demo, a device installer) exists before
the station registers the detail, and access to the sensitive part is one table to guard. The
registry keeps `elders.name/address/phone/birth_date` in step when it changes them, so a page
always shows what the registry says.

The record itself is the domain's `care.elders.Elder` as JSON (`record`, without the ID number),
with the columns searched and counted on copied out beside it (status, living situation,
self-care, community, station ...). The ID-card number is never stored in clear: `id_card_enc`
holds it encrypted with AES-GCM (key derived from SHOUWANG_DATA_KEY, the elder's id as
associated data, so a ciphertext copied to another row does not decrypt) and `id_card_hmac` a
keyed HMAC-SHA256 of the normalized number (blind index: unique, and how a number is looked up
or found to be registered already). The age band is derived from `elders.birth_date` when read.

Columns added to existing tables (appended here, like the paging block of gateway/tables.py, so
that file is not edited by every module):

- `pairings.kind` (care.pairing.PairingKind: watcher, volunteer, family, party_member, staff;
  null for pairings made before, read as their paging role) and `pairings.note`. A pairing's end
  (`active_until`) and `created_by` already exist. There is ONE list of pairings: the escalation
  plan is built from this table (gateway/paging.py), so changing a pairing changes who is paged.
- `api_tokens.person_id`: the responder a token acts for (a staff member's station, a watcher's
  pairings, a family member's links decide what the token sees; gateway/auth.py).

`audit_log` is append-only: no API route changes it, and database triggers refuse UPDATE and
DELETE on it (migration 0006), so even the gateway's own connection cannot rewrite history.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
)

from gateway.tables import api_tokens, metadata, pairings

__all__ = [
    "assessments",
    "audit_log",
    "elder_profiles",
    "elder_statuses",
    "encounters",
    "family_links",
    "metadata",
    "person_profiles",
    "vital_signs",
]

_AUTO_ID = BigInteger().with_variant(Integer, "sqlite")

# The registry detail of an elder (老年人信息台账), 1:1 with `elders`.
elder_profiles = Table(
    "elder_profiles",
    metadata,
    Column("elder_id", String(40), ForeignKey("elders.id"), primary_key=True),
    Column("station", String(100), index=True),
    Column("gender", String(8), nullable=False),
    Column("district", String(50), nullable=False),
    Column("subdistrict", String(50), nullable=False),
    Column("community", String(50), nullable=False, index=True),
    Column("living_situation", String(16), nullable=False),
    Column("self_care", String(20), nullable=False),
    Column("service_tier", String(10), nullable=False),
    Column("categories", JSON, nullable=False),  # list of care.elders.Category values
    Column("status", String(12), nullable=False, index=True),
    Column("status_since", Date, nullable=False),
    Column("status_until", Date),
    Column("id_card_enc", Text),
    Column("id_card_hmac", String(64), unique=True),
    Column("id_card_masked", String(24)),
    Column("record", JSON, nullable=False),  # care.elders.Elder as JSON, without id_card
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(120), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(120), nullable=False),
)

# The status history (active, away, in hospital, moved, deceased); the latest is current.
elder_statuses = Table(
    "elder_statuses",
    metadata,
    Column("id", _AUTO_ID, primary_key=True, autoincrement=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False, index=True),
    Column("status", String(12), nullable=False),
    Column("since", Date, nullable=False),
    Column("until", Date),
    Column("note", Text),
    Column("recorded_by", String(120), nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
)

# The profile of a person who helps (volunteer categories, skills, availability, trainings,
# certificates), 1:1 with `responders`; `station` is where a staff member works (scoping).
person_profiles = Table(
    "person_profiles",
    metadata,
    Column("responder_id", String(40), ForeignKey("responders.id"), primary_key=True),
    Column("station", String(100), index=True),
    Column("profile", JSON, nullable=False),  # care.pairing.VolunteerProfile as JSON
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(120), nullable=False),
)

# Vital signs (care.health.VitalSigns), one row per measuring session; `flags` are the abnormal
# values found when it was recorded (care.health.Flag as JSON).
vital_signs = Table(
    "vital_signs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False),
    Column("measured_at", BigInteger, nullable=False),
    Column("measured_by", String(100), nullable=False),
    Column("source", String(8), nullable=False),
    Column("device_id", String(100)),
    Column("systolic", SmallInteger),
    Column("diastolic", SmallInteger),
    Column("pulse", SmallInteger),
    Column("temperature_c", Float),
    Column("glucose_mmol_l", Float),
    Column("glucose_timing", String(16)),
    Column("weight_kg", Float),
    Column("note", Text),
    Column("flags", JSON, nullable=False),
    Column("recorded_by", String(120), nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
)
Index("ix_vital_signs_elder_measured", vital_signs.c.elder_id, vital_signs.c.measured_at)

# Check-ups, home visits, follow-ups, clinic visits (care.health.Encounter).
encounters = Table(
    "encounters",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    Column("seen_by", String(100)),
    Column("place", String(100)),
    Column("notes", Text, nullable=False),
    Column("findings", JSON, nullable=False),
    Column("next_due", Date),
    Column("recorded_by", String(120), nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
)
Index("ix_encounters_elder_occurred", encounters.c.elder_id, encounters.c.occurred_at)

# Capability assessments (care.assessment, GB/T 42195-2022): every one kept as made; the current
# one is the latest by (assessed_on, recorded_seq). Result columns are computed at recording.
assessments = Table(
    "assessments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False, index=True),
    Column("assessed_on", Date, nullable=False),
    Column("recorded_seq", Integer, nullable=False),
    Column("assessor", String(100), nullable=False),
    Column("second_assessor", String(100)),
    Column("reason", String(12), nullable=False),
    Column("scores", JSON, nullable=False),
    Column("in_coma", Boolean, nullable=False),
    Column("dementia", Boolean, nullable=False),
    Column("mental_disorder", Boolean, nullable=False),
    Column("risk_events_30d", Integer, nullable=False),
    Column("notes", Text),
    Column("total", Integer, nullable=False),
    Column("level", String(16), nullable=False),
    Column("care_level", Integer, nullable=False),
    Column("recorded_by", String(120), nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
)

# A relative's access to one elder (care.pairing.FamilyLink): requested -> approved by the
# station -> confirmed by the elder (or staff on the elder's behalf); may expire; revocable.
family_links = Table(
    "family_links",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False, index=True),
    Column("person_id", String(40), ForeignKey("responders.id"), nullable=False, index=True),
    Column("relation", String(16), nullable=False),
    Column("requested_at", BigInteger, nullable=False),
    Column("requested_by", String(120), nullable=False),
    Column("expires_at", BigInteger),
    Column("approved_at", BigInteger),
    Column("approved_by", String(120)),
    Column("confirmed_at", BigInteger),
    Column("confirmed_by", String(120)),
    Column("confirmed_on_behalf", Boolean, nullable=False),
    Column("revoked_at", BigInteger),
    Column("revoked_by", String(120)),
    Column("revoke_reason", Text),
)

# Who read or changed which care record, when, from where. Append-only (see the module doc).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _AUTO_ID, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False, index=True),
    Column("actor", String(120), nullable=False),
    Column("role", String(16), nullable=False),
    Column("person_id", String(40)),
    Column("action", String(16), nullable=False),  # read, create, update, status, reveal ...
    Column("resource", String(24), nullable=False),  # elder, vital_signs, assessment ...
    Column("elder_id", String(40), index=True),
    Column("record_id", String(40)),
    Column("client_ip", String(64)),
    Column("detail", JSON),
)

pairings.append_column(Column("kind", String(16)))
pairings.append_column(Column("note", Text))
api_tokens.append_column(Column("person_id", String(40), ForeignKey("responders.id")))
