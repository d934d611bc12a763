"""Rendering pages: Jinja2 templates in the user's language, the per-response CSP nonce,
flash messages, and the gettext catalogues (compiled from the committed .po files).

Every HTML response gets a strict Content-Security-Policy with a nonce that is new for
each response (`SecurityHeaders`); templates put `nonce="{{ csp_nonce }}"` on their
`<script>` and `<style>` elements and never use inline `style=""` attributes or
`on…=` handlers (the policy refuses both).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from babel.core import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
TRANSLATIONS = HERE / "translations"

#: the console's languages, in the switcher's order, each named in itself
LANGUAGES: dict[str, str] = {"en": "English", "fr": "Français", "it": "Italiano", "sq": "Shqip"}
DEFAULT_LANGUAGE = "en"


def content_security_policy(nonce: str, tile_origin: str = "") -> str:
    """`tile_origin`: the one other place images may come from, the command post's own tile
    server when CONSOLE_TILE_URL names one."""
    images = f"'self' data: blob: {tile_origin}".strip()
    return (
        "default-src 'none'; "
        f"script-src 'self' 'nonce-{nonce}'; "
        f"style-src 'self' 'nonce-{nonce}'; "
        f"img-src {images}; "
        "connect-src 'self'; "
        "form-action 'self'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


class SecurityHeaders:
    """Pure ASGI middleware (so the SSE stream passes through untouched): a fresh nonce
    in `request.state.csp_nonce` for every request, and on HTML responses the CSP that
    names it plus the usual hardening headers."""

    def __init__(self, app: ASGIApp, tile_origin: str = "") -> None:
        self.app = app
        self.tile_origin = tile_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                content_type = next(
                    (v for k, v in headers if k.lower() == b"content-type"), b""
                ).decode("latin-1")
                extra = {
                    b"x-content-type-options": b"nosniff",
                    # the CSRF check falls back to Referer: keep it for our own origin
                    b"referrer-policy": b"same-origin",
                    b"x-frame-options": b"DENY",
                }
                if content_type.startswith("text/html"):
                    extra[b"content-security-policy"] = content_security_policy(
                        nonce, self.tile_origin
                    ).encode()
                    extra[b"cache-control"] = b"no-store"
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in extra.items() if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- catalogues -------------------------------------------------------------------------


def compile_catalogues(root: Path = TRANSLATIONS) -> list[Path]:
    """Compile every messages.po whose .mo is missing or older (the .mo files are not
    committed). Written to a temporary file and renamed, so two processes starting
    together never read a half-written catalogue. Returns the files written."""
    written = []
    for po_path in sorted(root.glob("*/LC_MESSAGES/messages.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parent.parent.name)
        fd, tmp = tempfile.mkstemp(dir=po_path.parent, suffix=".mo.tmp")
        with os.fdopen(fd, "wb") as mo_file:
            write_mo(mo_file, catalog)
        os.replace(tmp, mo_path)
        written.append(mo_path)
    return written


@cache
def translations(language: str) -> NullTranslations:
    # English is the msgids themselves: a missing catalogue falls back to them
    return Translations.load(str(TRANSLATIONS), [language], domain="messages")


def gettext(message: str, language: str, **variables: Any) -> str:
    """`message` in `language`, for Python code (flash messages, errors), formatted with
    `%(name)s` variables like the templates' newstyle gettext. The message comes first so
    `pybabel extract` finds it."""
    text = translations(language).gettext(message)
    return text % variables if variables else text


# --- templates --------------------------------------------------------------------------


def _format_time(value: Any, language: str, pattern: str = "short") -> str:
    if value in (None, ""):
        return "—"
    from datetime import datetime

    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    try:
        return format_datetime(moment, pattern, locale=Locale.parse(language))
    except (UnknownLocaleError, ValueError):
        return moment.isoformat(timespec="minutes")


def format_distance(metres: int | float | None) -> str:
    """250 m, 1.3 km, 12 km: a distance as people read it."""
    if metres is None:
        return "—"
    if metres < 1000:
        return f"{round(metres / 10) * 10:.0f} m"
    if metres < 10_000:
        return f"{metres / 1000:.1f} km"
    return f"{metres / 1000:.0f} km"


@cache
def environment(language: str) -> jinja2.Environment:
    """One environment per language: gettext is installed on it, so nothing about the
    language has to travel through every render call."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["time"] = lambda value, pattern="short": _format_time(value, language, pattern)
    env.filters["distance"] = format_distance
    env.globals["LANGUAGES"] = LANGUAGES
    return env


def N_(message: str) -> str:
    """Marks a message for extraction where it is translated later (babel knows `N_`)."""
    return message


def language_of(request: Request) -> str:
    """The request's console language (the session's choice, else Accept-Language)."""
    from services.console import session as console_session

    return console_session.language(request)


def flash(request: Request, message: str, kind: str = "info") -> None:
    """A message shown once on the next page (kind: info, success, error)."""
    request.session.setdefault("flash", []).append({"kind": kind, "message": message})


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render `template` in the request's language with what every page needs: the user,
    the CSRF token, the CSP nonce, the language, and pending flash messages."""
    from services.console import session as console_session

    language = console_session.language(request)
    user = console_session.current_user(request)
    base = {
        "request": request,
        "user": user,
        "csrf_token": console_session.csrf_token(request),
        "csp_nonce": getattr(request.state, "csp_nonce", ""),
        "lang": language,
        "flashes": request.session.pop("flash", []) if "session" in request.scope else [],
        "errors": {},
        "tiles": request.app.state.settings.tiles if "app" in request.scope else None,
    }
    page = environment(language).get_template(template).render({**base, **(context or {})})
    return HTMLResponse(page, status_code=status_code)
