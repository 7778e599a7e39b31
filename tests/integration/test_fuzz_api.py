"""Fuzz the whole HTTP API from its own OpenAPI description (schemathesis): no 500 anywhere.

The app is the real one: `create_app` on a running Gateway (a private Mosquitto, a migrated
database on SQLite and on PostgreSQL), called in-process through its ASGI interface with the
admin token of the settings, so that every request passes the locks and reaches its handler.
The operations are read from the schema the app serves, so a route added later is fuzzed with
no change here.

A fuzzer that knows no ids meets a 404 at every door. The database is seeded first (the demo
community through its real client: homes, devices, people, plans, the registry, points and
service orders, and one alarm), and ids in paths, queries and bodies are sometimes swapped for
real ones, so that the bodies reach the code behind the lookup.

What runs (and why it is split so):
- `test_postgres_answers_no_server_error[<operation>]`: schemathesis' coverage phase (the
  longest strings, the extreme numbers, each enum value the schema allows: PostgreSQL enforces
  lengths and ranges that SQLite ignores) and random cases with a dictionary of hostile values
  (NUL, controls, odd unicode, numbers past a BIGINT or a double...).
- `test_sqlite_answers_no_server_error[<operation>]`: random cases only (the handlers' Python is
  the same on both databases).
- `test_every_parameter_refuses_bad_values_without_a_server_error`: each path and query
  parameter of every operation with each known-bad value (random cases meet a given value in a
  given parameter only now and then).
- `test_routes_outside_the_schema_answer_no_server_error`: the pages, static files and docs.
Checks: no 5xx above all, and what else holds for this API (see `_config`: invalid input is
refused, bodies match their models, the locks hold without a token); the rest is said there.

One item per operation and database, all of a database's on one gateway (a module-scoped
fixture: a gateway per item would cost minutes); `-k "test_postgres and service-orders"` runs
some. The schema is read at import from the same app, built without a runtime: its routes are
only described there, the calls go to the running one.

Bounded for CI (about 2 minutes for all of it on 2 cores): SHOUWANG_FUZZ_EXAMPLES random cases
per operation (default 3), deterministic generation (the same cases on every run), no example
database. Longer, locally: SHOUWANG_FUZZ_EXAMPLES=100 SHOUWANG_FUZZ_FULL=1 (the coverage phase
in both modes on both databases, unexpected methods too) .venv/bin/pytest
tests/integration/test_fuzz_api.py
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import fastapi.routing
import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import BaseSchema
from sqlalchemy import Column, select
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api import create_app
from gateway.app import Gateway
from gateway.care_store import generate_data_key
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.tables import metadata
from simulators.community import seed
from tests.integration.test_api import serving
from tests.support.alarm import Mqtt, unique_base, wait_until
from tests.support.broker import PrivateMosquitto
from tests.support.databases import PostgresTestDatabases, SqliteTemplate
from tests.support.services import require

ADMIN = "admin-" + secrets.token_urlsafe(18)
EXAMPLES = int(os.environ.get("SHOUWANG_FUZZ_EXAMPLES", "3"))
FULL = os.environ.get("SHOUWANG_FUZZ_FULL", "") not in ("", "0")

# Path, query and body names whose values are ids of a table: (table, column). A table another
# change renames is skipped, never an error: the fuzz then only loses depth there.
ID_SOURCES: dict[str, tuple[str, str]] = {
    "elder_id": ("elders", "id"),
    "device_id": ("devices", "id"),
    "responder_id": ("responders", "id"),
    "pager_id": ("responders", "pager_id"),
    "alert_id": ("alerts", "id"),
    "pairing_id": ("pairings", "id"),
    "shift_id": ("duty_shifts", "id"),
    "mute_id": ("device_mutes", "id"),
    "link_id": ("family_links", "id"),
    "account": ("points_accounts", "id"),
    "member_id": ("points_accounts", "id"),
    "claim_id": ("points_claims", "id"),
    "transaction_id": ("points_transactions", "id"),
    "code": ("svc_services", "code"),
    "provider_id": ("svc_providers", "id"),
    "order_id": ("svc_orders", "id"),
    "parent_id": ("svc_orders", "id"),
    "source_id": ("svc_voucher_sources", "id"),
    "username": ("users", "username"),
}
PER_NAME = 3  # real ids offered per name
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_LIKE_AN_ID = re.compile(r"[A-Za-z0-9_.\-]{1,40}")


class _EndStreams:
    """End every Server-Sent Events answer after its first chunk, as a client that closes.

    A stream never ends by itself; the fuzz needs its status and first bytes only."""

    class _Cut(Exception):
        pass

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        streaming = False

        async def send_cut(message: Message) -> None:
            nonlocal streaming
            if message["type"] == "http.response.start":
                types = [v for k, v in message.get("headers", []) if k.lower() == b"content-type"]
                streaming = any(v.startswith(b"text/event-stream") for v in types)
            elif streaming and message["type"] == "http.response.body":
                await send({**message, "more_body": False})
                raise self._Cut
            await send(message)

        try:
            await self.app(scope, receive, send_cut)
        except BaseException as exc:  # the cut, alone or in a task group's exception group
            if not _only_cuts(exc):
                raise


def _only_cuts(exc: BaseException) -> bool:
    if isinstance(exc, _EndStreams._Cut):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cuts(inner) for inner in exc.exceptions)
    return False


def _known_ids(engine: Any) -> dict[str, list[Any]]:
    known: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        for name, (table_name, column_name) in ID_SOURCES.items():
            table = metadata.tables.get(table_name)
            if table is None or column_name not in table.c:
                continue
            column: Column[Any] = table.c[column_name]
            rows = conn.execute(
                select(column).where(column.is_not(None)).distinct().limit(PER_NAME)
            ).all()
            if rows:
                known[name] = [r[0] for r in rows]
    return known


def _id_like(value: Any) -> bool:
    return isinstance(value, str) and _LIKE_AN_ID.fullmatch(value) is not None


def _swapping(known: dict[str, list[Any]]) -> Callable[[Any, Any], st.SearchStrategy[Any]]:
    """A strategy of `value` with, now and then, a real id where a name says an id is due.
    `known` is read when the strategy is drawn from, so it may be filled later."""

    def swap(name: Any, value: Any) -> st.SearchStrategy[Any]:
        # Only a value that could be an id: a negative case's wrong value stays wrong (swapping
        # it for a real id would make the case valid while it is still counted as invalid).
        if isinstance(name, str) and known.get(name) and _id_like(value):
            return st.sampled_from([value, *known[name]])
        if isinstance(name, str) and name.endswith("_ids") and isinstance(value, list):
            single = name[:-1]
            if known.get(single) and all(_id_like(v) for v in value):
                return st.one_of(st.just(value), st.lists(st.sampled_from(known[single])))
        return walk(value)

    def walk(value: Any) -> st.SearchStrategy[Any]:
        if isinstance(value, dict):
            return st.fixed_dictionaries({k: swap(k, v) for k, v in value.items()})
        if isinstance(value, list) and value:
            return st.tuples(*(walk(v) for v in value)).map(list)
        return st.just(value)

    return swap


def _seed_services(client: httpx.Client, elder_ids: list[str]) -> None:
    """One of each service record (the demo's month of orders takes too long here)."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = client.post(path, json=body)
        assert resp.status_code in (200, 201), f"POST {path}: {resp.status_code} {resp.text}"
        return dict(resp.json())

    post(
        "/api/v1/services",
        {
            "code": "meal-lunch",
            "name_zh": "午餐送餐",
            "name_en": "lunch delivered",
            "category": "meals",
            "unit": "meal",
            "unit_price_fen": 1500,
            "share_fen": {"low_cost": 500, "paid": 1500},
        },
    )
    provider = post(
        "/api/v1/providers", {"name": "长者食堂", "kind": "canteen", "phone": "010-64001234"}
    )["id"]
    outlet = post(
        f"/api/v1/providers/{provider}/outlets",
        {"name": "幸福里网点", "address": "幸福里社区服务中心一层"},
    )["id"]
    post(f"/api/v1/providers/{provider}/workers", {"name": "马建平", "outlet_id": outlet})
    post(
        f"/api/v1/providers/{provider}/agreements",
        {"service_code": "meal-lunch", "unit_price_fen": 1500, "valid_from": "2020-01-01"},
    )
    post(
        "/api/v1/voucher-sources",
        {
            "id": "district",
            "name_zh": "区民政局服务券",
            "name_en": "District vouchers",
            "carry_over": [],
            "allotments": [{"tier": "low_cost", "category": "meals", "monthly_fen": 20000}],
        },
    )
    post(
        "/api/v1/service-orders",
        {
            "elder_id": elder_ids[0],
            "category": "meals",
            "request": "午餐送到家",
            "applied_by": {"role": "family"},
            "home": {"lat": 39.9219, "lon": 116.4436},
        },
    )


@dataclass
class Fuzzed:
    """The running app under fuzz, what it answered, and the ids the seeding made."""

    app: ASGIApp
    known: dict[str, list[Any]]
    statuses: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))


# The ids of the database being fuzzed now, for the hooks (set by the `fuzzed` fixture: one
# database's gateway at a time, since pytest groups the items by database).
KNOWN: dict[str, list[Any]] = {}


@pytest.fixture(scope="module")
def fuzz_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database for the module (not `db_url`: that one is made per test), named by
    the tests' indirect parameter: sqlite or postgres."""
    if request.param == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("sqlite_template")
        yield template.url(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
        return
    databases: PostgresTestDatabases = request.getfixturevalue("pg_databases")
    name = databases.create()
    try:
        yield databases.url(name)
    finally:
        databases.drop(name)


@pytest.fixture(scope="module")
def fuzzed(fuzz_db: str, _session_mosquitto: PrivateMosquitto | None) -> Iterator[Fuzzed]:
    """A running gateway on `fuzz_db` with a seeded community and one open alert; afterwards,
    every operation fuzzed on it must have got past the lock at least once."""
    if _session_mosquitto is None:
        require("mosquitto", "no mosquitto binary (apt-get install mosquitto)")
    base = unique_base()
    settings = Settings(
        _env_file=None,
        mqtt_url=_session_mosquitto.url,
        database_url=fuzz_db,
        mqtt_base=base,
        mqtt_client_id=f"gw-{base}",
        http_port=0,
        log_level="WARNING",
        admin_token=ADMIN,
        data_key=generate_data_key(),
    )
    gw = Gateway(settings)
    gw.start(wait_connected=5)
    mq = Mqtt(_session_mosquitto.port, base)
    try:
        assert gw.mqtt_connected(), "the gateway did not connect to the test broker"
        app = create_app(gw.runtime)
        with serving(app) as url:  # seeded through the demo's own client, over HTTP
            community = seed(url, ADMIN, n_homes=2, wait_s=5, modules=("care", "points"))
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
                _seed_services(c, [h.elder_id for h in community.homes if h.elder_id])
        mq.event(community.homes[0].call_button, "button.pressed")
        wait_until(lambda: _known_ids(gw.engine).get("alert_id"), what="the press to open an alert")
        run = Fuzzed(_EndStreams(app), {})
        run.known.update(_known_ids(gw.engine))
        KNOWN.clear()
        KNOWN.update(run.known)
        yield run
        # A fuzz whose every call met 401 tested the lock only: say so rather than pass.
        locked_out = sorted(op for op, seen in run.statuses.items() if seen <= {401})
        assert not locked_out, f"the admin token got 401 only, never a handler: {locked_out}"
    finally:
        KNOWN.clear()
        mq.close()
        gw.stop()


# --- the schema, its generation and checks -----------------------------------------------------

# The usual suspects, offered where the schema allows them (positive cases) or not (negative):
# text PostgreSQL refuses (NUL), controls, direction overrides, astral and combining characters,
# a byte order mark, digits int() reads that are not ASCII, numbers beyond a BIGINT or a double,
# and dates that are not.
HOSTILE_TEXT = [
    "\x00",
    "a\x00b",
    "\x1b[2J",
    "\r\n",
    "\u202egnp.exe",
    "\ufeff",
    "\u2028",
    "𠜎👵🏽\u0301",
    "０１２",
    "١٢٣",
    " ",
    "'; DROP TABLE elders; --",
    "../../../../etc/passwd",
    "NaN",
    "1e309",
    "99999999999999999999999",
    "2024-02-30",
    "0000-01-01T00:00:00+00:00",
    "9999-12-31T23:59:59+14:00",
    "2024-01-01T00:00:00",
]
HOSTILE_INTEGERS = [-1, 0, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]
HOSTILE_NUMBERS = [-0.0, 5e-324, 1e308, -1e308, 2.0**63]
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]  # of invalid input


def _config(*, coverage: str | None) -> SchemathesisConfig:
    """The run's settings; `coverage` is the coverage phase's mode (None: no coverage phase)."""
    return SchemathesisConfig.from_dict(
        {
            "base-url": "http://testserver",
            # As the admin, through the schema's own security scheme: schemathesis then knows
            # the credentials are real and probes the locks itself (ignored_auth).
            "auth": {"openapi": {"HTTPBearer": {"bearer": ADMIN}}},
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": True,  # the same cases on every run
                "database": "none",  # and no replay of cases found on another machine
                # The admin's token on every case; the locks are probed by ignored_auth (and
                # the role tests), so generated cases spend themselves on the handlers' inputs.
                "with-security-parameters": False,
                # Now and then a value of the dictionaries below in place of a generated one.
                "dictionaries": {
                    "string": {"dictionary": "hostile-text", "probability": 0.3},
                    "integer": {"dictionary": "hostile-integer", "probability": 0.3},
                    "number": {"dictionary": "hostile-number", "probability": 0.3},
                },
            },
            "dictionaries": {
                "hostile-text": {"values": HOSTILE_TEXT},
                "hostile-integer": {"values": HOSTILE_INTEGERS},
                "hostile-number": {"values": HOSTILE_NUMBERS},
            },
            "phases": {
                "coverage": {
                    "enabled": coverage is not None,
                    "generation": {"mode": coverage or "all"},
                    "unexpected-methods": [] if coverage != "all" else ["trace", "options"],
                },
            },
            "request-timeout": 60,
            # Kept: not_a_server_error (the point), negative_data_rejection (invalid input is
            # refused), response_schema_conformance (answers match their models),
            # content_type_conformance and response_headers_conformance (as documented),
            # missing_required_header, ignored_auth (no token or a wrong one: 401).
            "checks": {
                # Not documented: the routes declare 200 and 422 only, while 404, 409 and 403
                # are answers by design (a missing record, a conflict, a role's door).
                "status_code_conformance": {"enabled": False},
                # The routes check more than the schema says (an RFC 3339 time in a plain
                # string, an id that must exist, a date range): a schema-valid 422 is right.
                "positive_data_acceptance": {"enabled": False},
                # FastAPI makes one route per method, so a 405's Allow names that route's
                # method only: a trait of the framework, not a fault of a route.
                "allow_header_conformance": {"enabled": False},
                # Bodies against their models (the 422s of our own handler included), but not
                # formats: pydantic writes a `time` without the offset JSON Schema's "time"
                # format asks for (a quirk of the description, not of the answers).
                "response_schema_conformance": {"validate-formats": False},
                # Invalid input must be refused; a body over the size limit is refused by its
                # size first (413), which is as good a refusal as a 422.
                "negative_data_rejection": {"expected-statuses": REFUSALS},
            },
        }
    )


_swap = _swapping(KNOWN)


# Schemathesis hooks (registered on each schema below, by their names): real ids now and then.
def flatmap_path_parameters(ctx: Any, value: dict[str, Any]) -> st.SearchStrategy[Any]:
    return _swap(None, value)


def flatmap_query(ctx: Any, value: dict[str, Any]) -> st.SearchStrategy[Any]:
    return _swap(None, value)


def flatmap_body(ctx: Any, value: Any) -> st.SearchStrategy[Any]:
    return _swap(None, value)


# The description only: the app is built without a runtime (its routes are not run from it).
DESCRIBED = create_app(cast(Runtime, None))
OPENAPI = DESCRIBED.openapi()


def _schema(coverage: str | None) -> BaseSchema:
    schema = schemathesis.openapi.from_dict(
        copy.deepcopy(OPENAPI), config=_config(coverage=coverage)
    )
    for hook in (flatmap_path_parameters, flatmap_query, flatmap_body):
        schema.hook(hook)
    return schema


# The registry import takes the .xlsx file itself as the body: sent as raw bytes.
schemathesis.serializer.alias(XLSX, "application/octet-stream")

# PostgreSQL is the strict one (lengths, NUL, ranges): it gets the coverage phase too, with the
# longest strings and extreme numbers each schema allows. SQLite gets random cases only; the
# handlers' Python is the same on both. FULL: both phases, both modes, on both databases.
POSTGRES_SCHEMA = _schema("all" if FULL else "positive")
SQLITE_SCHEMA = _schema("all" if FULL else None)


def _call(case: schemathesis.Case, run: Fuzzed) -> None:
    # The schema was read from an app without a runtime: its calls (and the checks that call
    # again) go to the running one.
    case.operation.app = case.operation.schema.app = run.app
    response = case.call_and_validate()
    run.statuses[case.operation.label].add(response.status_code)


@pytest.mark.parametrize("fuzz_db", ["sqlite"], indirect=True)
@SQLITE_SCHEMA.parametrize()
def test_sqlite_answers_no_server_error(case: schemathesis.Case, fuzzed: Fuzzed) -> None:
    _call(case, fuzzed)


@pytest.mark.postgres
@pytest.mark.parametrize("fuzz_db", ["postgres"], indirect=True)
@POSTGRES_SCHEMA.parametrize()
def test_postgres_answers_no_server_error(case: schemathesis.Case, fuzzed: Fuzzed) -> None:
    _call(case, fuzzed)


# --- every parameter, each known-bad value -------------------------------------------------------

# Random cases meet a given value in a given parameter only now and then; these meet every
# path and query parameter of every operation, every run: NUL (PostgreSQL refuses it in text),
# longer than any column, a number beyond a BIGINT, a direction override with astral and
# combining characters (a file name in a header, say), a number beyond a double.
SWEEP = ["a\x00b", "x" * 5000, "99999999999999999999999", "\u202e𠜎\u0301", "1e309"]


def _sweep(known: dict[str, list[Any]]) -> Iterator[tuple[str, str, dict[str, str], bool, str]]:
    """(method, url, query, takes a body, what) for each path and query parameter of every
    operation and each value of SWEEP; the other path parameters are real ids where the seeding
    made some."""
    for template, operations in OPENAPI["paths"].items():
        for method, operation in operations.items():
            params = [p for p in operation.get("parameters", []) if p["in"] in ("path", "query")]
            real = {p["name"]: str((known.get(p["name"]) or ["x1"])[0]) for p in params}
            for param, value in itertools.product(params, SWEEP):
                url = template
                for p in params:
                    if p["in"] == "path":
                        given = value if p is param else real[p["name"]]
                        url = url.replace("{" + p["name"] + "}", quote(given, safe=""))
                query = {param["name"]: value} if param["in"] == "query" else {}
                what = f"{method.upper()} {template} {param['in']} {param['name']}={value[:20]!r}"
                yield method.upper(), url, query, "requestBody" in operation, what


@pytest.mark.parametrize(
    "fuzz_db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_every_parameter_refuses_bad_values_without_a_server_error(fuzzed: Fuzzed) -> None:
    """Each path and query parameter of every operation, alone with each value of SWEEP: never
    a 5xx (with an empty JSON body where one is taken: the parameters are checked first)."""
    failures = []
    with TestClient(
        fuzzed.app, headers={"Authorization": f"Bearer {ADMIN}"}, raise_server_exceptions=False
    ) as client:
        for method, url, query, takes_body, what in _sweep(fuzzed.known):
            got = client.request(method, url, params=query, json={} if takes_body else None)
            if got.status_code >= 500:
                failures.append(f"{what}: {got.status_code}")
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures)


# --- routes outside the schema -----------------------------------------------------------------


def _routes(app: FastAPI) -> list[tuple[str, frozenset[str]]]:
    """Every route of the app as (path, methods); a mount has no methods."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = contexts(app.routes) if contexts is not None else app.routes  # FastAPI < 0.16x
    out = []
    for route in routes:
        path = getattr(route, "path", None)
        if path is not None:
            out.append((path, frozenset(getattr(route, "methods", None) or ())))
    return out


@pytest.mark.parametrize(
    "fuzz_db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_routes_outside_the_schema_answer_no_server_error(fuzzed: Fuzzed) -> None:
    """The pages, the static files and the docs, which the schema leaves out, with hostile
    paths, queries and cookies, signed in or not."""
    routes = _routes(DESCRIBED)
    described = {(path, m.upper()) for path, ops in OPENAPI["paths"].items() for m in ops}
    seen = {(path, m) for path, methods in routes for m in methods}
    # The walk sees the routers' routes (not only the top level): else it would cover nothing.
    assert described <= seen, f"routes missed by the walk: {sorted(described - seen)[:5]}"
    outside = sorted(
        {(p, ms) for p, ms in routes if not ms or not any((p, m) in described for m in ms)}
    )
    assert any(p == "/static" for p, _ in outside), "the static files were not found"
    oddities = ["", "?next=%2F%2Fevil.example", "?lang=%ff%fe", "?x=" + "é" * 3000, "?%00=1"]
    subpaths = ["/i18n/..%2f..%2fapi.py", "/" + "a" * 4096, "/%ff", "/api.js%00.png", "/"]
    callers: list[tuple[dict[str, str], dict[str, str]]] = [  # (headers, cookies)
        ({}, {}),
        ({"Authorization": f"Bearer {ADMIN}"}, {}),
        ({}, {"shouwang_session": "x" * 4096}),
        ({}, {"shouwang_session": "'\";--%00"}),
    ]
    with TestClient(fuzzed.app, raise_server_exceptions=False) as client:
        for path, methods in outside:
            if methods and "GET" not in methods:
                continue
            path = re.sub(r"\{[^}]*\}", "0", path)  # a path parameter: any value
            targets = [path + s for s in subpaths] if not methods else [path + o for o in oddities]
            for target, (headers, jar) in itertools.product(targets, callers):
                client.cookies.clear()
                client.cookies.update(jar)
                got = client.get(target, headers=headers, follow_redirects=False)
                assert got.status_code < 500, f"GET {target} {jar}: {got.status_code}"


# --- the 500s this fuzz found, fixed (regressions) -----------------------------------------------


@pytest.mark.parametrize(
    "fuzz_db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_control_character_in_a_query_is_a_422_and_in_a_path_a_404(fuzzed: Fuzzed) -> None:
    """Found on PostgreSQL (which refuses NUL in text): ?q=%00 on the registry search, the
    incidents, points and audit filters, and /users/{name} with %00 were all 500s. One check in
    gateway/api.py now answers them: a query value is refused (422), a path names nothing (404,
    as for any id outside the id alphabet)."""
    with TestClient(fuzzed.app, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        got = client.get("/api/v1/care/elders", params={"q": "王\x00"})
        assert got.status_code == 422
        assert got.json()["detail"] == [
            {
                "type": "control_characters",
                "loc": ["query", "q"],
                "msg": "control characters are not allowed",
                "input": "王\x00",
                "en": "control characters are not allowed",
                "zh": "含有不允许的控制字符",
            }
        ]
        for url in ("/api/v1/incidents?building=%00", "/api/v1/points/claims?member_id=a%0Ab"):
            assert client.get(url).status_code == 422, url
        for url in ("/api/v1/users/a%00b", "/api/v1/devices/%1F", "/static/a%00.js"):
            assert client.get(url).status_code == 404, url
        assert client.get("/api/v1/care/elders", params={"q": "王"}).status_code == 200


@pytest.mark.parametrize(
    "fuzz_db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_family_links_refuse_an_elder_id_no_elder_can_have(fuzzed: Fuzzed) -> None:
    """Found on PostgreSQL: ?elder_id= of 41-64 characters passed the query's check and then
    overflowed the audit row's column (a 500). Now the check is the column's 40; nothing is
    written for a refused request."""
    with TestClient(fuzzed.app, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        audited = client.get("/api/v1/care/audit", params={"limit": 1000}).json()
        got = client.get("/api/v1/care/family-links", params={"elder_id": "e" * 41})
        assert got.status_code == 422
        assert client.get("/api/v1/care/family-links", params={"elder_id": "e" * 40}).json() == []
        after = client.get("/api/v1/care/audit", params={"limit": 1000}).json()
        assert len(after) == len(audited) + 1  # the second, allowed, list only


@pytest.mark.parametrize(
    "fuzz_db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_the_voucher_journal_refuses_a_page_beyond_a_bigint(fuzzed: Fuzzed) -> None:
    """Found on both databases: ?after_seq= past a BIGINT was handed to the driver (a 500)."""
    with TestClient(fuzzed.app, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        url = "/api/v1/vouchers/transactions"
        assert client.get(url, params={"after_seq": 2**63}).status_code == 422
        assert client.get(url, params={"after_seq": 2**63 - 1}).json() == []
