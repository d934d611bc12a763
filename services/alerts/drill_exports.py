"""`GET /drills/{id}/results.csv`: a drill's results, one line per member asked per
occurrence (issue 12, "Exports for the organisation").

The columns the members import also has come first, under its names and in its syntax
(`section`, `language`, `qualifications` as `CODE;CODE`: the codes valid when the drill
fired; drills keep no expiry dates), so a spreadsheet can line the file up with a
members export. Then the drill's own: the member id (alerts holds no names: the
members export has them under the same id's registry entry), the occurrence, whether
the test SMS went, and when and by which channel the member said OK. Coordinators and
admins of every section of the drill only, as the drill's other routes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts.drill_routes import Staff
from services.alerts.models import drill_calls, drill_messages, drill_occurrences, drills
from shared.auth import require_role

#: the import's columns first (services/members/importing.py names them), then the drill's
RESULT_COLUMNS = (
    "section",
    "language",
    "qualifications",
    "member_id",
    "occurrence_id",
    "occurs_at",
    "status",
    "sent_at",
    "answered_at",
    "answer_channel",
    #: the drill's call to a member who had not answered: answered, no_answer, busy,
    #: failed, placed (no final status yet); empty when not called
    "call_outcome",
    "seconds_to_answer",
)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def result_cells(occurrence: Mapping[str, Any], message: Mapping[Any, Any]) -> list[str]:
    """One member's line of one occurrence, in RESULT_COLUMNS order (pure)."""
    sent, answered = message["sent_at"], message["answered_at"]
    seconds = f"{max(0.0, (answered - sent).total_seconds()):.0f}" if sent and answered else ""
    return [
        message["section"],
        message["language"],
        ";".join(sorted(message["qualifications"] or ())),
        str(message["member_id"]),
        str(occurrence["id"]),
        _iso(occurrence["occurs_at"]),
        message["status"],
        _iso(sent),
        _iso(answered),
        message["answer_channel"] or "",
        message.get("call_outcome") or message.get("call_status") or "",
        seconds,
    ]


def to_csv(lines: Iterable[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(RESULT_COLUMNS)
    writer.writerows(lines)
    return out.getvalue()


def drill_export_router(db: Callable[[], async_sessionmaker[AsyncSession]]) -> APIRouter:
    router = APIRouter(tags=["drills"])

    @router.get(
        "/drills/{drill_id}/results.csv",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
        summary="A drill's results as CSV: one line per member asked per occurrence",
    )
    async def results_csv(drill_id: UUID, principal: Staff) -> Response:
        require_role(principal, "coordinator", "admin")
        async with db()() as session:
            drill = (await session.execute(select(drills).where(drills.c.id == drill_id))).first()
            if drill is None or not all(principal.can_act_for(s) for s in drill.sections):
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such drill in your sections")
            rows = (
                await session.execute(
                    select(
                        drill_occurrences.c.occurs_at,
                        drill_messages.c.occurrence_id,
                        drill_messages.c.section,
                        drill_messages.c.language,
                        drill_messages.c.qualifications,
                        drill_messages.c.member_id,
                        drill_messages.c.status,
                        drill_messages.c.sent_at,
                        drill_messages.c.answered_at,
                        drill_messages.c.answer_channel,
                        drill_calls.c.outcome.label("call_outcome"),
                        drill_calls.c.status.label("call_status"),
                    )
                    .join(drill_messages, drill_messages.c.occurrence_id == drill_occurrences.c.id)
                    .outerjoin(drill_calls, drill_calls.c.message_id == drill_messages.c.id)
                    .where(drill_occurrences.c.drill_id == drill_id)
                    .order_by(drill_occurrences.c.occurs_at, drill_messages.c.id)
                )
            ).all()
        lines = [
            result_cells({"id": r.occurrence_id, "occurs_at": r.occurs_at}, r._mapping)
            for r in rows
        ]
        return Response(
            to_csv(lines),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="drill-{drill_id}.csv"'},
        )

    return router
