"""A minimal consumer application for the shared library's flow tests: it records each
applied event in an `applied` table, so a test can count how often each was applied."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.kafka import KafkaBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.consumer import Delivery, EventConsumer, subscribe
from shared.db import make_engine, make_sessionmaker
from shared.kafka import new_producer
from shared.outbox import shared_metadata


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(shared_metadata.create_all)
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS applied ("
                " id bigserial PRIMARY KEY, event_id text NOT NULL, subject text)"
            )
        )


async def record_applied(delivery: Delivery) -> None:
    await delivery.db.execute(
        text("INSERT INTO applied (event_id, subject) VALUES (:e, :s)"),
        {"e": delivery.envelope.id, "s": delivery.envelope.subject},
    )


async def applied_counts(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            text("SELECT event_id, count(*) FROM applied GROUP BY event_id")
        )
        return {event_id: n for event_id, n in rows.all()}


async def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval_s)
    return False


@asynccontextmanager
async def running_consumer(
    bootstrap: str,
    database_url: str,
    schema: str,
    topic: str,
    handlers: dict,  # type: ignore[type-arg]
    group: str,
) -> AsyncIterator[tuple[EventConsumer, async_sessionmaker[AsyncSession]]]:
    """A real consumer group on real Kafka writing to the test's schema."""
    engine = make_engine(database_url, schema, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    producer = new_producer(bootstrap, "test-dlq")
    await producer.start()
    broker = KafkaBroker(bootstrap)
    consumer = EventConsumer(
        name=group,
        handlers=handlers,
        producer=producer,
        sessionmaker=sessionmaker,
        max_attempts=2,
        retry_base_s=0.05,
    )
    subscribe(broker, consumer, [topic])
    await broker.start()
    try:
        yield consumer, sessionmaker
    finally:
        await broker.stop()
        await producer.stop()
        await engine.dispose()
