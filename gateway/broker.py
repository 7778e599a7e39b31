"""The embedded MQTT broker (amqtt 0.12) used when SHOUWANG_MQTT_URL is unset.

It lets `make run` work on a machine with only Python: an amqtt `Broker` runs in a daemon
thread with its own asyncio loop, listening on one address and port only (127.0.0.1 by
default; amqtt alone would bind 0.0.0.0:1883), anonymous, with no $SYS topics.

What amqtt 0.12.1 can and cannot do for the gateway (measured against it, and read in its code;
tests/integration/test_embedded_broker.py checks the session behaviour):

- MQTT 3.1.1 only (a v5 CONNECT is refused), so the gateway connects with clean_session=False.
- Persistent sessions work, but only for a session amqtt does not mark "anonymous": its own
  AnonymousAuthPlugin marks every session it lets in as anonymous, and amqtt then neither
  queues QoS 1 messages for it while it is away nor keeps it after a disconnect. We therefore
  let clients in with our own `_LoopbackAuth` plugin, which does not. Messages published while
  the gateway is away are then queued (without a bound) and delivered when it reconnects,
  within this broker's lifetime: nothing is written to disk.
- Queued messages arrive flagged retain=True (amqtt sends them through its retained path).
- amqtt delivers at the subscription's QoS, not the lower of the two: QoS 0 telemetry reaches
  the gateway as QoS 1, and is queued for it too while it is away.
- On every connect amqtt also sends the client, at QoS 0, the retained messages matching
  anyone's subscription, not only its own (gateway/ingest.py ignores those).
- Not redelivered: a QoS 1 message the broker had sent but that was not yet acknowledged when
  the connection dropped, or that was not acknowledged within 5 s. amqtt drops it from its
  in-flight store in both cases, so with the embedded broker, commit-before-ack protects
  against a gateway crash only for messages not yet sent to it. Use Mosquitto in production.
- amqtt iterates its table of subscriptions across `await`s (a connecting client's retained
  messages, a broadcast): a subscription made meanwhile by another client raised "dictionary
  changed size during iteration", which ended the connecting client's handler while the client
  believed itself connected, and its messages went unread (58-74 of 480 messages lost in
  tests/integration/test_embedded_broker.py's race, 80 clients connecting at once). The table
  is therefore a `_Snapshots` dict, whose iteration walks a copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

log = logging.getLogger(__name__)

PORT_VARIABLE = "SHOUWANG_EMBEDDED_MQTT_PORT"


class BrokerPortInUse(RuntimeError):
    """The embedded broker's port is taken by another program."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"the embedded MQTT broker cannot listen on {host}:{port}: port {port} is already "
            f"in use (another broker or gateway?). Set {PORT_VARIABLE} to a free port, or "
            f"SHOUWANG_MQTT_URL to use a running broker."
        )
        self.host, self.port = host, port


class _Snapshots(dict[str, Any]):
    """amqtt's table of subscriptions, iterated over a copy: the loops that walk it await in
    between, while other clients subscribe and unsubscribe (see the module doc)."""

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))

    def keys(self) -> Any:
        return list(super().keys())

    def items(self) -> Any:
        return list(super().items())

    def values(self) -> Any:
        return list(super().values())


class _LoopbackAuth(BaseAuthPlugin):
    """Lets every client in without marking its session anonymous.

    amqtt's AnonymousAuthPlugin sets `session.is_anonymous`, and amqtt keeps no persistent
    session (no queued messages) for an anonymous client; the gateway needs one. Anyone who can
    reach the listener may connect, which is why it listens on loopback only.
    """

    async def authenticate(self, *, session: Session) -> bool | None:
        return True


def _quiet_amqtt() -> None:
    # amqtt logs every connection at INFO, and `transitions` (its state machines) every state
    # change: that would drown the gateway's own log.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _check_port(host: str, port: int) -> None:
    """Raise BrokerPortInUse if host:port cannot be bound (as amqtt binds it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        # amqtt binds with SO_REUSEADDR: so do we, so a port in TIME_WAIT is not "in use".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerPortInUse(host, port) from None
            raise RuntimeError(
                f"the embedded MQTT broker cannot listen on {host}:{port}: {exc}. "
                f"Set {PORT_VARIABLE} to another port."
            ) from exc


def _in_use(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class EmbeddedBroker:
    """An amqtt broker on host:port in a thread of its own: start(), then stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.broker: Broker | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    def config(self) -> dict[str, Any]:
        bind = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return {
            # Only this listener: amqtt's default one would bind 0.0.0.0:1883.
            "listeners": {"default": {"type": "tcp", "bind": bind}},
            # Listing plugins replaces amqtt's defaults (packet and event loggers, anonymous
            # auth, $SYS every 20 s): we want none of them.
            "plugins": {f"{__name__}._LoopbackAuth": {}},
            # Sessions never expire while the broker runs: an away gateway keeps its alarms.
            "session_expiry_interval": None,
        }

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker; return once it listens. Raise BrokerPortInUse if the port is taken."""
        if self._thread is not None:
            raise RuntimeError("the embedded MQTT broker was already started")
        _quiet_amqtt()
        _check_port(self.host, self.port)
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-broker-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(
                f"the embedded MQTT broker did not start on {self.host}:{self.port} "
                f"within {timeout:.0f}s"
            )
        if self._error is not None:
            error = self._error
            self._thread.join(timeout)
            if _in_use(error):  # someone took the port between our check and amqtt's bind
                raise BrokerPortInUse(self.host, self.port) from error
            raise RuntimeError(
                f"the embedded MQTT broker could not start on {self.host}:{self.port}: {error}"
            ) from error
        log.info("embedded MQTT broker listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down and join its thread; safe to call twice (or before start)."""
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None:
            return
        if loop is not None and stop_requested is not None:
            # The loop may already be closed (start failed, or a second stop()).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_requested.set)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the embedded MQTT broker did not stop within %.0fs", timeout)
        self._loop = self._stop_requested = None
        self.broker = None

    # --- the broker's thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            # asyncio.run also cancels what amqtt leaves running (client handlers) at the end.
            asyncio.run(self._serve())
        except BaseException as exc:  # a thread's exception would otherwise only be printed
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("the embedded MQTT broker stopped with an error")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            # Broker() must be made inside the running loop: it takes the loop at construction.
            broker = Broker(self.config())
            broker._subscriptions = _Snapshots(broker._subscriptions)  # see _Snapshots
            await broker.start()  # returns once the listening socket is open
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self.broker = broker
        self._ready.set()
        try:
            await self._stop_requested.wait()
        finally:
            await broker.shutdown()
