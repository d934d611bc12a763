"""Sections, qualification catalogue, members, qualifications, staff accounts, signing keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CATALOGUE = {
    "FIRST_AID": "First aid",
    "CPR": "Cardiopulmonary resuscitation",
    "SAR": "Search and rescue",
    "ICS_100": "Incident Command System 100",
    "ICS_200": "Incident Command System 200",
    "SCHOOL_SAFETY": "School safety",
    "DRIVER": "Emergency vehicle driver",
}


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "sections",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    types = op.create_table(
        "qualification_types",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.bulk_insert(types, [{"code": c, "name": n} for c, n in CATALOGUE.items()])
    op.create_table(
        "members",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("section", sa.String(16), sa.ForeignKey("sections.code"), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("full_name", sa.Text, nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("email", sa.Text, nullable=True),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("availability", sa.String(16), nullable=True),
        sa.Column("unavailable_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("quiet_start", sa.Time, nullable=True),
        sa.Column("quiet_end", sa.Time, nullable=True),
        sa.Column("home_lat", sa.Float, nullable=True),
        sa.Column("home_lon", sa.Float, nullable=True),
        sa.Column("live_lat", sa.Float, nullable=True),
        sa.Column("live_lon", sa.Float, nullable=True),
        sa.Column("live_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_live_lat", sa.Float, nullable=True),
        sa.Column("published_live_lon", sa.Float, nullable=True),
        sa.Column("published_live_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_alerts", sa.Boolean, nullable=True),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("phone", name="members_phone_key"),
        sa.CheckConstraint("status IN ('active', 'suspended', 'expelled')", name="members_status"),
        sa.CheckConstraint(
            "availability IN ('available', 'unavailable')", name="members_availability"
        ),
    )
    op.create_index("members_section_idx", "members", ["section"])
    op.create_index("members_home_idx", "members", ["home_lat", "home_lon"])
    op.create_index("members_live_idx", "members", ["live_lat", "live_lon"])
    op.create_table(
        "member_qualifications",
        sa.Column(
            "member_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("members.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "code", sa.String(32), sa.ForeignKey("qualification_types.code"), primary_key=True
        ),
        sa.Column("issued_at", sa.Date, nullable=True),
        sa.Column("expires_at", sa.Date, nullable=True),
        sa.CheckConstraint(
            "expires_at IS NULL OR issued_at IS NULL OR expires_at >= issued_at",
            name="member_qualifications_dates",
        ),
    )
    op.create_index(
        "member_qualifications_code_idx", "member_qualifications", ["code", "expires_at"]
    )
    op.create_table(
        "staff_accounts",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column(
            "sections",
            postgresql.ARRAY(sa.String(16)),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.CheckConstraint(
            "role IN ('admin', 'coordinator', 'authority')", name="staff_accounts_role"
        ),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("private_pem", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )


def downgrade() -> None:
    for table in (
        "signing_keys",
        "staff_accounts",
        "member_qualifications",
        "members",
        "qualification_types",
        "sections",
    ):
        op.drop_table(table)
