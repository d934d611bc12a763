"""The readiness figure of a section (issue 12): what it can rely on before the day.

From the member snapshots alerts keeps (index.py) and the drill history: active members;
by qualification, how many hold it valid today, in 30 and in 60 days (each member's own
today, in their zone); how many are available now (active, consenting, with a number,
not away); and the section's last drill: asked, answered, median time to answer.

`readiness` and `for_authorities` are pure. Coordinators read the figure as counted;
authorities (the API for their sections, and `muster.readiness.v1`) read it with every
count below k as "< k" and a share only where both its counts are shown
(shared/disclosure.py, the rule members' availability counts follow). Neither holds a
member id, a name or a number: only counts, shares and a median.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from pydantic import BaseModel

from services.alerts.drills import Asked, answer_seconds
from services.alerts.selection import is_available, is_reachable
from services.alerts.self_service import zone_of
from shared.disclosure import shown, shown_share
from shared.events.availability import ReadinessFigure, ReadinessLastDrill
from shared.events.members import MemberChanged, QualificationHeld

#: "valid in N days": still valid on the member's today + N days
HORIZONS = {"valid_today": 0, "valid_in_30_days": 30, "valid_in_60_days": 60}


class LastDrill(BaseModel):
    occurred_at: datetime
    asked: int
    answered: int
    median_answer_seconds: float | None = None


class Readiness(BaseModel):
    section: str
    active_members: int
    available_now: int
    #: per qualification code: valid_today, valid_in_30_days, valid_in_60_days
    by_qualification: dict[str, dict[str, int]]
    last_drill: LastDrill | None = None
    computed_at: datetime


def valid_on(held: QualificationHeld, day: date) -> bool:
    return (held.expires_at is None or held.expires_at >= day) and (
        held.issued_at is None or held.issued_at <= day
    )


def last_drill(occurred_at: datetime, messages: Sequence[Asked]) -> LastDrill:
    """A section's messages of one occurrence, summed up (skipped ones were not asked)."""
    asked = [m for m in messages if m.status != "skipped"]
    times = [t for t in (answer_seconds(m) for m in asked) if t is not None]
    return LastDrill(
        occurred_at=occurred_at,
        asked=len(asked),
        answered=sum(1 for m in asked if m.answered_at is not None),
        median_answer_seconds=statistics.median(times) if times else None,
    )


def readiness(
    section: str,
    members: Iterable[MemberChanged],
    now: datetime,
    drill: LastDrill | None = None,
) -> Readiness:
    active = 0
    available = 0
    by_code: dict[str, dict[str, int]] = {}
    seen: set[object] = set()
    for member in members:
        if member.section != section or member.status != "active":
            continue
        if member.member_id in seen:
            continue
        seen.add(member.member_id)
        active += 1
        if is_reachable(member) and is_available(member, now):
            available += 1
        today = now.astimezone(zone_of(member)).date()
        for code in {q.code for q in member.qualifications}:
            counts = by_code.setdefault(code, dict.fromkeys(HORIZONS, 0))
            held = [q for q in member.qualifications if q.code == code]
            for name, days in HORIZONS.items():
                day = today + timedelta(days=days)
                if any(valid_on(q, day) for q in held):
                    counts[name] += 1
    return Readiness(
        section=section,
        active_members=active,
        available_now=available,
        by_qualification=dict(sorted(by_code.items())),
        last_drill=drill,
        computed_at=now,
    )


def for_authorities(figure: Readiness, k: int) -> ReadinessFigure:
    """The figure as an authority may read it: small counts suppressed."""
    drill = figure.last_drill
    return ReadinessFigure(
        section=figure.section,
        active_members=shown(figure.active_members, k),
        available_now=shown(figure.available_now, k),
        by_qualification={
            code: {name: shown(n, k) for name, n in counts.items()}
            for code, counts in figure.by_qualification.items()
        },
        last_drill=ReadinessLastDrill(
            occurred_at=drill.occurred_at,
            asked=shown(drill.asked, k),
            answered=shown(drill.answered, k),
            answered_share=shown_share(drill.answered, drill.asked, k),
            # a median of fewer than k answers is close to one member's own time
            median_answer_seconds=drill.median_answer_seconds if drill.answered >= k else None,
        )
        if drill is not None
        else None,
        smallest_count_shown=k,
        computed_at=figure.computed_at,
    )
