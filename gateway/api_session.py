"""Signing in and out of the pages, and the user accounts (issue 7), under `/api/v1`.

- `POST /api/v1/session` {username, password}: signs in (no credential needed, of course) and
  sets the session cookie `shouwang_session` (HttpOnly, SameSite=Strict, Path=/, Secure when
  the request is https or SHOUWANG_COOKIE_SECURE is set); the answer carries the session's CSRF
  token, which the pages send back in `X-CSRF-Token` with every change. A wrong name or
  password is one 401 for both; after repeated failures a 429 with Retry-After (per user name
  and per address: gateway/accounts.py). Every answer that refuses has `detail` (en),
  `detail_zh` and a `code` the pages translate.
- `GET /api/v1/session`: who is signed in (401 when nobody); `DELETE`: sign out;
  `PUT /api/v1/session/password`: change one's own password (with the old one).
- `/api/v1/users`: accounts, for admin and staff. Staff manage only the accounts of watchers,
  volunteers, family members and service workers (any of them: the station is small and one
  staff member covers for another); admin and staff accounts are the administrator's.
  Disabling an account or resetting its password ends its sessions at once.

The audit trail of sign-ins is the `sign_ins` table (gateway/tables_web.py); account changes are
logged (`gateway.api_session`) with who made them.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway import accounts
from gateway.accounts import (
    MAX_PASSWORD,
    SESSION_COOKIE,
    USERNAME_RULE,
    AccountError,
    NoSuchUser,
    Session,
    SignInOutcome,
    User,
    UserExists,
)
from gateway.api import MAX_BODY_BYTES, PrincipalAnyDep, RuntimeDep, allow
from gateway.auth import Principal, Role
from gateway.clock import rfc3339
from gateway.runtime import Runtime

log = logging.getLogger(__name__)

# The accounts staff may manage (create, disable, reset); the others are the administrator's.
STAFF_MANAGES = frozenset({Role.WATCHER, Role.VOLUNTEER, Role.FAMILY, Role.SERVICE_WORKER})

Password = Annotated[str, StringConstraints(strict=True, max_length=MAX_PASSWORD)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignInIn(_In):
    # Any text up to 200 characters: a name that cannot exist is simply not found (a 401, as
    # for any wrong name), which is what the sign-in form should show.
    username: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    password: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_PASSWORD)]


class SessionPublic(BaseModel):
    username: str
    role: Role
    person_id: str | None = Field(description="the responder (or service worker) acted for")
    language: str = Field(description="the account's language: zh-CN or en")
    csrf_token: str | None = Field(
        description="send it back in X-CSRF-Token with every change; null for a bearer token"
    )
    via: Literal["session", "token"]
    expires_at: str | None = Field(description="when the session ends at the latest")


class PasswordChangeIn(_In):
    old_password: Password
    new_password: Password


class UserCreate(_In):
    username: Annotated[str, StringConstraints(strict=True, max_length=64)] = Field(
        description=USERNAME_RULE, examples=["wang.li"]
    )
    role: Role
    person_id: Annotated[str, StringConstraints(strict=True, max_length=40)] | None = Field(
        None,
        description="the responder the account acts for (watcher, volunteer, family: required, "
        "of the same role; staff: optional), or the service worker (service_worker: required)",
    )
    language: Literal["zh-CN", "en"] = "zh-CN"
    password: Password | None = Field(
        None, description="at least 10 characters; left out: one is made and shown once"
    )


class UserPublic(BaseModel):
    id: str
    username: str
    role: Role
    person_id: str | None
    language: str
    created_at: str
    created_by: str | None
    disabled_at: str | None
    locked_until: str | None = Field(description="sign-in locked until then after failures")
    failed_count: int = Field(description="recent failed sign-ins in a row")
    last_login_at: str | None
    live_sessions: int


class UserCreated(UserPublic):
    password: str | None = Field(description="the password made for the account, shown once")


class PasswordResetIn(_In):
    password: Password | None = Field(
        None, description="the new password; left out: one is made and shown once"
    )


class PasswordSet(BaseModel):
    username: str
    password: str | None = Field(description="the password made, shown once (null: yours)")


# --- helpers -----------------------------------------------------------------------------------


def _refusal(
    code: int, key: str, en: str, zh: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"detail": en, "detail_zh": zh, "code": key, **extra}, status_code=code, headers=headers
    )


def _account_error(exc: AccountError) -> HTTPException:
    code = 409 if isinstance(exc, UserExists) else 404 if isinstance(exc, NoSuchUser) else 422
    loc = ["body", exc.field] if exc.field else ["body"]
    detail = [
        {"type": exc.code, "loc": loc, "msg": f"{exc.en} ({exc.zh})", "en": exc.en, "zh": exc.zh}
    ]
    return HTTPException(code, detail=detail)


def _secure(request: Request, rt: Runtime) -> bool:
    return rt.settings.cookie_secure or request.url.scheme == "https"


def _same_origin(request: Request) -> bool:
    """No Origin (not a browser's cross-site request), or the Origin is this very site: the
    Host, or the X-Forwarded-Host a reverse proxy in front passes on."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc.lower()
    hosts = {request.headers.get("host", "").lower()}
    hosts |= {h.strip().lower() for h in request.headers.get("x-forwarded-host", "").split(",")}
    return bool(netloc) and netloc in hosts


def _client(request: Request) -> tuple[str | None, str | None]:
    ip = request.client.host if request.client else None
    return ip, request.headers.get("user-agent")


def _session_out(rt: Runtime, s: Session) -> SessionPublic:
    return SessionPublic(
        username=s.user.username,
        role=s.user.role,
        person_id=s.user.person_id,
        language=s.user.language,
        csrf_token=s.csrf_token,
        via="session",
        expires_at=rfc3339(s.expires_at, rt.tz),
    )


def _user_out(rt: Runtime, u: User, live: int) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "role": u.role,
        "person_id": u.person_id,
        "language": u.language,
        "created_at": rfc3339(u.created_at, rt.tz),
        "created_by": u.created_by,
        "disabled_at": rfc3339(u.disabled_at, rt.tz),
        "locked_until": rfc3339(u.locked_until, rt.tz)
        if u.locked_until and u.locked_until > rt.now_ms()
        else None,
        "failed_count": u.failed_count,
        "last_login_at": rfc3339(u.last_login_at, rt.tz),
        "live_sessions": live,
    }


def _current(request: Request, principal: PrincipalAnyDep) -> Session | None:
    """The caller's session (None for a bearer token)."""
    if principal.via != "session":
        return None
    session: Session = request.state.session
    return session


CurrentDep = Annotated[Session | None, Depends(_current)]
_NO_SESSION = "no signed-in session: this route is for a user of the pages, not a token"


# --- the session -------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1", max_body_size=MAX_BODY_BYTES)


@router.post(
    "/session",
    tags=["session"],
    responses={
        401: {"description": "wrong user name or password (one answer for both)"},
        403: {"description": "a sign-in posted from another site"},
        429: {"description": "too many failures: wait Retry-After seconds"},
    },
)
def sign_in(body: SignInIn, request: Request, rt: RuntimeDep) -> SessionPublic:
    """Sign in: sets the session cookie and returns the session's CSRF token."""
    if not _same_origin(request):
        # SameSite keeps the cookie from other sites; this keeps them from signing a visitor
        # in to an account of theirs (login CSRF).
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a sign-in from another site")
    ip, ua = _client(request)
    s = rt.settings
    result = accounts.sign_in(
        rt.engine,
        body.username,
        body.password,
        now_ms=rt.now_ms(),
        lifetime_s=s.session_lifetime_s,
        ip=ip,
        user_agent=ua,
        lockout_after=s.signin_lockout_after,
        lockout_s=s.signin_lockout_s,
        ip_max_failures=s.signin_ip_max_failures,
    )
    if result.outcome in (SignInOutcome.LOCKED, SignInOutcome.IP_THROTTLED):
        wait = max(1, result.retry_after_s)
        log.warning("sign-in of %r from %s refused: %s", body.username[:64], ip, result.outcome)
        return _refusal(  # type: ignore[return-value]
            status.HTTP_429_TOO_MANY_REQUESTS,
            result.outcome.value,
            f"too many failed sign-ins: try again in {wait} s",
            f"登录失败次数过多，请{wait}秒后再试",
            headers={"Retry-After": str(wait)},
            retry_after_s=wait,
        )
    if result.session is None or result.cookie is None:
        log.info("sign-in of %r from %s failed: %s", body.username[:64], ip, result.outcome)
        return _refusal(  # type: ignore[return-value]
            status.HTTP_401_UNAUTHORIZED,
            "bad_credentials",
            "wrong user name or password",
            "用户名或密码错误",
        )
    log.info("%s signed in from %s", result.session.user.username, ip)
    out = _session_out(rt, result.session)
    response = JSONResponse(out.model_dump(mode="json"))
    response.set_cookie(
        SESSION_COOKIE,
        result.cookie,
        max_age=s.session_lifetime_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request, rt),
    )
    return response  # type: ignore[return-value]


@router.get("/session", tags=["session"])
def who_am_i(rt: RuntimeDep, principal: PrincipalAnyDep, session: CurrentDep) -> SessionPublic:
    """Who is signed in (with the CSRF token); a bearer token answers for itself."""
    if session is not None:
        return _session_out(rt, session)
    return SessionPublic(
        username=principal.name,
        role=principal.role,
        person_id=principal.person_id,
        language="zh-CN",
        csrf_token=None,
        via="token",
        expires_at=None,
    )


@router.delete(
    "/session",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["session"],
    responses={404: {"description": "the caller uses a token, not a session"}},
)
def sign_out(request: Request, rt: RuntimeDep, session: CurrentDep) -> Response:
    """Sign out: the session ends now and the cookie is cleared."""
    if session is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NO_SESSION)
    ip, ua = _client(request)
    accounts.revoke_session(rt.engine, session, now_ms=rt.now_ms(), ip=ip, ua=ua)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request, rt)
    )
    return response


@router.put(
    "/session/password",
    tags=["session"],
    responses={
        404: {"description": "the caller uses a token, not a session"},
        422: {"description": "the old password is wrong, or the new one is refused"},
        429: {"description": "too many wrong passwords: wait Retry-After seconds"},
    },
)
def change_own_password(
    body: PasswordChangeIn, request: Request, rt: RuntimeDep, session: CurrentDep
) -> PasswordSet:
    """Change one's own password (the old one is needed). The user's other sessions end; this
    one goes on."""
    if session is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NO_SESSION)
    ip, ua = _client(request)
    s = rt.settings
    # The old password is checked like a sign-in, so a stolen session cannot be used to guess
    # it faster than the sign-in form allows (same trail, same locks).
    check = accounts.sign_in(
        rt.engine,
        session.user.username,
        body.old_password,
        now_ms=rt.now_ms(),
        lifetime_s=0,
        ip=ip,
        user_agent=ua,
        lockout_after=s.signin_lockout_after,
        lockout_s=s.signin_lockout_s,
        ip_max_failures=s.signin_ip_max_failures,
        make_session=False,
    )
    if check.outcome in (SignInOutcome.LOCKED, SignInOutcome.IP_THROTTLED):
        wait = max(1, check.retry_after_s)
        return _refusal(  # type: ignore[return-value]
            status.HTTP_429_TOO_MANY_REQUESTS,
            check.outcome.value,
            f"too many wrong passwords: try again in {wait} s",
            f"密码错误次数过多，请{wait}秒后再试",
            headers={"Retry-After": str(wait)},
            retry_after_s=wait,
        )
    if check.outcome is not SignInOutcome.OK:
        raise _account_error(
            AccountError(
                "wrong_password", "the old password is wrong", "原密码不正确", "old_password"
            )
        )
    try:
        accounts.set_password(
            rt.engine,
            session.user.username,
            body.new_password,
            now_ms=rt.now_ms(),
            keep_session=session.id,
            actor=f"user:{session.user.username}",
        )
    except AccountError as exc:
        raise _account_error(exc) from None
    return PasswordSet(username=session.user.username, password=None)


# --- accounts ----------------------------------------------------------------------------------

Manager = Annotated[Principal, Depends(allow(Role.ADMIN, Role.STAFF))]
users_router = APIRouter(prefix="/users", tags=["users"], max_body_size=MAX_BODY_BYTES)


def _may_manage(principal: Principal, role: Role) -> None:
    if principal.role is Role.ADMIN or role in STAFF_MANAGES:
        return
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        detail=f"only an administrator manages {role} accounts; staff manage "
        f"{', '.join(sorted(STAFF_MANAGES))} accounts",
    )


def _load(rt: Runtime, username: str) -> User:
    with rt.engine.connect().execution_options(readonly=True) as conn, conn.begin():
        user = accounts.get_user(conn, username[:64])
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user {username[:64]!r}")
    return user


def _live(rt: Runtime, user: User) -> int:
    with rt.engine.connect().execution_options(readonly=True) as conn, conn.begin():
        return accounts.live_sessions(conn, user.id, rt.now_ms())


@users_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "the user name is taken"}},
)
def create_user(body: UserCreate, rt: RuntimeDep, principal: Manager) -> UserCreated:
    """Make an account for a person. Without a password one is made and shown once."""
    _may_manage(principal, body.role)
    password = body.password
    made = password is None
    if password is None:
        password = accounts.generate_password()
    try:
        user = accounts.create_user(
            rt.engine,
            body.username,
            password,
            body.role,
            now_ms=rt.now_ms(),
            person_id=body.person_id,
            language=body.language,
            created_by=principal.label,
        )
    except AccountError as exc:
        raise _account_error(exc) from None
    log.info("account %s (%s) made by %s", user.username, user.role, principal.label)
    return UserCreated(**_user_out(rt, user, 0), password=password if made else None)


@users_router.get("")
def list_users(
    rt: RuntimeDep,
    principal: Manager,
    role: Role | None = None,
    username: Annotated[str | None, Query(max_length=64)] = None,
) -> list[UserPublic]:
    """The accounts (staff see the ones they manage)."""
    roles = None if principal.role is Role.ADMIN else STAFF_MANAGES
    if role is not None:
        roles = frozenset({role}) & roles if roles is not None else frozenset({role})
    with rt.engine.connect().execution_options(readonly=True) as conn, conn.begin():
        found = accounts.list_users(conn, roles)
        now = rt.now_ms()
        if username is not None:
            found = [u for u in found if u.username == accounts.normalize_username(username)]
        return [
            UserPublic(**_user_out(rt, u, accounts.live_sessions(conn, u.id, now))) for u in found
        ]


@users_router.get("/{username}", responses={404: {"description": "no such user"}})
def get_user(username: str, rt: RuntimeDep, principal: Manager) -> UserPublic:
    user = _load(rt, username)
    _may_manage(principal, user.role)
    return UserPublic(**_user_out(rt, user, _live(rt, user)))


def _set_disabled(username: str, rt: Runtime, principal: Principal, disabled: bool) -> UserPublic:
    user = _load(rt, username)
    _may_manage(principal, user.role)
    try:
        user = accounts.set_disabled(rt.engine, user.username, disabled, now_ms=rt.now_ms())
    except AccountError as exc:
        raise _account_error(exc) from None
    log.info(
        "account %s %s by %s", user.username, "disabled" if disabled else "enabled", principal.label
    )
    return UserPublic(**_user_out(rt, user, _live(rt, user)))


@users_router.post("/{username}/disable", responses={404: {"description": "no such user"}})
def disable_user(username: str, rt: RuntimeDep, principal: Manager) -> UserPublic:
    """Disable an account: its sessions end now and it cannot sign in (its tokens, if any, are
    revoked by name with `shouwang token revoke`)."""
    return _set_disabled(username, rt, principal, True)


@users_router.post("/{username}/enable", responses={404: {"description": "no such user"}})
def enable_user(username: str, rt: RuntimeDep, principal: Manager) -> UserPublic:
    """Enable a disabled account again (it signs in with its password)."""
    return _set_disabled(username, rt, principal, False)


@users_router.put("/{username}/password", responses={404: {"description": "no such user"}})
def reset_password(
    username: str, body: PasswordResetIn, rt: RuntimeDep, principal: Manager
) -> PasswordSet:
    """Give an account a new password (a lock ends; its sessions end). Without one in the body
    a password is made and shown once."""
    user = _load(rt, username)
    _may_manage(principal, user.role)
    password = body.password if body.password is not None else accounts.generate_password()
    try:
        accounts.set_password(
            rt.engine, user.username, password, now_ms=rt.now_ms(), actor=principal.label
        )
    except AccountError as exc:
        raise _account_error(exc) from None
    return PasswordSet(username=user.username, password=None if body.password else password)


router.include_router(users_router)
