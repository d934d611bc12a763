"""Escalation: when too few have accepted after a delay, ask alerts for the next wave.

This module is the plan and its timers, not their executor: services.dispatch.emergencies
owns the emergency's transitions, takes its lock and fires a step by asking `decide`
here (pure) what the step should do.

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

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.models import emergencies, escalation_steps


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


StepOutcome = Literal["stale", "staffed", "escalated"]


def decide(
    step_id: uuid.UUID,
    *,
    next_step_id: uuid.UUID | None,
    emergency_status: str,
    filled: int,
    members_needed: int,
) -> StepOutcome:
    """What a due step does: nothing unless it is the one armed step of an active
    emergency; nothing but disarm when enough have accepted; else escalate."""
    if next_step_id != step_id or emergency_status != "active":
        return "stale"
    if filled >= members_needed:
        return "staffed"
    return "escalated"


async def due_step_ids(session: AsyncSession, limit: int) -> list[uuid.UUID]:
    found = await session.execute(
        select(escalation_steps.c.id)
        .where(escalation_steps.c.status == "pending", escalation_steps.c.due_at <= func.now())
        .order_by(escalation_steps.c.due_at)
        .limit(limit)
    )
    return list(found.scalars().all())


async def step_emergency(session: AsyncSession, step_id: uuid.UUID) -> uuid.UUID:
    return (
        await session.execute(
            select(escalation_steps.c.emergency_id).where(escalation_steps.c.id == step_id)
        )
    ).scalar_one()


async def claim(session: AsyncSession, step_id: uuid.UUID) -> Any | None:
    """The step if it is still pending and no other instance is firing it (None: taken)."""
    return (
        await session.execute(
            select(escalation_steps)
            .where(escalation_steps.c.id == step_id, escalation_steps.c.status == "pending")
            .with_for_update(skip_locked=True)
        )
    ).one_or_none()


async def mark(
    session: AsyncSession, step_id: uuid.UUID, outcome: StepOutcome, now: datetime
) -> None:
    await session.execute(
        escalation_steps.update()
        .where(escalation_steps.c.id == step_id)
        .values(status="stale" if outcome == "stale" else "fired", fired_at=now, outcome=outcome)
    )


async def pull_forward(session: AsyncSession, step_id: uuid.UUID, now: datetime) -> None:
    """A coordinator's "escalate now": the armed step becomes due at once."""
    await session.execute(
        escalation_steps.update()
        .where(escalation_steps.c.id == step_id, escalation_steps.c.status == "pending")
        .values(due_at=now)
    )


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
