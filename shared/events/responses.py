"""`muster.responses` (key emergency_id): a member's answer to an alert."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from shared.events.catalog import EventData
from shared.events.topics import RESPONSES

Answer = Literal["accepted", "declined", "arrived"]


class ResponseReceived(EventData):
    event_type: ClassVar[str] = "muster.response.received.v1"
    topic: ClassVar[str] = RESPONSES
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    member_id: UUID
    alert_id: UUID
    answer: Answer
    eta_minutes: int | None = Field(None, ge=0, le=24 * 60)
    channel: Literal["sms", "web"]
    #: when the member answered (the board orders answers by this, not by arrival)
    responded_at: datetime
    #: an acceptance that came after the emergency was staffed: the member stands by
    standby: bool = False
