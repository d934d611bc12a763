"""Members' self-service: personal-page links, qualification expiry reminders.

`member_links`: the personal-page links (`LINK`), single-use, stored as token hashes.
`qualification_reminders`: one row per member, qualification and expiry date, the claim
that makes each reminder SMS go once. Revision 0002 creates the tables from the models as
they are now, so every step here is "if not exists".

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS member_links (
            token_hash text PRIMARY KEY,
            member_id uuid NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            used_at timestamptz NULL,
            csrf_hash text NULL
        )
        """
    )
    op.execute("CREATE INDEX IF NOT EXISTS member_links_member_idx ON member_links (member_id)")
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS qualification_reminders (
            id bigserial PRIMARY KEY,
            member_id uuid NOT NULL,
            code text NOT NULL,
            expires_at date NOT NULL,
            status text NOT NULL DEFAULT 'pending',
            claimed_by text NULL,
            attempts integer NOT NULL DEFAULT 0,
            provider_sid text NULL,
            error text NULL,
            possible_duplicate boolean NOT NULL DEFAULT false,
            sent_at timestamptz NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT qualification_reminder_once UNIQUE (member_id, code, expires_at)
        )
        """
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS qualification_reminders_open_idx "
        "ON qualification_reminders (id) WHERE status IN ('pending', 'sending')"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS qualification_reminders")
    op.execute("DROP TABLE IF EXISTS member_links")
