"""Two-person rule bound to versions, CAP alerts unique, assistance agreements.

- emergencies: `approved_version`, `approved_reach_m`, `approved_members` (what the
  approver saw) and `changed_by` (who wrote the current version);
- one emergency per CAP alert: the plain index on (cap_sender, cap_identifier) becomes
  a unique one (concurrent identical alerts declared two emergencies);
- `assistance_agreements`: which sections agreed to assist which.

Revision 0002 creates the tables from the models as they are now, so on a fresh database
all of this exists already: every step here is "if not exists".

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE emergencies "
        "ADD COLUMN IF NOT EXISTS approved_version integer, "
        "ADD COLUMN IF NOT EXISTS approved_reach_m integer, "
        "ADD COLUMN IF NOT EXISTS approved_members integer, "
        "ADD COLUMN IF NOT EXISTS changed_by text"
    )
    op.execute("UPDATE emergencies SET changed_by = created_by WHERE changed_by IS NULL")
    # emergencies approved before this revision: the version they have now was approved
    op.execute(
        "UPDATE emergencies SET approved_version = version "
        "WHERE approved_by IS NOT NULL AND approved_version IS NULL"
    )
    # a database that already holds duplicates (the race this index closes) keeps them,
    # the later ones renamed so the first stays the one CAP Update/Cancel find
    op.execute(
        "UPDATE emergencies AS e SET cap_identifier = e.cap_identifier || '#duplicate:' || e.id "
        "WHERE e.cap_identifier IS NOT NULL AND EXISTS (SELECT 1 FROM emergencies AS f "
        "WHERE f.cap_sender = e.cap_sender AND f.cap_identifier = e.cap_identifier "
        "AND (f.created_at, f.id) < (e.created_at, e.id))"
    )
    op.execute("DROP INDEX IF EXISTS emergencies_cap")
    op.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS emergencies_cap_alert "
        "ON emergencies (cap_sender, cap_identifier) WHERE cap_identifier IS NOT NULL"
    )
    op.create_table(
        "assistance_agreements",
        sa.Column("section", sa.Text, primary_key=True),
        sa.Column("assisting_section", sa.Text, primary_key=True),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("assistance_agreements")
    op.execute("DROP INDEX IF EXISTS emergencies_cap_alert")
    op.execute(
        "CREATE INDEX IF NOT EXISTS emergencies_cap ON emergencies (cap_sender, cap_identifier)"
    )
    op.execute(
        "ALTER TABLE emergencies DROP COLUMN IF EXISTS approved_version, "
        "DROP COLUMN IF EXISTS approved_reach_m, DROP COLUMN IF EXISTS approved_members, "
        "DROP COLUMN IF EXISTS changed_by"
    )
