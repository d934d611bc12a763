"""`muster.availability` (key emergency_id; the readiness figure: key section): counts for
authorities, never personal data."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.events.catalog import EventData
from shared.events.topics import AVAILABILITY


class AvailabilitySummary(EventData):
    event_type: ClassVar[str] = "muster.availability.summary.v1"
    topic: ClassVar[str] = AVAILABILITY
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    section: str
    drill: bool = False
    needed: int = Field(ge=0)
    #: notified, delivered, accepted, standby, declined, no_answer, failed, stood_down, the
    #: safety loop's en_route, on_scene, released, home_safe, and arrived (= on_scene, its
    #: name before the safety loop)
    counts: dict[str, int]
    by_qualification: dict[str, dict[str, int]] = {}
    #: "0-10", "11-20", "21-30", "31+" minutes
    eta_bands: dict[str, int] = {}
    first_accept_seconds: float | None = None
    updated_at: datetime


Count = int | str
"""A count as authorities see it: the number, or "< k" below the smallest count shown."""


class ReadinessLastDrill(BaseModel):
    """The section's most recent drill occurrence: how many were asked, how many answered
    OK (at any time), the share, and the median time from the SMS to the answer."""

    model_config = ConfigDict(extra="allow", frozen=True)

    occurred_at: datetime
    asked: Count
    answered: Count
    answered_share: float | None = None
    median_answer_seconds: float | None = None


class ReadinessFigure(EventData):
    """`muster.readiness.v1` (key section; issue 12): what a section can rely on before
    the day, for authorities: counts and shares only, each count below
    `smallest_count_shown` given as "< k" (shared/disclosure.py). Published by alerts on a
    schedule, and served by its `GET /readiness`."""

    event_type: ClassVar[str] = "muster.readiness.v1"
    topic: ClassVar[str] = AVAILABILITY
    key_field: ClassVar[str] = "section"

    section: str
    active_members: Count
    available_now: Count
    #: per qualification code: valid_today, valid_in_30_days, valid_in_60_days
    by_qualification: dict[str, dict[str, Count]] = {}
    last_drill: ReadinessLastDrill | None = None
    smallest_count_shown: int = Field(ge=1)
    computed_at: datetime
