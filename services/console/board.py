"""The live board of one emergency: counts, the members' rows (status, ETA, distance,
answered time, the channel of their last word, the channel ladder's last step, the
overdue flag), the map with the area and the distance bands (never a member's
position), waves so far and the next one due, the latest roll call (who has not
confirmed), and the coordinator's actions: update the area or members needed, escalate
now, close, cancel, false alarm; on the safety loop, set a member's state (per-row
buttons), release everyone on scene, start a roll call. Also the audit trail.

The page is complete without JavaScript; static/board.js then keeps it live from
`GET /emergencies/{id}/stream`, which proxies dispatch's Server-Sent Events: the console
takes a single-use stream ticket with the user's token and opens dispatch's stream with
it, so the browser never holds a token.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from services.console import pages
from services.console.declare import parse_polygon
from services.console.pages import N_
from services.console.session import Coordinator
from services.console.upstream import Api, UpstreamError

router = APIRouter()

#: statuses in the order the list shows them: people there or coming first
STATUS_ORDER = ("on_scene", "en_route", "accepted", "standby", "released", "delivered",
                "notified", "declined", "failed", "stood_down", "home_safe")  # fmt: skip
#: the safety loop, in order; a member in it holds a place
SAFETY_STATES = ("en_route", "on_scene", "released", "home_safe")
#: the states a coordinator may set from each status (forward only, as dispatch checks)
NEXT_STATES: dict[str, tuple[str, ...]] = {
    "accepted": SAFETY_STATES,
    "standby": SAFETY_STATES,
    "en_route": ("on_scene", "released", "home_safe"),
    "on_scene": ("released", "home_safe"),
    "released": ("home_safe",),
}
#: the distance bands of the map and their upper bounds in metres
BANDS_M = (500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
#: what members receive when an emergency is cancelled as a false alarm (alerts sends it
#: in each member's language; this is the English text)
CORRECTION_TEXT = "{drill}MUSTER CORRECTION: {title} was a false alarm. Do not go."


def board_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The board's counts. Every row is in exactly one of accepted, en_route, on_scene,
    released, home_safe, standby, declined, no_answer (notified or delivered), failed,
    stood_down; `delivered` counts the rows whose message reached the phone (delivered,
    or answered since); `filled` the places taken (accepted or on the safety loop);
    `overdue` the released members flagged overdue."""
    rows = list(rows)
    statuses = Counter(str(row.get("status")) for row in rows)
    alerted = sum(statuses.values())
    return {
        "alerted": alerted,
        "delivered": alerted - statuses["notified"] - statuses["failed"],
        "filled": statuses["accepted"] + sum(statuses[s] for s in SAFETY_STATES),
        "accepted": statuses["accepted"],
        **{state: statuses[state] for state in SAFETY_STATES},
        "overdue": sum(1 for row in rows if row.get("overdue")),
        "standby": statuses["standby"],
        "declined": statuses["declined"],
        "no_answer": statuses["notified"] + statuses["delivered"],
        "failed": statuses["failed"],
        "stood_down": statuses["stood_down"],
    }


def ordered_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """People arriving or coming first (soonest ETA first), then the rest by status."""

    def key(row: Mapping[str, Any]) -> tuple[int, float, str]:
        status = str(row.get("status"))
        rank = STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)
        eta = row.get("eta_minutes")
        return rank, float(eta) if isinstance(eta, int | float) else 1e9, str(row.get("member_id"))

    return sorted(rows, key=key)


def distance_bands(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """How many alerted members are within each band of the area's centre (a band, not a
    position: the board never shows where a member lives)."""
    counts = Counter[int]()
    for row in rows:
        distance = row.get("distance_m")
        if not isinstance(distance, int | float):
            continue
        band = next((b for b in BANDS_M if distance <= b), BANDS_M[-1])
        counts[band] += 1
    return [{"up_to_m": band, "members": counts[band]} for band in BANDS_M if counts[band]]


async def _board_state(api: Api, emergency_id: uuid.UUID) -> dict[str, Any]:
    base = f"/emergencies/{emergency_id}"
    emergency, board, waves = await asyncio.gather(
        api.dispatch.get(base), api.dispatch.get(f"{base}/board"), api.dispatch.get(f"{base}/waves")
    )
    return {"emergency": emergency, "board": board, "waves": waves}


def _render_board(
    request: Request,
    state: Mapping[str, Any],
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    rows = state["board"]["rows"]
    emergency = state["emergency"]
    counts = board_counts(rows)
    return pages.render(
        request,
        "board.html",
        {
            **state,
            "rows": ordered_rows(rows),
            "counts": counts,
            "filled": counts["filled"],
            "next_states": NEXT_STATES,
            "roll_call": state["board"].get("roll_call"),
            "bands": distance_bands(rows),
            "errors": errors or {},
            "correction": CORRECTION_TEXT.format(
                drill="DRILL " if emergency["drill"] else "", title=emergency["title"]
            ),
        },
        status_code=status_code,
    )


@router.get("/emergencies/{emergency_id}", response_class=HTMLResponse, include_in_schema=False)
async def board_page(request: Request, user: Coordinator, emergency_id: uuid.UUID) -> Response:
    state = await _board_state(Api(request, user), emergency_id)
    return _render_board(request, state)


@router.get("/emergencies/{emergency_id}/stream", include_in_schema=False)
async def board_stream(request: Request, user: Coordinator, emergency_id: uuid.UUID) -> Response:
    """Dispatch's SSE stream, passed through byte for byte (`board` snapshot, then `row`
    events, and its keep-alive pings).

    When dispatch ends its stream (it cuts off a console that fell behind) or loses it
    (a restart), this one ends too, cleanly: board.js then reconnects, and the new
    stream's first event is the whole board, which replaces every row it had."""
    api = Api(request, user)
    base = f"/emergencies/{emergency_id}"
    ticket = await api.dispatch.post(f"{base}/stream-ticket")
    upstream = api.dispatch.stream("GET", f"{base}/stream", params={"ticket": ticket["ticket"]})
    response = await upstream.__aenter__()

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            return  # dispatch went away mid-stream: end ours, the browser reconnects
        finally:
            await upstream.__aexit__(None, None, None)

    return StreamingResponse(
        relay(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/emergencies/{emergency_id}/update", include_in_schema=False)
async def update(
    request: Request,
    user: Coordinator,
    emergency_id: uuid.UUID,
    members_needed: Annotated[str, Form(max_length=10)] = "",
    shape: Annotated[str, Form(max_length=10)] = "circle",
    lat: Annotated[str, Form(max_length=30)] = "",
    lon: Annotated[str, Form(max_length=30)] = "",
    radius_m: Annotated[str, Form(max_length=12)] = "",
    polygon: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    api = Api(request, user)
    lang = pages.language_of(request)
    patch, errors = update_patch(
        members_needed, shape, lat, lon, radius_m, polygon,
        lambda message: pages.gettext(message, lang),
    )  # fmt: skip
    if not errors and patch:
        try:
            await api.dispatch.patch(f"/emergencies/{emergency_id}", json=patch)
        except UpstreamError as exc:
            if exc.status_code not in (403, 409, 422):
                raise
            errors = exc.field_errors()
    if errors:
        state = await _board_state(api, emergency_id)
        return _render_board(request, state, errors, 422)
    if patch:
        pages.flash(request, N_("The emergency was updated."), "success")
    return RedirectResponse(f"/emergencies/{emergency_id}", status_code=303)


def update_patch(
    members_needed: str,
    shape: str,
    lat: str,
    lon: str,
    radius_m: str,
    polygon: str,
    _: Any = str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Dispatch's PATCH body from the board's update form (only what was filled in)."""
    patch: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if members_needed.strip():
        try:
            needed = int(members_needed)
        except ValueError:
            needed = 0
        if needed < 1:
            errors["members_needed"] = _("At least 1 member must be needed.")
        patch["members_needed"] = needed
    if shape == "polygon" and polygon.strip():
        area, problem = parse_polygon(polygon, _)
        if problem:
            errors["area.polygon"] = problem
        patch["area"] = {"polygon": area}
    elif lat.strip() or lon.strip() or radius_m.strip():
        try:
            circle = {"lat": float(lat), "lon": float(lon), "radius_m": int(radius_m)}
        except ValueError:
            errors["area"] = _("Give the centre's latitude, longitude and the radius in metres.")
        else:
            if circle["radius_m"] <= 0:
                errors["area.radius_m"] = _("The radius must be more than 0 metres.")
            patch["area"] = circle
    return patch, errors


@router.post("/emergencies/{emergency_id}/escalate", include_in_schema=False)
async def escalate(request: Request, user: Coordinator, emergency_id: uuid.UUID) -> Response:
    api = Api(request, user)
    try:
        answer = await api.dispatch.post(f"/emergencies/{emergency_id}/escalate")
    except UpstreamError as exc:
        if exc.status_code != 409:
            raise
        pages.flash(
            request,
            N_("No further wave can be sent: the plan is used up or the emergency is not active."),
            "error",
        )
    else:
        if answer.get("outcome") == "escalated":
            pages.flash(request, N_("The next wave is being sent."), "success")
        else:
            pages.flash(request, N_("No wave was sent: enough members have accepted."), "info")
    return RedirectResponse(f"/emergencies/{emergency_id}", status_code=303)


@router.post("/emergencies/{emergency_id}/responders/{member_id}", include_in_schema=False)
async def set_responder_status(
    request: Request,
    user: Coordinator,
    emergency_id: uuid.UUID,
    member_id: uuid.UUID,
    status: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """A row's state button: dispatch checks the move (forward only) and publishes it."""
    if status not in SAFETY_STATES:
        state = await _board_state(Api(request, user), emergency_id)
        errors = {"status": pages.gettext("Choose en route, on scene, released or home safe.",
                                          pages.language_of(request))}  # fmt: skip
        return _render_board(request, state, errors, 422)
    try:
        await Api(request, user).dispatch.post(
            f"/emergencies/{emergency_id}/responders/{member_id}/status", json={"status": status}
        )
    except UpstreamError as exc:
        if exc.status_code not in (404, 409):
            raise
        pages.flash(
            request, N_("That member's state cannot be set so: it may have changed."), "error"
        )
    else:
        pages.flash(request, N_("The member's state was set."), "success")
    return RedirectResponse(f"/emergencies/{emergency_id}#rows-title", status_code=303)


@router.post("/emergencies/{emergency_id}/release", include_in_schema=False)
async def release_all(request: Request, user: Coordinator, emergency_id: uuid.UUID) -> Response:
    answer = await Api(request, user).dispatch.post(f"/emergencies/{emergency_id}/release")
    if answer.get("released"):
        pages.flash(request, N_("Everyone on scene is released."), "success")
    else:
        pages.flash(request, N_("Nobody is on scene."), "info")
    return RedirectResponse(f"/emergencies/{emergency_id}", status_code=303)


@router.post("/emergencies/{emergency_id}/roll-call", include_in_schema=False)
async def roll_call(request: Request, user: Coordinator, emergency_id: uuid.UUID) -> Response:
    try:
        await Api(request, user).dispatch.post(f"/emergencies/{emergency_id}/roll-calls")
    except UpstreamError as exc:
        if exc.status_code != 409:
            raise
        pages.flash(request, N_("Nobody is on scene: there is nobody to ask."), "error")
    else:
        pages.flash(
            request, N_("Roll call sent: every member on scene is asked to reply OK."), "success"
        )
    return RedirectResponse(f"/emergencies/{emergency_id}#roll-call-title", status_code=303)


@router.get(
    "/emergencies/{emergency_id}/confirm", response_class=HTMLResponse, include_in_schema=False
)
async def confirm_page(
    request: Request,
    user: Coordinator,
    emergency_id: uuid.UUID,
    action: Annotated[str, Query(pattern="^(close|cancel|false_alarm)$")],
) -> HTMLResponse:
    """The confirmation step of close, cancel and false alarm: what will happen, and for
    a false alarm the correction members will receive, before anything is sent."""
    emergency = await Api(request, user).dispatch.get(f"/emergencies/{emergency_id}")
    return pages.render(
        request,
        "board_confirm.html",
        {
            "emergency": emergency,
            "action": action,
            "correction": CORRECTION_TEXT.format(
                drill="DRILL " if emergency["drill"] else "", title=emergency["title"]
            ),
        },
    )


@router.post("/emergencies/{emergency_id}/close", include_in_schema=False)
async def close(
    request: Request,
    user: Coordinator,
    emergency_id: uuid.UUID,
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    await Api(request, user).dispatch.post(
        f"/emergencies/{emergency_id}/close", json={"note": note.strip()}
    )
    pages.flash(request, N_("Closed: every alerted member is told to stand down."), "success")
    return RedirectResponse(f"/emergencies/{emergency_id}", status_code=303)


@router.post("/emergencies/{emergency_id}/cancel", include_in_schema=False)
async def cancel(
    request: Request,
    user: Coordinator,
    emergency_id: uuid.UUID,
    false_alarm: Annotated[str, Form(max_length=5)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    is_false_alarm = false_alarm in ("1", "true", "on")
    await Api(request, user).dispatch.post(
        f"/emergencies/{emergency_id}/cancel",
        json={"false_alarm": is_false_alarm, "note": note.strip()},
    )
    pages.flash(
        request,
        N_("Cancelled as a false alarm: every alerted member gets the correction.")
        if is_false_alarm
        else N_("Cancelled: every alerted member is told to stand down."),
        "success",
    )
    return RedirectResponse(f"/emergencies/{emergency_id}", status_code=303)


@router.get(
    "/emergencies/{emergency_id}/audit", response_class=HTMLResponse, include_in_schema=False
)
async def audit_page(request: Request, user: Coordinator, emergency_id: uuid.UUID) -> Response:
    api = Api(request, user)
    emergency, entries = await asyncio.gather(
        api.dispatch.get(f"/emergencies/{emergency_id}"),
        api.dispatch.get(f"/emergencies/{emergency_id}/audit", params={"limit": 1000}),
    )
    return pages.render(request, "audit.html", {"emergency": emergency, "entries": entries})
