"""`muster.emergencies` (key emergency_id): an emergency's life, from dispatch."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.events.catalog import EventData
from shared.events.topics import EMERGENCIES

# OASIS CAP 1.2 vocabularies
Category = Literal[
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env",
    "Transport", "Infra", "CBRNE", "Other",
]  # fmt: skip
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
EmergencyStatus = Literal["pending_approval", "active", "closed"]


class Area(BaseModel):
    """A circle (`lat`, `lon`, `radius_m`) or a GeoJSON Polygon (`polygon`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    radius_m: int | None = Field(None, gt=0)
    polygon: dict[str, Any] | None = None


class EmergencyFacts(EventData):
    """What alerts needs to select and message members; carried by declared and updated."""

    emergency_id: UUID
    section: str
    assisting_sections: list[str] = []
    title: str
    description: str = ""
    category: Category = "Rescue"
    severity: Severity = "Unknown"
    urgency: Urgency = "Unknown"
    drill: bool = False
    area: Area
    required_qualifications: list[str] = []
    members_needed: int = Field(ge=1)
    languages: list[str] = []
    status: EmergencyStatus = "active"
    #: a short code members add to an SMS reply when they have several open alerts
    reply_code: str | None = None


class EmergencyDeclared(EmergencyFacts):
    """The emergency is active (approved if it needed approval): alert the first wave."""

    event_type: ClassVar[str] = "muster.emergency.declared.v1"
    topic: ClassVar[str] = EMERGENCIES
    key_field: ClassVar[str] = "emergency_id"

    declared_at: datetime


class EmergencyUpdated(EmergencyFacts):
    """The emergency changed. `staffed` true: enough accepted, tell the rest they are not
    needed; false again after a drop-out. `call_up` lists standby members now asked to go."""

    event_type: ClassVar[str] = "muster.emergency.updated.v1"
    topic: ClassVar[str] = EMERGENCIES
    key_field: ClassVar[str] = "emergency_id"

    staffed: bool = False
    call_up: list[UUID] = []
    changed: list[str] = []
    updated_at: datetime


class EmergencyEscalated(EventData):
    """Send the next wave: the next-nearest unalerted members within `radius_m`."""

    event_type: ClassVar[str] = "muster.emergency.escalated.v1"
    topic: ClassVar[str] = EMERGENCIES
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    wave: int = Field(ge=2)
    radius_m: int = Field(gt=0)
    count: int = Field(ge=1)
    escalated_at: datetime


class EmergencyClosed(EventData):
    """Over: stand down everyone who accepted; `false_alarm` sends every alerted member a
    correction."""

    event_type: ClassVar[str] = "muster.emergency.closed.v1"
    topic: ClassVar[str] = EMERGENCIES
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    reason: Literal["resolved", "cancelled", "false_alarm"] = "resolved"
    false_alarm: bool = False
    drill: bool = False
    closed_at: datetime


ResponderStatus = Literal["en_route", "on_scene", "released", "home_safe"]


class ResponderStatusSet(EventData):
    """A coordinator moved a responder on the safety loop (or released everyone: one event
    a member), so the member's answer page and the alerts service follow."""

    event_type: ClassVar[str] = "muster.responder.status_set.v1"
    topic: ClassVar[str] = EMERGENCIES
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    member_id: UUID
    status: ResponderStatus
    set_at: datetime


class RollCallStarted(EventData):
    """Ask every member on scene to confirm they are fine (a personnel accountability
    report); the alerts service texts each one."""

    event_type: ClassVar[str] = "muster.roll_call.started.v1"
    topic: ClassVar[str] = EMERGENCIES
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    roll_call_id: UUID
    member_ids: list[UUID] = Field(max_length=10_000)
    started_at: datetime


class ResponderOverdue(EventData):
    """Released but not home safe after the configured time: the alerts service sends
    the member one reminder."""

    event_type: ClassVar[str] = "muster.responder.overdue.v1"
    topic: ClassVar[str] = EMERGENCIES
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    member_id: UUID
    released_at: datetime
    overdue_at: datetime
