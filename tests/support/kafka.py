"""Reading and writing real Kafka in tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared.events.envelope import Envelope, KafkaRecord, decode, encode


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Delete a test's throwaway topics: left behind, thousands of them slow the broker
    (and its start: it loads every partition's log before it opens its port)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(names))
    except KafkaError:
        pass  # a test that fails to clean up must not fail the next one
    finally:
        await admin.close()


async def read_records(
    bootstrap: str,
    topics: Sequence[str],
    *,
    until: Callable[[list[ConsumerRecord]], bool],
    timeout_s: float = 30.0,
    group_id: str | None = None,
) -> list[ConsumerRecord]:
    """Read `topics` from the beginning with a fresh group until `until(records)` holds
    (or the timeout passes; then return what was read: the test's assertion says why)."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id or f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(records) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def read_events(
    bootstrap: str,
    topics: Sequence[str],
    *,
    count: int,
    timeout_s: float = 30.0,
    settle_s: float = 0.0,
) -> list[Envelope]:
    """Read at least `count` CloudEvents (skipping tombstones); with `settle_s`, keep
    reading a little longer so that unexpected extra events are seen too."""
    records = await read_records(
        bootstrap,
        topics,
        until=lambda rs: sum(r.value is not None for r in rs) >= count,
        timeout_s=timeout_s,
    )
    if settle_s:
        await asyncio.sleep(settle_s)
        records = await read_records(
            bootstrap, topics, until=lambda rs: False, timeout_s=settle_s + 1.0
        )
    return [decode(r.value, r.headers, r.key) for r in records if r.value is not None]


async def publish(bootstrap: str, topic: str, items: Sequence[Envelope | KafkaRecord]) -> None:
    """Publish envelopes (encoded as Muster does) or raw records, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for item in items:
            record = encode(item) if isinstance(item, Envelope) else item
            await producer.send_and_wait(
                topic, value=record.value, key=record.key, headers=list(record.headers)
            )
    finally:
        await producer.stop()
