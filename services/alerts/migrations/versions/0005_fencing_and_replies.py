"""Send fencing, inbound de-duplication, reply codes unique among active emergencies
(issue 10, defects 9 and 15).

- `outbound_messages.claim`: bumped by every claim; a sender records its result only
  while the row still carries the claim it took (a sender whose heartbeat stalled does
  not overwrite a row another sender reclaimed).
- `inbound_messages.answer` (the text the webhook answered) and a unique `provider_sid`:
  a replayed webhook answers the same and changes nothing. Earlier duplicates keep
  their rows, without the SID.
- a unique index on `emergencies.reply_code` among active emergencies (a member's open
  alerts never share a code); active emergencies sharing one get a derived code first.

Revision 0002 creates the tables from the current models on a fresh database, so
everything here is idempotent.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.reply_codes import derived_reply_code

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE outbound_messages ADD COLUMN IF NOT EXISTS claim integer NOT NULL DEFAULT 0"
    )
    op.execute("ALTER TABLE inbound_messages ADD COLUMN IF NOT EXISTS answer text")
    op.execute(
        """
        UPDATE inbound_messages i SET provider_sid = NULL
        WHERE provider_sid IS NOT NULL AND EXISTS (
            SELECT 1 FROM inbound_messages j WHERE j.provider_sid = i.provider_sid AND j.id < i.id
        )
        """
    )
    op.create_index(
        "inbound_once_per_sid",
        "inbound_messages",
        ["provider_sid"],
        unique=True,
        postgresql_where=sa.text("provider_sid IS NOT NULL"),
        if_not_exists=True,
    )
    conn = op.get_bind()
    active = conn.execute(
        sa.text(
            "SELECT id, reply_code FROM emergencies WHERE status = 'active' ORDER BY declared_at"
        )
    ).all()
    used: set[str] = set()
    for row in active:
        code, attempt = row.reply_code, 0
        while code in used:
            attempt += 1
            code = derived_reply_code(row.id.bytes + attempt.to_bytes(2, "big"))
        if code != row.reply_code:
            conn.execute(
                sa.text("UPDATE emergencies SET reply_code = :code WHERE id = :id"),
                {"code": code, "id": row.id},
            )
        used.add(code)
    op.create_index(
        "emergencies_active_reply_code",
        "emergencies",
        ["reply_code"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("emergencies_active_reply_code", table_name="emergencies")
    op.drop_index("inbound_once_per_sid", table_name="inbound_messages")
    op.drop_column("inbound_messages", "answer")
    op.drop_column("outbound_messages", "claim")
