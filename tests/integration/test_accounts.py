"""Accounts, sign-in and sessions (gateway/accounts.py, gateway/api_session.py) over the real
app (TestClient), on SQLite and PostgreSQL: cookies, CSRF, the slow-down after failures, the
accounts API and who may use it, and the security headers of gateway/pages.py."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import typer
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update

from gateway.accounts import SESSION_COOKIE, create_user, session_id
from gateway.api import create_app
from gateway.app import Gateway
from gateway.auth import create_token
from gateway.db import migrate
from gateway.settings import Settings
from gateway.tables import responders
from gateway.tables_services import svc_providers, svc_workers
from gateway.tables_web import sessions, sign_ins, users

ADMIN = "admin-" + secrets.token_urlsafe(18)
PW = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Env:
    app: Any
    engine: Engine
    clock: Clock

    def client(self, **kw: Any) -> TestClient:
        return TestClient(self.app, **kw)

    def admin(self) -> TestClient:
        return TestClient(self.app, headers={"Authorization": f"Bearer {ADMIN}"})

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def responder(self, role: str, name: str = "李明") -> str:
        rid = "rs_" + secrets.token_hex(6)
        with self.engine.begin() as c:
            c.execute(
                insert(responders).values(id=rid, name=name, role=role, created_at=self.now_ms())
            )
        return rid

    def user(self, username: str, role: str, person_id: str | None = None, pw: str = PW) -> None:
        create_user(self.engine, username, pw, role, now_ms=self.now_ms(), person_id=person_id)

    def signed_in(self, username: str, pw: str = PW) -> tuple[TestClient, str]:
        c = self.client()
        r = c.post("/api/v1/session", json={"username": username, "password": pw})
        assert r.status_code == 200, r.text
        return c, r.json()["csrf_token"]


def _env(db_url: str, **over: Any) -> Iterator[Env]:
    settings = Settings(
        _env_file=None,
        database_url=db_url,
        mqtt_url="mqtt://127.0.0.1:9",  # never connected: these routes do not use MQTT
        admin_token=ADMIN,
        log_level="WARNING",
        **over,
    )
    clock = Clock()
    gw = Gateway(settings, clock=clock)
    migrate(gw.engine)
    yield Env(create_app(gw.runtime), gw.engine, clock)
    gw.engine.dispose()


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    yield from _env(db_url)


def test_sign_in_sets_a_strict_http_only_cookie_and_a_csrf_token(env: Env) -> None:
    rid = env.responder("watcher")
    env.user("Wang.Li", "watcher", rid)
    c = env.client()
    assert c.get("/api/v1/session").status_code == 401
    r = c.post("/api/v1/session", json={"username": " wang.li ", "password": PW})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["username"] == "wang.li" and body["role"] == "watcher"
    assert body["person_id"] == rid and body["language"] == "zh-CN" and body["via"] == "session"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/" in low
    assert "secure" not in low  # plain http here; https or SHOUWANG_COOKIE_SECURE add it
    value = c.cookies[SESSION_COOKIE]
    with env.engine.connect() as conn:  # only the hash is stored
        assert conn.execute(select(sessions.c.id)).scalar_one() == session_id(value)
        row = conn.execute(select(users.c.password_hash)).scalar_one()
    assert row.startswith("$argon2id$") and PW not in row
    me = c.get("/api/v1/session").json()
    assert me["csrf_token"] == body["csrf_token"] and me["username"] == "wang.li"


def test_https_marks_the_cookie_secure(db_url: str) -> None:
    for env in _env(db_url):
        env.user("staff.one", "staff")
        c = TestClient(env.app, base_url="https://testserver")
        r = c.post("/api/v1/session", json={"username": "staff.one", "password": PW})
        assert "secure" in r.headers["set-cookie"].lower()
    for env in _env(db_url, cookie_secure=True):
        env.user("staff.two", "staff")
        r = env.client().post("/api/v1/session", json={"username": "staff.two", "password": PW})
        assert "secure" in r.headers["set-cookie"].lower()


def test_the_cookie_opens_the_api_and_changes_need_the_csrf_header(env: Env) -> None:
    env.user("staff.wang", "staff")
    c, csrf = env.signed_in("staff.wang")
    assert c.get("/api/v1/elders").status_code == 200
    elder = {"name": "王秀英", "address": "幸福里1号"}
    r = c.post("/api/v1/elders", json=elder)
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    assert (
        c.post("/api/v1/elders", json=elder, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    )
    r = c.post("/api/v1/elders", json=elder, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201
    # the alert timeline would show the person, not a token
    with env.engine.connect() as conn:
        assert conn.execute(select(sessions.c.csrf_token)).scalar_one() == csrf
    # a bearer token wins over a cookie, and works exactly as before (no CSRF header)
    r = c.post("/api/v1/elders", json=elder, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201
    assert c.get("/api/v1/elders", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_limited_roles_keep_their_limits_with_a_session(env: Env) -> None:
    rid = env.responder("family")
    env.user("family.li", "family", rid)
    c, _ = env.signed_in("family.li")
    assert c.get("/api/v1/elders").status_code == 403  # full-access routes: admin and staff
    assert c.get("/api/v1/care/elders").status_code == 200  # scoped: sees no one


def test_wrong_password_and_unknown_user_get_the_same_answer(env: Env) -> None:
    env.user("staff.zhao", "staff")
    c = env.client()
    a = c.post("/api/v1/session", json={"username": "staff.zhao", "password": "wrong password!"})
    b = c.post("/api/v1/session", json={"username": "nobody.here", "password": "wrong password!"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()
    assert a.json()["detail_zh"] == "用户名或密码错误" and a.json()["code"] == "bad_credentials"
    assert SESSION_COOKIE not in c.cookies
    with env.engine.connect() as conn:
        trail = conn.execute(
            select(sign_ins.c.username, sign_ins.c.outcome, sign_ins.c.client_ip).order_by(
                sign_ins.c.id
            )
        ).all()
    assert [(t.username, t.outcome) for t in trail] == [
        ("staff.zhao", "bad_password"),
        ("nobody.here", "unknown_user"),
    ]
    assert all(t.client_ip == "testclient" for t in trail)


def test_repeated_failures_lock_the_name_then_let_it_try_again(env: Env) -> None:
    env.user("staff.sun", "staff")
    c = env.client()
    bad = {"username": "staff.sun", "password": "not the password"}
    for _ in range(5):
        assert c.post("/api/v1/session", json=bad).status_code == 401
    # locked now: even the right password is not checked
    r = c.post("/api/v1/session", json={"username": "staff.sun", "password": PW})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    assert r.json()["code"] == "locked" and "秒后再试" in r.json()["detail_zh"]
    # an unknown name is locked the same way (a 429 does not tell which names exist)
    ghost = {"username": "ghost.user", "password": "not the password"}
    for _ in range(5):
        assert c.post("/api/v1/session", json=ghost).status_code == 401
    assert c.post("/api/v1/session", json=ghost).status_code == 429
    with env.engine.connect() as conn:
        row = conn.execute(select(users.c.failed_count, users.c.locked_until)).one()
    assert row.failed_count == 5 and row.locked_until > env.now_ms()
    env.clock.offset += 31
    assert c.post("/api/v1/session", json=bad).status_code == 401  # one more try, then
    r = c.post("/api/v1/session", json={"username": "staff.sun", "password": PW})
    assert r.status_code == 429 and 30 < int(r.headers["Retry-After"]) <= 60  # doubled
    env.clock.offset += 61
    assert (
        c.post("/api/v1/session", json={"username": "staff.sun", "password": PW}).status_code == 200
    )
    # a success starts afresh
    assert c.post("/api/v1/session", json=bad).status_code == 401
    assert (
        c.post("/api/v1/session", json={"username": "staff.sun", "password": PW}).status_code == 200
    )


def test_one_address_is_slowed_down_across_names(db_url: str) -> None:
    for env in _env(db_url, signin_ip_max_failures=4):
        c = env.client()
        for i in range(4):
            body = {"username": f"guess{i}", "password": "not the password"}
            assert c.post("/api/v1/session", json=body).status_code == 401
        r = c.post("/api/v1/session", json={"username": "guess9", "password": "x" * 12})
        assert r.status_code == 429 and r.json()["code"] == "ip_throttled"
        assert 500 <= int(r.headers["Retry-After"]) <= 600
        env.clock.offset += 601
        assert c.post("/api/v1/session", json={"username": "g", "password": "p"}).status_code == 401


def test_sign_out_ends_the_session(env: Env) -> None:
    env.user("staff.qian", "staff")
    c, csrf = env.signed_in("staff.qian")
    kept = c.cookies[SESSION_COOKIE]
    assert c.delete("/api/v1/session").status_code == 403  # CSRF here too
    r = c.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert (
        f'{SESSION_COOKIE}=""' in r.headers["set-cookie"]
        or "max-age=0" in r.headers["set-cookie"].lower()
    )
    other = env.client(cookies={SESSION_COOKIE: kept})  # the old cookie, replayed
    assert other.get("/api/v1/session").status_code == 401
    assert other.get("/api/v1/elders").status_code == 401
    with env.engine.connect() as conn:
        outcomes = [r.outcome for r in conn.execute(select(sign_ins.c.outcome))]
    assert outcomes == ["ok", "signed_out"]


def test_sessions_end_when_idle_or_old(db_url: str) -> None:
    for env in _env(db_url, session_idle_s=600, session_lifetime_s=3600):
        env.user("staff.li", "staff")
        c, _ = env.signed_in("staff.li")
        for _ in range(5):  # used every 9 minutes: never idle, ...
            env.clock.offset += 540
            assert c.get("/api/v1/session").status_code == 200
        env.clock.offset += 540
        assert c.get("/api/v1/session").status_code == 200
        env.clock.offset += 540  # ... but an hour after the sign-in it ends
        assert c.get("/api/v1/session").status_code == 401
        c, _ = env.signed_in("staff.li")
        env.clock.offset += 601
        assert c.get("/api/v1/session").status_code == 401  # idle too long


def test_a_forged_cookie_or_a_sign_in_from_another_site_opens_nothing(env: Env) -> None:
    env.user("staff.he", "staff")
    c = env.client(cookies={SESSION_COOKIE: secrets.token_urlsafe(32)})
    assert c.get("/api/v1/elders").status_code == 401
    r = env.client().post(
        "/api/v1/session",
        json={"username": "staff.he", "password": PW},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    r = env.client().post(
        "/api/v1/session",
        json={"username": "staff.he", "password": PW},
        headers={"Origin": "http://testserver"},
    )
    assert r.status_code == 200
    # behind a reverse proxy that passes the public name on
    r = env.client().post(
        "/api/v1/session",
        json={"username": "staff.he", "password": PW},
        headers={"Origin": "https://shouwang.example", "X-Forwarded-Host": "shouwang.example"},
    )
    assert r.status_code == 200
    r = env.client().post(
        "/api/v1/session",
        json={"username": "staff.he", "password": PW},
        headers={"Origin": "null"},
    )
    assert r.status_code == 403


def test_bad_sign_in_bodies_are_422(env: Env) -> None:
    c = env.client()
    for body in (
        {},
        {"username": "a"},
        {"username": 1, "password": "x"},
        {"username": "a", "password": "x" * 257},
        {"username": "a", "password": "b", "extra": 1},
    ):
        assert c.post("/api/v1/session", json=body).status_code == 422, body
    # an odd name is just not found
    r = c.post("/api/v1/session", json={"username": "王\x00明", "password": "whatever123"})
    assert r.status_code == 401


def test_old_hashes_are_upgraded_at_sign_in(env: Env) -> None:
    env.user("staff.old", "staff")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PW)
    with env.engine.begin() as conn:
        conn.execute(update(users).values(password_hash=weak))
    env.signed_in("staff.old")
    with env.engine.connect() as conn:
        now = conn.execute(select(users.c.password_hash)).scalar_one()
    assert now != weak and not PasswordHasher().check_needs_rehash(now)


# --- the accounts API --------------------------------------------------------------------------


def test_admin_makes_accounts_with_checked_people_and_passwords(env: Env) -> None:
    admin = env.admin()
    watcher = env.responder("watcher")
    family = env.responder("family")
    ok = admin.post(
        "/api/v1/users",
        json={"username": "Zhou.Min", "role": "watcher", "person_id": watcher},
    )
    assert ok.status_code == 201, ok.text
    made = ok.json()
    assert made["username"] == "zhou.min" and made["created_by"] == "api:admin"
    password = made["password"]
    assert password and len(password) >= 10
    env.signed_in("zhou.min", password)
    refused = [
        ({"username": "x", "role": "staff", "password": PW}, 422, "username_format"),
        ({"username": "ab.cd", "role": "watcher", "password": PW}, 422, "person"),
        (
            {"username": "ab.cd", "role": "watcher", "person_id": family, "password": PW},
            422,
            "person",
        ),
        (
            {"username": "ab.cd", "role": "admin", "person_id": family, "password": PW},
            422,
            "person",
        ),
        ({"username": "ab.cd", "role": "staff", "password": "short"}, 422, "password_too_short"),
        (
            {"username": "ab.cd.ef.gh", "role": "staff", "password": "AB.CD.EF.GH"},
            422,
            "password_is_username",
        ),
        (
            {"username": "ab.cd", "role": "staff", "password": "1234567890"},
            422,
            "password_too_common",
        ),
        (
            {"username": "ab.cd", "role": "staff", "password": "aaaaaaaaaaaa"},
            422,
            "password_too_common",
        ),
        ({"username": "zhou.min", "role": "staff", "password": PW}, 409, "user_exists"),
        ({"username": "ab.cd", "role": "service_worker", "person_id": "sw_nope"}, 422, "person"),
    ]
    for body, code, kind in refused:
        r = admin.post("/api/v1/users", json=body)
        assert r.status_code == code, (body, r.text)
        assert r.json()["detail"][0]["type"] == kind
        assert r.json()["detail"][0]["zh"]
    assert admin.post("/api/v1/users", json={"username": "q", "role": "chef"}).status_code == 422
    with env.engine.connect() as conn:
        assert conn.execute(select(users.c.username)).scalars().all() == ["zhou.min"]


def test_service_worker_accounts_and_tokens_act_for_a_worker(env: Env) -> None:
    now = env.now_ms()
    with env.engine.begin() as conn:
        conn.execute(
            insert(svc_providers).values(
                id="pv_1", name="家政公司", kind="company", created_at=now, updated_at=now
            )
        )
        conn.execute(
            insert(svc_workers).values(id="sw_1", provider_id="pv_1", name="赵阿姨", created_at=now)
        )
    r = env.admin().post(
        "/api/v1/users",
        json={
            "username": "zhao.ayi",
            "role": "service_worker",
            "person_id": "sw_1",
            "password": PW,
        },
    )
    assert r.status_code == 201, r.text
    c, _ = env.signed_in("zhao.ayi")
    me = c.get("/api/v1/session").json()
    assert me["role"] == "service_worker" and me["person_id"] == "sw_1"
    token = create_token(env.engine, "zhao", "service_worker", now_ms=now, person_id="sw_1")
    t = env.client(headers={"Authorization": f"Bearer {token}"})
    me = t.get("/api/v1/session").json()
    assert me == {
        "username": "zhao",
        "role": "service_worker",
        "person_id": "sw_1",
        "language": "zh-CN",
        "csrf_token": None,
        "via": "token",
        "expires_at": None,
    }
    with pytest.raises(ValueError, match="service worker"):
        create_token(env.engine, "x", "service_worker", now_ms=now)


def test_staff_manage_only_the_helpers_accounts(env: Env) -> None:
    env.user("staff.wu", "staff")
    env.user("staff.zheng", "staff")
    volunteer = env.responder("volunteer")
    c, csrf = env.signed_in("staff.wu")
    h = {"X-CSRF-Token": csrf}
    r = c.post(
        "/api/v1/users",
        json={"username": "vol.one", "role": "volunteer", "person_id": volunteer},
        headers=h,
    )
    assert r.status_code == 201 and r.json()["created_by"] == "user:staff.wu"
    for role in ("staff", "admin"):
        r = c.post(
            "/api/v1/users",
            json={"username": f"new.{role}", "role": role, "password": PW},
            headers=h,
        )
        assert r.status_code == 403, r.text
    assert c.post("/api/v1/users/staff.zheng/disable", headers=h).status_code == 403
    assert c.put("/api/v1/users/staff.zheng/password", json={}, headers=h).status_code == 403
    assert [u["username"] for u in c.get("/api/v1/users").json()] == ["vol.one"]
    assert len(env.admin().get("/api/v1/users").json()) == 3
    assert c.get("/api/v1/users/nobody").status_code == 404
    # the limited roles have no say at all
    v, vcsrf = env.signed_in("vol.one", r_pw := _reset(env, "vol.one"))
    assert r_pw
    assert v.get("/api/v1/users").status_code == 403
    assert (
        v.post("/api/v1/users/staff.wu/disable", headers={"X-CSRF-Token": vcsrf}).status_code == 403
    )


def _reset(env: Env, username: str) -> str:
    r = env.admin().put(f"/api/v1/users/{username}/password", json={})
    assert r.status_code == 200, r.text
    return str(r.json()["password"])


def test_disabling_or_resetting_ends_sessions_at_once(env: Env) -> None:
    env.user("staff.ma", "staff")
    c, _ = env.signed_in("staff.ma")
    admin = env.admin()
    r = admin.post("/api/v1/users/staff.ma/disable")
    assert r.status_code == 200 and r.json()["disabled_at"] and r.json()["live_sessions"] == 0
    assert c.get("/api/v1/elders").status_code == 401
    r = env.client().post("/api/v1/session", json={"username": "staff.ma", "password": PW})
    assert r.status_code == 401  # the same answer as a wrong password
    assert admin.post("/api/v1/users/staff.ma/enable").json()["disabled_at"] is None
    c, _ = env.signed_in("staff.ma")
    new = _reset(env, "staff.ma")
    assert c.get("/api/v1/elders").status_code == 401  # the reset ended it
    assert (
        env.client()
        .post("/api/v1/session", json={"username": "staff.ma", "password": PW})
        .status_code
        == 401
    )
    env.signed_in("staff.ma", new)
    r = admin.put("/api/v1/users/staff.ma/password", json={"password": "staff.ma"})
    assert r.status_code == 422


def test_a_user_changes_their_own_password(env: Env) -> None:
    env.user("staff.feng", "staff")
    c, csrf = env.signed_in("staff.feng")
    other, _ = env.signed_in("staff.feng")  # the same person on another device
    h = {"X-CSRF-Token": csrf}
    new = "a new long passphrase"
    r = c.put(
        "/api/v1/session/password",
        json={"old_password": "wrong one!", "new_password": new},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "wrong_password"
    r = c.put(
        "/api/v1/session/password", json={"old_password": PW, "new_password": "short"}, headers=h
    )
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "password_too_short"
    r = c.put("/api/v1/session/password", json={"old_password": PW, "new_password": new}, headers=h)
    assert r.status_code == 200, r.text
    assert c.get("/api/v1/session").status_code == 200  # this session goes on
    assert other.get("/api/v1/session").status_code == 401  # the others end
    env.signed_in("staff.feng", new)
    # a token has no password to change
    t = env.admin()
    assert (
        t.put(
            "/api/v1/session/password", json={"old_password": PW, "new_password": new}
        ).status_code
        == 404
    )


def test_disabled_users_sessions_and_revoked_tokens_both_stop(env: Env) -> None:
    """`shouwang token revoke` ends tokens by name; disabling the account of the same person
    ends their sessions: neither opens anything afterwards."""
    from gateway.auth import revoke_token

    rid = env.responder("watcher")
    env.user("watcher.lin", "watcher", rid)
    token = create_token(env.engine, "watcher.lin", "watcher", now_ms=env.now_ms(), person_id=rid)
    c, _ = env.signed_in("watcher.lin")
    t = env.client(headers={"Authorization": f"Bearer {token}"})
    assert c.get("/api/v1/care/elders").status_code == 200
    assert t.get("/api/v1/care/elders").status_code == 200
    assert revoke_token(env.engine, "watcher.lin") == 1
    assert t.get("/api/v1/care/elders").status_code == 401
    assert c.get("/api/v1/care/elders").status_code == 200  # a token's revocation is the token's
    env.admin().post("/api/v1/users/watcher.lin/disable")
    assert c.get("/api/v1/care/elders").status_code == 401
    with env.engine.connect() as conn:
        assert conn.execute(select(sessions.c.revoked_at)).scalar_one() is not None


# --- the command line, production mode, the demo's accounts -----------------------------------


def test_user_commands(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for key in [k for k in __import__("os").environ if k.startswith("SHOUWANG_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SHOUWANG_DATABASE_URL", db_url)
    run = CliRunner().invoke
    monkeypatch.setenv("SHOUWANG_NEW_PASSWORD", "a password of mine")
    r = run(app, ["user", "create", "--username", "Root.Admin", "--role", "admin"])
    assert r.exit_code == 0, r.output
    assert "created root.admin (admin)" in r.output and "a password of mine" not in r.output
    r = run(app, ["user", "create", "--username", "staff.gen", "--role", "staff", "--generate"])
    assert r.exit_code == 0, r.output
    generated = r.output.split("password: ")[1].strip()
    r = run(app, ["user", "create", "--username", "w.x", "--role", "watcher"])
    assert r.exit_code == 2 and "responder" in r.output
    monkeypatch.setenv("SHOUWANG_NEW_PASSWORD", "short")
    r = run(app, ["user", "create", "--username", "staff.short", "--role", "staff"])
    assert r.exit_code == 2 and "10" in r.output
    for env in _env(db_url):
        c, _ = env.signed_in("staff.gen", generated)
        assert run(app, ["user", "disable", "--username", "staff.gen"]).exit_code == 0
        assert c.get("/api/v1/session").status_code == 401
        r = run(app, ["user", "list"])
        assert "staff.gen\tstaff\t-\tdisabled" in r.output and "root.admin\tadmin" in r.output
        assert run(app, ["user", "enable", "--username", "staff.gen"]).exit_code == 0
        monkeypatch.setenv("SHOUWANG_NEW_PASSWORD", "another good one")
        assert run(app, ["user", "password", "--username", "staff.gen"]).exit_code == 0
        env.signed_in("staff.gen", "another good one")
        assert run(app, ["user", "disable", "--username", "nobody"]).exit_code == 2


def test_production_mode_needs_an_admin_credential(db_url: str, tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    from gateway.cli import _require_admin_credential

    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOUWANG_")}
    env.update(SHOUWANG_DATABASE_URL=db_url, SHOUWANG_HTTP_PORT="0")
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr[-500:]
    assert "production mode needs an administrator's credential" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--demo"],
        env={**env, "SHOUWANG_MODE": "production"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "refused in production mode" in out.stderr
    settings = Settings(_env_file=None, database_url=db_url)
    assert settings.mode == "production"
    with pytest.raises(typer.Exit):
        _require_admin_credential(settings)
    _require_admin_credential(Settings(_env_file=None, database_url=db_url, admin_token="t" * 30))
    for e in _env(db_url):
        e.user("root.admin", "admin")
        _require_admin_credential(settings)  # an admin account is a credential too
        e.admin().post("/api/v1/users/root.admin/disable")
        with pytest.raises(typer.Exit):
            _require_admin_credential(settings)


def test_the_demo_makes_accounts_with_random_passwords(env: Env, tmp_path: Any) -> None:
    import os
    import stat

    from simulators.community import seed
    from simulators.demo_accounts import ensure_accounts
    from tests.integration.test_care_demo import serving

    logins_file = tmp_path / "logins.txt"
    with serving(env.app) as url:
        community = seed(url, ADMIN, 3, wait_s=5, modules=())
        first = ensure_accounts(url, ADMIN, community, path=logins_file, log_line=lambda _: None)
        again = ensure_accounts(url, ADMIN, community, path=logins_file, log_line=lambda _: None)
    assert [lg.role for lg in first] == ["staff", "watcher", "volunteer", "family"]
    assert len({lg.password for lg in first}) == 4
    # a second run: the same accounts with new passwords; the old ones open nothing
    assert [lg.username for lg in again] == [lg.username for lg in first]
    assert all(a.password != b.password for a, b in zip(first, again, strict=True))
    text = logins_file.read_text(encoding="utf-8")
    assert all(lg.password in text for lg in again) and first[0].password not in text
    assert stat.S_IMODE(os.stat(logins_file).st_mode) == 0o600
    for lg in again:
        c, _ = env.signed_in(lg.username, lg.password)
        assert c.get("/api/v1/session").json()["role"] == lg.role
    r = env.client().post(
        "/api/v1/session", json={"username": first[0].username, "password": first[0].password}
    )
    assert r.status_code == 401
    watcher = next(lg for lg in again if lg.role == "watcher")
    with env.engine.connect() as conn:
        person = conn.execute(
            select(users.c.person_id).where(users.c.username == watcher.username)
        ).scalar_one()
        pager = conn.execute(
            select(responders.c.pager_id).where(responders.c.id == person)
        ).scalar_one()
    assert pager == community.homes[0].watchers[0]


def test_security_headers_on_every_answer(env: Env) -> None:
    c = env.client()
    for path, code in (("/api/v1/elders", 401), ("/healthz", 503), ("/login", 200), ("/", 303)):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == code, (path, r.status_code)
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
    r = c.get("/static/login.js")
    assert r.status_code == 200 and "no-store" not in r.headers.get("cache-control", "")
    assert r.headers["content-security-policy"]
    big = c.post(
        "/api/v1/session", content=b"x" * 100_000, headers={"content-type": "application/json"}
    )
    assert big.status_code == 413 and big.headers["x-content-type-options"] == "nosniff"


def test_pages_by_role_and_the_next_parameter(env: Env) -> None:
    from gateway.pages import safe_next

    assert env.client().get("/board?x=1", follow_redirects=False).headers["location"] == (
        "/login?next=%2Fboard%3Fx%3D1"
    )
    rid = env.responder("family")
    env.user("fam.one", "family", rid)
    env.user("staff.page", "staff")
    fam, _ = env.signed_in("fam.one")
    staff, _ = env.signed_in("staff.page")
    assert fam.get("/", follow_redirects=False).headers["location"] == "/family"
    assert staff.get("/", follow_redirects=False).headers["location"] == "/board"
    r = fam.get("/board")
    assert r.status_code == 403 and "您没有权限打开此页面" in r.text and "<script" not in r.text
    assert staff.get("/family").status_code == 403
    r = staff.get("/login")
    assert r.status_code == 200 and '<script type="module" src="/static/login.js">' in r.text
    for good in ("/board", "/board?view=homes", "/phone"):
        assert safe_next(good) == good
    for bad in (
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
        "board",
        "",
        None,
        "/x\n",
        "/" + "a" * 600,
    ):
        assert safe_next(bad) is None, bad
