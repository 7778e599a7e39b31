"""Tables of the broker's locks (issue 7): the MQTT credentials of devices and pagers.

They share gateway.tables' metadata (imported at the end of that module), so the migrations and
their check see every table. Times are epoch milliseconds (UTC) in BIGINT columns.

- `mqtt_credentials`: one row per MQTT user. The username IS the device id or the pager id (the
  id in the contract's topics), so a device or pager logs in as itself and its ACL names its own
  topics. Device and pager ids share the broker's one namespace of usernames: the primary key
  keeps a device and a pager of the same id from both holding credentials (the broker could not
  tell them apart). `password_hash` is in Mosquitto's own format (`$7$...`, PBKDF2-SHA512,
  gateway/broker_config.py), copied as is into Mosquitto's password file; the password itself
  is shown once and never stored. A rotation replaces the hash (`rotated_at`); a revocation sets
  `revoked_at`, and the next `shouwang broker-config` leaves the user out.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Table

from gateway.tables import metadata

mqtt_credentials = Table(
    "mqtt_credentials",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),  # device | pager
    Column("password_hash", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("rotated_at", BigInteger),
    Column("revoked_at", BigInteger),
)
