"""Migration 0004 on a database from before the safety loop: board rows stored as
`arrived` become `on_scene` (their facts' `arrived_at` reads as the time on scene), and
the safety loop's tables appear."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dispatch import board
from services.dispatch.__main__ import MIGRATIONS
from shared import migrations
from tests.support.infra import Infra


async def test_arrived_rows_become_on_scene(
    infra: Infra, admin_engine: AsyncEngine, schema: str
) -> None:
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, infra.database_url, schema, "0003")
    emergency, member = uuid.uuid4(), uuid.uuid4()
    arrived_at = datetime(2026, 11, 29, 18, 30, tzinfo=UTC)
    facts = {
        "member_id": str(member), "alert_id": str(uuid.uuid4()), "sent": None,
        "delivered_at": None, "failed_at": None,
        "answer": {"responded_at": "2026-11-29T18:00:00+00:00", "event_id": "e1",
                   "answer": "accepted", "eta_minutes": 20},
        "first_accepted_at": "2026-11-29T18:00:00+00:00", "arrived_at": arrived_at.isoformat(),
        "stood_down_at": None, "stood_down_reason": None, "not_needed_at": None,
        "updated_at": arrived_at.isoformat(),
    }  # fmt: skip
    async with admin_engine.begin() as conn:
        # as a database migrated before the safety loop has them: no safety-loop tables
        await conn.execute(text(f'DROP TABLE "{schema}".safety_timers, "{schema}".roll_calls'))
        await conn.execute(
            text(
                f'INSERT INTO "{schema}".board_rows (emergency_id, member_id, status, '
                "updated_at, facts) VALUES (:e, :m, 'arrived', now(), CAST(:f AS jsonb))"
            ),
            {"e": emergency, "m": member, "f": json.dumps(facts)},
        )
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, infra.database_url, schema, "head")
    async with admin_engine.connect() as conn:
        status, stored = (
            await conn.execute(
                text(f'SELECT status, facts FROM "{schema}".board_rows WHERE member_id = :m'),
                {"m": member},
            )
        ).one()
        tables = set(
            (
                await conn.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"
                    ),
                    {"s": schema},
                )
            ).scalars()
        )
    assert status == "on_scene"
    row = board.to_row(board.facts_from_json(stored), status)
    assert (row.status, row.status_at, row.eta_minutes) == ("on_scene", arrived_at, 20)
    assert {"safety_timers", "roll_calls"} <= tables
