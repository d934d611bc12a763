"""The coordinator console: one static page that watches an emergency's live board.

The page holds no data and needs no auth itself: its inline script asks the coordinator
for their bearer token (kept in sessionStorage only), reads `GET /emergencies/{id}` and
`/board` with it, then opens the SSE stream with a single-use stream ticket. The response
carries a strict Content-Security-Policy whose nonce is new for every response (the
template's only variable).
"""

from __future__ import annotations

import secrets
import uuid

import jinja2
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("services.dispatch", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def content_security_policy(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        f"style-src 'nonce-{nonce}'; "
        "connect-src 'self'; "
        "img-src 'self'; "
        "base-uri 'none'; "
        "form-action 'none'; "
        "frame-ancestors 'none'"
    )


@router.get(
    "/console/{emergency_id}",
    response_class=HTMLResponse,
    tags=["console"],
    summary="The coordinator console (static HTML; the data comes from the API with a token)",
)
async def console(emergency_id: uuid.UUID) -> HTMLResponse:
    """`emergency_id` is only validated here (422 otherwise); the page reads it from its own
    address, so the HTML is the same for every emergency but for the nonce."""
    nonce = secrets.token_urlsafe(18)
    page = _templates.get_template("console.html").render(nonce=nonce)
    return HTMLResponse(
        page,
        headers={
            "Content-Security-Policy": content_security_policy(nonce),
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
