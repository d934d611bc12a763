"""Idempotent consumers with bounded retries and dead-letter routing.

`EventConsumer.handle_record` is the whole policy for one Kafka record:

1. decode the CloudEvent and validate its data (an unreadable record, an unknown
   `type` or invalid `data` goes to `<topic>.dlq` at once: retrying cannot help);
2. in one database transaction, insert `(consumer, event id)` into `processed_events`
   with ON CONFLICT DO NOTHING and run the handler only if the row is new, so a
   redelivered or replayed event changes nothing;
3. retry a failing handler a bounded number of times with exponential backoff and
   jitter, then dead-letter the record with the error;
4. return normally, so the caller commits the offset only now, after the transaction.

`subscribe` wires a consumer into a FastStream broker with an explicit ack policy:
FastStream's default acknowledges before the handler runs (at-most-once).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential_jitter

from shared.events.catalog import EventData, InvalidEventData, UnknownEventType, parse_data
from shared.events.envelope import Envelope, EnvelopeError, decode
from shared.events.topics import dead_letter_topic
from shared.observability import (
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    HANDLER_RETRIES,
    bind_correlation,
    get_logger,
)
from shared.outbox import processed_events_table

log = get_logger(__name__)

DLQ_HEADER_REASON = "muster.dlq.reason"
DLQ_HEADER_ERROR = "muster.dlq.error"
DLQ_HEADER_CONSUMER = "muster.dlq.consumer"
DLQ_HEADER_TOPIC = "muster.dlq.topic"
DLQ_HEADER_PARTITION = "muster.dlq.partition"
DLQ_HEADER_OFFSET = "muster.dlq.offset"


class Record(Protocol):
    """The parts of an aiokafka ConsumerRecord this module reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One event handed to a handler, inside its transaction when the consumer has one."""

    envelope: Envelope
    data: EventData
    topic: str
    partition: int
    offset: int
    session: AsyncSession | None

    @property
    def db(self) -> AsyncSession:
        if self.session is None:
            raise RuntimeError("this consumer was built without a database session factory")
        return self.session


Handler = Callable[[Delivery], Awaitable[None]]
TombstoneHandler = Callable[[bytes | None, AsyncSession | None], Awaitable[None]]


class EventConsumer:
    """Applies records of one consumer group exactly once (per event id), DLQ for the rest.

    `handlers` maps event types to handlers. A known type with no handler here is
    skipped (a topic carries several types); an unknown type is dead-lettered.
    Without `sessionmaker`, handlers must be idempotent on their own (e.g. versioned
    Redis upserts) and get `session=None`.
    """

    def __init__(
        self,
        *,
        name: str,
        handlers: Mapping[str, Handler],
        producer: AIOKafkaProducer | None,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        on_tombstone: TombstoneHandler | None = None,
        max_attempts: int = 4,
        retry_base_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self.name = name
        self._handlers = dict(handlers)
        #: may be set after construction (aiokafka clients need a running loop)
        self.producer = producer
        self._sessionmaker = sessionmaker
        self._on_tombstone = on_tombstone
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s

    async def handle_record(self, record: Record) -> str:
        """Apply, skip or dead-letter one record; return the outcome. Raises only if the
        dead-letter topic cannot be written, so the offset is not committed."""
        if record.value is None:
            return await self._tombstone(record)
        try:
            envelope = decode(record.value, record.headers, record.key)
            bind_correlation(envelope.correlationid, event_id=envelope.id, type=envelope.type)
            data = parse_data(envelope)
        except (EnvelopeError, UnknownEventType, InvalidEventData) as exc:
            reason = {
                EnvelopeError: "undecodable",
                UnknownEventType: "unknown_type",
                InvalidEventData: "invalid_data",
            }[type(exc)]
            await self.dead_letter(record, reason, str(exc))
            return "dead_lettered"
        handler = self._handlers.get(envelope.type)
        if handler is None:
            EVENTS_CONSUMED.labels(self.name, record.topic, "ignored").inc()
            return "ignored"
        try:
            outcome = await self._apply_with_retries(record, envelope, data, handler)
        except Exception as exc:
            log.error("handler failed after retries", error=repr(exc), consumer=self.name)
            await self.dead_letter(record, "handler_failed", f"{type(exc).__name__}: {exc}")
            return "dead_lettered"
        EVENTS_CONSUMED.labels(self.name, record.topic, outcome).inc()
        return outcome

    async def _apply_with_retries(
        self, record: Record, envelope: Envelope, data: EventData, handler: Handler
    ) -> str:
        outcome = "applied"
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self._retry_base_s, max=self._retry_max_s, jitter=self._retry_base_s
            ),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    HANDLER_RETRIES.labels(self.name).inc()
                outcome = await self._apply_once(record, envelope, data, handler)
        return outcome

    async def _apply_once(
        self, record: Record, envelope: Envelope, data: EventData, handler: Handler
    ) -> str:
        if self._sessionmaker is None:
            await handler(
                Delivery(envelope, data, record.topic, record.partition, record.offset, None)
            )
            return "applied"
        async with self._sessionmaker() as session, session.begin():
            inserted = await session.execute(
                pg_insert(processed_events_table)
                .values(consumer=self.name, event_id=envelope.id)
                .on_conflict_do_nothing()
                .returning(processed_events_table.c.event_id)
            )
            if inserted.first() is None:
                return "duplicate"
            await handler(
                Delivery(envelope, data, record.topic, record.partition, record.offset, session)
            )
        return "applied"

    async def _tombstone(self, record: Record) -> str:
        if self._on_tombstone is None:
            EVENTS_CONSUMED.labels(self.name, record.topic, "ignored").inc()
            return "ignored"
        try:
            if self._sessionmaker is None:
                await self._on_tombstone(record.key, None)
            else:
                async with self._sessionmaker() as session, session.begin():
                    await self._on_tombstone(record.key, session)
        except Exception as exc:
            await self.dead_letter(record, "handler_failed", f"{type(exc).__name__}: {exc}")
            return "dead_lettered"
        EVENTS_CONSUMED.labels(self.name, record.topic, "tombstone").inc()
        return "tombstone"

    async def dead_letter(self, record: Record, reason: str, error: str) -> None:
        """Copy the record, untouched, to `<topic>.dlq` with why and who failed."""
        headers = [(k, v) for k, v in record.headers if not k.startswith("muster.dlq.")]
        headers += [
            (DLQ_HEADER_REASON, reason.encode()),
            (DLQ_HEADER_ERROR, error[:2000].encode()),
            (DLQ_HEADER_CONSUMER, self.name.encode()),
            (DLQ_HEADER_TOPIC, record.topic.encode()),
            (DLQ_HEADER_PARTITION, str(record.partition).encode()),
            (DLQ_HEADER_OFFSET, str(record.offset).encode()),
        ]
        if self.producer is None:
            raise RuntimeError(f"consumer {self.name} has no producer for its dead letters")
        await self.producer.send_and_wait(
            dead_letter_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        EVENTS_DEAD_LETTERED.labels(self.name, record.topic, reason).inc()
        EVENTS_CONSUMED.labels(self.name, record.topic, "dead_lettered").inc()
        log.warning(
            "record dead-lettered",
            consumer=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
            error=error[:300],
        )


def _sanitized(record: Any) -> Any:
    headers = [(k, v.decode("utf-8", "replace").encode()) for k, v in (record.headers or ())]
    return dataclasses.replace(record, headers=headers)


async def _tolerant_parser(message: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream decodes header values as UTF-8; a hostile record must not wedge the
    partition, so undecodable headers are replaced before parsing (the value is kept)."""
    try:
        return await original(message)
    except UnicodeDecodeError:
        if isinstance(message, tuple):
            return await original(tuple(_sanitized(record) for record in message))
        return await original(_sanitized(message))


def subscribe(
    broker: KafkaBroker,
    consumer: EventConsumer,
    topics: Sequence[str],
    *,
    group_instance_id: str | None = None,
    max_poll_records: int = 100,
    title: str | None = None,
) -> Any:
    """Register `consumer` on `topics`; offsets are committed after the transactions.

    A batch subscriber: each poll's records (up to `max_poll_records`, in partition
    order) are applied one by one, each in its own transaction, and the offsets are
    committed once the whole batch is done. Committing per batch rather than per record
    keeps the guarantee (nothing is committed before it is applied; a crash replays at
    most one batch, which the idempotent handling absorbs) at a fraction of the cost:
    a commit is a broker round trip.

    NACK_ON_ERROR: the handler returns normally once every record is applied, skipped or
    dead-lettered; it raises only when the dead-letter topic itself cannot be written,
    and then every partition of the batch is rewound to its first record, not lost.
    """

    @broker.subscriber(
        *topics,
        batch=True,
        max_records=max_poll_records,
        batch_timeout_ms=100,
        group_id=consumer.name,
        group_instance_id=group_instance_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        parser=_tolerant_parser,
        title=title or f"{consumer.name}:{','.join(topics)}",
    )
    async def handle(msg: KafkaMessage) -> None:
        records = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        try:
            for record in records:
                await consumer.handle_record(record)
        except Exception:
            await asyncio.sleep(1.0)  # Kafka is struggling: do not spin on the same records
            raise

    return handle
