"""HTTP API for the MQTT credentials of devices and pagers (issue 7), for administrators only.

- `POST /api/v1/devices/{device_id}/mqtt-credentials` and
  `POST /api/v1/pagers/{pager_id}/mqtt-credentials`: issue a credential (201) or rotate it
  (200, the old password stops working at the broker's next reload). The answer carries the
  password, this once: the database keeps only its hash, in Mosquitto's own format
  (gateway/broker_config.py), so neither a copy of the database nor a later call shows it.
- `DELETE` on the same paths revokes it (200 with the record; revoking twice changes nothing).
- `GET` on the same paths shows the record; `GET /api/v1/mqtt-credentials` lists them. Never a
  password nor a hash.

The username is the device id or the pager id itself (the broker's ACL then names the user's
own topics). A device that is not registered, or a pager id no responder holds, answers 404; a
retired device gets no new credential (409); a username another device or pager holds is a 409.

Nothing here reaches the broker by itself: `shouwang broker-config` writes Mosquitto's files
from these rows, and a SIGHUP makes Mosquitto read them (see gateway/broker_config.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.api import (
    MAX_BODY_BYTES,
    RuntimeDep,
    _conflict,
    _ms,
    _ms_req,
    _not_found,
    _reading,
    _usable_path_id,
    allow,
)
from gateway.auth import Role
from gateway.broker_config import mosquitto_hash, new_password
from gateway.runtime import Runtime
from gateway.tables import devices, responders
from gateway.tables_broker import mqtt_credentials

router = APIRouter(
    prefix="/api/v1",
    tags=["mqtt credentials"],
    dependencies=[Depends(allow(Role.ADMIN))],
    max_body_size=MAX_BODY_BYTES,
)

Kind = Literal["device", "pager"]
_C = mqtt_credentials.c


class CredentialPublic(BaseModel):
    username: str = Field(description="the MQTT username: the device id or the pager id")
    kind: Kind
    created_at: str = Field(description="when it was first issued")
    rotated_at: str | None = Field(description="when its password was last replaced")
    revoked_at: str | None = Field(description="when it was revoked; null: in force")


class CredentialIssued(CredentialPublic):
    password: str = Field(
        description="the MQTT password, shown this once and stored only as a hash; it works "
        "once `shouwang broker-config` has written the broker's files and the broker reloaded"
    )


_ISSUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "rotated: a new password replaces the one in force",
        "model": CredentialIssued,
    },
    404: {"description": "no such device, or no responder holds the pager"},
    409: {"description": "a retired device, or the username is another's"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such device or pager, or it has no MQTT credential"}
}


def _out(rt: Runtime, r: Row[Any]) -> CredentialPublic:
    return CredentialPublic(
        username=r.username,
        kind=r.kind,
        created_at=_ms_req(rt, r.created_at),
        rotated_at=_ms(rt, r.rotated_at),
        revoked_at=_ms(rt, r.revoked_at),
    )


def _subject(conn: Connection, kind: Kind, ident: str) -> Row[Any]:
    """The device, or the responder holding the pager; 404 when there is none."""
    row = None
    if _usable_path_id(ident):
        if kind == "device":
            row = conn.execute(select(devices).where(devices.c.id == ident)).first()
        else:
            row = conn.execute(select(responders).where(responders.c.pager_id == ident)).first()
    if row is None:
        raise _not_found(kind, ident)
    return row


def _credential(conn: Connection, kind: Kind, ident: str) -> Row[Any]:
    row = conn.execute(
        select(mqtt_credentials).where(_C.username == ident, _C.kind == kind)
    ).first()
    if row is None:
        raise _not_found(f"MQTT credential of {kind}", ident)
    return row


def _issue(rt: Runtime, kind: Kind, ident: str, response: Response) -> CredentialIssued:
    password = new_password()
    hashed = mosquitto_hash(password)  # before the transaction: it takes a moment
    now = rt.now_ms()
    try:
        with rt.engine.begin() as conn:
            subject = _subject(conn, kind, ident)
            if kind == "device" and subject.status != "active":
                raise _conflict(f"device {ident!r} is {subject.status}: it gets no credential")
            held = conn.execute(
                select(mqtt_credentials).where(_C.username == ident).with_for_update()
            ).first()
            if held is None:
                conn.execute(
                    insert(mqtt_credentials).values(
                        username=ident, kind=kind, password_hash=hashed, created_at=now
                    )
                )
                response.status_code = status.HTTP_201_CREATED
            elif held.kind != kind and held.revoked_at is None:
                # One namespace of usernames at the broker: it could not tell the two apart.
                raise _conflict(
                    f"the MQTT username {ident!r} is held by the {held.kind} {ident!r}; "
                    "revoke that credential first, or give this one another id"
                )
            else:
                # A rotation, or a new password after a revocation (the row keeps its history).
                conn.execute(
                    update(mqtt_credentials)
                    .where(_C.username == ident)
                    .values(kind=kind, password_hash=hashed, rotated_at=now, revoked_at=None)
                )
                fresh = held.revoked_at is not None or held.kind != kind
                response.status_code = status.HTTP_201_CREATED if fresh else status.HTTP_200_OK
            row = conn.execute(select(mqtt_credentials).where(_C.username == ident)).one()
    except IntegrityError:
        # Issued at the same moment by another call: that one won; this one changed nothing.
        raise _conflict(f"the MQTT credential of {ident!r} was just issued; try again") from None
    return CredentialIssued(**_out(rt, row).model_dump(), password=password)


def _revoke(rt: Runtime, kind: Kind, ident: str) -> CredentialPublic:
    with rt.engine.begin() as conn:
        _subject(conn, kind, ident)
        row = _credential(conn, kind, ident)
        if row.revoked_at is None:
            conn.execute(
                update(mqtt_credentials)
                .where(_C.username == ident, _C.revoked_at.is_(None))
                .values(revoked_at=rt.now_ms())
            )
            row = _credential(conn, kind, ident)
    return _out(rt, row)


def _show(rt: Runtime, kind: Kind, ident: str) -> CredentialPublic:
    with _reading(rt) as conn:
        _subject(conn, kind, ident)
        return _out(rt, _credential(conn, kind, ident))


# --- devices -------------------------------------------------------------------------------------


@router.post(
    "/devices/{device_id}/mqtt-credentials",
    status_code=status.HTTP_201_CREATED,
    responses=_ISSUE_RESPONSES,
)
def issue_device_credential(device_id: str, rt: RuntimeDep, response: Response) -> CredentialIssued:
    """Issue (201) or rotate (200) the device's MQTT credential; the password is in this answer
    only. It takes effect after `shouwang broker-config` and a reload of the broker."""
    return _issue(rt, "device", device_id, response)


@router.get("/devices/{device_id}/mqtt-credentials", responses=_NOT_FOUND)
def show_device_credential(device_id: str, rt: RuntimeDep) -> CredentialPublic:
    """The device's MQTT credential (never its password)."""
    return _show(rt, "device", device_id)


@router.delete("/devices/{device_id}/mqtt-credentials", responses=_NOT_FOUND)
def revoke_device_credential(device_id: str, rt: RuntimeDep) -> CredentialPublic:
    """Revoke the device's MQTT credential; the next `shouwang broker-config` leaves it out."""
    return _revoke(rt, "device", device_id)


# --- pagers --------------------------------------------------------------------------------------


@router.post(
    "/pagers/{pager_id}/mqtt-credentials",
    status_code=status.HTTP_201_CREATED,
    responses=_ISSUE_RESPONSES,
)
def issue_pager_credential(pager_id: str, rt: RuntimeDep, response: Response) -> CredentialIssued:
    """Issue (201) or rotate (200) the pager's MQTT credential (a responder's `pager_id`); the
    password is in this answer only."""
    return _issue(rt, "pager", pager_id, response)


@router.get("/pagers/{pager_id}/mqtt-credentials", responses=_NOT_FOUND)
def show_pager_credential(pager_id: str, rt: RuntimeDep) -> CredentialPublic:
    """The pager's MQTT credential (never its password)."""
    return _show(rt, "pager", pager_id)


@router.delete("/pagers/{pager_id}/mqtt-credentials", responses=_NOT_FOUND)
def revoke_pager_credential(pager_id: str, rt: RuntimeDep) -> CredentialPublic:
    """Revoke the pager's MQTT credential; the next `shouwang broker-config` leaves it out."""
    return _revoke(rt, "pager", pager_id)


# --- all -----------------------------------------------------------------------------------------


@router.get("/mqtt-credentials")
def list_credentials(
    rt: RuntimeDep,
    kind: Kind | None = None,
    revoked: Annotated[
        bool, Query(description="also the revoked ones (default: only those in force)")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[CredentialPublic]:
    """MQTT credentials by username (never a password or a hash)."""
    stmt = select(mqtt_credentials).order_by(_C.username).limit(limit)
    if kind is not None:
        stmt = stmt.where(_C.kind == kind)
    if not revoked:
        stmt = stmt.where(_C.revoked_at.is_(None))
    with _reading(rt) as conn:
        return [_out(rt, r) for r in conn.execute(stmt)]
