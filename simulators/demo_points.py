"""A month of mutual-aid points (互助养老积分, issue 6) for the demo community, through HTTP.

`seed_points` is called by `simulators.community.seed` once the homes and people exist. It opens
points accounts for the watchers, volunteers and a few elders, then enters the last 30 days as a
station would: each helper's companion shifts, mutual-aid visits and trips out after a call
(entered by the helper on their own phone, `operator: self`), first-aid training awards
(entered by the station), each verified by the community (社区核实, the caller) and posted by the
sub-district (街道审核, signed on paper by a staff member and entered at the desk:
`approver_id`); one claim is refused with its reason. Then a few gifts (转赠) to the hardship pool
and to elders, and two redemptions: an elder's cleaning paid by the points given to her, entered
by staff for her, and a bath at home paid from the pool for another elder: catalogue services
(the service demo's, entered here when the points are seeded without it).

Like every simulator it speaks only the contract (HTTP) and imports nothing of the gateway or of
`care`. Times are deterministic from the random seed and relative to now; every request that
moves points carries an Idempotency-Key derived from the seed, so a seed retried after a failure
does not enter anything twice. A refusal is logged and the rest goes on: the alarm demo does not
depend on the points.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from simulators.demo_services import CATALOGUE
from simulators.payloads import CHINA_TZ

COMMUNITY = "幸福里社区"
DAYS = 30
# The catalogue services paid in points; not "meal-lunch", which tells simulators.demo_services
# (and the API fuzz test) that the service demo's catalogue is there already.
REDEEMED = frozenset({"clean-home", "bath-home"})

# (category, reason zh/en, minutes range)
SHIFTS = [
    ("companionship", "陪伴聊天、读报 companion shift: talk and reading the paper", (90, 180)),
    ("visit", "上门探访，查看用电用气安全 visit: checked gas and power", (45, 90)),
    ("errand", "代购药品和蔬菜 errand: medicine and vegetables", (60, 120)),
    ("medical", "陪同到社区医院复诊 went with her to the clinic", (120, 210)),
    ("cleaning", "帮忙打扫卫生 helped with the cleaning", (60, 120)),
]
ALARM_HELP = (
    "emergency",
    "夜间呼叫后上门查看（纸质记录补录） went over after a night call",
    (40, 100),
)


class _Seeder:
    def __init__(self, client: httpx.Client, random_seed: int, say: Callable[[str], None]) -> None:
        self.client = client
        self.seed = random_seed
        self.say = say
        self.n = 0
        self.refused = 0

    def post(self, path: str, body: dict[str, Any] | None, keyed: bool = True) -> dict[str, Any]:
        headers = {}
        if keyed:
            self.n += 1
            headers["Idempotency-Key"] = f"demo-points-{self.seed}-{self.n}"
        resp = self.client.post(path, json=body, headers=headers)
        if resp.status_code >= 400:
            self.refused += 1
            self.say(f"积分 points: {path} -> {resp.status_code} {resp.text[:200]}")
            return {}
        out: dict[str, Any] = resp.json()
        return out


def seed_points(
    client: httpx.Client,
    community: Any,
    *,
    random_seed: int = 7,
    log_line: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> int:
    """Enter a month of points for `community` (a simulators.community.Community whose people
    and elders have their gateway ids); return the number of claims posted."""
    say = log_line or (lambda line: None)
    rng = random.Random(random_seed * 7919 + 6)
    now = (now or datetime.now(CHINA_TZ)).astimezone(CHINA_TZ)
    s = _Seeder(client, random_seed, say)
    helpers = [p for p in community.people if p.role in ("watcher", "volunteer") and p.id]
    staff = [p for p in community.people if p.role == "staff" and p.id]
    if not helpers or not staff:
        return 0
    elders = [h for h in community.homes if h.elder_id][:3]
    for person in helpers:
        s.post("/api/v1/points/accounts", {"member_id": person.id, "community": COMMUNITY}, False)
    for home in elders:
        s.post(
            "/api/v1/points/accounts", {"member_id": home.elder_id, "community": COMMUNITY}, False
        )

    claims: list[str] = []
    awards: set[str] = set()
    for person in helpers:
        # Volunteers give more hours than neighbours who watch; never two entries on one day.
        count = rng.randint(5, 8) if person.role == "volunteer" else rng.randint(2, 4)
        days = sorted(rng.sample(range(1, DAYS), count), reverse=True)
        for i, day in enumerate(days):
            category, reason, (low, high) = (
                ALARM_HELP if person.role == "watcher" and i == 0 else rng.choice(SHIFTS)
            )
            start = (now - timedelta(days=day)).replace(
                hour=rng.randint(8, 16), minute=rng.choice((0, 15, 30, 45)), second=0, microsecond=0
            )
            minutes = rng.randint(low, high)
            body = {
                "member_id": person.id,
                "category": category,
                "started_at": start.isoformat(),
                "ended_at": (start + timedelta(minutes=minutes)).isoformat(),
                "service_ref": f"demo-{person.pager_id}-{start:%Y%m%d}",
                "reason": reason,
                "operator": {"role": "self"},
            }
            made = s.post("/api/v1/points/claims/service", body)
            if made:
                claims.append(made["claim"]["id"])
    for person in rng.sample(helpers, min(3, len(helpers))):
        body = {"member_id": person.id, "points": "2", "reason": "参加急救培训 first-aid training"}
        made = s.post("/api/v1/points/claims/award", body)
        if made:
            claims.append(made["claim"]["id"])
            awards.add(made["claim"]["id"])

    # The last award is refused by the community, with its reason.
    refused_one = claims.pop() if len(claims) > 3 else None
    if refused_one:
        s.post(
            f"/api/v1/points/claims/{refused_one}/refuse",
            {"reason": "培训签到表上没有此人 not on the training sign-in sheet"},
            False,
        )
    # 社区核实: the caller verifies what helpers entered themselves; the station's own awards
    # (entered by the caller) are verified by another staff member, signed on paper.
    # 街道审核: posted by the sub-district's staff member, signed on paper, entered at the desk.
    other = {"approver_id": staff[-1].id} if len(staff) > 1 else None
    auditor = {"approver_id": staff[0].id}
    posted = 0
    for claim_id in claims:
        s.post(
            f"/api/v1/points/claims/{claim_id}/verify", other if claim_id in awards else None, False
        )
        if s.post(f"/api/v1/points/claims/{claim_id}/post", auditor):
            posted += 1

    volunteers = [p for p in helpers if p.role == "volunteer"]
    for person in volunteers[:2]:
        s.post(
            "/api/v1/points/gifts",
            {
                "from_member_id": person.id,
                "to": "pool:hardship",
                "points": "1.5",
                "reason": "捐给困难老人互助池 for elders in hardship",
                "operator": {"role": "self"},
            },
        )
    # A redemption pays for a catalogue service: the service demo's catalogue (seeded before
    # the points), entered here when the points are seeded alone.
    for code, zh, en, category, unit, price, low_cost, paid in CATALOGUE:
        if code in REDEEMED and client.get(f"/api/v1/services/{code}").status_code == 404:
            s.post(
                "/api/v1/services",
                {
                    "code": code,
                    "name_zh": zh,
                    "name_en": en,
                    "category": category,
                    "unit": unit,
                    "unit_price_fen": price,
                    "share_fen": {"low_cost": low_cost, "paid": paid},
                },
                False,
            )
    if elders and volunteers:
        first = elders[0]
        s.post(
            "/api/v1/points/gifts",
            {
                "from_member_id": volunteers[-1].id,
                "to": first.elder_id,
                "points": "2",
                "reason": f"转赠给结对老人{first.elder_name} for the elder I visit",
                "operator": {"role": "self"},
            },
        )
        s.post(
            "/api/v1/points/redemptions",
            {
                "payer": first.elder_id,
                "points": "2",
                "service_code": "clean-home",
                "category": "cleaning",
                "reason": "兑换两小时助洁服务 two hours of cleaning",
            },
        )
    if len(elders) > 1 and len(staff) > 1:
        s.post(
            "/api/v1/points/redemptions",
            {
                "payer": "pool:hardship",
                "beneficiary_id": elders[1].elder_id,
                "points": "1",
                "service_code": "bath-home",
                "category": "bathing",
                "reason": "互助池支付一次上门助浴 a bath at home paid from the pool",
                "requested_by": staff[1].id,
            },
        )
    say(
        f"互助积分已录入 points: {posted} 笔入账 claims posted for {len(helpers)} 位 helpers"
        + (f", {s.refused} 项被拒 refused" if s.refused else "")
    )
    return posted


__all__ = ["seed_points"]
