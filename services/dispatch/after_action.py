"""`GET /emergencies/{id}/report[.csv|.html|.pdf]`: an emergency's after-action report.

Reads what dispatch already keeps (the emergency, its board rows' facts, its audit trail)
and hands it to the pure services.dispatch.reports. Access is the other emergency
routes': a coordinator of the emergency's section or an admin gets the coordinator's
version (or, with `audience=authority`, the one authorities get, to check what they
see); an authority of the section gets the authority's version only; anyone else, a
404 as if the emergency did not exist.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch import board, report_documents, reports
from services.dispatch.api import _visible, current_principal, get_session, get_settings
from services.dispatch.models import audit_log, board_rows
from services.dispatch.settings import Settings
from shared.auth import Principal

router = APIRouter(tags=["reports"])

AudienceQuery = Annotated[
    Literal["coordinator", "authority"] | None,
    Query(
        description="coordinator (with member ids) or authority (counts only); "
        "default: the caller's own. Authorities get the authority's version only."
    ),
]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Report = reports.CoordinatorReport | reports.AuthorityReport


def emergency_facts(row: Row[Any]) -> reports.EmergencyFacts:
    area = row.area or {}
    return reports.EmergencyFacts(
        id=row.id,
        title=row.title,
        section=row.section,
        assisting_sections=tuple(row.assisting_sections or ()),
        drill=row.drill,
        status=row.status,
        members_needed=row.members_needed,
        required_qualifications=tuple(row.required_qualifications or ()),
        created_at=row.created_at,
        declared_at=row.declared_at,
        approved_at=row.approved_at,
        closed_at=row.closed_at,
        close_reason=row.close_reason,
        category=row.category,
        severity=row.severity,
        wave_one_radius_m=area.get("radius_m") if isinstance(area, dict) else None,
    )


async def load(
    session: AsyncSession, emergency: Row[Any]
) -> tuple[list[board.RowFacts], list[reports.AuditFact]]:
    facts = (
        await session.execute(
            select(board_rows.c.facts).where(board_rows.c.emergency_id == emergency.id)
        )
    ).scalars()
    trail = (
        await session.execute(
            select(audit_log)
            .where(audit_log.c.emergency_id == emergency.id)
            .order_by(audit_log.c.id)
        )
    ).all()
    return (
        [board.facts_from_json(value) for value in facts],
        [
            reports.AuditFact(entry.at, entry.action, entry.actor, entry.actor_role, entry.diff)
            for entry in trail
        ],
    )


async def _report(
    emergency_id: uuid.UUID,
    audience: str | None,
    principal: Principal,
    session: AsyncSession,
    settings: Settings,
) -> Report:
    row = await _visible(session, principal, emergency_id, "coordinator", "admin", "authority")
    if principal.role == "authority" and audience == "coordinator":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "audience: authorities get the authority's version only (audience=authority)",
        )
    facts, trail = await load(session, row)
    built = reports.build(emergency_facts(row), facts, trail, as_of=datetime.now(UTC))
    if principal.role == "authority" or audience == "authority":
        return reports.for_authority(built, settings.report_min_count)
    return built


def _filename(report: Report, extension: str) -> str:
    return f"report-{report.emergency.id}-{report.audience}.{extension}"


@router.get(
    "/emergencies/{emergency_id}/report",
    response_model=reports.CoordinatorReport | reports.AuthorityReport,
    summary="The after-action report (JSON): the coordinator's, or the authority's (counts only)",
)
async def get_report(
    emergency_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    audience: AudienceQuery = None,
) -> Report:
    return await _report(emergency_id, audience, principal, session, settings)


@router.get(
    "/emergencies/{emergency_id}/report.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
    summary="The after-action report as CSV (part, item, measure, value)",
)
async def get_report_csv(
    emergency_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    audience: AudienceQuery = None,
) -> Response:
    report = await _report(emergency_id, audience, principal, session, settings)
    return Response(
        report_documents.to_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_filename(report, "csv")}"'},
    )


@router.get(
    "/emergencies/{emergency_id}/report.html",
    response_class=HTMLResponse,
    summary="The after-action report as a printable page with its charts",
)
async def get_report_html(
    emergency_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    audience: AudienceQuery = None,
) -> HTMLResponse:
    report = await _report(emergency_id, audience, principal, session, settings)
    # drawing charts takes a CPU for a moment: off the event loop
    html = await asyncio.to_thread(report_documents.to_html, report)
    return HTMLResponse(html)


def _pdf(report: Report) -> bytes:
    return report_documents.to_pdf(report_documents.to_html(report))


@router.get(
    "/emergencies/{emergency_id}/report.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
    summary="The after-action report's printable page as PDF",
)
async def get_report_pdf(
    emergency_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    audience: AudienceQuery = None,
) -> Response:
    report = await _report(emergency_id, audience, principal, session, settings)
    pdf = await asyncio.to_thread(_pdf, report)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{_filename(report, "pdf")}"'},
    )
