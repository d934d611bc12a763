"""Importing members from a CSV file: upload, check (a dry run with the per-row error
report) or import, then a page that follows the job to its result.

The file goes to members' `POST /members/imports` (a background job, all rows or none);
the console keeps nothing of it. The job page shows a `<progress>` bar the page's script
(static/import.js) moves by polling `GET /members/import/{job}` for JSON every half
second, and reloads into the server-rendered result when the job ends; without script,
the page refreshes itself. Every outcome is said on the page: done (how many), refused
(each bad row, column and reason, and that nothing was imported), failed (why) — never a
silent failure.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from services.console import pages
from services.console.session import Coordinator
from services.console.upstream import Api, UpstreamError

router = APIRouter()

#: the largest file the console forwards (50,000 rows of a few hundred bytes)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: what members' CSV import takes, in the order its documentation lists them
COLUMNS = (
    ("section", True),
    ("full_name", True),
    ("phone", True),
    ("email", False),
    ("language", False),
    ("qualifications", False),
    ("lat", False),
    ("lon", False),
    ("availability", False),
    ("quiet_hours", False),
    ("consent_alerts", False),
)
FINISHED = ("done", "refused", "failed")


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """What the polling script needs (no member data: the job holds none)."""
    return {
        "id": job["id"],
        "status": job["status"],
        "percent": job["percent"],
        "total": job["total"],
        "processed": job["processed"],
        "imported": job["imported"],
        "dry_run": job["dry_run"],
        "finished": job["status"] in FINISHED,
    }


def _form_page(
    request: Request, errors: dict[str, str] | None = None, status_code: int = 200
) -> HTMLResponse:
    return pages.render(
        request,
        "import.html",
        {"columns": COLUMNS, "errors": errors or {}},
        status_code=status_code,
    )


@router.get("/members/import", response_class=HTMLResponse, include_in_schema=False)
async def import_form(request: Request, user: Coordinator) -> HTMLResponse:
    return _form_page(request)


@router.post("/members/import", include_in_schema=False)
async def start_import(request: Request, user: Coordinator) -> Response:
    language = pages.language_of(request)
    form = await request.form()
    upload = form.get("file")
    dry_run = form.get("mode") != "import"
    if not isinstance(upload, UploadFile) or not upload.filename:
        message = pages.gettext("Choose a CSV file.", language)
        return _form_page(request, {"file": message}, status.HTTP_400_BAD_REQUEST)
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        message = pages.gettext("The file is larger than 20 MB: split it.", language)
        return _form_page(request, {"file": message}, status.HTTP_400_BAD_REQUEST)
    try:
        started = await Api(request, user).members.post(
            "/members/imports",
            params={"dry_run": "true" if dry_run else "false"},
            files={"file": (upload.filename, data, "text/csv")},
        )
    except UpstreamError as exc:
        if exc.status_code != 422:
            raise
        # the only file members refuses before starting a job is one it cannot read
        message = pages.gettext("The file is not a UTF-8 CSV file.", language)
        return _form_page(request, {"file": message}, status.HTTP_422_UNPROCESSABLE_CONTENT)
    return RedirectResponse(f"/members/import/{started['id']}", status.HTTP_303_SEE_OTHER)


@router.get("/members/import/{job_id}", include_in_schema=False)
async def import_job(request: Request, job_id: UUID, user: Coordinator) -> Response:
    job = await Api(request, user).members.get(f"/members/imports/{job_id}")
    if _wants_json(request):
        return JSONResponse(job_summary(job), headers={"Cache-Control": "no-store"})
    return pages.render(
        request,
        "import_job.html",
        {"job": job, "finished": job["status"] in FINISHED, "columns": COLUMNS},
    )
