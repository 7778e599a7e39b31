"""The demo community's care registry (issue 4), made through the HTTP API like a station would.

`seed_registry` is called by `simulators.community.seed` once the homes, devices and people
exist. For every home it registers the elder's detail (老年人信息台账: a well-formed ID-card
number, structured address, living situation, self-care, categories and service tier with its
basis, emergency contacts, family doctor, conditions), pairs the home's watchers, volunteers and
family with a kind (结对), links family members (requested, approved, confirmed by the elder),
records a few vital signs (some abnormal, as in life) and, for some elders, a capability
assessment; volunteers get profiles (categories, skills, availability, certificates) and staff
their station.

Like every simulator this speaks only the contract (HTTP) and imports nothing of the gateway or
of `care`: the ID-number check digit (GB 11643) is computed here. The numbers are made up, with
valid check digits; they belong to nobody.

A gateway without SHOUWANG_DATA_KEY refuses to store ID numbers: the elders are then
registered without one (birth date and gender given instead), and the log says so. A refusal of
one record is logged and the rest goes on: the alarm demo does not depend on the registry.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import httpx

from simulators.payloads import CHINA_TZ

STATION = "幸福里居家养老服务站"
DISTRICT, SUBDISTRICT, COMMUNITY = "朝阳区", "和平街道", "幸福里社区"
REGION = "110105"  # 北京市朝阳区, where the demo community is
FEMALE_GIVEN = frozenset(
    (
        "秀英",
        "桂英",
        "淑珍",
        "玉兰",
        "凤英",
        "秀兰",
        "桂兰",
        "玉珍",
        "淑英",
        "金花",
        "丽华",
        "素芬",
        "淑兰",
    )
)
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ADDRESS = re.compile(r"(\d+)号楼(\d+)单元(\d+)")
CLINIC = "和平街社区卫生服务中心"
DOCTORS = ("郑医生", "何医生", "罗医生")
CONDITIONS = ("高血压", "2型糖尿病", "冠心病", "慢阻肺", "骨质疏松", "关节炎", "白内障")
SKILLS = ("量血压", "理发", "陪同就医", "代购", "家电维修", "读报", "心理疏导", "法律咨询")


class _Home(Protocol):
    number: int
    elder_name: str
    address: str
    elder_phone: str | None
    birth_date: date
    watchers: list[str]
    volunteers: list[str]
    family: list[str]
    elder_id: str | None


class _Person(Protocol):
    pager_id: str
    name: str
    role: str
    phone: str | None
    id: str | None


class _Community(Protocol):
    homes: list[Any]
    people: list[Any]


def id_number(region: str, born: date, sequence: int) -> str:
    """A well-formed 18-character ID number (GB 11643 check character); odd sequence: male."""
    first17 = f"{region}{born:%Y%m%d}{sequence % 1000:03d}"
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return first17 + "10X98765432"[total % 11]


def _female(name: str) -> bool:
    return name[1:] in FEMALE_GIVEN


def _address(home: _Home) -> dict[str, Any]:
    m = _ADDRESS.search(home.address)
    out: dict[str, Any] = {
        "district": DISTRICT,
        "subdistrict": SUBDISTRICT,
        "community": COMMUNITY,
        "estate": "幸福里小区",
    }
    if m:
        out.update(building=m[1], unit=m[2], room=m[3])
    return out


def _age(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _elder_body(
    home: _Home, rng: random.Random, today: date, people: dict[str, _Person]
) -> dict[str, Any]:
    female = _female(home.elder_name)
    seq = rng.randrange(0, 500) * 2 + (0 if female else 1)
    age = _age(home.birth_date, today)
    relatives = [people[p] for p in home.family if p in people]
    # no family on the list: alone; otherwise empty nest or with family, alternately
    living = (
        "lives_alone" if not relatives else ("empty_nest" if home.number % 2 else "with_family")
    )
    self_care = "independent" if age < 80 else rng.choice(["independent", "partly_dependent"])
    if age >= 90:
        self_care = rng.choice(["partly_dependent", "dependent"])
    categories: list[str] = []
    if home.number % 5 == 0:
        categories.append("dibao")
    if home.number % 7 == 0:
        categories.append("disabled")
    if home.number % 11 == 0:
        categories.append("special_care")
    if home.number == 13:
        categories.append("sanwu")
    tier, basis = "paid", None
    if "sanwu" in categories:
        tier, basis = "free", {"text": "三无老人，按方案无偿服务", "categories": ["sanwu"]}
    elif age >= 75 and {"dibao", "special_care"} & set(categories):
        hit = sorted({"dibao", "special_care"} & set(categories))
        tier, basis = "free", {"text": "75周岁以上低保或重点优抚对象，无偿服务", "categories": hit}
    contacts = [
        {
            "name": p.name,
            "relation": "child",
            "phone": p.phone,
            "holds_key": i == 0,
        }
        for i, p in enumerate(relatives)
        if p.phone and not p.name.isascii()  # the child abroad is not an emergency contact
    ]
    if not contacts:  # a neighbour keeps a key for someone with no family near
        watcher = people.get(home.watchers[0]) if home.watchers else None
        if watcher is not None and watcher.phone:
            contacts.append(
                {
                    "name": watcher.name,
                    "relation": "neighbour",
                    "phone": watcher.phone,
                    "holds_key": True,
                }
            )
    body: dict[str, Any] = {
        "elder_id": home.elder_id,
        "station": STATION,
        "name": home.elder_name,
        "id_card": id_number(REGION, home.birth_date, seq),
        "address": _address(home),
        "hukou": {"kind": "local"},
        "living_situation": living,
        "self_care": self_care,
        "categories": categories,
        "service_tier": tier,
        "tier_basis": basis,
        "emergency_contacts": contacts[:3],
        "doctor": {"name": rng.choice(DOCTORS), "clinic": CLINIC},
        "conditions": rng.sample(CONDITIONS, k=rng.randint(0, 2)),
    }
    if home.elder_phone:
        body["phone"] = home.elder_phone
    if rng.random() < 0.2:
        body["allergies"] = ["青霉素"]
    return body


def _vitals(rng: random.Random, now: datetime, number: int) -> list[dict[str, Any]]:
    out = []
    for k in range(3):
        at = now - timedelta(days=20 - 9 * k, hours=rng.randint(0, 3))
        high = number % 4 == 0  # some elders' pressure runs high
        sbp = rng.randint(145, 165) if high else rng.randint(112, 136)
        reading: dict[str, Any] = {
            "measured_at": at.isoformat(timespec="seconds"),
            "systolic": sbp,
            "diastolic": rng.randint(70, 92),
            "pulse": rng.randint(62, 88),
            "note": "入户巡访测量",
        }
        if number % 3 == 0:
            reading.update(glucose_mmol_l=round(rng.uniform(5.2, 7.6), 1), glucose_timing="fasting")
        if k == 2:
            reading["weight_kg"] = round(rng.uniform(48, 72), 1)
        out.append(reading)
    return out


# GB/T 42195-2022 items and maxima (the 26 items of Annex B), for made-up assessments.
_ITEMS = {
    "eating": 4, "grooming": 4, "bathing": 4, "dressing_upper": 4, "dressing_lower": 4,
    "urine_control": 4, "bowel_control": 4, "toileting": 4, "bed_mobility": 4, "transfer": 4,
    "walking": 4, "stairs": 3, "time_orientation": 4, "place_orientation": 4,
    "person_orientation": 4, "memory": 4, "comprehension": 4, "expression": 4, "aggression": 1,
    "depression": 1, "consciousness": 2, "vision": 2, "hearing": 2, "daily_affairs": 4,
    "transport": 3, "social": 4,
}  # fmt: skip


def _assessment(rng: random.Random, today: date, self_care: str) -> dict[str, Any]:
    scores = dict(_ITEMS)
    lose = {"independent": 0, "partly_dependent": 12, "dependent": 36}[self_care]
    keys = ["bathing", "stairs", "walking", "transport", "dressing_lower", "memory", "hearing"]
    while lose > 0:
        k = rng.choice(keys + list(_ITEMS))
        if scores[k] > 0:
            scores[k] -= 1
            lose -= 1
    return {
        "assessed_on": (today - timedelta(days=rng.randint(10, 200))).isoformat(),
        "assessor": "评估员" + rng.choice("赵钱孙"),
        "second_assessor": "评估员" + rng.choice("周吴郑"),
        "reason": "first",
        "scores": scores,
    }


def seed_registry(
    client: httpx.Client,
    community: _Community,
    *,
    random_seed: int = 7,
    log_line: Callable[[str], None] | None = None,
) -> int:
    """Fill the registry of a just-created demo community; returns how many elders were
    registered. Refusals are logged, not raised (see the module doc)."""
    say = log_line or (lambda line: None)
    rng = random.Random(random_seed * 1009)
    now = datetime.now(CHINA_TZ)
    today = now.date()
    people: dict[str, _Person] = {p.pager_id: p for p in community.people}
    problems: list[str] = []
    without_id = False

    def post(path: str, body: dict[str, Any] | None, method: str = "POST") -> httpx.Response:
        resp = client.request(method, path, json=body)
        if resp.status_code >= 400:
            problems.append(f"{method} {path} -> {resp.status_code}: {resp.text[:160]}")
        return resp

    for p in community.people:
        if p.id is None:
            continue
        if p.role == "staff":
            post(f"/api/v1/care/people/{p.id}/profile", {"station": STATION}, "PUT")
        elif p.role == "volunteer":
            born = today.replace(year=today.year - rng.randint(61, 68), day=1)
            post(
                f"/api/v1/care/people/{p.id}/profile",
                {
                    "categories": rng.choice(
                        [["young_old"], ["party_member", "young_old"], ["medical", "young_old"]]
                    ),
                    "skills": rng.sample(SKILLS, k=2),
                    "availability": [
                        {"weekday": d, "start": "08:30", "end": "11:30"} for d in (0, 2, 4)
                    ],
                    "trainings": [
                        {"name": "互助养老员岗前培训", "completed_on": "2025-09-20", "hours": 16}
                    ],
                    "certificates": [
                        {
                            "name": "红十字救护员证",
                            "issued_on": "2025-05-10",
                            "expires_on": "2028-05-09",
                        }
                    ],
                    "birth_date": born.isoformat(),
                },
                "PUT",
            )

    registered = 0
    for home in community.homes:
        if home.elder_id is None:
            continue
        body = _elder_body(home, rng, today, people)
        resp = client.post("/api/v1/care/elders", json=body)
        if resp.status_code == 422 and "data_key_missing" in resp.text:
            without_id = True
            body.pop("id_card")
            body.update(
                birth_date=home.birth_date.isoformat(),
                gender="female" if _female(home.elder_name) else "male",
            )
            resp = client.post("/api/v1/care/elders", json=body)
        if resp.status_code != 201:
            problems.append(f"elder {home.elder_name}: {resp.status_code} {resp.text[:160]}")
            continue
        registered += 1
        eid = home.elder_id
        kinds = [("watcher", home.watchers), ("volunteer", home.volunteers)]
        kinds.append(("family", home.family))
        for kind, pagers in kinds:
            for order, pager in enumerate(pagers):
                person = people.get(pager)
                if person is not None and person.id is not None:
                    post(
                        f"/api/v1/care/elders/{eid}/pairings",
                        {"person_id": person.id, "kind": kind, "order": order},
                    )
        for pager in home.family:
            person = people.get(pager)
            if person is None or person.id is None:
                continue
            link = post(
                "/api/v1/care/family-links",
                {"elder_id": eid, "person_id": person.id, "relation": "child"},
            )
            if link.status_code == 201:
                lid = link.json()["id"]
                post(f"/api/v1/care/family-links/{lid}/approve", None)
                post(f"/api/v1/care/family-links/{lid}/confirm", {"on_behalf": False})
        if home.number % 2 == 1 or home.number % 4 == 0:
            for reading in _vitals(rng, now, home.number):
                post(f"/api/v1/care/elders/{eid}/vitals", reading)
        if home.number % 3 == 1:
            post(
                f"/api/v1/care/elders/{eid}/assessments", _assessment(rng, today, body["self_care"])
            )
    say(
        f"照护台账已建立 care registry: {registered} 位老人 elders"
        + (
            "（未配置数据密钥，未存身份证号 no SHOUWANG_DATA_KEY: no ID numbers）"
            if without_id
            else ""
        )
    )
    for line in problems[:10]:
        say(f"照护台账 care registry refused: {line}")
    return registered
