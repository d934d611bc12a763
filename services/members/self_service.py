"""What members ask for themselves (issue 11): `muster.members.requests`, published by
alerts from an SMS command or the member's personal page, applied here like any other
change (the member's row locked, a new snapshot in the outbox when targeting changed).

Applied once per event id: the consumer records the id in `processed_events` in this
handler's own transaction. Requests of one member arrive in order (keyed by member id),
so `AWAY` then `BACK` end available. A request for an erased or unknown member changes
nothing: the member may have been erased after texting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.members import change_member
from services.members.models import members
from services.members.schemas import LANGUAGES
from shared.consumer import Delivery
from shared.events.members import MemberSelfServiceRequested
from shared.observability import get_logger

log = get_logger(__name__)


def requested_values(request: MemberSelfServiceRequested, *, now: datetime) -> dict[str, Any]:
    """The `members` columns a request changes (pure; nothing for parts left out).

    A language Muster does not write in is ignored rather than stored; a location without
    the member's consent is never stored, whatever the sender put in the event."""
    values: dict[str, Any] = {}
    if request.availability == "available":
        values.update(availability="available", unavailable_until=None)
    elif request.availability == "unavailable":
        until = request.unavailable_until
        # an end already past means nothing is left to be away for
        if until is not None and until <= now:
            values.update(availability="available", unavailable_until=None)
        else:
            values.update(availability="unavailable", unavailable_until=until)
    if request.quiet_hours_off:
        values.update(quiet_start=None, quiet_end=None)
    elif request.quiet_hours is not None:
        values.update(quiet_start=request.quiet_hours.start, quiet_end=request.quiet_hours.end)
    if request.language is not None and request.language in LANGUAGES:
        values["language"] = request.language
    if request.location is not None and request.location_consent:
        at = min(request.location.at or request.requested_at, now)
        values.update(
            live_lat=request.location.lat,
            live_lon=request.location.lon,
            live_at=at,
            location_consent_at=now,
        )
    return values


async def apply_request(session: AsyncSession, request: MemberSelfServiceRequested) -> bool:
    """Apply one request in the caller's transaction; False if the member is gone."""
    values = requested_values(request, now=datetime.now(UTC))

    async def apply(row: Row[Any]) -> None:
        if values:
            await session.execute(update(members).where(members.c.id == row.id).values(**values))

    changed = await change_member(session, request.member_id, None, apply)
    return changed is not None


async def on_request(delivery: Delivery) -> None:
    data = delivery.data
    assert isinstance(data, MemberSelfServiceRequested)
    applied = await apply_request(delivery.db, data)
    log.info(
        "self-service request applied" if applied else "self-service request for no member",
        member_id=str(data.member_id),
        channel=data.channel,
        fields=sorted(
            name
            for name in ("availability", "quiet_hours", "language", "location")
            if getattr(data, name) is not None
        ),
    )
