"""the repeat check keyed by channel too

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-26 09:00:00

Keep in step with gateway/tables.py `messages`. Keyed by (source, source_id, msg_id) only, a
device's event whose id one of its readings had used was taken for a repeat of the reading and
dropped (a gas alarm, silently). A repeat is a redelivery or a retry, and both come on the
message's own topic, so the channel joins the key. The rows stay as they are: unique on three
columns, they are unique on four. The channel stays last, so the old key is still the index's
prefix (the lookup of an alert's opening message by device and id uses it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("pk_messages", type_="primary")
        batch_op.create_primary_key("pk_messages", ["source", "source_id", "msg_id", "channel"])


def downgrade() -> None:
    # The old key cannot hold a reading and an event of one id: the reading's row goes (it
    # only guards against counting a reading twice, and is pruned after hours anyway).
    op.execute(
        sa.text(
            "DELETE FROM messages WHERE channel = 'telemetry' AND EXISTS (SELECT 1 FROM messages"
            " AS o WHERE o.source = messages.source AND o.source_id = messages.source_id"
            " AND o.msg_id = messages.msg_id AND o.channel <> 'telemetry')"
        )
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("pk_messages", type_="primary")
        batch_op.create_primary_key("pk_messages", ["source", "source_id", "msg_id"])
