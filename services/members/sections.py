"""Sections: the national or regional units members belong to."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.access import Db, Staff, require_admin, require_manager, sections_of
from services.members.models import sections
from services.members.schemas import SectionIn, SectionOut

router = APIRouter(tags=["sections"])


async def section_timezones(session: AsyncSession, codes: set[str]) -> dict[str, str]:
    rows = await session.execute(
        select(sections.c.code, sections.c.timezone).where(sections.c.code.in_(codes))
    )
    return {code: tz for code, tz in rows.all()}


async def get_section(session: AsyncSession, code: str) -> SectionOut | None:
    row = (await session.execute(select(sections).where(sections.c.code == code))).first()
    return SectionOut.model_validate(row._mapping) if row else None


@router.post("/sections", status_code=status.HTTP_201_CREATED, response_model=SectionOut)
async def create_section(body: SectionIn, principal: Staff, db: Db) -> SectionOut:
    require_admin(principal)
    async with db.begin():
        inserted = await db.execute(
            insert(sections)
            .values(**body.model_dump())
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(sections.c.code)
        )
        if inserted.first() is None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"section {body.code} already exists")
    return SectionOut(**body.model_dump())


@router.get("/sections", response_model=list[SectionOut])
async def list_sections(principal: Staff, db: Db) -> list[SectionOut]:
    require_manager(principal)
    query = select(sections).order_by(sections.c.code)
    visible = sections_of(principal)
    if visible is not None:
        query = query.where(sections.c.code.in_(visible))
    rows = (await db.execute(query)).all()
    return [SectionOut.model_validate(r._mapping) for r in rows]
