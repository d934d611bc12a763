"""Kafka clients configured for Muster's guarantees.

aiokafka's producer defaults are `acks=1` with idempotence off: a leader crash can lose
an acknowledged record and a retry can duplicate one. Every Muster producer is built
here with `acks="all"` and `enable_idempotence=True`.

No linger (`linger_ms=0`, was 5): a service's producer is its outbox relay's (plus the
rare dead-letter copy), and the relay queues a whole batch (up to 500 rows) before it
awaits the acknowledgements, so batches fill without waiting; a lone event (the
declaration an alert waits for) only waited out the 5 ms. Measured on the relay
(bench/outbox_relay.py, nine alternating pairs, docs/performance.md): commit to broker
acknowledgement p50 lower with 0 in every pair, the 2,000-event backlog's rate within
the noise of the shared machine.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from shared.events.envelope import KafkaRecord


def new_producer(bootstrap_servers: str, client_id: str, *, linger_ms: int = 0) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        request_timeout_ms=30000,
    )


async def send_record(producer: AIOKafkaProducer, topic: str, record: KafkaRecord) -> None:
    """Send one record and wait for the broker's acknowledgement."""
    await producer.send_and_wait(
        topic, value=record.value, key=record.key, headers=list(record.headers)
    )
