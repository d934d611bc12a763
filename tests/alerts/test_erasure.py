"""Issue 10, defect 12: once alerts consumes a member's erasure tombstone, their phone
number is in no cell of any table of the alerts schema (outbox payloads included), nor in
Redis or the log; the board's facts (ids, statuses, answers, times) stay; the old answer
link opens nothing; and their STOP outlives the erasure: the number re-added as a new
member is not texted until it sends START.

Alerts runs as a real process with the Twilio provider against the local fake, after a
real SMS flow: the alert SMS, a web answer page view, an SMS answer and a STOP. Alerts
never receives names (the member snapshot has none), so the number is what must go."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.envelope import KafkaRecord
from tests.alerts.answers_support import message_of, sms, token_in
from tests.alerts.fake_twilio import FakeTwilio
from tests.alerts.members import (
    CENTRE,
    EMERGENCIES,
    MEMBERS_STATE,
    declared,
    member,
    publish_emergency_event,
    publish_members,
    wait_indexed,
)
from tests.conftest import Topics
from tests.support.kafka import publish
from tests.support.processes import start_service


async def every_cell(engine: AsyncEngine, schema: str) -> list[tuple[str, str]]:
    """(table, value as text) for every cell of every table of the schema; bytes (the
    outbox payload) decoded."""
    cells: list[tuple[str, str]] = []
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = :s AND table_type = 'BASE TABLE'"
                ),
                {"s": schema},
            )
        ).scalars()
        for table in list(tables):
            for row in (await conn.execute(text(f'SELECT * FROM "{schema}"."{table}"'))).all():
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        cells.append((table, bytes(value).decode("utf-8", "replace")))
                    else:
                        cells.append((table, str(value)))
    return cells


async def every_redis_value(client: redis.Redis, prefix: str) -> list[str]:
    values: list[str] = []
    async for key in client.scan_iter(match=f"{prefix}*"):
        kind = (await client.type(key)).decode()
        if kind == "hash":
            values += [v.decode("utf-8", "replace") for v in await client.hvals(key)]
        elif kind == "string":
            values.append(((await client.get(key)) or b"").decode("utf-8", "replace"))
        elif kind == "zset":
            values += [m.decode("utf-8", "replace") for m in await client.zrange(key, 0, -1)]
    return values


async def poll(engine: AsyncEngine, sql: str, params: dict[str, Any], timeout_s: float) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with engine.connect() as conn:
            value = (await conn.execute(text(sql), params)).scalar()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.2)


async def test_erasure_leaves_no_number_in_alerts_and_keeps_the_stop(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client: redis.Redis,
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    erased = member(lat=CENTRE[0] + 0.001, language="en")
    witness = member(lat=CENTRE[0] + 0.002, language="en")
    phone = erased.phone or ""
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [erased, witness])
    service = start_service("alerts", alerts_env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, [erased, witness])
        first = declared(radius_m=3000, members_needed=1, title="Flood")
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), first)
        assert await twilio.wait_for_async(lambda ms: len(ms) >= 2, 30)
        token = token_in(twilio.to(phone)[0].body)

        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            assert (await client.get(f"/r/{token}")).status_code == 200
            assert "expected" in message_of(await sms(client, phone, "YES 10"))
            await sms(client, phone, "STOP")
            await sms(client, phone, "what is this about?")

        before = await every_cell(admin_engine, schema)
        holding = {t for t, v in before if phone in v}
        assert {"alerts", "outbound_messages", "inbound_messages", "sms_opt_outs"} <= holding

        # members erases the member: a tombstone under their id
        key = str(erased.member_id).encode()
        await publish(topics.bootstrap, topics(MEMBERS_STATE), [KafkaRecord(key, None, ())])
        assert await poll(
            admin_engine,
            f'SELECT count(*) FROM "{schema}".erased_opt_outs',
            {},
            timeout_s=30,
        ), "the tombstone was not applied"
        await asyncio.sleep(0.5)

        after = await every_cell(admin_engine, schema)
        for needle in (phone, phone[1:], phone[-9:], token):
            found = sorted({t for t, v in after if needle in v})
            assert not found, f"{needle!r} still in {found}"
        assert any(witness.phone == v for t, v in after if t == "alerts")  # only theirs went
        redis_values = await every_redis_value(redis_client, topics.prefix)
        assert not [v for v in redis_values if phone in v]

        async with admin_engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT status, response, eta_minutes, responded_at, phone "
                        f'FROM "{schema}".alerts WHERE member_id = :m'
                    ),
                    {"m": erased.member_id},
                )
            ).one()
            bodies = (
                await conn.execute(
                    text(
                        f'SELECT DISTINCT o.body FROM "{schema}".outbound_messages o '
                        f'JOIN "{schema}".alerts a ON a.id = o.alert_id WHERE a.member_id = :m'
                    ),
                    {"m": erased.member_id},
                )
            ).scalars()
            assert list(bodies) == ["[erased]"]
        # what the board needs is still there
        assert row.status == "sent" and row.response == "accepted" and row.eta_minutes == 10
        assert row.responded_at is not None and row.phone is None

        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            assert (await client.get(f"/r/{token}")).status_code == 404

            # the number comes back as a new member: still opted out
            again = member(lat=CENTRE[0] + 0.001, language="en", phone=phone)
            newcomer = member(lat=CENTRE[0] + 0.003, language="en")
            await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [again, newcomer])
            await wait_indexed(redis_client, topics.prefix, [again, newcomer])
            sent_before = len(twilio.to(phone))
            second = declared(radius_m=3000, members_needed=2, title="Search")
            await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), second)
            assert await twilio.wait_for_async(lambda ms: any(m.to == newcomer.phone for m in ms))
            await asyncio.sleep(1.0)
            assert len(twilio.to(phone)) == sent_before

            # START lifts the kept opt-out
            await sms(client, phone, "START")
        async with admin_engine.connect() as conn:
            kept = (
                await conn.execute(text(f'SELECT count(*) FROM "{schema}".erased_opt_outs'))
            ).scalar()
        assert kept == 0
    finally:
        service.stop()
    log = service.log()
    assert "member erased" in log
    assert phone not in log and phone[1:] not in log and token not in log


async def test_the_same_erasure_twice_changes_nothing_more() -> None:
    """The pure parts: the keyed hash is stable per key and differs across keys."""
    from services.alerts.erasure import OptOuts, phone_pseudonym

    key, other = uuid.uuid4().bytes, uuid.uuid4().bytes
    assert phone_pseudonym("+355691234567", key) == phone_pseudonym("+355691234567", key)
    assert phone_pseudonym("+355691234567", key) != phone_pseudonym("+355691234567", other)
    kept = OptOuts(
        frozenset({"+33600000001"}), frozenset({phone_pseudonym("+355691234567", key)}), key
    )
    assert "+355691234567" in kept and "+33600000001" in kept
    assert "+355691234568" not in kept and None not in kept
