"""`muster.availability` (key emergency_id): counts for authorities, never personal data."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import Field

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
    #: notified, delivered, accepted, standby, declined, no_answer, arrived, failed, stood_down
    counts: dict[str, int]
    by_qualification: dict[str, dict[str, int]] = {}
    #: "0-10", "11-20", "21-30", "31+" minutes
    eta_bands: dict[str, int] = {}
    first_accept_seconds: float | None = None
    updated_at: datetime
