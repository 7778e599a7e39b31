"""The points ledger through its HTTP API (uvicorn on 127.0.0.1), on a running gateway with a
private Mosquitto, on SQLite and PostgreSQL: the whole flow from earning (service hours, an
alarm answered through pagers, an award) through the community's verification and the
sub-district's posting to gifts, redemptions and reversals; bad input refused with nothing
changed; idempotent retries; statements, the monthly report and their Excel workbooks."""

from __future__ import annotations

import dataclasses
import io
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest
from sqlalchemy import func, select, update

from care.points_rules import PointsPolicy
from gateway import tables as T
from gateway.api import create_app
from gateway.auth import create_token
from gateway.tables_points import points_audit, points_claims, points_transactions
from simulators.community import seed
from tests.integration.test_api import serving
from tests.support.alarm import Mqtt, seed_home, wait_until

ADMIN = "admin-" + secrets.token_urlsafe(18)
ZONE = ZoneInfo("Asia/Shanghai")
COMMUNITY = "幸福里社区"
SERVICES = {"bath-home": "bathing", "meal-lunch": "meals", "clean-home": "cleaning"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def ok(resp: httpx.Response, code: int = 200) -> Any:
    assert resp.status_code == code, resp.text
    return resp.json()


def refused(resp: httpx.Response, status: int, code: str | None = None) -> Any:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert "detail" in body, body
    if code is not None:
        detail = body["detail"]
        found = detail["code"] if isinstance(detail, dict) else [e["type"] for e in detail]
        assert code == found or (isinstance(found, list) and code in found), body
        if isinstance(detail, dict):
            assert detail["en"] and detail["zh"], detail
    return body["detail"]


def iso(dt: datetime) -> str:
    return dt.astimezone(ZONE).isoformat()


@dataclasses.dataclass
class Desk:
    """Three callers: the clerk who enters, the community who verifies, the sub-district who
    posts (four eyes need different people)."""

    admin: httpx.Client
    clerk: httpx.Client
    auditor: httpx.Client
    gw: Any

    def ledger(self) -> dict[str, Any]:
        body = ok(self.admin.get("/api/v1/points/check"))
        assert body["ok"], body["problems"]
        return body

    def txn_count(self) -> int:
        with self.gw.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(points_transactions)).scalar())

    def claim_count(self) -> int:
        with self.gw.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(points_claims)).scalar())

    def balance(self, account: str) -> str:
        return str(ok(self.admin.get(f"/api/v1/points/accounts/{account}"))["balance"])

    def open(self, member: str, **extra: Any) -> None:
        ok(
            self.admin.post(
                "/api/v1/points/accounts",
                json={"member_id": member, "community": COMMUNITY, **extra},
            ),
            201,
        )

    def approve(self, claim_id: str) -> dict[str, Any]:
        """社区核实 by the clerk, 街道审核 by the auditor: returns the posting answer."""
        ok(self.clerk.post(f"/api/v1/points/claims/{claim_id}/verify"))
        return ok(self.auditor.post(f"/api/v1/points/claims/{claim_id}/post", headers=key()))  # type: ignore[no-any-return]

    def award(self, member: str, points: str, reason: str = "培训 training") -> str:
        body = {"member_id": member, "points": points, "reason": reason}
        resp = self.admin.post("/api/v1/points/claims/award", json=body, headers=key())
        claim_id = str(ok(resp, 201)["claim"]["id"])
        self.approve(claim_id)
        return claim_id

    def catalogue(self) -> None:
        """The catalogue services the tests pay for in points (SERVICES): by the hour, as a
        point buys an hour of service."""
        for code, category in SERVICES.items():
            service = {
                "code": code,
                "name_zh": code,
                "name_en": code,
                "category": category,
                "unit": "hour",
                "unit_price_fen": 3000,
                "share_fen": {"low_cost": 1000, "paid": 3000},
            }
            ok(self.admin.post("/api/v1/services", json=service), 201)

    def order(self, elder: str, code: str, *, agree: bool = True, hours: int = 1) -> str:
        """A service order of `elder` for `hours` of catalogue service `code` (paid tier: the
        elder pays all), agreed unless told not."""
        body = {
            "elder_id": elder,
            "category": SERVICES[code],
            "request": "积分兑换 paid in points",
            "applied_by": {"role": "staff"},
            "home": {"lat": 39.9219, "lon": 116.4436},
        }
        order_id = str(ok(self.admin.post("/api/v1/service-orders", json=body), 201)["id"])
        if agree:
            terms = {"service_code": code, "tier": "paid", "quantity": hours}
            ok(self.admin.post(f"/api/v1/service-orders/{order_id}/agree", json=terms))
        return order_id


@pytest.fixture
def gw(make_gateway: Callable[..., Any]) -> Any:
    return make_gateway(admin_token=ADMIN)


@pytest.fixture
def app(gw: Any) -> Any:
    return create_app(gw.runtime)


@pytest.fixture
def desk(gw: Any, app: Any) -> Iterator[Desk]:
    now = int(time.time() * 1000)
    clerk = create_token(gw.engine, "clerk", role="staff", now_ms=now)
    auditor = create_token(gw.engine, "auditor", role="staff", now_ms=now)
    with (
        serving(app) as url,
        httpx.Client(base_url=url, headers=bearer(ADMIN), timeout=20) as a,
        httpx.Client(base_url=url, headers=bearer(clerk), timeout=20) as c,
        httpx.Client(base_url=url, headers=bearer(auditor), timeout=20) as s,
    ):
        yield Desk(a, c, s, gw)


def people(gw: Any) -> None:
    """e1 (born 1940, cb-1), watchers w1 w2, volunteer v1, staff s1 (seed_home), and a family
    member f1 and a second staff member s2."""
    seed_home(
        gw.engine,
        responders=[
            ("w1", "watcher", "pw1", "zh-CN"),
            ("w2", "watcher", "pw2", "zh-CN"),
            ("v1", "volunteer", "pv1", "zh-CN"),
            ("s1", "staff", "ps1", "zh-CN"),
            ("s2", "staff", "ps2", "zh-CN"),
            ("f1", "family", "pf1", "zh-CN"),
        ],
    )
    with gw.engine.begin() as c:
        c.execute(update(T.elders).where(T.elders.c.id == "e1").values(birth_date=date(1940, 3, 8)))


# --- the whole flow -------------------------------------------------------------------------------


def test_the_whole_flow_from_help_to_a_paid_service(desk: Desk, gw: Any, mq: Mqtt) -> None:
    people(gw)
    for member in ("w1", "w2", "v1", "e1"):
        desk.open(member)
    refused(
        desk.admin.post("/api/v1/points/accounts", json={"member_id": "v1", "community": "x"}),
        409,
        "account_exists",
    )
    now = datetime.now(ZONE)

    # 1. A companion shift of 2 h 10 min: rounded down to 2 points by the policy's rule.
    shift = {
        "member_id": "v1",
        "category": "companionship",
        "started_at": iso(now - timedelta(hours=5)),
        "ended_at": iso(now - timedelta(hours=2, minutes=50)),
        "service_ref": "visit-2026-001",
        "reason": "陪伴张奶奶 companion shift",
    }
    headers = key()
    first = ok(desk.admin.post("/api/v1/points/claims/service", json=shift, headers=headers), 201)
    claim = first["claim"]
    assert (claim["status"], claim["points"], claim["units"], claim["minutes"]) == (
        "pending",
        "2",
        4,
        130,
    )
    assert claim["rounding"]["code"] == "floor_half_hour" and claim["rounding"]["description_zh"]
    assert claim["requested_by"] == "api:admin" and claim["operator_role"] == "staff"
    # The retry answers the same claim, once.
    again = desk.admin.post("/api/v1/points/claims/service", json=shift, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["claim"]["id"] == claim["id"]
    assert desk.claim_count() == 1
    # The same record claimed again under a new key is a duplicate.
    refused(
        desk.admin.post("/api/v1/points/claims/service", json=shift, headers=key()),
        409,
        "duplicate_claim",
    )

    # 2. Pending points are shown, not spendable.
    st = ok(desk.admin.get("/api/v1/points/accounts/v1/statement"))
    assert st["pending_points"] == "2" and st["closing_balance"] == "0" and not st["lines"]
    gift = {"from_member_id": "v1", "to": "e1", "points": "1", "operator": {"role": "self"}}
    refused(
        desk.admin.post("/api/v1/points/gifts", json=gift, headers=key()),
        422,
        "insufficient_balance",
    )
    # Nobody approves twice, nor their own entry.
    refused(desk.admin.post(f"/api/v1/points/claims/{claim['id']}/verify"), 403, "self_approval")
    refused(
        desk.clerk.post(f"/api/v1/points/claims/{claim['id']}/post", headers=key()),
        409,
        "claim_not_verified",
    )
    verified = ok(desk.clerk.post(f"/api/v1/points/claims/{claim['id']}/verify"))["claim"]
    assert verified["status"] == "verified" and verified["verified"]["by"] == "api:clerk"
    refused(
        desk.clerk.post(f"/api/v1/points/claims/{claim['id']}/post", headers=key()),
        403,
        "same_approver",
    )
    post_key = key()
    posted = ok(desk.auditor.post(f"/api/v1/points/claims/{claim['id']}/post", headers=post_key))
    txn = posted["transaction"]
    assert (
        posted["claim"]["status"] == "posted"
        and posted["claim"]["posted"]["level"] == "subdistrict"
    )
    assert sorted((e["account"], e["units"]) for e in txn["entries"]) == [
        ("issuance:bank", -4),
        ("member:v1", 4),
    ]
    assert [a["level"] for a in txn["approvals"]] == ["community", "subdistrict"]
    assert txn["rounding"]["code"] == "floor_half_hour"
    replay = desk.auditor.post(f"/api/v1/points/claims/{claim['id']}/post", headers=post_key)
    assert replay.json()["transaction"]["id"] == txn["id"]
    assert desk.balance("v1") == "2" and desk.txn_count() == 1

    # 3. An alarm answered through the pagers: w1 acknowledges and arrives, staff resolve.
    mq.event("cb-1", "button.pressed")
    [page] = mq.wait_for(lambda m: m["type"] == "page" and m["_pager"] == "pw1", timeout=2)
    alert_id = page["alert_id"]
    mq.reply("pw1", alert_id, "ack")
    mq.reply("pw1", alert_id, "arrived")
    wait_until(
        lambda: desk.admin.get(f"/api/v1/alerts/{alert_id}").json()["state"] == "on_site",
        what="w1 on site",
    )
    body = {"member_id": "w1", "alert_id": alert_id}
    refused(
        desk.admin.post("/api/v1/points/claims/alarm", json=body, headers=key()),
        422,
        "alarm_incomplete",
    )
    ok(desk.admin.post(f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "real"}))
    alarm = ok(desk.admin.post("/api/v1/points/claims/alarm", json=body, headers=key()), 201)[
        "claim"
    ]
    assert (alarm["source"], alarm["category"], alarm["ref"], alarm["units"]) == (
        "alarm",
        "emergency",
        alert_id,
        1,  # a few seconds of response: the policy's minimum, half a point
    )
    # w2 was paged but never answered: nothing to claim.
    refused(
        desk.admin.post(
            "/api/v1/points/claims/alarm",
            json={"member_id": "w2", "alert_id": alert_id},
            headers=key(),
        ),
        422,
        "alarm_incomplete",
    )
    desk.approve(alarm["id"])
    assert desk.balance("w1") == "0.5"

    # 4. An award, refused at the sub-district with its reason; then a good one.
    award = {"member_id": "w1", "points": "1.5", "reason": "急救培训 first-aid training"}
    a_claim = ok(desk.admin.post("/api/v1/points/claims/award", json=award, headers=key()), 201)[
        "claim"
    ]
    ok(desk.clerk.post(f"/api/v1/points/claims/{a_claim['id']}/verify"))
    no = ok(
        desk.auditor.post(
            f"/api/v1/points/claims/{a_claim['id']}/refuse",
            json={"reason": "未见签到表 no sign-in sheet"},
        )
    )
    assert no["claim"]["status"] == "refused" and no["claim"]["refused"]["level"] == "subdistrict"
    st = ok(desk.admin.get("/api/v1/points/accounts/w1/statement"))
    assert st["refused"][0]["refusal_reason"] == "未见签到表 no sign-in sheet"

    # 5. Gifts: the volunteer gives 1 point to the elder, 0.5 to the hardship pool.
    g1 = ok(desk.admin.post("/api/v1/points/gifts", json=gift, headers=key()), 201)
    assert g1["kind"] == "gift" and g1["operator_role"] == "self" and g1["requested_by"] == "v1"
    pool_gift = {
        "from_member_id": "v1",
        "to": "pool:hardship",
        "points": 0.5,
        "reason": "捐给困难老人",
    }
    ok(desk.admin.post("/api/v1/points/gifts", json=pool_gift, headers=key()), 201)
    assert (desk.balance("v1"), desk.balance("e1"), desk.balance("pool:hardship")) == (
        "0.5",
        "1",
        "0.5",
    )

    # 6. The elder cannot use a phone: her paired daughter redeems for her (operator family).
    ok(desk.admin.post("/api/v1/elders/e1/pairings", json={"responder_id": "f1"}), 201)
    desk.catalogue()
    bath = desk.order("e1", "bath-home")
    order = {
        "payer": "e1",
        "points": "1",
        "service_code": "bath-home",
        "order_id": bath,
        "category": "bathing",
        "operator": {"role": "family", "person_id": "f1"},
    }
    refused(
        desk.admin.post(
            "/api/v1/points/redemptions",
            json={**order, "operator": {"role": "family", "person_id": "w1"}},
            headers=key(),
        ),
        403,
        "not_paired_family",
    )
    paid = ok(desk.admin.post("/api/v1/points/redemptions", json=order, headers=key()), 201)
    assert (paid["kind"], paid["service_code"], paid["ref"], paid["beneficiary_id"]) == (
        "redeem",
        "bath-home",
        bath,
        "e1",
    )
    [audit] = [
        a
        for a in ok(desk.admin.get("/api/v1/points/audit?member_id=e1"))
        if a["action"] == "redeem"
    ]
    assert (audit["operator"], audit["operator_role"], audit["actor"]) == (
        "f1",
        "family",
        "api:admin",
    )
    refused(
        desk.admin.post("/api/v1/points/redemptions", json=order, headers=key()),
        409,
        "order_already_paid",
    )
    # A volunteer with no age on record may not redeem yet.
    v_order = {
        **order,
        "payer": "v1",
        "points": "0.5",
        "order_id": None,
        "operator": {"role": "self"},
    }
    refused(
        desk.admin.post("/api/v1/points/redemptions", json=v_order, headers=key()),
        422,
        "redeem_not_eligible",
    )
    # The pool pays for the elder: asked by staff s1, approved by the caller.
    pool_order = {
        "payer": "pool:hardship",
        "beneficiary_id": "e1",
        "points": "0.5",
        "service_code": "meal-lunch",
        "category": "meals",
        "requested_by": "s1",
    }
    from_pool = ok(
        desk.admin.post("/api/v1/points/redemptions", json=pool_order, headers=key()), 201
    )
    assert (
        from_pool["approvals"][0]["by"] == "api:admin"
        and from_pool["requested_by"] == "responder:s1"
    )
    assert desk.balance("pool:hardship") == "0"

    # 7. Reversals: the gift to the elder was spent, so reverse the spending first.
    rev = {"transaction_id": g1["id"], "reason": "误操作 entered twice", "requested_by": "s1"}
    refused(
        desk.admin.post("/api/v1/points/reversals", json=rev, headers=key()),
        422,
        "insufficient_balance",
    )
    undo_paid = {
        "transaction_id": paid["id"],
        "reason": "服务未提供 service not given",
        "requested_by": "s1",
    }
    r1 = ok(desk.admin.post("/api/v1/points/reversals", json=undo_paid, headers=key()), 201)[
        "transaction"
    ]
    assert r1["reverses"] == paid["id"] and r1["approvals"][0]["by"] == "api:admin"
    r2 = ok(desk.admin.post("/api/v1/points/reversals", json=rev, headers=key()), 201)[
        "transaction"
    ]
    refused(
        desk.admin.post("/api/v1/points/reversals", json=rev, headers=key()),
        409,
        "already_reversed",
    )
    refused(
        desk.admin.post(
            "/api/v1/points/reversals", json={**rev, "transaction_id": r2["id"]}, headers=key()
        ),
        422,
        "cannot_reverse_reversal",
    )
    assert (desk.balance("v1"), desk.balance("e1")) == ("1.5", "0")
    # The order is free to be paid again once its payment is reversed... but e1 has no points.
    refused(
        desk.admin.post("/api/v1/points/redemptions", json=order, headers=key()),
        422,
        "insufficient_balance",
    )

    # 8. The statement: every line with its reason and the balance after it.
    st = ok(desk.admin.get("/api/v1/points/accounts/v1/statement"))
    assert [(ln["kind"], ln["points"], ln["balance_after"]) for ln in st["lines"]] == [
        ("earn", "2", "2"),
        ("gift", "-1", "1"),
        ("gift", "-0.5", "0.5"),
        ("reversal", "1", "1.5"),
    ]
    assert st["lines"][0]["reason"] == "陪伴张奶奶 companion shift"
    assert st["lines"][3]["reason"] == "误操作 entered twice"
    assert st["closing_balance"] == "1.5" and st["pending"] == []

    # 9. The month's report by community and category.
    month = datetime.now(ZONE).strftime("%Y-%m")
    report = ok(desk.admin.get(f"/api/v1/points/reports/monthly?month={month}"))
    rows = {(r["kind"], r["category"]): r for r in report["rows"]}
    assert rows[("earn", "companionship")]["points"] == "2"
    assert rows[("earn", "emergency")]["points"] == "0.5"
    assert rows[("redeem", "bathing")]["transactions"] == 1
    assert {r["community"] for r in report["rows"]} == {COMMUNITY}
    assert report["totals"]["earn"] == "2.5"

    # 10. Excel, read back.
    resp = desk.admin.get("/api/v1/points/accounts/v1/statement.xlsx")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(
        "application/vnd.openxmlformats"
    )
    wb = openpyxl.load_workbook(io.BytesIO(resp.content))
    ws = wb.worksheets[0]
    values = list(ws.iter_rows(values_only=True))
    assert values[0][3] == "事由 Reason"
    assert [(r[1], Decimal(str(r[4])), Decimal(str(r[5]))) for r in values[1:]] == [
        ("earn", Decimal(2), Decimal(2)),
        ("gift", Decimal(-1), Decimal(1)),
        ("gift", Decimal("-0.5"), Decimal("0.5")),
        ("reversal", Decimal(1), Decimal("1.5")),
    ]
    resp = desk.admin.get(f"/api/v1/points/reports/monthly.xlsx?month={month}")
    ws = openpyxl.load_workbook(io.BytesIO(resp.content)).worksheets[0]
    got = {(r[1], r[2]): Decimal(str(r[5])) for r in ws.iter_rows(min_row=2, values_only=True)}
    assert got[("earn", "companionship")] == 2 and got[("earn", "emergency")] == Decimal("0.5")

    ledger = desk.ledger()
    assert ledger["balances"]["issuance:bank"] == "-2.5"
    with gw.engine.connect() as c:
        actions = [r.action for r in c.execute(select(points_audit.c.action))]
    assert {"claim.service", "claim.verify", "claim.post", "gift", "redeem", "reverse"} <= set(
        actions
    )


# --- bad input ------------------------------------------------------------------------------------


def test_bad_input_is_refused_with_a_reason_and_changes_nothing(
    desk: Desk, gw: Any, app: Any
) -> None:
    app.state.points_policy = PointsPolicy(yearly_earn_cap=8, balance_cap=6)  # 4 and 3 points
    people(gw)
    for member in ("v1", "w1"):
        desk.open(member)
    desk.award("v1", "2")
    before = desk.ledger()["balances"], desk.txn_count(), desk.claim_count()

    def unchanged() -> None:
        assert (desk.ledger()["balances"], desk.txn_count(), desk.claim_count()) == before

    gift = {"from_member_id": "v1", "to": "w1", "operator": {"role": "self"}}
    for points, code in (
        ("0", "amount_zero"),
        (0, "amount_zero"),
        ("-1", "amount_negative"),
        (-0.5, "amount_negative"),
        ("0.3", "amount_too_fine"),
        (1.25, "amount_too_fine"),
        ("1e3", "amount_not_number"),
        ("abc", "amount_not_number"),
        ("99999999999", "amount_too_large"),
        (True, "amount_not_number"),
    ):
        refused(
            desk.admin.post("/api/v1/points/gifts", json={**gift, "points": points}, headers=key()),
            422,
            code,
        )
    # JSON numbers Python reads as infinite or not a number: a 422 naming the field, not a 500
    # (the refusal's echo of the input could not be written as JSON).
    for raw in ("1e400", "-1e400", "NaN", "Infinity"):
        body = '{"from_member_id": "v1", "to": "w1", "operator": {"role": "self"}, "points": %s}'
        resp = desk.admin.post(
            "/api/v1/points/gifts",
            content=body % raw,
            headers={**key(), "Content-Type": "application/json"},
        )
        [err] = refused(resp, 422, "amount_not_number")
        assert err["loc"] == ["body", "points"] and "积分" in err["msg"], err
    # A payer that is neither a member id nor a pool is refused at `payer`, not a `to` it lacks.
    redeem = {"payer": "member:v1", "points": "1", "service_code": "x", "category": "meals"}
    [err] = refused(desk.admin.post("/api/v1/points/redemptions", json=redeem, headers=key()), 422)
    assert err["loc"] == ["body", "payer"], err
    unchanged()
    # Unknown members and accounts; a closed pool name.
    refused(
        desk.admin.post(
            "/api/v1/points/gifts", json={**gift, "to": "nobody", "points": "1"}, headers=key()
        ),
        404,
        "no_account",
    )
    refused(
        desk.admin.post(
            "/api/v1/points/gifts",
            json={**gift, "from_member_id": "nobody", "points": "1", "operator": {"role": "staff"}},
            headers=key(),
        ),
        404,
        "no_account",
    )
    refused(
        desk.admin.post(
            "/api/v1/points/gifts", json={**gift, "to": "pool:party", "points": "1"}, headers=key()
        ),
        404,
        "unknown_account",
    )
    refused(
        desk.admin.post(
            "/api/v1/points/accounts", json={"member_id": "ghost", "community": COMMUNITY}
        ),
        404,
        "unknown_member",
    )
    refused(desk.admin.get("/api/v1/points/accounts/ghost"), 404, "no_account")
    refused(desk.admin.get("/api/v1/points/claims/pc_nope"), 404, "unknown_claim")
    refused(desk.admin.post("/api/v1/points/claims/pc_nope/verify"), 404, "unknown_claim")
    refused(desk.admin.get("/api/v1/points/transactions/pt_nope"), 404, "unknown_transaction")
    refused(
        desk.admin.post(
            "/api/v1/points/reversals",
            json={"transaction_id": "pt_nope", "reason": "x", "requested_by": "s1"},
            headers=key(),
        ),
        404,
        "unknown_transaction",
    )
    # More than the balance, to oneself, unknown fields, no idempotency key.
    refused(
        desk.admin.post("/api/v1/points/gifts", json={**gift, "points": "2.5"}, headers=key()),
        422,
        "insufficient_balance",
    )
    refused(
        desk.admin.post(
            "/api/v1/points/gifts", json={**gift, "to": "v1", "points": "1"}, headers=key()
        ),
        422,
        "self_gift",
    )
    refused(
        desk.admin.post(
            "/api/v1/points/gifts", json={**gift, "points": "1", "extra": 1}, headers=key()
        ),
        422,
        "extra_forbidden",
    )
    refused(desk.admin.post("/api/v1/points/gifts", json={**gift, "points": "1"}), 422, "missing")
    # Someone else's points cannot be given "as self".
    refused(
        desk.admin.post(
            "/api/v1/points/gifts",
            json={**gift, "points": "1", "operator": {"role": "self", "person_id": "w1"}},
            headers=key(),
        ),
        422,
    )
    unchanged()

    # Claims: times without an offset, in the future, too short, unknown category.
    now = datetime.now(ZONE)
    service = {
        "member_id": "w1",
        "category": "visit",
        "started_at": iso(now - timedelta(hours=2)),
        "ended_at": iso(now - timedelta(hours=1)),
        "service_ref": "rec-1",
    }
    for change, status, code in (
        ({"started_at": "2026-11-25T08:00:00"}, 422, "timezone_aware"),
        ({"started_at": 1764000000}, 422, "datetime_format"),
        ({"ended_at": iso(now + timedelta(hours=3))}, 422, "in_future"),
        ({"ended_at": iso(now - timedelta(hours=1, minutes=45))}, 422, "duration_too_short"),
        ({"ended_at": iso(now - timedelta(hours=3))}, 422, "duration_invalid"),
        ({"category": "karaoke"}, 422, "unknown_category"),
        (
            {
                "started_at": iso(now - timedelta(days=200)),
                "ended_at": iso(now - timedelta(days=199, hours=23)),
            },
            422,
            "claim_too_old",
        ),
        ({"member_id": "ghost"}, 404, "no_account"),
        ({"reason": "a\x00b"}, 422, None),
    ):
        refused(
            desk.admin.post(
                "/api/v1/points/claims/service", json={**service, **change}, headers=key()
            ),
            status,
            code,
        )
    unchanged()

    # Caps: the yearly cap (4 points) and the balance cap (3 points), checked when posting.
    big = {"member_id": "v1", "points": "1.5", "reason": "培训 training"}
    c1 = ok(desk.admin.post("/api/v1/points/claims/award", json=big, headers=key()), 201)["claim"][
        "id"
    ]
    ok(desk.clerk.post(f"/api/v1/points/claims/{c1}/verify"))
    refused(
        desk.auditor.post(f"/api/v1/points/claims/{c1}/post", headers=key()),
        422,
        "balance_cap_exceeded",
    )
    assert desk.balance("v1") == "2"
    ok(desk.admin.post("/api/v1/points/gifts", json={**gift, "points": "2"}, headers=key()), 201)
    ok(desk.auditor.post(f"/api/v1/points/claims/{c1}/post", headers=key()))  # 3.5 earned this year
    c2 = ok(
        desk.admin.post("/api/v1/points/claims/award", json={**big, "points": "1"}, headers=key()),
        201,
    )["claim"]["id"]
    ok(desk.clerk.post(f"/api/v1/points/claims/{c2}/verify"))
    refused(
        desk.auditor.post(f"/api/v1/points/claims/{c2}/post", headers=key()),
        422,
        "yearly_cap_exceeded",
    )
    # A gift that would lift the recipient past the balance cap.
    refused(
        desk.admin.post(
            "/api/v1/points/gifts",
            json={
                "from_member_id": "v1",
                "to": "w1",
                "points": "1.5",
                "operator": {"role": "self"},
            },
            headers=key(),
        ),
        422,
        "balance_cap_exceeded",
    )
    # The same idempotency key for a different request.
    k = key()
    ok(desk.admin.post("/api/v1/points/gifts", json={**gift, "points": "0.5"}, headers=k), 201)
    refused(
        desk.admin.post("/api/v1/points/gifts", json={**gift, "points": "1"}, headers=k),
        422,
        "idempotency_conflict",
    )
    assert desk.balance("v1") == "1" and desk.balance("w1") == "2.5"
    # Month and period queries.
    refused(desk.admin.get("/api/v1/points/reports/monthly?month=2026-13"), 422)
    refused(desk.admin.get("/api/v1/points/accounts/v1/statement?from=yesterday"), 422)
    desk.ledger()


def test_four_eyes_count_people_not_token_names(desk: Desk, gw: Any) -> None:
    """A staff token acting for a person approves as that person: the member cannot approve
    their own points through their token, and one person cannot verify through their token and
    post named on paper (`approver_id`), nor the other way round, nor enter and approve."""
    people(gw)
    for member in ("s2", "v1"):
        desk.open(member)
    now = int(time.time() * 1000)
    tok_a = create_token(gw.engine, "staffA", role="staff", now_ms=now, person_id="s1")
    tok_b = create_token(gw.engine, "staffB", role="staff", now_ms=now, person_id="s2")
    base = desk.admin.base_url
    with (
        httpx.Client(base_url=base, headers=bearer(tok_a), timeout=20) as staff_a,
        httpx.Client(base_url=base, headers=bearer(tok_b), timeout=20) as staff_b,
    ):

        def award(member: str) -> str:
            body = {"member_id": member, "points": "1", "reason": "培训 training"}
            resp = desk.admin.post("/api/v1/points/claims/award", json=body, headers=key())
            return str(ok(resp, 201)["claim"]["id"])

        # (a) s2's own token approves s2's points at neither level.
        own = award("s2")
        detail = refused(staff_b.post(f"/api/v1/points/claims/{own}/verify"), 403, "self_approval")
        assert "s2" in detail["en"] and "s2" in detail["zh"]
        ok(desk.clerk.post(f"/api/v1/points/claims/{own}/verify"))
        refused(
            staff_b.post(f"/api/v1/points/claims/{own}/post", headers=key()), 403, "self_approval"
        )
        refused(
            staff_b.post(f"/api/v1/points/claims/{own}/refuse", json={"reason": "no"}),
            403,
            "self_approval",
        )
        assert desk.balance("s2") == "0"
        ok(desk.auditor.post(f"/api/v1/points/claims/{own}/post", headers=key()))

        # (b) s1 verifies through their token, then is named on paper to post: one person.
        first = award("v1")
        verified = ok(staff_a.post(f"/api/v1/points/claims/{first}/verify"))["claim"]
        assert verified["verified"]["by"] == "responder:s1"
        paper = {"approver_id": "s1"}
        refused(
            desk.admin.post(f"/api/v1/points/claims/{first}/post", json=paper, headers=key()),
            403,
            "same_approver",
        )
        refused(
            desk.admin.post(f"/api/v1/points/claims/{first}/refuse", json={**paper, "reason": "x"}),
            403,
            "same_approver",
        )
        # ... and the other way round: on paper first, then through the token.
        second = award("v1")
        ok(desk.admin.post(f"/api/v1/points/claims/{second}/verify", json=paper))
        refused(
            staff_a.post(f"/api/v1/points/claims/{second}/post", headers=key()),
            403,
            "same_approver",
        )
        assert desk.balance("v1") == "0"
        posted = ok(desk.auditor.post(f"/api/v1/points/claims/{first}/post", headers=key()))
        assert [a["by"] for a in posted["transaction"]["approvals"]] == [
            "responder:s1",
            "api:auditor",
        ]

        # Who entered a claim through their token approves it at neither level.
        shift = {
            "member_id": "v1",
            "category": "visit",
            "started_at": iso(datetime.now(ZONE) - timedelta(hours=3)),
            "ended_at": iso(datetime.now(ZONE) - timedelta(hours=2)),
            "service_ref": "visit-s1",
        }
        entered = ok(staff_a.post("/api/v1/points/claims/service", json=shift, headers=key()), 201)
        assert entered["claim"]["requested_by"] == "responder:s1"
        refused(
            desk.admin.post(f"/api/v1/points/claims/{entered['claim']['id']}/verify", json=paper),
            403,
            "self_approval",
        )
        # A correction asked by s1 is not approved by s1's token either.
        undo = {"transaction_id": posted["transaction"]["id"], "reason": "x", "requested_by": "s1"}
        refused(
            staff_a.post("/api/v1/points/reversals", json=undo, headers=key()),
            403,
            "same_approver",
        )

    # The audit keeps the token the person approved through.
    [line] = [
        a
        for a in ok(desk.admin.get("/api/v1/points/audit?member_id=v1"))
        if a["action"] == "claim.verify" and a["claim_id"] == first
    ]
    assert (line["operator"], line["actor"]) == ("responder:s1", "api:staffA")
    desk.ledger()


def test_a_redemption_pays_a_catalogue_service_and_only_its_elders_order(
    desk: Desk, gw: Any
) -> None:
    people(gw)
    with gw.engine.begin() as c:
        c.execute(
            T.elders.insert().values(
                id="e2",
                name="老人2",
                address="幸福里2号楼",
                phone="13800000000",
                birth_date=date(1942, 5, 1),
                created_at=int(time.time() * 1000),
            )
        )
    for member in ("v1", "e1", "e2"):
        desk.open(member)
    desk.award("v1", "6")
    for elder in ("e1", "e2"):
        gift = {"from_member_id": "v1", "to": elder, "points": "2", "operator": {"role": "self"}}
        ok(desk.admin.post("/api/v1/points/gifts", json=gift, headers=key()), 201)
    desk.catalogue()
    theirs = desk.order("e2", "bath-home")
    mine = desk.order("e1", "bath-home")
    applied = desk.order("e1", "bath-home", agree=False)
    cancelled = desk.order("e1", "bath-home")
    ok(desk.admin.post(f"/api/v1/service-orders/{cancelled}/cancel", json={"reason": "住院"}))
    before = desk.ledger()["balances"], desk.txn_count()

    pay = {"payer": "e1", "points": "1", "service_code": "bath-home", "category": "bathing"}
    for change, code in (
        ({"order_id": theirs}, "order_of_another_elder"),
        ({"order_id": "so_nope"}, "unknown_order"),
        ({"order_id": applied}, "order_not_payable"),
        ({"order_id": cancelled}, "order_not_payable"),
        ({"service_code": "karaoke"}, "unknown_service"),
        ({"service_code": "meal-lunch", "category": "cleaning"}, "category_mismatch"),
        (
            {"service_code": "meal-lunch", "category": "meals", "order_id": mine},
            "order_service_mismatch",
        ),
    ):
        refused(
            desk.admin.post("/api/v1/points/redemptions", json={**pay, **change}, headers=key()),
            422,
            code,
        )
    assert (desk.ledger()["balances"], desk.txn_count()) == before  # nothing written
    # The pool pays only the order of the elder it pays for.
    pool_gift = {"from_member_id": "v1", "to": "pool:hardship", "points": "1"}
    ok(desk.admin.post("/api/v1/points/gifts", json=pool_gift, headers=key()), 201)
    before = desk.ledger()["balances"], desk.txn_count()
    from_pool = {
        **pay,
        "payer": "pool:hardship",
        "beneficiary_id": "e1",
        "requested_by": "s1",
        "order_id": theirs,
    }
    refused(
        desk.admin.post("/api/v1/points/redemptions", json=from_pool, headers=key()),
        422,
        "order_of_another_elder",
    )
    assert (desk.ledger()["balances"], desk.txn_count()) == before
    # Each elder pays their own order; the other elder's order is still theirs to pay.
    ok(
        desk.admin.post(
            "/api/v1/points/redemptions", json={**pay, "order_id": mine}, headers=key()
        ),
        201,
    )
    theirs_paid = {**pay, "payer": "e2", "order_id": theirs}
    ok(desk.admin.post("/api/v1/points/redemptions", json=theirs_paid, headers=key()), 201)
    assert (desk.balance("e1"), desk.balance("e2")) == ("1", "1")
    month = datetime.now(ZONE).strftime("%Y-%m")
    rows = ok(desk.admin.get(f"/api/v1/points/reports/monthly?month={month}"))["rows"]
    assert {r["category"] for r in rows if r["kind"] == "redeem"} == {"bathing"}


def test_no_points_go_to_or_are_spent_on_a_deceased_elder(desk: Desk, gw: Any) -> None:
    """Once the registry says an elder died, points given to them (stranded: nobody uses the
    account again) and redemptions for a service that can no longer be delivered (theirs, or
    the pool's for them; without an order or for an order not begun) are refused with the
    reason and write nothing. Their own points may still go to the hardship pool."""
    people(gw)
    register = {
        "elder_id": "e1",
        "name": "张秀英",
        "gender": "female",
        "birth_date": "1940-03-08",
        "address": {"district": "朝阳区", "subdistrict": "和平街道", "community": COMMUNITY},
        "living_situation": "lives_alone",
        "self_care": "independent",
    }
    ok(desk.admin.post("/api/v1/care/elders", json=register), 201)
    for member in ("v1", "e1"):
        desk.open(member)
    desk.award("v1", "4")
    gift = {"from_member_id": "v1", "to": "e1", "points": "2", "operator": {"role": "self"}}
    ok(desk.admin.post("/api/v1/points/gifts", json=gift, headers=key()), 201)
    pool_gift = {"from_member_id": "v1", "to": "pool:hardship", "points": "1"}
    ok(desk.admin.post("/api/v1/points/gifts", json=pool_gift, headers=key()), 201)
    desk.catalogue()
    agreed = desk.order("e1", "bath-home")
    died = {"status": "deceased", "note": "病故"}
    ok(desk.admin.post("/api/v1/care/elders/e1/status", json=died))
    before = desk.ledger()["balances"], desk.txn_count()

    pay = {"payer": "e1", "points": "1", "service_code": "bath-home", "category": "bathing"}
    from_pool = {**pay, "payer": "pool:hardship", "beneficiary_id": "e1", "requested_by": "s1"}
    for path, body in (
        ("gifts", {**gift, "points": "1"}),
        ("redemptions", pay),
        ("redemptions", {**pay, "order_id": agreed}),
        ("redemptions", from_pool),
        ("redemptions", {**from_pool, "order_id": agreed}),
    ):
        detail = refused(
            desk.admin.post(f"/api/v1/points/{path}", json=body, headers=key()),
            409,
            "elder_deceased",
        )
        assert "已故" in detail["zh"], detail
    assert (desk.ledger()["balances"], desk.txn_count()) == before
    to_pool = {"from_member_id": "e1", "to": "pool:hardship", "points": "2"}
    ok(desk.admin.post("/api/v1/points/gifts", json=to_pool, headers=key()), 201)
    assert desk.balance("pool:hardship") == "3"


def test_a_retired_service_is_not_redeemed_but_its_agreed_order_is_paid(
    desk: Desk, gw: Any
) -> None:
    people(gw)
    for member in ("v1", "e1"):
        desk.open(member)
    desk.award("v1", "4")
    gift = {"from_member_id": "v1", "to": "e1", "points": "3", "operator": {"role": "self"}}
    ok(desk.admin.post("/api/v1/points/gifts", json=gift, headers=key()), 201)
    desk.catalogue()
    agreed = desk.order("e1", "bath-home")  # agreed before the retirement: still served
    # Retired both ways the catalogue knows: DELETE, and PATCH active=false.
    assert desk.admin.delete("/api/v1/services/bath-home").status_code == 204
    ok(desk.admin.patch("/api/v1/services/meal-lunch", json={"active": False}))
    before = desk.ledger()["balances"], desk.txn_count()
    for code, category in (("bath-home", "bathing"), ("meal-lunch", "meals")):
        pay = {"payer": "e1", "points": "1", "service_code": code, "category": category}
        detail = refused(
            desk.admin.post("/api/v1/points/redemptions", json=pay, headers=key()),
            422,
            "service_retired",
        )
        assert code in detail["en"] and "停用" in detail["zh"], detail
    assert (desk.ledger()["balances"], desk.txn_count()) == before  # nothing written
    paid = {
        "payer": "e1",
        "points": "1",
        "service_code": "bath-home",
        "category": "bathing",
        "order_id": agreed,
    }
    ok(desk.admin.post("/api/v1/points/redemptions", json=paid, headers=key()), 201)
    # A service still in the catalogue is redeemed as before.
    clean = {"payer": "e1", "points": "1", "service_code": "clean-home", "category": "cleaning"}
    ok(desk.admin.post("/api/v1/points/redemptions", json=clean, headers=key()), 201)
    assert desk.balance("e1") == "1"
    desk.ledger()


def test_an_order_is_paid_its_hours_in_points_for_the_elders_share_only(
    desk: Desk, gw: Any
) -> None:
    """A point buys an hour of service (seed 004): an order of 2 hours costs exactly 2 points,
    paying the elder's own share. More, less, an order priced per visit and an order the
    government pays in full are refused (422, zh and en) with nothing written."""
    people(gw)
    for member in ("v1", "e1"):
        desk.open(member)
    desk.award("v1", "8")
    gift = {"from_member_id": "v1", "to": "e1", "points": "6", "operator": {"role": "self"}}
    ok(desk.admin.post("/api/v1/points/gifts", json=gift, headers=key()), 201)
    desk.catalogue()
    per_visit = {
        "code": "haircut",
        "name_zh": "理发",
        "name_en": "haircut",
        "category": "haircut",
        "unit": "visit",
        "unit_price_fen": 3000,
        "share_fen": {"low_cost": 1000, "paid": 3000},
    }
    ok(desk.admin.post("/api/v1/services", json=per_visit), 201)
    source = {
        "id": "civil",
        "name_zh": "区民政局服务券",
        "name_en": "civil affairs vouchers",
        "allotments": [{"tier": "free", "category": "cleaning", "monthly_fen": 30000}],
    }
    ok(desk.admin.post("/api/v1/voucher-sources", json=source), 201)
    wallet = {"source_id": "civil", "elder_id": "e1", "tier": "free", "basis": "三无"}
    ok(desk.admin.put("/api/v1/voucher-wallets", json={**wallet, "from_month": "2026-01"}))
    two_hours = desk.order("e1", "clean-home", hours=2)
    haircut = str(
        ok(
            desk.admin.post(
                "/api/v1/service-orders",
                json={
                    "elder_id": "e1",
                    "category": "haircut",
                    "request": "理发",
                    "applied_by": {"role": "staff"},
                    "home": {"lat": 39.9219, "lon": 116.4436},
                },
            ),
            201,
        )["id"]
    )
    ok(
        desk.admin.post(
            f"/api/v1/service-orders/{haircut}/agree",
            json={"service_code": "haircut", "tier": "paid"},
        )
    )
    free = desk.order("e1", "clean-home", agree=False)
    terms = {"service_code": "clean-home", "tier": "free", "funding_source": "civil"}
    agreed = ok(desk.admin.post(f"/api/v1/service-orders/{free}/agree", json=terms))
    assert agreed["elder_share_fen"] == 0, agreed
    before = desk.ledger()["balances"], desk.txn_count()
    pay = {"payer": "e1", "service_code": "clean-home", "category": "cleaning"}
    for body, code in (
        ({**pay, "points": "3", "order_id": two_hours}, "points_not_order_price"),
        ({**pay, "points": "0.5", "order_id": two_hours}, "points_not_order_price"),
        ({**pay, "points": "1", "order_id": free}, "order_fully_subsidised"),
        (
            {**pay, "points": "1", "order_id": haircut, "service_code": "haircut"}
            | {"category": "haircut"},
            "order_not_in_hours",
        ),
    ):
        detail = refused(
            desk.admin.post("/api/v1/points/redemptions", json=body, headers=key()), 422, code
        )
        assert body["order_id"] in detail["en"] and body["order_id"] in detail["zh"], detail
    assert (desk.ledger()["balances"], desk.txn_count()) == before  # nothing written
    paid = ok(
        desk.admin.post(
            "/api/v1/points/redemptions",
            json={**pay, "points": "2", "order_id": two_hours},
            headers=key(),
        ),
        201,
    )
    assert (paid["ref"], desk.balance("e1")) == (two_hours, "4")


def test_cancelling_a_paid_order_refunds_its_points_once(desk: Desk, gw: Any) -> None:
    people(gw)
    for member in ("v1", "e1"):
        desk.open(member)
    desk.award("v1", "6")
    for to, points in (("e1", "3"), ("pool:hardship", "2")):
        body = {"from_member_id": "v1", "to": to, "points": points, "operator": {"role": "self"}}
        ok(desk.admin.post("/api/v1/points/gifts", json=body, headers=key()), 201)
    desk.catalogue()
    own, pooled, unpaid, corrected = (desk.order("e1", "bath-home", hours=2) for _ in range(4))
    pay = {"payer": "e1", "points": "2", "service_code": "bath-home", "category": "bathing"}
    spent = ok(
        desk.admin.post("/api/v1/points/redemptions", json={**pay, "order_id": own}, headers=key()),
        201,
    )
    from_pool = {
        **pay,
        "payer": "pool:hardship",
        "beneficiary_id": "e1",
        "requested_by": "s1",
        "order_id": pooled,
    }
    ok(desk.admin.post("/api/v1/points/redemptions", json=from_pool, headers=key()), 201)
    assert (desk.balance("e1"), desk.balance("pool:hardship")) == ("1", "0")
    count = desk.txn_count()

    # The elder cancels (at the desk); the answer is lost and the phone retries with its key.
    cancel = key()
    reason = {"reason": "住院 in hospital"}
    first = ok(desk.admin.post(f"/api/v1/service-orders/{own}/cancel", json=reason, headers=cancel))
    assert first["state"] == "cancelled"
    again = desk.admin.post(f"/api/v1/service-orders/{own}/cancel", json=reason, headers=cancel)
    assert again.status_code == 200 and again.json() == first
    refused(desk.admin.post(f"/api/v1/service-orders/{own}/cancel", json=reason), 409)
    assert desk.balance("e1") == "3" and desk.txn_count() == count + 1
    st = ok(desk.admin.get("/api/v1/points/accounts/e1/statement"))
    back = st["lines"][-1]
    assert (back["kind"], back["points"], back["reverses"], back["ref"]) == (
        "refund",
        "2",
        spent["id"],
        own,
    )
    assert "住院" in back["reason"] and back["balance_after"] == "3"
    refund = ok(desk.admin.get(f"/api/v1/points/transactions/{back['transaction_id']}"))
    assert (refund["service_code"], refund["beneficiary_id"]) == ("bath-home", "e1")
    [line] = [
        a
        for a in ok(desk.admin.get("/api/v1/points/audit?member_id=e1"))
        if a["action"] == "refund"
    ]
    assert line["detail"]["refunds"] == spent["id"] and line["actor"] == "api:admin"
    # The points are back once: the redemption cannot be reversed too, nor the refund undone.
    undo = {"transaction_id": spent["id"], "reason": "服务取消 cancelled", "requested_by": "s1"}
    refused(
        desk.admin.post("/api/v1/points/reversals", json=undo, headers=key()),
        409,
        "already_reversed",
    )
    undo_refund = {**undo, "transaction_id": back["transaction_id"]}
    refused(
        desk.admin.post("/api/v1/points/reversals", json=undo_refund, headers=key()),
        422,
        "cannot_reverse_reversal",
    )

    # A pool's payment goes back to the pool; an unpaid order refunds nothing.
    ok(desk.admin.post(f"/api/v1/service-orders/{pooled}/cancel", json={"reason": "家属取消"}))
    assert (desk.balance("e1"), desk.balance("pool:hardship")) == ("3", "2")
    ok(desk.admin.post(f"/api/v1/service-orders/{unpaid}/cancel", json={"reason": "不需要"}))
    assert desk.txn_count() == count + 2
    # A payment reversed before the cancel was given back then: nothing more now.
    paid = ok(
        desk.admin.post(
            "/api/v1/points/redemptions", json={**pay, "order_id": corrected}, headers=key()
        ),
        201,
    )
    undo = {**undo, "transaction_id": paid["id"]}
    ok(desk.admin.post("/api/v1/points/reversals", json=undo, headers=key()), 201)
    assert desk.balance("e1") == "3"
    ok(desk.admin.post(f"/api/v1/service-orders/{corrected}/cancel", json={"reason": "改期"}))
    assert desk.balance("e1") == "3" and desk.txn_count() == count + 4
    month = datetime.now(ZONE).strftime("%Y-%m")
    report = ok(desk.admin.get(f"/api/v1/points/reports/monthly?month={month}"))
    assert report["totals"]["refund"] == "4"
    desk.ledger()


def test_an_award_over_a_cap_by_itself_is_refused_when_entered(
    desk: Desk, gw: Any, app: Any
) -> None:
    people(gw)
    desk.open("v1")
    before = desk.claim_count()
    for points in ("501", "1500.5"):
        body = {"member_id": "v1", "points": points, "reason": "培训 training"}
        detail = refused(
            desk.admin.post("/api/v1/points/claims/award", json=body, headers=key()),
            422,
            "yearly_cap_exceeded",
        )
        assert points in detail["en"] and "500" in detail["zh"], detail
    assert desk.claim_count() == before
    assert ok(desk.admin.get("/api/v1/points/accounts/v1/statement"))["pending_points"] == "0"
    # At the cap exactly it can be posted: entered, approved, counted.
    desk.award("v1", "500")
    assert desk.balance("v1") == "500"
    # A policy whose balance cap is below its yearly cap: refused in the post's words too.
    app.state.points_policy = PointsPolicy(yearly_earn_cap=None, balance_cap=6)
    body = {"member_id": "v1", "points": "3.5", "reason": "培训 training"}
    refused(
        desk.admin.post("/api/v1/points/claims/award", json=body, headers=key()),
        422,
        "balance_cap_exceeded",
    )
    desk.ledger()


def test_a_reversed_earning_frees_its_record_and_is_audited(desk: Desk, gw: Any) -> None:
    people(gw)
    desk.open("v1")
    now = datetime.now(ZONE)
    shift = {
        "member_id": "v1",
        "category": "visit",
        "started_at": iso(now - timedelta(hours=3)),
        "ended_at": iso(now - timedelta(hours=1, minutes=30)),
        "service_ref": "visit-7",
    }
    claim = ok(desk.admin.post("/api/v1/points/claims/service", json=shift, headers=key()), 201)[
        "claim"
    ]
    txn = desk.approve(claim["id"])["transaction"]
    assert desk.balance("v1") == "1.5"
    rev = {"transaction_id": txn["id"], "reason": "时间登记错误 wrong times", "requested_by": "s1"}
    k = key()
    out = ok(desk.admin.post("/api/v1/points/reversals", json=rev, headers=k), 201)
    assert (
        out["claim"]["status"] == "reversed"
        and out["claim"]["reversal_id"] == out["transaction"]["id"]
    )
    again = desk.admin.post("/api/v1/points/reversals", json=rev, headers=k)
    assert (
        again.status_code == 201 and again.json()["transaction"]["id"] == out["transaction"]["id"]
    )
    assert desk.balance("v1") == "0"
    # The corrected claim for the same visit may now be entered.
    fixed = {**shift, "ended_at": iso(now - timedelta(hours=2))}
    ok(desk.admin.post("/api/v1/points/claims/service", json=fixed, headers=key()), 201)
    [line] = [
        a
        for a in ok(desk.admin.get("/api/v1/points/audit?member_id=v1"))
        if a["action"] == "reverse"
    ]
    assert line["detail"]["requested_by"] == "responder:s1" and line["operator"] == "api:admin"
    # The journal is append-only, down to the database.
    with pytest.raises(Exception, match="append-only"), gw.engine.begin() as c:
        c.execute(update(points_transactions).values(reason="rewritten"))
    desk.ledger()


def test_the_demo_community_earns_a_month_of_points(desk: Desk) -> None:
    lines: list[str] = []
    community = seed(
        str(desk.admin.base_url), ADMIN, n_homes=8, log_line=lines.append, modules=("points",)
    )
    assert community.created
    assert not [ln for ln in lines if ln.startswith("积分 points:")], lines  # nothing refused
    helpers = [p for p in community.people if p.role in ("watcher", "volunteer")]
    accounts = ok(desk.admin.get("/api/v1/points/accounts?kind=member"))
    assert {p.id for p in helpers} <= {a["member_id"] for a in accounts}
    earned = [a for a in accounts if a["balance_units"] > 0]
    assert len(earned) >= len(helpers) - 1
    volunteer = next(p for p in helpers if p.role == "volunteer")
    st = ok(desk.admin.get(f"/api/v1/points/accounts/{volunteer.id}/statement"))
    assert len(st["lines"]) >= 5 and all(ln["reason"] for ln in st["lines"])
    assert {a["level"] for ln in st["lines"] if ln["kind"] == "earn" for a in ln["approvals"]} == {
        "community",
        "subdistrict",
    }
    refused_claims = ok(desk.admin.get("/api/v1/points/claims?status=refused"))
    assert len(refused_claims) == 1 and refused_claims[0]["refusal_reason"]
    month = datetime.now(ZONE).strftime("%Y-%m")
    report = ok(desk.admin.get(f"/api/v1/points/reports/monthly?month={month}"))
    kinds = {r["kind"] for r in report["rows"]}
    assert {"earn", "gift", "redeem"} <= kinds
    assert {r["category"] for r in report["rows"] if r["kind"] == "earn"} >= {"award", "emergency"}
    assert ok(desk.admin.get("/api/v1/points/accounts/pool:hardship"))["balance"] == "2"
    desk.ledger()


def test_points_api_is_documented_in_openapi(desk: Desk) -> None:
    spec = ok(desk.admin.get("/openapi.json"))
    paths = [p for p in spec["paths"] if p.startswith("/api/v1/points")]
    assert {
        "/api/v1/points/accounts",
        "/api/v1/points/claims/service",
        "/api/v1/points/claims/alarm",
        "/api/v1/points/claims/award",
        "/api/v1/points/claims/{claim_id}/post",
        "/api/v1/points/gifts",
        "/api/v1/points/redemptions",
        "/api/v1/points/reversals",
        "/api/v1/points/accounts/{account}/statement.xlsx",
        "/api/v1/points/reports/monthly.xlsx",
    } <= set(paths)
    gifts = spec["paths"]["/api/v1/points/gifts"]["post"]
    assert {"201", "403", "404", "409", "422"} <= set(gifts["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in gifts["parameters"])
