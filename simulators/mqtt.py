"""A small paho-mqtt helper: a client that works with Mosquitto and amqtt, connected and running.

- paho 2 callback API version 2, MQTT 3.1.1 (amqtt refuses MQTT 5; Mosquitto speaks both);
- TCP_NODELAY on the socket (Nagle and delayed ACKs cost about 40 ms a hop, see FIELD-NOTES);
- `start()` connects with a timeout, starts the network thread and waits for a successful CONNACK,
  raising `ConnectError` on refusal or timeout instead of retrying forever in the background.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

Client = mqtt.Client
MessageInfo = mqtt.MQTTMessageInfo


class ConnectError(RuntimeError):
    """The broker could not be reached, refused the connection, or did not answer in time."""


def unique_client_id(prefix: str) -> str:
    """`prefix` (cut to 40 characters) and a random suffix: two runs never take over each other."""
    return f"{prefix[:40]}-{secrets.token_hex(3)}"


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    # Not a TCP socket (e.g. a websocket wrapper): nothing to set.
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def close_wakeup_pair(client: mqtt.Client) -> None:
    """Close the socket pair paho 2 opens in `loop_start()` to wake its thread: `loop_stop()`
    leaves it open until the client is collected, two descriptors per stopped client (a
    process starting and stopping thousands of devices passes 1024, where paho's select()
    fails). As gateway/mqtt.py's (simulators may not import gateway). Not from paho's own
    thread: `loop_stop()` there does not wait for the loop, which still needs the pair."""
    if threading.current_thread() is getattr(client, "_thread", None):
        return
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None:
        reset(sockpair_only=True)


def new_client(
    client_id: str,
    *,
    clean_session: bool = True,
    username: str | None = None,
    password: str | None = None,
) -> mqtt.Client:
    """A paho client (callback API v2, MQTT 3.1.1) setting TCP_NODELAY on each socket it opens."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    client.on_socket_open = _nodelay
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    if username is not None:
        client.username_pw_set(username, password)
    return client


def start(
    client: mqtt.Client,
    host: str,
    port: int,
    *,
    keepalive: int = 30,
    timeout: float = 10.0,
    on_connected: Callable[[mqtt.Client], object] | None = None,
) -> None:
    """Connect, start the network thread, and wait for a successful CONNACK.

    `on_connected(client)` runs on paho's thread after every successful CONNACK (the first and
    each reconnect): subscribe there, so that a reconnect subscribes again. Keep it short.
    Raises `ConnectError` when the broker cannot be reached, refuses, or is silent for `timeout`.
    """
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(
        c: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
            connected.set()
            log.warning("%s: connection refused: %s", c._client_id.decode(), reason_code)
            return
        if on_connected is not None:
            try:
                on_connected(c)
            except Exception:  # one bad handler must not stop paho's loop
                log.exception("on_connected handler failed")
        connected.set()

    client.on_connect = on_connect
    client.connect_timeout = timeout
    try:
        client.connect(host, port, keepalive=keepalive)
    except OSError as exc:
        raise ConnectError(f"cannot reach the MQTT broker at {host}:{port}: {exc}") from exc
    client.loop_start()
    if not connected.wait(timeout) or refused:
        client.loop_stop()
        close_wakeup_pair(client)
        with contextlib.suppress(Exception):  # the socket may already be gone
            client.disconnect()
        if refused:
            raise ConnectError(f"the MQTT broker at {host}:{port} refused us: {refused[0]}")
        raise ConnectError(f"no CONNACK from the MQTT broker at {host}:{port} in {timeout} s")
    # After the first success, a refused reconnect is only logged (paho keeps retrying).


def stop(client: mqtt.Client) -> None:
    """Disconnect cleanly (a DISCONNECT packet: the broker discards the Last Will) and stop."""
    try:
        client.disconnect()
    finally:
        client.loop_stop()
        close_wakeup_pair(client)


def kill(client: mqtt.Client) -> None:
    """Drop the TCP connection without a DISCONNECT, so the broker publishes the Last Will."""
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: not a socket
            sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
    client.loop_stop()  # the dropped socket ends paho's loop; it will not reconnect
    close_wakeup_pair(client)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def wait_published(info: mqtt.MQTTMessageInfo, timeout: float = 5.0) -> None:
    """Wait for the broker's PUBACK (QoS 1) or the send (QoS 0); raise on failure or timeout."""
    info.wait_for_publish(timeout)  # raises RuntimeError when paho could not queue it
    if not info.is_published():
        raise TimeoutError(f"message {info.mid} not acknowledged by the broker in {timeout} s")
