"""The demo community: its people and devices (`plan`), creating them through the HTTP API
(`seed`), and bringing them to life over MQTT (`run`).

Everything that names a device or a pager is deterministic from the home's number (`cb-001`,
`gas-001`, `water-001`, `pager-w-01`, ...), and names, addresses and phones are deterministic from
the random seed, so a second `demo` against a database that already holds the community runs
the same homes without creating anything.

Escalation for every elder: the home's watcher(s) -> two volunteers -> the station staff on duty
-> the family, with short timeouts so that a demo shows escalation within a minute.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

import httpx

from devices.kinds import DeviceKind
from devices.payloads import Page
from simulators.demo_care import seed_registry
from simulators.demo_points import seed_points
from simulators.demo_services import seed_services
from simulators.devices import SimDevice
from simulators.pager import Script, SimPager
from simulators.payloads import CHINA_TZ
from simulators.schedule import Scheduler

DEMO_MODULES = ("care", "points", "services")  # what `make run --demo` fills
log = logging.getLogger(__name__)

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
ELDER_GIVEN = [
    "秀英", "桂英", "淑珍", "玉兰", "凤英", "建国", "国华", "德明", "志强", "文华", "秀兰", "桂兰",
    "玉珍", "淑英", "永福", "春生", "广才", "金花", "丽华", "振华", "素芬", "宝山", "淑兰", "长林",
]  # fmt: skip
YOUNGER_GIVEN = [
    "晓明", "丽娟", "海燕", "建军", "红梅", "伟", "静", "磊", "敏", "志刚", "雪梅", "立新",
    "海峰", "文静", "春燕", "少华", "秋菊", "建平", "婷", "浩",
]  # fmt: skip
PHONE_PREFIXES = ("138", "139", "135", "136", "137", "150", "186", "158")
DISTRICT = "朝阳区和平街道幸福里社区"

WATCHER, VOLUNTEER, STAFF, FAMILY = "watcher", "volunteer", "staff", "family"
ROLE_ZH = {WATCHER: "守望员", VOLUNTEER: "志愿者", STAFF: "工作人员", FAMILY: "家属"}


class SeedError(RuntimeError):
    """The API refused the demo community (not a 409), or could not be reached."""


@dataclass
class Person:
    """A responder of the community; `id` is the gateway's, once created (None otherwise)."""

    pager_id: str
    name: str
    role: str
    phone: str | None = None
    language: str = "zh-CN"
    id: str | None = None

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "role": self.role, "pager_id": self.pager_id}
        if self.phone is not None:
            data["phone"] = self.phone
        data["language"] = self.language
        return data


@dataclass
class Home:
    """One home: the elder, the three devices, and the pagers of the people who answer."""

    number: int
    elder_name: str
    address: str
    elder_phone: str | None
    birth_date: date
    call_button: str
    gas_sensor: str
    water_sensor: str
    watchers: list[str]
    volunteers: list[str]
    family: list[str]
    elder_id: str | None = None
    building: str | None = None  # its devices' building: a power cut there is one incident

    @property
    def devices(self) -> list[tuple[str, DeviceKind]]:
        return [
            (self.call_button, DeviceKind.CALL_BUTTON),
            (self.gas_sensor, DeviceKind.GAS_SENSOR),
            (self.water_sensor, DeviceKind.WATER_SENSOR),
        ]

    def elder_body(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.elder_name,
            "address": self.address,
            "birth_date": self.birth_date.isoformat(),
        }
        if self.elder_phone is not None:
            data["phone"] = self.elder_phone
        return data


@dataclass
class Community:
    """The homes and the responders; `created` is True when `seed` made them just now."""

    homes: list[Home]
    people: list[Person]
    created: bool = False

    @property
    def staff(self) -> list[str]:
        return [p.pager_id for p in self.people if p.role == STAFF]

    def person(self, pager_id: str) -> Person:
        for p in self.people:
            if p.pager_id == pager_id:
                return p
        raise KeyError(pager_id)

    def home_of(self, device_id: str) -> Home:
        for h in self.homes:
            if device_id in (h.call_button, h.gas_sensor, h.water_sensor):
                return h
        raise KeyError(device_id)

    def escalation(
        self,
        home: Home,
        watcher_timeout_s: int = 30,
        volunteer_timeout_s: int = 45,
        staff_timeout_s: int = 60,
        family_timeout_s: int = 60,
    ) -> list[tuple[list[str], int]]:
        """The steps for `home`, as (pager ids, ack_timeout_s); empty steps are left out."""
        steps = [
            (home.watchers, watcher_timeout_s),
            (home.volunteers, volunteer_timeout_s),
            (self.staff, staff_timeout_s),
            (home.family, family_timeout_s),
        ]
        return [(list(ids), t) for ids, t in steps if ids]


def _phone(rng: random.Random) -> str:
    return rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _birth_date(rng: random.Random, today: date) -> date:
    """A birth date making the elder 62 to 96 years old today."""
    age = rng.randint(62, 96)
    return today - timedelta(days=math.ceil(age * 365.25) + rng.randint(2, 358))


def plan(n_homes: int = 24, random_seed: int = 7, today: date | None = None) -> Community:
    """The demo community, without touching anything: the same arguments give the same plan
    (birth dates follow `today`, ages stay the same)."""
    if n_homes < 1 or n_homes > 999:
        raise ValueError("n_homes must be 1 to 999")
    rng = random.Random(random_seed)
    today = today or datetime.now(CHINA_TZ).date()
    n_watchers = math.ceil(n_homes / 2)
    n_volunteers = max(2, math.ceil(n_homes / 4))
    n_staff = 2 if n_homes <= 12 else 3

    def younger(surname: str | None = None) -> str:
        return (surname or rng.choice(SURNAMES)) + rng.choice(YOUNGER_GIVEN)

    people: list[Person] = []
    watchers = [f"pager-w-{i:02d}" for i in range(1, n_watchers + 1)]
    volunteers = [f"pager-v-{i:02d}" for i in range(1, n_volunteers + 1)]
    people += [Person(p, younger(), WATCHER, _phone(rng)) for p in watchers]
    people += [Person(p, younger(), VOLUNTEER, _phone(rng)) for p in volunteers]
    people += [
        Person(f"pager-s-{i:02d}", younger(), STAFF, _phone(rng)) for i in range(1, n_staff + 1)
    ]

    homes: list[Home] = []
    n_family = 0
    flats: set[tuple[int, int, int, int]] = set()
    for i in range(n_homes):
        number = i + 1
        surname = rng.choice(SURNAMES)
        while True:  # one home per flat: two elders at one address would confuse a responder
            building, unit = rng.randint(1, 12), rng.randint(1, 4)
            floor, room = rng.randint(1, 18), rng.randint(1, 4)
            if (building, unit, floor, room) not in flats:
                flats.add((building, unit, floor, room))
                break
        home_watchers = [watchers[i // 2]]
        if i % 6 == 5 and n_watchers > 1:  # some homes have a second neighbour watching
            extra = watchers[(i // 2 + 1) % n_watchers]
            if extra not in home_watchers:
                home_watchers.append(extra)
        home_volunteers = list(
            dict.fromkeys([volunteers[i % n_volunteers], volunteers[(i + 1) % n_volunteers]])
        )
        family: list[str] = []
        if i % 3 != 2:  # about two homes in three have family on the list
            n_family += 1
            english = n_family == 2  # one child abroad reads English
            person = Person(
                f"pager-f-{n_family:02d}",
                f"{rng.choice(['Lucy', 'David', 'Grace', 'Kevin'])} {surname}"
                if english
                else younger(surname),
                FAMILY,
                _phone(rng),
                "en" if english else "zh-CN",
            )
            people.append(person)
            family.append(person.pager_id)
        homes.append(
            Home(
                number=number,
                elder_name=surname + rng.choice(ELDER_GIVEN),
                address=f"{DISTRICT} {building}号楼{unit}单元{floor}{room:02d}",
                elder_phone=None if rng.random() < 0.15 else _phone(rng),
                birth_date=_birth_date(rng, today),
                call_button=f"cb-{number:03d}",
                gas_sensor=f"gas-{number:03d}",
                water_sensor=f"water-{number:03d}",
                watchers=home_watchers,
                volunteers=home_volunteers,
                family=family,
                building=f"{building}号楼",
            )
        )
    return Community(homes=homes, people=people)


# --- seeding through the HTTP API ------------------------------------------------------------


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))[:300]
    except (ValueError, AttributeError):
        return resp.text[:300]


def _send(client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    resp = client.request(method, path, json=body)
    if resp.status_code >= 400 and resp.status_code != 409:
        raise SeedError(f"{method} {path} -> {resp.status_code}: {_detail(resp)}")
    return resp


def _wait_for_api(client: httpx.Client, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.get("/healthz")
            return
        except httpx.TransportError as exc:
            if time.monotonic() >= deadline:
                raise SeedError(f"the API at {client.base_url} did not answer: {exc}") from exc
            time.sleep(0.5)


def _create_id(resp: httpx.Response, what: str) -> str:
    try:
        ident = resp.json()["id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SeedError(f"creating {what}: no id in the answer {resp.text[:200]!r}") from exc
    return str(ident)


def seed(
    api_url: str,
    token: str,
    n_homes: int = 24,
    *,
    random_seed: int = 7,
    watcher_timeout_s: int = 30,
    volunteer_timeout_s: int = 45,
    staff_timeout_s: int = 60,
    family_timeout_s: int = 60,
    wait_s: float = 30.0,
    transport: httpx.BaseTransport | None = None,
    log_line: Callable[[str], None] | None = None,
    modules: Collection[str] = DEMO_MODULES,
) -> Community:
    """Create the demo community through the API, or find that it is there already.

    `modules` are the station's records to fill besides the homes, devices, people and plans:
    the registry ("care"), a month of points ("points"), of service orders ("services").

    The community is there when `GET /api/v1/devices/cb-001` answers 200 or when creating
    `cb-001` answers 409: then nothing is created and the plan is returned with `created` False
    and no gateway ids (the simulators need only the device and pager ids, which are fixed).
    """
    say = log_line or (lambda line: None)
    community = plan(n_homes, random_seed)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=api_url.rstrip("/"), headers=headers, timeout=10.0, transport=transport
    ) as client:
        _wait_for_api(client, wait_s)
        first = community.homes[0]
        probe = client.get(f"/api/v1/devices/{first.call_button}")
        if probe.status_code == 200:
            say(f"示范社区已存在 demo community already there ({first.call_button} exists)")
            return community
        if probe.status_code in (401, 403):
            raise SeedError(f"the API refused the token: {probe.status_code} {_detail(probe)}")

        def add_elder(home: Home) -> None:
            resp = _send(client, "POST", "/api/v1/elders", home.elder_body())
            home.elder_id = _create_id(resp, f"elder {home.elder_name}")

        def add_device(home: Home, device_id: str, kind: DeviceKind) -> bool:
            body = {"id": device_id, "kind": str(kind), "elder_id": home.elder_id}
            if _send(client, "POST", "/api/v1/devices", body).status_code == 409:
                return False
            if home.building:  # grouped by building on the board, and in a power cut
                _send(client, "PATCH", f"/api/v1/devices/{device_id}", {"building": home.building})
            return True

        add_elder(first)
        if not add_device(first, first.call_button, DeviceKind.CALL_BUTTON):
            say(f"示范社区已存在 demo community already there ({first.call_button}: 409)")
            first.elder_id = None
            return community
        for person in community.people:
            resp = _send(client, "POST", "/api/v1/responders", person.body())
            if resp.status_code == 409:
                raise SeedError(f"responder with pager {person.pager_id} exists (409)")
            person.id = _create_id(resp, f"responder {person.pager_id}")
        for home in community.homes:
            if home.elder_id is None:
                add_elder(home)
            for device_id, kind in home.devices:
                if home is first and device_id == first.call_button:
                    continue
                if not add_device(home, device_id, kind):
                    say(f"[{device_id}] 已存在 already there (409)")
        by_pager = {p.pager_id: p.id for p in community.people}
        for home in community.homes:
            steps = community.escalation(
                home, watcher_timeout_s, volunteer_timeout_s, staff_timeout_s, family_timeout_s
            )
            body = {
                "steps": [
                    {"responder_ids": [by_pager[p] for p in pagers], "ack_timeout_s": timeout}
                    for pagers, timeout in steps
                ]
            }
            _send(client, "PUT", f"/api/v1/elders/{home.elder_id}/escalation", body)
        if "care" in modules:
            seed_registry(client, community, random_seed=random_seed, log_line=say)
        # The services first: the points' redemptions pay for catalogue services.
        if "services" in modules:
            seed_services(client, [h.elder_id for h in community.homes], say)
        if "points" in modules:
            seed_points(client, community, random_seed=random_seed, log_line=say)
    community.created = True
    say(
        f"示范社区已建立 demo community created: {len(community.homes)} 户 homes, "
        f"{len(community.people)} 位响应人 responders"
    )
    return community


# --- running it ------------------------------------------------------------------------------


class Console:
    """Thread-safe log lines with the local time, for people watching the demo."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write or (lambda line: print(line, flush=True))
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        with self._lock:
            self._write(f"{stamp} {line}")


@dataclass
class RunStats:
    incidents: int = 0
    events: int = 0
    telemetry: int = 0
    pages: int = 0
    notices: int = 0
    replies: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def never_answers(pager_id: str) -> bool:
    """The demo's silent watchers: every fourth (by pager number), so escalation shows."""
    number = int(pager_id.rsplit("-", 1)[-1]) if pager_id[-1].isdigit() else 0
    return number % 4 == 0


def behaviour(person: Person, rng: random.Random) -> Callable[[Page], Script | None]:
    """How a responder answers pages in the demo (a script of replies per page).

    Most watchers take the alert after 5-20 s, arrive and resolve later; every fourth watcher
    never answers, so escalation shows; volunteers decline one page in four; staff and family
    answer a little slower.
    """

    def script(page: Page) -> Script | None:
        u = rng.uniform
        if person.role == WATCHER:
            if never_answers(person.pager_id):
                return None
            ack = u(5, 20)
            arrived = ack + u(30, 90)
            return [("ack", ack), ("arrived", arrived), ("resolved", arrived + u(30, 90))]
        if person.role == VOLUNTEER:
            if rng.random() < 0.25:
                return [("decline", u(3, 10))]
            ack = u(5, 15)
            arrived = ack + u(40, 90)
            return [("ack", ack), ("arrived", arrived), ("resolved", arrived + u(30, 60))]
        if person.role == STAFF:
            ack = u(5, 15)
            return [("ack", ack), ("resolved", ack + u(60, 120))]
        ack = u(10, 30)
        return [("ack", ack), ("resolved", ack + u(60, 120))]

    return script


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` (only possible on the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in previous:
        signal.signal(s, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _Demo:
    def __init__(
        self,
        community: Community,
        rng: random.Random,
        say: Callable[[str], None],
        sched: Scheduler,
        devices: dict[str, SimDevice],
        stats: RunStats,
        incident_every: tuple[float, float],
    ) -> None:
        self.c, self.rng, self.say, self.sched = community, rng, say, sched
        self.devices, self.stats, self.incident_every = devices, stats, incident_every
        self.busy_until: dict[int, float] = {}
        # The first incident is a press at a home whose watchers never answer: a new user
        # sees it paged and, after the watchers' 30 s, escalated, within the first minute.
        self._first = True

    def every(self, interval: float, fn: Callable[[], None], first: float) -> None:
        def tick() -> None:
            try:
                fn()
            finally:
                self.sched.call_later(interval * self.rng.uniform(0.9, 1.1), tick)

        self.sched.call_later(first, tick)

    def send(self, device_id: str, action: Callable[[SimDevice], Any], telemetry: bool) -> None:
        dev = self.devices.get(device_id)
        if dev is None:  # stopped while starting up
            return
        try:
            action(dev)
        except (RuntimeError, ValueError) as exc:
            log.warning("%s: %s", device_id, exc)
            return
        if telemetry:
            self.stats.telemetry += 1
        else:
            self.stats.events += 1

    # telemetry

    def water(self, device_id: str, interval: float) -> None:
        flow = round(self.rng.uniform(0.3, 6.0), 2) if self.rng.random() < 0.4 else 0.0
        self.send(device_id, lambda d: d.water_report(flow, interval), True)

    def gas(self, device_id: str) -> None:
        r = self.rng
        readings = {
            "lel_pct": round(r.uniform(0, 1.5), 1),
            "co_ppm": round(r.uniform(0, 4), 1),
            "temp_c": round(r.uniform(18, 26), 1),
        }
        self.send(device_id, lambda d: d.send_telemetry(readings), True)

    def battery(self, device_id: str) -> None:
        def report(d: SimDevice) -> None:
            d.battery_pct = max(20.0, round(d.battery_pct - 0.1, 1))
            d.telemetry(battery_pct=d.battery_pct, rssi_dbm=round(self.rng.uniform(-85, -55)))

        self.send(device_id, report, True)

    # incidents

    def incident(self) -> None:
        try:
            self._incident()
        finally:
            lo, hi = self.incident_every
            self.sched.call_later(self.rng.uniform(lo, hi), self.incident)

    def _incident(self) -> None:
        now = time.monotonic()
        free = [h for h in self.c.homes if self.busy_until.get(h.number, 0) <= now]
        home = self.rng.choice(free or self.c.homes)
        kinds = ["press", "mistake", "gas", "leak", "battery", "tamper"]
        what = self.rng.choices(kinds, weights=[50, 15, 12, 13, 6, 4])[0]
        silent = [h for h in free if h.watchers and all(map(never_answers, h.watchers))]
        if self._first and silent:
            home, what = silent[0], "press"
        self._first = False
        self.busy_until[home.number] = now + 120
        self.stats.incidents += 1
        self.stats.by_kind[what] = self.stats.by_kind.get(what, 0) + 1
        name, r = home.elder_name, self.rng
        if what == "press":
            press: Literal["short", "long"] = "long" if r.random() < 0.3 else "short"
            self.say(f"[{home.call_button}] {name} 按下呼叫器 button pressed ({press})")
            self.send(home.call_button, lambda d: d.press(press), False)
        elif what == "mistake":
            delay = r.uniform(2, 10)
            self.say(
                f"[{home.call_button}] {name} 按错了 pressed by mistake, cancels in {delay:.0f} s"
            )
            self.send(home.call_button, lambda d: d.press("short"), False)

            def cancel() -> None:
                self.say(f"[{home.call_button}] {name} 取消呼叫 button cancelled")
                self.send(home.call_button, lambda d: d.cancel(), False)

            self.sched.call_later(delay, cancel)
        elif what == "gas":
            if r.random() < 0.25:
                gas, lel, co = "co", None, round(r.uniform(150, 400))
                reading = f"CO {co} ppm"
            else:
                gas, lel, co = (
                    r.choice(["natural_gas", "natural_gas", "lpg"]),
                    r.randint(12, 40),
                    None,
                )
                reading = f"{lel}% LEL"
            self.say(f"[{home.gas_sensor}] {name}家 燃气报警 gas alarm {gas} {reading}")
            self.send(home.gas_sensor, lambda d: d.gas_alarm(gas, lel, co), False)

            def cleared() -> None:
                self.say(f"[{home.gas_sensor}] {name}家 燃气浓度恢复正常 gas cleared")
                self.send(
                    home.gas_sensor,
                    lambda d: d.gas_cleared(
                        gas, 0.0 if lel is not None else None, 2.0 if co is not None else None
                    ),
                    False,
                )

            self.sched.call_later(r.uniform(60, 120), cleared)
        elif what == "leak":
            self.say(f"[{home.water_sensor}] {name}家 漏水 water leak")
            self.send(home.water_sensor, lambda d: d.leak(), False)

            def dry() -> None:
                self.say(f"[{home.water_sensor}] {name}家 地面已干 water dry")
                self.send(home.water_sensor, lambda d: d.dry(), False)

            self.sched.call_later(r.uniform(60, 180), dry)
        elif what == "battery":
            device_id = r.choice([home.call_button, home.water_sensor])
            pct = r.randint(5, 15)
            self.say(f"[{device_id}] {name}家 电量低 battery low {pct}%")
            self.send(device_id, lambda d: d.battery_low(pct), False)
        else:
            device_id = r.choice([home.call_button, home.gas_sensor, home.water_sensor])
            self.say(f"[{device_id}] {name}家 设备被拆动 tamper")
            self.send(device_id, lambda d: d.tamper(), False)


def run(
    community: Community,
    host: str = "127.0.0.1",
    port: int = 1883,
    base: str = "shouwang",
    duration: float | None = None,
    seed: int | None = None,
    *,
    stop: threading.Event | None = None,
    incident_every: tuple[float, float] = (15.0, 25.0),
    first_incident_after: float = 5.0,
    water_every_s: float = 30.0,
    gas_every_s: float = 60.0,
    battery_every_s: float = 300.0,
    log_line: Callable[[str], None] | None = None,
    username: str | None = None,
    password: str | None = None,
) -> RunStats:
    """Bring the community to life until `duration` seconds pass, `stop` is set, or SIGTERM /
    SIGINT arrives (when called on the main thread). Returns what happened, counted."""
    rng = random.Random(seed)
    say = log_line or Console()
    stop = stop or threading.Event()
    stats = RunStats()
    sched = Scheduler(name="demo-scheduler")
    devices: dict[str, SimDevice] = {}
    pagers: list[SimPager] = []
    try:
        with stop_on_signals(stop):
            say(
                f"模拟社区启动 starting {len(community.homes)} 户 homes, "
                f"{len(community.people)} 个呼叫机 pagers on {host}:{port} base {base}"
            )
            for person in community.people:
                if stop.is_set():
                    break
                pagers.append(
                    SimPager(
                        person.pager_id, host, port, base,
                        script=behaviour(person, random.Random(f"{seed}-{person.pager_id}")),
                        language=person.language,
                        scheduler=sched,
                        log_line=say,
                        username=username,
                        password=password,
                    )
                )  # fmt: skip
            for home in community.homes:
                for device_id, kind in home.devices:
                    if stop.is_set():
                        break
                    devices[device_id] = SimDevice(
                        device_id, kind, host, port, base,
                        battery_pct=rng.randint(55, 100), log_line=say,
                        username=username, password=password,
                    )  # fmt: skip
            demo = _Demo(community, rng, say, sched, devices, stats, incident_every)
            for home in community.homes:
                demo.every(
                    water_every_s,
                    functools.partial(demo.water, home.water_sensor, water_every_s),
                    rng.uniform(1, water_every_s),
                )
                demo.every(
                    gas_every_s,
                    functools.partial(demo.gas, home.gas_sensor),
                    rng.uniform(1, gas_every_s),
                )
                for d in (home.call_button, home.water_sensor):
                    demo.every(
                        battery_every_s,
                        functools.partial(demo.battery, d),
                        rng.uniform(1, min(battery_every_s, 60.0)),
                    )
            sched.call_later(first_incident_after, demo.incident)
            say(
                f"模拟社区运行中 running: {len(devices)} 台设备 devices, {len(pagers)} 个呼叫机 "
                f"pagers; 每 {incident_every[0]:.0f}-{incident_every[1]:.0f} 秒一件事 "
                "an incident every few seconds"
            )
            deadline = None if duration is None else time.monotonic() + duration
            while not stop.is_set():
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    break
                stop.wait(left)
    finally:
        sched.stop()
        for p in pagers:
            stats.pages += len(p.pages)
            stats.notices += len(p.notices)
            stats.replies += len(p.replies)
            p.close()
        for dev in devices.values():
            dev.close()
    say(
        f"模拟社区停止 stopped: {stats.incidents} 件事 incidents, {stats.pages} 次呼叫 pages, "
        f"{stats.replies} 条回复 replies"
    )
    return stats
