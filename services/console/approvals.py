"""The approvals queue: emergencies the two-person rule holds, for the user's sections,
each with the same reach preview as at declaration; approve, or reject with a reason
(dispatch's cancel: nobody was alerted, so nobody gets a message)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.console import pages
from services.console.declare import reach_preview
from services.console.pages import N_
from services.console.session import Coordinator
from services.console.upstream import Api, UpstreamError

router = APIRouter()


@router.get("/approvals", response_class=HTMLResponse, include_in_schema=False)
async def approvals_page(request: Request, user: Coordinator) -> HTMLResponse:
    api = Api(request, user)
    pending = await api.dispatch.get(
        "/emergencies", params={"status": "pending_approval", "limit": 200}
    )
    previews = await asyncio.gather(*(reach_preview(api, e) for e in pending))
    return pages.render(
        request,
        "approvals.html",
        {"queue": [{"emergency": e, "preview": p} for e, p in zip(pending, previews, strict=True)]},
    )


@router.post("/emergencies/{emergency_id}/approve", include_in_schema=False)
async def approve(
    request: Request,
    user: Coordinator,
    emergency_id: uuid.UUID,
    version: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
) -> Response:
    api = Api(request, user)
    try:
        # the version the queue displayed: dispatch refuses it (409) if the emergency
        # changed since; a form without one gets dispatch's own answer
        body = None if version is None else {"version": version}
        await api.dispatch.post(f"/emergencies/{emergency_id}/approve", json=body)
    except UpstreamError as exc:
        if exc.status_code not in (403, 409):
            raise
        # the declarer, or an emergency already approved or closed: say why, stay here
        pages.flash(request, exc.message(), "error")
        return RedirectResponse("/approvals", status_code=303)
    pages.flash(request, N_("Approved: members are being alerted."), "success")
    return RedirectResponse(f"/emergencies/{emergency_id}", status_code=303)


@router.post("/emergencies/{emergency_id}/reject", include_in_schema=False)
async def reject(
    request: Request,
    user: Coordinator,
    emergency_id: uuid.UUID,
    reason: Annotated[str, Form(max_length=900)] = "",
) -> Response:
    api = Api(request, user)
    emergency = await api.dispatch.get(f"/emergencies/{emergency_id}")
    if emergency["status"] != "pending_approval":
        pages.flash(request, N_("This emergency is no longer waiting for approval."), "error")
        return RedirectResponse("/approvals", status_code=303)
    note = f"rejected: {reason.strip()}" if reason.strip() else "rejected"
    await api.dispatch.post(f"/emergencies/{emergency_id}/cancel", json={"note": note})
    pages.flash(request, N_("Rejected: nobody was alerted."), "success")
    return RedirectResponse("/approvals", status_code=303)
