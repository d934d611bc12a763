"""The transactional outbox against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import make_engine, make_sessionmaker
from shared.events.responses import ResponseReceived
from shared.events.topics import RESPONSES
from shared.kafka import new_producer
from shared.outbox import OutboxRelay, add_event
from tests.shared.flow import (
    applied_counts,
    create_tables,
    record_applied,
    running_consumer,
    wait_for,
)
from tests.support.infra import REPO
from tests.support.kafka import read_records


def _response(emergency_id: uuid.UUID) -> ResponseReceived:
    return ResponseReceived(
        emergency_id=emergency_id,
        member_id=uuid.uuid4(),
        alert_id=uuid.uuid4(),
        answer="accepted",
        eta_minutes=10,
        channel="web",
        responded_at=datetime.now(UTC),
    )


async def test_committed_event_arrives_once_rolled_back_never(infra, topics, schema) -> None:
    engine = make_engine(infra.database_url, schema, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    await create_tables(engine)
    emergency = uuid.uuid4()

    async with sessionmaker() as session, session.begin():
        committed = await add_event(session, _response(emergency), source="test")
    rolled_back = None
    with pytest.raises(RuntimeError):
        async with sessionmaker() as session, session.begin():
            rolled_back = await add_event(session, _response(emergency), source="test")
            raise RuntimeError("the business write failed: the event must go with it")
    assert rolled_back is not None

    producer = new_producer(infra.kafka_bootstrap, "test-relay")
    await producer.start()
    relay = OutboxRelay(engine, producer, schema=schema, service="test", topic_prefix=topics.prefix)
    relay_task = asyncio.create_task(relay.run())
    try:
        handlers = {ResponseReceived.event_type: record_applied}
        group = f"g-{uuid.uuid4().hex[:8]}"
        async with running_consumer(
            infra.kafka_bootstrap, infra.database_url, schema, topics(RESPONSES), handlers, group
        ) as (_, consumer_sessions):
            assert await wait_for(lambda: _has(consumer_sessions, committed.id))
            await asyncio.sleep(1.0)  # room for a wrong second delivery to show up
            counts = await applied_counts(consumer_sessions)
    finally:
        relay.stop()
        await relay_task
        await producer.stop()

    assert counts == {committed.id: 1}
    assert rolled_back.id not in counts
    async with sessionmaker() as session:
        pending = await session.scalar(
            text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        )
    assert pending == 0
    await engine.dispose()


async def _has(sessionmaker, event_id: str) -> bool:  # type: ignore[no-untyped-def]
    return event_id in await applied_counts(sessionmaker)


async def test_relay_killed_between_publish_and_mark_is_absorbed(
    infra, topics, schema, tmp_path: Path
) -> None:
    """SIGKILL after the broker acknowledged, before the rows were marked: the batch is
    published twice, and the idempotent consumer still applies each event once."""
    engine = make_engine(infra.database_url, schema, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    await create_tables(engine)
    emergency = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        envelopes = [
            await add_event(session, _response(emergency), source="test") for _ in range(5)
        ]

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "DATABASE_URL": infra.database_url,
        "MUSTER_DB_SCHEMA": schema,
        "MUSTER_TOPIC_PREFIX": topics.prefix,
        "MUSTER_OUTBOX_FAULT_PAUSE_AFTER_PUBLISH_S": "60",
    }
    log_path = tmp_path / "relay.log"
    with log_path.open("wb") as log:
        relay = subprocess.Popen(
            [sys.executable, "-m", "shared.outbox"], cwd=REPO, env=env, stdout=log, stderr=log
        )
        try:
            # the relay logs the pause once the broker has acknowledged the batch
            async def paused() -> bool:
                return "published, not marked" in log_path.read_text(errors="replace")

            assert await wait_for(paused, timeout_s=60), log_path.read_text()
        finally:
            relay.send_signal(signal.SIGKILL)
            relay.wait(timeout=10)

    async with sessionmaker() as session:
        unmarked = await session.scalar(
            text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        )
    assert unmarked == 5  # published, but the crash left them pending

    env["MUSTER_OUTBOX_FAULT_PAUSE_AFTER_PUBLISH_S"] = "0"
    with (tmp_path / "relay2.log").open("wb") as log:
        restarted = subprocess.Popen(
            [sys.executable, "-m", "shared.outbox"], cwd=REPO, env=env, stdout=log, stderr=log
        )
        try:
            handlers = {ResponseReceived.event_type: record_applied}
            group = f"g-{uuid.uuid4().hex[:8]}"
            async with running_consumer(
                infra.kafka_bootstrap,
                infra.database_url,
                schema,
                topics(RESPONSES),
                handlers,
                group,
            ) as (_, consumer_sessions):

                async def all_applied() -> bool:
                    return len(await applied_counts(consumer_sessions)) == 5

                assert await wait_for(all_applied, timeout_s=60)
                records = await read_records(
                    infra.kafka_bootstrap, [topics(RESPONSES)], until=lambda rs: len(rs) >= 10
                )
                await asyncio.sleep(1.0)
                counts = await applied_counts(consumer_sessions)
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=30)

    assert len(records) == 10  # each event is on the topic twice...
    assert counts == {e.id: 1 for e in envelopes}  # ...and applied exactly once
    await engine.dispose()


async def test_two_relays_publish_each_row_once(infra, topics, schema) -> None:
    engine = make_engine(infra.database_url, schema, pool_size=4)
    sessionmaker = make_sessionmaker(engine)
    await create_tables(engine)
    producer = new_producer(infra.kafka_bootstrap, "test-relays")
    await producer.start()
    relays = [
        OutboxRelay(engine, producer, schema=schema, service="test", topic_prefix=topics.prefix)
        for _ in range(2)
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    emergency = uuid.uuid4()
    try:
        for _ in range(10):
            async with sessionmaker() as session, session.begin():
                for _ in range(20):
                    await add_event(session, _response(emergency), source="test")
        records = await read_records(
            infra.kafka_bootstrap, [topics(RESPONSES)], until=lambda rs: len(rs) >= 200
        )
        await asyncio.sleep(1.0)
        records = await read_records(
            infra.kafka_bootstrap, [topics(RESPONSES)], until=lambda rs: len(rs) > 200, timeout_s=2
        )
    finally:
        for r in relays:
            r.stop()
        await asyncio.gather(*tasks)
        await producer.stop()
    assert len(records) == 200
    assert sum(r.is_active for r in relays) == 0
    # one key: everything in one partition, in the order it was written
    from shared.events.envelope import decode

    ids = [decode(r.value, r.headers, r.key).id for r in sorted(records, key=lambda r: r.offset)]
    async with sessionmaker() as session:
        written = (
            (await session.execute(text("SELECT event_id FROM outbox ORDER BY id"))).scalars().all()
        )
    assert ids == list(written)
    await engine.dispose()
