"""Dispatch's tables: emergencies, board rows, escalation steps, summary state,
subscriptions and their deliveries, the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Created from services.dispatch.models as it stands at this revision; a later change to
those tables gets its own revision with explicit op.* calls.
"""

from collections.abc import Sequence

from alembic import op

from services.dispatch.models import metadata

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
