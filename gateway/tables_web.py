"""Tables of the web accounts (issue 7): people who sign in to the pages, their sessions, and
the trail of sign-ins. Created by migration 0009; keep both in step.

- `users`: one account per person who signs in. `password_hash` is an argon2id hash (PHC string,
  argon2-cffi); `role` is a gateway.auth.Role; `person_id` the responder (watcher, volunteer,
  family, optionally staff) or the service worker (`svc_workers.id`) the account acts for, so it
  has no foreign key of its own (gateway/auth.py `check_person` checks it). `failed_count` and
  `locked_until` are the per-account slow-down after wrong passwords.
- `sessions`: `id` is the SHA-256 of the cookie's value (a copy of the database opens no
  session), `csrf_token` the value the pages send back in `X-CSRF-Token`. A session ends at
  `expires_at` (absolute), after the idle timeout since `last_seen_at`, or when revoked.
- `sign_ins`: every sign-in attempt and sign-out (who as typed, from where, what came of it);
  also what the per-address slow-down counts. Nothing in the API changes it.
- `api_tokens.worker_id`: the service worker a `service_worker` token acts for
  (`api_tokens.person_id` refers to responders, and a service worker need not be one).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    text,
)

from gateway.tables import api_tokens, metadata

__all__ = ["metadata", "sessions", "sign_ins", "users"]

_AUTO_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("person_id", String(40)),
    Column("language", String(8), nullable=False, server_default="zh-CN"),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(120)),
    Column("disabled_at", BigInteger),
    Column("failed_count", Integer, nullable=False, server_default=text("0")),
    Column("locked_until", BigInteger),
    Column("last_login_at", BigInteger),
    Column("password_changed_at", BigInteger),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 hex of the cookie value
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    Column("client_ip", String(64)),
    Column("user_agent", String(200)),
)

sign_ins = Table(
    "sign_ins",
    metadata,
    Column("id", _AUTO_ID, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("username", String(64), nullable=False),  # as typed (cut short), lower-cased
    Column("user_id", String(40)),  # null: no such account
    # ok, bad_password, unknown_user, disabled, locked, ip_throttled, signed_out
    Column("outcome", String(16), nullable=False),
    Column("client_ip", String(64)),
    Column("user_agent", String(200)),
    Index("ix_sign_ins_username_at", "username", "at"),
    Index("ix_sign_ins_client_ip_at", "client_ip", "at"),
)

api_tokens.append_column(Column("worker_id", String(40), ForeignKey("svc_workers.id")))
