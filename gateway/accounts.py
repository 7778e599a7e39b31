"""The pages' user accounts and their sessions: passwords, sign-in with its slow-down, sessions.

Passwords are hashed with argon2id (argon2-cffi's `PasswordHasher`, its default cost: RFC 9106's
low-memory profile) and rehashed at the next sign-in when that default changes. A sign-in for a
user name that does not exist still verifies against a dummy hash, so the answer takes as long
as for a real account: the time does not tell which names exist.

Slow-down after failures (one rule for names that exist and names that do not, so a 429 tells
nothing either): the failures of a user name are its failed attempts in the `sign_ins` trail
within the last 15 minutes and after its last successful sign-in (or unlock). From
`signin_lockout_after` failures on, the name is locked for `signin_lockout_s` after the last
failure, doubled for each further failure, at most 15 minutes; tries while locked are answered
429 with Retry-After, are not checked and do not extend the lock. Every address is slowed down
too: `signin_ip_max_failures` failures within 10 minutes and it gets 429 until the oldest of them
is 10 minutes old. The `sign_ins` table is the audit trail of sign-ins (and sign-outs).

A session is a random cookie value; the database keeps its SHA-256 only. Each session has its
own CSRF token, which every unsafe request made with the cookie must echo in `X-CSRF-Token`
(checked in gateway/api.py). A session ends at its absolute expiry, after the idle timeout,
when revoked (sign-out), when its user's password is changed or reset, or when the user is
disabled.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, Row, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.auth import PERSON_ROLES, Principal, Role, check_person
from gateway.clock import new_id
from gateway.tables_web import sessions, sign_ins, users

SESSION_COOKIE = "shouwang_session"
CSRF_HEADER = "X-CSRF-Token"
USERNAME = re.compile(r"^[a-z0-9_.@\-]{3,64}$")
USERNAME_RULE = "3 to 64 characters of a-z 0-9 _ . @ - (upper case is read as lower case)"
MIN_PASSWORD = 10
MAX_PASSWORD = 256  # longer ones are refused before hashing: hashing is the costly part
LANGUAGES = ("zh-CN", "en")
FAILURE_WINDOW_MS = 15 * 60 * 1000  # failures older than this are forgotten
IP_WINDOW_MS = 10 * 60 * 1000
MAX_LOCK_S = 15 * 60
TOUCH_EVERY_MS = 60 * 1000  # last_seen_at is written at most once a minute per session
UA_LEN = 200
log = logging.getLogger(__name__)

# Passwords people choose first (here and in China's leaked lists); refused whatever their length.
COMMON_PASSWORDS = frozenset(
    {
        "1234567890",
        "12345678910",
        "123456789a",
        "a123456789",
        "0123456789",
        "9876543210",
        "1111111111",
        "0000000000",
        "1234512345",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "qwertyuiop",
        "qwerty12345",
        "qwerty123456",
        "asdfghjkl;",
        "asdfghjkl1",
        "zxcvbnm123",
        "password12",
        "password123",
        "password1234",
        "passw0rd123",
        "p@ssw0rd123",
        "iloveyou12",
        "woaini1314",
        "woaini520!",
        "5201314520",
        "1314520520",
        "abc1234567",
        "abcd123456",
        "abcdefghij",
        "admin12345",
        "admin123456",
        "administrator",
        "changeme123",
        "letmein123",
        "welcome123",
        "shouwang123",
        "shouwang2024",
        "shouwang2025",
        "shouwang2026",
        "1234567890a",
        "aa12345678",
        "a1234567890",
        "qq123456789",
        "123qweasdzxc",
        "88888888888",
        "66666666666",
    }
)


class SignInOutcome(StrEnum):
    OK = "ok"
    BAD_PASSWORD = "bad_password"
    UNKNOWN_USER = "unknown_user"
    DISABLED = "disabled"
    LOCKED = "locked"
    IP_THROTTLED = "ip_throttled"
    SIGNED_OUT = "signed_out"
    UNLOCKED = "unlocked"  # a password reset by an administrator ends a lock


FAILURES = (SignInOutcome.BAD_PASSWORD, SignInOutcome.UNKNOWN_USER, SignInOutcome.DISABLED)
FRESH_START = (SignInOutcome.OK, SignInOutcome.UNLOCKED)


class AccountError(ValueError):
    """A refused account change: `code`, and the reason in English and Chinese."""

    def __init__(self, code: str, en: str, zh: str, field: str = "") -> None:
        super().__init__(en)
        self.code, self.en, self.zh, self.field = code, en, zh, field


class UserExists(AccountError):
    pass


class NoSuchUser(AccountError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    role: Role
    person_id: str | None
    language: str
    created_at: int
    created_by: str | None
    disabled_at: int | None
    failed_count: int
    locked_until: int | None
    last_login_at: int | None


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: its id (the cookie's hash), its user, CSRF token and absolute expiry."""

    id: str
    user: User
    csrf_token: str
    expires_at: int

    @property
    def principal(self) -> Principal:
        return Principal(
            self.user.username,
            self.user.role,
            self.user.person_id,
            via="session",
            ident=self.user.id,
        )


@dataclass(frozen=True, slots=True)
class SignIn:
    """What came of a sign-in: `cookie` and `session` when it worked; otherwise the outcome,
    and `retry_after_s` for a lock or a slowed-down address."""

    outcome: SignInOutcome
    cookie: str | None = None
    session: Session | None = None
    retry_after_s: int = 0


_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash of a random password: checked for unknown user names, so that they take as long."""
    return _hasher.hash(secrets.token_urlsafe(16))


def session_id(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()


def normalize_username(name: str) -> str:
    return name.strip().lower()


def _clean(text: str | None, n: int) -> str | None:
    """Text of the caller (user name as typed, user agent) made safe to store: controls out."""
    if text is None:
        return None
    return re.sub(r"[\x00-\x1f\x7f]", "", text)[:n]


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        username=row.username,
        role=Role(row.role),
        person_id=row.person_id,
        language=row.language,
        created_at=row.created_at,
        created_by=row.created_by,
        disabled_at=row.disabled_at,
        failed_count=row.failed_count,
        locked_until=row.locked_until,
        last_login_at=row.last_login_at,
    )


# --- passwords ---------------------------------------------------------------------------------


def check_password(password: str, username: str) -> None:
    """Raise AccountError unless `password` may be used by `username`."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(
            "password_too_short",
            f"a password is at least {MIN_PASSWORD} characters",
            f"密码至少需要{MIN_PASSWORD}个字符",
            "password",
        )
    if len(password) > MAX_PASSWORD:
        raise AccountError(
            "password_too_long",
            f"a password is at most {MAX_PASSWORD} characters",
            f"密码最多{MAX_PASSWORD}个字符",
            "password",
        )
    if password.strip().lower() == normalize_username(username):
        raise AccountError(
            "password_is_username",
            "the password may not be the user name",
            "密码不能与用户名相同",
            "password",
        )
    if password.lower() in COMMON_PASSWORDS or len(set(password)) <= 2:
        raise AccountError(
            "password_too_common",
            "this password is too common or too simple; choose another",
            "该密码过于常见或简单，请换一个",
            "password",
        )


def generate_password() -> str:
    """A random password that is easy to read out and type: 4 groups of 4 letters and digits
    without look-alikes (0/O, 1/l/I)."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify_hash(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# --- users -------------------------------------------------------------------------------------


def check_username(username: str) -> str:
    """The user name normalized (stripped, lower case), or AccountError."""
    name = normalize_username(username)
    if not USERNAME.fullmatch(name):
        raise AccountError(
            "username_format",
            f"a user name is {USERNAME_RULE}",
            "用户名为3到64个字符，只能使用字母、数字及 _ . @ -",
            "username",
        )
    return name


def create_user(
    engine: Engine,
    username: str,
    password: str,
    role: Role | str,
    *,
    now_ms: int,
    person_id: str | None = None,
    language: str = "zh-CN",
    created_by: str | None = None,
) -> User:
    """Make an account; AccountError (UserExists) when it cannot be made as asked."""
    name = check_username(username)
    try:
        role = Role(role)
    except ValueError:
        raise AccountError(
            "role", f"unknown role {role!r}: one of {', '.join(Role)}", "未知的角色", "role"
        ) from None
    if language not in LANGUAGES:
        raise AccountError("language", "language is zh-CN or en", "语言为 zh-CN 或 en", "language")
    check_password(password, name)
    hashed = hash_password(password)  # before the transaction: it takes a while
    uid = new_id("us")
    try:
        with engine.begin() as conn:
            try:
                check_person(conn, role, person_id)
            except ValueError as exc:
                raise AccountError(
                    "person", str(exc), "该角色必须对应一位有效的人员（编号不符）", "person_id"
                ) from None
            if conn.execute(select(users.c.id).where(users.c.username == name)).first():
                raise _exists(name)
            conn.execute(
                insert(users).values(
                    id=uid,
                    username=name,
                    password_hash=hashed,
                    role=role.value,
                    person_id=person_id,
                    language=language,
                    created_at=now_ms,
                    created_by=created_by,
                    failed_count=0,
                    password_changed_at=now_ms,
                )
            )
            row = conn.execute(select(users).where(users.c.id == uid)).one()
    except IntegrityError:  # the same name made at the same moment
        raise _exists(name) from None
    return _user(row)


def _exists(name: str) -> UserExists:
    return UserExists("user_exists", f"a user {name!r} exists", f"用户名{name}已被使用", "username")


def _no_user(name: str) -> NoSuchUser:
    return NoSuchUser("no_user", f"no user {name!r}", f"没有用户{name}")


def get_user(conn: Connection, username: str) -> User | None:
    row = conn.execute(
        select(users).where(users.c.username == normalize_username(username))
    ).first()
    return _user(row) if row is not None else None


def list_users(conn: Connection, roles: frozenset[Role] | None = None) -> list[User]:
    q = select(users).order_by(users.c.created_at, users.c.username)
    if roles is not None:
        q = q.where(users.c.role.in_([r.value for r in roles]))
    return [_user(r) for r in conn.execute(q).all()]


def set_password(
    engine: Engine,
    username: str,
    password: str,
    *,
    now_ms: int,
    keep_session: str | None = None,
    actor: str | None = None,
) -> User:
    """A new password for `username`: every session of the user ends (but `keep_session`, the
    one a user changing their own password is using), and a lock ends with it."""
    name = normalize_username(username)
    check_password(password, name)
    hashed = hash_password(password)
    with engine.begin() as conn:
        row = conn.execute(select(users).where(users.c.username == name)).first()
        if row is None:
            raise _no_user(name)
        conn.execute(
            update(users)
            .where(users.c.id == row.id)
            .values(
                password_hash=hashed,
                password_changed_at=now_ms,
                failed_count=0,
                locked_until=None,
            )
        )
        revoke_user_sessions(conn, row.id, now_ms=now_ms, keep=keep_session)
        _trail(conn, now_ms, name, row.id, SignInOutcome.UNLOCKED, None, None)
        row = conn.execute(select(users).where(users.c.id == row.id)).one()
    log.info("password of %s set by %s; its other sessions ended", name, actor or "?")
    return _user(row)


def set_disabled(engine: Engine, username: str, disabled: bool, *, now_ms: int) -> User:
    """Disable an account (every session of it ends at once; it cannot sign in) or enable it
    again. Disabling a disabled account keeps its first time."""
    name = normalize_username(username)
    with engine.begin() as conn:
        row = conn.execute(select(users).where(users.c.username == name)).first()
        if row is None:
            raise _no_user(name)
        if disabled:
            if row.disabled_at is None:
                conn.execute(update(users).where(users.c.id == row.id).values(disabled_at=now_ms))
            revoke_user_sessions(conn, row.id, now_ms=now_ms)
        else:
            conn.execute(update(users).where(users.c.id == row.id).values(disabled_at=None))
        row = conn.execute(select(users).where(users.c.id == row.id)).one()
    return _user(row)


def verify_password(engine: Engine, username: str, password: str) -> User | None:
    """The enabled account whose password this is, or None (in about the same time either way).
    For checks other than signing in (a user confirming their old password)."""
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        row = conn.execute(
            select(users).where(users.c.username == normalize_username(username))
        ).first()
    if row is None or len(password) > MAX_PASSWORD:
        _verify_hash(_dummy_hash(), password[:MAX_PASSWORD])
        return None
    if not _verify_hash(row.password_hash, password) or row.disabled_at is not None:
        return None
    return _user(row)


# --- signing in --------------------------------------------------------------------------------


def _trail(
    conn: Connection,
    now_ms: int,
    username: str,
    user_id: str | None,
    outcome: SignInOutcome,
    ip: str | None,
    ua: str | None,
) -> None:
    conn.execute(
        insert(sign_ins).values(
            at=now_ms,
            username=_clean(username, 64) or "",
            user_id=user_id,
            outcome=outcome.value,
            client_ip=_clean(ip, 64),
            user_agent=_clean(ua, UA_LEN),
        )
    )


def lock_seconds(failures: int, after: int, first_s: int) -> int:
    """How long a name is locked after `failures` failures (0: not locked)."""
    if failures < after:
        return 0
    return min(MAX_LOCK_S, first_s * 2 ** min(failures - after, 20))


def _failures(conn: Connection, name: str, now_ms: int) -> tuple[int, int | None]:
    """The name's failures that count (see the module's doc) and the time of the last one."""
    fresh = conn.execute(
        select(func.max(sign_ins.c.at)).where(
            sign_ins.c.username == name,
            sign_ins.c.outcome.in_([o.value for o in FRESH_START]),
        )
    ).scalar_one_or_none()
    since = max(now_ms - FAILURE_WINDOW_MS, fresh if fresh is not None else 0)
    n, last = conn.execute(
        select(func.count(), func.max(sign_ins.c.at)).where(
            sign_ins.c.username == name,
            sign_ins.c.outcome.in_([o.value for o in FAILURES]),
            sign_ins.c.at > since,
        )
    ).one()
    return int(n), last


def _ip_wait_ms(conn: Connection, ip: str | None, now_ms: int, limit: int) -> int:
    """How long `ip` must wait before its next try (0: it may try now)."""
    if not ip:
        return 0
    recent = (
        select(sign_ins.c.at)
        .where(
            sign_ins.c.client_ip == _clean(ip, 64),
            sign_ins.c.outcome.in_([o.value for o in FAILURES]),
            sign_ins.c.at > now_ms - IP_WINDOW_MS,
        )
        .order_by(sign_ins.c.at.desc())
        .limit(limit)
        .subquery()
    )
    n, oldest = conn.execute(select(func.count(), func.min(recent.c.at))).one()
    if n < limit:
        return 0
    return max(1000, oldest + IP_WINDOW_MS - now_ms)


def sign_in(
    engine: Engine,
    username: str,
    password: str,
    *,
    now_ms: int,
    lifetime_s: int,
    ip: str | None = None,
    user_agent: str | None = None,
    lockout_after: int = 5,
    lockout_s: int = 30,
    ip_max_failures: int = 30,
    make_session: bool = True,
) -> SignIn:
    """Check a user name and password; on success make a session (unless `make_session` is
    False: a user confirming their password). Every try is in the trail."""
    name = normalize_username(_clean(username, 200) or "")
    plausible = bool(USERNAME.fullmatch(name)) and len(password) <= MAX_PASSWORD
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        ip_wait = _ip_wait_ms(conn, ip, now_ms, ip_max_failures)
        row = (
            conn.execute(select(users).where(users.c.username == name)).first()
            if plausible
            else None
        )
        failures, last = _failures(conn, name, now_ms) if plausible else (0, None)

    def refuse(outcome: SignInOutcome, retry_ms: int = 0) -> SignIn:
        with engine.begin() as conn:
            _trail(conn, now_ms, name, row.id if row else None, outcome, ip, user_agent)
            if row is not None and outcome in FAILURES:
                n, _ = _failures(conn, name, now_ms)
                lock = lock_seconds(n, lockout_after, lockout_s)
                conn.execute(
                    update(users)
                    .where(users.c.id == row.id)
                    .values(failed_count=n, locked_until=now_ms + lock * 1000 if lock else None)
                )
        return SignIn(outcome, retry_after_s=-(-retry_ms // 1000))

    if ip_wait:
        return refuse(SignInOutcome.IP_THROTTLED, ip_wait)
    lock_ms = lock_seconds(failures, lockout_after, lockout_s) * 1000
    if lock_ms and last is not None and last + lock_ms > now_ms:
        return refuse(SignInOutcome.LOCKED, last + lock_ms - now_ms)
    if row is None:
        _verify_hash(_dummy_hash(), password[:MAX_PASSWORD])  # as long as for a real name
        return refuse(SignInOutcome.UNKNOWN_USER)
    if not _verify_hash(row.password_hash, password):
        return refuse(SignInOutcome.BAD_PASSWORD)
    if row.disabled_at is not None:
        return refuse(SignInOutcome.DISABLED)
    try:
        user = _user(row)
    except ValueError:  # a role this version does not know opens nothing
        return refuse(SignInOutcome.DISABLED)
    if user.role in PERSON_ROLES and user.person_id is None:
        return refuse(SignInOutcome.DISABLED)
    values: dict[str, Any] = {"failed_count": 0, "locked_until": None}
    if make_session:
        values["last_login_at"] = now_ms
    if _hasher.check_needs_rehash(row.password_hash):
        values["password_hash"] = hash_password(password)
    cookie = session = None
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == row.id).values(**values))
        if make_session:
            cookie, session = _new_session(conn, user, now_ms, lifetime_s, ip, user_agent)
        _trail(conn, now_ms, name, row.id, SignInOutcome.OK, ip, user_agent)
    return SignIn(SignInOutcome.OK, cookie=cookie, session=session)


# --- sessions ----------------------------------------------------------------------------------


def _new_session(
    conn: Connection,
    user: User,
    now_ms: int,
    lifetime_s: int,
    ip: str | None,
    user_agent: str | None,
) -> tuple[str, Session]:
    cookie = secrets.token_urlsafe(32)
    sid = session_id(cookie)
    csrf = secrets.token_urlsafe(32)
    expires = now_ms + lifetime_s * 1000
    conn.execute(
        insert(sessions).values(
            id=sid,
            user_id=user.id,
            csrf_token=csrf,
            created_at=now_ms,
            expires_at=expires,
            last_seen_at=now_ms,
            client_ip=_clean(ip, 64),
            user_agent=_clean(user_agent, UA_LEN),
        )
    )
    return cookie, Session(sid, user, csrf, expires)


def create_session(
    engine: Engine,
    username: str,
    *,
    now_ms: int,
    lifetime_s: int,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[str, Session]:
    """A session for an enabled account without its password (for tools and tests that
    already hold the account); returns the cookie value and the session."""
    with engine.begin() as conn:
        user = get_user(conn, username)
        if user is None or user.disabled_at is not None:
            raise _no_user(normalize_username(username))
        return _new_session(conn, user, now_ms, lifetime_s, ip, user_agent)


def lookup_session(engine: Engine, cookie: str, *, now_ms: int, idle_s: int) -> Session | None:
    """The live session of a cookie value, or None (unknown, revoked, expired, idle too long,
    or its user disabled). Marks it used (at most once a minute)."""
    if not cookie or len(cookie) > 200:
        return None
    sid = session_id(cookie)
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        row = conn.execute(
            select(
                sessions.c.id.label("sid"),
                sessions.c.csrf_token,
                sessions.c.expires_at,
                sessions.c.last_seen_at,
                users,
            )
            .join(users, users.c.id == sessions.c.user_id)
            .where(
                sessions.c.id == sid,
                sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > now_ms,
                sessions.c.last_seen_at > now_ms - idle_s * 1000,
                users.c.disabled_at.is_(None),
            )
        ).first()
    if row is None:
        return None
    try:
        user = _user(row)
    except ValueError:
        return None
    if user.role in PERSON_ROLES and user.person_id is None:
        return None
    if now_ms - row.last_seen_at >= TOUCH_EVERY_MS:
        with engine.begin() as conn:
            conn.execute(update(sessions).where(sessions.c.id == sid).values(last_seen_at=now_ms))
    return Session(sid, user, row.csrf_token, row.expires_at)


def revoke_session(
    engine: Engine, session: Session, *, now_ms: int, ip: str | None = None, ua: str | None = None
) -> None:
    """Sign out: the session ends now (and the sign-out is in the trail)."""
    with engine.begin() as conn:
        conn.execute(
            update(sessions)
            .where(sessions.c.id == session.id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=now_ms)
        )
        _trail(
            conn, now_ms, session.user.username, session.user.id, SignInOutcome.SIGNED_OUT, ip, ua
        )


def revoke_user_sessions(
    conn: Connection, user_id: str, *, now_ms: int, keep: str | None = None
) -> int:
    """End every live session of a user (but `keep`, a session id); return how many."""
    cond = and_(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
    if keep is not None:
        cond = and_(cond, sessions.c.id != keep)
    return conn.execute(update(sessions).where(cond).values(revoked_at=now_ms)).rowcount


def live_sessions(conn: Connection, user_id: str, now_ms: int) -> int:
    """How many sessions of a user have neither ended nor been revoked (for the account list)."""
    return int(
        conn.execute(
            select(func.count()).where(
                sessions.c.user_id == user_id,
                sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > now_ms,
            )
        ).scalar_one()
    )


def has_admin_account(engine: Engine) -> bool:
    """Whether an enabled admin account exists (production mode needs an admin credential)."""
    with engine.connect() as conn:
        return (
            conn.execute(
                select(users.c.id).where(
                    users.c.role == Role.ADMIN.value, users.c.disabled_at.is_(None)
                )
            ).first()
            is not None
        )
