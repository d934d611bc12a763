"""alert_waves: which waves are completely recorded (waves are written in chunks).

Revision 0002 creates every table of the models, this one included, on a fresh
database; here it is created only if missing, and the waves recorded before (in one
transaction each, so complete) are marked complete.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_waves",
        sa.Column(
            "emergency_id", UUID(as_uuid=True), sa.ForeignKey("emergencies.id"), primary_key=True
        ),
        sa.Column("wave", sa.Integer, primary_key=True),
        sa.Column("recorded", sa.Integer, nullable=False),
        sa.Column(
            "completed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        if_not_exists=True,
    )
    op.execute(
        """
        INSERT INTO alert_waves (emergency_id, wave, recorded)
        SELECT emergency_id, wave, count(*) FROM alerts GROUP BY emergency_id, wave
        ON CONFLICT DO NOTHING
        """
    )


def downgrade() -> None:
    op.drop_table("alert_waves")
