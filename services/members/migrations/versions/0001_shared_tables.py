"""The outbox and processed-events tables every service has.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import create_shared_tables, drop_shared_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_shared_tables(op)


def downgrade() -> None:
    drop_shared_tables(op)
