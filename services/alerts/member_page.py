"""The member's personal page (issue 11): `GET /me/{token}`, from a link the member asked
for by SMS (`LINK`), where they set their availability, quiet hours and language, and may
confirm their current position (only with the consent box ticked; the browser's
geolocation or typed). `POST /me/{token}` sends it as a `MemberSelfServiceRequested`
event; members applies it. Alerts writes no member data.

The link is single-use and short-lived (ALERTS_MEMBER_LINK_TTL_S); only its token's hash
is stored. The form carries a CSRF token whose hash is stored with the link when the
page is shown (a form posted from elsewhere lacks it: 403). After one submit, or once
expired, the page says the link is no longer valid and how to get another (text LINK).
Bad input: 422 naming the field, the link still usable. Rate-limited per link and per
client address, like the answer page.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

import redis.asyncio as redis
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.alerts import messages
from services.alerts.index import TargetingIndex
from services.alerts.member_commands import MAX_AWAY_DAYS
from services.alerts.models import member_links
from services.alerts.ratelimit import WindowLimit
from services.alerts.self_service import SOURCE, is_away, token_hash, zone_of
from services.alerts.settings import Settings
from shared.events.members import MemberChanged, MemberSelfServiceRequested, Position, QuietHours
from shared.observability import get_logger
from shared.outbox import add_event

log = get_logger(__name__)

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

#: the languages a member can choose on the page (those Muster's texts are written in)
PAGE_LANGUAGES: dict[str, str] = {
    "en": "English",
    "fr": "Français",
    "it": "Italiano",
    "sq": "Shqip",
}

PAGE_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "My availability",
        "availability": "Availability",
        "available": "Available",
        "away": "Away",
        "away_until": "Away until (empty: until I text BACK)",
        "quiet": "Quiet hours (no SMS unless the emergency is extreme)",
        "quiet_start": "From",
        "quiet_end": "To",
        "language": "Language",
        "location": "My current location (optional)",
        "consent": "I agree to share this location with Muster to be alerted from where I am",
        "lat": "Latitude",
        "lon": "Longitude",
        "locate": "Use my phone's location",
        "save": "Save",
        "saved": "Saved. Muster applies it within a minute. This link is now used up.",
        "invalid_link": "This link is no longer valid. Text LINK to Muster to get a new one.",
        "forged": "This form has expired. Open the link again to get a fresh form.",
        "too_many": "Too many requests: wait a minute.",
        "bad": "Please correct: {field}.",
    },
    "fr": {
        "title": "Ma disponibilité",
        "availability": "Disponibilité",
        "available": "Disponible",
        "away": "Absent",
        "away_until": "Absent jusqu'au (vide : jusqu'à ce que j'écrive RETOUR)",
        "quiet": "Heures calmes (pas de SMS sauf urgence extrême)",
        "quiet_start": "De",
        "quiet_end": "À",
        "language": "Langue",
        "location": "Ma position actuelle (facultatif)",
        "consent": "J'accepte de partager cette position avec Muster pour être alerté "
        "depuis l'endroit où je suis",
        "lat": "Latitude",
        "lon": "Longitude",
        "locate": "Utiliser la position de mon téléphone",
        "save": "Enregistrer",
        "saved": "Enregistré. Muster l'applique dans la minute. Ce lien est maintenant utilisé.",
        "invalid_link": "Ce lien n'est plus valide. Envoyez LIEN à Muster pour en recevoir un "
        "nouveau.",
        "forged": "Ce formulaire a expiré. Rouvrez le lien pour un nouveau formulaire.",
        "too_many": "Trop de requêtes : attendez une minute.",
        "bad": "Veuillez corriger : {field}.",
    },
    "it": {
        "title": "La mia disponibilità",
        "availability": "Disponibilità",
        "available": "Disponibile",
        "away": "Assente",
        "away_until": "Assente fino al (vuoto: finché non scrivo RIENTRO)",
        "quiet": "Ore di quiete (nessun SMS salvo emergenza estrema)",
        "quiet_start": "Dalle",
        "quiet_end": "Alle",
        "language": "Lingua",
        "location": "La mia posizione attuale (facoltativo)",
        "consent": "Accetto di condividere questa posizione con Muster per essere allertato "
        "da dove mi trovo",
        "lat": "Latitudine",
        "lon": "Longitudine",
        "locate": "Usa la posizione del telefono",
        "save": "Salva",
        "saved": "Salvato. Muster lo applica entro un minuto. Questo link è ora usato.",
        "invalid_link": "Questo link non è più valido. Scrivi LINK a Muster per averne uno nuovo.",
        "forged": "Questo modulo è scaduto. Riapri il link per un modulo nuovo.",
        "too_many": "Troppe richieste: attendi un minuto.",
        "bad": "Correggi: {field}.",
    },
    "sq": {
        "title": "Disponueshmëria ime",
        "availability": "Disponueshmëria",
        "available": "I disponueshëm",
        "away": "Larg",
        "away_until": "Larg deri më (bosh: derisa të shkruaj KTHIM)",
        "quiet": "Orët e qeta (pa SMS përveç emergjencave ekstreme)",
        "quiet_start": "Nga",
        "quiet_end": "Deri",
        "language": "Gjuha",
        "location": "Vendndodhja ime aktuale (opsionale)",
        "consent": "Pranoj ta ndaj këtë vendndodhje me Muster që të lajmërohem nga aty ku jam",
        "lat": "Gjerësia",
        "lon": "Gjatësia",
        "locate": "Përdor vendndodhjen e telefonit",
        "save": "Ruaj",
        "saved": "U ruajt. Muster e zbaton brenda një minute. Kjo lidhje tani është përdorur.",
        "invalid_link": "Kjo lidhje nuk është më e vlefshme. Dërgoni LIDHJE te Muster për një "
        "të re.",
        "forged": "Ky formular ka skaduar. Hapeni lidhjen përsëri për një formular të ri.",
        "too_many": "Shumë kërkesa: prisni një minutë.",
        "bad": "Ju lutem korrigjoni: {field}.",
    },
}


def page_text(language: str | None, name: str, **values: object) -> str:
    lang = messages.language_of(language)
    return PAGE_TEXTS.get(lang, PAGE_TEXTS["en"])[name].format(**values)


@dataclass(frozen=True)
class FieldError:
    """The form field a submission got wrong (named in the 422)."""

    field: str
    message: str


def _clock(value: str, name: str) -> time | FieldError:
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        return FieldError(name, "a time as HH:MM")
    return parsed.replace(second=0, microsecond=0, tzinfo=None)


def _coordinate(value: str, name: str, bound: float) -> float | FieldError:
    try:
        number = float(value.replace(",", "."))
    except ValueError:
        return FieldError(name, "a number")
    if not -bound <= number <= bound:  # also refuses NaN
        return FieldError(name, f"between -{bound:g} and {bound:g}")
    return number


def page_request(
    form: Mapping[str, str], member: MemberChanged, *, now: datetime
) -> MemberSelfServiceRequested | FieldError:
    """What a submitted personal page asks for, or the first field it got wrong. Pure.

    A position is sent only when the consent box is ticked; without it the typed or
    located coordinates are dropped, never stored."""
    zone = zone_of(member)
    availability = form.get("availability", "")
    if availability not in ("available", "away"):
        return FieldError("availability", "available or away")
    until: datetime | None = None
    if availability == "away" and form.get("away_until", ""):
        try:
            day = date.fromisoformat(form["away_until"])
        except ValueError:
            return FieldError("away_until", "a date")
        today = now.astimezone(zone).date()
        if not today < day <= today + timedelta(days=MAX_AWAY_DAYS):
            return FieldError("away_until", f"a date after today, within {MAX_AWAY_DAYS} days")
        until = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    start, end = form.get("quiet_start", ""), form.get("quiet_end", "")
    quiet: QuietHours | None = None
    if bool(start) != bool(end):
        return FieldError("quiet_end" if start else "quiet_start", "both times, or neither")
    if start and end:
        begins, ends = _clock(start, "quiet_start"), _clock(end, "quiet_end")
        if isinstance(begins, FieldError):
            return begins
        if isinstance(ends, FieldError):
            return ends
        if begins == ends:
            return FieldError("quiet_end", "a time other than the start")
        quiet = QuietHours(start=begins, end=ends)
    language = form.get("language", "")
    if language not in PAGE_LANGUAGES:
        return FieldError("language", "one of " + ", ".join(PAGE_LANGUAGES))
    location: Position | None = None
    consent = form.get("location_consent", "") == "yes"
    if consent:
        lat = _coordinate(form.get("lat", ""), "lat", 90)
        if isinstance(lat, FieldError):
            return lat
        lon = _coordinate(form.get("lon", ""), "lon", 180)
        if isinstance(lon, FieldError):
            return lon
        location = Position(lat=lat, lon=lon, at=now, source="live")
    return MemberSelfServiceRequested(
        member_id=member.member_id,
        channel="web",
        availability="available" if availability == "available" else "unavailable",
        unavailable_until=until,
        quiet_hours=quiet,
        quiet_hours_off=quiet is None,
        language=language,
        location=location,
        location_consent=location is not None,
        requested_at=now,
    )


def _html(status: int, language: str | None, **values: Any) -> HTMLResponse:
    lang = messages.language_of(language)
    lang = lang if lang in PAGE_TEXTS else "en"
    nonce = secrets.token_urlsafe(16)
    html = _TEMPLATES.get_template("member.html").render(
        lang=lang, t=PAGE_TEXTS[lang], languages=PAGE_LANGUAGES, nonce=nonce, **values
    )
    response = HTMLResponse(html, status_code=status)
    # the page's one script (the location button) runs by its nonce, nothing else does
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _notice(status: int, language: str | None, name: str) -> HTMLResponse:
    return _html(status, language, notice=page_text(language, name), warn=status >= 400)


def _form_values(member: MemberChanged, now: datetime) -> dict[str, str]:
    zone = zone_of(member)
    away = is_away(member, now)
    until = member.unavailable_until
    return {
        "availability": "away" if away else "available",
        "away_until": until.astimezone(zone).date().isoformat() if away and until else "",
        "quiet_start": f"{member.quiet_hours.start:%H:%M}" if member.quiet_hours else "",
        "quiet_end": f"{member.quiet_hours.end:%H:%M}" if member.quiet_hours else "",
        "language": member.language if member.language in PAGE_LANGUAGES else "en",
        "lat": "",
        "lon": "",
        "location_consent": "",
    }


_Field = Annotated[str, Form(max_length=64)]


def member_page_router(
    settings: Settings,
    db: Callable[[], async_sessionmaker[AsyncSession]],
    client: Callable[[], redis.Redis],
    index: Callable[[], TargetingIndex],
) -> APIRouter:
    router = APIRouter(tags=["member page"])

    async def limited(request: Request, token: str) -> HTMLResponse | None:
        per_link = WindowLimit(
            client(), settings.key("rl", "me", ""), settings.member_page_rate_per_min
        )
        per_ip = WindowLimit(
            client(), settings.key("rl", "me-ip", ""), settings.member_page_rate_per_min * 4
        )
        address = request.client.host if request.client else "unknown"
        if not await per_ip.allow(address) or not await per_link.allow(token_hash(token)[:32]):
            response = _notice(429, "en", "too_many")
            response.headers["Retry-After"] = "60"
            return response
        return None

    async def open_link(
        session: AsyncSession, token: str, now: datetime
    ) -> tuple[Any, MemberChanged] | HTMLResponse:
        """The link's row (locked) and its member, or the page saying it is not valid."""
        row = (
            await session.execute(
                select(member_links)
                .where(member_links.c.token_hash == token_hash(token))
                .with_for_update()
            )
        ).one_or_none()
        if row is None:
            return _notice(404, "en", "invalid_link")
        found = await index().members([str(row.member_id)])
        member = found[0] if found else None
        language = member.language if member else "en"
        if row.used_at is not None or row.expires_at <= now or member is None:
            return _notice(410, language, "invalid_link")
        return row, member

    @router.get("/me/{token}", response_class=HTMLResponse, summary="A member's personal page")
    async def show(token: str, request: Request) -> HTMLResponse:
        if (refused := await limited(request, token)) is not None:
            return refused
        now = datetime.now(UTC)
        async with db()() as session, session.begin():
            opened = await open_link(session, token, now)
            if isinstance(opened, HTMLResponse):
                return opened
            row, member = opened
            csrf = secrets.token_urlsafe(24)
            await session.execute(
                update(member_links)
                .where(member_links.c.token_hash == row.token_hash)
                .values(csrf_hash=token_hash(csrf))
            )
        return _html(200, member.language, form=_form_values(member, now), csrf=csrf)

    @router.post("/me/{token}", response_class=HTMLResponse, summary="Save the personal page")
    async def save(
        token: str,
        request: Request,
        csrf: _Field = "",
        availability: _Field = "",
        away_until: _Field = "",
        quiet_start: _Field = "",
        quiet_end: _Field = "",
        language: _Field = "",
        location_consent: _Field = "",
        lat: _Field = "",
        lon: _Field = "",
    ) -> HTMLResponse:
        if (refused := await limited(request, token)) is not None:
            return refused
        now = datetime.now(UTC)
        form = {
            "availability": availability,
            "away_until": away_until,
            "quiet_start": quiet_start,
            "quiet_end": quiet_end,
            "language": language,
            "location_consent": location_consent,
            "lat": lat,
            "lon": lon,
        }
        async with db()() as session, session.begin():
            opened = await open_link(session, token, now)
            if isinstance(opened, HTMLResponse):
                return opened
            row, member = opened
            if not row.csrf_hash or not hmac.compare_digest(row.csrf_hash, token_hash(csrf)):
                log.warning("personal page posted without its form's CSRF token")
                return _notice(403, member.language, "forged")
            asked = page_request(form, member, now=now)
            if isinstance(asked, FieldError):
                label = f"{asked.field} ({asked.message})"
                return _html(
                    422,
                    member.language,
                    form=form,
                    csrf=csrf,
                    notice=page_text(member.language, "bad", field=label),
                    warn=True,
                    invalid=asked.field,
                )
            await add_event(session, asked, source=SOURCE, correlationid=str(member.member_id))
            await session.execute(
                update(member_links)
                .where(member_links.c.token_hash == row.token_hash)
                .values(used_at=now, csrf_hash=None)
            )
        log.info("personal page saved", member_id=str(member.member_id))
        return _notice(200, asked.language or member.language, "saved")

    return router
