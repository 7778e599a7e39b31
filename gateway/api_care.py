"""HTTP API for the care records (issue 4), under `/api/v1/care`. Included by gateway/api.py.

The registry (老年人信息台账) with status changes, search and the station's tables (台账) as JSON
and .xlsx; the registry import from .xlsx; health records (vital signs, check-ups and visits,
trends); capability assessments (GB/T 42195-2022); people's profiles; pairings (the SAME
`pairings` rows that build the escalation plan, with their kind); family links; the audit log.

Every input is validated by the `care` domain before the database: a refusal is a 422 whose
`detail` lists `{type: <code>, loc, msg, en, zh}` (the domain's `CareError` code and both
languages); a refused state change (status, family link, overlapping pairing) is a 409 with the
same shape. Nothing is changed by a refused request.

Access (gateway/auth.py roles, gateway/care_store.py `Scope`): every route takes a valid token
of any role but service_worker (403: a service worker has no care records to see) and scopes the
answer to it. An elder the caller may not see answers 404, exactly like an
elder that does not exist, so existence does not leak. A caller who may see the elder but not
that part of the record (a watcher asking for the health record) gets 403. Only staff and
admin change records.

Audit: every read and every change of a care record writes an audit row (who, role, person,
what, which elder and record, when, client IP) in the same transaction as the read or change,
so nothing is shown or changed without its row. That is why these reads use write
transactions, unlike the rest of the API: the audit row is the price of reading personal data.
The audit log has no route that changes it (and the database refuses UPDATE and DELETE).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import Response
from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped]
from openpyxl.styles import Alignment, Font  # type: ignore[import-untyped]
from pydantic import AfterValidator, BaseModel, Field, StrictBool, StrictInt, ValidationError
from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from care._common import CareError, Note, Problem, Refused, Text50, Text100, Text200, problems_from
from care.assessment import CARE_LEVELS as ASSESSMENT_CARE_LEVELS
from care.assessment import (
    ITEMS,
    Assessment,
    AssessmentReason,
    CapabilityLevel,
    current_assessment,
    eligibility_for,
    reassessment_due,
)
from care.elders import (
    Address as CareAddress,
)
from care.elders import (
    AgeBand,
    Category,
    Elder,
    ElderCreate,
    ElderStatus,
    ElderUpdate,
    LivingSituation,
    SelfCareStatus,
    ServiceTier,
    StatusEntry,
    StatusTransitionError,
    apply_update,
    change_status,
    is_overdue,
    register_elder,
)
from care.elders import (
    Doctor as CareDoctor,
)
from care.elders import (
    EmergencyContact as CareContact,
)
from care.elders import (
    Hukou as CareHukou,
)
from care.elders import (
    TierBasis as CareTierBasis,
)
from care.health import (
    Encounter,
    EncounterKind,
    GlucoseTiming,
    Measure,
    Source,
    VitalSigns,
    check_measured_at,
    check_occurred_at,
    trends,
    weight_loss_flag,
)
from care.idcard import IdCardError, parse_id_card
from care.pairing import (
    Availability,
    Certificate,
    FamilyLink,
    FamilyLinkState,
    Pairing,
    PairingKind,
    Training,
    VolunteerCategory,
    VolunteerProfile,
    approve_family_link,
    check_new_family_link,
    check_new_pairing,
    check_volunteer,
    confirm_family_link,
    revoke_family_link,
)
from care.people import Role as PersonRole
from care.registers import (
    Register,
    count_by_age_band,
    count_by_category,
    count_by_living_situation,
    count_by_self_care,
    count_special_groups,
    import_template,
    registry,
    special_groups,
    special_groups_of,
    validate_import,
)
from care.registers import SpecialGroup as CareSpecialGroup
from gateway.api import (
    MAX_BODY_BYTES,
    RefId,
    RuntimeDep,
    _In,
    _ms,
    _ms_req,
    _usable_path_id,
    allow,
    authenticate_any,
)
from gateway.api_rules import pause_for_status, rules_changed
from gateway.api_time import Instant, day_in_range
from gateway.auth import Principal, Role
from gateway.care_store import (
    BlindIndexSet,
    IdVault,
    KeyMismatch,
    Scope,
    anchor_values,
    audit,
    elder_from_rows,
    id_card_values,
    profile_values,
    scope_for,
)
from gateway.clock import from_ms, new_id, to_ms
from gateway.error_texts import ROLE_ZH, Bilingual, not_found_zh
from gateway.runtime import Runtime
from gateway.tables import elders, pairings, responders
from gateway.tables_care import (
    assessments,
    audit_log,
    elder_profiles,
    elder_statuses,
    encounters,
    family_links,
    person_profiles,
    vital_signs,
)

IMPORT_PATH = "/api/v1/care/elders/import"
IMPORT_MAX_BYTES = 5 * 1024 * 1024  # a 5,000-row registry is well under 2 MB
LARGE_BODIES = {IMPORT_PATH: IMPORT_MAX_BYTES}  # gateway/api.py's size check allows these
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TAG = "care"

# --- the caller ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    rt: Runtime
    principal: Principal
    ip: str | None

    def now_ms(self) -> int:
        return self.rt.now_ms()

    def today(self) -> date:
        return from_ms(self.rt.now_ms(), self.rt.tz).date()

    def now(self) -> datetime:
        return from_ms(self.rt.now_ms(), self.rt.tz)

    @property
    def vault(self) -> IdVault | None:
        return IdVault.from_secret(self.rt.settings.data_key)

    def audit(self, conn: Connection, action: str, resource: str, **kw: Any) -> None:
        audit(
            conn,
            self.principal,
            at=self.now_ms(),
            action=action,
            resource=resource,
            client_ip=self.ip,
            **kw,
        )


def _caller(
    rt: RuntimeDep, principal: Annotated[Principal, Depends(authenticate_any)], request: Request
) -> Caller:
    return Caller(rt, principal, request.client.host if request.client else None)


CallerDep = Annotated[Caller, Depends(_caller)]


@contextmanager
def _tx(c: Caller, snapshot: bool = False) -> Iterator[tuple[Connection, Scope]]:
    """A write transaction (reads too: they write their audit row) and the caller's scope.

    `snapshot`: every read of the transaction sees the database at one moment (PostgreSQL's
    REPEATABLE READ; a SQLite transaction always does), for a page that puts several reads
    side by side: under READ COMMITTED a reading committed between two of them showed a day's
    water use beside its meter "never heard" (CI, 2026-11-26)."""
    with c.rt.engine.begin() as conn:
        if snapshot and conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield conn, scope_for(conn, c.principal, c.now_ms())


# --- errors -------------------------------------------------------------------------------------


def _problems_detail(problems: Sequence[Problem], prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for p in problems:
        loc = [*prefix, *(p.field.split(".") if p.field and p.field != "(record)" else [])]
        out.append({"type": p.code, "loc": loc, "msg": f"{p.en} ({p.zh})", "en": p.en, "zh": p.zh})
    return out


def _refused(
    problems: Sequence[Problem], code: int = 422, prefix: tuple[str, ...] = ("body",)
) -> HTTPException:
    return HTTPException(code, detail=_problems_detail(problems, prefix))


def _one(code: str, en: str, zh: str, field: str = "", status_code: int = 422) -> HTTPException:
    return _refused([Problem(field, code, en, zh)], status_code)


def _validation(err: ValidationError) -> HTTPException:
    return _refused(problems_from(err))


def _not_found(what: str, ident: str) -> HTTPException:
    shown = repr(ident[:64])
    return Bilingual(status.HTTP_404_NOT_FOUND, f"no {what} {shown}", not_found_zh(what, shown))


def _forbidden(en: str, zh: str) -> HTTPException:
    return Bilingual(status.HTTP_403_FORBIDDEN, en, zh)


def _staff_only(scope: Scope) -> None:
    if not scope.is_staff:
        raise _forbidden(
            f"a {scope.role} token cannot do this: station staff only",
            f"{ROLE_ZH.get(scope.role, scope.role)}不能执行此操作：仅限服务站工作人员",
        )


def _no_key() -> HTTPException:
    return _one(
        "data_key_missing",
        "this gateway has no SHOUWANG_DATA_KEY, so it does not store ID numbers: "
        "leave id_card out, or ask the operator to configure the key",
        "本网关未配置数据密钥（SHOUWANG_DATA_KEY），不能保存身份证号码：请不填身份证号，或请管理员配置密钥",
        "id_card",
    )


def _key_mismatch() -> HTTPException:
    return _one(
        "data_key_mismatch",
        "the stored ID number does not decrypt with the configured SHOUWANG_DATA_KEY "
        "(was the key changed?)",
        "已存的身份证号码无法用当前数据密钥解密（密钥是否已更换？）",
        "id_card",
        status.HTTP_409_CONFLICT,
    )


# --- shapes -------------------------------------------------------------------------------------

_STATION = Field(None, description="the station (服务站) that looks after the elder")


class RegistryCreate(ElderCreate):
    """An elder for the registry: the domain's `ElderCreate`, plus where it is kept."""

    elder_id: RefId | None = Field(
        None,
        description="register the detail of an elder that exists already (made by POST "
        "/api/v1/elders, e.g. by the installer); none: a new elder",
    )
    station: Text100 | None = _STATION


class RegistryUpdate(ElderUpdate):
    """A partial change (only the fields sent change; null clears an optional field)."""

    station: Text100 | None = _STATION


# A status's days become the times of the rules' pause (gateway/api_rules.py), so bounded.
StatusDay = Annotated[date, AfterValidator(day_in_range)]


class StatusChange(_In):
    status: ElderStatus
    since: StatusDay | None = Field(
        None, description="from this day (default today); deceased: the date of death"
    )
    until: StatusDay | None = Field(None, description="away: required; in_hospital: optional")
    note: Note | None = None


class ElderRecordPublic(BaseModel):
    """The whole registry record (staff, admin, the elder's confirmed family)."""

    view: Literal["full"] = "full"
    id: str
    station: str | None
    name: str
    gender: str
    birth_date: date
    age: int
    age_band: AgeBand = Field(description="derived from the birth date, never stored")
    id_card_masked: str | None = Field(
        description="110105********123X; the full number: GET .../id-card (staff, audited)"
    )
    phone: str | None
    address: CareAddress
    address_line: str
    hukou: CareHukou | None
    living_situation: LivingSituation
    self_care: SelfCareStatus
    categories: list[Category] = Field(description="with centenarian from the 100th birthday")
    special_groups: list[CareSpecialGroup]
    service_tier: ServiceTier
    tier_basis: CareTierBasis | None
    emergency_contacts: list[CareContact]
    doctor: CareDoctor | None
    allergies: list[str]
    conditions: list[str]
    notes: str | None
    under_60_reason: str | None
    status: StatusEntry
    status_overdue: bool = Field(description="away or in hospital past the expected end")
    created_at: str
    updated_at: str


class ElderContactPublic(BaseModel):
    """What a watcher or volunteer sees of a paired elder: where, how to call, who to call."""

    view: Literal["contact"] = "contact"
    id: str
    name: str
    gender: str
    age: int
    phone: str | None
    address: CareAddress
    address_line: str
    living_situation: LivingSituation
    emergency_contacts: list[CareContact]
    status: ElderStatus


ElderView = ElderRecordPublic | ElderContactPublic


class IdCardPublic(BaseModel):
    elder_id: str
    id_card: str = Field(description="the full number; this read is in the audit log")


class StatusPublic(BaseModel):
    status: ElderStatus
    since: date
    until: date | None
    note: str | None
    recorded_by: str
    recorded_at: str


class VitalsIn(_In):
    measured_at: Instant
    measured_by: Text100 | None = Field(None, description="who measured; default: the caller")
    source: Source = Source.MANUAL
    device_id: Text100 | None = None
    systolic: StrictInt | None = Field(None, description="mmHg")
    diastolic: StrictInt | None = Field(None, description="mmHg")
    pulse: StrictInt | None = Field(None, description="beats per minute")
    temperature_c: float | None = Field(None, description="°C, axillary")
    glucose_mmol_l: float | None = Field(None, description="mmol/L")
    glucose_timing: GlucoseTiming | None = None
    weight_kg: float | None = Field(None, description="kg")
    note: Note | None = None


class FlagPublic(BaseModel):
    measure: Measure
    severity: str = Field(description="abnormal (follow up) or urgent (tell staff now)")
    code: str
    value: float
    reason_en: str
    reason_zh: str


class VitalsPublic(BaseModel):
    id: str
    elder_id: str
    measured_at: str
    measured_by: str
    source: Source
    device_id: str | None
    systolic: int | None
    diastolic: int | None
    pulse: int | None
    temperature_c: float | None
    glucose_mmol_l: float | None
    glucose_timing: GlucoseTiming | None
    weight_kg: float | None
    note: str | None
    flags: list[FlagPublic] = Field(description="abnormal values (screening, not a diagnosis)")
    recorded_by: str
    recorded_at: str


class PointPublic(BaseModel):
    at: str
    value: float


class TrendPublic(BaseModel):
    measure: Measure
    label_zh: str
    points: list[PointPublic]
    latest: PointPublic | None
    reference: PointPublic | None = Field(description="what `change` is measured from")
    change: float | None
    change_pct: float | None
    mean_window: float | None
    flag: FlagPublic | None = Field(description="weight: a loss of 5% or more in the window")


class EncounterIn(_In):
    kind: EncounterKind
    occurred_at: Instant
    seen_by: Text100 | None = Field(None, description="the doctor or visitor")
    place: Text100 | None = None
    notes: Note
    findings: Annotated[list[Text200], Field(max_length=30)] = Field(default_factory=list)
    next_due: date | None = None


class EncounterPublic(BaseModel):
    id: str
    elder_id: str
    kind: EncounterKind
    occurred_at: str
    seen_by: str | None
    place: str | None
    notes: str
    findings: list[str]
    next_due: date | None
    recorded_by: str
    recorded_at: str


class AssessmentIn(_In):
    assessed_on: date
    assessor: Text100
    second_assessor: Text100 | None = None
    reason: AssessmentReason = AssessmentReason.FIRST
    scores: dict[str, StrictInt] = Field(
        description="item key -> score, all 26 items: " + ", ".join(i.key for i in ITEMS)
    )
    in_coma: StrictBool = False
    dementia: StrictBool = False
    mental_disorder: StrictBool = False
    risk_events_30d: StrictInt = Field(0, ge=0, le=100)
    notes: Note | None = None


class AdjustmentPublic(BaseModel):
    code: str
    en: str
    zh: str


class AssessmentPublic(BaseModel):
    id: str
    elder_id: str
    assessed_on: date
    assessor: str
    second_assessor: str | None
    reason: AssessmentReason
    scores: dict[str, int]
    part_scores: dict[str, int]
    total: int
    preliminary_level: CapabilityLevel
    level: CapabilityLevel
    level_zh: str
    adjustments: list[AdjustmentPublic]
    care_level: int = Field(description="0 (none) .. 4")
    notes: str | None
    recorded_by: str
    recorded_at: str


class EligibilityPublic(BaseModel):
    level: CapabilityLevel
    care_level: int
    self_care: SelfCareStatus
    services: list[str]
    visit_every_days: int
    home_care_bed: bool


class CurrentAssessmentPublic(BaseModel):
    assessment: AssessmentPublic | None = Field(description="the latest; null: never assessed")
    eligibility: EligibilityPublic | None
    reassessment_due: bool


class ProfileIn(_In):
    station: Text100 | None = Field(None, description="where a staff member works (scoping)")
    categories: Annotated[list[VolunteerCategory], Field(max_length=10)] = Field(
        default_factory=list
    )
    skills: Annotated[list[Text50], Field(max_length=30)] = Field(default_factory=list)
    availability: Annotated[list[Availability], Field(max_length=50)] = Field(default_factory=list)
    trainings: Annotated[list[Training], Field(max_length=100)] = Field(default_factory=list)
    certificates: Annotated[list[Certificate], Field(max_length=50)] = Field(default_factory=list)
    birth_date: date | None = Field(None, description="needed for the young-old")
    note: Note | None = None


class ProfilePublic(BaseModel):
    responder_id: str
    name: str
    role: str
    station: str | None
    categories: list[VolunteerCategory]
    skills: list[str]
    availability: list[Availability]
    trainings: list[Training]
    certificates: list[Certificate]
    valid_certificates: list[str]
    expiring_certificates: list[str] = Field(description="valid, expiring within 30 days")
    birth_date: date | None
    note: str | None
    updated_at: str
    updated_by: str


class PairingIn(_In):
    person_id: RefId = Field(description="the responder paired with the elder")
    kind: PairingKind
    start: Instant | None = Field(None, description="default: now")
    end: Instant | None = Field(None, description="none: until ended")
    order: StrictInt = Field(0, ge=0, le=1000, description="lower is paged first in its kind")
    note: Note | None = None


class PairingPublic(BaseModel):
    id: str
    elder_id: str
    person_id: str
    kind: PairingKind
    role: str = Field(description="the paging role the pairing gives")
    order: int
    start: str
    end: str | None
    active: bool
    created_by: str
    note: str | None


class FamilyLinkIn(_In):
    elder_id: RefId
    person_id: RefId = Field(description="the relative (a responder of role family)")
    relation: Annotated[Any, Field(description="子女, 配偶 ... (care.elders.Relation)")]
    expires_at: Instant | None = None


class ConfirmIn(_In):
    on_behalf: StrictBool = Field(
        description="true: staff confirm for an elder who cannot (not the approver); false: "
        "the elder confirmed in person, recorded by staff"
    )


class RevokeIn(_In):
    reason: Note


class FamilyLinkPublic(BaseModel):
    id: str
    elder_id: str
    person_id: str
    relation: str
    state: FamilyLinkState
    requested_at: str
    requested_by: str
    expires_at: str | None
    approved_at: str | None
    approved_by: str | None
    confirmed_at: str | None
    confirmed_by: str | None
    confirmed_on_behalf: bool
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None


class RegisterKey(StrEnum):
    REGISTRY = "registry"
    BY_AGE_BAND = "by_age_band"
    BY_CATEGORY = "by_category"
    BY_SELF_CARE = "by_self_care"
    BY_LIVING_SITUATION = "by_living_situation"
    SPECIAL_GROUP_COUNTS = "special_group_counts"
    SPECIAL_GROUPS = "special_groups"
    IMPORT_TEMPLATE = "import_template"


class ColumnPublic(BaseModel):
    key: str
    zh: str
    en: str


class RegisterPublic(BaseModel):
    key: str
    title_zh: str
    title_en: str
    as_of: date
    station: str | None
    columns: list[ColumnPublic]
    rows: list[dict[str, Any]]
    total: dict[str, Any] | None
    notes_zh: str
    notes_en: str


class RowProblemPublic(BaseModel):
    row: int = Field(description="the sheet's row number")
    column: str = Field(description="the Chinese header; empty: the whole row")
    column_en: str
    code: str
    reason_zh: str
    reason_en: str


class ImportPublic(BaseModel):
    dry_run: bool
    committable: bool = Field(description="every row passed: nothing refused")
    imported: int = Field(description="rows written (0 on a dry run or when any row is refused)")
    rows_read: int
    refused_rows: list[int]
    problems: list[RowProblemPublic]
    elder_ids: list[str]


class AuditPublic(BaseModel):
    id: int
    at: str
    actor: str
    role: str
    person_id: str | None
    action: str
    resource: str
    elder_id: str | None
    record_id: str | None
    client_ip: str | None
    detail: dict[str, Any] | None


# --- routers ------------------------------------------------------------------------------------

# Every role that has care records to see; a service worker's token has none (403: its orders
# are at /api/v1/worker/orders, gateway/api_office.py).
CARE_ROLES = (Role.ADMIN, Role.STAFF, Role.FAMILY, Role.WATCHER, Role.VOLUNTEER)
router = APIRouter(
    prefix="/api/v1/care", dependencies=[Depends(allow(*CARE_ROLES))], max_body_size=MAX_BODY_BYTES
)
_Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: _Responses = {404: {"description": "no such elder, or not one the caller may see"}}
_REFUSED: _Responses = {
    422: {"description": "refused by the care domain: detail lists code, en, zh"}
}


# --- registry helpers ---------------------------------------------------------------------------


def _profile_row(conn: Connection, scope: Scope, elder_id: str, *, lock: bool = False) -> Row[Any]:
    """The elder's registry row if the caller may see it; 404 otherwise (same as unknown)."""
    row = None
    if _usable_path_id(elder_id):
        q = select(elder_profiles).where(elder_profiles.c.elder_id == elder_id)
        if lock and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
    if row is None or not scope.visible(row.station, elder_id):
        raise _not_found("elder", elder_id)
    return row


def _health_allowed(scope: Scope) -> None:
    if not scope.sees_health:
        raise _forbidden(
            f"a {scope.role} token does not see health records or assessments",
            f"{ROLE_ZH.get(scope.role, scope.role)}不能查看健康档案和能力评估",
        )


def _record_out(c: Caller, row: Row[Any], scope: Scope) -> ElderView:
    e = elder_from_rows(row, c.vault, with_id_card=False)
    today = c.today()
    if not scope.sees_full_record:
        return ElderContactPublic(
            id=e.id,
            name=e.name,
            gender=e.gender.value,
            age=e.age(today),
            phone=e.phone,
            address=e.address,
            address_line=e.address.one_line(),
            living_situation=e.living_situation,
            emergency_contacts=list(e.emergency_contacts),
            status=e.status.status,
        )
    return ElderRecordPublic(
        id=e.id,
        station=row.station,
        name=e.name,
        gender=e.gender.value,
        birth_date=e.birth_date,
        age=e.age(today),
        age_band=e.age_band(today),
        id_card_masked=row.id_card_masked,
        phone=e.phone,
        address=e.address,
        address_line=e.address.one_line(),
        hukou=e.hukou,
        living_situation=e.living_situation,
        self_care=e.self_care,
        categories=[k for k in Category if k in e.categories_on(today)],
        special_groups=special_groups_of(e, today),
        service_tier=e.service_tier,
        tier_basis=e.tier_basis,
        emergency_contacts=list(e.emergency_contacts),
        doctor=e.doctor,
        allergies=list(e.allergies),
        conditions=list(e.conditions),
        notes=e.notes,
        under_60_reason=e.under_60_reason,
        status=e.status,
        status_overdue=is_overdue(e.status, today),
        created_at=_ms_req(c.rt, row.created_at),
        updated_at=_ms_req(c.rt, row.updated_at),
    )


def _station_for(scope: Scope, asked: str | None) -> str | None:
    if scope.station is not None and asked not in (None, scope.station):
        raise _one(
            "station_not_yours",
            f"you register elders of your station ({scope.station}) only",
            f"只能登记本站（{scope.station}）的老人",
            "station",
        )
    return asked if asked is not None else scope.station


def _id_card_checked(c: Caller, number: str | None) -> IdVault | None:
    vault = c.vault
    if number is not None and vault is None:
        raise _no_key()
    return vault


def _duplicate_id() -> HTTPException:
    return _one(
        "id_already_registered",
        "an elder with this ID number is in the registry already",
        "该身份证号码已在台账中",
        "id_card",
        status.HTTP_409_CONFLICT,
    )


def _insert_elder(
    conn: Connection, c: Caller, elder: Elder, station: str | None, *, anchor_exists: bool
) -> None:
    now, who = c.now_ms(), c.principal.label
    vault = c.vault
    if anchor_exists:
        conn.execute(update(elders).where(elders.c.id == elder.id).values(**anchor_values(elder)))
    else:
        conn.execute(insert(elders).values(id=elder.id, created_at=now, **anchor_values(elder)))
    ids = id_card_values(vault, elder.id_card, elder.id)
    conn.execute(
        insert(elder_profiles).values(
            elder_id=elder.id,
            station=station,
            **profile_values(elder),
            **ids,
            created_at=now,
            created_by=who,
            updated_at=now,
            updated_by=who,
        )
    )
    conn.execute(
        insert(elder_statuses).values(
            elder_id=elder.id,
            status=elder.status.status.value,
            since=elder.status.since,
            until=None,
            note=None,
            recorded_by=who,
            recorded_at=now,
        )
    )


# --- registry routes ----------------------------------------------------------------------------


@router.post(
    "/elders",
    status_code=status.HTTP_201_CREATED,
    tags=[TAG],
    responses={**_REFUSED, 409: {"description": "ID number or elder registered already"}},
)
def register(body: RegistryCreate, c: CallerDep) -> ElderRecordPublic:
    """Register an elder (老年人信息登记), or the detail of an elder that exists (`elder_id`).
    The ID number is stored encrypted; birth date and gender are read from it."""
    today = c.today()
    data = ElderCreate.model_validate(body.model_dump(exclude={"elder_id", "station"}))
    _id_card_checked(c, data.id_card)
    elder_id = body.elder_id or new_id("el")
    try:
        elder = register_elder(data, elder_id=elder_id, today=today, recorded_by=c.principal.label)
    except Refused as err:
        raise _refused(err.problems) from None
    try:
        with _tx(c) as (conn, scope):
            _staff_only(scope)
            station = _station_for(scope, body.station)
            anchor = False
            if body.elder_id is not None:
                if conn.execute(select(elders.c.id).where(elders.c.id == elder_id)).first() is None:
                    raise _one(
                        "elder_unknown", f"no elder {elder_id!r}", f"无此老人{elder_id}", "elder_id"
                    )
                placed = conn.execute(
                    select(elder_profiles.c.station).where(elder_profiles.c.elder_id == elder_id)
                ).first()
                if placed is not None and not scope.visible(placed.station, elder_id):
                    # Another station's elder: answered as one that does not exist (above),
                    # not "registered already", which would tell that it does.
                    raise _one(
                        "elder_unknown", f"no elder {elder_id!r}", f"无此老人{elder_id}", "elder_id"
                    )
                if placed is not None:
                    raise _one(
                        "elder_registered",
                        f"elder {elder_id!r} is registered already",
                        f"老人{elder_id}已登记",
                        "elder_id",
                        409,
                    )
                anchor = True
            _insert_elder(conn, c, elder, station, anchor_exists=anchor)
            c.audit(conn, "create", "elder", elder_id=elder_id, record_id=elder_id)
            row = _profile_row(conn, scope, elder_id)
            out = _record_out(c, row, scope)
    except IntegrityError:  # the blind index is unique: the same number registered
        raise _duplicate_id() from None
    assert isinstance(out, ElderRecordPublic)
    return out


def _age_band_range(band: AgeBand, today: date) -> tuple[date | None, date | None]:
    """Birth dates (exclusive lower, inclusive upper) of an age band on `today`."""

    def years_ago(n: int) -> date:
        try:
            return today.replace(year=today.year - n)
        except ValueError:  # 29 February
            return today.replace(year=today.year - n, day=28)

    lo_age, hi_age = {
        AgeBand.UNDER_60: (0, 59),
        AgeBand.AGE_60_69: (60, 69),
        AgeBand.AGE_70_79: (70, 79),
        AgeBand.AGE_80_89: (80, 89),
        AgeBand.AGE_90_99: (90, 99),
        AgeBand.AGE_100_PLUS: (100, 200),
    }[band]
    return years_ago(hi_age + 1), years_ago(lo_age)


@router.get("/elders", tags=[TAG])
def search(
    c: CallerDep,
    q: Annotated[str | None, Query(max_length=50, description="part of the name")] = None,
    community: Annotated[str | None, Query(max_length=50)] = None,
    station: Annotated[str | None, Query(max_length=100)] = None,
    status_: Annotated[list[ElderStatus] | None, Query(alias="status")] = None,
    living_situation: LivingSituation | None = None,
    self_care: SelfCareStatus | None = None,
    service_tier: ServiceTier | None = None,
    category: Category | None = None,
    age_band: AgeBand | None = None,
    id_card: Annotated[
        str | None, Query(max_length=30, description="exact ID number (staff; audited)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ElderView]:
    """The registry, filtered; only the elders the caller may see, in the view their role
    allows. Default statuses: on the books (active, away, in hospital)."""
    today = c.today()
    qry = select(elder_profiles).order_by(
        elder_profiles.c.community, elder_profiles.c.created_at, elder_profiles.c.elder_id
    )
    statuses = status_ or [ElderStatus.ACTIVE, ElderStatus.AWAY, ElderStatus.IN_HOSPITAL]
    qry = qry.where(elder_profiles.c.status.in_([s.value for s in statuses]))
    for col, val in (
        (elder_profiles.c.community, community),
        (elder_profiles.c.station, station),
        (elder_profiles.c.living_situation, living_situation),
        (elder_profiles.c.self_care, self_care),
        (elder_profiles.c.service_tier, service_tier),
    ):
        if val is not None:
            qry = qry.where(col == str(val))
    if q:
        qry = qry.join(elders, elders.c.id == elder_profiles.c.elder_id).where(
            elders.c.name.contains(q, autoescape=True)
        )
    if age_band is not None:
        lo, hi = _age_band_range(age_band, today)
        qry = qry.join(elders, elders.c.id == elder_profiles.c.elder_id) if not q else qry
        qry = qry.where(elders.c.birth_date > lo, elders.c.birth_date <= hi)
    with _tx(c) as (conn, scope):
        if id_card is not None:
            _staff_only(scope)
            vault = c.vault
            if vault is None:
                raise _no_key()
            try:
                number = parse_id_card(id_card, today=None).number
            except IdCardError as err:
                raise _refused(
                    [Problem("id_card", err.code, err.en, err.zh)], 422, ("query",)
                ) from None
            qry = qry.where(elder_profiles.c.id_card_hmac == vault.blind_index(number))
        rows = [r for r in conn.execute(qry.where(scope.filter())).all()]
        if category is not None:
            rows = [
                r
                for r in rows
                if category in elder_from_rows(r, None, with_id_card=False).categories_on(today)
            ]
        rows = rows[offset : offset + limit]
        c.audit(
            conn,
            "list",
            "elder",
            detail={"count": len(rows), "id_card_search": id_card is not None},
        )
        return [_record_out(c, r, scope) for r in rows]


@router.get("/elders/{elder_id}", tags=[TAG], responses=_NOT_FOUND)
def read(elder_id: str, c: CallerDep) -> ElderView:
    """One elder's record: whole for staff and family, address/phone/contacts for watchers."""
    with _tx(c) as (conn, scope):
        row = _profile_row(conn, scope, elder_id)
        c.audit(conn, "read", "elder", elder_id=elder_id, record_id=elder_id)
        return _record_out(c, row, scope)


@router.get("/elders/{elder_id}/id-card", tags=[TAG], responses=_NOT_FOUND)
def reveal_id_card(elder_id: str, c: CallerDep) -> IdCardPublic:
    """The full ID number (staff and admin; every read is in the audit log)."""
    with _tx(c) as (conn, scope):
        row = _profile_row(conn, scope, elder_id)
        _staff_only(scope)
        if row.id_card_enc is None:
            raise _not_found("ID number of elder", elder_id)
        vault = c.vault
        if vault is None:
            raise _no_key()
        try:
            number = vault.decrypt(row.id_card_enc, elder_id)
        except ValueError:
            raise _key_mismatch() from None
        c.audit(conn, "reveal", "id_card", elder_id=elder_id, record_id=elder_id)
    return IdCardPublic(elder_id=elder_id, id_card=number)


@router.patch("/elders/{elder_id}", tags=[TAG], responses={**_NOT_FOUND, **_REFUSED})
def change(elder_id: str, body: RegistryUpdate, c: CallerDep) -> ElderRecordPublic:
    """Change registry fields (not the status: POST .../status)."""
    upd = ElderUpdate.model_validate(body.model_dump(exclude_unset=True, exclude={"station"}))
    today = c.today()
    try:
        with _tx(c) as (conn, scope):
            row = _profile_row(conn, scope, elder_id, lock=True)
            _staff_only(scope)
            new_card = "id_card" in upd.model_fields_set
            vault = _id_card_checked(c, upd.id_card) if new_card else c.vault
            if row.id_card_enc is not None and vault is None:
                raise _no_key()  # the record is checked with its number, which needs the key
            try:
                current = elder_from_rows(row, vault, with_id_card=True)
            except KeyMismatch:
                raise _key_mismatch() from None
            try:
                elder = apply_update(current, upd, today=today)
            except Refused as err:
                raise _refused(err.problems) from None
            values: dict[str, Any] = {
                **profile_values(elder),
                "updated_at": c.now_ms(),
                "updated_by": c.principal.label,
            }
            if "station" in body.model_fields_set:
                values["station"] = _station_for(scope, body.station)
            if new_card and vault is not None:
                values.update(id_card_values(vault, elder.id_card, elder_id))
            conn.execute(
                update(elder_profiles).where(elder_profiles.c.elder_id == elder_id).values(**values)
            )
            conn.execute(
                update(elders).where(elders.c.id == elder_id).values(**anchor_values(elder))
            )
            c.audit(
                conn,
                "update",
                "elder",
                elder_id=elder_id,
                record_id=elder_id,
                detail={"fields": sorted(body.model_fields_set)},
            )
            out = _record_out(c, _profile_row(conn, scope, elder_id), scope)
    except IntegrityError:
        raise _duplicate_id() from None
    assert isinstance(out, ElderRecordPublic)
    return out


@router.post(
    "/elders/{elder_id}/status",
    tags=[TAG],
    responses={**_NOT_FOUND, **_REFUSED, 409: {"description": "the status move is not allowed"}},
)
def set_status(elder_id: str, body: StatusChange, c: CallerDep) -> ElderRecordPublic:
    """Active, away (with dates), in hospital, moved, deceased; nothing follows deceased."""
    today = c.today()
    try:
        new = StatusEntry(
            status=body.status,
            since=body.since or today,
            until=body.until,
            note=body.note,
            recorded_by=c.principal.label,
        )
    except ValidationError as err:
        raise _validation(err) from None
    with _tx(c) as (conn, scope):
        row = _profile_row(conn, scope, elder_id, lock=True)
        _staff_only(scope)
        current = elder_from_rows(row, None, with_id_card=False).status
        try:
            change_status(current, new, today=today)
        except StatusTransitionError as err:
            raise _refused([Problem("status", err.code, err.en, err.zh)], 409) from None
        now = c.now_ms()
        conn.execute(
            update(elder_profiles)
            .where(elder_profiles.c.elder_id == elder_id)
            .values(
                status=new.status.value,
                status_since=new.since,
                status_until=new.until,
                updated_at=now,
                updated_by=c.principal.label,
            )
        )
        conn.execute(
            insert(elder_statuses).values(
                elder_id=elder_id,
                status=new.status.value,
                since=new.since,
                until=new.until,
                note=new.note,
                recorded_by=c.principal.label,
                recorded_at=now,
            )
        )
        c.audit(
            conn,
            "status",
            "elder",
            elder_id=elder_id,
            record_id=elder_id,
            detail={"from": current.status.value, "to": new.status.value},
        )
        # Away or in hospital pauses the no-water-use rule (and only it) from the local
        # midnight of `since` to the local midnight that begins `until` (the day back is
        # watched again); another status ends the pause (gateway/api_rules.py).
        pause_for_status(
            c.rt,
            conn,
            elder_id,
            new.status.value,
            _midnight_ms(c, new.since),
            _midnight_ms(c, new.until) if new.until is not None else None,
            c.principal.label,
            new.note or "",
        )
        out = _record_out(c, _profile_row(conn, scope, elder_id), scope)
    rules_changed(c.rt)
    assert isinstance(out, ElderRecordPublic)
    return out


def _midnight_ms(c: Caller, day: date) -> int:
    return to_ms(datetime.combine(day, datetime.min.time(), tzinfo=c.rt.tz))


@router.get("/elders/{elder_id}/status", tags=[TAG], responses=_NOT_FOUND)
def status_history(elder_id: str, c: CallerDep) -> list[StatusPublic]:
    """The status history, newest first."""
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id)
        _staff_only(scope)
        rows = conn.execute(
            select(elder_statuses)
            .where(elder_statuses.c.elder_id == elder_id)
            .order_by(elder_statuses.c.id.desc())
        ).all()
        c.audit(conn, "read", "status", elder_id=elder_id)
    return [
        StatusPublic(
            status=r.status,
            since=r.since,
            until=r.until,
            note=r.note,
            recorded_by=r.recorded_by,
            recorded_at=_ms_req(c.rt, r.recorded_at),
        )
        for r in rows
    ]


# --- health records -----------------------------------------------------------------------------


def _flag_out(f: Any) -> FlagPublic:
    return FlagPublic(
        measure=f.measure,
        severity=f.severity.value,
        code=f.code,
        value=f.value,
        reason_en=f.reason_en,
        reason_zh=f.reason_zh,
    )


def _born(conn: Connection, elder_id: str) -> date | None:
    """The elder's date of birth, when known: no health record is older."""
    born: date | None = conn.execute(
        select(elders.c.birth_date).where(elders.c.id == elder_id)
    ).scalar_one_or_none()
    return born


def _vitals_out(c: Caller, r: Row[Any]) -> VitalsPublic:
    return VitalsPublic(
        id=r.id,
        elder_id=r.elder_id,
        measured_at=_ms_req(c.rt, r.measured_at),
        measured_by=r.measured_by,
        source=r.source,
        device_id=r.device_id,
        systolic=r.systolic,
        diastolic=r.diastolic,
        pulse=r.pulse,
        temperature_c=r.temperature_c,
        glucose_mmol_l=r.glucose_mmol_l,
        glucose_timing=r.glucose_timing,
        weight_kg=r.weight_kg,
        note=r.note,
        flags=[FlagPublic(**f) for f in r.flags],
        recorded_by=r.recorded_by,
        recorded_at=_ms_req(c.rt, r.recorded_at),
    )


def _vitals_domain(c: Caller, r: Row[Any]) -> VitalSigns:
    return VitalSigns(
        elder_id=r.elder_id,
        measured_at=from_ms(r.measured_at, c.rt.tz),
        measured_by=r.measured_by,
        source=r.source,
        device_id=r.device_id,
        systolic=r.systolic,
        diastolic=r.diastolic,
        pulse=r.pulse,
        temperature_c=r.temperature_c,
        glucose_mmol_l=r.glucose_mmol_l,
        glucose_timing=r.glucose_timing,
        weight_kg=r.weight_kg,
        note=r.note,
    )


@router.post(
    "/elders/{elder_id}/vitals",
    status_code=status.HTTP_201_CREATED,
    tags=[TAG],
    responses={**_NOT_FOUND, **_REFUSED},
)
def add_vitals(elder_id: str, body: VitalsIn, c: CallerDep) -> VitalsPublic:
    """Record one measuring session. Impossible values (or unit mix-ups: °F, mg/dL, kPa, 斤)
    are refused; abnormal ones are stored and flagged."""
    try:
        vitals = VitalSigns.model_validate(
            {
                **body.model_dump(),
                "elder_id": elder_id,
                "measured_by": body.measured_by or c.principal.label,
            }
        )
    except ValidationError as err:
        raise _validation(err) from None
    vid = new_id("vs")
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id)
        _staff_only(scope)
        try:
            check_measured_at(vitals, now=c.now(), born=_born(conn, elder_id))
        except CareError as err:
            raise _one(err.code, err.en, err.zh, "measured_at") from None
        conn.execute(
            insert(vital_signs).values(
                id=vid,
                elder_id=elder_id,
                measured_at=to_ms(vitals.measured_at),
                measured_by=vitals.measured_by,
                source=vitals.source.value,
                device_id=vitals.device_id,
                systolic=vitals.systolic,
                diastolic=vitals.diastolic,
                pulse=vitals.pulse,
                temperature_c=vitals.temperature_c,
                glucose_mmol_l=vitals.glucose_mmol_l,
                glucose_timing=vitals.glucose_timing.value if vitals.glucose_timing else None,
                weight_kg=vitals.weight_kg,
                note=vitals.note,
                flags=[_flag_out(f).model_dump(mode="json") for f in vitals.flags()],
                recorded_by=c.principal.label,
                recorded_at=c.now_ms(),
            )
        )
        c.audit(conn, "create", "vital_signs", elder_id=elder_id, record_id=vid)
        row = conn.execute(select(vital_signs).where(vital_signs.c.id == vid)).one()
    return _vitals_out(c, row)


@router.get("/elders/{elder_id}/vitals", tags=[TAG], responses=_NOT_FOUND)
def list_vitals(
    elder_id: str, c: CallerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[VitalsPublic]:
    """The elder's vital signs, newest first (staff and family; audited)."""
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id)
        _health_allowed(scope)
        rows = conn.execute(
            select(vital_signs)
            .where(vital_signs.c.elder_id == elder_id)
            .order_by(vital_signs.c.measured_at.desc(), vital_signs.c.id.desc())
            .limit(limit)
        ).all()
        c.audit(conn, "read", "vital_signs", elder_id=elder_id, detail={"count": len(rows)})
    return [_vitals_out(c, r) for r in rows]


@router.get("/elders/{elder_id}/vitals/trends", tags=[TAG], responses=_NOT_FOUND)
def vitals_trends(
    elder_id: str, c: CallerDep, window_days: Annotated[int, Query(ge=1, le=366)] = 30
) -> list[TrendPublic]:
    """Per measure: the series, the latest value and the change over the window."""
    now = c.now()
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id)
        _health_allowed(scope)
        rows = conn.execute(
            select(vital_signs)
            .where(vital_signs.c.elder_id == elder_id)
            .order_by(vital_signs.c.measured_at)
            .limit(5000)
        ).all()
        c.audit(conn, "read", "vital_trends", elder_id=elder_id, detail={"count": len(rows)})
    readings = [_vitals_domain(c, r) for r in rows]
    out = []

    def pt(p: Any) -> PointPublic | None:
        return None if p is None else PointPublic(at=p.at.isoformat(), value=p.value)

    for measure, t in trends(readings, now=now, window=timedelta(days=window_days)).items():
        flag = weight_loss_flag(t)
        out.append(
            TrendPublic(
                measure=measure,
                label_zh=measure.zh,
                points=[PointPublic(at=p.at.isoformat(), value=p.value) for p in t.points],
                latest=pt(t.latest),
                reference=pt(t.reference),
                change=t.change,
                change_pct=t.change_pct,
                mean_window=t.mean_window,
                flag=_flag_out(flag) if flag else None,
            )
        )
    return out


def _encounter_out(c: Caller, r: Row[Any]) -> EncounterPublic:
    return EncounterPublic(
        id=r.id,
        elder_id=r.elder_id,
        kind=r.kind,
        occurred_at=_ms_req(c.rt, r.occurred_at),
        seen_by=r.seen_by,
        place=r.place,
        notes=r.notes,
        findings=list(r.findings),
        next_due=r.next_due,
        recorded_by=r.recorded_by,
        recorded_at=_ms_req(c.rt, r.recorded_at),
    )


@router.post(
    "/elders/{elder_id}/encounters",
    status_code=status.HTTP_201_CREATED,
    tags=[TAG],
    responses={**_NOT_FOUND, **_REFUSED},
)
def add_encounter(elder_id: str, body: EncounterIn, c: CallerDep) -> EncounterPublic:
    """A check-up (体检), home visit (探访), follow-up (随访) or clinic visit (就诊)."""
    try:
        enc = Encounter.model_validate(
            {**body.model_dump(), "elder_id": elder_id, "recorded_by": c.principal.label}
        )
    except ValidationError as err:
        raise _validation(err) from None
    eid = new_id("en")
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id)
        _staff_only(scope)
        try:
            check_occurred_at(enc, now=c.now(), born=_born(conn, elder_id))
        except CareError as err:
            raise _one(err.code, err.en, err.zh, "occurred_at") from None
        conn.execute(
            insert(encounters).values(
                id=eid,
                elder_id=elder_id,
                kind=enc.kind.value,
                occurred_at=to_ms(enc.occurred_at),
                seen_by=enc.seen_by,
                place=enc.place,
                notes=enc.notes,
                findings=list(enc.findings),
                next_due=enc.next_due,
                recorded_by=enc.recorded_by,
                recorded_at=c.now_ms(),
            )
        )
        c.audit(conn, "create", "encounter", elder_id=elder_id, record_id=eid)
        row = conn.execute(select(encounters).where(encounters.c.id == eid)).one()
    return _encounter_out(c, row)


@router.get("/elders/{elder_id}/encounters", tags=[TAG], responses=_NOT_FOUND)
def list_encounters(
    elder_id: str, c: CallerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[EncounterPublic]:
    """Check-ups and visits, newest first (staff and family; audited)."""
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id)
        _health_allowed(scope)
        rows = conn.execute(
            select(encounters)
            .where(encounters.c.elder_id == elder_id)
            .order_by(encounters.c.occurred_at.desc(), encounters.c.id.desc())
            .limit(limit)
        ).all()
        c.audit(conn, "read", "encounter", elder_id=elder_id, detail={"count": len(rows)})
    return [_encounter_out(c, r) for r in rows]


# --- assessments --------------------------------------------------------------------------------


def _assessment_domain(r: Row[Any]) -> Assessment:
    return Assessment(
        id=r.id,
        elder_id=r.elder_id,
        assessed_on=r.assessed_on,
        assessor=r.assessor,
        second_assessor=r.second_assessor,
        reason=r.reason,
        scores=r.scores,
        in_coma=r.in_coma,
        dementia=r.dementia,
        mental_disorder=r.mental_disorder,
        risk_events_30d=r.risk_events_30d,
        notes=r.notes,
        recorded_seq=r.recorded_seq,
    )


def _assessment_out(c: Caller, r: Row[Any]) -> AssessmentPublic:
    res = _assessment_domain(r).result()
    return AssessmentPublic(
        id=r.id,
        elder_id=r.elder_id,
        assessed_on=r.assessed_on,
        assessor=r.assessor,
        second_assessor=r.second_assessor,
        reason=r.reason,
        scores=r.scores,
        part_scores={p.value: v for p, v in res.part_scores.items()},
        total=res.total,
        preliminary_level=res.preliminary_level,
        level=res.level,
        level_zh=res.level.zh,
        adjustments=[AdjustmentPublic(code=a, en=b, zh=z) for a, b, z in res.adjustments],
        care_level=int(res.care_level),
        notes=r.notes,
        recorded_by=r.recorded_by,
        recorded_at=_ms_req(c.rt, r.recorded_at),
    )


@router.post(
    "/elders/{elder_id}/assessments",
    status_code=status.HTTP_201_CREATED,
    tags=[TAG],
    responses={**_NOT_FOUND, **_REFUSED},
)
def add_assessment(elder_id: str, body: AssessmentIn, c: CallerDep) -> AssessmentPublic:
    """A capability assessment (GB/T 42195-2022): all 26 items scored. Kept as made (a
    correction is a new one with reason `review`). When it is the elder's current assessment,
    the registry's self-care status follows its level."""
    today = c.today()
    if body.assessed_on > today:
        raise _one(
            "assessed_in_future",
            "the assessment day is after today",
            "评估日期晚于今天",
            "assessed_on",
        )
    aid = new_id("as")
    with _tx(c) as (conn, scope):
        row = _profile_row(conn, scope, elder_id, lock=True)
        _staff_only(scope)
        seq = conn.execute(
            select(func.count())
            .select_from(assessments)
            .where(
                assessments.c.elder_id == elder_id, assessments.c.assessed_on == body.assessed_on
            )
        ).scalar_one()
        try:
            a = Assessment.model_validate(
                {**body.model_dump(), "id": aid, "elder_id": elder_id, "recorded_seq": seq}
            )
        except ValidationError as err:
            raise _validation(err) from None
        res = a.result()
        conn.execute(
            insert(assessments).values(
                id=aid,
                elder_id=elder_id,
                assessed_on=a.assessed_on,
                recorded_seq=seq,
                assessor=a.assessor,
                second_assessor=a.second_assessor,
                reason=a.reason.value,
                scores=a.scores,
                in_coma=a.in_coma,
                dementia=a.dementia,
                mental_disorder=a.mental_disorder,
                risk_events_30d=a.risk_events_30d,
                notes=a.notes,
                total=res.total,
                level=res.level.value,
                care_level=int(res.care_level),
                recorded_by=c.principal.label,
                recorded_at=c.now_ms(),
            )
        )
        all_rows = conn.execute(select(assessments).where(assessments.c.elder_id == elder_id))
        latest = current_assessment([_assessment_domain(r) for r in all_rows], today=today)
        if latest is not None and latest.id == aid:
            self_care = ASSESSMENT_CARE_LEVELS[res.level][1]
            elder = elder_from_rows(row, None, with_id_card=False)
            if elder.self_care is not self_care:
                record = {**row.record, "self_care": self_care.value}
                conn.execute(
                    update(elder_profiles)
                    .where(elder_profiles.c.elder_id == elder_id)
                    .values(
                        self_care=self_care.value,
                        record=record,
                        updated_at=c.now_ms(),
                        updated_by=c.principal.label,
                    )
                )
        c.audit(
            conn,
            "create",
            "assessment",
            elder_id=elder_id,
            record_id=aid,
            detail={"level": res.level.value, "total": res.total},
        )
        out = conn.execute(select(assessments).where(assessments.c.id == aid)).one()
    return _assessment_out(c, out)


@router.get("/elders/{elder_id}/assessments", tags=[TAG], responses=_NOT_FOUND)
def list_assessments(elder_id: str, c: CallerDep) -> list[AssessmentPublic]:
    """Every assessment, newest first (staff and family; audited)."""
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id)
        _health_allowed(scope)
        rows = conn.execute(
            select(assessments)
            .where(assessments.c.elder_id == elder_id)
            .order_by(assessments.c.assessed_on.desc(), assessments.c.recorded_seq.desc())
        ).all()
        c.audit(conn, "read", "assessment", elder_id=elder_id, detail={"count": len(rows)})
    return [_assessment_out(c, r) for r in rows]


@router.get("/elders/{elder_id}/assessments/current", tags=[TAG], responses=_NOT_FOUND)
def current(elder_id: str, c: CallerDep) -> CurrentAssessmentPublic:
    """The current level (the latest assessment), the care level and services it gives."""
    today = c.today()
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id)
        _health_allowed(scope)
        rows = {
            r.id: r
            for r in conn.execute(select(assessments).where(assessments.c.elder_id == elder_id))
        }
        c.audit(conn, "read", "assessment", elder_id=elder_id, detail={"current": True})
    latest = current_assessment([_assessment_domain(r) for r in rows.values()], today=today)
    if latest is None or latest.id is None:
        return CurrentAssessmentPublic(assessment=None, eligibility=None, reassessment_due=True)
    e = eligibility_for(latest.result().level)
    return CurrentAssessmentPublic(
        assessment=_assessment_out(c, rows[latest.id]),
        eligibility=EligibilityPublic(
            level=e.level,
            care_level=int(e.care_level),
            self_care=e.self_care,
            services=[s.value for s in sorted(e.services)],
            visit_every_days=e.visit_every_days,
            home_care_bed=e.home_care_bed,
        ),
        reassessment_due=reassessment_due(latest, today),
    )


# --- people -------------------------------------------------------------------------------------


def _profile_out(c: Caller, person: Row[Any], prof: Row[Any]) -> ProfilePublic:
    p = VolunteerProfile.model_validate({**prof.profile, "person_id": person.id})
    today = c.today()
    return ProfilePublic(
        responder_id=person.id,
        name=person.name,
        role=person.role,
        station=prof.station,
        categories=[k for k in VolunteerCategory if k in p.categories],
        skills=list(p.skills),
        availability=list(p.availability),
        trainings=list(p.trainings),
        certificates=list(p.certificates),
        valid_certificates=[x.name for x in p.valid_certificates(today)],
        expiring_certificates=[x.name for x in p.expiring_certificates(today)],
        birth_date=p.birth_date,
        note=p.note,
        updated_at=_ms_req(c.rt, prof.updated_at),
        updated_by=prof.updated_by,
    )


def _person(conn: Connection, scope: Scope, responder_id: str) -> Row[Any]:
    """The person, or 404: also for another station's (staff of a station take a new person,
    one of no station yet, into theirs with PUT .../profile; never one of another station)."""
    row = None
    if _usable_path_id(responder_id):
        row = conn.execute(select(responders).where(responders.c.id == responder_id)).first()
    if row is None or not scope.sees_person(conn, responder_id):
        raise _not_found("person", responder_id)
    return row


@router.put(
    "/people/{responder_id}/profile", tags=[TAG], responses={404: {"description": "no person"}}
)
def put_profile(responder_id: str, body: ProfileIn, c: CallerDep) -> ProfilePublic:
    """A helper's profile: volunteer categories, skills, weekly availability, trainings and
    certificates; `station` for staff (what they see). Staff and admin."""
    try:
        profile = VolunteerProfile.model_validate(
            {**body.model_dump(exclude={"station"}), "person_id": responder_id}
        )
    except ValidationError as err:
        raise _validation(err) from None
    problems = check_volunteer(profile, today=c.today())
    if problems:
        raise _refused(problems)
    with _tx(c) as (conn, scope):
        _staff_only(scope)
        person = _person(conn, scope, responder_id)
        values = {
            "station": _station_for(scope, body.station),
            "profile": profile.model_dump(mode="json", exclude={"person_id"}),
            "updated_at": c.now_ms(),
            "updated_by": c.principal.label,
        }
        exists = conn.execute(
            select(person_profiles.c.responder_id).where(
                person_profiles.c.responder_id == responder_id
            )
        ).first()
        if exists:
            conn.execute(
                update(person_profiles)
                .where(person_profiles.c.responder_id == responder_id)
                .values(**values)
            )
        else:
            conn.execute(insert(person_profiles).values(responder_id=responder_id, **values))
        c.audit(conn, "update", "person_profile", record_id=responder_id)
        prof = conn.execute(
            select(person_profiles).where(person_profiles.c.responder_id == responder_id)
        ).one()
        return _profile_out(c, person, prof)


@router.get(
    "/people/{responder_id}/profile", tags=[TAG], responses={404: {"description": "no person"}}
)
def get_profile(responder_id: str, c: CallerDep) -> ProfilePublic:
    """A helper's profile (staff, admin, or the person themself)."""
    with _tx(c) as (conn, scope):
        if not scope.is_staff and c.principal.person_id != responder_id:
            raise _not_found("person", responder_id)
        person = _person(conn, scope, responder_id)
        prof = conn.execute(
            select(person_profiles).where(person_profiles.c.responder_id == responder_id)
        ).first()
        if prof is None:
            raise _not_found("profile of person", responder_id)
        c.audit(conn, "read", "person_profile", record_id=responder_id)
        return _profile_out(c, person, prof)


@router.get("/people", tags=[TAG])
def list_profiles(
    c: CallerDep,
    category: VolunteerCategory | None = None,
    skill: Annotated[str | None, Query(max_length=50)] = None,
    station: Annotated[str | None, Query(max_length=100)] = None,
) -> list[ProfilePublic]:
    """Helpers' profiles, filtered by volunteer category, skill or station (staff, admin)."""
    with _tx(c) as (conn, scope):
        _staff_only(scope)
        q = select(person_profiles, responders).join(
            responders, responders.c.id == person_profiles.c.responder_id
        )
        if station is not None:
            q = q.where(person_profiles.c.station == station)
        q = q.where(scope.people_filter(responders.c.id))
        rows = conn.execute(q.order_by(responders.c.name, responders.c.id)).all()
        c.audit(conn, "list", "person_profile", detail={"count": len(rows)})
    out = [_profile_out(c, r, r) for r in rows]
    if category is not None:
        out = [p for p in out if category in p.categories]
    if skill is not None:
        out = [p for p in out if skill in p.skills]
    return out


# --- pairings (the paging table, with a kind) ----------------------------------------------------


def _pairing_kind(r: Row[Any]) -> PairingKind:
    return PairingKind(r.kind) if r.kind else PairingKind(r.role)


def _pairing_domain(c: Caller, r: Row[Any]) -> Pairing:
    return Pairing(
        id=r.id,
        elder_id=r.elder_id,
        person_id=r.responder_id,
        kind=_pairing_kind(r),
        start=from_ms(r.active_from, c.rt.tz),
        end=from_ms(r.active_until, c.rt.tz) if r.active_until is not None else None,
        order=r.ord,
        created_by=r.created_by,
        note=r.note,
    )


def _pairing_out(c: Caller, r: Row[Any]) -> PairingPublic:
    now = c.now_ms()
    return PairingPublic(
        id=r.id,
        elder_id=r.elder_id,
        person_id=r.responder_id,
        kind=_pairing_kind(r),
        role=r.role,
        order=r.ord,
        start=_ms_req(c.rt, r.active_from),
        end=_ms(c.rt, r.active_until),
        active=r.active_from <= now and (r.active_until is None or now < r.active_until),
        created_by=r.created_by,
        note=r.note,
    )


@router.post(
    "/elders/{elder_id}/pairings",
    status_code=status.HTTP_201_CREATED,
    tags=[TAG],
    responses={**_NOT_FOUND, **_REFUSED, 409: {"description": "overlaps a pairing of that kind"}},
)
def pair(elder_id: str, body: PairingIn, c: CallerDep) -> PairingPublic:
    """Pair a person with the elder (结对): watcher, volunteer, relative, party member or staff
    in charge. It is a row of the pairings that build the escalation plan: from its start, the
    person is paged for this elder in the role of its kind. End it with DELETE
    /api/v1/elders/{elder_id}/pairings/{pairing_id} (kept, end-dated)."""
    now = c.now()
    try:
        new = Pairing(
            elder_id=elder_id,
            person_id=body.person_id,
            kind=body.kind,
            start=body.start or now,
            end=body.end,
            order=body.order,
            created_by=c.principal.label,
            note=body.note,
        )
    except ValidationError as err:
        raise _validation(err) from None
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id, lock=True)
        _staff_only(scope)
        person = conn.execute(select(responders).where(responders.c.id == body.person_id)).first()
        # Another station's person is refused as one that does not exist.
        if person is None or not scope.sees_person(conn, body.person_id):
            raise _one(
                "person_unknown",
                f"no person {body.person_id!r}",
                f"无此人员{body.person_id}",
                "person_id",
            )
        existing = conn.execute(select(pairings).where(pairings.c.elder_id == elder_id)).all()
        try:
            check_new_pairing(new, [_pairing_domain(c, r) for r in existing])
        except CareError as err:
            raise _refused([Problem("person_id", err.code, err.en, err.zh)], 409) from None
        pid = new_id("pr")
        conn.execute(
            insert(pairings).values(
                id=pid,
                elder_id=elder_id,
                responder_id=body.person_id,
                role=body.kind.role.value,
                kind=body.kind.value,
                ord=body.order,
                active_from=to_ms(new.start),
                active_until=to_ms(new.end) if new.end else None,
                created_by=c.principal.label,
                created_at=c.now_ms(),
                note=body.note,
            )
        )
        c.audit(
            conn,
            "create",
            "pairing",
            elder_id=elder_id,
            record_id=pid,
            detail={"person_id": body.person_id, "kind": body.kind.value},
        )
        row = conn.execute(select(pairings).where(pairings.c.id == pid)).one()
    return _pairing_out(c, row)


@router.get("/elders/{elder_id}/pairings", tags=[TAG], responses=_NOT_FOUND)
def list_pairs(elder_id: str, c: CallerDep) -> list[PairingPublic]:
    """The elder's pairings (past, present and future), by kind then order."""
    with _tx(c) as (conn, scope):
        _profile_row(conn, scope, elder_id)
        _staff_only(scope)
        rows = conn.execute(select(pairings).where(pairings.c.elder_id == elder_id)).all()
        c.audit(conn, "read", "pairing", elder_id=elder_id)
    kinds = list(PairingKind)
    rows = sorted(rows, key=lambda r: (kinds.index(_pairing_kind(r)), r.ord, r.active_from))
    return [_pairing_out(c, r) for r in rows]


# --- family links -------------------------------------------------------------------------------


def _link_domain(c: Caller, r: Row[Any]) -> FamilyLink:
    def t(ms: int | None) -> datetime | None:
        return None if ms is None else from_ms(ms, c.rt.tz)

    return FamilyLink(
        id=r.id,
        elder_id=r.elder_id,
        person_id=r.person_id,
        relation=r.relation,
        requested_at=from_ms(r.requested_at, c.rt.tz),
        requested_by=r.requested_by,
        expires_at=t(r.expires_at),
        approved_at=t(r.approved_at),
        approved_by=r.approved_by,
        confirmed_at=t(r.confirmed_at),
        confirmed_by=r.confirmed_by,
        confirmed_on_behalf=r.confirmed_on_behalf,
        revoked_at=t(r.revoked_at),
        revoked_by=r.revoked_by,
        revoke_reason=r.revoke_reason,
    )


def _link_out(c: Caller, r: Row[Any]) -> FamilyLinkPublic:
    link = _link_domain(c, r)
    return FamilyLinkPublic(
        id=r.id,
        elder_id=r.elder_id,
        person_id=r.person_id,
        relation=r.relation,
        state=link.state_at(c.now()),
        requested_at=_ms_req(c.rt, r.requested_at),
        requested_by=r.requested_by,
        expires_at=_ms(c.rt, r.expires_at),
        approved_at=_ms(c.rt, r.approved_at),
        approved_by=r.approved_by,
        confirmed_at=_ms(c.rt, r.confirmed_at),
        confirmed_by=r.confirmed_by,
        confirmed_on_behalf=r.confirmed_on_behalf,
        revoked_at=_ms(c.rt, r.revoked_at),
        revoked_by=r.revoked_by,
        revoke_reason=r.revoke_reason,
    )


def _ms_or_none(dt: datetime | None) -> int | None:
    return None if dt is None else to_ms(dt)


@router.post(
    "/family-links",
    status_code=status.HTTP_201_CREATED,
    tags=[TAG],
    responses={**_REFUSED, 409: {"description": "the relative already has a live link"}},
)
def request_link(body: FamilyLinkIn, c: CallerDep) -> FamilyLinkPublic:
    """A relative asks to follow an elder (entered by staff): requested, then approved by the
    station, then confirmed by the elder (or by other staff on the elder's behalf). One live
    (requested, approved or confirmed) link per relative and elder: another is a 409."""
    now = c.now()
    try:
        link = FamilyLink.model_validate(
            {**body.model_dump(), "requested_at": now, "requested_by": c.principal.label}
        )
    except ValidationError as err:
        raise _validation(err) from None
    if link.expires_at is not None and link.expires_at <= now:
        raise _one("family_link_expired", "the expiry is in the past", "有效期已过", "expires_at")
    lid = new_id("fl")
    with _tx(c) as (conn, scope):
        _staff_only(scope)
        try:
            # Locked, as for a pairing: two requests for the same relative at once take turns
            # (FOR UPDATE on PostgreSQL; SQLite's writers queue on BEGIN IMMEDIATE), so the
            # second sees the first's link below. Not a unique index: whether a link is live
            # depends on its expiry and the clock, which no index predicate can read.
            _profile_row(conn, scope, body.elder_id, lock=True)
        except HTTPException:
            raise _one(
                "elder_unknown",
                f"no elder {body.elder_id!r}",
                f"无此老人{body.elder_id}",
                "elder_id",
            ) from None
        person = conn.execute(select(responders).where(responders.c.id == body.person_id)).first()
        if (
            person is None
            or person.role != PersonRole.FAMILY.value
            or not scope.sees_person(conn, body.person_id)
        ):
            raise _one(
                "family_person",
                f"{body.person_id!r} is not a family member",
                f"{body.person_id}不是家属",
                "person_id",
            )
        pair = conn.execute(
            select(family_links).where(
                family_links.c.elder_id == link.elder_id,
                family_links.c.person_id == link.person_id,
            )
        ).all()
        try:
            check_new_family_link(link, [_link_domain(c, r) for r in pair], now)
        except CareError as err:
            raise _refused([Problem("person_id", err.code, err.en, err.zh)], 409) from None
        conn.execute(
            insert(family_links).values(
                id=lid,
                elder_id=link.elder_id,
                person_id=link.person_id,
                relation=link.relation.value,
                requested_at=to_ms(now),
                requested_by=link.requested_by,
                expires_at=_ms_or_none(link.expires_at),
                confirmed_on_behalf=False,
            )
        )
        c.audit(
            conn,
            "create",
            "family_link",
            elder_id=body.elder_id,
            record_id=lid,
            detail={"person_id": body.person_id},
        )
        row = conn.execute(select(family_links).where(family_links.c.id == lid)).one()
    return _link_out(c, row)


def _link_row(conn: Connection, scope: Scope, link_id: str) -> Row[Any]:
    row = None
    if _usable_path_id(link_id):
        row = conn.execute(select(family_links).where(family_links.c.id == link_id)).first()
    if row is None:
        raise _not_found("family link", link_id)
    try:
        _profile_row(conn, scope, row.elder_id)
    except HTTPException:
        raise _not_found("family link", link_id) from None
    return row


def _link_step(
    link_id: str, c: CallerDep, action: str, step: Any, *, whole_pair: bool = False
) -> FamilyLinkPublic:
    """Apply `step` to the link; `whole_pair`: also to the relative's other live links to the
    same elder, when this one was live (see revoke_link)."""
    now = c.now()
    with _tx(c) as (conn, scope):
        row = _link_row(conn, scope, link_id)
        _staff_only(scope)
        old = _link_domain(c, row)
        try:
            new = step(old, now)
        except ValidationError as err:
            raise _validation(err) from None
        except CareError as err:
            raise _refused([Problem("", err.code, err.en, err.zh)], 409) from None
        _store_link(conn, link_id, new)
        c.audit(conn, action, "family_link", elder_id=row.elder_id, record_id=link_id)
        if whole_pair and old.live_at(now):
            others = conn.execute(
                select(family_links).where(
                    family_links.c.elder_id == row.elder_id,
                    family_links.c.person_id == row.person_id,
                    family_links.c.id != link_id,
                )
            ).all()
            for other in others:
                twin = _link_domain(c, other)
                if twin.live_at(now):
                    _store_link(conn, other.id, step(twin, now))
                    c.audit(
                        conn,
                        action,
                        "family_link",
                        elder_id=row.elder_id,
                        record_id=other.id,
                        detail={"with": link_id},
                    )
        row = conn.execute(select(family_links).where(family_links.c.id == link_id)).one()
    return _link_out(c, row)


def _store_link(conn: Connection, link_id: str, new: FamilyLink) -> None:
    conn.execute(
        update(family_links)
        .where(family_links.c.id == link_id)
        .values(
            approved_at=_ms_or_none(new.approved_at),
            approved_by=new.approved_by,
            confirmed_at=_ms_or_none(new.confirmed_at),
            confirmed_by=new.confirmed_by,
            confirmed_on_behalf=new.confirmed_on_behalf,
            revoked_at=_ms_or_none(new.revoked_at),
            revoked_by=new.revoked_by,
            revoke_reason=new.revoke_reason,
        )
    )


_LINK_RESPONSES: _Responses = {
    404: {"description": "no such link"},
    409: {"description": "wrong state"},
}


@router.post("/family-links/{link_id}/approve", tags=[TAG], responses=_LINK_RESPONSES)
def approve_link(link_id: str, c: CallerDep) -> FamilyLinkPublic:
    """The station approves a request (staff)."""
    who = c.principal.label
    return _link_step(
        link_id,
        c,
        "approve",
        lambda link, now: approve_family_link(link, by=who, by_role=PersonRole.STAFF, at=now),
    )


@router.post("/family-links/{link_id}/confirm", tags=[TAG], responses=_LINK_RESPONSES)
def confirm_link(link_id: str, body: ConfirmIn, c: CallerDep) -> FamilyLinkPublic:
    """The elder confirms (recorded by staff), or other staff confirm on the elder's behalf."""
    who = c.principal.label

    def step(link: FamilyLink, now: datetime) -> FamilyLink:
        by = who if body.on_behalf else link.elder_id
        return confirm_family_link(
            link, by=by, by_role=PersonRole.STAFF, at=now, on_behalf=body.on_behalf
        )

    return _link_step(link_id, c, "confirm", step)


@router.post("/family-links/{link_id}/revoke", tags=[TAG], responses=_LINK_RESPONSES)
def revoke_link(link_id: str, body: RevokeIn, c: CallerDep) -> FamilyLinkPublic:
    """Revoke a link at once (the relative no longer sees the elder); the reason is kept."""
    who = c.principal.label
    # The whole pair: a database from before the one-live-link rule may hold several live
    # links of this relative to this elder, and access outlived the revocation of one of
    # them. They are revoked together (each audited) rather than by a migration, which would
    # have to pick which of a relative's links to keep without asking the station.
    return _link_step(
        link_id,
        c,
        "revoke",
        lambda link, now: revoke_family_link(link, by=who, at=now, reason=body.reason),
        whole_pair=True,
    )


@router.get("/family-links", tags=[TAG])
def list_links(
    # 40: the audit row records it (audit_log.elder_id; PostgreSQL refuses longer with an error)
    c: CallerDep,
    elder_id: Annotated[str | None, Query(max_length=40)] = None,
) -> list[FamilyLinkPublic]:
    """Family links: staff see their station's; a family member sees their own."""
    with _tx(c) as (conn, scope):
        q = select(family_links).order_by(family_links.c.requested_at, family_links.c.id)
        if elder_id is not None:
            q = q.where(family_links.c.elder_id == elder_id)
        if scope.role is Role.FAMILY:
            q = q.where(family_links.c.person_id == c.principal.person_id)
            rows = conn.execute(q).all()
        elif scope.is_staff:
            visible = {
                r.elder_id
                for r in conn.execute(select(elder_profiles.c.elder_id).where(scope.filter()))
            }
            rows = [r for r in conn.execute(q).all() if r.elder_id in visible]
        else:
            raise _forbidden(
                f"a {scope.role} token does not see family links",
                f"{ROLE_ZH.get(scope.role, scope.role)}不能查看家属关联",
            )
        c.audit(conn, "list", "family_link", elder_id=elder_id)
    return [_link_out(c, r) for r in rows]


# --- registers (台账) ---------------------------------------------------------------------------


def _registry_elders(
    conn: Connection, c: Caller, scope: Scope, station: str | None, *, full_ids: bool
) -> list[Elder]:
    """The elders of a register. Masked numbers need the number: it is decrypted in memory
    when the key is there (a number that does not decrypt is left blank in a masked table,
    and refuses a full export)."""
    q = select(elder_profiles).where(scope.filter())
    if station is not None:
        q = q.where(elder_profiles.c.station == station)
    vault = c.vault
    try:
        return [
            elder_from_rows(r, vault, with_id_card=vault is not None, lenient=not full_ids)
            for r in conn.execute(q)
        ]
    except KeyMismatch:
        raise _key_mismatch() from None


_REGISTERS = {
    RegisterKey.BY_AGE_BAND: count_by_age_band,
    RegisterKey.BY_CATEGORY: count_by_category,
    RegisterKey.BY_SELF_CARE: count_by_self_care,
    RegisterKey.BY_LIVING_SITUATION: count_by_living_situation,
    RegisterKey.SPECIAL_GROUP_COUNTS: count_special_groups,
    RegisterKey.SPECIAL_GROUPS: special_groups,
}


def _make_register(c: Caller, key: RegisterKey, station: str | None, full_ids: bool) -> Register:
    today = c.today()
    if key is RegisterKey.IMPORT_TEMPLATE:
        return import_template(today)
    with _tx(c) as (conn, scope):
        _staff_only(scope)
        if full_ids and scope.role is not Role.ADMIN:
            raise _forbidden(
                "full ID numbers in an export: admin only", "导出完整身份证号仅限管理员"
            )
        if full_ids and c.vault is None:
            raise _no_key()
        es = _registry_elders(conn, c, scope, station, full_ids=full_ids)
        c.audit(
            conn,
            "reveal" if full_ids else "export",
            "register",
            detail={"key": key.value, "station": station, "count": len(es)},
        )
    if key is RegisterKey.REGISTRY:
        return registry(es, today, mask_id_cards=not full_ids)
    return _REGISTERS[key](es, today)


def _cell_json(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date) else v


_FULL_IDS = Query(description="the registry with full ID numbers (admin; audited)")


@router.get(
    "/registers/{key}.xlsx",
    tags=[TAG],
    response_class=Response,
    responses={200: {"content": {XLSX: {}}, "description": "the table as .xlsx"}},
)
def register_xlsx(
    key: RegisterKey,
    c: CallerDep,
    station: Annotated[str | None, Query(max_length=100)] = None,
    full_id_cards: Annotated[bool, _FULL_IDS] = False,
) -> Response:
    """A station table (台账) as an Excel file: title, Chinese and English headers, rows,
    total, notes. `registry` imports back (POST /care/elders/import)."""
    reg = _make_register(c, key, station, full_id_cards)
    name = f"{reg.key}-{reg.as_of.isoformat()}.xlsx"
    return Response(
        content=register_to_xlsx(reg),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/registers/{key}", tags=[TAG])
def register_json(
    key: RegisterKey,
    c: CallerDep,
    station: Annotated[str | None, Query(max_length=100)] = None,
    full_id_cards: Annotated[bool, _FULL_IDS] = False,
) -> RegisterPublic:
    """A station table (台账) as JSON rows keyed by column: registry, by_age_band,
    by_category, by_self_care, by_living_situation, special_group_counts, special_groups,
    import_template. Staff see their station's elders."""
    reg = _make_register(c, key, station, full_id_cards)
    keys = [col.key for col in reg.columns]
    return RegisterPublic(
        key=reg.key,
        title_zh=reg.title_zh,
        title_en=reg.title_en,
        as_of=reg.as_of,
        station=station,
        columns=[ColumnPublic(key=x.key, zh=x.zh, en=x.en) for x in reg.columns],
        rows=[{k: _cell_json(v) for k, v in rec.items()} for rec in reg.records()],
        total=dict(zip(keys, map(_cell_json, reg.total), strict=True)) if reg.total else None,
        notes_zh=reg.notes_zh,
        notes_en=reg.notes_en,
    )


def register_to_xlsx(reg: Register) -> bytes:
    """Row 1 title, row 2 Chinese headers, row 3 English headers, data, total, notes."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = reg.title_zh[:31]
    ws.append([f"{reg.title_zh}（{reg.as_of.isoformat()}）", reg.title_en])
    ws.append(reg.header_zh())
    ws.append(reg.header_en())
    for cell in (*ws[1], *ws[2]):
        cell.font = Font(bold=True)
    text_cols = {i + 1 for i, col in enumerate(reg.columns) if col.key in _TEXT_KEYS}
    for row in (*reg.rows, *((reg.total,) if reg.total else ())):
        ws.append(list(row))
        for i, v in enumerate(row, start=1):
            cell = ws.cell(row=ws.max_row, column=i)
            if isinstance(v, date):
                cell.number_format = "yyyy-mm-dd"
            elif i in text_cols:
                cell.number_format = "@"  # ID and phone numbers stay text when edited
    for note in (reg.notes_zh, reg.notes_en):
        if note:
            ws.append([note])
            ws.cell(row=ws.max_row, column=1).alignment = Alignment(wrap_text=False)
    ws.freeze_panes = "A4"
    for i, col in enumerate(reg.columns, start=1):
        ws.column_dimensions[ws.cell(row=2, column=i).column_letter].width = max(
            8, min(24, 2 * len(col.zh) + 2)
        )
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


_TEXT_KEYS = {
    "id_card",
    "phone",
    "contact1_phone",
    "contact2_phone",
    "contact3_phone",
    "doctor_phone",
}


# --- import -------------------------------------------------------------------------------------


def _sheet_rows(data: bytes) -> tuple[list[Any], list[dict[Any, Any]], int]:
    """(header, rows keyed by header, sheet row number of the first data row) of the first
    sheet. The header is the first row (of the first ten) with a 姓名 cell; an English header
    row right under it (our exports have one) is skipped; a 合计/Total row ends the data."""
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # not a zip, not a workbook: openpyxl raises many kinds
        raise _one(
            "xlsx_unreadable",
            "the body is not an .xlsx workbook",
            "上传的不是 .xlsx 格式的 Excel 文件",
            "",
            422,
        ) from None
    try:
        ws = wb.worksheets[0]
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
    finally:
        wb.close()

    def is_name(v: Any) -> bool:
        return isinstance(v, str) and v.split("\n", 1)[0].strip().rstrip("*＊ ") == "姓名"

    header_at = next((i for i, r in enumerate(rows[:10]) if any(is_name(v) for v in r)), None)
    if header_at is None:
        raise _one(
            "header_missing",
            "no header row with a 姓名 (name) column in the first ten rows: use the template",
            "前十行中没有含“姓名”列的表头：请使用导入模板",
            "",
            422,
        )
    header = rows[header_at]
    first = header_at + 1
    if first < len(rows) and any(v == "Name" for v in rows[first]):
        first += 1
    body = []
    for r in rows[first:]:
        if r and isinstance(r[0], str) and r[0].strip() in ("合计", "Total"):
            break
        body.append({h: v for h, v in zip(header, r, strict=False) if h is not None})
    return header, body, first + 1


@router.post(
    "/elders/import",
    tags=[TAG],
    max_body_size=IMPORT_MAX_BYTES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {XLSX: {"schema": {"type": "string", "format": "binary"}}},
            "description": "the .xlsx file as the body (curl --data-binary @file.xlsx)",
        }
    },
    responses={
        201: {"description": "every row imported", "model": ImportPublic},
        422: {"description": "rows refused: the report in `detail`; NOTHING was imported"},
        409: {"description": "an ID number registered meanwhile: nothing imported"},
    },
)
async def import_registry(
    request: Request,
    c: CallerDep,
    dry_run: Annotated[bool, Query(description="check only, import nothing")] = False,
    station: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Import the registry from an .xlsx (the template's columns, e.g. an export of
    `registry` with full ID numbers). Every row is checked; the answer lists each refused
    row, column and reason. All or nothing: when any row is refused, nothing is imported.
    `dry_run=true` checks without importing (200 with the report)."""
    data = await request.body()
    from starlette.concurrency import run_in_threadpool  # the database work is blocking

    report, code = await run_in_threadpool(_import_sync, c, data, dry_run, station)
    return Response(
        content=report.model_dump_json() if code != 422 else _detail_json(report),
        status_code=code,
        media_type="application/json",
    )


def _detail_json(report: ImportPublic) -> str:
    import json

    return json.dumps({"detail": report.model_dump(mode="json")}, ensure_ascii=False)


def _import_sync(
    c: Caller, data: bytes, dry_run: bool, station: str | None
) -> tuple[ImportPublic, int]:
    if not data:
        raise _one("xlsx_empty", "the body is empty: send the .xlsx file", "未上传文件", "", 422)
    vault = c.vault
    if vault is None:
        raise _no_key()
    today = c.today()
    header, rows, first_row = _sheet_rows(data)
    with _tx(c) as (conn, scope):
        _staff_only(scope)
        st = _station_for(scope, station)
        known = conn.execute(
            select(elder_profiles.c.id_card_hmac).where(elder_profiles.c.id_card_hmac.is_not(None))
        ).scalars()
        report = validate_import(
            rows,
            today=today,
            existing_id_cards=BlindIndexSet(vault, known),
            headers=header,
            first_row=first_row,
        )
        problems = [
            RowProblemPublic(
                row=p.row,
                column=p.column,
                column_en=p.column_en,
                code=p.code,
                reason_zh=p.reason_zh,
                reason_en=p.reason_en,
            )
            for p in report.problems
        ]
        out = ImportPublic(
            dry_run=dry_run,
            committable=report.committable,
            imported=0,
            rows_read=report.rows_read,
            refused_rows=list(report.refused_rows),
            problems=problems,
            elder_ids=[],
        )
        if not report.committable:
            c.audit(
                conn,
                "import",
                "elder",
                detail={
                    "dry_run": dry_run,
                    "rows": report.rows_read,
                    "refused": len(report.refused_rows),
                },
            )
            return out, (200 if dry_run else 422)
        if dry_run:
            c.audit(conn, "import", "elder", detail={"dry_run": True, "rows": report.rows_read})
            return out, 200
        ids = []
        try:
            # One transaction: a failure on any row (a number registered meanwhile) rolls
            # back every row written before it.
            for r in report.rows:
                eid = new_id("el")
                elder = register_elder(
                    r.elder, elder_id=eid, today=today, recorded_by=c.principal.label
                )
                _insert_elder(conn, c, elder, st, anchor_exists=False)
                ids.append(eid)
        except IntegrityError:
            raise _duplicate_id() from None
        c.audit(conn, "import", "elder", detail={"rows": len(ids), "station": st})
    return out.model_copy(update={"imported": len(ids), "elder_ids": ids}), 201


# --- audit log ----------------------------------------------------------------------------------


@router.get("/audit", tags=[TAG])
def read_audit(
    c: CallerDep,
    elder_id: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=120)] = None,
    resource: Annotated[str | None, Query(max_length=24)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[AuditPublic]:
    """Who read or changed which care record, when, from where; newest first (admin). The
    log is append-only: no route changes it."""
    if c.principal.role is not Role.ADMIN:
        raise _forbidden("the audit log is for administrators", "审计日志仅限管理员查看")
    q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if elder_id is not None:
        q = q.where(audit_log.c.elder_id == elder_id)
    if actor is not None:
        q = q.where(audit_log.c.actor == actor)
    if resource is not None:
        q = q.where(audit_log.c.resource == resource)
    with c.rt.engine.connect().execution_options(readonly=True) as conn, conn.begin():
        rows = conn.execute(q).all()
    return [
        AuditPublic(
            id=r.id,
            at=_ms_req(c.rt, r.at),
            actor=r.actor,
            role=r.role,
            person_id=r.person_id,
            action=r.action,
            resource=r.resource,
            elder_id=r.elder_id,
            record_id=r.record_id,
            client_ip=r.client_ip,
            detail=r.detail,
        )
        for r in rows
    ]
