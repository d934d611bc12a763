"""`GET /sections/{code}/members.csv`: a section's registry as a CSV file with the
columns of the import (services.members.importing.CSV_COLUMNS), so that exporting a
section and importing the file into an empty registry gives the same members back.

What the import has no column for stays behind: ids, status (an import makes members
active), a live position, the time consent was given, erased members (not exported at
all). The home position is the `lat`/`lon` pair, written with Python's shortest exact
float form, so it reads back as the same number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import date, time
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response
from sqlalchemy import select

from services.members.access import Db, Staff, require_manager, require_section
from services.members.importing import CSV_COLUMNS
from services.members.models import member_qualifications, members
from shared.observability import get_logger

log = get_logger(__name__)
router = APIRouter(tags=["members"])

#: a cell a spreadsheet would run as a formula: names and emails come from people
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _hh_mm(value: time) -> str:
    return value.strftime("%H:%M")


def _qualifications(held: Iterable[tuple[str, date | None]]) -> str:
    return ";".join(
        f"{code}:{expires.isoformat()}" if expires else code for code, expires in sorted(held)
    )


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def member_cells(member: Mapping[Any, Any], held: Iterable[tuple[str, date | None]]) -> list[str]:
    """One member as the import's columns, in CSV_COLUMNS order (pure)."""
    quiet = (
        f"{_hh_mm(member['quiet_start'])}-{_hh_mm(member['quiet_end'])}"
        if member["quiet_start"] is not None and member["quiet_end"] is not None
        else ""
    )
    cells = {
        "section": member["section"] or "",
        "full_name": member["full_name"] or "",
        "phone": member["phone"] or "",
        "email": member["email"] or "",
        "language": member["language"] or "",
        "qualifications": _qualifications(held),
        "lat": _number(member["home_lat"]),
        "lon": _number(member["home_lon"]),
        "availability": member["availability"] or "",
        "quiet_hours": quiet,
        "consent_alerts": "true" if member["consent_alerts"] else "false",
    }
    return [cells[column] for column in CSV_COLUMNS]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def guarded(cell: str) -> str:
    """A phone (+355…) or a negative longitude is data, not a formula, and the import
    reads it as it is; any other cell starting like a formula (a name, an email) gets
    OWASP's leading apostrophe, so a spreadsheet opening the file runs nothing."""
    if cell.startswith(_FORMULA_START) and not _is_number(cell):
        return "'" + cell
    return cell


def to_csv(rows: Iterable[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows([guarded(cell) for cell in row] for row in rows)
    return out.getvalue()


@router.get(
    "/sections/{code}/members.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
    summary="A section's members as CSV, in the import's columns (a round trip keeps them)",
)
async def export_members(
    code: Annotated[str, Path(pattern=r"^[A-Z][A-Z0-9_-]{1,15}$")],
    principal: Staff,
    db: Db,
) -> Response:
    require_manager(principal)
    require_section(principal, code)
    rows = (
        (
            await db.execute(
                select(members)
                .where(members.c.section == code, members.c.erased_at.is_(None))
                .order_by(members.c.full_name, members.c.id)
            )
        )
        .mappings()
        .all()
    )
    # by the section, not by a list of ids: a section of 50,000 members is more than one
    # statement's parameters
    found = await db.execute(
        select(
            member_qualifications.c.member_id,
            member_qualifications.c.code,
            member_qualifications.c.expires_at,
        )
        .join(members, members.c.id == member_qualifications.c.member_id)
        .where(members.c.section == code, members.c.erased_at.is_(None))
    )
    held: dict[Any, list[tuple[str, date | None]]] = {}
    for member_id, qualification, expires in found:
        held.setdefault(member_id, []).append((qualification, expires))
    body = to_csv(member_cells(r, held.get(r["id"], ())) for r in rows)
    log.info("members exported", section=code, members=len(rows))
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="members-{code}.csv"'},
    )
