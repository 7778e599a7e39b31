"""The database tables (SQLAlchemy Core). Times are epoch milliseconds (UTC) in BIGINT columns:
one representation on SQLite and PostgreSQL, cheap to compare and index.

Alembic migrations in gateway/migrations create these; keep both in step.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ACTIVE_SQL = "state IN ('open', 'acknowledged', 'on_site')"

elders = Table(
    "elders",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("address", String(300), nullable=False),
    Column("phone", String(32)),
    Column("birth_date", Date),
    Column("created_at", BigInteger, nullable=False),
)

responders = Table(
    "responders",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("pager_id", String(64), unique=True),
    Column("phone", String(32)),
    Column("language", String(8), nullable=False, server_default="zh-CN"),
    Column("created_at", BigInteger, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False, index=True),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("online", Boolean),
    Column("last_seen_at", BigInteger),
    Column("battery_pct", Float),
    Column("fw", String(64)),
    Column("created_at", BigInteger, nullable=False),
)

escalation_plans = Table(
    "escalation_plans",
    metadata,
    Column("elder_id", String(40), ForeignKey("elders.id"), primary_key=True),
    Column("steps", JSON, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# The repeat check: one row per accepted message, keyed by where it came from and its id.
# source: 'd' a device, 'p' a pager. Events and replies keep their payload; telemetry ids are
# pruned after a retention window (they are many and carry no alarm).
messages = Table(
    "messages",
    metadata,
    Column("source", String(1), primary_key=True),
    Column("source_id", String(64), primary_key=True),
    Column("msg_id", String(64), primary_key=True),
    Column("channel", String(12), nullable=False),
    Column("type", String(32)),
    Column("ts", BigInteger),
    Column("received_at", BigInteger, nullable=False),
    Column("payload", Text),
)
Index("ix_messages_channel_received", messages.c.channel, messages.c.received_at)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False, index=True),
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("priority", String(2), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("created_at", BigInteger, nullable=False, index=True),
    Column("updated_at", BigInteger, nullable=False),
    Column("acknowledged_at", BigInteger),
    Column("acknowledged_by", String(120)),
    Column("on_site_at", BigInteger),
    Column("closed_at", BigInteger),
    Column("outcome", String(16)),
    Column("note", Text),
    Column("plan", JSON, nullable=False),
    Column("step", Integer, nullable=False, server_default="0"),
    Column("next_escalation_at", BigInteger),
    Column("trigger_msg_id", String(64)),
)
# One active alert per device and kind: a second press joins the first.
Index(
    "uq_alerts_active_device_kind",
    alerts.c.device_id,
    alerts.c.kind,
    unique=True,
    sqlite_where=text(ACTIVE_SQL),
    postgresql_where=text(ACTIVE_SQL),
)
Index(
    "ix_alerts_due",
    alerts.c.next_escalation_at,
    sqlite_where=text("next_escalation_at IS NOT NULL"),
    postgresql_where=text("next_escalation_at IS NOT NULL"),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("alert_id", String(40), ForeignKey("alerts.id"), nullable=False, index=True),
    Column("at", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("actor", String(120)),
    Column("detail", JSON),
)

pages = Table(
    "pages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("alert_id", String(40), ForeignKey("alerts.id"), nullable=False, index=True),
    Column("responder_id", String(40), ForeignKey("responders.id"), nullable=False),
    Column("pager_id", String(64), nullable=False),
    Column("type", String(8), nullable=False),  # page | notice
    Column("step", Integer),
    Column("created_at", BigInteger, nullable=False),
    Column("reply_by", BigInteger),
)

outbox = Table(
    "outbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("topic", String(300), nullable=False),
    Column("payload", Text, nullable=False),
    Column("qos", Integer, nullable=False),
    Column("alert_id", String(40)),
    Column("page_id", String(40)),
    Column("created_at", BigInteger, nullable=False),
    Column("sent_at", BigInteger),
    Column("cancelled_at", BigInteger),
)
Index(
    "ix_outbox_pending",
    outbox.c.id,
    sqlite_where=text("sent_at IS NULL AND cancelled_at IS NULL"),
    postgresql_where=text("sent_at IS NULL AND cancelled_at IS NULL"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", BigInteger, nullable=False, index=True),
    Column("topic", String(300), nullable=False),
    Column("reason", String(32), nullable=False, index=True),
    Column("detail", String(500), nullable=False),
    Column("payload", Text, nullable=False),
    Column("size", Integer, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
)

# --- paging (issue 3): pairings, the duty roster, channel chains, deliveries, reminders --------
# Created by migration 0002. Kept in one block, and the columns this adds to `alerts` and
# `elders` are appended here rather than written into those tables above, so that other work on
# this file (the rules' tables of 0003) does not collide with it.

# Who answers for whom (结对): feeds the elder's escalation plan (alerts.policy.build_plan).
# `ord` ranks people of one role (lower first); the pairing counts while
# active_from <= now < active_until (no end: open).
pairings = Table(
    "pairings",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False, index=True),
    Column("responder_id", String(40), ForeignKey("responders.id"), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("ord", Integer, nullable=False, server_default="0"),
    Column("active_from", BigInteger, nullable=False),
    Column("active_until", BigInteger),
    Column("created_by", String(120), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# The duty roster (值班): staff and volunteers on duty in [start_at, end_at). `tags` (a JSON list
# such as ["community:幸福里", "building:3"]) say where a volunteer is, for "nearby".
duty_shifts = Table(
    "duty_shifts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("responder_id", String(40), ForeignKey("responders.id"), nullable=False, index=True),
    Column("start_at", BigInteger, nullable=False),
    Column("end_at", BigInteger, nullable=False, index=True),
    Column("tags", JSON, nullable=False),
    Column("created_by", String(120), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# A person's channels after their pager (which, when they have one, is always link 0, at once):
# e.g. an apprise SMS URL after 60 s, a second provider after 120 s. `address` of an apprise
# link is a secret (it holds provider credentials): it is never logged or returned in full.
responder_channels = Table(
    "responder_channels",
    metadata,
    Column("responder_id", String(40), ForeignKey("responders.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("address", Text, nullable=False),
    Column("after_s", Integer, nullable=False),
)

# One row per delivery attempt of a page to a person on one link of their chain; the rows of one
# chain share `page_id` (the person's first page of the alert, or a reminder's page) and
# `paged_at`. status: queued (to hand to the notifier pool) -> sending -> sent | delivered |
# failed; cancelled (answered before it went). `next_try_at`, on the newest row of a chain, is
# when the scheduler looks at that chain again: the chain's state is rows, not timers.
deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("alert_id", String(40), ForeignKey("alerts.id"), nullable=False, index=True),
    Column("page_id", String(40), nullable=False, index=True),
    Column("responder_id", String(40), ForeignKey("responders.id"), nullable=False),
    Column("reminder", Boolean, nullable=False),
    Column("paged_at", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("address_masked", String(120), nullable=False),
    Column("link", Integer, nullable=False),
    Column("try_no", Integer, nullable=False),
    Column("status", String(12), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("error", String(500)),
    Column("next_try_at", BigInteger),
    Column("title", String(100), nullable=False),
    Column("body", Text, nullable=False),
)
Index(
    "ix_deliveries_due",
    deliveries.c.next_try_at,
    sqlite_where=text("next_try_at IS NOT NULL"),
    postgresql_where=text("next_try_at IS NOT NULL"),
)

# alerts: when an acknowledged P1 is paged again (alerts.policy.next_reminder), how many
# reminders went, and how its plan was made ("policy" or "override": an explicit plan).
alerts.append_column(Column("next_reminder_at", BigInteger))
alerts.append_column(Column("reminders_sent", Integer, nullable=False, server_default="0"))
alerts.append_column(Column("plan_source", String(16)))
Index(
    "ix_alerts_reminder_due",
    alerts.c.next_reminder_at,
    sqlite_where=text("next_reminder_at IS NOT NULL"),
    postgresql_where=text("next_reminder_at IS NOT NULL"),
)
# elders: community/building/station tags, for "volunteers on duty nearby" and reports (the
# care-record issue will structure addresses later).
elders.append_column(Column("tags", JSON))
