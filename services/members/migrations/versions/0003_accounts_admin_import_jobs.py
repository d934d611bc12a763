"""Disabling staff accounts and revoking their tokens; background CSV import jobs.

`staff_accounts.token_version` is copied into every token (`ver` claim); changing an
account's role, sections or disabled state increments it, so tokens issued before the
change stop working at the members service at once. `import_jobs` holds the progress and
the outcome of `POST /members/imports`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "staff_accounts", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "staff_accounts",
        sa.Column("token_version", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "import_jobs",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "sections",
            postgresql.ARRAY(sa.String(16)),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("processed", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("imported", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column(
            "errors", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")
        ),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('validating', 'importing', 'done', 'refused', 'failed')",
            name="import_jobs_status",
        ),
    )
    op.create_index("import_jobs_account_idx", "import_jobs", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_index("import_jobs_account_idx", table_name="import_jobs")
    op.drop_table("import_jobs")
    op.drop_column("staff_accounts", "token_version")
    op.drop_column("staff_accounts", "disabled_at")
