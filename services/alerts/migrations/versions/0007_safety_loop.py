"""The safety loop on the alerts side (issue 11): roll calls and their messages.

- `outbound_messages.roll_call_id`, and "once per alert and kind" becomes "once per
  alert, kind and roll call" (NULLS NOT DISTINCT: every other kind is still once per
  alert), so a member on scene can be asked at each roll call of an emergency.
- `roll_call_members`: who each roll call asked, and their OK.

`alerts.response` takes the loop's states (en_route, on_scene, released, home_safe)
without a schema change; older rows' `arrived` reads as on_scene.

Revision 0002 creates the tables from the models as they are now, so on a fresh database
all of this exists already: every step here is "if (not) exists".

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE outbound_messages ADD COLUMN IF NOT EXISTS roll_call_id uuid")
    # the constraint of revision 0002 (on a fresh database, 0002 made the index below)
    op.execute("ALTER TABLE outbound_messages DROP CONSTRAINT IF EXISTS outbound_once_per_kind")
    op.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS outbound_once_per_kind ON outbound_messages "
        "(alert_id, kind, roll_call_id) NULLS NOT DISTINCT"
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS roll_call_members (
            roll_call_id uuid NOT NULL,
            alert_id uuid NOT NULL REFERENCES alerts (id),
            emergency_id uuid NOT NULL,
            member_id uuid NOT NULL,
            asked_at timestamptz NOT NULL,
            confirmed_at timestamptz,
            channel text,
            PRIMARY KEY (roll_call_id, alert_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS roll_call_members_open_idx ON roll_call_members "
        "(alert_id, asked_at) WHERE confirmed_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS roll_call_members")
    op.execute("DROP INDEX IF EXISTS outbound_once_per_kind")
    op.execute("ALTER TABLE outbound_messages DROP COLUMN IF EXISTS roll_call_id")
    op.execute(
        "ALTER TABLE outbound_messages ADD CONSTRAINT outbound_once_per_kind "
        "UNIQUE (alert_id, kind)"
    )
