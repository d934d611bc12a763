"""The alerts service's tables (its own PostgreSQL schema).

- `emergencies`: what alerts knows of each emergency (facts, status, staffed).
- `alerts`: one row per member per emergency (unique), with the member's unguessable
  answer token and their answer. Written before any SMS is attempted.
- `alert_waves`: the waves whose recording is complete (written with the last chunk of
  the wave, in the event's transaction; a wave with alert rows and no row here was
  interrupted and is resumed).
- `outbound_messages`: every SMS to send (the alert itself and the later not-needed,
  call-up, stand-down and correction messages), one per alert and kind (unique); the
  sender claims them with `FOR UPDATE SKIP LOCKED`.
- `inbound_messages`: every SMS received, parsed or not (coordinators read the rest),
  once per provider MessageSid, with the answer given.
- `sms_opt_outs`: numbers that sent STOP (until START).
- `erased_opt_outs`: the opt-outs of erased members, as keyed hashes of their numbers
  (erasure.py): a number re-added later stays opted out.
- `pseudonym_key`: the key of those hashes when `ALERTS_PSEUDONYM_KEY` is not set.

An erased member's rows keep their ids, statuses and times (the board and the counts
need them); their `phone` columns are NULL and message bodies "[erased]" (erasure.py).
- `sender_heartbeats`: which sender processes are alive (their "sending" rows are theirs).
- `roll_call_members`: who each roll call asked and when they answered OK (safety_loop.py);
  the row is written with the roll-call SMS, once per member per roll call.
- `member_links`: the personal-page links members asked for by SMS (`LINK`), single-use
  and short-lived, kept only as hashes of their tokens (member_page.py).
- `qualification_reminders`: one row per member, qualification and expiry date whose
  reminder SMS is due or sent; the unique row is the claim (qualification_expiry.py).
- `voice_calls`: the channel ladder's calls (calling.py), at most one per alert (so one
  per member per emergency), written and committed before the provider is asked.
- `drills`, `drill_occurrences`, `drill_messages`: reachability drills (issue 12): the
  schedule, one row per occurrence fired (unique per drill and time: the claim), one per
  member asked (unique per occurrence), with when the SMS went and when the member
  answered OK; kept for the trend. `readiness_publications`: when the readiness figures
  were last published. `drill_calls`: a drill's calls to members who had not answered
  (drill_calls.py), at most one per drill message, committed before the provider is asked.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

emergencies = Table(
    "emergencies",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("section", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("drill", Boolean, nullable=False, server_default=text("false")),
    Column("severity", Text, nullable=False),
    Column("members_needed", Integer, nullable=False),
    Column("reply_code", Text, nullable=False),
    Column("facts", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'active'")),
    Column("staffed", Boolean, nullable=False, server_default=text("false")),
    Column("close_reason", Text, nullable=True),
    Column("declared_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: a member's open alerts never share a code (dispatch's is kept unless it collides
    #: with another active emergency's here, alerting.py)
    Index(
        "emergencies_active_reply_code",
        "reply_code",
        unique=True,
        postgresql_where=text("status = 'active'"),
    ),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("emergency_id", UUID(as_uuid=True), ForeignKey("emergencies.id"), nullable=False),
    Column("member_id", UUID(as_uuid=True), nullable=False),
    Column("wave", Integer, nullable=False),
    Column("token", Text, nullable=False, unique=True),
    #: NULL once the member is erased
    Column("phone", Text, nullable=True),
    Column("language", Text, nullable=False),
    Column("distance_m", Integer, nullable=False),
    Column("qualifications", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    #: the member's own section when alerted (reports count turnout per section)
    Column("section", Text, nullable=True),
    #: the alert SMS: pending, sent, delivered, failed, cancelled
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    #: the member's answer: accepted, standby, declined (None: no answer yet), then the
    #: safety loop, forward only: en_route, on_scene (`arrived` in older rows), released,
    #: home_safe (responder_states.py)
    Column("response", Text, nullable=True),
    Column("eta_minutes", Integer, nullable=True),
    Column("responded_at", DateTime(timezone=True), nullable=True),
    Column("stood_down_at", DateTime(timezone=True), nullable=True),
    Column("stood_down_reason", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("emergency_id", "member_id", name="alerts_once_per_member"),
    Index("alerts_phone_idx", "phone"),
    Index("alerts_member_idx", "member_id"),
)

alert_waves = Table(
    "alert_waves",
    metadata,
    Column("emergency_id", UUID(as_uuid=True), ForeignKey("emergencies.id"), primary_key=True),
    Column("wave", Integer, primary_key=True),
    #: alert rows of the wave (those of an interrupted recording included)
    Column("recorded", Integer, nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

outbound_messages = Table(
    "outbound_messages",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("alert_id", UUID(as_uuid=True), ForeignKey("alerts.id"), nullable=False),
    #: alert, not_needed, call_up, stand_down, correction; the safety loop's released,
    #: roll_call (once per roll call) and overdue (the one reminder)
    Column("kind", Text, nullable=False),
    #: NULL once the member is erased (the body is then "[erased]")
    Column("phone", Text, nullable=True),
    Column("body", Text, nullable=False),
    Column("segments", Integer, nullable=False),
    #: send order: an alert's rank in its wave (nearest first), 0 for follow-ups, so two
    #: emergencies' fan-outs interleave and corrections or stand-downs jump the queue
    Column("rank", Integer, nullable=False, server_default=text("0")),
    #: pending, sending, sent, failed, suppressed (opted out), cancelled
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("provider_sid", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("claimed_by", Text, nullable=True),
    Column("claimed_at", DateTime(timezone=True), nullable=True),
    #: bumped by every claim: a result is recorded only under the claim it was sent with
    #: (fencing: a sender whose heartbeat stalled cannot overwrite a reclaimed row)
    Column("claim", Integer, nullable=False, server_default=text("0")),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    #: resent after its sender died while it was "sending", or after the provider may have
    #: taken an earlier attempt (5xx, read timeout): the member may get it twice
    Column("possible_duplicate", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: the roll call a `roll_call` message asks about (a member may be asked several
    #: times during one emergency, once per roll call); NULL for every other kind
    Column("roll_call_id", UUID(as_uuid=True), nullable=True),
    #: once per alert and kind (and roll call): a redelivered event writes nothing twice
    Index(
        "outbound_once_per_kind",
        "alert_id",
        "kind",
        "roll_call_id",
        unique=True,
        postgresql_nulls_not_distinct=True,
    ),
    Index(
        "outbound_open_idx",
        "rank",
        "id",
        postgresql_where=text("status IN ('pending', 'sending')"),
    ),
    Index("outbound_sid_idx", "provider_sid", postgresql_where=text("provider_sid IS NOT NULL")),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("provider_sid", Text, nullable=True),
    #: NULL once the sender is erased (the body is then "[erased]")
    Column("phone", Text, nullable=True),
    Column("body", Text, nullable=False),
    #: accepted, standby, declined, en_route, on_scene (arrived before), home_safe,
    #: roll_call_ok, already, stop, start, help, unknown, ambiguous, no_alert, closed
    Column("outcome", Text, nullable=False),
    Column("alert_id", UUID(as_uuid=True), nullable=True),
    Column("emergency_id", UUID(as_uuid=True), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: the text the webhook answered: a replay of the same MessageSid gets it again
    Column("answer", Text, nullable=True),
    #: a replayed webhook (same MessageSid) is recognised and changes nothing
    Index(
        "inbound_once_per_sid",
        "provider_sid",
        unique=True,
        postgresql_where=text("provider_sid IS NOT NULL"),
    ),
)

sms_opt_outs = Table(
    "sms_opt_outs",
    metadata,
    Column("phone", Text, primary_key=True),
    Column("opted_out_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

erased_opt_outs = Table(
    "erased_opt_outs",
    metadata,
    #: HMAC-SHA256 of the E.164 number (hex) under the pseudonym key
    Column("phone_hash", Text, primary_key=True),
    Column("opted_out_at", DateTime(timezone=True), nullable=False),
)

pseudonym_key = Table(
    "pseudonym_key",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", LargeBinary, nullable=False),
    CheckConstraint("id = 1", name="pseudonym_key_one_row"),
)

sender_heartbeats = Table(
    "sender_heartbeats",
    metadata,
    Column("instance_id", Text, primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

roll_call_members = Table(
    "roll_call_members",
    metadata,
    Column("roll_call_id", UUID(as_uuid=True), primary_key=True),
    Column("alert_id", UUID(as_uuid=True), ForeignKey("alerts.id"), primary_key=True),
    Column("emergency_id", UUID(as_uuid=True), nullable=False),
    Column("member_id", UUID(as_uuid=True), nullable=False),
    Column("asked_at", DateTime(timezone=True), nullable=False),
    #: the member's OK (None: not yet); the channel it came by
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
    Column("channel", Text, nullable=True),
    #: a member's open roll calls, newest first, for their OK
    Index(
        "roll_call_members_open_idx",
        "alert_id",
        "asked_at",
        postgresql_where=text("confirmed_at IS NULL"),
    ),
)

member_links = Table(
    "member_links",
    metadata,
    #: SHA-256 (hex) of the link's token: a copy of the table opens no one's page
    Column("token_hash", Text, primary_key=True),
    Column("member_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    #: set by the one submit the link allows
    Column("used_at", DateTime(timezone=True), nullable=True),
    #: SHA-256 of the CSRF token of the form last shown (a POST must carry it)
    Column("csrf_hash", Text, nullable=True),
    Index("member_links_member_idx", "member_id"),
)

qualification_reminders = Table(
    "qualification_reminders",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("member_id", UUID(as_uuid=True), nullable=False),
    Column("code", Text, nullable=False),
    Column("expires_at", Date, nullable=False),
    #: pending, sending, sent, failed, skipped (no number, opted out, erased)
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("claimed_by", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("provider_sid", Text, nullable=True),
    Column("error", Text, nullable=True),
    #: claimed again after its sender died while sending: the member may get it twice
    Column("possible_duplicate", Boolean, nullable=False, server_default=text("false")),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("member_id", "code", "expires_at", name="qualification_reminder_once"),
    Index(
        "qualification_reminders_open_idx",
        "id",
        postgresql_where=text("status IN ('pending', 'sending')"),
    ),
)


voice_calls = Table(
    "voice_calls",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    #: one call per alert, ever: the unique key a claim inserts before the provider call
    Column("alert_id", UUID(as_uuid=True), ForeignKey("alerts.id"), nullable=False, unique=True),
    Column("emergency_id", UUID(as_uuid=True), nullable=False),
    #: the unguessable token of the call's webhook URLs (never a member id)
    Column("token", Text, nullable=False, unique=True),
    #: placing (claimed, provider asked), placed, failed (refused), ended
    Column("status", Text, nullable=False, server_default=text("'placing'")),
    Column("provider_sid", Text, nullable=True),
    #: answered, no_answer, busy, failed (the provider's final status)
    Column("outcome", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("claimed_by", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("placed_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Index("voice_calls_emergency_idx", "emergency_id"),
)


# --- reachability drills (issue 12, drills.py, drill_runs.py) ---------------------------

drills = Table(
    "drills",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("sections", ARRAY(Text), nullable=False),
    #: the first occurrence; with `recurrence`, the RRULE's DTSTART
    Column("starts_at", DateTime(timezone=True), nullable=False),
    #: an RFC 5545 RRULE (no DTSTART), None for a single drill
    Column("recurrence", Text, nullable=True),
    #: the zone the recurrence keeps its wall-clock time in (10:00 stays 10:00 over DST)
    Column("timezone", Text, nullable=False, server_default=text("'UTC'")),
    #: the next occurrence due; None once none is left (then status `done`)
    Column("next_at", DateTime(timezone=True), nullable=True),
    #: scheduled, done, cancelled
    Column("status", Text, nullable=False, server_default=text("'scheduled'")),
    #: minutes after its SMS a member who has not answered is phoned; None: no calls
    Column("call_unanswered_after_min", Integer, nullable=True),
    #: the staff account that scheduled it (an account id, not a person's name)
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("drills_due_idx", "next_at", postgresql_where=text("status = 'scheduled'")),
)

drill_occurrences = Table(
    "drill_occurrences",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("drill_id", UUID(as_uuid=True), ForeignKey("drills.id"), nullable=False),
    #: the time it was scheduled for
    Column("occurs_at", DateTime(timezone=True), nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=False),
    Column("sections", ARRAY(Text), nullable=False),
    #: members asked (a message row each), and those left out at firing
    Column("asked", Integer, nullable=False, server_default=text("0")),
    Column("skipped_on_emergency", Integer, nullable=False, server_default=text("0")),
    Column("skipped_opted_out", Integer, nullable=False, server_default=text("0")),
    #: the drill's call delay, frozen when the occurrence fired
    Column("call_unanswered_after_min", Integer, nullable=True),
    #: the claim: one occurrence per drill and time, whichever process fires it
    UniqueConstraint("drill_id", "occurs_at", name="drill_occurrence_once"),
)

drill_messages = Table(
    "drill_messages",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("occurrence_id", UUID(as_uuid=True), ForeignKey("drill_occurrences.id"), nullable=False),
    Column("member_id", UUID(as_uuid=True), nullable=False),
    Column("section", Text, nullable=False),
    #: the qualification codes valid when the drill fired (results by qualification)
    Column("qualifications", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("language", Text, nullable=False),
    #: the unguessable token of the member's answer link (/d/{token})
    Column("token", Text, nullable=False, unique=True),
    #: not sent before this (the end of the member's quiet hours)
    Column("send_after", DateTime(timezone=True), nullable=False),
    Column("held", Boolean, nullable=False, server_default=text("false")),
    #: pending, sending, sent, failed, skipped (erased, suspended, opted out since)
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("claimed_by", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("provider_sid", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("possible_duplicate", Boolean, nullable=False, server_default=text("false")),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    #: the member's OK, and the channel it came by (sms, web)
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Column("answer_channel", Text, nullable=True),
    UniqueConstraint("occurrence_id", "member_id", name="drill_message_once"),
    Index(
        "drill_messages_open_idx",
        "send_after",
        "id",
        postgresql_where=text("status IN ('pending', 'sending')"),
    ),
    Index("drill_messages_member_idx", "member_id"),
    Index("drill_messages_sid_idx", "provider_sid"),
)

drill_calls = Table(
    "drill_calls",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    #: one call per member per occurrence, ever: the unique key a claim inserts (and
    #: commits) before the provider is asked (drill_calls.py)
    Column("message_id", BigInteger, ForeignKey("drill_messages.id"), nullable=False, unique=True),
    #: SHA-256 of the unguessable token in the call's webhook URLs (the token itself is
    #: only in the URLs given to the provider)
    Column("token_hash", Text, nullable=False, unique=True),
    #: placing (claimed, provider asked), placed, failed (refused), ended
    Column("status", Text, nullable=False, server_default=text("'placing'")),
    Column("provider_sid", Text, nullable=True),
    #: answered, no_answer, busy, failed (the provider's final status)
    Column("outcome", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("claimed_by", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("placed_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
)

readiness_publications = Table(
    "readiness_publications",
    metadata,
    #: one row: when the readiness figures were last published (by whichever process)
    Column("id", Integer, primary_key=True),
    Column("published_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="readiness_publications_one_row"),
)
