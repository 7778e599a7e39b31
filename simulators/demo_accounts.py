"""The demo's sign-in accounts: one each for a staff member, a watcher, a volunteer and a family
member of the demo community, made through the HTTP API (`/api/v1/users`) with passwords the
gateway draws at random, printed and written to ./shouwang-demo-logins.txt (mode 0600).

An account that is there already (a second `make run` on the same database) gets a new random
password, so the logins printed are always the ones that work. There is no fixed demo password
anywhere, and the gateway makes none in production mode: this runs only in the demo.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from simulators.community import Community, SeedError

LOGINS_FILE = Path("shouwang-demo-logins.txt")


@dataclass(frozen=True)
class Login:
    role: str
    username: str
    password: str
    page: str
    who: str  # the person's name in the community


def _wanted(community: Community) -> list[tuple[str, str, str, str]]:
    """(role, username, pager id of the person, page) for the demo's four accounts: the people
    of the first home, so that the watcher, the volunteer and the family member share an
    elder and see the same call."""
    first = community.homes[0]
    staff = community.staff[0]
    family = first.family[0] if first.family else None
    if family is None:  # the first home has no family on its list: the next that has
        family = next((h.family[0] for h in community.homes if h.family), None)
    wanted = [
        ("staff", "demo.staff", staff, "/board"),
        ("watcher", "demo.watcher", first.watchers[0], "/phone"),
        ("volunteer", "demo.volunteer", first.volunteers[0], "/phone"),
    ]
    if family is not None:
        wanted.append(("family", "demo.family", family, "/family"))
    return wanted


def _responder_ids(client: httpx.Client) -> dict[str, str]:
    resp = client.get("/api/v1/responders", params={"limit": 5000})
    if resp.status_code != 200:
        raise SeedError(f"GET /api/v1/responders -> {resp.status_code}: {resp.text[:200]}")
    return {r["pager_id"]: r["id"] for r in resp.json() if r.get("pager_id")}


def ensure_accounts(
    api_url: str,
    token: str,
    community: Community,
    *,
    path: Path | None = LOGINS_FILE,
    log_line: Callable[[str], None] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Login]:
    """Make (or give new passwords to) the demo's accounts; print and write their logins."""
    say = log_line or print
    base = api_url.rstrip("/")
    logins: list[Login] = []
    with httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
        transport=transport,
    ) as client:
        ids = _responder_ids(client)
        for role, username, pager, page in _wanted(community):
            person = ids.get(pager)
            if person is None:
                raise SeedError(f"no responder with pager {pager} for the demo's {role} account")
            body = {"username": username, "role": role, "person_id": person}
            resp = client.post("/api/v1/users", json=body)
            if resp.status_code == 409:  # there from an earlier run: a fresh password
                resp = client.put(f"/api/v1/users/{username}/password", json={})
                client.post(f"/api/v1/users/{username}/enable")
            if resp.status_code not in (200, 201):
                raise SeedError(f"account {username}: {resp.status_code} {resp.text[:200]}")
            password = resp.json().get("password")
            if not password:
                raise SeedError(f"account {username}: the gateway returned no password")
            logins.append(Login(role, username, password, page, community.person(pager).name))
    lines = [
        "守望 Shouwang demo logins (演示账号) — passwords are random and change every run",
        f"sign in at {base}/login",
        "",
        *(
            f"{lg.role:<10} {lg.username:<15} {lg.password}   {base}{lg.page}   ({lg.who})"
            for lg in logins
        ),
        "",
    ]
    if path is not None:
        # written with 0600 from the start: passwords are not for the other users of the machine
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        os.chmod(path, 0o600)
    for line in lines:
        say(line)
    if path is not None:
        say(f"（已写入 written to {path}）")
    return logins
