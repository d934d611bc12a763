"""Idempotent consumers with bounded retries and dead-letter routing.

`EventConsumer.handle_record` is the whole policy for one Kafka record:

1. decode the CloudEvent and validate its data (an unreadable record, an unknown
   `type` or invalid `data` goes to `<topic>.dlq` at once: retrying cannot help);
2. in one database transaction, insert `(consumer, event id)` into `processed_events`
   with ON CONFLICT DO NOTHING and run the handler only if the row is new, so a
   redelivered or replayed event changes nothing;
3. tell an outage from a poison record (`is_transient`): a connection refused or reset,
   a database failover, a timeout is retried *without limit* (capped exponential backoff
   with jitter) while the partition waits; any other handler failure is retried a bounded
   number of times, then the record is dead-lettered with the error;
4. return normally, so the caller commits the offset only now, after the transaction.

An outage can outlast Kafka's `max.poll.interval.ms` (5 minutes), after which aiokafka
leaves the group. So a record is held inside one poll for at most `poll_hold_s`; then
`TransientOutage` hands control back to the poll loop, which commits what is done,
seeks back to the blocked record and reads it again: the partition still reads nothing
past it, and the backoff carries on where it was.

A consumer built with `batch_transactions=True` applies each key's records of one poll
(one emergency's answers, say) in *one* transaction, their `processed_events` rows
inserted in that same transaction, so a batch commits once instead of once per record.
If anything in that transaction fails, it is rolled back and the same records go one by
one through the path above, so a poison record is still retried, isolated and
dead-lettered alone. Only for handlers whose effects are all in the database (a rolled
back group must leave nothing behind). A type may also have a *group handler*, which
gets the batch's consecutive new records of its kind in one call (the board plans one
emergency's answers as one step); one by one, the record's own handler runs.

`subscribe` wires a consumer into a FastStream broker with an explicit ack policy:
FastStream's default acknowledges before the handler runs (at-most-once).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import asyncpg
import httpx
import redis.exceptions
import sqlalchemy.exc
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
DLQ_HEADER_PREFIX = "muster.dlq."

TRANSIENT_RETRIES = Counter(
    "muster_consumer_transient_retries_total",
    "Handler attempts that failed on an infrastructure error (retried without limit)",
    ["consumer", "error"],
)

#: the shortest pause between attempts during an outage
MIN_TRANSIENT_RETRY_S = 0.05

#: aiokafka leaves the group when its poll loop is idle this long (its default)
MAX_POLL_INTERVAL_MS = 300_000

#: FastStream's batch subscriber waits this long in `getmany` (which returns as soon as a
#: record is there) and, when nothing came, *sleeps* this long again before the next
#: `getmany` (faststream/kafka/subscriber/usecase.py, 0.7.8): a record arriving during
#: that sleep waits for it to end. At 100 ms that was up to 100 ms (25 ms on average) on
#: every hop of the time to alert; at 10 ms an idle subscriber wakes 50 times a second,
#: which costs next to nothing, and a record waits at most 10 ms.
BATCH_IDLE_WAIT_MS = 10

# Errors that say "the infrastructure is not there right now", not "this record is
# wrong": retrying the same record later succeeds once the database, Redis, Kafka or
# the HTTP peer is back. Anything else is a bug or bad data, and retrying it forever
# would block the partition for good.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, TimeoutError, ...
    asyncpg.PostgresConnectionError,  # ConnectionDoesNotExistError and SQLSTATE 08
    asyncpg.CannotConnectNowError,  # 57P03: starting up, recovering, failing over
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # the connection is closed or unusable
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,  # no connection free in the pool in time
    redis.exceptions.ConnectionError,  # BusyLoadingError is one
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # writing to a replica during a failover
    httpx.TransportError,  # connect / read / write errors and timeouts, not HTTP statuses
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NodeNotReadyError,
)


def is_transient(exc: BaseException) -> bool:
    """True if `exc`, or an error it wraps, is an infrastructure outage worth waiting out.

    SQLAlchemy wraps the driver's error (`.orig`, `__cause__`); only explicit causes are
    followed, never the implicit `__context__`: a handler that turns a caught connection
    error into a `ValueError` means the record is bad."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _TRANSIENT_TYPES):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, kafka_errors.KafkaError) and current.retriable:
            return True
        pending.append(current.__cause__)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)
    return False


def backoff_delay(failures: int, *, base_s: float, cap_s: float, jitter: float) -> float:
    """Delay before the next attempt after `failures` (>= 1) consecutive failures:
    `base_s` doubling per failure up to `cap_s`, of which a random half (`jitter` in
    [0, 1]) is dropped so that consumers recovering together do not retry in step."""
    ceiling = min(cap_s, base_s * 2.0 ** min(failures - 1, 62))
    return ceiling * (0.5 + 0.5 * jitter)


class TransientOutage(Exception):
    """The infrastructure kept failing for the whole hold: leave the record unconsumed
    and let the poll loop run (so the consumer stays in its group), then come back."""

    def __init__(self, record: Record, cause: BaseException | None) -> None:
        super().__init__(
            f"{record.topic}[{record.partition}]@{record.offset} waits for "
            f"{type(cause).__name__ if cause else 'the infrastructure'}"
        )
        self.record = record
        #: the poll's records not applied yet (set by `EventConsumer.handle_records`)
        self.pending: Sequence[Record] = (record,)


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
#: several records of one key, in order, in the caller's transaction
GroupHandler = Callable[[Sequence[Delivery]], Awaitable[None]]
TombstoneHandler = Callable[[bytes | None, AsyncSession | None], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class _Decoded:
    """A record that can share its key's batch transaction."""

    record: Record
    envelope: Envelope
    data: EventData
    handler: Handler


@dataclasses.dataclass(frozen=True)
class _Single:
    """A record that goes alone through `handle_record` (DLQ, tombstone, ignored)."""

    record: Record


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
        transient_retry_max_s: float = 30.0,
        poll_hold_s: float = 60.0,
        batch_transactions: bool = False,
        group_handlers: Mapping[str, GroupHandler] | None = None,
    ) -> None:
        self.name = name
        self.batch_transactions = batch_transactions and sessionmaker is not None
        self._handlers = dict(handlers)
        #: used in batch transactions only, for types that also have a `handlers` entry
        self._group_handlers = dict(group_handlers or {})
        #: may be set after construction (aiokafka clients need a running loop)
        self.producer = producer
        self._sessionmaker = sessionmaker
        self._on_tombstone = on_tombstone
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._transient_retry_max_s = transient_retry_max_s
        if poll_hold_s <= 0 or poll_hold_s * 1000 >= MAX_POLL_INTERVAL_MS / 2:
            raise ValueError("poll_hold_s must be positive and well under max.poll.interval")
        self.poll_hold_s = poll_hold_s
        # An outage outlives one record and one poll: the backoff carries on across them
        # and is reset by the first record that gets through.
        self._transient_failures = 0
        self._retry_at = 0.0
        self._last_transient: BaseException | None = None

    async def handle_records(self, records: Sequence[Record]) -> list[str]:
        """Apply one poll's records (in partition order); return their outcomes.

        Raises `TransientOutage` with `pending` naming the records not applied yet, so
        the caller can seek back to them."""
        if not self.batch_transactions:
            outcomes: list[str] = []
            for done, record in enumerate(records):
                try:
                    outcomes.append(await self.handle_record(record))
                except TransientOutage as outage:
                    outage.pending = records[done:]
                    raise
            return outcomes
        outcome_of: dict[int, str] = {}
        try:
            for group in self._plan(records):
                if len(group) == 1 or isinstance(group[0], _Single):
                    for item in group:
                        outcome_of[id(item.record)] = await self.handle_record(item.record)
                    continue
                batch = [item for item in group if isinstance(item, _Decoded)]
                try:
                    applied = await self._apply_group(batch)
                except Exception as exc:
                    log.warning(
                        "batch transaction failed: applying its records one by one",
                        consumer=self.name,
                        records=len(batch),
                        error_class=type(exc).__name__,
                    )
                    for item in batch:
                        outcome_of[id(item.record)] = await self.handle_record(item.record)
                    continue
                for item, outcome in zip(batch, applied, strict=True):
                    EVENTS_CONSUMED.labels(self.name, item.record.topic, outcome).inc()
                    outcome_of[id(item.record)] = outcome
        except TransientOutage as outage:
            outage.pending = [r for r in records if id(r) not in outcome_of]
            raise
        return [outcome_of[id(r)] for r in records]

    def _plan(self, records: Sequence[Record]) -> list[list[_Decoded | _Single]]:
        """Group the records by Kafka key, each group in partition order (per-key order
        is all Kafka promises, and all a handler may rely on). A group's decodable
        records with a handler here share a transaction; anything else (tombstones,
        undecodable or unhandled records, no key) goes alone through `handle_record`."""
        groups: dict[bytes, list[_Decoded | _Single]] = {}
        plan: list[list[_Decoded | _Single]] = []
        for record in records:
            item = self._decoded(record)
            if isinstance(item, _Single) or record.key is None:
                plan.append([_Single(record)])
                if record.key is not None:
                    # the key's later records start a new group after this one: a
                    # tombstone, say, keeps its place in the key's order
                    groups.pop(record.key, None)
                continue
            group = groups.get(record.key)
            if group is None:
                group = groups[record.key] = []
                plan.append(group)
            group.append(item)
        return plan

    def _decoded(self, record: Record) -> _Decoded | _Single:
        if record.value is None:
            return _Single(record)
        try:
            envelope = decode(record.value, record.headers, record.key)
            data = parse_data(envelope)
        except (EnvelopeError, UnknownEventType, InvalidEventData):
            return _Single(record)
        handler = self._handlers.get(envelope.type)
        if handler is None:
            return _Single(record)
        return _Decoded(record, envelope, data, handler)

    async def _apply_group(self, group: Sequence[_Decoded]) -> list[str]:
        """One transaction: the group's new event ids into `processed_events`, then each
        new event's handler in order; a repeated id (replayed, or twice in this very
        poll) is a duplicate. One attempt: the caller falls back to one by one."""
        assert self._sessionmaker is not None
        ids = list(dict.fromkeys(item.envelope.id for item in group))
        async with self._sessionmaker() as session, session.begin():
            inserted = await session.execute(
                pg_insert(processed_events_table)
                .values([{"consumer": self.name, "event_id": event_id} for event_id in ids])
                .on_conflict_do_nothing()
                .returning(processed_events_table.c.event_id)
            )
            new = set(inserted.scalars())
            outcomes: list[str] = []
            fresh: list[_Decoded] = []
            for item in group:
                if item.envelope.id not in new:
                    outcomes.append("duplicate")
                    continue
                new.discard(item.envelope.id)
                fresh.append(item)
                outcomes.append("applied")
            # consecutive records sharing a group handler go to it together, in order
            start = 0
            while start < len(fresh):
                group_handler = self._group_handlers.get(fresh[start].envelope.type)
                end = start + 1
                if group_handler is not None:
                    while (
                        end < len(fresh)
                        and self._group_handlers.get(fresh[end].envelope.type) is group_handler
                    ):
                        end += 1
                deliveries = [self._delivery(item, session) for item in fresh[start:end]]
                first = fresh[start].envelope
                bind_correlation(first.correlationid, event_id=first.id, type=first.type)
                if group_handler is not None:
                    await group_handler(deliveries)
                else:
                    await fresh[start].handler(deliveries[0])
                start = end
        return outcomes

    @staticmethod
    def _delivery(item: _Decoded, session: AsyncSession) -> Delivery:
        record = item.record
        return Delivery(
            item.envelope, item.data, record.topic, record.partition, record.offset, session
        )

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
            outcome = await self._settle(
                record, lambda: self._apply_once(record, envelope, data, handler)
            )
        except TransientOutage:
            raise
        except Exception as exc:
            log.error("handler failed after retries", error=repr(exc), consumer=self.name)
            await self.dead_letter(record, "handler_failed", f"{type(exc).__name__}: {exc}")
            return "dead_lettered"
        EVENTS_CONSUMED.labels(self.name, record.topic, outcome).inc()
        return outcome

    async def _settle(self, record: Record, attempt: Callable[[], Awaitable[str]]) -> str:
        """Run `attempt` until it succeeds. Outages are waited out (no attempt limit,
        raising `TransientOutage` when the hold is used up); other failures are retried
        `max_attempts` times in all, then re-raised for the caller to dead-letter."""
        held_since = time.monotonic()
        poison_failures = 0
        while True:
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                budget = self.poll_hold_s - (time.monotonic() - held_since)
                if wait > budget:
                    # sleep what is left of the hold, so a hold shorter than the backoff
                    # still cannot spin the poll loop
                    await asyncio.sleep(max(budget, 0.0))
                    raise TransientOutage(record, self._last_transient)
                await asyncio.sleep(wait)
            try:
                outcome = await attempt()
            except Exception as exc:
                if is_transient(exc):
                    self._note_transient(record, exc)
                    continue
                poison_failures += 1
                self._transient_failures = 0
                self._retry_at = 0.0
                if poison_failures >= self._max_attempts:
                    raise
                HANDLER_RETRIES.labels(self.name).inc()
                await asyncio.sleep(
                    backoff_delay(
                        poison_failures,
                        base_s=self._retry_base_s,
                        cap_s=self._retry_max_s,
                        jitter=random.random(),
                    )
                )
                continue
            if self._transient_failures:
                log.info(
                    "infrastructure back: record applied after transient failures",
                    consumer=self.name,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    failures=self._transient_failures,
                )
            self._transient_failures = 0
            self._retry_at = 0.0
            self._last_transient = None
            return outcome

    def _note_transient(self, record: Record, exc: BaseException) -> None:
        self._transient_failures += 1
        self._last_transient = exc
        delay = backoff_delay(
            self._transient_failures,
            # a zero base (allowed for the poison path) must not make an outage a busy loop
            base_s=max(self._retry_base_s, MIN_TRANSIENT_RETRY_S),
            cap_s=self._transient_retry_max_s,
            jitter=random.random(),
        )
        self._retry_at = time.monotonic() + delay
        TRANSIENT_RETRIES.labels(self.name, type(exc).__name__).inc()
        log.warning(
            "transient failure: the record waits and is retried",
            consumer=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_class=type(exc).__name__,
            error=str(exc)[:300],
            failures=self._transient_failures,
            retry_in_s=round(delay, 2),
        )

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
        on_tombstone = self._on_tombstone

        async def attempt() -> str:
            if self._sessionmaker is None:
                await on_tombstone(record.key, None)
            else:
                async with self._sessionmaker() as session, session.begin():
                    await on_tombstone(record.key, session)
            return "tombstone"

        try:
            await self._settle(record, attempt)
        except TransientOutage:
            raise
        except Exception as exc:
            await self.dead_letter(record, "handler_failed", f"{type(exc).__name__}: {exc}")
            return "dead_lettered"
        EVENTS_CONSUMED.labels(self.name, record.topic, "tombstone").inc()
        return "tombstone"

    async def dead_letter(self, record: Record, reason: str, error: str) -> None:
        """Copy the record, untouched, to `<topic>.dlq` with why and who failed."""
        headers = [(k, v) for k, v in record.headers if not k.startswith(DLQ_HEADER_PREFIX)]
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

    During an outage (`TransientOutage`) the records before the blocked one are done:
    each partition is sought back to its first record not done and the handler returns,
    so the commit covers exactly what was applied and the next poll reads the blocked
    record again. The poll loop thus runs at least every `poll_hold_s` plus one attempt,
    far inside `max.poll.interval.ms`: the consumer is never evicted for waiting.
    """
    if consumer.poll_hold_s * 1000 * 2 >= MAX_POLL_INTERVAL_MS:
        raise ValueError("the consumer's poll hold must stay well under max.poll.interval")

    @broker.subscriber(
        *topics,
        batch=True,
        max_records=max_poll_records,
        batch_timeout_ms=BATCH_IDLE_WAIT_MS,
        group_id=consumer.name,
        group_instance_id=group_instance_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        parser=_tolerant_parser,
        title=title or f"{consumer.name}:{','.join(topics)}",
    )
    async def handle(msg: KafkaMessage) -> None:
        records = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        try:
            await consumer.handle_records(records)
        except TransientOutage as outage:
            if _rewind_to(msg, outage.pending):
                log.info("outage continues: back to the poll loop", detail=str(outage))
                return
            raise  # no way to seek: the ack policy rewinds the whole batch instead
        except Exception:
            await asyncio.sleep(1.0)  # Kafka is struggling: do not spin on the same records
            raise

    return handle


def _rewind_to(msg: KafkaMessage, pending: Sequence[Record]) -> bool:
    """Seek each partition of `pending` back to its first record there, so the commit
    that follows covers only the records before them. False if that cannot be done."""
    kafka_consumer = getattr(msg, "consumer", None)
    if kafka_consumer is None or not hasattr(kafka_consumer, "seek"):
        return False
    first: dict[TopicPartition, int] = {}
    for record in pending:
        partition = TopicPartition(record.topic, record.partition)
        first[partition] = min(first.get(partition, record.offset), record.offset)
    try:
        for partition, offset in first.items():
            kafka_consumer.seek(partition, offset)
    except Exception as exc:  # e.g. the partition was revoked meanwhile: let nack rewind
        log.warning("could not seek back to the blocked record", error=repr(exc))
        return False
    return True
