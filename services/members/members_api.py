"""HTTP routes for members; the decisions live in members.py, erasure.py, snapshots.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import Row, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.access import (
    Config,
    Db,
    Staff,
    member_not_found,
    require_manager,
    require_section,
    sections_of,
)
from services.members.erasure import erase_member
from services.members.members import (
    MemberSearch,
    UnknownReference,
    change_member,
    create_member,
    get_member,
    list_members,
    put_qualification,
    remove_qualification,
)
from services.members.models import members, sections
from services.members.qualifications import known_codes
from services.members.schemas import (
    AvailabilityIn,
    AvailabilityState,
    LocationIn,
    MemberIn,
    MemberOut,
    MemberPage,
    MemberPatch,
    MemberStatus,
    QualificationIn,
)
from services.members.snapshots import LiveFix, live_fix_is_stale, live_fix_publishes
from shared.observability import get_logger

log = get_logger(__name__)
router = APIRouter(tags=["members"])


def _unprocessable(loc: list[str | int], message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": loc, "msg": message, "type": "value_error"}],
    )


def _conflict_or_raise(exc: IntegrityError) -> HTTPException:
    if "members_phone_key" in str(exc.orig):
        return HTTPException(status.HTTP_409_CONFLICT, "another member has this phone number")
    raise exc


@router.post("/members", status_code=status.HTTP_201_CREATED, response_model=MemberOut)
async def add_member(body: MemberIn, principal: Staff, db: Db) -> MemberOut:
    require_manager(principal)
    require_section(principal, body.section)
    try:
        async with db.begin():
            member = await create_member(db, body)
    except UnknownReference as exc:
        raise _unprocessable(exc.loc, str(exc)) from exc
    except IntegrityError as exc:
        raise _conflict_or_raise(exc) from exc
    log.info("member created", member_id=str(member.id), section=member.section)
    return member


#: no control characters (PostgreSQL refuses a NUL byte in text: it would be a 500)
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


@router.get("/members", response_model=MemberPage)
async def members_page(
    principal: Staff,
    db: Db,
    section: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9_-]{1,15}$")] = None,
    member_status: Annotated[MemberStatus | None, Query(alias="status")] = None,
    qualification: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")] = None,
    availability: AvailabilityState | None = None,
    expiring_within_days: Annotated[
        int | None,
        Query(ge=0, le=3650, description="holds a qualification expiring within N days"),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=_PRINTABLE,
            description="part of the name or email, or at least 3 digits of the phone",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> MemberPage:
    """Members of the sections you act for, filtered; a page and the total."""
    require_manager(principal)
    search = MemberSearch(
        section=section,
        status=member_status,
        qualification=qualification,
        availability=availability,
        expiring_within_days=expiring_within_days,
        q=q.strip() if q else None,
    )
    items, total = await list_members(
        db, sections_of(principal), search, limit=limit, offset=offset
    )
    return MemberPage(items=items, total=total)


@router.get("/members/{member_id}", response_model=MemberOut)
async def read_member(member_id: UUID, principal: Staff, db: Db) -> MemberOut:
    require_manager(principal)
    member = await get_member(db, member_id, sections_of(principal))
    if member is None:
        raise member_not_found()
    return member


@router.patch("/members/{member_id}", response_model=MemberOut)
async def patch_member(member_id: UUID, body: MemberPatch, principal: Staff, db: Db) -> MemberOut:
    require_manager(principal)
    given = body.model_fields_set
    if "section" in given and body.section is not None:
        require_section(principal, body.section)

    async def apply(row: Row[Any]) -> None:
        values: dict[str, Any] = {}
        if "section" in given and body.section != row.section:
            if not await _section_exists(db, body.section):
                raise _unprocessable(["body", "section"], f"unknown section {body.section}")
            values["section"] = body.section
        for name in ("full_name", "phone", "language", "status"):
            if name in given:
                values[name] = getattr(body, name)
        if "email" in given:
            values["email"] = str(body.email) if body.email else None
        if "quiet_hours" in given:
            values["quiet_start"] = body.quiet_hours.start if body.quiet_hours else None
            values["quiet_end"] = body.quiet_hours.end if body.quiet_hours else None
        if "consent" in given and body.consent is not None:
            if body.consent.alerts != row.consent_alerts:
                values["consent_at"] = datetime.now(UTC)
            values["consent_alerts"] = body.consent.alerts
        if values:
            await db.execute(update(members).where(members.c.id == row.id).values(**values))

    try:
        async with db.begin():
            member = await change_member(db, member_id, sections_of(principal), apply)
    except IntegrityError as exc:
        raise _conflict_or_raise(exc) from exc
    if member is None:
        raise member_not_found()
    log.info("member changed", member_id=str(member_id), fields=sorted(given))
    return member


async def _section_exists(db: AsyncSession, code: str | None) -> bool:
    from sqlalchemy import select

    return (
        await db.execute(select(sections.c.code).where(sections.c.code == code))
    ).first() is not None


@router.put("/members/{member_id}/location", response_model=MemberOut)
async def put_location(
    member_id: UUID, body: LocationIn, principal: Staff, db: Db, cfg: Config
) -> MemberOut:
    require_manager(principal)
    now = datetime.now(UTC)
    at = min(body.at or now, now)  # a device clock ahead of ours must not pin the position
    decision: dict[str, bool] = {}

    async def apply(row: Row[Any]) -> None:
        if body.source == "home":
            await db.execute(
                update(members)
                .where(members.c.id == row.id)
                .values(home_lat=body.lat, home_lon=body.lon)
            )
            return
        if live_fix_is_stale(row.live_at, at):
            decision["publish"] = False
            return
        published = (
            LiveFix(row.published_live_lat, row.published_live_lon, row.published_live_at)
            if row.published_live_at is not None
            else None
        )
        decision["publish"] = live_fix_publishes(
            published,
            LiveFix(body.lat, body.lon, at),
            min_move_m=cfg.location_min_move_m,
            refresh_s=cfg.location_refresh_s,
        )
        await db.execute(
            update(members)
            .where(members.c.id == row.id)
            .values(live_lat=body.lat, live_lon=body.lon, live_at=at)
        )

    publish = None if body.source == "home" else (lambda _b, _a: decision.get("publish", False))
    async with db.begin():
        member = await change_member(db, member_id, sections_of(principal), apply, publish=publish)
    if member is None:
        raise member_not_found()
    return member


@router.put("/members/{member_id}/availability", response_model=MemberOut)
async def put_availability(
    member_id: UUID, body: AvailabilityIn, principal: Staff, db: Db
) -> MemberOut:
    require_manager(principal)

    async def apply(row: Row[Any]) -> None:
        await db.execute(
            update(members)
            .where(members.c.id == row.id)
            .values(availability=body.availability, unavailable_until=body.until)
        )

    async with db.begin():
        member = await change_member(db, member_id, sections_of(principal), apply)
    if member is None:
        raise member_not_found()
    return member


@router.post(
    "/members/{member_id}/qualifications",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberOut,
)
async def add_member_qualification(
    member_id: UUID, body: QualificationIn, principal: Staff, db: Db
) -> MemberOut:
    """Add a qualification, or renew one the member holds (new dates replace the old)."""
    require_manager(principal)

    async def apply(row: Row[Any]) -> None:
        if body.code not in await known_codes(db):
            raise _unprocessable(["body", "code"], f"unknown qualification {body.code}")
        await put_qualification(db, row.id, body.code, body.issued_at, body.expires_at)

    async with db.begin():
        member = await change_member(db, member_id, sections_of(principal), apply)
    if member is None:
        raise member_not_found()
    return member


@router.delete("/members/{member_id}/qualifications/{code}", response_model=MemberOut)
async def delete_member_qualification(
    member_id: UUID, code: str, principal: Staff, db: Db
) -> MemberOut:
    require_manager(principal)

    async def apply(row: Row[Any]) -> None:
        if not await remove_qualification(db, row.id, code):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "the member does not hold it")

    async with db.begin():
        member = await change_member(db, member_id, sections_of(principal), apply)
    if member is None:
        raise member_not_found()
    return member


@router.delete("/members/{member_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_member(member_id: UUID, principal: Staff, db: Db) -> Response:
    """Erasure: personal data goes for good; a tombstone goes to the compacted topic."""
    require_manager(principal)
    async with db.begin():
        erased = await erase_member(db, member_id, sections_of(principal))
    if not erased:
        raise member_not_found()
    log.info("member erased", member_id=str(member_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
