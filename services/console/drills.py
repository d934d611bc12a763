"""Reachability drills in the console (issue 12), from the alerts service's drill API.

Coordinators (and admins):
- `GET /drills`: the drills of their sections (each occurrence with how many were asked
  and answered), and the form to schedule one: sections, now or a date and time in the
  section's zone, an optional recurrence (monthly, quarterly, or an RRULE typed in), and
  optionally the minutes after which members who have not answered are phoned (alerts
  refuses it, on the form, where it has no voice provider);
- `POST /drills`: schedules it (alerts' 422 comes back on the form, naming the field);
- `GET /drills/{id}`: each occurrence's 5/15/60-minute results, by section and by
  qualification, and the members to look at (SMS failed, or no answer in the last
  drills), named from the registry;
- `POST /drills/{id}/cancel`.

Authorities (and everyone else who may read a section): `GET /readiness`, each of their
sections' readiness figure as alerts gives it to authorities (counts and shares, small
counts as "< k"; no name, phone or member id ever reaches the page).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.console import pages
from services.console.pages import N_
from services.console.session import Coordinator, CurrentUser
from services.console.upstream import Api, UpstreamError

router = APIRouter()

#: the recurrences offered by name; "custom" takes the RRULE typed in
RECURRENCES = {
    "none": None,
    "monthly": "FREQ=MONTHLY",
    "quarterly": "FREQ=MONTHLY;INTERVAL=3",
}
#: the answer windows of the results, in minutes
WINDOWS = ("5", "15", "60")


def start_time(day: str, at: str, timezone: str) -> str | None:
    """The ISO time (with offset) a coordinator typed as a local date and time in the
    section's zone; None for "now" (both empty)."""
    if not day and not at:
        return None
    try:
        place = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        place = ZoneInfo("UTC")
    moment = datetime.fromisoformat(f"{day}T{at or '00:00'}").replace(tzinfo=place)
    return moment.isoformat()


async def _sections(api: Api) -> list[dict[str, Any]]:
    return list(await api.members.get("/sections"))


async def _form_page(
    request: Request,
    api: Api,
    user: Any,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    sections, drills = await asyncio.gather(_sections(api), api.alerts.get("/drills"))
    mine = [s for s in sections if user.can_act_for(s["code"])]
    return pages.render(
        request,
        "drills.html",
        {
            "sections": mine,
            "drills": drills,
            "values": values or {"recurrence": "none"},
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/drills", response_class=HTMLResponse, include_in_schema=False)
async def drills_page(request: Request, user: Coordinator) -> HTMLResponse:
    return await _form_page(request, Api(request, user), user)


@router.post("/drills", include_in_schema=False)
async def schedule(
    request: Request,
    user: Coordinator,
    sections: Annotated[list[str], Form(max_length=20)],
    day: Annotated[str, Form(max_length=10)] = "",
    at: Annotated[str, Form(max_length=5)] = "",
    recurrence: Annotated[str, Form(max_length=10)] = "none",
    rule: Annotated[str, Form(max_length=300)] = "",
    call_after: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    api = Api(request, user)
    known = {s["code"]: s for s in await _sections(api)}
    zone = known.get(sections[0], {}).get("timezone", "UTC") if sections else "UTC"
    values = {
        "sections": sections,
        "day": day,
        "at": at,
        "recurrence": recurrence,
        "rule": rule,
        "call_after": call_after,
    }
    minutes = call_after.strip()
    if minutes and not minutes.isdigit():
        # alerts checks the range; a word never reaches it
        errors = {
            "call_unanswered_after_min": pages.gettext(
                "Enter whole minutes from 1 to 120, or leave it empty.",
                pages.language_of(request),
            )
        }
        return await _form_page(request, api, user, values=values, errors=errors, status_code=422)
    try:
        starts_at = start_time(day, at, zone)
    except ValueError:
        errors = {
            "starts_at": pages.gettext(
                "Give a date and a time, or neither for now.", pages.language_of(request)
            )
        }
        return await _form_page(request, api, user, values=values, errors=errors, status_code=422)
    body: dict[str, Any] = {"sections": sections, "timezone": zone}
    if starts_at is not None:
        body["starts_at"] = starts_at
    chosen = rule.strip() if recurrence == "custom" else RECURRENCES.get(recurrence)
    if chosen:
        body["recurrence"] = chosen
    if minutes:
        body["call_unanswered_after_min"] = int(minutes)
    try:
        drill = await api.alerts.post("/drills", json=body)
    except UpstreamError as exc:
        if exc.status_code != 422:
            raise
        return await _form_page(
            request, api, user, values=values, errors=exc.field_errors(), status_code=422
        )
    pages.flash(request, N_("Drill scheduled."), "success")
    return RedirectResponse(f"/drills/{drill['id']}", status_code=303)


@router.get("/drills/{drill_id}", response_class=HTMLResponse, include_in_schema=False)
async def drill_page(request: Request, user: Coordinator, drill_id: uuid.UUID) -> HTMLResponse:
    api = Api(request, user)
    drill = await api.alerts.get(f"/drills/{drill_id}")
    attention: list[dict[str, Any]] = []
    for section in drill["sections"]:
        rows = await api.alerts.get("/drills/attention", params={"section": section, "last": 3})
        attention.extend(rows)

    async def named(row: dict[str, Any]) -> dict[str, Any]:
        # the registry names them (coordinators may see names); a member erased since
        # is shown by id only
        try:
            found = await api.members.get(f"/members/{row['member_id']}")
        except UpstreamError:
            found = {}
        return {**row, "name": found.get("full_name"), "phone": found.get("phone")}

    attention = list(await asyncio.gather(*(named(row) for row in attention[:200])))
    return pages.render(
        request,
        "drill.html",
        {"drill": drill, "attention": attention, "windows": WINDOWS},
    )


@router.post("/drills/{drill_id}/cancel", include_in_schema=False)
async def cancel(request: Request, user: Coordinator, drill_id: uuid.UUID) -> Response:
    await Api(request, user).alerts.post(f"/drills/{drill_id}/cancel")
    pages.flash(request, N_("Drill cancelled: no further occurrence will be sent."), "success")
    return RedirectResponse(f"/drills/{drill_id}", status_code=303)


@router.get("/readiness", response_class=HTMLResponse, include_in_schema=False)
async def readiness_page(request: Request, user: CurrentUser) -> HTMLResponse:
    api = Api(request, user)
    codes = sorted(user.sections)
    if user.is_admin:
        codes = sorted(s["code"] for s in await _sections(api))
    figures = await asyncio.gather(
        *(api.alerts.get("/readiness", params={"section": code}) for code in codes)
    )
    return pages.render(request, "readiness.html", {"figures": figures})
