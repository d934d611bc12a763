"""The qualification catalogue (codes members can hold); admins add codes."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.access import Db, Staff, require_admin, require_manager
from services.members.models import qualification_types
from services.members.schemas import QualificationTypeIn, QualificationTypeOut

router = APIRouter(tags=["qualifications"])


async def known_codes(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(qualification_types.c.code))).scalars())


@router.get("/qualifications", response_model=list[QualificationTypeOut])
async def list_qualifications(principal: Staff, db: Db) -> list[QualificationTypeOut]:
    require_manager(principal)
    rows = (await db.execute(select(qualification_types).order_by("code"))).all()
    return [QualificationTypeOut.model_validate(r._mapping) for r in rows]


@router.post(
    "/qualifications", status_code=status.HTTP_201_CREATED, response_model=QualificationTypeOut
)
async def add_qualification(
    body: QualificationTypeIn, principal: Staff, db: Db
) -> QualificationTypeOut:
    require_admin(principal)
    async with db.begin():
        inserted = await db.execute(
            insert(qualification_types)
            .values(code=body.code, name=body.name)
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(qualification_types.c.code)
        )
        if inserted.first() is None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"qualification {body.code} exists")
    return QualificationTypeOut(code=body.code, name=body.name)
