"""Dispatch's tables (its own PostgreSQL schema; revision 0002 creates them).

The board keeps, per (emergency, member), the facts seen so far (`facts`, see
services.dispatch.board) and the columns derived from them, so a read is one query and a
replay recomputes the same columns from the same facts.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

emergencies = Table(
    "emergencies",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("section", Text, nullable=False),
    Column("assisting_sections", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("category", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("urgency", Text, nullable=False),
    Column("drill", Boolean, nullable=False, server_default=text("false")),
    Column("area", JSONB, nullable=False),
    Column("required_qualifications", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("members_needed", Integer, nullable=False),
    Column("languages", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    #: pending_approval, active, closed
    Column("status", Text, nullable=False),
    Column("reply_code", Text, nullable=False),
    Column("staffed", Boolean, nullable=False, server_default=text("false")),
    Column("needs_approval", Boolean, nullable=False, server_default=text("false")),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("declared_at", DateTime(timezone=True)),
    Column("approved_by", Text),
    Column("approved_at", DateTime(timezone=True)),
    #: two-person rule: the version the approver saw, and the extent it had (reach in
    #: metres, expected members); growing past this (or the thresholds) needs a new one
    Column("approved_version", Integer),
    Column("approved_reach_m", Integer),
    Column("approved_members", Integer),
    #: who wrote the current version: neither they nor the declarer may approve it
    Column("changed_by", Text),
    Column("closed_at", DateTime(timezone=True)),
    #: resolved, cancelled, false_alarm
    Column("close_reason", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: bumped on every change; CAP out numbers its Update/Cancel messages with it
    Column("version", Integer, nullable=False, server_default=text("1")),
    #: api or cap; for CAP-declared emergencies, the CAP sender and identifier
    Column("origin", Text, nullable=False, server_default="api"),
    Column("cap_sender", Text),
    Column("cap_identifier", Text),
    #: frozen at activation: the waves escalation may send (see services.dispatch.escalation)
    Column("escalation_plan", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    #: the one escalation step allowed to fire next; any other due step is stale
    Column("next_step_id", UUID(as_uuid=True)),
    Index(
        "emergencies_open_reply_code",
        "reply_code",
        unique=True,
        postgresql_where=text("status <> 'closed'"),
    ),
    #: one emergency per CAP alert, even when the same alert is posted concurrently
    Index(
        "emergencies_cap_alert",
        "cap_sender",
        "cap_identifier",
        unique=True,
        postgresql_where=text("cap_identifier IS NOT NULL"),
    ),
    Index("emergencies_section", "section", "created_at"),
)

board_rows = Table(
    "board_rows",
    metadata,
    Column("emergency_id", UUID(as_uuid=True), primary_key=True),
    Column("member_id", UUID(as_uuid=True), primary_key=True),
    Column("alert_id", UUID(as_uuid=True)),
    Column("status", Text, nullable=False),
    Column("eta_minutes", Integer),
    Column("expected_arrival_at", DateTime(timezone=True)),
    Column("distance_m", Integer),
    Column("wave", Integer),
    Column("qualifications", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("answered_at", DateTime(timezone=True)),
    Column("accepted_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("facts", JSONB, nullable=False),
    Index("board_rows_status", "emergency_id", "status"),
)

escalation_steps = Table(
    "escalation_steps",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("emergency_id", UUID(as_uuid=True), nullable=False),
    #: position in the emergency's frozen plan (1 = the first escalation, wave 2)
    Column("seq", Integer, nullable=False),
    Column("wave", Integer, nullable=False),
    Column("radius_m", Integer, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    #: pending, fired, stale, cancelled
    Column("status", Text, nullable=False, server_default="pending"),
    Column("fired_at", DateTime(timezone=True)),
    Column("outcome", Text),
    UniqueConstraint("emergency_id", "seq", name="escalation_steps_one_per_seq"),
    Index("escalation_steps_due", "due_at", postgresql_where=text("status = 'pending'")),
)

#: the safety loop's timers (see services.dispatch.responders): one row per member and
#: kind ("overdue": released and not home safe after DISPATCH_OVERDUE_AFTER_S). Like the
#: escalation steps, a timer fires in one transaction with its event, marked `fired`
#: there, so it neither repeats after a crash nor fires twice with two instances
safety_timers = Table(
    "safety_timers",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("emergency_id", UUID(as_uuid=True), nullable=False),
    Column("member_id", UUID(as_uuid=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    #: pending, fired, stale
    Column("status", Text, nullable=False, server_default="pending"),
    Column("fired_at", DateTime(timezone=True)),
    UniqueConstraint("emergency_id", "member_id", "kind", name="safety_timers_one_per_kind"),
    Index("safety_timers_due", "due_at", postgresql_where=text("status = 'pending'")),
)

#: roll calls (personnel accountability reports): who was asked to confirm they are fine
roll_calls = Table(
    "roll_calls",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("emergency_id", UUID(as_uuid=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("started_by", Text, nullable=False),
    Column("member_ids", JSONB, nullable=False),
    Index("roll_calls_emergency", "emergency_id", "started_at"),
)

summary_state = Table(
    "summary_state",
    metadata,
    Column("emergency_id", UUID(as_uuid=True), primary_key=True),
    Column("last_published_at", DateTime(timezone=True)),
    #: digest of the last published counts: an unchanged summary is not published again
    Column("last_digest", Text),
)

#: "this emergency's board changed": inserted by writers (an insert never waits on the
#: publisher's lock), deleted by the publisher once a summary covers them
summary_marks = Table(
    "summary_marks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("emergency_id", UUID(as_uuid=True), nullable=False),
    Index("summary_marks_emergency", "emergency_id", "id"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("section", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("last_success_at", DateTime(timezone=True)),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("subscription_id", UUID(as_uuid=True), nullable=False),
    Column("emergency_id", UUID(as_uuid=True), nullable=False),
    Column("event_id", Text, nullable=False),
    Column("body", Text, nullable=False),
    #: pending, delivered
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    Column("backoff_s", Float, nullable=False, server_default=text("0")),
    Index(
        "webhook_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("status = 'pending'"),
    ),
)

#: standing agreements: `assisting_section` has agreed to send its members to the
#: emergencies of `section` (recorded by an admin); only then may a coordinator who does
#: not act for `assisting_section` name it in `assisting_sections`
assistance_agreements = Table(
    "assistance_agreements",
    metadata,
    Column("section", Text, primary_key=True),
    Column("assisting_section", Text, primary_key=True),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("emergency_id", UUID(as_uuid=True)),
    Column("actor", Text, nullable=False),
    Column("actor_role", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("diff", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index("audit_log_emergency", "emergency_id", "id"),
)
