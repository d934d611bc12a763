"""Sections: the national or regional units members belong to.

A section's time zone is part of each of its members' snapshots (quiet hours are local
times), so changing it re-publishes every member of the section in the same transaction;
its name and language (the default for new members) are not in snapshots.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.access import (
    Db,
    Staff,
    require_admin,
    require_manager,
    require_section,
    sections_of,
)
from services.members.members import SOURCE, load_qualifications
from services.members.models import members, sections
from services.members.schemas import SectionIn, SectionOut, SectionPatch
from services.members.snapshots import build_snapshot
from shared.observability import get_logger
from shared.outbox import add_events

log = get_logger(__name__)

router = APIRouter(tags=["sections"])
#: a section code in a path, bounded like the body's (a 422 naming `code`, never a 500)
SectionPath = Annotated[str, Path(pattern=r"^[A-Z][A-Z0-9_-]{1,15}$")]


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


@router.get("/sections/{code}", response_model=SectionOut)
async def read_section(code: SectionPath, principal: Staff, db: Db) -> SectionOut:
    require_manager(principal)
    found = await get_section(db, code)
    if found is None or not principal.can_act_for(code):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no section {code}")
    return found


async def republish_section(session: AsyncSession, code: str, timezone: str) -> int:
    """A new snapshot for every member of the section (its time zone changed); the
    UPDATE locks the rows and bumps their versions in one statement."""
    now = datetime.now(UTC)
    rows = (
        await session.execute(
            update(members)
            .where(members.c.section == code)
            .where(members.c.erased_at.is_(None))
            .values(
                version=members.c.version + 1,
                updated_at=now,
                published_live_lat=members.c.live_lat,
                published_live_lon=members.c.live_lon,
                published_live_at=members.c.live_at,
            )
            .returning(members)
        )
    ).all()
    if not rows:
        return 0
    held = await load_qualifications(session, [r.id for r in rows])
    snapshots = [
        build_snapshot(
            dict(r._mapping), held[r.id], timezone=timezone, version=r.version, changed_at=now
        )
        for r in rows
    ]
    await add_events(session, list(snapshots), source=SOURCE)
    return len(rows)


@router.patch("/sections/{code}", response_model=SectionOut)
async def change_section(
    code: SectionPath, body: SectionPatch, principal: Staff, db: Db
) -> SectionOut:
    """Rename a section, or change its time zone or default language (admins only)."""
    require_admin(principal)
    require_section(principal, code)
    values = body.model_dump(exclude_unset=True)
    republished = 0
    async with db.begin():
        row = (
            await db.execute(select(sections).where(sections.c.code == code).with_for_update())
        ).first()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no section {code}")
        if values:
            await db.execute(update(sections).where(sections.c.code == code).values(**values))
        if "timezone" in values and values["timezone"] != row.timezone:
            republished = await republish_section(db, code, values["timezone"])
        changed = await get_section(db, code)
    assert changed is not None
    log.info(
        "section changed",
        section=code,
        fields=sorted(values),
        republished=republished,
    )
    return changed
