"""API bearer tokens: creating, revoking and verifying them.

A token is shown once, when it is made; the database keeps only its SHA-256, so a copy of the
database does not open the API. The administrator's token from the settings
(`SHOUWANG_ADMIN_TOKEN`) is never stored at all.

Roles are a closed set. `admin` and `staff` may use every route (as before the care records).
The care-record roles are limited to the care routes (gateway/api_care.py), where every read is
scoped: `family` (a relative: only the elder of a confirmed, unexpired, unrevoked family link),
`watcher` and `volunteer` (only the elders paired with them, and only address and phone). A
token of these roles must act for a person (`person_id`, a responder); a staff token may too,
and then sees only its station's elders (the station of the person's profile). A
`service_worker` token acts for a service worker (`svc_workers.id`, kept in
`api_tokens.worker_id`, as a worker need not be a responder).

The pages' users sign in with a password instead (gateway/accounts.py): their session gives the
same `Principal`, with `via="session"`, so that timelines show `user:<name>` for them and
`api:<name>` for tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, insert, select, update

from gateway.clock import new_id
from gateway.tables import api_tokens, responders
from gateway.tables_services import svc_workers

ADMIN_NAME = "admin"  # the name the settings' admin token acts under
MAX_NAME = 100  # api_tokens.name
MAX_TOKEN = 512  # no token of ours is this long; longer ones are refused before hashing


class Role(StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    FAMILY = "family"
    WATCHER = "watcher"
    VOLUNTEER = "volunteer"
    SERVICE_WORKER = "service_worker"  # acts for a service worker (svc_workers.id)

    @property
    def full_access(self) -> bool:
        """May use every route (the alarm path's and the stations' tools), not only care."""
        return self in (Role.ADMIN, Role.STAFF)


# Roles whose token must name the person it acts for.
PERSON_ROLES = frozenset({Role.FAMILY, Role.WATCHER, Role.VOLUNTEER})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's (or the signed-in user's) name and role, and the person it
    acts for (a responder; a service worker for `service_worker`). `via` is "token" for a
    bearer token, "session" for a signed-in user of the pages."""

    name: str
    role: Role
    person_id: str | None = None
    via: str = "token"
    # The token's or user's row id (None for the settings' admin token, which has no row).
    ident: str | None = None

    @property
    def label(self) -> str:
        """How this caller appears on alert timelines (`acknowledged_by`, `actor`)."""
        return f"user:{self.name}" if self.via == "session" else f"api:{self.name}"

    @property
    def ref(self) -> str:
        """This caller by id, `user:<user id>` or `api:<token id>`: for the log, which must
        hold ids only (a user or token name may be an email address), and for the audit detail
        of what a person did through this credential."""
        kind = "user" if self.via == "session" else "api"
        return f"{kind}:{self.ident or self.name}"


def check_person(conn: Connection, role: Role, person_id: str | None) -> None:
    """Raise ValueError unless `person_id` may be the person a `role` acts for: a responder of
    that very role for family, watcher and volunteer (required), a responder for staff
    (optional), a service worker for service_worker (required), nobody for admin."""
    if role in PERSON_ROLES and not person_id:
        raise ValueError(f"a {role} acts for a person: give the responder id")
    if role is Role.ADMIN and person_id:
        raise ValueError("an admin acts for no one person")
    if role is Role.SERVICE_WORKER:
        if not person_id:
            raise ValueError("a service_worker acts for a service worker: give the worker id")
        if (
            conn.execute(select(svc_workers.c.id).where(svc_workers.c.id == person_id)).first()
            is None
        ):
            raise ValueError(f"no service worker {person_id!r}")
        return
    if person_id is None:
        return
    who = conn.execute(select(responders.c.role).where(responders.c.id == person_id)).first()
    if who is None:
        raise ValueError(f"no responder {person_id!r}")
    if role in PERSON_ROLES and who.role != role.value:
        raise ValueError(f"responder {person_id!r} is a {who.role}, not a {role}")


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    engine: Engine,
    name: str,
    role: str = "admin",
    *,
    now_ms: int,
    person_id: str | None = None,
) -> str:
    """Make a token for `name` with `role`, acting for `person_id` (a responder id: required
    for family, watcher and volunteer, optional for staff, refused for admin; a service worker
    id for service_worker); return it (the only time it is seen)."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"a token name is 1 to {MAX_NAME} characters")
    try:
        role = Role(role)
    except ValueError:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(Role)}") from None
    token = secrets.token_urlsafe(32)
    worker = role is Role.SERVICE_WORKER
    with engine.begin() as conn:
        check_person(conn, role, person_id)
        conn.execute(
            insert(api_tokens).values(
                id=new_id("tk"),
                name=name,
                token_sha256=_sha256(token),
                role=role.value,
                # api_tokens.person_id refers to responders: a worker's id goes in worker_id
                person_id=None if worker else person_id,
                worker_id=person_id if worker else None,
                created_at=now_ms,
            )
        )
    return token


def revoke_token(engine: Engine, name: str, *, now_ms: int | None = None) -> int:
    """Revoke every unrevoked token called `name`; return how many were revoked."""
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    with engine.begin() as conn:
        res = conn.execute(
            update(api_tokens)
            .where(api_tokens.c.name == name.strip(), api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now_ms)
        )
    return res.rowcount


def verify_token(engine: Engine, token: str, admin_token: SecretStr | None) -> Principal | None:
    """The caller a bearer token stands for, or None when it opens nothing.

    The settings' admin token is compared in constant time; a stored token is found by its hash
    (an attacker who can time the lookup learns about hashes, not about tokens).
    """
    if not token or len(token) > MAX_TOKEN:
        return None
    admin = admin_token.get_secret_value() if admin_token is not None else ""
    if admin and hmac.compare_digest(token.encode("utf-8"), admin.encode("utf-8")):
        return Principal(ADMIN_NAME, Role.ADMIN)
    # A read: on SQLite it must not take the write lock the alarm path needs.
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        row = conn.execute(
            select(
                api_tokens.c.id,
                api_tokens.c.name,
                api_tokens.c.role,
                api_tokens.c.person_id,
                api_tokens.c.worker_id,
            ).where(api_tokens.c.token_sha256 == _sha256(token), api_tokens.c.revoked_at.is_(None))
        ).first()
    if row is None:
        return None
    try:
        role = Role(row.role)
    except ValueError:  # a role this version does not know opens nothing
        return None
    person_id = row.worker_id if role is Role.SERVICE_WORKER else row.person_id
    if (role in PERSON_ROLES or role is Role.SERVICE_WORKER) and person_id is None:
        return None  # a limited token that acts for nobody would see nothing: open nothing
    return Principal(row.name, role, person_id, ident=row.id)
