"""The demo community's service module: a catalogue, providers, vouchers and a month of orders,
created through the HTTP API (like the rest of the demo, this module speaks only HTTP).

`seed_services(client, elder_ids)` is called by `simulators.community.seed` once the elders
exist. It builds, deterministically from `random_seed`:

- a catalogue of eleven services (助餐 助洁 助浴 助医 助急 巡访关爱 精神慰藉 代办 家政 理发 维修)
  with prices and the elder's own share per tier, in fen;
- four providers (the station's own team, a canteen, a housekeeping firm, the clinic) with an
  outlet, workers and their agreements;
- a funding source (the district civil-affairs bureau's vouchers), the first elders enrolled
  as 三无 / 特困 (free) or 75+ 优抚 / 低保 (low-cost), the others paying in full;
- recurring orders (lunch on weekdays, cleaning on Tuesdays, a welfare visit on Wednesdays,
  bathing on Fridays) and a few one-off orders (a haircut, a repair, a clinic escort), whose
  visits of LAST month are carried through: dispatch (now and then refused and dispatched
  again), check-in and check-out (a few late, one far from home), the feedback form, sign-off
  (signature, PIN or a staff witness), follow-up calls, a complaint, a cancellation; then last
  month's vouchers are closed (leftovers expire or carry over) and this month's are allotted
  and its visits generated, so the statements, the reconciliation and supervision have a real
  month to show.

It stops at the first refusal it does not expect (`DemoError`), naming the call.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from simulators.payloads import CHINA_TZ

SOURCE = "district-civil-affairs"
CENTRE = (39.9219, 116.4436)  # the demo community, WGS-84
MAX_ELDERS = 10  # elders who get services in the demo (the first of the community)
# A tiny valid PNG (1x1, grey): what a signature pad would send, in miniature.
SIGNATURE_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABc3UBGAAAAABJRU5ErkJggg=="
)

# code, 中文, English, category, unit, price, low-cost share, paid share (fen per unit)
CATALOGUE: list[tuple[str, str, str, str, str, int, int, int]] = [
    ("meal-lunch", "午餐送餐", "lunch delivered", "meals", "meal", 1500, 500, 1500),
    ("clean-home", "居家保洁", "home cleaning", "cleaning", "hour", 4000, 1000, 4000),
    ("bath-home", "上门助浴", "bathing at home", "bathing", "visit", 8000, 2000, 8000),
    ("clinic-escort", "陪同就医", "escort to the clinic", "medical", "visit", 5000, 1500, 5000),
    ("urgent-help", "紧急上门援助", "urgent help at home", "emergency", "visit", 3000, 0, 3000),
    ("welfare-visit", "上门巡访", "welfare visit", "visit", "visit", 2000, 0, 2000),
    ("company", "陪伴聊天", "companionship", "companionship", "hour", 3000, 500, 3000),
    ("errand", "代购代缴", "errands and bills", "errand", "visit", 1000, 200, 1000),
    (
        "appliance-clean",
        "家电清洗",
        "appliance cleaning",
        "housekeeping",
        "visit",
        6000,
        3000,
        6000,
    ),
    ("haircut", "上门理发", "haircut at home", "haircut", "visit", 1500, 500, 1500),
    ("repair", "水电维修", "plumbing and electrics", "repair", "visit", 3000, 1000, 3000),
]

# name, kind, services, workers
PROVIDERS: list[tuple[str, str, list[str], list[str]]] = [
    (
        "幸福里居家养老服务站",
        "station",
        ["welfare-visit", "company", "errand", "urgent-help", "haircut"],
        ["周春燕", "郭立新"],
    ),
    ("幸福里长者食堂", "canteen", ["meal-lunch"], ["马建平", "罗秋菊"]),
    (
        "安心家政服务有限公司",
        "housekeeping",
        ["clean-home", "bath-home", "appliance-clean", "repair"],
        ["梁海峰", "宋雪梅", "韩志刚"],
    ),
    ("和平街道社区卫生服务中心", "clinic", ["clinic-escort"], ["唐文静"]),
]

ALLOTMENTS = [  # (tier, category, fen a month): about what the schedules below use
    ("free", "meals", 33000),
    ("free", "cleaning", 40000),
    ("free", "bathing", 40000),
    ("free", "visit", 10000),
    ("low_cost", "meals", 22000),
    ("low_cost", "cleaning", 30000),
    ("low_cost", "bathing", 30000),
    ("low_cost", "visit", 10000),
]
# Elder n (0-based) of the demo: tier and funding basis; the rest pay in full.
ENROLMENT = [
    ("free", "三无"),
    ("low_cost", "75+ 重点优抚"),
    ("free", "特困供养"),
    ("low_cost", "低保"),
    ("low_cost", "75+ 独居"),
]


class DemoError(RuntimeError):
    """The API refused a demo call it should have taken."""


@dataclass
class Api:
    client: httpx.Client

    def call(self, method: str, path: str, body: Any = None, ok: Sequence[int] = ()) -> Any:
        resp = self.client.request(method, path, json=body)
        if resp.status_code >= 400 and resp.status_code not in ok:
            raise DemoError(f"{method} {path} -> {resp.status_code}: {resp.text[:300]}")
        return resp.json() if resp.content else None

    def post(self, path: str, body: Any = None, ok: Sequence[int] = ()) -> Any:
        return self.call("POST", path, body, ok)


def _month(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def _home(rng: random.Random) -> dict[str, float]:
    return {
        "lat": round(CENTRE[0] + rng.uniform(-0.004, 0.004), 6),
        "lon": round(CENTRE[1] + rng.uniform(-0.004, 0.004), 6),
    }


def _near(home: dict[str, float], rng: random.Random, far: bool = False) -> dict[str, float]:
    d = 0.02 if far else 0.0004  # about 2 km, or within 50 m
    return {"lat": round(home["lat"] + rng.uniform(-d, d), 6), "lon": home["lon"]}


def seed_services(
    client: httpx.Client,
    elder_ids: Sequence[str | None],
    say: Callable[[str], None] = lambda line: None,
    *,
    random_seed: int = 7,
    today: date | None = None,
) -> bool:
    """Create the service demo. False, and nothing done, when the catalogue is there already
    or the gateway has no service API."""
    api = Api(client)
    probe = client.get("/api/v1/services")
    if probe.status_code != 200:  # a gateway without the service module: nothing to show
        say(f"服务模块不可用，跳过 service API not available ({probe.status_code}): skipped")
        return False
    if any(svc.get("code") == "meal-lunch" for svc in probe.json()):
        say("服务演示数据已存在 service demo already there")
        return False
    rng = random.Random(random_seed)
    today = today or datetime.now(CHINA_TZ).date()
    this_month = today.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    elders = [e for e in elder_ids if e][:MAX_ELDERS]

    for code, zh, en, cat, unit, price, low, paid in CATALOGUE:
        api.post(
            "/api/v1/services",
            {
                "code": code,
                "name_zh": zh,
                "name_en": en,
                "category": cat,
                "unit": unit,
                "unit_price_fen": price,
                "share_fen": {"low_cost": low, "paid": paid},
            },
        )
    prices = {c[0]: c[5] for c in CATALOGUE}
    provider_of: dict[str, str] = {}
    workers: dict[str, list[str]] = {}
    for name, kind, services, people in PROVIDERS:
        pid = api.post("/api/v1/providers", {"name": name, "kind": kind, "phone": "010-64001234"})[
            "id"
        ]
        outlet = api.post(
            f"/api/v1/providers/{pid}/outlets",
            {"name": f"{name}幸福里网点", "address": "朝阳区和平街道幸福里社区服务中心一层"},
        )["id"]
        workers[pid] = [
            api.post(f"/api/v1/providers/{pid}/workers", {"name": n, "outlet_id": outlet})["id"]
            for n in people
        ]
        for code in services:
            api.post(
                f"/api/v1/providers/{pid}/agreements",
                {
                    "service_code": code,
                    "unit_price_fen": prices[code],
                    "valid_from": f"{last_month.year}-01-01",
                },
            )
            provider_of[code] = pid
    # A staff member of the community witnesses some sign-offs (none: signatures instead).
    staff = next(
        (r["id"] for r in api.call("GET", "/api/v1/responders") if r["role"] == "staff"), None
    )

    api.post(
        "/api/v1/voucher-sources",
        {
            "id": SOURCE,
            "name_zh": "区民政局政府购买居家养老服务券",
            "name_en": "District civil affairs: government-purchased home-care vouchers",
            "carry_over": ["cleaning", "bathing"],
            "allotments": [{"tier": t, "category": c, "monthly_fen": f} for t, c, f in ALLOTMENTS],
        },
    )
    tier_of: dict[str, str | None] = {}
    pins: dict[str, str] = {}
    for n, elder in enumerate(elders):
        tier_of[elder] = None
        if n < len(ENROLMENT):
            tier, basis = ENROLMENT[n]
            tier_of[elder] = tier
            api.call(
                "PUT",
                "/api/v1/voucher-wallets",
                {
                    "source_id": SOURCE,
                    "elder_id": elder,
                    "tier": tier,
                    "basis": basis,
                    "from_month": _month(last_month),
                },
            )
            pins[elder] = f"{1357 + n:04d}"
            api.call("PUT", f"/api/v1/elders/{elder}/service-pin", {"pin": pins[elder]})
    api.post("/api/v1/vouchers/allot", {"month": _month(last_month)})

    homes = {e: _home(rng) for e in elders}

    def order(elder: str, cat: str, request: str, by: str = "family") -> str:
        return str(
            api.post(
                "/api/v1/service-orders",
                {
                    "elder_id": elder,
                    "category": cat,
                    "request": request,
                    "applied_by": {"role": by},
                    "home": homes[elder],
                },
            )["id"]
        )

    def agree(oid: str, elder: str, code: str, **extra: Any) -> None:
        tier = tier_of[elder]
        funded = tier is not None and any(t == tier and c == _cat(code) for t, c, _ in ALLOTMENTS)
        body: dict[str, Any] = {"service_code": code} | extra
        body |= {"funding_source": SOURCE} if funded else {"tier": "paid"}
        api.post(f"/api/v1/service-orders/{oid}/agree", body)

    plans = [  # (which elders, code, category, weekdays, time, request, quantity)
        (elders[:5], "meal-lunch", "meals", [0, 1, 2, 3, 4], "11:30", "工作日中午送午餐", 1),
        (elders[:4], "clean-home", "cleaning", [1], "09:00", "每周二上午保洁两小时", 2),
        (elders[:4], "welfare-visit", "visit", [2], "15:00", "每周三下午上门巡访", 1),
        (elders[:2], "bath-home", "bathing", [4], "14:00", "每周五下午上门助浴", 1),
    ]
    for who, code, cat, days, at, request, qty in plans:
        for elder in who:
            oid = order(elder, cat, request)
            recurrence = {"weekdays": days, "at": at, "start": last_month.isoformat()}
            agree(oid, elder, code, quantity=qty, recurrence=recurrence)
    api.post(
        "/api/v1/service-orders/generate",
        {"from": last_month.isoformat(), "to": (this_month - timedelta(days=1)).isoformat()},
    )
    # One-off orders of last month.
    for i, (code, cat, request) in enumerate(
        [
            ("haircut", "haircut", "想理个发"),
            ("repair", "repair", "厨房水龙头漏水"),
            ("clinic-escort", "medical", "陪同去社区卫生服务中心复查血压"),
            ("company", "companionship", "老伴去世后情绪低落，希望有人陪着聊聊"),
        ]
    ):
        if not elders:
            break
        elder = elders[(i * 3) % len(elders)]
        day = last_month + timedelta(days=3 + i * 6)
        when = datetime(day.year, day.month, day.day, 10, 0, tzinfo=CHINA_TZ)
        oid = order(elder, cat, request, by="elder" if i % 2 else "staff")
        agree(oid, elder, code, scheduled_at=when.isoformat())

    counts = _carry_out_last_month(api, last_month, provider_of, workers, homes, pins, staff, rng)
    closed = api.post("/api/v1/vouchers/close", {"month": _month(last_month)})
    api.post("/api/v1/vouchers/allot", {"month": _month(this_month)})
    api.post(
        "/api/v1/service-orders/generate",
        {
            "from": this_month.isoformat(),
            "to": (
                (this_month + timedelta(days=31)).replace(day=1) - timedelta(days=1)
            ).isoformat(),
        },
    )
    rec = api.call("GET", "/api/v1/vouchers/reconciliation")
    say(
        f"服务演示数据已建立 service demo: {len(CATALOGUE)} 项服务 services, "
        f"{len(PROVIDERS)} 家服务商 providers, {counts['signed']} 次服务已签收 visits signed off "
        f"in {_month(last_month)} ({counts['cancelled']} 取消 cancelled, {counts['missed']} 未上门 "
        f"missed), {len(closed['done'])} 个服务券账户已结账 vouchers closed; 对账 "
        f"reconciliation {'一致 ok' if rec['ok'] else rec['problems'][:3]}"
    )
    return True


def _cat(code: str) -> str:
    return next(c[3] for c in CATALOGUE if c[0] == code)


def _carry_out_last_month(
    api: Api,
    last_month: date,
    provider_of: dict[str, str],
    workers: dict[str, list[str]],
    homes: dict[str, dict[str, float]],
    pins: dict[str, str],
    staff: str | None,
    rng: random.Random,
) -> dict[str, int]:
    """Every visit of last month, through the workflow, with the mishaps of real life."""
    orders = api.call(
        "GET", f"/api/v1/service-orders?month={_month(last_month)}&state=agreed&limit=5000"
    )
    counts = {"signed": 0, "cancelled": 0, "missed": 0, "refused": 0}
    b64_signature = base64.b64encode(SIGNATURE_PNG).decode()
    for o in orders:
        if o["recurrence"] is not None:
            continue  # a parent: its visits are the children
        oid, elder = o["id"], o["elder_id"]
        at = datetime.fromisoformat(o["scheduled_at"])
        pid = provider_of[o["service_code"]]
        crew = workers[pid]
        r = rng.random()
        if r < 0.03:
            api.post(f"/api/v1/service-orders/{oid}/cancel", {"reason": "老人去子女家小住"})
            counts["cancelled"] += 1
            continue
        if r < 0.05:
            worker = rng.choice(crew)
            api.post(
                f"/api/v1/service-orders/{oid}/dispatch", {"provider_id": pid, "worker_id": worker}
            )
            counts["missed"] += 1  # dispatched, never came: supervision counts it missed
            continue
        worker = rng.choice(crew)
        if len(crew) > 1 and rng.random() < 0.06:
            api.post(
                f"/api/v1/service-orders/{oid}/dispatch", {"provider_id": pid, "worker_id": worker}
            )
            api.post(
                f"/api/v1/service-orders/{oid}/refuse", {"worker_id": worker, "reason": "身体不适"}
            )
            counts["refused"] += 1
            worker = next(w for w in crew if w != worker)
        w = {"worker_id": worker}
        api.post(f"/api/v1/service-orders/{oid}/dispatch", {"provider_id": pid} | w)
        api.post(f"/api/v1/service-orders/{oid}/accept", w)
        late = rng.random() < 0.07
        start = at + timedelta(minutes=rng.randint(35, 70) if late else rng.randint(-10, 10))
        minutes = {"hour": 60 * (o["quantity"] or 1), "meal": 10}.get(o["unit"] or "", 45)
        end = start + timedelta(minutes=minutes + rng.randint(-5, 10))
        home = homes[elder]
        far = rng.random() < 0.01
        api.post(
            f"/api/v1/service-orders/{oid}/check-in",
            w | {"at": start.isoformat()} | _near(home, rng, far),
        )
        api.post(
            f"/api/v1/service-orders/{oid}/check-out",
            w | {"at": end.isoformat()} | _near(home, rng),
        )
        rating = rng.choices([5, 4, 3, 2], weights=[70, 22, 6, 2])[0]
        api.post(
            f"/api/v1/service-orders/{oid}/feedback",
            {
                "rating": rating,
                "on_time": not late,
                "attitude": min(5, rating + 1),
                "quality": rating,
                **({"note": "送来的饭有点凉"} if rating <= 3 and o["category"] == "meals" else {}),
            },
        )
        how = rng.random()
        if how < 0.6:
            body = {
                "method": "signature",
                "signature_base64": base64.b64encode(SIGNATURE_PNG).decode(),
            }
        elif how < 0.8 and elder in pins:
            body = {"method": "pin", "pin": pins[elder]}
        elif staff is not None:
            body = {"method": "witnessed", "witness_id": staff}
        else:
            body = {"method": "signature", "signature_base64": b64_signature}
        resp = api.client.post(
            f"/api/v1/service-orders/{oid}/sign-off",
            json=body,
            headers={"Idempotency-Key": f"demo-{oid}"},
        )
        if resp.status_code == 409 and resp.json()["detail"].get("code") == "voucher_insufficient":
            continue  # left for staff: the vouchers ran out (shows in supervision and orders)
        if resp.status_code != 200:
            raise DemoError(f"sign-off {oid} -> {resp.status_code}: {resp.text[:300]}")
        counts["signed"] += 1
        if rng.random() < 0.3:
            api.post(
                f"/api/v1/service-orders/{oid}/follow-ups",
                {"outcome": "satisfied" if rating >= 4 else "unsatisfied", "rating": rating},
            )
        if rating == 2:
            api.post(f"/api/v1/service-orders/{oid}/complaints", {"note": "服务人员迟到且态度不好"})
        if rng.random() < 0.5:
            api.post(f"/api/v1/service-orders/{oid}/close", {"note": "月度归档"})
    return counts
