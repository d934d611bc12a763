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
from shared.events.topics import MEMBERS_REQUESTS, MEMBERS_STATE

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


RequestChannel = Literal["sms", "web"]


class MemberSelfServiceRequested(EventData):
    """`muster.members.requests` (key member_id): what a member asked for themselves, by
    an SMS command (`AWAY 3`, `BACK`) or on their personal page. Alerts, which talks to
    the member, publishes it; members, which alone writes member data, applies it (once
    per event id) and publishes the member's snapshot as after any other change.

    Every change is optional: a field left out (None, False) leaves that part as it is.
    """

    event_type: ClassVar[str] = "muster.member.self_service_requested.v1"
    topic: ClassVar[str] = MEMBERS_REQUESTS
    key_field: ClassVar[str] = "member_id"

    member_id: UUID
    channel: RequestChannel
    availability: Availability | None = None
    #: with `unavailable`: available again from this moment (None: until the member says BACK)
    unavailable_until: datetime | None = None
    quiet_hours: QuietHours | None = None
    #: the member removed their quiet hours
    quiet_hours_off: bool = False
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")
    #: the position the member confirmed on their page, only ever sent with their
    #: explicit consent (`location_consent`); members stores it as a live position
    location: Position | None = None
    location_consent: bool = False
    requested_at: datetime
