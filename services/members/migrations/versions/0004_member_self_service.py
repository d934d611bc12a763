"""Members' self-service: requests applied once (the shared `processed_events` table),
and when a member last shared their position themselves, with consent, on their page.

Revision 0002 creates the tables from the models as they are now, so every step here is
"if not exists".

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE members ADD COLUMN IF NOT EXISTS location_consent_at timestamptz NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE members DROP COLUMN IF EXISTS location_consent_at")
