"""The members service's tables (its own schema; revision 0002 creates them).

SQLAlchemy Core tables rather than ORM classes: the service reads and writes rows in
bulk (CSV import, availability counts) and builds event snapshots from plain rows.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Time,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

sections = Table(
    "sections",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("name", Text, nullable=False),
    Column("country", String(2), nullable=False),
    Column("timezone", Text, nullable=False),
    Column("language", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

qualification_types = Table(
    "qualification_types",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: one row per member; erasure nulls every personal column and keeps id + erased_at
members = Table(
    "members",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("section", String(16), ForeignKey("sections.code"), nullable=True),
    Column("status", String(16), nullable=True),
    Column("full_name", Text, nullable=True),
    Column("phone", String(20), nullable=True, unique=True),
    Column("email", Text, nullable=True),
    Column("language", String(8), nullable=True),
    Column("availability", String(16), nullable=True),
    Column("unavailable_until", DateTime(timezone=True), nullable=True),
    Column("quiet_start", Time, nullable=True),
    Column("quiet_end", Time, nullable=True),
    Column("home_lat", Float, nullable=True),
    Column("home_lon", Float, nullable=True),
    Column("live_lat", Float, nullable=True),
    Column("live_lon", Float, nullable=True),
    Column("live_at", DateTime(timezone=True), nullable=True),
    #: the live position last put in a snapshot (coalescing of location bursts)
    Column("published_live_lat", Float, nullable=True),
    Column("published_live_lon", Float, nullable=True),
    Column("published_live_at", DateTime(timezone=True), nullable=True),
    Column("consent_alerts", Boolean, nullable=True),
    Column("consent_at", DateTime(timezone=True), nullable=True),
    #: when the member last shared their position themselves, ticking the consent box of
    #: their personal page (revision 0004; self_service.py)
    Column("location_consent_at", DateTime(timezone=True), nullable=True),
    #: version of the last snapshot published for this member
    Column("version", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("erased_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("status IN ('active', 'suspended', 'expelled')", name="members_status"),
    CheckConstraint("availability IN ('available', 'unavailable')", name="members_availability"),
    Index("members_section_idx", "section"),
    Index("members_home_idx", "home_lat", "home_lon"),
    Index("members_live_idx", "live_lat", "live_lon"),
)

member_qualifications = Table(
    "member_qualifications",
    metadata,
    Column(
        "member_id",
        UUID(as_uuid=True),
        ForeignKey("members.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("code", String(32), ForeignKey("qualification_types.code"), primary_key=True),
    Column("issued_at", Date, nullable=True),
    Column("expires_at", Date, nullable=True),
    CheckConstraint(
        "expires_at IS NULL OR issued_at IS NULL OR expires_at >= issued_at",
        name="member_qualifications_dates",
    ),
    Index("member_qualifications_code_idx", "code", "expires_at"),
)

staff_accounts = Table(
    "staff_accounts",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("sections", ARRAY(String(16)), nullable=False, server_default=text("'{}'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: set: the account cannot log in and its tokens are refused (revision 0003)
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    #: copied into each token as `ver`; incremented when role, sections or disabled change,
    #: which revokes every token issued before
    Column("token_version", Integer, nullable=False, server_default=text("0")),
    CheckConstraint("role IN ('admin', 'coordinator', 'authority')", name="staff_accounts_role"),
)

#: background CSV imports (`POST /members/imports`): progress and outcome (revision 0003)
import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("account_id", UUID(as_uuid=True), nullable=False),
    #: the sections the file's rows name (known once the file is parsed)
    Column("sections", ARRAY(String(16)), nullable=False, server_default=text("'{}'")),
    Column("dry_run", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("total", Integer, nullable=False, server_default=text("0")),
    Column("processed", Integer, nullable=False, server_default=text("0")),
    Column("imported", Integer, nullable=False, server_default=text("0")),
    Column("errors", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("detail", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(
        "status IN ('validating', 'importing', 'done', 'refused', 'failed')",
        name="import_jobs_status",
    ),
    Index("import_jobs_account_idx", "account_id", "created_at"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_pem", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

QUALIFICATION_CATALOGUE: dict[str, str] = {
    "FIRST_AID": "First aid",
    "CPR": "Cardiopulmonary resuscitation",
    "SAR": "Search and rescue",
    "ICS_100": "Incident Command System 100",
    "ICS_200": "Incident Command System 200",
    "SCHOOL_SAFETY": "School safety",
    "DRIVER": "Emergency vehicle driver",
}
