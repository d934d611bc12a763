"""`GET /summaries`: the emergencies of the caller's sections, each with its availability
summary, for the authority pages of the console (an authority cannot list emergencies:
`GET /emergencies` carries descriptions and areas it must not need).

What an entry holds is chosen for authorities: the emergency's title, section, CAP
category and severity, drill flag, status and times, and the counts-only summary. Never
a description (free text, where a coordinator may have typed a name), an area, a
member id, a name or a phone number.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import availability
from services.dispatch.api import current_principal, get_session
from services.dispatch.models import emergencies as emergencies_table
from shared.auth import Principal, require_role
from shared.events.availability import AvailabilitySummary
from shared.events.emergencies import Category, Severity

router = APIRouter(tags=["summaries"])


class EmergencySummaryOut(BaseModel):
    id: UUID
    section: str
    title: str
    category: Category
    severity: Severity
    drill: bool
    status: str
    declared_at: datetime | None
    closed_at: datetime | None
    summary: AvailabilitySummary


@router.get(
    "/summaries",
    response_model=list[EmergencySummaryOut],
    summary="The emergencies of your sections with their summaries (counts only)",
)
async def list_summaries(
    status_filter: str | None = Query(None, alias="status", pattern="^(active|closed)$"),
    limit: int = Query(50, ge=1, le=200),
    principal: Principal = Depends(current_principal),
    session: AsyncSession = Depends(get_session),
) -> list[EmergencySummaryOut]:
    require_role(principal, "authority", "coordinator", "admin")
    # an emergency waiting for approval has alerted nobody: nothing to summarise yet
    query = (
        select(emergencies_table)
        .where(
            emergencies_table.c.status.in_(
                [status_filter] if status_filter else ["active", "closed"]
            )
        )
        .order_by(
            (emergencies_table.c.status == "active").desc(),
            emergencies_table.c.declared_at.desc().nulls_last(),
        )
        .limit(limit)
    )
    if not principal.is_admin:
        query = query.where(emergencies_table.c.section.in_(sorted(principal.sections)))
    out = []
    for row in (await session.execute(query)).all():
        out.append(
            EmergencySummaryOut(
                id=row.id,
                section=row.section,
                title=row.title,
                category=row.category,
                severity=row.severity,
                drill=row.drill,
                status=row.status,
                declared_at=row.declared_at,
                closed_at=row.closed_at,
                summary=await availability.current(session, row),
            )
        )
    return out
