"""`muster.alerts` (key emergency_id): what the alerts service did for each member."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from shared.events.catalog import EventData
from shared.events.topics import ALERTS


class _AlertEvent(EventData):
    topic: ClassVar[str] = ALERTS
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    member_id: UUID
    alert_id: UUID


class AlertSent(_AlertEvent):
    event_type: ClassVar[str] = "muster.alert.sent.v1"

    wave: int = Field(1, ge=1)
    channel: Literal["sms", "web"] = "sms"
    distance_m: int = Field(ge=0)
    language: str
    #: SMS segments the message took (GSM-7 160 / UCS-2 70 characters a segment)
    segments: int = Field(1, ge=0)
    #: the member's qualifications valid at alert time (for summaries by qualification)
    qualifications: list[str] = []
    #: the member's own section (an emergency with assisting sections alerts several);
    #: absent in events from before it was carried
    section: str | None = None
    sent_at: datetime


class AlertDelivered(_AlertEvent):
    event_type: ClassVar[str] = "muster.alert.delivered.v1"

    delivered_at: datetime


class AlertFailed(_AlertEvent):
    event_type: ClassVar[str] = "muster.alert.failed.v1"

    reason: str
    #: true when retrying cannot help (invalid number, unsubscribed)
    permanent: bool = True
    failed_at: datetime


class AlertStoodDown(_AlertEvent):
    event_type: ClassVar[str] = "muster.alert.stood_down.v1"

    reason: Literal["closed", "not_needed", "false_alarm"] = "closed"
    stood_down_at: datetime


class AlertCallPlaced(_AlertEvent):
    """The channel ladder phoned a member whose SMS went unanswered (issue 11)."""

    event_type: ClassVar[str] = "muster.alert.call_placed.v1"

    placed_at: datetime


class AlertCallEnded(_AlertEvent):
    """How the call ended: `answered` (picked up, digits or not), `no_answer`, `busy`,
    `failed`; an answer given by keypad comes as a `muster.response.received.v1` with
    channel `voice`."""

    event_type: ClassVar[str] = "muster.alert.call_ended.v1"

    outcome: Literal["answered", "no_answer", "busy", "failed"]
    ended_at: datetime
