"""The timer loop: fires due escalation steps and due safety-loop (overdue) timers.

Each timer is a row in PostgreSQL, fired in its own transaction by the module that owns
the transition (services.dispatch.emergencies for escalation, services.dispatch.responders
for overdue), which locks the row with SKIP LOCKED and marks it in that transaction:
several dispatch instances run this loop side by side, and a timer fires once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch import emergencies, escalation, responders
from services.dispatch.settings import Settings
from shared.observability import get_logger

log = get_logger(__name__)

Fire = Callable[[AsyncSession, Settings, uuid.UUID, datetime], Awaitable[str]]


async def _run(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    due: Callable[[AsyncSession, int], Awaitable[list[uuid.UUID]]],
    fire: Fire,
    limit: int,
) -> int:
    async with sessionmaker() as session:
        ids = await due(session, limit)
    handled = 0
    for timer_id in ids:
        async with sessionmaker() as session, session.begin():
            await session.execute(text("SET LOCAL lock_timeout = '5s'"))
            outcome = await fire(session, settings, timer_id, datetime.now(UTC))
        if outcome != "taken":
            handled += 1
    return handled


async def run_due_steps(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, limit: int = 50
) -> int:
    """Fire every due escalation step (each in its own transaction); return how many."""
    return await _run(
        sessionmaker, settings, escalation.due_step_ids, emergencies.fire_escalation_step, limit
    )


async def run_due_overdue(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, limit: int = 50
) -> int:
    """Fire every due overdue timer (each in its own transaction); return how many."""
    return await _run(
        sessionmaker, settings, responders.due_timer_ids, responders.fire_overdue, limit
    )


class TimerScheduler:
    """The in-process loop; several dispatch instances can run it side by side."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            for run in (run_due_steps, run_due_overdue):
                try:
                    await run(self._sessionmaker, self._settings)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("timer scheduler error, retrying", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.scheduler_poll_s)
