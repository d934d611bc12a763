"""Publishing availability summaries: on change, at most once a second per emergency.

Every board change inserts a row in `summary_marks` in its own transaction (an insert
never waits on this loop's locks). This loop takes marked emergencies whose last summary
is older than the minimum interval (their `summary_state` row locked with SKIP LOCKED,
so several instances share the work without doubles), computes the summary, and, when
the counts differ from the last one published, writes the `availability.summary` event
to the outbox and one webhook delivery per subscription of the section, and deletes
the marks it has covered, in one transaction. The debounce state lives in PostgreSQL, so it holds
across instances and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch import board_store, subscriptions, summaries
from services.dispatch.models import emergencies, summary_marks, summary_state
from services.dispatch.settings import Settings
from shared.events.availability import AvailabilitySummary
from shared.observability import get_logger
from shared.outbox import add_event

log = get_logger(__name__)


async def current(session: AsyncSession, emergency: Row[Any]) -> AvailabilitySummary:
    rows = await board_store.all_rows(session, emergency.id, emergency.members_needed)
    return summaries.summarize(
        rows,
        emergency_id=emergency.id,
        section=emergency.section,
        drill=emergency.drill,
        needed=emergency.members_needed,
        declared_at=emergency.declared_at,
        updated_at=datetime.now(UTC),
    )


async def publish_due(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, limit: int = 50
) -> int:
    """Publish the summaries that are due; return how many were published."""
    published = 0
    interval = timedelta(seconds=settings.summary_min_interval_s)
    due = or_(
        summary_state.c.last_published_at.is_(None),
        summary_state.c.last_published_at <= func.now() - interval,
    )
    async with sessionmaker() as session, session.begin():
        # marked emergencies whose interval has passed, the longest-waiting first
        marked = (
            await session.execute(
                select(summary_marks.c.emergency_id, func.array_agg(summary_marks.c.id))
                .select_from(
                    summary_marks.outerjoin(
                        summary_state,
                        summary_state.c.emergency_id == summary_marks.c.emergency_id,
                    )
                )
                .where(due)
                .group_by(summary_marks.c.emergency_id)
                .order_by(func.min(summary_marks.c.id))
                .limit(limit)
            )
        ).all()
        for emergency_id, mark_ids in marked:
            # an emergency restored without its summary state gets one
            await session.execute(
                pg_insert(summary_state)
                .values(emergency_id=emergency_id)
                .on_conflict_do_nothing(index_elements=["emergency_id"])
            )
            state = (
                await session.execute(
                    select(summary_state)
                    .where(summary_state.c.emergency_id == emergency_id, due)
                    .with_for_update(skip_locked=True)
                )
            ).one_or_none()
            if state is None:
                continue  # published less than the interval ago, or another instance has it
            emergency = (
                await session.execute(select(emergencies).where(emergencies.c.id == emergency_id))
            ).one()
            # read after the marks: every change a mark stands for is visible here
            summary = await current(session, emergency)
            digest = summaries.digest(summary)
            if digest != state.last_digest:
                envelope = await add_event(
                    session, summary, source=settings.service_name,
                    correlationid=str(emergency.id),
                )  # fmt: skip
                await subscriptions.enqueue(
                    session, emergency.section, emergency.id, envelope.id,
                    summary.model_dump_json(),
                )  # fmt: skip
                await session.execute(
                    summary_state.update()
                    .where(summary_state.c.emergency_id == emergency_id)
                    .values(last_digest=digest, last_published_at=datetime.now(UTC))
                )
                published += 1
            await session.execute(
                summary_marks.delete().where(summary_marks.c.id.in_(list(mark_ids)))
            )
    return published


class SummaryPublisher:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        pause = min(0.25, max(0.05, self._settings.summary_min_interval_s / 4))
        while not self._stopping.is_set():
            try:
                await publish_due(self._sessionmaker, self._settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("summary publisher error, retrying", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
