"""The import's `COPY` load (issue 9) keeps the guarantees of the batched INSERTs it
replaced: it runs inside the caller's transaction (a rollback leaves nothing, outbox
included), a phone taken meanwhile is SQLAlchemy's IntegrityError naming
`members_phone_key` (what the endpoint and the jobs turn into a row error), and every
member gets its qualifications and one snapshot in the outbox, in file order."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.members.importing import CSV_COLUMNS, ParsedRow, import_rows, parse_csv
from services.members.models import member_qualifications, members
from shared.db import make_engine, make_sessionmaker
from tests.members.conftest import (
    MembersUnderTest,
    make_section,
    member_body,
    unique_phone,
    unique_section,
)
from tests.support.infra import Infra


@pytest.fixture
async def engine(infra: Infra, members_service: MembersUnderTest) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(infra.database_url, members_service.schema, pool_size=1)
    yield engine
    await engine.dispose()


def _rows(section: str, phones: list[str]) -> list[ParsedRow]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for i, phone in enumerate(phones):
        quals = "FIRST_AID:2030-01-01;CPR" if i % 2 else ""
        writer.writerow(
            [section, f"M {i}", phone, f"m{i}@example.org", "", quals, "45", "6", "", "", "yes"]
        )
    parsed, errors = parse_csv(out.getvalue(), max_rows=1000)
    assert not errors
    return parsed


async def _counts(engine: AsyncEngine, phones: list[str]) -> tuple[int, int]:
    async with engine.connect() as conn:
        found = (
            await conn.execute(
                select(func.count()).select_from(members).where(members.c.phone.in_(phones))
            )
        ).scalar_one()
        snapshots = len(await _snapshots(conn, phones))
    return found, snapshots


async def _snapshots(conn: AsyncConnection, phones: list[str]) -> list[dict[str, Any]]:
    """The outbox records naming one of `phones`, in id (publication) order; the relay
    publishes them meanwhile but keeps published rows for a retention period."""
    values = (
        await conn.execute(
            text(
                "SELECT value FROM outbox WHERE convert_from(value, 'UTF8') LIKE ANY(:p) "
                "ORDER BY id"
            ),
            {"p": [f'%"{phone}"%' for phone in phones]},
        )
    ).scalars()
    return [json.loads(v) for v in values]


async def test_copy_is_in_the_transaction_and_complete(
    members_service: MembersUnderTest, engine: AsyncEngine
) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, unique_section())
    phones = [unique_phone() for _ in range(7)]
    rows = _rows(section, phones)
    sessions = make_sessionmaker(engine)

    # rolled back after the COPY: nothing stays, snapshots included
    async with sessions() as session:
        with pytest.raises(RuntimeError, match="after the copy"):
            async with session.begin():
                await import_rows(session, rows, {section: ("fr", "Europe/Paris")}, batch_size=3)
                raise RuntimeError("after the copy")
    assert await _counts(engine, phones) == (0, 0)

    batches: list[int] = []

    async def on_batch(inserted: int) -> None:
        batches.append(inserted)

    async with sessions() as session, session.begin():
        imported = await import_rows(
            session, rows, {section: ("fr", "Europe/Paris")}, batch_size=3, on_batch=on_batch
        )
    assert imported == 7 and batches == [3, 6, 7]
    assert await _counts(engine, phones) == (7, 7)
    async with engine.connect() as conn:
        by_phone = {
            phone: (language, consent)
            for phone, language, consent in (
                await conn.execute(
                    select(members.c.phone, members.c.language, members.c.consent_alerts).where(
                        members.c.phone.in_(phones)
                    )
                )
            ).all()
        }
        held = (
            await conn.execute(
                select(func.count())
                .select_from(member_qualifications.join(members))
                .where(members.c.phone.in_(phones))
            )
        ).scalar_one()
        snapshots = await _snapshots(conn, phones)
    assert by_phone == {p: ("fr", True) for p in phones}
    assert held == 2 * 3  # rows 2, 4 and 6 hold two qualifications
    # one snapshot per member, in file order (the relay publishes in id order)
    assert [s["data"]["phone"] for s in snapshots] == phones
    assert {s["data"]["version"] for s in snapshots} == {1}


async def test_a_phone_taken_meanwhile_is_an_integrity_error_and_nothing_stays(
    members_service: MembersUnderTest, engine: AsyncEngine
) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, unique_section())
        taken = unique_phone()
        created = await admin.post("/members", json=member_body(section, phone=taken))
        assert created.status_code == 201, created.text
    phones = [unique_phone(), unique_phone(), taken]
    rows = _rows(section, phones)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        with pytest.raises(IntegrityError, match="members_phone_key"):
            async with session.begin():
                await import_rows(session, rows, {section: ("fr", "Europe/Paris")})
    # the member made before, and its own snapshot: nothing of the import
    assert await _counts(engine, phones) == (1, 1)
