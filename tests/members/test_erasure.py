"""After erasure no name, phone, email or position of the member remains in any table of
the service's schema (outbox included), and the compacted topic holds a tombstone."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.topics import MEMBERS_STATE
from tests.members.conftest import MembersUnderTest, make_section, member_body, unique_phone
from tests.support.kafka import read_records


async def _every_value(admin_engine: AsyncEngine, schema: str) -> list[tuple[str, str]]:
    """(table, value as text) for every cell of every table of the schema."""
    cells: list[tuple[str, str]] = []
    async with admin_engine.connect() as conn:
        tables = (
            (
                await conn.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = :s AND table_type = 'BASE TABLE'"
                    ),
                    {"s": schema},
                )
            )
            .scalars()
            .all()
        )
        assert {"members", "outbox", "member_qualifications"} <= set(tables)
        for table in tables:
            rows = (await conn.execute(text(f'SELECT * FROM "{schema}"."{table}"'))).all()
            for row in rows:
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        cells.append((table, bytes(value).decode("utf-8", "replace")))
                    else:
                        cells.append((table, str(value)))
    return cells


async def test_erasure_leaves_nothing_personal(
    members_service: MembersUnderTest, admin_engine: AsyncEngine
) -> None:
    svc = members_service
    name = f"Zephyrine Quillfeather {uuid.uuid4().hex[:6]}"
    email = f"zq-{uuid.uuid4().hex[:6]}@example.org"
    phone = unique_phone()
    body = member_body(
        "FR",
        full_name=name,
        email=email,
        phone=phone,
        location={"lat": 43.1234567, "lon": 5.6543219},
    )
    async with svc.admin() as admin:
        await make_section(admin, "FR")
        created = await admin.post("/members", json=body)
        assert created.status_code == 201, created.text
        member_id = created.json()["id"]
        live = {"lat": 43.9876543, "lon": 5.3456781}
        assert (await admin.put(f"/members/{member_id}/location", json=live)).status_code == 200
        witness = (await admin.post("/members", json=member_body("FR"))).json()["id"]
        await asyncio.sleep(0.5)  # let the relay publish: published rows stay in the outbox

        secrets = [
            name,
            email,
            phone,
            phone[1:],
            "43.1234567",
            "5.6543219",
            "43.9876543",
            "5.3456781",
        ]
        before = await _every_value(admin_engine, svc.schema)
        assert any(phone in v for t, v in before if t == "outbox"), "test would prove nothing"
        assert any(name in v for _, v in before)

        assert (await admin.delete(f"/members/{member_id}")).status_code == 204
        assert (await admin.get(f"/members/{member_id}")).status_code == 404
        assert (await admin.delete(f"/members/{member_id}")).status_code == 404
        assert (await admin.get(f"/members/{witness}")).status_code == 200

    after = await _every_value(admin_engine, svc.schema)
    leaks = [(t, s) for t, v in after for s in secrets if s in v]
    assert leaks == []
    async with admin_engine.connect() as conn:
        kept = (
            await conn.execute(
                text(f'SELECT id, erased_at FROM "{svc.schema}".members WHERE id = :i'),
                {"i": member_id},
            )
        ).one()
    assert kept.erased_at is not None

    records = await read_records(
        svc.bootstrap,
        [svc.topic(MEMBERS_STATE)],
        until=lambda rs: any(r.key == member_id.encode() and r.value is None for r in rs),
    )
    mine = [r for r in records if r.key == member_id.encode()]
    assert mine[-1].value is None, "the last record of the member is a tombstone"
