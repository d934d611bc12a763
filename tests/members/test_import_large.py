"""An import as large as MUSTER_IMPORT_MAX_ROWS allows (50,000) is checked against the
database like a small one: the taken-phones check is one statement however many rows
(asyncpg refuses more than 32,767 bind parameters, and its error read as an outage:
every valid file over that size was answered 503)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.members.importing import ParsedRow, check_against_database
from services.members.schemas import MemberIn
from shared.auth import Principal
from shared.db import make_engine, make_sessionmaker
from tests.members.conftest import MembersUnderTest, make_section, member_body, unique_section
from tests.support.infra import Infra

#: more rows than asyncpg's bind parameter limit (32,767)
ROWS = 40_000


@pytest.fixture
async def engine(infra: Infra, members_service: MembersUnderTest) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(infra.database_url, members_service.schema, pool_size=1)
    yield engine
    await engine.dispose()


async def test_more_rows_than_bind_parameters_are_checked_and_a_taken_phone_found(
    members_service: MembersUnderTest, engine: AsyncEngine
) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, unique_section())
        existing = member_body(section)
        created = await admin.post("/members", json=existing)
        assert created.status_code == 201, created.text
    # valid rows built directly (parse_csv's own tests cover the parsing)
    rows = [
        ParsedRow(
            row=i + 1,
            line=i + 2,
            member=MemberIn.model_construct(
                section=section, full_name=f"M {i}", phone=f"+3362{i:07d}", qualifications=[]
            ),
        )
        for i in range(ROWS)
    ]
    taken_row = ROWS - 5
    rows[taken_row - 1] = ParsedRow(
        row=taken_row,
        line=taken_row + 1,
        member=MemberIn.model_construct(
            section=section, full_name="Taken", phone=str(existing["phone"]), qualifications=[]
        ),
    )
    admin_principal = Principal(account_id="a", email="admin@example.org", role="admin")
    async with make_sessionmaker(engine)() as session, session.begin():
        errors, sections = await check_against_database(session, rows, admin_principal)
    assert [(e.row, e.column, e.reason) for e in errors] == [
        (taken_row, "phone", "another member has this phone number")
    ]
    assert section in sections
