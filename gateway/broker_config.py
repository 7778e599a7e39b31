"""Mosquitto's password and ACL files, written from the registry (`shouwang broker-config`).

Every device and pager has MQTT credentials of its own (gateway/api_broker.py issues, rotates
and revokes them; the table is gateway/tables_broker.py). This module turns the registry into
the two files Mosquitto reads, so that the broker itself enforces the contract's topics:

- a device (username = its id) may publish only to `<base>/v1/devices/<id>/events`,
  `.../telemetry` and `.../status` (its Last Will too), and read only `.../commands`;
- a pager (username = its pager id) may read only `<base>/v1/pagers/<id>/pages` and write only
  `.../replies`;
- the gateway's own user reads what devices and pagers send (`devices/+/events`, `telemetry`,
  `status`, `pagers/+/replies`), writes commands, pages and its own status (its birth message
  and Last Will), and reads its peers' (`gateways/+/status`, gateway/adopt.py).

Left out: retired devices, devices and pagers no longer in the registry, revoked credentials.
Mosquitto's ACL file denies whatever it does not grant, so a user left out of it may do nothing
even if its password were still known.

One block per user (`user <name>` + `topic ...`), not `%u` patterns: device and pager ids share
the broker's one namespace of usernames, and a pattern such as `devices/%u/events` would let a
pager whose id happens to be a device's id publish as that device. The file grows by five lines
per device, which Mosquitto reads in well under a second for tens of thousands.

Operator's use (Debian's mosquitto, running as the user `mosquitto`):

1. In mosquitto.conf (e.g. /etc/mosquitto/conf.d/shouwang.conf)::

       listener 1883
       allow_anonymous false
       password_file /etc/mosquitto/shouwang.passwd
       acl_file /etc/mosquitto/shouwang.acl
       persistence true
       set_tcp_nodelay true

2. Write the files (the gateway's password comes from an environment variable, never from the
   command line, where `ps` would show it)::

       export GATEWAY_MQTT_PASSWORD='...'   # the password in SHOUWANG_MQTT_URL
       shouwang broker-config --passwords /etc/mosquitto/shouwang.passwd \\
           --acl /etc/mosquitto/shouwang.acl --owner mosquitto \\
           --gateway-user shouwang-gateway \\
           --gateway-password-env GATEWAY_MQTT_PASSWORD

   Without `--gateway-user`/`--gateway-password-env`, the user and password of
   SHOUWANG_MQTT_URL are used. Mosquitto reads the password file as the user it runs as, after
   dropping root: a new file is given to `--owner` (else it keeps the owner of the file it
   replaces). Both files are replaced atomically (a temporary file in the same directory, then
   a rename), so Mosquitto never reads half a file; the password file is mode 0600.

3. Make Mosquitto read them again: it reloads its password and ACL files on SIGHUP
   (`systemctl reload mosquitto`, or `kill -HUP <pid of mosquitto>`). New and rotated
   credentials work from then on. Mosquitto 2 checks the connected clients again at a reload:
   one logged in with a revoked (or rotated) credential, or as a retired device, is
   disconnected, and its next CONNECT is refused (measured on 2.0.11,
   tests/integration/test_broker_acl.py).

Run it again after every issue, rotation or revocation of credentials and after retiring a
device (a cron job or a systemd timer every minute does for a community).

Hashes are Mosquitto 2's `$7$<iterations>$<salt b64>$<hash b64>` (PBKDF2-HMAC-SHA512, a 12-byte
salt, a 64-byte hash), exactly what `mosquitto_passwd` writes. 101 iterations, as
`mosquitto_passwd` of Mosquitto 2.0 uses: the passwords we issue are 192 random bits, which no
stretching makes stronger, while Mosquitto computes the hash on its one thread at every CONNECT;
after a broker restart thousands of devices reconnect at once, and an alarm must not wait
behind seconds of key stretching.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, select

from devices.topics import VERSION, valid_id
from gateway.tables import devices, responders
from gateway.tables_broker import mqtt_credentials

HASH_ITERATIONS = 101
SALT_BYTES = 12  # what mosquitto_passwd uses
MIN_GATEWAY_PASSWORD = 12  # the gateway's password is chosen by people, not drawn at random
PASSWORD_MODE = 0o600
ACL_MODE = 0o644  # names of devices and topics, no secret; readable whoever owns it


class BrokerConfigError(Exception):
    """The files cannot be written as asked (a clear message for the operator)."""


def new_password() -> str:
    """A password for a device or pager: 192 random bits, URL-safe (no `:` for the file)."""
    return secrets.token_urlsafe(24)


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS
) -> str:
    """The password's hash in Mosquitto 2's format, as `mosquitto_passwd` writes it."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode('ascii')}${b64(digest).decode('ascii')}"


def verify_mosquitto_hash(stored: str, password: str) -> bool:
    """True when `password` matches a `$7$` hash (as Mosquitto checks it at CONNECT)."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    again = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
    return secrets.compare_digest(again, digest)


@dataclass(frozen=True, slots=True)
class BrokerUser:
    """One user of the files: `kind` is device, pager or gateway."""

    username: str
    kind: str
    password_hash: str


def registry_users(conn: Connection) -> list[BrokerUser]:
    """The users the broker should know: credentials not revoked, of active devices and of
    pagers that a responder holds; sorted by username (stable files, readable diffs)."""
    c = mqtt_credentials.c
    dev = (
        select(c.username, c.kind, c.password_hash)
        .join(devices, devices.c.id == c.username)
        .where(c.kind == "device", c.revoked_at.is_(None), devices.c.status == "active")
    )
    pag = (
        select(c.username, c.kind, c.password_hash)
        .join(responders, responders.c.pager_id == c.username)
        .where(c.kind == "pager", c.revoked_at.is_(None))
    )
    rows = [*conn.execute(dev), *conn.execute(pag)]
    return sorted(
        (BrokerUser(r.username, r.kind, r.password_hash) for r in rows), key=lambda u: u.username
    )


def acl_lines(user: BrokerUser, base: str) -> list[str]:
    """The ACL block of one user."""
    root = f"{base}/{VERSION}"
    name = user.username
    if user.kind == "device":
        topics = [
            f"topic write {root}/devices/{name}/events",
            f"topic write {root}/devices/{name}/telemetry",
            f"topic write {root}/devices/{name}/status",
            f"topic read {root}/devices/{name}/commands",
        ]
    elif user.kind == "pager":
        topics = [
            f"topic read {root}/pagers/{name}/pages",
            f"topic write {root}/pagers/{name}/replies",
        ]
    elif user.kind == "gateway":
        topics = [
            f"topic read {root}/devices/+/events",
            f"topic read {root}/devices/+/telemetry",
            f"topic read {root}/devices/+/status",
            f"topic read {root}/pagers/+/replies",
            f"topic write {root}/devices/+/commands",
            f"topic write {root}/pagers/+/pages",
            # Its own status, and its peers' (a group adopts the sessions of a gateway gone).
            f"topic readwrite {root}/gateways/+/status",
        ]
    else:
        raise ValueError(f"unknown kind of broker user {user.kind!r}")
    return [f"# {user.kind} {name}", f"user {name}", *topics, ""]


def render(users: list[BrokerUser], base: str) -> tuple[str, str]:
    """The password file and the ACL file for `users` (the gateway's user among them)."""
    seen: dict[str, str] = {}
    for u in users:
        if not valid_id(u.username):
            # Not a contract id: it could carry `:` or a newline into the files.
            raise BrokerConfigError(f"not a usable MQTT username: {u.username!r}")
        if u.username in seen:
            raise BrokerConfigError(
                f"the username {u.username!r} is both a {seen[u.username]}'s and a {u.kind}'s"
            )
        seen[u.username] = u.kind
    passwords = "".join(f"{u.username}:{u.password_hash}\n" for u in users)
    acl = [
        "# Written by `shouwang broker-config` from the Shouwang registry; the next run",
        "# replaces it. Whatever is not granted here is denied.",
        "",
    ]
    for u in users:
        acl += acl_lines(u, base)
    return passwords, "\n".join(acl)


def _owner_ids(path: Path, owner: str | None) -> tuple[int, int] | None:
    if owner is not None:
        try:
            pw = pwd.getpwnam(owner)
        except KeyError:
            raise BrokerConfigError(f"no system user {owner!r} (--owner)") from None
        return pw.pw_uid, pw.pw_gid
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_uid, st.st_gid


def write_atomically(path: Path, text: str, mode: int, owner: str | None = None) -> None:
    """Replace `path` with `text` at once: a temporary file in the same directory, with its
    mode (and owner) set before a byte is written, fsynced, then renamed over `path`. A reader
    sees the old file or the new one, never a part; a crash leaves the old one."""
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise BrokerConfigError(f"no directory {str(directory)!r} for {path.name}")
    ids = _owner_ids(path, owner)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        os.fchmod(fd, mode)  # mkstemp makes it 0600; the ACL file is meant to be readable
        if ids is not None and ids != (os.geteuid(), os.getegid()):
            try:
                os.fchown(fd, *ids)
            except PermissionError:
                raise BrokerConfigError(
                    f"cannot give {path} to uid {ids[0]} (only root can): run as root, or "
                    "without --owner as the user the broker runs as"
                ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1  # closed by the with block from here on
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


@dataclass(frozen=True, slots=True)
class Written:
    devices: int
    pagers: int


def write_broker_files(
    conn: Connection,
    base: str,
    passwords_path: Path,
    acl_path: Path,
    gateway_user: str,
    gateway_password: str,
    owner: str | None = None,
) -> Written:
    """Write Mosquitto's password and ACL files from the registry, the gateway's user first.
    Nothing is written when anything is wrong (the broker keeps its files)."""
    if not valid_id(gateway_user):
        raise BrokerConfigError(
            f"the gateway's MQTT username {gateway_user!r} is not 1-64 of A-Z a-z 0-9 _ . -"
        )
    if len(gateway_password) < MIN_GATEWAY_PASSWORD:
        raise BrokerConfigError(
            f"the gateway's MQTT password is at least {MIN_GATEWAY_PASSWORD} characters"
        )
    if Path(passwords_path).resolve() == Path(acl_path).resolve():
        raise BrokerConfigError("the password file and the ACL file must be two files")
    users = registry_users(conn)
    gateway = BrokerUser(gateway_user, "gateway", mosquitto_hash(gateway_password))
    passwords, acl = render([gateway, *users], base)
    # The ACL first: a password file naming a user the old ACL does not know grants nothing.
    write_atomically(Path(acl_path), acl, ACL_MODE, owner)
    write_atomically(Path(passwords_path), passwords, PASSWORD_MODE, owner)
    return Written(
        devices=sum(u.kind == "device" for u in users),
        pagers=sum(u.kind == "pager" for u in users),
    )
