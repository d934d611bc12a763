"""Reachability drills and the readiness figure (issue 12).

`drills` (the schedule), `drill_occurrences` (one per drill and time: the claim that
fires it once), `drill_messages` (one per member asked, with send, answer and hold times),
`readiness_publications` (when the figures were last published). Revision 0002 creates
the tables from the models as they are now, so every step here is "if not exists".

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS drills (
            id uuid PRIMARY KEY,
            sections text[] NOT NULL,
            starts_at timestamptz NOT NULL,
            recurrence text NULL,
            timezone text NOT NULL DEFAULT 'UTC',
            next_at timestamptz NULL,
            status text NOT NULL DEFAULT 'scheduled',
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS drills_due_idx ON drills (next_at) WHERE status = 'scheduled'"
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS drill_occurrences (
            id uuid PRIMARY KEY,
            drill_id uuid NOT NULL REFERENCES drills (id),
            occurs_at timestamptz NOT NULL,
            fired_at timestamptz NOT NULL,
            sections text[] NOT NULL,
            asked integer NOT NULL DEFAULT 0,
            skipped_on_emergency integer NOT NULL DEFAULT 0,
            skipped_opted_out integer NOT NULL DEFAULT 0,
            CONSTRAINT drill_occurrence_once UNIQUE (drill_id, occurs_at)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS drill_messages (
            id bigserial PRIMARY KEY,
            occurrence_id uuid NOT NULL REFERENCES drill_occurrences (id),
            member_id uuid NOT NULL,
            section text NOT NULL,
            qualifications jsonb NOT NULL DEFAULT '[]'::jsonb,
            language text NOT NULL,
            token text NOT NULL UNIQUE,
            send_after timestamptz NOT NULL,
            held boolean NOT NULL DEFAULT false,
            status text NOT NULL DEFAULT 'pending',
            claimed_by text NULL,
            attempts integer NOT NULL DEFAULT 0,
            provider_sid text NULL,
            error text NULL,
            possible_duplicate boolean NOT NULL DEFAULT false,
            sent_at timestamptz NULL,
            answered_at timestamptz NULL,
            answer_channel text NULL,
            CONSTRAINT drill_message_once UNIQUE (occurrence_id, member_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS drill_messages_open_idx ON drill_messages "
        "(send_after, id) WHERE status IN ('pending', 'sending')"
    )
    op.execute("CREATE INDEX IF NOT EXISTS drill_messages_member_idx ON drill_messages (member_id)")
    op.execute("CREATE INDEX IF NOT EXISTS drill_messages_sid_idx ON drill_messages (provider_sid)")
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS readiness_publications (
            id integer PRIMARY KEY,
            published_at timestamptz NOT NULL,
            CONSTRAINT readiness_publications_one_row CHECK (id = 1)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS readiness_publications")
    op.execute("DROP TABLE IF EXISTS drill_messages")
    op.execute("DROP TABLE IF EXISTS drill_occurrences")
    op.execute("DROP TABLE IF EXISTS drills")
