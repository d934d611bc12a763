"""The console's FastAPI app: middleware (session cookie, security headers), the
app-wide CSRF check, error pages, static files (ours and the vendored Leaflet), the
health endpoints, and one router per thing a coordinator names."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
import xstatic.pkg.leaflet
from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from services.console import (
    admin,
    approvals,
    authority,
    board,
    declare,
    drills,
    emergencies,
    importing,
    members,
    pages,
    reports,
    session,
    upstream,
)
from services.console.settings import Settings
from shared.auth import TokenVerifier
from shared.observability import get_logger
from shared.service import health_router

log = get_logger(__name__)

SESSION_COOKIE = "muster_session"
SESSION_MAX_AGE_S = 12 * 3600


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") or request.headers.get(
        "content-type", ""
    ).startswith("application/json")


def _error_page(request: Request, status_code: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status_code)
    return pages.render(
        request, "error.html", {"status": status_code, "message": message}, status_code=status_code
    )


def _install_error_pages(app: FastAPI) -> None:
    async def sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, session.SignInRequired)
        if _wants_json(request):
            return JSONResponse({"detail": "sign in again"}, status_code=401)
        if exc.message:
            request.session["signin_message"] = exc.message
        target = "/login" if exc.next_path == "/" else f"/login?next={quote(exc.next_path)}"
        return RedirectResponse(target, status.HTTP_303_SEE_OTHER)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else "Request refused."
        if exc.status_code == 404 and detail == "Not Found":
            detail = pages.N_("There is no such page.")
        return _error_page(request, exc.status_code, detail)

    async def upstream_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, upstream.UpstreamError)
        if exc.status_code == 404:
            message = pages.N_("Not found, or not in your sections.")
        elif exc.status_code == 403:
            message = pages.N_("Your account may not do this.")
        elif exc.status_code == 502:
            log.warning("upstream unavailable", service=exc.service)
            message = pages.N_("A Muster service is not answering. Try again in a moment.")
        else:
            message = exc.message()
        return _error_page(request, exc.status_code, message)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message = upstream.UpstreamError("console", 422, exc.errors()).message()
        return _error_page(request, 422, message)

    app.add_exception_handler(session.SignInRequired, sign_in_required)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(upstream.UpstreamError, upstream_error)
    app.add_exception_handler(RequestValidationError, invalid_request)


def _readiness_checks(app: FastAPI) -> dict[str, Callable[[], Awaitable[None]]]:
    def check(service: str) -> Callable[[], Awaitable[None]]:
        async def ping() -> None:
            settings: Settings = app.state.settings
            url = getattr(settings, f"{service}_url").rstrip("/") + "/healthz"
            response = await app.state.http.get(url, timeout=2.0)
            response.raise_for_status()

        return ping

    return {service: check(service) for service in upstream.SERVICES}


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    pages.compile_catalogues()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.http = httpx.AsyncClient(
            timeout=settings.upstream_timeout_s, follow_redirects=False
        )
        log.info("console started")
        try:
            yield
        finally:
            await app.state.http.aclose()

    app = FastAPI(
        title="Muster console",
        description="The web console for coordinators, admins and authorities.",
        lifespan=lifespan,
        dependencies=[Depends(session.verify_csrf)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(
        settings.jwks_url_of_members,
        stale_max_s=settings.jwks_stale_max_s,
        min_fetch_interval_s=settings.jwks_min_fetch_interval_s,
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret or secrets.token_urlsafe(48),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.add_middleware(pages.SecurityHeaders, tile_origin=settings.tile_origin)
    _install_error_pages(app)

    app.mount(
        "/static/vendor/leaflet",
        StaticFiles(directory=xstatic.pkg.leaflet.BASE_DIR),
        name="leaflet",
    )
    app.mount("/static", StaticFiles(directory=pages.HERE / "static"), name="static")
    app.include_router(health_router(lambda: _readiness_checks(app)))
    app.include_router(session.router)

    @app.get("/", include_in_schema=False)
    async def home(user: session.CurrentUser) -> Response:
        target = "/authority" if user.role == "authority" else "/emergencies"
        return RedirectResponse(target, status.HTTP_303_SEE_OTHER)

    # declare's /emergencies/new before the board's /emergencies/{id}
    for module in (
        emergencies, declare, approvals, board, members, importing, admin, authority, drills,
    ):  # fmt: skip
        app.include_router(module.router)
    app.include_router(reports.router)
    return app
