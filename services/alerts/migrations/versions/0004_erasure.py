"""Erasure: phone columns may be NULL (an erased member's), erased members' opt-outs kept
as keyed hashes, and the key of those hashes when none is configured.

Revision 0002 creates the tables from the current models on a fresh database, so
everything here is idempotent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("alerts", "outbound_messages", "inbound_messages"):
        op.alter_column(table, "phone", existing_type=sa.Text, nullable=True)
    op.create_table(
        "erased_opt_outs",
        sa.Column("phone_hash", sa.Text, primary_key=True),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "pseudonym_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.CheckConstraint("id = 1", name="pseudonym_key_one_row"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("pseudonym_key")
    op.drop_table("erased_opt_outs")
