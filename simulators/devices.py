"""`SimDevice`: one simulated call button, gas sensor or water sensor, a real MQTT client.

Like a real device it has its own connection, sets its Last Will to a retained
`{"online": false}` on its status topic, announces a retained `{"online": true, ...}` on every
connect, publishes events at QoS 1 and telemetry at QoS 0 (or 1), and answers commands with a
`command.result` event. `go_offline(graceful=False)` drops the socket so the broker sends the
Last Will, as when the power or the network goes.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal

import paho.mqtt.client as paho

from devices.kinds import DeviceKind
from devices.topics import Channel, device_topic
from simulators import mqtt
from simulators.payloads import DevicePayloads, TsFormat, encode

log = logging.getLogger(__name__)

FIRMWARE = "sim-1.0"


class SimDevice:
    """A simulated device of `kind` speaking contract v1 over its own MQTT connection."""

    def __init__(
        self,
        device_id: str,
        kind: DeviceKind | str,
        host: str = "127.0.0.1",
        port: int = 1883,
        base: str = "shouwang",
        *,
        battery_pct: float | None = None,
        fw: str = FIRMWARE,
        ts_format: TsFormat = "rfc3339",
        keepalive: int = 30,
        connect_timeout: float = 10.0,
        answer_commands: bool = True,
        announce: bool = True,
        username: str | None = None,
        password: str | None = None,
        connect: bool = True,
        log_line: Callable[[str], None] | None = None,
    ) -> None:
        self.device_id = device_id
        self.kind = DeviceKind(kind)
        self.host, self.port, self.base = host, port, base
        self.payloads = DevicePayloads(device_id, self.kind, ts_format)
        self.battery_pct: float = (
            float(random.randint(60, 100)) if battery_pct is None else float(battery_pct)
        )
        self.fw = fw
        self.meter_total_l = 0.0
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.answer_commands = answer_commands
        self.announce = announce
        self._auth = (username, password)
        self._log_line = log_line
        self._client: paho.Client | None = None
        self._lock = threading.Lock()
        self.commands: deque[dict[str, Any]] = deque(maxlen=1000)
        self.sent: deque[tuple[str, bytes]] = deque(maxlen=1000)
        if connect:
            self.connect()

    # --- connection ----------------------------------------------------------------------

    def topic(self, channel: Channel | str) -> str:
        return device_topic(self.base, self.device_id, channel)

    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and client.is_connected()

    def connect(self) -> None:
        """Open the connection (again, after `go_offline`); announces `online: true`."""
        with self._lock:
            if self._client is not None:
                return
            client = mqtt.new_client(
                mqtt.unique_client_id(f"sim-{self.device_id}"),
                username=self._auth[0],
                password=self._auth[1],
            )
            status = self.topic(Channel.STATUS)
            client.will_set(status, encode(DevicePayloads.status(False)), qos=1, retain=True)
            client.on_message = self._on_message
            subscribed = threading.Event()
            client.on_subscribe = lambda *args: subscribed.set()
            mqtt.start(
                client,
                self.host,
                self.port,
                keepalive=self.keepalive,
                timeout=self.connect_timeout,
                on_connected=self._on_connected,
            )
            # A command sent before the broker confirmed our subscription would miss us.
            if self.answer_commands and not subscribed.wait(self.connect_timeout):
                mqtt.stop(client)
                raise mqtt.ConnectError(f"{self.device_id}: no SUBACK for the commands topic")
            self._client = client

    def _on_connected(self, client: paho.Client) -> None:
        if self.answer_commands:
            client.subscribe(self.topic(Channel.COMMANDS), qos=1)
        if self.announce:
            body = DevicePayloads.status(True, fw=self.fw, battery_pct=self.battery_pct)
            client.publish(self.topic(Channel.STATUS), encode(body), qos=1, retain=True)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic != self.topic(Channel.COMMANDS) or msg.retain:
            # Not a command for us (amqtt 0.12 sends a connecting client retained messages of
            # other clients' subscriptions), or a stale retained one: ignore.
            return
        try:
            command = json.loads(msg.payload)
        except ValueError:
            log.warning("%s: a command that is not JSON: %r", self.device_id, msg.payload[:100])
            return
        if not isinstance(command, dict):
            return
        self.commands.append(command)
        # Answer off paho's thread: never publish from inside a callback.
        threading.Thread(target=self._answer, args=(command,), daemon=True).start()

    def _answer(self, command: dict[str, Any]) -> None:
        command_id = str(command.get("id", ""))[:64] or "unknown"
        ctype = command.get("type")
        self._say(f"[{self.device_id}] 收到指令 command {ctype}")
        try:
            self.send_event(self.payloads.command_result(command_id, ok=True, detail=f"{ctype} ok"))
        except (RuntimeError, ValueError) as exc:
            log.warning("%s: could not answer command %s: %s", self.device_id, command_id, exc)

    def go_offline(self, graceful: bool = True, timeout: float = 5.0) -> None:
        """Graceful: publish retained `online: false`, then DISCONNECT. Otherwise drop the
        socket without a DISCONNECT, so the broker publishes the Last Will."""
        with self._lock:
            client, self._client = self._client, None
        if client is None:
            return
        if graceful:
            info = client.publish(
                self.topic(Channel.STATUS), encode(DevicePayloads.status(False)), qos=1, retain=True
            )
            try:
                mqtt.wait_published(info, timeout)
            finally:
                mqtt.stop(client)
        else:
            mqtt.kill(client)

    def close(self) -> None:
        """DISCONNECT cleanly (the broker discards the Last Will; the status stays as it was)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            mqtt.stop(client)

    def __enter__(self) -> SimDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- publishing ----------------------------------------------------------------------

    def publish(
        self,
        channel: Channel | str,
        payload: dict[str, Any] | bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        wait: bool = False,
        timeout: float = 5.0,
    ) -> paho.MQTTMessageInfo:
        """Publish on one of this device's topics; `wait=True` waits for the broker's PUBACK."""
        client = self._client
        if client is None:
            raise RuntimeError(f"{self.device_id} is not connected")
        if isinstance(payload, dict):
            data = encode(payload)
        elif isinstance(payload, str):
            data = payload.encode("utf-8")
        else:
            data = payload
        topic = self.topic(channel)
        info = client.publish(topic, data, qos=qos, retain=retain)
        self.sent.append((topic, data))
        if wait:
            mqtt.wait_published(info, timeout)
        return info

    def send_event(
        self, body: dict[str, Any], *, wait: bool = False, timeout: float = 5.0
    ) -> paho.MQTTMessageInfo:
        """Publish an event body built by `self.payloads` (QoS 1)."""
        return self.publish(Channel.EVENTS, body, qos=1, wait=wait, timeout=timeout)

    def event(self, type: str, *, wait: bool = False, **fields: Any) -> paho.MQTTMessageInfo:
        """Any event type with any fields (no check that it belongs to the kind)."""
        return self.send_event(self.payloads.event(type, **fields), wait=wait)

    def raw(
        self, channel: Channel | str, payload: bytes, *, qos: int = 1, wait: bool = False
    ) -> paho.MQTTMessageInfo:
        """Publish bytes as they are (for bad-input tests)."""
        return self.publish(channel, payload, qos=qos, wait=wait)

    def press(
        self, press: Literal["short", "long"] | None = "short", *, wait: bool = False
    ) -> paho.MQTTMessageInfo:
        return self.send_event(self.payloads.press(press), wait=wait)

    def cancel(self, *, wait: bool = False) -> paho.MQTTMessageInfo:
        return self.send_event(self.payloads.cancel(), wait=wait)

    def gas_alarm(
        self,
        gas: str = "natural_gas",
        lel_pct: float | None = 25.0,
        co_ppm: float | None = None,
        *,
        wait: bool = False,
    ) -> paho.MQTTMessageInfo:
        return self.send_event(self.payloads.gas_alarm(gas, lel_pct, co_ppm), wait=wait)

    def gas_cleared(
        self,
        gas: str = "natural_gas",
        lel_pct: float | None = 0.0,
        co_ppm: float | None = None,
        *,
        wait: bool = False,
    ) -> paho.MQTTMessageInfo:
        return self.send_event(self.payloads.gas_cleared(gas, lel_pct, co_ppm), wait=wait)

    def leak(self, *, wait: bool = False) -> paho.MQTTMessageInfo:
        return self.send_event(self.payloads.leak(), wait=wait)

    def dry(self, *, wait: bool = False) -> paho.MQTTMessageInfo:
        return self.send_event(self.payloads.dry(), wait=wait)

    def tamper(self, *, wait: bool = False) -> paho.MQTTMessageInfo:
        return self.send_event(self.payloads.tamper(), wait=wait)

    def battery_low(self, pct: float, *, wait: bool = False) -> paho.MQTTMessageInfo:
        self.battery_pct = float(pct)
        return self.send_event(self.payloads.battery_low(pct), wait=wait)

    def telemetry(
        self, *, qos: int = 0, wait: bool = False, **readings: float
    ) -> paho.MQTTMessageInfo:
        """Telemetry readings (`flow_l` with `interval_s`, `lel_pct`, `battery_pct`, ...)."""
        return self.send_telemetry(readings, qos=qos, wait=wait)

    def send_telemetry(
        self, readings: Mapping[str, float | None], *, qos: int = 0, wait: bool = False
    ) -> paho.MQTTMessageInfo:
        """`telemetry` with the readings in a mapping (None values are left out)."""
        body = self.payloads.telemetry(**{k: v for k, v in readings.items() if v is not None})
        return self.publish(Channel.TELEMETRY, body, qos=qos, wait=wait)

    def water_report(
        self, flow_l: float, interval_s: float, *, qos: int = 0, wait: bool = False
    ) -> paho.MQTTMessageInfo:
        """A water meter report: litres in the interval, and the meter total it keeps."""
        self.meter_total_l = round(self.meter_total_l + flow_l, 3)
        return self.telemetry(
            qos=qos, wait=wait, flow_l=flow_l, interval_s=interval_s, total_l=self.meter_total_l
        )

    def _say(self, line: str) -> None:
        if self._log_line is not None:
            self._log_line(line)
