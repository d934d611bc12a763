"""Reachability drills (issue 12): the decisions, free of I/O.

A drill is a test SMS ("Muster test: reply OK", in the member's language) to every active,
consenting member of one or more sections, now, at a set time, or recurring (an RFC 5545
RRULE). It is not an emergency: no alert row, no board, no stand-down. What is decided
here:

- when an occurrence is due (`firing`): the latest occurrence not after now, once; the
  ones a stopped service missed are not fired late one after another (members would get
  several tests at once), the schedule moves on to the first occurrence after now;
- who is asked (`recipients`): active, consenting, with a number taking SMS, in the
  drill's sections; not a member on an active emergency (a test beside a real call-out
  confuses, and their OK must answer the emergency) nor a number that sent STOP;
- when each member's SMS may go (`release_at`): at once, or at the end of their quiet
  hours, in their own time zone (a drill is never urgent enough to wake anyone);
- whether a member who has not answered is phoned (`plan_drill_call`), when the drill
  asks for calls: the same answers as the emergency ladder's (ladder.py), for a drill;
- the results (`results`): the share of members asked who answered OK within 5, 15 and
  60 minutes of their SMS going out (a member held by quiet hours is timed from when
  theirs went), overall, by section and by qualification held when the drill fired, and
  the answers by channel (sms, web, voice).
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr
from pydantic import BaseModel

from services.alerts.ladder import CallPlan
from services.alerts.selection import in_quiet_window, is_reachable, valid_qualifications
from services.alerts.self_service import zone_of
from shared.events.members import MemberChanged

#: the answer windows of the results, in minutes
WITHIN_MINUTES = (5, 15, 60)
#: recurring drills are at least this far apart (a day, less an hour for DST): a rule
#: firing every minute would flood members with tests
MIN_RECURRENCE_GAP = timedelta(hours=23)
#: an OK answers a drill SMS sent at most this long ago
ANSWER_WINDOW = timedelta(days=7)
#: the frequencies a drill may recur at (finer ones cannot be a day apart, and a rule
#: that never matches would be searched second by second)
FREQUENCIES = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
#: how far ahead a rule's first occurrences are looked for (a rule matching nothing, like
#: the 30th of February, is refused instead of searched to the year 9999)
LOOK_AHEAD = timedelta(days=3660)
#: the minutes after its SMS a drill may phone a member who has not answered (an hour
#: beyond the last results window, 60: a later call tells nothing about reach)
CALL_AFTER_MIN = 1
CALL_AFTER_MAX = 120
#: a drill call held this long past its time (quiet hours, an emergency) is not placed:
#: a test call the next morning about last evening's SMS only confuses
CALL_LATEST = timedelta(hours=6)
#: the channels an OK comes by
CHANNELS = ("sms", "web", "voice")
#: the outcomes of a drill call that leave the member to be looked at (they were not
#: reached by phone either)
CALL_NOT_REACHED = frozenset({"failed", "no_answer", "busy"})


class RecurrenceError(ValueError):
    """The recurrence is not an RRULE Muster accepts; the message says why."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # OSError: a directory of the zone database ("Europe") is no zone
        raise RecurrenceError(f"unknown time zone {name!r}") from exc


def recurrence_rule(recurrence: str, starts_at: datetime, timezone: str) -> rrule:
    """The RRULE, starting at `starts_at` and keeping its wall-clock time in `timezone`.
    Refused: several rules or a DTSTART (the start is `starts_at`), rules that do not
    parse, and occurrences less than a day apart."""
    text = recurrence.strip()
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:") :]
    if not text or "\n" in text or "DTSTART" in text.upper() or ":" in text:
        raise RecurrenceError("one RRULE without DTSTART, e.g. FREQ=MONTHLY;BYDAY=1SA")
    parts = dict(part.partition("=")[::2] for part in text.upper().split(";"))
    if parts.get("FREQ") not in FREQUENCIES:
        raise RecurrenceError("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")
    start = starts_at.astimezone(zone(timezone))
    try:
        rule = rrulestr(text, dtstart=start)
        if not isinstance(rule, rrule):
            raise RecurrenceError("one RRULE, not a set")
        first = rule.between(start, start + LOOK_AHEAD, inc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RecurrenceError(f"not an RRULE: {exc}") from exc
    if not first:
        raise RecurrenceError("the rule has no occurrence in the next ten years")
    for previous, moment in pairwise(first[:13]):
        if moment - previous < MIN_RECURRENCE_GAP:
            raise RecurrenceError("occurrences must be at least a day apart")
    return rule


@dataclass(frozen=True)
class Firing:
    #: the occurrence fired now (its scheduled time)
    occurs_at: datetime
    #: the next one, None when none is left
    next_at: datetime | None


def first_due(starts_at: datetime, recurrence: str | None, timezone: str) -> datetime | None:
    """The first occurrence: `starts_at`, or the rule's first (BYDAY may move it on)."""
    if recurrence is None:
        return starts_at
    first = recurrence_rule(recurrence, starts_at, timezone).after(starts_at, inc=True)
    return first.astimezone(UTC) if first is not None else None


def firing(
    *,
    starts_at: datetime,
    recurrence: str | None,
    timezone: str,
    next_at: datetime | None,
    now: datetime,
) -> Firing | None:
    """The occurrence to fire at `now`, if one is due, and the schedule's next."""
    if next_at is None or next_at > now:
        return None
    if recurrence is None:
        return Firing(next_at, None)
    rule = recurrence_rule(recurrence, starts_at, timezone)
    latest = rule.before(now, inc=True)
    following = rule.after(now)
    occurs_at = latest.astimezone(UTC) if latest is not None else next_at
    # never earlier than the one the schedule was waiting for
    occurs_at = max(occurs_at, next_at)
    return Firing(occurs_at, following.astimezone(UTC) if following is not None else None)


# --- who is asked, and when ------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    member: MemberChanged
    #: not sent before this (the end of the member's quiet hours, or the firing time)
    send_after: datetime
    held: bool
    #: qualification codes valid at firing, for the results by qualification
    qualifications: tuple[str, ...]


@dataclass(frozen=True)
class Asking:
    recipients: list[Recipient]
    skipped_on_emergency: int
    skipped_opted_out: int


def release_at(member: MemberChanged, now: datetime) -> datetime:
    """`now`, or the end of the quiet hours the member is in at `now` (their own zone)."""
    quiet = member.quiet_hours
    if quiet is None or quiet.start == quiet.end:
        return now
    place = zone_of(member)
    local = now.astimezone(place)
    if not in_quiet_window(local.time().replace(tzinfo=None), quiet.start, quiet.end):
        return now
    end = datetime.combine(local.date(), quiet.end.replace(tzinfo=None), tzinfo=place)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(UTC)


def recipients(
    members: Iterable[MemberChanged],
    sections: Collection[str],
    now: datetime,
    *,
    on_emergency: Collection[UUID] = (),
    opted_out_phones: Collection[str] = (),
) -> Asking:
    """Everyone the drill asks, each once, and how many were left out and why."""
    chosen: dict[UUID, Recipient] = {}
    busy = stopped = 0
    for member in members:
        if member.section not in sections or not is_reachable(member):
            continue
        if member.member_id in chosen:
            continue
        if member.member_id in on_emergency:
            busy += 1
            continue
        if member.phone in opted_out_phones:
            stopped += 1
            continue
        send_after = release_at(member, now)
        chosen[member.member_id] = Recipient(
            member=member,
            send_after=send_after,
            held=send_after > now,
            qualifications=tuple(sorted(valid_qualifications(member, now))),
        )
    return Asking(list(chosen.values()), busy, stopped)


# --- calls to members who have not answered --------------------------------------------


@dataclass(frozen=True)
class DrillCallFacts:
    """One member's drill SMS as the drill's caller sees it."""

    #: the occurrence's delay before a call; None: this drill places no calls
    call_after: timedelta | None
    #: when the provider took the drill SMS (None: not sent, failed or skipped)
    sms_sent_at: datetime | None
    #: the member said OK on any channel (SMS, link, voice)
    answered: bool
    #: a call was claimed for this SMS already (placed, failed, or lost in a crash)
    already_called: bool
    #: the index holds an active member with a number
    has_phone: bool
    #: the member is out on (or alerted for) an active emergency
    on_emergency: bool
    #: it is the member's quiet hours now, in their time zone
    quiet_hours_now: bool


def plan_drill_call(facts: DrillCallFacts, now: datetime) -> CallPlan:
    """`due`, `wait` (with `at`), `held` (asked again next round) or `never`. A drill is
    never urgent: quiet hours and an active emergency hold the call, and one held past
    CALL_LATEST is not placed."""
    if facts.call_after is None:
        return CallPlan("never", "no calls for this drill")
    if facts.already_called:
        return CallPlan("never", "already called")
    if facts.answered:
        return CallPlan("never", "answered")
    if facts.sms_sent_at is None:
        # a failed SMS is a number to fix, listed for the coordinator, not a call
        return CallPlan("never", "sms not sent")
    if not facts.has_phone:
        return CallPlan("never", "no number")
    due_at = facts.sms_sent_at + facts.call_after
    if now < due_at:
        return CallPlan("wait", "sms unanswered for less than the delay", at=due_at)
    if now > due_at + CALL_LATEST:
        return CallPlan("never", "too late")
    if facts.on_emergency:
        return CallPlan("held", "on an active emergency")
    if facts.quiet_hours_now:
        return CallPlan("held", "quiet hours")
    return CallPlan("due", "sms unanswered")


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Asked:
    """One member's drill message, as the results read it (no member id needed)."""

    section: str
    qualifications: Sequence[str]
    #: pending, sending, sent, failed, skipped
    status: str
    sent_at: datetime | None
    answered_at: datetime | None
    #: the channel of the OK (sms, web, voice)
    channel: str | None = None


def answer_seconds(asked: Asked) -> float | None:
    """From the SMS going out to the OK; None without an answer (or an SMS)."""
    if asked.answered_at is None or asked.sent_at is None:
        return None
    return max(0.0, (asked.answered_at - asked.sent_at).total_seconds())


class Reach(BaseModel):
    """The members of one group asked by an occurrence, and how fast they answered."""

    asked: int = 0
    #: the SMS went out (sent), could not be sent (failed), waits (quiet hours, pending)
    sent: int = 0
    failed: int = 0
    waiting: int = 0
    answered: int = 0
    #: answered within 5, 15 and 60 minutes (keys "5", "15", "60"), and as shares of asked
    within: dict[str, int] = {}
    shares: dict[str, float] = {}
    median_answer_seconds: float | None = None
    #: the answers by the channel they came by (sms, web, voice)
    by_channel: dict[str, int] = {}


class Results(BaseModel):
    overall: Reach
    by_section: dict[str, Reach]
    by_qualification: dict[str, Reach]


def reach(group: Sequence[Asked]) -> Reach:
    times = [t for t in (answer_seconds(a) for a in group) if t is not None]
    within = {str(m): sum(1 for t in times if t <= m * 60) for m in WITHIN_MINUTES}
    asked = len(group)
    return Reach(
        asked=asked,
        sent=sum(1 for a in group if a.status == "sent"),
        failed=sum(1 for a in group if a.status == "failed"),
        waiting=sum(1 for a in group if a.status in ("pending", "sending")),
        answered=sum(1 for a in group if a.answered_at is not None),
        within=within,
        shares={m: round(n / asked, 4) if asked else 0.0 for m, n in within.items()},
        median_answer_seconds=statistics.median(times) if times else None,
        by_channel={
            channel: sum(1 for a in group if a.answered_at is not None and a.channel == channel)
            for channel in CHANNELS
        },
    )


def results(messages: Iterable[Asked]) -> Results:
    """5/15/60-minute reach of one occurrence, overall, by section, by qualification.
    A member skipped at sending time (erased, suspended, opted out since) is not counted
    as asked."""
    asked = [m for m in messages if m.status != "skipped"]
    sections: dict[str, list[Asked]] = {}
    qualifications: dict[str, list[Asked]] = {}
    for message in asked:
        sections.setdefault(message.section, []).append(message)
        for code in message.qualifications:
            qualifications.setdefault(code, []).append(message)
    return Results(
        overall=reach(asked),
        by_section={s: reach(g) for s, g in sorted(sections.items())},
        by_qualification={q: reach(g) for q, g in sorted(qualifications.items())},
    )


@dataclass(frozen=True)
class MemberRecord:
    """One member's messages in a section's recent occurrences, newest first."""

    member_id: UUID
    section: str
    #: (status, answered) per occurrence they were asked in
    outcomes: Sequence[tuple[str, bool]]
    last_error: str | None = None
    #: the outcome of the drill's call to them per occurrence, in `outcomes`' order
    #: (None: not called)
    calls: Sequence[str | None] = ()


def needs_attention(record: MemberRecord, last: int) -> str | None:
    """Why a coordinator should look at this member's contact details, or None:
    `sms_failed` when their SMS failed in any of their last `last` drills,
    `never_answered` when they were asked in `last` drills and answered none,
    `call_unanswered` when, in one of those, they answered neither the SMS nor the
    drill's call (it failed, rang out or was busy)."""
    recent = list(record.outcomes)[:last]
    if any(status == "failed" for status, _ in recent):
        return "sms_failed"
    if len(recent) >= last and not any(answered for _, answered in recent):
        return "never_answered"
    calls = list(record.calls)[: len(recent)]
    if any(
        call in CALL_NOT_REACHED and not answered
        for call, (_, answered) in zip(calls, recent, strict=False)
    ):
        return "call_unanswered"
    return None
