"""Who may do what: staff tokens verified with the shared code, roles, sections.

Admins act everywhere. A coordinator acts for the sections in their token: a member of
another section is reported as not found (no leak of its existence), creating one in
another section is forbidden. An authority reads availability counts and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.settings import Settings
from shared.auth import Principal, TokenVerifier, principal_dependency, require_role


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


current_principal = principal_dependency(_verifier)
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
