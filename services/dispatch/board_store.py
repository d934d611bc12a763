"""The board's I/O: applies board events to `board_rows`, works out the quota, arms the
safety loop's overdue timers of released rows, and announces changed rows to live
consoles.

It neither locks nor changes the emergency: services.dispatch.emergencies owns the
emergency's transitions, takes its lock, calls in here, and acts on the quota change
this returns (staffed, call-ups, escalation). Everything here runs in the caller's
transaction, so an applied event commits with its row changes and its NOTIFY. Row
changes reach every dispatch instance through PostgreSQL LISTEN/NOTIFY, which
PostgreSQL delivers only on commit: a console never sees a change that was rolled back.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.dispatch import board
from services.dispatch.models import board_rows, roll_calls, safety_timers
from services.dispatch.settings import Settings

#: rows that hold a place; the ranking of a new acceptor is decided against them alone
PLACE_STATUSES = board.FILLED
#: standby rows matter only when a place frees up (a drop-out, a larger members_needed)
QUOTA_STATUSES = (*PLACE_STATUSES, "standby")
#: the order of the API's rows: people on the way or there first, then the rest
LIST_ORDER = {"on_scene": 0, "en_route": 1, "accepted": 2, "standby": 3, "released": 4}
OVERDUE = "overdue"


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
        "channel": row.channel,
        "contact_step": row.contact_step,
        "status_at": iso(row.status_at),
        "overdue": row.overdue,
        "confirmed_roll_calls": list(row.confirmed_roll_calls),
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
    member_ids: set[uuid.UUID] | None = None,
    *,
    with_standby: bool = True,
) -> tuple[dict[uuid.UUID, board.RowFacts], dict[uuid.UUID, str]]:
    """The rows that can change together: those holding a place (and the standby ones
    when a place may free up), plus `member_ids`'.

    Without the standby rows the derived statuses are still exact as long as no place
    frees up: a standby member can only move up when an accepted one leaves (or
    members_needed grows), which the caller detects and then loads them."""
    statuses = QUOTA_STATUSES if with_standby else PLACE_STATUSES
    condition: ColumnElement[bool] = board_rows.c.status.in_(statuses)
    if member_ids:
        condition = or_(condition, board_rows.c.member_id.in_(sorted(member_ids, key=str)))
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


async def all_facts(
    session: AsyncSession, emergency_id: uuid.UUID
) -> dict[uuid.UUID, board.RowFacts]:
    result = await session.execute(
        select(board_rows.c.member_id, board_rows.c.facts).where(
            board_rows.c.emergency_id == emergency_id
        )
    )
    return {member: board.facts_from_json(value) for member, value in result.all()}


async def all_rows(
    session: AsyncSession, emergency_id: uuid.UUID, members_needed: int | None
) -> list[board.BoardRow]:
    derived = board.rows(await all_facts(session, emergency_id), members_needed)
    return sorted(
        derived.values(),
        key=lambda r: (
            LIST_ORDER.get(r.status, len(LIST_ORDER)),
            r.eta_minutes if r.eta_minutes is not None else 1 << 30,
            r.distance_m if r.distance_m is not None else 1 << 30,
            str(r.member_id),
        ),
    )


async def statuses_in(
    session: AsyncSession, emergency_id: uuid.UUID, wanted: tuple[str, ...]
) -> dict[uuid.UUID, str]:
    """The members whose stored status is one of `wanted` (the stored status is the
    derived one as of the last change: the caller holds the emergency's lock)."""
    result = await session.execute(
        select(board_rows.c.member_id, board_rows.c.status).where(
            board_rows.c.emergency_id == emergency_id, board_rows.c.status.in_(wanted)
        )
    )
    return {member: status for member, status in result.all()}


async def filled_places(session: AsyncSession, emergency_id: uuid.UUID) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).where(
                    board_rows.c.emergency_id == emergency_id,
                    board_rows.c.status.in_(PLACE_STATUSES),
                )
            )
        ).scalar_one()
    )


@dataclass(frozen=True)
class Settled:
    """What applying events did: the rows that changed, and (for a known emergency) the
    quota before and after, for the emergency's owner to act on."""

    changed: list[board.BoardRow]
    quota: board.QuotaChange | None


async def apply_events(
    session: AsyncSession,
    settings: Settings,
    emergency: Row[Any] | None,
    emergency_id: uuid.UUID,
    events: list[board.BoardEvent],
) -> Settled:
    """Apply events of one emergency (the caller holds its lock; `emergency` None: not
    known here). Four statements in the common case (rows, upsert, notify with the
    summary mark): the handler runs once per event, so round trips count."""
    touched = {event.member_id for event in events}
    facts, stored = await load_facts(session, emergency_id, touched, with_standby=False)
    if any(stored.get(member) == "accepted" for member in touched):
        # an accepted member may leave a place: the standby rows may move up
        facts, stored = await load_facts(session, emergency_id, touched)
    after = dict(facts)
    for event in events:
        after[event.member_id] = board.apply(after.get(event.member_id), event)
    return await _settle(
        session, settings, emergency_id, emergency, facts, after, stored, touched=touched
    )


# One statement for every row of a batch: the rows travel as one JSON array (a fixed
# statement, whatever the batch's size, so it is prepared once per connection), typed by
# jsonb_to_recordset; a value a column cannot hold fails the whole statement, and the
# consumer then applies the records one by one.
UPSERT_ROWS = """
INSERT INTO board_rows (emergency_id, member_id, alert_id, status, eta_minutes,
    expected_arrival_at, distance_m, wave, qualifications, answered_at, accepted_at,
    updated_at, facts)
SELECT CAST(:emergency_id AS uuid), r.member_id, r.alert_id, r.status, r.eta_minutes,
    r.expected_arrival_at, r.distance_m, r.wave, r.qualifications, r.answered_at,
    r.accepted_at, r.updated_at, r.facts
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(member_id uuid, alert_id uuid,
    status text, eta_minutes integer, expected_arrival_at timestamptz, distance_m integer,
    wave integer, qualifications jsonb, answered_at timestamptz, accepted_at timestamptz,
    updated_at timestamptz, facts jsonb)
ON CONFLICT (emergency_id, member_id) DO UPDATE SET
    alert_id = EXCLUDED.alert_id, status = EXCLUDED.status,
    eta_minutes = EXCLUDED.eta_minutes, expected_arrival_at = EXCLUDED.expected_arrival_at,
    distance_m = EXCLUDED.distance_m, wave = EXCLUDED.wave,
    qualifications = EXCLUDED.qualifications, answered_at = EXCLUDED.answered_at,
    accepted_at = EXCLUDED.accepted_at, updated_at = EXCLUDED.updated_at,
    facts = EXCLUDED.facts
"""


def _row_record(row: board.BoardRow, facts: board.RowFacts) -> dict[str, Any]:
    """A row as UPSERT_ROWS reads it (`_columns`, in JSON)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "member_id": str(row.member_id),
        "alert_id": row.alert_id,
        "status": row.status,
        "eta_minutes": row.eta_minutes,
        "expected_arrival_at": iso(row.expected_arrival_at),
        "distance_m": row.distance_m,
        "wave": row.wave,
        "qualifications": list(row.qualifications),
        "answered_at": iso(row.answered_at),
        "accepted_at": iso(row.accepted_at),
        "updated_at": iso(row.updated_at or datetime.now(UTC)),
        "facts": board.facts_to_json(facts),
    }


async def apply_batch(
    session: AsyncSession,
    settings: Settings,
    emergency: Row[Any] | None,
    emergency_id: uuid.UUID,
    events: list[board.BoardEvent],
) -> tuple[board.BatchStep, ...]:
    """Apply events of one emergency as one planning step (the caller holds its lock;
    `emergency` None: not known here): the affected rows read once, the events folded
    in order by `board.plan_batch`, the changed rows written in one statement, and every
    row change the one-by-one path would announce sent in one NOTIFY statement. Returns
    the steps, each with its quota change, for the emergency's owner to act on in order.

    Four statements in the common case, however many events (rows, upsert, notify with
    the summary mark), against four per event one by one."""
    touched = {event.member_id for event in events}
    needed = emergency.members_needed if emergency is not None else None
    overdue_after = timedelta(seconds=settings.overdue_after_s)
    # an acceptor may leave a place: then the standby rows may move up
    with_standby = False
    facts, stored = await load_facts(session, emergency_id, touched, with_standby=False)
    if any(stored.get(member) == "accepted" for member in touched):
        with_standby = True
        facts, stored = await load_facts(session, emergency_id, touched)
    plan = board.plan_batch(facts, stored, events, needed, overdue_after)
    if plan.place_freed and not with_standby:
        # an acceptor of this very batch left its place
        facts, stored = await load_facts(session, emergency_id, touched)
        plan = board.plan_batch(facts, stored, events, needed, overdue_after)
    records = [_row_record(row, row_facts) for row, row_facts in plan.written.values()]
    await session.execute(
        text(UPSERT_ROWS), {"emergency_id": str(emergency_id), "rows": json.dumps(records)}
    )
    for member, due_at in plan.overdue_due.items():
        await arm_overdue(session, emergency_id, member, due_at)
    # the rows as each step left them, in order: a console sees what it saw one by one
    # (PostgreSQL drops a repeated identical payload of one transaction, as it did then)
    payloads = [
        json.dumps({"emergency_id": str(emergency_id), "row": row_json(row)})
        for step in plan.steps
        for row in step.announced
    ]
    await session.execute(
        text(NOTIFY if emergency is None else NOTIFY_AND_MARK),
        {"channel": channel(settings), "payloads": payloads, "emergency_id": emergency_id},
    )
    return plan.steps


async def requota(session: AsyncSession, settings: Settings, emergency: Row[Any]) -> Settled:
    """Re-rank after `members_needed` changed (the caller holds the emergency's lock)."""
    facts, stored = await load_facts(session, emergency.id)
    before = {m: stored[m] for m in facts}
    return await _settle(
        session, settings, emergency.id, emergency, facts, facts, stored, touched=set(),
        before_statuses=before,
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
    before_statuses: dict[uuid.UUID, str] | None = None,
) -> Settled:
    needed = emergency.members_needed if emergency is not None else None
    before = before_statuses or board.statuses(before_facts, needed)
    after = board.statuses(after_facts, needed)
    changed: list[board.BoardRow] = []
    overdue_after = timedelta(seconds=settings.overdue_after_s)
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
        due_at = board.overdue_due_at(facts, overdue_after)
        if due_at is not None and member in touched:
            await arm_overdue(session, emergency_id, member, due_at)
    payloads = [
        json.dumps({"emergency_id": str(emergency_id), "row": row_json(row)}) for row in changed
    ]
    # one round trip: NOTIFY each changed row (delivered on commit) and, for a known
    # emergency, mark its summary stale
    await session.execute(
        text(NOTIFY if emergency is None else NOTIFY_AND_MARK),
        {"channel": channel(settings), "payloads": payloads, "emergency_id": emergency_id},
    )
    if emergency is None or needed is None:
        return Settled(changed, None)
    return Settled(changed, board.quota_change(before, after, needed))


# -- the safety loop's tables -----------------------------------------------------------


async def arm_overdue(
    session: AsyncSession, emergency_id: uuid.UUID, member_id: uuid.UUID, due_at: datetime
) -> None:
    """One overdue timer per member: an earlier release time (events out of order) moves
    a pending one earlier; a fired one stays fired."""
    statement = pg_insert(safety_timers).values(
        id=uuid.uuid4(), emergency_id=emergency_id, member_id=member_id, kind=OVERDUE,
        due_at=due_at,
    )  # fmt: skip
    await session.execute(
        statement.on_conflict_do_update(
            constraint="safety_timers_one_per_kind",
            set_={"due_at": func.least(safety_timers.c.due_at, statement.excluded.due_at)},
            where=safety_timers.c.status == "pending",
        )
    )


async def latest_roll_call(session: AsyncSession, emergency_id: uuid.UUID) -> board.RollCall | None:
    found = (
        await session.execute(
            select(roll_calls)
            .where(roll_calls.c.emergency_id == emergency_id)
            .order_by(roll_calls.c.started_at.desc(), roll_calls.c.id)
            .limit(1)
        )
    ).one_or_none()
    if found is None:
        return None
    return board.RollCall(
        str(found.id), found.started_at, tuple(uuid.UUID(m) for m in found.member_ids)
    )


async def roll_call_view(
    session: AsyncSession, settings: Settings, emergency_id: uuid.UUID, now: datetime
) -> board.RollCallView | None:
    roll_call = await latest_roll_call(session, emergency_id)
    if roll_call is None:
        return None
    facts, _ = await load_facts(session, emergency_id, set(roll_call.member_ids))
    return board.roll_call_view(
        roll_call, facts, now, timedelta(seconds=settings.roll_call_missing_after_s)
    )


async def announce_roll_call(
    session: AsyncSession, settings: Settings, emergency_id: uuid.UUID, view: board.RollCallView
) -> None:
    """Live consoles learn of a new roll call (NOTIFY, delivered on commit)."""
    payload = json.dumps({"emergency_id": str(emergency_id), "roll_call": roll_call_json(view)})
    await session.execute(text(NOTIFY), {"channel": channel(settings), "payloads": [payload]})


def roll_call_json(view: board.RollCallView | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {
        "roll_call_id": view.roll_call_id,
        "started_at": view.started_at.isoformat(),
        "missing_after": view.missing_after.isoformat(),
        "confirmed": [str(m) for m in view.confirmed],
        "waiting": [str(m) for m in view.waiting],
        "missing": [str(m) for m in view.missing],
    }
