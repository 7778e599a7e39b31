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

# The repeat check: one row per accepted message, keyed by where it came from, its id and its
# channel. source: 'd' a device, 'p' a pager. The channel is part of the key because a repeat
# is what a redelivery or a retry makes, and both come on the message's own topic: a device
# that reuses a reading's id for an alarm sends no repeat, and keyed without the channel its
# alarm was dropped as one (migration 0015). Events and replies keep their payload; telemetry
# ids are pruned after a retention window (they are many and carry no alarm).
messages = Table(
    "messages",
    metadata,
    Column("source", String(1), primary_key=True),
    Column("source_id", String(64), primary_key=True),
    Column("msg_id", String(64), primary_key=True),
    Column("channel", String(12), primary_key=True),
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
# An alert's pages and their delivery state (GET /api/v1/alerts/{id}; cancelling pending pages).
Index("ix_outbox_alert_id", outbox.c.alert_id)

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

# --- rules (issue 3): rule states, suppressions, valve commands, outage incidents --------------
# Created by migration 0003. Kept in one block at the end, like the paging block above, with the
# columns it adds to `devices` appended here. The rules themselves are alerts/ (pure); the
# wiring is gateway/ruling.py.

# devices: the building a device is in (device health groups a building's devices, so that a
# power cut is one incident for staff; none: the device is watched alone), and for a gas sensor
# the device that takes its `valve.close` (none: no valve; it may be the sensor itself).
devices.append_column(Column("building", String(64)))
devices.append_column(Column("valve_device_id", String(64)))

# The states of the stateful rules, as JSON (their own to_json/from_json): `rule` "water" and
# "gas" per device (`key` the device id), "health" per building (`key` "b:<building>") or per
# device without a building (`key` "d:<device id>"). `due_at`: when the periodic tick must look
# at it next (null: not before another message changes it); claimed in bounded batches, with
# FOR UPDATE SKIP LOCKED on PostgreSQL. `version`: a random token, new at every write, so that
# a gateway can tell its cached copy of a state is still the stored one without reading it.
rule_states = Table(
    "rule_states",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("rule", String(16), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("due_at", BigInteger),
    Column("version", BigInteger, nullable=False),
)
Index(
    "ix_rule_states_due",
    rule_states.c.due_at,
    sqlite_where=text("due_at IS NOT NULL"),
    postgresql_where=text("due_at IS NOT NULL"),
)

# An elder away or in hospital (alerts.suppression.ElderAway): pauses the no-water-use rule
# only, from `since` until `until` (required: nothing is silenced forever), or until ended early
# (`ended_at`). Kept after it ends, for the record.
elder_away = Table(
    "elder_away",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("elder_id", String(40), ForeignKey("elders.id"), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # away | in_hospital
    Column("since", BigInteger, nullable=False),
    Column("until", BigInteger, nullable=False),
    Column("author", String(120), nullable=False),
    Column("note", String(1000), nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
)

# A device in maintenance (alerts.suppression.DeviceMute): mutes the alerts about the device,
# never a call button press or a gas alarm; author, reason and expiry required, capped per kind.
device_mutes = Table(
    "device_mutes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=False, index=True),
    Column("author", String(120), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("since", BigInteger, nullable=False),
    Column("until", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
)

# Commands sent to devices (contract `command`; today the gas rule's `valve.close`), and the
# device's `command.result`. Keyed by the device it went to and the command id it carries.
# `origin_device_id`: the device whose rule sent it (the gas sensor), whose state takes the result.
commands = Table(
    "commands",
    metadata,
    Column("device_id", String(64), ForeignKey("devices.id"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("origin_device_id", String(64)),
    Column("alert_id", String(40), ForeignKey("alerts.id")),
    Column("created_at", BigInteger, nullable=False),
    Column("result_ok", Boolean),
    Column("result_detail", String(500)),
    Column("result_at", BigInteger),
)

# A building's mass outage (alerts.health.OutageOpened): ONE device_offline alert, paged to
# staff only, on the first member without an active device_offline alert of its own (an alert
# names one device); every member is listed here and on the alert's timeline.
incidents = Table(
    "incidents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key", String(120), nullable=False, unique=True),
    Column("building", String(64), nullable=False, index=True),
    Column("alert_id", String(40), ForeignKey("alerts.id")),
    Column("device_ids", JSON, nullable=False),
    Column("detail", String(500), nullable=False),
    Column("opened_at", BigInteger, nullable=False),
    Column("closed_at", BigInteger),
    Column("closed_why", String(40)),
)

# What the rules decided that opened no alert but must be visible: `suppressed` (a Raise or an
# alarm event muted by a device mute or paused by an elder's absence: until when, by whom; when
# the suppression has ended the tick looks again, `released_at`, and opens the alert, `alert_id`,
# if the condition is still on) and `warning` (over a gas warning level: for the board).
rule_events = Table(
    "rule_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", BigInteger, nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("device_id", String(64), nullable=False, index=True),
    Column("elder_id", String(40)),
    Column("kind", String(20), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("detail", JSON),
    Column("until", BigInteger),
    Column("released_at", BigInteger),
    Column("alert_id", String(40)),
)
Index(
    "ix_rule_events_pending",
    rule_events.c.until,
    sqlite_where=text("type = 'suppressed' AND released_at IS NULL"),
    postgresql_where=text("type = 'suppressed' AND released_at IS NULL"),
)

# The other rooms' tables live in their own modules on this metadata; importing them here makes
# `gateway.tables.metadata` complete for the migrations and their check.
from gateway import (  # noqa: E402, F401
    tables_board,
    tables_broker,
    tables_care,
    tables_phone,
    tables_points,
    tables_rules,
    tables_services,
    tables_telemetry,
    tables_web,
)
