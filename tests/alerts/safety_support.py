"""Dispatch's safety-loop events as dispatch publishes them, and reading the alerts
service's answers back, for the safety-loop tests (tests/alerts/test_safety_*.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events.emergencies import (
    EmergencyClosed,
    ResponderOverdue,
    ResponderStatusSet,
    RollCallStarted,
)
from shared.events.envelope import Envelope
from shared.events.topics import RESPONSES
from tests.alerts.members import EMERGENCIES, publish_emergency_event
from tests.conftest import Topics
from tests.support.kafka import read_events


async def dispatch_says(topics: Topics, *events: Any) -> None:
    await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), *events)


def status_set(emergency_id: uuid.UUID, member_id: uuid.UUID, status: str) -> ResponderStatusSet:
    return ResponderStatusSet(
        emergency_id=emergency_id,
        member_id=member_id,
        status=status,  # type: ignore[arg-type]
        set_at=datetime.now(UTC),
    )


def roll_call(
    emergency_id: uuid.UUID, member_ids: list[uuid.UUID], roll_call_id: uuid.UUID | None = None
) -> RollCallStarted:
    return RollCallStarted(
        emergency_id=emergency_id,
        roll_call_id=roll_call_id or uuid.uuid4(),
        member_ids=member_ids,
        started_at=datetime.now(UTC),
    )


def overdue(emergency_id: uuid.UUID, member_id: uuid.UUID) -> ResponderOverdue:
    now = datetime.now(UTC)
    return ResponderOverdue(
        emergency_id=emergency_id,
        member_id=member_id,
        released_at=now - timedelta(hours=3),
        overdue_at=now,
    )


def closed(emergency_id: uuid.UUID) -> EmergencyClosed:
    return EmergencyClosed(emergency_id=emergency_id, closed_at=datetime.now(UTC))


async def responses(topics: Topics, count: int) -> list[Envelope]:
    """At least `count` events of `muster.responses` (and any extra ones a little later)."""
    return await read_events(
        topics.bootstrap, [topics(RESPONSES)], count=count, timeout_s=60, settle_s=1.5
    )


def answers_of(events: list[Envelope], member_id: uuid.UUID) -> list[tuple[str, str]]:
    """(answer, channel) of a member's `response.received`, in the member's own order."""
    mine = [
        e
        for e in events
        if e.type == "muster.response.received.v1" and e.data["member_id"] == str(member_id)
    ]
    mine.sort(key=lambda e: e.data["responded_at"])
    return [(e.data["answer"], e.data["channel"]) for e in mine]


def confirmations(events: list[Envelope]) -> list[tuple[str, str, str]]:
    """(member id, roll call id, channel) of every `roll_call.confirmed`."""
    return sorted(
        (e.data["member_id"], e.data["roll_call_id"], e.data["channel"])
        for e in events
        if e.type == "muster.roll_call.confirmed.v1"
    )
