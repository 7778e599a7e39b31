"""`SimPager`: a simulated responder's pager or phone app, a real MQTT client.

It subscribes to its pages topic, keeps every page and notice it receives (with the monotonic
time it arrived), and answers pages on its replies topic after a delay, or following a script of
actions (`ack` after 5 s, `arrived` after 60 s, `resolved` after 120 s). It answers once per
alert, not again for the repeat pages of an escalation that goes on, and it says nothing more
about an alert once a notice told it the alert was taken by someone else, cancelled or resolved.
Replies are sent from a scheduler thread, never from paho's callback thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from pydantic import ValidationError

from devices.payloads import Notice, Page, Reply
from devices.topics import Channel, pager_topic
from simulators import mqtt
from simulators.payloads import MessageIds, TsFormat, encode, reply_payload
from simulators.schedule import Scheduler

log = logging.getLogger(__name__)

ACTIONS = ("ack", "decline", "arrived", "resolved")
ACTION_ZH = {"ack": "接单", "decline": "拒绝", "arrived": "到达现场", "resolved": "已处理"}
# Once a notice says one of these, a pager that has not taken the alert says nothing more.
STOP_UNLESS_MINE = frozenset({"acknowledged", "on_site", "cancelled", "resolved"})
# ... and a pager that took it stops only when the alert is over.
STOP_ALWAYS = frozenset({"cancelled", "resolved"})

Script = Sequence[tuple[str, float]]
ScriptFor = Callable[[Page], Script | None]


@dataclass(frozen=True, slots=True)
class Received:
    """A page or notice as received: the model, the raw bytes, and `time.monotonic()` then."""

    message: Page | Notice
    raw: bytes
    at: float

    @property
    def alert_id(self) -> str:
        return self.message.alert_id


@dataclass(frozen=True, slots=True)
class Sent:
    """A reply this pager sent, and `time.monotonic()` when it was handed to the client."""

    reply: Reply
    at: float


def _check_script(script: Script) -> list[tuple[str, float]]:
    steps = []
    for action, delay in script:
        if action not in ACTIONS:
            raise ValueError(f"unknown reply action {action!r}: one of {', '.join(ACTIONS)}")
        if delay < 0:
            raise ValueError(f"a reply delay cannot be negative: {delay}")
        steps.append((action, float(delay)))
    return steps


class SimPager:
    """A pager `pager_id` that receives pages and replies as configured.

    `reply_after` seconds after a page it sends `action` (None: never replies), unless `script`
    is given: a list of `(action, seconds after the page)`, or a callable that picks that list
    for each page (None or [] for no reply). `reply_repeats=True` answers repeat pages of the
    same alert as well.
    """

    def __init__(
        self,
        pager_id: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        base: str = "shouwang",
        reply_after: float | None = 5.0,
        action: str = "ack",
        *,
        script: Script | ScriptFor | None = None,
        note: str | None = None,
        language: str = "zh-CN",
        reply_repeats: bool = False,
        scheduler: Scheduler | None = None,
        ts_format: TsFormat = "rfc3339",
        persistent: bool = False,
        keepalive: int = 30,
        connect_timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        log_line: Callable[[str], None] | None = None,
        connect: bool = True,
    ) -> None:
        self.pager_id = pager_id
        self.host, self.port, self.base = host, port, base
        if script is None:
            script = [] if reply_after is None else [(action, reply_after)]
        if callable(script):
            self._script: ScriptFor = script
        else:
            fixed = _check_script(script)
            self._script = lambda page: fixed
        self.note = note
        self.language = language
        self.reply_repeats = reply_repeats
        self.ts_format: TsFormat = ts_format
        self._ids = MessageIds(pager_id)
        self._own_scheduler = scheduler is None
        self._scheduler = scheduler or Scheduler(name=f"sched-{pager_id}")
        self._log_line = log_line
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self._sent: list[Sent] = []
        self._invalid: list[bytes] = []
        self._answered: set[str] = set()  # alerts for which replies were scheduled
        self._mine: set[str] = set()  # alerts this pager acknowledged
        self._notice_state: dict[str, str] = {}  # last notice state per alert
        self._closed = False
        self._client: paho.Client | None = None
        self._persistent = persistent
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._auth = (username, password)
        if connect:
            self.connect()

    # --- connection ----------------------------------------------------------------------

    def topic(self, channel: Channel | str) -> str:
        return pager_topic(self.base, self.pager_id, channel)

    def connect(self) -> None:
        """Connect and subscribe to the pages topic (QoS 1); returns once subscribed."""
        if self._client is not None:
            return
        client_id = (
            f"sim-{self.pager_id}"
            if self._persistent
            else mqtt.unique_client_id(f"sim-{self.pager_id}")
        )
        client = mqtt.new_client(
            client_id,
            clean_session=not self._persistent,
            username=self._auth[0],
            password=self._auth[1],
        )
        subscribed = threading.Event()
        client.on_subscribe = lambda *args: subscribed.set()
        client.on_message = self._on_message
        pages = self.topic(Channel.PAGES)
        try:
            mqtt.start(
                client,
                self.host,
                self.port,
                keepalive=self._keepalive,
                timeout=self._connect_timeout,
                on_connected=lambda c: c.subscribe(pages, qos=1),
            )
        except mqtt.ConnectError:
            if self._own_scheduler:
                self._scheduler.stop()
            raise
        self._client = client
        if not subscribed.wait(self._connect_timeout):
            self.close()
            raise mqtt.ConnectError(f"{self.pager_id}: no SUBACK for {pages}")

    def close(self) -> None:
        """Stop replying, cancel scheduled replies, and disconnect."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._own_scheduler:
            self._scheduler.stop()
        client, self._client = self._client, None
        if client is not None:
            mqtt.stop(client)

    def __enter__(self) -> SimPager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what arrived --------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every page and notice so far, in arrival order (a copy)."""
        with self._cond:
            return list(self._received)

    @property
    def pages(self) -> list[Received]:
        with self._cond:
            return [r for r in self._received if isinstance(r.message, Page)]

    @property
    def notices(self) -> list[Received]:
        with self._cond:
            return [r for r in self._received if isinstance(r.message, Notice)]

    @property
    def replies(self) -> list[Sent]:
        """The replies sent so far (by script or by hand)."""
        with self._cond:
            return list(self._sent)

    @property
    def invalid(self) -> list[bytes]:
        """Payloads on the pages topic that were neither a valid page nor a valid notice."""
        with self._cond:
            return list(self._invalid)

    def wait_for(
        self,
        predicate: Callable[[Page], bool] | None = None,
        timeout: float = 5.0,
        *,
        notice: bool = False,
    ) -> Received | None:
        """The first page (or notice, with `notice=True`) received so far or within `timeout`
        for which `predicate(message)` is true; None when none came in time."""
        kind = Notice if notice else Page
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self._received:
                    if isinstance(r.message, kind) and (
                        predicate is None or predicate(r.message)  # type: ignore[arg-type]
                    ):
                        return r
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return None
                self._cond.wait(left)

    def wait_for_reply(
        self, predicate: Callable[[Reply], bool] | None = None, timeout: float = 5.0
    ) -> Sent | None:
        """The first reply sent so far or within `timeout` matching `predicate`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for s in self._sent:
                    if predicate is None or predicate(s.reply):
                        return s
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return None
                self._cond.wait(left)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        # paho's thread: parse, record, schedule. No sleeping, no publishing here.
        at = time.monotonic()
        if msg.topic != self.topic(Channel.PAGES):
            # amqtt 0.12 sends a connecting client retained messages of other clients'
            # subscriptions: only what arrives on our own pages topic is for us.
            log.debug("%s: ignoring a message on %s", self.pager_id, msg.topic)
            return
        raw = bytes(msg.payload)
        message: Page | Notice
        try:
            message = Page.model_validate_json(raw)
        except ValidationError:
            try:
                message = Notice.model_validate_json(raw)
            except ValidationError:
                with self._cond:
                    self._invalid.append(raw)
                log.warning("%s: not a page or notice: %r", self.pager_id, raw[:200])
                return
        with self._cond:
            if self._closed:
                return
            self._received.append(Received(message, raw, at))
            if isinstance(message, Notice):
                self._notice_state[message.alert_id] = message.state
            self._cond.notify_all()
        if isinstance(message, Page):
            self._say(
                f"[{self.pager_id}] 收到呼叫 page {message.priority} {message.kind} "
                f"{message.elder.name} · step {message.step} · {message.text}"
            )
            self._plan(message, at)
        else:
            self._say(
                f"[{self.pager_id}] 通知 notice {message.state} · alert {message.alert_id} · "
                f"{message.text}"
            )

    def _plan(self, page: Page, at: float) -> None:
        with self._cond:
            if page.alert_id in self._answered and not self.reply_repeats:
                return
            if self._notice_state.get(page.alert_id) in STOP_UNLESS_MINE:
                return
            self._answered.add(page.alert_id)
        try:
            steps = _check_script(self._script(page) or [])
        except Exception:
            log.exception("%s: the reply script failed for alert %s", self.pager_id, page.alert_id)
            return
        for action, delay in steps:
            self._scheduler.call_at(at + delay, self._scripted_reply, page.alert_id, action)

    def _scripted_reply(self, alert_id: str, action: str) -> None:
        with self._cond:
            if self._closed:
                return
            state = self._notice_state.get(alert_id)
            stop = STOP_ALWAYS if alert_id in self._mine else STOP_UNLESS_MINE
            if state in stop:
                return
        try:
            self.reply(alert_id, action, self.note)
        except (RuntimeError, ValueError) as exc:
            log.warning("%s: reply %s to %s failed: %s", self.pager_id, action, alert_id, exc)

    # --- replying ------------------------------------------------------------------------

    def reply(
        self,
        alert_id: str,
        action: str,
        note: str | None = None,
        *,
        wait: bool = False,
        timeout: float = 5.0,
    ) -> paho.MQTTMessageInfo:
        """Reply to an alert by hand (QoS 1); `wait=True` waits for the broker's PUBACK."""
        if action not in ACTIONS:
            raise ValueError(f"unknown reply action {action!r}: one of {', '.join(ACTIONS)}")
        client = self._client
        if client is None:
            raise RuntimeError(f"{self.pager_id} is not connected")
        body = reply_payload(self._ids, alert_id, action, note, self.ts_format)
        info = client.publish(self.topic(Channel.REPLIES), encode(body), qos=1)
        with self._cond:
            if action in ("ack", "arrived"):
                self._mine.add(alert_id)
            self._answered.add(alert_id)
            self._sent.append(Sent(Reply.model_validate(body), time.monotonic()))
            self._cond.notify_all()
        self._say(f"[{self.pager_id}] {ACTION_ZH[action]} {action} · alert {alert_id}")
        if wait:
            mqtt.wait_published(info, timeout)
        return info

    def _say(self, line: str) -> None:
        if self._log_line is not None:
            self._log_line(line)
