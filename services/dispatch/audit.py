"""The audit log: who declared, changed, approved, closed or escalated what, and when.

Written in the same transaction as the change it records. Actors are account ids (or
`dispatch` for the service's own decisions); diffs hold emergency fields, never member
personal data.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.models import audit_log
from shared.auth import Principal

SYSTEM_ACTOR = "dispatch"


async def record(
    session: AsyncSession,
    *,
    action: str,
    emergency_id: UUID | None,
    actor: Principal | None,
    diff: dict[str, Any] | None = None,
) -> None:
    await session.execute(
        audit_log.insert().values(
            emergency_id=emergency_id,
            actor=actor.account_id if actor else SYSTEM_ACTOR,
            actor_role=actor.role if actor else "system",
            action=action,
            diff=diff or {},
        )
    )


async def entries(
    session: AsyncSession,
    *,
    emergency_id: UUID | None = None,
    action: str | None = None,
    after_id: int = 0,
    limit: int = 200,
) -> list[dict[str, Any]]:
    query = select(audit_log).where(audit_log.c.id > after_id).order_by(audit_log.c.id)
    if emergency_id is not None:
        query = query.where(audit_log.c.emergency_id == emergency_id)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    rows = (await session.execute(query.limit(limit))).mappings().all()
    return [dict(row) for row in rows]
