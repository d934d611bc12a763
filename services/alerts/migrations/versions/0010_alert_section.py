"""The member's own section on each alert, so after-action reports count turnout per
section when sections assist each other.

Revision 0002 creates the tables from the models as they are now, so on a fresh database
the column exists already: the step is "if not exists". Alerts recorded before it have
no section; reports count those under the emergency's section(s).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE alerts ADD COLUMN IF NOT EXISTS section text")


def downgrade() -> None:
    op.execute("ALTER TABLE alerts DROP COLUMN IF EXISTS section")
