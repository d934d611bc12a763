"""The emergencies list: active first, then those waiting for approval, then recent
ones; filtered by section, drill or real, and status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from services.console import pages
from services.console.session import Coordinator
from services.console.upstream import Api

router = APIRouter()

STATUSES = ("active", "pending_approval", "closed")
#: the list's order: what needs attention now comes first
STATUS_ORDER = {"active": 0, "pending_approval": 1, "closed": 2}
RECENT_LIMIT = 300


def ordered(emergencies: list[dict[str, Any]], drill: str = "") -> list[dict[str, Any]]:
    """Active, then pending approval, then closed; newest first within each; `drill`
    keeps only drills ("drill") or only real emergencies ("real")."""
    if drill == "drill":
        emergencies = [e for e in emergencies if e.get("drill")]
    elif drill == "real":
        emergencies = [e for e in emergencies if not e.get("drill")]
    by_time = sorted(emergencies, key=lambda e: str(e.get("created_at", "")), reverse=True)
    return sorted(by_time, key=lambda e: STATUS_ORDER.get(str(e.get("status")), 3))


@router.get("/emergencies", response_class=HTMLResponse, include_in_schema=False)
async def emergencies_page(
    request: Request,
    user: Coordinator,
    section: Annotated[str, Query(max_length=16)] = "",
    drill: Annotated[str, Query(pattern="^(|drill|real)$")] = "",
    status: Annotated[str, Query(pattern="^(|active|pending_approval|closed)$")] = "",
) -> HTMLResponse:
    params: dict[str, Any] = {"limit": RECENT_LIMIT}
    if section:
        params["section"] = section
    if status:
        params["status"] = status
    found = await Api(request, user).dispatch.get("/emergencies", params=params)
    return pages.render(
        request,
        "emergencies.html",
        {
            "emergencies": ordered(found, drill),
            "filters": {"section": section, "drill": drill, "status": status},
            "sections": sorted(user.sections),
            "statuses": STATUSES,
        },
    )
