"""Kafka clients configured for Muster's guarantees.

aiokafka's producer defaults are `acks=1` with idempotence off: a leader crash can lose
an acknowledged record and a retry can duplicate one. Every Muster producer is built
here with `acks="all"` and `enable_idempotence=True`.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from shared.events.envelope import KafkaRecord


def new_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=30000,
    )


async def send_record(producer: AIOKafkaProducer, topic: str, record: KafkaRecord) -> None:
    """Send one record and wait for the broker's acknowledgement."""
    await producer.send_and_wait(
        topic, value=record.value, key=record.key, headers=list(record.headers)
    )
