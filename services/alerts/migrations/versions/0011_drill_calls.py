"""Drill answers by voice (issue 12): a drill may phone members who have not answered its
SMS after `call_unanswered_after_min` minutes (on the drill, and frozen on each
occurrence when it fires); `drill_calls` holds one call per drill message, its unique
row inserted and committed before the provider is asked (drill_calls.py).

Revision 0002 creates the tables from the models as they are now, so on a fresh database
these exist already: every step is "if not exists".

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE drills ADD COLUMN IF NOT EXISTS call_unanswered_after_min integer")
    op.execute(
        "ALTER TABLE drill_occurrences ADD COLUMN IF NOT EXISTS call_unanswered_after_min integer"
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS drill_calls (
            id uuid PRIMARY KEY,
            message_id bigint NOT NULL UNIQUE REFERENCES drill_messages (id),
            token_hash text NOT NULL UNIQUE,
            status text NOT NULL DEFAULT 'placing',
            provider_sid text NULL,
            outcome text NULL,
            error text NULL,
            claimed_by text NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            placed_at timestamptz NULL,
            ended_at timestamptz NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS drill_calls")
    op.execute("ALTER TABLE drill_occurrences DROP COLUMN IF EXISTS call_unanswered_after_min")
    op.execute("ALTER TABLE drills DROP COLUMN IF EXISTS call_unanswered_after_min")
