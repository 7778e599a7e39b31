"""The demo community's registry (simulators/demo_care.py), seeded by the real demo client
over real HTTP (uvicorn on 127.0.0.1), on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import uvicorn
from sqlalchemy import func, select

from care.idcard import parse_id_card
from gateway.api import create_app
from gateway.tables_care import assessments, elder_profiles, family_links, vital_signs
from simulators.community import seed
from tests.integration.test_care_api import ADMIN, CARE, _make_env


@contextmanager
def serving(app: Any) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # At the end, a stream the test has closed is still open on the server until its handler
    # writes again (the 15 s keep-alive): without a limit the server waits for it, and the
    # test with it. A second, then the handlers left are cancelled.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _count(env: Any, table: Any, *where: Any) -> int:
    with env.engine.connect() as conn:
        q = select(func.count()).select_from(table)
        return int(conn.execute(q.where(*where) if where else q).scalar_one())


def test_demo_community_gets_a_realistic_registry(db_url: str) -> None:
    from gateway.care_store import generate_data_key

    for env in _make_env(db_url, generate_data_key()):
        lines: list[str] = []
        with serving(create_app(env.gw.runtime)) as url:
            community = seed(
                url, ADMIN, n_homes=8, wait_s=5, log_line=lines.append, modules=("care",)
            )
        assert community.created
        assert not [x for x in lines if "refused" in x], lines
        assert _count(env, elder_profiles) == 8
        assert _count(env, elder_profiles, elder_profiles.c.id_card_enc.is_not(None)) == 8
        assert _count(env, vital_signs) > 0 and _count(env, assessments) > 0
        assert _count(env, family_links, family_links.c.confirmed_at.is_not(None)) > 0
        elders = env.client.get(f"{CARE}/elders").json()
        assert {e["station"] for e in elders} == {"幸福里居家养老服务站"}
        assert {e["living_situation"] for e in elders} >= {"lives_alone", "empty_nest"}
        for e in elders:
            number = env.client.get(f"{CARE}/elders/{e['id']}/id-card").json()["id_card"]
            card = parse_id_card(number, today=date.today())  # a valid check digit
            assert card.birth_date.isoformat() == e["birth_date"]
            assert e["address"]["building"] and e["emergency_contacts"]
        people = env.client.get(f"{CARE}/people", params={"category": "young_old"}).json()
        assert people and all(p["skills"] for p in people)
        counts = env.client.get(f"{CARE}/registers/by_age_band").json()["total"]["count"]
        assert counts == 8


def test_demo_registry_without_a_data_key(db_url: str) -> None:
    for env in _make_env(db_url, None):
        lines: list[str] = []
        with serving(create_app(env.gw.runtime)) as url:
            seed(url, ADMIN, n_homes=3, wait_s=5, log_line=lines.append, modules=("care",))
        assert _count(env, elder_profiles) == 3
        assert _count(env, elder_profiles, elder_profiles.c.id_card_enc.is_not(None)) == 0
        assert any("SHOUWANG_DATA_KEY" in x for x in lines), lines
