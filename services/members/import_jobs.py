"""`POST /members/imports`: the CSV import as a background job whose progress a page can
follow, with the same validation and the same all-or-nothing insert as
`POST /members/import` (importing.py does both; this module only runs them and records
how far they got).

A job goes `validating` → (`refused` | `importing` → `done`), or `done` straight after
validation for a dry run; anything unexpected ends it `failed`. The members are inserted
in one transaction that also marks the job `done`, so a job is never `done` without its
members nor its members there without `done`. Progress is written by separate short
transactions every few hundred rows (at most about four times a second).

A running job holds a PostgreSQL advisory lock (on a connection of its own) from before
its row is visible until it ends. A job found unfinished whose lock is free was cut off
by a crash or a restart: it is marked `failed` (at start-up, and whenever it is read), and
since its insert never committed nothing of it was imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from services.members.access import Config, Staff, require_manager
from services.members.importing import (
    BadRow,
    check_against_database,
    count_rows,
    import_rows,
    parse_csv,
    read_csv,
    refused_response,
)
from services.members.models import import_jobs
from services.members.schemas import ImportJobOut, RowError
from shared.auth import Principal
from shared.observability import get_logger

log = get_logger(__name__)
router = APIRouter(tags=["members"])

#: rows inserted per statement batch (and progress update) while importing
INSERT_BATCH = 500
#: how often, at most, validation progress is written while the file is checked
PROGRESS_INTERVAL_S = 0.25
UNFINISHED = ("validating", "importing")
INTERRUPTED = "interrupted by a restart of the members service: nothing was imported"
PHONE_TAKEN_MEANWHILE = RowError(
    row=0, line=0, column="phone", reason="a phone was taken meanwhile: retry"
)


def lock_key(job_id: UUID) -> int:
    """The job's advisory-lock key: 64 bits of its id, as PostgreSQL's signed bigint."""
    return int.from_bytes(job_id.bytes[:8], "big", signed=True)


def progress_percent(
    *, status: str, dry_run: bool, total: int, processed: int, imported: int
) -> int:
    """0-100 over the whole job, never going back: validation is the first half of a real
    import and the insert the second; a dry run is validation alone."""
    if status in ("done", "refused"):
        return 100
    if total <= 0:
        return 0
    validated = min(processed, total) / total
    if dry_run:
        return min(99, int(validated * 100))
    return min(99, int(validated * 50 + min(imported, total) / total * 50))


def job_out(row: Any) -> ImportJobOut:
    m = row._mapping
    return ImportJobOut(
        id=m["id"],
        status=m["status"],
        dry_run=m["dry_run"],
        total=m["total"],
        processed=m["processed"],
        imported=m["imported"],
        errors=[RowError.model_validate(e) for e in m["errors"]],
        detail=m["detail"],
        sections=list(m["sections"]),
        created_at=m["created_at"],
        finished_at=m["finished_at"],
        percent=progress_percent(
            status=m["status"],
            dry_run=m["dry_run"],
            total=m["total"],
            processed=m["processed"],
            imported=m["imported"],
        ),
    )


class ImportJobRunner:
    """Runs the jobs of one members process; keeps a reference to each running task."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_rows: int,
        concurrent: int = 2,
    ) -> None:
        self._engine = engine
        self._db = sessionmaker
        self._max_rows = max_rows
        self._slots = asyncio.Semaphore(concurrent)
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, principal: Principal, csv_text: str, *, dry_run: bool) -> UUID:
        job_id = uuid.uuid4()
        lock = await self._engine.connect()
        try:
            # the lock is taken before the row is visible, so no reader can take the job
            # for an interrupted one; it lives as long as this connection (a crash frees it)
            await lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key(job_id)})
            await lock.commit()
            async with self._db() as session, session.begin():
                await session.execute(
                    import_jobs.insert().values(
                        id=job_id,
                        account_id=uuid.UUID(principal.account_id),
                        dry_run=dry_run,
                        status="validating",
                    )
                )
        except BaseException:
            await _release(lock, lock_key(job_id))
            raise
        task = asyncio.create_task(
            self._run(job_id, principal, csv_text, dry_run, lock), name=f"import-{job_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job_id

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _set(self, job_id: UUID, **values: Any) -> None:
        async with self._db() as session, session.begin():
            await session.execute(
                update(import_jobs).where(import_jobs.c.id == job_id).values(**values)
            )

    async def _fail_unfinished(self, job_id: UUID, detail: str) -> None:
        async with self._db() as session, session.begin():
            await session.execute(
                update(import_jobs)
                .where(import_jobs.c.id == job_id)
                .where(import_jobs.c.status.in_(UNFINISHED))
                .values(status="failed", detail=detail, finished_at=datetime.now(UTC))
            )

    async def _finish(self, job_id: UUID, status_: str, **values: Any) -> None:
        await self._set(job_id, status=status_, finished_at=datetime.now(UTC), **values)

    async def _run(
        self,
        job_id: UUID,
        principal: Principal,
        csv_text: str,
        dry_run: bool,
        lock: AsyncConnection,
    ) -> None:
        try:
            async with self._slots:
                await self._validate_and_import(job_id, principal, csv_text, dry_run)
        except asyncio.CancelledError:
            # shutting down: the insert rolled back (a start-up also marks such jobs)
            with contextlib.suppress(Exception):
                await self._fail_unfinished(job_id, INTERRUPTED)
            raise
        except Exception:
            log.exception("import job failed", job_id=str(job_id))
            with contextlib.suppress(Exception):
                await self._fail_unfinished(job_id, "the import failed: nothing was imported")
        finally:
            await _release(lock, lock_key(job_id))

    async def _validate_and_import(
        self, job_id: UUID, principal: Principal, csv_text: str, dry_run: bool
    ) -> None:
        total = await asyncio.to_thread(count_rows, csv_text, max_rows=self._max_rows)
        await self._set(job_id, total=total)
        validated = [0]

        def on_progress(rows: int) -> None:
            validated[0] = rows  # read by the loop below; an int write is atomic

        parsing = asyncio.ensure_future(
            asyncio.to_thread(parse_csv, csv_text, max_rows=self._max_rows, on_progress=on_progress)
        )
        written = 0
        while not parsing.done():
            await asyncio.wait({parsing}, timeout=PROGRESS_INTERVAL_S)
            if validated[0] != written and not parsing.done():
                written = validated[0]
                await self._set(job_id, processed=written)
        rows, errors = parsing.result()
        sections = sorted({r.member.section for r in rows})
        if errors:
            await self._refuse(job_id, errors, total=total, sections=sections)
            return
        async with self._db() as session:
            try:
                async with session.begin():
                    db_errors, section_info = await check_against_database(session, rows, principal)
                    if db_errors:
                        await self._refuse(job_id, db_errors, total=total, sections=sections)
                        return
                    if dry_run:
                        await session.execute(
                            update(import_jobs)
                            .where(import_jobs.c.id == job_id)
                            .values(
                                status="done",
                                processed=total,
                                sections=sections,
                                finished_at=datetime.now(UTC),
                            )
                        )
                        return
                    await self._set(job_id, status="importing", processed=total, sections=sections)

                    async def on_batch(inserted: int) -> None:
                        if inserted < len(rows):
                            await self._set(job_id, imported=inserted)

                    imported = await import_rows(
                        session,
                        rows,
                        section_info,
                        batch_size=INSERT_BATCH,
                        on_batch=on_batch,
                    )
                    # in the import's own transaction: done if and only if imported
                    await session.execute(
                        update(import_jobs)
                        .where(import_jobs.c.id == job_id)
                        .values(status="done", imported=imported, finished_at=datetime.now(UTC))
                    )
            except IntegrityError as exc:
                if "members_phone_key" not in str(exc.orig):
                    raise
                await self._refuse(job_id, [PHONE_TAKEN_MEANWHILE], total=total, sections=sections)
                return
        log.info("import job finished", job_id=str(job_id), dry_run=dry_run, rows=total)

    async def _refuse(
        self, job_id: UUID, errors: list[RowError], *, total: int, sections: list[str]
    ) -> None:
        await self._finish(
            job_id,
            "refused",
            processed=total,
            sections=sections,
            errors=[e.model_dump() for e in errors],
            detail=f"nothing imported: {len({e.row for e in errors})} row(s) to fix",
        )
        log.info("import job refused", job_id=str(job_id), errors=len(errors))


async def _release(lock: AsyncConnection, key: int) -> None:
    """Unlock before the connection goes back to the pool (a session-level advisory lock
    outlives the checkout); a connection that cannot unlock is discarded instead."""
    try:
        await lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        await lock.commit()
    except Exception:
        with contextlib.suppress(Exception):
            await lock.invalidate()
    with contextlib.suppress(Exception):
        await lock.close()


async def fail_interrupted(session: AsyncSession, job_ids: list[UUID] | None = None) -> int:
    """Mark `failed` every unfinished job (of `job_ids`, or all) that no process runs (its
    advisory lock is free); returns how many."""
    query = select(import_jobs.c.id).where(import_jobs.c.status.in_(UNFINISHED))
    if job_ids is not None:
        query = query.where(import_jobs.c.id.in_(job_ids))
    failed = 0
    async with session.begin():
        for job_id in (await session.execute(query)).scalars().all():
            # a transaction-level try: released at commit, never waits for a running job
            free = await session.scalar(select(func.pg_try_advisory_xact_lock(lock_key(job_id))))
            if free:
                await session.execute(
                    update(import_jobs)
                    .where(import_jobs.c.id == job_id)
                    .where(import_jobs.c.status.in_(UNFINISHED))
                    .values(status="failed", detail=INTERRUPTED, finished_at=datetime.now(UTC))
                )
                failed += 1
    return failed


def _runner(request: Request) -> ImportJobRunner:
    runner: ImportJobRunner = request.app.state.import_jobs
    return runner


@router.post(
    "/members/imports",
    status_code=status.HTTP_202_ACCEPTED,
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
async def start_import(
    request: Request,
    principal: Staff,
    cfg: Config,
    dry_run: bool = Query(False, description="validate only: report errors, import nothing"),
) -> Any:
    """Start importing a CSV in the background (same columns and checks as
    `POST /members/import`); follow it at `GET /members/imports/{id}`."""
    require_manager(principal)
    try:
        csv_text = await read_csv(request)
    except BadRow as exc:
        return refused_response([RowError(row=0, line=0, column=exc.column, reason=exc.reason)])
    job_id = await _runner(request).submit(principal, csv_text, dry_run=dry_run)
    log.info("import job started", job_id=str(job_id), dry_run=dry_run)
    return JSONResponse(
        status_code=status.HTTP_202_ACCEPTED,
        content={"id": str(job_id), "status": "validating"},
        headers={"Location": f"/members/imports/{job_id}"},
    )


@router.get("/members/imports/{job_id}", response_model=ImportJobOut)
async def read_import(job_id: UUID, request: Request, principal: Staff) -> ImportJobOut:
    """A job's status and progress: your own jobs (admins: every job); 404 otherwise."""
    require_manager(principal)
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.runtime.db
    async with sessionmaker() as session:
        row = (await session.execute(select(import_jobs).where(import_jobs.c.id == job_id))).first()
        if row is None or (not principal.is_admin and str(row.account_id) != principal.account_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such import")
        if row.status in UNFINISHED:
            await session.rollback()
            if await fail_interrupted(session, [job_id]):
                row = (
                    await session.execute(select(import_jobs).where(import_jobs.c.id == job_id))
                ).first()
    return job_out(row)
