"""`python -m simulators ...`: simulated devices, pagers and the demo community from a shell.

`shouwang simulate ARGS` runs `python -m simulators ARGS`, and `shouwang run --demo` runs
`python -m simulators demo --api ... --token ... --host ... --port ... --base ... --homes ...`:
the option names here are part of that agreement.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from devices.kinds import DeviceKind
from devices.topics import valid_id
from simulators import community as demo_community
from simulators import demo_accounts
from simulators.devices import SimDevice
from simulators.mqtt import ConnectError
from simulators.pager import ACTIONS, SimPager

app = typer.Typer(
    help="Shouwang simulators (守望模拟器): call buttons, gas and water sensors, pagers, a demo "
    "community. They speak only MQTT and the HTTP API, as real devices do.",
    no_args_is_help=True,
    add_completion=False,
)

Host = Annotated[str, typer.Option(help="MQTT broker host.")]
Port = Annotated[int, typer.Option(help="MQTT broker port.")]
Base = Annotated[str, typer.Option(help="First part of every topic.")]
Device = Annotated[str, typer.Option("--device", "-d", help="Device id, e.g. cb-001.")]
Kind = Annotated[
    DeviceKind | None,
    typer.Option(help="Device kind (default: from the id: cb-, gas-, water-)."),
]
EpochMs = Annotated[bool, typer.Option("--epoch-ms", help="Send ts as epoch milliseconds.")]
User = Annotated[str | None, typer.Option(help="MQTT user name.")]
Password = Annotated[str | None, typer.Option(help="MQTT password.")]

PREFIX_KINDS = {
    "cb-": DeviceKind.CALL_BUTTON,
    "button-": DeviceKind.CALL_BUTTON,
    "gas-": DeviceKind.GAS_SENSOR,
    "water-": DeviceKind.WATER_SENSOR,
}


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg="red", err=True)
    return typer.Exit(code)


def _kind(device_id: str, kind: DeviceKind | None) -> DeviceKind:
    if kind is not None:
        return kind
    for prefix, guessed in PREFIX_KINDS.items():
        if device_id.startswith(prefix):
            return guessed
    raise _fail(f"cannot tell the kind of {device_id!r} from its id: give --kind")


@contextlib.contextmanager
def _device(
    device_id: str,
    kind: DeviceKind,
    host: str,
    port: int,
    base: str,
    epoch_ms: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> Iterator[SimDevice]:
    if not valid_id(device_id):
        raise _fail(f"invalid device id {device_id!r}: 1-64 characters of A-Z a-z 0-9 _ . -")
    try:
        dev = SimDevice(
            device_id,
            kind,
            host,
            port,
            base,
            ts_format="epoch_ms" if epoch_ms else "rfc3339",
            answer_commands=False,
            username=username,
            password=password,
        )
    except ConnectError as exc:
        raise _fail(str(exc)) from None
    try:
        yield dev
    except (RuntimeError, TimeoutError) as exc:
        raise _fail(f"{device_id}: {exc}", 1) from None
    finally:
        dev.close()


def _sent(dev: SimDevice) -> None:
    topic, data = dev.sent[-1]
    typer.echo(f"{topic} {data.decode('utf-8')}")


@app.command()
def press(
    device: Device,
    long: Annotated[bool, typer.Option("--long", help="A long press.")] = False,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """A call button is pressed (呼叫)."""
    with _device(
        device, DeviceKind.CALL_BUTTON, host, port, base, epoch_ms, username, password
    ) as d:
        d.press("long" if long else "short", wait=True)
        _sent(d)


@app.command()
def cancel(
    device: Device,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """The elder cancels a press made by mistake (取消)."""
    with _device(
        device, DeviceKind.CALL_BUTTON, host, port, base, epoch_ms, username, password
    ) as d:
        d.cancel(wait=True)
        _sent(d)


Gas = Annotated[str, typer.Option(help="natural_gas, lpg, coal_gas or co.")]


@app.command("gas-alarm")
def gas_alarm(
    device: Device,
    gas: Gas = "natural_gas",
    lel_pct: Annotated[float | None, typer.Option(help="% of the lower explosive limit.")] = None,
    co_ppm: Annotated[float | None, typer.Option(help="CO in ppm.")] = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """A gas sensor raises its alarm (燃气报警); default 25% LEL, or 300 ppm for CO."""
    if lel_pct is None and co_ppm is None:
        lel_pct, co_ppm = (None, 300.0) if gas == "co" else (25.0, None)
    with _device(
        device, DeviceKind.GAS_SENSOR, host, port, base, epoch_ms, username, password
    ) as d:
        try:
            d.gas_alarm(gas, lel_pct, co_ppm, wait=True)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        _sent(d)


@app.command("gas-cleared")
def gas_cleared(
    device: Device,
    gas: Gas = "natural_gas",
    lel_pct: Annotated[float | None, typer.Option(help="% of the lower explosive limit.")] = None,
    co_ppm: Annotated[float | None, typer.Option(help="CO in ppm.")] = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """The gas is gone (燃气恢复正常)."""
    if lel_pct is None and co_ppm is None:
        lel_pct, co_ppm = (None, 0.0) if gas == "co" else (0.0, None)
    with _device(
        device, DeviceKind.GAS_SENSOR, host, port, base, epoch_ms, username, password
    ) as d:
        try:
            d.gas_cleared(gas, lel_pct, co_ppm, wait=True)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        _sent(d)


@app.command()
def leak(
    device: Device,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """A water sensor finds water on the floor (漏水)."""
    kind = DeviceKind.WATER_SENSOR
    with _device(device, kind, host, port, base, epoch_ms, username, password) as d:
        d.leak(wait=True)
        _sent(d)


@app.command()
def dry(
    device: Device,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """The floor is dry again (地面已干)."""
    kind = DeviceKind.WATER_SENSOR
    with _device(device, kind, host, port, base, epoch_ms, username, password) as d:
        d.dry(wait=True)
        _sent(d)


@app.command()
def tamper(
    device: Device,
    kind: Kind = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """Somebody opens or moves the device (设备被拆动)."""
    with _device(device, _kind(device, kind), host, port, base, epoch_ms, username, password) as d:
        d.tamper(wait=True)
        _sent(d)


@app.command("battery-low")
def battery_low(
    device: Device,
    pct: Annotated[float, typer.Option(min=0, max=100, help="Battery left, %.")] = 10.0,
    kind: Kind = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """The battery runs low (电量低)."""
    with _device(device, _kind(device, kind), host, port, base, epoch_ms, username, password) as d:
        d.battery_low(pct, wait=True)
        _sent(d)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@app.command()
def event(
    device: Device,
    type: Annotated[str, typer.Option("--type", help="Event type, e.g. button.pressed.")],
    field: Annotated[
        list[str] | None,
        typer.Option("--field", "-f", help="name=value (JSON or text); repeat for more."),
    ] = None,
    kind: Kind = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """Any event, with any fields (not checked against the kind: for testing the gateway)."""
    fields: dict[str, Any] = {}
    for item in field or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise _fail(f"--field wants name=value, not {item!r}")
        fields[name] = _value(text)
    with _device(device, _kind(device, kind), host, port, base, epoch_ms, username, password) as d:
        d.event(type, wait=True, **fields)
        _sent(d)


@app.command()
def telemetry(
    device: Device,
    flow_l: Annotated[float | None, typer.Option(help="Litres since the last report.")] = None,
    interval_s: Annotated[
        float | None, typer.Option(help="Seconds the report covers (needed with --flow-l).")
    ] = None,
    total_l: Annotated[float | None, typer.Option(help="Water meter total, litres.")] = None,
    lel_pct: Annotated[float | None, typer.Option(help="Gas, % LEL.")] = None,
    co_ppm: Annotated[float | None, typer.Option(help="CO, ppm.")] = None,
    battery_pct: Annotated[float | None, typer.Option(help="Battery, %.")] = None,
    rssi_dbm: Annotated[float | None, typer.Option(help="Signal, dBm.")] = None,
    temp_c: Annotated[float | None, typer.Option(help="Temperature, °C.")] = None,
    count: Annotated[int, typer.Option(min=1, help="How many reports to send.")] = 1,
    every: Annotated[
        float | None,
        typer.Option(help="Seconds between reports (default: --interval-s, else 60)."),
    ] = None,
    qos: Annotated[int, typer.Option(min=0, max=1, help="MQTT QoS.")] = 0,
    kind: Kind = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """Telemetry readings, once or `--count` times `--every` seconds apart (Ctrl-C stops)."""
    readings = {
        "flow_l": flow_l,
        "interval_s": interval_s,
        "total_l": total_l,
        "lel_pct": lel_pct,
        "co_ppm": co_ppm,
        "battery_pct": battery_pct,
        "rssi_dbm": rssi_dbm,
        "temp_c": temp_c,
    }
    readings = {k: v for k, v in readings.items() if v is not None}
    gap = every if every is not None else (interval_s or 60.0)
    stop = threading.Event()
    with (
        demo_community.stop_on_signals(stop),
        _device(device, _kind(device, kind), host, port, base, epoch_ms, username, password) as d,
    ):
        for n in range(count):
            if n:
                stop.wait(gap)
            if stop.is_set():
                break
            try:
                d.send_telemetry(readings, qos=qos, wait=True)
            except ValueError as exc:
                raise _fail(str(exc)) from None
            _sent(d)


@app.command()
def offline(
    device: Device,
    graceful: Annotated[
        bool,
        typer.Option(
            "--graceful/--lastwill",
            help="Say offline and disconnect, or drop the connection so the broker sends the "
            "Last Will (as when power or network goes).",
        ),
    ] = False,
    kind: Kind = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    username: User = None,
    password: Password = None,
) -> None:
    """The device goes offline (设备离线): retained status `{"online": false}`."""
    with _device(device, _kind(device, kind), host, port, base, False, username, password) as d:
        d.go_offline(graceful=graceful)
        how = "graceful" if graceful else "Last Will"
        typer.echo(f"{d.topic('status')} offline ({how})")


@app.command()
def online(
    device: Device,
    kind: Kind = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    username: User = None,
    password: Password = None,
) -> None:
    """The device connects and says it is online (设备上线), then disconnects cleanly."""
    with _device(device, _kind(device, kind), host, port, base, False, username, password) as d:
        typer.echo(f"{d.topic('status')} online")


def _script(steps: list[str]) -> list[tuple[str, float]]:
    script = []
    for step in steps:
        action, sep, delay = step.partition(":")
        try:
            seconds = float(delay)
        except ValueError:
            raise _fail(f"--then wants action:seconds (e.g. arrived:60), not {step!r}") from None
        if not sep or action not in ACTIONS:
            raise _fail(f"--then wants action:seconds with action one of {', '.join(ACTIONS)}")
        script.append((action, seconds))
    return script


def _until(stop: threading.Event, duration: float | None) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set():
        left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
        if left <= 0:
            return
        stop.wait(left)


@app.command()
def pager(
    id: Annotated[str, typer.Option("--id", help="Pager id, e.g. pager-w-01.")],
    reply_after: Annotated[
        float, typer.Option(min=0, help="Seconds after a page to send --action.")
    ] = 5.0,
    never: Annotated[bool, typer.Option("--never", help="Never reply (see escalation).")] = False,
    action: Annotated[str, typer.Option(help="ack, decline, arrived or resolved.")] = "ack",
    then: Annotated[
        list[str] | None,
        typer.Option(
            help="More replies as action:seconds after the page, e.g. --then arrived:60 "
            "--then resolved:120."
        ),
    ] = None,
    note: Annotated[str | None, typer.Option(help="A note sent with each reply.")] = None,
    repeat: Annotated[
        bool, typer.Option("--repeat", help="Also answer repeat pages of the same alert.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: until Ctrl-C).")
    ] = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    epoch_ms: EpochMs = False,
    username: User = None,
    password: Password = None,
) -> None:
    """A responder's pager (呼叫机): shows pages and notices, and replies as told."""
    if not valid_id(id):
        raise _fail(f"invalid pager id {id!r}: 1-64 characters of A-Z a-z 0-9 _ . -")
    if action not in ACTIONS:
        raise _fail(f"--action is one of {', '.join(ACTIONS)}")
    script = [] if never else [(action, reply_after), *_script(then or [])]
    console = demo_community.Console()
    stop = threading.Event()
    with demo_community.stop_on_signals(stop):
        try:
            p = SimPager(
                id,
                host,
                port,
                base,
                script=script,
                note=note,
                reply_repeats=repeat,
                ts_format="epoch_ms" if epoch_ms else "rfc3339",
                log_line=console,
                username=username,
                password=password,
            )
        except ConnectError as exc:
            raise _fail(str(exc)) from None
        how = "never replies" if never else ", ".join(f"{a} after {s:g} s" for a, s in script)
        console(f"[{id}] 待命 listening on {p.topic('pages')} ({how})")
        try:
            _until(stop, duration)
        finally:
            p.close()
        console(f"[{id}] 下线 stopped: {len(p.pages)} pages, {len(p.replies)} replies")


@app.command()
def demo(
    api: Annotated[
        str, typer.Option(help="The gateway's HTTP base URL.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str, typer.Option(help="An admin bearer token.", envvar="SHOUWANG_ADMIN_TOKEN")
    ] = "",
    host: Host = "127.0.0.1",
    port: Port = 1883,
    base: Base = "shouwang",
    homes: Annotated[int, typer.Option(min=1, max=999, help="Homes in the community.")] = 24,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: until Ctrl-C or SIGTERM).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for names and behaviour.")] = 7,
    skip_seed: Annotated[
        bool, typer.Option("--skip-seed", help="Do not call the API; just run the homes.")
    ] = False,
    watcher_timeout_s: Annotated[int, typer.Option(min=1, help="Step 1 ack timeout.")] = 30,
    volunteer_timeout_s: Annotated[int, typer.Option(min=1, help="Step 2 ack timeout.")] = 45,
    staff_timeout_s: Annotated[int, typer.Option(min=1, help="Step 3 ack timeout.")] = 60,
    family_timeout_s: Annotated[int, typer.Option(min=1, help="Step 4 ack timeout.")] = 60,
    username: User = None,
    password: Password = None,
    accounts: Annotated[
        bool,
        typer.Option(
            "--accounts/--no-accounts",
            help="After seeding, make the demo's sign-in accounts (random passwords).",
        ),
    ] = True,
    logins: Annotated[
        Path, typer.Option(help="Where the demo's logins are written (mode 0600).")
    ] = demo_accounts.LOGINS_FILE,
) -> None:
    """Seed a demo community through the API, then run its homes and pagers (示范社区)."""
    console = demo_community.Console()
    if skip_seed:
        com = demo_community.plan(homes, seed)
    else:
        if not token:
            raise _fail("--token (or SHOUWANG_ADMIN_TOKEN) is needed to seed through the API")
        try:
            com = demo_community.seed(
                api,
                token,
                homes,
                random_seed=seed,
                watcher_timeout_s=watcher_timeout_s,
                volunteer_timeout_s=volunteer_timeout_s,
                staff_timeout_s=staff_timeout_s,
                family_timeout_s=family_timeout_s,
                log_line=console,
            )
        except demo_community.SeedError as exc:
            raise _fail(f"seeding the demo community failed: {exc}") from None
        if accounts:
            try:
                demo_accounts.ensure_accounts(api, token, com, path=logins, log_line=console)
            except demo_community.SeedError as exc:
                raise _fail(f"making the demo's accounts failed: {exc}") from None
    try:
        demo_community.run(
            com,
            host,
            port,
            base,
            duration=duration,
            seed=seed,
            log_line=console,
            username=username,
            password=password,
        )
    except ConnectError as exc:
        raise _fail(str(exc)) from None


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()
