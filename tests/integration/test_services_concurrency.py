"""Concurrent spending of vouchers on PostgreSQL, through real HTTP (uvicorn on 127.0.0.1): many
threads, each with its own HTTP client (and so its own request thread and database connection
in the gateway), sign off visits at the same moment against one elder's balance. Only what fits
succeeds, the rest are refused with 409 and the reason, nothing goes negative, nothing answers
500, and the reconciliation holds afterwards. Bounded: a few dozen requests, a timeout each."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.runtime import Runtime
from tests.integration.test_api import serving
from tests.integration.test_services_api import ADMIN, SH, Clock, World, build_runtime, ok

pytestmark = [
    pytest.mark.parametrize(
        "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
    ),
    pytest.mark.timeout(180),
]

DAY = datetime(2026, 11, 2, 11, 30, tzinfo=SH)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 28, 20, 0, tzinfo=SH))


@pytest.fixture
def rt(db_url: str, clock: Clock) -> Iterator[Runtime]:
    runtime = build_runtime(db_url, clock)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def url(rt: Runtime) -> Iterator[str]:
    with serving(create_app(rt)) as base:
        yield base


@pytest.fixture
def world(rt: Runtime, clock: Clock) -> Iterator[World]:
    """Set up through the app in-process; the races then go over real HTTP."""
    with TestClient(create_app(rt), headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield World(client, clock)


def race(url: str, calls: list[Callable[[httpx.Client], httpx.Response]]) -> list[httpx.Response]:
    """Run every call at once, each on its own thread and HTTP client (its own connection)."""
    start = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60.0
        ) as client:
            client.get("/api/v1/services")  # connect before the barrier: the race is the POST
            start.wait(timeout=30)
            try:
                out[i] = calls[i](client)
            except Exception as exc:  # recorded: the assertion below names it
                out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a request hung"
    for r in out:
        assert isinstance(r, httpx.Response), r
        assert r.status_code < 500, r.text
    return out


def sign_call(oid: str, key: str | None = None) -> Callable[[httpx.Client], httpx.Response]:
    headers = {"Idempotency-Key": key} if key else {}
    return lambda c: c.post(
        f"/api/v1/service-orders/{oid}/sign-off",
        json={"method": "witnessed", "witness_id": WITNESS[0]},
        headers=headers,
    )


WITNESS: list[str] = []


def served(world: World, elder: str, n: int) -> list[str]:
    out = []
    for i in range(n):
        oid = world.order(elder)
        world.serve(oid, DAY + timedelta(days=i % 20, minutes=i))
        out.append(oid)
    return out


def test_parallel_sign_offs_spend_only_what_the_vouchers_hold(world: World, url: str) -> None:
    WITNESS[:] = [world.staff]
    a = world.elder("刘桂兰", tier="low_cost")  # 10,000 fen of meals: 10 visits of 1,000
    b = world.elder("王淑珍", tier="low_cost")
    world.allot("2026-11")
    visits_a, visits_b = served(world, a, 14), served(world, b, 12)
    results = race(url, [sign_call(o) for o in visits_a + visits_b])
    codes = Counter(
        (r.status_code, r.json()["detail"]["code"] if r.status_code != 200 else "ok")
        for r in results
    )
    assert codes == {(200, "ok"): 20, (409, "voucher_insufficient"): 6}, codes
    assert world.balance(a, "2026-11") == 0 and world.balance(b, "2026-11") == 0
    for r, oid in zip(results, visits_a + visits_b, strict=True):
        state = ok(world.api.get(f"/api/v1/service-orders/{oid}"))["state"]
        assert state == ("signed_off" if r.status_code == 200 else "feedback_given")
    rec = ok(world.api.get("/api/v1/vouchers/reconciliation", params={"month": "2026-11"}))
    assert rec["ok"], rec["problems"]
    assert rec["ledger_payable_fen"] == rec["visit_subsidy_fen"] == 20 * 1000
    assert rec["ledger_elder_share_fen"] == 20 * 500


def test_one_visit_signed_off_at_once_is_paid_once(world: World, url: str) -> None:
    WITNESS[:] = [world.staff]
    elder = world.elder()
    world.allot("2026-11")
    one, two = served(world, elder, 2)
    # Different keys (or none): one succeeds, the others find the move impossible.
    results = race(url, [sign_call(one, key=f"k{i}") for i in range(6)] + [sign_call(one)] * 2)
    codes = Counter(r.status_code for r in results)
    assert codes == {200: 1, 409: 7}, [r.text for r in results]
    assert {r.json()["detail"]["code"] for r in results if r.status_code == 409} == {
        "order_bad_move"
    }
    # The same key from several clients at once: one effect, the same answer for all.
    results = race(url, [sign_call(two, key="same-key")] * 6)
    assert {r.status_code for r in results} == {200}
    assert len({r.text for r in results}) == 1
    txns = ok(world.api.get("/api/v1/vouchers/transactions", params={"elder_id": elder}))
    assert Counter(t["kind"] for t in txns) == {"allot": 1, "consume": 2}
    assert world.balance(elder, "2026-11") == 46000 - 2 * 1500
    assert ok(world.api.get("/api/v1/vouchers/reconciliation"))["ok"]


def test_parallel_allotment_runs_and_reversals_apply_once(world: World, url: str) -> None:
    WITNESS[:] = [world.staff]
    elders = [world.elder(f"老人{c}") for c in "甲乙丙丁"]
    results = race(url, [lambda c: c.post("/api/v1/vouchers/allot", json={"month": "2026-11"})] * 5)
    assert sum(len(r.json()["done"]) for r in results) == 4  # one allotment per elder, in all
    for e in elders:
        assert world.balance(e, "2026-11") == 46000
    [visit] = served(world, elders[0], 1)
    ok(world.sign(visit))
    [consume] = ok(world.api.get("/api/v1/vouchers/transactions", params={"visit_id": visit}))
    body = {"txn_id": consume["id"], "reason": "录入错误"}
    results = race(url, [lambda c: c.post("/api/v1/vouchers/reversals", json=body)] * 5)
    codes = Counter(r.status_code for r in results)
    assert codes == {201: 1, 409: 4}, [r.text for r in results]
    assert world.balance(elders[0], "2026-11") == 46000
    # Settling it again while others try to reverse the allotment: the ledger stays whole.
    [allot] = [
        t
        for t in ok(world.api.get("/api/v1/vouchers/transactions", params={"elder_id": elders[0]}))
        if t["kind"] == "allot"
    ]
    results = race(
        url,
        [lambda c: c.post(f"/api/v1/service-orders/{visit}/settle")] * 3
        + [
            lambda c: c.post(
                "/api/v1/vouchers/reversals", json={"txn_id": allot["id"], "reason": "发错"}
            )
        ]
        * 3,
    )
    settled = sum(1 for r in results[:3] if r.status_code == 200)
    reversed_ = sum(1 for r in results[3:] if r.status_code == 201)
    assert settled <= 1 and reversed_ <= 1 and settled + reversed_ == 1, [r.text for r in results]
    bal = world.balance(elders[0], "2026-11")
    assert bal == (46000 - 1500 if settled else 0)
    rec = ok(world.api.get("/api/v1/vouchers/reconciliation"))
    # Either the visit is paid again, or the allotment was withdrawn and the visit is unpaid:
    # both are stated exactly, and no balance is ever below zero.
    assert rec["ok"] if settled else rec["problems"][0] == f"visit {visit}: not consumed"
