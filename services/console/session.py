"""Signing in and out, the session, CSRF protection and the language choice.

The session is starlette's signed cookie (`muster_session`: HttpOnly, SameSite=Lax,
Secure behind HTTPS). It holds the members service's access token and what the token's
verified claims say (account id, email, role, sections), the chosen language and the
CSRF token. The console verifies the token against the members JWKS at sign-in, so
the header shows only what members signed.

CSRF: every POST must carry the session's token (form field `csrf_token` or header
`X-CSRF-Token`) and come from the console's own origin (`Origin`, else `Referer`);
otherwise 403 and the route never runs (`verify_csrf` is an app-wide dependency, so a
new router cannot forget it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from babel.core import negotiate_locale
from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from services.console import pages
from shared.auth import TokenError, TokenVerifier

router = APIRouter()

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
#: a token within this many seconds of expiring counts as expired (no half-failed pages)
EXPIRY_MARGIN_S = 30


@dataclass(frozen=True)
class User:
    """The signed-in staff member, as members' token says."""

    account_id: str
    email: str
    role: str
    sections: tuple[str, ...]
    token: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def runs_emergencies(self) -> bool:
        return self.role in ("coordinator", "admin")

    def can_act_for(self, section: str) -> bool:
        return self.is_admin or section in self.sections


class SignInRequired(Exception):
    """No session, or its token expired or was refused: back to the sign-in page."""

    def __init__(self, next_path: str = "/", message: str = "") -> None:
        self.next_path = next_path
        self.message = message


# --- reading the session ----------------------------------------------------------------


def current_user(request: Request) -> User | None:
    if "session" not in request.scope:
        return None
    data = request.session.get("user")
    if not isinstance(data, dict):
        return None
    if float(data.get("exp", 0)) < time.time() + EXPIRY_MARGIN_S:
        return None
    return User(
        account_id=str(data["account_id"]),
        email=str(data["email"]),
        role=str(data["role"]),
        sections=tuple(data.get("sections", [])),
        token=str(data["token"]),
    )


def _next_of(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


async def signed_in(request: Request) -> User:
    user = current_user(request)
    if user is None:
        expired = "session" in request.scope and "user" in request.session
        request.session.pop("user", None)
        raise SignInRequired(
            _next_of(request) if request.method == "GET" else "/",
            pages.N_("Your session has ended. Please sign in again.") if expired else "",
        )
    if not await _account_still_valid(request, user):
        request.session.pop("user", None)
        raise SignInRequired(
            _next_of(request) if request.method == "GET" else "/",
            pages.N_("Your account was disabled or changed. Please sign in again."),
        )
    return user


#: token digest -> when members last confirmed its account (monotonic seconds)
_confirmed: dict[str, float] = {}
_CONFIRMED_MAX = 10_000


async def _account_still_valid(request: Request, user: User) -> bool:
    """Members refuses a token once its account is disabled or its role or sections
    changed; alerts and dispatch verify tokens offline and would accept it until it
    expires. Asking members (at most once per `account_recheck_s` per token) ends such a
    console session at once. If members cannot answer, the session goes on: staff keep
    working through a members outage, as alerts and dispatch do."""
    settings = request.app.state.settings
    digest = hashlib.sha256(user.token.encode()).hexdigest()
    now = time.monotonic()
    if now - _confirmed.get(digest, -1e9) < settings.account_recheck_s:
        return True
    try:
        response = await request.app.state.http.get(
            settings.members_url.rstrip("/") + "/auth/me",
            headers={"Authorization": f"Bearer {user.token}"},
            timeout=min(settings.upstream_timeout_s, 5.0),
        )
    except httpx.HTTPError:
        return True
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        _confirmed.pop(digest, None)
        return False
    if response.status_code == status.HTTP_200_OK:
        if len(_confirmed) >= _CONFIRMED_MAX:
            _confirmed.clear()
        _confirmed[digest] = now
    return True


CurrentUser = Annotated[User, Depends(signed_in)]


def role_required(*roles: str) -> Any:
    """A dependency: the signed-in user, if their role is one of `roles` (403 otherwise)."""

    def dependency(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, pages.N_("This page is not for your role.")
            )
        return user

    return Depends(dependency)


#: a coordinator or an admin: whoever runs emergencies
Coordinator = Annotated[User, role_required("coordinator", "admin")]


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created with the session."""
    if "session" not in request.scope:
        return ""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


def safe_next(value: str | None) -> str:
    """A local path to go to after signing in (never another site: `//x` or `/\\x`)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    return value


# --- language ---------------------------------------------------------------------------

_LANGUAGE_RANGE = re.compile(
    r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$"
)


def preferred_languages(accept_language: str) -> list[str]:
    """The header's language tags, best first (q=0 and malformed ranges dropped)."""
    weighted = []
    for position, item in enumerate(accept_language.split(",")[:20]):
        match = _LANGUAGE_RANGE.match(item)
        if not match:
            continue
        try:
            quality = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        if quality > 0:
            weighted.append((-quality, position, match.group(1).replace("-", "_")))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate_language(accept_language: str) -> str:
    """The console language that best matches an Accept-Language header (else en)."""
    chosen = negotiate_locale(preferred_languages(accept_language), list(pages.LANGUAGES))
    if chosen in pages.LANGUAGES:
        return chosen
    # "fr-CA" has no exact match: try the primary subtag of each preference in order
    for tag in preferred_languages(accept_language):
        primary = tag.split("_")[0].lower()
        if primary in pages.LANGUAGES:
            return primary
    return pages.DEFAULT_LANGUAGE


def language(request: Request) -> str:
    if "session" in request.scope:
        chosen = request.session.get("lang")
        if chosen in pages.LANGUAGES:
            return str(chosen)
    return negotiate_language(request.headers.get("accept-language", ""))


# --- CSRF -------------------------------------------------------------------------------


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}".lower()


async def verify_csrf(request: Request) -> None:
    """Every POST: the session's token and our own origin, or 403 before the route runs."""
    if request.method != "POST":
        return
    claimed = request.headers.get("origin")
    if not claimed or claimed == "null":
        claimed = _origin_of(request.headers.get("referer", "")) or ""
    if claimed.lower() != own_origin(request):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, pages.N_("This form came from another site.")
        )
    expected = request.session.get("csrf") if "session" in request.scope else None
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        # FastAPI caches the parsed form on the request: the route reads it again for free
        form_value = (await request.form()).get(CSRF_FIELD)
        sent = form_value if isinstance(form_value, str) else None
    if not expected or not sent or not hmac.compare_digest(str(expected), sent):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            pages.N_(
                "The form has expired or did not come from this console. "
                "Reload the page and try again."
            ),
        )


# --- routes -----------------------------------------------------------------------------


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, next: str = "/") -> Response:
    if current_user(request) is not None:
        return RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)
    message = request.session.pop("signin_message", "")
    return pages.render(request, "login.html", {"next": safe_next(next), "message": message})


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    from services.console import upstream

    lang = language(request)
    if not email or not password:
        return pages.render(
            request,
            "login.html",
            {"next": safe_next(next), "email": email,
             "error": pages.gettext("Enter your email and your password.", lang)},
            status_code=status.HTTP_400_BAD_REQUEST,
        )  # fmt: skip
    try:
        token = await upstream.sign_in(request, email, password)
    except upstream.WrongCredentials:
        return pages.render(
            request,
            "login.html",
            {"next": safe_next(next), "email": email,
             "error": pages.gettext("Wrong email or password.", lang)},
            status_code=status.HTTP_401_UNAUTHORIZED,
        )  # fmt: skip
    except upstream.SignInHeld as held:
        seconds = held.retry_after_s
        message = (
            pages.gettext("Too many failed sign-ins. Try again in %(s)s seconds.", lang, s=seconds)
            if held.locked
            else pages.gettext("Sign-in is busy. Try again in %(s)s seconds.", lang, s=seconds)
        )
        return pages.render(
            request,
            "login.html",
            {"next": safe_next(next), "email": email, "error": message},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        )
    verifier: TokenVerifier = request.app.state.verifier
    try:
        principal = await verifier.verify(token)
        claims: dict[str, Any] = _unverified_expiry(token)
    except TokenError as exc:
        raise upstream.UpstreamError("members", 502, f"unusable token: {exc}") from exc
    # a new session at sign-in (no fixation): only the language choice survives
    chosen = request.session.get("lang")
    request.session.clear()
    if chosen:
        request.session["lang"] = chosen
    request.session["csrf"] = secrets.token_urlsafe(32)
    request.session["user"] = {
        "account_id": principal.account_id,
        "email": principal.email,
        "role": principal.role,
        "sections": sorted(principal.sections),
        "token": token,
        "exp": claims["exp"],
    }
    return RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)


def _unverified_expiry(token: str) -> dict[str, Any]:
    import jwt

    # the signature was verified just before: only the expiry is read here
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return {"exp": float(claims["exp"])}


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    chosen = request.session.get("lang")
    request.session.clear()
    if chosen:
        request.session["lang"] = chosen
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


@router.post("/language", include_in_schema=False)
async def choose_language(
    request: Request,
    lang: Annotated[str, Form(max_length=8)],
    next: Annotated[str, Form()] = "/",
) -> Response:
    if lang not in pages.LANGUAGES:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, pages.N_("Unknown language."))
    request.session["lang"] = lang
    return RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)
