"""The relay wakes on commit (LISTEN/NOTIFY), and falls back to polling when the LISTEN
connection is lost, against real PostgreSQL and Kafka.

No timing is asserted: a relay whose poll interval is an hour can only publish a
freshly committed event within the test's generous wait if the commit woke it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import text

from shared.db import make_engine, make_sessionmaker
from shared.events.responses import ResponseReceived
from shared.kafka import new_producer
from shared.outbox import OutboxRelay, add_event, outbox_channel
from tests.shared.flow import create_tables, wait_for

AN_HOUR_S = 3600.0


def _response() -> ResponseReceived:
    return ResponseReceived(
        emergency_id=uuid.uuid4(),
        member_id=uuid.uuid4(),
        alert_id=uuid.uuid4(),
        answer="accepted",
        eta_minutes=10,
        channel="web",
        responded_at=datetime.now(UTC),
    )


async def _published(engine, event_id: str) -> bool:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        value = await conn.scalar(
            text("SELECT published_at IS NOT NULL FROM outbox WHERE event_id = :id"),
            {"id": event_id},
        )
    return bool(value)


def test_the_channel_fits_postgresql_names() -> None:
    long_schema = "s" * 63
    assert len(outbox_channel(long_schema).encode()) == 63
    assert outbox_channel("members") == "muster_outbox_members"


async def test_a_commit_wakes_an_idle_relay_and_a_lost_listen_connection_comes_back(
    infra, topics, schema
) -> None:
    engine = make_engine(infra.database_url, schema, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    await create_tables(engine)
    producer = new_producer(infra.kafka_bootstrap, "test-relay-wake")
    await producer.start()
    relay = OutboxRelay(
        engine,
        producer,
        schema=schema,
        service="test",
        topic_prefix=topics.prefix,
        poll_interval_s=AN_HOUR_S,
    )
    task = asyncio.create_task(relay.run())
    try:
        assert await wait_for(lambda: _true(relay.listening))
        # the relay has done its first sweep and now waits for a NOTIFY or an hour
        await asyncio.sleep(0.5)
        async with sessionmaker() as session, session.begin():
            first = await add_event(session, _response(), source="test")
        assert await wait_for(lambda: _published(engine, first.id))

        # a rolled-back write notifies nothing and publishes nothing
        before = relay.published
        try:
            async with sessionmaker() as session, session.begin():
                await add_event(session, _response(), source="test")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass

        # the LISTEN connection dies (a failover, an idle-connection killer): the relay
        # notices, reconnects, and a commit after that wakes it again
        killer = await asyncpg.connect(infra.database_url.replace("+asyncpg", "", 1))
        try:
            killed = await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND pid <> pg_backend_pid()",
                outbox_channel(schema),
            )
        finally:
            await killer.close()
        assert killed == 1
        assert await wait_for(lambda: _true(not relay.listening))
        assert await wait_for(lambda: _true(relay.listening))
        await asyncio.sleep(0.5)
        async with sessionmaker() as session, session.begin():
            second = await add_event(session, _response(), source="test")
        assert await wait_for(lambda: _published(engine, second.id))
        assert relay.published == before + 1
    finally:
        relay.stop()
        await task
        await producer.stop()
        await engine.dispose()


async def test_a_relay_whose_listen_connection_cannot_connect_still_polls(
    infra, topics, schema
) -> None:
    engine = make_engine(infra.database_url, schema, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    await create_tables(engine)
    producer = new_producer(infra.kafka_bootstrap, "test-relay-poll")
    await producer.start()
    relay = OutboxRelay(
        engine, producer, schema=schema, service="test", topic_prefix=topics.prefix,
        poll_interval_s=0.2,
    )  # fmt: skip
    # the LISTEN connection goes to a port nothing listens on; the pool still works
    relay._listen_dsn = lambda: "postgresql://muster@127.0.0.1:1/muster"  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    try:
        async with sessionmaker() as session, session.begin():
            event = await add_event(session, _response(), source="test")
        assert await wait_for(lambda: _published(engine, event.id))
        assert not relay.listening
    finally:
        relay.stop()
        await task
        await producer.stop()
        await engine.dispose()


async def _true(value: bool) -> bool:
    return value
