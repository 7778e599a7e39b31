"""The adopter's MQTT clients (gateway/adopt.py) leave no descriptor open once stopped: paho 2's
`loop_start()` opens a socket pair to wake its thread that `loop_stop()` leaves open until the
client is collected (two descriptors per stopped client; past 1024, paho's select() fails and
no MQTT client of the process connects). With a real Mosquitto."""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from sqlalchemy import create_engine

from gateway.adopt import AdoptedSession, Adopter
from gateway.metrics import Metrics

HOST = "127.0.0.1"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_an_adopter_started_and_stopped_many_times_leaves_no_descriptor_open(
    mosquitto: Any,
) -> None:
    engine = create_engine("sqlite://")  # not used: no peer goes offline here
    metrics = Metrics()
    kept: list[Adopter] = []  # kept, as the gateway keeps its adopter: not collected
    before = open_fds()
    for _ in range(6):
        adopter = Adopter(
            host=HOST,
            port=mosquitto.port,
            client_id=f"test-adopt-{uuid.uuid4().hex[:8]}",
            base=f"t{uuid.uuid4().hex[:8]}",
            share_group="g",
            engine=engine,
            metrics=metrics,
            on_inbound=lambda m: None,
        )
        kept.append(adopter)
        adopter.start()
        adopter.stop()
    assert open_fds() - before <= 2  # a stray one of the process's own


def test_an_adopted_session_run_many_times_leaves_no_descriptor_open(mosquitto: Any) -> None:
    kept: list[AdoptedSession] = []
    before = open_fds()
    for _ in range(3):
        session = AdoptedSession(
            HOST,
            mosquitto.port,
            f"test-adopted-{uuid.uuid4().hex[:8]}",  # nobody's: an empty session, ended
            [f"t{uuid.uuid4().hex[:8]}/v1/devices/+/events"],
            "adopted",
            lambda m: None,
            username=None,
            password=None,
            session_expiry_s=60,
        )
        kept.append(session)
        assert session.run(threading.Event()) == "empty"
    assert open_fds() - before <= 2
