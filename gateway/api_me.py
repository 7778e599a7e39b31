"""The phone page's API (issue 7): a watcher's, volunteer's or staff member's own pages, replies,
pairings and points, under `/api/v1/me`; and the files that make the page installable.

Who: `watcher`, `volunteer` and `staff` callers (a session of the pages or a bearer token) that
act for a person (`person_id`, a responder); anyone else gets 403. Every answer is about that
person only: an alert they were not paged for answers 404, exactly like one that does not exist.

- `GET /api/v1/me`: the person, their pairings now (the elders' name, address and phone, the
  same rows that page them), their points balance, the station's phone (when configured).
- `GET /api/v1/me/pages`: the active alerts they were paged for, by any channel (pager, phone
  page, SMS ...), newest first: who, where, what, the elder's phone; and the id of the last
  timeline event read, from which the live stream goes on.
- `GET /api/v1/me/stream`: Server-Sent Events from the alert timeline (gateway/live.py), only
  what concerns the person: `page` when they are paged (an escalation step, a repeat, a reminder,
  an assignment) or when an alert they were paged for is open again (the one who accepted cannot
  go), `update` when an alert they were paged for changes (once per change: the other events
  of the same commit leave its item as it was and send nothing), `resync` when the page must
  load its snapshot again. While it is open the person counts as present on their phone page
  (gateway/phone.py), which is what the `web` notifier channel asks. It ends within seconds of
  the caller's session being signed out or revoked, their account disabled or their token
  revoked (gateway/live.py `sse_response(allowed=...)`).
- `POST /api/v1/me/replies`: an answer (`ack`, `decline`, `arrived`, `resolved`) through the
  alert service's one reply path (gateway/alerting.py `reply`), the very path of a pager's MQTT
  reply: same timeline events, same actor (`responder:<id>`), a decline pages the next step, the
  others paged are told. An answer the alert's state no longer allows is recorded as a late
  reply, as a pager's is, and answered 409.
- `GET /phone/manifest.webmanifest` and `GET /phone/sw.js`: the web app manifest and service
  worker, served under /phone so that their scope covers the page (no sign-in needed: the
  browser fetches a manifest without cookies, and neither holds anything personal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)
from sqlalchemy import Connection, Row, func, or_, select
from sqlalchemy.exc import DBAPIError

from alerts.model import Outcome, State
from care.points import ClaimStatus, member_account
from care.points_rules import format_points
from gateway import alert_log, phone
from gateway.alerting import (
    ACTIVE,
    REPLY_ACTION_NAMES,
    NotFound,
    NotPaged,
    Tx,
)
from gateway.api import (
    MAX_BODY_BYTES,
    Note,
    RuntimeDep,
    _contract_id,
    _In,
    _ms,
    _ms_req,
    _reading,
    allow,
    still_authenticated,
)
from gateway.auth import Principal, Role
from gateway.care_store import audit
from gateway.clock import new_id
from gateway.error_texts import Bilingual
from gateway.live import RESYNC, LiveEvent, last_event_id, sse_message, sse_response
from gateway.paging import RESPONDER, responder_of, was_paged_clause
from gateway.runtime import Runtime
from gateway.tables import (
    alert_events,
    alerts,
    elders,
    pairings,
    responder_channels,
    responders,
)
from gateway.tables_points import points_accounts, points_claims
from gateway.web import STATIC_DIR

log = logging.getLogger(__name__)

PAGE_EVENTS = ("paged", "reminded")  # timeline events that page people (detail.to lists them)
# Timeline events of an alert that change nothing the phone page shows: not pushed.
QUIET_EVENTS = frozenset({"delivery", "notified", "pending_pages_cancelled", "planned"})

_ALLOWED = allow(Role.WATCHER, Role.VOLUNTEER, Role.STAFF)


def _person(principal: Annotated[Principal, Depends(_ALLOWED)]) -> Principal:
    """The caller, who must act for a person: the phone page is one person's."""
    if not principal.person_id:
        raise Bilingual(
            status.HTTP_403_FORBIDDEN,
            "the phone page is a person's: this caller acts for no one (no person_id)",
            "手机页面属于某位人员：此账号未关联任何人员（无 person_id）",
        )
    return principal


PersonDep = Annotated[Principal, Depends(_person)]

router = APIRouter()  # what create_app includes: the page's files and, below, the API
me = APIRouter(
    prefix="/api/v1/me",
    dependencies=[Depends(_person)],
    max_body_size=MAX_BODY_BYTES,
    tags=["phone"],
)


# --- shapes -------------------------------------------------------------------------------------


class _StationPhone(BaseModel):
    """`station_phone` is left out of the answer when there is none (not null): a page shows
    its call button only for a number it has."""

    station_phone: str | None = Field(
        None, description="the station's number; omitted when not configured"
    )

    @model_serializer(mode="wrap")
    def _omit_unknown_station(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if isinstance(data, dict) and data.get("station_phone") is None:
            data.pop("station_phone", None)
        return data


class ElderBrief(BaseModel):
    id: str
    name: str
    address: str
    phone: str | None = Field(description="null when unknown")


class PersonPublic(BaseModel):
    id: str
    name: str
    role: str
    phone: str | None
    language: str
    pager_id: str | None


class MyPairing(BaseModel):
    id: str
    kind: str = Field(description="watcher, volunteer, family, party_member or staff")
    ord: int
    active_from: str
    active_until: str | None
    elder: ElderBrief


class MyPoints(BaseModel):
    balance: str = Field(description="posted points")
    balance_units: int = Field(description="in half points")
    pending: str = Field(description="claimed, not yet posted")
    pending_units: int


class MePublic(_StationPhone):
    person: PersonPublic
    pairings: list[MyPairing]
    points: MyPoints | None = Field(description="null: no points account yet")
    channels: list[str] = Field(description="the person's channel chain, e.g. pager, web, apprise")


class AckedBy(BaseModel):
    name: str | None
    me: bool = Field(description="the person asking")


class OutageBrief(BaseModel):
    building: str
    homes: int = Field(description="the homes (elders) of its devices")
    devices: int


class PageItem(_StationPhone):
    """An alert the person was paged for: who, where, what, and where it stands."""

    alert_id: str
    kind: str
    priority: str
    state: str
    created_at: str
    updated_at: str
    device_id: str
    elder: ElderBrief
    what: dict[str, Any] = Field(description="the alarm as it came (event type and its fields)")
    step: int = Field(description="the escalation step paged last (1 first)")
    paged_at: str = Field(description="when the person was paged last for it")
    reply_by: str | None = Field(description="when the next step is paged if nobody answers")
    reminder: bool = Field(description="the last page to the person was a reminder")
    acknowledged_by: AckedBy | None
    on_site_at: str | None
    my_last_reply: str | None = Field(
        description="the person's last answer on the timeline (acknowledged, declined, ...)"
    )
    reopened: bool = Field(
        False,
        description="open again since the person's last answer: the one who accepted cannot "
        "go (their acknowledgement withdrawn), so it needs someone again",
    )
    call_event_id: int | None = Field(
        None,
        description="the timeline event id of the last call to the person (a page, a reminder, "
        "the alert open again): what rings the phone page, as the stream's `page` event id",
    )
    my_last_reply_event_id: int | None = Field(
        None, description="the timeline event id of my_last_reply (after call_event_id: answered)"
    )
    passed_on_at: str | None = Field(
        None,
        description="when others were paged after the person's own last page (escalated, or "
        "the station's fallback): their reply_by no longer says what happens next",
    )
    cancel_pressed_at: str | None = Field(
        None,
        description="when the person was last paged that the elder pressed cancel (a `paged` "
        "event, reason `cancel_pressed`, sent to those coming): null if never",
    )
    cancel_pressed_event_id: int | None = Field(
        None,
        description="that page's timeline event id: while it is call_event_id, the card's call "
        'is "the elder pressed cancel: check they are safe" (it rings like a reminder)',
    )
    valve: Literal["closed", "not_closed"] | None = Field(
        None,
        description="a gas alarm's valve as its pages say it now (（阀门已关闭）/（阀门未关闭）); "
        "null: no valve, no answer yet, or not a gas alarm",
    )
    outage: OutageBrief | None = Field(
        None,
        description="a building's outage this alert stands for: its pages name the building, "
        "not the one elder (`elder`) it is filed under",
    )


class PagesPublic(BaseModel):
    pages: list[PageItem] = Field(description="newest first")
    last_event_id: int = Field(description="the live stream goes on from here (?since=)")


AlertRef = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=40)]


class ReplyIn(_In):
    alert_id: AlertRef = Field(description="the page's alert_id, unchanged")
    action: Literal["ack", "decline", "arrived", "resolved"]
    note: Note | None = None
    outcome: Outcome | None = Field(
        None, description="with `resolved` only: how it ended (a pager's reply carries none)"
    )


class ReplyOut(BaseModel):
    action: str
    changed: bool = Field(description="whether the alert's state changed")
    page: PageItem


# --- reading ------------------------------------------------------------------------------------


def _refusal(code: int, kind: str, en: str, zh: str) -> HTTPException:
    """A refusal in the care API's shape (gateway/api_care.py): both languages."""
    return HTTPException(
        code, detail=[{"type": kind, "loc": ["body"], "msg": f"{en} ({zh})", "en": en, "zh": zh}]
    )


def _not_paged(alert_id: str) -> HTTPException:
    shown = alert_id[:64]
    return _refusal(
        status.HTTP_404_NOT_FOUND,
        "not_paged",
        f"no alert {shown!r} that you were paged for",
        f"没有发给您的告警：{shown}",
    )


def _station_phone(rt: Runtime) -> str | None:
    return rt.settings.station_phone


def _person_row(conn: Connection, person_id: str) -> Row[Any]:
    row = conn.execute(select(responders).where(responders.c.id == person_id)).first()
    if row is None:  # a token for a person since removed: nobody to be
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"no person {person_id!r}")
    return row


def _alert_rows(conn: Connection, person_id: str, alert_id: str | None = None) -> list[Row[Any]]:
    """The active alerts paged to the person (or the one `alert_id`, in any state), with their
    elder, newest first."""
    q = (
        select(
            alerts,
            elders.c.name.label("elder_name"),
            elders.c.address.label("elder_address"),
            elders.c.phone.label("elder_phone"),
        )
        .join(elders, elders.c.id == alerts.c.elder_id)
        .where(was_paged_clause(alerts.c.id, person_id))
        .order_by(alerts.c.created_at.desc(), alerts.c.id.desc())
    )
    if alert_id is None:
        q = q.where(alerts.c.state.in_(ACTIVE))
    else:
        q = q.where(alerts.c.id == alert_id)
    return list(conn.execute(q).all())


def _items(rt: Runtime, conn: Connection, person_id: str, rows: list[Row[Any]]) -> list[PageItem]:
    """The page items of these alerts, from their timelines: the person's pages and answers."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    label = f"{RESPONDER}{person_id}"
    ev = alert_events.c
    events = conn.execute(
        select(ev.id, ev.alert_id, ev.at, ev.type, ev.actor, ev.detail)
        .where(
            ev.alert_id.in_(ids),
            or_(ev.type.in_((*PAGE_EVENTS, "opened", "ack_withdrawn")), ev.actor == label),
        )
        .order_by(ev.id)
    ).all()
    by_alert: dict[str, list[Any]] = {i: [] for i in ids}
    for e in events:
        by_alert[e.alert_id].append(e)
    ackers = {rid for r in rows if (rid := responder_of(r.acknowledged_by)) is not None}
    names = (
        dict(
            conn.execute(
                select(responders.c.id, responders.c.name).where(responders.c.id.in_(ackers))
            ).all()
        )
        if ackers
        else {}
    )
    station = _station_phone(rt)
    out = []
    for r in rows:
        evs = by_alert[r.id]
        mine = [e for e in evs if e.type in PAGE_EVENTS and _paged_in(e.detail, person_id)]
        last = mine[-1] if mine else None
        opened = next((e for e in evs if e.type == "opened"), None)
        answers = [e.type for e in evs if e.actor == label]
        # After the person's own last answer: the one who withdrew answers (declined) after it.
        last_answer = max((i for i, e in enumerate(evs) if e.actor == label), default=-1)
        reopened = r.state == State.OPEN.value and any(map(_reopens, evs[last_answer + 1 :]))
        # What the stream sends as `page` (_concerns): so that a page that resyncs can tell a
        # call it has not rung for yet from one it has.
        calls = [e.id for e in mine]
        calls += [e.id for e in evs if _reopens(e) and e.actor != label]
        # A page to someone else that the elder pressed cancel tells those coming: not passed on.
        after_mine = [
            e
            for e in evs
            if last is not None
            and e.id > last.id
            and e.type == "paged"
            and _reason(e.detail) != "cancel_pressed"
        ]
        cancels = [e for e in mine if e.type == "paged" and _reason(e.detail) == "cancel_pressed"]
        acked: AckedBy | None = None
        if r.acknowledged_by:
            rid = responder_of(r.acknowledged_by)
            if rid is not None:
                acked = AckedBy(name=names.get(rid), me=rid == person_id)
            else:  # station staff at the board or the API: "user:<name>" / "api:<name>"
                acked = AckedBy(name=r.acknowledged_by.split(":", 1)[-1], me=False)
        detail = last.detail if last is not None and isinstance(last.detail, dict) else {}
        valve, outage = rt.service.page_facts(conn, r.id, r.kind)  # what its pages say
        out.append(
            PageItem(
                alert_id=r.id,
                kind=r.kind,
                priority=r.priority,
                state=r.state,
                created_at=_ms_req(rt, r.created_at),
                updated_at=_ms_req(rt, r.updated_at),
                device_id=r.device_id,
                elder=ElderBrief(
                    id=r.elder_id, name=r.elder_name, address=r.elder_address, phone=r.elder_phone
                ),
                what=dict(opened.detail) if opened is not None and opened.detail else {},
                step=int(detail.get("step") or r.step or 1),
                paged_at=_ms_req(rt, last.at if last is not None else r.created_at),
                reply_by=detail.get("reply_by"),
                reminder=last is not None and last.type == "reminded",
                acknowledged_by=acked,
                on_site_at=_ms(rt, r.on_site_at),
                my_last_reply=answers[-1] if answers else None,
                reopened=reopened,
                call_event_id=max(calls, default=None),
                my_last_reply_event_id=evs[last_answer].id if last_answer >= 0 else None,
                passed_on_at=_ms_req(rt, after_mine[0].at) if after_mine else None,
                cancel_pressed_at=_ms_req(rt, cancels[-1].at) if cancels else None,
                cancel_pressed_event_id=cancels[-1].id if cancels else None,
                valve=valve.value if valve is not None else None,
                outage=None if outage is None else OutageBrief(**asdict(outage)),
                station_phone=station,
            )
        )
    return out


def _reason(detail: Any) -> Any:
    """A `paged` event's reason (opened, escalated, cancel_pressed, ...), None if it has none."""
    return detail.get("reason") if isinstance(detail, dict) else None


def _paged_in(detail: Any, person_id: str) -> bool:
    """Whether a `paged`/`reminded` event's detail names the person among those paged."""
    if not isinstance(detail, dict):
        return False
    to = detail.get("to")
    return isinstance(to, list) and any(
        isinstance(t, dict) and t.get("responder_id") == person_id for t in to
    )


def _item(rt: Runtime, conn: Connection, person_id: str, alert_id: str) -> PageItem | None:
    """One alert's item if the person was paged for it (in any state), else None."""
    rows = _alert_rows(conn, person_id, alert_id)
    items = _items(rt, conn, person_id, rows)
    return items[0] if items else None


def _last_event_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(alert_events.c.id), 0))).scalar_one())


# --- routes -------------------------------------------------------------------------------------


@me.get("")
def get_me(rt: RuntimeDep, principal: PersonDep, request: Request) -> MePublic:
    """The person, their pairings now with the elders' address and phone, their points."""
    now = rt.now_ms()
    pid = principal.person_id
    assert pid is not None
    # A write transaction: the elders' address and phone are care records, and every read of
    # them leaves its audit row (gateway/api_care.py), in the same transaction.
    with rt.engine.begin() as conn:
        person = _person_row(conn, pid)
        rows = conn.execute(
            select(
                pairings,
                elders.c.name.label("elder_name"),
                elders.c.address.label("elder_address"),
                elders.c.phone.label("elder_phone"),
            )
            .join(elders, elders.c.id == pairings.c.elder_id)
            .where(
                pairings.c.responder_id == pid,
                pairings.c.active_from <= now,
                or_(pairings.c.active_until.is_(None), pairings.c.active_until > now),
            )
            .order_by(pairings.c.ord, pairings.c.created_at, pairings.c.id)
        ).all()
        ip = request.client.host if request.client else None
        for r in rows:
            audit(
                conn,
                principal,
                at=now,
                action="read",
                resource="pairing",
                elder_id=r.elder_id,
                record_id=r.id,
                client_ip=ip,
                detail={"via": "phone"},
            )
        account = conn.execute(
            select(points_accounts.c.balance).where(
                points_accounts.c.key == member_account(pid).key
            )
        ).first()
        pending = conn.execute(
            select(func.coalesce(func.sum(points_claims.c.units), 0)).where(
                points_claims.c.member == pid,
                points_claims.c.status.in_((ClaimStatus.PENDING.value, ClaimStatus.VERIFIED.value)),
            )
        ).scalar()
        links = conn.execute(
            select(responder_channels.c.channel)
            .where(responder_channels.c.responder_id == pid)
            .order_by(responder_channels.c.position)
        ).scalars()
        channels = (["pager"] if person.pager_id else []) + list(links)
    points = None
    if account is not None:
        balance, waiting = int(account.balance or 0), int(pending or 0)
        points = MyPoints(
            balance=format_points(balance),
            balance_units=balance,
            pending=format_points(waiting),
            pending_units=waiting,
        )
    return MePublic(
        person=PersonPublic(
            id=person.id,
            name=person.name,
            role=person.role,
            phone=person.phone,
            language=person.language,
            pager_id=person.pager_id,
        ),
        pairings=[
            MyPairing(
                id=r.id,
                kind=r.kind or r.role,
                ord=r.ord,
                active_from=_ms_req(rt, r.active_from),
                active_until=_ms(rt, r.active_until),
                elder=ElderBrief(
                    id=r.elder_id, name=r.elder_name, address=r.elder_address, phone=r.elder_phone
                ),
            )
            for r in rows
        ],
        points=points,
        channels=channels,
        station_phone=_station_phone(rt),
    )


@me.get("/pages")
def get_pages(rt: RuntimeDep, principal: PersonDep) -> PagesPublic:
    """The active alerts the person was paged for (by any channel), newest first, and the last
    timeline event id: open the live stream with `?since=` it to miss nothing in between."""
    pid = principal.person_id
    assert pid is not None
    with _reading(rt) as conn:
        _person_row(conn, pid)
        last = _last_event_id(conn)  # first: an event after it is in the stream, not lost
        items = _items(rt, conn, pid, _alert_rows(conn, pid))
    return PagesPublic(pages=items, last_event_id=last)


@me.post("/replies", responses={404: {"description": "not paged for it"}, 409: {}})
def post_reply(body: ReplyIn, rt: RuntimeDep, principal: PersonDep) -> ReplyOut:
    """Answer a page, exactly as a pager's MQTT reply is taken: `ack` (接单), `decline` (the
    next step is paged at once), `arrived` (到达), `resolved` (完成, with an `outcome` if known).
    404 for an alert the person was not paged for; 409 (recorded as a late reply) when the
    alert's state does not allow the answer any more."""
    pid = principal.person_id
    assert pid is not None
    if body.outcome is not None and body.action != "resolved":
        raise _refusal(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "outcome_without_resolve",
            "an outcome goes with `resolved` only",
            "只有“完成”才填写结果",
        )
    if not _usable(body.alert_id):
        raise _not_paged(body.alert_id)
    with rt.engine.begin() as conn:
        person = _person_row(conn, pid)
        tx = Tx(conn, rt.now_ms())
        try:
            result = rt.service.reply(
                tx, person, body.alert_id, body.action, note=body.note or None, outcome=body.outcome
            )
        except (NotFound, NotPaged):
            raise _not_paged(body.alert_id) from None
        t = result.transition
        if (
            rt.rules is not None
            and t is not None
            and t.changed
            and body.outcome is Outcome.FALSE_ALARM
        ):
            # As at the API's resolve: a no-water false alarm is learned from.
            rt.rules.false_alarm(tx, rt.service.load(conn, body.alert_id, lock=False))
        item = _item(rt, conn, pid, body.alert_id)
    alert_log.emit(tx.logs)  # committed
    if tx.out:  # committed: the next step's pages, the notices to the others
        rt.publish(tx.out)
    if result.late is not None:
        state = result.alert.state
        raise _refusal(
            status.HTTP_409_CONFLICT,
            "late_reply",
            f"the alert is {state} already: {result.late}",
            f"告警已是“{_STATE_ZH.get(state, state)}”状态，无法{_ACTION_ZH[body.action]}",
        )
    assert item is not None  # was_paged held in the same transaction
    return ReplyOut(action=body.action, changed=bool(t is not None and t.changed), page=item)


_STATE_ZH = {
    State.OPEN.value: "待接单",
    State.ACKNOWLEDGED.value: "已接单",
    State.ON_SITE.value: "已到达",
    State.RESOLVED.value: "已完成",
    State.CANCELLED.value: "已取消",
}
_ACTION_ZH = {"ack": "接单", "decline": "拒绝", "arrived": "到达", "resolved": "完成"}
assert set(_ACTION_ZH) == set(REPLY_ACTION_NAMES)


def _usable(alert_id: str) -> bool:
    try:
        _contract_id(alert_id)
    except ValueError:  # PydanticCustomError is a ValueError
        return False
    return True


@me.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    rt: RuntimeDep,
    principal: PersonDep,
    since: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="the last_event_id of GET /me/pages"),
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events for the person: `page` (they are paged, or an alert they were paged
    for is open again and needs someone: data is the page item and the timeline event),
    `update` (an alert they were paged for changed), `resync` (load GET /me/pages again, then
    reconnect). Each carries the timeline event's id, so a browser that reconnects
    (Last-Event-ID) misses nothing. While open, the person is present on their phone page: the
    `web` channel counts as sent. It ends within seconds once the caller's session or token is
    no longer valid (signed out, revoked, account disabled); the reconnection gets 401."""
    if rt.live is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no live feed")
    pid = principal.person_id
    assert pid is not None
    start = last_event_id(request.headers.get("last-event-id"))
    if start is None:
        start = since
    live = rt.live

    def snapshot() -> set[str]:
        with _reading(rt) as conn:
            _person_row(conn, pid)
            return {r.id for r in _alert_rows(conn, pid)}

    known = await asyncio.to_thread(snapshot)

    def item_of(alert_id: str) -> dict[str, Any] | None:
        with _reading(rt) as conn:
            found = _item(rt, conn, pid, alert_id)
        return found.model_dump(mode="json") if found else None

    async def messages() -> AsyncIterator[str]:
        here = _Presence(rt, pid)
        with contextlib.suppress(DBAPIError):  # the database is down: the next beat tries
            await asyncio.to_thread(here.enter)
        beat = asyncio.create_task(_stay_present(here))
        sent: dict[str, dict[str, Any]] = {}  # alert id -> the item it was last sent with
        try:
            async for ev in live.events(since=start):
                if isinstance(ev, str):
                    yield sse_message(RESYNC, {})
                    return
                kind = _concerns(ev, pid, known)
                if kind is None:
                    continue
                try:
                    found = await asyncio.to_thread(item_of, ev.alert_id)
                except DBAPIError:  # the page loads its snapshot again once it can
                    yield sse_message(RESYNC, {})
                    return
                if found is None:
                    continue
                # One transaction writes several events (a withdrawal: ack_withdrawn, declined,
                # escalated, paged), each read here after its commit as the same item: an
                # update that tells the page nothing new is left out. A page never is: it rings.
                if kind != "page" and sent.get(ev.alert_id) == found:
                    continue
                sent[ev.alert_id] = found
                event = {**ev.as_dict(), "at": _ms_req(rt, ev.at)}  # RFC 3339, as on every route
                yield sse_message(kind, {"page": found, "event": event}, id=ev.id)
        finally:
            beat.cancel()
            # Not awaited: this may run while the stream is being cancelled. The row goes on
            # a worker thread; if even that fails, it ages out (phone.PRESENCE_TTL_MS).
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().run_in_executor(None, here.leave)

    # Asked again every few seconds and before each message: a person signed out, disabled or
    # whose token is revoked stops being paged here, and stops counting as present, at once.
    return sse_response(messages, allowed=still_authenticated(request, rt))


def _concerns(ev: LiveEvent, person_id: str, known: set[str]) -> str | None:
    """`page` when the event pages the person, or asks them again: an alert they were paged
    for is open again because the one who accepted cannot go (`_reopens`; their pager gets
    "重新待接单，如您能去请回复接单" for it, and a phone that only updated its card stayed
    silent). `update` when it changes an alert they were paged for, None when it is none of
    theirs."""
    if ev.type in PAGE_EVENTS and _paged_in(ev.detail, person_id):
        known.add(ev.alert_id)
        return "page"
    if ev.alert_id in known and _reopens(ev) and ev.actor != f"{RESPONDER}{person_id}":
        return "page"  # not to the one who withdrew: they have just said they cannot go
    if ev.alert_id in known and ev.type not in QUIET_EVENTS:
        return "update"
    return None


def _reopens(ev: Any) -> bool:
    """Whether a timeline event put the alert back to `open`: an acknowledgement withdrawn with
    nobody else coming (gateway/alerting.py `_withdraw`; `passed_to` instead when someone is)."""
    return (
        ev.type == "ack_withdrawn"
        and isinstance(ev.detail, dict)
        and ev.detail.get("state") == State.OPEN.value
    )


class _Presence:
    """One open stream's row in `phone_presence` (gateway/phone.py). Its refresh and its removal
    run on worker threads in no set order; once removed, a refresh still under way must not
    write the row back (it re-inserts a row it finds missing): a page closed, or cut off when
    its session ended, would count as open, and the `web` channel as delivered, until the row
    aged out."""

    def __init__(self, rt: Runtime, person_id: str) -> None:
        self.rt = rt
        self.person_id = person_id
        self.stream_id = new_id("ps")
        self._lock = threading.Lock()
        self._gone = False

    def enter(self) -> None:
        with self._lock:
            if not self._gone:
                phone.enter(self.rt.engine, self.stream_id, self.person_id, self.rt.now_ms())

    def refresh(self) -> None:
        with self._lock:
            if not self._gone:
                phone.refresh(self.rt.engine, self.stream_id, self.person_id, self.rt.now_ms())

    def leave(self) -> None:
        with self._lock:
            self._gone = True
            with contextlib.suppress(Exception):  # if even this fails, the row ages out
                phone.leave(self.rt.engine, self.stream_id)


async def _stay_present(here: _Presence) -> None:
    """Refresh the stream's presence row while it is open (gateway/phone.py)."""
    while True:
        await asyncio.sleep(phone.PRESENCE_REFRESH_S)
        try:
            await asyncio.to_thread(here.refresh)
        except DBAPIError:  # the database is down for a moment: the next beat tries again
            log.warning("phone page presence not refreshed (database unavailable)")


router.include_router(me)


# --- the page's web app files ------------------------------------------------------------------


@router.get(
    "/phone/manifest.webmanifest",
    tags=["phone"],
    response_class=FileResponse,
    responses={200: {"content": {"application/manifest+json": {}}}},
)
def manifest() -> FileResponse:
    """The phone page's web app manifest (installable to the home screen, scope /phone)."""
    return FileResponse(
        STATIC_DIR / "phone.webmanifest",
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


@router.get(
    "/phone/sw.js",
    tags=["phone"],
    response_class=FileResponse,
    responses={200: {"content": {"text/javascript": {}}}},
)
def service_worker() -> FileResponse:
    """The phone page's service worker. Served under /phone with `Service-Worker-Allowed:
    /phone`, so that its scope may be `/phone` itself (a script's own scope would be /phone/,
    which does not cover the page's address)."""
    return FileResponse(
        STATIC_DIR / "phone-sw.js",
        media_type="text/javascript",
        headers={"Service-Worker-Allowed": "/phone", "Cache-Control": "no-cache"},
    )


__all__ = ["router"]
