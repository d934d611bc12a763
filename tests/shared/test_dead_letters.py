"""Records that cannot be applied go to `<topic>.dlq` with the reason, untouched, and the
consumer goes on to the valid records behind them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shared.consumer import Delivery
from shared.db import make_engine
from shared.events import KafkaRecord, make_envelope
from shared.events.envelope import Envelope
from shared.events.responses import ResponseReceived
from shared.events.topics import RESPONSES, dead_letter_topic
from tests.shared.flow import (
    applied_counts,
    create_tables,
    record_applied,
    running_consumer,
    wait_for,
)
from tests.support.kafka import publish, read_records


def _response(emergency_id: uuid.UUID) -> ResponseReceived:
    return ResponseReceived(
        emergency_id=emergency_id,
        member_id=uuid.uuid4(),
        alert_id=uuid.uuid4(),
        answer="declined",
        channel="sms",
        responded_at=datetime.now(UTC),
    )


async def test_bad_records_are_dead_lettered_and_the_good_one_applied(
    infra, topics, schema
) -> None:
    engine = make_engine(infra.database_url, schema, pool_size=2)
    await create_tables(engine)
    key = str(uuid.uuid4()).encode()
    not_json = KafkaRecord(key=key, value=b"\x00{not json", headers=(("content-type", b"x"),))
    unknown = Envelope(type="muster.unheard.of.v1", source="test", subject=key.decode(), data={})
    invalid = Envelope(
        type=ResponseReceived.event_type,
        source="test",
        subject=key.decode(),
        data={"answer": "perhaps", "channel": "pigeon"},
    )
    valid = make_envelope(_response(uuid.UUID(key.decode())), source="test")
    # one key, one partition: the valid record is behind the three bad ones
    await publish(infra.kafka_bootstrap, topics(RESPONSES), [not_json, unknown, invalid, valid])

    group = f"g-{uuid.uuid4().hex[:8]}"
    handlers = {ResponseReceived.event_type: record_applied}
    async with running_consumer(
        infra.kafka_bootstrap, infra.database_url, schema, topics(RESPONSES), handlers, group
    ) as (_, sessions):

        async def applied() -> bool:
            return valid.id in await applied_counts(sessions)

        assert await wait_for(applied)

    dead = await read_records(
        infra.kafka_bootstrap,
        [dead_letter_topic(topics(RESPONSES))],
        until=lambda rs: len(rs) >= 3,
    )
    assert len(dead) == 3
    by_reason = {dict(r.headers)["muster.dlq.reason"].decode(): r for r in dead}
    assert set(by_reason) == {"undecodable", "unknown_type", "invalid_data"}
    assert by_reason["undecodable"].value == not_json.value  # the original bytes, untouched
    for record in dead:
        headers = dict(record.headers)
        assert headers["muster.dlq.consumer"].decode() == group
        assert headers["muster.dlq.topic"].decode() == topics(RESPONSES)
        assert headers["muster.dlq.error"]
        assert record.key == key
    assert b"answer" in dict(by_reason["invalid_data"].headers)["muster.dlq.error"]
    await engine.dispose()


async def test_failing_handler_is_retried_then_dead_lettered(infra, topics, schema) -> None:
    engine = make_engine(infra.database_url, schema, pool_size=2)
    await create_tables(engine)
    attempts: list[str] = []

    async def flaky(delivery: Delivery) -> None:
        attempts.append(delivery.envelope.id)
        if delivery.data.answer == "declined":  # type: ignore[attr-defined]
            raise RuntimeError("downstream refused")
        await record_applied(delivery)

    emergency = uuid.uuid4()
    poison = make_envelope(_response(emergency), source="test")
    good = make_envelope(_response(emergency).model_copy(update={"answer": "accepted"}), source="t")
    await publish(infra.kafka_bootstrap, topics(RESPONSES), [poison, good])

    async with running_consumer(
        infra.kafka_bootstrap,
        infra.database_url,
        schema,
        topics(RESPONSES),
        {ResponseReceived.event_type: flaky},
        f"g-{uuid.uuid4().hex[:8]}",
    ) as (_, sessions):

        async def applied() -> bool:
            return good.id in await applied_counts(sessions)

        assert await wait_for(applied)
        counts = await applied_counts(sessions)

    assert attempts.count(poison.id) == 2  # max_attempts=2 in the test consumer
    assert poison.id not in counts  # the failed attempts rolled back
    dead = await read_records(
        infra.kafka_bootstrap, [dead_letter_topic(topics(RESPONSES))], until=lambda rs: len(rs) >= 1
    )
    assert [dict(r.headers)["muster.dlq.reason"] for r in dead] == [b"handler_failed"]
    assert b"downstream refused" in dict(dead[0].headers)["muster.dlq.error"]
    await engine.dispose()
