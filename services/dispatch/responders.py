"""The safety loop, dispatch's side: a coordinator sets a responder's state, releases
everyone on scene at once, starts a roll call; a released member not home safe in time
is flagged overdue, once.

Dispatch (the board) is the one place that decides a responder's state. Each state a
coordinator sets is published as `ResponderStatusSet` (so the member's answer page and
the alerts service follow) and applied to the board in the same transaction, through
services.dispatch.emergencies, which owns the emergency's transitions. The decisions
(may this state be set, who is overdue, who has not confirmed) are pure, in
services.dispatch.board.

The overdue timer is a row of `safety_timers`, armed by the board when a row is
released; it fires like an escalation step: under the emergency's lock, the row locked
with SKIP LOCKED and marked `fired` in the transaction that writes `ResponderOverdue`,
so two dispatch instances (or a crash and a restart) publish it exactly once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import audit, board, board_store, emergencies
from services.dispatch.models import roll_calls, safety_timers
from services.dispatch.settings import Settings
from shared.auth import Principal
from shared.events.emergencies import (
    ResponderOverdue,
    ResponderStatus,
    ResponderStatusSet,
    RollCallStarted,
)
from shared.observability import get_logger
from shared.outbox import add_event

log = get_logger(__name__)


class NotOnBoard(Exception):
    """The member was not alerted for this emergency."""


class NotAllowed(emergencies.Conflict):
    """The member's state does not allow this (a state backwards, nobody on scene)."""


async def _current(
    session: AsyncSession, emergency: Any, members: set[uuid.UUID] | None = None
) -> tuple[dict[uuid.UUID, board.RowFacts], dict[uuid.UUID, str]]:
    facts, _ = await board_store.load_facts(session, emergency.id, members)
    return facts, board.statuses(facts, emergency.members_needed)


async def _locked_emergency(session: AsyncSession, emergency_id: uuid.UUID) -> Any:
    emergency = await emergencies.lock_and_get(session, emergency_id)
    assert emergency is not None
    if emergency.status == "pending_approval":
        raise NotAllowed("the emergency is waiting for approval: nobody has been alerted")
    return emergency


async def _publish_states(
    session: AsyncSession,
    settings: Settings,
    emergency_id: uuid.UUID,
    moves: dict[uuid.UUID, ResponderStatus],
    now: datetime,
) -> list[board.BoardRow]:
    events: list[board.BoardEvent] = []
    for member, status in sorted(moves.items(), key=lambda item: str(item[0])):
        data = ResponderStatusSet(
            emergency_id=emergency_id, member_id=member, status=status, set_at=now
        )
        envelope = await add_event(
            session, data, source=settings.service_name, correlationid=str(emergency_id)
        )
        event = board.from_event(data, envelope.id)
        assert event is not None
        events.append(event)
    return await emergencies.apply_board_events(
        session, settings, emergency_id, events, causation=None
    )


async def set_status(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    emergency_id: uuid.UUID,
    member_id: uuid.UUID,
    status: ResponderStatus,
    now: datetime,
) -> board.BoardRow:
    """Move one responder forward on the safety loop (also after the close: people on
    scene still have to get home)."""
    emergency = await _locked_emergency(session, emergency_id)
    _, current = await _current(session, emergency, {member_id})
    if member_id not in current:
        raise NotOnBoard(str(member_id))
    before = current[member_id]
    if not board.coordinator_may_set(before, status):
        raise NotAllowed(
            f"the member is {before}: a coordinator can move an accepted member forward "
            f"on en_route, on_scene, released, home_safe, never back"
        )
    changed = await _publish_states(session, settings, emergency_id, {member_id: status}, now)
    await audit.record(
        session, action="responder_status_set", emergency_id=emergency_id, actor=principal,
        diff={"member_id": str(member_id), "from": before, "to": status},
    )  # fmt: skip
    row = next((r for r in changed if r.member_id == member_id), None)
    assert row is not None
    return row


async def release_all(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    emergency_id: uuid.UUID,
    now: datetime,
) -> int:
    """Release every member on scene at once (one `ResponderStatusSet` each); return how
    many. Nobody on scene: 0, nothing published."""
    emergency = await _locked_emergency(session, emergency_id)
    on_scene = await board_store.statuses_in(session, emergency_id, ("on_scene",))
    if not on_scene:
        return 0
    moves: dict[uuid.UUID, ResponderStatus] = dict.fromkeys(on_scene, "released")
    await _publish_states(session, settings, emergency.id, moves, now)
    await audit.record(
        session, action="released_all", emergency_id=emergency_id, actor=principal,
        diff={"released": len(moves)},
    )  # fmt: skip
    return len(moves)


async def start_roll_call(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    emergency_id: uuid.UUID,
    now: datetime,
) -> board.RollCallView:
    """Ask every member on scene to confirm they are fine (alerts texts them)."""
    await _locked_emergency(session, emergency_id)
    on_scene = sorted(await board_store.statuses_in(session, emergency_id, ("on_scene",)), key=str)
    if not on_scene:
        raise NotAllowed("nobody is on scene: a roll call asks the members on scene")
    roll_call_id = uuid.uuid4()
    await session.execute(
        roll_calls.insert().values(
            id=roll_call_id, emergency_id=emergency_id, started_at=now,
            started_by=principal.account_id, member_ids=[str(m) for m in on_scene],
        )
    )  # fmt: skip
    await add_event(
        session,
        RollCallStarted(
            emergency_id=emergency_id, roll_call_id=roll_call_id, member_ids=on_scene,
            started_at=now,
        ),
        source=settings.service_name,
        correlationid=str(emergency_id),
    )  # fmt: skip
    await audit.record(
        session, action="roll_call_started", emergency_id=emergency_id, actor=principal,
        diff={"roll_call_id": str(roll_call_id), "members": len(on_scene)},
    )  # fmt: skip
    view = await board_store.roll_call_view(session, settings, emergency_id, now)
    assert view is not None
    await board_store.announce_roll_call(session, settings, emergency_id, view)
    return view


# -- the overdue timer ------------------------------------------------------------------


async def due_timer_ids(session: AsyncSession, limit: int) -> list[uuid.UUID]:
    found = await session.execute(
        select(safety_timers.c.id)
        .where(safety_timers.c.status == "pending", safety_timers.c.due_at <= func.now())
        .order_by(safety_timers.c.due_at)
        .limit(limit)
    )
    return list(found.scalars().all())


async def fire_overdue(
    session: AsyncSession, settings: Settings, timer_id: uuid.UUID, now: datetime
) -> str:
    """Fire one due overdue timer inside the caller's transaction: `fired` (published
    and flagged), `stale` (home safe meanwhile) or `taken` (another instance has it)."""
    emergency_id = (
        await session.execute(
            select(safety_timers.c.emergency_id).where(safety_timers.c.id == timer_id)
        )
    ).scalar_one()
    await emergencies.lock(session, emergency_id)
    timer = (
        await session.execute(
            select(safety_timers)
            .where(safety_timers.c.id == timer_id, safety_timers.c.status == "pending")
            .with_for_update(skip_locked=True)
        )
    ).one_or_none()
    if timer is None:
        return "taken"
    facts, _ = await board_store.load_facts(session, emergency_id, {timer.member_id})
    member = facts.get(timer.member_id)
    outcome = "stale"
    if member is not None and member.released is not None and member.home_safe is None:
        outcome = "fired"
        data = ResponderOverdue(
            emergency_id=emergency_id, member_id=timer.member_id,
            released_at=member.released.at, overdue_at=now,
        )  # fmt: skip
        envelope = await add_event(
            session, data, source=settings.service_name, correlationid=str(emergency_id)
        )
        event = board.from_event(data, envelope.id)
        assert event is not None
        await emergencies.apply_board_events(
            session, settings, emergency_id, [event], causation=None
        )
        await audit.record(
            session, action="responder_overdue", emergency_id=emergency_id, actor=None,
            diff={"member_id": str(timer.member_id)},
        )  # fmt: skip
    await session.execute(
        safety_timers.update()
        .where(safety_timers.c.id == timer_id)
        .values(status=outcome, fired_at=now)
    )
    log.info("overdue timer", emergency_id=str(emergency_id), outcome=outcome)
    return outcome
