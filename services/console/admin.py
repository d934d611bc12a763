"""Admins' pages: sections (list, create, edit) and staff accounts (list, create with a
role and sections, change role and sections, disable and enable).

Only admins reach them (403 for anyone else, as the members API answers). Members'
validation is the authority: its 422 lands next to the field it names, a 409 (a code or
email taken, an admin disabling themselves) at the top of the form. Disabling an account
makes members refuse its sign-in and every token it holds (see docs/members.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.console import pages
from services.console.pages import N_
from services.console.session import User, role_required
from services.console.upstream import Api, UpstreamError

router = APIRouter()

Admin = Annotated[User, role_required("admin")]
ROLES = ("coordinator", "admin", "authority")
SECTION_LANGUAGES = ("en", "fr", "it", "sq", "de", "es")
SectionCode = Annotated[str, Path(pattern=r"^[A-Z][A-Z0-9_-]{1,15}$")]


def _text(form: Mapping[str, Any], name: str, limit: int = 200) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _chosen_sections(form: Any) -> list[str]:
    return sorted({v.strip() for v in form.getlist("sections") if isinstance(v, str) and v})


def upstream_errors(exc: UpstreamError) -> dict[str, str]:
    """A members refusal as {field: message}; a conflict goes to the top of the form."""
    if exc.status_code in (409, 422):
        return exc.field_errors()
    raise exc


# --- sections ---------------------------------------------------------------------------


async def _sections_page(
    request: Request,
    api: Api,
    *,
    errors: dict[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return pages.render(
        request,
        "admin_sections.html",
        {
            "sections": await api.members.get("/sections"),
            "errors": errors or {},
            "values": {"timezone": "UTC", "language": "en", **(values or {})},
            "languages": SECTION_LANGUAGES,
        },
        status_code=status_code,
    )


@router.get("/admin/sections", response_class=HTMLResponse, include_in_schema=False)
async def sections_page(request: Request, user: Admin) -> HTMLResponse:
    return await _sections_page(request, Api(request, user))


@router.post("/admin/sections", include_in_schema=False)
async def create_section(request: Request, user: Admin) -> Response:
    api = Api(request, user)
    form = await request.form()
    body = {
        "code": _text(form, "code", 16).upper(),
        "name": _text(form, "name"),
        "country": _text(form, "country", 2).upper(),
        "timezone": _text(form, "timezone", 64),
        "language": _text(form, "language", 8),
    }
    try:
        await api.members.post("/sections", json=body)
    except UpstreamError as exc:
        errors = upstream_errors(exc)
        return await _sections_page(
            request, api, errors=errors, values=body, status_code=exc.status_code
        )
    pages.flash(request, N_("The section is created."), "success")
    return RedirectResponse("/admin/sections", status.HTTP_303_SEE_OTHER)


async def _section_page(
    request: Request,
    section: Mapping[str, Any],
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return pages.render(
        request,
        "admin_section.html",
        {"section": section, "errors": errors or {}, "languages": SECTION_LANGUAGES},
        status_code=status_code,
    )


@router.get("/admin/sections/{code}", response_class=HTMLResponse, include_in_schema=False)
async def section_page(request: Request, code: SectionCode, user: Admin) -> HTMLResponse:
    section = await Api(request, user).members.get(f"/sections/{code}")
    return await _section_page(request, section)


@router.post("/admin/sections/{code}", include_in_schema=False)
async def change_section(request: Request, code: SectionCode, user: Admin) -> Response:
    api = Api(request, user)
    form = await request.form()
    body = {
        "name": _text(form, "name"),
        "timezone": _text(form, "timezone", 64),
        "language": _text(form, "language", 8),
    }
    try:
        await api.members.patch(f"/sections/{code}", json=body)
    except UpstreamError as exc:
        errors = upstream_errors(exc)
        section = {**(await api.members.get(f"/sections/{code}")), **body}
        return await _section_page(request, section, errors=errors, status_code=exc.status_code)
    pages.flash(request, N_("The section is saved."), "success")
    return RedirectResponse("/admin/sections", status.HTTP_303_SEE_OTHER)


# --- staff accounts ---------------------------------------------------------------------


async def _accounts_page(
    request: Request,
    api: Api,
    *,
    errors: dict[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return pages.render(
        request,
        "admin_accounts.html",
        {
            "accounts": await api.members.get("/accounts"),
            "sections": [s["code"] for s in await api.members.get("/sections")],
            "roles": ROLES,
            "errors": errors or {},
            "values": {"role": "coordinator", "sections": [], **(values or {})},
        },
        status_code=status_code,
    )


@router.get("/admin/accounts", response_class=HTMLResponse, include_in_schema=False)
async def accounts_page(request: Request, user: Admin) -> HTMLResponse:
    return await _accounts_page(request, Api(request, user))


@router.post("/admin/accounts", include_in_schema=False)
async def create_account(request: Request, user: Admin) -> Response:
    api = Api(request, user)
    form = await request.form()
    body = {
        "email": _text(form, "email", 320),
        "password": _text(form, "password", 256),
        "role": _text(form, "role", 16),
        "sections": _chosen_sections(form),
    }
    try:
        await api.members.post("/accounts", json=body)
    except UpstreamError as exc:
        errors = upstream_errors(exc)
        if exc.status_code == 409:
            errors = {"email": exc.message()}
        shown = {k: v for k, v in body.items() if k != "password"}
        return await _accounts_page(
            request, api, errors=errors, values=shown, status_code=exc.status_code
        )
    pages.flash(request, N_("The account is created."), "success")
    return RedirectResponse("/admin/accounts", status.HTTP_303_SEE_OTHER)


async def _account_page(
    request: Request,
    api: Api,
    account: Mapping[str, Any],
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return pages.render(
        request,
        "admin_account.html",
        {
            "account": account,
            "sections": [s["code"] for s in await api.members.get("/sections")],
            "roles": ROLES,
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get(
    "/admin/accounts/{account_id:uuid}", response_class=HTMLResponse, include_in_schema=False
)
async def account_page(request: Request, account_id: UUID, user: Admin) -> HTMLResponse:
    api = Api(request, user)
    return await _account_page(request, api, await api.members.get(f"/accounts/{account_id}"))


@router.post("/admin/accounts/{account_id:uuid}", include_in_schema=False)
async def change_account(request: Request, account_id: UUID, user: Admin) -> Response:
    """`action`: `save` (role and sections), `disable` or `enable`."""
    api = Api(request, user)
    form = await request.form()
    action = _text(form, "action", 16)
    if action == "disable":
        body: dict[str, Any] = {"disabled": True}
        done = N_("The account is disabled: it can no longer sign in.")
    elif action == "enable":
        body = {"disabled": False}
        done = N_("The account is enabled again.")
    else:
        body = {"role": _text(form, "role", 16), "sections": _chosen_sections(form)}
        done = N_("The account is saved. Its user signs in again to use the change.")
    try:
        await api.members.patch(f"/accounts/{account_id}", json=body)
    except UpstreamError as exc:
        errors = upstream_errors(exc)
        account = {**(await api.members.get(f"/accounts/{account_id}")), **body}
        return await _account_page(
            request, api, account, errors=errors, status_code=exc.status_code
        )
    pages.flash(request, done, "success")
    return RedirectResponse("/admin/accounts", status.HTTP_303_SEE_OTHER)
