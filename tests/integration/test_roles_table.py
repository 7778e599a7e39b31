"""Who may use what: every route of `create_app` against every role, from a written table.

The table (`TABLE`) names, for each route (method and path template, as FastAPI has them), the
outcome for each role: admin, staff, watcher, volunteer, family, service_worker, and a caller
with no credentials ("none"):

- `OK`: past the door: any answer but 401 and 403 (and never a 5xx) for a valid call, e.g. 200,
  201, 404 for an id that does not exist, 409, 422 for a body the route refuses on its merits;
- `403`: the role may not use the route;
- `404`: the role may use the route, but the record asked for is someone else's (a family
  member asking for another elder): answered exactly as for a record that does not exist;
- `401`: no credentials; any other number: exactly that status (the pages' redirects).

A route of the app that is not in the table FAILS the test with the list of the unclassified
routes: a new route must be classified here before it ships.

API routes are called with a real bearer token per role (gateway/auth.py `create_token`, for
the people of a seeded community: the watcher paired with elder A, a family member with a
confirmed link to elder A, a service worker of the seeded providers); the pages (`/board`, ...)
with a real session cookie per role (gateway/accounts.py). Bodies are valid where the role
check comes after the body's validation (so a 422 does not hide a missing 403).

One app on SQLite, built once for the module and served by uvicorn on loopback; one
parametrized test per route. PostgreSQL is left out on purpose: who may pass a door does not
depend on the database, and the table runs ~1300 requests.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from gateway.accounts import SESSION_COOKIE, create_session, create_user
from gateway.api import create_app
from gateway.app import Gateway
from gateway.auth import create_token
from gateway.care_store import generate_data_key
from gateway.db import migrate
from gateway.settings import Settings
from simulators.community import seed
from tests.integration.test_care_demo import serving

ADMIN = "admin-" + secrets.token_urlsafe(18)
TZ = ZoneInfo("Asia/Shanghai")
ROLES = ("admin", "staff", "watcher", "volunteer", "family", "service_worker", "none")
PEOPLE_ROLES = ROLES[:-1]
OK = "ok"
PW = "roles table password"

A, S, W, V, F, SW = "admin", "staff", "watcher", "volunteer", "family", "service_worker"


def only(*allowed: str, hidden: tuple[str, ...] = (), none: Any = 401) -> dict[str, Any]:
    """`allowed` roles pass (OK), `hidden` roles get 404, the other roles 403; "none" `none`."""
    out: dict[str, Any] = {r: 403 for r in PEOPLE_ROLES}
    out.update({r: OK for r in allowed})
    out.update({r: 404 for r in hidden})
    out["none"] = none
    return out


def exact(**codes: Any) -> dict[str, Any]:
    return dict(codes)


FULL = only(A, S)  # the stations' tools: admin and staff
ADMIN_ONLY = only(A)
CARE = only(A, S, W, V, F)  # the care router: every care role, each answer scoped
CARE_STAFF = only(A, S)  # a care change: staff only (the role passes the router, not the handler)
CARE_HEALTH = only(A, S, F)  # health records: staff and family, not watchers or volunteers
WORKER_STEP = only(A, S, SW)
EVERYONE = only(A, S, W, V, F, SW)
PUBLIC = only(A, S, W, V, F, SW, none=OK)
PHONE = only(W, V, S)
FAMILY_ONLY = only(F)


@dataclass(frozen=True)
class Call:
    """One request of the table: the expected outcome per role, path parameters (names of
    `World` fields or literal values), a JSON body, a query, and whether it is a page (called
    with the role's session cookie instead of its token)."""

    expect: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    query: dict[str, Any] = field(default_factory=dict)
    page: bool = False
    stream: bool = False


def C(expect: dict[str, Any], **kw: Any) -> list[Call]:
    return [Call(expect, **kw)]


@dataclass
class World:
    url: str
    tokens: dict[str, str]
    cookies: dict[str, str]
    ids: dict[str, str]


def _today() -> date:
    return datetime.now(TZ).date()


def _now_iso() -> str:
    return datetime.now(TZ).isoformat(timespec="seconds")


VITALS = {"systolic": 120, "diastolic": 80}
ENCOUNTER = {"kind": "visit", "notes": "入户探访"}
ASSESSMENT_SCORES = {
    "eating": 10,
    "bathing": 5,
    "grooming": 5,
    "dressing": 10,
    "bowel": 10,
    "bladder": 10,
    "toileting": 10,
    "transfer": 15,
    "walking": 15,
    "stairs": 10,
}

# Default path parameters (World.ids keys). Changes go to records made for the purpose or to
# ids that do not exist, so that one role's allowed change does not alter what the next sees.
DEFAULT_PARAMS = {
    "elder_id": "elder_a",
    "device_id": "button_a",
    "alert_id": "alert_none",
    "responder_id": "watcher",
    "pager_id": "watcher_pager",
    "provider_id": "provider",
    "order_id": "order_none",
    "code": "service_code",
    "source_id": "source",
    "username": "victim_user",
    "link_id": "spare_link",
    "account": "watcher_account",
    "claim_id": "claim",
    "transaction_id": "txn_none",
    "mute_id": "mute_none",
    "pairing_id": "pairing_none",
    "shift_id": "shift_none",
    "key": "register_key",
    "mute": "mute_none",
}

TABLE: dict[tuple[str, str], list[Call]] = {
    # --- pages (session cookies) ---------------------------------------------------------
    ("GET", "/"): C(
        exact(
            admin=303,
            staff=303,
            watcher=303,
            volunteer=303,
            family=303,
            service_worker=200,
            none=303,
        ),
        page=True,
    ),
    ("GET", "/login"): C(only(*PEOPLE_ROLES, none=200), page=True),
    ("GET", "/board"): C(
        exact(
            admin=200,
            staff=200,
            watcher=403,
            volunteer=403,
            family=403,
            service_worker=403,
            none=303,
        ),
        page=True,
    ),
    ("GET", "/office"): C(
        exact(
            admin=200,
            staff=200,
            watcher=403,
            volunteer=403,
            family=403,
            service_worker=403,
            none=303,
        ),
        page=True,
    ),
    ("GET", "/phone"): C(
        exact(
            admin=403,
            staff=200,
            watcher=200,
            volunteer=200,
            family=403,
            service_worker=403,
            none=303,
        ),
        page=True,
    ),
    ("GET", "/family"): C(
        exact(
            admin=403,
            staff=403,
            watcher=403,
            volunteer=403,
            family=200,
            service_worker=403,
            none=303,
        ),
        page=True,
    ),
    ("GET", "/phone/manifest.webmanifest"): C(PUBLIC, page=True),
    ("GET", "/phone/sw.js"): C(PUBLIC, page=True),
    ("MOUNT", "/static"): C(PUBLIC, params={"path": "login.js"}, page=True),
    # --- operations and documentation ------------------------------------------------------
    # no credential needed; 503 here because this app's broker is never connected
    ("GET", "/healthz"): C({r: 503 for r in ROLES}),
    ("GET", "/metrics"): C(PUBLIC),
    ("GET", "/openapi.json"): C(PUBLIC),
    ("GET", "/docs"): C(PUBLIC),
    ("GET", "/docs/oauth2-redirect"): C(PUBLIC),
    ("GET", "/redoc"): C(PUBLIC),
    # --- sign-in, sessions, accounts ---------------------------------------------------------
    ("POST", "/api/v1/session"): C(
        only(*PEOPLE_ROLES, none=OK),  # no credential needed: it is where one is made
        body={"username": "rt.signin", "password": PW},
    ),
    ("GET", "/api/v1/session"): C(EVERYONE),
    ("DELETE", "/api/v1/session"): C(EVERYONE),  # a token has no session: 404
    ("PUT", "/api/v1/session/password"): C(
        EVERYONE, body={"old_password": "not the old one", "new_password": "a new password"}
    ),
    ("POST", "/api/v1/users"): C(
        FULL,  # staff: helpers' accounts only (below)
        body={"username": "rt.made", "role": "volunteer", "person_id": "@volunteer"},
    )
    + C(
        only(A),
        body={"username": "rt.admin2", "role": "admin", "password": PW},
    ),
    ("GET", "/api/v1/users"): C(FULL),
    ("GET", "/api/v1/users/{username}"): C(FULL) + C(only(A), params={"username": "staff_user"}),
    ("POST", "/api/v1/users/{username}/disable"): C(FULL)
    + C(only(A), params={"username": "spare_staff_user"}),
    ("POST", "/api/v1/users/{username}/enable"): C(FULL),
    ("PUT", "/api/v1/users/{username}/password"): C(FULL, body={}),
    # --- the alarm path (contract v1) ----------------------------------------------------
    ("POST", "/api/v1/elders"): C(FULL, body={}),
    ("GET", "/api/v1/elders"): C(FULL),
    ("GET", "/api/v1/elders/{elder_id}"): C(FULL),
    ("PUT", "/api/v1/elders/{elder_id}/escalation"): C(FULL, body={}),
    ("GET", "/api/v1/elders/{elder_id}/escalation"): C(FULL),
    ("POST", "/api/v1/devices"): C(FULL, body={}),
    ("GET", "/api/v1/devices"): C(FULL),
    ("GET", "/api/v1/devices/{device_id}"): C(FULL),
    ("POST", "/api/v1/devices/{device_id}/retire"): C(FULL, params={"device_id": "dev_none"}),
    ("POST", "/api/v1/responders"): C(FULL, body={}),
    ("GET", "/api/v1/responders"): C(FULL),
    ("GET", "/api/v1/responders/{responder_id}"): C(FULL),
    ("GET", "/api/v1/alerts"): C(FULL),
    ("GET", "/api/v1/alerts/{alert_id}"): C(FULL),
    ("POST", "/api/v1/alerts/{alert_id}/ack"): C(FULL),
    ("POST", "/api/v1/alerts/{alert_id}/arrive"): C(FULL),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): C(FULL, body={"outcome": "false_alarm"}),
    ("GET", "/api/v1/quarantine"): C(FULL),
    # --- paging (issue 3) --------------------------------------------------------------------
    ("POST", "/api/v1/elders/{elder_id}/pairings"): C(FULL, body={}),
    ("GET", "/api/v1/elders/{elder_id}/pairings"): C(FULL),
    ("DELETE", "/api/v1/elders/{elder_id}/pairings/{pairing_id}"): C(FULL),
    ("POST", "/api/v1/roster/shifts"): C(FULL, body={}),
    ("GET", "/api/v1/roster/shifts"): C(FULL),
    ("DELETE", "/api/v1/roster/shifts/{shift_id}"): C(FULL),
    ("PUT", "/api/v1/responders/{responder_id}/channels"): C(FULL, body={}),
    ("GET", "/api/v1/responders/{responder_id}/channels"): C(FULL),
    ("GET", "/api/v1/alerts/{alert_id}/deliveries"): C(FULL),
    # --- rules (water, gas, health) ------------------------------------------------------------
    ("PUT", "/api/v1/elders/{elder_id}/away"): C(FULL, body={}),
    ("GET", "/api/v1/elders/{elder_id}/away"): C(FULL),
    ("DELETE", "/api/v1/elders/{elder_id}/away"): C(FULL, params={"elder_id": "elder_none"}),
    ("PUT", "/api/v1/elders/{elder_id}/tags"): C(FULL, body={}),
    ("GET", "/api/v1/elders/{elder_id}/tags"): C(FULL),
    ("PATCH", "/api/v1/devices/{device_id}"): C(FULL, body={}),
    ("POST", "/api/v1/devices/{device_id}/mutes"): C(FULL, body={}),
    ("GET", "/api/v1/devices/{device_id}/mutes"): C(FULL),
    ("DELETE", "/api/v1/devices/{device_id}/mutes/{mute_id}"): C(FULL),
    ("GET", "/api/v1/devices/{device_id}/rules"): C(FULL),
    ("PUT", "/api/v1/elders/{elder_id}/water-rules"): C(FULL, body={"fixed_min_l": 8}),
    ("GET", "/api/v1/elders/{elder_id}/water-rules"): C(FULL),
    ("DELETE", "/api/v1/elders/{elder_id}/water-rules"): C(FULL),
    ("GET", "/api/v1/suppressions"): C(FULL),
    ("GET", "/api/v1/incidents"): C(FULL),
    ("GET", "/api/v1/rule-events"): C(FULL),
    # --- history and reports -----------------------------------------------------------------
    ("GET", "/api/v1/devices/{device_id}/history"): C(FULL),
    ("GET", "/api/v1/elders/{elder_id}/water-use"): C(FULL),
    ("GET", "/api/v1/reports/alerts"): C(FULL),
    # --- broker credentials (admin) ------------------------------------------------------------
    ("POST", "/api/v1/devices/{device_id}/mqtt-credentials"): C(
        ADMIN_ONLY, params={"device_id": "dev_none"}
    ),
    ("GET", "/api/v1/devices/{device_id}/mqtt-credentials"): C(ADMIN_ONLY),
    ("DELETE", "/api/v1/devices/{device_id}/mqtt-credentials"): C(
        ADMIN_ONLY, params={"device_id": "dev_none"}
    ),
    ("POST", "/api/v1/pagers/{pager_id}/mqtt-credentials"): C(
        ADMIN_ONLY, params={"pager_id": "pager_none"}
    ),
    ("GET", "/api/v1/pagers/{pager_id}/mqtt-credentials"): C(ADMIN_ONLY),
    ("DELETE", "/api/v1/pagers/{pager_id}/mqtt-credentials"): C(
        ADMIN_ONLY, params={"pager_id": "pager_none"}
    ),
    ("GET", "/api/v1/mqtt-credentials"): C(ADMIN_ONLY),
    # --- the board (staff) -----------------------------------------------------------------
    ("GET", "/api/v1/board"): C(FULL),
    ("GET", "/api/v1/board/stream"): C(FULL, stream=True),
    ("GET", "/api/v1/board/elders/{elder_id}/card"): C(FULL),
    ("GET", "/api/v1/board/homes"): C(FULL),
    ("GET", "/api/v1/board/refused"): C(FULL),
    ("POST", "/api/v1/board/refused/{quarantine_id}/dismiss"): C(
        FULL, params={"quarantine_id": "999999"}
    ),
    ("POST", "/api/v1/alerts/{alert_id}/assign"): C(FULL, body={"responder_id": "@watcher"}),
    # --- the phone page (watchers, volunteers, staff acting for a person) -----------------
    ("GET", "/api/v1/me"): C(PHONE),
    ("GET", "/api/v1/me/pages"): C(PHONE),
    ("POST", "/api/v1/me/replies"): C(PHONE, body={"alert_id": "al_none", "action": "ack"}),
    ("GET", "/api/v1/me/stream"): C(PHONE, stream=True),
    # --- the family page ---------------------------------------------------------------------
    ("GET", "/api/v1/family/elders"): C(FAMILY_ONLY),
    ("GET", "/api/v1/family/elders/{elder_id}"): C(FAMILY_ONLY)
    + C(only(hidden=(F,)), params={"elder_id": "elder_b"}),
    ("GET", "/api/v1/family/elders/{elder_id}/live"): C(FAMILY_ONLY, stream=True)
    + C(only(hidden=(F,)), params={"elder_id": "elder_b"}, stream=True),
    # --- the service worker's office ---------------------------------------------------------
    ("GET", "/api/v1/worker/orders"): C(only(SW)),
    # --- care records (every care role; scoped) ------------------------------------------------
    ("POST", "/api/v1/care/elders"): C(CARE_STAFF, body="@registry_body"),
    ("GET", "/api/v1/care/elders"): C(CARE),
    ("POST", "/api/v1/care/elders/import"): C(CARE_STAFF, body="@xlsx"),
    ("GET", "/api/v1/care/elders/{elder_id}"): C(CARE)
    + C(only(A, S, V, hidden=(W, F)), params={"elder_id": "elder_b"}),
    ("PATCH", "/api/v1/care/elders/{elder_id}"): C(only(A, S), body={"phone": "13800000000"}),
    ("GET", "/api/v1/care/elders/{elder_id}/id-card"): C(only(A, S)),
    ("POST", "/api/v1/care/elders/{elder_id}/status"): C(CARE_STAFF, body={"status": "active"}),
    ("GET", "/api/v1/care/elders/{elder_id}/status"): C(CARE_STAFF),
    ("POST", "/api/v1/care/elders/{elder_id}/vitals"): C(CARE_STAFF, body="@vitals"),
    ("GET", "/api/v1/care/elders/{elder_id}/vitals"): C(CARE_HEALTH)
    + C(only(A, S, hidden=(W, F)), params={"elder_id": "elder_b"}),
    ("GET", "/api/v1/care/elders/{elder_id}/vitals/trends"): C(CARE_HEALTH),
    ("POST", "/api/v1/care/elders/{elder_id}/encounters"): C(CARE_STAFF, body="@encounter"),
    ("GET", "/api/v1/care/elders/{elder_id}/encounters"): C(CARE_HEALTH),
    ("POST", "/api/v1/care/elders/{elder_id}/assessments"): C(CARE_STAFF, body="@assessment"),
    ("GET", "/api/v1/care/elders/{elder_id}/assessments"): C(CARE_HEALTH),
    ("GET", "/api/v1/care/elders/{elder_id}/assessments/current"): C(CARE_HEALTH),
    ("PUT", "/api/v1/care/people/{responder_id}/profile"): C(
        CARE_STAFF, body={"skills": ["量血压"]}
    ),
    # the watcher's profile: the watcher themself, staff and admin; other people: 404
    ("GET", "/api/v1/care/people/{responder_id}/profile"): C(only(A, S, W, hidden=(V, F))),
    ("GET", "/api/v1/care/people"): C(CARE_STAFF),
    ("POST", "/api/v1/care/elders/{elder_id}/pairings"): C(
        CARE_STAFF, body={"person_id": "@party", "kind": "party_member"}
    )
    + C(  # an elder the watcher and the family member may not see: 404, not 403
        only(A, S, hidden=(W, F)),
        params={"elder_id": "elder_b"},
        body={"person_id": "@party", "kind": "party_member", "order": 1},
    ),
    ("GET", "/api/v1/care/elders/{elder_id}/pairings"): C(CARE_STAFF),
    ("POST", "/api/v1/care/family-links"): C(
        CARE_STAFF, body={"elder_id": "@elder_b", "person_id": "@spare_family", "relation": "child"}
    ),
    ("GET", "/api/v1/care/family-links"): C(only(A, S, F)),  # a relative: their own links
    ("POST", "/api/v1/care/family-links/{link_id}/approve"): C(CARE_STAFF)
    + C(only(A, S, hidden=(W, F)), params={"link_id": "spare_link_b"}),
    ("POST", "/api/v1/care/family-links/{link_id}/confirm"): C(
        CARE_STAFF, body={"on_behalf": False}
    )
    + C(only(A, S, hidden=(W, F)), params={"link_id": "spare_link_b"}, body={"on_behalf": False}),
    ("POST", "/api/v1/care/family-links/{link_id}/revoke"): C(
        CARE_STAFF, body={"reason": "表格测试"}
    )
    + C(only(A, S, hidden=(W, F)), params={"link_id": "spare_link_b"}, body={"reason": "表格测试"}),
    ("GET", "/api/v1/care/registers/{key}"): C(CARE_STAFF),
    ("GET", "/api/v1/care/registers/{key}.xlsx"): C(CARE_STAFF),
    ("GET", "/api/v1/care/audit"): C(ADMIN_ONLY),  # the audit log: administrators
    # --- points (issue 6): the station's ledger ------------------------------------------------
    ("POST", "/api/v1/points/accounts"): C(FULL, body={}),
    ("GET", "/api/v1/points/accounts"): C(FULL),
    ("GET", "/api/v1/points/accounts/{account}"): C(FULL),
    ("GET", "/api/v1/points/accounts/{account}/statement"): C(FULL),
    ("GET", "/api/v1/points/accounts/{account}/statement.xlsx"): C(FULL),
    ("GET", "/api/v1/points/audit"): C(FULL),
    ("GET", "/api/v1/points/check"): C(FULL),
    ("GET", "/api/v1/points/claims"): C(FULL),
    ("POST", "/api/v1/points/claims/alarm"): C(FULL, body={}),
    ("POST", "/api/v1/points/claims/award"): C(FULL, body={}),
    ("POST", "/api/v1/points/claims/service"): C(FULL, body={}),
    ("GET", "/api/v1/points/claims/{claim_id}"): C(FULL),
    ("POST", "/api/v1/points/claims/{claim_id}/post"): C(FULL, params={"claim_id": "claim_none"}),
    ("POST", "/api/v1/points/claims/{claim_id}/refuse"): C(
        FULL, params={"claim_id": "claim_none"}, body={}
    ),
    ("POST", "/api/v1/points/claims/{claim_id}/verify"): C(
        FULL, params={"claim_id": "claim_none"}, body={}
    ),
    ("POST", "/api/v1/points/gifts"): C(FULL, body={}),
    ("GET", "/api/v1/points/policy"): C(FULL),
    ("POST", "/api/v1/points/redemptions"): C(FULL, body={}),
    ("GET", "/api/v1/points/reports/monthly"): C(FULL),
    ("GET", "/api/v1/points/reports/monthly.xlsx"): C(FULL),
    ("POST", "/api/v1/points/reversals"): C(FULL, body={}),
    ("GET", "/api/v1/points/transactions/{transaction_id}"): C(FULL),
    # --- services (issue 5): the station's; the worker's own steps -----------------------------
    ("POST", "/api/v1/services"): C(FULL, body={}),
    ("GET", "/api/v1/services"): C(FULL),
    ("GET", "/api/v1/services/{code}"): C(FULL),
    ("PATCH", "/api/v1/services/{code}"): C(FULL, params={"code": "svc-none"}, body={}),
    ("DELETE", "/api/v1/services/{code}"): C(FULL, params={"code": "svc-none"}),
    ("POST", "/api/v1/providers"): C(FULL, body={}),
    ("GET", "/api/v1/providers"): C(FULL),
    ("GET", "/api/v1/providers/{provider_id}"): C(FULL),
    ("PATCH", "/api/v1/providers/{provider_id}"): C(
        FULL, params={"provider_id": "pv_none"}, body={}
    ),
    ("DELETE", "/api/v1/providers/{provider_id}"): C(FULL, params={"provider_id": "pv_none"}),
    ("POST", "/api/v1/providers/{provider_id}/agreements"): C(FULL, body={}),
    ("GET", "/api/v1/providers/{provider_id}/agreements"): C(FULL),
    ("POST", "/api/v1/providers/{provider_id}/outlets"): C(FULL, body={}),
    ("GET", "/api/v1/providers/{provider_id}/outlets"): C(FULL),
    ("POST", "/api/v1/providers/{provider_id}/workers"): C(FULL, body={}),
    ("GET", "/api/v1/providers/{provider_id}/workers"): C(FULL),
    ("PUT", "/api/v1/elders/{elder_id}/service-pin"): C(FULL, body={}),
    ("GET", "/api/v1/elders/{elder_id}/vouchers"): C(FULL),
    ("POST", "/api/v1/service-orders"): C(FULL, body={}),
    ("GET", "/api/v1/service-orders"): C(FULL),
    ("POST", "/api/v1/service-orders/generate"): C(FULL, body={}),
    ("GET", "/api/v1/service-orders/{order_id}"): C(FULL),
    ("POST", "/api/v1/service-orders/{order_id}/accept"): C(WORKER_STEP),
    ("POST", "/api/v1/service-orders/{order_id}/refuse"): C(WORKER_STEP, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/check-in"): C(WORKER_STEP, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/check-out"): C(WORKER_STEP, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/agree"): C(FULL, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/cancel"): C(FULL, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/close"): C(FULL, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/complaints"): C(FULL, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/dispatch"): C(FULL, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/feedback"): C(FULL, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/follow-ups"): C(FULL, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/generate"): C(FULL, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/settle"): C(FULL, body={}),
    ("POST", "/api/v1/service-orders/{order_id}/sign-off"): C(FULL, body={}),
    ("GET", "/api/v1/service-orders/{order_id}/signature"): C(FULL),
    ("GET", "/api/v1/service-statements/elders/{elder_id}"): C(FULL),
    ("GET", "/api/v1/service-statements/providers/{provider_id}"): C(FULL),
    ("GET", "/api/v1/service-statements/sources/{source_id}"): C(FULL),
    ("GET", "/api/v1/service-supervision"): C(FULL),
    ("GET", "/api/v1/service-supervision/follow-ups"): C(FULL),
    ("POST", "/api/v1/voucher-sources"): C(FULL, body={}),
    ("GET", "/api/v1/voucher-sources"): C(FULL),
    ("GET", "/api/v1/voucher-sources/{source_id}"): C(FULL),
    ("PUT", "/api/v1/voucher-wallets"): C(FULL, body={}),
    ("GET", "/api/v1/voucher-wallets"): C(FULL),
    ("POST", "/api/v1/vouchers/allot"): C(FULL, body={}),
    ("POST", "/api/v1/vouchers/close"): C(FULL, body={}),
    ("GET", "/api/v1/vouchers/reconciliation"): C(FULL),
    ("POST", "/api/v1/vouchers/reversals"): C(FULL, body={}),
    ("GET", "/api/v1/vouchers/transactions"): C(FULL),
}


def app_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, HEAD left out (Starlette adds it to GET);
    a mount is ("MOUNT", path)."""
    found: set[tuple[str, str]] = set()
    for rc in iter_route_contexts(app.routes):
        path = rc.path
        methods = set(rc.methods or ()) - {"HEAD"}
        if not methods:
            found.add(("MOUNT", path))
        for m in methods:
            found.add((m, path))
    return sorted(found, key=lambda k: (k[1], k[0]))


# --- the world: one app, a small seeded community, a token and a session per role ---------------


def _registry_body(ids: dict[str, str]) -> dict[str, Any]:
    from care.idcard import make_id_number

    return {
        "name": "表格测试",
        "id_card": make_id_number("110105", date(1944, 5, 6), 120 + secrets.randbelow(800)),
        "phone": "13800000001",
        "address": {
            "district": "朝阳区",
            "subdistrict": "和平街道",
            "community": "幸福里社区",
            "estate": "幸福里",
            "building": "9",
            "unit": "1",
            "room": "101",
        },
        "living_situation": "lives_alone",
        "self_care": "independent",
        "categories": [],
        "service_tier": "paid",
        "emergency_contacts": [{"name": "李明", "relation": "child", "phone": "13900000009"}],
    }


def _xlsx() -> bytes:
    import io

    from openpyxl import Workbook  # type: ignore[import-untyped]

    wb = Workbook()
    wb.active.append(["姓名"])  # a sheet the import refuses on its merits (422), not by role
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _bodies(ids: dict[str, str]) -> dict[str, Any]:
    return {
        "@registry_body": _registry_body(ids),
        "@vitals": {"measured_at": _now_iso(), **VITALS},
        "@encounter": {"occurred_at": _now_iso(), **ENCOUNTER},
        "@assessment": {
            "assessed_on": _today().isoformat(),
            "assessor": "评估员甲",
            "second_assessor": "评估员乙",
            "scores": ASSESSMENT_SCORES,
        },
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("roles")
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{folder / 'roles.db'}",
        mqtt_url="mqtt://127.0.0.1:9",  # never connected: no route here needs the broker
        admin_token=ADMIN,
        data_key=generate_data_key(),
        log_level="WARNING",
    )
    gw = Gateway(settings)
    migrate(gw.engine)
    app = create_app(gw.runtime)
    with serving(app) as url:
        community = seed(url, ADMIN, 3, wait_s=5, modules=("care",))
        ids = _prepare(url, gw, community)
        tokens, cookies = _principals(gw, ids)
        yield World(url, tokens, cookies, ids)
    gw.engine.dispose()


def _prepare(url: str, gw: Gateway, community: Any) -> dict[str, str]:
    """The records the table refers to (World.ids)."""
    home_a = community.homes[0]
    by_pager = {p.pager_id: p for p in community.people}
    watcher = by_pager[home_a.watchers[0]]
    family = by_pager[home_a.family[0]]
    volunteer = by_pager[home_a.volunteers[0]]
    staff = by_pager[community.staff[0]]
    home_b = next(
        h
        for h in community.homes[1:]
        if watcher.pager_id not in h.watchers and family.pager_id not in h.family
    )
    ids = {
        "elder_a": str(home_a.elder_id),
        "elder_b": str(home_b.elder_id),
        "button_a": home_a.call_button,
        "watcher": str(watcher.id),
        "watcher_pager": watcher.pager_id,
        "family": str(family.id),
        "volunteer": str(volunteer.id),
        "staff": str(staff.id),
        "watcher_account": f"member:{watcher.id}",
        "register_key": "by_age_band",
        "source": "district-civil-affairs",
        "service_code": "meal-lunch",
    }
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=20) as c:

        def made(resp: httpx.Response) -> Any:
            assert resp.status_code in (200, 201), resp.text[:300]
            return resp.json()

        spare = made(c.post("/api/v1/responders", json={"name": "备用家属", "role": "family"}))
        party = made(c.post("/api/v1/responders", json={"name": "党员甲", "role": "volunteer"}))
        ids["spare_family"] = spare["id"]
        ids["party"] = party["id"]
        for key, elder in (("spare_link", ids["elder_a"]), ("spare_link_b", ids["elder_b"])):
            link = made(
                c.post(
                    "/api/v1/care/family-links",
                    json={"elder_id": elder, "person_id": spare["id"], "relation": "child"},
                )
            )
            ids[key] = link["id"]
        provider = made(
            c.post("/api/v1/providers", json={"name": "表格家政", "kind": "housekeeping"})
        )
        worker = made(
            c.post(f"/api/v1/providers/{provider['id']}/workers", json={"name": "赵阿姨"})
        )
        ids["provider"] = provider["id"]
        ids["worker"] = worker["id"]
        claims = made(c.get("/api/v1/points/claims", params={"limit": 1}))
        ids["claim"] = claims[0]["id"] if claims else "pc_none"
    now = int(time.time() * 1000)
    for username, role, person in (
        ("rt.signin", "staff", None),
        ("rt.victim", "volunteer", ids["volunteer"]),
        ("rt.staff.b", "staff", None),
        ("rt.staff.c", "staff", None),
    ):
        create_user(gw.engine, username, PW, role, now_ms=now, person_id=person)
    ids.update(victim_user="rt.victim", staff_user="rt.staff.b", spare_staff_user="rt.staff.c")
    return ids


def _principals(gw: Gateway, ids: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A bearer token (API) and a session cookie (pages) per role, for the same person."""
    people = {
        "admin": None,
        "staff": ids["staff"],
        "watcher": ids["watcher"],
        "volunteer": ids["volunteer"],
        "family": ids["family"],
        "service_worker": ids["worker"],
    }
    now = int(time.time() * 1000)
    tokens = {"admin": ADMIN}
    cookies: dict[str, str] = {}
    for role, person in people.items():
        if role != "admin":
            tokens[role] = create_token(gw.engine, f"rt-{role}", role, now_ms=now, person_id=person)
        username = f"rt.page.{role.replace('_', '-')}"
        create_user(gw.engine, username, PW, role, now_ms=now, person_id=person)
        cookies[role], _ = create_session(gw.engine, username, now_ms=now, lifetime_s=3600)
    return tokens, cookies


# --- the test ------------------------------------------------------------------------------------


def _resolve(value: Any, world: World, bodies: dict[str, Any]) -> Any:
    """`@name` -> World.ids[name] (or a prepared body); dicts and lists through."""
    if isinstance(value, str) and value.startswith("@"):
        return bodies[value] if value in bodies else world.ids[value[1:]]
    if isinstance(value, dict):
        return {k: _resolve(v, world, bodies) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, world, bodies) for v in value]
    return value


def _path(template: str, call: Call, world: World) -> str:
    if template == "/static":
        return f"/static/{call.params['path']}"
    out = template
    for name in re.findall(r"{(\w+)}", template):
        key = call.params.get(name, DEFAULT_PARAMS.get(name, name))
        value = world.ids.get(key, key)  # an id of the world, or a literal (one that is none)
        out = out.replace("{" + name + "}", value)
    return out


def _send(client: httpx.Client, method: str, path: str, call: Call, role: str, world: World) -> int:
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if role != "none":
        if call.page:
            cookies[SESSION_COOKIE] = world.cookies[role]
        else:
            headers["Authorization"] = f"Bearer {world.tokens[role]}"
    kwargs: dict[str, Any] = {}
    body = None if call.body == "@xlsx" else _resolve(call.body, world, _bodies(world.ids))
    if call.body == "@xlsx":
        kwargs["content"] = _xlsx()
        headers["Content-Type"] = (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
    elif body is not None:
        kwargs["json"] = body
    request = client.build_request(
        "GET" if method == "MOUNT" else method,
        path,
        headers=headers,
        cookies=cookies,
        params=call.query,
        **kwargs,
    )
    response = client.send(request, stream=True)
    try:
        if not call.stream:
            response.read()
        return response.status_code
    finally:
        response.close()


def _matches(expected: Any, code: int) -> bool:
    if expected == OK:
        return code not in (401, 403) and code < 500
    return bool(code == expected)


ROUTES = sorted(TABLE)


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_route_by_role(route: tuple[str, str], world: World) -> None:
    method, template = route
    wrong: list[str] = []
    with httpx.Client(base_url=world.url, timeout=15, follow_redirects=False) as client:
        for n, call in enumerate(TABLE[route]):
            missing = [r for r in ROLES if r not in call.expect]
            assert not missing, f"{method} {template} call {n}: no outcome for {missing}"
            path = _path(template, call, world)
            for role in ROLES:
                code = _send(client, method, path, call, role, world)
                if not _matches(call.expect[role], code):
                    wrong.append(f"{role}: {code} (expected {call.expect[role]}) {path}")
    assert not wrong, f"{method} {template}:\n  " + "\n  ".join(wrong)


def test_every_route_is_in_the_table(tmp_path: Any) -> None:
    """A route nobody classified fails here, listed, until a row of TABLE says who may use it."""
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        mqtt_url="mqtt://127.0.0.1:9",
    )
    routes = app_routes(create_app(Gateway(settings).runtime))
    unclassified = [f"{m} {p}" for m, p in routes if (m, p) not in TABLE]
    gone = [f"{m} {p}" for m, p in TABLE if (m, p) not in routes]
    assert not unclassified, "routes missing from TABLE (who may use them?):\n  " + "\n  ".join(
        unclassified
    )
    assert not gone, "TABLE rows for routes that no longer exist:\n  " + "\n  ".join(gone)


def test_the_table_can_tell_a_wrong_door(world: World) -> None:
    """The check itself: a family token on a staff route is 403, and a table that said OK would
    be caught (so a test that passes means the doors were tried)."""
    with httpx.Client(base_url=world.url, timeout=15) as client:
        call = Call(FULL)
        code = _send(client, "GET", "/api/v1/elders", call, "family", world)
        assert code == 403 and not _matches(OK, code)
        code = _send(client, "GET", "/api/v1/elders", call, "none", world)
        assert code == 401
        code = _send(client, "GET", f"/api/v1/family/elders/{world.ids['elder_b']}", call, F, world)
        assert code == 404 and not _matches(OK, 403)
