"""The web answer: `GET /r/{token}` shows the emergency, how far it is, what is needed
(qualifications by name), where to go (map links) and big buttons (no JavaScript,
readable at 360 px, in the member's language); `POST /r/{token}` records the answer.
Unknown token: 404; emergency closed: 410. Rate-limited per token and per address.

The buttons follow the member's state (responder_states.buttons): coming / not coming,
then on my way / arrived, "I'm OK" while a roll call is open for them, home safe once
released (and still after the close, for a member still out: then 200, not 410). The
token is the page's only key, as before: a cross-site form cannot post without it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import redis.asyncio as redis
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from shapely.geometry import shape
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts import messages
from services.alerts.answers import (
    OpenAlert,
    accepts_after_close,
    alert_by_token,
    confirm_roll_call,
    open_roll_call,
    record_answer,
    taken,
)
from services.alerts.ratelimit import WindowLimit
from services.alerts.responder_states import Button, MemberAnswer, buttons, loop_state, on_loop
from services.alerts.settings import Settings

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

Choice = Literal[
    "5", "10", "15", "30", "60", "no", "en_route", "on_scene", "roll_call_ok", "home_safe"
]  # fmt: skip
MINUTES = (5, 10, 15, 30, 60)


def _page(status: int, language: str, **values: Any) -> HTMLResponse:
    lang = messages.language_of(language)
    html = _TEMPLATES.get_template("answer.html").render(
        lang=lang,
        coming=messages.text(lang, "page_coming"),
        min=messages.text(lang, "page_minutes"),
        minutes=MINUTES,
        not_coming=messages.text(lang, "page_not_coming"),
        labels={
            button: messages.text(lang, f"page_{button}")
            for button in ("en_route", "on_scene", "roll_call_ok", "home_safe")
        },
        **values,
    )
    return HTMLResponse(html, status_code=status)


@dataclass(frozen=True)
class MapLinks:
    """Where to go, as links a phone opens in its map app (`geo:`, RFC 5870) or in a
    browser (OpenStreetMap, with a marker)."""

    lat: float
    lon: float

    @property
    def geo(self) -> str:
        return f"geo:{self.lat:.6f},{self.lon:.6f}"

    @property
    def openstreetmap(self) -> str:
        lat, lon = f"{self.lat:.6f}", f"{self.lon:.6f}"
        return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=16/{lat}/{lon}"


def where_to_go(area: dict[str, Any]) -> MapLinks | None:
    """The area's centre (the circle's, or the polygon's centroid, as selection measures
    distances from it); None for an area that names neither."""
    if area.get("polygon"):
        try:
            centre = shape(area["polygon"]).centroid
        except Exception:  # dispatch validates polygons; an unreadable one shows no link
            return None
        return MapLinks(round(float(centre.y), 6), round(float(centre.x), 6))
    if area.get("lat") is not None and area.get("lon") is not None:
        return MapLinks(float(area["lat"]), float(area["lon"]))
    return None


def _emergency_page(
    target: OpenAlert,
    *,
    notice: str | None,
    shown: list[Button],
    status: int = 200,
    response: str | None = None,
) -> HTMLResponse:
    """The page; `response`: the member's state as it is now (the target's row may have
    been read before the answer just recorded)."""
    e, a = target.emergency, target.alert
    state = loop_state(response if response is not None else a.response)
    lang = messages.language_of(a.language)
    facts = target.emergency.facts
    qualifications = [
        messages.qualification_name(code, lang) for code in facts.get("required_qualifications", [])
    ]
    return _page(
        status,
        lang,
        title=e.title,
        drill=messages.text(lang, "drill") if e.drill else None,
        description=facts.get("description") or "",
        details=[
            (messages.text(lang, "page_distance"), messages.distance_text(a.distance_m, lang)),
            (messages.text(lang, "page_needed"), messages.text(lang, "people", n=e.members_needed)),
            *(
                [(messages.text(lang, "page_qualifications"), ", ".join(qualifications))]
                if qualifications
                else []
            ),
        ],
        where=where_to_go(facts.get("area") or {}),
        where_label=messages.text(lang, "page_where"),
        where_centre=messages.text(lang, "page_centre"),
        map_app=messages.text(lang, "page_map_app"),
        osm=messages.text(lang, "page_osm"),
        answer_label=messages.text(lang, "page_answer"),
        notice=notice,
        status_line=(
            messages.text(lang, "page_status", state=messages.text(lang, f"state_{state}"))
            if on_loop(state)
            else None
        ),
        roll_call="roll_call_ok" in shown and messages.text(lang, "page_roll_call"),
        buttons=shown,
    )


def _closed(target: OpenAlert) -> HTMLResponse:
    lang = target.alert.language
    return _page(410, lang, title=target.emergency.title, notice=messages.text(lang, "page_closed"))


def answer_router(
    settings: Settings,
    db: Callable[[], async_sessionmaker[AsyncSession]],
    client: Callable[[], redis.Redis],
) -> APIRouter:
    router = APIRouter(tags=["answer page"])

    async def limited(request: Request, token: str) -> HTMLResponse | None:
        per_token = WindowLimit(
            client(), settings.key("rl", "token", ""), settings.answer_rate_per_token_per_min
        )
        per_ip = WindowLimit(
            client(), settings.key("rl", "ip", ""), settings.answer_rate_per_ip_per_min
        )
        # behind a proxy named in MUSTER_FORWARDED_ALLOW_IPS, uvicorn has put the client's
        # forwarded address here; from any other peer, the peer's own
        address = request.client.host if request.client else "unknown"
        if not await per_ip.allow(address) or not await per_token.allow(token[:64]):
            response = _page(429, "en", title="Muster", notice="Too many requests: wait a minute.")
            response.headers["Retry-After"] = "60"
            return response
        return None

    @router.get("/r/{token}", response_class=HTMLResponse, summary="The answer page")
    async def show(token: str, request: Request) -> HTMLResponse:
        if (refused := await limited(request, token)) is not None:
            return refused
        async with db()() as session:
            target = await alert_by_token(session, token)
            if target is None:
                return _page(
                    404, "en", title="Muster", notice=messages.text("en", "page_unknown"), warn=True
                )
            roll_call = await open_roll_call(session, target)
        lang = target.alert.language
        shown = buttons(
            target.alert.response, roll_call_open=roll_call is not None, closed=target.closed
        )
        if target.closed and not shown:
            return _closed(target)
        notice = None
        if target.alert.response in ("accepted", "standby", "declined"):
            notice = messages.text(lang, "page_recorded")
        return _emergency_page(target, notice=notice, shown=shown)

    @router.post("/r/{token}", response_class=HTMLResponse, summary="Record the answer")
    async def answer(
        token: str, request: Request, choice: Annotated[Choice, Form()]
    ) -> HTMLResponse:
        if (refused := await limited(request, token)) is not None:
            return refused
        async with db()() as session, session.begin():
            target = await alert_by_token(session, token)
            if target is None:
                return _page(
                    404, "en", title="Muster", notice=messages.text("en", "page_unknown"), warn=True
                )
            lang = target.alert.language
            if target.closed and not accepts_after_close(target, choice):
                return _closed(target)
            if choice == "roll_call_ok":
                confirmed = await confirm_roll_call(session, target, channel="web")
                recorded: str = loop_state(target.alert.response) or "none"
                took = confirmed is not None
            else:
                wanted: MemberAnswer = (
                    "declined"
                    if choice == "no"
                    else "accepted"
                    if choice.isdigit()
                    else cast(MemberAnswer, choice)
                )
                eta = int(choice) if choice.isdigit() else None
                recorded = await record_answer(
                    session, target, wanted, eta_minutes=eta, channel="web"
                )
                took = taken(wanted, recorded)
            roll_call = await open_roll_call(session, target)
        state = recorded if recorded not in ("none", "closed") else None
        shown = buttons(state, roll_call_open=roll_call is not None, closed=target.closed)
        if not took:
            # a stale page (pressed twice, or after the state moved on): nothing changed
            return _emergency_page(
                target,
                notice=messages.text(lang, "page_not_now"),
                shown=shown,
                status=409,
                response=state,
            )
        notice = messages.text(lang, "page_standby" if recorded == "standby" else "page_recorded")
        return _emergency_page(target, notice=notice, shown=shown, response=state)

    return router
