"""care records (issue 4): registry, people, health records, assessments, family links, audit

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 23:40:00

Keep in step with gateway/tables_care.py. Columns added to `pairings` (kind, note) and
`api_tokens` (person_id) use batch operations, so the same migration runs on SQLite and
PostgreSQL. The audit log is made append-only by triggers that refuse UPDATE and DELETE.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_APPEND_ONLY = "the audit log is append-only"

_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{_APPEND_ONLY}';
END;
$$ LANGUAGE plpgsql
"""


def _protect_audit_log() -> None:
    """Refuse UPDATE and DELETE on audit_log in the database itself."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        # TRUNCATE skips row triggers: refuse it with a statement trigger.
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.String(length=24), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=True),
        sa.Column("record_id", sa.String(length=40), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_elder_id"), ["elder_id"], unique=False)

    op.create_table(
        "assessments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("assessed_on", sa.Date(), nullable=False),
        sa.Column("recorded_seq", sa.Integer(), nullable=False),
        sa.Column("assessor", sa.String(length=100), nullable=False),
        sa.Column("second_assessor", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=12), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("in_coma", sa.Boolean(), nullable=False),
        sa.Column("dementia", sa.Boolean(), nullable=False),
        sa.Column("mental_disorder", sa.Boolean(), nullable=False),
        sa.Column("risk_events_30d", sa.Integer(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("care_level", sa.Integer(), nullable=False),
        sa.Column("recorded_by", sa.String(length=120), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_assessments_elder_id_elders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessments")),
    )
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assessments_elder_id"), ["elder_id"], unique=False)

    op.create_table(
        "elder_profiles",
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("station", sa.String(length=100), nullable=True),
        sa.Column("gender", sa.String(length=8), nullable=False),
        sa.Column("district", sa.String(length=50), nullable=False),
        sa.Column("subdistrict", sa.String(length=50), nullable=False),
        sa.Column("community", sa.String(length=50), nullable=False),
        sa.Column("living_situation", sa.String(length=16), nullable=False),
        sa.Column("self_care", sa.String(length=20), nullable=False),
        sa.Column("service_tier", sa.String(length=10), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("status_since", sa.Date(), nullable=False),
        sa.Column("status_until", sa.Date(), nullable=True),
        sa.Column("id_card_enc", sa.Text(), nullable=True),
        sa.Column("id_card_hmac", sa.String(length=64), nullable=True),
        sa.Column("id_card_masked", sa.String(length=24), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_elder_profiles_elder_id_elders")
        ),
        sa.PrimaryKeyConstraint("elder_id", name=op.f("pk_elder_profiles")),
        sa.UniqueConstraint("id_card_hmac", name=op.f("uq_elder_profiles_id_card_hmac")),
    )
    with op.batch_alter_table("elder_profiles", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_elder_profiles_community"), ["community"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_elder_profiles_station"), ["station"], unique=False)
        batch_op.create_index(batch_op.f("ix_elder_profiles_status"), ["status"], unique=False)

    op.create_table(
        "elder_statuses",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(length=120), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_elder_statuses_elder_id_elders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_elder_statuses")),
    )
    with op.batch_alter_table("elder_statuses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_elder_statuses_elder_id"), ["elder_id"], unique=False)

    op.create_table(
        "encounters",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("seen_by", sa.String(length=100), nullable=True),
        sa.Column("place", sa.String(length=100), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("next_due", sa.Date(), nullable=True),
        sa.Column("recorded_by", sa.String(length=120), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_encounters_elder_id_elders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encounters")),
    )
    with op.batch_alter_table("encounters", schema=None) as batch_op:
        batch_op.create_index(
            "ix_encounters_elder_occurred", ["elder_id", "occurred_at"], unique=False
        )

    op.create_table(
        "family_links",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("relation", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("approved_at", sa.BigInteger(), nullable=True),
        sa.Column("approved_by", sa.String(length=120), nullable=True),
        sa.Column("confirmed_at", sa.BigInteger(), nullable=True),
        sa.Column("confirmed_by", sa.String(length=120), nullable=True),
        sa.Column("confirmed_on_behalf", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_by", sa.String(length=120), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_family_links_elder_id_elders")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["responders.id"], name=op.f("fk_family_links_person_id_responders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_links")),
    )
    with op.batch_alter_table("family_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_family_links_elder_id"), ["elder_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_family_links_person_id"), ["person_id"], unique=False)

    op.create_table(
        "person_profiles",
        sa.Column("responder_id", sa.String(length=40), nullable=False),
        sa.Column("station", sa.String(length=100), nullable=True),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["responder_id"],
            ["responders.id"],
            name=op.f("fk_person_profiles_responder_id_responders"),
        ),
        sa.PrimaryKeyConstraint("responder_id", name=op.f("pk_person_profiles")),
    )
    with op.batch_alter_table("person_profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_person_profiles_station"), ["station"], unique=False)

    op.create_table(
        "vital_signs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("elder_id", sa.String(length=40), nullable=False),
        sa.Column("measured_at", sa.BigInteger(), nullable=False),
        sa.Column("measured_by", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("device_id", sa.String(length=100), nullable=True),
        sa.Column("systolic", sa.SmallInteger(), nullable=True),
        sa.Column("diastolic", sa.SmallInteger(), nullable=True),
        sa.Column("pulse", sa.SmallInteger(), nullable=True),
        sa.Column("temperature_c", sa.Float(), nullable=True),
        sa.Column("glucose_mmol_l", sa.Float(), nullable=True),
        sa.Column("glucose_timing", sa.String(length=16), nullable=True),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("recorded_by", sa.String(length=120), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_vital_signs_elder_id_elders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vital_signs")),
    )
    with op.batch_alter_table("vital_signs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_vital_signs_elder_measured", ["elder_id", "measured_at"], unique=False
        )

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_person_id_responders"), "responders", ["person_id"], ["id"]
        )

    with op.batch_alter_table("pairings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))

    _protect_audit_log()


def downgrade() -> None:
    with op.batch_alter_table("pairings", schema=None) as batch_op:
        batch_op.drop_column("note")
        batch_op.drop_column("kind")

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_api_tokens_person_id_responders"), type_="foreignkey"
        )
        batch_op.drop_column("person_id")

    with op.batch_alter_table("vital_signs", schema=None) as batch_op:
        batch_op.drop_index("ix_vital_signs_elder_measured")

    op.drop_table("vital_signs")
    with op.batch_alter_table("person_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_profiles_station"))

    op.drop_table("person_profiles")
    with op.batch_alter_table("family_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_family_links_person_id"))
        batch_op.drop_index(batch_op.f("ix_family_links_elder_id"))

    op.drop_table("family_links")
    with op.batch_alter_table("encounters", schema=None) as batch_op:
        batch_op.drop_index("ix_encounters_elder_occurred")

    op.drop_table("encounters")
    with op.batch_alter_table("elder_statuses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_elder_statuses_elder_id"))

    op.drop_table("elder_statuses")
    with op.batch_alter_table("elder_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_elder_profiles_status"))
        batch_op.drop_index(batch_op.f("ix_elder_profiles_station"))
        batch_op.drop_index(batch_op.f("ix_elder_profiles_community"))

    op.drop_table("elder_profiles")
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assessments_elder_id"))

    op.drop_table("assessments")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_elder_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")

    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
