"""The broker's locks, on a real Mosquitto: each device and pager logs in as itself, with the
password and ACL files that `shouwang broker-config` writes from the registry, and
`allow_anonymous false`. A gateway in this process connects as its own user.

What is measured here (Mosquitto 2.0.11) and asserted: a device publishing on another device's
topic gets PUBACK "Not authorized" with MQTT 5 and QoS 1; with MQTT 3.1.1 the broker acks it
all the same and drops it. A subscription to another pager's pages is granted, and nothing of
theirs is ever delivered. At a reload (SIGHUP) the broker disconnects a client whose credential
was revoked and refuses its next CONNECT. A message that still comes on another device's topic
and names its real sender is quarantined by the gateway (`wrong_topic`).

Storage (credentials, the files written from them) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from gateway import cli
from gateway import tables as T
from gateway.api import create_app
from gateway.auth import create_token
from gateway.broker_config import (
    BrokerUser,
    mosquitto_hash,
    render,
    verify_mosquitto_hash,
)
from gateway.db import make_engine, migrate
from gateway.tables_broker import mqtt_credentials
from tests.support.alarm import seed_home, wait_until
from tests.support.broker import PrivateMosquitto, mosquitto_bin
from tests.support.services import require

ADMIN = "admin-" + uuid.uuid4().hex
GW_USER = "shouwang-gateway"
GW_PASS = "gw-" + uuid.uuid4().hex
GW_PASS_ENV = "TEST_GATEWAY_MQTT_PASSWORD"
FILES = "password_file {dir}/passwd\nacl_file {dir}/acl\n"
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87 (CONNACK and PUBACK); 3.1.1's CONNACK 5 maps to it


def _owner_args() -> list[str]:
    # As root, Mosquitto drops to `mosquitto` before it reads the password file (mode 0600).
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        return []
    return ["--owner", "mosquitto"]


def run_broker_config(db_url: str, base: str, broker: PrivateMosquitto, *extra: str) -> Any:
    args = [
        "broker-config",
        "--passwords",
        str(broker.dir / "passwd"),
        "--acl",
        str(broker.dir / "acl"),
        *extra,
    ]
    if "--gateway-user" not in extra:
        args += ["--gateway-user", GW_USER, "--gateway-password-env", GW_PASS_ENV]
    if "--owner" not in extra:
        args += _owner_args()
    env = {
        "SHOUWANG_DATABASE_URL": db_url,
        "SHOUWANG_MQTT_BASE": base,
        "SHOUWANG_MQTT_URL": "",
        GW_PASS_ENV: GW_PASS,
    }
    return CliRunner().invoke(cli.app, args, env=env)


class Peer:
    """An MQTT client logged in as `user` (a device, a pager or the gateway's user): what the
    broker answered to its CONNECT, PUBLISHes and SUBSCRIBEs, and what it was sent."""

    def __init__(self, port: int, user: str | None, password: str | None, *, v5: bool) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{user}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: list[list[ReasonCode]] = []
        self.messages: list[tuple[str, bytes]] = []
        self.lost = threading.Event()
        self._answered = threading.Event()
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self.lost.set()
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.append(list(rcs))
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._answered.wait(5), f"no CONNACK for {user}"
        if not self.ok:
            self.close()  # no reconnecting: a refused peer stays refused

    @property
    def ok(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if self.connack is None:
            self.connack = rc
            self._answered.set()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._lock:
            self.pubacks[mid] = rc

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, body: dict[str, Any], qos: int = 1) -> ReasonCode:
        """Publish and wait for the broker's PUBACK; its reason code."""
        info = self.client.publish(topic, json.dumps(body).encode(), qos=qos)
        return wait_until(lambda: self.pubacks.get(info.mid), 5, f"PUBACK on {topic}")

    def subscribe(self, topic: str) -> list[ReasonCode]:
        n = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.subacks) > n, 5, f"SUBACK for {topic}")
        return self.subacks[n]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def event(type_: str = "button.pressed", **fields: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex[:12], "ts": int(time.time() * 1000), "type": type_, **fields}


@dataclass
class Locked:
    """A locked broker, the registry behind it, a gateway logged in as its own user and the
    HTTP API (as the administrator)."""

    broker: PrivateMosquitto
    engine: Engine
    gw: Any
    http: TestClient
    base: str
    db_url: str
    peers: list[Peer] = field(default_factory=list)

    def topic(self, owner: str, ident: str, channel: str) -> str:
        return f"{self.base}/v1/{owner}/{ident}/{channel}"

    def peer(self, user: str | None, password: str | None, *, v5: bool = True) -> Peer:
        p = Peer(self.broker.port, user, password, v5=v5)
        self.peers.append(p)
        return p

    def issue(self, kind: str, ident: str) -> str:
        r = self.http.post(f"/api/v1/{kind}s/{ident}/mqtt-credentials")
        assert r.status_code in (200, 201), r.text
        return str(r.json()["password"])

    def apply(self, until: Callable[[], bool]) -> None:
        """`shouwang broker-config`, then SIGHUP, then wait for `until` (the broker has read
        the new files)."""
        result = run_broker_config(self.db_url, self.base, self.broker)
        assert result.exit_code == 0, result.output
        self.broker.reload()
        wait_until(until, 10, "the broker to reload its files")

    def can_connect(self, user: str, password: str) -> bool:
        p = Peer(self.broker.port, user, password, v5=True)
        p.close()
        return p.ok

    def quarantined(self, topic: str) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(select(T.quarantine).where(T.quarantine.c.topic == topic)))

    def alerts_of(self, device: str) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(select(T.alerts).where(T.alerts.c.device_id == device)))


@pytest.fixture
def locked_broker(db_url: str, base: str) -> Iterator[PrivateMosquitto]:
    """A Mosquitto refusing anonymous clients, started with the files broker-config writes
    from an empty registry (the gateway's own user only). Set up before the gateway and torn
    down after it."""
    if mosquitto_bin() is None:
        require("mosquitto", "no mosquitto binary")
    broker = PrivateMosquitto(locked=True, extra_config=FILES)
    try:
        result = run_broker_config(db_url, base, broker)
        assert result.exit_code == 0, result.output
        broker.start()
        yield broker
    finally:
        broker.close()


@pytest.fixture
def locked(
    locked_broker: PrivateMosquitto, make_gateway: Callable[..., Any], db_url: str, base: str
) -> Iterator[Locked]:
    engine = make_engine(db_url)
    migrate(engine)
    # Elders e1, e2 with cb-1, gas-1, water-1, cb-2, ...; watchers w1 (pager pw1) and w2 (pw2)
    # are paged first, then v1 (pv1), then s1 (ps1).
    seed_home(engine, n=2)
    gw = make_gateway(
        mqtt_url=f"mqtt://{GW_USER}:{GW_PASS}@127.0.0.1:{locked_broker.port}",
        admin_token=ADMIN,
    )
    http = TestClient(create_app(gw.runtime), headers={"Authorization": f"Bearer {ADMIN}"})
    env = Locked(locked_broker, engine, gw, http, base, db_url)
    try:
        yield env
    finally:
        for p in env.peers:
            p.close()
        http.close()
        engine.dispose()


# --- the hash, against Mosquitto's own tool and broker ------------------------------------------


def test_our_hash_is_mosquitto_passwds_and_mosquitto_accepts_it(tmp_path: Path) -> None:
    passwd = Path("/usr/bin/mosquitto_passwd")
    if mosquitto_bin() is None or not passwd.exists():
        require("mosquitto", "no mosquitto or /usr/bin/mosquitto_passwd")
    theirs = tmp_path / "theirs"
    subprocess.run([str(passwd), "-c", "-b", str(theirs), "alice", "s3cret 密码"], check=True)
    name, stored = theirs.read_text().strip().split(":", 1)
    assert name == "alice"
    _, alg, iterations, salt, _ = stored.split("$")
    # The same salt and iterations give exactly the line mosquitto_passwd wrote.
    ours = mosquitto_hash("s3cret 密码", salt=base64.b64decode(salt), iterations=int(iterations))
    assert (alg, ours) == ("7", stored)
    assert verify_mosquitto_hash(stored, "s3cret 密码")
    assert not verify_mosquitto_hash(stored, "s3cret")

    # A broker given our hashes (fresh salt, and another iteration count) takes them.
    broker = PrivateMosquitto(locked=True, extra_config=FILES)
    try:
        users = [
            BrokerUser("dev-a", "device", mosquitto_hash("pw-a")),
            BrokerUser("dev-b", "device", mosquitto_hash("pw-b", iterations=1000)),
        ]
        passwords, acl = render(users, "x")
        (broker.dir / "passwd").write_text(passwords)
        (broker.dir / "acl").write_text(acl)
        for name in ("passwd", "acl"):
            os.chmod(broker.dir / name, 0o644)  # readable by the user Mosquitto drops to
        broker.start()
        cases: list[tuple[str | None, str | None, bool]] = [
            ("dev-a", "pw-a", True),
            ("dev-b", "pw-b", True),
            ("dev-a", "pw-b", False),
            ("nobody", "pw-a", False),
            (None, None, False),
        ]
        for user, password, ok in cases:
            p = Peer(broker.port, user, password, v5=True)
            p.close()
            assert p.ok is ok, (user, p.connack)
    finally:
        broker.close()


# --- the credentials API -------------------------------------------------------------------------


def test_credentials_are_issued_rotated_listed_and_revoked(locked: Locked) -> None:
    http, engine = locked.http, locked.engine

    r = http.post("/api/v1/devices/cb-1/mqtt-credentials")
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["username"] == "cb-1" and first["kind"] == "device"
    assert first["rotated_at"] is None and first["revoked_at"] is None
    password = first["password"]
    assert len(password) >= 32

    def stored(name: str) -> Any:
        with engine.connect() as c:
            return c.execute(
                select(mqtt_credentials).where(mqtt_credentials.c.username == name)
            ).one()

    row = stored("cb-1")
    assert row.password_hash.startswith("$7$101$") and password not in row.password_hash
    assert verify_mosquitto_hash(row.password_hash, password)

    shown = http.get("/api/v1/devices/cb-1/mqtt-credentials")
    assert shown.status_code == 200
    assert "password" not in shown.json() and "password_hash" not in shown.json()
    assert password not in shown.text and row.password_hash not in shown.text

    # Rotation: 200, a new password, the old one no longer matches.
    r = http.post("/api/v1/devices/cb-1/mqtt-credentials")
    assert r.status_code == 200, r.text
    assert r.json()["password"] != password and r.json()["rotated_at"] is not None
    row = stored("cb-1")
    assert verify_mosquitto_hash(row.password_hash, r.json()["password"])
    assert not verify_mosquitto_hash(row.password_hash, password)

    assert http.post("/api/v1/pagers/pw1/mqtt-credentials").status_code == 201
    listed = http.get("/api/v1/mqtt-credentials")
    assert listed.status_code == 200
    assert [(c["username"], c["kind"]) for c in listed.json()] == [
        ("cb-1", "device"),
        ("pw1", "pager"),
    ]
    assert "password" not in listed.text and "$7$" not in listed.text
    assert [c["username"] for c in http.get("/api/v1/mqtt-credentials?kind=pager").json()] == [
        "pw1"
    ]

    # Revocation: 200 with the record; again: the same, nothing changes.
    r = http.delete("/api/v1/pagers/pw1/mqtt-credentials")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    again = http.delete("/api/v1/pagers/pw1/mqtt-credentials")
    assert again.status_code == 200 and again.json() == r.json()
    assert [c["username"] for c in http.get("/api/v1/mqtt-credentials").json()] == ["cb-1"]
    assert [c["username"] for c in http.get("/api/v1/mqtt-credentials?revoked=true").json()] == [
        "cb-1",
        "pw1",
    ]
    # A new password after a revocation is a new credential (201), in force again.
    r = http.post("/api/v1/pagers/pw1/mqtt-credentials")
    assert r.status_code == 201 and r.json()["revoked_at"] is None


def test_credentials_api_refusals(locked: Locked) -> None:
    http, engine = locked.http, locked.engine
    now = int(time.time() * 1000)
    with engine.begin() as c:  # a device whose id is also a responder's pager id
        c.execute(
            insert(T.devices).values(id="pw2", kind="call_button", elder_id="e1", created_at=now)
        )
    assert http.get("/api/v1/mqtt-credentials?revoked=true").json() == []

    for path, code in [
        ("/api/v1/devices/nope/mqtt-credentials", 404),
        ("/api/v1/pagers/nope/mqtt-credentials", 404),
        ("/api/v1/devices/bad%20id/mqtt-credentials", 404),
        ("/api/v1/pagers/" + "p" * 65 + "/mqtt-credentials", 404),
    ]:
        for method in ("POST", "GET", "DELETE"):
            r = http.request(method, path)
            assert r.status_code == code, (method, path, r.text)
    # Known, but without a credential yet.
    assert http.get("/api/v1/devices/cb-2/mqtt-credentials").status_code == 404
    assert http.delete("/api/v1/pagers/pv1/mqtt-credentials").status_code == 404

    # A retired device gets none.
    assert http.post("/api/v1/devices/gas-2/retire").status_code == 200
    r = http.post("/api/v1/devices/gas-2/mqtt-credentials")
    assert r.status_code == 409 and "retired" in r.json()["detail"]

    # One namespace of usernames: pager pw2 holds "pw2", so device pw2 cannot have it.
    assert http.post("/api/v1/pagers/pw2/mqtt-credentials").status_code == 201
    r = http.post("/api/v1/devices/pw2/mqtt-credentials")
    assert r.status_code == 409 and "pager" in r.json()["detail"]
    assert http.get("/api/v1/devices/pw2/mqtt-credentials").status_code == 404
    # Once the pager's is revoked, the device may take the name.
    assert http.delete("/api/v1/pagers/pw2/mqtt-credentials").status_code == 200
    r = http.post("/api/v1/devices/pw2/mqtt-credentials")
    assert r.status_code == 201 and r.json()["kind"] == "device"
    assert http.get("/api/v1/pagers/pw2/mqtt-credentials").status_code == 404

    # Administrators only.
    staff = create_token(engine, "staff-1", role="staff", now_ms=now)
    for method in ("POST", "GET", "DELETE"):
        r = http.request(
            method,
            "/api/v1/devices/cb-1/mqtt-credentials",
            headers={"Authorization": f"Bearer {staff}"},
        )
        assert r.status_code == 403, (method, r.text)
    r = http.get("/api/v1/mqtt-credentials", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    # Of all that, only the device pw2's credential was made.
    after = http.get("/api/v1/mqtt-credentials?revoked=true").json()
    assert [(c["username"], c["kind"], c["revoked_at"]) for c in after] == [("pw2", "device", None)]


# --- the broker-config command -------------------------------------------------------------------


def test_broker_config_writes_the_registry_and_leaves_out_the_revoked_and_retired(
    locked: Locked,
) -> None:
    http = locked.http
    for kind, ident in [("device", "cb-1"), ("device", "gas-1"), ("device", "cb-2")]:
        locked.issue(kind, ident)
    for pager in ("pw1", "pw2", "pv1"):
        locked.issue("pager", pager)
    assert http.delete("/api/v1/devices/gas-1/mqtt-credentials").status_code == 200
    assert http.delete("/api/v1/pagers/pv1/mqtt-credentials").status_code == 200
    assert http.post("/api/v1/devices/cb-2/retire").status_code == 200

    result = run_broker_config(locked.db_url, locked.base, locked.broker)
    assert result.exit_code == 0, result.output
    assert "1 device(s), 2 pager(s)" in result.output

    passwd, acl = locked.broker.dir / "passwd", locked.broker.dir / "acl"
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    if _owner_args():
        assert passwd.stat().st_uid == pwd.getpwnam("mosquitto").pw_uid
    users = [line.split(":", 1)[0] for line in passwd.read_text().splitlines()]
    assert users == [GW_USER, "cb-1", "pw1", "pw2"]
    assert GW_PASS not in passwd.read_text()
    text = acl.read_text()
    b = f"{locked.base}/v1"
    assert (
        f"user cb-1\ntopic write {b}/devices/cb-1/events\ntopic write {b}/devices/cb-1/telemetry\n"
        f"topic write {b}/devices/cb-1/status\ntopic read {b}/devices/cb-1/commands\n"
    ) in text
    assert f"user pw1\ntopic read {b}/pagers/pw1/pages\ntopic write {b}/pagers/pw1/replies\n" in (
        text
    )
    assert f"topic read {b}/devices/+/events" in text  # the gateway's block
    assert f"topic readwrite {b}/gateways/+/status" in text  # its peers' too (gateway/adopt.py)
    for gone in ("gas-1", "cb-2", "pv1"):
        assert f"user {gone}\n" not in text and f"/{gone}/" not in text
    # No temporary file is left beside them.
    assert sorted(p.name for p in locked.broker.dir.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_broker_config_refuses_and_keeps_the_old_files(
    db_url: str, base: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    seed_home(engine, n=1)
    with engine.begin() as c:  # a device holds the username the gateway would use
        c.execute(
            insert(mqtt_credentials).values(
                username="cb-1", kind="device", password_hash=mosquitto_hash("x"), created_at=1
            )
        )
    engine.dispose()
    broker = PrivateMosquitto(locked=True, extra_config=FILES)  # not started: its files only
    try:
        (broker.dir / "passwd").write_text("old\n")
        (broker.dir / "acl").write_text("old\n")
        cases = [
            (["--gateway-user", "cb-1", "--gateway-password-env", GW_PASS_ENV], "both"),
            (["--gateway-user", "gw", "--gateway-password-env", "NOT_SET_X"], "not set"),
            (["--gateway-user", "gw:x", "--gateway-password-env", GW_PASS_ENV], "username"),
            (["--gateway-user", "gw"], "gateway's own MQTT user"),
            (["--gateway-user", "gw", "--owner", "no-such-user-x"], "no system user"),
        ]
        for args, says in cases:
            if "--owner" in args:
                args = [*args, "--gateway-password-env", GW_PASS_ENV]
            result = run_broker_config(db_url, base, broker, *args)
            assert result.exit_code == 2, (args, result.output)
            assert says in result.output, (args, result.output)
            assert (broker.dir / "passwd").read_text() == "old\n"
            assert (broker.dir / "acl").read_text() == "old\n"
        # A short gateway password is refused too.
        result = CliRunner().invoke(
            cli.app,
            [
                "broker-config",
                "--passwords",
                str(broker.dir / "passwd"),
                "--acl",
                str(broker.dir / "acl"),
                "--gateway-user",
                "gw",
                "--gateway-password-env",
                "SHORT_PW_X",
            ],
            env={"SHOUWANG_DATABASE_URL": db_url, "SHORT_PW_X": "short"},
        )
        assert result.exit_code == 2 and "at least 12" in result.output
        assert (broker.dir / "passwd").read_text() == "old\n"
        # The user and password of SHOUWANG_MQTT_URL serve when no --gateway-user is given.
        result = CliRunner().invoke(
            cli.app,
            [
                "broker-config",
                "--passwords",
                str(broker.dir / "passwd"),
                "--acl",
                str(broker.dir / "acl"),
            ],
            env={
                "SHOUWANG_DATABASE_URL": db_url,
                "SHOUWANG_MQTT_URL": f"mqtt://gw-url:{GW_PASS}@127.0.0.1:1883",
            },
        )
        assert result.exit_code == 0, result.output
        line = (broker.dir / "passwd").read_text().splitlines()[0]
        name, stored = line.split(":", 1)
        assert name == "gw-url" and verify_mosquitto_hash(stored, GW_PASS)
    finally:
        broker.close()


# --- the broker enforces them --------------------------------------------------------------------


def test_devices_and_pagers_are_held_to_their_own_topics(locked: Locked) -> None:
    cb1 = locked.issue("device", "cb-1")
    cb2 = locked.issue("device", "cb-2")
    pw1 = locked.issue("pager", "pw1")
    pw2 = locked.issue("pager", "pw2")
    locked.apply(lambda: locked.can_connect("cb-1", cb1))
    t = locked.topic

    # A wrong password, an unknown user, no user at all: refused at CONNECT (MQTT 5 and 3.1.1).
    for user, password in [("cb-1", cb2), ("cb-1", "wrong"), ("cb-9", cb1), (None, None)]:
        for v5 in (True, False):
            p = locked.peer(user, password, v5=v5)
            assert not p.ok and p.connack is not None, (user, v5)
            assert p.connack.value == NOT_AUTHORIZED, (user, v5, p.connack)

    # The pagers listen: pw1 on every pager's pages (a wildcard), pw2 on pw1's only.
    pager1 = locked.peer("pw1", pw1)
    pager2 = locked.peer("pw2", pw2)
    assert pager1.ok and pager2.ok
    # Granted: Mosquitto checks read access per message delivered, not at SUBSCRIBE.
    assert not pager1.subscribe(t("pagers", "+", "pages"))[0].is_failure
    assert not pager2.subscribe(t("pagers", "pw1", "pages"))[0].is_failure

    # Device cb-1 presses its own button: the broker takes it, the gateway (its own user)
    # opens the alert and pages w1 (pw1) and w2 (pw2).
    dev1 = locked.peer("cb-1", cb1)
    assert dev1.publish(t("devices", "cb-1", "events"), event()).value == 0
    wait_until(lambda: locked.alerts_of("cb-1"), 10, "the alert of cb-1")
    alert_id = locked.alerts_of("cb-1")[0].id
    wait_until(lambda: pager1.messages, 10, "pw1's page")
    time.sleep(0.5)  # pw2's page went out at the same moment: time for a wrong delivery
    assert {topic for topic, _ in pager1.messages} == {t("pagers", "pw1", "pages")}
    assert json.loads(pager1.messages[0][1])["alert_id"] == alert_id
    assert pager2.messages == []  # pw1's pages never reach pw2

    # cb-1 publishing as cb-2: MQTT 5 + QoS 1 says "Not authorized" in the PUBACK.
    rc = dev1.publish(t("devices", "cb-2", "events"), event())
    assert rc.value == NOT_AUTHORIZED
    # MQTT 3.1.1 has no reason codes: the broker acks and drops it.
    dev1_311 = locked.peer("cb-1", cb1, v5=False)
    assert dev1_311.publish(t("devices", "cb-2", "events"), event()).value == 0
    assert dev1_311.publish(t("devices", "cb-2", "status"), {"online": False}).value == 0
    # A pager cannot answer as another, nor publish as a device.
    assert pager1.publish(t("pagers", "pw2", "replies"), {}).value == NOT_AUTHORIZED
    assert pager1.publish(t("devices", "cb-1", "events"), event()).value == NOT_AUTHORIZED
    # A device cannot page anybody.
    assert dev1.publish(t("pagers", "pw1", "pages"), {}).value == NOT_AUTHORIZED
    # After those, a marker from cb-1 on its own topic: quarantined (a call button does not
    # send water.leak). Once it is processed, anything that had got through would be too.
    marker = t("devices", "cb-1", "events")
    dev1_311.publish(marker, event("water.leak"))
    wait_until(lambda: locked.quarantined(marker), 10, "the marker in the quarantine")
    assert locked.alerts_of("cb-2") == []
    assert locked.quarantined(t("devices", "cb-2", "events")) == []
    with locked.engine.connect() as c:
        online = c.execute(select(T.devices.c.online).where(T.devices.c.id == "cb-2")).scalar()
    assert online is None  # cb-2's status was never written by cb-1

    # pw1 answers its own page: accepted, the alert is acknowledged.
    reply = {
        "id": uuid.uuid4().hex[:12],
        "ts": int(time.time() * 1000),
        "alert_id": alert_id,
        "action": "ack",
    }
    assert pager1.publish(t("pagers", "pw1", "replies"), reply).value == 0
    wait_until(lambda: locked.alerts_of("cb-1")[0].state == "acknowledged", 10, "the ack from pw1")

    # Commands: the gateway's user sends one to each device; cb-1 listening on every
    # device's commands gets its own only.
    dev1.subscribe(t("devices", "+", "commands"))
    gw_peer = locked.peer(GW_USER, GW_PASS)
    for dev in ("cb-2", "cb-1"):
        cmd = {"id": f"c-{dev}", "ts": int(time.time() * 1000), "type": "selftest"}
        assert gw_peer.publish(t("devices", dev, "commands"), cmd).value == 0
    wait_until(lambda: dev1.messages, 5, "cb-1's command")
    time.sleep(0.3)
    assert [topic for topic, _ in dev1.messages] == [t("devices", "cb-1", "commands")]
    # The gateway's user may not pose as a device either.
    assert gw_peer.publish(t("devices", "cb-1", "events"), event()).value == NOT_AUTHORIZED


def test_revoked_rotated_and_retired_are_refused_after_reload(locked: Locked) -> None:
    http = locked.http
    cb1 = locked.issue("device", "cb-1")
    cb2 = locked.issue("device", "cb-2")
    gas1 = locked.issue("device", "gas-1")
    locked.apply(lambda: locked.can_connect("cb-1", cb1))
    assert locked.can_connect("cb-2", cb2) and locked.can_connect("gas-1", gas1)
    connected = {name: locked.peer(name, pw) for name, pw in [("cb-1", cb1), ("cb-2", cb2)]}
    assert all(p.ok for p in connected.values())

    assert http.delete("/api/v1/devices/cb-1/mqtt-credentials").status_code == 200
    new_cb2 = locked.issue("device", "cb-2")  # rotated
    assert http.post("/api/v1/devices/gas-1/retire").status_code == 200
    # The broker knows nothing of it until its files are written and it reloads them.
    assert locked.can_connect("cb-1", cb1)

    locked.apply(lambda: not locked.can_connect("cb-1", cb1))
    assert not locked.can_connect("cb-2", cb2)  # the old password of a rotated credential
    assert locked.can_connect("cb-2", new_cb2)
    assert not locked.can_connect("gas-1", gas1)  # retired
    # The client connected with the revoked credential was put out at the reload.
    assert connected["cb-1"].lost.wait(5)
    assert not connected["cb-1"].client.is_connected()
    assert connected["cb-2"].lost.wait(5)  # so was the one with the old password
    assert locked.gw.mqtt_connected()  # the gateway's own user is untouched


# --- what still arrives on the wrong topic --------------------------------------------------------


def _metric(locked: Locked, reason: str) -> float:
    for line in locked.http.get("/metrics").text.splitlines():
        if line.startswith(f'shouwang_quarantined_messages_total{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_message_naming_another_sender_is_quarantined(locked: Locked) -> None:
    cb2 = locked.issue("device", "cb-2")
    pw2 = locked.issue("pager", "pw2")
    locked.apply(lambda: locked.can_connect("cb-2", cb2))
    t = locked.topic
    # cb-2's credentials in cb-1's firmware: the broker lets it publish on cb-2's topic, and
    # the payload says who really sent it.
    impostor = locked.peer("cb-2", cb2)
    wrong = event(device_id="cb-1")
    assert impostor.publish(t("devices", "cb-2", "events"), wrong).value == 0
    reading = {"id": "t-1", "ts": int(time.time() * 1000), "battery_pct": 50.0}
    impostor.publish(t("devices", "cb-2", "telemetry"), {**reading, "device_id": "cb-1"})
    impostor.publish(t("devices", "cb-2", "status"), {"online": True, "device_id": "cb-1"})
    pager = locked.peer("pw2", pw2)
    reply = {"id": "r-1", "ts": int(time.time() * 1000), "alert_id": "x", "action": "ack"}
    pager.publish(t("pagers", "pw2", "replies"), {**reply, "pager_id": "pw1"})

    def all_in() -> bool:
        return all(
            locked.quarantined(t(*where))
            for where in [
                ("devices", "cb-2", "events"),
                ("devices", "cb-2", "telemetry"),
                ("devices", "cb-2", "status"),
                ("pagers", "pw2", "replies"),
            ]
        )

    wait_until(all_in, 10, "the four messages in the quarantine")
    rows = locked.quarantined(t("devices", "cb-2", "events"))
    assert [(r.reason, r.detail) for r in rows] == [
        ("wrong_topic", "the payload's device_id is 'cb-1', the topic's 'cb-2'")
    ]
    assert json.loads(rows[0].payload)["id"] == wrong["id"]
    reply_rows = locked.quarantined(t("pagers", "pw2", "replies"))
    assert [r.reason for r in reply_rows] == ["wrong_topic"]
    assert locked.alerts_of("cb-1") == [] and locked.alerts_of("cb-2") == []
    with locked.engine.connect() as c:
        dev = c.execute(select(T.devices).where(T.devices.c.id == "cb-2")).one()
        assert dev.online is None and dev.battery_pct is None
        # Not claimed: the same id from the right device still counts.
        assert c.execute(select(T.messages).where(T.messages.c.source_id == "cb-2")).all() == []
    wait_until(lambda: _metric(locked, "wrong_topic") == 4, 5, "the quarantine's count")

    # A payload naming its own device is as good as one naming none.
    assert impostor.publish(t("devices", "cb-2", "events"), event(device_id="cb-2")).value == 0
    wait_until(lambda: locked.alerts_of("cb-2"), 10, "the alert of cb-2")
    assert _metric(locked, "wrong_topic") == 4
