"""Member snapshots and emergencies for the alerts tests, published straight to Kafka."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, date, datetime, time
from typing import Any

import redis.asyncio as redis

from shared.events.catalog import make_envelope
from shared.events.emergencies import Area, EmergencyDeclared
from shared.events.members import MemberChanged, Position, QualificationHeld, QuietHours
from shared.events.topics import EMERGENCIES, MEMBERS_STATE
from tests.support.kafka import publish

_phones = itertools.count(1)
SOURCE = "muster.members"

# Fier, Albania
CENTRE = (40.7239, 19.5561)


def phone() -> str:
    return f"+3556{next(_phones):08d}"


def member(
    *,
    lat: float = CENTRE[0],
    lon: float = CENTRE[1],
    section: str = "AL",
    language: str = "sq",
    version: int = 1,
    qualifications: list[tuple[str, date | None]] | None = None,
    quiet: tuple[time, time] | None = None,
    timezone: str = "Europe/Tirane",
    **overrides: Any,
) -> MemberChanged:
    quals = qualifications if qualifications is not None else [("FIRST_AID", date(2030, 1, 1))]
    values: dict[str, Any] = {
        "member_id": uuid.uuid4(),
        "version": version,
        "section": section,
        "status": "active",
        "language": language,
        "timezone": timezone,
        "phone": phone(),
        "consent_alerts": True,
        "availability": "available",
        "home": Position(lat=lat, lon=lon, source="home"),
        "qualifications": [QualificationHeld(code=c, expires_at=e) for c, e in quals],
        "quiet_hours": QuietHours(start=quiet[0], end=quiet[1]) if quiet else None,
        "changed_at": datetime.now(UTC),
    }
    values.update(overrides)
    return MemberChanged(**values)


def declared(
    *,
    section: str = "AL",
    radius_m: int | None = 3000,
    polygon: dict[str, Any] | None = None,
    members_needed: int = 5,
    required: list[str] | None = None,
    severity: str = "Severe",
    drill: bool = False,
    title: str = "Flooding, Fier centre",
    **overrides: Any,
) -> EmergencyDeclared:
    area = (
        Area(polygon=polygon) if polygon else Area(lat=CENTRE[0], lon=CENTRE[1], radius_m=radius_m)
    )
    return EmergencyDeclared(
        emergency_id=overrides.pop("emergency_id", uuid.uuid4()),
        section=section,
        title=title,
        severity=severity,  # type: ignore[arg-type]
        drill=drill,
        area=area,
        required_qualifications=required if required is not None else ["FIRST_AID"],
        members_needed=members_needed,
        declared_at=datetime.now(UTC),
        **overrides,
    )


async def publish_members(bootstrap: str, topic: str, members: list[MemberChanged]) -> None:
    await publish(bootstrap, topic, [make_envelope(m, source=SOURCE) for m in members])


async def publish_emergency_event(bootstrap: str, topic: str, *events: Any) -> None:
    await publish(bootstrap, topic, [make_envelope(e, source="muster.dispatch") for e in events])


async def wait_indexed(
    client: redis.Redis, prefix: str, members: list[MemberChanged], timeout_s: float = 60.0
) -> None:
    """Until the index holds every member at its version (or fail the test)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        pipe = client.pipeline(transaction=False)
        for m in members:
            pipe.hget(f"{prefix}alerts:member:{m.member_id}", "v")
        versions = await pipe.execute()
        missing = [
            m for m, v in zip(members, versions, strict=True) if v is None or int(v) < m.version
        ]
        if not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(missing)} members never reached the index")
        await asyncio.sleep(0.1)


__all__ = [
    "EMERGENCIES",
    "MEMBERS_STATE",
    "declared",
    "member",
    "publish_emergency_event",
    "publish_members",
    "wait_indexed",
]
