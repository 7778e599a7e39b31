"""Points under concurrency, on PostgreSQL: parallel HTTP requests (one httpx client and one
thread each, released together by a barrier) against a real uvicorn server of the app, trying
to spend or give the same points. Exactly the affordable ones succeed, no balance goes below
zero, no request fails with a 500 or a deadlock, a key sent many times at once has one effect,
and afterwards the ledger sums to zero and equals its recomputation."""

# ruff: noqa: F811 (the fixtures imported below are parameters of the tests)

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select, text

from gateway.tables_points import points_order_payments, points_transactions

# The API test's fixtures (a gateway, its app served by uvicorn, three callers), shared.
from tests.integration.test_points_api import Desk, app, desk, gw, people  # noqa: F401
from tests.support.alarm import wait_until

pytestmark = [
    pytest.mark.parametrize(
        "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
    ),
    pytest.mark.timeout(180),
]


def burst(
    desk: Desk, requests: list[tuple[str, dict[str, Any], dict[str, str]]]
) -> list[httpx.Response]:
    """POST every (path, body, headers) at once, each from its own client and thread."""
    barrier = threading.Barrier(len(requests))
    base = str(desk.admin.base_url)
    auth = desk.admin.headers["Authorization"]

    def one(req: tuple[str, dict[str, Any], dict[str, str]]) -> httpx.Response:
        path, body, headers = req
        with httpx.Client(base_url=base, headers={"Authorization": auth}, timeout=60) as c:
            barrier.wait(timeout=30)
            return c.post(path, json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(one, requests))


def codes(responses: list[httpx.Response]) -> Counter[tuple[int, str | None]]:
    out: Counter[tuple[int, str | None]] = Counter()
    for r in responses:
        detail = r.json().get("detail") if r.status_code >= 400 else None
        out[(r.status_code, detail.get("code") if isinstance(detail, dict) else None)] += 1
    return out


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def sound(desk: Desk) -> dict[str, str]:
    body = desk.admin.get("/api/v1/points/check").json()
    assert body["ok"], body["problems"]
    balances: dict[str, str] = body["balances"]
    assert all(not v.startswith("-") for k, v in balances.items() if k != "issuance:bank"), balances
    return balances


def test_parallel_gifts_spend_each_point_once(desk: Desk, gw: Any) -> None:
    people(gw)
    for m in ("v1", "w1", "w2"):
        desk.open(m)
    desk.award("v1", "10")
    gifts = [
        (
            "/api/v1/points/gifts",
            {
                "from_member_id": "v1",
                "to": ["w1", "w2", "pool:hardship"][i % 3],
                "points": "1",
                "operator": {"role": "self"},
            },
            key(),
        )
        for i in range(30)
    ]
    got = codes(burst(desk, gifts))
    assert got == {(201, None): 10, (422, "insufficient_balance"): 20}, got
    balances = sound(desk)
    assert balances.get("member:v1", "0") == "0"
    given = sum(int(balances.get(k, "0")) for k in ("member:w1", "member:w2", "pool:hardship"))
    assert given == 10


def test_a_key_sent_many_times_at_once_has_one_effect(desk: Desk, gw: Any) -> None:
    people(gw)
    for m in ("v1", "w1"):
        desk.open(m)
    desk.award("v1", "5")
    same = key()
    body = {"from_member_id": "v1", "to": "w1", "points": "2", "operator": {"role": "self"}}
    responses = burst(desk, [("/api/v1/points/gifts", body, same) for _ in range(12)])
    assert codes(responses) == {(201, None): 12}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 11
    assert desk.balance("v1") == "3" and desk.balance("w1") == "2"
    with gw.engine.connect() as c:
        kinds = [r.kind for r in c.execute(select(points_transactions.c.kind))]
    assert Counter(kinds) == {"earn": 1, "gift": 1}
    sound(desk)


def test_gifts_both_ways_at_once_neither_deadlock_nor_lose(desk: Desk, gw: Any) -> None:
    people(gw)
    for m in ("w1", "w2"):
        desk.open(m)
    desk.award("w1", "6")  # enough for all twelve of one's gifts before any arrives
    desk.award("w2", "6")
    gifts = [
        (
            "/api/v1/points/gifts",
            {
                "from_member_id": a,
                "to": b,
                "points": "0.5",
                "operator": {"role": "self"},
            },
            key(),
        )
        for i in range(24)
        for a, b in [("w1", "w2") if i % 2 else ("w2", "w1")]
    ]
    got = codes(burst(desk, gifts))
    assert got == {(201, None): 24}, got  # 12 each way: every one affordable
    balances = sound(desk)
    assert (balances["member:w1"], balances["member:w2"]) == ("6", "6")


def test_redemptions_race_for_the_same_points_and_the_same_order(
    desk: Desk,
    gw: Any,
) -> None:
    people(gw)
    for m in ("e1", "v1"):
        desk.open(m)
    desk.award("v1", "5")
    ok_gift = {"from_member_id": "v1", "to": "e1", "points": "3", "operator": {"role": "self"}}
    assert desk.admin.post("/api/v1/points/gifts", json=ok_gift, headers=key()).status_code == 201
    pool = {
        "from_member_id": "v1",
        "to": "pool:hardship",
        "points": "2",
        "operator": {"role": "self"},
    }
    assert desk.admin.post("/api/v1/points/gifts", json=pool, headers=key()).status_code == 201
    desk.catalogue()
    orders = [desk.order("e1", "clean-home") for _ in range(10)]
    shared = desk.order("e1", "clean-home")

    def order(i: int, payer: str = "e1", order_id: str | None = None) -> dict[str, Any]:
        body = {
            "payer": payer,
            "points": "1",
            "service_code": "clean-home",
            "order_id": order_id or orders[i],
            "category": "cleaning",
        }
        if payer.startswith("pool:"):
            body.update(beneficiary_id="e1", requested_by="s1")
        return body

    # Ten orders, three points: three are paid.
    got = codes(burst(desk, [("/api/v1/points/redemptions", order(i), key()) for i in range(10)]))
    assert got == {(201, None): 3, (422, "insufficient_balance"): 7}, got
    # One order paid from the pool by six desks at once: paid once.
    before = _count(gw)
    race = [
        ("/api/v1/points/redemptions", order(0, "pool:hardship", shared), key()) for _ in range(6)
    ]
    got = codes(burst(desk, race))
    assert got == {(201, None): 1, (409, "order_already_paid"): 5}, got
    assert _count(gw) == before + 1
    balances = sound(desk)
    assert balances.get("member:e1", "0") == "0" and balances["pool:hardship"] == "1"


def _count(gateway: Any) -> int:
    with gateway.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(points_transactions)).scalar())


def test_an_order_paid_from_two_accounts_at_once_is_paid_once(desk: Desk, gw: Any) -> None:
    """The elder and the pool pay one order at the same moment: they lock different accounts,
    so only the order (its row lock, and the unique key on its live payment) keeps them apart."""
    people(gw)
    for m in ("e1", "v1"):
        desk.open(m)
    desk.award("v1", "6")
    for to in ("e1", "pool:hardship"):
        body = {"from_member_id": "v1", "to": to, "points": "3", "operator": {"role": "self"}}
        assert desk.admin.post("/api/v1/points/gifts", json=body, headers=key()).status_code == 201
    desk.catalogue()
    order_id = desk.order("e1", "clean-home")
    pay = {
        "payer": "e1",
        "points": "1",
        "service_code": "clean-home",
        "order_id": order_id,
        "category": "cleaning",
    }
    pool = {**pay, "payer": "pool:hardship", "beneficiary_id": "e1", "requested_by": "s1"}
    race = [("/api/v1/points/redemptions", b, key()) for b in (pay, pool) * 4]
    got = codes(burst(desk, race))
    assert got == {(201, None): 1, (409, "order_already_paid"): 7}, got
    balances = sound(desk)
    assert int(balances["member:e1"]) + int(balances["pool:hardship"]) == 5


def _waiting_on_locks(gateway: Any) -> int:
    """Backends of this test's database waiting for a row lock (a fresh snapshot each time)."""
    with gateway.engine.connect() as c:
        return int(
            c.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar()
        )


def test_a_cancel_racing_the_payment_of_its_order_refunds_it(desk: Desk, gw: Any) -> None:
    """A redemption of an order and the order's cancel at once: either the cancel comes first
    and the order is not paid, or the payment does and the cancel refunds it; never a cancelled
    order paid. First forced: the test holds the redemption after its checks, just before its
    commit (it waits on a payment row the test has inserted and not committed), and lets the
    cancel run meanwhile. Then a burst of both on several orders at once."""
    people(gw)
    for m in ("e1", "v1"):
        desk.open(m)
    desk.award("v1", "8")
    gift = {"from_member_id": "v1", "to": "e1", "points": "8", "operator": {"role": "self"}}
    assert desk.admin.post("/api/v1/points/gifts", json=gift, headers=key()).status_code == 201
    desk.catalogue()
    order_id = desk.order("e1", "clean-home")
    pay = {
        "payer": "e1",
        "points": "1",
        "service_code": "clean-home",
        "order_id": order_id,
        "category": "cleaning",
    }
    base, auth = str(desk.admin.base_url), desk.admin.headers["Authorization"]

    def post(path: str, body: dict[str, Any]) -> httpx.Response:
        with httpx.Client(base_url=base, headers={"Authorization": auth}, timeout=60) as c:
            return c.post(path, json=body, headers=key())

    with ThreadPoolExecutor(max_workers=2) as pool:
        with gw.engine.connect() as hold:
            hold.execute(
                insert(points_order_payments).values(order_ref=order_id, transaction_id="held")
            )
            paying = pool.submit(post, "/api/v1/points/redemptions", pay)
            wait_until(lambda: _waiting_on_locks(gw) >= 1, 20, "the redemption to wait")
            cancelling = pool.submit(
                post, f"/api/v1/service-orders/{order_id}/cancel", {"reason": "住院 in hospital"}
            )
            # With the order's row locked by the redemption, the cancel waits for it to commit;
            # without that lock the cancel is done by now, having seen no payment.
            wait_until(lambda: cancelling.done() or _waiting_on_locks(gw) >= 2, 20, "the cancel")
            hold.rollback()
        paid, cancelled = paying.result(60), cancelling.result(60)
    assert (paid.status_code, cancelled.status_code) == (201, 200), (paid.text, cancelled.text)
    assert cancelled.json()["state"] == "cancelled"
    with gw.engine.connect() as c:
        kinds = c.execute(
            select(points_transactions.c.kind)
            .where(points_transactions.c.ref == order_id)
            .order_by(points_transactions.c.seq)
        ).scalars()
        assert list(kinds) == ["redeem", "refund"]
        left = select(points_order_payments).where(points_order_payments.c.order_ref == order_id)
        assert c.execute(left).first() is None
    assert desk.balance("e1") == "8"

    # The same race unforced, on six orders at once: every one ends cancelled and unpaid.
    orders = [desk.order("e1", "clean-home") for _ in range(6)]
    race = [
        req
        for o in orders
        for req in (
            ("/api/v1/points/redemptions", {**pay, "order_id": o}, key()),
            (f"/api/v1/service-orders/{o}/cancel", {"reason": "改期 rescheduled"}, key()),
        )
    ]
    got = codes(burst(desk, race))
    assert got[(200, None)] == 6 and not [c for c in got if c[0] >= 500], got
    assert got[(201, None)] + got[(422, "order_not_payable")] == 6, got
    assert desk.balance("e1") == "8"
    balances = sound(desk)
    assert balances.get("redemption:bank", "0") == "0", balances
