"""The `shouwang` command (typer): run the gateway, manage API tokens, migrate, simulate devices."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError

from gateway.settings import Settings

app = typer.Typer(
    help="Shouwang (守望): a safety gateway for elders who live at home.",
    no_args_is_help=True,
    add_completion=False,
)
token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

log = logging.getLogger("shouwang")
DEMO_DB = "sqlite:///./shouwang-demo.db"
DEMO_KEY = Path("shouwang-demo.key")  # the demo's data key, kept beside its database


def _demo_data_key() -> SecretStr:
    """The demo database's data key (ID-card numbers are stored encrypted with it): made once
    and kept, as a new key each run would leave the numbers stored before unreadable."""
    from gateway.care_store import generate_data_key

    if not DEMO_KEY.exists():
        DEMO_KEY.write_text(generate_data_key() + "\n", encoding="ascii")
        DEMO_KEY.chmod(0o600)
    return SecretStr(DEMO_KEY.read_text(encoding="ascii").strip())


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        typer.secho(f"configuration error:\n{exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )


@app.command()
def run(
    demo: Annotated[
        bool, typer.Option(help="Seed a demo community and run simulated homes.")
    ] = False,
    homes: Annotated[int, typer.Option(help="Homes in the demo community.")] = 24,
) -> None:
    """Start the gateway (SQLite and an embedded MQTT broker unless configured otherwise)."""
    import uvicorn

    from gateway.api import create_app
    from gateway.app import Gateway
    from gateway.broker import BrokerPortInUse

    overrides: dict[str, object] = {}
    if demo and "SHOUWANG_DATABASE_URL" not in os.environ:
        overrides["database_url"] = DEMO_DB
    demo_token = None
    if demo and "SHOUWANG_ADMIN_TOKEN" not in os.environ:
        demo_token = secrets.token_urlsafe(24)
        overrides["admin_token"] = SecretStr(demo_token)
    if demo and "SHOUWANG_DATA_KEY" not in os.environ:
        overrides["data_key"] = _demo_data_key()
    settings = _settings(**overrides)
    _logging(settings.log_level)
    gw = Gateway(settings)
    try:
        gw.start(wait_connected=10.0)
    except BrokerPortInUse as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(gw.runtime),
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
        )
    )
    sim: subprocess.Popen[bytes] | None = None

    def _start_demo() -> None:
        nonlocal sim
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        token = demo_token or settings.admin_token.get_secret_value()  # type: ignore[union-attr]
        url = f"http://{settings.http_host}:{settings.http_port}"
        typer.secho(
            f"\n守望 Shouwang demo: board API {url}/docs\n"
            f"  admin token: {token}\n"
            f"  try: curl -H 'Authorization: Bearer {token}' {url}/api/v1/alerts\n",
            fg="green",
        )
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulators",
                "demo",
                "--api",
                url,
                "--token",
                token,
                "--host",
                gw.mqtt_host,
                "--port",
                str(gw.mqtt_port),
                "--base",
                settings.mqtt_base,
                "--homes",
                str(homes),
            ]
        )

    if demo:
        threading.Thread(target=_start_demo, name="demo-starter", daemon=True).start()
    typer.echo(
        f"Shouwang gateway: HTTP http://{settings.http_host}:{settings.http_port}, "
        f"MQTT {gw.mqtt_host}:{gw.mqtt_port}"
        f"{' (embedded)' if gw.broker else ''}, database {gw.engine.dialect.name}"
    )
    # uvicorn catches SIGTERM/SIGINT, shuts down, then raises the signal again against the
    # handlers that were there before it: make those harmless so we reach gw.stop() below.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    try:
        server.run()  # returns after a graceful shutdown on SIGTERM or SIGINT
    finally:
        if sim is not None and sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
        gw.stop()
        typer.echo("Shouwang gateway stopped.")


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from gateway.db import make_engine
    from gateway.db import migrate as do_migrate

    settings = _settings()
    do_migrate(make_engine(settings.database_url))
    typer.echo("database is up to date")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what the token is for.")],
    role: Annotated[str, typer.Option(help="Role of the token.")] = "admin",
    person: Annotated[
        str | None,
        typer.Option(help="The responder the token acts for (family, watcher, volunteer, staff)."),
    ] = None,
) -> None:
    """Create an API token; it is printed once and stored only as a hash."""
    from gateway.auth import create_token
    from gateway.db import make_engine
    from gateway.db import migrate as do_migrate

    settings = _settings()
    engine = make_engine(settings.database_url)
    do_migrate(engine)
    try:
        token = create_token(
            engine, name, role=role, person_id=person, now_ms=int(time.time() * 1000)
        )
    except ValueError as exc:
        typer.secho(f"cannot create the token: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Option(help="The token's name.")]) -> None:
    """Revoke every token of that name."""
    from gateway.auth import revoke_token
    from gateway.db import make_engine

    settings = _settings()
    n = revoke_token(make_engine(settings.database_url), name)
    typer.echo(f"revoked {n} token(s)")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def simulate(ctx: typer.Context) -> None:
    """Simulated devices and pagers (see `shouwang simulate --help`)."""
    # The simulators know only the contract: they run as their own program, not imported here.
    os.execv(sys.executable, [sys.executable, "-m", "simulators", *ctx.args])


def main() -> None:
    app()
