"""The safety loop on the board: responder states, contact steps, roll calls, overdue.

- board rows stored as `arrived` become `on_scene` (the facts keep `arrived_at`, which
  services.dispatch.board reads as the time the member was on scene);
- `safety_timers`: one timer per member and kind ("overdue"), fired exactly once;
- `roll_calls`: who each roll call asked to confirm.

Revision 0002 creates the tables from the models as they are now, so on a fresh database
the tables exist already: every step here is "if not exists".

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE board_rows SET status = 'on_scene' WHERE status = 'arrived'")
    op.create_table(
        "safety_timers",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("emergency_id", UUID(as_uuid=True), nullable=False),
        sa.Column("member_id", UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("fired_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("emergency_id", "member_id", "kind", name="safety_timers_one_per_kind"),
        if_not_exists=True,
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS safety_timers_due ON safety_timers (due_at) "
        "WHERE status = 'pending'"
    )
    op.create_table(
        "roll_calls",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("emergency_id", UUID(as_uuid=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.Text, nullable=False),
        sa.Column("member_ids", JSONB, nullable=False),
        if_not_exists=True,
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS roll_calls_emergency ON roll_calls (emergency_id, started_at)"
    )


def downgrade() -> None:
    op.drop_table("roll_calls", if_exists=True)
    op.drop_table("safety_timers", if_exists=True)
    op.execute("UPDATE board_rows SET status = 'arrived' WHERE status = 'on_scene'")
