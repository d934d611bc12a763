"""Who may do what: staff tokens verified with the shared code, roles, sections.

Every token is also checked against its account here (one primary-key read): a disabled
account, or a token issued before the account's role or sections changed (its `ver` claim
is below the account's `token_version`), is a 401 at once. Alerts and dispatch verify
tokens offline against the JWKS, so there such a token works until it expires
(`MUSTER_TOKEN_TTL_S`); the console asks `GET /auth/me` on each request, so a console
session ends at the next page.

Admins act everywhere. A coordinator acts for the sections in their token: a member of
another section is reported as not found (no leak of its existence), creating one in
another section is forbidden. An authority reads availability counts and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.models import staff_accounts
from services.members.settings import Settings
from shared.auth import (
    Principal,
    TokenVerifier,
    oauth2_scheme,
    principal_dependency,
    require_role,
)


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


token_principal = principal_dependency(_verifier)

REVOKED = "invalid token: the account is disabled or its access changed: log in again"


def token_version_of(token: str) -> int | None:
    """The `ver` claim of a token whose signature was already verified (None: absent)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    version = claims.get("ver", 0)
    return version if isinstance(version, int) and not isinstance(version, bool) else None


async def current_principal(
    request: Request,
    principal: Annotated[Principal, Depends(token_principal)],
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    """The verified principal, provided its account exists, is not disabled and has not
    changed since the token was issued (401 otherwise)."""
    try:
        account_id = uuid.UUID(principal.account_id)
    except ValueError:
        account_id = None
    row = None
    if account_id is not None and token:
        async with request.app.state.runtime.db() as session:
            row = (
                await session.execute(
                    select(staff_accounts.c.disabled_at, staff_accounts.c.token_version).where(
                        staff_accounts.c.id == account_id
                    )
                )
            ).first()
    if (
        row is None
        or row.disabled_at is not None
        or token is None
        or token_version_of(token) != row.token_version
    ):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=REVOKED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


Staff = Annotated[Principal, Depends(current_principal)]


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.runtime.db() as session:
        yield session


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Db = Annotated[AsyncSession, Depends(_session)]
Config = Annotated[Settings, Depends(_settings)]


def require_admin(principal: Principal) -> None:
    require_role(principal, "admin")


def require_manager(principal: Principal) -> None:
    """Admins and coordinators manage members; authorities only read counts."""
    require_role(principal, "admin", "coordinator")


def sections_of(principal: Principal) -> frozenset[str] | None:
    """The sections a principal sees; None means every section (admin)."""
    return None if principal.is_admin else principal.sections


def require_section(principal: Principal, section: str) -> None:
    """403 when acting in a section the principal does not act for (creation, moves)."""
    if not principal.can_act_for(section):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"you do not act for section {section}",
        )


def member_not_found() -> HTTPException:
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="no such member")
