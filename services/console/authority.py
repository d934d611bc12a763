"""The authority pages: the summaries of an authority's sections' emergencies (counts,
ETA bands, needed versus accepted; never a name, phone, member id or position) and its
webhook subscriptions.

- `GET /authority`: its sections' emergencies (dispatch `GET /summaries`), active first;
- `GET /authority/emergencies/{id}`: one summary, server-rendered (a refresh link works
  without JavaScript) and kept current by `static/authority.js`, which polls
  `GET /authority/emergencies/{id}/summary.json` every few seconds;
- `GET /authority/subscriptions`, `POST /authority/subscriptions` (create: the console
  draws the secret, shows it once on the answer page and keeps it nowhere),
  `POST /authority/subscriptions/{id}/delete`, `POST /authority/subscriptions/{id}/resume`.

Only authorities and admins reach these pages (403 otherwise); the data comes from
dispatch, which answers only for the caller's sections.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from services.console import pages
from services.console.session import User, language, role_required
from services.console.upstream import Api, UpstreamError

router = APIRouter()

#: an authority (or an admin, who may look at anything)
Authority = Annotated[User, role_required("authority", "admin")]

#: the counts an authority reads: everyone alerted, then where each of them stands now
#: (dispatch's `notified` and `delivered` are both still `no_answer`), the safety loop's
#: states among them
COUNT_ORDER = (
    "alerted",
    "accepted",
    "en_route",
    "on_scene",
    "released",
    "home_safe",
    "standby",
    "declined",
    "no_answer",
    "failed",
    "stood_down",
)
#: places taken: accepted, or further along the safety loop
FILLED = ("accepted", "en_route", "on_scene", "released", "home_safe")

#: "unknown": accepted without saying when
ETA_BANDS = ("0-10", "11-20", "21-30", "31+", "unknown")
#: how often the page's script asks for fresh counts
POLL_INTERVAL_S = 3


def summary_view(summary: dict[str, Any]) -> dict[str, Any]:
    """What the summary page and its script show, from dispatch's summary: counts only
    (whatever else dispatch might add, no field passes through unnamed)."""
    counts = dict(summary.get("counts") or {})
    # a summary published before the safety loop names on_scene `arrived`
    counts.setdefault("on_scene", counts.get("arrived", 0))
    bands = summary.get("eta_bands") or {}
    by_qualification = summary.get("by_qualification") or {}
    return {
        "emergency_id": str(summary.get("emergency_id", "")),
        "section": str(summary.get("section", "")),
        "drill": bool(summary.get("drill")),
        "needed": int(summary.get("needed") or 0),
        "accepted": sum(int(counts.get(name, 0)) for name in FILLED),
        "counts": {name: int(counts.get(name, 0)) for name in COUNT_ORDER},
        "eta_bands": {band: int(bands.get(band, 0)) for band in ETA_BANDS},
        "by_qualification": {
            str(code): sum(int((value or {}).get(name, 0)) for name in FILLED)
            for code, value in sorted(by_qualification.items())
        },
        "first_accept_seconds": summary.get("first_accept_seconds"),
        "updated_at": summary.get("updated_at"),
    }


@router.get("/authority", response_class=HTMLResponse, include_in_schema=False)
async def authority_home(request: Request, user: Authority) -> HTMLResponse:
    found = await Api(request, user).dispatch.get("/summaries", params={"limit": 100})
    emergencies = [{**e, "view": summary_view(e.get("summary") or {})} for e in found]
    return pages.render(request, "authority.html", {"emergencies": emergencies})


@router.get(
    "/authority/emergencies/{emergency_id}",
    response_class=HTMLResponse,
    include_in_schema=False,
)
async def authority_summary(
    request: Request, user: Authority, emergency_id: uuid.UUID
) -> HTMLResponse:
    api = Api(request, user)
    summary = await api.dispatch.get(f"/emergencies/{emergency_id}/summary")
    # the title and status come from the list of the caller's summaries (dispatch gives an
    # authority no other view of an emergency)
    listed = await api.dispatch.get("/summaries", params={"limit": 200})
    entry: dict[str, Any] = next((e for e in listed if e.get("id") == str(emergency_id)), {})
    return pages.render(
        request,
        "authority_summary.html",
        {
            "emergency": entry,
            "view": summary_view(summary),
            "poll_ms": POLL_INTERVAL_S * 1000,
        },
    )


@router.get("/authority/emergencies/{emergency_id}/summary.json", include_in_schema=False)
async def authority_summary_json(
    request: Request, user: Authority, emergency_id: uuid.UUID
) -> JSONResponse:
    summary = await Api(request, user).dispatch.get(f"/emergencies/{emergency_id}/summary")
    return JSONResponse(summary_view(summary), headers={"Cache-Control": "no-store"})


# --- webhook subscriptions ---------------------------------------------------------------


async def _subscriptions_page(
    request: Request,
    user: User,
    *,
    created: dict[str, Any] | None = None,
    secret: str = "",
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found = await Api(request, user).dispatch.get("/subscriptions")
    return pages.render(
        request,
        "authority_subscriptions.html",
        {
            "subscriptions": found,
            "sections": sorted(user.sections),
            "created": created,
            "secret": secret,
            "form": form or {},
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/authority/subscriptions", response_class=HTMLResponse, include_in_schema=False)
async def subscriptions_page(request: Request, user: Authority) -> HTMLResponse:
    return await _subscriptions_page(request, user)


@router.post("/authority/subscriptions", response_class=HTMLResponse, include_in_schema=False)
async def create_subscription(
    request: Request,
    user: Authority,
    section: Annotated[str, Form(max_length=16)] = "",
    url: Annotated[str, Form(max_length=2000)] = "",
) -> HTMLResponse:
    form = {"section": section, "url": url}
    lang = language(request)
    errors: dict[str, str] = {}
    if not section:
        errors["section"] = pages.gettext("Choose a section.", lang)
    if not url:
        errors["url"] = pages.gettext("Enter the address that receives the summaries.", lang)
    if errors:
        return await _subscriptions_page(
            request, user, form=form, errors=errors, status_code=status.HTTP_400_BAD_REQUEST
        )
    # the secret is drawn here, sent once to dispatch, shown once, and kept nowhere else
    secret = secrets.token_urlsafe(32)
    try:
        created = await Api(request, user).dispatch.post(
            "/subscriptions", json={"section": section, "url": url, "secret": secret}
        )
    except UpstreamError as exc:
        if exc.status_code not in (400, 409, 422):
            raise
        return await _subscriptions_page(
            request,
            user,
            form=form,
            errors=exc.field_errors() or {"": exc.message()},
            status_code=exc.status_code,
        )
    return await _subscriptions_page(
        request, user, created=created, secret=secret, status_code=status.HTTP_201_CREATED
    )


@router.post("/authority/subscriptions/{subscription_id}/delete", include_in_schema=False)
async def delete_subscription(
    request: Request, user: Authority, subscription_id: uuid.UUID
) -> Response:
    await Api(request, user).dispatch.delete(f"/subscriptions/{subscription_id}")
    pages.flash(request, pages.N_("The webhook was deleted."), "success")
    return RedirectResponse("/authority/subscriptions", status.HTTP_303_SEE_OTHER)


@router.post("/authority/subscriptions/{subscription_id}/resume", include_in_schema=False)
async def resume_subscription(
    request: Request, user: Authority, subscription_id: uuid.UUID
) -> Response:
    await Api(request, user).dispatch.post(f"/subscriptions/{subscription_id}/resume")
    pages.flash(request, pages.N_("The webhook was resumed."), "success")
    return RedirectResponse("/authority/subscriptions", status.HTTP_303_SEE_OTHER)
