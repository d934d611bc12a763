"""After-action reports (issue 12): what happened in one emergency, built from the facts
dispatch already holds. Pure: the emergency, its board rows' facts and its audit trail
in, a report out; no I/O, no clock (an open emergency is reported "as of" a time given).

Two versions of the same figures:

- the coordinator's (`CoordinatorReport`): every figure exactly, the timeline with each
  responder's status changes, one line per alerted member, the staff actions with who
  took them. Members are named by member id: dispatch holds no names (the registry is
  members'), and a report that copied names would keep them after an erasure.
- the authority's (`AuthorityReport`): no member id, name, phone, staff account or
  per-member time; counts below k (`DISPATCH_REPORT_MIN_COUNT`) are given as "< k",
  zero too, as the availability counts do (a 0 beside a "< k" would say where the few
  are), and a median or p90 only over at least k members.

Times to answer and to arrival run from the member's own alert SMS (`sent_at`), so a
member alerted in a late wave is not counted as slow for the waves before theirs.
Percentiles are nearest-rank (p90 of 10 values is the 9th smallest): an observed value,
never one interpolated between two members.

By section: each member counts under their own section, which `muster.alert.sent.v1`
carries. A member whose only send event is from before it carried the section counts
under the emergency's section when it has no assisting sections, and under the joined
name ("fier+vlore") when it has some.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel

from services.dispatch.board import SAFETY_STATES, RowFacts

#: alerts' reason for an SMS it did not send because the number had sent STOP
OPT_OUT_PREFIX = "opted out"
#: audit actors that are the service itself, not a person
SYSTEM_ROLES = frozenset({"system"})
#: the milestones an authority sees (each status change of a named responder is the
#: coordinator's only)
MILESTONES = frozenset(
    {"declared", "held_for_approval", "approved", "wave", "first_sms", "first_acceptance",
     "staffed", "quota_reopened", "first_on_scene", "closed"}
)  # fmt: skip

Audience = Literal["coordinator", "authority"]
#: a count as an authority sees it: the number, or "< k"
Count = int | str


# -- the facts a report is built from ------------------------------------------------------


@dataclass(frozen=True)
class EmergencyFacts:
    id: UUID
    title: str
    section: str
    assisting_sections: tuple[str, ...]
    drill: bool
    status: str
    members_needed: int
    required_qualifications: tuple[str, ...]
    created_at: datetime
    declared_at: datetime | None
    approved_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    category: str = ""
    severity: str = ""
    wave_one_radius_m: int | None = None


@dataclass(frozen=True)
class AuditFact:
    at: datetime
    action: str
    actor: str
    actor_role: str
    diff: dict[str, Any] = field(default_factory=dict)


# -- the report ---------------------------------------------------------------------------


class TimelineEntry(BaseModel):
    at: datetime
    #: declared, held_for_approval, approved, wave, first_sms, first_acceptance, staffed,
    #: quota_reopened, first_on_scene, status_change (coordinator only), closed
    event: str
    wave: int | None = None
    #: for status_change: accepted, declined, en_route, on_scene, released, home_safe
    status: str | None = None
    channel: str | None = None
    member_id: UUID | None = None
    detail: str | None = None


class Durations(BaseModel):
    """Seconds from each member's alert SMS; None where there is nothing to measure."""

    count: int
    median_s: float | None
    p90_s: float | None


class Turnout(BaseModel):
    alerted: int = 0
    delivered: int = 0
    failed: int = 0
    opted_out: int = 0
    answered: int = 0
    accepted: int = 0
    declined: int = 0
    no_answer: int = 0
    en_route: int = 0
    on_scene: int = 0
    released: int = 0
    home_safe: int = 0


class ChannelCounts(BaseModel):
    accepted: int = 0
    declined: int = 0
    #: en_route / on_scene / released / home_safe reported on this channel
    status_reports: int = 0


class Failures(BaseModel):
    failed: int
    opted_out: int
    #: reason as alerts gave it (a provider's code, "opted out (STOP)") -> members
    reasons: dict[str, int]


class StaffAction(BaseModel):
    at: datetime
    action: str
    actor: str | None = None
    actor_role: str | None = None
    detail: dict[str, Any] | None = None


class ResponderLine(BaseModel):
    member_id: UUID
    wave: int | None
    qualifications: list[str]
    distance_m: int | None
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_reason: str | None
    answer: str | None
    channel: str | None
    eta_minutes: int | None
    first_answer_at: datetime | None
    en_route_at: datetime | None
    on_scene_at: datetime | None
    released_at: datetime | None
    home_safe_at: datetime | None


class EmergencyHeader(BaseModel):
    id: UUID
    title: str
    section: str
    assisting_sections: list[str]
    drill: bool
    category: str
    severity: str
    status: str
    close_reason: str | None
    members_needed: int
    required_qualifications: list[str]
    declared_at: datetime | None
    closed_at: datetime | None
    #: the time the report describes: the close, or when it was made for an open one
    as_of: datetime


class CoordinatorReport(BaseModel):
    audience: Literal["coordinator"] = "coordinator"
    emergency: EmergencyHeader
    timeline: list[TimelineEntry]
    time_to_first_answer: Durations
    time_to_arrival: Durations
    turnout: Turnout
    #: on scene / members_needed (1.0: as many arrived as were needed)
    arrived_share: float
    by_section: dict[str, Turnout]
    by_qualification: dict[str, Turnout]
    answers_by_channel: dict[str, ChannelCounts]
    failures: Failures
    staff_actions: list[StaffAction]
    responders: list[ResponderLine]
    #: minute since the first SMS -> members who had answered (arrived) by its end
    answers_cumulative: dict[int, int]
    arrivals_cumulative: dict[int, int]


class AuthorityDurations(BaseModel):
    count: Count
    median_s: float | None
    p90_s: float | None


class AuthorityReport(BaseModel):
    audience: Literal["authority"] = "authority"
    emergency: EmergencyHeader
    timeline: list[TimelineEntry]
    time_to_first_answer: AuthorityDurations
    time_to_arrival: AuthorityDurations
    turnout: dict[str, Count]
    arrived_share: float | None
    by_section: dict[str, dict[str, Count]]
    by_qualification: dict[str, dict[str, Count]]
    answers_by_channel: dict[str, dict[str, Count]]
    failures: dict[str, Count]
    staff_actions: list[StaffAction]
    #: the charts' curves from the minute they reach k (before it: left out)
    answers_cumulative: dict[int, int]
    arrivals_cumulative: dict[int, int]
    min_count: int


# -- figures ----------------------------------------------------------------------------


def nearest_rank(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (an observed value); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def durations(seconds: Sequence[float]) -> Durations:
    return Durations(
        count=len(seconds),
        median_s=float(statistics.median(seconds)) if seconds else None,
        p90_s=nearest_rank(seconds, 0.9),
    )


def first_answer_at(facts: RowFacts) -> datetime | None:
    """The member's first word on the alert: an acceptance, or the (only) answer kept."""
    times = [t for t in (facts.first_accepted_at,) if t is not None]
    if facts.answer is not None:
        times.append(facts.answer.responded_at)
    for state in SAFETY_STATES:
        reached = facts.reached(state)
        if reached is not None:
            times.append(reached.at)
    return min(times) if times else None


def is_opt_out(facts: RowFacts) -> bool:
    return (facts.failed_reason or "").startswith(OPT_OUT_PREFIX)


def _since_sent(facts: RowFacts, at: datetime | None) -> float | None:
    if at is None or facts.sent is None:
        return None
    return max(0.0, (at - facts.sent.sent_at).total_seconds())


def _count_into(turnout: Turnout, facts: RowFacts) -> None:
    turnout.alerted += 1
    if facts.delivered_at is not None:
        turnout.delivered += 1
    if facts.failed_at is not None:
        if is_opt_out(facts):
            turnout.opted_out += 1
        else:
            turnout.failed += 1
    answered = first_answer_at(facts) is not None
    if answered:
        turnout.answered += 1
    else:
        turnout.no_answer += 1
    in_loop = any(facts.reached(s) is not None for s in SAFETY_STATES)
    if facts.first_accepted_at is not None or in_loop:
        turnout.accepted += 1
    elif facts.answer is not None and facts.answer.answer == "declined":
        turnout.declined += 1
    for state in SAFETY_STATES:
        if facts.reached(state) is not None:
            setattr(turnout, state, getattr(turnout, state) + 1)


def section_key(emergency: EmergencyFacts) -> str:
    return "+".join((emergency.section, *emergency.assisting_sections))


def member_section(emergency: EmergencyFacts, facts: RowFacts) -> str:
    """The section a member's turnout counts under (see the module's note)."""
    if facts.sent is not None and facts.sent.section:
        return facts.sent.section
    if not emergency.assisting_sections:
        return emergency.section
    return section_key(emergency)


def cumulative_by_minute(times: Iterable[datetime], start: datetime | None) -> dict[int, int]:
    """Minute m after `start` -> how many of `times` fell in minutes 0..m (one entry per
    minute that added some): the curve the charts draw."""
    if start is None:
        return {}
    counts = Counter(max(0, int((t - start).total_seconds() // 60)) for t in times)
    total = 0
    curve: dict[int, int] = {}
    for minute in sorted(counts):
        total += counts[minute]
        curve[minute] = total
    return curve


def _timeline(
    emergency: EmergencyFacts, rows: Sequence[RowFacts], audit: Sequence[AuditFact]
) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    declared = next((a for a in audit if a.action in ("declared", "held_for_approval")), None)
    entries.append(
        TimelineEntry(at=declared.at if declared else emergency.created_at, event="declared")
    )
    for entry in audit:
        if entry.action == "held_for_approval":
            entries.append(TimelineEntry(at=entry.at, event="held_for_approval"))
        elif entry.action == "approved":
            entries.append(TimelineEntry(at=entry.at, event="approved"))
        elif entry.action in ("staffed", "quota_reopened"):
            entries.append(TimelineEntry(at=entry.at, event=entry.action))
        elif entry.action == "escalated":
            wave = entry.diff.get("wave")
            entries.append(
                TimelineEntry(
                    at=entry.at,
                    event="wave",
                    wave=int(wave) if isinstance(wave, int) else None,
                    detail=f"radius {entry.diff.get('radius_m')} m"
                    if entry.diff.get("radius_m") is not None
                    else None,
                )
            )
    # declared_at is when alerting began: the declaration, or the approval of a held one
    activated = emergency.declared_at or emergency.approved_at
    if activated is not None:
        detail = (
            f"radius {emergency.wave_one_radius_m} m"
            if emergency.wave_one_radius_m is not None
            else None
        )
        entries.append(TimelineEntry(at=activated, event="wave", wave=1, detail=detail))
    sent = [r.sent.sent_at for r in rows if r.sent is not None]
    if sent:
        entries.append(TimelineEntry(at=min(sent), event="first_sms"))
    accepted = [r.first_accepted_at for r in rows if r.first_accepted_at is not None]
    if accepted:
        entries.append(TimelineEntry(at=min(accepted), event="first_acceptance"))
    on_scene = [r.on_scene.at for r in rows if r.on_scene is not None]
    if on_scene:
        entries.append(TimelineEntry(at=min(on_scene), event="first_on_scene"))
    for facts in rows:
        if facts.first_accepted_at is not None:
            channel = facts.answer.channel if facts.answer else None
            entries.append(
                TimelineEntry(
                    at=facts.first_accepted_at, event="status_change", status="accepted",
                    channel=channel, member_id=facts.member_id,
                )
            )  # fmt: skip
        if facts.answer is not None and facts.answer.answer == "declined":
            entries.append(
                TimelineEntry(
                    at=facts.answer.responded_at, event="status_change", status="declined",
                    channel=facts.answer.channel, member_id=facts.member_id,
                )
            )  # fmt: skip
        for state in SAFETY_STATES:
            reached = facts.reached(state)
            if reached is not None:
                entries.append(
                    TimelineEntry(
                        at=reached.at, event="status_change", status=state,
                        channel=reached.channel, member_id=facts.member_id,
                    )
                )  # fmt: skip
    if emergency.closed_at is not None:
        entries.append(
            TimelineEntry(at=emergency.closed_at, event="closed", detail=emergency.close_reason)
        )
    order = {"declared": 0, "held_for_approval": 1, "approved": 2, "wave": 3, "first_sms": 4}
    return sorted(
        entries,
        key=lambda e: (
            e.at, order.get(e.event, 9), e.wave or 0, str(e.member_id or ""), e.status or ""
        ),
    )  # fmt: skip


def build(
    emergency: EmergencyFacts,
    rows: Sequence[RowFacts],
    audit: Sequence[AuditFact],
    *,
    as_of: datetime,
) -> CoordinatorReport:
    """The coordinator's report: every figure exactly, with member ids."""
    rows = sorted(rows, key=lambda r: (r.sent.sent_at if r.sent else as_of, str(r.member_id)))
    turnout = Turnout()
    by_qualification: dict[str, Turnout] = {}
    by_section: dict[str, Turnout] = {}
    by_channel: dict[str, ChannelCounts] = {}
    reasons: Counter[str] = Counter()
    to_answer: list[float] = []
    to_arrival: list[float] = []
    for facts in rows:
        _count_into(turnout, facts)
        _count_into(by_section.setdefault(member_section(emergency, facts), Turnout()), facts)
        for code in facts.sent.qualifications if facts.sent else ():
            _count_into(by_qualification.setdefault(code, Turnout()), facts)
        if facts.failed_at is not None:
            reasons[facts.failed_reason or "failed"] += 1
        if facts.answer is not None and facts.answer.answer in ("accepted", "declined"):
            counts = by_channel.setdefault(facts.answer.channel or "unknown", ChannelCounts())
            if facts.answer.answer == "accepted":
                counts.accepted += 1
            else:
                counts.declined += 1
        for state in SAFETY_STATES:
            reached = facts.reached(state)
            if reached is not None:
                by_channel.setdefault(reached.channel or "unknown", ChannelCounts())
                by_channel[reached.channel or "unknown"].status_reports += 1
        answer_s = _since_sent(facts, first_answer_at(facts))
        if answer_s is not None:
            to_answer.append(answer_s)
        arrival_s = _since_sent(facts, facts.on_scene.at if facts.on_scene else None)
        if arrival_s is not None:
            to_arrival.append(arrival_s)
    first_sms = min((r.sent.sent_at for r in rows if r.sent is not None), default=None)
    answers = [t for t in (first_answer_at(r) for r in rows) if t is not None]
    arrivals = [r.on_scene.at for r in rows if r.on_scene is not None]
    return CoordinatorReport(
        emergency=_header(emergency, as_of),
        timeline=_timeline(emergency, rows, audit),
        time_to_first_answer=durations(to_answer),
        time_to_arrival=durations(to_arrival),
        turnout=turnout,
        arrived_share=turnout.on_scene / emergency.members_needed
        if emergency.members_needed
        else 0.0,
        by_section=dict(sorted(by_section.items())) or {emergency.section: Turnout()},
        by_qualification=dict(sorted(by_qualification.items())),
        answers_by_channel=dict(sorted(by_channel.items())),
        failures=Failures(
            failed=turnout.failed,
            opted_out=turnout.opted_out,
            reasons=dict(sorted(reasons.items())),
        ),
        staff_actions=[
            StaffAction(
                at=a.at,
                action=a.action,
                actor=a.actor,
                actor_role=a.actor_role,
                detail=a.diff or None,
            )
            for a in audit
            if a.actor_role not in SYSTEM_ROLES
        ],
        responders=[_line(facts) for facts in rows],
        answers_cumulative=cumulative_by_minute(answers, first_sms),
        arrivals_cumulative=cumulative_by_minute(arrivals, first_sms),
    )


def _header(emergency: EmergencyFacts, as_of: datetime) -> EmergencyHeader:
    return EmergencyHeader(
        id=emergency.id,
        title=emergency.title,
        section=emergency.section,
        assisting_sections=list(emergency.assisting_sections),
        drill=emergency.drill,
        category=emergency.category,
        severity=emergency.severity,
        status=emergency.status,
        close_reason=emergency.close_reason,
        members_needed=emergency.members_needed,
        required_qualifications=list(emergency.required_qualifications),
        declared_at=emergency.declared_at,
        closed_at=emergency.closed_at,
        as_of=emergency.closed_at or as_of,
    )


def _line(facts: RowFacts) -> ResponderLine:
    def at(state: str) -> datetime | None:
        reached = facts.reached(state)
        return reached.at if reached else None

    return ResponderLine(
        member_id=facts.member_id,
        wave=facts.sent.wave if facts.sent else None,
        qualifications=list(facts.sent.qualifications) if facts.sent else [],
        distance_m=facts.sent.distance_m if facts.sent else None,
        sent_at=facts.sent.sent_at if facts.sent else None,
        delivered_at=facts.delivered_at,
        failed_reason=facts.failed_reason if facts.failed_at is not None else None,
        answer=facts.answer.answer if facts.answer else None,
        channel=facts.answer.channel if facts.answer else None,
        eta_minutes=facts.answer.eta_minutes if facts.answer else None,
        first_answer_at=first_answer_at(facts),
        en_route_at=at("en_route"),
        on_scene_at=at("on_scene"),
        released_at=at("released"),
        home_safe_at=at("home_safe"),
    )


# -- the authority's version -------------------------------------------------------------


def suppress(count: int, k: int) -> Count:
    """A count as an authority may see it: below k (zero too) it is "< k"."""
    return count if count >= k else f"< {k}"


def _suppressed(values: dict[str, int], k: int) -> dict[str, Count]:
    return {name: suppress(value, k) for name, value in values.items()}


def _authority_durations(value: Durations, k: int) -> AuthorityDurations:
    enough = value.count >= k
    return AuthorityDurations(
        count=suppress(value.count, k),
        median_s=value.median_s if enough else None,
        p90_s=value.p90_s if enough else None,
    )


def for_authority(report: CoordinatorReport, k: int) -> AuthorityReport:
    """The authority's version: counts only, small ones suppressed, no one named."""
    enough_arrivals = report.turnout.on_scene >= k
    return AuthorityReport(
        emergency=report.emergency,
        timeline=[
            e.model_copy(update={"member_id": None, "channel": None})
            for e in report.timeline
            if e.event in MILESTONES
        ],
        time_to_first_answer=_authority_durations(report.time_to_first_answer, k),
        time_to_arrival=_authority_durations(report.time_to_arrival, k),
        turnout=_suppressed(report.turnout.model_dump(), k),
        arrived_share=report.arrived_share if enough_arrivals else None,
        by_section={s: _suppressed(t.model_dump(), k) for s, t in report.by_section.items()},
        by_qualification={
            q: _suppressed(t.model_dump(), k) for q, t in report.by_qualification.items()
        },
        answers_by_channel={
            c: _suppressed(n.model_dump(), k) for c, n in report.answers_by_channel.items()
        },
        # reasons are left out: a provider's code beside a count of one says whose
        # number is wrong to anyone who knows who was alerted
        failures=_suppressed(
            {"failed": report.failures.failed, "opted_out": report.failures.opted_out}, k
        ),
        staff_actions=[StaffAction(at=a.at, action=a.action) for a in report.staff_actions],
        # only the points at k or more: even a suppressed count's minute would say when
        # one of the first few members answered
        answers_cumulative={m: n for m, n in report.answers_cumulative.items() if n >= k},
        arrivals_cumulative={m: n for m, n in report.arrivals_cumulative.items() if n >= k},
        min_count=k,
    )
