"""Members: registering, reading and changing them; every change that affects targeting
adds the member's full snapshot to the outbox in the same transaction (no HTTP here)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Row, and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.models import member_qualifications, members, sections
from services.members.schemas import (
    ConsentOut,
    LocationOut,
    MemberIn,
    MemberOut,
    PositionOut,
    QualificationOut,
    QuietHoursOut,
)
from services.members.snapshots import build_snapshot, targeting_changed
from shared.outbox import add_event

SOURCE = "muster.members"


class UnknownReference(ValueError):
    """A body names a section or qualification code that does not exist."""

    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _now() -> datetime:
    return datetime.now(UTC)


def member_values(
    body: MemberIn, *, member_id: UUID, language: str, now: datetime
) -> dict[str, Any]:
    """The `members` row of a new member (shared by the API and the CSV import)."""
    return {
        "id": member_id,
        "section": body.section,
        "status": body.status,
        "full_name": body.full_name,
        "phone": body.phone,
        "email": str(body.email) if body.email else None,
        "language": language,
        "availability": body.availability,
        "unavailable_until": body.unavailable_until if body.availability == "unavailable" else None,
        "quiet_start": body.quiet_hours.start if body.quiet_hours else None,
        "quiet_end": body.quiet_hours.end if body.quiet_hours else None,
        "home_lat": body.location.lat if body.location else None,
        "home_lon": body.location.lon if body.location else None,
        "live_lat": None,
        "live_lon": None,
        "live_at": None,
        "consent_alerts": body.consent.alerts,
        "consent_at": now,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


def qualification_values(body: MemberIn, member_id: UUID) -> list[dict[str, Any]]:
    return [
        {
            "member_id": member_id,
            "code": q.code,
            "issued_at": q.issued_at,
            "expires_at": q.expires_at,
        }
        for q in body.qualifications
    ]


async def load_qualifications(
    session: AsyncSession, member_ids: Sequence[UUID]
) -> dict[UUID, list[dict[str, Any]]]:
    rows = await session.execute(
        select(member_qualifications)
        .where(member_qualifications.c.member_id.in_(member_ids))
        .order_by(member_qualifications.c.code)
    )
    held: dict[UUID, list[dict[str, Any]]] = {m: [] for m in member_ids}
    for row in rows.mappings():
        held[row["member_id"]].append(dict(row))
    return held


def _member_query(visible: frozenset[str] | None) -> Any:
    query = (
        select(members, sections.c.timezone)
        .join(sections, sections.c.code == members.c.section)
        .where(members.c.erased_at.is_(None))
    )
    if visible is not None:
        query = query.where(members.c.section.in_(visible))
    return query


async def find_member(
    session: AsyncSession, member_id: UUID, visible: frozenset[str] | None, *, lock: bool = False
) -> Row[Any] | None:
    """The member if it exists, is not erased and is in a visible section (else None: the
    caller answers 404 either way, so other sections' members do not leak)."""
    query = _member_query(visible).where(members.c.id == member_id)
    if lock:
        query = query.with_for_update(of=members)
    return (await session.execute(query)).first()


def to_out(
    row: Row[Any] | Mapping[str, Any], qualifications: Iterable[dict[str, Any]]
) -> MemberOut:
    m: Mapping[str, Any] = dict(row._mapping) if isinstance(row, Row) else row
    home = PositionOut(lat=m["home_lat"], lon=m["home_lon"]) if m["home_lat"] is not None else None
    live = (
        PositionOut(lat=m["live_lat"], lon=m["live_lon"], at=m["live_at"])
        if m["live_lat"] is not None
        else None
    )
    quiet = (
        QuietHoursOut(start=m["quiet_start"], end=m["quiet_end"])
        if m["quiet_start"] is not None
        else None
    )
    return MemberOut(
        id=m["id"],
        section=m["section"],
        status=m["status"],
        full_name=m["full_name"],
        phone=m["phone"],
        email=m["email"],
        language=m["language"],
        qualifications=[
            QualificationOut(**{k: q[k] for k in ("code", "issued_at", "expires_at")})
            for q in qualifications
        ],
        location=LocationOut(home=home, live=live),
        availability=m["availability"],
        unavailable_until=m["unavailable_until"],
        quiet_hours=quiet,
        consent=ConsentOut(alerts=bool(m["consent_alerts"]), at=m["consent_at"]),
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


async def check_references(session: AsyncSession, body: MemberIn) -> tuple[str, str]:
    """The section's (language, timezone); UnknownReference if the section or a
    qualification code does not exist."""
    section = (
        await session.execute(
            select(sections.c.language, sections.c.timezone).where(sections.c.code == body.section)
        )
    ).first()
    if section is None:
        raise UnknownReference(["body", "section"], f"unknown section {body.section}")
    if body.qualifications:
        from services.members.qualifications import known_codes

        known = await known_codes(session)
        for i, q in enumerate(body.qualifications):
            if q.code not in known:
                raise UnknownReference(
                    ["body", "qualifications", i, "code"], f"unknown qualification {q.code}"
                )
    return section.language, section.timezone


async def create_member(session: AsyncSession, body: MemberIn) -> MemberOut:
    """Insert a member and its first snapshot (version 1); IntegrityError on a taken phone."""
    language, timezone = await check_references(session, body)
    member_id = uuid.uuid4()
    now = _now()
    values = member_values(body, member_id=member_id, language=body.language or language, now=now)
    await session.execute(members.insert().values(**values))
    quals = qualification_values(body, member_id)
    if quals:
        await session.execute(member_qualifications.insert(), quals)
    snapshot = build_snapshot(values, quals, timezone=timezone, version=1, changed_at=now)
    await add_event(session, snapshot, source=SOURCE, correlationid=str(member_id))
    return to_out(values, quals)


Change = Callable[[Row[Any]], Awaitable[None]]


async def change_member(
    session: AsyncSession,
    member_id: UUID,
    visible: frozenset[str] | None,
    apply: Change,
    *,
    publish: Callable[[Row[Any], Row[Any]], bool] | None = None,
) -> MemberOut | None:
    """Lock the member, apply a change, and add a new snapshot when targeting changed
    (or when `publish(before, after)` says so). None if the member is not visible."""
    before = await find_member(session, member_id, visible, lock=True)
    if before is None:
        return None
    held_before = (await load_qualifications(session, [member_id]))[member_id]
    await apply(before)
    after = await find_member(session, member_id, None)
    assert after is not None
    held_after = (await load_qualifications(session, [member_id]))[member_id]
    now = _now()
    new = build_snapshot(
        dict(after._mapping),
        held_after,
        timezone=after.timezone,
        version=after.version + 1,
        changed_at=now,
    )
    if publish is not None:
        emit = publish(before, after)
    else:
        old = build_snapshot(
            dict(before._mapping),
            held_before,
            timezone=before.timezone,
            version=before.version,
            changed_at=now,
        )
        emit = targeting_changed(old, new)
    values: dict[str, Any] = {"updated_at": now}
    if emit:
        values.update(
            version=new.version,
            published_live_lat=after.live_lat,
            published_live_lon=after.live_lon,
            published_live_at=after.live_at,
        )
        await add_event(session, new, source=SOURCE, correlationid=str(member_id))
    await session.execute(update(members).where(members.c.id == member_id).values(**values))
    final = await find_member(session, member_id, None)
    assert final is not None
    return to_out(final, held_after)


async def get_member(
    session: AsyncSession, member_id: UUID, visible: frozenset[str] | None
) -> MemberOut | None:
    row = await find_member(session, member_id, visible)
    if row is None:
        return None
    return to_out(row, (await load_qualifications(session, [member_id]))[member_id])


@dataclass(frozen=True)
class MemberSearch:
    """The filters of `GET /members` (None: not filtered on)."""

    section: str | None = None
    status: str | None = None
    #: holds this qualification (valid or expired: the expiry is shown)
    qualification: str | None = None
    #: effectively available now (an `unavailable` whose `until` has passed is available)
    availability: str | None = None
    #: holds a qualification (`qualification` if given) expiring today or within N days
    expiring_within_days: int | None = None
    #: part of the name or email (case-insensitive), or digits of the phone
    q: str | None = None


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filtered(query: Any, search: MemberSearch, *, now: datetime) -> Any:
    if search.section is not None:
        query = query.where(members.c.section == search.section)
    if search.status is not None:
        query = query.where(members.c.status == search.status)
    if search.availability is not None:
        available_now = or_(
            members.c.availability == "available",
            and_(
                members.c.unavailable_until.is_not(None),
                members.c.unavailable_until <= now,
            ),
        )
        query = query.where(available_now if search.availability == "available" else ~available_now)
    if search.qualification is not None or search.expiring_within_days is not None:
        held = select(member_qualifications.c.member_id).where(
            member_qualifications.c.member_id == members.c.id
        )
        if search.qualification is not None:
            held = held.where(member_qualifications.c.code == search.qualification)
        if search.expiring_within_days is not None:
            today = now.date()
            held = held.where(
                member_qualifications.c.expires_at.between(
                    today, today + timedelta(days=search.expiring_within_days)
                )
            )
        query = query.where(held.exists())
    if search.q:
        pattern = _like_pattern(search.q)
        matches = [members.c.full_name.ilike(pattern), members.c.email.ilike(pattern)]
        digits = "".join(ch for ch in search.q if ch.isdigit())
        if len(digits) >= 3:
            matches.append(members.c.phone.like(f"%{digits}%"))
        query = query.where(or_(*matches))
    return query


async def list_members(
    session: AsyncSession,
    visible: frozenset[str] | None,
    search: MemberSearch,
    *,
    limit: int,
    offset: int,
    now: datetime | None = None,
) -> tuple[list[MemberOut], int]:
    query = _filtered(_member_query(visible), search, now=now or _now())
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = (
        await session.execute(
            query.order_by(members.c.created_at, members.c.id).limit(limit).offset(offset)
        )
    ).all()
    held = await load_qualifications(session, [r.id for r in rows])
    return [to_out(r, held[r.id]) for r in rows], int(total or 0)


async def put_qualification(
    session: AsyncSession, member_id: UUID, code: str, issued_at: Any, expires_at: Any
) -> None:
    await session.execute(
        insert(member_qualifications)
        .values(member_id=member_id, code=code, issued_at=issued_at, expires_at=expires_at)
        .on_conflict_do_update(
            index_elements=["member_id", "code"],
            set_={"issued_at": issued_at, "expires_at": expires_at},
        )
    )


async def remove_qualification(session: AsyncSession, member_id: UUID, code: str) -> bool:
    result = await session.execute(
        delete(member_qualifications)
        .where(member_qualifications.c.member_id == member_id)
        .where(member_qualifications.c.code == code)
        .returning(member_qualifications.c.code)
    )
    return result.first() is not None
