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
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import SecretStr, ValidationError

from gateway.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer(
    help="Shouwang (守望): a safety gateway for elders who live at home.",
    no_args_is_help=True,
    add_completion=False,
)
token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
user_app = typer.Typer(help="Accounts of the pages' users (sign-in).", no_args_is_help=True)
app.add_typer(user_app, name="user")

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
    if demo:
        if os.environ.get("SHOUWANG_MODE", "demo") != "demo":
            typer.secho("--demo is refused in production mode (SHOUWANG_MODE)", fg="red", err=True)
            raise typer.Exit(2)
        overrides["mode"] = "demo"
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
    if settings.mode == "production":
        _require_admin_credential(settings)
    gw = Gateway(settings)
    try:
        gw.start(wait_connected=10.0)
    except BrokerPortInUse as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    from gateway.live import CLOSING

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            CLOSING.set()  # the live streams end now, not at their next keep-alive or later
            super().handle_exit(sig, frame)

    CLOSING.clear()
    server = _Server(
        uvicorn.Config(
            create_app(gw.runtime),
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            # A board or phone page keeps a stream open for up to 5 minutes (gateway/live.py):
            # without a bound, SIGTERM waited for it (measured: 299 s with one board open). The
            # streams end at CLOSING; this bounds whatever else a client holds open.
            timeout_graceful_shutdown=5,
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
        + (f", the {settings.lanes} lane only" if settings.lanes != "all" else "")
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


def _require_admin_credential(settings: Settings) -> None:
    """Production mode starts only when an administrator can get in with a credential of the
    operator's own: SHOUWANG_ADMIN_TOKEN, or an enabled admin account. Nothing is made up."""
    if settings.admin_token is not None and settings.admin_token.get_secret_value().strip():
        return
    from gateway.accounts import has_admin_account
    from gateway.db import make_engine
    from gateway.db import migrate as do_migrate

    engine = make_engine(settings.database_url)
    try:
        do_migrate(engine)
        if has_admin_account(engine):
            return
    finally:
        engine.dispose()
    typer.secho(
        "production mode needs an administrator's credential: set SHOUWANG_ADMIN_TOKEN, or make "
        "an admin account (`shouwang user create --username NAME --role admin`); "
        "for a demo: `shouwang run --demo` (or SHOUWANG_MODE=demo)",
        fg="red",
        err=True,
    )
    raise typer.Exit(2)


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


def _new_password(generate: bool) -> tuple[str, bool]:
    """The password for `user create` / `user password`: SHOUWANG_NEW_PASSWORD, else asked for
    (twice, hidden) on a terminal, else (or with --generate) made here; True when made."""
    from gateway.accounts import generate_password

    given = os.environ.get("SHOUWANG_NEW_PASSWORD")
    if given and not generate:
        return given, False
    if not generate and sys.stdin.isatty():
        return typer.prompt("password", hide_input=True, confirmation_prompt=True), False
    return generate_password(), True


def _accounts_engine() -> Engine:
    from gateway.db import make_engine
    from gateway.db import migrate as do_migrate

    engine = make_engine(_settings().database_url)
    do_migrate(engine)
    return engine


Generate = Annotated[
    bool, typer.Option("--generate", help="Make a random password (printed once).")
]
Username = Annotated[str, typer.Option(help="The account's user name.")]


@user_app.command("create")
def user_create(
    username: Username,
    role: Annotated[
        str, typer.Option(help="admin, staff, watcher, volunteer, family or service_worker.")
    ],
    person: Annotated[
        str | None,
        typer.Option(
            help="The responder the account acts for (watcher, volunteer, family; optional for "
            "staff), or the service worker (service_worker)."
        ),
    ] = None,
    language: Annotated[str, typer.Option(help="zh-CN or en.")] = "zh-CN",
    generate: Generate = False,
) -> None:
    """Make an account. The password comes from SHOUWANG_NEW_PASSWORD, a prompt, or --generate
    (then it is printed once; only its argon2 hash is kept)."""
    from gateway.accounts import AccountError, create_user

    password, made = _new_password(generate)
    engine = _accounts_engine()
    try:
        user = create_user(
            engine,
            username,
            password,
            role,
            now_ms=int(time.time() * 1000),
            person_id=person,
            language=language,
            created_by="cli",
        )
    except AccountError as exc:
        typer.secho(f"cannot create the account: {exc.en} ({exc.zh})", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created {user.username} ({user.role})")
    if made:
        typer.echo(f"password: {password}")


@user_app.command("password")
def user_password(username: Username, generate: Generate = False) -> None:
    """Set an account's password (its sessions end; a sign-in lock ends)."""
    from gateway.accounts import AccountError, set_password

    password, made = _new_password(generate)
    try:
        set_password(
            _accounts_engine(),
            username,
            password,
            now_ms=int(time.time() * 1000),
            actor="cli",
        )
    except AccountError as exc:
        typer.secho(f"password not set: {exc.en} ({exc.zh})", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"password of {username.strip().lower()} set; its sessions ended")
    if made:
        typer.echo(f"password: {password}")


@user_app.command("disable")
def user_disable(username: Username) -> None:
    """Disable an account: it cannot sign in and its sessions end at once. Tokens made for the
    same person are revoked by name: `shouwang token revoke`."""
    from gateway.accounts import AccountError, set_disabled

    try:
        user = set_disabled(
            _accounts_engine(),
            username,
            True,
            now_ms=int(time.time() * 1000),
        )
    except AccountError as exc:
        typer.secho(f"{exc.en} ({exc.zh})", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"disabled {user.username}; its sessions ended")


@user_app.command("enable")
def user_enable(username: Username) -> None:
    """Enable a disabled account again."""
    from gateway.accounts import AccountError, set_disabled

    try:
        user = set_disabled(
            _accounts_engine(),
            username,
            False,
            now_ms=int(time.time() * 1000),
        )
    except AccountError as exc:
        typer.secho(f"{exc.en} ({exc.zh})", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"enabled {user.username}")


@user_app.command("list")
def user_list() -> None:
    """The accounts: user name, role, person, and whether disabled."""
    from gateway.accounts import list_users

    engine = _accounts_engine()
    with engine.connect() as conn:
        for u in list_users(conn):
            state = "disabled" if u.disabled_at is not None else "enabled"
            typer.echo(f"{u.username}\t{u.role}\t{u.person_id or '-'}\t{state}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def simulate(ctx: typer.Context) -> None:
    """Simulated devices and pagers (see `shouwang simulate --help`)."""
    # The simulators know only the contract: they run as their own program, not imported here.
    os.execv(sys.executable, [sys.executable, "-m", "simulators", *ctx.args])


@app.command("broker-config")
def broker_config(
    passwords: Annotated[
        Path, typer.Option(help="Mosquitto's password_file to write (mode 0600).")
    ],
    acl: Annotated[Path, typer.Option(help="Mosquitto's acl_file to write.")],
    gateway_user: Annotated[
        str | None,
        typer.Option(help="The gateway's MQTT username; default: the one in SHOUWANG_MQTT_URL."),
    ] = None,
    gateway_password_env: Annotated[
        str | None,
        typer.Option(
            help="The environment variable holding the gateway's MQTT password; default: the "
            "password in SHOUWANG_MQTT_URL."
        ),
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(
            help="System user the broker runs as (e.g. mosquitto): the files are given to it, "
            "as Mosquitto reads them after dropping root. Default: keep the old files' owner."
        ),
    ] = None,
) -> None:
    """Write Mosquitto's password and ACL files from the registry; then reload the broker
    (SIGHUP). See gateway/broker_config.py."""
    from gateway.broker_config import BrokerConfigError, write_broker_files
    from gateway.db import make_engine
    from gateway.db import migrate as do_migrate
    from gateway.settings import MqttEndpoint

    settings = _settings()
    from_url = MqttEndpoint(settings.mqtt_url) if settings.mqtt_url else None
    user = gateway_user or (from_url.username if from_url else None)
    if gateway_password_env is not None:
        password = os.environ.get(gateway_password_env)
        if not password:
            typer.secho(f"{gateway_password_env} is not set or empty", fg="red", err=True)
            raise typer.Exit(2)
    else:
        password = from_url.password if from_url else None
    if not user or not password:
        typer.secho(
            "the gateway's own MQTT user is needed: --gateway-user and --gateway-password-env, "
            "or a user and password in SHOUWANG_MQTT_URL",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    engine = make_engine(settings.database_url)
    try:
        do_migrate(engine)
        with engine.connect() as conn:
            written = write_broker_files(
                conn, settings.mqtt_base, passwords, acl, user, password, owner=owner
            )
    except (BrokerConfigError, OSError) as exc:
        typer.secho(f"broker files not written: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    if owner is None and os.geteuid() == 0 and passwords.stat().st_uid == 0:
        typer.secho(
            f"note: {passwords} belongs to root with mode 0600; a broker that drops root (Debian's "
            "mosquitto runs as `mosquitto`) cannot read it: give --owner",
            fg="yellow",
            err=True,
        )
    typer.echo(
        f"wrote {passwords} and {acl}: the gateway ({user}), {written.devices} device(s), "
        f"{written.pagers} pager(s); reload the broker (SIGHUP) to apply"
    )


def main() -> None:
    app()
