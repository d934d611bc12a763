"""Members: search and filter, view and edit one member, suspend, erase (after a page that
names what goes).

Everything is read from and written to the members API as the signed-in user, so a
coordinator sees only their sections' members (another section's member is the API's
404) and an authority never gets here (403 from the role check, as from the API). The
edit form is one page: `form_to_patch` turns it into members' `PATCH` body (and an
availability change into its `PUT`), refusing what can be known here; members' 422 and
409 answers land next to the field they name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.console import pages
from services.console.pages import N_
from services.console.session import Coordinator, User
from services.console.upstream import Api, UpstreamError

router = APIRouter()

PAGE_SIZE = 50
STATUSES = ("active", "suspended", "expelled")
AVAILABILITIES = ("available", "unavailable")
#: the languages members' API accepts, in the order the form lists them
MEMBER_LANGUAGES = ("en", "fr", "it", "sq", "de", "es")
EXPIRING_CHOICES = (30, 60, 90)


def _text(form: Mapping[str, Any], name: str, limit: int = 400) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def search_params(
    *,
    section: str,
    qualification: str,
    status: str,
    availability: str,
    expiring: str,
    q: str,
    page: int,
) -> dict[str, Any]:
    """The members API's query for the list page's filters (empty ones left out)."""
    params: dict[str, Any] = {"limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE}
    for name, value in (
        ("section", section),
        ("qualification", qualification),
        ("status", status),
        ("availability", availability),
        ("q", q),
    ):
        if value:
            params[name] = value
    if expiring:
        params["expiring_within_days"] = expiring
    return params


def form_to_patch(
    form: Mapping[str, Any], member: Mapping[str, Any], timezone: str
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, str]]:
    """(members' PATCH body, the availability PUT body or None when unchanged,
    {field: message}) for the edit form. Messages are msgids, translated when shown."""
    errors: dict[str, str] = {}
    patch: dict[str, Any] = {
        "full_name": _text(form, "full_name", 200),
        "phone": _text(form, "phone", 40),
        "email": _text(form, "email", 320) or None,
        "language": _text(form, "language", 8),
        "status": _text(form, "status", 16),
        "consent": {"alerts": _text(form, "consent_alerts") == "yes"},
    }
    if not patch["full_name"]:
        errors["full_name"] = N_("Enter the member's name.")
    if not patch["phone"]:
        errors["phone"] = N_("Enter a mobile phone number.")
    if patch["language"] not in MEMBER_LANGUAGES:
        errors["language"] = N_("Choose a language.")
    if patch["status"] not in STATUSES:
        errors["status"] = N_("Choose a status.")
    start, end = _text(form, "quiet_start", 5), _text(form, "quiet_end", 5)
    if start and end:
        patch["quiet_hours"] = {"start": start, "end": end}
    elif start or end:
        errors["quiet_hours"] = N_("Give both ends of the quiet hours, or neither.")
    else:
        patch["quiet_hours"] = None

    availability = _text(form, "availability", 16)
    until_text = _text(form, "unavailable_until", 32)
    put: dict[str, Any] | None = None
    if availability not in AVAILABILITIES:
        errors["availability"] = N_("Choose available or unavailable.")
    else:
        until: str | None = None
        if until_text and availability == "unavailable":
            try:
                local = datetime.fromisoformat(until_text)
                zone = ZoneInfo(timezone)
            except (ValueError, ZoneInfoNotFoundError):
                errors["unavailable_until"] = N_("Give a date and time.")
            else:
                until = local.replace(tzinfo=zone).isoformat()
        known_until = member.get("unavailable_until")
        changed = availability != member.get("availability") or (
            until is not None and until != known_until
        )
        if availability == "unavailable" and not until_text and known_until:
            changed = True  # "until further notice" replaces a set end
        if changed:
            put = {"availability": availability}
            if until is not None:
                put["until"] = until
    return patch, put, errors


def _local_until(member: Mapping[str, Any], timezone: str) -> str:
    """`unavailable_until` as the form's datetime-local value in the section's zone."""
    value = member.get("unavailable_until")
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value)).astimezone(ZoneInfo(timezone))
    except (ValueError, ZoneInfoNotFoundError):
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M")


async def _qualification_names(api: Api) -> dict[str, str]:
    found = await api.members.get("/qualifications")
    return {q["code"]: q["name"] for q in found}


async def _visible_sections(api: Api, user: User) -> list[str]:
    if not user.is_admin:
        return sorted(user.sections)
    return [s["code"] for s in await api.members.get("/sections")]


@router.get("/members", response_class=HTMLResponse, include_in_schema=False)
async def members_page(
    request: Request,
    user: Coordinator,
    section: Annotated[str, Query(max_length=16)] = "",
    qualification: Annotated[str, Query(max_length=32)] = "",
    member_status: Annotated[str, Query(alias="status", max_length=16)] = "",
    availability: Annotated[str, Query(max_length=16)] = "",
    expiring: Annotated[str, Query(pattern=r"^(|\d{1,4})$")] = "",
    q: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    api = Api(request, user)
    filters = {
        "section": section,
        "qualification": qualification,
        "status": member_status,
        "availability": availability,
        "expiring": expiring,
        "q": q,
    }
    errors: dict[str, str] = {}
    found: dict[str, Any] = {"items": [], "total": 0}
    try:
        found = await api.members.get("/members", params=search_params(**filters, page=page))
    except UpstreamError as exc:
        if exc.status_code != 422:
            raise
        errors = exc.field_errors()
        if "expiring_within_days" in errors:
            errors["expiring"] = errors.pop("expiring_within_days")
    total = int(found["total"])
    last_page = max(1, -(-total // PAGE_SIZE))
    kept = {k: v for k, v in filters.items() if v}

    def page_url(number: int) -> str:
        return "/members?" + urlencode({**kept, "page": number})

    return pages.render(
        request,
        "members.html",
        {
            "members": found["items"],
            "total": total,
            "page": page,
            "first_row": (page - 1) * PAGE_SIZE + 1 if total else 0,
            "last_row": min(page * PAGE_SIZE, total),
            "previous_url": page_url(page - 1) if page > 1 else None,
            "next_url": page_url(page + 1) if page < last_page else None,
            "filters": filters,
            "errors": errors,
            "sections": await _visible_sections(api, user),
            "qualifications": await _qualification_names(api),
            "statuses": STATUSES,
            "availabilities": AVAILABILITIES,
            "expiring_choices": EXPIRING_CHOICES,
            "today": datetime.now().date().isoformat(),
        },
        status_code=422 if errors else 200,
    )


async def _section_timezone(api: Api, code: str) -> str:
    try:
        section = await api.members.get(f"/sections/{code}")
    except UpstreamError:
        return "UTC"
    return str(section.get("timezone") or "UTC")


async def _member_page(
    request: Request,
    api: Api,
    member: dict[str, Any],
    *,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    timezone = await _section_timezone(api, member["section"])
    quiet = member.get("quiet_hours") or {}
    shown = {
        "full_name": member["full_name"],
        "phone": member["phone"],
        "email": member.get("email") or "",
        "language": member["language"],
        "status": member["status"],
        "quiet_start": str(quiet.get("start", ""))[:5],
        "quiet_end": str(quiet.get("end", ""))[:5],
        "availability": member["availability"],
        "unavailable_until": _local_until(member, timezone),
        "consent_alerts": "yes" if member["consent"]["alerts"] else "",
        **(values or {}),
    }
    return pages.render(
        request,
        "members_detail.html",
        {
            "member": member,
            "values": shown,
            "errors": dict(errors or {}),
            "timezone": timezone,
            "qualifications": await _qualification_names(api),
            "statuses": STATUSES,
            "availabilities": AVAILABILITIES,
            "languages": MEMBER_LANGUAGES,
            "today": datetime.now().date().isoformat(),
        },
        status_code=status_code,
    )


def _translated(errors: Mapping[str, str], request: Request) -> dict[str, str]:
    language = pages.language_of(request)
    return {k: pages.gettext(v, language) for k, v in errors.items()}


@router.get("/members/{member_id:uuid}", response_class=HTMLResponse, include_in_schema=False)
async def member_page(request: Request, member_id: UUID, user: Coordinator) -> HTMLResponse:
    api = Api(request, user)
    member = await api.members.get(f"/members/{member_id}")
    return await _member_page(request, api, member)


@router.post("/members/{member_id:uuid}", include_in_schema=False)
async def save_member(request: Request, member_id: UUID, user: Coordinator) -> Response:
    api = Api(request, user)
    member = await api.members.get(f"/members/{member_id}")
    form = await request.form()
    timezone = await _section_timezone(api, member["section"])
    patch, availability, errors = form_to_patch(form, member, timezone)
    values = {name: _text(form, name) for name in form if name != "csrf_token"}
    values.setdefault("consent_alerts", "")
    if errors:
        return await _member_page(
            request,
            api,
            member,
            errors=_translated(errors, request),
            values=values,
            status_code=422,
        )
    try:
        await api.members.patch(f"/members/{member_id}", json=patch)
        if availability is not None:
            await api.members.put(f"/members/{member_id}/availability", json=availability)
    except UpstreamError as exc:
        if exc.status_code == 409:
            found = {"phone": exc.message()}
        elif exc.status_code == 422:
            found = exc.field_errors()
            if "until" in found:
                found["unavailable_until"] = found.pop("until")
        else:
            raise
        return await _member_page(
            request, api, member, errors=found, values=values, status_code=exc.status_code
        )
    pages.flash(request, N_("The member's details are saved."), "success")
    return RedirectResponse(f"/members/{member_id}", status.HTTP_303_SEE_OTHER)


@router.post("/members/{member_id:uuid}/suspend", include_in_schema=False)
async def suspend_member(request: Request, member_id: UUID, user: Coordinator) -> Response:
    await Api(request, user).members.patch(f"/members/{member_id}", json={"status": "suspended"})
    pages.flash(request, N_("The member is suspended: they will not be alerted."), "success")
    return RedirectResponse(f"/members/{member_id}", status.HTTP_303_SEE_OTHER)


@router.post("/members/{member_id:uuid}/qualifications", include_in_schema=False)
async def add_qualification(request: Request, member_id: UUID, user: Coordinator) -> Response:
    api = Api(request, user)
    form = await request.form()
    body: dict[str, Any] = {"code": _text(form, "code", 32)}
    for name in ("issued_at", "expires_at"):
        if _text(form, name, 10):
            body[name] = _text(form, name, 10)
    try:
        await api.members.post(f"/members/{member_id}/qualifications", json=body)
    except UpstreamError as exc:
        if exc.status_code != 422:
            raise
        member = await api.members.get(f"/members/{member_id}")
        errors = {f"qualification_{k or 'code'}": v for k, v in exc.field_errors().items()}
        return await _member_page(request, api, member, errors=errors, status_code=422)
    pages.flash(request, N_("The qualification is saved."), "success")
    return RedirectResponse(f"/members/{member_id}#qualifications", status.HTTP_303_SEE_OTHER)


@router.post("/members/{member_id:uuid}/qualifications/{code}/remove", include_in_schema=False)
async def remove_qualification(
    request: Request,
    member_id: UUID,
    code: Annotated[str, Path(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")],
    user: Coordinator,
) -> Response:
    await Api(request, user).members.delete(f"/members/{member_id}/qualifications/{code}")
    pages.flash(request, N_("The qualification is removed."), "success")
    return RedirectResponse(f"/members/{member_id}#qualifications", status.HTTP_303_SEE_OTHER)


@router.get("/members/{member_id:uuid}/erase", response_class=HTMLResponse, include_in_schema=False)
async def erase_page(request: Request, member_id: UUID, user: Coordinator) -> HTMLResponse:
    member = await Api(request, user).members.get(f"/members/{member_id}")
    return pages.render(request, "members_erase.html", {"member": member})


@router.post("/members/{member_id:uuid}/erase", include_in_schema=False)
async def erase_member(request: Request, member_id: UUID, user: Coordinator) -> Response:
    api = Api(request, user)
    form = await request.form()
    if _text(form, "confirm") != "erase":
        member = await api.members.get(f"/members/{member_id}")
        return pages.render(
            request,
            "members_erase.html",
            {
                "member": member,
                "errors": {
                    "confirm": pages.gettext(
                        "Tick the box to confirm the erasure.", pages.language_of(request)
                    )
                },
            },
            status_code=400,
        )
    await api.members.delete(f"/members/{member_id}")
    pages.flash(request, N_("The member's personal data is erased."), "success")
    return RedirectResponse("/members", status.HTTP_303_SEE_OTHER)
