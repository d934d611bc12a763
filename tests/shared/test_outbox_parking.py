"""A row the broker can never take is parked and dead-lettered; the rows behind it go out.

Before the relay parked such rows, a single 1.6 MB event made `publish_batch` raise
`MessageSizeTooLargeError` on every batch and nothing of the schema was published again.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import REGISTRY
from sqlalchemy import text

from shared.db import make_engine, make_sessionmaker
from shared.events.emergencies import Area, EmergencyDeclared
from shared.events.envelope import decode
from shared.events.topics import EMERGENCIES, dead_letter_topic
from shared.kafka import new_producer
from shared.outbox import (
    OutboxRelay,
    add_event,
    truncated_envelope,
    unpublishable_reason,
)
from tests.conftest import Topics
from tests.shared.flow import create_tables, wait_for
from tests.support.infra import Infra
from tests.support.kafka import read_records


def _declared(emergency_id: uuid.UUID, vertices: int = 4) -> EmergencyDeclared:
    # a ring as long as asked, written with full float precision as a map tool pastes it
    ring = [[19.5 + 0.01 * (i / vertices), 40.7 + 0.0123456789 * (i % 7)] for i in range(vertices)]
    ring.append(ring[0])
    return EmergencyDeclared(
        emergency_id=emergency_id,
        section="AL",
        title="Flooding",
        area=Area(polygon={"type": "Polygon", "coordinates": [ring]}),
        members_needed=2,
        declared_at=datetime.now(UTC),
    )


async def _limit_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    """Set the topic's `max.message.bytes`; a topic created a moment ago can answer the
    change without applying it, so repeat until the broker reports it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    resource = ConfigResource(
        ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(limit)}
    )
    try:
        for _ in range(50):
            await admin.alter_configs([resource])
            described = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            entries = described[0].resources[0][4]
            if any(e[0] == "max.message.bytes" and e[1] == str(limit) for e in entries):
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise AssertionError(f"{topic}: max.message.bytes never became {limit}")


def _parked_count(topic: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "muster_outbox_parked_total", {"topic": topic, "reason": reason}
    )
    return value or 0.0


async def test_a_record_too_large_is_parked_and_the_rows_behind_it_are_published(
    infra: Infra, topics: Topics, schema: str
) -> None:
    engine = make_engine(infra.database_url, schema, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    await create_tables(engine)
    big_emergency, other = uuid.uuid4(), uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        before = await add_event(session, _declared(big_emergency), source="test")
        big = await add_event(session, _declared(big_emergency, 40_000), source="test")
        behind = [
            await add_event(session, _declared(emergency), source="test")
            for emergency in (big_emergency, other, other)
        ]
    async with sessionmaker() as session:
        big_bytes = await session.scalar(
            text("SELECT length(value) FROM outbox WHERE event_id = :e"), {"e": big.id}
        )
    assert big_bytes > 1_048_576  # what aiokafka refuses by default

    metric_before = _parked_count(topics(EMERGENCIES), "too_large")
    producer = new_producer(infra.kafka_bootstrap, "test-parking")
    await producer.start()
    relay = OutboxRelay(engine, producer, schema=schema, service="test", topic_prefix=topics.prefix)
    relay_task = asyncio.create_task(relay.run())
    try:
        records = await read_records(
            infra.kafka_bootstrap, [topics(EMERGENCIES)], until=lambda rs: len(rs) >= 4
        )
        dead = await read_records(
            infra.kafka_bootstrap,
            [dead_letter_topic(topics(EMERGENCIES))],
            until=lambda rs: len(rs) >= 1,
        )

        async def nothing_pending() -> bool:
            async with sessionmaker() as session:
                pending = await session.scalar(
                    text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                )
            return pending == 0

        assert await wait_for(nothing_pending, timeout_s=30)
    finally:
        relay.stop()
        await relay_task
        await producer.stop()

    published = [decode(r.value, r.headers, r.key) for r in sorted(records, key=lambda r: r.offset)]
    assert sorted(e.id for e in published) == sorted([before.id, *(e.id for e in behind)])
    # the big event's key keeps its order around the gap: before, then the one behind it
    same_key = [e.id for e in published if e.subject == str(big_emergency)]
    assert same_key == [before.id, behind[0].id]

    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["muster.dlq.reason"] == b"unpublishable"
    assert headers["muster.dlq.error"].startswith(b"too_large: MessageSizeTooLargeError")
    assert headers["muster.dlq.topic"] == topics(EMERGENCIES).encode()
    assert headers["muster.dlq.truncated"] == b"true"
    assert int(headers["muster.dlq.original_bytes"]) == big_bytes
    assert dead[0].key == str(big_emergency).encode()
    stub = json.loads(dead[0].value)
    assert stub["id"] == big.id and stub["type"] == "muster.emergency.declared.v1"
    assert "data" not in stub

    async with sessionmaker() as session:
        parked = (
            await session.execute(
                text("SELECT event_id, reason, length(value) AS n, error FROM outbox_parked")
            )
        ).all()
    assert [(p.event_id, p.reason, p.n) for p in parked] == [(big.id, "too_large", big_bytes)]
    assert "MessageSizeTooLargeError" in parked[0].error
    assert _parked_count(topics(EMERGENCIES), "too_large") == metric_before + 1
    assert relay.parked == 1
    await engine.dispose()


async def test_a_record_the_broker_refuses_is_dead_lettered_whole(
    infra: Infra, topics: Topics, schema: str
) -> None:
    """The producer accepts the record but the topic's `max.message.bytes` is smaller: the
    broker's refusal arrives on the send's future; the dead-letter topic takes it whole."""
    await _limit_message_bytes(infra.kafka_bootstrap, topics(EMERGENCIES), 20_000)
    engine = make_engine(infra.database_url, schema, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    await create_tables(engine)
    emergency = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        big = await add_event(session, _declared(emergency, 2_000), source="test")
        small = await add_event(session, _declared(emergency), source="test")
    producer = new_producer(infra.kafka_bootstrap, "test-parking-broker")
    await producer.start()
    relay = OutboxRelay(engine, producer, schema=schema, service="test", topic_prefix=topics.prefix)
    relay_task = asyncio.create_task(relay.run())
    try:
        records = await read_records(
            infra.kafka_bootstrap, [topics(EMERGENCIES)], until=lambda rs: len(rs) >= 1
        )
        dead = await read_records(
            infra.kafka_bootstrap,
            [dead_letter_topic(topics(EMERGENCIES))],
            until=lambda rs: len(rs) >= 1,
        )
    finally:
        relay.stop()
        await relay_task
        await producer.stop()
    assert [decode(r.value, r.headers, r.key).id for r in records] == [small.id]
    assert len(dead) == 1
    whole = decode(dead[0].value, dead[0].headers, dead[0].key)
    assert whole.id == big.id and whole.data["area"]["polygon"]
    headers = dict(dead[0].headers)
    assert headers["muster.dlq.reason"] == b"unpublishable"
    assert "muster.dlq.truncated" not in headers
    await engine.dispose()


def test_only_errors_of_the_record_itself_park_it() -> None:
    assert unpublishable_reason(MessageSizeTooLargeError("1633318 bytes")) == "too_large"
    assert unpublishable_reason(TypeError("value must be bytes")) == "not_serializable"
    # an outage, a slow broker or a topic not created yet may pass: retried, in order
    assert unpublishable_reason(KafkaConnectionError()) is None
    assert unpublishable_reason(KafkaTimeoutError()) is None
    assert unpublishable_reason(UnknownTopicOrPartitionError()) is None


def test_a_truncated_envelope_keeps_what_finds_the_event() -> None:
    value = json.dumps(
        {"id": "e1", "type": "t", "subject": "k", "correlationid": "c", "data": {"x": 1}}
    ).encode()
    stub = truncated_envelope(value)
    assert stub is not None
    assert json.loads(stub) == {"id": "e1", "type": "t", "subject": "k", "correlationid": "c"}
    assert truncated_envelope(b"\xff not json") is None
    assert truncated_envelope(None) is None
