"""The board's I/O: applies alert and response events to `board_rows`, settles the
quota, and announces changed rows to live consoles.

Runs inside the idempotent consumer's transaction (shared.consumer), so a redelivered
event is skipped before it gets here and an applied one commits with its row changes,
its `emergency.updated` outbox row and its NOTIFY. Row changes reach every dispatch
instance through PostgreSQL LISTEN/NOTIFY, which PostgreSQL delivers only on commit:
a console never sees a change that was rolled back.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.dispatch import audit, board, emergencies, escalation
from services.dispatch.models import board_rows
from services.dispatch.models import emergencies as emergencies_table
from services.dispatch.settings import Settings
from shared.consumer import Delivery
from shared.events.emergencies import EmergencyUpdated
from shared.outbox import add_event

#: rows that hold a place; the ranking of a new acceptor is decided against them alone
PLACE_STATUSES = ("accepted", "arrived")
#: standby rows matter only when a place frees up (a drop-out, a larger members_needed)
QUOTA_STATUSES = (*PLACE_STATUSES, "standby")


NOTIFY = "SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p"
NOTIFY_AND_MARK = (
    "WITH mark AS (INSERT INTO summary_marks (emergency_id) VALUES (:emergency_id)) "
    "SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p"
)


def channel(settings: Settings) -> str:
    """The NOTIFY channel of this service's schema (tests run many schemas side by side)."""
    return f"dispatch_board_{settings.schema_name}"[:63]


def row_json(row: board.BoardRow) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "member_id": str(row.member_id),
        "status": row.status,
        "eta_minutes": row.eta_minutes,
        "expected_arrival_at": iso(row.expected_arrival_at),
        "distance_m": row.distance_m,
        "wave": row.wave,
        "qualifications": list(row.qualifications),
        "answered_at": iso(row.answered_at),
        "updated_at": iso(row.updated_at),
    }


def _columns(row: board.BoardRow, facts: board.RowFacts) -> dict[str, Any]:
    return {
        "alert_id": uuid.UUID(row.alert_id) if row.alert_id else None,
        "status": row.status,
        "eta_minutes": row.eta_minutes,
        "expected_arrival_at": row.expected_arrival_at,
        "distance_m": row.distance_m,
        "wave": row.wave,
        "qualifications": list(row.qualifications),
        "answered_at": row.answered_at,
        "accepted_at": row.accepted_at,
        "updated_at": row.updated_at or datetime.now(UTC),
        "facts": board.facts_to_json(facts),
    }


async def load_facts(
    session: AsyncSession,
    emergency_id: uuid.UUID,
    member_id: uuid.UUID | None = None,
    *,
    with_standby: bool = True,
) -> tuple[dict[uuid.UUID, board.RowFacts], dict[uuid.UUID, str]]:
    """The rows that can change together: those holding a place (and the standby ones
    when a place may free up), plus `member_id`'s.

    Without the standby rows the derived statuses are still exact as long as no place
    frees up: a standby member can only move up when an accepted or arrived one leaves
    (or members_needed grows), which the caller detects and then loads them."""
    statuses = QUOTA_STATUSES if with_standby else PLACE_STATUSES
    condition: ColumnElement[bool] = board_rows.c.status.in_(statuses)
    if member_id is not None:
        condition = or_(condition, board_rows.c.member_id == member_id)
    result = await session.execute(
        select(board_rows.c.member_id, board_rows.c.status, board_rows.c.facts).where(
            board_rows.c.emergency_id == emergency_id, condition
        )
    )
    facts: dict[uuid.UUID, board.RowFacts] = {}
    stored: dict[uuid.UUID, str] = {}
    for member, status, value in result.all():
        facts[member] = board.facts_from_json(value)
        stored[member] = status
    return facts, stored


async def all_rows(
    session: AsyncSession, emergency_id: uuid.UUID, members_needed: int | None
) -> list[board.BoardRow]:
    result = await session.execute(
        select(board_rows.c.member_id, board_rows.c.facts).where(
            board_rows.c.emergency_id == emergency_id
        )
    )
    facts = {member: board.facts_from_json(value) for member, value in result.all()}
    derived = board.rows(facts, members_needed)
    rank = {"accepted": 0, "arrived": 1, "standby": 2}
    return sorted(
        derived.values(),
        key=lambda r: (
            rank.get(r.status, 3),
            r.eta_minutes if r.eta_minutes is not None else 1 << 30,
            r.distance_m if r.distance_m is not None else 1 << 30,
            str(r.member_id),
        ),
    )


async def apply_event(
    session: AsyncSession, settings: Settings, event: board.BoardEvent
) -> list[board.BoardRow]:
    """Apply one event; return the rows whose status or content changed.

    Four statements in the common case (lock with the emergency, rows, upsert, notify
    with the summary mark): the handler runs once per event, so round trips count."""
    emergency = await emergencies.lock_and_get(session, event.emergency_id)
    facts, stored = await load_facts(
        session, event.emergency_id, event.member_id, with_standby=False
    )
    if stored.get(event.member_id) in PLACE_STATUSES:
        # this member may leave a place: the standby rows may move up
        facts, stored = await load_facts(session, event.emergency_id, event.member_id)
    after = dict(facts)
    after[event.member_id] = board.apply(facts.get(event.member_id), event)
    return await _settle(
        session, settings, event.emergency_id, emergency, facts, after, stored,
        touched={event.member_id}, causation=event.event_id,
    )  # fmt: skip


async def requota(
    session: AsyncSession, settings: Settings, emergency_id: uuid.UUID, *, cause: str
) -> list[board.BoardRow]:
    """Re-rank after `members_needed` changed (the caller holds the emergency's lock)."""
    emergency = await emergencies.get(session, emergency_id)
    facts, stored = await load_facts(session, emergency_id)
    before = {m: stored[m] for m in facts}
    return await _settle(
        session, settings, emergency_id, emergency, facts, facts, stored, touched=set(),
        causation=None, before_statuses=before,
    )  # fmt: skip


async def _settle(
    session: AsyncSession,
    settings: Settings,
    emergency_id: uuid.UUID,
    emergency: Row[Any] | None,
    before_facts: dict[uuid.UUID, board.RowFacts],
    after_facts: dict[uuid.UUID, board.RowFacts],
    stored: dict[uuid.UUID, str],
    *,
    touched: set[uuid.UUID],
    causation: str | None,
    before_statuses: dict[uuid.UUID, str] | None = None,
) -> list[board.BoardRow]:
    needed = emergency.members_needed if emergency is not None else None
    before = before_statuses or board.statuses(before_facts, needed)
    after = board.statuses(after_facts, needed)
    changed: list[board.BoardRow] = []
    for member, facts in after_facts.items():
        if member not in touched and stored.get(member) == after[member]:
            continue
        row = board.to_row(facts, after[member])
        columns = _columns(row, facts)
        await session.execute(
            pg_insert(board_rows)
            .values(emergency_id=emergency_id, member_id=member, **columns)
            .on_conflict_do_update(index_elements=["emergency_id", "member_id"], set_=columns)
        )
        changed.append(row)
    payloads = [
        json.dumps({"emergency_id": str(emergency_id), "row": row_json(row)}) for row in changed
    ]
    # one round trip: NOTIFY each changed row (delivered on commit) and, for a known
    # emergency, mark its summary stale
    await session.execute(
        text(NOTIFY if emergency is None else NOTIFY_AND_MARK),
        {"channel": channel(settings), "payloads": payloads, "emergency_id": emergency_id},
    )
    if emergency is None:
        return changed
    if emergency.status == "active" and needed is not None:
        await _staffing(session, settings, emergency, board.quota_change(before, after, needed),
                        causation)  # fmt: skip
    return changed


async def _staffing(
    session: AsyncSession,
    settings: Settings,
    emergency: Row[Any],
    change: board.QuotaChange,
    causation: str | None,
) -> None:
    """`staffed` true once enough accepted (escalation stops); back to false after a
    drop-out nobody on standby could fill (escalation resumes). A drop-out that a standby
    fills keeps `staffed` true and names them in `call_up`."""
    staffed = change.staffed_after
    if staffed == emergency.staffed and not change.call_up:
        return
    now = datetime.now(UTC)
    await session.execute(
        emergencies_table.update()
        .where(emergencies_table.c.id == emergency.id)
        .values(staffed=staffed, updated_at=now)
    )
    fields = ["staffed"] if staffed != emergency.staffed else []
    fields += ["call_up"] if change.call_up else []
    row = await emergencies.get(session, emergency.id)
    assert row is not None
    await add_event(
        session,
        EmergencyUpdated(
            **emergencies.facts(row),
            staffed=staffed,
            call_up=list(change.call_up),
            changed=fields,
            updated_at=now,
        ),
        source=settings.service_name,
        correlationid=str(emergency.id),
        causationid=causation,
    )
    await audit.record(
        session,
        action="staffed" if staffed else "quota_reopened",
        emergency_id=emergency.id,
        actor=None,
        diff={"staffed": staffed, "call_up": [str(m) for m in change.call_up]},
    )
    if staffed and not emergency.staffed:
        await escalation.disarm(session, emergency.id)
    elif not staffed and emergency.next_step_id is None:
        await escalation.arm_next(session, emergency.id, now)


async def on_event(settings: Settings, delivery: Delivery) -> None:
    """Consumer handler for muster.alerts and muster.responses."""
    event = board.from_event(delivery.data, delivery.envelope.id)
    if event is not None:
        await apply_event(delivery.db, settings, event)
