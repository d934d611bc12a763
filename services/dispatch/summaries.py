"""Availability summaries for authorities: counts only, never who.

`summarize` is pure: board rows in, an `AvailabilitySummary` out. It reads statuses,
ETAs and qualifications; it never copies a member id, alert id, distance or time of one
member into the result, so nothing personal can leak through it (a property test checks).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from services.dispatch.board import SAFETY_STATES, STATUSES, BoardRow
from shared.events.availability import AvailabilitySummary

ETA_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("0-10", 0, 10),
    ("11-20", 11, 20),
    ("21-30", 21, 30),
    ("31+", 31, None),
)
#: alerted but not (yet) answered: their alert went out or arrived, and nothing since
NO_ANSWER = ("notified", "delivered")
QUALIFICATION_COUNTS = ("alerted", "accepted", "standby", *SAFETY_STATES, "declined")


def eta_band(eta_minutes: int) -> str:
    for name, low, high in ETA_BANDS:
        if eta_minutes >= low and (high is None or eta_minutes <= high):
            return name
    return ETA_BANDS[-1][0]


def summarize(
    rows: Iterable[BoardRow],
    *,
    emergency_id: UUID,
    section: str,
    drill: bool,
    needed: int,
    declared_at: datetime | None,
    updated_at: datetime,
) -> AvailabilitySummary:
    # a count per status (the safety loop's en_route, on_scene, released, home_safe too),
    # plus no_answer, alerted, and `arrived`: the old name of on_scene, for receivers
    # written before the safety loop
    counts = dict.fromkeys(STATUSES, 0) | {"no_answer": 0, "alerted": 0}
    by_qualification: dict[str, dict[str, int]] = {}
    eta_bands = {name: 0 for name, _, _ in ETA_BANDS} | {"unknown": 0}
    first_accept: datetime | None = None
    for row in rows:
        counts["alerted"] += 1
        counts[row.status] = counts.get(row.status, 0) + 1
        if row.status in NO_ANSWER:
            counts["no_answer"] += 1
        for code in row.qualifications:
            per = by_qualification.setdefault(code, dict.fromkeys(QUALIFICATION_COUNTS, 0))
            per["alerted"] += 1
            if row.status in per:
                per[row.status] += 1
        if row.status == "accepted":
            if row.eta_minutes is None:
                eta_bands["unknown"] += 1
            else:
                eta_bands[eta_band(row.eta_minutes)] += 1
        if row.first_accepted_at is not None and (
            first_accept is None or row.first_accepted_at < first_accept
        ):
            first_accept = row.first_accepted_at
    counts["arrived"] = counts["on_scene"]
    first_accept_seconds = (
        max(0.0, (first_accept - declared_at).total_seconds())
        if first_accept is not None and declared_at is not None
        else None
    )
    return AvailabilitySummary(
        emergency_id=emergency_id,
        section=section,
        drill=drill,
        needed=needed,
        counts=counts,
        by_qualification=dict(sorted(by_qualification.items())),
        eta_bands=eta_bands,
        first_accept_seconds=first_accept_seconds,
        updated_at=updated_at,
    )


def digest(summary: AvailabilitySummary) -> str:
    """What makes two summaries different (everything but the time they were made)."""
    body = summary.model_dump(mode="json", exclude={"updated_at"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
