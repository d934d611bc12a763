"""`muster.responses` (key emergency_id): a member's answer to an alert."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from shared.events.catalog import EventData
from shared.events.topics import RESPONSES

#: `arrived` is the name older events gave `on_scene`: read it as `on_scene`. After
#: accepting, a member moves on through en_route → on_scene → released → home_safe.
Answer = Literal["accepted", "declined", "arrived", "en_route", "on_scene", "released", "home_safe"]
Channel = Literal["sms", "web", "voice"]


class ResponseReceived(EventData):
    event_type: ClassVar[str] = "muster.response.received.v1"
    topic: ClassVar[str] = RESPONSES
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    member_id: UUID
    alert_id: UUID
    answer: Answer
    eta_minutes: int | None = Field(None, ge=0, le=24 * 60)
    channel: Channel
    #: when the member answered (the board orders answers by this, not by arrival)
    responded_at: datetime
    #: an acceptance that came after the emergency was staffed: the member stands by
    standby: bool = False


class RollCallConfirmed(EventData):
    """A member on scene answered a roll call ("reply OK"): they are fine."""

    event_type: ClassVar[str] = "muster.roll_call.confirmed.v1"
    topic: ClassVar[str] = RESPONSES
    key_field: ClassVar[str] = "emergency_id"

    emergency_id: UUID
    member_id: UUID
    alert_id: UUID
    roll_call_id: UUID
    channel: Channel
    confirmed_at: datetime
