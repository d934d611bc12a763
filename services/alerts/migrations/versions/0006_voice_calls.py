"""Voice calls of the channel ladder (issue 11): `voice_calls`, at most one per alert.

Revision 0002 creates the tables from the models as they are now, so on a fresh
database the table exists already: every step here is "if not exists".

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS voice_calls (
            id uuid PRIMARY KEY,
            alert_id uuid NOT NULL UNIQUE REFERENCES alerts (id),
            emergency_id uuid NOT NULL,
            token text NOT NULL UNIQUE,
            status text NOT NULL DEFAULT 'placing',
            provider_sid text,
            outcome text,
            error text,
            claimed_by text,
            created_at timestamptz NOT NULL DEFAULT now(),
            placed_at timestamptz,
            ended_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX IF NOT EXISTS voice_calls_emergency_idx ON voice_calls (emergency_id)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS voice_calls")
