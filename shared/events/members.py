"""`muster.members.state` (compacted, key member_id): the targeting snapshot of a member.

The snapshot is complete, so the latest record per member is all the alerts service
needs; `version` grows with every change so a consumer can drop a stale snapshot that
arrives late. A tombstone (null value) erases the member.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.events.catalog import EventData
from shared.events.topics import MEMBERS_STATE

MemberStatus = Literal["active", "suspended", "expelled"]
Availability = Literal["available", "unavailable"]
Channel = Literal["sms", "web"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class QualificationHeld(_Part):
    code: str
    issued_at: date | None = None
    expires_at: date | None = None


class QuietHours(_Part):
    """Local times in the member's time zone; `start` after `end` spans midnight."""

    start: time
    end: time


class Position(_Part):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    #: when the position was reported (live positions age out, home does not)
    at: datetime | None = None
    source: Literal["home", "live"] = "home"


class MemberChanged(EventData):
    event_type: ClassVar[str] = "muster.member.changed.v1"
    topic: ClassVar[str] = MEMBERS_STATE
    key_field: ClassVar[str] = "member_id"

    member_id: UUID
    version: int = Field(ge=0)
    section: str
    status: MemberStatus
    language: str
    timezone: str = "UTC"
    phone: str | None = None
    channels: list[Channel] = ["sms", "web"]
    consent_alerts: bool = False
    availability: Availability = "available"
    unavailable_until: datetime | None = None
    quiet_hours: QuietHours | None = None
    #: the home position: always there for a member who can be targeted
    home: Position | None = None
    #: the last live position, if any; selection falls back to `home` once it is too old
    live: Position | None = None
    qualifications: list[QualificationHeld] = []
    changed_at: datetime
