"""Escalation: when too few have accepted after a delay, ask alerts for the next wave.

The plan (the waves, their radii and the delay) is frozen onto the emergency when it
becomes active, so a later settings change does not alter a running emergency. Timers
are rows of `escalation_steps` in PostgreSQL, so a restart neither forgets nor repeats
one: the emergency stores `next_step_id`, the one step allowed to fire; a due step that
is not it (stale, duplicated, or its emergency closed) is marked `stale` and does nothing.
A step fires in one transaction with its `emergency.escalated` outbox row, the audit
entry and the next step, so a crash before the commit fires it again later, and a crash
after it never fires it twice (as in Grafana OnCall's escalation snapshots).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch import audit
from services.dispatch.models import board_rows, emergencies, escalation_steps
from services.dispatch.settings import Settings
from shared.events.emergencies import EmergencyEscalated
from shared.observability import get_logger
from shared.outbox import add_event

log = get_logger(__name__)


@dataclass(frozen=True)
class Wave:
    wave: int
    radius_m: int
    delay_s: float

    def as_json(self) -> dict[str, Any]:
        return {"wave": self.wave, "radius_m": self.radius_m, "delay_s": self.delay_s}


def plan_waves(
    reach_m: int,
    *,
    severity: str,
    delay_s: float,
    delay_extreme_s: float,
    factor: float,
    max_radius_m: int,
) -> list[Wave]:
    """Waves 2, 3, ...: each radius the previous times `factor`, the last one exactly the
    maximum; an area already at the maximum gets no escalation."""
    delay = delay_extreme_s if severity == "Extreme" else delay_s
    waves: list[Wave] = []
    radius = reach_m
    while radius < max_radius_m:
        radius = min(max_radius_m, math.ceil(radius * factor))
        waves.append(Wave(len(waves) + 2, radius, delay))
    return waves


def wave_count(members_needed: int, filled: int, over_alert_factor: float) -> int:
    """How many more members the next wave should reach: the gap, over-alerted."""
    return max(1, math.ceil(max(0, members_needed - filled) * over_alert_factor))


def plan_from_json(plan: list[dict[str, Any]]) -> list[Wave]:
    return [Wave(int(p["wave"]), int(p["radius_m"]), float(p["delay_s"])) for p in plan]


async def arm_next(
    session: AsyncSession, emergency_id: uuid.UUID, now: datetime
) -> uuid.UUID | None:
    """Schedule the next unsent wave of the frozen plan and make it the one that may fire;
    the caller holds the emergency's lock. Return the step id (None: plan exhausted)."""
    row = (
        await session.execute(
            select(emergencies.c.escalation_plan).where(emergencies.c.id == emergency_id)
        )
    ).one()
    last_wave = (
        await session.execute(
            select(func.coalesce(func.max(escalation_steps.c.wave), 1)).where(
                escalation_steps.c.emergency_id == emergency_id,
                escalation_steps.c.outcome == "escalated",
            )
        )
    ).scalar_one()
    upcoming = [w for w in plan_from_json(row.escalation_plan) if w.wave > last_wave]
    step_id: uuid.UUID | None = None
    if upcoming:
        wave = upcoming[0]
        seq = (
            await session.execute(
                select(func.coalesce(func.max(escalation_steps.c.seq), 0) + 1).where(
                    escalation_steps.c.emergency_id == emergency_id
                )
            )
        ).scalar_one()
        step_id = uuid.uuid4()
        await session.execute(
            escalation_steps.insert().values(
                id=step_id,
                emergency_id=emergency_id,
                seq=seq,
                wave=wave.wave,
                radius_m=wave.radius_m,
                due_at=now + timedelta(seconds=wave.delay_s),
            )
        )
    await session.execute(
        emergencies.update().where(emergencies.c.id == emergency_id).values(next_step_id=step_id)
    )
    return step_id


async def disarm(session: AsyncSession, emergency_id: uuid.UUID) -> None:
    """No step may fire any more (closed or staffed); pending rows become stale when due."""
    await session.execute(
        emergencies.update().where(emergencies.c.id == emergency_id).values(next_step_id=None)
    )


async def filled_places(session: AsyncSession, emergency_id: uuid.UUID) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).where(
                    board_rows.c.emergency_id == emergency_id,
                    board_rows.c.status.in_(("accepted", "arrived")),
                )
            )
        ).scalar_one()
    )


async def fire_step(
    session: AsyncSession, settings: Settings, step_id: uuid.UUID, now: datetime
) -> str:
    """Fire one due step inside the caller's transaction; return what happened."""
    from services.dispatch.emergencies import lock

    step = (
        await session.execute(select(escalation_steps).where(escalation_steps.c.id == step_id))
    ).one()
    await lock(session, step.emergency_id)
    pending = (
        await session.execute(
            select(escalation_steps)
            .where(escalation_steps.c.id == step_id, escalation_steps.c.status == "pending")
            .with_for_update(skip_locked=True)
        )
    ).one_or_none()
    if pending is None:
        return "taken"
    step = pending
    emergency = (
        await session.execute(select(emergencies).where(emergencies.c.id == step.emergency_id))
    ).one()
    outcome: str
    if emergency.next_step_id != step.id or emergency.status != "active":
        outcome = "stale"
    else:
        filled = await filled_places(session, emergency.id)
        if filled >= emergency.members_needed:
            outcome = "staffed"
            await disarm(session, emergency.id)
        else:
            count = wave_count(emergency.members_needed, filled, settings.over_alert_factor)
            await add_event(
                session,
                EmergencyEscalated(
                    emergency_id=emergency.id,
                    wave=step.wave,
                    radius_m=step.radius_m,
                    count=count,
                    escalated_at=now,
                ),
                source=settings.service_name,
                correlationid=str(emergency.id),
            )
            await audit.record(
                session,
                action="escalated",
                emergency_id=emergency.id,
                actor=None,
                diff={
                    "wave": step.wave,
                    "radius_m": step.radius_m,
                    "count": count,
                    "accepted": filled,
                    "step_id": str(step.id),
                },
            )
            outcome = "escalated"
    await session.execute(
        escalation_steps.update()
        .where(escalation_steps.c.id == step.id)
        .values(status="stale" if outcome == "stale" else "fired", fired_at=now, outcome=outcome)
    )
    if outcome == "escalated":
        await arm_next(session, emergency.id, now)
    log.info(
        "escalation step",
        step_id=str(step.id),
        emergency_id=str(emergency.id),
        wave=step.wave,
        outcome=outcome,
    )
    return outcome


async def run_due_steps(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, limit: int = 50
) -> int:
    """Fire every due step (each in its own transaction); return how many were handled."""
    async with sessionmaker() as session:
        due = (
            (
                await session.execute(
                    select(escalation_steps.c.id)
                    .where(
                        escalation_steps.c.status == "pending",
                        escalation_steps.c.due_at <= func.now(),
                    )
                    .order_by(escalation_steps.c.due_at)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
    handled = 0
    for step_id in due:
        async with sessionmaker() as session, session.begin():
            await session.execute(text("SET LOCAL lock_timeout = '5s'"))
            outcome = await fire_step(session, settings, step_id, datetime.now(UTC))
        if outcome != "taken":
            handled += 1
    return handled


class EscalationScheduler:
    """The in-process loop; several dispatch instances can run it side by side."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await run_due_steps(self._sessionmaker, self._settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("escalation scheduler error, retrying", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.scheduler_poll_s)


async def escalate_now(
    session: AsyncSession, settings: Settings, emergency_id: uuid.UUID, now: datetime
) -> str | None:
    """A coordinator's "escalate now": the armed next wave fires at once instead of at
    its due time (same step, same rules, so it can never fire twice). None when no wave
    is armed (the plan is used up, the emergency is staffed, pending or closed)."""
    from services.dispatch.emergencies import lock

    await lock(session, emergency_id)
    step_id = (
        await session.execute(
            select(emergencies.c.next_step_id).where(
                emergencies.c.id == emergency_id, emergencies.c.status == "active"
            )
        )
    ).scalar_one_or_none()
    if step_id is None:
        return None
    await session.execute(
        escalation_steps.update()
        .where(escalation_steps.c.id == step_id, escalation_steps.c.status == "pending")
        .values(due_at=now)
    )
    return await fire_step(session, settings, step_id, now)


async def waves(session: AsyncSession, emergency: Any) -> dict[str, Any]:
    """The waves sent so far (the first at declaration, then each escalation) and the
    one armed next with its due time: what the board shows under "waves"."""
    fired = (
        await session.execute(
            select(escalation_steps)
            .where(
                escalation_steps.c.emergency_id == emergency.id,
                escalation_steps.c.outcome == "escalated",
            )
            .order_by(escalation_steps.c.wave)
        )
    ).all()
    sent: list[dict[str, Any]] = []
    if emergency.declared_at is not None:
        area = emergency.area or {}
        sent.append({"wave": 1, "radius_m": area.get("radius_m"), "at": emergency.declared_at})
    sent += [{"wave": s.wave, "radius_m": s.radius_m, "at": s.fired_at} for s in fired]
    upcoming = None
    if emergency.next_step_id is not None and emergency.status == "active":
        step = (
            await session.execute(
                select(escalation_steps).where(escalation_steps.c.id == emergency.next_step_id)
            )
        ).one_or_none()
        if step is not None:
            upcoming = {"wave": step.wave, "radius_m": step.radius_m, "due_at": step.due_at}
    return {"emergency_id": emergency.id, "sent": sent, "next": upcoming}
