"""The safety loop on the alerts side: responder states, roll calls, reminders.

Placeholder reserved for issue 11 (safety loop); it fills this in. Revision 0002 creates the
tables from the models as they are now, so every step here is "if not exists".

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
