"""The old board address: `GET /console/{id}` moved into the web console
(services/console), which redirects here to its live board page."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

router = APIRouter()


@router.get(
    "/console/{emergency_id}",
    tags=["console"],
    summary="Moved: redirects (307) to the web console's live board",
    response_class=RedirectResponse,
    status_code=307,
)
async def console(request: Request, emergency_id: uuid.UUID) -> RedirectResponse:
    base = request.app.state.runtime.settings.console_url.rstrip("/")
    return RedirectResponse(f"{base}/emergencies/{emergency_id}", status_code=307)
