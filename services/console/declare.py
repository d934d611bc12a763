"""Declaring an emergency: the form, the reach preview, the confirmation step, and the
answer (active → the live board; held by the two-person rule → says so and who approves).

The area is a circle (centre and radius) or a polygon (one "lat, lon" vertex per line);
the map (static/declare.js) only fills those same fields, so typing them is the no-JS
path. `parse_declaration` turns the form into dispatch's `POST /emergencies` body and
refuses, naming the field, what can be known here: a missing title, members needed 0,
radius 0, a polygon that crosses itself, a qualification members does not know. Dispatch
validates again and its 422 lands next to the field it names; nothing is published
until dispatch accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from shapely.geometry import Polygon
from shapely.validation import explain_validity

from services.console import pages
from services.console.pages import N_
from services.console.session import Coordinator, User
from services.console.upstream import Api, UpstreamError
from shared.events.emergencies import Category, Severity, Urgency

router = APIRouter()

CATEGORIES: tuple[str, ...] = get_args(Category)
SEVERITIES: tuple[str, ...] = get_args(Severity)
URGENCIES: tuple[str, ...] = get_args(Urgency)
SECTION_CODE = re.compile(r"^[A-Z0-9_-]{1,16}$")
MAX_POLYGON_VERTICES = 200


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _list(form: Any, name: str) -> list[str]:
    values = form.getlist(name) if hasattr(form, "getlist") else form.get(name, [])
    if isinstance(values, str):
        values = [values]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def parse_polygon(
    text: str, _: Callable[[str], str] = str
) -> tuple[dict[str, Any] | None, str | None]:
    """One "lat, lon" vertex per line → a closed GeoJSON Polygon ([lon, lat] pairs), or
    the reason it is refused."""
    vertices: list[tuple[float, float]] = []
    for number, line in enumerate(text.replace(";", "\n").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        try:
            lat, lon = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            return None, _("Each line needs a latitude and a longitude: 40.72, 19.55")
        if len(parts) != 2 or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return None, _("Each line needs a latitude and a longitude: 40.72, 19.55")
        del number
        vertices.append((lat, lon))
    if len(vertices) > 1 and vertices[0] == vertices[-1]:
        vertices.pop()
    if len(set(vertices)) < 3:
        return None, _("A polygon needs at least 3 different points.")
    if len(vertices) > MAX_POLYGON_VERTICES:
        return None, _("A polygon may have at most 200 points.")
    ring = [[lon, lat] for lat, lon in vertices] + [[vertices[0][1], vertices[0][0]]]
    shape = Polygon(ring)
    if not shape.is_valid:
        if "Self-intersection" in explain_validity(shape):
            return None, _("The polygon crosses itself: draw its sides without crossings.")
        return None, _("The polygon is not valid: draw its sides without crossings.")
    if shape.area == 0:
        return None, _("The polygon has no area.")
    return {"type": "Polygon", "coordinates": [ring]}, None


def _number(text: str, kind: type[int] | type[float]) -> int | float | None:
    try:
        return kind(text)
    except ValueError:
        return None


def parse_declaration(
    form: Any,
    known_qualifications: Sequence[str],
    sections: Sequence[str] | None,
    _: Callable[[str], str] = str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """(dispatch's body, {field: message}); the body is only sendable when no errors.
    `sections`: the sections the user may declare for (None: any, for an admin); `_`
    translates the messages."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    section = _text(form, "section").upper()
    if not SECTION_CODE.match(section):
        errors["section"] = _("Choose a section.")
    elif sections is not None and section not in sections:
        errors["section"] = _("You are not a coordinator of this section.")
    body["section"] = section
    body["title"] = _text(form, "title")
    if len(body["title"]) < 3:
        errors["title"] = _("Give a title of at least 3 characters.")
    body["description"] = _text(form, "description")
    for name, allowed, default in (
        ("category", CATEGORIES, "Rescue"),
        ("severity", SEVERITIES, "Severe"),
        ("urgency", URGENCIES, "Immediate"),
    ):
        value = _text(form, name) or default
        if value not in allowed:
            errors[name] = _("Choose one of the listed values.")
        body[name] = value
    body["drill"] = _text(form, "drill") in ("on", "true", "1", "yes")

    qualifications = sorted(set(_list(form, "required_qualifications")))
    unknown = [q for q in qualifications if q not in known_qualifications]
    if unknown:
        errors["required_qualifications"] = _("Unknown qualification: %(codes)s") % {
            "codes": ", ".join(unknown)
        }
    body["required_qualifications"] = qualifications

    needed = _number(_text(form, "members_needed"), int)
    if needed is None or needed < 1:
        errors["members_needed"] = _("At least 1 member must be needed.")
    body["members_needed"] = needed

    assisting = sorted(
        {c.upper() for c in re.split(r"[,\s]+", _text(form, "assisting_sections")) if c}
    )
    bad = [c for c in assisting if not SECTION_CODE.match(c)]
    if bad:
        errors["assisting_sections"] = _("Use section codes such as AL, separated by commas.")
    body["assisting_sections"] = [c for c in assisting if c != section]

    if _text(form, "shape") == "polygon":
        polygon, problem = parse_polygon(_text(form, "polygon"), _)
        if problem:
            errors["area.polygon"] = problem
        body["area"] = {"polygon": polygon}
    else:
        lat = _number(_text(form, "lat"), float)
        lon = _number(_text(form, "lon"), float)
        radius = _number(_text(form, "radius_m"), int)
        if lat is None or not -90 <= lat <= 90:
            errors["area.lat"] = _("Give the centre's latitude (-90 to 90), or click the map.")
        if lon is None or not -180 <= lon <= 180:
            errors["area.lon"] = _("Give the centre's longitude (-180 to 180), or click the map.")
        if radius is None or radius <= 0:
            errors["area.radius_m"] = _("The radius must be more than 0 metres.")
        body["area"] = {"lat": lat, "lon": lon, "radius_m": radius}
    return body, errors


def preview_body(declaration: Mapping[str, Any]) -> dict[str, Any]:
    """What alerts' `POST /reach/preview` takes, from a declaration or an emergency."""
    return {
        "section": declaration["section"],
        "area": declaration["area"],
        "required_qualifications": declaration.get("required_qualifications", []),
        "assisting_sections": declaration.get("assisting_sections", []),
        "severity": declaration.get("severity", "Severe"),
        "members_needed": declaration.get("members_needed") or 1,
    }


async def reach_preview(api: Api, declaration: Mapping[str, Any]) -> dict[str, Any] | None:
    """Alerts' reach preview, or None when it cannot be had (the page says "unavailable":
    a missing preview never stops a declaration)."""
    try:
        answer = await api.alerts.post("/reach/preview", json=preview_body(declaration))
    except UpstreamError:
        return None
    return answer if isinstance(answer, dict) and "eligible" in answer else None


async def form_choices(api: Api, user: User) -> dict[str, Any]:
    qualifications = await api.members.get("/qualifications")
    if user.is_admin:
        sections = [s["code"] for s in await api.members.get("/sections")]
    else:
        sections = sorted(user.sections)
    return {
        "qualifications": qualifications,
        "sections": sections,
        "categories": CATEGORIES,
        "severities": SEVERITIES,
        "urgencies": URGENCIES,
    }


def _form_values(form: Any) -> dict[str, Any]:
    values: dict[str, Any] = {k: v for k, v in form.items() if k != "csrf_token"}
    values["required_qualifications"] = _list(form, "required_qualifications")
    return values


def render_form(
    request: Request,
    choices: dict[str, Any],
    values: Mapping[str, Any],
    errors: Mapping[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    return pages.render(
        request,
        "declare.html",
        {**choices, "values": values, "errors": errors},
        status_code=status_code,
    )


def map_centre(value: str) -> str:
    """`?centre=lat,lon` (where the map opens, nothing drawn), if it is one."""
    parts = value.split(",")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        return ""
    return f"{lat},{lon}" if len(parts) == 2 and -90 <= lat <= 90 and -180 <= lon <= 180 else ""


@router.get("/emergencies/new", response_class=HTMLResponse, include_in_schema=False)
async def declare_page(request: Request, user: Coordinator, centre: str = "") -> HTMLResponse:
    api = Api(request, user)
    choices = await form_choices(api, user)
    defaults: dict[str, Any] = {
        "section": choices["sections"][0] if len(choices["sections"]) == 1 else "",
        "severity": "Severe",
        "urgency": "Immediate",
        "category": "Rescue",
        "members_needed": "5",
        "radius_m": "2000",
        "shape": "circle",
        "required_qualifications": [],
    }
    return pages.render(
        request,
        "declare.html",
        {**choices, "values": defaults, "errors": {}, "centre": map_centre(centre[:60])},
    )


@router.post("/emergencies/new", include_in_schema=False)
async def declare(request: Request, user: Coordinator) -> Response:
    """`step=review` shows the confirmation page; `step=send` declares; `step=edit`
    goes back to the form with what was typed."""
    form = await request.form()
    api = Api(request, user)
    choices = await form_choices(api, user)
    known = [q["code"] for q in choices["qualifications"]]
    lang = pages.language_of(request)
    body, errors = parse_declaration(
        form,
        known,
        None if user.is_admin else list(user.sections),
        lambda message: pages.gettext(message, lang),
    )
    values = _form_values(form)
    step = _text(form, "step")
    if errors or step == "edit":
        return render_form(request, choices, values, errors, 200 if not errors else 422)
    if step != "send":
        preview = await reach_preview(api, body)
        return pages.render(
            request,
            "declare_confirm.html",
            {"body": body, "values": values, "preview": preview, "choices": choices},
        )
    try:
        created = await api.dispatch.post("/emergencies", json=body)
    except UpstreamError as exc:
        if exc.status_code in (400, 403, 409, 422):
            return render_form(request, choices, values, exc.field_errors(), 422)
        raise
    if created["status"] == "pending_approval":
        return pages.render(request, "declare_held.html", {"emergency": created})
    pages.flash(request, N_("Emergency declared: members are being alerted."), "success")
    return RedirectResponse(f"/emergencies/{created['id']}", status_code=303)


@router.post("/emergencies/preview", include_in_schema=False)
async def preview(request: Request, user: Coordinator) -> JSONResponse:
    """The reach preview for the declare page's script: the form as JSON in, alerts'
    counts out, or `{"available": false}` (with the field errors when the form is not
    yet complete)."""
    try:
        payload = await request.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return JSONResponse({"detail": "a JSON object is expected"}, status_code=400)
    api = Api(request, user)
    known = [q["code"] for q in await api.members.get("/qualifications")]
    lang = pages.language_of(request)
    body, errors = parse_declaration(
        _JsonForm(payload),
        known,
        None if user.is_admin else list(user.sections),
        lambda message: pages.gettext(message, lang),
    )
    # the preview only needs the area and who: a title can come later
    relevant = {k: v for k, v in errors.items() if k not in ("title", "description")}
    if relevant:
        return JSONResponse({"available": False, "errors": relevant})
    counts = await reach_preview(api, body)
    if counts is None:
        return JSONResponse({"available": False})
    return JSONResponse({"available": True, **counts})


class _JsonForm(dict[str, Any]):
    """A JSON object read like a form (lists under `getlist`)."""

    def getlist(self, name: str) -> list[Any]:
        value = self.get(name, [])
        return value if isinstance(value, list) else [value]
