"""`POST /members/import`: a CSV of members, imported whole or not at all.

Every row is validated in Python with the same model as `POST /members` (so a row is
refused for exactly the reasons a single member would be), then checked against the
database in three queries (sections, qualification codes, phones already taken). Any bad
row: nothing is written and the report names each bad row, column and reason. All good:
the members, their qualifications and their snapshots go in with `COPY` in one
transaction.

Columns (header row required, order free): `section`, `full_name`, `phone`, `email`,
`language`, `qualifications` (`CODE:YYYY-MM-DD;CODE` — the date is the expiry),
`lat`, `lon`, `availability`, `quiet_hours` (`23:00-06:30`), `consent_alerts`
(`true`/`yes`/`1` or `false`/`no`/`0`; missing means no consent).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import io
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import email_validator
from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import EmailStr, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from sqlalchemy import ARRAY, Text, any_, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.access import Config, Db, Staff, require_manager
from services.members.members import SOURCE, member_values, qualification_values
from services.members.models import member_qualifications, members, sections
from services.members.qualifications import known_codes
from services.members.schemas import ImportReport, MemberIn, RowError
from services.members.snapshots import build_snapshot
from shared.auth import Principal
from shared.events.catalog import EventData
from shared.observability import get_logger
from shared.outbox import copy_events, driver_connection

log = get_logger(__name__)
router = APIRouter(tags=["members"])

REQUIRED_COLUMNS = ("section", "full_name", "phone")
#: the columns of an import file, in the order the documentation lists them
CSV_COLUMNS = (
    "section",
    "full_name",
    "phone",
    "email",
    "language",
    "qualifications",
    "lat",
    "lon",
    "availability",
    "quiet_hours",
    "consent_alerts",
)
KNOWN_COLUMNS = frozenset(CSV_COLUMNS)
#: the longest cell read: the csv module's own limit (`csv.field_size_limit()`, 128 KiB);
#: no column needs more than a few hundred characters
MAX_CELL_CHARS = csv.field_size_limit()
NUL = "\x00"
_TRUE = frozenset({"true", "yes", "y", "1", "oui", "si", "sì", "po"})
_FALSE = frozenset({"false", "no", "n", "0", "non", "jo", ""})
#: the model field an error is reported on -> the CSV column a person has to fix
_FIELD_COLUMN = {"location": "lat", "consent": "consent_alerts"}


#: a plain ASCII local part (RFC 5322 dot-atom), the form nearly every address has;
#: anything else (quoted, Unicode, a display name, spaces) takes the full check
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
#: email-validator's limits (RFC 5321): the local part, and the whole address
_LOCAL_MAX, _ADDRESS_MAX = 64, 254


@functools.lru_cache(maxsize=4096)
def _normalised_domain(domain: str) -> str | None:
    """The domain as `email-validator` normalises it, or None when it refuses it. Most of
    an address's check (IDNA/UTS-46, character by character) is the domain's, and an
    import's thousands of rows share a handful of domains: checked once each."""
    try:
        checked = email_validator.validate_email(f"a@{domain}", check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return checked.domain if checked.domain.isascii() else None


def plain_email(value: object) -> str | None:
    """`EmailStr`'s result for a plain address (ASCII dot-atom local part, a domain
    email-validator accepts, within its lengths), from the domain's cached check; None
    when the address is anything else, for the full check to judge and word the error."""
    if not isinstance(value, str) or not value.isascii():
        return None
    local, at, domain = value.partition("@")
    if not at or len(local) > _LOCAL_MAX or not _PLAIN_LOCAL.fullmatch(local):
        return None
    normalised = _normalised_domain(domain)
    if normalised is None:
        return None
    address = f"{local}@{normalised}"
    return address if len(address) <= _ADDRESS_MAX else None


def _email(value: object, full_check: ValidatorFunctionWrapHandler) -> Any:
    plain = plain_email(value)
    return plain if plain is not None else full_check(value)


class ImportedMember(MemberIn):
    """`MemberIn` with the same email rule, checked faster for a file of thousands: a
    plain address from its domain's cached check, any other through `EmailStr` itself
    (same errors, same normalisation; tests/members/test_import_email.py compares them)."""

    email: Annotated[EmailStr, WrapValidator(_email)] | None = None


@dataclass(frozen=True)
class ParsedRow:
    row: int
    line: int
    member: MemberIn


class BadRow(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


def _qualifications(text: str) -> list[dict[str, Any]]:
    held: list[dict[str, Any]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        code, _, expiry = part.partition(":")
        held.append({"code": code.strip().upper(), "expires_at": expiry.strip() or None})
    return held


def _quiet_hours(text: str) -> dict[str, str] | None:
    if not text.strip():
        return None
    start, sep, end = text.partition("-")
    if not sep:
        raise BadRow("quiet_hours", "write quiet hours as HH:MM-HH:MM, e.g. 23:00-06:30")
    return {"start": start.strip(), "end": end.strip()}


def _consent(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRow("consent_alerts", "write true or false")


def row_to_body(raw: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the JSON body `POST /members` takes (BadRow for CSV-only syntax)."""

    def cell(name: str) -> str:
        return (raw.get(name) or "").strip()

    body: dict[str, Any] = {
        "section": cell("section").upper(),
        "full_name": cell("full_name"),
        "phone": cell("phone"),
        "consent": {"alerts": _consent(cell("consent_alerts"))},
    }
    if cell("email"):
        body["email"] = cell("email")
    if cell("language"):
        body["language"] = cell("language").lower()
    if cell("availability"):
        body["availability"] = cell("availability").lower()
    if cell("qualifications"):
        body["qualifications"] = _qualifications(cell("qualifications"))
    quiet = _quiet_hours(cell("quiet_hours"))
    if quiet:
        body["quiet_hours"] = quiet
    lat, lon = cell("lat"), cell("lon")
    if lat or lon:
        if not (lat and lon):
            raise BadRow("lon" if lat else "lat", "give both lat and lon, or neither")
        body["location"] = {"lat": lat, "lon": lon}
    return body


def _errors_of(exc: ValidationError, row: int, line: int) -> list[RowError]:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = loc[0] if loc else "row"
        column = _FIELD_COLUMN.get(field, field)
        if field == "location" and len(loc) > 1:
            column = loc[1]
        errors.append(RowError(row=row, line=line, column=column, reason=err["msg"]))
    return errors


def count_rows(text: str, *, max_rows: int) -> int:
    """How many data rows the file holds (blank lines aside), counting at most one past
    `max_rows`: the denominator of an import job's progress. Counting stops at a row the
    csv module cannot read (a cell over `MAX_CELL_CHARS`); `parse_csv` reports it."""
    rows = -1  # the header
    with contextlib.suppress(csv.Error):
        for cells in csv.reader(io.StringIO(text)):
            if cells:
                rows += 1
                if rows > max_rows:
                    break
    return max(rows, 0)


def _shown(column: str) -> str:
    """A header name as the report shows it: NUL escaped (PostgreSQL's JSON cannot hold
    one, and job reports are stored), and cut to a readable length."""
    return column.replace(NUL, "\\u0000")[:80] or "(a header cell left empty)"


def _unreadable(row: int, line: int, exc: csv.Error) -> RowError:
    return RowError(
        row=row,
        line=line,
        column="row" if row else "header",
        reason=f"this line cannot be read as CSV ({exc}): a cell may hold at most "
        f"{MAX_CELL_CHARS} characters, and a quote opened must be closed",
    )


def parse_csv(
    text: str,
    *,
    max_rows: int,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 200,
) -> tuple[list[ParsedRow], list[RowError]]:
    """Validate a whole file without I/O: the rows that parsed, and every error found
    (bad cells, missing columns, a phone given twice in the file). Row 1 is the first
    row after the header; `line` is the file's line number. `on_progress(rows)` is told
    every `progress_every` rows how many have been validated (import jobs report it)."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        return [], [_unreadable(0, 1, exc)]
    reader.fieldnames = header
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in KNOWN_COLUMNS]
    if missing or unknown:
        header_errors = [
            RowError(row=0, line=1, column=c, reason="required column missing") for c in missing
        ]
        header_errors += [
            RowError(row=0, line=1, column=_shown(c), reason="unknown column") for c in unknown
        ]
        return [], header_errors
    parsed: list[ParsedRow] = []
    errors: list[RowError] = []
    first_row_of_phone: dict[str, int] = {}
    index = 0
    while True:
        index += 1
        starts_on = reader.line_num + 1
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # the reader cannot find where the next row starts: stop at this one
            errors.append(_unreadable(index, starts_on, exc))
            break
        line = reader.line_num
        if on_progress is not None and index % progress_every == 0:
            on_progress(index - 1)
        if index > max_rows:
            errors.append(
                RowError(row=index, line=line, column="row", reason=f"more than {max_rows} rows")
            )
            break
        if None in raw:
            errors.append(RowError(row=index, line=line, column="row", reason="too many cells"))
            continue
        with_nul = [c for c in header if NUL in (raw.get(c) or "")]
        if with_nul:
            # PostgreSQL's text cannot hold U+0000; no person types one
            errors.extend(
                RowError(row=index, line=line, column=c, reason="remove the NUL character")
                for c in with_nul
            )
            continue
        try:
            member = ImportedMember.model_validate(row_to_body(raw))
        except BadRow as exc:
            errors.append(RowError(row=index, line=line, column=exc.column, reason=exc.reason))
            continue
        except ValidationError as exc:
            errors.extend(_errors_of(exc, index, line))
            continue
        earlier = first_row_of_phone.setdefault(member.phone, index)
        if earlier != index:
            errors.append(
                RowError(
                    row=index, line=line, column="phone", reason=f"same phone as row {earlier}"
                )
            )
            continue
        parsed.append(ParsedRow(index, line, member))
    if not parsed and not errors:
        errors.append(RowError(row=0, line=1, column="row", reason="the file holds no member"))
    return parsed, errors


async def check_against_database(
    session: AsyncSession, rows: list[ParsedRow], principal: Principal
) -> tuple[list[RowError], dict[str, tuple[str, str]]]:
    """Errors that need the database, and each section's (language, timezone)."""
    codes = {r.member.section for r in rows}
    found = {
        code: (language, tz)
        for code, language, tz in (
            await session.execute(
                select(sections.c.code, sections.c.language, sections.c.timezone).where(
                    sections.c.code.in_(codes)
                )
            )
        ).all()
    }
    catalogue = await known_codes(session)
    # one array parameter, not one bind parameter per phone: asyncpg refuses a statement
    # with more than 32,767 (an import may hold MUSTER_IMPORT_MAX_ROWS, 50,000), and the
    # driver's InterfaceError then reads as an outage: 503 for a valid file
    phones = bindparam("phones", [r.member.phone for r in rows], type_=ARRAY(Text))
    taken = set(
        (
            await session.execute(select(members.c.phone).where(members.c.phone == any_(phones)))
        ).scalars()
    )
    errors: list[RowError] = []
    for r in rows:
        section = r.member.section
        if not principal.can_act_for(section):
            errors.append(
                RowError(
                    row=r.row,
                    line=r.line,
                    column="section",
                    reason=f"you do not act for section {section}",
                )
            )
        elif section not in found:
            errors.append(
                RowError(
                    row=r.row, line=r.line, column="section", reason=f"unknown section {section}"
                )
            )
        for q in r.member.qualifications:
            if q.code not in catalogue:
                errors.append(
                    RowError(
                        row=r.row,
                        line=r.line,
                        column="qualifications",
                        reason=f"unknown qualification {q.code}",
                    )
                )
        if r.member.phone in taken:
            errors.append(
                RowError(
                    row=r.row,
                    line=r.line,
                    column="phone",
                    reason="another member has this phone number",
                )
            )
    return errors, found


#: the `members` columns an import fills, in `member_values` keys (the rest keep defaults)
_MEMBER_COLUMNS = (
    "id",
    "section",
    "status",
    "full_name",
    "phone",
    "email",
    "language",
    "availability",
    "unavailable_until",
    "quiet_start",
    "quiet_end",
    "home_lat",
    "home_lon",
    "live_lat",
    "live_lon",
    "live_at",
    "consent_alerts",
    "consent_at",
    "version",
    "created_at",
    "updated_at",
)
_QUALIFICATION_COLUMNS = ("member_id", "code", "issued_at", "expires_at")


async def import_rows(
    session: AsyncSession,
    rows: list[ParsedRow],
    section_info: dict[str, tuple[str, str]],
    *,
    batch_size: int | None = None,
    on_batch: Callable[[int], Awaitable[None]] | None = None,
) -> int:
    """Load validated rows and their snapshots with `COPY` (caller holds the transaction,
    so the batches commit together or not at all). With `batch_size`, rows go in batches
    of that size and `on_batch(rows inserted so far)` is awaited after each.

    `COPY` rather than batched INSERTs: one round trip and no per-row statement for
    thousands of rows (issue 9). A phone taken meanwhile still surfaces as SQLAlchemy's
    IntegrityError naming `members_phone_key`, as a batched INSERT's did."""
    now = datetime.now(UTC)
    size = batch_size or max(len(rows), 1)
    driver = await driver_connection(session)
    inserted = 0
    for start in range(0, len(rows), size):
        member_records: list[tuple[Any, ...]] = []
        qualification_records: list[tuple[Any, ...]] = []
        snapshots: list[EventData] = []
        for r in rows[start : start + size]:
            language, timezone = section_info[r.member.section]
            member_id = uuid.uuid4()
            values = member_values(
                r.member, member_id=member_id, language=r.member.language or language, now=now
            )
            quals = qualification_values(r.member, member_id)
            member_records.append(tuple(values[c] for c in _MEMBER_COLUMNS))
            qualification_records.extend(tuple(q[c] for c in _QUALIFICATION_COLUMNS) for q in quals)
            snapshots.append(
                build_snapshot(values, quals, timezone=timezone, version=1, changed_at=now)
            )
        try:
            await driver.copy_records_to_table(
                members.name, records=member_records, columns=_MEMBER_COLUMNS
            )
            if qualification_records:
                await driver.copy_records_to_table(
                    member_qualifications.name,
                    records=qualification_records,
                    columns=_QUALIFICATION_COLUMNS,
                )
        except asyncpg.UniqueViolationError as exc:
            raise IntegrityError("COPY members", None, exc) from exc
        await copy_events(session, snapshots, source=SOURCE)
        inserted += len(member_records)
        if on_batch is not None:
            await on_batch(inserted)
    return inserted


async def read_csv(request: Request) -> str:
    """The uploaded file's text (BadRow naming `file` when it is missing or not UTF-8)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise BadRow("file", "send the CSV as the form field `file`")
        data = await upload.read()
    else:
        data = await request.body()
    return csv_text(data)


def csv_text(data: bytes) -> str:
    """An uploaded file's text: UTF-8, with or without a byte-order mark (BadRow naming
    `file` otherwise)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRow("file", "the file is not UTF-8 text: save it as CSV UTF-8") from exc


def refused_response(errors: list[RowError]) -> JSONResponse:
    rows = {e.row for e in errors}
    report = ImportReport(imported=0, errors=errors)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={
            "detail": f"nothing imported: {len(rows)} row(s) to fix, listed in `errors`",
            **report.model_dump(mode="json"),
        },
    )


@router.post(
    "/members/import",
    status_code=status.HTTP_201_CREATED,
    response_model=ImportReport,
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            }
        }
    },
)
async def import_members(request: Request, principal: Staff, db: Db, cfg: Config) -> Any:
    """Import a CSV of members: all rows or none, with a report naming each bad cell."""
    require_manager(principal)
    try:
        text = await read_csv(request)
    except BadRow as exc:
        return refused_response([RowError(row=0, line=0, column=exc.column, reason=exc.reason)])
    # a big file takes seconds to validate: off the event loop, so other requests go on
    rows, errors = await asyncio.to_thread(parse_csv, text, max_rows=cfg.import_max_rows)
    if errors:
        return refused_response(errors)
    try:
        async with db.begin():
            db_errors, section_info = await check_against_database(db, rows, principal)
            if db_errors:
                return refused_response(db_errors)
            imported = await import_rows(db, rows, section_info)
    except IntegrityError as exc:
        if "members_phone_key" not in str(exc.orig):
            raise
        # a phone taken by a concurrent write between the check and the insert
        return refused_response(
            [RowError(row=0, line=0, column="phone", reason="a phone was taken meanwhile: retry")]
        )
    log.info("members imported", count=imported)
    return ImportReport(imported=imported)
