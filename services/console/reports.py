"""After-action reports in the console (issue 12): the board and the authority's summary
link here; the console fetches dispatch's report with the signed-in user's token and
passes it on, so dispatch alone decides the version (a coordinator's, with member ids;
an authority's, counts only) and who may see it.

- `GET /reports/{id}`: the printable page (dispatch's `report.html`);
- `GET /reports/{id}.pdf`, `GET /reports/{id}.csv`: the same report as PDF and CSV.

Dispatch's page carries its own `<style>` elements (the page's and the charts' SVG); the
console's Content-Security-Policy allows styles by nonce only, so each gets this
response's nonce. Dispatch escapes every text it puts in the page, so the only `<style`
in it are its own.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.console.session import User, role_required
from services.console.upstream import Api

router = APIRouter()

#: whoever dispatch gives a report to: its coordinators and admins, and its authorities
Reader = Annotated[User, role_required("coordinator", "admin", "authority")]


async def _fetch(request: Request, user: User, path: str) -> tuple[bytes, str]:
    async with Api(request, user).dispatch.stream("GET", path) as response:
        body = await response.aread()
        return body, response.headers.get("content-type", "application/octet-stream")


@router.get("/reports/{emergency_id}.pdf", include_in_schema=False)
async def report_pdf(request: Request, user: Reader, emergency_id: uuid.UUID) -> Response:
    body, media_type = await _fetch(request, user, f"/emergencies/{emergency_id}/report.pdf")
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'inline; filename="report-{emergency_id}.pdf"'},
    )


@router.get("/reports/{emergency_id}.csv", include_in_schema=False)
async def report_csv(request: Request, user: Reader, emergency_id: uuid.UUID) -> Response:
    body, media_type = await _fetch(request, user, f"/emergencies/{emergency_id}/report.csv")
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="report-{emergency_id}.csv"'},
    )


# after the .pdf and .csv routes: `{emergency_id}` alone would take "<id>.pdf" too
@router.get("/reports/{emergency_id}", response_class=HTMLResponse, include_in_schema=False)
async def report_page(request: Request, user: Reader, emergency_id: uuid.UUID) -> HTMLResponse:
    body, _ = await _fetch(request, user, f"/emergencies/{emergency_id}/report.html")
    nonce = request.state.csp_nonce
    page = body.decode("utf-8").replace("<style", f'<style nonce="{nonce}"')
    return HTMLResponse(page)
