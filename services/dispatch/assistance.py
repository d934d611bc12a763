"""Assistance agreements: which sections have agreed to send their members to another
section's emergencies.

`assisting_sections` calls out other sections' members, so a coordinator may name only
sections they act for themselves, or sections that stand in an agreement an admin
recorded (`assisting_section` assists `section`). Agreements are dispatch's own data:
dispatch owns emergencies, and the check runs where the emergency is declared or changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.models import assistance_agreements
from shared.auth import Principal


def unagreed_sections(
    principal: Principal, section: str, named: Iterable[str], agreed: Iterable[str]
) -> list[str]:
    """The sections in `named` this principal may not call out for an emergency of
    `section`: neither acted for by the principal nor agreed to assist `section`."""
    allowed = set(agreed) | {section}
    return sorted({s for s in named if s not in allowed and not principal.can_act_for(s)})


def refusal(section: str, refused: list[str]) -> list[dict[str, Any]]:
    """FastAPI's error shape, one entry per refused section, each naming the field (the
    list is stored sorted, so a position would not match what was sent) and the section,
    so a form shows it next to `assisting_sections`."""
    return [
        {
            "type": "assistance_not_agreed",
            "loc": ["body", "assisting_sections"],
            "msg": (
                f"section {code} has not agreed to assist section {section}, and you do not "
                f"act for it: ask an admin to record an assistance agreement ({code} assists "
                f"{section}) or leave it out"
            ),
            "input": code,
        }
        for code in refused
    ]


async def agreed_for(session: AsyncSession, section: str) -> set[str]:
    """The sections that have agreed to assist `section`."""
    rows = await session.execute(
        select(assistance_agreements.c.assisting_section).where(
            assistance_agreements.c.section == section
        )
    )
    return set(rows.scalars().all())


async def record(
    session: AsyncSession, *, section: str, assisting_section: str, created_by: str
) -> tuple[Row[Any], bool]:
    """(the agreement, newly recorded); recording one that exists returns it unchanged."""
    inserted = await session.execute(
        insert(assistance_agreements)
        .values(section=section, assisting_section=assisting_section, created_by=created_by)
        .on_conflict_do_nothing()
        .returning(*assistance_agreements.c)
    )
    row = inserted.one_or_none()
    if row is not None:
        return row, True
    existing = await session.execute(
        select(assistance_agreements).where(
            assistance_agreements.c.section == section,
            assistance_agreements.c.assisting_section == assisting_section,
        )
    )
    return existing.one(), False


async def listing(session: AsyncSession, sections: set[str] | None) -> list[Row[Any]]:
    """Every agreement (`sections` None), or those where one of `sections` is either side."""
    query = select(assistance_agreements).order_by(
        assistance_agreements.c.section, assistance_agreements.c.assisting_section
    )
    if sections is not None:
        query = query.where(
            assistance_agreements.c.section.in_(sections)
            | assistance_agreements.c.assisting_section.in_(sections)
        )
    return list((await session.execute(query)).all())


async def remove(session: AsyncSession, *, section: str, assisting_section: str) -> bool:
    result = await session.execute(
        delete(assistance_agreements)
        .where(
            assistance_agreements.c.section == section,
            assistance_agreements.c.assisting_section == assisting_section,
        )
        .returning(assistance_agreements.c.section)
    )
    return result.first() is not None
